"""Seeded training and ONNX export shared by the digit benchmarks (bench_quant, bench_qat, calib_onnx).

Same seed, same weights: the seed fixes both the initialisation (torch.manual_seed before the net is
built) and the batch order (its own generator), so the figures of docs/benchmarks/ are reproducible.
"""

from __future__ import annotations

import io


def fit(net, x, y, epochs: int, lr: float, seed: int = 0, batch_size: int = 64):
    """Adam + cross-entropy on the parameters that require grad, `epochs` seeded shuffled passes; net in eval mode."""
    import torch

    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def train_seeded(make_net, x, y, epochs: int, lr: float = 1e-3, seed: int = 0):
    """A net from `make_net()` built under torch.manual_seed(seed), then `fit`."""
    import torch

    torch.manual_seed(seed)
    return fit(make_net(), x, y, epochs, lr, seed)


def loader(x, y, seed: int = 0, batch_size: int = 64):
    """A shuffled (seeded) DataLoader of (x, y) batches, for dcz.compress(train_loader=...)."""
    import torch

    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)


def onnx_bytes(net, shape=(1, 1, 28, 28)) -> bytes:
    """The net as ONNX (opset 17, TorchScript exporter): input "x", output "logits", dynamic batch "n"."""
    import torch

    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net, torch.zeros(shape), buf, input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    return buf.getvalue()
