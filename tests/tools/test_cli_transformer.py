"""`dcz compress package.module:factory` on a small attention model: token-id inputs, dynamic sequence
length, the embedding table compressed, a warning when no --weights are given. (Written-out q/k/v
projections: nn.MultiheadAttention's packed in_proj_weight is still kept raw, and its TorchScript
export freezes the sequence length.)"""

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dcz import runtime  # noqa: E402
from dcz.cli import main  # noqa: E402

FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(1000, 64)
            self.query, self.key, self.value = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 64)
            self.norm = nn.LayerNorm(64)
            self.head = nn.Linear(64, 8)

        def forward(self, ids):
            x = self.embed(ids)
            attention = (self.query(x) @ self.key(x).transpose(1, 2) / 8.0).softmax(-1)
            return self.head(self.norm(x + attention @ self.value(x)).mean(1))

    def make():
        return Encoder()
""")


@pytest.fixture()
def project(tmp_path, monkeypatch):
    (tmp_path / "tinyencoder_cli_test.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_token_ids_dynamic_length_embedding_and_a_warning(capsys, project):
    argv = ["compress", "tinyencoder_cli_test:make", "--input-shape", "1,16", "--input-dtype", "int64", "-o", "e.dcz"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "no --weights given" in captured.err
    assert "weights: " in captured.out
    import tinyencoder_cli_test

    reference = tinyencoder_cli_test.make().eval()
    ids = np.random.default_rng(0).integers(0, 1000, size=(2, 9)).astype(np.int64)  # 9 tokens, not 16
    with runtime.load(project / "e.dcz") as model:
        (got,) = model.run(ids)
        assert "embed.weight" in model.metadata["compress.weight_sqnr_db"]
    with torch.no_grad():
        want = reference(torch.from_numpy(ids)).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05
