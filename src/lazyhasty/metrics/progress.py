"""Comparing runs at equal training progress (George et al.): interpolate metrics onto a common progress grid."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _series(df: pd.DataFrame, split: str, group: str, metric: str) -> pd.Series:
    d = df[(df.split == split) & (df.group == group) & (df.metric == metric)]
    return d.drop_duplicates("step").set_index("step")["value"].sort_index()


def at_equal_progress(metrics: pd.DataFrame, progress: tuple[str, str, str] = ("train", "all", "loss"),
                      grid: np.ndarray | int = 50, decreasing: bool = True, reach: str = "every") -> pd.DataFrame:
    """Every (split, group, metric) of every run, interpolated at common values of a progress measure.

    Args:
        metrics: the long table (``load_runs`` or ``TrainResult.metrics``), one or more runs.
        progress: (split, group, metric) of the progress measure, e.g. ("train", "clean", "loss") for George
            et al.'s "equal clean-example loss". It is made monotone along each run (running minimum when
            ``decreasing``, running maximum otherwise), so a run that temporarily regresses is placed at the
            first time it reached each level.
        grid: progress levels, or a number of levels log-spaced (linear if not decreasing) from the start every
            run covers to the furthest level that ``reach`` = ``"every"`` run (default) or ``"any"`` run reached.
            Nothing is extrapolated: a run's values beyond its own range are NaN.
    Returns:
        Long table ``run_id, progress, split, group, metric, value``.
    """
    runs = {}
    for rid, df in metrics.groupby("run_id"):
        p = _series(df, *progress)
        if p.empty:
            continue
        mono = np.minimum.accumulate(p.to_numpy()) if decreasing else np.maximum.accumulate(p.to_numpy())
        runs[rid] = (df, p.index.to_numpy(), mono)
    if not runs:
        raise ValueError(f"no run has the progress measure {progress}")
    if np.isscalar(grid):
        start = min(m[0] for _, _, m in runs.values()) if decreasing else max(m[0] for _, _, m in runs.values())
        if reach not in ("every", "any"):
            raise ValueError(f"reach must be 'every' or 'any', got {reach!r}")
        ends = [m[-1] for _, _, m in runs.values()]
        end = (max(ends) if reach == "every" else min(ends)) if decreasing else \
            (min(ends) if reach == "every" else max(ends))
        if (decreasing and not end < start) or (not decreasing and not end > start):
            raise ValueError("the runs share no range of progress to compare on")
        grid = np.geomspace(start, end, int(grid)) if decreasing and end > 0 else np.linspace(start, end, int(grid))
    grid = np.asarray(grid, dtype=float)
    rows = []
    sign = -1.0 if decreasing else 1.0
    for rid, (df, steps, mono) in runs.items():
        xp = sign * mono
        keep = np.concatenate([[True], np.diff(xp) > 0])  # strictly increasing for interpolation
        for (split, group, metric), d in df.groupby(["split", "group", "metric"]):
            v = d.drop_duplicates("step").set_index("step")["value"].reindex(steps)
            ok = keep & v.notna().to_numpy()
            if ok.sum() < 2:
                continue
            vals = np.interp(sign * grid, xp[ok], v.to_numpy()[ok], left=np.nan, right=np.nan)
            rows.append(pd.DataFrame({"run_id": rid, "progress": grid, "split": split, "group": group,
                                      "metric": metric, "value": vals}))
    return pd.concat(rows, ignore_index=True)


def relative_difference(table: pd.DataFrame, run_a: str, run_b: str) -> pd.DataFrame:
    """(a - b) / |b| per progress level, split, group and metric, from an ``at_equal_progress`` table."""
    piv = table.pivot_table(index=["progress", "split", "group", "metric"], columns="run_id", values="value")
    out = ((piv[run_a] - piv[run_b]) / piv[run_b].abs()).rename("relative_difference").reset_index()
    return out
