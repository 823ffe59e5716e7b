"""Ops that real models bring beyond the LeNet / ResNet set: transformers (Erf, LayerNormalization,
Range, Where, Equal, ReduceL2, Pow, Gelu), OCR detectors (Resize, ConvTranspose), magika's layer norm and
softmax (Max, Min, Exp, Reciprocal) and YOLOv8's C2f blocks (Split)."""

from __future__ import annotations

import numpy as np

from .ops_nn import conv
from .ops_tensor import broadcast_binary, reduce_axes
from .registry import check_output, op_error, register


@register("Erf")
def erf(ctx, x):
    """erf by Abramowitz & Stegun 7.1.26 on |x| (max error 1.5e-7, below float32's resolution near 1)."""
    a = np.abs(x).astype(np.float64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


@register("Gelu")
def gelu(ctx, x, *, approximate="none"):
    if approximate == "tanh":
        return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))).astype(x.dtype)
    return (0.5 * x * (1 + erf(ctx, x / np.sqrt(2).astype(x.dtype)))).astype(x.dtype)


@register("Pow")
def pow_(ctx, x, y):
    return broadcast_binary(ctx, np.power, x, y).astype(x.dtype)


@register("Where")
def where(ctx, condition, x, y):
    return broadcast_binary(ctx, lambda a, b: np.where(condition, a, b), x, y)


@register("Equal")
def equal(ctx, a, b):
    return broadcast_binary(ctx, np.equal, a, b)


@register("Range")
def range_(ctx, start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in (start, limit, delta))
    if delta == 0:
        raise op_error(ctx, "Range delta is 0")
    count = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    check_output(ctx, [count], np.result_type(start, limit, delta).itemsize)
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


@register("ReduceL2")
def reduce_l2(ctx, x, axes_input=None, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    def l2(v, axis, keepdims):
        return np.sqrt(np.sum(np.square(v), axis=axis, keepdims=keepdims))

    return reduce_axes(ctx, l2, x, axes_input, axes, keepdims, noop_with_empty_axes, 18).astype(x.dtype)


@register("LayerNormalization")
def layer_normalization(ctx, x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    y = centred / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + epsilon) * scale
    return (y if bias is None else y + bias).astype(x.dtype)


_RESIZE_MODES = ("nearest", "linear")
_TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")


def _source_coords(ctx, out_size: int, in_size: int, scale: float, mode: str) -> np.ndarray:
    """Input coordinate of each output pixel (ONNX Resize's coordinate_transformation_mode)."""
    out = np.arange(out_size, dtype=np.float64)
    if mode == "asymmetric":
        return out / scale
    if mode == "align_corners":
        return out * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(1)
    if mode == "pytorch_half_pixel" and out_size == 1:
        return np.zeros(1)
    return (out + 0.5) / scale - 0.5  # half_pixel, pytorch_half_pixel


@register("Resize")
def resize(
    ctx,
    x,
    roi=None,
    scales=None,
    sizes=None,
    *,
    mode="nearest",
    coordinate_transformation_mode="half_pixel",
    nearest_mode="round_prefer_floor",
    cubic_coeff_a=-0.75,
    exclude_outside=0,
    extrapolation_value=0.0,
    antialias=0,
    axes=None,
    keep_aspect_ratio_policy="stretch",
):
    """Nearest and (bi)linear resizing of the spatial dims (batch and channels keep their size)."""
    if mode not in _RESIZE_MODES or coordinate_transformation_mode not in _TRANSFORMS or axes is not None:
        raise op_error(ctx, f"Resize mode {mode!r} / {coordinate_transformation_mode!r} / axes is not supported")
    if sizes is not None and np.size(sizes):
        out_shape = [int(s) for s in sizes]
        factors = [o / i for o, i in zip(out_shape, x.shape)]
    elif scales is not None and np.size(scales):
        factors = [float(s) for s in scales]
        out_shape = [int(np.floor(i * s)) for i, s in zip(x.shape, factors)]
    else:
        raise op_error(ctx, "Resize needs scales or sizes")
    if len(out_shape) != x.ndim or out_shape[:2] != list(x.shape[:2]):
        raise op_error(ctx, f"Resize to {out_shape} from {x.shape}: only spatial dims may change")
    y = x
    for axis in range(2, x.ndim):
        coords = _source_coords(ctx, out_shape[axis], x.shape[axis], factors[axis], coordinate_transformation_mode)
        y = _resize_axis(y, axis, coords, x.shape[axis], mode, nearest_mode)
    return y.astype(x.dtype)


def _resize_axis(y, axis, coords, size, mode, nearest_mode):
    if mode == "nearest":
        if nearest_mode == "floor":
            index = np.floor(coords)
        elif nearest_mode == "ceil":
            index = np.ceil(coords)
        elif nearest_mode == "round_prefer_ceil":
            index = np.floor(coords + 0.5)
        else:  # round_prefer_floor
            index = np.ceil(coords - 0.5)
        return np.take(y, np.clip(index, 0, size - 1).astype(np.intp), axis=axis)
    coords = np.clip(coords, 0, size - 1)
    low = np.floor(coords).astype(np.intp)
    high = np.minimum(low + 1, size - 1)
    shape = [1] * y.ndim
    shape[axis] = -1
    weight = (coords - low).reshape(shape)
    return np.take(y, low, axis=axis) * (1 - weight) + np.take(y, high, axis=axis) * weight


@register("ConvTranspose")
def conv_transpose(
    ctx,
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    output_padding=None,
    output_shape=None,
    pads=None,
    strides=None,
):
    """The adjoint of Conv: zeros between input pixels (stride), full padding, flipped kernel."""
    rank = x.ndim - 2
    kernel = list(kernel_shape or w.shape[2:])
    strides = list(strides or [1] * rank)
    dilations = list(dilations or [1] * rank)
    pads = list(pads or [0] * (2 * rank))
    extra = list(output_padding or [0] * rank)
    if auto_pad != "NOTSET" or output_shape is not None or any(d != 1 for d in dilations):
        raise op_error(ctx, "ConvTranspose with auto_pad, output_shape or dilations is not supported")
    if len(strides) != rank or any(int(s) < 1 for s in strides) or any(int(p) < 0 for p in pads + extra):
        raise op_error(ctx, f"strides {strides} must hold {rank} values >= 1, pads and output_padding >= 0")
    check_output(ctx, list(x.shape[:2]) + [(s - 1) * st + 1 for s, st in zip(x.shape[2:], strides)], x.itemsize)
    n, c = x.shape[:2]
    spread = np.zeros((n, c) + tuple((s - 1) * st + 1 for s, st in zip(x.shape[2:], strides)), dtype=x.dtype)
    spread[(slice(None), slice(None)) + tuple(slice(None, None, st) for st in strides)] = x
    full = []
    for i in range(rank):
        full += [kernel[i] - 1 - pads[i], kernel[i] - 1 - pads[rank + i] + extra[i]]
    if min(full) < 0:
        raise op_error(ctx, f"ConvTranspose pads {pads} exceed the kernel {kernel}")
    widths = [(0, 0), (0, 0)] + [(full[2 * i], full[2 * i + 1]) for i in range(rank)]
    padded = np.pad(spread, widths)
    # weight (C, M/group, *k) -> conv weight (M, C/group, *k), flipped in space
    cg, mg = c // group, w.shape[1]
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * rank]
    grouped = flipped.reshape((group, cg, mg) + tuple(kernel)).transpose((0, 2, 1) + tuple(range(3, 3 + rank)))
    return conv(ctx, padded, np.ascontiguousarray(grouped.reshape((group * mg, cg) + tuple(kernel))), b, group=group)


@register("Exp")
def exp(ctx, x):
    return np.exp(x)


@register("Reciprocal")
def reciprocal(ctx, x):
    return np.reciprocal(x)


def _fold(ctx, fn, first, rest):
    for x in rest:
        first = broadcast_binary(ctx, fn, first, x)
    return first


@register("Max")
def max_(ctx, first, *rest):
    return _fold(ctx, np.maximum, first, rest)


@register("Min")
def min_(ctx, first, *rest):
    return _fold(ctx, np.minimum, first, rest)


@register("Split")
def split(ctx, x, split_input=None, *, axis=0, split=None, num_outputs=None):
    """Sizes from the `split` input (opset >= 13) or attribute, else equal parts: `num_outputs` (opset 18,
    the last part smaller when the axis does not divide evenly) or as many as the node has outputs."""
    axis = axis % x.ndim if x.ndim else 0
    sizes = split_input if split_input is not None else split
    if sizes is None:
        parts, length = int(num_outputs or ctx.outputs), x.shape[axis]
        if num_outputs is None and length % parts:
            raise op_error(ctx, f"dim {axis} of shape {x.shape} does not split into {parts} equal parts")
        step = -(-length // parts)
        sizes = [max(0, min(step, length - i * step)) for i in range(parts)]
    sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        raise op_error(ctx, f"split sizes {sizes} do not add up to dim {axis} of shape {x.shape}")
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
