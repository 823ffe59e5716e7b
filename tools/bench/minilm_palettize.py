"""all-MiniLM-L6-v2's safetensors palettized with 16-entry codebooks: size and held-out sentence cosine.

`python -m tools.bench.minilm_palettize [--only NAME ...]` compresses the package's model.safetensors
with each setting below through `compress_checkpoint` (what `dcz compress` runs), decodes it with
`dcz.checkpoint.state_dict_items` and prints the size ratio and min / mean cosine of the 54
sentence embeddings of `minilm.SENTENCES` to the dense model's. `calib` rows use input moments from
`minilm_calib.CALIBRATION` (other sentences: held out): `refit` refits the codebooks only
(--no-error-feedback), `feedback` also chooses the labels with error feedback (compressor.gptq).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dcz.compressor.checkpoint import ACCURATE, Settings, compress_checkpoint
from tools.bench import minilm, minilm_calib

WHOLE = 1 << 30  # one codebook per tensor
FIVE = (("encoder.*", 5), ("embeddings.position*", 5))  # all but the word embeddings at 5 bits
SETTINGS = {
    "4b-default": (Settings(bits=4), False),
    "4b-default-out0.5": (Settings(bits=4, outliers=0.005), False),
    "4b-default-out0.5-calib-refit": (Settings(bits=4, outliers=0.005, error_feedback=False), True),
    "4b-default-out0.5-calib-feedback": (Settings(bits=4, outliers=0.005), True),
    "4b-default-out1-calib-feedback": (Settings(bits=4, outliers=0.01), True),
    "4b-default-out1.5-calib-feedback": (Settings(bits=4, outliers=0.015), True),
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


def main(argv=None) -> None:
    import torch

    import dcz.checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="settings to run (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    source = minilm.model_folder() / "model.safetensors"
    ids, mask = minilm.tokenize(minilm.SENTENCES)
    reference = embeddings(minilm.load_model(), ids, mask)
    with tempfile.TemporaryDirectory() as folder:
        moments = minilm_calib.write_moments(Path(folder) / "moments.npz")
        for name in args.only or SETTINGS:
            settings, calib = SETTINGS[name]
            start = time.perf_counter()
            out = Path(folder) / "m.dcz"
            summary = compress_checkpoint(
                source, out, settings, workers=args.workers, progress=False, calib=moments if calib else None
            )
            seconds = time.perf_counter() - start
            state = dict(dcz.checkpoint.state_dict_items(out, framework="torch"))
            cos = minilm.cosine_fidelity([reference], [embeddings(minilm.load_model(state), ids, mask)])
            ratio = source.stat().st_size / summary["file_bytes"]
            print(
                f"{name:40s} {summary['file_bytes']:>11,} B {ratio:5.2f}x  "
                f"cos {cos['min_cosine']:.4f} / {cos['mean_cosine']:.4f}  compress {seconds:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
