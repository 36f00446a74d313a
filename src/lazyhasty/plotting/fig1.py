"""Fig. 1 of George et al.: data, loss curves of every member, and Delta-loss maps at equal training loss."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Circle

from .compare import linearity_panel
from .style import LINEARITY_COLORS, panels, regime_styles


def fig1_figure(trace: pd.DataFrame, maps: np.ndarray, pts: np.ndarray, thresholds, alphas, data,
                metrics: pd.DataFrame | None = None):
    """(a) training data (of the first seed), (b) training loss of every member vs t with the thresholds, (c) the
    linearity metrics (mean over members, from ``metrics``, the ``load_runs`` table), (d-f) mean over seeds of
    loss_nonlinear(x) - loss_linear(x) on the grid at each threshold (shared symmetric colour scale; red: the
    linear regime has the lower loss, blue: the non-linear one).

    Args: trace from ``load_runs(runs, table="trace")`` (needs ``alpha``); maps (K, 2, S, G, G) from grid.npz.
    """
    K = len(thresholds)
    rows = 1 + -(-K // 3)
    fig, grid = panels(rows, 3, 4.0, 3.6)
    axes = [grid[0, 0], grid[0, 1], *grid[1:].flat[:K]]
    for ax in grid[1:].flat[K:]:
        ax.set_visible(False)
    x, y = data.x.cpu().numpy(), data.y.cpu().numpy()
    ax = axes[0]
    for label, c, sel in (("y = -1", "tab:purple", y <= 0), ("y = +1", "tab:orange", y > 0)):
        ax.scatter(x[sel, 0], x[sel, 1], color=c, s=14, label=label)
    for c in ((0.5, -0.5), (-0.5, 0.5)):
        ax.add_patch(Circle(c, 0.3, fill=False, ls=":", color="grey"))
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.plot([], [], color="grey", ls=":", label="regions: disks, half-planes")
    ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", title="(a) training data (first seed)", xlabel="x1", ylabel="x2")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
    ax = axes[1]
    colors = {alphas[0]: "tab:blue", alphas[1]: "tab:red"}
    ls = regime_styles(alphas)  # told apart in greyscale too
    for (_rid, a), d in trace.groupby(["run_id", "alpha"]):
        d = d[d.t > 0]
        ax.plot(d.t, d.loss, color=colors.get(a, "k"), ls=ls.get(a, "-"), lw=0.7, alpha=0.45)
    for a, c in colors.items():
        ax.plot([], [], color=c, ls=ls[a], label=f"alpha = {a:g}")
    for th in thresholds:
        ax.axhline(th, color="k", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="t (theory time)", ylabel="mean training loss", title="(b) training loss")
    ax.legend(frameon=False)
    ax = grid[0, 2]
    lin = pd.DataFrame(columns=["t", "alpha", "metric", "value"]) if metrics is None else metrics
    lin = lin[lin.metric.isin(LINEARITY_COLORS)].assign(regime=lambda d: d.alpha)
    lin = lin.groupby(["regime", "metric", "step"], as_index=False)[["t", "value"]].mean()
    shown = linearity_panel(ax, lin[lin.t > 0], "t", ls, "t (theory time)")
    ax.set(xscale="log", title="(c) distance from the kernel regime")
    ax.legend(handles=shown + [plt.Line2D([], [], color="grey", ls=ls[a], label=f"alpha = {a:g}") for a in alphas],
              fontsize=7, frameon=False)
    G = maps.shape[-1]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a threshold no seed reached: an empty (NaN) map
        deltas = [np.nanmean(maps[k, 0] - maps[k, 1], axis=0) for k in range(K)]
    reached = [float(np.nanmax(np.abs(d))) for d in deltas if np.isfinite(d).any()]
    vmax = max(reached) if reached else 1.0
    for k, (ax, d) in enumerate(zip(axes[2:], deltas)):
        im = ax.imshow(d, origin="lower", extent=(-1, 1, -1, 1), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for c in ((0.5, -0.5), (-0.5, 0.5)):
            ax.add_patch(Circle(c, 0.3, fill=False, ls=":", color="k", lw=0.6))
        ax.axhline(0, color="k", lw=0.4, ls=":")
        ax.set(title=f"({chr(ord('d') + k)}) Delta loss at loss < {thresholds[k]:g}", xlabel="x1", ylabel="x2")
        if not np.isfinite(d).any():
            ax.text(0, 0, "no seed reached\nthis loss in both regimes", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=list(axes[2:]), shrink=0.8, label="loss non-linear - loss linear (red: linear lower)")
    fig.suptitle(f"yin-yang, {maps.shape[2]} seeds, grid {G}x{G}")
    return fig
