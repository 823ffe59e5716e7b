"""NNCodec (MPEG-7 part 17 / NNR reference codec, DeepCABAC) next to DCZ on the same pruned + shared tensors.

Decodes every tensor of each `.dcz` (the exact values the file stores: zeros and the codebook
entries), hands them to NNCodec in its own environment and prints, per tensor, our stored bytes
next to NNCodec's bitstream bytes and its largest decoding error.

NNCodec is an sdist pinned to numpy<2 (and it imports torchvision, pandas, h5py), so it lives in a
separate venv that reuses this machine's CPU torch:

    python3 -m venv --system-site-packages /tmp/nncvenv
    /tmp/nncvenv/bin/pip install 'numpy<2' pybind11 'pandas<2.3' h5py ptflops torchmetrics
    /tmp/nncvenv/bin/pip install --no-deps --no-build-isolation nncodec==2.1.3
    python -m tools.bench.nncodec_compare lenet300.dcz lenet5.dcz --nnc-python /tmp/nncvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dcz import formats

INNER = Path(__file__).with_name("nncodec_encode.py")


def stored_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """The decoded float tensors of a .dcz, each tensor's stored bytes, and the file's bytes."""
    with formats.open(path) as dcz:
        arrays = {name: np.asarray(dcz.tensor(name), dtype=np.float32) for name in dcz.names}
        report = dcz.size_report()
    sizes = {t.name: t.huffman_bytes for t in report.tensors}  # bytes in the file
    return arrays, sizes, report.file_bytes


def run_nncodec(python: str, arrays: dict[str, np.ndarray]) -> dict:
    with tempfile.TemporaryDirectory(prefix="dcz-nnc-") as folder:
        npz, out = Path(folder) / "tensors.npz", Path(folder) / "result.json"
        np.savez(npz, **arrays)
        done = subprocess.run([python, str(INNER), str(npz), str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"nncodec run failed ({python}): {tail}")
        return json.loads(out.read_text())


def table(name: str, sizes: dict[str, int], file_bytes: int, result: dict) -> str:
    settings = list(result)
    head = (
        "| tensor | values | nonzero | DCZ bytes | " + " | ".join(f"NNCodec {s} (max error)" for s in settings) + " |"
    )
    lines = [f"### {name}", "", head, "|" + "---|" * (4 + len(settings))]
    for tensor, ours in sizes.items():
        row = result[settings[0]]["tensors"][tensor]
        cells = [
            f"{result[s]['tensors'][tensor]['bytes']:,} ({result[s]['tensors'][tensor]['max_error']:.1e})"
            for s in settings
        ]
        lines.append(f"| {tensor} | {row['size']:,} | {row['nonzero']:,} | {ours:,} | " + " | ".join(cells) + " |")
    tensors = sum(sizes.values())
    sums = [f"{sum(r['bytes'] for r in result[s]['tensors'].values()):,}" for s in settings]
    lines.append(f"| all tensors | | | {tensors:,} | " + " | ".join(sums) + " |")
    whole = [f"{result[s]['whole_model_bytes']:,}" for s in settings]
    lines.append(f"| whole file / one NNCodec bitstream | | | {file_bytes:,} | " + " | ".join(whole) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help=".dcz files")
    parser.add_argument("--nnc-python", required=True, help="python of the NNCodec environment")
    args = parser.parse_args(argv)
    for path in args.files:
        arrays, sizes, file_bytes = stored_tensors(path)
        result = run_nncodec(args.nnc_python, arrays)
        for setting in result.values():
            for tensor, row in setting["tensors"].items():
                row.update(size=int(arrays[tensor].size), nonzero=int(np.count_nonzero(arrays[tensor])))
        print(table(path.name, sizes, file_bytes, result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
