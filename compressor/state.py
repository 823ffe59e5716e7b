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
    sqnr_db     reconstruction SQNR against the dense weight, in dB (None: not measured).
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
    linear: dict | None = None  # linear grid (compressor.linear): scheme, scales, zero points; None = k-means
    sqnr_db: float | None = None  # weight error of this state against the dense weight (compressor.safe)

    @property
    def pruned(self) -> bool:
        return self.mask is not None

    @property
    def shared(self) -> bool:
        return self.codebook is not None

    def weight(self) -> np.ndarray:
        """The dense float32 tensor this state stands for (what inference computes with)."""
        if self.shared:
            dense = gather_codebook(
                np.asarray(self.codebook, dtype=np.float32), np.asarray(self.labels), self.group_rows
            )
        else:
            dense = np.asarray(self.values, dtype=np.float32).astype(np.float32, copy=True)
        dense = dense.reshape(self.shape)
        if self.mask is not None:
            _zero_where_pruned(dense, np.asarray(self.mask, dtype=bool).reshape(self.shape))
        return dense

    def to_format_tensor(self, name: str | None = None):
        """The `formats` writer input for this state, stored under `name` (default: `self.name`).

        pruned + shared -> SparseShared (the Deep Compression encoding); shared -> Shared;
        pruned -> Sparse; neither -> Raw float32. A missing `gap_bits` takes the paper's default
        for the layer family (8 conv, 5 fc).
        """
        from dcz import formats  # formats is numpy + bitarray only; imported here so state stays light
        from dcz.compressor.config import layer_family

        name = self.name if name is None else name
        gap_bits = self.gap_bits or (5 if layer_family(self.layer_type) == "fc" else 8)
        if self.shared:
            codebook = np.asarray(self.codebook, dtype=np.float32)
            labels = np.asarray(self.labels).reshape(self.shape)
            if self.pruned:
                return formats.SparseShared(
                    name,
                    np.asarray(self.mask, dtype=bool).reshape(self.shape),
                    labels,
                    codebook,
                    int(self.label_bits),
                    int(gap_bits),
                    self.group_rows,
                )
            return formats.Shared(name, labels, codebook, int(self.label_bits), self.group_rows)
        if self.pruned:
            return formats.Sparse(
                name, self.weight(), np.asarray(self.mask, dtype=bool).reshape(self.shape), int(gap_bits)
            )
        return formats.Raw(name, self.weight())


# Rows of the 2-D view handled at a time: numpy widens fancy indices to int64 and `~mask` is a
# full bool array, so whole-tensor operations would cost 8 + 1 bytes per weight on top.
_CHUNK_ELEMENTS = 1 << 22


def _row_chunks(rows: int, cols: int):
    step = max(1, _CHUNK_ELEMENTS // max(1, cols))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def gather_codebook(book: np.ndarray, labels: np.ndarray, group_rows: int | None) -> np.ndarray:
    """codebook[labels] (per row group when the codebook is 2-D), chunk by chunk, as float32."""
    if labels.size == 0:
        return np.zeros(labels.shape, dtype=np.float32)
    rows = labels.reshape(labels.shape[0], -1) if labels.ndim else labels.reshape(1, 1)
    out = np.empty(rows.shape, dtype=np.float32)
    flat_book = book.reshape(-1)
    k = book.shape[-1]
    for part in _row_chunks(*rows.shape):
        index = rows[part].astype(np.intp)
        if book.ndim == 2:
            index += (np.arange(part.start, part.stop, dtype=np.intp) // (group_rows or rows.shape[0]))[:, None] * k
        out[part] = flat_book[index]
    return out.reshape(labels.shape)


def _zero_where_pruned(dense: np.ndarray, mask: np.ndarray) -> None:
    """dense[~mask] = 0.0 in place, chunk by chunk."""
    if dense.size == 0:
        return
    rows = dense.reshape(dense.shape[0], -1) if dense.ndim else dense.reshape(1, 1)
    keep = mask.reshape(rows.shape)
    for part in _row_chunks(*rows.shape):
        np.copyto(rows[part], 0.0, where=~keep[part])


SQNR_KEY = "compress.weight_sqnr_db"


def safe_metadata(states) -> dict:
    """`compress.weight_sqnr_db`: each compressed weight's reconstruction SQNR (dB, 2 decimals; inf -> null)."""
    values = {}
    for name, state in sorted(states.items()):
        if state.sqnr_db is not None:
            values[name] = round(state.sqnr_db, 2) if np.isfinite(state.sqnr_db) else None
    return {SQNR_KEY: values} if values else {}
