"""Vectorised ensembles: E independent copies of one architecture trained as one computation.

``Ensemble(factory, seeds, alphas)`` stacks the parameters of ``seeded(factory, seed)`` for each seed
(``torch.func.stack_module_state``) and evaluates every member at once with ``vmap`` over
``functional_call``: member k is exactly ``AlphaScaled(seeded(factory, seeds[k]), alphas[k], center)``.
``train_ensemble`` runs the steppers, losses, stopping rules and probes of :func:`lazyhasty.train` per member:
each member has its own milestones, stopping decision and status; a member that stops (target reached,
budget, divergence) is frozen while the others continue, and its records are one run like any other.

Equivalence: with GD or SGD, member k follows the single run ``train(AlphaScaled(seeded(factory, seeds[k]),
alphas[k]), ...)`` to round-off (checked to 1e-10 in float64 over hundreds of steps in the tests). Adaptive flows
share one time step across members (a trial is rejected if any active member violates the criteria), so their
trajectories are equally accurate integrations but not step-for-step identical to single runs.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from ..data.groups import Split
from ..models.regimes import AlphaScaled, _InputCache
from ..runs.records import RunRecord, metrics_frame
from .losses import Loss, get_loss
from .probes import DEFAULT_PROBES, Probe, ProbeContext, Schedule
from .steppers import Evaluation, Stepper
from .train import Stop, TrainResult, seeded


class Ensemble(nn.Module):
    """E members ``AlphaScaled(seeded(factory, seeds[k]), alphas[k], center)`` evaluated together.

    Args:
        factory: builds the architecture (called once per seed under ``seeded``).
        seeds: one seed per member (repeat a seed to fork one initialisation into several alphas).
        alphas: a number or one alpha per member.
        center: ``"keep"`` or ``"zero"`` as in :class:`AlphaScaled`.
    Shapes: ``forward(x)`` maps x (n, ...) to (E, n, C).
    """

    def __init__(self, factory: Callable[[], nn.Module], seeds: Sequence[int], alphas: float | Sequence[float] = 1.0,
                 center: str = "keep"):
        super().__init__()
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("an ensemble needs at least one seed")
        E = len(seeds)
        alphas = [float(alphas)] * E if np.isscalar(alphas) else [float(a) for a in alphas]
        if len(alphas) != E:
            raise ValueError(f"{len(alphas)} alphas for {E} members")
        for a in alphas:
            if not (a > 0 and math.isfinite(a)):
                raise ValueError(f"every alpha must be a finite number > 0, got {a!r}")
        if center not in ("keep", "zero"):
            raise ValueError(f"center must be 'keep' or 'zero', got {center!r}")
        members = [seeded(factory, s) for s in seeds]
        params, buffers = stack_module_state(members)
        self.base = copy.deepcopy(members[0])
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in self.names])
        for i, k in enumerate(self.names):
            self.register_buffer(f"theta0_{i}", params[k].detach().clone())
        for i, k in enumerate(self.buffer_names):
            self.register_buffer(f"buffer_{i}", buffers[k].detach().clone())
        ref = next(iter(params.values()))
        self.register_buffer("alphas", torch.tensor(alphas, dtype=ref.dtype, device=ref.device))
        self.seeds, self.center, self.E = seeds, center, E
        self._cache = _InputCache(4)

    def params0(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, f"theta0_{i}") for i, k in enumerate(self.names)}

    def member_params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stacked))

    def stacked_buffers(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, f"buffer_{i}") for i, k in enumerate(self.buffer_names)}

    def raw(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """f_theta_k(x) for every member, (E, n, C)."""
        def one(p, b):
            return functional_call(self.base, (p, b), (x,))

        return vmap(one)(params, self.stacked_buffers())

    def f0(self, x: torch.Tensor) -> torch.Tensor:
        cacheable = _InputCache.cacheable((x,), {})
        if cacheable:
            hit = self._cache.get((x,), {}, self.training)
            if hit is not None:
                return hit
        with torch.no_grad():
            out = self.raw(self.params0(), x)
        if cacheable:
            self._cache.put((x,), {}, self.training, out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.raw(self.member_params(), x)  # (E, n, C)
        f0 = self.f0(x)
        a = self.alphas.view(-1, *([1] * (f.ndim - 1)))
        return (f0 if self.center == "keep" else 0.0) + a * (f - f0)

    def _apply(self, fn, *a, **k):
        self._cache.clear()
        return super()._apply(fn, *a, **k)

    def member(self, k: int) -> AlphaScaled:
        """Member k as an independent ``AlphaScaled`` module (a copy, with theta0 and current theta)."""
        net = copy.deepcopy(self.base)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(self.params0()[name][k])
        wrapped = AlphaScaled(net, float(self.alphas[k]), center=self.center)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(self.member_params()[name][k])
        return wrapped


def train_ensemble(
    ensemble: Ensemble,
    train_set: Split,
    *,
    loss: Loss | str,
    stepper: Stepper,
    stop: Stop,
    splits: dict[str, Split] | None = None,
    probes: Sequence[Probe] = DEFAULT_PROBES,
    schedule: Schedule | None = None,
    data_seed: int = 0,
    run_ids: Sequence[str] | None = None,
    records: Sequence[RunRecord] | None = None,
    progress: bool | None = None,
    flush_every_s: float = 5.0,
    weights: torch.Tensor | None = None,
) -> list[TrainResult]:
    """Train every member of ``ensemble`` at once; returns one :class:`TrainResult` per member.

    Arguments as in :func:`lazyhasty.train`, with ``run_ids`` and ``records`` given per member. Probes see each
    member as an ``AlphaScaled`` module (``ctx.model``) with its outputs precomputed in one vectorised pass.
    ``weights`` (E, n) gives each member its own example weights (0/1: its own training subset, as in C-score
    estimation); a member's loss is then sum_i w_i l_i / sum_i w_i over the batch.
    """
    loss = get_loss(loss)
    schedule = schedule or Schedule()
    splits = {"train": train_set, **(splits or {})}
    E = ensemble.E
    run_ids = list(run_ids) if run_ids is not None else [f"member{k}" for k in range(E)]
    if len(run_ids) != E or (records is not None and len(records) != E):
        raise ValueError(f"need one run id (and record) per member: {E}")
    params = list(ensemble.stacked)
    scale = (1.0 / ensemble.alphas**2)  # (E,)
    state = stepper.init_state(params)
    gen = torch.Generator().manual_seed(int(data_seed))
    batches = stepper.batches(len(train_set), gen)
    smooth = schedule.smoothing if schedule.smoothing is not None else (0.0 if stepper.full_batch else 0.9)
    active = torch.ones(E, dtype=torch.bool)
    finite = torch.ones(E, dtype=torch.bool)

    def per_member_loss(out, y):
        n = y.shape[0]
        return loss(out.reshape(E * n, *out.shape[2:]), y.repeat(E, *([1] * (y.ndim - 1)))).view(E, n)

    def member_view(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.view(-1, *([1] * (t.ndim - 1)))

    def evaluate(index=None) -> Evaluation:
        """Stacked evaluation. Stopped or diverged members are masked out of everything a stepper sees (loss,
        gradients, outputs), so that one member's NaN never reaches another's update or the shared dt."""
        x, y = (train_set.x, train_set.y) if index is None else (train_set.x[index], train_set.y[index])
        out = ensemble(x)  # (E, n, C)
        per = per_member_loss(out, y)  # (E, n)
        if weights is None:
            mean = per.mean(1)  # (E,)
        else:
            w = weights if index is None else weights[:, index]
            mean = (per * w).sum(1) / w.sum(1).clamp_min(1e-12)
        ok = (active & finite).to(mean.device)  # bookkeeping masks live on the CPU
        total = torch.where(ok, mean, torch.zeros_like(mean)).sum()
        grads = torch.autograd.grad(total, params)
        grads = [torch.where(member_view(g, ok), g * scale.view(-1, *([1] * (g.ndim - 1))), 0.0)
                 for g in grads]  # eta_alpha = eta / alpha^2, per member
        out = torch.where(member_view(out, ok), out.detach(), 0.0)
        return Evaluation(float(total.detach()), grads, out, per.detach(), index)

    with torch.no_grad():
        per0 = per_member_loss(ensemble(train_set.x), train_set.y).double()
        w0 = None if weights is None else weights.double()
        loss0 = (per0.mean(1) if w0 is None else (per0 * w0).sum(1) / w0.sum(1).clamp_min(1e-12)).cpu().numpy()
    milestones = [schedule.milestones(float(l0)) for l0 in loss0]
    smoothed = loss0.copy()
    rows: list[list[tuple]] = [[] for _ in range(E)]
    trace: list[list[tuple]] = [[] for _ in range(E)]
    status = ["complete"] * E
    reasons = [""] * E
    converged: list[bool | None] = [None] * E
    stopped_at = [(0, 0.0)] * E
    probe_s = 0.0
    params0_stacked = ensemble.params0()

    def measure(members: list[tuple[int, int | None]], step: int, t: float) -> dict[int, ProbeContext]:
        nonlocal probe_s
        t0 = time.perf_counter()
        was = ensemble.training
        ensemble.eval()
        with torch.no_grad():
            outs = {name: torch.cat([ensemble(xb) for xb in s.x.split(4096)], dim=1) for name, s in splits.items()}
        ctxs = {}
        for k, milestone in members:
            ctx = ProbeContext(member_module(k), splits, loss, step, t, p0_member[k], milestone, run_ids[k])
            ctx._outputs = {name: o[k] for name, o in outs.items()}
            for probe in probes:
                for split, group, metric, value in probe(ctx):
                    rows[k].append((run_ids[k], step, t, milestone, split, group, metric, float(value)))
            ctxs[k] = ctx
        ensemble.train(was)
        probe_s += time.perf_counter() - t0
        return ctxs

    members_cache: dict[int, AlphaScaled] = {}
    p0_member = [{"model." + n: v[k] for n, v in params0_stacked.items()} for k in range(E)]

    def member_module(k: int) -> AlphaScaled:
        """Member k as an AlphaScaled module, created once and refreshed in place (stable identity for probes
        that cache per model, e.g. the initial kernel of LinearityProbe)."""
        if k not in members_cache:
            members_cache[k] = ensemble.member(k)
        else:
            with torch.no_grad():
                for (_, p), stacked in zip(members_cache[k].model.named_parameters(), params):
                    p.copy_(stacked[k])
        return members_cache[k]

    def flush(k: int) -> None:
        if records is not None:
            records[k].write_metrics(metrics_frame(rows[k]))
            records[k].write_trace(pd.DataFrame(trace[k], columns=["step", "t", "loss", "dt"]))

    wall0 = last_flush = time.perf_counter()
    step, t, dt = 0, 0.0, 0.0
    cur: Evaluation | None = None
    bar = tqdm(total=stop.max_steps, desc=f"ensemble of {E}", disable=(None if progress is None else not progress),
               leave=False, mininterval=0.5, unit="step")
    try:
        while True:
            if cur is None:
                cur = evaluate(next(batches))
            if weights is None:
                losses = cur.per_example.double().mean(1).cpu().numpy()  # (E,) per-member mean loss
            else:
                w = (weights if cur.index is None else weights[:, cur.index]).double()
                losses = ((cur.per_example.double() * w).sum(1) / w.sum(1).clamp_min(1e-12)).cpu().numpy()
            to_measure: dict[int, int | None] = {}
            stopping: list[int] = []
            for k in np.nonzero(active.numpy())[0]:
                trace[k].append((step, t, float(losses[k]), dt))
                if not math.isfinite(losses[k]):
                    status[k], reasons[k] = "diverged", f"non-finite training loss at step {step} (t = {t:.4g})"
                    finite[k] = False
                    to_measure[k] = None
                    stopping.append(k)
                    continue
                smoothed[k] = losses[k] if smooth == 0 else smooth * smoothed[k] + (1 - smooth) * losses[k]
                m = milestones[k].update(smoothed[k]) if milestones[k] is not None else None
                if m is not None or schedule.log_step(step):
                    to_measure[k] = m
                reason = ""
                if stop.loss_below is not None and smoothed[k] < stop.loss_below:
                    reason, converged[k] = f"training loss {smoothed[k]:.4g} < {stop.loss_below:g}", True
                elif stop.min_margin is not None and stepper.full_batch:
                    if float(loss.margin(cur.out[k], train_set.y).min()) >= stop.min_margin:
                        reason, converged[k] = f"every training margin >= {stop.min_margin:g}", True
                if not reason and stop.max_steps is not None and step >= stop.max_steps:
                    reason = f"reached max_steps = {stop.max_steps}"
                if not reason and stop.max_time is not None and t >= stop.max_time:
                    reason = f"reached max_time = {stop.max_time:g}"
                if reason:
                    reasons[k] = reason
                    if converged[k] is None and stop.has_target:
                        converged[k] = False
                    to_measure.setdefault(k, None)
                    stopping.append(k)
            if to_measure:
                ctxs = measure(sorted(to_measure.items()), step, t)
                if stop.min_margin is not None and not stepper.full_batch:
                    for k, ctx in ctxs.items():
                        if k not in stopping and float(loss.margin(ctx.outputs("train"), train_set.y).min()) \
                                >= stop.min_margin:
                            reasons[k], converged[k] = f"every training margin >= {stop.min_margin:g}", True
                            stopping.append(k)
            for k in stopping:
                active[k] = False
                stopped_at[k] = (step, t)
                flush(k)
            if not bool(active.any()):
                break
            inactive = (~active).to(params[0].device)
            frozen = None
            if bool(inactive.any()):  # freeze stopped members: restore their rows after the update
                frozen = ([p.detach()[inactive].clone() for p in params],
                          {key: [v[inactive].clone() for v in val] for key, val in state.items()
                           if isinstance(val, list)})
            dt, cur = stepper.step(params, cur, evaluate, 1.0, state)
            if frozen is not None:
                with torch.no_grad():
                    for p, old in zip(params, frozen[0]):
                        p[inactive] = old
                    for key, vals in frozen[1].items():
                        for v, old in zip(state[key], vals):
                            v[inactive] = old
            step += 1
            t += dt
            bar.update(1)
            if records is not None and time.perf_counter() - last_flush > flush_every_s:
                for k in np.nonzero(active.numpy())[0]:
                    flush(k)
                last_flush = time.perf_counter()
    except BaseException as e:
        bar.close()
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        if records is not None:
            for k in np.nonzero(active.numpy())[0]:
                flush(k)
                records[k].set_status("failed", f"{why} (at step {step}, t = {t:.4g})", steps=step, t=t)
        raise
    bar.close()
    wall = time.perf_counter() - wall0
    results = []
    for k in range(E):
        s_k, t_k = stopped_at[k]
        if records is not None:
            records[k].set_status(status[k], reasons[k], converged=converged[k], steps=s_k, t=t_k,
                                  wall_s=round(wall, 3), probe_s=round(probe_s, 3), alpha=float(ensemble.alphas[k]),
                                  loss0=float(loss0[k]), ensemble_size=E)
        results.append(TrainResult(status[k], reasons[k], converged[k], s_k, t_k, metrics_frame(rows[k]),
                                   pd.DataFrame(trace[k], columns=["step", "t", "loss", "dt"]), wall, probe_s, {}))
    return results
