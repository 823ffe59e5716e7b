"""Element-wise arithmetic and tensor-shaping ops (the glue torch's exporter emits around layers)."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from .registry import check_output, op_error, register


def broadcast_binary(ctx, fn, a, b):
    try:
        return fn(a, b)
    except ValueError as exc:
        raise op_error(ctx, f"shapes {np.shape(a)} and {np.shape(b)} do not broadcast ({exc})") from None


@register("Add")
def add(ctx, a, b):
    return broadcast_binary(ctx, np.add, a, b)


@register("Sub")
def sub(ctx, a, b):
    return broadcast_binary(ctx, np.subtract, a, b)


@register("Mul")
def mul(ctx, a, b):
    return broadcast_binary(ctx, np.multiply, a, b)


@register("Div")
def div(ctx, a, b):
    if np.issubdtype(np.result_type(a, b), np.integer):
        # ONNX integer division truncates toward zero; numpy's // floors.
        return broadcast_binary(
            ctx, lambda x, y: (np.sign(x) * np.sign(y) * (np.abs(x) // np.abs(y))).astype(np.result_type(a, b)), a, b
        )
    return broadcast_binary(ctx, np.divide, a, b)


@register("Sqrt")
def sqrt(ctx, x):
    return np.sqrt(x)


@register("Neg")
def neg(ctx, x):
    return np.negative(x)


@register("Identity")
def identity(ctx, x):
    return x


@register("Cast")
def cast(ctx, x, *, to, saturate=1):
    from onnx import helper

    return np.asarray(x).astype(helper.tensor_dtype_to_np_dtype(to))


@register("Constant")
def constant(
    ctx,
    *,
    value=None,
    value_float=None,
    value_floats=None,
    value_int=None,
    value_ints=None,
    sparse_value=None,
    value_string=None,
    value_strings=None,
):
    if value is not None:
        return numpy_helper.to_array(value)
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    raise op_error(ctx, "Constant without a supported value attribute (sparse/string constants are not supported)")


@register("ConstantOfShape")
def constant_of_shape(ctx, shape, *, value=None):
    fill = numpy_helper.to_array(value) if value is not None else np.zeros(1, dtype=np.float32)
    dims = tuple(int(d) for d in shape)
    check_output(ctx, dims, fill.itemsize)
    return np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)


@register("Shape")
def shape(ctx, x, *, start=0, end=None):
    return np.array(x.shape[start:end], dtype=np.int64)


@register("Size")
def size(ctx, x):
    return np.array(x.size, dtype=np.int64)


@register("Gather")
def gather(ctx, data, indices, *, axis=0):
    indices = np.asarray(indices)
    size = data.shape[axis]
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise op_error(ctx, f"Gather index out of range for axis {axis} of size {size}")
    return np.take(data, indices.astype(np.int64), axis=axis)


def _axes(ctx, axes_input, axes_attr, since_opset: int):
    """Axes came as an attribute before `since_opset` and as an input from it on."""
    axes = axes_input if ctx.opset >= since_opset else axes_attr
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


@register("Unsqueeze")
def unsqueeze(ctx, x, axes_input=None, *, axes=None):
    axes = _axes(ctx, axes_input, axes, 13)
    if axes is None:
        raise op_error(ctx, "Unsqueeze needs axes")
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(a % rank for a in axes)))


@register("Squeeze")
def squeeze(ctx, x, axes_input=None, *, axes=None):
    axes = _axes(ctx, axes_input, axes, 13)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


@register("Flatten")
def flatten(ctx, x, *, axis=1):
    axis = axis % x.ndim if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


@register("Reshape")
def reshape(ctx, x, target, *, allowzero=0):
    target = [int(d) for d in np.asarray(target).reshape(-1)]
    if not allowzero:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        return x.reshape(target)
    except ValueError:
        raise op_error(ctx, f"cannot reshape {x.shape} to {target}") from None


@register("Transpose")
def transpose(ctx, x, *, perm=None):
    return np.transpose(x, perm)


@register("Concat")
def concat(ctx, *xs, axis):
    try:
        return np.concatenate(xs, axis=axis)
    except ValueError as exc:
        raise op_error(ctx, f"cannot concatenate shapes {[x.shape for x in xs]} on axis {axis} ({exc})") from None


@register("Expand")
def expand(ctx, x, target):
    target = tuple(int(d) for d in target)
    try:
        out_shape = np.broadcast_shapes(x.shape, target)
        check_output(ctx, out_shape, x.itemsize)
        return np.broadcast_to(x, out_shape).copy()
    except ValueError:
        raise op_error(ctx, f"cannot expand {x.shape} to {target}") from None


@register("Slice")
def slice_(ctx, x, starts=None, ends=None, axes=None, steps=None, **attrs):
    if ctx.opset < 10:
        starts, ends, axes = attrs.get("starts"), attrs.get("ends"), attrs.get("axes")
    starts = [int(s) for s in np.asarray(starts).reshape(-1)]
    ends = [int(e) for e in np.asarray(ends).reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [int(a) % x.ndim for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(s) for s in np.asarray(steps).reshape(-1)]
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(*slice(start, end, step).indices(x.shape[axis]))
    return x[tuple(index)]


@register("Pad")
def pad(ctx, x, pads_input=None, value=None, axes=None, *, mode="constant", pads=None, **attrs):
    pads = pads_input if ctx.opset >= 11 else pads
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(x.ndim)) if axes is None else [int(a) % x.ndim for a in np.asarray(axes).reshape(-1)]
    half = len(pads) // 2
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[half + i])
    if any(b < 0 or e < 0 for b, e in widths):
        raise op_error(ctx, "negative pads (cropping) are not supported")
    check_output(ctx, [n + b + e for n, (b, e) in zip(x.shape, widths)], x.itemsize)
    if mode == "constant":
        fill = attrs.get("value", 0.0) if value is None else np.asarray(value).reshape(-1)[0]
        return np.pad(x, widths, mode="constant", constant_values=fill)
    if mode in ("reflect", "edge"):
        return np.pad(x, widths, mode=mode)
    raise op_error(ctx, f"Pad mode {mode!r} is not supported")


def reduce_axes(ctx, fn, x, axes_input, axes_attr, keepdims, noop_with_empty_axes, since_opset):
    axes = _axes(ctx, axes_input, axes_attr, since_opset)
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = list(range(x.ndim))
    return fn(x, axis=tuple(a % x.ndim for a in axes), keepdims=bool(keepdims))


@register("ReduceMean")
def reduce_mean(ctx, x, axes_input=None, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    return reduce_axes(ctx, np.mean, x, axes_input, axes, keepdims, noop_with_empty_axes, 18).astype(x.dtype)


@register("ReduceSum")
def reduce_sum(ctx, x, axes_input=None, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    return reduce_axes(ctx, np.sum, x, axes_input, axes, keepdims, noop_with_empty_axes, 13).astype(x.dtype)


@register("ReduceMax")
def reduce_max(ctx, x, axes_input=None, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    return reduce_axes(ctx, np.max, x, axes_input, axes, keepdims, noop_with_empty_axes, 18)
