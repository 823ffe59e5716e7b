"""`dcz compress` states the weight error in one line and warns past the safe bound."""

import onnx

from dcz.cli import main
from tests.compressor.test_weight_kinds import build


def test_defaults_print_the_weight_error_without_warning(tmp_path, capsys):
    source = tmp_path / "kinds.onnx"
    onnx.save(build(), source)
    assert main(["compress", str(source), "-o", str(tmp_path / "a.dcz")]) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if x.startswith("weights: "))
    assert "6 compressed" in line and "safe bound 38 dB" in line
    assert "warning" not in captured.err


def test_explicit_pruning_past_the_bound_warns(tmp_path, capsys):
    source = tmp_path / "kinds.onnx"
    onnx.save(build(), source)
    assert main(["compress", str(source), "--sparsity", "0.7", "-o", str(tmp_path / "b.dcz")]) == 0
    assert "warning: 6 of 6 layers are below the safe bound of 38 dB" in capsys.readouterr().err
