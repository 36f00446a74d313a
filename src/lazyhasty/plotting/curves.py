from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..files import atomic_write


def save_figure(fig, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``path_stem.png`` (and ``.pdf``), atomically; returns the paths."""
    paths = []
    for fmt in formats:
        p = Path(f"{path_stem}.{fmt}")
        atomic_write(p, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight"))
        paths.append(p)
    plt.close(fig)
    return paths


def loss_curves(trace: pd.DataFrame, label: str = "alpha", thresholds: Sequence[float] = (),
                title: str = "Training loss"):
    """Training loss vs theory time t (log-log), one curve per run, from ``load_runs(dir, table="trace")``.

    Args:
        trace: rows with columns ``run_id``, ``t``, ``loss`` and a config column named by ``label``.
        thresholds: horizontal lines (e.g. equal-progress thresholds).
    Returns: the matplotlib figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
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
    fig.tight_layout()
    return fig
