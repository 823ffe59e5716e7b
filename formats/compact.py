"""Version 1.2: the header section as one zlib stream (SPEC 2.3.1).

At 100-300x a LeNet's whole file is 5-11 KB and its JSON header ~2 KB of it; deflate takes the
repetitive tensor table and metadata to ~35% of that, while readers keep the one strict JSON
parser of 1.0/1.1 (the inflated bytes go through exactly the same checks).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from .errors import FormatError
from .layout import MAX_HEADER_BYTES

COMPACT_MINOR = 2  # minor version whose header section is zlib-compressed


def deflate_header(text: bytes) -> bytes:
    """The header section of a 1.2 file (zlib level 9: deterministic for the same input)."""
    return zlib.compress(text, 9)


def inflate_header(data: bytes, fail: Callable[[str], FormatError]) -> bytes:
    """The JSON text of a 1.2 header section: one complete zlib stream, nothing after it, at most
    MAX_HEADER_BYTES inflated (a bomb is stopped at the cap, never inflated whole)."""
    return inflate(data, fail)


def inflate(data: bytes, fail: Callable[[str], FormatError], wbits: int = 15, zdict: bytes = b"") -> bytes:
    """One complete deflate stream (zlib-wrapped for wbits 15, raw for -15, with a preset dictionary `zdict`),
    nothing after it, inflated to at most MAX_HEADER_BYTES (a bomb is stopped at the cap)."""
    inflater = zlib.decompressobj(wbits, zdict) if zdict else zlib.decompressobj(wbits)
    what = "compressed header" if wbits > 0 else "deflated header document"
    try:
        text = inflater.decompress(data, MAX_HEADER_BYTES + 1)
    except zlib.error as error:
        raise fail(f"{what} is not a valid {'zlib' if wbits > 0 else 'deflate'} stream ({error})") from None
    if len(text) > MAX_HEADER_BYTES or inflater.unconsumed_tail:
        raise fail(f"{what} inflates past the {MAX_HEADER_BYTES}-byte cap")
    if not inflater.eof:
        raise fail(f"{what} is truncated (the stream does not end)")
    if inflater.unused_data:
        raise fail(f"{len(inflater.unused_data)} bytes after the {what}'s stream")
    return text
