"""Hostile input: every defect raises FormatError naming the section and byte offset."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from formats_helpers import (
    fix_file_crc,
    fix_preamble_crc,
    header_of,
    join,
    sample_file,
    set_dir_field,
    split,
    stream,
    with_header,
    with_section,
)

from dcz import formats
from dcz.formats.layout import MAX_HEADER_BYTES

SMALL = formats.dumps(
    [
        formats.SparseShared(
            "w", np.eye(3, dtype=bool), np.eye(3, dtype=np.int64), np.array([0.5, -1.0], np.float32), 1, 2
        )
    ],
    graph=b"g",
)


def load_all(data: bytes) -> None:
    f = formats.loads(data)
    for name in f.names:
        f.tensor(name)


def raises(data: bytes, *fragments: str) -> str:
    with pytest.raises(formats.FormatError) as exc:
        load_all(data)
    message = str(exc.value)
    for frag in fragments:
        assert frag in message, message
    return message


def sec_index(data: bytes, tensor: str, role: str) -> int:
    return next(t for t in header_of(data)["tensors"] if t["name"] == tensor)["sections"][role]


def test_truncation_at_every_byte_offset():
    data = sample_file()
    for n in range(len(data)):
        with pytest.raises(formats.FormatError):
            formats.loads(data[:n])


def test_bad_magic():
    raises(b"PK\x03\x04" + SMALL[4:], "bad magic", "at byte 0")
    raises(b"", "bad magic")


def test_future_major_version_is_refused_naming_supported_versions():
    data = fix_preamble_crc(SMALL[:8] + struct.pack("<HH", 2, 0) + SMALL[12:])
    raises(data, "2.0 is not supported", "1.x", "at byte 8")


def test_newer_minor_version_is_read():
    """A minor version newer than this reader's is read as far as it knows (SPEC 8); from 1.4 on, files use
    the compact container (SPEC 2.6), so a 1.7 file is read as one."""
    compact = formats.dumps([formats.Raw("w", np.eye(3, dtype=np.float32))], compact_container=True)
    data = fix_file_crc(compact[:8] + struct.pack("<HH", 1, 7) + compact[12:])
    f = formats.loads(data)
    assert f.version == (1, 7) and f.tensor("w").shape == (3, 3)


def test_trailing_bytes_and_file_length():
    raises(SMALL + b"\0" * 8, "trailing data", "at byte 16")
    data = fix_preamble_crc(SMALL[:16] + struct.pack("<Q", len(SMALL) + 8) + SMALL[24:]) + b"\0" * 8
    raises(data, "trailing bytes after the last section")


def test_section_count_beyond_the_bytes_left():
    data = fix_preamble_crc(SMALL[:12] + struct.pack("<I", 1000) + SMALL[16:])
    raises(data, "section directory of 1000 entries", "remain")


def test_section_length_beyond_the_file():
    raises(set_dir_field(SMALL, 1, "length", 2**63), "section 1", "runs past")


def test_overlapping_and_gapped_sections():
    off = struct.unpack_from("<Q", SMALL, 64 + 24 * 2)[0]
    raises(set_dir_field(SMALL, 2, "offset", off - 8), "section 2", "overlaps")
    raises(set_dir_field(SMALL, 2, "offset", off + 8), "section 2", "gap")


def test_nonzero_alignment_padding():
    secs = split(SMALL)
    data = bytearray(join(secs))
    off = struct.unpack_from("<Q", data, 64 + 24 * 2)[0]
    assert data[off - 1] == 0  # the graph is 1 byte, so 7 pad bytes precede section 2
    data[off - 1] = 1
    raises(bytes(data), "padding before section 2", "must be zero")


def test_crc_mismatch():
    data = bytearray(SMALL)
    data[-1] ^= 0x01
    raises(bytes(data), "CRC32 mismatch", "section")
    data = bytearray(SMALL)
    data[70] ^= 0x01
    raises(bytes(data), "directory", "CRC32 mismatch")
    data = bytearray(SMALL)
    data[40] ^= 0x01
    raises(bytes(data), "preamble", "CRC32 mismatch")


def test_header_over_its_cap():
    head = split(SMALL)[0][1] + b" " * (MAX_HEADER_BYTES + 1)
    raises(with_header(SMALL, None, raw=head), "section 0 (header)", "cap")


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"metadata":{"user.x":NaN}}', "NaN"),
        (b"[" * 100 + b"]" * 100, "nests"),
        (b"\xff", "not UTF-8"),
        (b"[]", "must be an object"),
    ],
)
def test_malformed_header_json(raw, fragment):
    raises(with_header(SMALL, None, raw=raw), "section 0 (header)", fragment)


def _mutate_entry(data, **fields):
    obj = header_of(data)
    obj["tensors"][0].update(fields)
    return with_header(data, obj)


def test_shape_overflowing_2_63():
    raises(_mutate_entry(SMALL, shape=[2**32, 2**31]), "more than 2**63")


@pytest.mark.parametrize(
    "fields, fragment",
    [
        (dict(encoding="zip"), "unknown encoding"),
        (dict(dtype="float64"), "dtype"),
        (dict(label_bits=9), "label_bits"),
        (dict(codebook_size=3), "codebook_size"),  # 3 > 2**1
        (dict(nnz=-1), "nnz"),
        (dict(shape=[3, -3]), "shape"),
        (dict(shape=[1] * 9), "at most 8"),
        (dict(sections={"rows": 2}), "sections must map"),
        (dict(groups=2), "groups"),
        (dict(name=""), "name"),
    ],
)
def test_bad_tensor_table_fields(fields, fragment):
    raises(_mutate_entry(SMALL, **fields), "section 0 (header)", fragment)


def test_section_used_twice_or_not_at_all():
    obj = header_of(SMALL)
    secs = obj["tensors"][0]["sections"]
    secs["rows"] = secs["gaps"]
    raises(with_header(SMALL, obj), "already used")


def test_count_beyond_the_bytes_left():
    i = sec_index(SMALL, "w", "labels")
    raises(with_section(SMALL, i, stream(0, 1, 2**40, b"\0")), f"section {i}", "payload bytes")
    raises(with_section(SMALL, i, stream(1, 1, 2**40, b"\0", counts=[1], symbols=[0])), f"section {i}", "declares")


def test_nonzero_pad_bits():
    i = sec_index(SMALL, "w", "labels")  # 3 labels of 1 bit: '100' then 5 pad bits
    raises(with_section(SMALL, i, stream(0, 1, 3, bytes([0b10000001]))), f"section {i}", "pad bits")


def test_over_subscribed_and_incomplete_huffman_tables():
    i = sec_index(SMALL, "w", "labels")
    raises(with_section(SMALL, i, stream(1, 1, 3, b"\0", counts=[3], symbols=[0, 1, 0])), "over-subscribed")
    raises(with_section(SMALL, i, stream(1, 2, 3, b"\0", counts=[1, 1], symbols=[0, 1], n_sym=2)), "incomplete")


def test_code_length_beyond_the_limit():
    i = sec_index(SMALL, "w", "labels")
    counts = [1] * 24 + [2]
    raises(with_section(SMALL, i, stream(1, 8, 3, b"\0", counts=counts, symbols=list(range(26)))), "max code length 25")


def test_huffman_payload_shorter_than_its_symbols():
    i = sec_index(SMALL, "w", "labels")
    # codes '0' -> 0 and '1' -> 1; 3 symbols declared but a 1-byte payload holds 8: fine; declare 9
    raises(with_section(SMALL, i, stream(1, 1, 9, b"\0", counts=[2], symbols=[0, 1])), "declares")


def test_labels_at_or_beyond_codebook_size():
    data = formats.dumps(
        [
            formats.SparseShared(
                "w", np.eye(3, dtype=bool), np.eye(3, dtype=np.int64), np.array([0.5, -1.0, 2.0], np.float32), 2, 2
            )
        ]
    )
    i = sec_index(data, "w", "labels")
    raises(with_section(data, i, stream(0, 2, 3, bytes([0b11000000]))), f"section {i}", "label 3 >= codebook size 3")


def test_gaps_running_past_the_row():
    i, j = sec_index(SMALL, "w", "gaps"), sec_index(SMALL, "w", "rows")
    # rows hold 1, 1, 2 symbols; row 2 is a filler (advance 3) then gap 0: column 3 of a 3-column row
    data = with_section(SMALL, j, stream(0, 2, 3, bytes([0b01011000])))
    data = with_section(data, i, stream(0, 2, 4, bytes([0b00011100])))
    raises(data, f"section {i}", "run past row 2", "column 3 >= 3")


def test_trailing_filler_in_a_row():
    i = sec_index(SMALL, "w", "gaps")
    raises(with_section(SMALL, i, stream(0, 2, 3, bytes([0b00001100]))), f"section {i}", "ends with a filler")


def test_row_counts_disagreeing_with_gaps():
    j = sec_index(SMALL, "w", "rows")
    raises(with_section(SMALL, j, stream(0, 2, 3, bytes([0b01011000]))), f"section {j}", "add up to")


def test_writer_rejects_bad_inputs_by_name():
    m = np.ones((2, 2), bool)
    lab = np.zeros((2, 2), np.int64)
    cases = [
        (formats.SparseShared("a", m, lab + 4, np.zeros(4, np.float32), 2, 2), "labels must lie in 0..3"),
        (formats.SparseShared("a", m, lab, np.zeros(5, np.float32), 2, 2), "codebook size 5"),
        (formats.SparseShared("a", m, lab, np.zeros(2, np.float32), 9, 2), "label_bits"),
        (formats.SparseShared("a", m, lab, np.zeros(2, np.float32), 1, 0), "gap_bits"),
        (formats.Sparse("a", np.zeros((2, 2), np.float32), m.astype(int), 3), "mask must be bool"),
        (formats.Raw("a", np.zeros(2, np.float64)), "raw dtype"),
        (formats.Shared("a", lab, np.zeros((3, 2), np.float32), 1, group_rows=1), "groups"),
    ]
    for t, fragment in cases:
        with pytest.raises(formats.FormatError, match=fragment):
            formats.dumps([t])
    with pytest.raises(formats.FormatError, match="reserved"):
        formats.dumps([], metadata={"dcz.x": 1})
    with pytest.raises(formats.FormatError, match="namespaced"):
        formats.dumps([], metadata={"Bad": 1})
    with pytest.raises(formats.FormatError, match="given twice"):
        formats.dumps([formats.Raw("a", np.zeros(1, np.float32))] * 2)


def test_open_from_disk_raises_format_error_not_buffer_error(tmp_path):
    """formats.open memory-maps; a damaged file must still surface as FormatError."""
    data = sample_file()
    damaged = {
        "truncated.dcz": data[:-5],
        "crc.dcz": data[:-1] + bytes([data[-1] ^ 1]),
        "header.dcz": with_header(data, None, raw=b'{"metadata":{},"graph_format":"onnx","tensors":[{}]}'),
        "stream.dcz": with_section(SMALL, sec_index(SMALL, "w", "labels"), stream(0, 1, 2**40, b"\0")),
    }
    for name, blob in damaged.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(formats.FormatError) as exc:
            formats.open(path)
        assert "at byte" in str(exc.value), name
    (tmp_path / "empty.dcz").write_bytes(b"")
    with pytest.raises(formats.FormatError, match="empty"):
        formats.open(tmp_path / "empty.dcz")


def test_header_numbers_that_overflow_are_rejected():
    raises(
        with_header(SMALL, None, raw=b'{"metadata":{"user.x":1e400},"graph_format":"onnx","tensors":[]}'),
        "section 0 (header)",
        "overflows",
    )


def test_depth_is_counted_outside_strings_only():
    obj = header_of(SMALL)
    obj["metadata"]["user.brackets"] = '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'
    assert formats.loads(with_header(SMALL, obj)).metadata["user.brackets"].startswith("[[[")


def test_huge_symbol_values_size_no_array():
    """A Huffman table listing symbol 2**32 - 1 must not allocate a 2**32-entry lookup table."""
    j = sec_index(SMALL, "w", "rows")
    valid = stream(1, 32, 3, bytes([0b00000000]), counts=[2], symbols=[1, 2**32 - 1], sym_fmt="I")
    load_all(with_section(SMALL, j, valid))  # rows 1, 1, 1: the file is fine
    hostile = stream(1, 32, 3, bytes([0b01000000]), counts=[2], symbols=[1, 2**32 - 1], sym_fmt="I")
    raises(with_section(SMALL, j, hostile), f"section {j}", "row count exceeds")


def test_writer_refuses_a_header_over_its_cap():
    with pytest.raises(formats.FormatError, match="cap"):
        formats.dumps([], metadata={"user.big": "x" * (MAX_HEADER_BYTES + 1)})


def test_a_shape_too_large_to_allocate_is_a_format_error():
    obj = header_of(SMALL)
    obj["tensors"][0]["shape"] = [3, 2**60]  # rows stay 3, the gaps stay valid: only the output is absurd
    with pytest.raises(formats.FormatError, match="at byte .*over the .*-byte budget"):
        load_all(with_header(SMALL, obj))
    with pytest.raises(formats.FormatError, match="at byte .*cannot allocate"):
        f = formats.loads(with_header(SMALL, obj), max_dense_bytes=2**70)
        f.tensor("w")
