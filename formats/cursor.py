"""A bounded reader over a byte buffer: every read names what it reads and is checked first.

Offsets are absolute file offsets in Python ints, so a hostile length can never wrap; a read
that would pass the end of its window raises FormatError naming the section, field and offset
before anything is allocated.
"""

from __future__ import annotations

import struct

from .errors import FormatError

_FMT = {"u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q"}
MAX_VARINT_BYTES = 10  # LEB128 of a value below 2^64
MAX_VARINT = (1 << 64) - 1


class Cursor:
    """Reads [start, end) of `buf`; `where` names the window in error messages."""

    def __init__(self, buf, start: int, end: int, where: str):
        if not 0 <= start <= end <= len(buf):
            raise FormatError(f"{where}: window [{start}, {end}) lies outside the {len(buf)}-byte file")
        self.buf = buf
        self.pos = start
        self.start = start
        self.end = end
        self.where = where

    @property
    def left(self) -> int:
        """Bytes left in the window."""
        return self.end - self.pos

    def fail(self, message: str, at: int | None = None) -> FormatError:
        """A FormatError naming this window and the byte offset (default: the current one)."""
        return FormatError(f"{self.where} at byte {self.pos if at is None else at}: {message}")

    def need(self, n: int, what: str) -> None:
        """Raise unless `n` more bytes are available for `what`."""
        if n < 0 or n > self.left:
            raise self.fail(f"{what} needs {n} bytes but only {self.left} remain")

    def bytes(self, n: int, what: str) -> memoryview:
        """The next `n` bytes (a view, no copy)."""
        self.need(n, what)
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def uint(self, kind: str, what: str) -> int:
        """An unsigned little-endian integer: kind is u8, u16, u32 or u64."""
        fmt = _FMT[kind]
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def zeros(self, n: int, what: str) -> None:
        """Consume `n` bytes that MUST be zero."""
        at = self.pos
        chunk = bytes(self.bytes(n, what))
        if chunk.count(0) != n:
            bad = next(i for i, b in enumerate(chunk) if b)
            raise self.fail(f"{what} must be zero", at + bad)

    def expect_end(self, what: str) -> None:
        """Raise if bytes remain in the window."""
        if self.left:
            raise self.fail(f"{self.left} trailing bytes after {what}")

    def varint(self, what: str, hi: int = MAX_VARINT) -> int:
        """An unsigned LEB128 integer (version 1.4, SPEC 2.6.1): 7 bits a byte, least significant group first,
        at most 10 bytes, minimal (no trailing zero group), at most `hi`; checked byte by byte, so a hostile
        run of continuation bytes is refused at its 11th byte."""
        at, value, shift = self.pos, 0, 0
        while True:
            if shift >= 7 * MAX_VARINT_BYTES:
                raise self.fail(f"{what}: varint longer than {MAX_VARINT_BYTES} bytes", at)
            byte = self.uint("u8", what)
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if byte == 0 and shift > 7:
            raise self.fail(f"{what}: varint is not minimal (ends with a zero byte)", at)
        if value > hi:
            raise self.fail(f"{what} {value} exceeds {hi}", at)
        return value


def varint(value: int) -> bytes:
    """The minimal LEB128 bytes of a non-negative int below 2^64 (the writer side of Cursor.varint)."""
    if not 0 <= value <= MAX_VARINT:
        raise FormatError(f"varint value {value} outside 0..2^64-1")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
