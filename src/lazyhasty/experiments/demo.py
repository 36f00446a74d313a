"""demo: one MLP on the yin-yang toy, trained at alpha = 1 and alpha = 100 from the same initialisation.

The smallest end-to-end use of the library (George et al., section 3.1, in miniature): fork one theta0 into
``AlphaScaled(model, alpha)`` for each alpha, train each with full-batch GD at learning rate eta / alpha^2,
and compare (i) the loss curves on the shared theory-time axis and (ii) the per-region training loss at
*equal progress* (the deepest equal-loss milestone both runs reached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

import lazyhasty as lh
from lazyhasty import (
    GD,
    MLP,
    AlphaScaled,
    RunRecord,
    Schedule,
    Stop,
    atomic_write,
    fork,
    load_runs,
    seeded,
    train,
    yinyang,
)
from lazyhasty.plotting import loss_curves, save_figure

from . import Experiment, write_claims


@dataclass(frozen=True)
class Config:
    n_train: int = 100  # yin-yang training points (the paper: 100)
    widths: tuple[int, ...] = (60, 60, 60)  # hidden widths: 2 -> 60 -> 60 -> 60 -> 1 is the paper's 4-layer MLP
    alphas: tuple[float, ...] = (1.0, 100.0)  # regimes, forked from one theta0
    lr: float = 0.5  # eta; each run steps with eta / alpha^2 (the paper uses 0.01 and far more steps)
    max_steps: int = 4000  # budget per run
    loss_threshold: float = 0.3  # stop a run once its mean training loss is below this
    milestone_ratio: float = 0.96  # equal-progress milestones at L0 * r^k
    seed: int = 0  # model initialisation
    data_seed: int = 0  # yin-yang sample
    dtype: str = "float32"  # float32 or float64
    device: str = "cpu"

    def __post_init__(self):
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"every alpha must be > 0, got alphas={self.alphas}")
        if self.n_train < 2 or self.max_steps < 1 or not self.lr > 0:
            raise ValueError("n_train must be >= 2, max_steps >= 1 and lr > 0")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0 < self.milestone_ratio < 1:
            raise ValueError(f"milestone_ratio must be in (0, 1), got {self.milestone_ratio}")


PRESETS = {
    "quick": Config(),
    "paper": Config(lr=0.01, max_steps=400_000),
}


def run_id(alpha: float) -> str:
    return f"alpha={alpha:g}"


def main(cfg: Config, out: Path) -> dict:
    dtype = getattr(torch, cfg.dtype)
    data = yinyang(cfg.n_train, seed=cfg.data_seed, dtype=dtype).to(cfg.device)
    base = seeded(lambda: MLP([2, *cfg.widths, 1]).to(device=cfg.device, dtype=dtype), cfg.seed)
    for alpha in cfg.alphas:
        rid = run_id(alpha)
        record = RunRecord(out / rid).start(cfg, alpha=alpha)
        print(f"[demo] training {rid}: GD, lr = {cfg.lr:g} / alpha^2, up to {cfg.max_steps} steps", flush=True)
        train(AlphaScaled(fork(base), alpha), data, loss="bce", stepper=GD(cfg.lr),
              stop=Stop(max_steps=cfg.max_steps, loss_below=cfg.loss_threshold),
              schedule=Schedule(milestone_ratio=cfg.milestone_ratio), run_id=rid, record=record, progress=True,
              probes=(lh.loss_probe, lh.parameter_distance_probe,
                      lh.LinearityProbe(data.x, split="probe", outputs="trace", per_layer=False)))
    return summarize(out, cfg)


def summarize(out: Path, cfg: Config) -> dict:
    """Read the records back (never the models) and write summary.txt, report.md and the figure."""
    trace = load_runs(out, table="trace")
    metrics = load_runs(out)
    thresholds = [0.6, 0.5, 0.4, cfg.loss_threshold]
    fig = save_figure(loss_curves(trace, thresholds=thresholds, title="yin-yang, 2-60-60-60-1 MLP"),
                      out / "loss_curves")
    lines = ["demo: yin-yang MLP, alpha-scaled, forked from one initialisation", ""]
    lines.append(f"{'run':>12} {'status':>9} {'steps':>6} {'t':>8} {'loss0':>7} {'final':>7}  "
                 + "  ".join(f"t(L<{th:g})" for th in thresholds))
    table = {}
    for rid, df in trace.groupby("run_id", sort=False):
        df = df.sort_values("step")
        times = []
        for th in thresholds:
            hit = df[df["loss"] < th]
            times.append(float(hit["t"].iloc[0]) if len(hit) else math.nan)
        st = metrics[metrics.run_id == rid]["status"].iloc[0]
        table[rid] = {"status": st, "steps": int(df["step"].iloc[-1]), "t": float(df["t"].iloc[-1]),
                      "loss0": float(df["loss"].iloc[0]), "final_loss": float(df["loss"].iloc[-1]),
                      "t_at_threshold": dict(zip(map(str, thresholds), times))}
        lines.append(f"{rid:>12} {st:>9} {table[rid]['steps']:>6} {table[rid]['t']:>8.3g} "
                     f"{table[rid]['loss0']:>7.4f} {table[rid]['final_loss']:>7.4f}  "
                     + "  ".join(f"{x:>9.3g}" for x in times))
    lines += ["", "Per-region training loss at equal progress (deepest milestone reached by every run):"]
    ms = metrics.dropna(subset=["milestone"])
    common = ms.groupby("run_id")["milestone"].max().min() if len(ms) else None
    eq = {}
    if common is not None and not pd.isna(common):
        at = ms[(ms.milestone == common) & (ms.split == "train") & (ms.metric == "loss")]
        pivot = at.pivot_table(index="group", columns="run_id", values="value")
        lines.append(f"milestone k = {int(common)} (mean loss < L0 * {cfg.milestone_ratio}^{int(common)})")
        lines.append(pivot.to_string(float_format=lambda v: f"{v:.4f}"))
        eq = {g: {r: float(v) for r, v in row.items()} for g, row in pivot.iterrows()}
        runs = list(pivot.columns)
        if len(runs) == 2 and {"disk", "half_plane"} <= set(pivot.index):
            d = pivot.loc["disk"] - pivot.loc["half_plane"]
            lines.append("disk minus half-plane loss: " + ", ".join(f"{r}: {d[r]:+.4f}" for r in runs))
    a_nl, a_lin = min(cfg.alphas), max(cfg.alphas)
    lin = lh.linearity_verdict(metrics, {cfg.seed: (run_id(a_nl), run_id(a_lin))})
    lines.append(lh.linearity_line(lin))
    text = "\n".join(lines) + "\n"
    atomic_write(out / "report.md", "# lazyhasty demo\n\n```\n" + text + "```\n\n"
                      "![loss curves](loss_curves.png)\n")
    doc = write_claims(out, "demo", [lh.stays_linear_claim(lin, run_id(a_nl), run_id(a_lin))], text, fig[0])
    print(f"[demo] report: {out / 'report.md'}")
    return {**doc, "runs": table, "equal_progress": eq}


EXPERIMENT = Experiment(
    name="demo",
    description="yin-yang MLP at alpha = 1 and 100 from one initialisation: loss curves and equal-progress losses",
    config=Config,
    presets=PRESETS,
    main=main,
)
