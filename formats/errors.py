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


class DenseBudgetError(FormatError):
    """A file declares more decoded dense bytes than the reader's budget (`max_dense_bytes`) allows.

    The file need not be damaged: the budget guards a caller against a small file that declares a huge
    tensor. The figures travel as data (`declared`, `limit`, `tensor`: None for the sum of a model's
    tensors) so that each front end says how to raise the budget in its own terms: `str()` names the
    Python parameter, the command line renders `message("--max-dense-bytes SIZE")`.
    """

    def __init__(self, declared: int, limit: int, tensor: str | None = None, where: str = ""):
        self.declared = declared
        self.limit = limit
        self.tensor = tensor
        self.where = where
        super().__init__(self.message("max_dense_bytes="))

    @property
    def problem(self) -> str:
        """What is over the budget, without the advice."""
        if self.tensor is None:
            what = f"the model's tensors declare {self.declared:,} dense bytes together"
        else:
            what = f"tensor {self.tensor!r} declares {self.declared:,} dense bytes"
        text = f"{what}, over the {self.limit:,}-byte budget"
        return f"{self.where}: {text}" if self.where else text

    def message(self, raise_with: str) -> str:
        """The one-line message, saying to raise the budget with `raise_with` (a parameter or a flag)."""
        return f"{self.problem} (raise it with {raise_with} if the file is trusted)"
