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

from ..data.groups import Split
from ..data.inputs import chunks, leaves, take
from ..errors import Deferred, stopped_by
from ..metrics.progress import rises
from ..models.ensemble import Ensemble
from ..models.regimes import _Regime, running_stats
from . import checkpoint as checkpoints
from .losses import Loss, check_data, get_loss
from .probes import DEFAULT_PROBES, BatchContext, Probe, ProbeContext, Schedule
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


def fork(model: nn.Module) -> nn.Module:
    """An independent, bit-identical copy of ``model`` (same theta0) for a run in another regime."""
    return copy.deepcopy(model)


def seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model from ``factory`` with torch's RNG seeded by ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def tables(rows: list[tuple], trace: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long table (``METRIC_COLUMNS``; milestone as nullable integers) and the per-step trace of a run."""
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS).astype({"step": "int64", "milestone": "Int64"})
    return metrics, pd.DataFrame(trace, columns=TRACE_COLUMNS)


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
        return tables(self.rows, self.trace)

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


def _compiled(objective, ens: Ensemble, stepper: Stepper):
    """``train(compile=True)``: one torch.compile'd function of the stacked parameters P giving the gradient and value
    of ``objective`` and, for a stepper with a :meth:`~Stepper.proposal` and more than one member, writing the
    parameters after its step into Q (the step fused with the gradient computation; the engine's parameters move
    only when the stepper installs them, after the stopping rule has seen this point)."""
    if ens.linear:
        raise ValueError("compile=True needs plain or AlphaScaled members: a Linearized model's jvp and cached "
                         "linearisation are not compiled")
    fuse = len(ens) > 1 and type(stepper).proposal is not Stepper.proposal  # one member: params are views

    def step(P, Q, live, *args):
        g, aux = torch.func.grad_and_value(objective, has_aux=True)(P, *args)
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
        except Exception as e:  # no compiler, an unsupported platform, ...
            _CAN_COMPILE[device] = (False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return _CAN_COMPILE[device]


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
    run_id: str | Sequence[str] | None = None,
    record: RecordSink | Sequence[RecordSink | None] | None = None,
    progress: bool | None = None,
    flush_every_s: float = 5.0,
    on_step: Callable[[Evaluation], None] | None = None,
    weights: torch.Tensor | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float | None = None,
    compile: bool = False,
) -> TrainResult | list[TrainResult]:
    """Train a model, or every member of an :class:`Ensemble` at once, on ``train_set`` and measure it.

    Args:
        model: any module, usually a regime wrapper (``AlphaScaled``, ``Linearized``; its alpha sets the
            learning-rate scale 1/alpha^2), or an ``Ensemble`` of such modules.
        train_set: the training examples; also probed as split ``"train"``.
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
        weights: (E, n) example weights per member (0/1: a member's own training subset, as in C-score
            estimation); a member's loss is then sum_i w_i l_i / sum_i w_i over the batch.
        checkpoint: a file for the whole training state (:mod:`lazyhasty.dynamics.checkpoint`): the run continues
            from it when it exists, writes it every ``checkpoint_every_s`` seconds (default 60; 0: never) and
            when SIGTERM, SIGHUP, SIGINT or SIGUSR2 arrives, and deletes it when the run ends. Within a
            ``checkpointing`` block (``lazyhasty run``, sweep jobs) every call is checkpointed without this.
            The records of a resumed run are bit-identical to those of a run that never stopped (each resume is
            listed in its ``status.json``). A checkpoint of another call (stepper, budget, schedule, loss, data,
            theta0) is refused with :class:`~lazyhasty.dynamics.checkpoint.CheckpointMismatch`.
        compile: evaluate loss and gradients with one ``torch.compile``d ``torch.func`` function (plain and AlphaScaled
            members; for ``GD`` on an ensemble the step's new parameters too, installed only after the stopping rule
            has seen the point): a one-off compilation (5-20 s; a C++ compiler is needed on the CPU), then about
            1.8x the speed of eager steps on small networks, whose element-wise work it fuses
            (``benchmarks/ensemble.py``). The same numbers as eager up to rounding (tested in float64).

    Returns:
        A :class:`TrainResult` for a model (which then holds its final parameters), a list of them (one per
        member) for an ensemble (``ensemble.member(k)`` holds member k's final parameters).
    """
    single = not isinstance(model, Ensemble)
    ens = Ensemble([model]) if single else model
    E, n = len(ens), len(train_set)
    named = run_id is not None
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
    low = next((p.dtype for p in ens.params if p.dtype in (torch.bfloat16, torch.float16)), None)
    if low is not None and float(ens.alphas.max()) > 1:
        warnings.warn(f"training in {low} at alpha up to {float(ens.alphas.max()):g}: alpha (f - f0) multiplies the "
                      f"rounding of f - f0 ({torch.finfo(low).eps:.1g} of f in {low}) by alpha, so the lazy run is "
                      "much less accurate than in float32; use float32 or float64 for alpha > 1", stacklevel=2)
    runs: list[_Run] = []
    try:
        loss = get_loss(loss)
        schedule = schedule or Schedule()
        splits = {"train": train_set, **(splits or {})}
        params = ens.params
        inv_alpha2 = 1.0 / ens.alphas**2  # (E,): eta / alpha^2, the one place the rule lives (see evaluate)
        live = torch.ones(E, dtype=torch.bool, device=inv_alpha2.device)
        weight = inv_alpha2.clone()  # 1 / alpha_k^2 for a member still training, 0 once it has stopped
        state = stepper.init_state(params)

        def batch_stream(skip: int):  # the batch order is a function of data_seed: replayed up to a position
            stream = stepper.batches(n, torch.Generator().manual_seed(int(data_seed)))
            for _ in range(skip):
                next(stream)
            return stream

        batches, consumed = batch_stream(0), 0
        smooth = schedule.smoothing if schedule.smoothing is not None else (0.0 if stepper.full_batch else 0.9)

        def per_example(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            """(E, m, ...) outputs and (m, ...) targets -> (E m,) losses, member by member."""
            m = y.shape[0]
            per = loss(out.flatten(0, 1), y if E == 1 else y.expand(E, *y.shape).flatten(0, 1))
            if per.shape != (E * m,):
                raise ValueError(f"loss {type(loss).__name__} returned shape {tuple(per.shape)} for {m} examples; a "
                                 "loss must return one value per example")
            return per

        def mean_loss(per: torch.Tensor, index) -> torch.Tensor:
            """(E m,) -> (E,): each member's mean loss over the batch (weighted: sum w_i l_i / sum w_i)."""
            if weights is None:
                return per.mean()[None] if E == 1 else per.view(E, -1).mean(1)
            w = weights if index is None else weights[:, index]
            return (per.view(E, -1) * w).sum(1) / w.sum(1).clamp_min(1e-12)

        def objective(P, f0, x, y, weight, index):
            """sum_k L_k / alpha_k^2 over the live members k, as a pure function of the stacked parameters P."""
            out = ens.outputs(P, f0, (x,), {})  # (E, m, ...)
            per = per_example(out, y)  # (E m,)
            mean = mean_loss(per, index)  # (E,)
            return mean @ weight, (mean, out, per)

        compiled, fused = _compiled(objective, ens, stepper) if compile else (None, False)
        scratch = {k: torch.empty_like(p) for k, p in zip(ens._names, params)} if fused else {}
        f0_full: dict[bool, torch.Tensor | None] = {}  # f_theta0 on the whole training set, per mode

        def evaluate(index: torch.Tensor | None = None) -> Evaluation:
            """Every member at once. Stopped or diverged members are masked out of everything a stepper sees (loss,
            gradients, outputs), so that one member's NaN never reaches another's update."""
            x, y = (train_set.x, train_set.y) if index is None else (take(train_set.x, index), train_set.y[index])
            if compiled is not None:
                P = {k: p.detach() for k, p in zip(ens._names, params)}  # leaves that require grad would make the
                with ens.evaluating():  # compiled graph a training graph, saving activations for nothing
                    f0 = f0_full.get(ens.training) if index is None else None
                    if f0 is None:
                        f0 = ens.f0(x)
                        if index is None:
                            f0_full[ens.training] = f0
                    g, (_, (mean, out, per)) = compiled(P, scratch, live, f0, x, y, weight, index)
                grads = [g[k] for k in ens._names]
                proposal = [scratch[k] for k in ens._names] if fused else None
            else:
                out = ens(x)  # (E, m, ...)
                per = per_example(out, y)  # (E m,)
                mean = mean_loss(per, index)  # (E,)
                grads = ens.gradients(mean @ weight)  # d/dtheta of sum_k L_k / alpha_k^2 over the live members k
                proposal = None
            out = out.detach()
            if not all_live:
                grads = [torch.where(per_member(live, g), g, 0.0) for g in grads]
                out = torch.where(per_member(live, out), out, 0.0)
            return Evaluation(mean.detach(), grads, out, per.detach().view(E, -1), live, index, proposal)

        with torch.no_grad():
            out0 = torch.cat([ens(xb) for xb in chunks(train_set.x, 4096)], dim=1)
            for name, split in splits.items():
                check_data(loss, tuple(out0.shape[2:]), split, name)
            loss0 = mean_loss(per_example(out0, train_set.y).double(), None).cpu().numpy()
        runs = [_Run(rid, sink, schedule.milestones(float(l0)), float(l0)) for rid, sink, l0 in zip(ids, sinks, loss0)]
        all_live, probe_s, wall0, elapsed0 = True, 0.0, time.perf_counter(), 0.0
        cur: Evaluation | None = None
        new = list(range(E))  # members at a point not yet recorded

        ctx = checkpoints.current()
        ckpt_path = Path(checkpoint) if checkpoint is not None else ctx.next_path() if ctx is not None else None
        every = checkpoint_every_s if checkpoint_every_s is not None else ctx.every_s if ctx is not None and \
            checkpoint is None else 60.0
        fingerprint = None if ckpt_path is None else {
            "members": E, "examples": n, "stepper": repr(stepper), "stop": repr(stop), "schedule": repr(schedule),
            "loss": type(loss).__name__, "data_seed": int(data_seed), "splits": {k: len(v) for k, v in splits.items()},
            "probes": [getattr(p, "__qualname__", type(p).__qualname__) for p in probes],
            "data": checkpoints.digest(*leaves(train_set.x), train_set.y, weights),
            "run_ids": ids if named else None}
        saved = None if ckpt_path is None or (checkpoint is None and not ctx.resume) else \
            checkpoints.load(ckpt_path)

        def snapshot(done: bool = False) -> None:
            """Write the whole state (at the top of the loop, where it is whole) atomically."""
            checkpoints.save(ckpt_path, {
                "fingerprint": fingerprint, "done": done, "ensemble": ens.state_dict(),
                "numbers": {k: torch.from_numpy(v) for k, v in state.items() if isinstance(v, np.ndarray)},
                "tensors": {k: v for k, v in state.items() if isinstance(v, list)},
                "cur": None if cur is None else vars(cur), "batches": consumed, "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
                "runs": [r.state() for r in runs], "new": new, "probe_s": probe_s,
                "elapsed_s": elapsed0 + time.perf_counter() - wall0})

        if saved is not None:  # continue from the checkpoint: every piece of state, then each run's record
            checkpoints.check(saved["fingerprint"], fingerprint, ckpt_path)
            now = ens.state_dict()
            fixed = [k for k in now if k.startswith("theta0_") or k == "alphas"]
            if any(not torch.equal(now[k].cpu(), saved["ensemble"][k]) for k in fixed):
                raise checkpoints.CheckpointMismatch(f"checkpoint {ckpt_path} was written for another theta0 or "
                                                     "alpha; delete it to start that run again")
            ens.load_state_dict(saved["ensemble"])
            for k, v in saved["numbers"].items():
                state[k] = v.numpy()
            for k, vs in saved["tensors"].items():
                torch._foreach_copy_(state[k], vs)
            dev = params[0].device
            cur = None if saved["cur"] is None else Evaluation(**{
                k: v if k == "index" or v is None else [g.to(dev) for g in v] if isinstance(v, list) else v.to(dev)
                for k, v in saved["cur"].items()})
            batches, consumed = batch_stream(saved["batches"]), saved["batches"]
            torch.set_rng_state(saved["rng"])
            if saved["cuda_rng"]:
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
            new, probe_s, elapsed0 = saved["new"], saved["probe_s"], saved["elapsed_s"]
            for k, (r, s) in enumerate(zip(runs, saved["runs"])):
                r.restore(s)
                if not r.live:
                    live[k], weight[k] = False, 0.0
            all_live = all(r.live for r in runs)

        mode_free = _mode_free(ens)  # the same outputs in train and eval mode: no switching, the step's outputs reused
        group_cache: dict = {}
        whole = any(not hasattr(p, "batched") for p in probes)  # a probe needs each member as a module (a copy)

        def measure(todo: dict[int, int | None]) -> dict[int, ProbeContext]:
            """Run the probes for each member k in ``todo`` (k -> milestone). Outputs are computed once for all
            members (or, for a full-batch step of a network that computes the same in eval mode, taken from the
            step's own forward pass); probes with a ``batched`` form run once for all members in ``todo``."""
            nonlocal probe_s
            t0 = time.perf_counter()
            was = ens.training
            switch = was and not mode_free
            if switch:
                ens.eval()
            stacked: dict[str, torch.Tensor] = {}
            reuse = mode_free and stepper.full_batch and cur is not None and cur.index is None

            def source(name: str) -> torch.Tensor:
                if name not in stacked:
                    if reuse and name == "train":
                        stacked[name] = cur.out
                    else:
                        with torch.no_grad():
                            stacked[name] = torch.cat([ens(xb) for xb in chunks(splits[name].x, 4096)], dim=1)
                return stacked[name]

            ks = list(todo)
            ix = torch.tensor(ks, device=params[0].device)
            ctxs = {}
            try:
                batch = BatchContext(ks, splits, loss, lambda name: source(name)[ix],
                                     [q.detach()[ix] for q in params], [q[ix] for q in ens.stacked_params0().values()],
                                     group_cache, None if weights is None else weights[ix])
                done = {id(probe): probe.batched(batch) for probe in probes if hasattr(probe, "batched")}
                for pos, (k, milestone) in enumerate(todo.items()):
                    r = runs[k]
                    ctx = ProbeContext(ens.member(k) if whole else None, splits, loss, r.step, r.t,
                                       ens.params0(k) if whole else {}, milestone, r.run_id,
                                       source=lambda name, k=k: source(name)[k])
                    for probe in probes:
                        rows = done[id(probe)][pos] if id(probe) in done else probe(ctx)
                        for split, group, metric, value in rows:
                            r.rows.append((r.run_id, r.step, r.t, milestone, split, group, metric, float(value)))
                    ctxs[k] = ctx
            finally:
                if switch:
                    ens.train(was)
            probe_s += time.perf_counter() - t0
            return ctxs

        def finish(k: int, cur: Evaluation | None) -> None:
            """Run k has ended: freeze its member (zero gradient and stepper state), write its tables and status."""
            nonlocal all_live
            r = runs[k]
            r.live, all_live = False, False
            live[k], weight[k] = False, 0.0
            with torch.no_grad():
                for t in [*(cur.grads if cur is not None else []), *(v for vs in state.values() if isinstance(vs, list)
                                                                      for v in vs)]:
                    t[k].zero_()
                for p, q in zip(params, cur.proposal if cur is not None and cur.proposal is not None else []):
                    q[k].copy_(p[k])  # its proposed step is not taken
            if r.converged is None and r.status == "complete" and stop.targets:
                r.converged = False
            r.info = {key: v[k].item() for key, v in state.items() if isinstance(v, np.ndarray)}
            r.wall_s, r.probe_s = elapsed0 + time.perf_counter() - wall0, probe_s
            r.final = dict(converged=r.converged, steps=r.step, t=r.t, wall_s=round(r.wall_s, 3),
                           probe_s=round(probe_s, 3), alpha=float(ens.alphas[k]), loss0=r.loss0, ensemble_size=E,
                           **r.info)
            r.flush()
            if r.sink is not None:
                r.sink.set_status(r.status, r.reason, **r.final)
                r.closed = True

        def stop_reason(r: _Run, outputs: Callable[[], torch.Tensor | None],
                        measured: bool) -> tuple[str, bool | None]:
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
                    return "reached " + ", ".join(f"{s}/{g}/{m} {now[(s, g, m)]:.4g} ({'>=' if rises(m) else '<='} "
                                                  f"{v:g})" for s, g, m, v in stop.reach), True
            if stop.min_margin is not None:
                out = outputs()
                if out is not None and float(loss.margin(out, train_set.y).min()) >= stop.min_margin:
                    return f"every training margin >= {stop.min_margin:g}", True
            if stop.max_steps is not None and r.step >= stop.max_steps:
                return f"reached max_steps = {stop.max_steps}", None
            if stop.max_time is not None and r.t >= stop.max_time:
                return f"reached max_time = {stop.max_time:g}", None
            return "", None

        # a full-batch step's loss is the training loss: once it has reached a Stop.reach target on it, measure at
        # every step, so that the run stops where the measured value reaches the target, not at a later point
        near = next((v for s_, g_, m_, v in stop.reach if (s_, g_, m_) == ("train", "all", "loss")), None) \
            if stepper.full_batch else None
        last_flush = last_checkpoint = time.perf_counter()
        shown = Progress(ids[0] if single else f"ensemble of {E}", progress)
        last_shown = 0.0
        done = saved is not None and saved["done"]  # a call that had finished: nothing left to train
        signals = Deferred()
        try:
            while not done:
                if ckpt_path is not None and every and (signals.pending is not None
                                                        or time.perf_counter() - last_checkpoint > every):
                    snapshot()
                    last_checkpoint = time.perf_counter()
                if signals.pending is not None:
                    signals.act()  # SIGINT / SIGTERM / SIGHUP stop here, at a whole state, with its checkpoint
                if cur is None:
                    cur = evaluate(next(batches))
                    consumed += 1
                if on_step is not None and new:
                    on_step(cur)
                losses = cur.loss.tolist()  # one host sync per step
                todo, ending = {}, []
                for k in new:
                    r, value = runs[k], losses[k]
                    r.trace.append((r.step, r.t, value, r.dt))
                    if not math.isfinite(value):
                        r.status, r.reason = "diverged", f"non-finite training loss at step {r.step} (t = {r.t:.4g})"
                        todo[k] = None
                        ending.append(k)
                        continue
                    r.smoothed = value if smooth == 0 else smooth * r.smoothed + (1 - smooth) * value
                    m = r.milestones.update(r.smoothed) if r.milestones is not None else None
                    if m is not None or schedule.log_step(r.step) or (near is not None and r.smoothed <= near):
                        todo[k] = m
                ctxs = measure(todo) if todo else {}
                if ctxs:  # parameters are checked at measurement points (of the members measured)
                    ix = torch.tensor(list(ctxs), device=params[0].device)
                    finite = dict(zip(ctxs, torch.stack([torch.isfinite(p.detach()[ix]).flatten(1).all(1)
                                                         for p in params]).all(0).tolist()))
                for k in [k for k in new if k not in ending]:
                    r, ctx = runs[k], ctxs.get(k)
                    if ctx is not None and not finite[k]:
                        r.status, r.reason = "diverged", f"non-finite parameters at step {r.step} (t = {r.t:.4g})"
                    else:  # a minibatch run's margins are checked on the full training set, at measurement points
                        r.reason, r.converged = stop_reason(r, lambda k=k, out=cur.out, ctx=ctx: (
                            out[k] if stepper.full_batch else ctx.outputs("train") if ctx else None), ctx is not None)
                    if r.reason:
                        ending.append(k)
                last = {k: None for k in ending if k not in ctxs}
                if last:
                    measure(last)  # every run is measured at its last point
                for k in ending:
                    finish(k, cur)
                if all_live is False and not any(r.live for r in runs):
                    break
                dt, cur = stepper.step(params, cur, evaluate, state)
                if np.isscalar(dt):  # a discrete step: every live member moved by dt
                    new = [k for k, r in enumerate(runs) if r.live]
                    for k in new:
                        r = runs[k]
                        r.step, r.t, r.dt = r.step + 1, r.t + dt, dt
                else:  # one dt per member, 0 where a trial was rejected
                    new = [k for k, (d, r) in enumerate(zip(dt.tolist(), runs)) if d > 0 and r.live]
                    for k in new:
                        r = runs[k]
                        r.step, r.t, r.dt = r.step + 1, r.t + float(dt[k]), float(dt[k])
                if shown.on and time.perf_counter() - last_shown > 0.5:  # how far towards the stopping rule
                    last_shown = time.perf_counter()
                    fractions = [(run_fraction(r.step, r.t, r.smoothed, r.loss0, stop), r) for r in runs if r.live]
                    if fractions:
                        f, r = min(fractions, key=lambda fr: fr[0])
                        shown.update(f, f"step {r.step}, t {r.t:.4g}, loss {r.smoothed:.4g}"
                                     + (f" (target {stop.loss_below:g})" if stop.loss_below is not None else "")
                                     + ("" if single else f", {len(fractions)} of {E} runs training"))
                if time.perf_counter() - last_flush > flush_every_s:
                    for r in runs:
                        if r.live:
                            r.flush()
                    last_flush = time.perf_counter()
        finally:
            shown.close()
            for k in range(E):
                ens.member(k)  # every member's module holds its final parameters
            signals.restore()
        if ckpt_path is not None and not done:
            if checkpoint is None and every:  # in a checkpointing block: kept, so that a resumed experiment skips it
                snapshot(done=True)
            elif checkpoint is not None:
                ckpt_path.unlink(missing_ok=True)
    except BaseException as e:  # every run still open gets a final status saying why, and keeps what it measured
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
                pass  # nowhere left to write; the exception below still reaches the caller
        raise
    results = [TrainResult(r.status, r.reason, r.converged, r.step, r.t, *r.tables(), r.wall_s, r.probe_s, r.info)
               for r in runs]
    return results[0] if single else results
