"""Quantization-aware training (compressor.qat): fake-quant grids match the export, STE gradients, observers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from dcz.compressor import linear, qat
from dcz.compressor.linear import LinearScheme
from dcz.compressor.pipeline import compress


@given(
    bits=st.integers(2, 8),
    signed=st.booleans(),
    symmetric=st.booleans(),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fake_quant_weight_is_the_grid_the_export_stores(bits, signed, symmetric, per_channel, seed):
    scheme = LinearScheme(bits, signed, symmetric, per_channel)
    w = np.random.default_rng(seed).normal(0, 0.3, (6, 10)).astype(np.float32)
    fake = qat.fake_quantize_weight(torch.from_numpy(w), scheme).numpy()
    result = linear.quantize(w, None, scheme)
    book = result.codebook if per_channel else np.broadcast_to(result.codebook, (6, result.codebook.size))
    stored = np.take_along_axis(book, result.labels.astype(np.int64), axis=1)
    np.testing.assert_allclose(fake, stored, rtol=0, atol=1e-6 * np.abs(w).max())


def test_weight_gradient_passes_straight_through():
    layer = nn.Linear(8, 4)
    handle = qat.prepare(nn.Sequential(layer), {"0.weight": LinearScheme(4)}, act_bits=None)
    x = torch.randn(5, 8)
    layer(x).sum().backward()
    grad = layer.parametrizations["weight"].original.grad
    torch.testing.assert_close(grad, torch.ones(5, 4).T @ x)  # d(sum(x W^T))/dW, rounding ignored
    assert len(torch.unique(layer.weight.detach())) <= 15  # the forward saw int4 levels
    handle.finish()
    assert not hasattr(layer, "parametrizations") and len(torch.unique(layer.weight.detach())) > 15


def test_activation_observer_learns_in_training_and_freezes_in_eval():
    observer = qat.ActivationObserver(8)
    observer.train()
    observer(torch.tensor([-1.0, 3.0]))
    observer.eval()
    out = observer(torch.tensor([-5.0, 0.1, 10.0]))
    assert float(observer.low) == -1.0 and float(observer.high) == 3.0
    scale, _ = observer.scale_and_zero()
    assert out.min() >= -1.0 - scale and out.max() <= 3.0 + scale  # clipped to the observed range
    assert abs(float(out[1]) - 0.1) <= scale / 2 + 1e-6


def test_qat_in_the_pipeline_exports_int4_weights_with_int8_activations(tmp_path):
    pytest.importorskip("onnxruntime")
    from dcz import runtime

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(64, 1, 8, 8)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 1).long()
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    config = {"global": {"quantize": "int4"}, "qat_epochs": 2}
    result = compress(net, x[:1], config, train_loader=loader, eval_fn=lambda m: 0.0, progress=False)
    assert "quantization-aware" in result.accuracy
    assert all(not hasattr(m, "parametrizations") or "weight" not in m.parametrizations for m in net.modules())
    path = tmp_path / "q.dcz"
    result.save(path, calib=x.numpy(), calib_method="minmax")
    model = runtime.load(path, backend="ort")
    assert model.metadata["compress.activations"] and model.metadata["compress.config"]["qat_epochs"] == 2
    # the observers' grids replace calibrated ones: the network's input is the first conv's observed input
    assert model.metadata["compress.qat_activations"] >= 2
    scale, zero = result.activation_ranges["0"]["in"]
    assert model.metadata["compress.activations"]["input"]["zero_point"] == zero
    got, want = model.run(x.numpy())[0], runtime.load(path, backend="numpy").run(x.numpy())[0]
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() and not np.array_equal(got, want)
