"""Bias correction after quantization, from calibration data (torch-free).

Replacing a weight W of `y = x W + b` by W' shifts the mean of every output channel by
E[x] (W' - W): a systematic error the next layers amplify (Nagel et al. 2019, "Data-Free
Quantization", empirical bias correction). Subtracting that shift from the bias removes it at no
cost in bytes: the bias is stored raw either way. E[x] is the dense model's, measured once on the
calibration data, averaged over every axis but the last (samples, tokens).

Handled: MatMul with a constant right operand followed by an Add of a 1-D initializer bias, and
Gemm (alpha = beta = 1, no transA) with an initializer C. Convolutions are left alone (their shift
depends on the position near the borders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper


@dataclass(frozen=True)
class BiasLink:
    """Weight `weight` multiplies the tensor `input`; `bias` is added to the product."""

    weight: str
    input: str
    bias: str
    transposed: bool  # Gemm transB: the weight is stored (out, in)


def find_links(model: onnx.ModelProto, weights: set[str]) -> dict[str, BiasLink]:
    """weight name -> BiasLink, for the compressible weights whose layer adds a private bias."""
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)

    def private_bias(name: str, width: int) -> bool:
        tensor = inits.get(name)
        return (
            tensor is not None
            and name not in weights
            and tensor.data_type == onnx.TensorProto.FLOAT
            and list(tensor.dims) == [width]
            and len(uses.get(name, [])) == 1
        )

    links = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in weights or len(uses.get(node.input[1], [])) != 1:
            continue
        dims = list(inits[node.input[1]].dims) if node.input[1] in inits else []
        if len(dims) != 2:
            continue
        if node.op_type == "MatMul":
            adds = uses.get(node.output[0], [])
            if len(adds) != 1 or adds[0].op_type != "Add":
                continue
            other = [name for name in adds[0].input if name != node.output[0]]
            if len(other) == 1 and private_bias(other[0], dims[1]):
                links[node.input[1]] = BiasLink(node.input[1], node.input[0], other[0], False)
        elif node.op_type == "Gemm" and len(node.input) == 3:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                continue
            transposed = bool(attrs.get("transB", 0))
            if private_bias(node.input[2], dims[0] if transposed else dims[1]):
                links[node.input[1]] = BiasLink(node.input[1], node.input[0], node.input[2], transposed)
    return links


def input_means(model: onnx.ModelProto, links: dict[str, BiasLink], inputs: dict[str, np.ndarray], batch: int):
    """weight name -> E[x] of its layer's input in the dense model, over every axis but the last."""
    import onnxruntime as ort

    graph_inputs = {v.name for v in model.graph.input}
    wanted = sorted({link.input for link in links.values() if link.input not in graph_inputs})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in wanted)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    rows = len(next(iter(inputs.values())))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]) if wanted else None
    for start in range(0, rows, batch):
        feeds = {name: a[start : start + batch] for name, a in inputs.items()}
        values = dict(zip(wanted, session.run(wanted, feeds))) if session is not None else {}
        values.update({name: feeds[name] for name in graph_inputs & set(feeds)})
        for name in {link.input for link in links.values()}:
            flat = np.asarray(values[name], dtype=np.float64).reshape(-1, np.shape(values[name])[-1])
            sums[name] = sums.get(name, 0.0) + flat.sum(0)
            counts[name] = counts.get(name, 0) + flat.shape[0]
    return {weight: sums[link.input] / max(counts[link.input], 1) for weight, link in links.items()}


def corrected_bias(link: BiasLink, mean: np.ndarray, bias: np.ndarray, dense: np.ndarray, replaced: np.ndarray):
    """The bias that keeps the layer's mean output where the dense weight put it."""
    delta = replaced.astype(np.float64) - dense.astype(np.float64)
    shift = mean @ (delta.T if link.transposed else delta)
    return (bias.astype(np.float64) - shift).astype(np.float32)
