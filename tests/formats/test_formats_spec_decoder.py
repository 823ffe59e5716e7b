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


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """SPEC 2.6.1: unsigned LEB128 (value, next position); minimal, at most 10 bytes."""
    value, shift, start = 0, 0, pos
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            break
    assert pos - start <= 10 and value < 1 << 64 and (byte or pos - start == 1)
    return value, pos


def read_range_stream(payload: bytes, width: int, shift: int, context: int, count: int) -> list[int]:
    """SPEC 3.4.2: LZMA's range decoder over bit trees of 12-bit probabilities."""
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


def read_stream(sec: bytes, compact: bool = False) -> list[int]:
    if compact:  # SPEC 2.6.5: coding, width, L bytes, then S and N as varints
        coding, width, n_len = sec[0], sec[1], sec[2]
        n_sym, pos = varint(sec, 3)
        count, pos = varint(sec, pos)
    else:
        coding, width, n_len, _, n_sym, count = struct.unpack_from("<BBBBIQ", sec, 0)
        pos = 16
    if coding == 3:
        return read_range_stream(sec[pos:], width, n_len, n_sym, count)
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


ENCODINGS = ("raw", "sparse", "shared", "sparse_shared")
ROLES = {"raw": ["data"], "sparse": ["rows", "gaps", "values"], "shared": ["codebook", "labels"]}
ROLES["sparse_shared"] = ["codebook", "rows", "gaps", "labels"]


def spec_dictionary() -> bytes:
    """SPEC 2.6.4: the document dictionary, quoted in SPEC.md between its markers, line breaks removed."""
    spec = (Path(__file__).resolve().parents[2] / "formats" / "SPEC.md").read_text()
    block = spec.split("<!-- BEGIN document dictionary -->")[1].split("<!-- END document dictionary -->")[0]
    return "".join(block.strip().strip("`").strip().splitlines()).encode("ascii")


def compact_file(data: bytes) -> tuple[list[bytes], dict]:
    """SPEC 2.6: the sections and the header (tensors with their implied sections) of a 1.4 file."""
    crc = struct.unpack_from("<I", data, 12)[0]
    assert zlib.crc32(data[16:], zlib.crc32(data[:12])) == crc
    file_length, pos = varint(data, 16)
    count, pos = varint(data, pos)
    assert file_length == len(data)
    sections = []
    lengths = []
    for i in range(count):
        entry, pos = varint(data, pos)
        assert (entry & 3) + 1 == (1 if i == 0 else 2 if i == 1 else (entry & 3) + 1) and (i < 2 or entry & 3 >= 2)
        lengths.append(entry >> 2)
    for length in lengths:
        sections.append(data[pos : pos + length])
        pos += length
    assert pos == len(data)
    head = sections[0]
    n, pos = varint(head, 0)
    tensors, name, next_section = [], b"", 2
    for _ in range(n):
        prefix, pos = varint(head, pos)
        length, pos = varint(head, pos)
        name = name[:prefix] + head[pos : pos + length]
        code, rank = head[pos + length], head[pos + length + 1]
        pos += length + 2
        shape = []
        for _ in range(rank):
            dim, pos = varint(head, pos)
            shape.append(dim)
        t = {"name": name.decode(), "shape": shape, "encoding": ENCODINGS[code & 3]}
        t["dtype"] = ["float32", "float16", "int64", "int32", "int8", "uint8"][code >> 2]
        t["nnz"] = int(np.prod(shape, dtype=object)) if shape else 1
        if code & 3:
            bits = head[pos]
            pos += 1
            t["label_bits"], t["gap_bits"] = bits & 15, bits >> 4
        if code & 3 in (1, 3):
            t["nnz"], pos = varint(head, pos)
        if code & 3 in (2, 3):
            t["codebook_size"], pos = varint(head, pos)
            group_rows, pos = varint(head, pos)
            rows = shape[0] if len(shape) > 1 else 1
            t["group_rows"] = group_rows or None
            t["groups"] = -(-rows // group_rows) or 1 if group_rows else 1
        roles = ROLES[t["encoding"]]
        t["sections"] = {role: next_section + i for i, role in enumerate(roles)}
        next_section += len(roles)
        tensors.append(t)
    assert next_section == count
    text = head[pos + 1 :]
    if head[pos] == 1:  # raw DEFLATE with the preset dictionary
        text = zlib.decompressobj(-15, spec_dictionary()).decompress(text)
    doc = json.loads(text)
    assert "tensors" not in doc
    return sections, {**doc, "tensors": tensors}


def decode_file(data: bytes) -> dict[str, np.ndarray]:
    assert data[:8] == b"\x89DCZ\r\n\x1a\n" and struct.unpack_from("<HH", data, 8)[0] == 1
    if struct.unpack_from("<H", data, 10)[0] >= 4:
        sections, head = compact_file(data)
        return decode_tensors(sections, head, compact=True)
    assert struct.unpack_from("<H", data, 10)[0] in (0, 1, 2, 3)
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
    return decode_tensors(sections, json.loads(text))


def decode_tensors(sections: list[bytes], head: dict, compact: bool = False) -> dict[str, np.ndarray]:
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
        labels = read_stream(sec["labels"], compact) if "labels" in sec else None
        if enc == "shared":
            for i, lab in enumerate(labels):
                dense[i // cols][i % cols] = book[(i // cols) // group_rows][lab]
        else:
            filler = (1 << t["gap_bits"]) - 1
            row_counts, gaps = read_stream(sec["rows"], compact), read_stream(sec["gaps"], compact)
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
    [p.read_bytes() for p in GOLDEN]
    + [sample_file(1), sample_file(2, huffman=False), sample_file(3, compact_container=True)],
    ids=[f"{p.parent.name}/{p.name}" for p in GOLDEN] + ["sample_huffman", "sample_fixed", "sample_compact"],
)
def test_spec_decoder_agrees_with_formats(data):
    mine = decode_file(data)
    f = formats.loads(data)
    assert list(mine) == f.names
    for name, arr in mine.items():
        got = f.tensor(name)
        assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes(), name


def test_spec_quotes_the_document_dictionary():
    from dcz.formats.table import DICTIONARY

    assert spec_dictionary() == DICTIONARY and len(DICTIONARY) == 1542
