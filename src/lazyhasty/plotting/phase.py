"""The phase experiment's figure: eight panels drawn from the run and cell tables (never from a model)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from .style import mark_empty, panels


def _by_width(ax, df: pd.DataFrame, col: str, colors, label=True, **kw):
    for h, g in df.groupby("h"):
        s = g.groupby("sqrt_h_alpha")[col].agg(["mean", "sem", "count"])
        s = s[np.isfinite(s["mean"])]
        ax.errorbar(s.index, s["mean"], yerr=s["sem"].fillna(0), color=colors[h], marker="o", ms=3, capsize=2,
                    label=f"h = {h}" if label else None, **kw)


def _legend(ax, **kw):
    """A legend only where something is labelled (degenerate sweeps may have nothing to show)."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(**kw)


def _fit_line(ax, fit: dict, xs: np.ndarray, color="k", style="--", label=None):
    if not (fit and math.isfinite(fit.get("slope", math.nan))) or len(xs) == 0:
        return
    u = np.geomspace(xs.min(), xs.max(), 20)
    ax.plot(u, 10 ** fit["log10_c"] * u ** fit["slope"], style, color=color, lw=1.5,
            label=label or f"slope {fit['slope']:.2f}")


def _kernel_panel(ax, df: pd.DataFrame, point: str, fit: dict | None, colors, label: str):
    """Kernel change at one equal-progress point, per width, with the power laws fitted on each side."""
    x_lab = r"$\sqrt{h}\,\alpha$"
    _by_width(ax, df, f"kernel_change_{point}", colors)
    x = df.sqrt_h_alpha.to_numpy()
    if fit and math.isfinite(fit["x_star"]):
        xs = fit["x_star"]
        _fit_line(ax, fit["lazy"], x[x >= xs * math.sqrt(10)], "k", "--",
                  f"lazy fit, slope {fit['lazy']['slope']:.2f} (theory -1)")
        _fit_line(ax, fit["feature"], x[x <= xs / math.sqrt(10)], "r", "--",
                  f"feature fit, slope {fit['feature']['slope']:.2f}")
        ax.axvline(xs, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel=x_lab, ylabel=r"$\|\Theta-\Theta_0\|_F/\|\Theta_0\|_F$",
           title=f"kernel change at loss {label}")
    _legend(ax, fontsize=7)


def phase_figure(runs: pd.DataFrame, cells: pd.DataFrame, fits: dict, curves: pd.DataFrame | None,
                 progress: float):
    widths = sorted(int(h) for h in runs.h.unique())
    cmap = plt.get_cmap("viridis")
    colors = {h: cmap(0.85 * i / max(len(widths) - 1, 1)) for i, h in enumerate(widths)}  # no pale yellow
    fig, grid = panels(4, 3, 4.0, 3.2)
    P = dict(zip("abcdefghij", grid.flat))  # panel (x) of the paper's layout
    for ax in grid.flat[10:]:
        ax.set_visible(False)
    xs = fits.get("x_star", math.nan)
    x_lab = r"$\sqrt{h}\,\alpha$"

    ax = P["a"]
    _by_width(ax, runs, "test_err_end", colors)
    ax.set(xscale="log", xlabel=x_lab, ylabel="test error (end of run)", title="(a) test error: collapse in √h·α")
    _legend(ax, fontsize=8)

    ax = P["b"]
    for h, g in cells.groupby("h"):
        ax.plot(g.sqrt_h_alpha, g.ensemble_test_err_end, "-o", ms=3, color=colors[h], label=f"ensemble, h = {h}")
        ax.plot(g.sqrt_h_alpha, g.single_test_err_end, ":", color=colors[h])
    ax.set(xscale="log", xlabel=x_lab, ylabel="test error",
           title="(b) ensemble of seeds (solid) vs single nets (dotted)")
    _legend(ax, fontsize=7)

    for ax, point, label in ((P["c"], "half", "L(0)/2 (t = t_1/2)"), (P["h"], "progress", f"{progress:g} L(0)")):
        _kernel_panel(ax, runs[runs[f"reached_{point}"]], point, fits.get("kernel", {}).get(point), colors, label)
    P["c"].set_title("(c) " + P["c"].get_title())
    P["h"].set_title("(h) " + P["h"].get_title())

    ax = P["d"]
    if curves is None or not len(curves):  # not recorded (e.g. the tiny preset): no empty panel
        ax.set_visible(False)
    else:
        sas = sorted(curves.sqrt_h_alpha.unique())
        cm2 = plt.get_cmap("plasma")
        for i, sa in enumerate(sas):
            c = curves[(curves.sqrt_h_alpha == sa) & (curves.t > 0)]
            for j, (_, g) in enumerate(c.groupby("run_id")):
                g = g.sort_values("t")
                ax.plot(g.t, g.value, color=cm2(i / max(len(sas) - 1, 1)), lw=1,
                        label=f"√h·α = {sa:g}" if j == 0 else None)
        ax.set(xscale="log", yscale="log", xlabel="t (theory time)", ylabel="kernel change",
               title=f"(d) kernel change along training, h = {int(curves.h.max())}")
        _legend(ax, fontsize=6, ncol=2)

    ax = P["e"]
    th = runs[np.isfinite(runs.t_half)]
    _by_width(ax, th, "t_half", colors)
    tx = th.sqrt_h_alpha.to_numpy()
    if math.isfinite(xs):
        _fit_line(ax, fits["t_lazy"], tx[tx >= xs * math.sqrt(10)], "k", "--",
                  f"lazy fit, slope {fits['t_lazy']['slope']:.2f} (theory 0)")
        _fit_line(ax, fits["t_feature"], tx[tx <= xs / math.sqrt(10)], "r", "--",
                  f"feature fit, slope {fits['t_feature']['slope']:.2f} (theory 1)")
    ax.set(xscale="log", yscale="log", xlabel=x_lab, ylabel=r"$t_{1/2}$", title="(e) time to halve α²L")
    _legend(ax, fontsize=7)

    ax = P["f"]
    half = runs[runs.reached_half]
    cell_k = half.groupby(["h", "alpha"]).kernel_change_half.mean().reset_index()
    if len(cell_k):
        sc = ax.scatter(cell_k.h, cell_k.alpha, c=np.log10(cell_k.kernel_change_half), cmap="coolwarm",
                        s=90, marker="s")
        fig.colorbar(sc, ax=ax, label="log10 kernel change at t_1/2")
    per_h = [p for p in fits.get("per_h", []) if math.isfinite(p["sqrt_h_alpha_star"])]
    if per_h:
        hh = np.array([p["h"] for p in per_h], float)
        a_star = np.array([p["alpha_star"] for p in per_h])
        lo = np.array([p["ci"][0] for p in per_h]) / np.sqrt(hh)
        hi = np.array([p["ci"][1] for p in per_h]) / np.sqrt(hh)
        err = np.where(np.isfinite(lo) & np.isfinite(hi), np.stack([a_star - lo, hi - a_star]), 0)
        ax.errorbar(hh, a_star, yerr=np.clip(err, 0, None), fmt="k*", ms=10, capsize=3, label="measured α*(h)")
    if math.isfinite(xs):
        hg = np.geomspace(min(widths) / 1.5, max(widths) * 1.5, 20)
        ax.plot(hg, xs / np.sqrt(hg), "k--", label=f"α* = {xs:.2g}/√h")
    ax.set(xscale="log", yscale="log", xlabel="width h", ylabel="α",
           title="(f) phase diagram (α* from t_1/2): lazy above")
    ax.set_xticks(widths, [str(h) for h in widths])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    _legend(ax, fontsize=7)

    ax = P["g"]
    for h, g in cells.groupby("h"):
        ax.plot(g.sqrt_h_alpha, g.h_var_end, "-o", ms=3, color=colors[h], label=f"h = {h}")
    ax.set(xscale="log", yscale="log", xlabel=x_lab, ylabel=r"$h\cdot\mathrm{Var}_{seeds}[\alpha(f-f_0)]$",
           title="(g) variance over initialisations × h")
    _legend(ax, fontsize=8)

    ax = P["i"]
    _by_width(ax, half, "param_change_half", colors)
    ax.set(xscale="log", yscale="log", xlabel=x_lab, ylabel=r"$\|w-w_0\|/\|w_0\|$",
           title="(i) weight change at t_1/2")
    _legend(ax, fontsize=8)

    ax = P["j"]
    _by_width(ax, runs, "t_end", colors)
    conv = runs.groupby("sqrt_h_alpha").converged.mean()
    ax2 = ax.twinx()
    ax2.bar(conv.index, conv.values, width=conv.index * 0.4, color="grey", alpha=0.3)
    ax2.set(ylim=(0, 1), ylabel="fraction converged (margins >= 1)")
    ax.set(xscale="log", yscale="log", xlabel=x_lab, ylabel="t at the end of the run",
           title="(j) run length; unconverged runs are kept")
    _legend(ax, fontsize=8)
    for letter, ax in P.items():  # a point no run reached (a small or degenerate sweep): said, not left blank
        if ax.get_visible():
            title = ax.get_title()
            mark_empty(ax, "not measured:\nno run of this sweep reached this point")
            ax.set_title(title or f"({letter})")
    return fig
