"""Version 1.4: the compact container (SPEC 2.6): a 16-byte preamble with varints after it, a varint section
directory, sections back to back with no padding, one CRC32 over every byte of the file but its own four.

At 100-200x a LeNet file is 8-10 KB and the 1.0 container's fixed fields cost ~500 B of it: 28 reserved preamble
bytes, 24 bytes per directory entry (offset, length, CRC, kind), up to 7 bytes of padding per section. Here an
offset is implied (the sections are contiguous), a length and kind share one varint and one CRC covers the file.
"""

from __future__ import annotations

import struct
import zlib

from .cursor import Cursor, varint
from .errors import FormatError
from .layout import KIND_ARRAY, KIND_GRAPH, KIND_HEADER, KIND_STREAM, MAGIC, MAX_SECTIONS

CONTAINER_MINOR = 4  # minor version from which a file uses the compact container
HEAD = struct.Struct("<8sHHI")  # magic, major, minor, CRC32 of every other byte of the file
HEAD_SIZE = HEAD.size  # 16
KINDS = (KIND_HEADER, KIND_GRAPH, KIND_ARRAY, KIND_STREAM)  # 1..4: stored as kind - 1 in a directory varint


def directory_entry(kind: int, length: int) -> bytes:
    """The varint of one directory entry: 4 x length + (kind - 1)."""
    return varint(4 * length + kind - 1)


def pack(major: int, minor: int, sections: list[tuple[int, bytes]]) -> bytes:
    """The bytes of a compact-container file holding `sections` ((kind, bytes) in directory order)."""
    body = varint(len(sections)) + b"".join(directory_entry(kind, len(data)) for kind, data in sections)
    body += b"".join(data for _, data in sections)
    length = HEAD_SIZE + len(body)
    while HEAD_SIZE + len(varint(length)) + len(body) != length:  # the length counts its own varint
        length = HEAD_SIZE + len(varint(length)) + len(body)
    rest = varint(length) + body
    return HEAD.pack(MAGIC, major, minor, file_crc(HEAD.pack(MAGIC, major, minor, 0), rest)) + rest


def file_crc(buf, rest=None) -> int:
    """CRC32 of a 1.4 file's bytes 0..11 and 16..end (`rest`, default buf[16:]): all but the CRC field."""
    view = memoryview(buf)
    return zlib.crc32(view[HEAD_SIZE:] if rest is None else rest, zlib.crc32(view[: HEAD_SIZE - 4]))


def read(buf) -> list[tuple[int, int, int]]:
    """Validate a compact container's preamble and directory (magic and version already checked): the
    sections as (offset, length, kind), covering the file exactly."""
    cur = Cursor(buf, 0, len(buf), "preamble")
    cur.pos = HEAD_SIZE - 4
    crc = cur.uint("u32", "CRC32")
    file_length = cur.varint("file length")
    if file_length != len(buf):
        raise cur.fail(
            f"file length field says {file_length} bytes, the file has {len(buf)}"
            + (" (truncated)" if file_length > len(buf) else " (trailing data)"),
            HEAD_SIZE,
        )
    if file_crc(buf) != crc:
        raise cur.fail("file CRC32 mismatch (the file was altered)", HEAD_SIZE - 4)
    count_at = cur.pos
    count = cur.varint("section count")
    if not 2 <= count <= min(MAX_SECTIONS, cur.left):  # every entry takes at least one byte
        raise cur.fail(f"section count {count} outside 2..{min(MAX_SECTIONS, cur.left)}", count_at)
    directory = Cursor(buf, cur.pos, len(buf), "section directory")
    entries = [(directory.pos, directory.varint(f"section {i} entry")) for i in range(count)]
    sections, end = [], directory.pos
    for i, (at, value) in enumerate(entries):
        length, kind = value >> 2, KINDS[value & 3]
        want = KIND_HEADER if i == 0 else KIND_GRAPH if i == 1 else None
        if (want and kind != want) or (not want and kind not in (KIND_ARRAY, KIND_STREAM)):
            raise directory.fail(f"section {i} has kind {kind}, not allowed at this index", at)
        if length > len(buf) - end:
            raise directory.fail(f"section {i} of {length} bytes at {end} runs past the {len(buf)}-byte file", at)
        sections.append((end, length, kind))
        end += length
    if end != len(buf):
        raise FormatError(f"file at byte {end}: {len(buf) - end} trailing bytes after the last section")
    return sections
