"""SuffixRunner: one replaced weight's outputs from the nodes it reaches equal the whole model's run,
across calibration batches of different sizes (a border value that depends on the batch: a Shape),
with an output the weight does not reach, under a border byte cap that splits or refuses groups, and
for a graph holding a subgraph (run whole)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_builders import dense_model

from dcz.compressor import onnx_suffix
from dcz.compressor.calib_data import Calibration
from dcz.compressor.onnx_damage import OrtRunner
from dcz.compressor.onnx_suffix import SuffixRunner, reached_nodes

pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(5)
WEIGHTS = {
    "w1": RNG.normal(0, 0.3, (24, 16)).astype(np.float32),
    "b1": RNG.normal(0, 0.1, (24,)).astype(np.float32),
    "wm": RNG.normal(0, 0.3, (24, 24)).astype(np.float32),
    "w2": RNG.normal(0, 0.3, (24, 6)).astype(np.float32),
}


def build_model():
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),  # depends on the batch: kept per batch
        helper.make_node("MatMul", ["r", "wm"], ["m"]),
        helper.make_node("Reshape", ["m", "s"], ["m2"]),
        helper.make_node("Add", ["m2", "r"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["logits"]),
        helper.make_node("ReduceMax", ["h"], ["aux"], axes=[1], keepdims=0),  # an output wm and w2 never reach
    ]
    return dense_model(nodes, {"x": ["n", 16]}, {"logits": ["n", 6], "aux": ["n"]}, WEIGHTS)


CALIB = Calibration({"x": RNG.normal(0, 1, (300, 16)).astype(np.float32)}, None, "test")  # batches 256 + 44


@pytest.mark.parametrize("cap", [onnx_suffix.FRONTIER_BYTES, 40_000, 1_000])
def test_partial_runs_equal_whole_runs(monkeypatch, cap):
    monkeypatch.setattr(onnx_suffix, "FRONTIER_BYTES", cap)
    model = build_model()
    runner = OrtRunner(model, WEIGHTS)
    names = ["w1", "wm", "w2"]
    part = SuffixRunner(runner, CALIB, names)
    assert "w1" not in part.plans  # read straight from the input: nothing to skip
    for name in names:
        replaced = {name: WEIGHTS[name] * np.float32(1.5) - np.float32(0.01)}
        whole, ours = runner.run(CALIB, replaced), part.run(name, replaced)
        assert [o.shape for o in ours] == [o.shape for o in whole]
        for a, b in zip(ours, whole):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if cap == 1_000:  # each border alone is over the cap: every layer ran whole
        assert all(plan.failed for plan in part.plans.values())
    else:
        assert not any(plan.failed for plan in part.plans.values())
        assert len(part.plans["w2"].nodes) == 1  # only its own MatMul ran


def test_a_subgraph_is_run_whole():
    branch = helper.make_graph(
        [helper.make_node("Identity", ["m"], ["y"])],
        "b",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=branch),
    ]
    graph = dense_model(nodes, {"x": ["n", 4]}, {"out": ["n", 4]}, {"w": np.eye(4, dtype=np.float32)}).graph
    assert reached_nodes(graph, "w") is None
