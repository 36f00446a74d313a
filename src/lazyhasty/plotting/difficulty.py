"""Figures of the example-difficulty experiments: per-group metrics and linearity against progress."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..metrics.linearity import LINEAR_LEVEL
from ..metrics.progress import at_equal_progress
from .style import LINEARITY_COLORS, panels


def _regime(run_id: str) -> str:
    return run_id.split("-seed=")[0]


def equal_progress_figure(metrics: pd.DataFrame, alphas, progress, groups, title: str, xlabel: str,
                          group_colors: dict | None = None, styles: dict | None = None, decreasing: bool = True):
    """Left: loss of each (split, group) vs the progress measure; middle: linearity metrics; right: accuracy.
    Solid: the first alpha, dashed: the others (or ``styles``: line style per regime, the run id without its
    ``-seed=k``); mean over seeds on a common progress grid (thin: each seed). ``decreasing``: the progress
    measure falls as training goes (a loss; drawn right to left) or rises (an accuracy)."""
    t = at_equal_progress(metrics, progress=progress, grid=60, decreasing=decreasing)
    fig, axes = panels(1, 3, 4.2, 3.8)
    axes = axes[0]
    cmap = plt.get_cmap("viridis")
    colors = group_colors or {g: cmap(i / max(len(groups) - 1, 1)) for i, g in enumerate(groups)}
    styles = styles or {f"alpha={a:g}": ("-" if i == 0 else "--") for i, a in enumerate(alphas)}
    t["regime"] = t.run_id.map(_regime)
    for ax, metric in ((axes[0], "loss"), (axes[2], "accuracy")):
        for (split, group) in groups:
            d = t[(t.split == split) & (t.group == group) & (t.metric == metric)]
            for regime, dd in d.groupby("regime"):
                mean = dd.groupby("progress").value.mean()
                ax.plot(mean.index, mean.values, ls=styles.get(regime, ":"), color=colors[(split, group)],
                        label=f"{split}/{group} ({regime})")
                for _, s in dd.groupby("run_id"):
                    ax.plot(s.progress, s.value, ls=styles.get(regime, ":"), color=colors[(split, group)], lw=0.4,
                            alpha=0.4)
        ax.set(xlabel=xlabel, ylabel=metric)
        if decreasing:
            ax.invert_xaxis()
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=6, ncol=2, frameon=False)
    lin = t[t.metric.isin(list(LINEARITY_COLORS))]
    lc = LINEARITY_COLORS
    for (metric, regime), d in lin.groupby(["metric", "regime"]):
        mean = d.groupby("progress").value.mean()
        axes[1].plot(mean.index, mean.values, ls=styles.get(regime, ":"), color=lc[metric],
                     label=f"{metric} ({regime})")
    axes[1].set(xlabel=xlabel, ylabel="linearity metric (1 = as at init)", ylim=(0, 1.05))
    axes[1].axhline(LINEAR_LEVEL, color="grey", lw=0.8, ls=(0, (1, 2)), label=f"stays-linear level {LINEAR_LEVEL:g}")
    if decreasing:
        axes[1].invert_xaxis()
    if len(lin):
        axes[1].legend(fontsize=6, frameon=False)
    else:
        axes[1].text(0.5, 0.5, "linearity metrics not recorded\n(config: linearity = false)", ha="center",
                     transform=axes[1].transAxes, color="grey")
    fig.suptitle(title)
    return fig
