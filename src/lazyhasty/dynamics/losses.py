"""Losses that return *per-example* values, so that groups of examples can be reduced later.

Accepted shapes (anything else is refused with a ValueError naming both shapes, never broadcast):

* binary: outputs (n,) or (n, 1), labels y in {-1, +1} of shape (n,) or the outputs' shape;
* class indices: outputs (n, C) with C >= 2, integer labels (n,) in 0..C-1;
* regression (MSE only): targets of the outputs' shape, or outputs (n, 1) with targets (n,).

The margin of an example is y f(x) (binary) or f_y(x) - max_{c != y} f_c(x) (class indices); the margin losses
below are functions of it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import BadData


def _shapes(out: torch.Tensor, y: torch.Tensor) -> str:
    return f"outputs of shape {tuple(out.shape)} and targets of shape {tuple(y.shape)}"


def _pair(out: torch.Tensor, y: torch.Tensor, what: str = "loss") -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (outputs, labels) pair of the binary or class-index form; binary pairs come back as (n,), (n,)."""
    n = out.shape[0] if out.ndim else -1
    if out.ndim in (1, 2) and y.shape[:1] == (n,):
        if out.ndim == 1 or out.shape[1] == 1:  # binary
            if y.ndim == 1 or y.shape == out.shape:
                return out.reshape(n), y.reshape(n)
        elif y.ndim == 1:  # class indices
            if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
                raise ValueError(f"{what}: class labels must be integers, got dtype {y.dtype} ({_shapes(out, y)})")
            return out, y
    raise ValueError(f"{what}: {_shapes(out, y)} do not match; expected binary outputs (n,) or (n, 1) with "
                     "labels (n,), or class scores (n, C) with integer labels (n,)")


def _softplus(z: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """log(1 + exp(beta z)) / beta, exact to float64 rounding for every z: torch returns z itself above
    beta z = threshold, where the dropped term log(1 + exp(-beta z)) / beta is e^-40 / beta, below float64's
    resolution of values >= 40 / beta (torch's default threshold, 20, leaves a 2e-9 error)."""
    return F.softplus(z, beta=beta, threshold=40.0)


def margins(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin, shape (n,): y f(x) for binary outputs, f_y - max_{c != y} f_c for class scores."""
    out, y = _pair(out, y, "margin")
    if out.ndim == 1:
        return y.to(out.dtype) * out
    fy = out.gather(1, y.long()[:, None])[:, 0]  # (n,)
    # the lowest finite number, not -inf, in f_y's place: the same max for C >= 2 finite scores, and torch.compile's
    # C++ wrapper cannot write an infinite constant (torch 2.13: "'inf' was not declared")
    others = out.scatter(1, y.long()[:, None], torch.finfo(out.dtype).min)  # (n, C)
    return fy - others.max(dim=1).values


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness (bool, shape (n,)): sign agreement (binary) or arg-max (class indices); regression
    targets of the outputs' shape (n, C) count as correct when their arg-maxes agree (one-hot targets)."""
    if out.ndim == 2 and out.shape[1] > 1 and y.shape == out.shape:
        return out.argmax(dim=1) == y.argmax(dim=1)
    out, y = _pair(out, y, "accuracy")
    if out.ndim == 1:
        return (out > 0) == (y > 0)
    return out.argmax(dim=1) == y


def check_data(loss: Loss, shape: tuple, split, name: str) -> None:
    """Refuse, before training, a split (``name``) a loss cannot use correctly (:class:`BadData`): NaN or infinite
    inputs or targets, and labels outside the convention of a loss that reads labels (``loss.labels``:
    cross-entropy and the margin losses; MSE takes any targets): binary labels must be -1 or +1 (a {0, 1} label makes
    every 0 a wrong margin and training converges to the wrong answer without a word), class labels integers in
    0..C-1. ``shape``: the outputs' shape per example, () or (C,)."""
    from ..data.inputs import leaves

    y, where = split.y, f"split {name!r}"
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in (*leaves(split.x), y)):
        raise BadData(f"{where} holds NaN or infinite inputs or targets")
    if not getattr(loss, "labels", False):
        return
    out, y = _pair(torch.zeros(()).expand(y.shape[0], *shape), y, f"{loss.name} on {where}")
    bad = ((y != 1) & (y != -1)) if out.ndim == 1 else ((y < 0) | (y >= out.shape[1]))
    if bool(bad.any()):
        rule = "binary labels must be -1 or +1" if out.ndim == 1 else f"class labels must be in 0..{out.shape[1] - 1}"
        hint = "; map {0, 1} labels with y = 2 y - 1" if out.ndim == 1 and bool(((y == 0) | (y == 1)).all()) else ""
        raise BadData(f"{loss.name}: {rule}; {where} has {int(bad.sum())} of {len(y)} outside it (e.g. "
                      f"{y[bad][0].item()!r}){hint}")


class Loss:
    """Base class: ``loss(out, y)`` returns per-example losses of shape (n,). ``labels = True``: the loss reads
    labels (binary -1/+1 or class indices), checked by :func:`check_data` before training."""

    name = "loss"
    labels = False

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
    labels = True

    def __call__(self, out, y):
        if out.ndim != 2 or out.shape[1] < 2:
            raise ValueError(f"cross_entropy needs class scores (n, C) with C >= 2, got {_shapes(out, y)}; "
                             "use bce for one binary output")
        out, y = _pair(out, y, self.name)
        return F.cross_entropy(out, y.long(), reduction="none")


class BCE(Loss):
    """Binary cross-entropy on +-1 labels: log(1 + exp(-y f)) = softplus(-y f)."""

    name = "bce"
    labels = True

    def __call__(self, out, y):
        return _softplus(-margins(out, y))


class MSE(Loss):
    """Half squared error, summed over outputs: 1/2 ||f(x) - y||^2 (targets of the outputs' shape; (n,) for outputs
    (n, 1))."""

    name = "mse"

    def __call__(self, out, y):
        if out.ndim == 2 and out.shape[1] == 1 and y.shape == out.shape[:1]:
            y = y[:, None]  # the binary form: one output, targets (n,)
        if out.shape != y.shape or out.ndim not in (1, 2):
            raise ValueError(f"mse: {_shapes(out, y)} differ; targets must have the outputs' shape (n,) or (n, C) "
                             "(or (n,) for outputs (n, 1))")
        diff = out - y.to(out.dtype)
        return 0.5 * (diff**2 if diff.ndim == 1 else (diff**2).sum(dim=1))

    def margin(self, out, y):
        """For targets of the outputs' shape (n, C) (one-hot), the margin of their arg-max class, as in
        :func:`correct`; otherwise :func:`margins`."""
        if out.ndim == 2 and out.shape[1] > 1 and y.shape == out.shape:
            y = y.argmax(dim=1)
        return margins(out, y)


class Hinge(Loss):
    """max(0, 1 - margin)."""

    name = "hinge"
    labels = True

    def __call__(self, out, y):
        return F.relu(1 - margins(out, y))


class SoftHinge(Loss):
    """softplus_beta(1 - margin) / beta = log(1 + exp(beta (1 - margin))) / beta (Geiger et al. use beta = 20)."""

    name = "soft_hinge"
    labels = True

    def __init__(self, beta: float = 20.0):
        if not beta > 0:
            raise ValueError(f"soft hinge beta must be > 0, got {beta}")
        self.beta = float(beta)

    def __call__(self, out, y):
        return _softplus(1 - margins(out, y), self.beta)

    def __repr__(self) -> str:
        return f"SoftHinge(beta={self.beta:g})"


class QuadraticHinge(Loss):
    """1/2 max(0, 1 - margin)^2."""

    name = "quadratic_hinge"
    labels = True

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
