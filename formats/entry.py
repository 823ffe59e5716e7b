"""One tensor-table entry (SPEC.md 2.3) as a record: what the header says about a tensor and where its
sections are. Writers build it (tensors.encode_tensor, streaming), the header serialises it
(`to_json`), readers get it back checked (header.check_entry) and decode from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .layout import SHARED_ENCODINGS, SPARSE_ENCODINGS


def view_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of a tensor's 2-D view (SPEC 3.2): rows = shape[0], cols = the rest; 0-D/1-D: one row."""
    if len(shape) <= 1:
        return 1, int(np.prod(shape, dtype=object)) if shape else 1
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    return int(shape[0]), cols


@dataclass(frozen=True)
class TensorEntry:
    """A tensor as the tensor table describes it.

    label_bits, codebook_size, groups, group_rows: the shared encodings only (group_rows None = one
    codebook for all rows); gap_bits: the sparse encodings only. sections: role -> section index.
    numel, rows and cols follow from the shape (rows x cols is the 2-D view the encodings work on).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    encoding: str
    nnz: int
    label_bits: int | None = None
    codebook_size: int | None = None
    groups: int | None = None
    group_rows: int | None = None
    gap_bits: int | None = None
    sections: Mapping[str, int] = field(default_factory=dict)
    numel: int = field(init=False, repr=False)
    rows: int = field(init=False, repr=False)
    cols: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        numel = 1
        for d in self.shape:
            numel *= d
        rows, cols = view_2d(self.shape)
        object.__setattr__(self, "numel", numel)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "cols", cols)

    def with_sections(self, sections: Mapping[str, int]) -> TensorEntry:
        return replace(self, sections=dict(sections))

    def to_json(self) -> dict[str, Any]:
        """The entry as the header stores it: the codebook fields for shared encodings (group_rows
        even when null), gap_bits for sparse ones, nothing else."""
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "encoding": self.encoding,
            "nnz": self.nnz,
            "sections": dict(self.sections),
        }
        if self.encoding in SHARED_ENCODINGS:
            out.update(
                label_bits=self.label_bits,
                codebook_size=self.codebook_size,
                groups=self.groups,
                group_rows=self.group_rows,
            )
        if self.encoding in SPARSE_ENCODINGS:
            out["gap_bits"] = self.gap_bits
        return out
