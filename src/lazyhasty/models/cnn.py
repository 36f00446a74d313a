"""A small convolutional network and a CIFAR-style ResNet18."""

from __future__ import annotations

import math

import torch
from torch import nn

from .activations import Activation
from .mlp import NTKInit, linear_layer


class NTKConv2d(NTKInit, nn.Conv2d):
    """Conv2d with N(0, 1) weights scaled by 1/sqrt(fan_in), fan_in = in_channels * kh * kw: the NTK parametrisation
    of :class:`~lazyhasty.models.mlp.NTKLinear` (Geiger et al. 2020, slide "training procedure") for convolutions."""

    def __init__(self, *args, bias_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight_scale = 1.0 / math.sqrt(fan_in)
        self.bias_scale = float(bias_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_scale
        return self._conv_forward(x, self.weight * self.weight_scale, bias)


def conv_layer(cin: int, cout: int, parametrization: str, bias: bool, stride: int = 1) -> nn.Conv2d:
    if parametrization == "standard":
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
    if parametrization == "ntk":
        return NTKConv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
    raise ValueError(f"unknown parametrization {parametrization!r}; choose 'standard' or 'ntk'")


class CNN(nn.Module):
    """``depth`` 3x3 conv layers (channels width, 2 width, 4 width, ...; stride 2 after the first), global
    average pooling and a linear read-out.

    Shapes: x (n, in_channels, H, W) -> (n, num_outputs). ``hidden(x)`` is the pooled feature (n, C_last).
    """

    def __init__(self, in_channels: int = 1, num_outputs: int = 10, width: int = 32, depth: int = 3,
                 activation: str = "relu", parametrization: str = "standard", bias: bool = True,
                 beta: float = 1.0, normalize_activation: bool = False):
        super().__init__()
        chans = [in_channels] + [width * 2 ** min(i, 3) for i in range(depth)]
        self.convs = nn.ModuleList(
            conv_layer(a, b, parametrization, bias, stride=1 if i == 0 else 2)
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.act = Activation(activation, beta=beta, normalize=normalize_activation)
        self.head = linear_layer(chans[-1], num_outputs, parametrization, bias)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = self.act(conv(x))  # (n, C, H', W')
        return x.mean(dim=(2, 3))  # (n, C_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, batchnorm: bool):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(cout)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so hooks (sign similarity) see them
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout))

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 in its CIFAR variant (He et al. 2016): 3x3 stem, no max-pool, stages of 2 basic blocks with
    64, 128, 256, 512 channels (times ``width`` / 64), global average pooling, linear read-out.

    ``batchnorm=False`` replaces every BatchNorm by the identity (the lazy-vs-hasty paper keeps batch norm out
    of the alpha-scaling, appendix D). Shapes: x (n, in_channels, 32, 32) -> (n, num_outputs).
    """

    def __init__(self, num_outputs: int = 10, in_channels: int = 3, width: int = 64, batchnorm: bool = True):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), norm(width), nn.ReLU())
        chans = [width, width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            blocks += [_BasicBlock(chans[i], chans[i + 1], stride, batchnorm),
                       _BasicBlock(chans[i + 1], chans[i + 1], 1, batchnorm)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], num_outputs)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))  # (n, 8 width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))
