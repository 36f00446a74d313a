"""fig14: Examples 1-3 of the quadratic model with a standard dense 2-layer MLP (George et al., Fig. 14).

The same data as fig4, a 2-layer ReLU MLP d -> width -> 1 (PyTorch default init), MSE loss 1/2 (f - y)^2,
full-batch GD at learning rate eta / alpha^2, alpha in {0.1, 1, 10, 100} through ``AlphaScaled`` and the
alpha -> inf limit through ``Linearized``, all forked from one initialisation. Each run stops at
``loss_fraction`` x its initial loss or at its step budget (recorded as not converged).

Dynamics: gradient flow with the adaptive step (``GradientFlow``, as the theory of section 4 is a flow). A fixed
GD step is a poor fit here: the examples' scales differ (lambda_max of K0/n is ~18 for Example 1, ~1.3 for
Examples 2-3), and a step that is stable for the linearized model makes alpha = 0.1 blow up transiently
(its parameter steps are 1/alpha larger). The first dt (or the GD step with ``stepper=gd``) is
``lr_fraction`` x 2 / lambda_max(K0 / n), with K0 the empirical NTK at initialisation (``ntk_gram``).

Orderings asserted (the qualitative behaviour of fig4), from the most non-linear run (smallest alpha) against
``Linearized``, at equal progress (interpolated at equal mean training loss):
  Example 1: the learning order flips: at half progress the per-example losses of the two runs are
             anti-correlated (Spearman < 0).
  Example 2: the noisy group's loss rises more (peak / initial) and stays higher at equal progress.
  Example 3: the without-spurious group's loss is higher at equal progress.
A panel whose ordering does not hold is marked on the figure and in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

import lazyhasty as lh
from lazyhasty.plotting import group_loss_panels, save_figure

from . import Experiment, write_claims
from .fig4 import Config as Fig4Config
from .fig4 import equal_progress_gap, problems


@dataclass(frozen=True)
class Config:
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)  # AlphaScaled runs; Linearized is always added
    width: int = 100  # hidden units of the 2-layer MLP
    stepper: Literal["gd", "flow"] = "gd"  # plain GD (default) or the adaptive gradient flow
    lr_fraction: float = 0.05  # eta (GD) or the first dt (flow) = lr_fraction * 2 / lambda_max(K0 / n)
    max_dgrad: float = 1e-2  # flow: reject a step when the gradient turns more than this (Geiger et al.'s band)
    max_steps: int = 12000  # budget per run
    loss_fraction: float = 1e-2  # stop at this fraction of the initial loss
    seed: int = 0  # network initialisation
    data_seed: int = 0  # labels and noisy/minority examples
    sigma: float = 1e-4  # unused by the MLP; kept so the data config matches fig4

    def __post_init__(self):
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"every alpha must be > 0, got alphas={self.alphas}")
        if self.width < 1 or self.max_steps < 1 or not 0 < self.lr_fraction < 1 or not 0 < self.loss_fraction < 1:
            raise ValueError("width and max_steps must be >= 1, 0 < lr_fraction < 1 and 0 < loss_fraction < 1")


PRESETS = {"quick": Config(), "paper": Config(max_steps=100_000, loss_fraction=1e-4)}


def run_label(alpha: float | None) -> str:
    return "linearized" if alpha is None else f"alpha={alpha:g}"


def curves_from_records(out: Path) -> pd.DataFrame:
    """example, run, step, mean_loss, group, loss: read back from the run records (never from the models)."""
    m = lh.load_runs(out)
    m = m[(m.metric == "loss") & (m.split == "train")]
    rows = []
    for (ex, run), d in m.groupby(["example", "run"]):
        piv = d.pivot_table(index="step", columns="group", values="value").sort_index()
        for g in piv.columns:
            if g != "all":
                rows.append(pd.DataFrame({"example": ex, "run": run, "step": piv.index, "mean_loss": piv["all"],
                                          "group": g, "loss": piv[g]}))
    return pd.concat(rows, ignore_index=True)


def orderings(df: pd.DataFrame, runs: list[str]) -> dict:
    nl, lin = runs[0], "linearized"
    out: dict = {"compared": [nl, lin]}
    ex1 = df[df.example == "example1"]
    losses = {}
    for r in runs:  # per-example loss at the first measurement below half the initial mean loss
        d = ex1[ex1.run == r]
        half = d[d.mean_loss <= 0.5 * d.mean_loss.max()]
        if len(half):
            at = d[d.step == half.step.min()].sort_values("group", key=lambda g: g.str[1:].astype(int))
            losses[r] = at.loss.to_numpy()
    order = {r: [int(i) + 1 for i in np.argsort(v)] for r, v in losses.items()}  # learned first -> last
    rho = spearmanr(losses[nl], losses[lin]).statistic if nl in losses and lin in losses else float("nan")
    out["example1_order_at_half_progress"] = order
    out["example1_spearman_vs_linearized"] = float(rho)
    out["example1_held"] = bool(rho < 0)  # a flipped order anti-correlates the two runs' per-example losses
    ex2 = df[(df.example == "example2") & (df.group == "noisy")]
    peak = {r: float(d.loss.max() / d.sort_values("step").loss.iloc[0]) for r, d in ex2.groupby("run")}
    gap2 = {r: equal_progress_gap(df[df.example == "example2"], "noisy", r, lin) for r in runs if r != lin}
    out["example2_noisy_peak_over_initial"] = peak
    out["example2_noisy_gap_vs_linearized"] = gap2
    out["example2_held"] = bool(peak[nl] > peak[lin] and gap2[nl] > 0)
    gap3 = {r: equal_progress_gap(df[df.example == "example3"], "without spurious", r, lin) for r in runs if r != lin}
    out["example3_minority_gap_vs_linearized"] = gap3
    out["example3_held"] = bool(gap3[nl] > 0)
    return out


def main(cfg: Config, out: Path) -> dict:
    data_cfg = Fig4Config(seed=cfg.data_seed)
    runs = [run_label(a) for a in sorted(cfg.alphas)] + [run_label(None)]
    for ex, (X, y, groups) in problems(data_cfg).items():
        split = lh.Split(torch.tensor(X), torch.tensor(y), lh.Groups(groups, n=len(y)))
        base = lh.seeded(lambda X=X: lh.MLP([X.shape[1], cfg.width, 1]).double(), cfg.seed)
        with torch.no_grad():
            loss0 = float((0.5 * (base(split.x)[:, 0] - split.y) ** 2).mean())
        lam_max = float(torch.linalg.eigvalsh(lh.ntk_gram(base, split.x, outputs="trace")).max()) / len(y)
        lr = cfg.lr_fraction * 2.0 / lam_max
        for alpha in [*sorted(cfg.alphas), None]:
            model = lh.Linearized(lh.fork(base)) if alpha is None else lh.AlphaScaled(lh.fork(base), alpha)
            rid = f"{ex}-{run_label(alpha)}"
            rec = lh.RunRecord(out / rid).start(cfg, example=ex, run=run_label(alpha), alpha=alpha, lr=lr)
            stepper = lh.GD(lr) if cfg.stepper == "gd" else lh.GradientFlow(dt=lr, max_dgrad=cfg.max_dgrad)
            lh.train(model, split, loss="mse", stepper=stepper, run_id=rid, record=rec, progress=True,
                     stop=lh.Stop(max_steps=cfg.max_steps, loss_below=cfg.loss_fraction * loss0),
                     schedule=lh.Schedule(milestone_ratio=0.9, points_per_decade=20))
            print(f"[fig14] {rid}: {rec.status()['status']} after {rec.status()['steps']} steps "
                  f"(converged: {rec.status()['converged']})", flush=True)
    df = curves_from_records(out)
    lh.atomic_write(out / "curves.parquet", df)
    summary = orderings(df, runs)
    marks = {f"example{k}": None if summary[f"example{k}_held"] else "ordering NOT reproduced" for k in (1, 2, 3)}
    styles = {r: {"ls": "-" if i == 0 else ("--" if r == "linearized" else ":"), "alpha": 1.0 if i == 0 or
                  r == "linearized" else 0.5} for i, r in enumerate(runs)}
    fig = group_loss_panels(df, [runs[0], "linearized"], styles,
                            f"2-layer MLP: {runs[0]} (solid) vs linearized (dashed)", marks=marks)
    paths = save_figure(fig, out / "fig14")
    lines = ["fig14: Examples 1-3 with a dense 2-layer MLP, " + ", ".join(runs)]
    o = summary["example1_order_at_half_progress"]
    lines.append("Example 1 order learned (first -> last) at half progress: "
                 + ", ".join(f"{r} {v}" for r, v in o.items())
                 + f"; Spearman({runs[0]}, linearized) = {summary['example1_spearman_vs_linearized']:+.2f}"
                 + f" -> held: {summary['example1_held']}")
    p = summary["example2_noisy_peak_over_initial"]
    lines.append("Example 2 noisy loss peak / initial: " + ", ".join(f"{r} {p[r]:.2f}" for r in runs)
                 + "; gap vs linearized at equal progress: "
                 + ", ".join(f"{r} {v:+.4f}" for r, v in summary["example2_noisy_gap_vs_linearized"].items())
                 + f" -> held: {summary['example2_held']}")
    lines.append("Example 3 without-spurious gap vs linearized at equal progress: "
                 + ", ".join(f"{r} {v:+.4f}" for r, v in summary["example3_minority_gap_vs_linearized"].items())
                 + f" -> held: {summary['example3_held']}")
    text = "\n".join(lines) + "\n"
    write_claims(out, text, summary, paths[0], "fig14")
    return summary


EXPERIMENT = Experiment("fig14", "Examples 1-3 with a 2-layer MLP, alpha in {0.1, 1, 10, 100} and linearized (Fig. 14)",
                        Config, PRESETS, main)
