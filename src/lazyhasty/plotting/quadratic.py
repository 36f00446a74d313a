"""Figures of the quadratic-model experiments (fig4, fig14): per-group loss against mean loss (equal progress)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .compare import linearity_panel
from .style import LINEARITY_COLORS, panels

TITLES = {"example1": "Example 1: input/label correlation", "example2": "Example 2: label noise",
          "example3": "Example 3: spurious correlation"}


def examples_figure(tables: dict[str, pd.DataFrame], regimes: list[str], suptitle: str,
                    marks: dict[str, str] | None = None):
    """One panel per example: the loss of each group (colour) against the mean training loss, log-log, the first
    regime solid (wide and pale underneath, so that curves that coincide stay visible), the second dashed; first
    seed. With linearity metrics in the tables, a second row of panels shows them against the same axis.

    Args:
        tables: per example, its :attr:`Comparison.table` (progress: the mean training loss).
        regimes: [feature, lazy]; marks: text per example drawn in red in its panel (e.g. "not held").
    """
    lin = any(m in t for t in tables.values() for m in LINEARITY_COLORS)
    fig, axes = panels(2 if lin else 1, len(tables), 4.2, 3.6)
    cmap, styles = plt.get_cmap("viridis"), {regimes[0]: "-", regimes[1]: "--"}
    for k, (ex, t) in enumerate(tables.items()):
        t = t[(t.seed == t.seed.min()) & t.regime.isin(regimes) & (t.loss > 0) & (t.group != "all")]
        ax, groups = axes[0, k], list(dict.fromkeys(t.group))
        for gi, g in enumerate(groups):
            for i, r in enumerate(regimes):
                d = t[(t.group == g) & (t.regime == r)]
                ax.plot(d.progress, d.loss, color=cmap(0.85 * gi / max(len(groups) - 1, 1)), ls=styles[r],
                        label=f"{g} ({r})", **({"lw": 2.6, "alpha": 0.5} if i == 0 else {"lw": 1.3}))
        ax.set(xscale="log", yscale="log", xlabel="mean training loss (equal progress →)", ylabel="group loss",
               title=TITLES.get(ex, ex))
        ax.invert_xaxis()
        ax.legend(fontsize=6, ncol=2, frameon=False)
        if marks and marks.get(ex):
            ax.text(0.02, 0.02, marks[ex], transform=ax.transAxes, color="red", fontsize=8)
        if lin:
            d = t.drop_duplicates(["regime", "progress"]).melt(id_vars=["regime", "progress"], var_name="metric",
                                                               value_vars=[m for m in LINEARITY_COLORS if m in t])
            shown = linearity_panel(axes[1, k], d, "progress", styles, "mean training loss (equal progress →)")
            axes[1, k].set_xscale("log")
            axes[1, k].invert_xaxis()
            axes[1, k].legend(handles=shown + [plt.Line2D([], [], color="grey", ls=styles[r], label=r)
                                               for r in regimes], fontsize=6, frameon=False)
    fig.suptitle(suptitle)
    return fig
