"""Throughput and coding efficiency of formats/ on a reference tensor.

    python -m tools.bench.bench_formats [--rows 1000 --cols 10000 --density 0.1 --repeat 5] [--markdown]

The tensor: 10M weights (1000 x 10000) at 10% density, 5-bit labels (32 clusters; the label of
each kept weight is its bin among 32 linear bins over N(0,1) weights, i.e. bell-shaped like
k-means on real layers), 5-bit gaps. Measured in one process, side by side, so ratios hold on
a shared machine:
  encode   formats.dumps                                  (dense MB/s in, symbols/s)
  decode   formats.loads(...).tensor()                    (symbols/s over all streams, dense MB/s out)
           of the default file (v1.1: long Huffman streams chunked, decoded by lockstep walks)
           and of the same tensor written as v1.0 (chunk_symbols=0: plain Huffman, bitarray)
  walk     formats.codec.decode_streams alone on the default file's streams
  baseline bitarray.util.canonical_decode alone on the same Huffman payloads, its symbols
           collected into a bytearray (the cheapest container: its own rate)
  altern.  bitarray decode with a decodetree
and, per stream, coded bits / (empirical entropy x symbols).
Best of --repeat runs; numpy runs single-threaded for all of these operations.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import numpy as np
from bitarray import bitarray, decodetree
from bitarray.util import canonical_decode

from dcz import formats
from dcz.formats import codec
from dcz.formats.cursor import Cursor


def reference_tensor(rows: int, cols: int, density: float, seed: int = 0) -> formats.SparseShared:
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < density
    weights = rng.standard_normal((rows, cols)).astype(np.float32)
    edges = np.linspace(-3, 3, 33)[1:-1]
    labels = np.searchsorted(edges, weights).astype(np.int64)
    book = ((np.concatenate([[-3.0], edges]) + np.concatenate([edges, [3.0]])) / 2).astype(np.float32)
    return formats.SparseShared("w", mask, labels, book, 5, 5)


CLOCK = time.perf_counter


def best_of(fn, repeat: int) -> float:
    """Best time of `repeat` runs, by CLOCK (wall by default; --cpu: this process's CPU time)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def entropy_bits(symbols: np.ndarray) -> float:
    """Empirical (zero-order) entropy of the stream, in bits, times its length."""
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def stream_payloads(f: formats.DczFile, name: str) -> dict:
    """role -> (info, counts, symbols, payload bytes, decoded symbols) of each stream section."""
    out = {}
    for role in ("rows", "gaps", "labels"):
        cur = f._cursor(f._entry(name), role)
        start = cur.pos
        head = codec.read_stream_header(cur)
        info, counts, symbols = head.info, head.counts, head.symbols
        payload = bytes(cur.bytes(cur.left, "payload"))
        decoded = codec.decode_stream(Cursor(f._buf, start, cur.end, "bench"))
        out[role] = (info, counts, symbols, payload, decoded)
    return out


def run(rows: int, cols: int, density: float, repeat: int) -> dict:
    t = reference_tensor(rows, cols, density)
    dense_bytes = rows * cols * 4
    data = formats.dumps([t])
    encode_s = best_of(lambda: formats.dumps([t]), max(1, repeat // 2))
    f = formats.loads(data)
    streams = stream_payloads(f, "w")
    n_symbols = sum(s[0].count for s in streams.values())
    decode_s = best_of(lambda: formats.loads(data).tensor("w"), repeat)
    fixed = formats.dumps([t], huffman=False)
    fixed_s = best_of(lambda: formats.loads(fixed).tensor("w"), repeat)
    plain = formats.dumps([t], chunk_symbols=0)
    plain_s = best_of(lambda: formats.loads(plain).tensor("w"), repeat)
    cursors = [f._cursor(f._entry("w"), role) for role in ("rows", "gaps", "labels")]
    walk_s = best_of(lambda: codec.decode_streams([Cursor(c.buf, c.pos, c.end, "bench") for c in cursors]), repeat)
    assert np.array_equal(f.tensor("w"), np.where(t.mask, t.codebook[t.labels], 0).astype(np.float32))

    huff = {r: s for r, s in streams.items() if s[0].coding_name == "huffman"}
    huff_symbols = sum(s[0].count for s in huff.values())
    bits_of = {r: bitarray(endian="big") for r in huff}
    for r, s in huff.items():
        bits_of[r].frombytes(s[3])

    def baseline():
        for r, s in huff.items():
            sink = bytearray if max(s[2]) < 256 else list
            sink(itertools.islice(canonical_decode(bits_of[r], [0] + s[1], s[2]), s[0].count))

    trees = {}
    for r, s in huff.items():
        values, lengths = codec.canonical_codes(s[1], s[2])
        trees[r] = decodetree({sym: bitarray(format(values[sym], f"0{lengths[sym]}b")) for sym in values})

    def with_tree():
        for r, s in huff.items():
            sink = bytearray if max(s[2]) < 256 else list
            sink(itertools.islice(bits_of[r].decode(trees[r]), s[0].count))

    base_s = best_of(baseline, repeat)
    tree_s = best_of(with_tree, repeat)

    entropy = {}
    for r, (info, counts, symbols, payload, decoded) in streams.items():
        h = entropy_bits(decoded)
        payload_bits = info.payload_bytes * 8
        entropy[r] = dict(
            coding=info.coding_name,
            symbols=info.count,
            entropy_bits_per_symbol=h / max(info.count, 1),
            payload_over_entropy=payload_bits / h if h else float("inf"),
            section_over_entropy=(info.payload_bytes + info.table_bytes + 16) * 8 / h if h else float("inf"),
        )
    return dict(
        shape=(rows, cols),
        density=density,
        nnz=int(t.mask.sum()),
        file_bytes=len(data),
        dense_bytes=dense_bytes,
        symbols=n_symbols,
        encode_s=encode_s,
        decode_s=decode_s,
        fixed_s=fixed_s,
        fixed_bytes=len(fixed),
        decode_symbols_per_s=n_symbols / decode_s,
        decode_mb_per_s=dense_bytes / decode_s / 1e6,
        encode_mb_per_s=dense_bytes / encode_s / 1e6,
        encode_symbols_per_s=n_symbols / encode_s,
        huffman_symbols=huff_symbols,
        canonical_decode_per_s=huff_symbols / base_s,
        decodetree_per_s=huff_symbols / tree_s,
        entropy=entropy,
        plain_s=plain_s,
        plain_bytes=len(plain),
        walk_per_s=n_symbols / walk_s,
        version=f.version,
        clock="process CPU time" if CLOCK is time.process_time else "wall time",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at start",
    )


def entropy_sweep(densities=(0.9, 0.5, 0.1, 0.01), rows: int = 500, cols: int = 2000) -> str:
    """Coded bits / entropy per stream across densities: where Huffman reaches the entropy and where not."""
    lines = [
        "| density | stream | coding | entropy bits/symbol | payload / entropy | section / entropy |",
        "|---|---|---|---|---|---|",
    ]
    for density in densities:
        f = formats.loads(formats.dumps([reference_tensor(rows, cols, density, seed=1)]))
        for role, (info, _, _, _, decoded) in stream_payloads(f, "w").items():
            h = entropy_bits(decoded)
            section = (info.payload_bytes + info.table_bytes + 16) * 8
            ratio = lambda bits: f"{bits / h:.4f}" if h else "inf (entropy 0)"  # noqa: E731
            lines.append(
                f"| {density:.0%} | {role} | {info.coding_name} | {h / max(info.count, 1):.3f} | "
                f"{ratio(info.payload_bytes * 8)} | {ratio(section)} |"
            )
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m = lambda x: f"{x / 1e6:.1f}M"  # noqa: E731
    lines = [
        f"Tensor {r['shape'][0]}x{r['shape'][1]} ({r['shape'][0] * r['shape'][1] / 1e6:.0f}M weights), "
        f"{100 * r['density']:.0f}% kept ({r['nnz']:,}), 5-bit labels, 5-bit gaps; file {r['file_bytes']:,} B "
        f"({r['dense_bytes'] / r['file_bytes']:.1f}x smaller than dense fp32). {r['symbols']:,} stream symbols.",
        "",
        "| what | time (best) | symbols/s | dense MB/s |",
        "|---|---|---|---|",
        f"| encode (`formats.dumps`) | {r['encode_s'] * 1e3:.0f} ms | {m(r['encode_symbols_per_s'])} | "
        f"{r['encode_mb_per_s']:.0f} (in) |",
        f"| decode (`loads().tensor()`, all streams + CSR + codebook), v{r['version'][0]}.{r['version'][1]} file | "
        f"{r['decode_s'] * 1e3:.0f} ms | {m(r['decode_symbols_per_s'])} | {r['decode_mb_per_s']:.0f} (out) |",
        f"| same, v1.0 file (`chunk_symbols=0`: plain Huffman, bitarray; {r['plain_bytes']:,} B) | "
        f"{r['plain_s'] * 1e3:.0f} ms | {m(r['symbols'] / r['plain_s'])} | {r['dense_bytes'] / r['plain_s'] / 1e6:.0f} (out) |",
        f"| `codec.decode_streams` alone on the v{r['version'][0]}.{r['version'][1]} file's 3 streams (lockstep walk) | | "
        f"{m(r['walk_per_s'])} | |",
        f"| decode, fixed-width file (`huffman=False`, P+Q, {r['fixed_bytes']:,} B) | {r['fixed_s'] * 1e3:.0f} ms | "
        f"{m(r['symbols'] / r['fixed_s'])} | {r['dense_bytes'] / r['fixed_s'] / 1e6:.0f} (out) |",
        f"| baseline: `canonical_decode` alone on the Huffman streams (into a bytearray) | | "
        f"{m(r['canonical_decode_per_s'])} | |",
        f"| alternative: bitarray `decode` + decodetree (into a bytearray) | | {m(r['decodetree_per_s'])} | |",
        "",
        f"Decode / canonical_decode symbol rate: **{r['decode_symbols_per_s'] / r['canonical_decode_per_s']:.2f}x**; "
        f"v1.1 / v1.0 file decode speed: **{r['plain_s'] / r['decode_s']:.2f}x** for "
        f"{100 * (r['file_bytes'] / r['plain_bytes'] - 1):+.2f}% bytes.",
        "",
        "| stream | coding | symbols | entropy bits/symbol | payload / entropy | section (header+table+payload) / entropy |",
        "|---|---|---|---|---|---|",
    ]
    for role, e in r["entropy"].items():
        lines.append(
            f"| {role} | {e['coding']} | {e['symbols']:,} | {e['entropy_bits_per_symbol']:.3f} | "
            f"{e['payload_over_entropy']:.4f} | {e['section_over_entropy']:.4f} |"
        )
    lines += ["", f"Machine: {r['machine']}; clock: {r['clock']}."]
    return "\n".join(lines)


def side_by_side(compiled: dict, fallback: dict) -> str:
    """Speed-ups of the compiled core over the numpy path, from two runs of the same process."""
    rows = [
        ("encode (`formats.dumps`), symbols/s", "encode_symbols_per_s"),
        ("decode to dense float32 (v1.1 file), dense MB/s out", "decode_mb_per_s"),
        ("stream decode alone (`codec.decode_streams`), symbols/s", "walk_per_s"),
    ]
    lines = ["| what | compiled | numpy | speed-up |", "|---|---|---|---|"]
    for label, key in rows:
        c, n = compiled[key], fallback[key]
        unit = (lambda x: f"{x:.0f}") if "MB" in label else (lambda x: f"{x / 1e6:.1f}M")  # noqa: E731
        lines.append(f"| {label} | {unit(c)} | {unit(n)} | {c / n:.1f}x |")
    lines.append(
        f"| bitarray `canonical_decode` alone on the same payloads, symbols/s | | | "
        f"{compiled['canonical_decode_per_s'] / 1e6:.1f}M |"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--cols", type=int, default=10000)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time by process CPU time (time.process_time) instead of wall time: on a shared, "
        "loaded machine this leaves out the time other processes hold the core",
    )
    args = parser.parse_args(argv)
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time
    compiled = run(args.rows, args.cols, args.density, args.repeat)
    os.environ["DCZ_NATIVE"] = "0"  # the same run through the numpy fallback, same process
    try:
        fallback = run(args.rows, args.cols, args.density, args.repeat)
    finally:
        os.environ.pop("DCZ_NATIVE", None)
    print("## Compiled core (`dcz --version`: decoder: compiled)\n")
    print(markdown(compiled))
    print("\n## numpy fallback (DCZ_NATIVE=0), same run\n")
    print(markdown(fallback))
    print("\n## Compiled / numpy, same run\n")
    print(side_by_side(compiled, fallback))
    print()
    print("Coded bits / entropy across densities (500 x 2000 tensor, 5-bit labels, 5-bit gaps):")
    print()
    print(entropy_sweep())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
