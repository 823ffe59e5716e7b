"""The paper's MNIST networks (Han, Mao & Dally 2016, Tables 2 and 3), in PyTorch.

LeNet-300-100: fc 784-300, relu, fc 300-100, relu, fc 100-10.
LeNet-5, Caffe variant (caffe/examples/mnist/lenet.prototxt): conv 20@5x5, maxpool 2, conv
50@5x5, maxpool 2, fc 800-500, relu, fc 500-10 (no activation after the convolutions, as Caffe).
Inputs are (N, 1, 28, 28) float32 in [0, 1]; outputs are logits (N, 10).
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    """LeNet-300-100: 266,200 weights (Table 2: 1070 KB dense)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """LeNet-5 (Caffe): 430,500 weights (Table 3: 1720 KB dense)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(self.conv1(x), 2)
        x = torch.max_pool2d(self.conv2(x), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def lenet_300_100() -> LeNet300100:
    """A freshly initialised LeNet-300-100 (seed torch yourself for reproducibility)."""
    return LeNet300100()


def lenet5() -> LeNet5:
    """A freshly initialised Caffe LeNet-5 (seed torch yourself for reproducibility)."""
    return LeNet5()
