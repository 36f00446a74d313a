"""From a model to the answer in one call: which examples does feature learning learn first, and how far from the
kernel regime does training go? (George et al. 2022: regimes compared at equal training progress.)

:func:`compare_regimes` trains, for every seed, the regimes ``AlphaScaled(model, alpha)`` for each alpha (and
optionally ``Linearized(model)``) from one initialisation and one minibatch order (``seeded``, ``fork``, the
engine's ``data_seed``), probes every group of every split and the linearity metrics, and returns a
:class:`Comparison`: the tidy table at equal progress, the verdict per group with a bootstrap interval over seeds,
a figure, and run records.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import torch
from torch import nn

from .data.groups import Split
from .data.inputs import take
from .dynamics.checkpoint import current as current_checkpointing
from .dynamics.losses import MSE, Loss, get_loss
from .dynamics.probes import LinearityProbe, Schedule, loss_probe, parameter_distance_probe
from .dynamics.steppers import Stepper
from .dynamics.train import Stop, TrainResult, fork, seeded, train
from .errors import UsageError
from .files import atomic_write, make_folder
from .metrics.linearity import LINEAR_LEVEL
from .metrics.progress import at_equal_progress
from .models.ensemble import Ensemble
from .models.regimes import AlphaScaled, Linearized, frozen_stats
from .runs.output import records_in
from .runs.records import FolderInUse, RunRecord, environment

LINEARITY = ("ntk_alignment", "sign_similarity", "representation_alignment", "ntk_distance")


def claim(id: str, text: str, source: str, held: bool | None, **numbers) -> dict:
    """One entry of ``claims.json`` (``{"experiment": name, "claims": [claim, ...]}``): ``text`` a readable
    sentence, ``source`` the paper's figure or equation, ``held`` True / False / None (not measured), ``numbers``
    the evidence (JSON values)."""
    return {"id": id, "text": text, "source": source, "held": None if held is None else bool(held),
            "numbers": numbers}


def stays_linear_claim(verdict: dict, feature: str, lazy: str) -> dict:
    """The ``stays_linear`` claim from a :func:`linearity_verdict`."""
    return claim("stays_linear", f"The lazy run ({lazy}) stays linear: its "
                 f"{' and '.join(m.replace('_', ' ') for m in verdict['measures']) or 'linearity metrics'} stay "
                 f">= {verdict['level']:g} at every measurement, while the feature run ({feature}) leaves the kernel "
                 "regime: one of them falls below", "George et al. 2022, "
                 "section 2.2 (eq. 5); Chizat et al. 2019", verdict["held"],
                 **{k: v for k, v in verdict.items() if k != "held"})


def gate(held: bool | None, stays_linear: dict, missed: Sequence[str] = ()) -> bool | None:
    """A regime comparison is measured only when the runs are shown to be in their regimes and reached their
    progress targets: ``held`` unless the ``stays_linear`` claim did not hold or a run ``missed`` its target
    (run ids), then None (not measured)."""
    return held if stays_linear["held"] is True and not len(missed) else None


def missed_note(missed: Sequence[str]) -> str:
    """Why a claim is not measured when runs missed their targets ("" when none did)."""
    return f"not measured: {len(missed)} run(s) missed the progress target within their budget: " \
        f"{', '.join(missed)}" if len(missed) else ""


def linearity_line(v: dict) -> str:
    """One readable line of a :func:`linearity_verdict`."""
    word = {True: "held", False: "NOT held", None: "not measured"}[v["held"]]
    mins = "; ".join(f"seed {seed}: " + ", ".join(f"{regime} min {k} {x:.3f}" for regime, r in row.items()
                                                  for k, x in r.items()) for seed, row in v["per_pair"].items())
    return (f"stays linear (lazy >= {v['level']:g} on every one of {', '.join(v['measures']) or 'nothing'}, "
            f"feature below on one): "
            f"{word}" + (f" ({v['note']})" if v["note"] else "") + (f"; {mins}" if mins else ""))


def linearity_verdict(metrics: pd.DataFrame, pairs: Mapping[int, tuple[str, str]], level: float = LINEAR_LEVEL,
                      measures: Sequence[str] = ("ntk_alignment", "sign_similarity")) -> dict:
    """Whether the two runs of every seed are in their regimes (George et al. 2022, section 2.2): the lazy run's
    kernel alignment with initialisation KA(K_t, K_0) (eq. 5) and ReLU sign similarity stay >= ``level`` at every
    measurement (it stays linear), while the feature run does not: at least one of its measures falls below
    ``level`` (the negation of staying linear).

    Args:
        metrics: the runs' long table (``load_runs`` layout), with the rows of a ``LinearityProbe``.
        pairs: ``{seed: (feature_run_id, lazy_run_id)}``.
        measures: the metrics tested; one that no run recorded (sign similarity of a network without ReLU) is left
            out and named in ``note``.
    Returns:
        ``{"held": True | False | None, "level", "measures", "per_pair": {key: {regime: {measure: min}}}, "note"}``;
        None when no measure was recorded or a run has no value.
    """
    m = metrics[metrics.metric.isin(measures) & metrics.run_id.isin([r for p in pairs.values() for r in p])]
    present = [k for k in measures if (m.metric == k).any()]
    out = {"held": None, "level": float(level), "measures": present, "per_pair": {},
           "note": "" if len(present) == len(measures) else
           f"not recorded: {', '.join(k for k in measures if k not in present)}"}
    if not present:
        out["note"] = "no linearity metric was recorded (LinearityProbe off): not measured"
        return out
    mins = m.groupby(["run_id", "metric"]).value.min()
    held = True
    for seed, (feature, lazy) in pairs.items():
        row = {name: {k: float(mins.get((rid, k), np.nan)) for k in present}
               for name, rid in (("feature", feature), ("lazy", lazy))}
        out["per_pair"][str(seed)] = row
        values = [v for r in row.values() for v in r.values()]
        if not all(np.isfinite(values)):
            out["note"] = f"seed {seed}: a run recorded no value"
            return out
        held = held and all(row["lazy"][k] >= level for k in present) and any(row["feature"][k] < level
                                                                              for k in present)
    out["held"] = bool(held)
    return out


@dataclass
class Comparison:
    """What :func:`compare_regimes` returns.

    Attributes:
        table: tidy, one row per (seed, regime, split, group, progress level): columns ``seed, regime, alpha,
            split, group, progress, reached`` (the run got that far), ``loss``, ``accuracy`` (classification
            losses only), and the run's linearity metrics at that progress (``ntk_alignment``, ``sign_similarity``,
            ``representation_alignment``, ``ntk_distance`` on the probe set, ``param_distance``), NaN where the
            run did not reach the level.
        verdict: one row per (split, group): the loss gap ``feature - lazy`` at equal progress, averaged over the
            levels that both regimes reached in every seed (``per_seed``: each seed's mean), its bootstrap interval
            over seeds, and ``ahead``:
            ``feature`` (the feature regime's loss is lower: it learns the group first), ``lazy``, ``neither``
            (the interval contains 0) or ``not measured`` (with the reason in ``note``).
        by_level: the same per progress level (``not measured`` at the levels a regime did not reach).
        metrics: the long table of every run (``load_runs`` layout, with ``seed``, ``regime``, ``alpha``).
        runs: one row per run: its id, seed, regime, alpha and final status.
        settings: what was compared (regimes, loss, stepper, stop, seeds, progress measure).
    """

    table: pd.DataFrame
    verdict: pd.DataFrame
    by_level: pd.DataFrame
    metrics: pd.DataFrame
    runs: pd.DataFrame
    settings: dict
    results: dict[str, TrainResult] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """The verdict as readable lines."""
        s = self.settings
        lines = [f"compare_regimes: {s['feature']} (feature) vs {s['lazy']} (lazy), {len(s['seeds'])} seeds, "
                 f"at equal {'/'.join(s['progress'])}; gap = loss({s['feature']}) - loss({s['lazy']}), "
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

    def stays_linear(self, level: float = LINEAR_LEVEL) -> dict:
        """:func:`linearity_verdict` of the feature and the lazy regime of every seed."""
        s = self.settings
        ids = self.runs.set_index(["seed", "regime"]).run_id
        return linearity_verdict(self.metrics, {seed: (ids[(seed, s["feature"])], ids[(seed, s["lazy"])])
                                                for seed in s["seeds"]}, level)

    def claims(self, level: float = LINEAR_LEVEL, source: str = "George et al. 2022, sections 2.2 and 3") -> list:
        """The comparison as ``claims.json`` entries: ``stays_linear``, then per (split, group) ``feature_first@
        split/group`` (held: the feature regime's loss is lower at equal progress, interval below 0), not measured
        unless the runs stayed in their regimes."""
        s = self.settings
        lin = self.stays_linear(level)
        missed = self.missed()
        out = [stays_linear_claim(lin, s["feature"], s["lazy"])]
        for r in self.verdict.itertuples():
            if r.ahead == "progress measure":
                continue
            held = None if r.ahead == "not measured" else r.ahead == "feature"
            out.append(claim(f"feature_first@{r.split}/{r.group}", f"At equal {'/'.join(s['progress'])}, "
                             f"{s['feature']} has the lower loss on {r.split}/{r.group} than {s['lazy']}", source,
                             gate(held, lin, missed), gap=r.gap, interval=[r.ci_low, r.ci_high], ahead=r.ahead,
                             per_seed=r.per_seed if isinstance(r.per_seed, list) else [],
                             note=missed_note(missed) or r.note))
        return out

    def missed(self) -> list[str]:
        """The runs that stopped at their budget without reaching the stopping target (``converged`` False)."""
        return sorted(self.runs.run_id[self.runs.converged.map(lambda c: c is False or c == 0)])

    def plot(self):
        """One figure: per-group loss against progress for every regime (mean over seeds) and the linearity
        curves. Returns the matplotlib figure."""
        from .plotting.compare import comparison_figure

        return comparison_figure(self.table, self.settings)

    def save(self, folder: str | Path) -> Path:
        """Write the comparison to ``folder`` (which must hold no other records): the run records (``runs/<id>/``,
        readable by ``load_runs``), ``table.parquet``, ``verdict.csv``, ``by_level.parquet``, ``summary.txt``,
        ``claims.json``, ``comparison.png`` and, unless the folder is an experiment's, ``experiment.json`` (so that
        ``lazyhasty report`` lists it)."""
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
        text = self.summary() + "\n"
        atomic_write(folder / "summary.txt", text)
        atomic_write(folder / "claims.json", {"experiment": "compare", "claims": json.loads(json.dumps(
            self.claims(), default=float))})
        from .plotting.curves import save_figure

        save_figure(self.plot(), folder / "comparison", formats=("png",))
        if not (folder / "experiment.json").exists():  # inside an experiment's folder, the experiment's own stays
            atomic_write(folder / "experiment.json", {"experiment": "compare", "status": "complete",
                                                      "config": self.settings, "env": environment()})
        return folder


def _check_inputs(model: nn.Module, train_set: Split, splits: dict[str, Split], loss: Loss) -> None:
    """Bad input gets a clear error before anything trains."""
    for name, split in splits.items():
        if not isinstance(split, Split):
            raise UsageError(f"split {name!r} must be a lazyhasty.Split (x, y, groups), got {type(split).__name__}")
        groups = split.groups
        if groups.n is not None and groups.n != len(split):
            raise UsageError(f"split {name!r}: its groups were built for {groups.n} examples, it has {len(split)}")
        covered = torch.zeros(len(split), dtype=torch.bool)
        for g in groups:
            idx = groups[g]
            if idx.numel() == 0:
                raise UsageError(f"split {name!r}: group {g!r} is empty")
            if int(idx.max()) >= len(split):
                raise UsageError(f"split {name!r}: group {g!r} holds index {int(idx.max())}, beyond its "
                                 f"{len(split)} examples")
            covered[idx.cpu()] = True
        if len(groups) and not bool(covered.all()):
            raise UsageError(f"split {name!r}: its groups ({', '.join(groups)}) leave {int((~covered).sum())} of "
                             f"{len(split)} examples in no group; give every example a group (e.g. "
                             "Groups.from_labels(labels))")
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


def compare_regimes(model_factory: Callable[[], nn.Module], train_set: Split, *, test: Split | None = None,
                    alphas: Sequence[float] = (1.0, 100.0), loss: Loss | str, stepper: Stepper, stop: Stop,
                    seeds: Sequence[int] = (0, 1, 2), linearized: bool = False,
                    splits: Mapping[str, Split] | None = None,
                    progress: tuple[str, str, str] = ("train", "all", "loss"), levels: int = 12,
                    schedule: Schedule | None = None, probe_size: int = 256, linearity: bool = True,
                    confidence: float = 0.95,
                    out: str | Path | None = None, show_progress: bool | None = None) -> Comparison:
    """Train every regime from the same initialisation and minibatch order, for every seed, and compare them at
    equal training progress (George et al. 2022, sections 3-4).

    Args:
        model_factory: called under ``seeded(model_factory, seed)``: returns the network (an ``nn.Module``).
        train_set: the training examples with their groups (every example in at least one group, or no groups).
        test: a test split (probed as ``"test"``); ``splits``: further probe splits by name.
        alphas: one ``AlphaScaled`` run per alpha (alpha = 1: standard training; large alpha: lazy). The verdict
            compares the smallest (feature) against the largest (lazy). The learning rate is the stepper's
            divided by alpha^2 (theory time t is shared).
        loss, stepper, stop: as in :func:`lazyhasty.train`; ``stop`` applies to every run on its own.
        seeds: each seed sets the initialisation and the minibatch order (``data_seed = seed``).
        linearized: also train ``Linearized(model)`` (the exact kernel regime of the same initialisation).
        progress: (split, group, metric) measuring training progress (decreasing), e.g. the clean examples'
            training loss; ``levels`` log-spaced levels from the highest starting value down to the furthest any
            run got.
        schedule: the measurement points of every run (default: 8 log-spaced points per decade of steps, and the
            equal-progress milestones of :class:`lazyhasty.Schedule`).
        probe_size: training examples for the linearity metrics (NTK alignment with initialisation, sign
            similarity, representation alignment; ``linearity=False`` skips them).
        confidence: level of the bootstrap intervals (``scipy.stats.bootstrap``, percentile, over seeds).
        out: write the run records there (``out/runs/<id>``) while training (nothing is lost if the process
            stops), then the rest of :meth:`Comparison.save`. Inside a resuming ``checkpointing`` block (``lazyhasty
            run --resume``) the runs continue from their checkpoints.
    Returns:
        a :class:`Comparison`.
    """
    if isinstance(model_factory, nn.Module) or not callable(model_factory):
        raise UsageError(f"model_factory must be a callable returning a torch.nn.Module (called once per seed, "
                         f"e.g. the model's class), got {type(model_factory).__name__}")
    if not isinstance(train_set, Split):
        raise UsageError(f"train_set must be a lazyhasty.Split, got {type(train_set).__name__}")
    alphas = [float(a) for a in alphas]
    if not alphas or min(alphas) <= 0 or not all(np.isfinite(alphas)) or len(set(alphas)) != len(alphas):
        raise UsageError(f"alphas must be distinct finite numbers > 0, got {alphas}")
    if len(alphas) + bool(linearized) < 2:
        raise UsageError("compare needs two regimes: at least two alphas, or one alpha and linearized=True")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"seeds must be distinct integers >= 0, got {seeds}")
    if not 0 < confidence < 1 or levels < 2:
        raise UsageError("confidence must lie in (0, 1) and levels be >= 2")
    try:
        loss = get_loss(loss)
    except ValueError as e:
        raise UsageError(str(e)) from None
    probe_splits = {**({"test": test} if test is not None else {}), **dict(splits or {})}
    if "train" in probe_splits:
        raise UsageError("'train' is the training set's split name; name the other splits differently")
    base = seeded(model_factory, seeds[0])
    if not isinstance(base, nn.Module):
        raise UsageError(f"model_factory must return a torch.nn.Module, got {type(base).__name__}")
    _check_inputs(base, train_set, {"train": train_set, **probe_splits}, loss)
    order = sorted(alphas)
    regimes = [(f"alpha={a:g}", a) for a in order] + ([("linearized", float("inf"))] if linearized else [])
    feature = regimes[0][0]
    lazy = f"alpha={order[-1]:g}" if len(order) > 1 else "linearized"
    settings = {"regimes": [r for r, _ in regimes], "feature": feature, "lazy": lazy, "loss": type(loss).__name__,
                "stepper": repr(stepper), "stop": repr(stop), "seeds": seeds, "progress": list(progress),
                "levels": int(levels), "probe_size": int(probe_size), "confidence": float(confidence),
                "model": getattr(model_factory, "__qualname__", repr(model_factory)), "examples": len(train_set)}
    out = None if out is None else Path(out)
    ctx = current_checkpointing()
    if out is not None and records_in(out / "runs") is not None and not (ctx is not None and ctx.resume):
        raise FolderInUse(f"{out} already holds run records ({records_in(out / 'runs')}); compare into an empty "
                          "folder")

    results: dict[str, TrainResult] = {}
    rows = []
    for seed in seeds:
        base = base if seed == seeds[0] else seeded(model_factory, seed)  # the first was built for the checks
        g = torch.Generator().manual_seed(10_000 + seed)
        probe_x = take(train_set.x, torch.randperm(len(train_set), generator=g)[:probe_size])
        probes = [loss_probe, parameter_distance_probe]
        if linearity:
            probes.append(LinearityProbe(probe_x, split="probe", outputs="trace", per_layer=False))
        # one ensemble for the alpha-scaled regimes, one for Linearized (an ensemble cannot mix them)
        calls = [[(r, a) for r, a in regimes if r != "linearized"], [(r, a) for r, a in regimes if r == "linearized"]]
        for members in (m for m in calls if m):
            ids = [f"{r}-seed={seed}" for r, _ in members]
            nets = [Linearized(fork(base)) if r == "linearized" else AlphaScaled(fork(base), a) for r, a in members]
            recs = None if out is None else [
                RunRecord(out / "runs" / rid).start(settings, seed=seed, regime=r, alpha=a)
                for rid, (r, a) in zip(ids, members)]
            got = train(Ensemble(nets), train_set, loss=loss, stepper=stepper, stop=stop, splits=probe_splits,
                        probes=probes, schedule=schedule or Schedule(points_per_decade=8), data_seed=seed, run_id=ids,
                        record=recs, progress=show_progress)
            for rid, (r, a), res in zip(ids, members, got):
                results[rid] = res
                rows.append({"run_id": rid, "seed": seed, "regime": r, "alpha": a, "status": res.status,
                             "converged": res.converged, "steps": res.steps, "t": res.t})
    runs = pd.DataFrame(rows)
    metrics = pd.concat([r.metrics for r in results.values()], ignore_index=True).merge(
        runs[["run_id", "seed", "regime", "alpha"]], on="run_id")
    table = equal_progress_table(metrics, runs, progress, levels, classification=not isinstance(loss, MSE))
    verdict, by_level = regime_verdict(table, feature, lazy, progress, confidence)
    comp = Comparison(table, verdict, by_level, metrics, runs, settings, results)
    if out is not None:
        comp.save(out)
    return comp


def equal_progress_table(metrics: pd.DataFrame, runs: pd.DataFrame, progress: tuple[str, str, str], levels: int,
                         classification: bool = True) -> pd.DataFrame:
    """The tidy table of :class:`Comparison` from the runs' long table: every metric interpolated at ``levels``
    log-spaced levels of the (decreasing) progress measure, below the lowest starting value L0 (where every regime
    of a seed is equal) down to the furthest any run reached: L0 (lo/L0)^(k/levels), k = 1..levels; NaN and
    ``reached`` False beyond a run's own range."""
    split, group, metric = progress
    p = metrics[(metrics.split == split) & (metrics.group == group) & (metrics.metric == metric)]
    if (p.groupby("run_id").size().reindex(runs.run_id, fill_value=0) < 2).any():
        raise UsageError(f"a run has no progress measure {progress} (is {split}/{group} a split and group?)")
    try:
        eq = at_equal_progress(metrics, progress=progress, grid=levels + 1, reach="any")
    except ValueError:
        raise UsageError(f"no run made progress: {'/'.join(progress)} never fell below its starting value") from None
    eq = eq[eq.progress < eq.progress.max()]  # not the start, where every regime of a seed is equal
    wide_keys = ["run_id", "progress", "split", "group"]
    per_group = eq[eq.metric.isin(["loss", "accuracy"] if classification else ["loss"])]
    table = per_group.set_index([*wide_keys, "metric"]).value.unstack("metric").reset_index()
    lin = eq[eq.metric.isin([*LINEARITY, "param_distance"]) & eq.group.isin(["all", "-"])]
    if len(lin):
        lin = lin.set_index(["run_id", "progress", "metric"]).value.unstack("metric")
        table = table.merge(lin.reset_index(), on=["run_id", "progress"], how="left")
    table["reached"] = table["loss"].notna()
    table = runs[["run_id", "seed", "regime", "alpha"]].merge(table, on="run_id")
    first = ["seed", "regime", "alpha", "split", "group", "progress", "reached", "loss"]
    table = table[[*first, *[c for c in table.columns if c not in first and c != "run_id"]]]
    table.columns.name = None
    return table.sort_values(["seed", "regime", "split", "group", "progress"], ascending=[True, True, True, True,
                                                                                         False]).reset_index(drop=True)


def bootstrap_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap, 2000 resamples, fixed RNG);
    NaN with fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=2000,
                                    method="percentile", random_state=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _ahead(lo: float, hi: float, seeds: int) -> tuple[str, str]:
    if seeds < 2:
        return "not measured", "one seed: no confidence interval"
    if hi < 0:
        return "feature", ""
    if lo > 0:
        return "lazy", ""
    return "neither", "the interval contains 0"


def regime_verdict(table: pd.DataFrame, feature: str, lazy: str, progress: tuple[str, str, str],
                   confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(verdict, by_level) of :class:`Comparison` from its table: the loss gap feature - lazy per seed at each
    level both runs reached; per group the per-seed mean over the levels measured in every seed, bootstrapped."""
    piv = table[table.regime.isin([feature, lazy])].set_index(["split", "group", "progress", "seed", "regime"]) \
        .loss.unstack("regime")
    gap = (piv[feature] - piv[lazy]).rename("gap").reset_index()
    seeds = table.seed.nunique()
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
                lo, hi = bootstrap_interval(v, confidence)
                a, note = _ahead(lo, hi, len(v))
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
        lo, hi = bootstrap_interval(per_seed, confidence)
        a, note = _ahead(lo, hi, len(per_seed))
        verdict.append({"split": split, "group": group, "seeds": len(per_seed), "levels": len(ok_levels),
                        "progress_from": max(ok_levels), "progress_to": min(ok_levels), "gap": float(per_seed.mean()),
                        "ci_low": lo, "ci_high": hi, "ahead": a, "note": note,
                        "per_seed": [float(g) for g in per_seed]})
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

