"""DCZ's error types: `DczError`, the base of every error the toolkit raises, and the formats package's own.

Each package has one error type and all of them derive from `DczError` (itself a `ValueError`), so
`except dcz.DczError` catches whatever `dcz` raises on bad input. `DczError` lives here because
`formats` is the package every other one depends on (compressor -> formats <- runtime).
"""

from __future__ import annotations


class DczError(ValueError):
    """Bad input to DCZ: a malformed file, a wrong config, unusable data; the message says what and where."""


class FormatError(DczError):
    """A .dcz file (or a writer input) is malformed; the message names what and where.

    Readers raise it for every defect of a file (truncation, bad magic, unsupported version,
    inconsistent lengths, bad Huffman tables, CRC mismatch, ...) with the section and the byte
    offset; writers raise it for inputs that cannot be encoded, naming the tensor and field.
    """
