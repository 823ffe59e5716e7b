"""What compression decided for one tensor, independent of torch.

The pruning / weight-sharing stages (torch) and the ONNX-in path (numpy only) both produce a
`LayerState` per compressed tensor; the exporter turns each one into a `formats` tensor. This
module imports numpy and formats only, so the ONNX-in path never needs torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerState:
    """The compressed form of one weight tensor.

    name        tensor name as stored in the .dcz (the ONNX initializer name once exported;
                the dotted torch parameter name before that, e.g. "features.0.weight").
    layer_type  "Linear", "Conv2d", "Gemm", "MatMul", "Conv", ... (for config lookup and reports).
    shape       the tensor's shape.
    mask        bool array of `shape`: True where the weight survives pruning; None = not pruned.
    codebook    float32 (k,) or (groups, k) centroids; None = not shared.
    labels      integer array of `shape`: cluster index per weight (ignored where mask is False).
    label_bits  bits per label (1..8); k <= 2**label_bits.
    gap_bits    bits per relative column index (1..8) for the sparse encodings.
    group_rows  rows of the 2-D view per codebook group (per-channel palettes); None = one codebook.
    values      float32 array of `shape` for pruned-only tensors (weights as they stand).
    """

    name: str
    layer_type: str
    shape: tuple[int, ...]
    mask: np.ndarray | None = None
    codebook: np.ndarray | None = None
    labels: np.ndarray | None = None
    label_bits: int | None = None
    gap_bits: int | None = None
    group_rows: int | None = None
    values: np.ndarray | None = None

    @property
    def pruned(self) -> bool:
        return self.mask is not None

    @property
    def shared(self) -> bool:
        return self.codebook is not None

    def weight(self) -> np.ndarray:
        """The dense float32 tensor this state stands for (what inference computes with)."""
        if self.shared:
            book = np.asarray(self.codebook, dtype=np.float32)
            labels = np.asarray(self.labels, dtype=np.int64)
            if book.ndim == 1:
                dense = book[labels]
            else:
                rows = labels.reshape(labels.shape[0], -1)
                group = (np.arange(rows.shape[0]) // (self.group_rows or rows.shape[0]))[:, None]
                dense = book[group, rows].reshape(self.shape)
        else:
            dense = np.asarray(self.values, dtype=np.float32)
        dense = dense.astype(np.float32, copy=True)
        if self.mask is not None:
            dense[~self.mask] = 0.0
        return dense.reshape(self.shape)

    def to_format_tensor(self, name: str | None = None):
        """The `formats` writer input for this state, stored under `name` (default: `self.name`).

        pruned + shared -> SparseShared (the Deep Compression encoding); shared -> Shared;
        pruned -> Sparse; neither -> Raw float32. A missing `gap_bits` takes the paper's default
        for the layer family (8 conv, 5 fc).
        """
        import formats  # formats is numpy + bitarray only; imported here so state stays light

        from compressor.config import layer_family

        name = self.name if name is None else name
        gap_bits = self.gap_bits or (5 if layer_family(self.layer_type) == "fc" else 8)
        if self.shared:
            codebook = np.asarray(self.codebook, dtype=np.float32)
            labels = np.asarray(self.labels).reshape(self.shape)
            if self.pruned:
                return formats.SparseShared(name, np.asarray(self.mask, dtype=bool).reshape(self.shape), labels,
                                            codebook, int(self.label_bits), int(gap_bits), self.group_rows)
            return formats.Shared(name, labels, codebook, int(self.label_bits), self.group_rows)
        if self.pruned:
            return formats.Sparse(name, self.weight(), np.asarray(self.mask, dtype=bool).reshape(self.shape), int(gap_bits))
        return formats.Raw(name, self.weight())
