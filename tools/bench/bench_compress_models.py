"""Sizes by stage for torchvision's architectures (tools/bench/archs.py) with BatchNorm and residuals.

    python -m tools.bench.bench_compress_models [--models resnet18,mobilenet_v2] [--side 32]

For each model (randomly initialised, num_classes=10: nothing is downloaded): the dense ONNX file;
post-training compression with `compressor.compress` (BN folded; conv 70% / fc 90% of weights
pruned by magnitude per layer; 8-bit conv / 5-bit fc codebooks, the paper's defaults); the pruned +
shared weights stored as a dense ONNX (and zipped); the `.dcz` at P, P+Q (fixed width, huffman=False)
and P+Q+H; the same dense ONNX compressed by `compress_onnx` without torch. Wall times per step.
Prints the Markdown of docs/benchmarks/compressor-models.md.
Random weights are not trained weights: their distribution is flatter, so Huffman coding gains
less than on trained models (the paper's P+Q+H column) and accuracy is not meaningful.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = {"by_type": {"conv": {"prune": "sparsity", "sparsity": 0.7}, "fc": {"prune": "sparsity", "sparsity": 0.9}}}


def zipped(data: bytes) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model.onnx", data)
    return len(buffer.getvalue())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


BITS: dict[str, dict[str, float]] = {}


def bits_per_kept_weight(sizes) -> dict[str, float]:
    """Label and index (gaps + row counts) bits per kept weight over the pruned + shared tensors, P+Q and P+Q+H."""
    tensors = [t for t in sizes.tensors if t.encoding == "sparse_shared"]
    nnz = sum(t.nnz for t in tensors)
    per = lambda key, roles: 8 * sum(t.streams[r][key] for t in tensors for r in roles) / nnz  # noqa: E731
    return {
        "labels P+Q": per("fixed_bytes", ["labels"]),
        "labels P+Q+H": per("bytes", ["labels"]),
        "index P+Q": per("fixed_bytes", ["gaps", "rows"]),
        "index P+Q+H": per("bytes", ["gaps", "rows"]),
    }


def bench_model(name: str, side: int, workdir: Path) -> list[tuple[str, int, float | None]]:
    """(row label, bytes, seconds to produce) for one model."""
    import torch

    from dcz.compressor.export import export_dcz, export_onnx_dense
    from dcz.compressor.onnx_in import compress_onnx
    from dcz.compressor.pipeline import compress
    from tools.bench import archs

    torch.manual_seed(0)
    model = getattr(archs, name)(num_classes=10).eval()
    example = torch.zeros(1, 3, side, side)
    dense, t_dense = timed(export_onnx_dense, model, example)
    result, t_compress = timed(compress, model, example, CONFIG, progress=False)
    shared_onnx = export_onnx_dense(result.model, example, result.layers)
    fixed, t_fixed = timed(export_dcz, result.model, example, result.layers, workdir / f"{name}.pq.dcz", huffman=False)
    final, t_final = timed(result.save, workdir / f"{name}.dcz")
    onnx_in, t_onnx_in = timed(compress_onnx, dense, CONFIG)
    totals = final.totals()
    BITS[name] = bits_per_kept_weight(final)
    return [
        ("dense fp32 weights", totals["dense_bytes"], None),
        ("dense ONNX", len(dense), t_dense),
        ("dense ONNX, zipped", zipped(dense), None),
        ("compress(): fold BN, prune, k-means (time only)", totals["dense_bytes"], t_compress),
        ("pruned + shared, dense ONNX", len(shared_onnx), None),
        ("pruned + shared, dense ONNX, zipped", zipped(shared_onnx), None),
        ("P: pruned tensors (CSR fp32 values + gaps)", totals["pruned_bytes"], None),
        ("P+Q: .dcz, fixed width (huffman=False)", fixed.file_bytes, t_fixed),
        ("P+Q+H: .dcz", final.file_bytes, t_final),
        ("P+Q+H: .dcz from the dense ONNX without torch (compress_onnx)", len(onnx_in.dcz), t_onnx_in),
    ]


def bench_selection(size: int = 11_000_000, sparsity: float = 0.7) -> tuple[float, float, bool]:
    """ONNX-in's O(n) magnitude selection vs a full stable argsort on `size` values: (ours s, argsort s, same mask)."""
    import numpy as np

    from dcz.compressor.onnx_in import _keep_smallest_removed

    magnitude = np.abs(np.random.default_rng(0).normal(size=size).astype(np.float32))
    ours, t_ours = timed(_keep_smallest_removed, magnitude, sparsity)
    start = time.perf_counter()
    sorted_keep = np.ones(size, dtype=bool)
    sorted_keep[np.argsort(magnitude, kind="stable")[: int(round(sparsity * size))]] = False
    t_sort = time.perf_counter() - start
    return t_ours, t_sort, bool((ours == sorted_keep).all())


def markdown(results: dict[str, list], side: int, command: str, selection=None) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        "2 shared cores, torch.set_num_threads(1) (times are wall-clock on a busy machine: indicative only).",
        "",
        f"Randomly initialised torchvision models (num_classes=10, {side}x{side} input), post-training: BN folded, "
        "per-layer magnitude pruning (conv 70%, fc 90%), 8-bit conv / 5-bit fc codebooks, no fine-tuning. "
        "Random weights are not trained weights (accuracy is meaningless here, and trained weights, peaked "
        "near zero, give other label and gap statistics): these rows show what the encoding does with this "
        "many weights at these settings.",
        "",
    ]
    for name, rows in results.items():
        dense = rows[0][1]
        lines += [f"**{name}**", "", "| stage | bytes | vs dense fp32 | time s |", "|---|--:|--:|--:|"]
        for label, nbytes, seconds in rows:
            lines.append(
                f"| {label} | {nbytes:,} | {dense / nbytes:.1f}x | {'' if seconds is None else f'{seconds:.2f}'} |"
            )
        lines.append("")
    if BITS:
        keys = list(next(iter(BITS.values())))
        lines += [
            "Bits per kept weight over the pruned + shared tensors (where Huffman coding gains):",
            "",
            "| model | " + " | ".join(keys) + " |",
            "|---|" + "--:|" * len(keys),
        ]
        lines += [f"| {name} | " + " | ".join(f"{b[k]:.2f}" for k in keys) + " |" for name, b in BITS.items()]
        lines.append("")
    if selection is not None:
        ours, by_sort, same = selection
        lines += [
            "**Pruning selection (ONNX-in, numpy)**: removing the 70% smallest of 11,000,000 magnitudes "
            f"with np.partition takes {ours:.2f} s against {by_sort:.2f} s for a stable argsort "
            f"({by_sort / ours:.0f}x faster, {'identical' if same else 'DIFFERENT'} mask, ties broken the same way).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--side", type=int, default=32, help="input height and width (default 32)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results[name] = bench_model(name, args.side, Path(tmp))
    command = "python -m tools.bench.bench_compress_models " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown(results, args.side, command.strip(), bench_selection()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
