"""A model compressed with the defaults is never stored larger than its dense file.

The tiny conv net (468 weights; its 36-weight conv stays raw, no codebook beats float32) gave a 2,858 B
.dcz against a 2,467 B float ONNX export: the JSON header (1,191 B) is now zlib'd when that saves >= 1%
of the file. When no `.dcz` storing weights apart is smaller (a few tiny convs: every tensor raw, each
costing a directory entry and a header entry), the dense model is kept whole in the zlib'd graph
(compressor/never_larger.py), nothing lost. Both paths: PyTorch (against its float ONNX export and
state_dict) and the same ONNX file given to `dcz compress`.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import dcz  # noqa: E402
from dcz import formats, runtime  # noqa: E402
from dcz.compressor.never_larger import INLINE_REASON, first_within  # noqa: E402


def float_bytes(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def onnx_bytes(model, x) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False)
    return buffer.getvalue()


def info_text(path) -> str:
    from dcz.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["info", str(path)]) == 0
    return out.getvalue()


def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    ), torch.randn(1, 1, 8, 8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tiny_model_is_not_made_larger_than_its_float_files(tmp_path):
    model, x = tiny_net()
    dense = onnx_bytes(model, x)
    (tmp_path / "tiny.onnx").write_bytes(dense)
    dcz.compress(model, x, out=tmp_path / "tiny.dcz")
    dcz.compress(tmp_path / "tiny.onnx", out=tmp_path / "from_onnx.dcz")
    for path in (tmp_path / "tiny.dcz", tmp_path / "from_onnx.dcz"):
        assert os.path.getsize(path) < min(len(dense), float_bytes(model))
        assert formats.open(path).names  # still the compressed file, not the dense fallback


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dense_model_is_kept_whole_when_no_dcz_is_smaller(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Conv2d(2, 2, 3, padding=1) for _ in range(4)])
    x = torch.randn(1, 2, 6, 6)
    dense = onnx_bytes(model, x)
    (tmp_path / "convs.onnx").write_bytes(dense)
    expected = model(x).detach().numpy()
    dcz.compress(model, x, out=tmp_path / "convs.dcz")
    dcz.compress(tmp_path / "convs.onnx", out=tmp_path / "from_onnx.dcz")
    for path in (tmp_path / "convs.dcz", tmp_path / "from_onnx.dcz"):
        assert os.path.getsize(path) < len(dense)
        stored = formats.open(path)
        assert stored.names == [] and set(stored.metadata["compress.kept_raw"].values()) == {INLINE_REASON}
        assert "no tensors stored apart: every weight is inline in the graph" in info_text(path)
        for backend in ("ort", "numpy"):
            loaded = runtime.load(path, backend=backend)
            np.testing.assert_allclose(loaded.run({loaded.input_names[0]: x.numpy()})[0], expected, atol=1e-5)


def test_mlp_is_smaller_than_both_float_files(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    x = torch.randn(1, 64)
    out = tmp_path / "mlp.dcz"
    dcz.compress(model, x, out=out)
    assert os.path.getsize(out) * 3 < min(float_bytes(model), len(onnx_bytes(model, x)))


def test_candidates_are_built_only_while_the_file_is_larger_than_dense():
    built = []

    def candidate(size):
        return lambda: built.append(size) or (bytes(size), [])

    dense_asked = []

    def dense():
        dense_asked.append(1)
        return 50

    assert len(first_within([candidate(80), candidate(40), candidate(10)], dense)[0]) == 40
    assert built == [80, 40] and dense_asked == [1]
    assert len(first_within([candidate(80), candidate(90)], lambda: 10)[0]) == 80  # none fits: the smallest
    built.clear()
    weights = [formats.Raw("w", np.zeros(100, np.float32))]
    assert first_within([lambda: (bytes(150), weights), candidate(1)], dense)[0] == bytes(150)  # < 2 B/weight
    assert built == [] and dense_asked == [1]
