"""Calibrated ONNX compression to a size or loss target (compressor/budget/onnx_search.py, calib_data.py).

A tiny MLP is built here with onnx.helper (Gemm -> Relu -> MatMul); its labels are the dense model's
own predictions, so the dense accuracy is 100% and every lost point is the compression's. Every
result is checked on the WRITTEN file, decoded by the runtime, not on what the search believed.
"""

from __future__ import annotations

import re
import zlib
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import dense_model, inline, make_model, value

from dcz.compressor.budget import onnx_search
from dcz.compressor.budget.candidates import CandidateGrid
from dcz.compressor.budget.config import BudgetConfig, OnnxSearchConfig, as_onnx_search_config
from dcz.compressor.budget.onnx_search import fit_onnx
from dcz.compressor.calib_data import load_calib
from dcz.compressor.errors import CompressError

pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(3)
W1 = RNG.normal(0, 0.3, (24, 64)).astype(np.float32)  # Gemm transB=1: (out, in)
B1 = RNG.normal(0, 0.1, (24,)).astype(np.float32)
W2 = RNG.normal(0, 0.3, (24, 6)).astype(np.float32)  # MatMul (in, out)
GRID = CandidateGrid(sparsities=(0.0, 0.5, 0.8, 0.95), label_bits=(1, 2, 3, 5, 8), gap_bits=(2, 4, 6))


def build_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
    ]
    return dense_model(nodes, {"x": ["n", 64]}, {"logits": ["n", 6]}, {"w1": W1, "b1": B1, "w2": W2})


def dense_logits(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W1.T + B1, 0) @ W2


X = RNG.normal(0, 1, (300, 64)).astype(np.float32)
Y = dense_logits(X).argmax(1).astype(np.int64)


def file_logits(data: bytes, x: np.ndarray) -> np.ndarray:
    from dcz import runtime

    with runtime.load(data) as model:
        return model.run({"x": x})[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(build_model(), str(path))
    return path


# --- calibration data: one line naming the array -----------------------------------------------------


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"y": Y}, ["no array for model input 'x'", "float32"]),
        ({"x": X.astype(np.int64)}, ["array 'x' is int64", "takes float32", "astype"]),
        ({"x": X.reshape(300, 8, 8)}, ["array 'x' has shape (300, 8, 8)", "reshape it to (N, 64)"]),
        ({"x": X[:, :32]}, ["axis 1: 32 != 64"]),
        ({"x": X, "y": Y[:10]}, ["array 'y' has shape (10,)", "(300,)"]),
        ({"x": X, "y": Y.astype(np.float32)}, ["array 'y' must hold integer class labels"]),
        ({"x": X, "inputs": X}, ["array 'inputs' is not a model input", "'x'"]),
        ({"x": np.where(X > 2, np.nan, X)}, ["array 'x' holds NaN"]),
    ],
)
def test_bad_calibration_data_is_one_line_naming_the_array(arrays, words):
    with pytest.raises(CompressError) as error:
        load_calib(arrays, build_model())
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_pickled_npz_is_refused_naming_the_array(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, x=X, y=np.array([{"label": 1}] * 300, dtype=object))
    with pytest.raises(CompressError, match=r"array 'y' is pickled"):
        load_calib(path, build_model())


def test_single_input_alias_and_labels(tmp_path):
    model = build_model()
    model.graph.input[0].name = "pixels"
    model.graph.node[0].input[0] = "pixels"
    path = tmp_path / "calib.npz"
    np.savez(path, x=X.astype(np.float64), y=Y.astype(np.int32))
    calib = load_calib(path, model)
    assert list(calib.inputs) == ["pixels"] and calib.inputs["pixels"].dtype == np.float32
    assert calib.labels.dtype == np.int64 and calib.rows == 300


def test_labels_beyond_the_outputs_classes_are_refused(model_path):
    with pytest.raises(CompressError, match=r"label 9 but the first output has 6 classes"):
        fit_onnx(model_path, {"x": X, "y": np.full(300, 9)}, OnnxSearchConfig(budget_bytes=10**6, candidates=GRID))


# --- targets ----------------------------------------------------------------------------------------


def test_budget_is_met_by_the_written_file_and_beats_or_equals_uniform(model_path):
    budget = 2600  # dense weights are 6,720 B of float32
    result = fit_onnx(model_path, {"x": X, "y": Y}, OnnxSearchConfig(budget_bytes=budget, candidates=GRID))
    assert len(result.data) == result.file_bytes <= budget
    accuracy = 100 * float(np.mean(file_logits(result.data, X).argmax(1) == Y))
    assert result.loss == pytest.approx(100.0 - accuracy)  # the report is what the file does
    assert result.uniform is not None
    assert result.loss <= result.uniform["loss"]  # the uniform setting is a candidate the search keeps if better
    from dcz import formats

    with formats.loads(result.data) as dcz:
        assert dcz.metadata["compress.budget.bytes"] == budget
        recorded = {row[0]: row for row in dcz.metadata["compress.budget.allocation"]}
        assert set(recorded) == {"w1", "w2"}
        for layer in result.allocation:  # the result describes the file it returns (solver's or uniform's)
            assert recorded[layer["name"]][1:3] == [layer["sparsity"], layer["label_bits"]]
            info = dcz.info(layer["name"])
            assert info.label_bits == layer["label_bits"]


def test_impossible_budget_names_a_reachable_size_before_measuring(model_path, monkeypatch):
    def no_runs(*args, **kwargs):
        raise AssertionError("ONNX Runtime ran before the impossible budget was refused")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_search, "OrtRunner", no_runs)
        with pytest.raises(CompressError) as error:
            fit_onnx(model_path, {"x": X, "y": Y}, OnnxSearchConfig(budget_bytes=500, candidates=GRID))
    message = str(error.value)
    assert "impossible" in message and "\n" not in message
    smallest = int(message.split("smallest file reachable is ")[1].split(" bytes")[0].replace(",", ""))
    assert smallest > 500
    result = fit_onnx(
        model_path, {"x": X, "y": Y}, OnnxSearchConfig(budget_bytes=smallest, candidates=GRID, uniform=False)
    )
    assert result.file_bytes <= smallest


@pytest.mark.parametrize("labels", [True, False])
def test_max_loss_holds_on_the_file_and_a_looser_target_is_no_larger(model_path, labels):
    calib = {"x": X, "y": Y} if labels else {"x": X}
    tight, loose = (2.0, 10.0) if labels else (0.05, 0.3)
    strict = fit_onnx(model_path, calib, OnnxSearchConfig(max_loss=tight, candidates=GRID))
    relaxed = fit_onnx(model_path, calib, OnnxSearchConfig(max_loss=loose, candidates=GRID))
    for result, limit in ((strict, tight), (relaxed, loose)):
        logits = file_logits(result.data, X)
        if labels:
            measured = 100.0 - 100 * float(np.mean(logits.argmax(1) == Y))
        else:
            reference = dense_logits(X)
            measured = float(np.linalg.norm(logits - reference) / np.linalg.norm(reference))
        assert measured <= limit + 1e-9
        assert result.loss == pytest.approx(measured, abs=1e-6)
    assert relaxed.file_bytes <= strict.file_bytes
    assert relaxed.file_bytes < 6720  # smaller than the float32 weights alone


def test_targets_are_checked():
    with pytest.raises(CompressError, match="search: give exactly one target"):
        fit_onnx(build_model(), {"x": X}, {"budget_bytes": 1000, "max_loss": 1.0})
    with pytest.raises(CompressError, match=r"search.max_loss: must be >= 0, got -1.0"):
        OnnxSearchConfig(max_loss=-1.0)
    with pytest.raises(CompressError, match=r"search.max_loss: must be a finite number"):
        OnnxSearchConfig(max_loss=float("inf"))


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"budget_bytes": 0}, "search.budget_bytes: must be an integer >= 1, got 0"),
        ({"budget_bytes": 10, "points": 0}, "search.points: must be an integer >= 1"),
        ({"budget_bytes": 10, "sensitivity_rows": 2.5}, "search.sensitivity_rows: must be an integer"),
        ({"budget_bytes": 10, "bias_correction": "yes"}, "search.bias_correction: must be true or false"),
        ({"budget_bytes": 10, "grid": [0.5]}, "search: unknown key 'grid'"),
        ({"budget_bytes": 10, "candidates": {"label_bits": [9]}}, "search.candidates.label_bits[0]: must be"),
    ],
)
def test_search_config_is_strict_naming_the_key(data, fragment):
    with pytest.raises(CompressError, match=re.escape(fragment)):
        OnnxSearchConfig.from_dict(data)


def test_search_config_round_trips_and_takes_a_budget_config():
    config = OnnxSearchConfig(max_loss=0.5, candidates=GRID, points=4, bias_correction=False)
    assert OnnxSearchConfig.from_dict(config.to_dict()) == config
    assert "budget_bytes" not in config.to_dict()
    assert as_onnx_search_config(BudgetConfig(budget_bytes=900, candidates=GRID, uniform=False)) == OnnxSearchConfig(
        budget_bytes=900, candidates=GRID, uniform=False
    )
    assert as_onnx_search_config(900) == OnnxSearchConfig(budget_bytes=900)
    with pytest.raises(CompressError, match="budget: finetune_epochs, distill apply to PyTorch models only"):
        as_onnx_search_config(BudgetConfig(budget_bytes=900, finetune_epochs=3, distill=True))


# --- the command line -------------------------------------------------------------------------------


def test_cli_budget_and_errors(model_path, tmp_path, capsys):
    from dcz.cli import main

    calib = tmp_path / "calib.npz"
    np.savez(calib, x=X, y=Y)
    out = tmp_path / "tiny.dcz"
    assert main(["compress", str(model_path), "--calib", str(calib), "--budget", "3KB", "-o", str(out)]) == 0
    assert out.stat().st_size <= 3000
    assert "budget 3,000 B:" in capsys.readouterr().out
    share = Fraction(3000, model_path.stat().st_size)  # the same budget written as a share of the .onnx file
    assert main(["compress", str(model_path), "--calib", str(calib), "--budget", f"{share}", "-o", str(out)]) == 0
    assert "budget 3,000 B:" in capsys.readouterr().out
    assert main(["compress", str(model_path), "--max-loss", "1", "-o", str(out)]) == 2
    assert "add --calib DATA.npz" in capsys.readouterr().err
    assert main(["compress", str(model_path), "--calib", str(calib), "--budget", "100", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "smallest file reachable is" in err
    for loss in ("-1", "inf", "lots"):
        assert main(["compress", str(model_path), "--calib", str(calib), "--max-loss", loss, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "argument --max-loss: invalid loss" in err and "search." not in err


def build_embedding_model() -> onnx.ModelProto:
    """int64 token ids (batch fixed at 1) -> Gather(table) -> ReduceMean -> MatMul: a second input kind."""
    table = RNG.normal(0, 0.5, (50, 16)).astype(np.float32)
    proj = RNG.normal(0, 0.5, (16, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["e"]),
        helper.make_node("ReduceMean", ["e"], ["m"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["m", "proj"], ["out"]),
    ]
    inputs = [value("ids", [1, 5], TensorProto.INT64)]
    return make_model(nodes, inputs, [value("out", [1, 8])], [inline("table", table), inline("proj", proj)])


def test_integer_inputs_and_a_fixed_batch_of_one(tmp_path):
    model = build_embedding_model()
    ids = RNG.integers(0, 50, (40, 5))
    path = tmp_path / "ids.npy"
    np.save(path, ids)  # an .npy feeds a single-input model
    result = fit_onnx(model, path, OnnxSearchConfig(max_loss=0.1, candidates=GRID))
    from dcz import runtime

    with runtime.load(result.data) as compressed, runtime.load(_dense_dcz(model)) as dense:
        ours = np.concatenate([compressed.run({"ids": ids[i : i + 1]})[0] for i in range(40)])
        reference = np.concatenate([dense.run({"ids": ids[i : i + 1]})[0] for i in range(40)])
    error = float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))
    assert error <= 0.1 and error == pytest.approx(result.loss, rel=1e-4, abs=1e-6)
    with pytest.raises(CompressError, match=r"array 'ids' is float64 but the model input takes int64"):
        fit_onnx(model, {"ids": ids.astype(np.float64)}, OnnxSearchConfig(max_loss=0.1, candidates=GRID))


def _dense_dcz(model: onnx.ModelProto) -> bytes:
    from dcz.compressor.onnx_in import compress_onnx

    return compress_onnx(model, {"global": {"share": False}}).dcz


@pytest.mark.parametrize("correct", [True, False])
def test_the_written_bias_keeps_the_dense_mean_output(model_path, correct):
    """With bias correction the file's Gemm bias absorbs E[x] (W1' - W1) (its pre-activation mean over the
    calibration rows is the dense one); without it the bias is the dense one."""
    from dcz import formats

    result = fit_onnx(
        model_path, {"x": X, "y": Y}, OnnxSearchConfig(budget_bytes=2600, candidates=GRID, bias_correction=correct)
    )
    with formats.loads(result.data) as dcz:
        w1 = dcz.tensor("w1")
        graph = onnx.load_from_string(zlib.decompress(dcz.graph))  # small initializers stay in the graph
        b1 = next(numpy_helper.to_array(t) for t in graph.graph.initializer if t.name == "b1")
        assert dcz.metadata["compress.calib"]["bias_corrected"] == int(correct)
    assert not np.array_equal(w1, W1)
    if correct:
        np.testing.assert_allclose((X @ w1.T + b1).mean(0), (X @ W1.T + B1).mean(0), atol=1e-4)
    else:
        np.testing.assert_array_equal(b1, B1)


@pytest.mark.parametrize("target", [["--budget", "3KB"], ["--max-loss", "5"]])
def test_report_of_a_searched_file_shows_its_choice_and_curve(model_path, tmp_path, capsys, target):
    """`dcz report FILE --curve PNG` on an ONNX-searched file: target, calibration facts, allocation and
    the measured rate / loss curve, all from the file's metadata."""
    from dcz import formats
    from dcz.cli import main

    calib = tmp_path / "calib.npz"
    np.savez(calib, x=X, y=Y)
    out, png = tmp_path / "tiny.dcz", tmp_path / "curve.png"
    assert main(["compress", str(model_path), "--calib", str(calib), *target, "-o", str(out)]) == 0
    capsys.readouterr()
    with formats.open(out) as dcz:
        curve = dcz.metadata["compress.budget.curve"]
    assert len(curve) >= 2 and all(a[0] < b[0] and a[1] > b[1] for a, b in zip(curve, curve[1:]))  # Pareto
    assert main(["report", str(out), "--curve", str(png)]) == 0
    text = capsys.readouterr().out
    assert f"allocation chosen by 'dcz compress {target[0]}'" in text
    assert "searched on 300 calibration rows" in text and "w1" in text
    assert png.read_bytes()[:4] == b"\x89PNG"
