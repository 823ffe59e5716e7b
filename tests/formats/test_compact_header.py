"""Format 1.2: the header section as one zlib stream (SPEC 2.3.1)."""

import zlib

import numpy as np
import pytest

from dcz import formats
from dcz.formats import compact
from dcz.formats.layout import KIND_GRAPH, KIND_HEADER
from dcz.formats.writer import assemble


def _tensors():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 90)) < 0.05
    labels = rng.integers(0, 16, (30, 90))
    return [
        formats.SparseShared("fc.weight", mask, labels, np.linspace(-1, 1, 16).astype(np.float32), 4, 7),
        formats.Raw("fc.bias", rng.standard_normal(30).astype(np.float32)),
    ]


def test_compact_header_decodes_the_same_and_is_smaller():
    plain = formats.dumps(_tensors(), metadata={"user.note": "x" * 50})
    small = formats.dumps(_tensors(), metadata={"user.note": "x" * 50}, compact_header=True)
    a, b = formats.loads(plain), formats.loads(small)
    assert a.version == (1, 0) and b.version == (1, 2)
    assert b.metadata == a.metadata and b.names == a.names
    for name in a.names:
        np.testing.assert_array_equal(a.tensor(name), b.tensor(name))
    assert b.size_report().header_bytes < a.size_report().header_bytes - 100
    assert b.size_report().file_bytes == len(small)
    assert formats.dumps(_tensors(), metadata={"user.note": "x" * 50}, compact_header=True) == small


def test_compact_header_none_compresses_only_when_it_saves_one_percent():
    """None (the compressor's choice): a small file's header is zlib'd (1.2); a file whose header is under
    1% of it stays 1.0, readable by older readers."""
    small = formats.loads(formats.dumps(_tensors(), metadata={"user.note": "x" * 50}, compact_header=None))
    assert small.version == (1, 2)
    big = [formats.Raw("w", np.random.default_rng(1).standard_normal(100_000).astype(np.float32))]
    assert formats.loads(formats.dumps(big, metadata={"user.note": "x" * 50}, compact_header=None)).version == (1, 0)


def _file(header: bytes) -> bytes:
    return assemble([(KIND_HEADER, header), (KIND_GRAPH, b"")], compact_header=True)


GOOD = zlib.compress(b'{"graph_format":"onnx","metadata":{},"tensors":[]}', 9)


@pytest.mark.parametrize(
    "header,fragment",
    [
        (b"\x78junk", "not a valid zlib stream"),
        (GOOD[:-3], "truncated"),
        (GOOD + b"\0", "1 bytes after the compressed header"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "not a valid zlib stream"),  # Adler-32 mismatch
        (zlib.compress(b'{"a":1,"a":2}'), "section 0 (header)"),  # the JSON rules still apply
    ],
)
def test_bad_compressed_header_is_one_line(header, fragment):
    assert formats.loads(_file(GOOD)).names == []
    with pytest.raises(formats.FormatError, match="section 0 \\(header\\)") as error:
        formats.loads(_file(header))
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_header_bomb_stops_at_the_cap(monkeypatch):
    monkeypatch.setattr(compact, "MAX_HEADER_BYTES", 1000)
    bomb = zlib.compress(b" " * 10_000_000, 9)  # 10 MB of JSON whitespace in ~10 KB
    with pytest.raises(formats.FormatError, match="inflates past the 1000-byte cap"):
        formats.loads(_file(bomb))


def test_plain_json_header_in_a_1_2_file_is_read():
    data = assemble([(KIND_HEADER, zlib.decompress(GOOD)), (KIND_GRAPH, b"")], compact_header=True)
    f = formats.loads(data)
    assert f.version == (1, 2) and f.names == []
