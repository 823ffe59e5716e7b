"""all-MiniLM-L6-v2 palettized, then trained quantization (compressor.tune) by distillation: the recipe.

`python -m tools.bench.minilm_tune [--setting NAME] [--epochs N] [--lr LR] [--splice K]` compresses the
package's model.safetensors with one `minilm_palettize` setting (with --calib moments from
`minilm_calib.CALIBRATION`), then fine-tunes every group's 16 centroids, the LayerNorm weights and
the biases with `tune_checkpoint`: the student is the re-declared encoder holding the compressed
tensors, the loss the dense model's last hidden states (mean squared error over real tokens, divided
by their variance) plus 10 x (1 - cosine) of the sentence embeddings, on the calibration sentences
only; each epoch adds K sentences per calibration sentence spliced from two calibration sentences (first words of one,
last words of another: new contexts for the same words, no test sentence). Prints the size and the
min / mean cosine of the 54 held-out sentence embeddings before and after, and the seconds.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from dcz.compressor.checkpoint import compress_checkpoint
from dcz.compressor.tune import TuneSettings, tune_checkpoint
from tools.bench import minilm, minilm_calib
from tools.bench.minilm_palettize import SETTINGS, embeddings

BATCH = 16
COSINE_WEIGHT = 10.0


def spliced(sentences: list[str], count: int, seed: int) -> list[str]:
    """`count` sentences made of the first words of one sentence and the last words of another."""
    rng = random.Random(seed)
    words = [s.split() for s in sentences]
    out = []
    for _ in range(count):
        a, b = rng.sample(words, 2)
        out.append(" ".join(a[: rng.randint(1, len(a) - 1)] + b[rng.randint(1, len(b) - 1) :]))
    return out


def distillation(teacher, splice: int):
    """(loss(student, batch), batches(epoch)): the dense model's outputs as the targets."""
    import torch

    with torch.no_grad():
        ids, mask = minilm.tokenize(minilm_calib.CALIBRATION)
        scale = float(teacher.hidden(torch.from_numpy(ids), torch.from_numpy(mask))[torch.from_numpy(mask) > 0].var())

    def batches(epoch: int):
        sentences = list(minilm_calib.CALIBRATION) + spliced(
            minilm_calib.CALIBRATION, splice * len(minilm_calib.CALIBRATION), epoch
        )
        random.Random(1000 + epoch).shuffle(sentences)
        ids, mask = minilm.tokenize(sentences)
        for i in range(0, len(sentences), BATCH):
            b_ids, b_mask = torch.from_numpy(ids[i : i + BATCH]), torch.from_numpy(mask[i : i + BATCH])
            length = int(b_mask.sum(1).max())
            b_ids, b_mask = b_ids[:, :length], b_mask[:, :length]
            with torch.no_grad():
                target = teacher.hidden(b_ids, b_mask)
            yield b_ids, b_mask, target

    def loss(student, batch):
        ids, mask, target = batch
        states = student.hidden(ids, mask)
        real = mask > 0
        mse = ((states - target)[real] ** 2).mean() / scale
        cosine = (student.pool(states, mask) * student.pool(target, mask)).sum(-1).mean()
        return mse + COSINE_WEIGHT * (1 - cosine)

    return loss, batches


def cosine(path, ids, mask, reference) -> dict:
    import dcz.checkpoint

    state = dict(dcz.checkpoint.state_dict_items(path, framework="torch"))
    return minilm.cosine_fidelity([reference], [embeddings(minilm.load_model(state), ids, mask)])


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="4b-tensor-out5-word1.5-calib-feedback", choices=sorted(SETTINGS))
    parser.add_argument("--epochs", type=int, default=TuneSettings.epochs)
    parser.add_argument("--lr", type=float, default=TuneSettings.lr)
    parser.add_argument("--schedule", default=TuneSettings.schedule, choices=("constant", "cosine"))
    parser.add_argument("--splice", type=int, default=1, help="spliced sentences per calibration sentence per epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compressed", type=Path, help="tune this .dcz of --setting instead of compressing again")
    parser.add_argument("--keep", type=Path, help="also copy the tuned .dcz here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    source = minilm.model_folder() / "model.safetensors"
    ids, mask = minilm.tokenize(minilm.SENTENCES)
    teacher = minilm.load_model()
    reference = embeddings(teacher, ids, mask)
    settings, calib = SETTINGS[args.setting]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start = time.perf_counter()
        if args.compressed:
            (folder / "m.dcz").write_bytes(args.compressed.read_bytes())
        else:
            moments = minilm_calib.write_moments(folder / "moments.npz") if calib else None
            compress_checkpoint(source, folder / "m.dcz", settings, workers=args.workers, progress=False, calib=moments)
        compress_s = time.perf_counter() - start
        size = (folder / "m.dcz").stat().st_size
        before = cosine(folder / "m.dcz", ids, mask, reference)
        loss, batches = distillation(teacher, args.splice)
        tuned = tune_checkpoint(
            folder / "m.dcz",
            folder / "t.dcz",
            minilm.load_model(),
            loss,
            batches,
            minilm.parameter_names(),
            TuneSettings(epochs=args.epochs, lr=args.lr, schedule=args.schedule),
        )
        after = cosine(folder / "t.dcz", ids, mask, reference)
        if args.keep:
            args.keep.write_bytes((folder / "t.dcz").read_bytes())
    ratio = source.stat().st_size
    print(
        f"{args.setting}: {size:,} B {ratio / size:.2f}x "
        f"cos {before['min_cosine']:.4f} / {before['mean_cosine']:.4f} (compress {compress_s:.0f} s)\n"
        f"tuned {args.epochs} epochs lr {args.lr:g} {args.schedule} splice {args.splice}: {tuned['file_bytes']:,} B "
        f"{ratio / tuned['file_bytes']:.2f}x cos {after['min_cosine']:.4f} / {after['mean_cosine']:.4f} "
        f"(tune {tuned['seconds']:.0f} s; loss per epoch {', '.join(f'{x:.4f}' for x in tuned['losses'])})",
        flush=True,
    )


if __name__ == "__main__":
    main()
