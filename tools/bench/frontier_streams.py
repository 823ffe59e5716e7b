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
from tools.bench import stream_coders

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
            "Per stream, bytes after the stream header (table included); entropy = N x H0 / 8:",
            "",
            "| tensor | stream | symbols | width | as written (coding) | static rANS + table | adaptive range, "
            "order 0 (shift) | adaptive range, best of order 0 / 1 (shift/order) | entropy (order 0) "
            "| written / entropy | best / entropy |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        positions, written_total, best_total = [], 0, 0
        for name in dcz.names:
            entry = dcz._entry(name)
            for role, index in sorted(entry.sections.items()):
                if role not in _STREAM_ROLES:
                    continue
                (symbols,) = dcz._decode_streams([(entry, role)])
                info = dcz._stream_headers[index].info
                written = info.table_bytes + info.payload_bytes  # the stream header (16 B; 1.4: 4-8 B) is framing
                h = entropy_bits(symbols) / 8
                rans = stream_coders.static_rans_bytes(symbols)
                adaptive0 = adaptive = "-"
                best = written
                if info.width <= 8 and symbols.size:
                    size0, model0 = stream_coders.adaptive_stream_bytes(symbols, info.width, (0,))
                    size, model = stream_coders.adaptive_stream_bytes(symbols, info.width)
                    adaptive0, adaptive = f"{size0:,} ({model0})", f"{size:,} ({model})"
                    best = min(best, size)
                written_total += written
                best_total += best
                coding = {0: "fixed", 1: "huffman", 2: "huffman chunked", 3: "range"}[info.coding]
                ratio = lambda b: f"{b / h:.3f}" if h else "-"  # noqa: E731
                lines.append(
                    f"| {name} | {role} | {symbols.size:,} | {info.width} | {written:,} ({coding}) | {rans:,} | "
                    f"{adaptive0} | {adaptive} | {h:,.0f} | {ratio(written)} | {ratio(best)} |"
                )
            if entry.encoding in SPARSE_ENCODINGS and all(entry.shape):
                positions.append(_positions(dcz, name, entry))
    lines += [
        "",
        f"streams as written {written_total:,} B; the smaller of as written and adaptive range (order 0 / 1) per stream "
        f"{best_total:,} B ({best_total - written_total:+,} B, {(best_total - written_total) / report.file_bytes:+.2%}"
        " of the file)",
        "",
        "positions of the kept weights, bytes (bits per kept weight):",
        "",
        "| tensor | kept | density | stored rows + gaps | rows + gaps, adaptive range | Golomb-Rice of the true gaps "
        "(k) | Elias-gamma | mask range, no context | mask range, left bit | mask range, left + above | "
        "mask entropy (Bernoulli) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *positions,
    ]
    return "\n".join(lines)


def _positions(dcz, name: str, entry: dict) -> str:
    indptr, indices, _ = dcz.csr(name)
    shape = entry.shape
    numel, kept = int(np.prod(shape)), int(indptr[-1])
    rows = shape[0]
    cols = numel // rows
    gaps = flat_gaps(indptr, indices, cols)
    stored, adaptive = 0, 0
    for role in ("rows", "gaps"):
        index = entry.sections[role]
        info = dcz._stream_headers[index].info
        written = info.table_bytes + info.payload_bytes  # without the stream header
        stored += written
        (symbols,) = dcz._decode_streams([(entry, role)])
        width = info.width
        adaptive += min(written, stream_coders.adaptive_stream_bytes(symbols, width)[0]) if width <= 8 else written
    rice, k = golomb_rice_bits(gaps)
    mask = np.zeros((rows, cols), dtype=bool)
    mask[np.repeat(np.arange(rows), np.diff(indptr)), indices] = True
    masks = [stream_coders.mask_bytes(mask, context)[0] for context in stream_coders.MASK_CONTEXTS]
    per = lambda nbytes: f"{nbytes:,.0f} ({8 * nbytes / max(kept, 1):.2f})"  # noqa: E731
    return (
        f"| {name} | {kept:,} | {kept / numel:.2%} | {per(stored)} | {per(adaptive)} | {per(rice / 8)} ({k}) | "
        f"{per(elias_gamma_bits(gaps) / 8)} | " + " | ".join(per(m) for m in masks) + f" | "
        f"{per(bernoulli_bits(numel, kept) / 8)} |"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    print("\n\n".join(analyse(f) for f in args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
