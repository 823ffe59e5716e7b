"""Fuzz the .dcz reader: mutate valid small files and check that only FormatError escapes.

The mutation primitives are plain functions of explicit parameters, so the CI test
(tests/formats/test_formats_fuzz.py) lets hypothesis draw and shrink them, while this script
draws them at random for long local runs:

    python -m tools.dev.fuzz_formats --seconds 600 --seed 1

Mutations: flip a bit, set a byte, insert or delete bytes, truncate, and the same after which
every CRC (and the file-length field) is recomputed so that the deeper checks are reached; also
replace one value of the JSON header with a hostile one. Version 1.4 files (compact container, SPEC 2.6)
get the same: their file length varint and file CRC32 are recomputed, and a header mutation replaces a
value of the JSON document or one byte of the binary tensor table with a hostile varint.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
import zlib

import numpy as np

from dcz import formats
from dcz.formats import container
from dcz.formats.cursor import Cursor, varint
from dcz.formats.errors import FormatError

OPS = ("flip", "set", "insert", "delete", "truncate")
HOSTILE_VALUES = (
    None,
    -1,
    0,
    1,
    2,
    7,
    9,
    255,
    256,
    2**31,
    2**32,
    2**63,
    2**64,
    -(2**63),
    1.5,
    "x",
    "",
    [],
    {},
    [2**40, 2**40],
    [0],
    "raw",
    "sparse",
    "shared",
    "sparse_shared",
    True,
)


def seed_files() -> list[bytes]:
    """Small valid files covering every encoding and every stream coding."""
    rng = np.random.default_rng(7)
    mask = rng.random((6, 9)) < 0.3
    labels = rng.integers(0, 4, (6, 9))
    book = np.array([-1.0, -0.25, 0.25, 1.0], np.float32)
    tensors = [
        formats.Raw("b", np.arange(3, dtype=np.float16)),
        formats.Sparse("p", rng.standard_normal((6, 9)).astype(np.float32), mask, 2),
        formats.Shared("s", labels, book, 2),
        formats.SparseShared("d", mask, labels, np.stack([book, book * 2]), 2, 3, group_rows=3),
    ]
    skewed = formats.SparseShared(
        "h", rng.random((4, 40)) < 0.5, rng.choice(4, (4, 40), p=[0.7, 0.2, 0.05, 0.05]), book, 2, 2
    )
    wide_rows = formats.Sparse("r", rng.standard_normal((5, 700)).astype(np.float32), rng.random((5, 700)) < 0.6, 1)
    # version 1.1 chunked streams: chunks of 4 (bitarray's sequential path, index checked) and
    # 1,100 one-symbol chunks (>= codec.MIN_WALK_LANES: the lockstep walk)
    walked = formats.Shared(
        "c", rng.choice(256, 1100, p=np.r_[0.9, np.full(255, 0.1 / 255)]), np.linspace(-1, 1, 256).astype(np.float32), 8
    )
    return [
        formats.dumps(tensors, graph=b"graph", metadata={"user.k": [1, 2]}),
        formats.dumps(tensors, huffman=False),
        formats.dumps([skewed]),
        formats.dumps([wide_rows]),  # row counts > 255: 9-bit symbols
        formats.dumps([walked]),  # plain Huffman (coding 1)
        formats.dumps([walked, skewed], chunk_symbols=16),
        formats.dumps([walked], chunk_symbols=1),
        formats.dumps(tensors, range_coding=True),  # version 1.3: range-coded streams (coding 3)
        formats.dumps([skewed, walked], range_coding=True),
        # version 1.4: the compact container (binary table, varint directory and stream headers)
        formats.dumps(tensors, graph=b"graph", metadata={"user.k": [1, 2]}, compact_container=True),
        formats.dumps([skewed, walked, wide_rows], range_coding=True, compact_container=True),
        formats.dumps([walked, skewed], chunk_symbols=16, compact_container=True),
    ]


def is_compact(data: bytes) -> bool:
    """Whether `data` claims the compact container (version 1.4 or later: minor >= 4)."""
    return len(data) >= 12 and struct.unpack_from("<H", data, 10)[0] >= container.CONTAINER_MINOR


def compact_sections(data: bytes) -> list[tuple[int, bytes]] | None:
    """The (kind, bytes) sections of a valid compact-container file, or None."""
    try:
        return [(kind, data[off : off + length]) for off, length, kind in container.read(data)]
    except FormatError:
        return None


def repack(data: bytes, sections: list[tuple[int, bytes]]) -> bytes:
    """A compact-container file of `data`'s version holding `sections` (length and CRC right)."""
    major, minor = struct.unpack_from("<HH", data, 8)
    return container.pack(major, minor, sections)


def fix_compact(data: bytes) -> bytes:
    """Recompute a compact file's length varint (when it parses) and its file CRC32."""
    if len(data) < 16:
        return data
    cur = Cursor(data, 16, len(data), "fuzz")
    try:
        cur.varint("length")
    except FormatError:
        return data[:12] + struct.pack("<I", container.file_crc(data)) + data[16:]
    tail = data[cur.pos :]
    n = 16 + len(tail) + 1
    while 16 + len(varint(n)) + len(tail) != n:
        n = 16 + len(varint(n)) + len(tail)
    out = data[:16] + varint(n) + tail
    return out[:12] + struct.pack("<I", container.file_crc(out)) + out[16:]


def mutate(data: bytes, op: str, pos: int, value: int, length: int) -> bytes:
    """One byte-level mutation at pos (taken modulo the size)."""
    n = len(data)
    pos = pos % (n + 1)
    if op == "flip" and n:
        pos %= n
        return data[:pos] + bytes([data[pos] ^ (1 << (value % 8))]) + data[pos + 1 :]
    if op == "set" and n:
        pos %= n
        return data[:pos] + bytes([value % 256]) + data[pos + 1 :]
    if op == "insert":
        return data[:pos] + bytes([value % 256]) * length + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + length :]
    return data[:pos]


def fix_checksums(data: bytes) -> bytes:
    """Recompute the file length, section CRCs, directory CRC and preamble CRC where they fit."""
    if is_compact(data):
        return fix_compact(data)
    if len(data) < 64:
        return data
    buf = bytearray(data)
    struct.pack_into("<Q", buf, 16, len(buf))
    count = struct.unpack_from("<I", buf, 12)[0]
    if 64 + 24 * count <= len(buf):
        for i in range(count):
            off, length = struct.unpack_from("<QQ", buf, 64 + 24 * i)
            if off + length <= len(buf):
                struct.pack_into("<I", buf, 64 + 24 * i + 16, zlib.crc32(bytes(buf[off : off + length])))
        struct.pack_into("<I", buf, 24, zlib.crc32(bytes(buf[64 : 64 + 24 * count])))
    struct.pack_into("<I", buf, 60, zlib.crc32(bytes(buf[:60])))
    return bytes(buf)


def mutate_section(data: bytes, which: int, pos: int, value: int) -> bytes:
    """Flip bit `value % 8` of one byte inside a tensor section, then fix every checksum.

    Structure stays valid, so this reaches the stream tables, payloads and CSR checks.
    """
    if is_compact(data):
        sections = compact_sections(data)
        if sections is None or len(sections) < 3:
            return data
        i = 2 + which % (len(sections) - 2)
        kind, body = sections[i]
        if body:
            at = pos % len(body)
            sections[i] = (kind, body[:at] + bytes([body[at] ^ (1 << (value % 8))]) + body[at + 1 :])
        return repack(data, sections)
    count = struct.unpack_from("<I", data, 12)[0]
    if count < 3:
        return data
    off, length = struct.unpack_from("<QQ", data, 64 + 24 * (2 + which % (count - 2)))
    if not length:
        return data
    at = off + pos % length
    return fix_checksums(data[:at] + bytes([data[at] ^ (1 << (value % 8))]) + data[at + 1 :])


def _paths(obj, prefix=()):
    """Every path to a value inside a JSON object."""
    yield prefix
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from _paths(obj[k], prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def mutate_header(data: bytes, which: int, value) -> bytes:
    """Replace the `which`-th value of the JSON header with `value` and fix every checksum."""
    from dcz.formats.writer import assemble as _assemble

    if is_compact(data):
        return mutate_compact_header(data, which, value)
    count = struct.unpack_from("<I", data, 12)[0]
    secs = []
    for i in range(count):
        off, length, _, kind, _ = struct.unpack_from("<QQIHH", data, 64 + 24 * i)
        secs.append((kind, data[off : off + length]))
    obj = json.loads(secs[0][1])
    paths = list(_paths(obj))[1:]
    path = paths[which % len(paths)]
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    secs[0] = (secs[0][0], json.dumps(obj).encode())
    return _assemble(secs)


def mutate_compact_header(data: bytes, which: int, value) -> bytes:
    """A 1.4 header with one hostile value: odd `which` replace a value of the JSON document (re-deflated
    with the preset dictionary), even ones a byte of the binary tensor table by the varint of an int `value`
    (others: by 0xff); the length and CRC are fixed."""
    from dcz.formats import table

    sections = compact_sections(data)
    if sections is None:
        return data
    header = sections[0][1]
    try:
        obj = table.read(header, 0, len(sections), FormatError)
    except FormatError:
        return data
    tensors = obj.pop("tensors")
    cut = len(header) - _document_bytes(header)
    if which % 2:
        paths = list(_paths(obj))[1:]
        path = paths[which // 2 % len(paths)]
        target = obj
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        doc = json.dumps(obj).encode()
        header = header[: cut - 1] + bytes([table.DOC_DEFLATE]) + table.deflate(doc)
    elif cut > 1 and tensors:
        at = which // 2 % (cut - 1)
        hostile = (
            varint(value) if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64 else b"\xff"
        )
        header = header[:at] + hostile + header[at + 1 :]
    sections[0] = (sections[0][0], header)
    return repack(data, sections)


def _document_bytes(header: bytes) -> int:
    """Bytes of a valid 1.4 header section's document (after its coding byte): found by re-reading the table."""
    from dcz.formats import table

    cur = Cursor(header, 0, len(header), "fuzz")
    previous = b""
    for i in range(cur.varint("count")):
        _, previous = table._read_record(cur, i, previous, 0, FormatError)
    return len(header) - cur.pos - 1


def exercise(data: bytes) -> None:
    """Open and fully decode `data`; FormatError is the only acceptable failure."""
    try:
        f = formats.loads(data)
        for name in f.names:
            arr = f.tensor(name)
            assert arr.shape == f.info(name).shape
        f.size_report()
    except formats.FormatError:
        pass


def random_mutant(rng: random.Random, data: bytes) -> bytes:
    """A random mix of the mutations above."""
    if rng.random() < 0.2:
        data = mutate_header(data, rng.randrange(1000), rng.choice(HOSTILE_VALUES))
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 3)):
            data = mutate_section(data, rng.randrange(64), rng.randrange(1 << 16), rng.randrange(8))
        return data
    for _ in range(rng.randint(1, 4)):
        data = mutate(data, rng.choice(OPS), rng.randrange(1 << 16), rng.randrange(256), rng.randint(1, 64))
    return fix_checksums(data) if rng.random() < 0.7 else data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seeds = seed_files()
    end, runs = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        data = random_mutant(rng, rng.choice(seeds))
        try:
            exercise(data)
        except Exception:
            path = f"fuzz-crash-{args.seed}-{runs}.dcz"
            with open(path, "wb") as f:
                f.write(data)
            print(f"crash after {runs} runs, input saved to {path}", file=sys.stderr)
            raise
        runs += 1
    print(f"{runs} mutated files, no exception other than FormatError")
    return 0


if __name__ == "__main__":
    sys.exit(main())
