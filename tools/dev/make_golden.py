"""Write the golden .dcz files and their expected arrays: tests/golden/v1_0 .. v1_4.

    python -m tools.dev.make_golden [--out DIR]     (DIR gets one folder per version)

Each golden file is small and covers one corner of its format version; beside it, a folder holds one
.npy per tensor (the exact decoded array) and manifest.json maps file -> [[tensor, .npy], ...] in file order. Every
later reader must keep loading these files to the same arrays (tests/formats/test_formats_golden.py
regenerates them into a temporary folder and compares the bytes, then loads each one).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from dcz import formats

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "tests" / "golden"


def _raw_file():
    return [
        formats.Raw("f32", np.array([1.5, -0.0, np.inf, -2.25], np.float32)),
        formats.Raw("f16", np.array([[0.5, -1.0], [65504.0, 2.0**-24]], np.float16)),
        formats.Raw("i64", np.array([1, -1, 2**62], np.int64)),
        formats.Raw("i32", np.array([-(2**31), 7], np.int32)),
        formats.Raw("i8", np.array([-128, 127], np.int8)),
        formats.Raw("u8", np.arange(5, dtype=np.uint8)),
        formats.Raw("scalar", np.array(3.0, np.float32)),
        formats.Raw("empty", np.zeros((0, 3), np.float32)),
    ], {}


def _sparse_file():
    rng = np.random.default_rng(1)
    mask = np.zeros((3, 300), bool)
    mask[0, [0, 1, 299]] = True  # a very long gap: 297 columns with 2-bit gaps -> 99 fillers
    mask[2, 150] = True  # row 1 stays empty
    values = rng.standard_normal((3, 300)).astype(np.float32)
    return [formats.Sparse("long_gaps", values, mask, 2)], {}


def _shared_file():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, (5, 2, 3))
    book = np.array([[-1, 0, 1, 1], [0.5, 0.5, 0.25, 0], [7, 8, 9, 10]], np.float32)  # repeated values
    return [
        formats.Shared("per_channel", labels, book, 2, group_rows=2),
        formats.Shared("one_bit", rng.integers(0, 2, 17), np.array([-0.5, 0.5], np.float32), 1),
    ], {}


def _deep_compression_tensors():
    rng = np.random.default_rng(3)
    fc_mask = rng.random((60, 200)) < 0.08
    fc_labels = rng.choice(32, (60, 200), p=np.sort(rng.dirichlet(np.ones(32)))[::-1])
    conv_mask = rng.random((6, 3, 3, 3)) < 0.6
    return [
        formats.SparseShared("fc.weight", fc_mask, fc_labels, np.linspace(-0.3, 0.3, 32).astype(np.float32), 5, 5),
        formats.Raw("fc.bias", rng.standard_normal(60).astype(np.float32)),
        formats.SparseShared(
            "conv.weight",
            conv_mask,
            rng.integers(0, 256, (6, 3, 3, 3)),
            np.linspace(-1, 1, 256).astype(np.float32),
            8,
            3,
        ),
        formats.SparseShared(
            "empty.weight", np.zeros((4, 0), bool), np.zeros((4, 0), np.int64), np.array([0.0], np.float32), 1, 1
        ),
    ]


def _dc_huffman():
    return _deep_compression_tensors(), {"huffman": True}


def _dc_fixed():
    return _deep_compression_tensors(), {"huffman": False}


def _chunked_file():
    """Version 1.1: chunked Huffman streams (chunk size forced small, so the file stays small):
    5-bit labels and gaps, 10-bit row counts, a one-symbol table, chunk counts that divide the
    symbol count exactly and ones that do not."""
    rng = np.random.default_rng(4)
    fc_mask = rng.random((30, 100)) < 0.15
    fc_labels = rng.choice(32, (30, 100), p=np.sort(rng.dirichlet(np.ones(32)))[::-1])
    wide_mask = rng.random((24, 600)) < 0.9  # ~540 entries a row: 10-bit row counts, 1-bit gaps
    wide_labels = rng.choice(4, (24, 600), p=[0.85, 0.1, 0.03, 0.02])
    return [
        formats.SparseShared("fc.weight", fc_mask, fc_labels, np.linspace(-0.3, 0.3, 32).astype(np.float32), 5, 5),
        formats.SparseShared("wide.weight", wide_mask, wide_labels, np.array([0, 1, 2, 3], np.float32), 2, 1),
        formats.Shared("constant", np.zeros((8, 64), np.int64), np.array([0.125, 0.5, 1, 2], np.float32), 2),
    ], {"chunk_symbols": 8}


def _chunked_mixed():
    """Version 1.1 written by the default policy: a stream long enough to be chunked beside short ones."""
    rng = np.random.default_rng(5)
    labels = rng.choice(16, 70_000, p=np.sort(rng.dirichlet(np.ones(16)))[::-1])
    return [
        formats.Shared("long", labels, np.linspace(-1, 1, 16).astype(np.float32), 4),
        formats.Raw("bias", np.arange(4, dtype=np.float32)),
    ], {}


def _compact_sparse():
    """Version 1.2: a compressed header over a Deep Compression tensor with a shared bias."""
    tensors, _ = _dc_huffman()
    bias = formats.Shared("fc2.bias", np.arange(80) % 8, np.linspace(-0.1, 0.1, 8).astype(np.float32), 3)
    return [*tensors, bias], {"compact_header": True, "chunk_symbols": 0}


def _compact_chunked():
    """Version 1.2 with a chunked stream too (the minor version says 2, the stream says coding 2)."""
    tensors, kw = _chunked_file()
    return tensors, {**kw, "compact_header": True}


def _range_coded():
    """Version 1.3: range-coded streams (SPEC 3.4.2) beside fixed and Huffman ones: skewed 2-bit labels that
    follow the previous label (order-1 model), 5-bit gaps and labels (order 0), an 8-bit label stream, a
    one-symbol stream, a 1-bit stream, and 10-bit row counts (too wide for the range coding: fixed width)."""
    rng = np.random.default_rng(6)
    mask = rng.random((40, 120)) < 0.1
    runs = np.repeat(rng.choice(4, 600, p=[0.7, 0.2, 0.07, 0.03]), 8)[: 40 * 120].reshape(40, 120)
    fc_labels = rng.choice(32, (40, 120), p=np.sort(rng.dirichlet(np.ones(32)))[::-1])
    return [
        formats.SparseShared("runs.weight", mask, runs, np.array([-1, -0.5, 0.5, 1], np.float32), 2, 5),
        formats.SparseShared("fc.weight", mask, fc_labels, np.linspace(-0.3, 0.3, 32).astype(np.float32), 5, 5),
        formats.Shared(
            "bytes",
            rng.choice(256, 300, p=np.sort(rng.dirichlet(np.ones(256) * 0.1))[::-1]),
            np.linspace(-1, 1, 256).astype(np.float32),
            8,
        ),
        formats.Shared("constant", np.zeros(500, np.int64), np.array([0.25, 1.0], np.float32), 1),
        formats.Shared("one_bit", rng.choice(2, 400, p=[0.95, 0.05]), np.array([0.0, 3.0], np.float32), 1),
        formats.SparseShared(
            "wide.weight", rng.random((3, 600)) < 0.9, rng.choice(2, (3, 600)), np.array([0, 1], np.float32), 1, 1
        ),
    ], {"range_coding": True, "chunk_symbols": 0}


def _range_compact():
    """Version 1.3 with a compressed header too (the minor version says 3; the header's first byte says zlib)."""
    tensors, kw = _range_coded()
    return tensors[:2], {**kw, "compact_header": True}


V1_0 = {
    "raw_dtypes": _raw_file,
    "sparse_long_gaps": _sparse_file,
    "shared_grouped": _shared_file,
    "deep_compression_huffman": _dc_huffman,
    "deep_compression_fixed": _dc_fixed,
}
V1_1 = {
    "chunked_huffman": _chunked_file,
    "chunked_by_policy": _chunked_mixed,
}
V1_2 = {
    "compact_header": _compact_sparse,
    "compact_header_chunked": _compact_chunked,
}
V1_3 = {
    "range_coded": _range_coded,
    "range_coded_compact_header": _range_compact,
}


def _compact(build):
    """Version 1.4: the same tensors in the compact container (SPEC 2.6)."""

    def compact():
        tensors, kw = build()
        return tensors, {**kw, "compact_container": True}

    compact.__doc__ = f"{build.__doc__ or build.__name__} (compact container)"
    return compact


V1_4 = {
    "compact_raw_dtypes": _compact(_raw_file),  # every dtype, a scalar, an empty tensor; names sharing "f", "i"
    "compact_sparse_long_gaps": _compact(_sparse_file),
    "compact_shared_grouped": _compact(_shared_file),  # grouped codebooks: group_rows stored, groups derived
    "compact_deep_compression": _compact(_dc_huffman),  # Huffman streams, .weight / .bias names
    "compact_chunked": _compact(_chunked_file),  # chunked Huffman after the varint stream header
    "compact_range_coded": _compact(_range_coded),  # range, Huffman and fixed-width streams
}
VERSIONS = {
    "v1_0": V1_0,
    "v1_1": V1_1,
    "v1_2": V1_2,
    "v1_3": V1_3,
    "v1_4": V1_4,
}  # folder -> generator entries; a folder is never rewritten
GOLDEN = V1_0  # kept for callers of the v1.0 set


def _npy_name(index: int, name: str) -> str:
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.npy"


def metadata_for(version: str) -> dict:
    return {
        "user.golden": version.replace("_", "."),  # "v1_0" -> "v1.0"
        "source.model": "synthetic",
        "compress.label_bits": [5, 8],
    }


def generate(out: Path, version: str = "v1_0") -> dict:
    """Write every golden file of `version` and its expected arrays into `out`; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for stem, build in VERSIONS[version].items():
        tensors, kw = build()
        if version == "v1_0":
            kw = {"chunk_symbols": 0, **kw}  # a 1.0 file whatever the writer's policy becomes
        path = out / f"{stem}.dcz"
        formats.write(path, tensors, graph=f"graph of {stem}".encode(), metadata=metadata_for(version), **kw)
        folder = out / stem
        folder.mkdir(exist_ok=True)
        entry = []
        with formats.open(path) as f:
            for i, name in enumerate(f.names):
                npy = _npy_name(i, name)
                np.save(folder / npy, f.tensor(name), allow_pickle=False)
                entry.append([name, f"{stem}/{npy}"])
        manifest[f"{stem}.dcz"] = entry
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for version in VERSIONS:
        manifest = generate(args.out / version, version)
        print(f"wrote {len(manifest)} golden files to {args.out / version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
