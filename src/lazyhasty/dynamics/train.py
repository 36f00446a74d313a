"""The training loop: one function, ``train``, for every regime and stepper.

The learning-rate rule eta_alpha = eta / alpha^2 lives here and only here: the trainer reads alpha from the
regime wrapper (:func:`regime_alpha`) and hands ``scale = 1/alpha^2`` to the stepper. Time is measured in
theory units (t = sum of eta for discrete steps, sum of dt for flows), so runs at different alpha share an axis.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.groups import Split
from ..models.regimes import initial_params, regime_alpha
from ..runs.records import RunRecord, metrics_frame
from .losses import Loss, get_loss
from .probes import DEFAULT_PROBES, Probe, ProbeContext, Schedule
from .steppers import Evaluation, Stepper


@dataclass(frozen=True)
class Stop:
    """When to stop. At least one budget (``max_steps`` or ``max_time``) is required.

    Args:
        max_steps: number of parameter updates.
        max_time: theory time t (see module docstring).
        loss_below: stop once the (smoothed, see :class:`Schedule`) mean training loss is below this.
        min_margin: stop once every training margin is >= this (1 for "all margins >= 1"). Full-batch steppers
            check it every step, minibatch ones at measurement points (on the full training set).
    A run whose loss or parameters become NaN/inf stops with status ``diverged`` (never an exception).
    """

    max_steps: int | None = None
    max_time: float | None = None
    loss_below: float | None = None
    min_margin: float | None = None

    def __post_init__(self):
        if self.max_steps is None and self.max_time is None:
            raise ValueError("Stop needs a budget: set max_steps or max_time (or both)")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.max_time is not None and not self.max_time >= 0:
            raise ValueError(f"max_time must be >= 0, got {self.max_time}")

    @property
    def has_target(self) -> bool:
        return self.loss_below is not None or self.min_margin is not None


@dataclass
class TrainResult:
    """What ``train`` returns. ``metrics`` is the long table, ``trace`` the per-step objective."""

    status: str  # complete | diverged | failed
    reason: str
    converged: bool | None  # a target (loss_below / min_margin) was met; None when no target was set
    steps: int
    t: float
    metrics: pd.DataFrame
    trace: pd.DataFrame
    wall_s: float
    probe_s: float
    stepper_state: dict


def fork(model: nn.Module) -> nn.Module:
    """An independent, bit-identical copy of ``model`` (same theta0) for a run in another regime."""
    return copy.deepcopy(model)


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model from ``factory`` with torch's RNG seeded by ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _all_finite(params: Sequence[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


def train(
    model: nn.Module,
    train_set: Split,
    *,
    loss: Loss | str,
    stepper: Stepper,
    stop: Stop,
    splits: dict[str, Split] | None = None,
    probes: Sequence[Probe] = DEFAULT_PROBES,
    schedule: Schedule | None = None,
    data_seed: int = 0,
    run_id: str = "run",
    record: RunRecord | None = None,
    progress: bool | None = None,
    flush_every_s: float = 5.0,
    on_step: Callable[[int, float, Evaluation], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_set`` and measure it.

    Args:
        model: any module, usually a regime wrapper (``AlphaScaled``, ``Linearized``); its alpha sets the
            learning-rate scale 1/alpha^2.
        train_set: the training examples; also probed as split ``"train"``.
        loss: a :class:`Loss` or its name; must return per-example losses.
        stepper: ``GD``, ``SGD``, ``GradientFlow`` or ``MomentumFlow``.
        stop: budgets and targets.
        splits: extra probe sets by name (e.g. ``{"test": ...}``), each with its groups.
        probes: callables run at every measurement point (see :mod:`lazyhasty.dynamics.probes`).
        schedule: log-spaced measurement steps and equal-progress milestones.
        data_seed: seeds the minibatch order, independently of the model: forked runs see the same batches.
        run_id: the ``run_id`` column of the tables.
        record: if given, metrics and trace are flushed to it every ``flush_every_s`` seconds and at the end,
            and its status is set (also when the run fails or is interrupted: nothing measured is lost).
        progress: show a progress bar (default: only on a terminal).
        on_step: called as ``on_step(step, t, evaluation)`` before each update (used by tests and tools).

    Returns:
        A :class:`TrainResult`; the model holds the final parameters.
    """
    loss = get_loss(loss)
    schedule = schedule or Schedule()
    splits = {"train": train_set, **(splits or {})}
    alpha = regime_alpha(model)
    scale = 1.0 / alpha**2
    params = [p for p in model.parameters() if p.requires_grad]
    params0 = initial_params(model)
    n = len(train_set)
    gen = torch.Generator().manual_seed(int(data_seed))
    batches = stepper.batches(n, gen)
    state = stepper.init_state(params)
    smooth = schedule.smoothing if schedule.smoothing is not None else (0.0 if stepper.full_batch else 0.9)

    def evaluate(index: torch.Tensor | None = None) -> Evaluation:
        x, y = (train_set.x, train_set.y) if index is None else (train_set.x[index], train_set.y[index])
        out = model(x)
        per = loss(out, y)
        mean = per.mean()
        grads = torch.autograd.grad(mean, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        return Evaluation(float(mean.detach()), grads, out.detach(), per.detach(), index)

    rows: list[tuple] = []
    trace: list[tuple] = []
    probe_s = 0.0

    def measure(step: int, t: float, milestone: int | None) -> ProbeContext:
        nonlocal probe_s
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        ctx = ProbeContext(model, splits, loss, step, t, params0, milestone, run_id)
        try:
            for probe in probes:
                for split, group, metric, value in probe(ctx):
                    rows.append((run_id, step, t, milestone, split, group, metric, float(value)))
        finally:
            model.train(was_training)
        probe_s += time.perf_counter() - t0
        return ctx

    def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
        return metrics_frame(rows), pd.DataFrame(trace, columns=["step", "t", "loss", "dt"])

    def flush() -> None:
        if record is not None:
            m, tr = tables()
            record.write_metrics(m)
            record.write_trace(tr)

    with torch.no_grad():
        loss0 = float(torch.cat([loss(model(xb), yb) for xb, yb in
                                 zip(train_set.x.split(4096), train_set.y.split(4096))]).double().mean())
    milestones = schedule.milestones(loss0)

    wall0 = last_flush = time.perf_counter()
    step, t, dt, smoothed = 0, 0.0, 0.0, loss0
    cur: Evaluation | None = None
    status, reason, converged = "complete", "", None
    bar = tqdm(total=stop.max_steps, desc=run_id, disable=(None if progress is None else not progress),
               leave=False, mininterval=0.5, unit="step")
    try:
        while True:
            if cur is None:
                cur = evaluate(next(batches))
            trace.append((step, t, cur.loss, dt))
            if on_step is not None:
                on_step(step, t, cur)
            if not math.isfinite(cur.loss):
                status, reason = "diverged", f"non-finite training loss at step {step} (t = {t:.4g})"
                measure(step, t, None)
                break
            smoothed = cur.loss if smooth == 0 else smooth * smoothed + (1 - smooth) * cur.loss
            k = milestones.update(smoothed) if milestones is not None else None
            ctx = measure(step, t, k) if (k is not None or schedule.log_step(step)) else None
            if ctx is not None and not _all_finite(params):
                status, reason = "diverged", f"non-finite parameters at step {step} (t = {t:.4g})"
                break
            if stop.loss_below is not None and smoothed < stop.loss_below:
                reason, converged = f"training loss {smoothed:.4g} < {stop.loss_below:g}", True
            elif stop.min_margin is not None and (stepper.full_batch or ctx is not None):
                out = cur.out if stepper.full_batch else ctx.outputs("train")
                if float(loss.margin(out, train_set.y).min()) >= stop.min_margin:
                    reason, converged = f"every training margin >= {stop.min_margin:g}", True
            if not reason and stop.max_steps is not None and step >= stop.max_steps:
                reason = f"reached max_steps = {stop.max_steps}"
            if not reason and stop.max_time is not None and t >= stop.max_time:
                reason = f"reached max_time = {stop.max_time:g}"
            if reason:
                if converged is None and stop.has_target:
                    converged = False
                if ctx is None:
                    measure(step, t, None)
                break
            dt, cur = stepper.step(params, cur, evaluate, scale, state)
            step += 1
            t += dt
            bar.update(1)
            if ctx is not None:
                bar.set_postfix(loss=f"{smoothed:.4g}", t=f"{t:.3g}", refresh=False)
            if record is not None and time.perf_counter() - last_flush > flush_every_s:
                flush()
                last_flush = time.perf_counter()
    except BaseException as e:
        bar.close()
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        if record is not None:
            flush()
            record.set_status("failed", f"{why} (at step {step}, t = {t:.4g})", steps=step, t=t)
        raise
    bar.close()
    wall = time.perf_counter() - wall0
    metrics, tr = tables()
    summary = {k: v for k, v in state.items() if isinstance(v, (int, float))}
    if record is not None:
        flush()
        record.set_status(status, reason, converged=converged, steps=step, t=t, wall_s=round(wall, 3),
                          probe_s=round(probe_s, 3), alpha=alpha, loss0=loss0, **summary)
    return TrainResult(status, reason, converged, step, t, metrics, tr, wall, probe_s, summary)
