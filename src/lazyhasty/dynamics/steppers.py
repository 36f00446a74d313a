"""Steppers: how the parameters of every member move given their gradients. The engine owns the loop.

Units. The engine hands each stepper the gradients of L_k / alpha_k^2 for member k (the one place where the rule
eta_alpha = eta / alpha^2 lives, :func:`lazyhasty.train`), so a step of rate eta moves member k by
eta / alpha_k^2 along grad L_k, and a flow integrates theta' = -(1/alpha^2) grad L. A stepper returns the
increment of *theory time*: eta for a discrete step, dt for a flow, so runs at different alpha share one time
axis (Chizat et al. 2019; Geiger et al. 2020, slide "training procedure": the alpha^2 in their loss "is here to
converge in a time that does not scale with alpha").

Geiger et al. (arXiv:1906.08034) are cited by the slide of the seed text that states a formula (the seed has no
equation numbers).

Parameters are stacked: every tensor has a leading member axis (E, *shape); a single model is an ensemble of one.
A stopped member has zero gradients and zero stepper state (the engine zeroes them), so no stepper moves it.
Gradients are those of the *mean* per-example loss over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Evaluation:
    """Loss, gradients and outputs of every member at its current parameters on one batch (all detached)."""

    loss: torch.Tensor  # (E,) mean loss over the batch
    grads: list[torch.Tensor]  # (E, *shape) each: the gradient of L_k / alpha_k^2
    out: torch.Tensor  # (E, n_batch, ...) outputs
    per_example: torch.Tensor  # (E, n_batch)
    live: torch.Tensor  # (E,) bool: members still training (the others have zero gradients and outputs)
    index: torch.Tensor | None = None  # (n_batch,) example indices, None for the full set
    proposal: list[torch.Tensor] | None = None  # (E, *shape) each: the parameters after the stepper's step from
    # here, computed with the gradients (``train(compile=True)``, :meth:`Stepper.proposal`); a stopped member's row
    # holds its current parameters


Evaluate = Callable[[], Evaluation]


def per_member(values, like: torch.Tensor) -> torch.Tensor:
    """(E,) numbers (or booleans) as a tensor shaped (E, 1, ..., 1) to broadcast against ``like`` (E, ...)."""
    t = torch.as_tensor(values, device=like.device)
    return (t if t.dtype == torch.bool else t.to(like.dtype)).view(-1, *([1] * (like.ndim - 1)))


def _norms(*lists: list[torch.Tensor]) -> torch.Tensor:
    """(len(lists), E) float64: each member's Euclidean norm over all of its numbers in each list of stacked (E, ...)
    tensors, accumulated in float64 tensor by tensor (no (E, P) copy of the parameters is made)."""
    return torch.stack([sum(torch.linalg.vector_norm(t.detach(), dim=tuple(range(1, t.dim())), dtype=torch.float64)
                            .square() for t in ts).sqrt() for ts in lists])


def _axpy(ys: list[torch.Tensor], xs: list[torch.Tensor], a) -> None:
    """y += a_k x_k in place for every member k; ``a``: (E,) numbers (one member: plain foreach arithmetic)."""
    if np.size(a) == 1:
        torch._foreach_add_(ys, xs, alpha=float(np.asarray(a).reshape(-1)[0]))
        return
    for y, x in zip(ys, xs):
        y.add_(x * per_member(a, x))


class Stepper:
    """Base class. ``full_batch``: whether each step sees the whole training set."""

    full_batch = True

    def init_state(self, params: list[torch.Tensor]) -> dict:
        """Per-member state: tensors (E, ...) in lists, numbers as (E,) numpy arrays."""
        return {}

    def proposal(self, P: dict[str, torch.Tensor], G: dict[str, torch.Tensor],
                 live: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The parameters after a step from stacked parameters ``P`` with gradients ``G`` ({name: (E, *shape)}),
        as a pure function that ``train(compile=True)`` fuses into its compiled gradient computation (members with
        ``live`` (E,) False stay where they are), or None for a stepper that needs more than one evaluation."""
        return None

    def step(self, params: list[torch.Tensor], cur: Evaluation, evaluate: Evaluate,
             state: dict) -> tuple[float | np.ndarray, Evaluation | None]:
        """Move ``params`` in place. Returns (theory-time increment, a number or one per member with 0 for a member
        whose trial step was rejected and that stayed where it was; the evaluation at the new point or None)."""
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
        if not 0 < self.lr < math.inf:
            raise ValueError(f"learning rate must be a finite number > 0, got {self.lr}")
        # a tensor, not a number, in the compiled step: a graph input, so another rate reuses the compiled code
        self._rate = torch.tensor(float(self.lr), dtype=torch.float64)

    def proposal(self, P, G, live):
        return {k: torch.where(live.view(-1, *[1] * (p.ndim - 1)), p - self._rate * G[k], p) for k, p in P.items()}

    def step(self, params, cur, evaluate, state):
        with torch.no_grad():
            if cur.proposal is None:
                torch._foreach_add_(params, cur.grads, alpha=-self.lr)
            else:  # computed with the gradients: the parameters take its storage, it takes theirs (a scratch)
                for p, q in zip(params, cur.proposal):
                    p.data, q.data = q.data, p.data
        return self.lr, None


@dataclass
class SGD(Stepper):
    """Minibatch SGD with heavy-ball momentum (PyTorch's convention: v <- mu v + g; theta <- theta - lr v, with
    g the gradient of L / alpha^2).

    The minibatch order is drawn from the trainer's data generator (seeded by ``data_seed``), never from the
    model's: runs forked at different alpha see the identical sequence of minibatches. Each epoch is a fresh
    random permutation; the last, smaller batch of an epoch is kept. Time increment: lr per step.
    """

    lr: float
    momentum: float = 0.0
    batch_size: int = 128
    full_batch = False

    def __post_init__(self):
        if not 0 < self.lr < math.inf:
            raise ValueError(f"learning rate must be a finite number > 0, got {self.lr}")
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

    def step(self, params, cur, evaluate, state):
        with torch.no_grad():
            direction = cur.grads
            if self.momentum:
                torch._foreach_mul_(state["v"], self.momentum)
                torch._foreach_add_(state["v"], cur.grads)
                direction = state["v"]
            torch._foreach_add_(params, direction, alpha=-self.lr)
        return self.lr, None


@dataclass
class _AdaptiveFlow(Stepper):
    """Explicit integration of a flow with the adaptive time step of Geiger et al. (2020, slide "continuous
    dynamics": 1e-4 < ||grad L(t_i+1) - grad L(t_i)||^2 / (||grad L(t_i+1)|| ||grad L(t_i)||) < 1e-2), decided for
    each member on its own.

    Each call makes one trial step of length dt_k for every member k. Member k's trial is rejected (its
    parameters restored, dt_k divided by ``shrink``) when its gradient turns too much,
    ||g1 - g0||^2 / (||g0|| ||g1||) > max_dgrad, or its outputs move too much, max_i |f^a_1(x_i) - f^a_0(x_i)|
    > max_dout, where f^a is the regime's output (for ``AlphaScaled`` this is alpha * max |delta f|).
    After an accepted step dt_k grows by ``grow`` when dgrad < ``min_dgrad`` (default: max_dgrad / 2) and the
    outputs moved less than max_dout / 2. Geiger et al.'s published window is 1e-4 < dgrad < 1e-2, i.e.
    ``max_dgrad=1e-2, min_dgrad=1e-4``; the defaults here (1e-4, 5e-5) are tighter and slower.
    A non-finite trial is rejected like a too-large one; if dt falls below ``min_dt`` the step is taken anyway
    (and a non-finite loss then stops the run as diverged).

    Ensembles: a member's accept / reject decisions and its dt depend on that member alone, so member k of an
    ensemble takes exactly the steps of the single run with the same theta0 (to round-off; only a criterion
    that lands within round-off of its threshold can decide differently). Members keep their own step counts
    and times.
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
            v, finite = getattr(self, name), name in ("dt", "min_dt")  # an infinite dt is rejected for ever
            if not (0 < v < math.inf or (v == math.inf and not finite)):
                raise ValueError(f"{name} must be {'a finite number ' * finite}> 0, got {v}")
        if self.min_dgrad is not None and not 0 < self.min_dgrad <= self.max_dgrad:
            raise ValueError(f"min_dgrad must be in (0, max_dgrad], got {self.min_dgrad}")
        if not (1 <= self.grow < math.inf and 1 < self.shrink < math.inf):
            raise ValueError(f"grow must be in [1, inf) and shrink in (1, inf), got {self.grow} and {self.shrink}")

    def init_state(self, params):
        E = params[0].shape[0]
        return {"dt": np.full(E, float(self.dt)), "rejected": np.zeros(E, dtype=np.int64),
                "accepted": np.zeros(E, dtype=np.int64), **self._init_extra(params)}

    def _init_extra(self, params) -> dict:
        return {}

    def _propose(self, params, g, dt: np.ndarray, state) -> None:
        """Apply a trial step of length dt[k] to every member k in place (params and any state tensors)."""
        raise NotImplementedError

    def step(self, params, cur, evaluate, state):
        dt = np.minimum(state["dt"], self.max_dt)
        saved = [p.detach().clone() for p in params]  # exact restore on rejection (bit-reproducible)
        saved_v = [v.clone() for v in state.get("v", [])]
        self._propose(params, cur.grads, dt, state)
        new = evaluate()
        norms = _norms(cur.grads, new.grads, torch._foreach_sub(new.grads, cur.grads))  # (3, E): g0, g1, g1 - g0
        dout = (new.out - cur.out).flatten(1).abs().amax(1) if new.out[0].numel() else torch.zeros_like(new.loss)
        checks = torch.cat([norms, torch.stack([dout.double(), torch.isfinite(new.loss).double(),
                                                cur.live.double()])]).cpu().numpy()  # one host sync per trial
        g0, g1, d, dout, finite, live = checks
        with np.errstate(invalid="ignore", divide="ignore"):
            dgrad = np.where(g0 * g1 > 0, d**2 / (g0 * g1), 0.0)
        ok = (finite > 0) & (dgrad <= self.max_dgrad) & (dout <= self.max_dout)
        accept = ok | (dt / self.shrink < self.min_dt) | (live == 0)  # stopped members do not move anyway
        low = self.max_dgrad / 2 if self.min_dgrad is None else self.min_dgrad
        calm = ok & (dgrad < low) & (dout < self.max_dout / 2)
        grown = np.where(accept, np.where(calm, dt * self.grow, dt), dt / self.shrink)
        state["dt"] = np.where(live > 0, grown, state["dt"])
        state["accepted"] += accept & (live > 0)
        state["rejected"] += ~accept
        if not accept.any():  # every member stays where it was
            with torch.no_grad():
                torch._foreach_copy_([*params, *state.get("v", [])], [*saved, *saved_v])
            new = cur
        elif not accept.all():
            keep = torch.as_tensor(accept, device=new.loss.device)
            with torch.no_grad():
                for p, s in zip([*params, *state.get("v", [])], [*saved, *saved_v]):
                    p.copy_(torch.where(per_member(keep, p), p, s))
            new = _merge(new, cur, keep)
        return np.where(accept, dt, 0.0), new


def _merge(new: Evaluation, cur: Evaluation, keep: torch.Tensor) -> Evaluation:
    """Row k from ``new`` where keep[k], else from ``cur``."""
    def pick(a, b):
        return torch.where(per_member(keep, a), a, b)

    return Evaluation(pick(new.loss, cur.loss), [pick(a, b) for a, b in zip(new.grads, cur.grads)],
                      pick(new.out, cur.out), pick(new.per_example, cur.per_example), cur.live, cur.index)


@dataclass
class GradientFlow(_AdaptiveFlow):
    """Gradient flow theta' = -(1/alpha^2) grad L (Geiger et al. 2020, slide "continuous dynamics": w' = -grad L
    with their L = alpha^-2 mean l), explicit Euler with the adaptive step."""

    def _propose(self, params, g, dt, state):
        with torch.no_grad():
            _axpy(params, g, -dt)


@dataclass
class MomentumFlow(_AdaptiveFlow):
    """Momentum dynamics tau v' = -(v + grad L / alpha^2), theta' = v (Geiger et al. 2020, slide "momentum
    dynamics": v' = -(v + grad L) / tau, w' = v), with the adaptive step.

    Each step integrates the ODE exactly with the gradient g held at its value at the start of the step:
    with a = exp(-dt/tau), v <- a v - (1 - a) g and theta <- theta + tau (1 - a) v_0 - (dt - tau (1 - a)) g.
    """

    tau: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.tau < math.inf:
            raise ValueError(f"tau must be a finite number > 0, got {self.tau}")

    def _init_extra(self, params):
        return {"v": [torch.zeros_like(p) for p in params]}

    def _propose(self, params, g, dt, state):
        a = np.exp(-dt / self.tau)
        c_v = self.tau * (1 - a)  # weight of v_0 in the position update
        with torch.no_grad():
            _axpy(params, state["v"], c_v)
            _axpy(params, g, -(dt - c_v))
            if np.size(a) == 1:
                torch._foreach_mul_(state["v"], float(a[0]))
            else:
                for v in state["v"]:
                    v.mul_(per_member(a, v))
            _axpy(state["v"], g, -(1 - a))


STEPPERS = {"gd": GD, "sgd": SGD, "gradient_flow": GradientFlow, "momentum_flow": MomentumFlow}

__all__ = ["Evaluation", "Stepper", "GD", "SGD", "GradientFlow", "MomentumFlow", "STEPPERS"]
