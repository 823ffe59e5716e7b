"""A PyTorch model compressed with the defaults is never stored larger than its float file.

Small layers (a 36-weight conv) stay raw (no codebook beats float32), large ones are shared; the
.dcz (header and graph included) is compared with the float state_dict torch.save writes and, for
a model with a layer worth compressing, with the float ONNX export too.
"""

from __future__ import annotations

import io
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import dcz  # noqa: E402


def float_bytes(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def onnx_bytes(model, x) -> int:
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False)
    return len(buffer.getvalue())


def test_tiny_model_is_not_made_larger_than_its_float_file(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    )
    out = tmp_path / "tiny.dcz"
    dcz.compress(model, torch.randn(1, 1, 8, 8), out=out)
    assert os.path.getsize(out) < float_bytes(model)


def test_mlp_is_smaller_than_both_float_files(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    x = torch.randn(1, 64)
    out = tmp_path / "mlp.dcz"
    dcz.compress(model, x, out=out)
    assert os.path.getsize(out) * 3 < min(float_bytes(model), onnx_bytes(model, x))
