"""Sliding windows over the spatial axes of NCHW-style tensors, shared by Conv and the pools.

Everything is a strided view until the caller reshapes it (im2col copies then, once).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DczRuntimeError


def resolve_pads(auto_pad: str, pads, spatial: tuple[int, ...], kernel, strides, dilations, where: str) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] after applying auto_pad."""
    rank = len(spatial)
    if auto_pad in ("", "NOTSET"):
        pads = list(pads) if pads is not None else [0] * (2 * rank)
        if len(pads) != 2 * rank:
            raise DczRuntimeError(f"{where}: pads has {len(pads)} values, expected {2 * rank}")
        return [int(p) for p in pads]
    if auto_pad == "VALID":
        return [0] * (2 * rank)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise DczRuntimeError(f"{where}: unknown auto_pad {auto_pad!r}")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


def output_size(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int, ceil_mode: bool) -> int:
    """Number of window positions along one axis (PyTorch's rule for ceil_mode: a window may not
    start in the end padding)."""
    span = (k - 1) * d + 1
    room = size + pad_begin + pad_end - span
    if room < 0:
        return 0
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def windows(x: np.ndarray, kernel, strides, dilations, pads, pad_value: float, ceil_mode: bool = False) -> np.ndarray:
    """View of shape (N, C, *out_spatial, *kernel) over `x` padded with `pad_value`."""
    rank = len(kernel)
    spatial = x.shape[2:]
    begin, end = pads[:rank], pads[rank:]
    outs = [
        output_size(n, k, s, d, b, e, ceil_mode)
        for n, k, s, d, b, e in zip(spatial, kernel, strides, dilations, begin, end)
    ]
    # Extra end padding so that ceil_mode's last window fits; it is never read beyond `outs`.
    extra = [
        max((o - 1) * s + (k - 1) * d + 1 - (n + b + e), 0)
        for o, n, k, s, d, b, e in zip(outs, spatial, kernel, strides, dilations, begin, end)
    ]
    widths = [(0, 0), (0, 0)] + [(b, e + x_) for b, e, x_ in zip(begin, end, extra)]
    if any(b or e for b, e in widths):
        x = np.pad(x, widths, mode="constant", constant_values=pad_value)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    view = sliding_window_view(x, spans, axis=tuple(range(2, 2 + rank)))
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) if o > 0 else slice(0, 0) for o, s in zip(outs, strides))
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]
