"""Where a `.dcz` file's bytes go, stream by stream, and what other position codings would cost.

For every stream: its bytes, symbols, coding, bits per symbol as coded (payload + table) and the
order-0 empirical entropy of its symbols (the floor for any symbol-by-symbol code, Huffman's
included). For every pruned tensor, the positions of the kept weights coded four ways, in bits
per kept weight: as stored (CSR row counts + b-bit gaps with fillers, after Huffman), Golomb-Rice
of the flat gaps (best k), Elias-gamma of the flat gaps, and the entropy of the mask as an
i.i.d. Bernoulli(density) source (what an adaptive binary arithmetic coder of the mask would
approach), plus the order-0 entropy of the flat gaps.

    python -m tools.bench.frontier_streams FILE.dcz [FILE.dcz ...]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from dcz import formats
from dcz.formats.layout import SPARSE_ENCODINGS

_STREAM_ROLES = ("rows", "gaps", "labels")


def entropy_bits(symbols: np.ndarray) -> float:
    """N * H0 (bits) of a symbol sequence."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return float(-(counts * np.log2(p)).sum())


def golomb_rice_bits(gaps: np.ndarray) -> tuple[float, int]:
    """Fewest bits of Rice-coding `gaps` (>= 0) over k = 0..20, and that k."""
    best = min((float(((gaps >> k) + 1 + k).sum()), k) for k in range(21))
    return best


def elias_gamma_bits(gaps: np.ndarray) -> float:
    values = gaps.astype(np.float64) + 1
    return float((2 * np.floor(np.log2(values)) + 1).sum())


def bernoulli_bits(numel: int, kept: int) -> float:
    p = kept / numel if numel else 0.0
    if p in (0.0, 1.0):
        return 0.0
    return numel * -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def flat_gaps(indptr: np.ndarray, indices: np.ndarray, cols: int) -> np.ndarray:
    """Zero-run lengths between kept weights in the flattened view (the first from position 0)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    flat = rows.astype(np.int64) * cols + indices.astype(np.int64)
    return np.diff(flat, prepend=-1) - 1


def analyse(path: str) -> str:
    lines = [f"### {path}", ""]
    with formats.open(path) as dcz:
        report = dcz.size_report()
        lines += [
            f"file {report.file_bytes:,} B = header {report.header_bytes:,} B + graph {report.graph_bytes:,} B + "
            f"padding {report.padding_bytes:,} B + tensors {sum(t.huffman_bytes for t in report.tensors):,} B",
            "",
            "| tensor | stream | bytes | symbols | coding | coded bits/symbol | entropy bits/symbol | coded / entropy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        positions = []
        for name in dcz.names:
            entry = dcz._entry(name)
            for role, index in sorted(entry.sections.items()):
                section_bytes = dcz._sections[index].length
                if role not in _STREAM_ROLES:
                    lines.append(f"| {name} | {role} (array) | {section_bytes:,} | | | | | |")
                    continue
                (symbols,) = dcz._decode_streams([(entry, role)])
                n = symbols.size
                coded = 8 * (section_bytes - 16)  # the 16-byte stream header is framing
                h = entropy_bits(symbols)
                coding = {0: "fixed", 1: "huffman", 2: "huffman chunked"}[dcz._stream_headers[index].info.coding]
                ratio = f"{coded / h:.3f}" if h else "-"
                lines.append(
                    f"| {name} | {role} | {section_bytes:,} | {n:,} | {coding} | {coded / max(n, 1):.2f} | "
                    f"{h / max(n, 1):.2f} | {ratio} |"
                )
            if entry.encoding in SPARSE_ENCODINGS and all(entry.shape):
                positions.append(_positions(dcz, name, entry))
    lines += [
        "",
        "positions of the kept weights, bits per kept weight:",
        "",
        "| tensor | kept | density | stored (rows + gaps) | Golomb-Rice (k) | Elias-gamma | mask entropy (Bernoulli) "
        "| flat-gap entropy |",
        "|---|---|---|---|---|---|---|---|",
        *positions,
    ]
    return "\n".join(lines)


def _positions(dcz, name: str, entry: dict) -> str:
    indptr, indices, _ = dcz.csr(name)
    shape = entry.shape
    numel, kept = int(np.prod(shape)), int(indptr[-1])
    cols = numel // shape[0] if shape[0] else 0
    gaps = flat_gaps(indptr, indices, cols)
    stored = 8 * sum(dcz._sections[entry.sections[r]].length - 16 for r in ("rows", "gaps"))
    rice, k = golomb_rice_bits(gaps)
    per = lambda bits: f"{bits / max(kept, 1):.2f}"  # noqa: E731
    return (
        f"| {name} | {kept:,} | {kept / numel:.2%} | {per(stored)} | {per(rice)} ({k}) | {per(elias_gamma_bits(gaps))} "
        f"| {per(bernoulli_bits(numel, kept))} | {per(entropy_bits(gaps))} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    print("\n\n".join(analyse(f) for f in args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
