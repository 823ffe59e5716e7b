"""Rebuild an int8 QDQ graph from a `.dcz` so ONNX Runtime runs int8 kernels.

The stored graph is float: linearly quantized weights decode to their dequantized grid values
(compressor.linear). With `compress.linear` metadata, each linear weight (2..8 bits: a narrower grid's
levels are a subset of int8's, so int4 weights run the same int8 kernels) becomes an int8 (or uint8)
initializer q = round(w / scale) + zero_point (exact: w is float32(q - zero_point) * scale, checked)
feeding a DequantizeLinear that gives back the float tensor. With `compress.activations` (static
scales from calibration), each listed activation gets a QuantizeLinear -> DequantizeLinear pair, and
the biases of quantized Conv / Gemm become int32 at scale s_x * s_w as ORT's own quantizer does; ORT
then fuses the QDQ groups into QLinearConv / QLinearMatMul / QGemm. The NumPy backend runs the float
graph (dequantized weights, float activations).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import DczRuntimeError

LINEAR_KEY = "compress.linear"
ACTIVATIONS_KEY = "compress.activations"
_INT_TYPES = {"int8": (np.int8, TensorProto.INT8), "uint8": (np.uint8, TensorProto.UINT8)}
_SUFFIX = "__dcz_q"


def wants_qdq(metadata: Mapping) -> bool:
    """True when the file has linear weights (2..8 bits) and static activation scales (what int8 kernels need).

    Weight-only grids run as the float graph: ORT would keep a DequantizeLinear per weight in the
    graph without an int8 kernel to fuse it into, for the same numbers.
    """
    has_linear = any(_integer_grid(info) for info in (metadata.get(LINEAR_KEY) or {}).values())
    return has_linear and bool(metadata.get(ACTIVATIONS_KEY))


def _integer_grid(info) -> bool:
    """A linear grid whose levels fit int8 / uint8 (any of 2..8 bits)."""
    bits = info.get("bits") if isinstance(info, Mapping) else None
    return isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 8


def integer_weight(name: str, weight: np.ndarray, info: Mapping) -> np.ndarray:
    """The integer tensor behind a decoded linear weight, checked to dequantize back exactly."""
    dtype = np.int8 if info["signed"] else np.uint8
    rows = weight.reshape(weight.shape[0], -1) if weight.ndim else weight.reshape(1, 1)
    scale = np.asarray(info["scale"], dtype=np.float32).reshape(-1, 1)
    zero = np.asarray(info["zero_point"], dtype=np.int64).reshape(-1, 1)
    if scale.shape[0] not in (1, rows.shape[0]):
        raise DczRuntimeError(f"{LINEAR_KEY}[{name!r}]: {scale.shape[0]} scales for {rows.shape[0]} rows")
    q = np.clip(np.round(rows / scale) + zero, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(np.int64)
    if not np.array_equal((q - zero).astype(np.float32) * scale, rows):
        raise DczRuntimeError(f"{LINEAR_KEY}[{name!r}]: the decoded weight is not on its grid")
    return q.astype(dtype).reshape(weight.shape)


def _qparams(name: str, scale, zero, dtype_name: str, axis: bool) -> list[TensorProto]:
    if dtype_name not in _INT_TYPES:
        raise DczRuntimeError(f"quantization of {name!r}: unsupported integer type {dtype_name!r}")
    np_type = _INT_TYPES[dtype_name][0]
    scale = np.asarray(scale, dtype=np.float32)
    zero = np.asarray(zero, dtype=np.int64).astype(np_type)
    if not axis:
        scale, zero = scale.reshape(()), zero.reshape(())
    return [
        numpy_helper.from_array(scale, f"{name}{_SUFFIX}_scale"),
        numpy_helper.from_array(zero, f"{name}{_SUFFIX}_zp"),
    ]


def to_qdq(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray], metadata: Mapping):
    """(QDQ model, remaining external arrays): the linear weights go inline as integers behind DequantizeLinear."""
    linear = {n: i for n, i in (metadata.get(LINEAR_KEY) or {}).items() if _integer_grid(i) and n in arrays}
    activations = dict(metadata.get(ACTIVATIONS_KEY) or {})
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept_inits = [init for init in graph.initializer if init.name not in linear]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    weight_nodes, weight_scale = [], {}
    for name, info in sorted(linear.items()):
        q = integer_weight(name, np.asarray(arrays[name]), info)
        dtype_name = "int8" if info["signed"] else "uint8"
        per_row = info.get("axis") is not None
        graph.initializer.append(numpy_helper.from_array(q, name + _SUFFIX))
        graph.initializer.extend(_qparams(name, info["scale"], info["zero_point"], dtype_name, per_row))
        attrs = {"axis": 0} if per_row else {}
        weight_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [name + _SUFFIX, f"{name}{_SUFFIX}_scale", f"{name}{_SUFFIX}_zp"],
                [name],
                name=f"{name}{_SUFFIX}_dq",
                **attrs,
            )
        )
        weight_scale[name] = np.asarray(info["scale"], dtype=np.float32)
    nodes = list(graph.node)
    if activations:
        nodes = _quantize_activations(graph, nodes, activations)
        _quantize_biases(graph, nodes, activations, weight_scale, arrays)
    del graph.node[:]
    graph.node.extend(weight_nodes + nodes)
    # float tensors nothing reads any more (biases now int32) leave the graph and the external arrays
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = {init.name for init in graph.initializer if init.name not in used}
    kept_inits = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    remaining = {n: a for n, a in arrays.items() if n not in linear and n not in unused}
    return out, remaining


def _quantize_activations(graph, nodes, activations) -> list:
    """Insert QuantizeLinear -> DequantizeLinear after each listed activation; its consumers read the DQ output."""
    listed = {n for n in activations}
    produced_at = {}
    for index, node in enumerate(nodes):
        for output in node.output:
            produced_at[output] = index
    renamed = {name: f"{name}{_SUFFIX}_dq" for name in listed}
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    pairs_after: dict[int, list] = {}
    for name in sorted(listed):
        info = activations[name]
        graph.initializer.extend(_qparams(name, [info["scale"]], [info["zero_point"]], info["dtype"], False))
        pair = [
            helper.make_node(
                "QuantizeLinear", [name, f"{name}{_SUFFIX}_scale", f"{name}{_SUFFIX}_zp"], [f"{name}{_SUFFIX}_q"]
            ),
            helper.make_node(
                "DequantizeLinear",
                [f"{name}{_SUFFIX}_q", f"{name}{_SUFFIX}_scale", f"{name}{_SUFFIX}_zp"],
                [renamed[name]],
            ),
        ]
        pairs_after.setdefault(produced_at.get(name, -1), []).extend(pair)
    ordered = list(pairs_after.get(-1, []))  # graph inputs: first
    for index, node in enumerate(nodes):
        ordered.append(node)
        ordered.extend(pairs_after.get(index, []))
    return ordered


def _quantize_biases(graph, nodes, activations, weight_scale, arrays) -> None:
    """int32 biases at scale s_x * s_w for Conv / Gemm whose input and weight are both quantized."""
    inits = {init.name: init for init in graph.initializer}
    bias_nodes = []
    for node in nodes:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        x, w, b = node.input[0], node.input[1], node.input[2]
        source = x.removesuffix(f"{_SUFFIX}_dq")
        if source not in activations or w not in weight_scale or not x.endswith(f"{_SUFFIX}_dq"):
            continue
        if b in arrays:
            bias = np.asarray(arrays[b], dtype=np.float32)
        elif b in inits and inits[b].data_location != TensorProto.EXTERNAL:
            bias = numpy_helper.to_array(inits[b]).astype(np.float32)
        else:
            continue
        scale = (np.float32(activations[source]["scale"]) * weight_scale[w]).astype(np.float32)
        scale = np.broadcast_to(scale, bias.shape) if scale.size > 1 else scale.reshape(())
        safe = np.where(scale > 0, scale, 1.0)
        q = np.clip(np.round(bias / safe), -(2**31), 2**31 - 1).astype(np.int32)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, b + _SUFFIX + "_i32"),
                numpy_helper.from_array(np.asarray(scale, dtype=np.float32), b + _SUFFIX + "_i32_scale"),
            ]
        )
        dq_out = b + _SUFFIX + "_i32_dq"
        node.input[2] = dq_out
        bias_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [b + _SUFFIX + "_i32", b + _SUFFIX + "_i32_scale"],
                [dq_out],
                **({"axis": 0} if scale.ndim else {}),
            )
        )
    nodes[:0] = bias_nodes
