"""The kernel regime in function space: gradient descent on the outputs with the tangent kernel at initialisation.

A linearised model f(x) = f0(x) + J0(x)(theta - theta0) trained by gradient descent, theta <- theta - eta
J0(X)^T g with g = dL/df(X) (L the mean loss over the n training examples), moves its outputs on any input by

    f(x) <- f(x) - eta Theta0(x, X) g,        Theta0(x, X) = J0(x) J0(X)^T  (the empirical NTK at theta0),

so the whole trajectory needs only Theta0 on (train, train) and (split, train): P parameters never appear, which
pays whenever P >> n. With ``kernel=`` any other kernel (e.g. :func:`lazyhasty.theory.infinite_ntk`) gives that
kernel's prediction. For ``AlphaScaled(model, alpha)`` the kernel is alpha^2 Theta0 and the step eta / alpha^2,
as in :func:`lazyhasty.train`; the prediction does not depend on alpha.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..data.groups import Split
from ..errors import stopped_by
from ..metrics.ntk import ntk_gram
from ..models.regimes import frozen_stats, regime_alpha
from .losses import Loss, check_data, get_loss
from .probes import Probe, ProbeContext, Schedule, loss_probe
from .train import RecordSink, TrainResult, tables


def _full(K: torch.Tensor, n1: int, n2: int, C: int) -> torch.Tensor:
    """A kernel as (n1, C, n2, C): given so, or (n1, n2) for a kernel shared by independent outputs."""
    if K.shape == (n1, n2):
        return torch.einsum("ij,cd->icjd", K, torch.eye(C, dtype=K.dtype, device=K.device))
    if K.shape == (n1, C, n2, C):
        return K
    raise ValueError(f"kernel returned shape {tuple(K.shape)}; expected ({n1}, {n2}) or ({n1}, {C}, {n2}, {C})")


def kernel_regime(model: nn.Module, train_set: Split, *, loss: Loss | str, lr: float, steps: int,
                  splits: dict[str, Split] | None = None,
                  kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  probes: Sequence[Probe] = (loss_probe,), schedule: Schedule | None = None,
                  run_id: str | None = None, record: RecordSink | None = None) -> TrainResult:
    """Gradient descent in function space, f <- f - (lr / alpha^2) Theta0 df(mean loss), for ``steps`` steps.

    Args:
        model: the network at theta0 (a plain module or a regime wrapper): its outputs at theta0 start the
            trajectory, and its empirical NTK is the kernel unless ``kernel`` is given.
        train_set: the n training examples; also probed as split ``"train"``.
        loss: any loss of the package (not only MSE).
        lr: eta, as for ``GD(lr)``; theory time t = steps * lr.
        kernel: ``kernel(x1, x2)`` -> (n1, n2) (the same kernel for every output) or (n1, C, n2, C): the kernel of
            the network inside the regime wrapper, without its alpha (e.g. ``infinite_ntk``, or ``ntk_gram`` of the
            unwrapped network). The update uses the wrapper's kernel, alpha^2 times it, with the rate lr / alpha^2,
            so alpha cancels, exactly as with the default, ``ntk_gram(model, x1, x2, outputs="full")`` (the
            wrapper's kernel).
        probes, schedule, run_id, record: as for :func:`lazyhasty.train` (probes see ``ctx.outputs(split)``;
            there are no parameters to probe).

    Returns:
        A :class:`TrainResult`, its tables like ``train``'s, so that ``train(Linearized(model), ..., GD(lr))``
        and this give the same numbers (tested to 1e-8 in float64).
    """
    if not (math.isfinite(lr) and lr > 0) or int(steps) != steps or steps < 0:
        raise ValueError(f"lr must be a finite number > 0 and steps an integer >= 0, got lr={lr}, steps={steps}")
    loss = get_loss(loss)
    schedule = schedule or Schedule()
    splits = {"train": train_set, **(splits or {})}
    run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
    alpha2 = regime_alpha(model) ** 2
    eta = lr / alpha2
    gram = (lambda x1, x2: ntk_gram(model, x1, x2, outputs="full")) if kernel is None else \
        (lambda x1, x2: alpha2 * kernel(x1, x2))  # the wrapper's kernel
    rows, trace, t0 = [], [], time.perf_counter()
    status, reason, step = "complete", f"reached steps = {steps}", 0
    try:
        with torch.no_grad(), frozen_stats(model):  # batch norm on its running statistics, as in ntk_gram
            f = {name: model(s.x) for name, s in splits.items()}  # (m, ...) outputs at theta0
        shape = {name: out.shape for name, out in f.items()}
        for name, split in splits.items():
            check_data(loss, tuple(shape["train"][1:]), split, name)
        C = f["train"][0].numel()
        n = len(train_set)
        u = {name: out.reshape(out.shape[0], C).clone() for name, out in f.items()}  # (m, C)
        K = {name: _full(gram(s.x, train_set.x).detach(), len(s), n, C).to(u["train"].dtype)
             for name, s in splits.items()}  # (m, C, n, C)
        milestones = None
        for step in range(int(steps) + 1):
            out = u["train"].detach().requires_grad_(True)
            mean = loss(out.reshape(shape["train"]), train_set.y).mean()
            (g,) = torch.autograd.grad(mean, out)  # (n, C): dL/df on the training examples
            value = float(mean.detach())
            trace.append((step, step * lr, value, 0.0 if step == 0 else lr))
            if step == 0:
                milestones = schedule.milestones(value)
            if not math.isfinite(value):
                status, reason = "diverged", f"non-finite training loss at step {step}"
            m = milestones.update(value) if milestones is not None and step > 0 else None
            if m is not None or schedule.log_step(step) or step == steps or status == "diverged":
                ctx = ProbeContext(model, splits, loss, step, step * lr, {}, m, run_id,
                                   source=lambda name: u[name].reshape(shape[name]))
                for probe in probes:
                    rows += [(run_id, step, step * lr, m, *r[:3], float(r[3])) for r in probe(ctx)]
            if status == "diverged" or step == steps:
                break
            with torch.no_grad():
                for name in u:
                    u[name] -= eta * torch.einsum("icjd,jd->ic", K[name], g)
    except BaseException as e:
        if record is not None:
            record.write(*tables(rows, trace))
            record.set_status(*stopped_by(e), steps=step, t=step * lr)
        raise
    wall = time.perf_counter() - t0
    metrics, trace_df = tables(rows, trace)
    if record is not None:
        record.write(metrics, trace_df)
        record.set_status(status, reason, steps=step, t=step * lr, wall_s=round(wall, 3), alpha=regime_alpha(model),
                          regime="kernel")
    return TrainResult(status, reason, None, step, step * lr, metrics, trace_df, wall, 0.0, {})

