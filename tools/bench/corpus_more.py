"""More real ONNX models this project did not make, beyond OCR: a file-type classifier, an object detector
and a voice-activity detector, with realistic fixed inputs and fidelity measures.

- magika (Google's file-type classifier, magika/models/standard_v3_3/model.onnx): the first and last 1,024
  bytes of real files shipped by installed packages, laid out as magika's own feature extraction does
  (magika.Magika._extract_features_from_seekable with config.min.json: beg/end 1,024, block 4,096,
  padding token 256). Fidelity: the same file type for every file, largest change of any probability.
- nudenet (a YOLOv8n body-part detector, nudenet/320n.onnx): scikit-image's photos (astronaut, a crop of
  her head, camera man) at 320 x 320 as NudeNet's _read_image makes them (RGB, / 255). Fidelity: NudeNet's own
  post-processing (score >= 0.2, NMS at IoU 0.45 across classes): the same detections (class), box IoU of
  each matched pair, and the largest score change.
- silero-vad (a voice-activity detector, silero_vad/data/silero_vad.onnx: one model per sample rate, each
  in a branch of an If, weights as Constant nodes inside the branches): a synthesized voiced signal
  (7 vowel syllables with moving pitch over low noise, 4 s) streamed as silero_vad.OnnxWrapper does
  (512-sample chunks at 16 kHz after 64 samples of context, the state carried), and the same at 8 kHz
  (256 + 32). Fidelity: the largest change of any chunk's speech probability and the share of chunks
  whose speech / non-speech decision at silero's 0.5 threshold is unchanged.

Used by tests/tools/test_corpus.py and tools/bench/bench_corpus.py through tools/bench/corpus.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

# (package, file inside it (a glob: the last match in sorted order), kind)
FILES = (
    ("magika", "models/standard_v3_*/model.onnx", "filetype"),
    ("nudenet", "320n.onnx", "yolo"),
    ("silero_vad", "data/silero_vad.onnx", "vad"),
)


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def installed() -> list[tuple[str, Path, str]]:
    """(name, path, kind) of the models here whose package is installed."""
    found = []
    for package, file, kind in FILES:
        folder = package_dir(package)
        matches = sorted(folder.glob(file)) if folder is not None else []
        if matches:
            found.append((package, matches[-1], kind))
    return found


# --- magika: file bytes -------------------------------------------------------------------------------

# Real files of several types from packages the dev extras install (numpy, scikit-image, scikit-learn).
SAMPLE_FILES = (
    ("numpy", "__init__.py"),  # python
    ("numpy", "_core/include/numpy/ndarraytypes.h"),  # C header
    ("numpy", "_core/include/numpy/__multiarray_api.c"),  # C
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/no_time_for_that_tiny.gif"),
    ("skimage", "data/multipage.tif"),
    ("skimage", "data/lbpcascade_frontalface_opencv.xml"),
    ("skimage", "data/lfw_subset.npy"),
    ("skimage", "data/README.txt"),
    ("sklearn", "datasets/data/iris.csv"),
    ("sklearn", "datasets/data/digits.csv.gz"),
)
BEG_SIZE, END_SIZE, BLOCK_SIZE, PADDING = 1024, 1024, 4096, 256


def sample_paths() -> list[Path]:
    paths = []
    for package, file in SAMPLE_FILES:
        folder = package_dir(package)
        if folder is not None and (folder / file).is_file():
            paths.append(folder / file)
    return paths


def magika_features(data: bytes) -> np.ndarray:
    """Magika's model input for one file: the first BEG_SIZE bytes of its first block, leading whitespace
    stripped, padded after; the last END_SIZE bytes of its last block, trailing whitespace stripped,
    padded before (as magika.Magika._extract_features_from_seekable)."""
    read = min(BLOCK_SIZE, len(data))
    beg = list(data[:read].lstrip()[:BEG_SIZE])
    end = list(data[len(data) - read :].rstrip()[-END_SIZE:]) if END_SIZE else []
    beg += [PADDING] * (BEG_SIZE - len(beg))
    end = [PADDING] * (END_SIZE - len(end)) + end
    return np.array(beg + end, dtype=np.int32)


def filetype_input(small: bool = False) -> list[np.ndarray]:
    paths = sample_paths()[: 4 if small else None]
    return [np.stack([magika_features(p.read_bytes()) for p in paths])]


def filetype_fidelity(reference, outputs) -> dict[str, float]:
    """Type probabilities per file: the same type (argmax) for every file and the largest probability change."""
    ref, out = np.asarray(reference[0], np.float64), np.asarray(outputs[0], np.float64)
    return {
        "same_type": float(np.mean(ref.argmax(-1) == out.argmax(-1))),
        "max_prob_change": float(np.max(np.abs(ref - out))),
    }


# --- nudenet: photos, YOLOv8 post-processing -----------------------------------------------------------

SCORE_MIN, NMS_IOU = 0.2, 0.45  # nudenet._postprocess


def _photo(image: np.ndarray, side: int) -> np.ndarray:
    from skimage.transform import resize

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    scaled = resize(image, (side, side), order=1, preserve_range=True, anti_aliasing=True) / 255.0
    return scaled.transpose(2, 0, 1).astype(np.float32)


def yolo_input(small: bool = False) -> list[np.ndarray]:
    """scikit-image's astronaut, her head and shoulders (a 300 x 300 crop) and the camera man, as NudeNet
    feeds them (square, RGB, / 255); at 160 x 160 when small (the graph's sides are dynamic)."""
    from skimage import data

    astronaut = data.astronaut()
    photos = (astronaut, astronaut[0:300, 80:380], data.camera())
    return [np.stack([_photo(p, 160 if small else 320) for p in photos[: 2 if small else None]])]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box with each of `boxes`."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def detections(output: np.ndarray) -> list[tuple[int, float, np.ndarray]]:
    """(class, score, box) kept by NudeNet's post-processing of one image's (4 + classes, anchors) output:
    best class score >= SCORE_MIN, then greedy NMS across classes at NMS_IOU."""
    rows = output.T
    scores = rows[:, 4:].max(1)
    keep = np.flatnonzero(scores >= SCORE_MIN)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    centre, size = rows[keep, :2], rows[keep, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    chosen: list[int] = []
    for i in range(len(keep)):
        if not chosen or _iou(boxes[i], boxes[chosen]).max() <= NMS_IOU:
            chosen.append(i)
    return [(int(rows[keep[i], 4:].argmax()), float(scores[keep[i]]), boxes[i]) for i in chosen]


def yolo_fidelity(reference, outputs) -> dict[str, float]:
    """Per image, NudeNet's detections: the share of images whose detected classes are the same (as
    sorted lists), the smallest IoU of a reference box with the best box of the same class, the largest
    score change of a matched detection."""
    same, ious, changes = [], [1.0], [0.0]
    for ref, out in zip(reference[0], outputs[0]):
        a, b = detections(ref), detections(out)
        same.append(sorted(c for c, _, _ in a) == sorted(c for c, _, _ in b))
        for cls, score, box in a:
            matches = [(s, bx) for c, s, bx in b if c == cls]
            if not matches:
                ious.append(0.0)
                continue
            overlap = _iou(box, np.stack([bx for _, bx in matches]))
            best = int(overlap.argmax())
            ious.append(float(overlap[best]))
            changes.append(abs(matches[best][0] - score))
    return {"same_detections": float(np.mean(same)), "min_box_iou": min(ious), "max_score_change": max(changes)}


# --- silero-vad: streamed audio ------------------------------------------------------------------------

# formants (Hz) of five vowels (Peterson & Barney's averages for men, rounded)
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480)}
VOWELS["o"] = (570, 840, 2410)
SYLLABLES = ((0.5, 0.75, "a"), (0.8, 1.05, "i"), (1.1, 1.4, "o"), (1.45, 1.7, "e"), (2.6, 2.85, "u"))
SYLLABLES += ((2.9, 3.2, "a"), (3.25, 3.5, "i"))
VAD_THRESHOLD = 0.5  # silero_vad.get_speech_timestamps' default


def voiced_signal(rate: int = 16000, seconds: float = 4.0) -> np.ndarray:
    """Speech-like audio: harmonics of a moving pitch (105-155 Hz) shaped by three formants per vowel,
    one vowel per syllable with a smooth envelope, over white noise at -50 dB; seeded, float32 in [-1, 1]."""
    t = np.arange(int(rate * seconds)) / rate
    audio = np.random.default_rng(0).normal(0, 0.003, t.size)
    for i, (start, stop, vowel) in enumerate(SYLLABLES):
        inside = (t >= start) & (t < stop)
        local, length = t[inside] - start, stop - start
        pitch = 130 + 25 * np.sin(np.pi * local / length + i)
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        voice = np.zeros(local.size)
        for k in range(1, 37):  # harmonics up to ~4 kHz
            envelope = sum(1 / (1 + ((k * pitch - f) / (60 + 0.05 * f)) ** 2) for f in VOWELS[vowel])
            voice += envelope / np.sqrt(k) * np.sin(k * phase) * (k * pitch < rate / 2)
        audio[inside] += 0.1 * voice * np.sin(np.pi * local / length) ** 0.5 / np.abs(voice).max()
    return audio.astype(np.float32)


def vad_input(small: bool = False) -> list[np.ndarray]:
    """The signal at 16 kHz and at 8 kHz (every other sample), one stream each (1 s when small)."""
    audio = voiced_signal(seconds=1.0 if small else 4.0)
    return [audio[None], np.ascontiguousarray(audio[None, ::2])]


def vad_stream(run, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Speech probability per chunk of each stream, fed as silero_vad.OnnxWrapper feeds the model (chunk
    after the previous chunk's last samples, state carried). `run` maps the model's inputs to its outputs."""
    probabilities = []
    for audio in inputs:
        rate = 16000 if audio is inputs[0] else 8000
        chunk, context = (512, 64) if rate == 16000 else (256, 32)
        state = np.zeros((2, audio.shape[0], 128), np.float32)
        previous = np.zeros((audio.shape[0], context), np.float32)
        found = []
        for start in range(0, audio.shape[1] - chunk + 1, chunk):
            window = np.concatenate([previous, audio[:, start : start + chunk]], axis=1)
            probability, state = run([window, state, np.array(rate, np.int64)])
            previous = window[:, -context:]
            found.append(probability[:, 0])
        probabilities.append(np.stack(found, axis=1))
    return probabilities


def vad_fidelity(reference, outputs) -> dict[str, float]:
    ref, out = np.concatenate([r.ravel() for r in reference]), np.concatenate([o.ravel() for o in outputs])
    return {
        "max_prob_change": float(np.max(np.abs(ref - out))),
        "same_decision": float(np.mean((ref >= VAD_THRESHOLD) == (out >= VAD_THRESHOLD))),
    }


INPUTS = {"filetype": filetype_input, "yolo": yolo_input, "vad": vad_input}
FIDELITY = {"filetype": filetype_fidelity, "yolo": yolo_fidelity, "vad": vad_fidelity}
# kinds whose outputs come from several runs of the model (state carried between them)
STREAMS = {"vad": vad_stream}
