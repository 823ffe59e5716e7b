"""A second decoder, written from SPEC.md alone in plain Python (struct, zlib, json; no formats
internals), must agree with formats on every golden file and on sample files. If SPEC.md and the
code drift apart, this fails."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from formats_helpers import sample_file

from dcz import formats

GOLDEN = sorted((Path(__file__).resolve().parents[1] / "golden").glob("v1_*/*.dcz"))
DTYPES = {"float32": "<f4", "float16": "<f2", "int64": "<i8", "int32": "<i4", "int8": "i1", "uint8": "u1"}


def read_range_stream(sec: bytes, width: int, shift: int, context: int, count: int) -> list[int]:
    """SPEC 3.4.2: LZMA's range decoder over bit trees of 12-bit probabilities."""
    payload = sec[16:]
    code, rng, pos = int.from_bytes(payload[:4], "big"), 0xFFFFFFFF, 4
    assert code != 0xFFFFFFFF
    trees = [[2048] * (1 << width) for _ in range((1 << width) if context else 1)]
    out, prev = [], 0
    for _ in range(count):
        tree, node = trees[prev if context else 0], 1
        for _ in range(width):
            bound = (rng >> 12) * tree[node]
            if code < bound:
                rng, bit = bound, 0
                tree[node] += (4096 - tree[node]) >> shift
            else:
                code, rng, bit = code - bound, rng - bound, 1
                tree[node] -= tree[node] >> shift
            node = 2 * node + bit
            while rng < 1 << 24:
                rng, code = rng << 8, (code << 8) | payload[pos]  # IndexError: the payload ended early
                pos += 1
        prev = node - (1 << width)
        out.append(prev)
    assert pos == len(payload) and code == 0
    return out


def read_stream(sec: bytes) -> list[int]:
    coding, width, n_len, _, n_sym, count = struct.unpack_from("<BBBBIQ", sec, 0)
    if coding == 3:
        return read_range_stream(sec, width, n_len, n_sym, count)
    pos = 16
    counts = list(struct.unpack_from(f"<{n_len}H", sec, pos))
    pos += 2 * n_len
    size = 1 if width <= 8 else 2 if width <= 16 else 4
    symbols = [int.from_bytes(sec[pos + i * size : pos + (i + 1) * size], "little") for i in range(n_sym)]
    pos += size * n_sym
    starts = None
    if coding == 2:  # SPEC 3.4.1: C, d, 3 reserved, base, then K-1 d-bit deltas
        chunk, d, base = struct.unpack_from("<IB3xQ", sec, pos)
        assert sec[pos + 5 : pos + 8] == bytes(3)
        pos += 16
        k = -(-count // chunk)
        dbits = "".join(f"{b:08b}" for b in sec[pos : pos + ((k - 1) * d + 7) // 8])
        pos += ((k - 1) * d + 7) // 8
        assert set(dbits[(k - 1) * d :]) <= {"0"}
        starts = [0]
        for j in range(k - 1):
            starts.append(starts[-1] + base + (int(dbits[j * d : (j + 1) * d], 2) if d else 0))
    bits = "".join(f"{b:08b}" for b in sec[pos:])
    out, at = [], 0
    if coding == 0:
        out = [int(bits[i * width : (i + 1) * width], 2) for i in range(count)]
        at = count * width
    else:
        codes, code, k = {}, 0, 0  # canonical codes, DEFLATE order
        for length, n in enumerate(counts, start=1):
            for _ in range(n):
                codes[(length, code)] = symbols[k]
                code, k = code + 1, k + 1
            code <<= 1
        while len(out) < count:
            if starts is not None and len(out) % chunk == 0:
                assert at == starts[len(out) // chunk]  # every chunk starts where the index says
            for length in range(1, n_len + 1):
                key = (length, int(bits[at : at + length], 2))
                if key in codes and at + length <= len(bits):
                    out.append(codes[key])
                    at += length
                    break
            else:
                raise AssertionError("bad code")
    assert len(bits) - at < 8 and set(bits[at:]) <= {"0"}
    return out


def decode_file(data: bytes) -> dict[str, np.ndarray]:
    assert data[:8] == b"\x89DCZ\r\n\x1a\n" and struct.unpack_from("<HH", data, 8) in ((1, 0), (1, 1), (1, 2), (1, 3))
    count, file_length = struct.unpack_from("<IQ", data, 12)
    assert file_length == len(data) and zlib.crc32(data[:60]) == struct.unpack_from("<I", data, 60)[0]
    sections, end = [], 64 + 24 * count
    for i in range(count):
        offset, length, crc, kind, _ = struct.unpack_from("<QQIHH", data, 64 + 24 * i)
        assert offset == (end + 7) // 8 * 8 and zlib.crc32(data[offset : offset + length]) == crc
        sections.append(data[offset : offset + length])
        end = offset + length
    assert end == len(data)
    text = sections[0]
    if struct.unpack_from("<H", data, 10)[0] >= 2 and text[:1] != b"{":  # 1.2: one zlib stream (SPEC 2.3.1)
        text = zlib.decompress(text)
    head = json.loads(text)
    out = {}
    for t in head["tensors"]:
        shape, enc, sec = t["shape"], t["encoding"], {r: sections[i] for r, i in t["sections"].items()}
        rows = shape[0] if len(shape) > 1 else 1
        cols = int(np.prod(shape[1:])) if len(shape) > 1 else (shape[0] if shape else 1)
        if enc == "raw":
            out[t["name"]] = np.frombuffer(sec["data"], DTYPES[t["dtype"]]).reshape(shape)
            continue
        dense = [[0.0] * cols for _ in range(rows)]
        book = group_rows = None
        if "codebook" in sec:
            k = t["codebook_size"]
            flat_book = struct.unpack(f"<{len(sec['codebook']) // 4}f", sec["codebook"])
            book = [flat_book[g * k : (g + 1) * k] for g in range(t["groups"])]
            group_rows = t.get("group_rows") or max(rows, 1)
        labels = read_stream(sec["labels"]) if "labels" in sec else None
        if enc == "shared":
            for i, lab in enumerate(labels):
                dense[i // cols][i % cols] = book[(i // cols) // group_rows][lab]
        else:
            filler = (1 << t["gap_bits"]) - 1
            row_counts, gaps = read_stream(sec["rows"]), read_stream(sec["gaps"])
            values = struct.unpack(f"<{len(sec['values']) // 4}f", sec["values"]) if "values" in sec else None
            g = k = 0
            for r in range(rows):
                nxt = 0
                for i in range(row_counts[r]):
                    d = gaps[g]
                    g += 1
                    if d == filler:
                        nxt += filler
                        continue
                    c = nxt + d
                    assert c < cols
                    dense[r][c] = values[k] if values is not None else book[r // group_rows][labels[k]]
                    k += 1
                    nxt = c + 1
            assert g == len(gaps) and k == t["nnz"]
        out[t["name"]] = np.array(dense, dtype=np.float32).reshape(shape)
    return out


@pytest.mark.parametrize(
    "data",
    [p.read_bytes() for p in GOLDEN] + [sample_file(1), sample_file(2, huffman=False)],
    ids=[f"{p.parent.name}/{p.name}" for p in GOLDEN] + ["sample_huffman", "sample_fixed"],
)
def test_spec_decoder_agrees_with_formats(data):
    mine = decode_file(data)
    f = formats.loads(data)
    assert list(mine) == f.names
    for name, arr in mine.items():
        got = f.tensor(name)
        assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes(), name
