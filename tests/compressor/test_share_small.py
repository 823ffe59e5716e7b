"""Biases shared through a codebook (config bias_bits): stored as `shared`, run from the file as in torch."""

import numpy as np
import pytest
import torch
from torch import nn

from dcz import formats
from dcz.compressor import CompressError, compress
from dcz.compressor.share_small import MIN_SHARED

pytest.importorskip("onnxruntime")
torch.set_num_threads(1)


def _net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 96), nn.ReLU(), nn.Linear(96, 10))
    with torch.no_grad():
        model[0].bias.uniform_(-1, 1)  # spread biases: a wrong label or codebook shows in the output
    return model


def test_biases_get_a_codebook_and_the_file_runs_like_torch(tmp_path):
    model = _net()
    config = {"global": {"prune": "sparsity", "sparsity": 0.5, "bits": 4}, "bias_bits": 3}
    result = compress(model, torch.zeros(1, 16), config, progress=False)
    path = tmp_path / "net.dcz"
    result.save(path)
    state = result.layers["0.bias"]
    assert state.codebook.size <= 8 and "2.bias" not in result.layers  # 10 < MIN_SHARED values: inline
    assert 10 < MIN_SHARED <= 96
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    with formats.open(path) as dcz:
        assert dcz.info("0.bias").encoding == "shared"
        bias = dcz.tensor("0.bias")
    np.testing.assert_array_equal(bias, state.weight())
    assert len(np.unique(bias)) <= 8 and np.abs(bias - model[0].bias.detach().numpy()).max() < 0.2
    from dcz import runtime

    out = runtime.load(path, backend="numpy").run(x)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    out = out[0] if isinstance(out, (list, tuple)) else out
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(out), result.model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_bias_bits_is_checked():
    with pytest.raises(CompressError, match="config.bias_bits"):
        compress(_net(), torch.zeros(1, 16), {"bias_bits": 9}, progress=False)
