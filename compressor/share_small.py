"""Weight sharing for the small tensors beside a compressed weight (biases).

At the ratios of the frontier (100-300x) a LeNet's raw float32 biases are 10-25% of the file. They
are clustered like weights (k-means, `bias_bits` bits) and held by the same SharedWeight
parametrization, so the centroid fine-tuning that follows trains them too and the exporter stores
them with the `shared` encoding. Biases under `MIN_SHARED` values stay raw: the ONNX exporter keeps
those inline in the graph, where a codebook could not be smaller.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from dcz.compressor.kmeans import cluster_weights
from dcz.compressor.share import SharedWeight, as_numpy
from dcz.compressor.state import LayerState

MIN_SHARED = 64


def share_bias(module: nn.Module, bits: int, seed: int) -> SharedWeight | None:
    """Replace module.bias by a `bits`-bit codebook; None when the bias is absent or too small."""
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor) or bias.numel() < MIN_SHARED or parametrize.is_parametrized(module, "bias"):
        return None
    values = bias.detach().numpy()
    book, labels = cluster_weights(values, None, bits, seed=seed)
    shared = SharedWeight(torch.from_numpy(book), torch.from_numpy(labels), None)
    shared.bits = bits
    parametrize.register_parametrization(module, "bias", shared, unsafe=True)
    module.parametrizations["bias"].original.requires_grad_(False)  # superseded by the codebook
    return shared


def bias_state(name: str, module: nn.Module) -> LayerState | None:
    """The LayerState of a shared module.bias (`name` is the parameter's dotted name)."""
    if not parametrize.is_parametrized(module, "bias"):
        return None
    shared = next((p for p in module.parametrizations["bias"] if isinstance(p, SharedWeight)), None)
    if shared is None:
        return None
    return LayerState(
        name=name,
        layer_type=type(module).__name__,
        shape=tuple(module.parametrizations["bias"].original.shape),
        codebook=as_numpy(shared.centroids).astype("float32"),
        labels=as_numpy(shared.labels),
        label_bits=shared.bits,
    )
