"""Constants of the .dcz v1 layout; formats/SPEC.md is the authority, this mirrors it."""

from __future__ import annotations

import struct

MAGIC = b"\x89DCZ\r\n\x1a\n"
VERSION = (1, 4)  # the newest this package reads and writes; a file uses 1.0 unless it needs a later feature
SUPPORTED_MAJORS = (1,)

PREAMBLE_SIZE = 64
DIR_ENTRY_SIZE = 24
PREAMBLE = struct.Struct(
    "<8sHHIQII28s"
)  # magic, major, minor, sections, length, dir CRC, flags, reserved; then u32 CRC
DIR_ENTRY = struct.Struct("<QQIHH")  # offset, length, CRC32, kind, reserved
ALIGN = 8  # every section starts at a multiple of 8: the largest itemsize, so arrays view in place

# section kinds
KIND_HEADER = 1
KIND_GRAPH = 2
KIND_ARRAY = 3  # little-endian array bytes (raw tensors, float32 values, float32 codebooks)
KIND_STREAM = 4  # an integer stream: stream header, optional Huffman table, payload bits
KIND_NAMES = {KIND_HEADER: "header", KIND_GRAPH: "graph", KIND_ARRAY: "array", KIND_STREAM: "stream"}

# stream codings
CODING_FIXED = 0
CODING_HUFFMAN = 1
CODING_CHUNKED = 2  # version 1.1: canonical Huffman plus an index of where each chunk of symbols starts
CODING_RANGE = 3  # version 1.3: adaptive binary range coding of byte symbols (formats/range_coder.py)
MAX_RANGE_SYMBOLS = 1 << 16  # a range-coded stream holds at most this many symbols (SPEC 3.4.2)
MAX_RANGE_WIDTH = 8
RANGE_MINOR = 3  # the minor version of a file with a range-coded stream
STREAM_HEADER = struct.Struct("<BBBBIQ")  # coding, width, code lengths L, reserved, table symbols, count
STREAM_HEADER_SIZE = STREAM_HEADER.size  # 16

# limits (SPEC.md, "Limits")
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_SECTIONS = 1 << 20
MAX_TENSORS = 1 << 16
MAX_RANK = 8
MAX_NAME_BYTES = 1024
MAX_SYMBOL_WIDTH = 32
MAX_CODE_LENGTH = 24
MAX_CHUNKED_CODE_LENGTH = 16  # the chunked decoder's lookup table has 2^L entries
MAX_INDEX_WIDTH = 32
MAX_HUFFMAN_SYMBOLS = 65535
MAX_JSON_DEPTH = 32
MAX_ELEMENTS = (1 << 63) - 1
# Dense bytes one tensor of a file may decode to (numel x itemsize), checked at open (runtime.load: their sum): a
# small file cannot make the reader allocate more than this. Callers raise it with
# formats.open(path, max_dense_bytes=...) / runtime.load(..., max_dense_bytes=...).
DEFAULT_MAX_DENSE_BYTES = 2 << 30

# ONNX placeholder convention (SPEC.md 2.5): an initializer stored in the .dcz is an EXTERNAL tensor whose
# external_data "location" is this string; the compressor writes it, the runtime accepts no other location.
DCZ_LOCATION = "dcz"

RAW_DTYPES = ("float32", "float16", "int64", "int32", "int8", "uint8")
ENCODINGS = ("raw", "sparse", "shared", "sparse_shared")
SHARED_ENCODINGS = ("shared", "sparse_shared")  # with a codebook and a label stream
SPARSE_ENCODINGS = ("sparse", "sparse_shared")  # with CSR row-count and gap streams


def align_up(n: int, a: int = ALIGN) -> int:
    """The smallest multiple of `a` that is >= n."""
    return (n + a - 1) // a * a


def symbol_bytes(width: int) -> int:
    """Bytes per symbol in a Huffman symbol list: 1, 2 or 4 by symbol width."""
    return 1 if width <= 8 else 2 if width <= 16 else 4
