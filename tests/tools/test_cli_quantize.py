"""dcz compress --quantize / --calib / --calib-method on an ONNX model, and dcz info's scheme lines."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dcz.cli import main

pytest.importorskip("onnxruntime")


@pytest.fixture()
def model(tmp_path):
    from tests.runtime.test_qdq import _cnn

    path = tmp_path / "m.onnx"
    onnx.save(_cnn(), str(path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32))
    return path


def test_quantize_int8_with_calibration_and_info(model, tmp_path, capsys):
    out = tmp_path / "m.dcz"
    argv = [str(model), "--quantize", "int8", "--calib", str(tmp_path / "x.npy"), "--calib-method", "minmax"]
    assert main(["compress", *argv, "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wf: linear int8 symmetric per tensor" in text
    assert "quantized to int8 (static scales, minmax calibration)" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--calib-method", "entropy"], "--calib-method only matters"),
        (["--per-channel"], "--per-channel / --symmetric / --affine"),
        (["--quantize", "int9"], "quantize"),
        (["--quantize", "int4", "--dynamic"], "--dynamic quantizes activations at run time"),
    ],
)
def test_quantize_option_mistakes_are_one_line(model, tmp_path, capsys, extra, message):
    assert main(["compress", str(model), *extra, "-o", str(tmp_path / "m.dcz")]) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_quantize_int8_dynamic_and_info(model, tmp_path, capsys):
    out = tmp_path / "d.dcz"
    assert main(["compress", str(model), "--quantize", "int8", "--dynamic", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "activations: quantized at run time (dynamic int8" in capsys.readouterr().out


def test_calibration_prints_nothing_of_onnx_runtime_s_own(model, tmp_path):
    """ORT's quantization tool logs advice through the root logger: in a fresh process (where logging is
    unconfigured) it used to print 'WARNING:root:Please consider to run pre-processing ...' before DCZ's line."""
    import subprocess
    import sys

    np.save(tmp_path / "bad.npy", np.zeros((4, 64), np.float32))  # wrong rank: ORT fails while calibrating
    base = [sys.executable, "-m", "dcz", "compress", str(model), "--quantize", "int8", "-o", str(tmp_path / "q.dcz")]
    good = subprocess.run([*base, "--calib", str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert good.returncode == 0 and "WARNING" not in good.stderr and "pre-processing" not in good.stdout, good.stderr
    bad = subprocess.run([*base, "--calib", str(tmp_path / "bad.npy")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("dcz: error: calibration")
