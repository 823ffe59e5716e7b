"""Small hand-made ONNX graphs for the runtime tests (no torch needed): the shared builders of
tests/onnx_builders.py plus placeholders (the .dcz convention) and LeNet graphs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx_builders import IR_VERSION, OPSET, dense_model, inline, make_model, value

__all__ = ["IR_VERSION", "OPSET", "dense_model", "inline", "make_model", "value"]


def placeholder(name, array) -> onnx.TensorProto:
    """The convention's initializer for a tensor stored in the .dcz: dims and type, data elsewhere."""
    array = np.asarray(array)
    ph = TensorProto()
    ph.name = name
    ph.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    ph.dims.extend(array.shape)
    ph.data_location = TensorProto.EXTERNAL
    entry = ph.external_data.add()
    entry.key, entry.value = "location", "dcz"
    return ph


def single_op(op_type, input_arrays, n_outputs=1, opset=OPSET, **attrs) -> onnx.ModelProto:
    """A graph with one node whose inputs are all graph inputs (shapes free)."""
    names = [f"in{i}" for i in range(len(input_arrays))]
    outs = [f"out{i}" for i in range(n_outputs)]
    inputs = [
        value(n, [None] * np.asarray(a).ndim, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype))
        for n, a in zip(names, input_arrays)
    ]
    node = helper.make_node(op_type, names, outs, **attrs)
    return make_model([node], inputs, [helper.make_empty_tensor_value_info(o) for o in outs], opset=opset)


def lenet_300_100_graph(weights: dict[str, np.ndarray], stored=True) -> onnx.ModelProto:
    """Flatten -> Gemm(784->300) -> Relu -> Gemm(300->100) -> Relu -> Gemm(100->10), torch's layout."""
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1)]
    x = "flat"
    for i, layer in enumerate(("fc1", "fc2", "fc3")):
        out = f"{layer}_out" if i < 2 else "logits"
        nodes.append(helper.make_node("Gemm", [x, f"{layer}.weight", f"{layer}.bias"], [out], transB=1, name=layer))
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"{layer}_relu"]))
            x = f"{layer}_relu"
    make = placeholder if stored else inline
    inits = [make(n, a) for n, a in weights.items()]
    return make_model(nodes, [value("input", ["batch", 1, 28, 28])], [value("logits", ["batch", 10])], inits)


def lenet_300_100_weights(seed=0, density=0.1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer, (o, i) in zip(("fc1", "fc2", "fc3"), ((300, 784), (100, 300), (10, 100))):
        w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
        w[rng.random((o, i)) > density] = 0.0
        out[f"{layer}.weight"] = w
        out[f"{layer}.bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
    return out


def shared_form(weight: np.ndarray, bits: int = 4):
    """(mask, labels, codebook) of a weight quantized to 2**bits evenly spaced centroids."""
    mask = weight != 0
    kept = weight[mask]
    book = np.linspace(kept.min(), kept.max(), 2**bits).astype(np.float32)
    labels = np.abs(weight[..., None] - book).argmin(-1).astype(np.int64)
    return mask, labels, book


def lenet_dcz_tensors(weights: dict[str, np.ndarray]):
    """formats writer inputs: fc weights SparseShared (the paper's encoding), biases Raw.

    Returns (tensors, effective dense weights) - the latter is what the file decodes to.
    """
    from dcz import formats

    tensors, effective = [], {}
    for name, array in weights.items():
        if array.ndim == 2:
            mask, labels, book = shared_form(array)
            tensors.append(formats.SparseShared(name, mask, labels, book, label_bits=4, gap_bits=5))
            effective[name] = np.where(mask, book[labels], 0).astype(np.float32)
        else:
            tensors.append(formats.Raw(name, array))
            effective[name] = array
    return tensors, effective


def lenet_reference(effective: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The LeNet-300-100 forward pass in float64 numpy, for comparing backends against."""
    h = x.reshape(len(x), -1).astype(np.float64)
    for i, layer in enumerate(("fc1", "fc2", "fc3")):
        h = h @ effective[f"{layer}.weight"].T.astype(np.float64) + effective[f"{layer}.bias"]
        if i < 2:
            h = np.maximum(h, 0)
    return h
