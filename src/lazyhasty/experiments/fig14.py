"""fig14: Examples 1-3 of the quadratic model with a dense 2-layer network (George et al., Fig. 14, appendix G).

The paper's set-up: the data of fig4, a dense 2-layer *linear* network d -> width -> 1 without bias (PyTorch's
default init multiplied by ``init_scale`` = 0.5), MSE loss 1/2 (f - y)^2, full-batch GD at lr 1e-3 / alpha^2, alpha
= 0.1 (feature) against alpha = 10 (lazy), forked from one initialisation. The paper's loss is the sum 1/2 sum_i
(f(x_i) - y_i)^2 (section 4); the engine minimises the mean, so each run steps with n lr / alpha^2. Each run trains
until its mean loss is ``loss_fraction`` x its initial loss (``max_steps`` is a budget; a run that misses it is
reported). The width (100) is ours: the paper does not state it.

Claims (``example_claims`` of fig4, the same measures that give "held" on the closed forms):
  example1: ordered by the time each example's loss halves, alpha = 0.1 learns the examples in the reverse order
            of alpha = 10.
  example2: the noisy examples' loss rises higher and stays higher at equal progress in alpha = 0.1.
  example3: the examples without the spurious feature have the higher loss at equal progress in alpha = 0.1.
  stays_linear: the alpha = 10 run's kernel alignment with initialisation stays >= 0.9 on every example while
            alpha = 0.1's falls below (a linear network has no ReLU signs); without it the others are not measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

import lazyhasty as lh
from lazyhasty.plotting import group_loss_panels, save_figure

from . import Experiment, write_claims
from .fig4 import Config as Fig4Config
from .fig4 import example_claims, problems


@dataclass(frozen=True)
class Config:
    alphas: tuple[float, float] = (0.1, 10.0)  # feature, lazy (the paper's)
    width: int = 100  # hidden units (not stated in the paper)
    init_scale: float = 0.5  # PyTorch's default init times this (the paper's)
    lr: float = 1e-3  # eta; each run steps with eta / alpha^2 (the paper's)
    max_steps: int = 200_000  # budget per run
    loss_fraction: float = 1e-2  # stop at this fraction of the initial loss
    seed: int = 0  # network initialisation
    data_seed: int = 0  # labels and noisy/minority examples

    def __post_init__(self):
        if len(self.alphas) != 2 or min(self.alphas) <= 0 or self.alphas[0] >= self.alphas[1]:
            raise ValueError(f"alphas must be two numbers 0 < feature < lazy, got {self.alphas}")
        if self.width < 1 or self.max_steps < 1 or not self.lr > 0 or not 0 < self.loss_fraction < 1:
            raise ValueError("width and max_steps must be >= 1, lr > 0 and 0 < loss_fraction < 1")


PRESETS = {"quick": Config(), "paper": Config(loss_fraction=1e-4, max_steps=2_000_000)}


def network(d: int, cfg: Config) -> torch.nn.Module:
    """The 2-layer linear network without bias, its default init scaled by ``init_scale``, in float64."""
    net = lh.MLP([d, cfg.width, 1], activation="linear", bias=False).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(cfg.init_scale)
    return net


def curves_from_records(out: Path) -> pd.DataFrame:
    """example, run, step, t, mean_loss, group, loss: read back from the run records (never from the models)."""
    m = lh.load_runs(out / "runs")
    m = m[(m.metric == "loss") & (m.split == "train")]
    rows = []
    for (ex, run), d in m.groupby(["example", "run"]):
        piv = d.pivot_table(index="t", columns="group", values="value").sort_index()
        for g in piv.columns:
            if g != "all":
                rows.append(pd.DataFrame({"example": ex, "run": run, "t": piv.index, "mean_loss": piv["all"],
                                          "group": g, "loss": piv[g]}))
    return pd.concat(rows, ignore_index=True)


def linearity_table(m: pd.DataFrame) -> pd.DataFrame:
    """example, regime, mean_loss, metric, value: each run's linearity metrics against its mean training loss."""
    loss = m[(m.split == "train") & (m.group == "all") & (m.metric == "loss")][["run_id", "step", "value"]]
    lin = m[m.metric.isin(["ntk_alignment", "sign_similarity", "representation_alignment"])]
    lin = lin.merge(loss.rename(columns={"value": "mean_loss"}), on=["run_id", "step"])
    return lin.assign(regime=lin.run)[["example", "regime", "mean_loss", "metric", "value"]]


def main(cfg: Config, out: Path) -> dict:
    runs = [f"alpha={a:g}" for a in cfg.alphas]
    pairs = {}
    for ex, (X, y, groups) in problems(Fig4Config(seed=cfg.data_seed)).items():
        split = lh.Split(torch.tensor(X), torch.tensor(y), lh.Groups(groups, n=len(y)))
        base = lh.seeded(lambda X=X: network(X.shape[1], cfg), cfg.seed)
        ids = [f"{ex}-{r}" for r in runs]
        pairs[ex] = tuple(ids)
        recs = [lh.RunRecord(out / "runs" / rid).start(cfg, example=ex, run=r, alpha=a, lr=cfg.lr * len(y) / a ** 2)
                for rid, r, a in zip(ids, runs, cfg.alphas)]
        with torch.no_grad():
            loss0 = float((0.5 * (base(split.x)[:, 0] - split.y) ** 2).mean())
        ens = lh.Ensemble([lh.AlphaScaled(lh.fork(base), a) for a in cfg.alphas])
        probe = lh.LinearityProbe(split.x, split="probe", outputs="trace", per_layer=False)
        print(f"[fig14] {ex}: {', '.join(runs)}, GD lr {cfg.lr:g} / alpha^2 on the summed loss, until loss < "
              f"{cfg.loss_fraction:g} x L0 (budget {cfg.max_steps} steps)", flush=True)
        lh.train(ens, split, loss="mse", stepper=lh.GD(cfg.lr * len(y)), run_id=ids, record=recs, progress=True,
                 stop=lh.Stop(max_steps=cfg.max_steps, loss_below=cfg.loss_fraction * loss0),
                 schedule=lh.Schedule(milestone_ratio=0.9, points_per_decade=20),
                 probes=(lh.loss_probe, probe))
    df = curves_from_records(out)
    lh.atomic_write(out / "curves.parquet", df)
    metrics = lh.load_runs(out / "runs")
    lin = lh.linearity_verdict(metrics, pairs)
    nl, lazy = runs
    claims = [lh.stays_linear_claim(lin, nl, lazy)]
    missed = sorted(r for r in metrics.run_id.unique() if not lh.RunRecord(out / "runs" / r).status().get("converged"))
    claims += [{**c, "held": lh.gate(c["held"], lin, missed), "numbers": {**c["numbers"], "missed": missed}}
               for c in example_claims(
        df, nl, lazy, "George et al. 2022, Fig. 14 (appendix G), Examples 1-3 (eqs. 16-19)")]
    marks = {c["id"]: None if c["held"] else "ordering NOT reproduced" if c["held"] is False else "not measured"
             for c in claims[1:]}
    fig = group_loss_panels(df, runs, {nl: {"ls": "-"}, lazy: {"ls": "--"}},
                            f"2-layer linear network: {nl} (solid) vs {lazy} (dashed)", marks=marks,
                            linearity=linearity_table(metrics))
    paths = save_figure(fig, out / "fig14")
    c1, c2, c3 = (c["numbers"] for c in claims[1:])
    lines = [f"fig14: Examples 1-3 with a dense 2-layer linear network (width {cfg.width}), {nl} vs {lazy}",
             lh.linearity_line(lin),
             "Example 1 order by half-loss time (first -> last): " + ", ".join(f"{r} {v}" for r, v in
                                                                            c1["order"].items()),
             "Example 2 noisy loss peak / initial: " + ", ".join(f"{r} {v:.2f}" for r, v in
                                                               c2["noisy_peak_over_initial"].items())
             + f"; gap at equal progress {c2['noisy_gap_at_equal_progress']:+.4f}",
             f"Example 3 without-spurious gap at equal progress {c3['minority_gap_at_equal_progress']:+.4f}"]
    return write_claims(out, "fig14", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig14", "Examples 1-3 with a dense 2-layer linear network, alpha 0.1 vs 10 (Fig. 14)",
                        Config, PRESETS, main)
