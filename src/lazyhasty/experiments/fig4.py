"""fig4: the three panels of Fig. 4 of George et al. from the closed forms of the quadratic model.

Per-group loss against mean training loss (equal progress), non-linear regime solid, linearized dashed.
Parameters (the paper gives mu and n, q, d; sigma, eta and lambda are our choices, documented here):
  Example 1: mu = (9, 8, 7, 6, 5), w0 = sqrt(sigma) [1 ... 1], sigma = 1e-4.
  Example 2: n = 20, q = 5 noisy, d = 200, eta = 0.5.
  Example 3: n = 20, q = 5 without spurious, d = 200, lambda = 0.5, eta = 0.5.
The linearized curves use eq. 13 with its corrected rate (see lazyhasty.theory.quadratic). The curves are runs of
the long-table layout, compared by ``compare_runs`` (exact: one deterministic "seed") with the measures that fig14
applies to trained networks (:func:`example_claims`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import lazyhasty as lh
from lazyhasty.plotting import examples_figure, save_figure
from lazyhasty.theory import QuadraticModel, examples

from . import Experiment

PROGRESS = ("train", "all", "loss")
UNTIL = 0.2  # Examples 2 and 3 are compared over the first part of training: mean loss from L0 down to UNTIL x L0


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
        if len(self.mu) < 2 or list(self.mu) != sorted(self.mu, reverse=True) or min(self.mu) <= 0:
            raise ValueError(f"mu must be at least two decreasing numbers > 0, got {self.mu}")
        if not (self.d > self.n + 1 and 1 <= self.q < -(-self.n // 2) and 0 < self.lam < 1):
            raise ValueError("Examples 2 and 3 need d > n + 1, 1 <= q < n / 2 and 0 < lam < 1")


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


def closed_form_runs(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The closed forms as runs: (long table ``run_id, step, t, split, group, metric, value`` of per-group losses
    at the times where the mean loss passes ``points`` equal-progress levels, runs table ``run_id, example, seed,
    regime, alpha, converged``)."""
    rows, runs = [], []
    for ex, (X, y, groups) in problems(cfg).items():
        qm = QuadraticModel(X, y, np.sqrt(cfg.sigma))
        L0, Lmin = qm.mean_loss(0.0)[0], qm.mean_loss(1e12)[0]
        levels = Lmin + (L0 - Lmin) * np.geomspace(1.0, 1e-4, cfg.points)
        for regime in ("nonlinear", "linear"):
            ts = qm.time_at_loss(levels[1:-1], regime)
            ts = np.concatenate([[0.0], ts[np.isfinite(ts)]])
            per = qm.per_example_loss(ts, regime)  # (T, n)
            rid = f"{ex}-{regime}"
            for g, mask in {"all": np.ones(len(y), bool), **groups}.items():
                rows.append(pd.DataFrame({"run_id": rid, "step": np.arange(len(ts)), "t": ts, "split": "train",
                                          "group": g, "metric": "loss", "value": per[:, mask].mean(1)}))
            runs.append({"run_id": rid, "example": ex, "seed": 0, "regime": regime,
                         "alpha": 1.0 if regime == "nonlinear" else np.inf, "converged": True})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(runs)


def comparisons(metrics: pd.DataFrame, runs: pd.DataFrame, feature: str, lazy: str, exact: bool = False,
                until: float | None = UNTIL, levels: int = 30, **settings) -> dict[str, lh.Comparison]:
    """One comparison per example (``runs.example``), at ``levels`` levels of the mean training loss from the start
    to ``until`` x its lowest starting value (None: as far as any run got, e.g. for a figure)."""
    out = {}
    for ex, r in runs.groupby("example", sort=True):
        m = metrics[metrics.run_id.isin(r.run_id)]
        start = m[(m.split == "train") & (m.group == "all") & (m.metric == "loss")].sort_values("step") \
            .groupby("run_id").value.first().min()
        out[ex] = lh.compare_runs(m, r, progress=PROGRESS, feature=feature, lazy=lazy, levels=levels, exact=exact,
                                  target=None if until is None else until * start,
                                  settings={"example": ex, **settings})
    return out


def half_times(metrics: pd.DataFrame, run: str, fraction: float = 0.5) -> np.ndarray:
    """Example 1's per-example normalised progress: for each example (groups x1 .. xn, in index order) the first
    time t at which its loss is at most ``fraction`` (half) of its initial value, interpolated linearly between
    measurements (inf when it never gets there)."""
    d = metrics[(metrics.run_id == run) & (metrics.split == "train") & (metrics.metric == "loss")
                & metrics.group.str.fullmatch(r"x\d+")]
    out = []
    for g in sorted(set(d.group), key=lambda g: int(g[1:])):
        c = d[d.group == g].sort_values("t")
        t, loss = c.t.to_numpy(float), c.value.to_numpy(float)
        k = np.nonzero(loss <= fraction * loss[0])[0]
        if len(k) == 0:
            out.append(np.inf)
        elif k[0] == 0:
            out.append(t[0])
        else:
            j = k[0]  # loss[j - 1] > half >= loss[j]
            out.append(t[j - 1] + (t[j] - t[j - 1]) * (loss[j - 1] - fraction * loss[0]) / (loss[j - 1] - loss[j]))
    return np.asarray(out)


def example_claims(comps: dict[str, lh.Comparison], source: str, suffix: str = "") -> list[dict]:
    """The statements of Examples 1-3 (George et al. 2022, section 4.4) on per-group loss curves of a non-linear
    (feature) and a linear(ized) (lazy) regime, every seed; ids ``example<k><suffix>``.

    * example1: the learning order flips: in every seed, ordered by the time each example's loss halves
      (:func:`half_times`), the non-linear run learns the examples in the reverse order of the linear one. Also
      reported (``robustness``): the same at a quarter of the initial loss.
    * example2: the noisy examples' loss rises higher (peak / initial) in the non-linear run in every seed, and is
      higher at equal progress (``Comparison.answer``: mean training loss from L0 down to L0 / 5).
    * example3: the examples without the spurious feature have the higher loss at equal progress in the non-linear
      run.
    Each is earned only where the runs stayed in their regimes and reached their targets, and with a second lazy run
    (``rate_check``) only where its verdict is the same with it (:meth:`Comparison.judged`).
    """
    c1, c2, c3 = comps["example1"], comps["example2"], comps["example3"]
    nl, lin = c1.feature, c1.lazy

    def order_flips(c: lh.Comparison) -> tuple[bool | None, dict]:
        ids = c.runs.set_index(["seed", "regime"]).run_id
        h = {s: {r: half_times(c.metrics, ids[(s, r)]) for r in (c.feature, c.lazy)} for s in c.settings["seeds"]}
        finite = all(np.isfinite(v).all() and len(v) > 1 for hs in h.values() for v in hs.values())
        order = {str(s): {r: [int(i) + 1 for i in np.argsort(v, kind="stable")] for r, v in hs.items()}
                 for s, hs in h.items()}
        flips = [o[c.feature] == o[c.lazy][::-1] for o in order.values()]
        quarter = [list(np.argsort(half_times(c.metrics, ids[(s, c.feature)], 0.25), kind="stable")) == list(
            np.argsort(half_times(c.metrics, ids[(s, c.lazy)], 0.25), kind="stable"))[::-1] for s in h]
        return (all(flips) if finite else None), dict(
            order=order, flipped_per_seed=flips, robustness={"at a quarter of the initial loss": quarter},
            half_times={str(s): {r: v.tolist() for r, v in hs.items()} for s, hs in h.items()}, seeds=len(h),
            spearman_half_times=[float(spearmanr(*hs.values()).statistic) if finite else float("nan")
                                 for hs in h.values()],
            note="" if finite else "an example's loss never halved in some run")

    ex2 = c2.metrics[(c2.metrics.group == "noisy") & (c2.metrics.metric == "loss")]
    peak = {f"{s}/{r}": float(d.value.max() / d.sort_values("step").value.iloc[0])
            for (s, r), d in ex2.groupby(["seed", "regime"])}
    higher = [peak[f"{s}/{nl}"] > peak[f"{s}/{lin}"] for s in c2.settings["seeds"]]
    claim2 = c2.answer(f"example2{suffix}", f"Example 2: the noisy examples' loss rises higher in {nl} than in {lin} "
                       "and stays higher at equal progress (the non-linear regime fits the noisy labels later)", source,
                       "train", "noisy", expect="lazy", noisy_peak_over_initial=peak, peak_higher_per_seed=higher)
    if claim2["held"] is not None:
        claim2["held"] = bool(claim2["held"] and all(higher))
    return [
        c1.judged(f"example1{suffix}", f"Example 1: ordered by the time each example's loss halves, {nl} learns the "
                  f"examples in the reverse order of {lin} (linearization flips the learning order)", source,
                  order_flips),
        claim2,
        c3.answer(f"example3{suffix}", f"Example 3: the examples without the spurious feature have the higher loss "
                  f"at equal progress in {nl} than in {lin} (the non-linear regime relies on the spurious feature "
                  "first)", source, "train", "without spurious", expect="lazy"),
    ]


def example_lines(claims: list[dict]) -> list[str]:
    """Readable lines of :func:`example_claims`."""
    c1, c2, c3 = (c["numbers"] for c in claims)
    return ["Example 1 order by half-loss time (first to last): " + "; ".join(
                f"{s}: " + ", ".join(f"{r} {o}" for r, o in os.items()) for s, os in c1["order"].items()),
            "Example 2 noisy-group loss, max / initial: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                      c2["noisy_peak_over_initial"].items())
            + f"; gap (non-linear - linear) at equal progress {c2['gap']:+.4f}",
            f"Example 3 without-spurious gap (non-linear - linear) at equal progress {c3['gap']:+.4f}"]


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    metrics, runs = closed_form_runs(cfg)
    lh.runs.atomic_write(out / "curves.parquet", metrics.merge(runs, on="run_id"))
    df = pd.read_parquet(out / "curves.parquet")  # the figure and the claims read what was written
    comps = comparisons(df, runs, "nonlinear", "linear", exact=True)
    claims = example_claims(comps, "George et al. 2022, Fig. 4, Examples 1-3 (eqs. 16-19)")
    whole = comparisons(df, runs, "nonlinear", "linear", exact=True, until=None, levels=60)  # the whole range
    paths = save_figure(examples_figure({ex: c.table for ex, c in whole.items()}, ["nonlinear", "linear"],
                                        "Quadratic model, closed forms: non-linear (wide, solid) vs linearized "
                                        "(dashed)"), out / "fig4")
    lines = ["fig4: quadratic model, closed forms (George et al., section 4.4)", *example_lines(claims)]
    return lh.claims.write(out, "fig4", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig4", "quadratic model, closed forms: per-group loss at equal progress (Fig. 4)",
                        Config, PRESETS, main)
