"""QuantizeLinear / DequantizeLinear: the QDQ pairs of statically quantized models (int8 / uint8).

Per tensor or per axis (1-D scale and zero point along `axis`); blocked quantization (opset 21
block_size) is refused. Rounding is half to even and results saturate, as the ONNX spec says,
so a QDQ model computes here what ONNX Runtime's reference kernels compute.
"""

from __future__ import annotations

import numpy as np

from .registry import op_error, register

_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _along_axis(ctx, param, x, axis: int):
    """`param` shaped to broadcast against x: a scalar as is, a 1-D array along `axis`."""
    param = np.asarray(param)
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    ndim = np.ndim(x)
    if not -ndim <= axis < ndim:
        raise op_error(ctx, f"axis {axis} is out of range for an input of rank {ndim}")
    axis %= ndim
    if param.ndim != 1 or param.shape[0] != np.shape(x)[axis]:
        raise op_error(ctx, f"scale / zero point of shape {param.shape} do not match axis {axis} of {np.shape(x)}")
    shape = [1] * ndim
    shape[axis] = param.shape[0]
    return param.reshape(shape)


def _check_block(ctx, block_size: int) -> None:
    if block_size:
        raise op_error(ctx, f"blocked quantization (block_size={block_size}) is not supported")


@register("QuantizeLinear")
def quantize_linear(ctx, x, scale, zero_point=None, *, axis=1, saturate=1, block_size=0, output_dtype=0):
    _check_block(ctx, block_size)
    dtype = np.dtype(np.uint8) if zero_point is None else np.asarray(zero_point).dtype
    if dtype not in _RANGES:
        raise op_error(ctx, f"quantizing to {dtype} is not supported (int8 and uint8 are)")
    low, high = _RANGES[dtype]
    zero = 0 if zero_point is None else _along_axis(ctx, zero_point, x, axis).astype(np.int64)
    scaled = np.rint(np.asarray(x, np.float32) / _along_axis(ctx, scale, x, axis).astype(np.float32))
    return np.clip(scaled + zero, low, high).astype(dtype)


@register("DequantizeLinear")
def dequantize_linear(ctx, x, scale, zero_point=None, *, axis=1, block_size=0):
    _check_block(ctx, block_size)
    scale = _along_axis(ctx, scale, x, axis)
    zero = 0 if zero_point is None else _along_axis(ctx, zero_point, x, axis).astype(np.int64)
    return ((np.asarray(x).astype(np.int64) - zero) * scale).astype(np.asarray(scale).dtype)
