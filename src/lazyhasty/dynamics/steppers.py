"""Steppers: how parameters move given gradients. Each is a small object; the trainer owns the loop.

Units. Every stepper receives ``scale`` = 1 / alpha^2 from the trainer (the single place where the rule
eta_alpha = eta / alpha^2 lives) and returns the increment of *theory time*: eta for a discrete step
(eta_alpha * alpha^2), dt for a flow, whose ODE is theta' = -(1/alpha^2) grad L. So runs at different alpha
share one time axis (Geiger et al. 2020; Chizat et al. 2019).

Gradients are those of the *mean* per-example loss over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch


@dataclass
class Evaluation:
    """Loss, gradients and outputs at the current parameters on one batch (all detached)."""

    loss: float  # mean loss over the batch
    grads: list[torch.Tensor]  # same shapes as the parameters
    out: torch.Tensor  # (n_batch, ...) network outputs
    per_example: torch.Tensor  # (n_batch,)
    index: torch.Tensor | None = None  # (n_batch,) example indices, None for the full set


Evaluate = Callable[[], Evaluation]


def _sq_norm(ts: list[torch.Tensor]) -> float:
    return float(sum(float(t.detach().double().pow(2).sum()) for t in ts))


class Stepper:
    """Base class. ``full_batch``: whether each step sees the whole training set."""

    full_batch = True
    batch_size: int | None = None

    def init_state(self, params: list[torch.Tensor]) -> dict:
        return {}

    def step(self, params: list[torch.Tensor], cur: Evaluation, evaluate: Evaluate, scale: float,
             state: dict) -> tuple[float, Evaluation | None]:
        """Move ``params`` in place. Returns (theory-time increment, evaluation at the new point or None)."""
        raise NotImplementedError

    def batches(self, n: int, generator: torch.Generator) -> Iterator[torch.Tensor | None]:
        """Example indices of successive steps (``None`` = full batch)."""
        while True:
            yield None


@dataclass
class GD(Stepper):
    """Full-batch gradient descent: theta <- theta - (lr / alpha^2) grad L. Time increment: lr."""

    lr: float

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")

    def step(self, params, cur, evaluate, scale, state):
        with torch.no_grad():
            torch._foreach_add_(params, cur.grads, alpha=-self.lr * scale)
        return self.lr, None


@dataclass
class SGD(Stepper):
    """Minibatch SGD with heavy-ball momentum (PyTorch's convention: v <- mu v + g; theta <- theta - lr v / alpha^2).

    The minibatch order is drawn from the trainer's data generator (seeded by ``data_seed``), never from the
    model's: runs forked at different alpha see the identical sequence of minibatches. Each epoch is a fresh
    random permutation; the last, smaller batch of an epoch is kept. Time increment: lr per step.
    """

    lr: float
    momentum: float = 0.0
    batch_size: int = 128
    full_batch = False

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def init_state(self, params):
        return {"v": [torch.zeros_like(p) for p in params]} if self.momentum else {}

    def batches(self, n, generator):
        while True:
            perm = torch.randperm(n, generator=generator)
            yield from perm.split(self.batch_size)

    def step(self, params, cur, evaluate, scale, state):
        with torch.no_grad():
            direction = cur.grads
            if self.momentum:
                torch._foreach_mul_(state["v"], self.momentum)
                torch._foreach_add_(state["v"], cur.grads)
                direction = state["v"]
            torch._foreach_add_(params, direction, alpha=-self.lr * scale)
        return self.lr, None


@dataclass
class _AdaptiveFlow(Stepper):
    """Explicit integration of a flow with the adaptive time step of Geiger et al. (2020).

    A trial step of length dt is rejected, and dt divided by ``shrink``, when the gradient turns too much,
    ||g1 - g0||^2 / (||g0|| ||g1||) > max_dgrad, or the outputs move too much, max_i |f^a_1(x_i) - f^a_0(x_i)|
    > max_dout, where f^a is the regime's output (for ``AlphaScaled`` this is alpha * max |delta f|).
    After an accepted step dt grows by ``grow`` when dgrad < ``min_dgrad`` (default: max_dgrad / 2) and the
    outputs moved less than max_dout / 2. Geiger et al.'s published window is 1e-4 < dgrad < 1e-2, i.e.
    ``max_dgrad=1e-2, min_dgrad=1e-4``; the defaults here (1e-4, 5e-5) are tighter and slower.
    A non-finite trial is rejected like a too-large one; if dt falls below ``min_dt`` the step is taken anyway
    (and a non-finite loss then stops the run as diverged).
    """

    dt: float = 1e-2  # initial step, in theory time units
    max_dgrad: float = 1e-4
    max_dout: float = 0.1
    min_dgrad: float | None = None  # grow dt only below this (None: max_dgrad / 2)
    grow: float = 1.1
    shrink: float = 10.0
    min_dt: float = 1e-12
    max_dt: float = math.inf

    def __post_init__(self):
        for name in ("dt", "max_dgrad", "max_dout", "min_dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.min_dgrad is not None and not 0 < self.min_dgrad <= self.max_dgrad:
            raise ValueError(f"min_dgrad must be in (0, max_dgrad], got {self.min_dgrad}")
        if not (self.grow >= 1 and self.shrink > 1):
            raise ValueError("grow must be >= 1 and shrink > 1")

    def init_state(self, params):
        return {"dt": float(self.dt), "rejected": 0, "accepted": 0, **self._init_extra(params)}

    def _init_extra(self, params) -> dict:
        return {}

    def _propose(self, params, g, scale, dt, state) -> None:
        """Apply a trial step of length dt in place (params and any state tensors)."""
        raise NotImplementedError

    def step(self, params, cur, evaluate, scale, state):
        dt = min(state["dt"], self.max_dt)
        g0_norm = math.sqrt(_sq_norm(cur.grads))
        saved = [p.detach().clone() for p in params]  # exact restore on rejection (bit-reproducible)
        saved_v = [v.clone() for v in state.get("v", [])]
        while True:
            self._propose(params, cur.grads, scale, dt, state)
            new = evaluate()
            ok = math.isfinite(new.loss)
            if ok:
                diff = _sq_norm([a - b for a, b in zip(new.grads, cur.grads)])
                denom = g0_norm * math.sqrt(_sq_norm(new.grads))
                dgrad = diff / denom if denom > 0 else 0.0
                dout = float((new.out - cur.out).abs().max()) if new.out.numel() else 0.0
                ok = dgrad <= self.max_dgrad and dout <= self.max_dout
            if ok or dt / self.shrink < self.min_dt:
                state["accepted"] += 1
                low = self.max_dgrad / 2 if self.min_dgrad is None else self.min_dgrad
                calm = ok and dgrad < low and dout < self.max_dout / 2
                state["dt"] = dt * self.grow if calm else dt
                return dt, new
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
                for v, s in zip(state.get("v", []), saved_v):
                    v.copy_(s)
            state["rejected"] += 1
            dt /= self.shrink


@dataclass
class GradientFlow(_AdaptiveFlow):
    """Gradient flow theta' = -(1/alpha^2) grad L, explicit Euler with the adaptive step (Geiger et al. 2020)."""

    def _propose(self, params, g, scale, dt, state):
        with torch.no_grad():
            torch._foreach_add_(params, g, alpha=-dt * scale)


@dataclass
class MomentumFlow(_AdaptiveFlow):
    """Momentum dynamics tau v' = -(v + grad L / alpha^2), theta' = v (Geiger et al. 2020), adaptive step.

    Each step integrates the ODE exactly with the gradient g held at its value at the start of the step:
    with a = exp(-dt/tau), v <- a v - (1 - a) g and theta <- theta + tau (1 - a) v_0 - (dt - tau (1 - a)) g.
    """

    tau: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    def _init_extra(self, params):
        return {"v": [torch.zeros_like(p) for p in params]}

    def _propose(self, params, g, scale, dt, state):
        a = math.exp(-dt / self.tau)
        c_v = self.tau * (1 - a)  # weight of v_0 in the position update
        with torch.no_grad():
            torch._foreach_add_(params, state["v"], alpha=c_v)
            torch._foreach_add_(params, g, alpha=-(dt - c_v) * scale)
            torch._foreach_mul_(state["v"], a)
            torch._foreach_add_(state["v"], g, alpha=-(1 - a) * scale)


STEPPERS = {"gd": GD, "sgd": SGD, "gradient_flow": GradientFlow, "momentum_flow": MomentumFlow}

__all__ = ["Evaluation", "Stepper", "GD", "SGD", "GradientFlow", "MomentumFlow", "STEPPERS"]
