"""Fig. 1 of George et al.: data, loss curves of every member, and Delta-loss maps at equal training loss."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Circle


def fig1_figure(trace: pd.DataFrame, maps: np.ndarray, pts: np.ndarray, thresholds, alphas, data):
    """(a) training data, (b) training loss of every member vs t with the thresholds, (c-e) mean over seeds of
    loss_nonlinear(x) - loss_linear(x) on the grid at each threshold (shared symmetric colour scale; red: the
    linear regime has the lower loss, blue: the non-linear one).

    Args: trace from ``load_runs(runs, table="trace")`` (needs ``alpha``); maps (K, 2, S, G, G) from grid.npz.
    """
    K = len(thresholds)
    fig, axes = plt.subplots(1, 2 + K, figsize=(4.2 * (2 + K), 4.0))
    x, y = data.x.cpu().numpy(), data.y.cpu().numpy()
    ax = axes[0]
    ax.scatter(x[:, 0], x[:, 1], c=np.where(y > 0, "tab:orange", "tab:purple"), s=14)
    for c in ((0.5, -0.5), (-0.5, 0.5)):
        ax.add_patch(Circle(c, 0.3, fill=False, ls=":", color="grey"))
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", title="(a) training data")
    ax = axes[1]
    colors = {alphas[0]: "tab:blue", alphas[1]: "tab:red"}
    for (_rid, a), d in trace.groupby(["run_id", "alpha"]):
        d = d[d.t > 0]
        ax.plot(d.t, d.loss, color=colors.get(a, "k"), lw=0.5, alpha=0.35)
    for a, c in colors.items():
        ax.plot([], [], color=c, label=f"alpha = {a:g}")
    for th in thresholds:
        ax.axhline(th, color="k", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="t (theory time)", ylabel="mean training loss", title="(b) training loss")
    ax.legend(frameon=False)
    G = maps.shape[-1]
    deltas = [np.nanmean(maps[k, 0] - maps[k, 1], axis=0) for k in range(K)]
    vmax = max(float(np.nanmax(np.abs(d))) for d in deltas if np.isfinite(d).any()) if deltas else 1.0
    for k, (ax, d) in enumerate(zip(axes[2:], deltas)):
        im = ax.imshow(d, origin="lower", extent=(-1, 1, -1, 1), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for c in ((0.5, -0.5), (-0.5, 0.5)):
            ax.add_patch(Circle(c, 0.3, fill=False, ls=":", color="k", lw=0.6))
        ax.axhline(0, color="k", lw=0.4, ls=":")
        ax.set_title(f"({chr(ord('c') + k)}) Delta loss at loss < {thresholds[k]:g}")
    fig.colorbar(im, ax=list(axes[2:]), shrink=0.8, label="loss non-linear - loss linear")
    fig.suptitle(f"yin-yang, {maps.shape[2]} seeds, grid {G}x{G}")
    return fig
