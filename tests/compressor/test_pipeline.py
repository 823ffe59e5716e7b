"""compress(): stages, LayerStates, skipped layers, BatchNorm folding, determinism, save()."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcz.compressor import CompressConfig, CompressError, compress
from dcz.compressor.finetune import accuracy
from dcz.compressor.pipeline import fold_batchnorm

torch.set_num_threads(1)  # tiny models: extra threads only contend on the shared CI cores

ROOT = Path(__file__).resolve().parents[2]


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 16, generator=g)
    y = (X[:, :4].sum(1) > 0).long() + 2 * (X[:, 4:8].sum(1) > 0).long()
    return X, y, [(X[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


CONFIG = {
    "global": {"prune": "sparsity", "sparsity": 0.6, "bits": 3, "gap_bits": 4},
    "prune_steps": 2,
    "prune_epochs": 1,
    "share_epochs": 1,
    "lr": 5e-3,
    "distill_temperature": 2.0,
}


def test_all_stages_and_states_match_the_model():
    X, y, loader = _data()
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = compress(model, X[:1], CONFIG, loader, lambda m: accuracy(m, X, y), progress=False)
    assert list(result.accuracy) == ["dense", "pruned", "pruned+finetuned", "shared", "shared+finetuned"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # user's model untouched
    assert set(result.layers) == {"0.weight", "2.weight", "4.weight"} and result.skipped == {}
    params = {
        n: m.weight.detach().numpy()
        for n, m in [("0.weight", result.model[0]), ("2.weight", result.model[2]), ("4.weight", result.model[4])]
    }
    for name, state in result.layers.items():
        assert np.array_equal(state.weight(), params[name])
        assert state.mask.mean() == pytest.approx(0.4, abs=0.02)
        assert state.codebook.shape == (8,) and state.labels.max() < 8 and state.label_bits == 3 and state.gap_bits == 4
        assert np.unique(params[name][state.mask]).size <= 8
    logits = result.model(X)
    assert logits.shape == (len(X), 4)


def test_post_training_without_a_loader():
    X, y, _ = _data()
    result = compress(_mlp(), X[:1], CONFIG, eval_fn=lambda m: accuracy(m, X, y), progress=False)
    assert list(result.accuracy) == ["dense", "pruned", "shared"]


def test_per_group_codebooks_reach_the_layer_state():
    X, _, _ = _data()
    config = {"global": {"bits": 2}, "by_name": {"0.weight": {"group_rows": 16}}}
    result = compress(_mlp(), X[:1], config, progress=False)
    state = result.layers["0.weight"]
    assert state.group_rows == 16 and state.codebook.shape == (4, 4) and state.mask is None
    assert np.array_equal(state.weight(), result.model[0].weight.detach().numpy())
    assert result.layers["2.weight"].codebook.shape == (4,)


def test_unsupported_and_excluded_layers_are_kept_raw_and_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 16)
            self.fc = nn.Linear(16, 64)  # 1,024 weights: a codebook is smaller than raw
            self.head = nn.Linear(64, 2)
            self.tiny = nn.Linear(2, 2)

        def forward(self, tokens):
            return self.tiny(self.head(self.fc(self.embed(tokens)).relu()))

    config = CompressConfig.from_dict({"by_name": {"head.weight": {"skip": True}}, "min_weights": 10})
    result = compress(Net(), torch.tensor([[1, 2, 3]]), config, progress=False)
    assert "fc.weight" in result.layers  # the Embedding (160 weights) is compressed or kept raw as too small
    assert "embed.weight" in result.layers or "codebook" in result.skipped["embed.weight"]
    assert result.skipped["head.weight"] == "config: skip"
    assert "min_weights" in result.skipped["tiny.weight"]


def test_weights_the_config_keeps_raw_are_stored_raw(tmp_path):
    """skip / min_weights keep a weight raw in the file too (the exporter's left-over sharing is for layer types
    the pipeline does not know): the .dcz then computes what result.model computes."""
    import dcz

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    config = {"global": {"bits": 4}, "by_name": {"2.weight": {"skip": True}}, "min_weights": 200}
    result = compress(net, torch.zeros(1, 16), config, progress=False)
    assert set(result.skipped) == {"2.weight", "4.weight"}
    result.save(tmp_path / "m.dcz")
    with dcz.open(tmp_path / "m.dcz") as f:
        assert f.info("2.weight").encoding == "raw" and f.info("4.weight").encoding == "raw"
        assert f.info("0.weight").encoding == "shared"
    x = torch.randn(8, 16)
    (out,) = dcz.load(tmp_path / "m.dcz").run(x.numpy())
    np.testing.assert_allclose(out, result.model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_config_naming_a_missing_layer_fails():
    with pytest.raises(CompressError, match="fc9.weight"):
        compress(_mlp(), torch.zeros(1, 16), {"by_name": {"fc9.weight": {"bits": 2}}}, progress=False)


def test_bad_example_input_is_a_clear_error():
    with pytest.raises(CompressError, match="example_input"):
        compress(_mlp(), torch.zeros(1, 3), None, progress=False)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)  # conv2's output also feeds the residual: not foldable
        x = torch.relu(self.bn2(y)) + y
        return self.fc(x.mean((2, 3)))


def _trained_bn_net():
    torch.manual_seed(0)
    net = ConvNet()
    net.train()
    for _ in range(3):
        net(torch.randn(8, 3, 12, 12))  # give the BatchNorms non-trivial running statistics
    return net.eval()


def test_batchnorm_folds_only_where_valid_and_keeps_outputs():
    net = _trained_bn_net()
    x = torch.randn(4, 3, 12, 12)
    expected = net(x)
    folded = fold_batchnorm(net)
    assert folded == ["bn1"]
    assert isinstance(net.bn1, nn.Identity) and isinstance(net.bn2, nn.BatchNorm2d)
    assert net.conv1.bias is not None
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)


def test_compress_folds_batchnorm_before_compressing():
    result = compress(_trained_bn_net(), torch.randn(1, 3, 12, 12), {"global": {"bits": 8}}, progress=False)
    assert result.folded == ["bn1"]
    assert set(result.layers) == {"conv1.weight", "conv2.weight", "fc.weight"}


needs_export = pytest.mark.skipif(
    importlib.util.find_spec("dcz.compressor.export") is None, reason="exporter not built"
)


@needs_export
def test_save_writes_a_dcz_that_decodes_to_the_compressed_weights(tmp_path):
    from dcz import formats

    X, y, loader = _data()
    result = compress(_mlp(), X[:1], CONFIG, loader, lambda m: accuracy(m, X, y), progress=False)
    report = result.save(tmp_path / "a.dcz")
    again = compress(_mlp(), X[:1], CONFIG, loader, lambda m: accuracy(m, X, y), progress=False)
    again.save(tmp_path / "b.dcz")
    assert (tmp_path / "a.dcz").read_bytes() == (tmp_path / "b.dcz").read_bytes()  # same seed, same bytes
    assert report.file_bytes == (tmp_path / "a.dcz").stat().st_size
    with formats.open(tmp_path / "a.dcz") as dcz:
        assert dcz.metadata["compress.accuracy"] == pytest.approx(result.accuracy)
        decoded = [dcz.tensor(n) for n in dcz.names if dcz.info(n).encoding == "sparse_shared"]
    assert sorted(float(np.abs(d).sum()) for d in decoded) == pytest.approx(
        sorted(float(np.abs(s.weight()).sum()) for s in result.layers.values()), rel=1e-6
    )


def test_importing_compressor_pulls_in_no_torch():
    code = "import compressor, sys; compressor.CompressConfig(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
