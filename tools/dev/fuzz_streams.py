"""Damaged Huffman and range-coded streams straight into the stream decoder: the decode loops under a sanitizer.

    python -m tools.dev.fuzz_streams --seconds 60 --seed 1

Each round encodes random symbols (skewed histograms for long codes, byte and wide symbols, plain
and chunked codings, lengths from one symbol to ~40,000 so plain streams reach the pair-table decoder
at several times 2^L symbols) and decodes the clean stream (it must give the symbols back), then a
copy with a few bytes flipped, cut short or extended (it must give some symbols or FormatError,
nothing else). Every other round asks the writer for the range coding too (format 1.3: byte symbols of
at most 65,536, order-0 and order-1 models, runs for the order-1 model), so range-coded streams get the
same treatment. tools/dev/asan_fuzz.py runs it with the AddressSanitizer build of the core.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dcz import formats
from dcz.formats import codec
from dcz.formats.cursor import Cursor
from dcz.formats.layout import CODING_RANGE


def random_stream(rng: np.random.Generator) -> tuple[np.ndarray, int, int | None]:
    width = int(rng.choice([1, 2, 3, 5, 8, 12, 16]))
    n = int(rng.choice([int(rng.integers(1, 300)), int(rng.integers(300, 40_000))]))
    alphabet = rng.integers(0, 1 << width, size=int(rng.integers(1, 60)), dtype=np.int64)
    skew = rng.random(alphabet.size) ** float(rng.choice([1, 4, 12]))
    symbols = rng.choice(alphabet, size=n, p=skew / skew.sum())
    if rng.random() < 0.3:  # runs of one symbol: the range coding's order-1 model wins on them
        symbols = np.repeat(symbols, int(rng.integers(2, 9)))[:n]
    return symbols, width, [0, None, 64, 1000][int(rng.integers(0, 4))]


def damage(stream: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(stream)
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(0, len(out)))
        out[at] ^= int(rng.integers(1, 256))
    if rng.random() < 0.2:
        out = out[: int(rng.integers(0, len(out) + 1))]
    elif rng.random() < 0.1:
        out += bytes(int(rng.integers(1, 9)))
    return bytes(out)


def decode(stream: bytes) -> np.ndarray:
    return codec.decode_stream(Cursor(memoryview(stream), 0, len(stream), "stream"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    end, runs, refused, ranged = time.monotonic() + args.seconds, 0, 0, 0
    while time.monotonic() < end:
        symbols, width, chunk = random_stream(rng)
        stream = codec.encode_stream(symbols, width, chunk=chunk, range_coding=bool(runs % 2))
        ranged += stream[0] == CODING_RANGE
        if not np.array_equal(decode(stream), symbols):
            print(f"round {runs}: a clean stream decoded to other symbols", file=sys.stderr)
            return 1
        for _ in range(4):
            try:
                decode(damage(stream, rng))
            except formats.FormatError:
                refused += 1
        runs += 1
    print(
        f"{runs} random streams decoded ({ranged} range-coded), {4 * runs} damaged copies "
        f"({refused} refused with FormatError)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
