"""Dynamic int8 quantization: 8-bit weights, activations quantized at run time (no calibration data).

With `compress.dynamic` metadata, every MatMul / Gemm whose weight is an 8-bit linear tensor
(compressor.linear) is rebuilt the way ONNX Runtime's own quantize_dynamic writes it:
DynamicQuantizeLinear(x) -> MatMulInteger(x_u8, w_int8) -> Cast -> Mul(x_scale * w_scale) [-> Add bias],
which ORT fuses into its integer matmul kernels. The integer weights are rebuilt exactly from the decoded
grid (runtime.qdq.integer_weight). Convolutions stay float (their weights dequantized): ORT's ConvInteger
is slower than its float Conv on CPU (docs/benchmarks/quant.md), as torch's dynamic mode also
leaves convolutions alone. The NumPy backend runs the float graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import DczRuntimeError
from .qdq import LINEAR_KEY, integer_weight

DYNAMIC_KEY = "compress.dynamic"
_SUFFIX = "__dcz_dyn"


def wants_dynamic(metadata: Mapping) -> bool:
    """True when the file asks for run-time activation quantization and has 8-bit linear weights."""
    if not metadata.get(DYNAMIC_KEY):
        return False
    return any(info.get("bits") == 8 for info in (metadata.get(LINEAR_KEY) or {}).values())


def _attr(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _weight_of(node, linear: Mapping) -> tuple[str, bool] | None:
    """(weight name, stored transposed) when `node` is a MatMul / Gemm this rebuild handles, else None."""
    if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in linear:
        return node.input[1], False
    if node.op_type != "Gemm" or len(node.input) < 2 or node.input[1] not in linear:
        return None
    if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
        return None
    return node.input[1], bool(_attr(node, "transB", 0))


def _integer_matrix(name: str, weight: np.ndarray, info: Mapping, transposed: bool):
    """(int8/uint8 (K, N) matrix, float32 scale per column or scalar, zero point per column or scalar),
    or None when the weight stays float (not 2-D, or per-row scales along K)."""
    if weight.ndim != 2:
        return None  # a batched (3-D+) MatMul weight: MatMulInteger broadcasts, but per-column scales do not
    q = integer_weight(name, weight, info)  # rows = output channels for Gemm transB (per-channel axis 0)
    scale = np.asarray(info["scale"], dtype=np.float32)
    zero = np.asarray(info["zero_point"], dtype=np.int64).astype(q.dtype)
    if scale.size > 1 and not transposed:
        return None  # per-row scales of a (K, N) MatMul weight run along K: no per-column form
    matrix = np.ascontiguousarray(q.T if transposed else q)
    if scale.size == 1:
        return matrix, scale.reshape(()), zero.reshape(())
    return matrix, scale.reshape(-1), zero.reshape(-1)


def _rebuild(node, name: str, matrix, scale, zero, index: int) -> tuple[list, list]:
    """The nodes and initializers replacing one MatMul / Gemm."""
    p = f"{name}{_SUFFIX}{index}"
    x = node.input[0]
    inits = [
        numpy_helper.from_array(matrix, p + "_w"),
        numpy_helper.from_array(scale, p + "_w_scale"),
        numpy_helper.from_array(zero, p + "_w_zp"),
    ]
    has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
    out = node.output[0]
    scaled = p + "_y" if has_bias else out
    nodes = [
        helper.make_node("DynamicQuantizeLinear", [x], [p + "_xq", p + "_x_scale", p + "_x_zp"], name=p + "_dql"),
        helper.make_node("Mul", [p + "_x_scale", p + "_w_scale"], [p + "_scale"], name=p + "_scale_mul"),
        helper.make_node(
            "MatMulInteger", [p + "_xq", p + "_w", p + "_x_zp", p + "_w_zp"], [p + "_i32"], name=p + "_mmi"
        ),
        helper.make_node("Cast", [p + "_i32"], [p + "_f"], to=TensorProto.FLOAT, name=p + "_cast"),
        helper.make_node("Mul", [p + "_f", p + "_scale"], [scaled], name=p + "_out_mul"),
    ]
    if has_bias:
        nodes.append(helper.make_node("Add", [scaled, node.input[2]], [out], name=p + "_bias"))
    return nodes, inits


def to_dynamic(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray], metadata: Mapping):
    """(model with integer MatMul / Gemm, remaining external arrays). Other nodes are left as they are."""
    linear = {n: i for n, i in (metadata.get(LINEAR_KEY) or {}).items() if i.get("bits") == 8 and n in arrays}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes, added = [], []
    for index, node in enumerate(graph.node):
        found = _weight_of(node, linear)
        integer = (
            None
            if found is None
            else _integer_matrix(found[0], np.asarray(arrays[found[0]]), linear[found[0]], found[1])
        )
        if integer is None:
            nodes.append(node)
            continue
        new_nodes, inits = _rebuild(node, found[0], *integer, index)
        nodes.extend(new_nodes)
        added.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    # float weights no node reads any more leave the graph and the external arrays
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    dropped = {init.name for init in graph.initializer} - used
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if added and not any(op.domain in ("", "ai.onnx") and op.version >= 10 for op in out.opset_import):
        raise DczRuntimeError(f"{DYNAMIC_KEY}: the graph's opset is below 10 (MatMulInteger needs 10)")
    return out, {n: a for n, a in arrays.items() if n not in dropped}
