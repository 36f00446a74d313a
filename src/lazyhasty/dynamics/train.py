"""The training engine: one loop, ``train``, for a single model or an ensemble, every regime and every stepper.

How training flows: a model -> its regime wrapper (``AlphaScaled``, ``Linearized``) -> an ``Ensemble`` of members
evaluated as one computation (a single model is trained as an ensemble of one) -> a stepper moves every member ->
probes measure each member at its measurement points -> record sinks receive each member's tables.

The learning-rate rule eta_alpha = eta / alpha^2 lives here and only here: the engine differentiates
sum_k L_k / alpha_k^2 (member k's mean loss over its alpha squared: Geiger et al. 2020, slide "training
procedure", L(w) = alpha^-2 |D|^-1 sum l(alpha (f(w, x) - f(w0, x)), y)), so every stepper of rate eta moves
member k with eta / alpha_k^2.
Time is measured in theory units (t = sum of eta for discrete steps, sum of dt for flows), so runs at
different alpha share an axis.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils._pytree import tree_map, tree_structure

from ..data.groups import Split
from ..data.inputs import chunks, leaves, take
from ..errors import BadData, Deferred, stopped_by
from ..metrics.progress import RISING, rises
from ..models.ensemble import Ensemble
from ..models.regimes import _Regime, running_stats
from . import checkpoint as checkpoints
from .losses import Loss, check_data, get_loss
from .probes import DEFAULT_PROBES, BatchContext, OwnSets, Probe, ProbeContext, Schedule
from .progress import Progress, run_fraction
from .steppers import Evaluation, Stepper, per_member

METRIC_COLUMNS = ["run_id", "step", "t", "milestone", "split", "group", "metric", "value"]
TRACE_COLUMNS = ["step", "t", "loss", "dt"]


class RecordSink(Protocol):
    """Where the engine writes one run. :class:`lazyhasty.RunRecord` (Parquet files) and
    :class:`lazyhasty.TensorBoardSink` (event files) implement it; a run without a sink keeps its tables in memory
    only (the :class:`TrainResult`).

    ``write(metrics, trace)`` receives the run's complete tables so far (the long table of ``METRIC_COLUMNS`` and
    the per-step trace of ``TRACE_COLUMNS``) every ``flush_every_s`` seconds and when the run ends; rows are only
    ever appended (except when a run resumes from a checkpoint: it then receives the tables as they were at the
    checkpoint). ``set_status(status, reason, **info)`` is called when the run ends: ``complete``, ``diverged``
    or ``failed``, with the reason and the run's numbers (steps, t, converged, wall_s, alpha, loss0, ...).
    A sink may also have ``resumed(step, t)``, called when the run continues from a checkpoint.
    """

    def write(self, metrics: pd.DataFrame, trace: pd.DataFrame) -> None: ...

    def set_status(self, status: str, reason: str | None = None, **info) -> None: ...


@dataclass(frozen=True)
class Stop:
    """When to stop. At least one budget (``max_steps`` or ``max_time``) is required.

    Args:
        max_steps: number of parameter updates (accepted steps for the adaptive flows).
        max_time: theory time t (see module docstring).
        loss_below: stop once the (smoothed, see :class:`Schedule`) mean training loss is below this.
        min_margin: stop once every training margin is >= this (1 for "all margins >= 1"). Full-batch steppers
            check it every step, minibatch ones at measurement points (on the full training set).
        reach: targets on measured quantities, ``(split, group, metric, value)`` each, e.g. ``("train", "clean",
            "loss", 0.5)``: stop once every one is reached (a loss at or below its value; an accuracy or margin, which
            rise with training, at or above), as recorded by the probes at a measurement point. The way to stop on
            the measure a comparison's progress axis uses (George et al.: equal clean-example loss).
    A run whose loss or parameters become NaN/inf stops with status ``diverged`` (never an exception).
    """

    max_steps: int | None = None
    max_time: float | None = None
    loss_below: float | None = None
    min_margin: float | None = None
    reach: tuple[tuple[str, str, str, float], ...] = ()

    def __post_init__(self):
        if self.max_steps is None and self.max_time is None:
            raise ValueError("Stop needs a budget: set max_steps or max_time (or both)")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(
                self.max_steps, (int, np.integer)) or self.max_steps < 0):
            raise ValueError(f"max_steps must be an integer >= 0, got {self.max_steps!r}")
        for name in ("max_time", "loss_below", "min_margin"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or (name == "max_time" and v < 0)):
                raise ValueError(f"{name} must be a finite number{' >= 0' if name == 'max_time' else ''}, got {v!r}")
        reach = tuple(tuple(r) for r in self.reach)
        for r in reach:
            if len(r) != 4 or not all(isinstance(k, str) and k for k in r[:3]) or isinstance(r[3], bool) \
                    or not isinstance(r[3], (int, float)) or not math.isfinite(r[3]):
                raise ValueError(f"each Stop.reach target is (split, group, metric, finite value), got {r!r}")
            if r[2] not in ("loss", *RISING):  # which way another measure moves is not known: never guessed
                raise ValueError(f"Stop.reach targets a loss (reached at or below) or an accuracy or margin (at or "
                                 f"above), got {r[2]!r}")
        object.__setattr__(self, "reach", reach)

    @property
    def targets(self) -> bool:
        """Whether the run has a target (its ``converged`` is then True or False, never None)."""
        return self.loss_below is not None or self.min_margin is not None or bool(self.reach)


@dataclass
class TrainResult:
    """What ``train`` returns for one run. ``metrics`` is the long table, ``trace`` the per-step objective."""

    status: str  # complete | diverged | failed
    reason: str
    converged: bool | None  # a target (loss_below / min_margin) was met; None when no target was set
    steps: int
    t: float
    metrics: pd.DataFrame
    trace: pd.DataFrame
    wall_s: float
    probe_s: float
    stepper_state: dict  # the stepper's numbers for this run (dt, accepted, rejected for the flows)


def same_init(model: nn.Module) -> nn.Module:
    """An independent, bit-identical copy of ``model`` (same theta0) for a run in another regime."""
    return copy.deepcopy(model)


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model from ``factory`` with torch's RNG seeded by ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


class _Run:
    """One run's bookkeeping: its tables, its clock (members of an adaptive flow advance separately), its
    milestones and how it ended."""

    SAVED = ("run_id", "rows", "trace", "step", "t", "dt", "smoothed", "live", "status", "reason", "converged",
             "info", "final", "wall_s", "probe_s")  # what a checkpoint keeps

    def __init__(self, run_id: str, sink: RecordSink | None, milestones, loss0: float):
        self.run_id, self.sink, self.milestones, self.loss0 = run_id, sink, milestones, loss0
        self.rows: list[tuple] = []
        self.trace: list[tuple] = []
        self.step, self.t, self.dt, self.smoothed = 0, 0.0, 0.0, loss0
        self.live, self.status, self.reason, self.converged = True, "complete", "", None
        self.closed = sink is None  # its final status is written (or it has no record)
        self.info: dict = {}
        self.final: dict = {}  # the numbers of its final status
        self.wall_s = self.probe_s = 0.0

    def state(self) -> dict:
        return {**{f: getattr(self, f) for f in self.SAVED},
                "reached": None if self.milestones is None else self.milestones.reached}

    def restore(self, saved: dict) -> None:
        """Continue from a checkpoint: the state, and the record as it was then (a run that had ended gets its
        final status again, one still training is told it resumed)."""
        for f in self.SAVED:
            setattr(self, f, saved[f])
        if self.milestones is not None:
            self.milestones.reached = saved["reached"]
        if self.sink is None:
            return
        self.flush()
        if not self.live:
            self.sink.set_status(self.status, self.reason, **self.final)
            self.closed = True
        elif hasattr(self.sink, "resumed"):
            self.sink.resumed(step=self.step, t=self.t)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The long table (``METRIC_COLUMNS``; milestone as nullable integers) and the per-step trace."""
        metrics = pd.DataFrame(self.rows, columns=METRIC_COLUMNS).astype({"step": "int64", "milestone": "Int64"})
        return metrics, pd.DataFrame(self.trace, columns=TRACE_COLUMNS)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.write(*self.tables())


# torch.nn modules that compute the same in train and eval mode (anything else, and any module of another library,
# is assumed to switch: the engine then measures in eval mode with a forward pass of its own)
_MODE_FREE = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Flatten, nn.Unflatten, nn.Identity,
              nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
              nn.ELU, nn.LeakyReLU, nn.Softmax, nn.LogSoftmax, nn.LayerNorm, nn.GroupNorm, nn.Embedding,
              nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


def _mode_free(ens) -> bool:
    """Whether every module of the ensemble's networks computes the same in train and eval mode: torch.nn's
    mode-free layers above, lazyhasty's own modules (whose forward never reads ``training``), or batch norm inside a
    regime wrapper (its statistics frozen)."""
    def free(m: nn.Module, wrapped: bool) -> bool:
        if isinstance(m, _MODE_FREE) or (wrapped and m in stats):
            return True
        cls = type(m)
        return cls.__module__.startswith("lazyhasty.") and not any(
            isinstance(m, t) for t in (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase))

    stats = {m for member in ens.members if isinstance(member, _Regime) for m in running_stats(member)}
    return all(free(m, isinstance(member, _Regime)) for member in ens.members for m in member.modules())


def _compiled(ens: Ensemble, loss: Loss, weights: torch.Tensor | None, stepper: Stepper, own: bool):
    """``train(compile=True)``: one torch.compile'd function of the stacked parameters P giving the gradient and value
    of the objective (:func:`member_losses`, as the eager step) and, for a stepper with a :meth:`~Stepper.proposal`
    and more than one member, writing the parameters after its step into Q (the step fused with the gradient
    computation; the engine's parameters move only when the stepper installs them, after the stopping rule has seen
    this point)."""
    if ens.linear:
        raise ValueError("compile=True needs plain or AlphaScaled members: a Linearized model's jvp and cached "
                         "linearisation are not compiled")
    fuse = len(ens) > 1 and type(stepper).proposal is not Stepper.proposal  # one member: params are views

    def objective(P, f0, x, y, weight, index):
        """sum_k L_k / alpha_k^2 over the live members k, as a pure function of the stacked parameters P."""
        out = ens.outputs(P, f0, (x,), {}, own)  # (E, m, ...)
        mean, per = member_losses(loss, out, y, weights, index, own)
        return mean @ weight, (mean, out, per)

    def step(P, Q, live, *args):
        g, (value, (mean, out, per)) = torch.func.grad_and_value(objective, has_aux=True)(P, *args)
        g = {k: torch.where(per_member(live, v), v, 0.0) for k, v in g.items()}  # ended members: no NaN, no step
        aux = value, (mean, torch.where(per_member(live, out), out, 0.0), per)
        if fuse:
            for k, q in stepper.proposal(P, g, live).items():
                if q.shape != Q[k].shape:  # copy_ would broadcast
                    raise ValueError(f"{type(stepper).__name__}.proposal gave {k!r} the shape {tuple(q.shape)}, "
                                     f"not its parameters' {tuple(Q[k].shape)}")
                Q[k].copy_(q)
        return g, aux

    cpu = ens.params[0].device.type == "cpu"  # a C++ wrapper: ~0.3 ms less per step (measured on CPU only)
    return torch.compile(step, options={"cpp_wrapper": True} if cpu else None), fuse


_CAN_COMPILE: dict[str, tuple[bool, str]] = {}


def can_compile(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``train(compile=True)`` can work here (torch.compile, with a C++ compiler on the CPU): one tiny
    function compiled with the same options, once per process and device. Returns (ok, why not)."""
    if device not in _CAN_COMPILE:
        try:
            f = torch.compile(lambda x: (x * 2).sin(), options={"cpp_wrapper": True} if device == "cpu" else None)
            f(torch.ones(3, device=device))
            _CAN_COMPILE[device] = (True, "")
        except Exception as e:  # no compiler, an unsupported platform, ... (not a signal the compiler wrapped)
            if stopped_by(e)[0] == "interrupted":
                raise
            _CAN_COMPILE[device] = (False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return _CAN_COMPILE[device]


COMPILE_AFTER = 20_000  # member-steps: the default rule compiles a run once it has taken this many


def _note(message: str) -> None:
    """One line on stderr, once per process."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"[lazyhasty] {message}", file=sys.stderr, flush=True)


_NOTED: set[str] = set()


def train(
    model: nn.Module,
    train_set: Split | Sequence[Split],
    *,
    loss: Loss | str,
    stepper: Stepper,
    stop: Stop,
    splits: dict[str, Split] | None = None,
    probes: Sequence[Probe] = DEFAULT_PROBES,
    schedule: Schedule | None = None,
    data_seed: int = 0,
    run_id: str | Sequence[str] | None = None,
    record: RecordSink | Sequence[RecordSink | None] | None = None,
    progress: bool | None = None,
    flush_every_s: float = 5.0,
    on_step: Callable[[Evaluation], None] | None = None,
    weights: torch.Tensor | None = None,
    checkpoint: str | Path | checkpoints.Checkpointing | None = None,
    checkpoint_every_s: float | None = None,
    compile: bool | None = None,
) -> TrainResult | list[TrainResult]:
    """Train a model, or every member of an :class:`Ensemble` at once, on ``train_set`` and measure it.

    Args:
        model: any module, usually a regime wrapper (``AlphaScaled``, ``Linearized``; its alpha sets the
            learning-rate scale 1/alpha^2), or an ``Ensemble`` of such modules.
        train_set: the training examples; also probed as split ``"train"``. For an ensemble, a list of one set
            per member (one length, input shapes and groups) trains each member on its own set, evaluated as one
            computation (:meth:`Ensemble.own`); a probe then sees member k's set as ``ctx.splits["train"]``.
        loss: a :class:`Loss` or its name; must return one loss per example.
        stepper: ``GD``, ``SGD``, ``GradientFlow`` or ``MomentumFlow``.
        stop: budgets and targets, applied to each run (member) on its own.
        splits: extra probe sets by name (e.g. ``{"test": ...}``), each with its groups.
        probes: callables run for each run at its measurement points (see :mod:`lazyhasty.dynamics.probes`).
        schedule: log-spaced measurement steps and equal-progress milestones (per run).
        data_seed: seeds the minibatch order, independently of the model: forked runs and every member of an
            ensemble see the same batches.
        run_id: the ``run_id`` column of the tables; one per member for an ensemble (default: a new unique id,
            ``run-<8 hex digits>``, with ``-member<k>`` for an ensemble's members).
        record: a :class:`RecordSink` (one per member for an ensemble): the run's tables are written to it every
            ``flush_every_s`` seconds and at the end, and its final status is set when the run ends: complete or
            diverged, ``interrupted`` (KeyboardInterrupt: Ctrl-C, or SIGTERM on the command line) or ``failed``
            (any other exception, a failed write included), with the reason. Nothing measured is lost.
        progress: show progress towards the stopping rule (:mod:`lazyhasty.dynamics.progress`): a bar on a
            terminal, a plain line at most every 30 s elsewhere (logs, pipes); False: nothing.
        on_step: called as ``on_step(evaluation)`` at every new point, before the update (tests and tools).
        weights: (E, n) example weights per member, finite and >= 0 with some positive in every row (0/1: a
            member's own training subset, as in C-score estimation); a member's loss is then sum_i w_i l_i / sum_i w_i
            over the batch.
        checkpoint: a file for the whole training state (:mod:`lazyhasty.dynamics.checkpoint`): the run continues
            from it when it exists, writes it every ``checkpoint_every_s`` seconds (default 60; 0: never) and
            when SIGTERM, SIGHUP, SIGINT or SIGUSR2 arrives, and deletes it when the run ends. Or a
            :class:`~lazyhasty.runs.Checkpointing` series (an experiment's ``out.checkpoints``): the call takes the
            series' next file and interval, resumes only when the series does, and keeps its final state.
            The records of a resumed run are bit-identical to those of a run that never stopped (each resume is
            listed in its ``status.json``). A checkpoint of another call (stepper, budget, schedule, loss, data,
            theta0) is refused with :class:`~lazyhasty.dynamics.checkpoint.CheckpointMismatch`.
        compile: evaluate loss and gradients with one ``torch.compile``d ``torch.func`` function (plain and AlphaScaled
            members; for ``GD`` on an ensemble the step's new parameters too, installed only after the stopping rule
            has seen the point): a one-off compilation (5-20 s; a C++ compiler is needed on the CPU), then about
            1.8x the speed of eager steps on small networks, whose element-wise work it fuses
            (``benchmarks/ensemble.py``). The same numbers as eager up to rounding (tested in float64).
            None (default): eager steps first; once the members together have taken :data:`COMPILE_AFTER` (20,000)
            steps (200 steps of 100 members, 20,000 of one run), plain and AlphaScaled members are compiled from the
            next step on. Compiling costs 5-20 s once and saves a fixed part of every step, so a run pays for it
            only if it goes on long enough; deciding on steps taken (not on the budget, which a run that stops
            on a target never uses) bounds what the rule can lose, and being a count of steps, not of seconds, a
            rerun or a resumed run switches at the same step (``benchmarks/ensemble.py``). Where torch.compile does
            not work, or fails on this model (``compile=True`` too), one line on stderr says so and the run
            continues eagerly.

    Returns:
        A :class:`TrainResult` for a model (which then holds its final parameters), a list of them (one per
        member) for an ensemble (``ensemble.member(k)`` holds member k's final parameters).
    """
    if "train" in (splits or {}):
        raise ValueError("'train' is the training set's split name; name the other splits differently")
    for name, v in (("flush_every_s", flush_every_s), ("checkpoint_every_s", checkpoint_every_s)):
        if v is not None and not (isinstance(v, (int, float)) and 0 <= v < math.inf):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {v!r}")
    single = not isinstance(model, Ensemble)
    ens = Ensemble([model]) if single else model
    train_set = _own_sets(ens, train_set) if not isinstance(train_set, Split) else train_set
    ids, sinks = _ids_and_sinks(ens, single, run_id, record, weights, len(train_set))
    engine = None
    try:
        engine = _Engine(ens, train_set, get_loss(loss), stepper, stop, {"train": train_set, **(splits or {})},
                         probes, schedule or Schedule(), data_seed, weights, compile)
        engine.start(ids, sinks)
        ckpt = _Checkpoint.of(engine, checkpoint, checkpoint_every_s, named=run_id is not None)
        engine.loop(ckpt, Progress(ids[0] if single else f"ensemble of {len(ens)}", progress), on_step,
                    flush_every_s)
    except BaseException as e:  # every run still open gets a final status saying why, and keeps what it measured
        _close_on_error(e, sinks, [] if engine is None else engine.runs)
        raise
    results = [TrainResult(r.status, r.reason, r.converged, r.step, r.t, *r.tables(), r.wall_s, r.probe_s, r.info)
               for r in engine.runs]
    return results[0] if single else results


def _own_sets(ens: Ensemble, sets: Sequence[Split]) -> OwnSets:
    """Per-member training sets, checked: one per member, every one a Split of one length, input structure and
    shapes, target shape and dtype, and group names (a group's examples are each set's own)."""
    sets = tuple(sets)
    if len(sets) != len(ens) or not all(isinstance(s, Split) for s in sets):
        raise ValueError(f"train_set must be a Split, or a list of one Split per member ({len(ens)}), got "
                         f"{len(sets)} item(s) of types {sorted({type(s).__name__ for s in sets})}")
    def layout(s: Split):
        return (tree_structure(s.x), [(t.shape, t.dtype) for t in leaves(s.x)], s.y.shape, s.y.dtype,
                sorted(s.groups))
    ref = layout(sets[0])
    for k, s in enumerate(sets[1:], 1):
        if layout(s) != ref:
            raise ValueError(f"the members' training sets must share their length, input and target shapes, dtypes "
                             f"and group names: set {k} differs from set 0")
    return OwnSets(sets)


def _ids_and_sinks(ens: Ensemble, single: bool, run_id, record, weights, n: int) -> tuple[list[str], list]:
    """One run id and one record sink (or None) per member, checked; the example weights' shape and the precision
    are checked here too, before anything runs."""
    E = len(ens)
    if run_id is None:
        uid = f"run-{uuid.uuid4().hex[:8]}"
        run_id = uid if single else [f"{uid}-member{k}" for k in range(E)]
    ids = [run_id] if single else list(run_id)
    sinks = [record] if single else [None] * E if record is None else list(record)
    if len(ids) != E or len(sinks) != E:
        raise ValueError(f"need one run id and one record (or None) per member: {E}")
    if len(set(ids)) != E:
        raise ValueError(f"run ids must be distinct (they key every row of the tables), got {ids}")
    if weights is not None and tuple(weights.shape) != (E, n):
        raise ValueError(f"weights must have shape (members, examples) = ({E}, {n}), got {tuple(weights.shape)}")
    if weights is not None and not (torch.isfinite(weights).all() and (weights >= 0).all()
                                    and (weights.sum(1) > 0).all()):  # else a member's mean loss means nothing
        raise ValueError("weights must be finite and >= 0, with at least one example of positive weight per member")
    low = next((p.dtype for p in ens.params if p.dtype in (torch.bfloat16, torch.float16)), None)
    if low is not None and float(ens.alphas.max()) > 1:
        warnings.warn(f"training in {low} at alpha up to {float(ens.alphas.max()):g}: alpha (f - f0) multiplies the "
                      f"rounding of f - f0 ({torch.finfo(low).eps:.1g} of f in {low}) by alpha, so the lazy run is "
                      "much less accurate than in float32; use float32 or float64 for alpha > 1", stacklevel=3)
    return ids, sinks


def _close_on_error(e: BaseException, sinks: list, runs: list[_Run]) -> None:
    """``train`` stopped by an exception: every run whose record is still open gets the status saying why
    (``interrupted`` or ``failed``) and keeps the tables it measured."""
    stopped, why = stopped_by(e)
    for k, sink in enumerate(sinks):
        r = runs[k] if k < len(runs) else None
        if sink is None or (r is not None and r.closed):
            continue
        reason = why if r is None else f"{why} (at step {r.step}, t = {r.t:.4g})"
        try:
            if r is not None:
                r.flush()
        except Exception as f:  # e.g. a full disk: the status still says what happened
            reason += f"; writing its tables failed too: {type(f).__name__}: {f}"
        try:
            sink.set_status(stopped, reason, **({} if r is None else {"steps": r.step, "t": r.t}))
        except Exception:
            pass  # nowhere left to write; the exception still reaches the caller


def member_losses(loss: Loss, out: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None,
                  index: torch.Tensor | None = None, own: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's terms, a pure function shared by the eager and the compiled step: (E, m, ...) outputs and
    (m, ...) targets (``own``: (E, m, ...), each member's own) -> each member's mean loss (E,) and every example's
    loss (E m,), member by member. With ``weights`` (E, n) (and the batch's ``index`` (m,), None for the full set)
    a member's mean is sum_i w_i l_i / sum_i w_i."""
    E, m = out.shape[0], y.shape[int(own)]
    per = loss(out.flatten(0, 1), y.flatten(0, 1) if own else y if E == 1 else y.expand(E, *y.shape).flatten(0, 1))
    if per.shape != (E * m,):
        raise ValueError(f"loss {type(loss).__name__} returned shape {tuple(per.shape)} for {m} examples; a loss "
                         "must return one value per example")
    return _means(per, E, weights, index), per


def _means(per: torch.Tensor, E: int, weights: torch.Tensor | None, index: torch.Tensor | None) -> torch.Tensor:
    """(E m,) -> (E,): each member's mean loss over the batch (weighted: sum w_i l_i / sum w_i)."""
    if weights is None:
        return per.mean()[None] if E == 1 else per.view(E, -1).mean(1)
    w = weights if index is None else weights[:, index]
    return (per.view(E, -1) * w).sum(1) / w.sum(1).clamp_min(1e-12)


def stop_rule(stop: Stop, r: _Run, margins: Callable[[], torch.Tensor | None], measured: bool
              ) -> tuple[str, bool | None]:
    """Why run ``r`` stops at its current point ("" if it goes on) and whether it met a target (None: a budget
    ended it). ``margins()``: its training margins (None where none are at hand); ``measured``: the probes
    recorded this point (its rows are the last of ``r.rows``)."""
    if stop.loss_below is not None and r.smoothed < stop.loss_below:
        return f"training loss {r.smoothed:.4g} < {stop.loss_below:g}", True
    if stop.reach and measured:
        now = {}
        for row in reversed(r.rows):  # this point's rows are the last ones
            if row[1] != r.step:
                break
            now.setdefault(row[4:7], row[7])
        missing = [key for *key, _ in stop.reach if tuple(key) not in now]
        if missing:
            raise ValueError(f"Stop.reach targets {', '.join('/'.join(k) for k in missing)}, which no probe "
                             f"recorded (recorded: {', '.join(sorted({'/'.join(k) for k in now}))})")
        if all(now[(s, g, m)] >= v if rises(m) else now[(s, g, m)] <= v for s, g, m, v in stop.reach):
            return "reached " + ", ".join(f"{s}/{g}/{m} {now[(s, g, m)]:.4g} ({'>=' if rises(m) else '<='} {v:g})"
                                          for s, g, m, v in stop.reach), True
    if stop.min_margin is not None:
        margin = margins()
        if margin is not None and float(margin.min()) >= stop.min_margin:
            return f"every training margin >= {stop.min_margin:g}", True
    if stop.max_steps is not None and r.step >= stop.max_steps:
        return f"reached max_steps = {stop.max_steps}", None
    if stop.max_time is not None and r.t >= stop.max_time:
        return f"reached max_time = {stop.max_time:g}", None
    return "", None


class _Engine:
    """One ``train`` call: the ensemble and its stepper's state, one :class:`_Run` per member, and the parts of a
    step as methods: ``evaluate`` (loss and gradients), ``observe`` (record the new points, decide what to
    measure), ``measure`` (probes), ``decide`` (the stop rule), ``finish`` (a run's final status), ``advance`` (the
    stepper's update and the clocks). ``loop`` joins them; ``saved``/``restore`` are its checkpoint as data."""

    def __init__(self, ens: Ensemble, train_set: Split | OwnSets, loss: Loss, stepper: Stepper, stop: Stop,
                 splits: dict[str, Split], probes: Sequence[Probe], schedule: Schedule, data_seed: int,
                 weights: torch.Tensor | None, compile: bool | None):
        self.ens, self.train_set, self.loss, self.stepper, self.stop = ens, train_set, loss, stepper, stop
        self.splits, self.probes, self.schedule, self.data_seed, self.weights = splits, probes, schedule, \
            data_seed, weights
        self.params = ens.params
        self.own = isinstance(train_set, OwnSets)  # each member on its own set: x (E, n, ...), y (E, n, ...)
        self.x, self.y = (tree_map(lambda *ts: torch.stack(ts), *[s.x for s in train_set.sets]),
                          torch.stack([s.y for s in train_set.sets])) if self.own else (train_set.x, train_set.y)
        # eta / alpha^2, the one place the rule lives: the objective is sum_k L_k / alpha_k^2 over the live members
        self.weight = 1.0 / ens.alphas**2  # (E,): 1 / alpha_k^2 for a member still training, 0 once it has stopped
        self.live = torch.ones(len(ens), dtype=torch.bool, device=self.weight.device)
        self.state = stepper.init_state(self.params)
        self.batches, self.consumed = self.batch_stream(0), 0
        self.smooth = schedule.smoothing if schedule.smoothing is not None else (0.0 if stepper.full_batch else 0.9)
        self.compiled, self.scratch = None, {}  # where a fused step writes its proposal; empty when not fused
        # compile=None: compile after COMPILE_AFTER member-steps (plain / AlphaScaled members), falling back to eager
        self.compile_at = 0 if compile else COMPILE_AFTER if compile is None and not ens.linear else None
        self.fallback = True  # until the compiled step has run once: where it fails, a note and eager steps
        if compile:
            self.compile()
        self.f0_splits: dict[tuple, torch.Tensor] = {}  # f_theta0 on a whole split (training set included), per mode
        self.mode_free = _mode_free(ens)  # the same outputs in train and eval mode: the step's outputs are reused
        self.each = any(not hasattr(p, "batched") for p in probes)  # a probe needs each member as a module
        self.group_cache: dict = {}
        self.runs: list[_Run] = []
        self.cur: Evaluation | None = None
        self.new = list(range(len(ens)))  # members at a point not yet recorded
        self.probe_s, self.elapsed0, self.wall0 = 0.0, 0.0, time.perf_counter()
        # a full-batch step's loss is the training loss: once it has reached a Stop.reach target on it, measure at
        # every step, so that the run stops where the measured value reaches the target, not at a later point
        self.near = next((v for s, g, m, v in stop.reach if (s, g, m) == ("train", "all", "loss")), None) \
            if stepper.full_batch else None

    def batch_stream(self, skip: int):
        """The batch order, a function of data_seed: replayed up to a position."""
        stream = self.stepper.batches(len(self.train_set), torch.Generator().manual_seed(int(self.data_seed)))
        for _ in range(skip):
            next(stream)
        return stream

    def start(self, ids: list[str], sinks: list) -> None:
        """Check the data against the loss on every split and open one run per member at its initial loss."""
        sets = [(n, one) for n, s in self.splits.items() for one in (s.sets if isinstance(s, OwnSets) else (s,))]
        if empty := [n for n, one in sets if len(one) == 0]:
            raise BadData(f"split {empty[0]!r} has no examples: there is nothing to train on or measure")
        with torch.no_grad():
            out0 = self.whole(self.x, self.own)
            for name, one in sets:
                check_data(self.loss, tuple(out0.shape[2:]), one, name)
            per = member_losses(self.loss, out0, self.y, own=self.own)[1].double()
            loss0 = _means(per, len(self.ens), self.weights, None).cpu().numpy()
        self.runs = [_Run(rid, sink, self.schedule.milestones(float(l0)), float(l0))
                     for rid, sink, l0 in zip(ids, sinks, loss0)]

    @staticmethod
    def blocks(x, own: bool = False) -> list:
        """A whole set's inputs in consecutive blocks of at most 4096 examples (``own``: x holds each member's own
        examples, (E, n, ...), cut along dimension 1)."""
        if not own:
            return chunks(x, 4096)
        n = leaves(x)[0].shape[1]
        return [tree_map(lambda t, i=i: t[:, i:i + 4096], x) for i in range(0, n, 4096)]

    def whole(self, x, own: bool = False) -> torch.Tensor:
        """Every member's outputs on a whole set, (E, n, ...), block by block."""
        return torch.cat([self.ens.own(xb) if own else self.ens(xb) for xb in self.blocks(x, own)], dim=1)

    def batch(self, index: torch.Tensor | None):
        """The training inputs and targets of the batch ``index`` (None: the whole set)."""
        if index is None:
            return self.x, self.y
        if self.own:
            return tree_map(lambda t: t[:, index], self.x), self.y[:, index]
        return take(self.x, index), self.y[index]

    @property
    def all_live(self) -> bool:
        return all(r.live for r in self.runs)

    def evaluate(self, index: torch.Tensor | None = None) -> Evaluation:
        """Every member at once on the batch ``index`` (None: the whole training set). Stopped or diverged
        members are masked out of everything a stepper sees (loss, gradients, outputs), so that one member's NaN
        never reaches another's update."""
        ens = self.ens
        x, y = self.batch(index)
        proposal = None
        if self.compiled is not None:
            P = {k: p.detach() for k, p in zip(ens._names, self.params)}  # leaves that require grad would make the
            with ens.evaluating():  # compiled graph a training graph, saving activations for nothing
                f0 = self.kept_f0(index)
                if f0 is None:
                    f0 = ens.f0(x, own=self.own)
                try:
                    g, (_, (mean, out, per)) = self.compiled(P, self.scratch, self.live, f0, x, y, self.weight,
                                                             index)
                except torch._dynamo.exc.TorchDynamoException as e:  # the compiler's own failure (tracing, C++):
                    if not self.fallback or stopped_by(e)[0] == "interrupted":  # eager from here; after a first
                        raise  # compiled step, or for a signal that stopped the compiler, raised
                    _note(f"compiling the training step failed ({type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:200]}): training eagerly")
                    self.compiled, self.scratch, self.fallback = None, {}, False
                    return self.evaluate(index)
                self.fallback = False
            grads = [g[k] for k in ens._names]
            if self.scratch:
                proposal = [self.scratch[k] for k in ens._names]
        else:
            f0 = self.kept_f0(index)
            out = ens.given_f0(f0, x, own=self.own) if f0 is not None else ens.own(x) if self.own else ens(x)
            mean, per = member_losses(self.loss, out, y, self.weights, index, self.own)
            grads = ens.gradients(mean @ self.weight)  # d/dtheta of sum_k L_k / alpha_k^2 over the live members k
            if not self.all_live:  # (the compiled step masks its own)
                grads = [torch.where(per_member(self.live, g), g, 0.0) for g in grads]
                out = torch.where(per_member(self.live, out), out, 0.0)
        out = out.detach()
        return Evaluation(mean.detach(), grads, out, per.detach().view(len(ens), -1), self.live, index, proposal)

    def observe(self) -> tuple[dict[int, int | None], list[int]]:
        """Record the point each member has newly reached (its trace row, smoothed loss, milestone). Returns the
        members to measure there (member -> milestone) and those that diverged."""
        losses = self.cur.loss.tolist()  # one host sync per step
        todo, ending = {}, []
        for k in self.new:
            r, value = self.runs[k], losses[k]
            r.trace.append((r.step, r.t, value, r.dt))
            if not math.isfinite(value):
                r.status, r.reason = "diverged", f"non-finite training loss at step {r.step} (t = {r.t:.4g})"
                todo[k] = None
                ending.append(k)
                continue
            r.smoothed = value if self.smooth == 0 else self.smooth * r.smoothed + (1 - self.smooth) * value
            m = r.milestones.update(r.smoothed) if r.milestones is not None else None
            if m is not None or self.schedule.log_step(r.step) or (self.near is not None and r.smoothed <= self.near):
                todo[k] = m
        return todo, ending

    def outputs(self, stacked: dict[str, torch.Tensor], name: str, ix: torch.Tensor) -> torch.Tensor:
        """The outputs of the members measured at this point (``ix``, (T,)) on a split, (T, n, ...), computed once
        per point; for a full-batch step of a network that computes the same in eval mode, the training outputs are
        the step's own."""
        if name not in stacked:
            cur = self.cur
            if name == "train" and self.mode_free and self.stepper.full_batch and cur is not None \
                    and cur.index is None:
                stacked[name] = cur.out[ix]
            else:
                with torch.no_grad():
                    stacked[name] = self.on_split(name, ix)
        return stacked[name]

    def f0_of(self, name: str) -> torch.Tensor | None:
        """Every member's f_theta0 on a whole split, (E, n, ...), computed once per call and mode, in blocks of 4096
        examples; None for members without one (plain, Linearized)."""
        ens = self.ens
        if ens.plain or ens.linear:
            return None
        key = (name, ens.training)
        if key not in self.f0_splits:
            own = name == "train" and self.own
            with torch.no_grad():
                self.f0_splits[key] = torch.cat([ens.f0(xb, own=own) for xb in
                                                 self.blocks(self.x if own else self.splits[name].x, own)], 1)
        return self.f0_splits[key]

    def kept_f0(self, index: torch.Tensor | None) -> torch.Tensor | None:
        """f_theta0 on the training batch ``index`` from :meth:`f0_of` the training set: for the whole set, or for a
        minibatch of a network that computes each example alone and the same in train and eval mode (no dropout
        mask that a kept f0 would freeze); None otherwise."""
        if index is not None and not self.mode_free:
            return None
        f0 = self.f0_of("train")
        return f0 if f0 is None or index is None else f0[:, index]

    def on_split(self, name: str, ix: torch.Tensor) -> torch.Tensor:
        """Members ``ix``'s outputs on a split, (T, n, ...): only theirs (in an ensemble of plain or AlphaScaled
        members), from f_theta0 kept per call (:meth:`f0_of`); a Linearized or plain single run is called as it is."""
        ens, own = self.ens, name == "train" and self.own
        x = self.x if own else self.splits[name].x
        if ens.linear or (len(ens) == 1 and ens.plain):
            return self.whole(x, own)[ix]
        f0, i = self.f0_of(name), 0
        out = []
        for xb in self.blocks(x, own):
            m = leaves(xb)[0].shape[int(own)]
            out.append(ens.given_f0(None if f0 is None else f0[:, i:i + m], xb, own=own, members=ix))
            i += m
        return torch.cat(out, 1)

    def measure(self, todo: dict[int, int | None]) -> dict[int, ProbeContext]:
        """Run the probes for each member k in ``todo`` (k -> milestone); probes with a ``batched`` form run once
        for all of them. Their rows go to each run's table."""
        t0, ens, runs = time.perf_counter(), self.ens, self.runs
        was = ens.training
        switch = was and not self.mode_free
        if switch:
            ens.eval()
        stacked: dict[str, torch.Tensor] = {}
        ix = torch.tensor(list(todo), device=self.params[0].device)
        ctxs = {}
        try:
            batch = BatchContext(list(todo), self.splits, self.loss, lambda name: self.outputs(stacked, name, ix),
                                 [q.detach()[ix] for q in self.params],
                                 [q[ix] for q in ens.stacked_params0().values()], self.group_cache,
                                 None if self.weights is None else self.weights[ix])
            done = {id(probe): probe.batched(batch) for probe in self.probes if hasattr(probe, "batched")}
            for pos, (k, milestone) in enumerate(todo.items()):
                r = runs[k]
                splits = {**self.splits, "train": self.train_set.sets[k]} if self.own else self.splits
                ctx = ProbeContext(ens.member(k) if self.each else None, splits, self.loss, r.step, r.t,
                                   ens.params0(k) if self.each else {}, milestone, r.run_id,
                                   source=lambda name, pos=pos: self.outputs(stacked, name, ix)[pos])
                for probe in self.probes:
                    rows = done[id(probe)][pos] if id(probe) in done else probe(ctx)
                    r.rows += [(r.run_id, r.step, r.t, milestone, split, group, metric, float(value))
                               for split, group, metric, value in rows]
                ctxs[k] = ctx
        finally:
            if switch:
                ens.train(was)
        self.probe_s += time.perf_counter() - t0
        return ctxs

    def decide(self, todo: dict[int, int | None], ending: list[int]) -> list[int]:
        """Measure the members in ``todo``, apply the stop rule to every member at a new point; returns those that
        end here (measured at their last point)."""
        ctxs = self.measure(todo) if todo else {}
        if ctxs:  # parameters are checked at measurement points (of the members measured)
            ix = torch.tensor(list(ctxs), device=self.params[0].device)
            finite = dict(zip(ctxs, torch.stack([torch.isfinite(p.detach()[ix]).flatten(1).all(1)
                                                 for p in self.params]).all(0).tolist()))
        full, out = self.stepper.full_batch, self.cur.out
        for k in [k for k in self.new if k not in ending]:
            r, ctx = self.runs[k], ctxs.get(k)
            if ctx is not None and not finite[k]:
                r.status, r.reason = "diverged", f"non-finite parameters at step {r.step} (t = {r.t:.4g})"
            else:  # a minibatch run's margins are checked on the full training set, at measurement points
                margins = lambda k=k, ctx=ctx: self.loss.margin(  # noqa: E731
                    out[k] if full else ctx.outputs("train"), self.y[k] if self.own else self.y) \
                    if full or ctx is not None else None
                r.reason, r.converged = stop_rule(self.stop, r, margins, ctx is not None)
            if r.reason:
                ending.append(k)
        last = {k: None for k in ending if k not in ctxs}
        if last:
            self.measure(last)  # every run is measured at its last point
        return ending

    def finish(self, k: int) -> None:
        """Run k has ended: freeze its member (zero gradient and stepper state), write its tables and status."""
        r, cur = self.runs[k], self.cur
        r.live = False
        self.live[k], self.weight[k] = False, 0.0
        with torch.no_grad():
            for t in [*(cur.grads if cur is not None else []),
                      *(v for vs in self.state.values() if isinstance(vs, list) for v in vs)]:
                t[k].zero_()
            for p, q in zip(self.params, cur.proposal if cur is not None and cur.proposal is not None else []):
                q[k].copy_(p[k])  # its proposed step is not taken
        if r.converged is None and self.stop.targets:  # its budget ran out, or it diverged: target missed
            r.converged = False
        r.info = {key: v[k].item() for key, v in self.state.items() if isinstance(v, np.ndarray)}
        r.wall_s, r.probe_s = self.elapsed0 + time.perf_counter() - self.wall0, self.probe_s
        r.final = dict(converged=r.converged, steps=r.step, t=r.t, wall_s=round(r.wall_s, 3),
                       probe_s=round(self.probe_s, 3), alpha=float(self.ens.alphas[k]), loss0=r.loss0,
                       ensemble_size=len(self.ens), **r.info)
        r.flush()
        if r.sink is not None:
            r.sink.set_status(r.status, r.reason, **r.final)
            r.closed = True

    def compile(self) -> None:
        """From now on, loss and gradients (and a fused stepper's proposal) by one compiled function."""
        self.compile_at = None
        device = self.params[0].device.type
        ok, why = can_compile(device)  # compile=True too: eager, with a note, on a machine that cannot compile
        if not ok:
            return _note(f"torch.compile does not work on {device} here ({why}): training eagerly")
        self.compiled, fused = _compiled(self.ens, self.loss, self.weights, self.stepper, self.own)
        self.scratch = {k: torch.empty_like(p) for k, p in zip(self.ens._names, self.params)} if fused else {}

    def advance(self) -> None:
        """The stepper's update from the current point; every member it moved advances its clock."""
        dt, self.cur = self.stepper.step(self.params, self.cur, self.evaluate, self.state)
        if np.isscalar(dt):  # a discrete step: every live member moved by dt
            self.new = [k for k, r in enumerate(self.runs) if r.live]
            steps = [dt] * len(self.runs)
        else:  # one dt per member, 0 where a trial was rejected
            steps = [float(d) for d in dt.tolist()]
            self.new = [k for k, (d, r) in enumerate(zip(steps, self.runs)) if d > 0 and r.live]
        for k in self.new:
            r = self.runs[k]
            r.step, r.t, r.dt = r.step + 1, r.t + steps[k], steps[k]

    def show(self, shown: Progress) -> None:
        """How far towards the stopping rule the slowest run still training is."""
        stop = self.stop
        fractions = [(run_fraction(r.step, r.t, r.smoothed, r.loss0, stop), r) for r in self.runs if r.live]
        if fractions:
            f, r = min(fractions, key=lambda fr: fr[0])
            shown.update(f, f"step {r.step}, t {r.t:.4g}, loss {r.smoothed:.4g}"
                         + (f" (target {stop.loss_below:g})" if stop.loss_below is not None else "")
                         + ("" if len(self.runs) == 1 else f", {len(fractions)} of {len(self.runs)} runs training"))

    def loop(self, ckpt: _Checkpoint | None, shown: Progress, on_step, flush_every_s: float) -> None:
        """Step until every run has ended: observe, measure, decide, finish, advance; flush the records, show
        progress and write checkpoints (also when a signal arrives) on the way."""
        done = ckpt is not None and ckpt.resume(self)  # a call that had finished: nothing left to train
        last_flush, last_shown, signals = time.perf_counter(), 0.0, Deferred()
        try:
            while not done:
                if ckpt is not None:
                    ckpt.maybe_save(self, signals.pending is not None)
                if signals.pending is not None:
                    signals.act()  # SIGINT / SIGTERM / SIGHUP stop here, at a whole state, with its checkpoint
                # the default rule's switch, by steps taken (a resumed run switches at the same point)
                switch = self.compile_at is not None and sum(r.step for r in self.runs) >= self.compile_at
                compiling = switch or (self.compiled is not None and self.fallback)  # seconds: from this point,
                if compiling:  # checkpointed, and a signal stops it at once
                    self.cur = None  # (a flow's point is evaluated again, compiled)
                    if ckpt is not None and ckpt.every_s:
                        ckpt.save(self)
                signals.at_once = compiling
                if switch:
                    self.compile()
                if self.cur is None:
                    self.cur = self.evaluate(next(self.batches))
                    self.consumed += 1
                signals.at_once = False
                if on_step is not None and self.new:
                    on_step(self.cur)
                for k in self.decide(*self.observe()):
                    self.finish(k)
                if not any(r.live for r in self.runs):
                    break
                self.advance()
                if shown.on and time.perf_counter() - last_shown > 0.5:
                    last_shown = time.perf_counter()
                    self.show(shown)
                if time.perf_counter() - last_flush > flush_every_s:
                    for r in self.runs:
                        if r.live:
                            r.flush()
                    last_flush = time.perf_counter()
        finally:
            shown.close()
            for k in range(len(self.ens)):
                self.ens.member(k)  # every member's module holds its final parameters
            signals.restore()
        if ckpt is not None and not done:
            ckpt.end(self)

    def saved(self, done: bool) -> dict:
        """The whole state, at the top of the loop where it is whole, as data (tensors, numbers, lists)."""
        return {"done": done, "ensemble": self.ens.state_dict(),
                "numbers": {k: torch.from_numpy(v) for k, v in self.state.items() if isinstance(v, np.ndarray)},
                "tensors": {k: v for k, v in self.state.items() if isinstance(v, list)},
                "cur": None if self.cur is None else vars(self.cur), "batches": self.consumed,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
                "runs": [r.state() for r in self.runs], "new": self.new, "probe_s": self.probe_s,
                "elapsed_s": self.elapsed0 + time.perf_counter() - self.wall0}

    def restore(self, saved: dict, path: Path) -> None:
        """Continue from :meth:`saved`'s state: every piece of it, then each run's record."""
        now = self.ens.state_dict()
        fixed = [k for k in now if k.startswith("theta0_") or k == "alphas"]
        if any(not torch.equal(now[k].cpu(), saved["ensemble"][k]) for k in fixed):
            raise checkpoints.CheckpointMismatch(f"checkpoint {path} was written for another theta0 or alpha; "
                                                 "delete it to start that run again")
        self.ens.load_state_dict(saved["ensemble"])
        for k, v in saved["numbers"].items():
            self.state[k] = v.numpy()
        for k, vs in saved["tensors"].items():
            torch._foreach_copy_(self.state[k], vs)
        dev = self.params[0].device
        self.cur = None if saved["cur"] is None else Evaluation(**{
            k: v if k == "index" or v is None else [g.to(dev) for g in v] if isinstance(v, list) else v.to(dev)
            for k, v in saved["cur"].items()})
        self.batches, self.consumed = self.batch_stream(saved["batches"]), saved["batches"]
        torch.set_rng_state(saved["rng"])
        if saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        self.new, self.probe_s, self.elapsed0 = saved["new"], saved["probe_s"], saved["elapsed_s"]
        for k, (r, s) in enumerate(zip(self.runs, saved["runs"])):
            r.restore(s)
            if not r.live:
                self.live[k], self.weight[k] = False, 0.0


@dataclass
class _Checkpoint:
    """Where and how often one ``train`` call is checkpointed (:mod:`lazyhasty.dynamics.checkpoint`), and the
    fingerprint a checkpoint must match to be resumed from."""

    path: Path
    every_s: float
    resumable: bool  # continue from a checkpoint at ``path`` (always for a file; in a series, when it resumes)
    explicit: bool  # ``train(checkpoint=PATH)``: deleted when the run ends (a series' is kept, marked done)
    fingerprint: dict
    last: float = 0.0

    @classmethod
    def of(cls, engine: _Engine, checkpoint, every_s: float | None, named: bool) -> _Checkpoint | None:
        if checkpoint is None:
            return None
        series = isinstance(checkpoint, checkpoints.Checkpointing)
        path = checkpoint.next_path() if series else Path(checkpoint)
        every = every_s if every_s is not None else checkpoint.every_s if series else 60.0
        e = engine
        fingerprint = {
            "members": len(e.ens), "examples": len(e.train_set), "stepper": repr(e.stepper), "stop": repr(e.stop),
            "schedule": repr(e.schedule), "loss": type(e.loss).__name__, "data_seed": int(e.data_seed),
            "splits": {k: len(v) for k, v in e.splits.items()},
            "probes": [getattr(p, "__qualname__", type(p).__qualname__) for p in e.probes],
            "data": checkpoints.digest(*leaves(e.x), e.y, e.weights),
            "compile": e.compile_at if e.compiled is None else 0,  # paths round differently: a resume takes the same
            "run_ids": [r.run_id for r in e.runs] if named else None}
        return cls(path, every, not series or checkpoint.resume, not series, fingerprint, time.perf_counter())

    def resume(self, engine: _Engine) -> bool:
        """Continue from the checkpoint if there is one to resume from; returns whether that call had finished."""
        saved = checkpoints.load(self.path) if self.resumable else None
        if saved is None:
            return False
        checkpoints.check(saved["fingerprint"], self.fingerprint, self.path)
        engine.restore(saved, self.path)
        return saved["done"]

    def save(self, engine: _Engine, done: bool = False) -> None:
        checkpoints.save(self.path, {"fingerprint": self.fingerprint, **engine.saved(done)})
        self.last = time.perf_counter()

    def maybe_save(self, engine: _Engine, signalled: bool) -> None:
        """At the top of the loop: every ``every_s`` seconds (0: never), and when a signal is pending."""
        if self.every_s and (signalled or time.perf_counter() - self.last > self.every_s):
            self.save(engine)

    def end(self, engine: _Engine) -> None:
        """The call finished: an explicit file is deleted; in a block, its final state is kept (marked done) so
        that a resumed experiment skips the call."""
        if self.explicit:
            self.path.unlink(missing_ok=True)
        elif self.every_s:
            self.save(engine, done=True)
