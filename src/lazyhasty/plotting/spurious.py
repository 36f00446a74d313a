"""Fig. 3 of George et al.: test accuracy vs progress, and without- vs with-spurious accuracy per alpha."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .compare import linearity_panel
from .style import LINEARITY_COLORS, panels, regime_styles


def fig3_figure(metrics: pd.DataFrame, alphas, title: str):
    """(a) balanced test accuracy vs mean training loss; (b, c) without-spurious vs with-spurious accuracy on the
    balanced train and test sets, one colour per alpha, one thin line per seed; (d) the linearity metrics of every
    alpha (mean over seeds) against the mean training loss."""
    fig, axes = panels(1, 4, 4.0, 3.8)
    axes = axes[0]
    colors = {f"alpha={a:g}": c for a, c in zip(alphas, ("tab:red", "tab:purple", "tab:blue", "tab:green"))}
    ls = regime_styles(colors)  # told apart in greyscale too
    acc = metrics[metrics.metric == "accuracy"]
    for rid, d in acc.groupby("run_id"):
        regime = rid.split("-seed=")[0]
        c = colors.get(regime, "k")
        lab = regime if rid.endswith("seed=0") else None
        train_loss = metrics[(metrics.run_id == rid) & (metrics.split == "train") & (metrics.group == "all")
                             & (metrics.metric == "loss")].drop_duplicates("step").set_index("step").value
        test = d[(d.split == "bal_test") & (d.group == "all")].drop_duplicates("step").set_index("step").value
        axes[0].plot(train_loss.reindex(test.index), test, color=c, ls=ls.get(regime, "-"), lw=0.8, label=lab)
        for ax, split in ((axes[1], "bal_train"), (axes[2], "bal_test")):
            w = d[(d.split == split) & (d.group == "with_spurious")].drop_duplicates("step").set_index("step").value
            wo = d[(d.split == split) & (d.group == "without_spurious")].drop_duplicates("step").set_index("step").value
            ax.plot(w, wo.reindex(w.index), color=c, ls=ls.get(regime, "-"), lw=0.8, label=lab)
    axes[0].set(xlabel="mean training loss", ylabel="balanced test accuracy", title="(a) test accuracy")
    axes[0].invert_xaxis()
    for ax, name in ((axes[1], "balanced train"), (axes[2], "balanced test")):
        ax.set(xlabel="accuracy with spurious", ylabel="accuracy without spurious", title=f"({name})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
    for ax in axes[:3]:
        ax.legend(frameon=False, fontsize=8)
    loss = metrics[(metrics.split == "train") & (metrics.group == "all") & (metrics.metric == "loss")]
    lin = metrics[metrics.metric.isin(LINEARITY_COLORS)].merge(
        loss[["run_id", "step", "value"]].rename(columns={"value": "mean_loss"}), on=["run_id", "step"])
    lin = lin.assign(regime=lin.run_id.str.split("-seed=").str[0])
    lin = lin.assign(mean_loss=lin.mean_loss.round(3)).groupby(["regime", "metric", "mean_loss"], as_index=False) \
        .value.mean().sort_values("mean_loss")
    shown = linearity_panel(axes[3], lin, "mean_loss", ls, "mean training loss")
    axes[3].invert_xaxis()
    axes[3].set_title("(d) distance from the kernel regime")
    axes[3].legend(handles=shown + [plt.Line2D([], [], color="grey", ls=ls[r], label=r) for r in colors],
                   frameon=False, fontsize=7)
    fig.suptitle(title)
    return fig
