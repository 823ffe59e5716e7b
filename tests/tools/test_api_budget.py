"""dcz.compress(model, ..., budget=...): the budget solver from the front door, torch and ONNX alike."""

from __future__ import annotations

import numpy as np
import pytest

import dcz
from dcz.compressor.budget import BudgetConfig, CandidateGrid

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

GRID = CandidateGrid(sparsities=(0.0, 0.5, 0.8, 0.95), label_bits=(1, 2, 4, 6), gap_bits=(3, 5))


def _torch_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 4)).eval()


def _onnx_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.3, (32, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_torch_module_into_a_budget(tmp_path):
    model = _torch_model()
    x = torch.randn(64, 32)
    budget = BudgetConfig(budget_bytes=3_000, candidates=GRID, uniform=False)
    result = dcz.compress(model, x[:1], budget=budget, calib=x, out=tmp_path / "m.dcz", metadata={"user.k": "v"})
    size = (tmp_path / "m.dcz").stat().st_size
    assert size == result.file_bytes <= 3_000
    with dcz.open(tmp_path / "m.dcz") as f:
        assert f.metadata["compress.budget.bytes"] == 3_000 and f.metadata["user.k"] == "v"
    again = dcz.compress(model, x[:1], budget={"budget_bytes": 3_000, "uniform": False, "candidates": GRID.to_dict()})
    assert again.fits and [a.name for a in again.allocation] == ["0.weight", "2.weight"]


def test_onnx_model_into_a_budget(tmp_path):
    x = np.random.default_rng(2).normal(size=(128, 32)).astype(np.float32)
    result = dcz.compress(
        _onnx_model(), budget=BudgetConfig(budget_bytes=3_000, candidates=GRID), calib={"x": x}, out=tmp_path / "m.dcz"
    )
    assert (tmp_path / "m.dcz").stat().st_size == result.file_bytes <= 3_000
    with dcz.load(tmp_path / "m.dcz") as model:
        assert model.run({"x": x})[0].shape == (128, 64)


@pytest.mark.parametrize(
    "model, kwargs, message",
    [
        ("torch", {"config": {}, "budget": 1000}, "give config or budget, not both"),
        ("torch", {"budget": "10KB"}, "budget: must be a BudgetConfig, a mapping or a number of bytes, got str"),
        ("torch", {"budget": {"budget_bytes": 10, "bits": 3}}, "budget: unknown key 'bits'"),
        ("onnx", {"budget": 1000}, "compressing an ONNX model to a budget needs calib="),
        ("onnx", {"budget": 1000, "calib": {}, "train_loader": []}, "takes no train_loader; give calib= only"),
        ("onnx", {"budget": 1000, "calib": {}, "metadata": {"a": 1}}, "takes no metadata; give calib= only"),
    ],
)
def test_wrong_budget_calls_are_one_line_errors(model, kwargs, message):
    target = _torch_model() if model == "torch" else _onnx_model()
    example = torch.zeros(1, 32) if model == "torch" else None
    with pytest.raises(dcz.CompressError) as info:
        dcz.compress(target, example, **kwargs)
    assert message in str(info.value)


def test_torch_module_to_a_max_loss(tmp_path):
    model = _torch_model()
    x = torch.randn(64, 32)
    result = dcz.compress(model, x[:1], max_loss=0.1, calib=x, candidates=GRID, out=tmp_path / "m.dcz")
    assert result.figures["loss"] <= 0.1 and (tmp_path / "m.dcz").stat().st_size == result.file_bytes


def test_onnx_model_to_a_max_loss(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    result = dcz.compress(_onnx_model(), max_loss=0.1, calib={"x": x}, out=tmp_path / "m.dcz")
    assert result.loss <= 0.1 and (tmp_path / "m.dcz").read_bytes() == result.data


def test_max_loss_with_budget_or_without_calib_is_refused():
    with pytest.raises(dcz.CompressError, match="give one of config, budget and max_loss"):
        dcz.compress(_torch_model(), torch.zeros(1, 32), budget=1000, max_loss=1.0)
    with pytest.raises(dcz.CompressError, match="give calib= as well"):
        dcz.compress(_onnx_model(), max_loss=1.0)
