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
from scipy.stats import spearmanr

from lazyhasty import atomic_write, claim
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


def half_times(df: pd.DataFrame, run: str, time: str = "t") -> np.ndarray:
    """Example 1's per-example normalised progress: for each example (groups x1 .. xn, in index order) the first
    ``time`` at which its loss is at most half its initial value, interpolated linearly between measurements
    (inf when it never gets there). df: columns example, run, ``time``, group, loss."""
    d = df[(df.example == "example1") & (df.run == run)]
    out = []
    for g in sorted(set(d.group), key=lambda g: int(g[1:])):
        c = d[d.group == g].sort_values(time)
        t, loss = c[time].to_numpy(float), c.loss.to_numpy(float)
        k = np.nonzero(loss <= 0.5 * loss[0])[0]
        if len(k) == 0:
            out.append(np.inf)
        elif k[0] == 0:
            out.append(t[0])
        else:
            j = k[0]  # loss[j - 1] > half >= loss[j]
            out.append(t[j - 1] + (t[j] - t[j - 1]) * (loss[j - 1] - 0.5 * loss[0]) / (loss[j - 1] - loss[j]))
    return np.asarray(out)


def example_claims(df: pd.DataFrame, nl: str, lin: str, source: str, time: str = "t") -> list[dict]:
    """The statements of Examples 1-3 (George et al. 2022, section 4.4) measured on per-group loss curves of a
    non-linear run ``nl`` and a linear(ized) run ``lin``: df columns example, run, ``time``, mean_loss, group, loss.

    * example1: the learning order flips: ordered by the time each example's loss halves (:func:`half_times`), the
      non-linear run learns the examples in the reverse order of the linear one (index n first vs index 1 first).
    * example2: the noisy examples' loss rises higher (peak / initial) in the non-linear run, and is higher at equal
      progress (mean training loss from L0 down to L0 / 5).
    * example3: the examples without the spurious feature have the higher loss at equal progress in the non-linear
      run.
    """
    h = {r: half_times(df, r, time) for r in (nl, lin)}
    measured = all(np.isfinite(v).all() and len(v) > 1 for v in h.values())
    order = {r: [int(i) + 1 for i in np.argsort(v, kind="stable")] for r, v in h.items()}
    rho = float(spearmanr(h[nl], h[lin]).statistic) if measured else float("nan")
    ex2 = df[(df.example == "example2") & (df.group == "noisy")]
    peak = {r: float(d.loss.max() / d.sort_values(time).loss.iloc[0]) for r, d in ex2.groupby("run")}
    gap2 = equal_progress_gap(df[df.example == "example2"], "noisy", nl, lin)
    gap3 = equal_progress_gap(df[df.example == "example3"], "without spurious", nl, lin)
    return [
        claim("example1", f"Example 1: ordered by the time each example's loss halves, {nl} learns the examples in "
              f"the reverse order of {lin} (linearization flips the learning order)", source,
              order[nl] == order[lin][::-1] if measured else None, half_times={r: v.tolist() for r, v in h.items()},
              order=order, spearman_half_times=rho,
              note="" if measured else "an example's loss never halved in some run"),
        claim("example2", f"Example 2: the noisy examples' loss rises higher in {nl} than in {lin} and stays higher "
              "at equal progress (the non-linear regime fits the noisy labels later)", source,
              None if not np.isfinite(gap2) or len(peak) < 2 else peak[nl] > peak[lin] and gap2 > 0,
              noisy_peak_over_initial=peak, noisy_gap_at_equal_progress=gap2),
        claim("example3", f"Example 3: the examples without the spurious feature have the higher loss at equal "
              f"progress in {nl} than in {lin} (the non-linear regime relies on the spurious feature first)",
              source, None if not np.isfinite(gap3) else gap3 > 0, minority_gap_at_equal_progress=gap3),
    ]


def main(cfg: Config, out: Path) -> dict:
    df = curves(cfg)
    atomic_write(out / "curves.parquet", df)
    df = pd.read_parquet(out / "curves.parquet")
    claims = example_claims(df, "nonlinear", "linear", "George et al. 2022, Fig. 4, Examples 1-3 (eqs. 16-19)")
    fig = group_loss_panels(df, ["nonlinear", "linear"], {"nonlinear": {"ls": "-"}, "linear": {"ls": "--"}},
                            "Quadratic model, closed forms: non-linear (wide, solid) vs linearized (dashed)")
    paths = save_figure(fig, out / "fig4")
    c1, c2, c3 = (c["numbers"] for c in claims)
    lines = ["fig4: quadratic model, closed forms (George et al., section 4.4)",
             f"Example 1 order by half-loss time (first to last): non-linear {c1['order']['nonlinear']}, linear "
             f"{c1['order']['linear']}",
             "Example 2 noisy-group loss, max / initial: " + ", ".join(f"{r} {v:.3f}" for r, v in
                                                                       c2["noisy_peak_over_initial"].items())
             + f"; gap (non-linear - linear) at equal progress {c2['noisy_gap_at_equal_progress']:+.4f}",
             f"Example 3 without-spurious gap (non-linear - linear) at equal progress "
             f"{c3['minority_gap_at_equal_progress']:+.4f}"]
    return write_claims(out, "fig4", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig4", "quadratic model, closed forms: per-group loss at equal progress (Fig. 4)",
                        Config, PRESETS, main)
