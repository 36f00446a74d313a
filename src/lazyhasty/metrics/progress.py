"""Comparing runs at equal training progress (George et al.): interpolate metrics onto a common progress grid."""

from __future__ import annotations

import numpy as np
import pandas as pd

RISING = ("accuracy", "margin")  # measures that rise as training progresses; every other one (a loss) falls


def rises(metric: str) -> bool:
    """Whether ``metric`` rises with training progress (accuracy, margin) rather than falls (a loss)."""
    return metric in RISING


def at_equal_progress(metrics: pd.DataFrame, progress: tuple[str, str, str] = ("train", "all", "loss"),
                      grid: np.ndarray | int = 50, decreasing: bool | None = None, reach: str = "every",
                      target: float | None = None, start: bool = True) -> pd.DataFrame:
    """Every (split, group, metric) of every run, interpolated at common values of a progress measure.

    Args:
        metrics: the long table (``load_runs`` or ``TrainResult.metrics``), one or more runs.
        progress: (split, group, metric) of the progress measure, e.g. ("train", "clean", "loss") for George
            et al.'s "equal clean-example loss". It is made monotone along each run (running minimum when
            ``decreasing``, running maximum otherwise; default: by the metric, :func:`rises`), so a run that
            temporarily regresses is placed at the first time it reached each level; points where it is not finite
            are left out.
        grid: progress levels, or a number of levels log-spaced (linear for a rising measure) from the start every
            run covers (left out with ``start=False``) to ``target``, or without one to the furthest level that
            ``reach`` = ``"every"`` run (default) or ``"any"`` run reached. No level when no run made progress.
            Nothing is extrapolated: a run's values beyond its own range are NaN.
    Returns:
        Long table ``run_id, progress, split, group, metric, value`` (empty when no run has two distinct values of
        the progress measure).
    """
    decreasing = not rises(progress[2]) if decreasing is None else decreasing
    keys = ["run_id", "step", "split", "group", "metric"]
    points = metrics[[*keys, "value"]].drop_duplicates()
    clash = points[points.duplicated(keys)]  # one point with two values: never pick one of them
    if len(clash):
        r = clash.iloc[0]
        raise ValueError(f"the metrics table gives {len(clash)} point(s) two different values (e.g. run {r.run_id}, "
                         f"step {r.step}, {r.split}/{r.group}/{r.metric}): were two tables of one run joined?")
    runs = {}
    for rid, df in metrics.groupby("run_id"):
        d = df[(df.split == progress[0]) & (df.group == progress[1]) & (df.metric == progress[2])]
        p = d.drop_duplicates("step").set_index("step")["value"].sort_index()
        p = p[np.isfinite(p.to_numpy(dtype=float))]  # a NaN or inf point (a diverged run's last) has no place on it
        if p.empty:
            continue
        mono = np.minimum.accumulate(p.to_numpy()) if decreasing else np.maximum.accumulate(p.to_numpy())
        runs[rid] = (df, p.index.to_numpy(), mono)
    if not runs:
        raise ValueError(f"no run has the progress measure {progress}")
    if np.isscalar(grid):
        if reach not in ("every", "any"):
            raise ValueError(f"reach must be 'every' or 'any', got {reach!r}")
        first, ends = [m[0] for _, _, m in runs.values()], [m[-1] for _, _, m in runs.values()]
        lo = min(first) if decreasing else max(first)
        hi = target if target is not None else (max(ends) if (reach == "every") == decreasing else min(ends))
        if not (hi < lo if decreasing else hi > lo):
            grid = []
        elif decreasing and hi > 0:
            grid = np.geomspace(lo, hi, int(grid) + (not start))[(not start):]
        else:
            grid = np.linspace(lo, hi, int(grid) + (not start))[(not start):]
    grid = np.asarray(grid, dtype=float)
    rows = []
    sign = -1.0 if decreasing else 1.0
    series = ["split", "group", "metric"]
    for rid, (df, steps, mono) in runs.items():
        xp = sign * mono
        keep = np.concatenate([[True], np.diff(xp) > 0])  # strictly increasing for interpolation
        wide = (df.drop_duplicates([*series, "step"]).set_index(["step", *series])["value"]
                .unstack(series).reindex(steps).sort_index(axis=1))  # (steps, every series of this run)
        values = wide.to_numpy(dtype=float)
        for j, key in enumerate(wide.columns if len(grid) else ()):
            ok = keep & ~np.isnan(values[:, j])
            if ok.sum() >= 2:
                rows.append((rid, *key, np.interp(sign * grid, xp[ok], values[ok, j], left=np.nan, right=np.nan)))
    if not rows:
        return pd.DataFrame(columns=["run_id", "progress", *series, "value"])
    def col(i):  # object arrays: ids and names keep their types (a plain array would make 1 and "a" strings)
        return np.repeat(np.array([r[i] for r in rows], dtype=object), len(grid))

    return pd.DataFrame({"run_id": col(0), "progress": np.tile(grid, len(rows)),
                         **{c: col(1 + i) for i, c in enumerate(series)},
                         "value": np.concatenate([r[4] for r in rows])})
