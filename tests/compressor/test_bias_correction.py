"""Bias correction after quantization (compressor/bias_correction.py): which layers it finds, and that
the corrected bias puts the mean output back where the dense weight had it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_builders import dense_model

from dcz.compressor.bias_correction import corrected_bias, find_links, input_means

RNG = np.random.default_rng(3)
W1 = RNG.normal(0, 0.5, (6, 5)).astype(np.float32)  # MatMul (in, out)
B1 = RNG.normal(0, 0.1, 5).astype(np.float32)
W2 = RNG.normal(0, 0.5, (3, 5)).astype(np.float32)  # Gemm transB: (out, in)
B2 = RNG.normal(0, 0.1, 3).astype(np.float32)


def build_model(shared_bias: bool = False) -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b1" if shared_bias else "b2"], ["y"], transB=1),
    ]
    return dense_model(nodes, {"x": ["n", 6]}, {"y": ["n", 3]}, {"w1": W1, "b1": B1, "w2": W2, "b2": B2})


def test_matmul_add_and_gemm_are_linked_a_shared_bias_is_not():
    links = find_links(build_model(), {"w1", "w2"})
    assert (links["w1"].input, links["w1"].bias, links["w1"].transposed) == ("x", "b1", False)
    assert (links["w2"].input, links["w2"].bias, links["w2"].transposed) == ("r", "b2", True)
    assert set(find_links(build_model(), {"w2"})) == {"w2"}
    # b1 feeds the MatMul's Add and the Gemm: correcting it for one layer would shift the other
    assert find_links(build_model(shared_bias=True), {"w1", "w2"}) == {}


@pytest.mark.parametrize("weight", ["w1", "w2"])
def test_corrected_bias_restores_the_mean_output(weight):
    model = build_model()
    x = (RNG.normal(0, 1, (400, 6)) + 2.0).astype(np.float32)  # inputs with a large mean: a big shift
    links = find_links(model, {"w1", "w2"})
    means = input_means(model, links, {"x": x}, batch=64)
    np.testing.assert_allclose(means["w1"], x.mean(0), rtol=1e-5)
    dense = {"w1": W1, "w2": W2}[weight]
    rounded = np.round(dense * 2) / 2  # a coarse grid: a mean shift of the layer's output
    bias = {"w1": B1, "w2": B2}[weight]
    fixed = corrected_bias(links[weight], means[weight], bias, dense, rounded)

    def layer_mean(w, b):
        inputs = x if weight == "w1" else _hidden(model, x)
        return (inputs @ (w.T if weight == "w2" else w) + b).mean(0)

    before = np.abs(layer_mean(rounded, bias) - layer_mean(dense, bias)).max()
    after = np.abs(layer_mean(rounded, fixed) - layer_mean(dense, bias)).max()
    assert before > 0.05 and after < 1e-4


def _hidden(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(helper.make_empty_tensor_value_info("r"))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["r"], {"x": x})[0]


@pytest.mark.parametrize("mode", ["own", "match"])
def test_sequential_correction_uses_the_compressed_models_own_inputs(mode):
    """Both layers replaced: the second layer's correction uses the mean of its input in the model
    whose first layer is already replaced and corrected (own: its own weight's shift is removed;
    match: its mean output is the dense model's)."""
    from dcz.compressor.bias_sequential import SequentialBiases
    from dcz.compressor.calib_data import Calibration

    model = build_model()
    x = (RNG.normal(0, 1, (300, 6)) + 2.0).astype(np.float32)
    links = find_links(model, {"w1", "w2"})
    fed = {"w1": W1, "b1": B1, "w2": W2, "b2": B2}
    sequential = SequentialBiases(model, links, fed, Calibration({"x": x}, None, "test"))
    replaced = {"w1": np.round(W1 * 2) / 2, "w2": np.round(W2 * 2) / 2}
    biases = sequential.corrected(replaced, mode)
    assert set(biases) == {"b1", "b2"} and sequential.runs == 2  # the dense means, then the second layer's
    r = np.maximum(x @ replaced["w1"] + biases["b1"], 0)  # the second layer's input, compressed model
    np.testing.assert_allclose((x @ replaced["w1"] + biases["b1"]).mean(0), (x @ W1 + B1).mean(0), atol=1e-4)
    ours = (r @ replaced["w2"].T + biases["b2"]).mean(0)
    wanted = (r @ W2.T + B2).mean(0) if mode == "own" else (_hidden(model, x) @ W2.T + B2).mean(0)
    np.testing.assert_allclose(ours, wanted, atol=1e-4)
