"""Activation functions by name, optionally normalised so that E[phi(z)^2] = 1 for z ~ N(0, 1).

The normalisation (Geiger et al. 2020) keeps pre-activations O(1) through depth in the NTK
parametrisation. The constant is computed by adaptive quadrature (scipy ``quad``, relative error ~1e-12;
tested against the closed form for relu and a dense Simpson rule for the others).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("relu", "softplus", "tanh", "linear")


def _raw(name: str, beta: float):
    if name == "relu":
        return torch.relu, lambda z: np.maximum(z, 0.0)
    if name == "softplus":
        return (lambda x: nn.functional.softplus(x, beta=beta)), (lambda z: np.logaddexp(0.0, beta * z) / beta)
    if name == "tanh":
        return torch.tanh, np.tanh
    if name == "linear":  # a deep linear network (George et al.'s Fig. 14: second moment 1)
        return (lambda x: x), (lambda z: z)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def second_moment(name: str, beta: float = 1.0) -> float:
    """E[phi(z)^2] for z ~ N(0, 1), by adaptive quadrature split at 0 (where relu/softplus bend)."""
    from scipy.integrate import quad

    _, phi_np = _raw(name, beta)

    def f(z):
        return float(phi_np(np.asarray(z)) ** 2) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    return sum(quad(f, a, b, epsabs=0, epsrel=1e-13, limit=200)[0] for a, b in ((-40, 0), (0, 40)))


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
