"""Linear (uniform) weight quantization as a sharing mode beside k-means.

A per-tensor linear grid of 2**bits levels IS a codebook: level q (qmin..qmax) dequantizes to
`scale * (q - zero_point)`. So a linearly quantized weight is stored as a `shared` /
`sparse_shared` tensor whose labels are `q - qmin` and whose codebook holds the dequantized grid,
computed as float32(q - zero_point) * float32(scale): the same product ONNX's DequantizeLinear
computes, so the decoded float tensor and DequantizeLinear(int8 weights) agree bit for bit. Per
output channel, each row of the 2-D view gets its own grid (a codebook group of one row).

The scheme (bits, signedness, symmetry, axis, scales, zero points) goes in the file metadata
(`compress.linear`), so a runtime can rebuild the integer tensor exactly: q = label + qmin.
No format change: files stay readable by every 1.x reader. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcz.compressor.errors import CompressError

METADATA_KEY = "compress.linear"


@dataclass(frozen=True)
class LinearScheme:
    """How to quantize: bits 2..8, signed (int) or unsigned (uint) levels, symmetric or affine, per channel."""

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    per_channel: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            raise CompressError(f"linear quantization: bits must be an integer in 2..8, got {self.bits!r}")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"


def parse_quantize(text: str) -> tuple[int, bool]:
    """'int8' -> (8, True), 'uint4' -> (4, False); CompressError for anything else."""
    for prefix, signed in (("uint", False), ("int", True)):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            bits = int(text[len(prefix) :])
            if 2 <= bits <= 8:
                return bits, signed
    raise CompressError(f"quantize: expected int2..int8 or uint2..uint8, got {text!r}")


@dataclass
class LinearResult:
    codebook: np.ndarray  # float32 (k,) or (rows, k): the dequantized grid
    labels: np.ndarray  # uint8 of the weight's shape: q - qmin
    scale: np.ndarray  # float32 (1,) or (rows,)
    zero_point: np.ndarray  # int64 (1,) or (rows,)
    group_rows: int | None

    def metadata(self, scheme: LinearScheme) -> dict:
        return {
            "scheme": scheme.name,
            "bits": scheme.bits,
            "signed": scheme.signed,
            "symmetric": scheme.symmetric,
            "axis": 0 if scheme.per_channel else None,
            "qmin": scheme.qmin,
            "scale": [float(s) for s in self.scale],
            "zero_point": [int(z) for z in self.zero_point],
        }


def _scale_and_zero(low: np.ndarray, high: np.ndarray, scheme: LinearScheme) -> tuple[np.ndarray, np.ndarray]:
    """Per-row float32 scale and integer zero point covering [low, high] (which always includes 0)."""
    low, high = np.minimum(low, 0.0), np.maximum(high, 0.0)
    if scheme.symmetric:
        # symmetric: zero point at the grid's middle, the largest magnitude on the outermost level that
        # exists on both sides (qmax for int: -qmax..qmax, so the grid is symmetric, as ORT and torch do)
        half = (scheme.qmax - scheme.qmin) // 2
        scale = np.maximum(np.abs(low), np.abs(high)) / half
        zero = np.full(low.shape, 0 if scheme.signed else (scheme.qmin + scheme.qmax + 1) // 2, dtype=np.int64)
    else:
        scale = (high - low) / (scheme.qmax - scheme.qmin)
        safe_scale = np.where(scale > 0, scale, 1.0)
        zero = np.clip(np.round(scheme.qmin - low / safe_scale), scheme.qmin, scheme.qmax).astype(np.int64)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # an all-zero row: any scale, q = zero point
    return scale, zero


def grid(scale: np.ndarray, zero: np.ndarray, scheme: LinearScheme) -> np.ndarray:
    """float32 (rows, k): level q's value float32(q - zero) * scale, the DequantizeLinear product."""
    levels = np.arange(scheme.qmin, scheme.qmax + 1, dtype=np.int64)
    return (levels[None, :] - zero[:, None]).astype(np.float32) * scale[:, None].astype(np.float32)


def quantize(weight: np.ndarray, mask: np.ndarray | None, scheme: LinearScheme) -> LinearResult:
    """Round `weight` (its kept entries) to the nearest level of a linear grid; pruned entries get label 0."""
    weight = np.asarray(weight, dtype=np.float32)
    rows = weight.reshape(weight.shape[0], -1) if weight.ndim else weight.reshape(1, 1)
    keep = None if mask is None else np.asarray(mask, dtype=bool).reshape(rows.shape)
    kept = rows if keep is None else np.where(keep, rows, 0.0)
    if scheme.per_channel:
        low, high = kept.min(axis=1, initial=0.0), kept.max(axis=1, initial=0.0)
    else:
        low, high = np.array([kept.min(initial=0.0)]), np.array([kept.max(initial=0.0)])
    scale, zero = _scale_and_zero(low.astype(np.float64), high.astype(np.float64), scheme)
    row_scale = scale if scheme.per_channel else np.broadcast_to(scale, (rows.shape[0],))
    row_zero = zero if scheme.per_channel else np.broadcast_to(zero, (rows.shape[0],))
    q = np.round(kept / row_scale[:, None]) + row_zero[:, None]
    q = np.clip(q, scheme.qmin, scheme.qmax).astype(np.int64)
    labels = (q - scheme.qmin).astype(np.uint8)
    if keep is not None:
        labels[~keep] = 0
    book = grid(scale, zero, scheme)
    codebook = book if scheme.per_channel else book[0]
    return LinearResult(codebook, labels.reshape(weight.shape), scale, zero, 1 if scheme.per_channel else None)


def integer_weight(labels: np.ndarray, info: dict) -> np.ndarray:
    """The integer tensor (int8 or uint8) a runtime rebuilds from the labels and `compress.linear` metadata."""
    dtype = np.int8 if info["signed"] else np.uint8
    return (np.asarray(labels, dtype=np.int16) + int(info["qmin"])).astype(dtype)


def scheme_of(plan) -> LinearScheme | None:
    """The LinearScheme a resolved LayerPlan asks for, or None for k-means sharing."""
    if plan.quantize == "kmeans":
        return None
    bits, signed = parse_quantize(plan.quantize)
    return LinearScheme(bits, signed, plan.symmetric, plan.per_channel)


def linear_metadata(states, plan) -> dict:
    """`compress.linear`: the scheme of each linearly quantized tensor, by its name in the `.dcz`.

    states: LayerStates (any keys); plan: the TensorPlan mapping stored names to state names.
    """
    by_state = {state.name: state for state in states.values()}
    values = {}
    for stored, state_name in sorted(plan.compressed.items()):
        state = by_state.get(state_name)
        if state is not None and state.linear and state.shared:
            values[stored] = state.linear
    return {METADATA_KEY: values} if values else {}
