"""Figures of the quadratic-model experiments (fig4, fig14): per-group loss against mean loss (equal progress)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .compare import linearity_panel
from .style import panels

TITLES = {"example1": "Example 1: input/label correlation", "example2": "Example 2: label noise",
          "example3": "Example 3: spurious correlation"}


def group_loss_panels(curves: pd.DataFrame, runs: list[str], styles: dict[str, dict], suptitle: str,
                      marks: dict[str, str] | None = None, linearity: pd.DataFrame | None = None):
    """Three panels (one per example): loss of each group vs the mean training loss, one line style per run.

    Args:
        curves: long table with columns ``example, run, mean_loss, group, loss``.
        runs: run labels in drawing order; styles: matplotlib kwargs per run (e.g. solid vs dashed).
        marks: optional text per example drawn in red in the panel (e.g. "ordering NOT reproduced").
        linearity: optional long table ``example, regime, mean_loss, metric, value`` (the runs' linearity metrics):
            a second row of panels, one per example, against the same mean training loss.
    """
    curves = curves[np.isfinite(curves.mean_loss) & np.isfinite(curves.loss) & (curves.loss > 0)]
    examples = [e for e in TITLES if e in set(curves.example)]
    fig, axes = panels(1 if linearity is None else 2, len(examples), 4.2, 3.6)
    cmap = plt.get_cmap("viridis")
    for ax, ex in zip(axes[0], examples):
        df = curves[curves.example == ex]
        groups = list(dict.fromkeys(df.group))
        for gi, g in enumerate(groups):
            color = cmap(0.85 * gi / max(len(groups) - 1, 1))  # not the pale yellow end
            for i, run in enumerate(runs):
                d = df[(df.group == g) & (df.run == run)].sort_values("mean_loss", ascending=False)
                if len(d):  # the first run wide and pale underneath: curves that coincide stay visible
                    kw = {"lw": 2.6, "alpha": 0.5, "zorder": 2} if i == 0 else {"lw": 1.3, "zorder": 3}
                    ax.plot(d.mean_loss, d.loss, color=color, label=f"{g} ({run})", **{**kw, **styles.get(run, {})})
        ax.invert_xaxis()
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("mean training loss (equal progress →)")
        ax.set_ylabel("group loss")
        ax.set_title(TITLES[ex], fontsize=10)
        ax.legend(fontsize=6, ncol=2, frameon=False)
        if marks and marks.get(ex):
            ax.text(0.02, 0.02, marks[ex], transform=ax.transAxes, color="red", fontsize=8)
    if linearity is not None:
        ls = {r: styles.get(r, {}).get("ls", "-") for r in runs}
        for ax, ex in zip(axes[1], examples):
            shown = linearity_panel(ax, linearity[linearity.example == ex].sort_values("mean_loss"), "mean_loss", ls,
                                    "mean training loss (equal progress →)")
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.legend(handles=shown + [plt.Line2D([], [], color="grey", ls=ls[r], label=r) for r in runs],
                      fontsize=6, frameon=False)
    fig.suptitle(suptitle)
    return fig
