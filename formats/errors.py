"""The single error type of the formats package."""
from __future__ import annotations


class FormatError(ValueError):
    """A .dcz file (or a writer input) is malformed; the message names what and where.

    Readers raise it for every defect of a file (truncation, bad magic, unsupported version,
    inconsistent lengths, bad Huffman tables, CRC mismatch, ...) with the section and the byte
    offset; writers raise it for inputs that cannot be encoded, naming the tensor and field.
    """
