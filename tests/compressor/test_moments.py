"""Input moments of a torch module's Linear layers (compressor/moments.py), as `dcz compress --calib` reads them."""

from __future__ import annotations

import numpy as np
import pytest

from dcz.compressor.checkpoint import Settings, compress_checkpoint
from dcz.compressor.errors import CompressError
from dcz.compressor.moments import linear_input_moments, save_moments
from dcz.compressor.refit import read_moments

torch = pytest.importorskip("torch")


class Tagger(torch.nn.Module):
    """(batch, tokens) ids -> per-token logits: an embedding, then two Linear layers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 16)
        self.body = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))

    def forward(self, ids, mask):
        return self.body(self.embed(ids)) * mask[..., None]


def batches(rng, count=3):
    out = []
    for _ in range(count):
        ids = torch.from_numpy(rng.integers(1, 50, size=(4, 7)))
        mask = torch.from_numpy((rng.random((4, 7)) < 0.7).astype(np.int64))
        out.append((ids * mask, mask))  # padding: id 0
    return out


def test_moments_are_the_mean_outer_product_of_real_tokens():
    model, data = Tagger(), batches(np.random.default_rng(0))
    moments = linear_input_moments(model, data, token_mask=lambda b: b[1] > 0)
    assert set(moments) == {"body.0.weight", "body.2.weight"}
    with torch.no_grad():
        real = torch.cat([model.embed(ids)[mask > 0] for ids, mask in data]).double().numpy()
        hidden = torch.nn.functional.gelu(model.body[0](torch.from_numpy(real).float())).double().numpy()
    np.testing.assert_allclose(moments["body.0.weight"], real.T @ real / len(real), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(moments["body.2.weight"], hidden.T @ hidden / len(hidden), rtol=1e-5, atol=1e-7)
    unmasked = linear_input_moments(model, data)  # padding rows count too: a different H
    assert not np.allclose(unmasked["body.0.weight"], moments["body.0.weight"], rtol=1e-3)


def test_moments_drive_compress_with_checkpoint_names(tmp_path):
    from safetensors.torch import save_file

    model = Tagger()
    checkpoint = {"tagger." + k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(checkpoint, str(tmp_path / "m.safetensors"))
    names = {"tagger.body.0.weight": "body.0.weight", "tagger.body.2.weight": "body.2.weight"}
    moments = linear_input_moments(model, batches(np.random.default_rng(1)), names, token_mask=lambda b: b[1] > 0)
    path = save_moments(tmp_path / "moments.npz", moments)
    shapes = {k: tuple(v.shape) for k, v in checkpoint.items()}
    assert set(read_moments(path, shapes)) == set(names)
    settings = Settings(bits=3, min_elements=64)
    summary = compress_checkpoint(tmp_path / "m.safetensors", tmp_path / "m.dcz", settings, workers=1, calib=path)
    assert summary["file_bytes"] > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: linear_input_moments(m, []), "no calibration batch"),
        (lambda m: linear_input_moments(torch.nn.ReLU(), [torch.ones(2)]), "no torch.nn.Linear"),
        (lambda m: linear_input_moments(m, [(torch.ones(2, 3),)]), "batch 0: the module raised TypeError"),
        (
            lambda m: linear_input_moments(m, batches(np.random.default_rng(0)), token_mask=lambda b: b[1][:, :3] > 0),
            "token_mask is \\(4, 3\\), its input's leading dims \\(4, 7\\)",
        ),
    ],
)
def test_bad_calibration_one_error(call, message):
    with pytest.raises(CompressError, match=message):
        call(Tagger())


def test_non_finite_inputs_named():
    model = Tagger()
    with torch.no_grad():
        model.embed.weight[3] = float("nan")
    ids = torch.full((2, 5), 3)
    with pytest.raises(CompressError, match="layer 'body.0' saw NaN"):
        linear_input_moments(model, [(ids, torch.ones(2, 5))])


def test_save_moments_refuses_non_square(tmp_path):
    with pytest.raises(CompressError, match="square"):
        save_moments(tmp_path / "m.npz", {"w": np.ones((3, 4))})
    with pytest.raises(CompressError, match="no moment"):
        save_moments(tmp_path / "m.npz", {})
