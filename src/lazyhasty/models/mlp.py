"""Fully connected networks in the standard or the NTK parametrisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .activations import Activation

PARAMETRIZATIONS = ("standard", "ntk")


class NTKInit:
    """N(0, 1) weights and biases; the layer scales them by ``weight_scale`` = 1/sqrt(fan_in) and ``bias_scale``."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.normal_(self.bias)


class NTKLinear(NTKInit, nn.Linear):
    """y = W x / sqrt(fan_in) + bias_scale * b with W, b ~ N(0, 1): the NTK parametrisation (Jacot et al. 2018;
    Geiger et al. 2020, slide "training procedure": z^(l+1)_i = n^-1/2 sum_j W^l_ij phi(z^l_j), W_ij(0) ~ N(0, 1),
    and the output f(w, x) = n^-1/2 sum_i W^L_i phi(z^L_i)).

    Subclasses ``nn.Linear`` so that layer-wise tools (structured NTK) see a linear layer; the scale factors
    are the attributes ``weight_scale`` = 1/sqrt(fan_in) and ``bias_scale``.
    Shapes: x (..., fan_in) -> y (..., fan_out).
    """

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, bias_scale: float = 1.0,
                 device=None, dtype=None):
        super().__init__(fan_in, fan_out, bias=bias, device=device, dtype=dtype)
        self.weight_scale = 1.0 / math.sqrt(fan_in)
        self.bias_scale = float(bias_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(x, self.weight) * self.weight_scale  # (..., fan_out)
        if self.bias is not None:
            y = y + self.bias_scale * self.bias
        return y


def linear_layer(fan_in: int, fan_out: int, parametrization: str, bias: bool) -> nn.Linear:
    if parametrization == "standard":
        return nn.Linear(fan_in, fan_out, bias=bias)
    if parametrization == "ntk":
        return NTKLinear(fan_in, fan_out, bias=bias)
    raise ValueError(f"unknown parametrization {parametrization!r}; choose one of {', '.join(PARAMETRIZATIONS)}")


class MLP(nn.Module):
    """A fully connected network x -> W_L phi(... phi(W_1 x)).

    Args:
        widths: ``[d_in, h_1, ..., h_L, d_out]``; at least input and output.
        activation: ``"relu"``, ``"softplus"``, ``"tanh"`` or ``"linear"`` (the identity).
        parametrization: ``"standard"`` (PyTorch's default ``nn.Linear`` init) or ``"ntk"`` (N(0, 1) weights,
            every layer scaled by 1/sqrt(fan_in), so the last by 1/sqrt(h): :class:`NTKLinear`).
        bias: whether layers have biases.
        beta: softplus sharpness (Geiger et al. use beta = 5).
        normalize_activation: divide phi by sqrt(E[phi(z)^2]), z ~ N(0,1) (relu becomes sqrt(2) relu).

    Shapes: x (n, d_in) -> (n, d_out). ``hidden(x)`` returns the input of the last layer, (n, h_L).
    """

    def __init__(self, widths: Sequence[int], activation: str = "relu", parametrization: str = "standard",
                 bias: bool = True, beta: float = 1.0, normalize_activation: bool = False):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least input and output sizes, all >= 1; got {widths}")
        self.widths = widths
        self.layers = nn.ModuleList(
            linear_layer(a, b, parametrization, bias) for a, b in zip(widths[:-1], widths[1:])
        )
        self.act = Activation(activation, beta=beta, normalize=normalize_activation)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))  # (n, h_l)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](self.hidden(x))  # (n, d_out)
