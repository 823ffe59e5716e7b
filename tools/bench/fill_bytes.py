"""How dense one layer may be for a file to reach a byte target: spend freed bytes on density.

Reads a written `.dcz` (e.g. a frontier file), takes the layer's coded bytes per kept weight as the
price of one more weight, and prints the sparsity that brings the whole file to `--file-bytes`
(rounded so it stays under). This is how the frontier's fc1 density follows the byte budget when the
container shrinks (format 1.3's range coding, 1.4's tensor table): e.g. LeNet-300-100 at 100x is
1,066,400 / 100 = 10,664 B, of which a margin is kept for seed-to-seed size spread.

    python -m tools.bench.fill_bytes lenet300.dcz --layer fc1.weight --file-bytes 10560

The price is measured at the current density; sparse position coding gets cheaper per weight as the
layer grows denser, so the estimate errs on the small side. A seed-to-seed spread of ~30-60 B in file
size (measured on the frontier's three seeds) is what the margin is for.
"""

from __future__ import annotations

import argparse
import math
import sys

from dcz import formats


def sparsity_for(path: str, layer: str, file_bytes: int) -> dict:
    """{'file_bytes', 'layer_bytes', 'kept', 'numel', 'bits_per_kept', 'kept_target', 'sparsity'}."""
    with formats.open(path) as dcz:
        report = dcz.size_report()
    sizes = {t.name: t for t in report.tensors}
    if layer not in sizes:
        raise SystemExit(f"{path}: no tensor {layer!r} (tensors: {', '.join(sizes)})")
    tensor = sizes[layer]
    if not tensor.nnz:
        raise SystemExit(f"{path}: {layer} keeps no weight, so it has no price per weight")
    bits_per_kept = 8 * tensor.huffman_bytes / tensor.nnz
    kept_target = tensor.nnz + math.floor(8 * (file_bytes - report.file_bytes) / bits_per_kept)
    kept_target = max(1, min(tensor.numel, kept_target))
    # rounded up to 4 decimals: never more weights than the target allows
    sparsity = math.ceil((1 - kept_target / tensor.numel) * 10_000) / 10_000
    return {
        "file_bytes": int(report.file_bytes),
        "layer_bytes": int(tensor.huffman_bytes),
        "kept": int(tensor.nnz),
        "numel": int(tensor.numel),
        "bits_per_kept": bits_per_kept,
        "kept_target": int(kept_target),
        "sparsity": sparsity,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dcz", help="a written .dcz at the current settings")
    parser.add_argument("--layer", required=True, help="the tensor whose density takes the bytes, e.g. fc1.weight")
    parser.add_argument("--file-bytes", type=int, required=True, help="the whole file's target size in bytes")
    args = parser.parse_args(argv)
    got = sparsity_for(args.dcz, args.layer, args.file_bytes)
    print(
        f"{args.dcz}: {got['file_bytes']:,} B; {args.layer} {got['layer_bytes']:,} B for {got['kept']:,} of "
        f"{got['numel']:,} weights ({got['bits_per_kept']:.2f} bits each)\n"
        f"for {args.file_bytes:,} B: keep ~{got['kept_target']:,} -> sparsity {got['sparsity']:.4f} "
        f"({100 * (1 - got['sparsity']):.2f}% kept)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
