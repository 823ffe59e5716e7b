"""Parse byte sizes as people write them: "100KB", "1.5MB", "256KiB", "64k", "1000000".

Decimal (SI) prefixes are powers of 1000 and binary (IEC) prefixes powers of 1024, as in `numfmt`
and the IEC 80000-13 standard: 100KB = 100,000 bytes, 256KiB = 262,144 bytes. A bare number is bytes.
Fractions are allowed and rounded down (a budget is a maximum). The trailing "B" is optional and case
does not matter for the prefix letter ("64k", "64kb" and "64KB" are all 64,000 bytes).
"""

from __future__ import annotations

import re

from dcz._cli.errors import EXIT_USAGE, CliError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_PATTERN = re.compile(r"^\s*(?P<number>\d[\d_]*(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")
EXAMPLES = "100KB, 1.5MB, 256KiB, 64k or 1000000"


def parse_size(text: str) -> int:
    """Number of bytes that `text` stands for; CliError (exit 2) when it is not a size."""
    match = _PATTERN.match(str(text))
    if match is None:
        raise CliError(f"invalid size {text!r}: not a number of bytes", f"write it like {EXAMPLES}", EXIT_USAGE)
    unit = match["unit"].lower()
    if unit not in _UNITS:
        raise CliError(
            f"invalid size {text!r}: unknown unit {match['unit']!r}",
            f"use B, KB, MB, GB (x1000) or KiB, MiB, GiB (x1024), e.g. {EXAMPLES}",
            EXIT_USAGE,
        )
    number = match["number"].replace("_", "")
    whole, _, fraction = number.partition(".")
    # Exact integer arithmetic: float("1.1") * 10**9 must not turn into 1,099,999,999.
    scale = 10 ** len(fraction)
    size = (int(whole or "0") * scale + int(fraction or "0")) * _UNITS[unit] // scale
    if size <= 0:
        raise CliError(f"invalid size {text!r}: must be at least 1 byte", f"write it like {EXAMPLES}", EXIT_USAGE)
    return size


def size_at_least(size: int) -> str:
    """A short size, as `parse_size` reads it, of at least `size` bytes: 4,294,967,296 -> '4.3GB'."""
    size = int(size)
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor:
            tenths = -(-size * 10 // factor)  # rounded up: the result must not fall short
            return f"{tenths // 10}{unit}" if tenths % 10 == 0 else f"{tenths / 10:.1f}{unit}"
    return f"{max(size, 1)}B"


def format_size(size: int) -> str:
    """Human form of a byte count, with the exact figure: '27,648 B (27.6 KB)'."""
    size = int(size)
    if abs(size) < 1000:
        return f"{size:,} B"
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if abs(size) >= factor:
            return f"{size:,} B ({size / factor:.1f} {unit})"
    return f"{size:,} B"  # pragma: no cover
