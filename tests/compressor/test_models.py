"""The paper's LeNets have the paper's weight counts and layer shapes."""

import torch

from dcz.demo.models import lenet5, lenet_300_100

torch.set_num_threads(1)  # tiny models: extra threads only contend on the shared CI cores


def _weights(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}


def test_lenet_300_100_shapes_match_table_2():
    model = lenet_300_100()
    assert _weights(model) == {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet5_is_the_caffe_variant_of_table_3():
    model = lenet5()
    assert _weights(model) == {
        "conv1.weight": (20, 1, 5, 5),
        "conv2.weight": (50, 20, 5, 5),
        "fc1.weight": (500, 800),
        "fc2.weight": (10, 500),
    }
    assert sum(p.numel() for p in model.parameters() if p.dim() > 1) == 430_500
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
