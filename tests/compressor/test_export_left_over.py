"""Weights the torch pipeline cannot handle (nn.MultiheadAttention's packed in_proj_weight) are
shared at export with the safe defaults, named after their parameter, and the model still agrees."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from dcz import runtime  # noqa: E402
from dcz.compressor import compress  # noqa: E402


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.head = nn.Linear(64, 8)

    def forward(self, ids):
        x = self.embed(ids)
        attended, _ = self.attn(x, x, x, need_weights=False)
        return self.head((x + attended).mean(1))


def test_packed_qkv_is_compressed_at_export(tmp_path):
    torch.manual_seed(0)
    model, ids = Encoder().eval(), torch.randint(0, 1000, (2, 16))
    result = compress(model, ids, progress=False)
    assert "attn.in_proj_weight" in result.skipped  # the pipeline itself cannot
    result.save(tmp_path / "e.dcz")
    with runtime.load(tmp_path / "e.dcz") as loaded:
        assert "attn.in_proj_weight" in loaded.metadata["compress.layers"].values()
        assert loaded.metadata["compress.skipped"] == {} and loaded.metadata["compress.kept_raw"] == {}
        got = loaded.run(ids.numpy())[0]
    with torch.no_grad():
        want = model(ids).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.03
