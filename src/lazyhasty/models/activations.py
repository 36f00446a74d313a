"""Activation functions by name, optionally normalised so that E[phi(z)^2] = 1 for z ~ N(0, 1).

The normalisation (Geiger et al. 2020) keeps pre-activations O(1) through depth in the NTK
parametrisation. The constant is computed by Gauss-Hermite quadrature (200 nodes: exact to float64 for
these smooth or piecewise-linear functions up to ~1e-12, checked in tests against a closed form).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("relu", "softplus", "tanh")


def _raw(name: str, beta: float):
    if name == "relu":
        return torch.relu, lambda z: np.maximum(z, 0.0)
    if name == "softplus":
        return (lambda x: nn.functional.softplus(x, beta=beta)), (lambda z: np.logaddexp(0.0, beta * z) / beta)
    if name == "tanh":
        return torch.tanh, np.tanh
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def second_moment(name: str, beta: float = 1.0) -> float:
    """E[phi(z)^2] for z ~ N(0, 1), by Gauss-Hermite quadrature (probabilists' weight)."""
    _, phi_np = _raw(name, beta)
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    return float(np.sum(weights * phi_np(nodes) ** 2) / math.sqrt(2 * math.pi))


class Activation(nn.Module):
    """phi(x) / c with c = sqrt(E[phi(z)^2]) if ``normalize`` else c = 1. For relu, c = 1/sqrt(2)."""

    def __init__(self, name: str = "relu", beta: float = 1.0, normalize: bool = False):
        super().__init__()
        self.name, self.beta, self.normalize = name, float(beta), bool(normalize)
        self._fn, _ = _raw(name, self.beta)
        self.scale = 1.0 / math.sqrt(second_moment(name, self.beta)) if normalize else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._fn(x)
        return y * self.scale if self.normalize else y

    def extra_repr(self) -> str:
        beta = f", beta={self.beta:g}" if self.name == "softplus" else ""
        return f"{self.name}{beta}, normalize={self.normalize}"
