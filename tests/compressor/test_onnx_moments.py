"""Input moments E[x x^T] of MatMul / Gemm weights gathered by ONNX Runtime (compressor/onnx_moments.py)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_builders import dense_model, inline, make_model, value

from dcz.compressor.calib_data import Calibration
from dcz.compressor.onnx_moments import input_moments, weight_inputs

pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(5)
W1 = RNG.normal(0, 0.5, (4, 6)).astype(np.float32)  # MatMul (in, out)
W2 = RNG.normal(0, 0.5, (3, 6)).astype(np.float32)  # Gemm transB=1: (out, in)
B2 = RNG.normal(0, 0.1, (3,)).astype(np.float32)


def mlp():
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
    ]
    return dense_model(nodes, {"x": ["n", 4]}, {"y": ["n", 3]}, {"w1": W1, "w2": W2, "b2": B2})


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_moments_from_ort_equal_numpy_whatever_the_batch(batch):
    model = mlp()
    weights = {"w1": W1, "w2": W2}
    links = weight_inputs(model, weights)
    assert {k: (v.input, v.transposed) for k, v in links.items()} == {"w1": ("x", False), "w2": ("r", True)}
    x = RNG.normal(0, 1, (50, 4)).astype(np.float32)
    moments = input_moments(model, Calibration({"x": x}, None, "test"), links, batch=batch)
    r = np.maximum(x.astype(np.float64) @ W1, 0)
    np.testing.assert_allclose(moments["w1"], x.astype(np.float64).T @ x / 50, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moments["w2"], r.T @ r / 50, rtol=1e-5, atol=1e-6)
    assert moments["w1"].dtype == np.float64


def test_padded_positions_are_left_out_when_an_attention_mask_lines_up():
    # y = (x * mask) @ w: the moment counts only the rows where attention_mask is 1
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
        helper.make_node("Mul", ["x", "m3"], ["xm"]),
        helper.make_node("MatMul", ["xm", "w"], ["y"]),
    ]
    w = RNG.normal(0, 1, (4, 2)).astype(np.float32)
    model = make_model(
        nodes,
        [value("x", ["n", "t", 4]), value("attention_mask", ["n", "t"], TensorProto.INT64)],
        [value("y", ["n", "t", 2])],
        [inline("w", w), inline("axis", np.array([2], np.int64))],
    )
    x = RNG.normal(0, 1, (6, 5, 4)).astype(np.float32)
    mask = (np.arange(5)[None, :] < RNG.integers(1, 6, (6, 1))).astype(np.int64)
    calib = Calibration({"x": x, "attention_mask": mask}, None, "test")
    moments = input_moments(model, calib, weight_inputs(model, {"w": w}), batch=4)
    real = x[mask.astype(bool)].astype(np.float64)
    np.testing.assert_allclose(moments["w"], real.T @ real / len(real), rtol=1e-5, atol=1e-6)


def test_weights_used_twice_or_on_the_left_have_no_moment():
    w = RNG.normal(0, 1, (4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"]),
        helper.make_node("MatMul", ["a", "w"], ["b"]),  # shared: one moment cannot serve both
        helper.make_node("MatMul", ["v", "b"], ["y"]),  # weight on the left
    ]
    model = dense_model(nodes, {"x": ["n", 4]}, {"y": ["n", 4]}, {"w": w, "v": w})
    assert weight_inputs(model, {"w": w, "v": w}) == {}
