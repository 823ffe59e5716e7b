"""Neural-network ops: convolution, pooling, normalization, dense layers, activations."""

from __future__ import annotations

import numpy as np

from .registry import OpContext, check_output, op_error, register
from .windows import resolve_pads, windows

# im2col copies the input once per conv; chunk the batch so one copy stays below this many bytes.
_IM2COL_BYTES = 64 << 20


def _spatial_attrs(ctx: OpContext, x, kernel, strides, dilations, pads, auto_pad):
    rank = x.ndim - 2
    if rank < 1:
        raise op_error(ctx, f"input must be N x C x spatial..., got shape {x.shape}")
    kernel = [int(k) for k in kernel]
    if len(kernel) != rank:
        raise op_error(ctx, f"kernel_shape {kernel} does not match the input's {rank} spatial dims")
    strides = [int(s) for s in strides] if strides else [1] * rank
    dilations = [int(d) for d in dilations] if dilations else [1] * rank
    for what, values in (("kernel_shape", kernel), ("strides", strides), ("dilations", dilations)):
        if len(values) != rank or any(v < 1 for v in values):
            raise op_error(ctx, f"{what} {values} must hold {rank} values >= 1")
    pads = resolve_pads(auto_pad, pads, x.shape[2:], kernel, strides, dilations, f"node {ctx.node!r}")
    if any(p < 0 for p in pads):
        raise op_error(ctx, f"negative pads {pads} are not supported")
    padded = [n + b + e for n, b, e in zip(x.shape[2:], pads[:rank], pads[rank:])]
    check_output(ctx, list(x.shape[:2]) + padded, x.itemsize)
    return kernel, strides, dilations, pads


@register("Conv")
def conv(ctx, x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Convolution as im2col + one (batched) matrix product per group."""
    kernel = kernel_shape or w.shape[2:]
    kernel, strides, dilations, pads = _spatial_attrs(ctx, x, kernel, strides, dilations, pads, auto_pad)
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    if c != cg * group or m % group:
        raise op_error(ctx, f"input has {c} channels, weight {w.shape} with group={group} wants {cg * group}")
    mg = m // group
    wg = w.reshape(group, mg, -1)  # (G, Mg, Cg*K)
    per_item = max(x[:1].size * int(np.prod(kernel)) * x.itemsize, 1)
    step = max(1, _IM2COL_BYTES // per_item)
    outs = [_conv_chunk(x[i : i + step], wg, kernel, strides, dilations, pads, group) for i in range(0, n, step)]
    y = outs[0] if len(outs) == 1 else np.concatenate(outs)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * len(kernel))
    return y


def _conv_chunk(x, wg, kernel, strides, dilations, pads, group):
    rank = len(kernel)
    win = windows(x, kernel, strides, dilations, pads, 0.0)  # (N, C, *out, *k)
    n, c = win.shape[:2]
    out_shape = win.shape[2 : 2 + rank]
    positions = int(np.prod(out_shape))
    cg = c // group
    win = win.reshape((n, group, cg) + win.shape[2:])
    # -> (N, G, *out, Cg, *k), then flatten into the im2col matrix (N, G, P, Cg*K): one copy.
    order = (0, 1) + tuple(range(3, 3 + rank)) + (2,) + tuple(range(3 + rank, 3 + 2 * rank))
    cols = win.transpose(order).reshape(n, group, positions, -1)
    mg = wg.shape[1]
    if mg == 1 and cg == 1:  # depthwise: a broadcast multiply-add beats G tiny matmuls
        y = np.einsum("ngpk,gk->ngp", cols, wg[:, 0, :])[:, :, None, :]
    else:
        # One 2-D BLAS product per group: np.matmul's broadcast batch path is ~60x slower here.
        y = np.empty((n, group, mg, positions), dtype=cols.dtype)
        for g in range(group):
            y[:, g] = (cols[:, g].reshape(n * positions, -1) @ wg[g].T).reshape(n, positions, mg).transpose(0, 2, 1)
    return np.ascontiguousarray(y.reshape((n, group * mg) + tuple(out_shape)))


def _pool_attrs(ctx, x, kernel_shape, strides, dilations, pads, auto_pad):
    if kernel_shape is None:
        raise op_error(ctx, "kernel_shape is required")
    return _spatial_attrs(ctx, x, kernel_shape, strides, dilations, pads, auto_pad)


@register("MaxPool")
def max_pool(
    ctx,
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    storage_order=0,
    strides=None,
):
    kernel, strides, dilations, pads = _pool_attrs(ctx, x, kernel_shape, strides, dilations, pads, auto_pad)
    win = windows(x, kernel, strides, dilations, pads, -np.inf, bool(ceil_mode))
    return win.max(axis=tuple(range(-len(kernel), 0)))


@register("AveragePool")
def average_pool(
    ctx,
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    count_include_pad=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    kernel, strides, dilations, pads = _pool_attrs(ctx, x, kernel_shape, strides, dilations, pads, auto_pad)
    axes = tuple(range(-len(kernel), 0))
    sums = windows(x, kernel, strides, dilations, pads, 0.0, bool(ceil_mode)).sum(axis=axes)
    # Divisor per output position: real elements (+ explicit pads if count_include_pad), never the
    # extra cells ceil_mode adds past the end padding.
    rank = len(kernel)
    real = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    if count_include_pad:
        real = np.pad(real, [(0, 0), (0, 0)] + list(zip(pads[:rank], pads[rank:])), constant_values=1.0)
        pads = [0] * (2 * rank)
    counts = windows(real, kernel, strides, dilations, pads, 0.0, bool(ceil_mode)).sum(axis=axes)
    return (sums / counts).astype(x.dtype)


@register("GlobalAveragePool")
def global_average_pool(ctx, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


@register("GlobalMaxPool")
def global_max_pool(ctx, x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


@register("BatchNormalization")
def batch_normalization(ctx, x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, training_mode=0, spatial=1):
    if training_mode:
        raise op_error(ctx, "BatchNormalization with training_mode=1 is not supported (inference only)")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    factor = (scale / np.sqrt(var + np.asarray(epsilon, dtype=var.dtype))).astype(x.dtype)
    return x * factor.reshape(shape) + (bias - mean * factor).astype(x.dtype).reshape(shape)


@register("Gemm")
def gemm(ctx, a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = a @ b
    if alpha != 1.0:
        y *= np.asarray(alpha, dtype=y.dtype)
    if c is not None:
        y += c * np.asarray(beta, dtype=y.dtype) if beta != 1.0 else c
    return y


@register("MatMul")
def matmul(ctx, a, b):
    return np.matmul(a, b)


def _softmax_axis(ctx, x, axis):
    """Opset < 13 treats the input as 2-D, coerced at `axis` (default 1); 13+ is per-axis (default -1)."""
    if ctx.opset >= 13:
        return x, (-1 if axis is None else axis), x.shape
    axis = 1 if axis is None else axis
    axis = axis % x.ndim
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return flat, 1, x.shape


@register("Softmax")
def softmax(ctx, x, *, axis=None):
    z, axis, shape = _softmax_axis(ctx, x, axis)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).reshape(shape)


@register("LogSoftmax")
def log_softmax(ctx, x, *, axis=None):
    z, axis, shape = _softmax_axis(ctx, x, axis)
    shifted = z - z.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).reshape(shape)


@register("Relu")
def relu(ctx, x):
    return np.maximum(x, 0, dtype=x.dtype)


@register("LeakyRelu")
def leaky_relu(ctx, x, *, alpha=0.01):
    return np.where(x >= 0, x, x * np.asarray(alpha, dtype=x.dtype))


@register("Sigmoid")
def sigmoid(ctx, x):
    # exp of -|x| never overflows (1 / (1 + exp(-x)) warned on nudenet's large negative logits)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


@register("Tanh")
def tanh(ctx, x):
    return np.tanh(x)


@register("HardSigmoid")
def hard_sigmoid(ctx, x, *, alpha=0.2, beta=0.5):
    return np.clip(x * np.asarray(alpha, x.dtype) + np.asarray(beta, x.dtype), 0, 1).astype(x.dtype)


@register("HardSwish")
def hard_swish(ctx, x):
    return (x * np.clip(x / np.asarray(6, x.dtype) + np.asarray(0.5, x.dtype), 0, 1)).astype(x.dtype)


@register("Clip")
def clip(ctx, x, lo=None, hi=None, *, min=None, max=None):  # noqa: A002 - ONNX attribute names (opset < 11)
    lo = min if lo is None else lo
    hi = max if hi is None else hi
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, dtype=x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, dtype=x.dtype))
    return y


@register("Dropout")
def dropout(ctx, x, ratio=None, training_mode=None, *, seed=None, is_test=None):
    if training_mode is not None and bool(np.asarray(training_mode)):
        raise op_error(ctx, "Dropout with training_mode=true is not supported (inference only)")
    return x, np.ones(x.shape, dtype=bool)
