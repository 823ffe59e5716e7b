"""SPEC.md stays in step with the code: its worked example and its constants."""

import re
import zlib
from pathlib import Path

import numpy as np

from dcz import formats
from dcz.formats import layout

SPEC = (Path(formats.__file__).parent / "SPEC.md").read_text()


def test_worked_example_hexdump_is_what_the_writer_writes():
    block = SPEC.split("<!-- BEGIN example hexdump -->")[1].split("<!-- END example hexdump -->")[0]
    hexdump = bytes.fromhex("".join(line[10:57] for line in block.splitlines() if re.match(r"^[0-9a-f]{8}  ", line)))
    data = formats.dumps(
        [
            formats.SparseShared(
                "w", np.eye(3, dtype=bool), np.eye(3, dtype=np.int64), np.array([0.5, -1.0], np.float32), 1, 2
            )
        ],
        huffman=False,
    )
    assert hexdump == data
    assert np.array_equal(formats.loads(hexdump).tensor("w"), -np.eye(3, dtype=np.float32))


def test_crc_check_value():
    assert zlib.crc32(b"123456789") == 0xCBF43926 and "0xCBF43926" in SPEC


def test_constants_match_the_spec():
    assert "89 44 43 5A 0D 0A 1A 0A" in SPEC and layout.MAGIC == bytes.fromhex("89 44 43 5A 0D 0A 1A 0A")
    assert layout.MAX_HEADER_BYTES == 16 * 1024 * 1024 and "16 MiB" in SPEC
    assert layout.MAX_SECTIONS == 2**20 and "2^20" in SPEC
    assert layout.MAX_TENSORS == 65536 and "65,536" in SPEC
    assert layout.MAX_CODE_LENGTH == 24 and "1..24" in SPEC
    assert layout.MAX_HUFFMAN_SYMBOLS == 65535 and "65,535" in SPEC
    assert layout.MAX_RANK == 8 and layout.MAX_NAME_BYTES == 1024 and layout.MAX_JSON_DEPTH == 32
    assert layout.ALIGN == 8 and layout.PREAMBLE_SIZE == 64 and layout.DIR_ENTRY_SIZE == 24
    assert layout.STREAM_HEADER_SIZE == 16
