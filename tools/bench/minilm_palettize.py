"""all-MiniLM-L6-v2's safetensors palettized with 16-entry codebooks: size and held-out sentence cosine.

`python -m tools.bench.minilm_palettize [--only NAME ...]` compresses the package's model.safetensors
with each setting below through `compress_checkpoint` (what `dcz compress` runs), decodes it with
`dcz.checkpoint.state_dict_items` and prints the size ratio and min / mean cosine of the 54
sentence embeddings of `minilm.SENTENCES` to the dense model's. `calib` rows use input moments from
`minilm_calib.CALIBRATION` (other sentences: held out): `refit` refits the codebooks only
(--no-error-feedback), `feedback` also chooses the labels with error feedback (compressor.gptq).

`--select` is how settings are chosen without looking at the 54: the moments come from the calibration
sentences but every sixth (`VALIDATION`, 60 sentences), and each row also prints the min / mean cosine
of those 60, which no setting was fitted on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dcz.compressor.checkpoint import ACCURATE, Settings, compress_checkpoint
from tools.bench import minilm, minilm_calib

WHOLE = 1 << 30  # one codebook per tensor
FIVE = (("encoder.*", 5), ("embeddings.position*", 5))  # all but the word embeddings at 5 bits
# one 16-entry codebook per tensor; 5% of each encoder matrix and 1.5% of the word embeddings kept exactly
# (the encoder's error reaches every token, an embedding row's only its own; chosen on calibration sentences
# held out of the moments, docs/benchmarks/checkpoints.md)
FOUR_BIT = Settings(bits=4, group_rows=WHOLE, outliers=0.05, outliers_for=(("embeddings.word*", 0.015),))


def _word(fraction: float) -> tuple:
    return (("embeddings.word*", fraction),)


SETTINGS = {
    "4b-default": (Settings(bits=4), False),
    "4b-default-out0.5": (Settings(bits=4, outliers=0.005), False),
    "4b-default-out0.5-calib-refit": (Settings(bits=4, outliers=0.005, error_feedback=False), True),
    "4b-default-out0.5-calib-feedback": (Settings(bits=4, outliers=0.005), True),
    "4b-default-out1-calib-feedback": (Settings(bits=4, outliers=0.01), True),
    "4b-default-out1.5-calib-feedback": (Settings(bits=4, outliers=0.015), True),
    "4b-tensor-out5-word1.5-calib-feedback": (FOUR_BIT, True),
    "4b-tensor-out5.5-word1-calib-feedback": (replace(FOUR_BIT, outliers=0.055, outliers_for=_word(0.01)), True),
    "4b-tensor-out4.5-word2-calib-feedback": (replace(FOUR_BIT, outliers=0.045, outliers_for=_word(0.02)), True),
    "4b-tensor-out6-word0-calib-feedback": (replace(FOUR_BIT, outliers=0.06, outliers_for=_word(0.0)), True),
    "4b-g64-out4.5-word1.5-calib-feedback": (replace(FOUR_BIT, group_rows=64, outliers=0.045), True),
    "4b-tensor-out3-calib-feedback": (replace(FOUR_BIT, outliers=0.03, outliers_for=()), True),
    "4b-row-out0.5-calib-refit": (Settings(bits=4, group_rows=1, outliers=0.005, error_feedback=False), True),
    "word4b-rest5b-tensor-out1-it100": (
        Settings(bits=4, group_rows=WHOLE, outliers=0.01, iterations=100, bits_for=FIVE),
        False,
    ),
    "word4b-rest5b-tensor-out1-it100-calib": (
        Settings(bits=4, group_rows=WHOLE, outliers=0.01, iterations=100, bits_for=FIVE),
        True,
    ),
    "accurate (5b)": (ACCURATE, False),
}


def embeddings(model, ids, mask) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


VALIDATION = minilm_calib.CALIBRATION[::6]  # --select: held out of the moments


def main(argv=None) -> None:
    import torch

    import dcz.checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="settings to run (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--select", action="store_true", help="moments without VALIDATION; print its cosines too")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    source = minilm.model_folder() / "model.safetensors"
    dense = minilm.load_model()
    sets = {"test": minilm.SENTENCES, **({"validation": VALIDATION} if args.select else {})}
    tokens = {key: minilm.tokenize(sentences) for key, sentences in sets.items()}
    references = {key: embeddings(dense, *tokens[key]) for key in sets}
    fit = [s for s in minilm_calib.CALIBRATION if s not in VALIDATION] if args.select else None
    with tempfile.TemporaryDirectory() as folder:
        moments = minilm_calib.write_moments(Path(folder) / "moments.npz", fit)
        for name in args.only or SETTINGS:
            settings, calib = SETTINGS[name]
            start = time.perf_counter()
            out = Path(folder) / "m.dcz"
            summary = compress_checkpoint(
                source, out, settings, workers=args.workers, progress=False, calib=moments if calib else None
            )
            seconds = time.perf_counter() - start
            model = minilm.load_model(dict(dcz.checkpoint.state_dict_items(out, framework="torch")))
            cosines = []
            for key in sets:
                cos = minilm.cosine_fidelity([references[key]], [embeddings(model, *tokens[key])])
                cosines.append(f"{key} cos {cos['min_cosine']:.4f} / {cos['mean_cosine']:.4f}")
            ratio = source.stat().st_size / summary["file_bytes"]
            print(
                f"{name:40s} {summary['file_bytes']:>11,} B {ratio:5.2f}x  {'  '.join(cosines)}  compress {seconds:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
