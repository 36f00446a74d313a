"""Regimes compared at equal training progress (George et al. 2022): the one comparison path of the package.

:func:`compare_regimes` trains, for every seed, each :class:`Regime` (``AlphaScaled(model, alpha)`` or
``Linearized(model)``, with its own stepper and budget if it needs one) from one initialisation and one minibatch
order, every run until the progress measure reaches the target, and hands the records to :func:`compare_runs`.
:func:`compare_runs` is the comparison itself, for any long table of runs (trained, read back from records, or
closed-form curves): every metric interpolated at equal values of the progress measure, the gap between the
feature and the lazy regime per group with a bootstrap interval over seeds, and the claims it earns
(:meth:`Comparison.answer`): held or not held only when the runs reached the target and stayed in their regimes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .claims import (
    MEASURES,
    bootstrap_interval,
    claim,
    earned,
    linearity_line,
    linearity_verdict,
    missed_note,
    stays_linear_claim,
)
from .claims import write as write_claims
from .data.groups import Split
from .data.inputs import chunks, take
from .dynamics.losses import MSE, Loss, check_data, get_loss
from .dynamics.probes import LinearityProbe, Schedule, loss_probe, parameter_distance_probe
from .dynamics.steppers import Stepper
from .dynamics.train import Stop, TrainResult, same_init, seeded, train
from .errors import FolderInUse, UsageError
from .files import atomic_write, make_folder
from .metrics.linearity import LINEAR_LEVEL
from .metrics.progress import at_equal_progress, rises
from .models.ensemble import Ensemble
from .models.regimes import AlphaScaled, Linearized, frozen_stats
from .runs.output import records_in
from .runs.records import Output, RunRecord, environment

LINEARITY = ("ntk_alignment", "sign_similarity", "representation_alignment", "ntk_distance")


@dataclass(frozen=True)
class Regime:
    """One regime of a comparison: ``AlphaScaled(model, alpha)``, or ``Linearized(model)`` for ``alpha=None`` (the
    exact alpha -> infinity limit). ``stepper`` / ``stop``: its own, where it needs another rate or budget than the
    comparison's (the lazy regime tolerates a larger rate and needs more steps; progress, not time, is the axis);
    ``name``: its label (default ``alpha=<a>`` or ``linearized``)."""

    alpha: float | None = 1.0
    stepper: Stepper | None = None
    stop: Stop | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or ("linearized" if self.alpha is None else f"alpha={self.alpha:g}")


@dataclass
class Comparison:
    """What :func:`compare_runs` (and :func:`compare_regimes`) return.

    Attributes:
        table: tidy, one row per (seed, regime, split, group, progress level): ``seed, regime, alpha, split, group,
            progress, reached`` (the run got that far), ``loss``, ``accuracy`` (classification), and the run's
            linearity metrics at that progress; NaN where the run did not reach the level.
        verdict: one row per (split, group): the gap ``feature - lazy`` of the measure (``settings["measure"]``) at
            equal progress, averaged over the levels both regimes reached in every seed (``per_seed``), its
            bootstrap interval over seeds, and ``ahead``: ``feature`` (the feature regime learns the group first:
            lower loss, higher accuracy), ``lazy``, ``neither`` (the interval contains 0) or ``not measured``.
        by_level: the same per progress level.
        metrics: the long table of every run (``load_runs`` layout, with ``seed``, ``regime``, ``alpha``).
        runs: one row per run: ``run_id, seed, regime, alpha, status, converged`` (False: missed its target).
        settings: what was compared (regimes, feature, lazy, progress, measure, target, seeds, ...).
    """

    table: pd.DataFrame
    verdict: pd.DataFrame
    by_level: pd.DataFrame
    metrics: pd.DataFrame
    runs: pd.DataFrame
    settings: dict
    results: dict[str, TrainResult] = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def feature(self) -> str:
        return self.settings["feature"]

    @property
    def lazy(self) -> str:
        return self.settings["lazy"]

    def missed(self) -> list[str]:
        """The runs that ended without reaching their target (``converged`` False: its budget ran out, or it
        diverged): the one missed-target rule. A claim resting on such a run is not measured."""
        return sorted(self.runs.run_id[self.runs.converged.map(lambda c: c is False or c == 0)])

    def stays_linear(self, level: float = LINEAR_LEVEL) -> dict:
        """:func:`lazyhasty.claims.linearity_verdict` of the feature and the lazy run of every seed (closed forms:
        in their regimes by construction)."""
        if self.settings.get("exact") and not self.metrics.metric.isin(MEASURES).any():
            return {"held": True, "level": float(level), "measures": [], "per_pair": {}, "moved": {},
                    "note": "closed forms: the linear curves are the linearised dynamics themselves"}
        ids = self.runs.set_index(["seed", "regime"]).run_id
        lazy = [ids[(s, self.lazy)] for s in self.settings["seeds"]]
        exact = [r for r in lazy if self.runs.set_index("run_id").alpha.get(r) == np.inf]
        verdict = linearity_verdict(self.metrics, {f"seed {s}": (ids[(s, self.feature)], ids[(s, self.lazy)])
                                                   for s in self.settings["seeds"]}, level,
                                    self.settings.get("linearity_measures") or MEASURES, exact,
                                    self.settings.get("linearity_why", ""))
        missed = self.missed()  # the regimes are judged over the training to the target: all of it, or nothing
        if len(missed):
            verdict = {**verdict, "held": None, "note": "; ".join(filter(None, (missed_note(missed), verdict["note"])))}
        return verdict

    def gaps(self, a: str, b: str, split: str, group: str, absolute: bool = False,
             measure: str | None = None) -> tuple[np.ndarray, list[float]]:
        """Per seed, the mean over the progress levels that both regimes reached in every seed of measure(a) -
        measure(b) on (split, group) (its absolute value with ``absolute``). Returns (per-seed values in seed
        order, the levels used); empty when no level was reached by both in every seed."""
        col = measure or self.settings["measure"]
        if col not in self.table or not len(self.table):
            return np.array([]), []
        t = self.table[(self.table.split == split) & (self.table.group == group) & self.table.regime.isin([a, b])]
        unknown = [r for r in (a, b) if r not in self.settings["regimes"]]
        if unknown:
            raise KeyError(f"no regime {unknown[0]!r}; regimes: {', '.join(self.settings['regimes'])}")
        piv = t.pivot_table(index=["progress", "seed"], columns="regime", values=col, dropna=False).reindex(
            columns=[a, b])  # a run without usable progress has no rows: NaN, no level
        d = (piv[a] - piv[b]).unstack("seed")  # (levels, seeds)
        ok = d.notna().all(axis=1) & (d.shape[1] == len(self.settings["seeds"]))
        d = d[ok]
        if absolute:
            d = d.abs()
        return d.mean(axis=0).to_numpy(), sorted(d.index, reverse=not self.rising)

    @property
    def rising(self) -> bool:
        return rises(self.settings["progress"][2])

    def judged(self, id: str, text: str, source: str,
               verdict: Callable[[Comparison], tuple[bool | None, dict]], **numbers) -> dict:
        """A claim from any statistic of the comparison: ``verdict(comparison) -> (held, numbers)``. With a second
        lazy run at another rate (``settings["rate_check"]``), the verdict is taken again with it as the lazy run
        (``numbers.rate_check``): a per-regime rate is allowed only where it does not change the answer. The claim
        is earned only where both verdicts agree, the runs stayed in their regimes and reached their targets."""
        held, found = verdict(self)
        own_note = found.pop("note", "")
        rate, note = {"done": False}, missed_note(self.missed()) or own_note
        other = self.settings.get("rate_check")
        if other:
            if "other" not in self._cache:
                self._cache["other"] = self.on(lazy=other)
            held2, found2 = verdict(self._cache["other"])
            rate = {"done": True, "other_lazy_run": other, "held_with_other": held2,
                    "same_verdict": held2 == held and self._cache["other"].stays_linear()["held"] is True,
                    **{f"{k}_with_other": v for k, v in found2.items() if k in ("gap", "interval", "ahead")}}
            if not rate["same_verdict"]:
                held = None
                note = missed_note(self.missed()) or "not measured: the verdict changes with the lazy run's rate"
        return claim(id, text, source, earned(held, self.stays_linear(), self.missed()),
                     **found, **numbers, rate_check=rate, note=note)

    def answer(self, id: str, text: str, source: str, split: str, group: str, expect: str = "feature",
               **numbers) -> dict:
        """The claim that ``expect`` (``"feature"`` or ``"lazy"``) is ahead on (split, group) at equal progress
        (:meth:`judged`): held when the bootstrap interval of the gap says so, not held when it says the other or
        contains 0, with the evidence (the gap per seed and per level, the levels, the progress range)."""
        def verdict(c: Comparison) -> tuple[bool | None, dict]:
            v = c.verdict.set_index(["split", "group"]).loc[(split, group)]
            lv = c.by_level[(c.by_level.split == split) & (c.by_level.group == group)]
            return None if v.ahead == "not measured" else v.ahead == expect, dict(
                gap=v.gap, interval=[v.ci_low, v.ci_high], ahead=v.ahead, expected=expect,
                per_seed=v.per_seed if isinstance(v.per_seed, list) else [],
                levels=None if pd.isna(v.levels) else int(v.levels),
                progress=f"{'/'.join(c.settings['progress'])} from {v.progress_from:.4g} to {v.progress_to:.4g}",
                ahead_per_level=lv.ahead.value_counts().to_dict(), note=v.note)

        return self.judged(id, text, source, verdict, **numbers)

    def claims(self, source: str = "George et al. 2022, sections 2.2 and 3") -> list[dict]:
        """``stays_linear``, then per (split, group) ``feature_first@split/group``."""
        out = [stays_linear_claim(self.stays_linear(), self.feature, self.lazy)]
        measure = self.settings["measure"]
        for r in self.verdict.itertuples():
            if r.ahead != "progress measure":
                out.append(self.answer(f"feature_first@{r.split}/{r.group}", f"At equal "
                                       f"{'/'.join(self.settings['progress'])}, {self.feature} has the "
                                       f"{'higher' if rises(measure) else 'lower'} {measure} on {r.split}/{r.group} "
                                       f"than {self.lazy}", source, r.split, r.group))
        return out

    def on(self, progress: tuple[str, str, str] | None = None, *, feature: str | None = None,
           lazy: str | None = None, target: float | None = None,
           levels: int | Sequence[float] | None = None) -> Comparison:
        """The same runs compared along another progress measure (e.g. a test split's; ``target``: its end) or
        between another pair of regimes (same levels)."""
        s = self.settings
        same = progress is None or list(progress) == s["progress"]
        return compare_runs(self.metrics, self.runs, progress=tuple(s["progress"] if same else progress),
                            feature=feature or s["feature"], lazy=lazy or s["lazy"],
                            target=s["target"] if same and target is None else target,
                            levels=s["levels"] if levels is None else levels, confidence=s["confidence"],
                            exact=s["exact"], settings=s, results=self.results)

    def summary(self) -> str:
        """The verdict as readable lines."""
        s = self.settings
        lines = [f"comparison: {s['feature']} (feature) vs {s['lazy']} (lazy), {len(s['seeds'])} seed(s), at equal "
                 f"{'/'.join(s['progress'])}; gap = {s['measure']}({s['feature']}) - {s['measure']}({s['lazy']}), "
                 f"{s['confidence']:.0%} bootstrap interval over seeds"]
        for r in self.verdict.itertuples():
            if r.ahead == "progress measure":
                continue
            if r.ahead == "not measured":
                lines.append(f"  {r.split}/{r.group}: not measured ({r.note})")
            else:
                lines.append(f"  {r.split}/{r.group}: gap {r.gap:+.4g} [{r.ci_low:+.4g}, {r.ci_high:+.4g}] over "
                             f"progress {r.progress_from:.4g} -> {r.progress_to:.4g}: {r.ahead} ahead"
                             + (f" ({r.note})" if r.note else ""))
        lines.append("  " + linearity_line(self.stays_linear()))
        if self.missed():
            lines.append("  " + missed_note(self.missed()))
        return "\n".join(lines)

    def plot(self, groups: Sequence[str] | None = None):
        """Per-group measure against progress for every regime (mean over seeds; ``groups``: only these) and the
        linearity curves."""
        from .plotting.compare import comparison_figure

        return comparison_figure(self.table, self.settings, None if groups is None else list(groups))

    def save(self, folder: str | Path, claims: bool = True) -> Path:
        """Write the comparison to ``folder`` (which must hold no other records): the run records (``runs/<id>/``),
        ``table.parquet``, ``verdict.csv``, ``by_level.parquet``, ``comparison.png`` and, with ``claims`` (unless
        an experiment owns the folder or one above it, and writes its own), ``claims.json``, ``summary.txt`` and
        ``experiment.json`` (so that ``lazyhasty report`` lists it)."""
        folder = Path(folder)
        if records_in(folder) is not None and not all((folder / "runs" / r).is_dir() for r in self.results):
            raise FolderInUse(f"{folder} already holds other records ({records_in(folder)}); save to an empty folder")
        make_folder(folder)
        for rid, res in self.results.items():  # records written while training are already there
            path = folder / "runs" / rid
            if not (path / "status.json").exists():
                info = self.runs.set_index("run_id").loc[rid]
                rec = RunRecord(path).start(self.settings, seed=int(info.seed), regime=info.regime,
                                            alpha=float(info.alpha))
                rec.write(res.metrics, res.trace)
                rec.set_status(res.status, res.reason, converged=res.converged, steps=res.steps, t=res.t,
                               wall_s=res.wall_s)
        atomic_write(folder / "table.parquet", lambda tmp: self.table.to_parquet(tmp, index=False))
        atomic_write(folder / "by_level.parquet", lambda tmp: self.by_level.to_parquet(tmp, index=False))
        atomic_write(folder / "verdict.csv", self.verdict.to_csv(index=False))
        from .plotting.curves import save_figure

        save_figure(self.plot(), folder / "comparison", formats=("png",))
        owned = any((p / f).exists() for p in (folder.resolve(), *folder.resolve().parents)
                    for f in ("experiment.json", "job.json"))  # an experiment's or a sweep job's folder
        if claims and not owned:
            write_claims(folder, "compare", self.claims(), self.summary())
            atomic_write(folder / "experiment.json", {"experiment": "compare", "status": "complete",
                                                      "config": self.settings, "env": environment()})
        return folder


def _check_inputs(model: nn.Module, train_set: Split, splits: dict[str, Split], loss: Loss,
                  progress: tuple[str, str, str] = ("train", "all", "loss")) -> None:
    """Bad input gets a clear error before anything trains."""
    for name, split in splits.items():
        if not isinstance(split, Split):
            raise UsageError(f"split {name!r} must be a lazyhasty.Split (x, y, groups), got {type(split).__name__}")
        groups = split.groups  # of this split's examples (a Split checks that once, and is frozen)
        covered = torch.zeros(len(split), dtype=torch.bool)
        for g in groups:
            idx = groups[g]
            if idx.numel() == 0:
                raise UsageError(f"split {name!r}: group {g!r} is empty")
            covered[idx.cpu()] = True
        if len(groups) and not bool(covered.all()):
            raise UsageError(f"split {name!r}: its groups ({', '.join(groups)}) leave {int((~covered).sum())} of "
                             f"{len(split)} examples in no group; give every example a group (e.g. "
                             "Groups.from_labels(labels))")
    split, group, metric = progress
    splits = {"train": train_set, **splits}
    if split not in splits or (group != "all" and group not in splits[split].groups):
        raise UsageError(f"progress {'/'.join(progress)}: no split {split!r} with group {group!r} (splits: "
                         + "; ".join(f"{k}: {', '.join(['all', *v.groups])}" for k, v in splits.items()) + ")")
    if metric not in ("loss", "accuracy", "margin") or (metric == "accuracy" and isinstance(loss, MSE)):
        raise UsageError(f"progress {'/'.join(progress)}: the metric must be loss, margin or (classification) "
                         "accuracy")
    with torch.no_grad(), frozen_stats(model):  # the model is seed 0's theta0: its batch-norm statistics stay
        out = model(take(train_set.x, slice(0, 2)))
    try:
        per = loss(out, train_set.y[:2])
    except (ValueError, RuntimeError, IndexError, TypeError) as e:
        raise UsageError(f"loss {type(loss).__name__} cannot take the model's outputs of shape {tuple(out.shape)} "
                         f"with targets of shape {tuple(train_set.y[:2].shape)}: {e}") from None
    if per.shape != (2,):
        raise UsageError(f"loss {type(loss).__name__} returned shape {tuple(per.shape)} for 2 examples; it must "
                         "return one value per example")
    for name, s in splits.items():
        check_data(loss, tuple(out.shape[1:]), s, name)


def _check_target(model: nn.Module, splits: dict[str, Split], loss: Loss, progress: tuple[str, str, str],
                  target: float) -> None:
    """Refuse a target the runs start at (every run would stop at step 0) or can never reach (an accuracy above 1):
    the progress measure of seed 0's network at theta0 (every regime starts from its outputs)."""
    split, group, metric = progress
    s = splits[split]
    with torch.no_grad(), frozen_stats(model):
        out = torch.cat([model(xb) for xb in chunks(s.x, 4096)])
    per = {"loss": loss, "accuracy": lambda o, y: loss.correct(o, y).double(), "margin": loss.margin}[metric](out, s.y)
    start = float(per[s.groups[group]].mean() if group != "all" else per.mean())
    rises = metric != "loss"
    reached = target <= start if rises else target >= start
    if reached or (metric == "accuracy" and target > 1):
        raise UsageError(f"target {target:g} on {'/'.join(progress)} is " + (
            f"already reached at initialisation ({start:.4g}): every run would stop at step 0; give a "
            f"{'higher' if rises else 'lower'} target" if reached else "never reachable (an accuracy is at most 1)"))


def _regimes(alphas, regimes, linearized, stepper, stop) -> list[Regime]:
    """The regimes to train, each with its stepper and budget, checked."""
    if regimes is not None:
        out = [r if isinstance(r, Regime) else Regime(float(r)) for r in regimes]
    else:
        alphas = [float(a) for a in alphas]
        out = [Regime(a) for a in sorted(alphas)] + ([Regime(None)] if linearized else [])
    for r in out:
        if r.alpha is not None and not (np.isfinite(r.alpha) and r.alpha > 0):
            raise UsageError(f"every alpha must be a finite number > 0, got {r.alpha}")
    labels = [r.label for r in out]
    bad = [lb for lb in labels if not re.fullmatch(r"[A-Za-z0-9=.,_+]+", lb)]
    if bad:
        raise UsageError(f"regime names become run folders: use letters, digits and = . , _ + only, got {bad}")
    if len(set(labels)) != len(labels):
        raise UsageError(f"regimes must be distinct (name them: Regime(..., name=)); got {labels}")
    if len(out) < 2:
        raise UsageError("a comparison needs two regimes: at least two alphas, or one alpha and linearized=True")
    resolved = []
    for r in out:
        st, sp = r.stepper or stepper, r.stop or stop
        if not isinstance(st, Stepper) or not isinstance(sp, Stop):
            raise UsageError(f"regime {r.label}: give a stepper (a lazyhasty stepper, e.g. SGD) and a stop (a "
                             "lazyhasty.Stop budget), for the comparison or for this regime")
        if sp.loss_below is not None or sp.min_margin is not None or sp.reach:
            raise UsageError(f"regime {r.label}: a comparison stops every run on its progress measure: give "
                             f"compare_regimes(..., target=) instead of a target in Stop ({sp!r}); Stop holds the "
                             "budget")
        resolved.append(replace(r, stepper=st, stop=sp))
    return resolved


def compare_regimes(model_factory: Callable[[], nn.Module], train_set: Split, *, test: Split | None = None,
                    alphas: Sequence[float] = (1.0, 100.0), regimes: Sequence[Regime | float] | None = None,
                    linearized: bool = False, loss: Loss | str, stepper: Stepper | None = None,
                    stop: Stop | None = None, target: float | None = None, seeds: Sequence[int] = (0, 1, 2),
                    splits: Mapping[str, Split] | None = None,
                    progress: tuple[str, str, str] = ("train", "all", "loss"), feature: str | None = None,
                    lazy: str | None = None, rate_check: str | None = None,
                    levels: int | Sequence[float] = 12, schedule: Schedule | None = None,
                    probe_size: int = 256, linearity: bool = True, confidence: float = 0.95,
                    out: str | Path | Output | None = None, show_progress: bool | None = None) -> Comparison:
    """Train every regime from the same initialisation and minibatch order, for every seed, and compare them at
    equal training progress (George et al. 2022, sections 3-4).

    Args:
        model_factory: called under ``seeded(model_factory, seed)``: returns the network (an ``nn.Module``).
        train_set: the training examples with their groups (every example in at least one group, or no groups).
        test: a test split (probed as ``"test"``); ``splits``: further probe splits by name.
        alphas: one ``AlphaScaled`` run per alpha (alpha = 1: standard training; large alpha: lazy), and
            ``Linearized`` with ``linearized=True``; all share ``stepper`` and ``stop``. The learning rate is the
            stepper's divided by alpha^2 (theory time t is shared).
        regimes: instead of ``alphas``: :class:`Regime` s, each with its own stepper and budget if it needs one.
        loss: as in :func:`lazyhasty.train`. stepper, stop: the shared stepper and budget (``Stop`` without a
            target: every run stops on the progress measure, see ``target``).
        target: every run trains until the progress measure reaches it (a loss at or below, an accuracy at or
            above), or its budget runs out (then it ``missed`` its target and the claims resting on it are not
            measured). The comparison's levels run from the start to it.
        seeds: each seed sets the initialisation and the minibatch order (``data_seed = seed``).
        progress: (split, group, metric) measuring training progress, e.g. the clean examples' training loss or
            an accuracy; ``levels`` levels from the start to ``target`` (log-spaced for a loss, linear for an
            accuracy), or to the furthest any run got, or the levels themselves.
        feature, lazy: the regimes the verdict compares (labels; default: the smallest and the largest alpha, or
            the first and the last of ``regimes``).
        rate_check: the label of a second lazy regime at another rate (or another budget): every claim then says
            whether its verdict is the same with it, and is not measured where it is not
            (:meth:`Comparison.rate_check`).
        schedule: measurement points of every run (default: 8 log-spaced points per decade of steps and the
            equal-progress milestones of :class:`lazyhasty.Schedule`); a target is checked at each.
        probe_size: training examples for the linearity metrics (``linearity=False`` skips them).
        confidence: level of the bootstrap intervals (``scipy.stats.bootstrap``, percentile, over seeds).
        out: a folder, or an experiment's :class:`~lazyhasty.runs.Output`: the run records are written there
            (``out/runs/<id>``) while training (nothing is lost if the process stops), then
            :meth:`Comparison.save`. With an ``Output``, each training call is checkpointed in its series, a resuming
            one (``lazyhasty run --resume``) continues the runs from their checkpoints, and its ``tensorboard``
            applies to the records.
    Returns:
        a :class:`Comparison`.
    """
    if isinstance(model_factory, nn.Module) or not callable(model_factory):
        raise UsageError(f"model_factory must be a callable returning a torch.nn.Module (called once per seed, "
                         f"e.g. the model's class), got {type(model_factory).__name__}")
    if not isinstance(train_set, Split):
        raise UsageError(f"train_set must be a lazyhasty.Split, got {type(train_set).__name__}")
    if regimes is not None and (linearized or tuple(alphas) != (1.0, 100.0)):
        raise UsageError("give either regimes= or alphas= / linearized=, not both")
    regs = _regimes(alphas, regimes, linearized, stepper, stop)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"seeds must be distinct integers >= 0, got {seeds}")
    if not 0 < confidence < 1 or (np.isscalar(levels) and levels < 2) or (linearity and not probe_size >= 1):
        raise UsageError(f"confidence must lie in (0, 1), levels be >= 2 and probe_size >= 1 (got {confidence}, "
                         f"{levels}, {probe_size})")
    if target is not None and not np.isfinite(target):
        raise UsageError(f"target must be a finite number, got {target}")
    try:
        loss = get_loss(loss)
    except ValueError as e:
        raise UsageError(str(e)) from None
    probe_splits = {**({"test": test} if test is not None else {}), **dict(splits or {})}
    if "train" in probe_splits:
        raise UsageError("'train' is the training set's split name; name the other splits differently")
    progress = tuple(progress)
    base = seeded(model_factory, seeds[0])
    if not isinstance(base, nn.Module):
        raise UsageError(f"model_factory must return a torch.nn.Module, got {type(base).__name__}")
    _check_inputs(base, train_set, {"train": train_set, **probe_splits}, loss, progress)
    labels = [r.label for r in regs]
    alpha_regs = [r for r in regs if r.alpha is not None]
    feature = feature or (regs[0].label if regimes is not None else min(alpha_regs, key=lambda r: r.alpha).label)
    lazy = lazy or (regs[-1].label if regimes is not None or len(alpha_regs) < 2 else
                    max(alpha_regs, key=lambda r: r.alpha).label)
    if feature not in labels or lazy not in labels or feature == lazy or rate_check in (feature, lazy) or (
            rate_check is not None and rate_check not in labels):
        raise UsageError(f"feature, lazy (and rate_check) must be distinct regimes of {labels}, got {feature!r}, "
                         f"{lazy!r}" + (f" and {rate_check!r}" if rate_check else ""))
    settings = {"regimes": labels, "feature": feature, "lazy": lazy, "loss": type(loss).__name__,
                "steppers": {r.label: repr(r.stepper) for r in regs}, "stops": {r.label: repr(r.stop) for r in regs},
                "target": target, "rate_check": rate_check, "seeds": seeds, "progress": list(progress),
                "levels": levels,
                "probe_size": int(probe_size), "confidence": float(confidence),
                "model": getattr(model_factory, "__qualname__", repr(model_factory)), "examples": len(train_set)}
    output = out if isinstance(out, Output) or out is None else Output(Path(out))
    out = None if output is None else output.path
    if out is not None and records_in(out / "runs") is not None and not output.resume:
        raise FolderInUse(f"{out} already holds run records ({records_in(out / 'runs')}); compare into an empty "
                          "folder")
    if target is not None:
        _check_target(base, {"train": train_set, **probe_splits}, loss, progress, float(target))
    reach = () if target is None else ((*progress, float(target)),)
    # one ensemble per (wrapper kind, stepper, budget) and seed: its members share the stepper and the minibatches;
    # a full-batch stepper sees the same batch in every seed, so there one ensemble per regime holds every seed (the
    # regimes, which stop at very different steps, are not held back by each other's frozen members)
    calls: dict[tuple, list[Regime]] = {}
    for r in regs:
        calls.setdefault((r.alpha is None, repr(r.stepper), repr(r.stop)), []).append(r)
    bases = {seeds[0]: base, **{s: seeded(model_factory, s) for s in seeds[1:]}}
    g = torch.Generator().manual_seed(10_000)  # the same probe examples for every run
    probes = [loss_probe, parameter_distance_probe]
    if linearity:
        probes.append(LinearityProbe(take(train_set.x, torch.randperm(len(train_set), generator=g)[:probe_size])))
    results: dict[str, TrainResult] = {}
    rows = []
    for members in calls.values():
        full = members[0].stepper.full_batch
        for todo in ([[(s, r) for s in seeds] for r in members] if full else [[(s, r) for r in members]
                                                                               for s in seeds]):
            ids = [f"{r.label}-seed={s}" for s, r in todo]
            nets = [Linearized(same_init(bases[s])) if r.alpha is None else AlphaScaled(same_init(bases[s]), r.alpha)
                    for s, r in todo]
            alphas_ = [np.inf if r.alpha is None else r.alpha for _, r in todo]
            recs = None if out is None else [output.record(f"runs/{rid}", settings, seed=s, regime=r.label, alpha=a)
                                             for rid, (s, r), a in zip(ids, todo, alphas_)]
            got = train(Ensemble(nets), train_set, loss=loss, stepper=members[0].stepper,
                        stop=replace(members[0].stop, reach=reach), splits=probe_splits, probes=probes,
                        schedule=schedule or Schedule(points_per_decade=8), data_seed=todo[0][0], run_id=ids,
                        record=recs, progress=show_progress, checkpoint=output and output.checkpoints)
            for rid, (s, r), a, res in zip(ids, todo, alphas_, got):
                results[rid] = res
                rows.append({"run_id": rid, "seed": s, "regime": r.label, "alpha": a, "status": res.status,
                             "converged": res.converged, "steps": res.steps, "t": res.t})
    runs = pd.DataFrame(rows)
    metrics = pd.concat([r.metrics for r in results.values()], ignore_index=True)
    comp = compare_runs(metrics, runs, progress=progress, feature=feature, lazy=lazy, target=target, levels=levels,
                        confidence=confidence, settings=settings, results=results)
    if out is not None:
        comp.save(out)
    return comp


def compare_runs(metrics: pd.DataFrame, runs: pd.DataFrame | None = None, *, progress: tuple[str, str, str],
                 feature: str,
                 lazy: str, target: float | None = None, levels: int | Sequence[float] = 12,
                 confidence: float = 0.95, exact: bool = False, settings: dict | None = None,
                 results: dict | None = None) -> Comparison:
    """Compare runs at equal progress: the one place a verdict between regimes is computed.

    Args:
        metrics: the runs' long table (``run_id, step, split, group, metric, value``; ``load_runs`` layout, or
            closed-form curves written so).
        runs: one row per run: ``run_id, seed, regime, alpha`` and ``converged`` (False: the run missed its
            target; None: it had none); default: those columns of ``metrics`` (``load_runs`` of records started
            with ``seed``, ``regime`` and ``alpha`` in their config).
        progress: (split, group, metric) of the progress axis; a loss falls, an accuracy rises.
        feature, lazy: the regimes compared (``runs.regime`` values); the gap is feature - lazy.
        target, levels: the levels, as in :func:`compare_regimes`.
        exact: the runs are deterministic (closed forms, or one full-batch run per regime from a fixed
            initialisation): one "seed", the interval is the gap itself; runs without linearity metrics (closed
            forms) are in their regimes by construction.
    """
    if runs is None:
        missing = [c for c in ("seed", "regime", "alpha") if c not in metrics]
        if missing:
            raise UsageError(f"compare_runs: no runs table given and the metrics lack {missing}")
        runs = metrics.groupby("run_id", sort=False)[[c for c in ("seed", "regime", "alpha", "converged")
                                                      if c in metrics]].first().reset_index()
    runs = runs.copy()
    if "converged" not in runs:
        runs["converged"] = None
    seeds = sorted(int(s) for s in runs.seed.unique())
    missing = [r for r in (feature, lazy) if not (runs.regime == r).any()]
    if missing:
        raise UsageError(f"no runs of regime {', '.join(map(repr, missing))}; regimes: {sorted(set(runs.regime))}")
    pairs = runs[runs.regime.isin([feature, lazy])]
    twice = pairs[pairs.duplicated(["regime", "seed"]) | pairs.run_id.duplicated()]
    paired = [sorted(int(s) for s in pairs.seed[pairs.regime == r]) for r in (feature, lazy)]
    if len(twice) or paired[0] != paired[1]:  # gaps are per seed: one initialisation, one run of each regime
        raise UsageError(f"compare_runs pairs one {feature} run with one {lazy} run per seed; got seeds {paired[0]} "
                         f"and {paired[1]}" + (f", and run {twice.run_id.iloc[0]!r} twice" if len(twice) else ""))
    measure = "accuracy" if rises(progress[2]) else "loss"
    settings = {**(settings or {}), "regimes": list(dict.fromkeys(runs.regime)), "feature": feature, "lazy": lazy,
                "progress": list(progress), "measure": measure, "target": target, "seeds": seeds,
                "levels": levels if np.isscalar(levels) else [float(v) for v in levels],
                "confidence": float(confidence), "exact": bool(exact)}
    keys = ["run_id", "seed", "regime", "alpha"]
    metrics = metrics.drop(columns=[c for c in keys[1:] if c in metrics]).merge(runs[keys], on="run_id")
    table = equal_progress_table(metrics, runs, tuple(progress), levels, target)
    groups = metrics[metrics.metric == measure][["split", "group"]].drop_duplicates()
    verdict, by_level = regime_verdict(table, feature, lazy, tuple(progress), confidence, exact,
                                       list(groups.itertuples(index=False, name=None)))
    return Comparison(table, verdict, by_level, metrics, runs, settings, results or {})


def equal_progress_table(metrics: pd.DataFrame, runs: pd.DataFrame, progress: tuple[str, str, str],
                         levels: int | Sequence[float], target: float | None = None) -> pd.DataFrame:
    """The tidy table of :class:`Comparison`: every per-group loss and accuracy and every linearity metric of
    every run interpolated at the progress levels (given, or ``levels`` of them from the start every run shares,
    left out, to ``target`` or to the furthest any run got: :func:`at_equal_progress`); NaN and ``reached`` False
    beyond a run's own range."""
    split, group, metric = progress
    p = metrics[(metrics.split == split) & (metrics.group == group) & (metrics.metric == metric)]
    if (p.groupby("run_id").size().reindex(runs.run_id, fill_value=0) < 2).any():
        raise UsageError(f"a run has fewer than two values of its progress measure {'/'.join(progress)} (is "
                         f"{split}/{group} a split and group, and {metric} recorded?)")
    first = ["seed", "regime", "alpha", "split", "group", "progress", "reached", "loss"]
    eq = at_equal_progress(metrics, progress=progress, grid=levels, reach="any", target=target, start=False)
    if not len(eq):  # no run made progress (or none has two distinct values of it): no level to compare at
        return pd.DataFrame(columns=[*first, "accuracy"])
    wide_keys = ["run_id", "progress", "split", "group"]
    per_group = eq[eq.metric.isin(["loss", "accuracy"])]
    table = per_group.set_index([*wide_keys, "metric"]).value.unstack("metric").reset_index()
    lin = eq[eq.metric.isin([*LINEARITY, "param_distance"]) & eq.group.isin(["all", "-"])]
    if len(lin):
        lin = lin.set_index(["run_id", "progress", "metric"]).value.unstack("metric")
        table = table.merge(lin.reset_index(), on=["run_id", "progress"], how="left")
    measure = "accuracy" if rises(metric) else "loss"
    table["reached"] = table[measure].notna()
    table = runs[["run_id", "seed", "regime", "alpha"]].merge(table, on="run_id")
    table = table[[*first, *[c for c in table.columns if c not in first and c != "run_id"]]]
    table.columns.name = None
    return table.sort_values(["seed", "regime", "split", "group", "progress"],
                             ascending=[True, True, True, True, rises(metric)]).reset_index(drop=True)


def _ahead(lo: float, hi: float, seeds: int, rising: bool, exact: bool) -> tuple[str, str]:
    if seeds < 2 and not exact:
        return "not measured", "one seed: no confidence interval"
    if (hi < 0 and not rising) or (lo > 0 and rising):
        return "feature", ""
    if (lo > 0 and not rising) or (hi < 0 and rising):
        return "lazy", ""
    return "neither", "the interval contains 0"


def regime_verdict(table: pd.DataFrame, feature: str, lazy: str, progress: tuple[str, str, str],
                   confidence: float = 0.95, exact: bool = False,
                   groups: Sequence[tuple[str, str]] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(verdict, by_level) of :class:`Comparison` from its table: the gap feature - lazy of the measure (loss,
    or accuracy along an accuracy axis) per seed at each level both runs reached; per group the per-seed mean over
    the levels measured in every seed, bootstrapped (``exact``: closed forms, the interval is the value). Every
    (split, group) of ``groups`` gets a row, "not measured" where the table has none (no run made progress)."""
    rising = rises(progress[2])
    col = "accuracy" if rising else "loss"
    if col not in table:
        table = table.assign(**{col: np.nan})
    piv = table[table.regime.isin([feature, lazy])].set_index(["split", "group", "progress", "seed", "regime"])[
        col].unstack("regime").reindex(columns=[feature, lazy])  # a run with no usable progress has no rows
    gap = (piv[feature] - piv[lazy]).rename("gap").reset_index()
    seeds = table.seed.nunique()

    def interval(v):
        return (float(v.mean()), float(v.mean())) if exact else bootstrap_interval(v, confidence)

    gap = gap.sort_values("progress", ascending=rising, kind="stable")  # from the start towards the target
    by_level, verdict = [], []
    for (split, group), d in gap.groupby(["split", "group"], sort=True):
        own = (split, group) == tuple(progress[:2])
        ok_levels = []
        for level, dl in d.groupby("progress", sort=False):
            v = dl.gap.dropna().to_numpy()
            if own:
                row = dict(ahead="progress measure", note="equal by construction")
            elif len(v) < seeds:
                row = dict(ahead="not measured", note=f"a regime did not reach this level in {seeds - len(v)} of "
                           f"{seeds} seeds")
            else:
                ok_levels.append(level)
                lo, hi = interval(v)
                a, note = _ahead(lo, hi, len(v), rising, exact)
                row = dict(gap=float(v.mean()), ci_low=lo, ci_high=hi, ahead=a, note=note)
            by_level.append({"split": split, "group": group, "progress": level, "seeds": len(v), **row})
        if own:
            verdict.append({"split": split, "group": group, "ahead": "progress measure",
                            "note": "the progress measure itself: equal by construction"})
            continue
        if not ok_levels:
            verdict.append({"split": split, "group": group, "seeds": seeds, "levels": 0, "ahead": "not measured",
                            "note": "no progress level was reached by both regimes in every seed"})
            continue
        per_seed = d[d.progress.isin(ok_levels)].groupby("seed").gap.mean().to_numpy()
        lo, hi = interval(per_seed)
        a, note = _ahead(lo, hi, len(per_seed), rising, exact)
        verdict.append({"split": split, "group": group, "seeds": len(per_seed), "levels": len(ok_levels),
                        "progress_from": ok_levels[0], "progress_to": ok_levels[-1], "gap": float(per_seed.mean()),
                        "ci_low": lo, "ci_high": hi, "ahead": a, "note": note,
                        "per_seed": [float(g) for g in per_seed]})
    seen = {(v["split"], v["group"]) for v in verdict}
    verdict += [{"split": s, "group": g, "seeds": seeds, "levels": 0, "ahead": "not measured",
                 "note": f"no run made progress on {'/'.join(progress)}"} for s, g in groups if (s, g) not in seen]
    cols = ["split", "group", "seeds", "levels", "progress_from", "progress_to", "gap", "ci_low", "ci_high", "ahead",
            "note", "per_seed"]
    verdict = pd.DataFrame(verdict).reindex(columns=cols)
    verdict["note"] = verdict["note"].fillna("")
    verdict[["seeds", "levels"]] = verdict[["seeds", "levels"]].astype("Int64")
    by_level = pd.DataFrame(by_level).reindex(columns=["split", "group", "progress", "seeds", "gap", "ci_low",
                                                       "ci_high", "ahead", "note"])
    by_level["note"] = by_level["note"].fillna("")
    by_level["seeds"] = by_level["seeds"].astype("Int64")
    return verdict, by_level
