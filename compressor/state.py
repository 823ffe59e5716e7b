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
