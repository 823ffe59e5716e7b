"""tools/check_agreement.py: the torch model rebuilt from a .dcz agrees with both backends."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dcz.compressor.pipeline import compress  # noqa: E402
from dcz.demo import models  # noqa: E402
from tools.dev.check_agreement import check, torch_model_of  # noqa: E402


@pytest.mark.parametrize("ctor", [models.lenet_300_100, models.lenet5])
def test_rebuilt_torch_model_and_backends_agree(ctor, tmp_path):
    torch.manual_seed(0)
    model = ctor().eval()
    result = compress(
        model, torch.zeros(1, 1, 28, 28), {"global": {"prune": "sparsity", "sparsity": 0.8}}, progress=False
    )
    path = tmp_path / "m.dcz"
    result.save(path)
    x = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():  # the rebuilt model is the compressed model the file stores
        want = result.model.eval()(torch.from_numpy(x)).numpy()
        got = torch_model_of(path)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)
    lines = check(path, x)
    assert len(lines) == 3 and all("top-1 differs on 0 of 40 digits" in line for line in lines[1:])
