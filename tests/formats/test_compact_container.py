"""Version 1.4, the compact container (SPEC 2.6): the same tensors, graph and metadata as the 1.0 container in
fewer bytes, and every hostile preamble, directory, table, document and stream header refused in one line."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from formats_helpers import sample_file, sample_tensors
from hypothesis import given, settings
from hypothesis import strategies as st
from test_formats_properties import tensors as any_tensor

from dcz import formats
from dcz.formats import container, table
from dcz.formats.cursor import Cursor, varint
from dcz.formats.layout import KIND_ARRAY, KIND_GRAPH, KIND_HEADER, KIND_STREAM

GRAPH, META = b"graph-bytes", {"user.note": "test", "compress.accuracy": {"dense": 97.5, "shared": 97.25}}


def compact(tensor_list, **kw) -> bytes:
    return formats.dumps(tensor_list, graph=GRAPH, metadata=META, compact_container=True, **kw)


def same_file(a: formats.DczFile, b: formats.DczFile) -> None:
    """Same names, infos, arrays (bits and dtype), graph and user metadata."""
    assert a.names == b.names and a.graph == b.graph and a.graph_format == b.graph_format
    assert {k: v for k, v in a.metadata.items() if k != "dcz.sizes"} == {
        k: v for k, v in b.metadata.items() if k != "dcz.sizes"
    }
    for name in a.names:
        x, y = a.tensor(name), b.tensor(name)
        assert a.info(name) == b.info(name) and x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("range_coding", [False, True])
def test_compact_file_reads_as_the_plain_one(seed, range_coding):
    plain = formats.loads(sample_file(seed, range_coding=range_coding))
    small = formats.loads(sample_file(seed, range_coding=range_coding, compact_container=True))
    assert small.version == (1, 4) and small.compact
    same_file(plain, small)
    report = small.size_report()
    assert report.padding_bytes == 0 and report.file_bytes < plain.size_report().file_bytes
    assert "dcz.sizes" not in small.metadata  # derived from the sections instead (SPEC 6)
    assert plain.metadata["dcz.sizes"]["huffman_bytes"] > sum(t.huffman_bytes for t in report.tensors)


@settings(max_examples=200)
@given(st.lists(any_tensor(), min_size=1, max_size=3), st.booleans(), st.sampled_from([None, 0, 3]), st.booleans())
def test_any_tensors_round_trip_in_the_compact_container(drawn, huffman, chunk_symbols, range_coding):
    tensor_list = [type(t)(f"layer{i}.{t.name}", *list(vars(t).values())[1:]) for i, t in enumerate(drawn)]
    kw = {"huffman": huffman, "chunk_symbols": chunk_symbols, "range_coding": range_coding and huffman}
    plain = formats.dumps(tensor_list, graph=GRAPH, metadata=META, **kw)
    same_file(formats.loads(plain), formats.loads(compact(tensor_list, **kw)))


def test_writes_are_deterministic_and_write_returns_the_report(tmp_path):
    assert compact(sample_tensors(1)) == compact(sample_tensors(1))
    report = formats.write(tmp_path / "a.dcz", sample_tensors(1), compact_container=True)
    assert report.file_bytes == (tmp_path / "a.dcz").stat().st_size and report.padding_bytes == 0


def test_an_empty_table_and_empty_graph():
    f = formats.loads(formats.dumps([], compact_container=True))
    assert f.names == [] and f.graph == b"" and f.version == (1, 4)


def test_names_share_prefixes_and_keep_unicode():
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "é.weight", "é.bias", "a"]
    data = compact([formats.Raw(n, np.arange(3, dtype=np.float32)) for n in names])
    assert formats.loads(data).names == names
    assert data.count(b"conv1") == 1  # the second name stores only its new bytes


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
def test_varints_round_trip(value):
    data = varint(value)
    cur = Cursor(data, 0, len(data), "test")
    assert cur.varint("v") == value and cur.left == 0 and len(data) == max(1, -(-value.bit_length() // 7))


# ---------------------------------------------------------------- hostile files

BASE = compact(sample_tensors(2), range_coding=True)


def parts(data: bytes) -> list[tuple[int, bytes]]:
    f = formats.loads(data)
    return [(s.kind, bytes(data[s.offset : s.offset + s.length])) for s in f._sections]


def repack(sections, minor: int = 4) -> bytes:
    return container.pack(1, minor, sections)


def with_header(header: bytes, data: bytes = BASE) -> bytes:
    sections = parts(data)
    sections[0] = (KIND_HEADER, header)
    return repack(sections)


def refused(data: bytes, *fragments: str) -> str:
    with pytest.raises(formats.FormatError) as error:
        formats.loads(data)
    message = str(error.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def test_repacking_a_file_gives_the_same_bytes():
    assert repack(parts(BASE)) == BASE


def test_every_flipped_byte_is_refused():
    """One CRC32 covers every byte but its own four, which a flip makes wrong: nothing is ever misread."""
    for i in range(len(BASE)):
        damaged = bytearray(BASE)
        damaged[i] ^= 0x41
        refused(bytes(damaged))


def test_every_truncation_is_refused():
    for n in range(len(BASE)):
        refused(BASE[:n])
    refused(BASE + b"\0", "trailing data")


def front(count: bytes, tail: bytes, length=varint, delta: int = 0) -> bytes:
    """A 1.4 file of BASE's first 12 bytes, its file length (encoded by `length`, declaring `delta` bytes more
    than the file has), section count bytes `count` and then `tail`; with a valid CRC32."""
    n = 16 + len(count) + len(tail)
    while 16 + len(length(n + delta)) + len(count) + len(tail) != n:
        n = 16 + len(length(n + delta)) + len(count) + len(tail)
    rest = length(n + delta) + count + tail
    return BASE[:12] + struct.pack("<I", container.file_crc(BASE[:12] + bytes(4) + rest)) + rest


def base_tail() -> tuple[int, bytes]:
    """BASE's section count and the bytes after it (directory and sections)."""
    cur = Cursor(BASE, 16, len(BASE), "t")
    cur.varint("length")
    count = cur.varint("count")
    return count, BASE[cur.pos :]


def test_preamble_and_directory_fields():
    count, tail = base_tail()
    assert front(varint(count), tail) == BASE
    refused(front(varint(count), tail, delta=1), "preamble at byte 16", "truncated")
    refused(front(varint(count), tail, delta=-1), "trailing data")
    refused(front(varint(count), tail, lambda n: varint(n)[:-1] + bytes([varint(n)[-1] | 0x80, 0])), "not minimal")
    refused(front(b"\x80" * 11, tail), "varint longer than 10 bytes")
    refused(front(varint(1), tail), "section count 1 outside")
    refused(front(varint(0), tail), "section count 0 outside")
    refused(front(varint(2**20 + 1), tail), "outside 2..")
    refused(front(varint(count + 1), tail), "section directory")  # the header's first byte read as an entry
    refused(front(varint(count - 1), tail), "trailing bytes after the last section")


@pytest.mark.parametrize(
    "index,kind,fragment",
    [(0, KIND_GRAPH, "section 0 has kind 2"), (1, KIND_HEADER, "section 1 has kind 1"), (2, KIND_GRAPH, "kind 2")],
)
def test_kinds_at_their_index(index, kind, fragment):
    sections = parts(BASE)
    sections[index] = (kind, sections[index][1])
    refused(repack(sections), fragment)


def test_a_section_of_the_wrong_kind_for_its_role():
    sections = parts(BASE)
    kinds = [k for k, _ in sections]
    i = kinds.index(KIND_ARRAY, 2)
    sections[i] = (KIND_STREAM, sections[i][1])
    refused(repack(sections), "needs array")


def test_a_length_past_the_file():
    body = varint(2) + varint(4 * 1000 + KIND_HEADER - 1) + varint(KIND_GRAPH - 1)
    data = repack([(KIND_HEADER, b""), (KIND_GRAPH, b"")])
    start = data.index(varint(2) + bytes([0, 1]))
    hostile = data[:start] + body + data[start + 3 :]
    hostile = hostile[:16] + varint(len(hostile)) + hostile[17:]
    hostile = hostile[:12] + struct.pack("<I", container.file_crc(hostile)) + hostile[16:]
    refused(hostile, "runs past")


def test_newer_minor_reads_and_older_layout_is_refused():
    sections = parts(BASE)
    assert formats.loads(repack(sections, 9)).version == (1, 9)
    refused(repack(sections, 3), "preamble")  # a 1.3 reader's view: the 64-byte preamble's CRC32 is wrong


def record(name: bytes, code: int, shape, *fields: bytes, prefix: int = 0) -> bytes:
    return (
        varint(prefix)
        + varint(len(name) - prefix)
        + name[prefix:]
        + bytes([code, len(shape)])
        + b"".join(varint(d) for d in shape)
        + b"".join(fields)
    )


DOC = b'{"graph_format":"onnx","metadata":{}}'


def raw_file(*records: bytes, doc: bytes = b"\0" + DOC, count=None, sections: int = 1) -> bytes:
    header = varint(len(records) if count is None else count) + b"".join(records) + doc
    data = [(KIND_HEADER, header), (KIND_GRAPH, b"")] + [(KIND_ARRAY, np.zeros(2, "<f4").tobytes())] * sections
    return repack(data)


def test_a_hand_made_table_reads():
    f = formats.loads(raw_file(record(b"w", 0, [2])))
    assert f.names == ["w"] and f.tensor("w").tolist() == [0.0, 0.0] and f.graph_format == "onnx"
    f = formats.loads(raw_file(record(b"w", 1 << 2, [4])))  # code 1 << 2: float16, 4 elements in 8 bytes
    assert f.info("w").dtype == "float16" and f.tensor("w").dtype == np.float16
    refused(raw_file(record(b"w", 1 << 2, [2])), "section 2 (tensor 'w' data)", "holds 8 bytes, 4 expected")


@pytest.mark.parametrize(
    "records,kw,fragment",
    [
        ([record(b"w", 0, [2])], {"count": 70000}, "tensor count 70000 exceeds 65536"),
        ([record(b"w", 0, [2])], {"count": 100}, "100 tensors declared"),
        ([record(b"w", 0, [2], prefix=0)[:0] + varint(1) + varint(1) + b"w" + bytes([0, 1, 2])], {}, "name prefix"),
        ([varint(0) + varint(1025) + b"w" * 1025 + bytes([0, 1, 2])], {}, "name length 1025 exceeds 1024"),
        ([varint(0) + varint(0) + bytes([0, 1, 2])], {}, "name must be a non-empty str"),
        ([record(b"\xff", 0, [2])], {}, "name is not UTF-8"),
        ([record(b"w", 6 << 2, [2])], {}, "names no dtype"),
        ([record(b"w", 1 << 2 | 2, [2])], {}, "names no dtype"),
        ([record(b"w", 0, [1] * 9)], {}, "rank 9 exceeds 8"),
        ([record(b"w", 0, [2**63, 2])], {}, "more than 2**63 - 1 elements"),
        ([record(b"w", 0, [2]), record(b"w", 0, [2], prefix=1)], {"sections": 2}, "appears twice"),
        ([record(b"w", 0, [2])], {"sections": 2}, "use 1 sections, the file has 2"),
        ([record(b"w", 0, [2]), record(b"v", 0, [2])], {}, "use 2 sections, the file has 1"),
        ([record(b"w", 0, [2])], {"doc": b"\x02" + DOC}, "unknown document coding 2"),
        ([record(b"w", 0, [2])], {"doc": b"\0" + DOC[:-1] + b',"tensors":[]}'}, "must not hold 'tensors'"),
        ([record(b"w", 0, [2])], {"doc": b"\0" + b'{"a":1,"a":2}'}, "duplicate key"),
        ([record(b"w", 0, [2])], {"doc": b"\0[]"}, "must be an object"),
        ([record(b"w", 0, [2])], {"doc": b""}, "document coding needs 1 bytes"),
        ([record(b"w", 0, [2])], {"doc": b"\1\xff\xff"}, "not a valid deflate stream"),
        ([record(b"w", 0, [2])], {"doc": b"\1" + table.deflate(DOC)[:-2]}, "truncated"),
        ([record(b"w", 0, [2])], {"doc": b"\1" + table.deflate(DOC) + b"\0"}, "1 bytes after"),
    ],
)
def test_hostile_tables(records, kw, fragment):
    refused(raw_file(*records, **kw), "section 0 (header)", fragment)


def shared_record(bits: int, k: int, group_rows: int, code: int = 2, shape=(4, 2)) -> bytes:
    return record(b"s", code, list(shape), bytes([bits]), varint(k), varint(group_rows))


@pytest.mark.parametrize(
    "rec,fragment",
    [
        (shared_record(0, 2, 0), "'label_bits' must be an int in 1..8"),
        (shared_record(9, 2, 0), "'label_bits' must be an int in 1..8"),
        (shared_record(0x31, 2, 0), "set a width its encoding lacks"),
        (shared_record(1, 3, 0), "'codebook_size' must be an int in 1..2"),
        (shared_record(8, 257, 0), "codebook size 257 exceeds 256"),
        (shared_record(1, 2, 2**63), "'group_rows' must be an int"),
        (record(b"s", 1, [4, 2], bytes([0x01]), varint(1)), "set a width its encoding lacks"),
        (record(b"s", 1, [4, 2], bytes([0x90]), varint(1)), "'gap_bits' must be an int in 1..8"),
        (record(b"s", 1, [4, 2], bytes([0x20]), varint(9)), "'nnz' must be an int in 0..8"),
    ],
)
def test_hostile_records_name_the_field(rec, fragment):
    sections = 3 if rec[3] & 3 == 1 else 2  # sparse: rows, gaps, values; shared: codebook, labels
    refused(raw_file(rec, sections=sections), "section 0 (header)", fragment)


def test_document_bomb_stops_at_the_cap(monkeypatch):
    from dcz.formats import compact as compact_module

    monkeypatch.setattr(compact_module, "MAX_HEADER_BYTES", 1000)
    doc = b'{"graph_format":"onnx","metadata":{"user.pad":"' + b"x" * 5000 + b'"}}'
    refused(raw_file(record(b"w", 0, [2]), doc=b"\1" + table.deflate(doc)), "past the 1000-byte cap")


def test_plain_document_reads():
    doc = b'{"graph_format":"x","metadata":{"user.a":[1,2]}}'
    f = formats.loads(raw_file(record(b"w", 0, [2]), doc=b"\0" + doc))
    assert f.graph_format == "x" and f.metadata == {"user.a": [1, 2]}


# ---------------------------------------------------------------- compact stream headers


def stream_file(stream: bytes) -> bytes:
    """A shared tensor of 8 one-bit labels whose label stream is `stream` (compact header)."""
    rec = shared_record(1, 2, 0)
    header = varint(1) + rec + b"\0" + DOC
    book = np.array([0.5, -1.0], "<f4").tobytes()
    return repack([(KIND_HEADER, header), (KIND_GRAPH, b""), (KIND_ARRAY, book), (KIND_STREAM, stream)])


def test_a_hand_made_compact_stream_reads():
    f = formats.loads(stream_file(bytes([0, 1, 0]) + varint(0) + varint(8) + b"\xa5"))
    assert f.tensor("s").ravel().tolist() == [-1.0, 0.5, -1.0, 0.5, 0.5, -1.0, 0.5, -1.0]


@pytest.mark.parametrize(
    "stream,fragment",
    [
        (bytes([0, 1, 0]) + varint(0) + varint(9) + b"\xa5", "needs 2 payload bytes"),
        (bytes([0, 1, 0]) + varint(0) + varint(2**64 - 1) + b"\xa5", "needs"),
        (bytes([0, 1, 0]) + varint(0) + b"\x88\x00", "not minimal"),
        (bytes([0, 1, 0]) + varint(2**32) + varint(8) + b"\xa5", "stream table symbols 4294967296 exceeds"),
        (bytes([0, 0, 0]) + varint(0) + varint(8) + b"\xa5", "width 0 outside"),
        (bytes([9, 1, 0]) + varint(0) + varint(8) + b"\xa5", "unknown stream coding 9"),
        (bytes([1, 1, 1]) + varint(70000) + varint(8) + b"\xa5", "Huffman symbol count 70000"),
        (bytes([3, 1, 5]) + varint(0) + varint(70000) + bytes(4), "declares 70000 symbols"),
        (bytes([3, 1, 5]) + varint(2) + varint(8) + bytes(4), "context model 2"),
        (bytes([0, 1]), "stream code length needs 1 bytes"),
        (bytes([0, 1, 0]) + varint(0) + varint(4) + b"\xa0", "8 expected"),
    ],
)
def test_hostile_compact_stream_headers(stream, fragment):
    refused(stream_file(stream), fragment)


def test_old_style_stream_header_in_a_compact_file_is_refused():
    old = struct.pack("<BBBBIQ", 0, 1, 0, 0, 0, 8) + b"\xa5"
    refused(stream_file(old), "section 3")


def test_crc_field_itself_is_checked():
    data = bytearray(BASE)
    data[12] ^= 1
    refused(bytes(data), "file CRC32 mismatch")
    assert container.file_crc(BASE) == struct.unpack_from("<I", BASE, 12)[0]
    assert container.file_crc(BASE) == zlib.crc32(BASE[16:], zlib.crc32(BASE[:12]))


def test_spec_quotes_the_graph_dictionary():
    from pathlib import Path

    from dcz.formats.graph_codec import GRAPH_DICTIONARY

    spec = (Path(__file__).resolve().parents[2] / "formats" / "SPEC.md").read_text()
    block = spec.split("<!-- BEGIN graph dictionary -->")[1].split("<!-- END graph dictionary -->")[0]
    assert bytes.fromhex(block.strip().strip("`").replace("\n", " ")) == GRAPH_DICTIONARY
    assert len(GRAPH_DICTIONARY) == 961


def test_unaligned_values_reach_the_compiled_core_aligned(monkeypatch):
    """Sections of a 1.4 file start at any offset: the compiled core (which loads floats) gets an aligned copy."""
    from dcz.formats import native

    core = native.core()
    if core is None:
        pytest.skip("compiled core not built")
    rng = np.random.default_rng(3)
    mask = rng.random((5, 9)) < 0.5
    values = rng.standard_normal((5, 9)).astype(np.float32)
    data = compact([formats.Raw("odd", np.zeros(3, np.uint8)), formats.Sparse("p", values, mask, 2)])
    f = formats.loads(data)
    assert any(s.offset % 4 for s in f._sections[2:])  # the layout this test is about
    seen = []

    class Spy:
        def __getattr__(self, name):
            return getattr(core, name)

        def scatter(self, rows, gaps, labels, book, *rest):
            seen.append(book.flags.aligned)
            return core.scatter(rows, gaps, labels, book, *rest)

    monkeypatch.setattr(native, "core", lambda: Spy())
    assert f.tensor("p").tobytes() == np.where(mask, values, 0).astype(np.float32).tobytes()
    assert seen == [True]
