"""fig4: the three panels of Fig. 4 of George et al. from the closed forms of the quadratic model.

Per-group loss against mean training loss (equal progress), non-linear regime solid, linearized dashed.
Parameters (the paper gives mu and n, q, d; sigma, eta and lambda are our choices, documented here):
  Example 1: mu = (9, 8, 7, 6, 5), w0 = sqrt(sigma) [1 ... 1], sigma = 1e-4.
  Example 2: n = 20, q = 5 noisy, d = 200, eta = 0.5.
  Example 3: n = 20, q = 5 without spurious, d = 200, lambda = 0.5, eta = 0.5.
The linearized curves use eq. 13 with its corrected rate (see lazyhasty.theory.quadratic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lazyhasty import atomic_write
from lazyhasty.plotting import group_loss_panels, save_figure
from lazyhasty.theory import QuadraticModel, examples

from . import Experiment, write_claims


@dataclass(frozen=True)
class Config:
    mu: tuple[float, ...] = (9.0, 8.0, 7.0, 6.0, 5.0)  # Example 1 spectrum (the paper's)
    sigma: float = 1e-4  # w0 = sqrt(sigma) [1 ... 1] (small initialisation)
    n: int = 20  # examples in Examples 2 and 3
    q: int = 5  # noisy (Ex. 2) / without-spurious (Ex. 3) examples
    d: int = 200  # input dimension of Examples 2 and 3
    eta: float = 0.5  # per-example feature scale (eqs. 17, 19)
    lam: float = 0.5  # core-feature scale lambda (eq. 19)
    seed: int = 0  # labels and which examples are noisy / minority
    points: int = 200  # equal-progress levels per curve

    def __post_init__(self):
        if not self.sigma > 0 or self.points < 10:
            raise ValueError("sigma must be > 0 and points >= 10")


PRESETS = {"quick": Config(), "paper": Config(points=400)}


def problems(cfg: Config) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """X, y and named groups (boolean masks) of the three examples."""
    X1, y1, idx = examples.example1(cfg.mu)
    X2, y2, noisy = examples.example2(cfg.n, cfg.q, cfg.eta, cfg.d, cfg.seed)
    X3, y3, with_sp = examples.example3(cfg.n, cfg.q, cfg.lam, cfg.eta, cfg.d, cfg.seed)
    return {
        "example1": (X1, y1, {f"x{i + 1}": idx == i for i in range(len(idx))}),
        "example2": (X2, y2, {"clean": ~noisy, "noisy": noisy}),
        "example3": (X3, y3, {"with spurious": with_sp, "without spurious": ~with_sp}),
    }


def curves(cfg: Config) -> pd.DataFrame:
    """Long table example, run, level, t, mean_loss, group, loss from the closed forms, at equal-progress levels."""
    rows = []
    for ex, (X, y, groups) in problems(cfg).items():
        qm = QuadraticModel(X, y, np.sqrt(cfg.sigma))
        L0 = qm.mean_loss(0.0)[0]
        Lmin = qm.mean_loss(1e12)[0]
        levels = Lmin + (L0 - Lmin) * np.geomspace(1.0, 1e-4, cfg.points)
        for regime in ("nonlinear", "linear"):
            ts = qm.time_at_loss(levels[1:-1], regime)
            ts = np.concatenate([[0.0], ts[np.isfinite(ts)]])
            per = qm.per_example_loss(ts, regime)  # (T, n)
            mean = per.mean(1)
            for g, mask in groups.items():
                for k, t in enumerate(ts):
                    rows.append((ex, regime, k, t, mean[k], g, per[k, mask].mean()))
    return pd.DataFrame(rows, columns=["example", "run", "level", "t", "mean_loss", "group", "loss"])


def equal_progress_gap(df: pd.DataFrame, group: str, run_a: str, run_b: str, until: float = 0.2) -> float:
    """Mean over the first part of training (mean loss from L0 down to ``until`` L0, log-spaced levels) of the
    group's loss in run_a minus run_b, both interpolated at equal mean loss. df: columns run, mean_loss, group, loss.
    """
    d = df[(df.group == group) & np.isfinite(df.mean_loss) & np.isfinite(df.loss)]
    curves = {}
    for r in (run_a, run_b):
        dd = d[d.run == r]
        dd = dd.sort_values("step" if "step" in dd else "mean_loss", ascending="step" in dd)
        prog = np.minimum.accumulate(dd.mean_loss.to_numpy())  # progress, made monotone
        curves[r] = (-np.log(prog), dd.loss.to_numpy())
    if any(len(c[0]) == 0 for c in curves.values()):
        return float("nan")
    L0 = min(np.exp(-c[0][0]) for c in curves.values())
    reached = max(np.exp(-c[0][-1]) for c in curves.values())  # the deepest level both runs reached
    grid = np.geomspace(L0, max(L0 * until, reached), 30)
    interp = {r: np.interp(-np.log(grid), x, y) for r, (x, y) in curves.items()}
    return float(np.mean(interp[run_a] - interp[run_b]))


def claims(cfg: Config, df: pd.DataFrame) -> dict:
    """The paper's three statements, measured on the curves."""
    probs = problems(cfg)
    X1, y1, _ = probs["example1"]
    qm1 = QuadraticModel(X1, y1, np.sqrt(cfg.sigma))
    order = {r: [int(i) + 1 for i in np.argsort(qm1.convergence_time(1e-3 * qm1.theta_star.min(), r))]
             for r in ("nonlinear", "linear")}
    ex2 = df[(df.example == "example2") & (df.group == "noisy")]
    rise = {r: float(d.loss.max() / d.loss.iloc[0]) for r, d in ex2.groupby("run")}

    def mid_gap(ex, group):
        return equal_progress_gap(df[df.example == ex], group, "nonlinear", "linear")

    out = {
        "example1_order_nonlinear": order["nonlinear"], "example1_order_linear": order["linear"],
        "example1_flipped": order["nonlinear"] == order["linear"][::-1],
        "example2_noisy_loss_max_over_initial": rise,
        "example2_noisy_rises_nonlinear": rise["nonlinear"] > 1.0,
        "example2_noisy_gap_at_equal_progress": mid_gap("example2", "noisy"),
        "example3_minority_gap_at_equal_progress": mid_gap("example3", "without spurious"),
    }
    out["example2_held"] = out["example2_noisy_rises_nonlinear"] and out["example2_noisy_gap_at_equal_progress"] > 0
    out["example3_held"] = out["example3_minority_gap_at_equal_progress"] > 0
    return out


def main(cfg: Config, out: Path) -> dict:
    df = curves(cfg)
    atomic_write(out / "curves.parquet", df)
    summary = claims(cfg, pd.read_parquet(out / "curves.parquet"))
    fig = group_loss_panels(pd.read_parquet(out / "curves.parquet"), ["nonlinear", "linear"],
                            {"nonlinear": {"ls": "-"}, "linear": {"ls": "--"}},
                            "Quadratic model, closed forms: non-linear (wide, solid) vs linearized (dashed)")
    paths = save_figure(fig, out / "fig4")
    lines = [
        "fig4: quadratic model, closed forms (George et al., section 4.4)",
        f"Example 1 learning order (first to last): non-linear {summary['example1_order_nonlinear']}, "
        f"linear {summary['example1_order_linear']} -> flipped: {summary['example1_flipped']}",
        f"Example 2 noisy-group loss, max / initial: non-linear "
        f"{summary['example2_noisy_loss_max_over_initial']['nonlinear']:.3f}, linear "
        f"{summary['example2_noisy_loss_max_over_initial']['linear']:.3f}; mean gap (non-linear - linear) at equal "
        f"progress {summary['example2_noisy_gap_at_equal_progress']:+.4f} -> held: {summary['example2_held']}",
        f"Example 3 without-spurious loss, mean gap (non-linear - linear) at equal progress "
        f"{summary['example3_minority_gap_at_equal_progress']:+.4f} -> held: {summary['example3_held']}",
    ]
    text = "\n".join(lines) + "\n"
    write_claims(out, text, summary, paths[0], "fig4")
    return summary


EXPERIMENT = Experiment("fig4", "quadratic model, closed forms: per-group loss at equal progress (Fig. 4)",
                        Config, PRESETS, main)
