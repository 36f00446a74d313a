"""Losses that return *per-example* values, so that groups of examples can be reduced later.

Conventions. Binary tasks: the network has one output, shape (n,) or (n, 1), and labels are y in {-1, +1}.
Multi-class tasks: outputs (n, C) and integer labels (n,). The margin of an example is y f(x) (binary) or
f_y(x) - max_{c != y} f_c(x) (multi-class); the margin losses below are functions of it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _binary(out: torch.Tensor) -> torch.Tensor:
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    return out


def margins(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin, shape (n,): y f(x) for binary outputs, f_y - max_{c != y} f_c for multi-class."""
    out = _binary(out)
    if out.ndim == 1:
        return y.to(out.dtype) * out
    fy = out.gather(1, y.long()[:, None])[:, 0]  # (n,)
    others = out.scatter(1, y.long()[:, None], float("-inf"))  # (n, C)
    return fy - others.max(dim=1).values


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness (bool, shape (n,)): sign agreement (binary) or arg-max (multi-class)."""
    out = _binary(out)
    if out.ndim == 1:
        return (out > 0) == (y > 0)
    if y.ndim == 2:  # one-hot / real-valued targets
        y = y.argmax(dim=1)
    return out.argmax(dim=1) == y.long()


class Loss:
    """Base class: ``loss(out, y)`` returns per-example losses of shape (n,)."""

    name = "loss"

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def margin(self, out, y):
        return margins(out, y)

    def correct(self, out, y):
        return correct(out, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropy(Loss):
    """-log softmax(f)_y; outputs (n, C), integer labels (n,)."""

    name = "cross_entropy"

    def __call__(self, out, y):
        return F.cross_entropy(out, y.long(), reduction="none")


class BCE(Loss):
    """Binary cross-entropy on +-1 labels: log(1 + exp(-y f)) = softplus(-y f)."""

    name = "bce"

    def __call__(self, out, y):
        return F.softplus(-margins(out, y))


class MSE(Loss):
    """Half squared error, summed over outputs: 1/2 ||f(x) - y||^2 (targets of the same shape as f)."""

    name = "mse"

    def __call__(self, out, y):
        out = _binary(out)
        diff = out - y.to(out.dtype)
        return 0.5 * (diff**2 if diff.ndim == 1 else (diff**2).sum(dim=1))


class Hinge(Loss):
    """max(0, 1 - margin)."""

    name = "hinge"

    def __call__(self, out, y):
        return F.relu(1 - margins(out, y))


class SoftHinge(Loss):
    """softplus_beta(1 - margin) / beta = log(1 + exp(beta (1 - margin))) / beta (Geiger et al. use beta = 20)."""

    name = "soft_hinge"

    def __init__(self, beta: float = 20.0):
        if not beta > 0:
            raise ValueError(f"soft hinge beta must be > 0, got {beta}")
        self.beta = float(beta)

    def __call__(self, out, y):
        return F.softplus(1 - margins(out, y), beta=self.beta)

    def __repr__(self) -> str:
        return f"SoftHinge(beta={self.beta:g})"


class QuadraticHinge(Loss):
    """1/2 max(0, 1 - margin)^2."""

    name = "quadratic_hinge"

    def __call__(self, out, y):
        return 0.5 * F.relu(1 - margins(out, y)) ** 2


LOSSES = {cls.name: cls for cls in (CrossEntropy, BCE, MSE, Hinge, SoftHinge, QuadraticHinge)}


def get_loss(name: str | Loss, **kwargs) -> Loss:
    """A loss by name (``cross_entropy``, ``bce``, ``mse``, ``hinge``, ``soft_hinge``, ``quadratic_hinge``)."""
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name](**kwargs)
