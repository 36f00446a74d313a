from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import pandas as pd

from ..files import atomic_write
from .style import DPI, MAX_WIDTH_PX, FigureWarning, finish, panels, problems


def save_figure(fig, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``path_stem.png`` (and ``.pdf``) at the shared DPI, atomically; returns the paths. A figure
    that breaks the shared rules (:mod:`lazyhasty.plotting.style`: labels, legends, empty panels, width) is saved
    with a :class:`~lazyhasty.plotting.style.FigureWarning` naming each problem."""
    finish(fig)
    found = problems(fig)
    paths = []
    for fmt in formats:
        p = Path(f"{path_stem}.{fmt}")
        atomic_write(p, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
        if fmt == "png" and (width := matplotlib.image.imread(p).shape[1]) > MAX_WIDTH_PX:
            found.append(f"{width} px wide (at most {MAX_WIDTH_PX})")
        paths.append(p)
    plt.close(fig)
    if found:
        warnings.warn(f"figure {paths[0]}: " + "; ".join(found), FigureWarning, stacklevel=2)
    return paths


def loss_curves(trace: pd.DataFrame, label: str = "alpha", thresholds: Sequence[float] = (),
                title: str = "Training loss"):
    """Training loss vs theory time t (log-log), one curve per run, from ``load_runs(dir, table="trace")``.

    Args:
        trace: rows with columns ``run_id``, ``t``, ``loss`` and a config column named by ``label``.
        thresholds: horizontal lines (e.g. equal-progress thresholds).
    Returns: the matplotlib figure.
    """
    fig, axes = panels(1, 1, 5.5, 3.8)
    ax = axes[0, 0]
    for run_id, df in trace.groupby("run_id", sort=True):
        df = df[df["t"] > 0]
        lab = f"{label} = {df[label].iloc[0]:g}" if label in df and len(df) else run_id
        ax.plot(df["t"], df["loss"], label=lab)
    for th in thresholds:
        ax.axhline(th, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t = sum of eta (theory time: eta already divided by alpha^2)")
    ax.set_ylabel("mean training loss")
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig
