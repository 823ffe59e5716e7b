"""Weight sharing as a parametrization: gradients sum per cluster, pruned positions stay zero."""

import numpy as np
import torch
from torch import nn

from dcz.compressor import CompressConfig
from dcz.compressor.prune import prune_step
from dcz.compressor.share import SharedWeight, share_layer, shared_weight

torch.set_num_threads(1)  # tiny models: extra threads only contend on the shared CI cores


def _plan(**layer):
    return CompressConfig.from_dict({"global": layer}).for_layer("w", "Linear")


def test_centroid_gradient_is_the_sum_over_its_cluster():
    centroids = torch.tensor([-1.0, 0.5, 2.0])
    labels = torch.tensor([[0, 1, 2], [2, 2, 1]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    shared = SharedWeight(centroids, labels, mask)
    weight = shared(torch.empty(2, 3))
    assert weight.tolist() == [[-1.0, 0.5, 0.0], [2.0, 2.0, 0.5]]
    upstream = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (weight * upstream).sum().backward()
    # cluster 0: 1; cluster 1: 2 + 6; cluster 2: 4 + 5 (the pruned position's 3 does not count)
    assert shared.centroids.grad.tolist() == [1.0, 8.0, 9.0]


def test_grouped_codebooks_pick_the_row_group():
    centroids = torch.tensor([[0.0, 1.0], [10.0, 11.0]])
    labels = torch.tensor([[1, 0], [0, 1], [1, 1]])
    shared = SharedWeight(centroids, labels, None, group_rows=2)
    assert shared(torch.empty(3, 2)).tolist() == [[1.0, 0.0], [0.0, 1.0], [11.0, 11.0]]


def test_share_layer_keeps_pruned_zeros_and_trains_only_centroids():
    torch.manual_seed(0)
    layer = nn.Linear(30, 20)
    config = CompressConfig.from_dict({"global": {"prune": "sparsity", "sparsity": 0.7, "bits": 3}})
    plan = config.for_layer("w", "Linear")
    prune_step({"w": (layer, plan)}, {}, 1, 1)
    pruned = layer.weight.detach().clone()
    share_layer(layer, plan)
    shared = shared_weight(layer)
    assert shared.centroids.shape == (8,)
    weight = layer.weight.detach()
    assert torch.all(weight[pruned == 0] == 0)
    assert (weight - pruned).abs().max() < pruned.abs().max() / 4
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"bias", "parametrizations.weight.0.centroids"}
    optimizer = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    layer(torch.randn(4, 30)).sum().backward()
    optimizer.step()
    after = layer.weight.detach()
    assert torch.all(after[pruned == 0] == 0)
    assert len(np.unique(after[pruned != 0].numpy())) <= 8  # still at most 2**bits distinct values
