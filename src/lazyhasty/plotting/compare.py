"""The figure of :meth:`lazyhasty.Comparison.plot`: per-group loss and the linearity metrics against progress."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..metrics.linearity import LINEAR_LEVEL
from .style import LINEARITY_COLORS, panels, regime_styles


def linearity_panel(ax, df: pd.DataFrame, x: str, styles: dict, xlabel: str, level: float = LINEAR_LEVEL) -> list:
    """The linearity metrics of every regime on ``ax``: ``df`` long (columns ``regime``, ``x``, ``metric``,
    ``value``; one value per point, e.g. the mean over seeds), colour = metric, line style = regime (``styles``),
    and the ``stays_linear`` level dotted. Returns the legend handles of the metrics drawn."""
    shown = []
    for metric, c in LINEARITY_COLORS.items():
        d = df[(df.metric == metric) & df.value.notna()]
        for regime, dr in d.groupby("regime", sort=False):
            ax.plot(dr[x], dr.value, ls=styles.get(regime, "-"), color=c)
        if len(d):
            shown.append(plt.Line2D([], [], color=c, label=metric.replace("_", " ")))
    ax.axhline(level, color="grey", lw=0.8, ls=(0, (1, 2)))
    shown.append(plt.Line2D([], [], color="grey", lw=0.8, ls=(0, (1, 2)), label=f"stays-linear level {level:g}"))
    ax.set(title="distance from the kernel regime", xlabel=xlabel, ylabel="metric (1 = as at initialisation)",
           ylim=(0, 1.05))
    return shown


def comparison_figure(table: pd.DataFrame, settings: dict, groups: list[str] | None = None):
    """One panel per split: each group's measure (the loss, or the accuracy along an accuracy axis; colour) for
    each regime (line style), mean over seeds, against the progress measure (towards the target to the right);
    last panel: the linearity metrics of each regime (1 = as at initialisation). Curves end where a seed's run
    stopped: a mean is drawn only over all seeds. ``table``: :attr:`Comparison.table`; ``settings``:
    :attr:`Comparison.settings`; ``groups``: only these (and ``all``)."""
    measure = settings.get("measure", "loss")
    if groups is not None:
        table = table[table.group.isin([*groups, "all"])]
    splits = sorted(set(table.split), key=lambda s: (s != "train", s))
    reached = table.progress[table.reached]
    xscale = "log" if len(reached) and reached.max() > 10 * reached.min() > 0 else "linear"
    fig, axes = panels(1, len(splits) + 1, 4.0, 3.6)
    axes = axes[0]
    style = regime_styles(settings["regimes"])
    groups = sorted(set(table.group) - {"all"}, key=str) + ["all"]
    cmap = plt.get_cmap("viridis")  # groups; the linearity metrics use colours outside this map
    color = {g: "black" if g == "all" else cmap(0.85 * i / max(len(groups) - 2, 1)) for i, g in enumerate(groups)}
    xlabel = f"progress: {'/'.join(settings['progress'])}"
    by = table.groupby(["regime", "split", "group", "progress"], sort=False)
    mean = by.mean(numeric_only=True)
    mean.loc[~by.reached.all()] = float("nan")
    mean = mean.reset_index()
    rising = settings["progress"][2] in ("accuracy", "margin")  # the axis grows to the right
    for ax, split in zip(axes, splits):
        for (regime, group), d in mean[mean.split == split].groupby(["regime", "group"]):
            ax.plot(d.progress, d[measure], ls=style.get(regime, "-"), color=color[group],
                    lw=1.6 if group == "all" else 1)
        ax.set(title=f"{split}: {measure} per group", xlabel=xlabel, ylabel=f"{measure} (mean over seeds)",
               xscale=xscale)
        if not rising:
            ax.invert_xaxis()
    lin = mean.drop_duplicates(["regime", "progress"]).melt(
        id_vars=["regime", "progress"], value_vars=[m for m in LINEARITY_COLORS if m in mean], var_name="metric")
    shown = linearity_panel(axes[-1], lin, "progress", style, xlabel)
    axes[-1].set_xscale(xscale)
    if not rising:
        axes[-1].invert_xaxis()
    handles = [plt.Line2D([], [], color="grey", ls=style[r], label=r) for r in settings["regimes"]]
    handles += [plt.Line2D([], [], color=color[g], label=f"group {g}") for g in groups]
    handles += shown
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    return fig
