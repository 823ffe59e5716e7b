"""Real ONNX models that this project did not make, with realistic fixed inputs and fidelity measures.

The models ship inside PyPI packages (rapidocr, rapidocr-onnxruntime): PP-OCR text detection,
recognition and direction classification, two generations each; tools/bench/corpus_more.py adds
models of other families (magika, nudenet, silero-vad). Inputs come from scikit-image's
scanned page (`skimage.data.page()`), preprocessed as rapidocr does (det: ImageNet mean/std;
rec/cls: (x/255 - 0.5) / 0.5 at height 48). Used by tests/tools/test_corpus.py and
tools/bench/bench_corpus.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.bench import corpus_more

# (package, file inside the package's models/ folder, kind); the two packages ship the same
# classifier (identical bytes), so it is listed once.
_FILES = (
    ("rapidocr_onnxruntime", "ch_PP-OCRv4_det_infer.onnx", "det"),
    ("rapidocr_onnxruntime", "ch_PP-OCRv4_rec_infer.onnx", "rec"),
    ("rapidocr", "PP-OCRv6_det_small.onnx", "det"),
    ("rapidocr", "PP-OCRv6_rec_small.onnx", "rec"),
    ("rapidocr", "ch_ppocr_mobile_v2.0_cls_mobile.onnx", "cls"),
)

# Text lines of skimage.data.page() (row ranges read off the scan; lines ~24 px tall, 384 wide, so
# 48 x 768 keeps their aspect as rapidocr's resize does).
_LINES = ((6, 40), (44, 68), (62, 86), (80, 106))


@dataclass(frozen=True)
class CorpusModel:
    name: str
    path: Path
    kind: str  # det, rec, cls, text (sentence embeddings), filetype, yolo, vad (corpus_more)

    def inputs(self, small: bool = False) -> list[np.ndarray]:
        return INPUTS[self.kind](small)

    def fidelity(self, reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
        return FIDELITY[self.kind](reference, outputs)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def ocr_models() -> list[CorpusModel]:
    """The OCR models whose packages are installed (a missing package leaves its models out)."""
    found = []
    for package, file, kind in _FILES:
        folder = _package_dir(package)
        if folder is not None and (folder / "models" / file).is_file():
            found.append(CorpusModel(Path(file).stem, folder / "models" / file, kind))
    return found


def foreign_models() -> list[CorpusModel]:
    """Every installed corpus model: the OCR models, then the others of tools/bench/corpus_more.py."""
    return ocr_models() + [CorpusModel(name, path, kind) for name, path, kind in corpus_more.installed()]


# --- inputs -----------------------------------------------------------------------------------


def _page() -> np.ndarray:
    from skimage import data

    return data.page().astype(np.float32)  # (191, 384) uint8 scan -> float


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (height, width), order=1, preserve_range=True, anti_aliasing=True).astype(np.float32)


def det_input(small: bool = False) -> list[np.ndarray]:
    """The page as a 3-channel image, sides multiples of 32, ImageNet-normalised (PP-OCR det)."""
    height, width = (96, 192) if small else (192, 384)
    gray = _resize(_page(), height, width) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    image = (gray[None, :, :] - mean[:, None, None]) / std[:, None, None]
    return [image[None].astype(np.float32)]


def _line_batch(height: int, width: int, lines) -> np.ndarray:
    page = _page()
    crops = [_resize(page[top:bottom], height, width) for top, bottom in lines]
    batch = np.stack([np.repeat(c[None], 3, axis=0) for c in crops]) / 127.5 - 1.0
    return batch.astype(np.float32)


def rec_input(small: bool = False) -> list[np.ndarray]:
    """Text lines of the page at 48 x 768 (PP-OCR rec), a batch of 4 (2 when small)."""
    return [_line_batch(48, 768, _LINES[:2] if small else _LINES)]


def cls_input(small: bool = False) -> list[np.ndarray]:
    """Text lines at 48 x 192, upright and turned 180 degrees (the direction classifier's task)."""
    upright = _line_batch(48, 192, _LINES[:1] if small else _LINES)
    return [np.concatenate([upright, upright[:, :, ::-1, ::-1]]).astype(np.float32)]


INPUTS: dict[str, Callable] = {"det": det_input, "rec": rec_input, "cls": cls_input}


# --- fidelity ---------------------------------------------------------------------------------


def relative_error(reference: np.ndarray, output: np.ndarray) -> float:
    """||output - reference|| / ||reference|| (L2 over the whole tensor)."""
    reference, output = np.asarray(reference, np.float64), np.asarray(output, np.float64)
    return float(np.linalg.norm(output - reference) / max(np.linalg.norm(reference), 1e-30))


def det_fidelity(reference, outputs) -> dict[str, float]:
    """Text-probability map: relative L2 error and IoU of the text masks at rapidocr's 0.3 threshold."""
    ref, out = reference[0] > 0.3, outputs[0] > 0.3
    union = np.logical_or(ref, out).sum()
    iou = float(np.logical_and(ref, out).sum() / union) if union else 1.0
    return {"rel_error": relative_error(reference[0], outputs[0]), "mask_iou": iou}


def ctc_decode(probabilities: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC decode per line: best class per step, repeats merged, blanks (class 0) dropped."""
    lines = []
    for best in probabilities.argmax(-1):
        merged = best[np.r_[True, best[1:] != best[:-1]]]
        lines.append(tuple(int(c) for c in merged if c != 0))
    return lines


def rec_fidelity(reference, outputs) -> dict[str, float]:
    """Character probabilities per time step: relative L2 error, the share of text lines whose
    decoded characters are unchanged (rapidocr's greedy CTC decode), the share of time steps whose
    best class changed, and the largest change of the reference's best class probability (the
    confidence rapidocr reports per line is the mean of these)."""
    ref, out = np.asarray(reference[0]), np.asarray(outputs[0])
    same = np.mean([a == b for a, b in zip(ctc_decode(ref), ctc_decode(out))])
    best = ref.argmax(-1)[..., None]
    top_change = np.abs(np.take_along_axis(out, best, -1) - np.take_along_axis(ref, best, -1))
    return {
        "rel_error": relative_error(ref, out),
        "same_text": float(same),
        "steps_changed": float(np.mean(out.argmax(-1) != ref.argmax(-1))),
        "max_top_change": float(top_change.max()),
    }


def cls_fidelity(reference, outputs) -> dict[str, float]:
    """Direction probabilities: relative L2 error, largest probability change and same decision."""
    same = float(np.mean(reference[0].argmax(-1) == outputs[0].argmax(-1)))
    delta = float(np.max(np.abs(reference[0] - outputs[0])))
    return {"rel_error": relative_error(reference[0], outputs[0]), "max_prob_change": delta, "same_class": same}


FIDELITY: dict[str, Callable] = {"det": det_fidelity, "rec": rec_fidelity, "cls": cls_fidelity}
INPUTS.update(corpus_more.INPUTS)
FIDELITY.update(corpus_more.FIDELITY)


def onnx_runner(path_or_bytes):
    """run(inputs) -> outputs of the dense model in ONNX Runtime (CPU, one thread: the reference), one session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def outputs_of(kind: str, run, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs a corpus model's fidelity is measured on: one run, or a stream of runs (silero-vad)."""
    stream = corpus_more.STREAMS.get(kind)
    return run(inputs) if stream is None else stream(run, inputs)


def run_onnx(path_or_bytes, inputs: list[np.ndarray], kind: str = "") -> list[np.ndarray]:
    """The dense model's outputs in ONNX Runtime (CPU, one thread: the reference)."""
    return outputs_of(kind, onnx_runner(path_or_bytes), inputs)
