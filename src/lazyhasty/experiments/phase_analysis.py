"""The analysis of ``phase``: scaling fits, the fit table, the claim summary and the figure, from the tables only
(``phase_runs.parquet``, ``phase_cells.parquet`` and the cells' run records; nothing is trained here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lazyhasty import load_runs
from lazyhasty.claims import claim
from lazyhasty.metrics import broken_power_law, consistent, power_law, seed_bootstrap
from lazyhasty.plotting import phase_figure, save_figure

HALF_DECADE = math.sqrt(10.0)


def _side(x: np.ndarray, x_star: float) -> tuple[np.ndarray, np.ndarray]:
    """(feature, lazy) masks: at least half a decade below / above the crossover."""
    if not math.isfinite(x_star):
        return np.zeros(len(x), bool), np.zeros(len(x), bool)
    return x <= x_star / HALF_DECADE, x >= x_star * HALF_DECADE


def _median(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else math.nan


def _entry(name, value, ci, theory, n, tol=None, note=""):
    """One row of the fit table; ``consistent`` is None where there is no theory value or no fit."""
    ok = None if theory is None or not np.isfinite(value) else consistent(value, ci, theory, tol)
    return {"quantity": name, "value": value, "ci_low": ci[0], "ci_high": ci[1], "theory": theory,
            "tolerance": tol, "consistent": ok, "n": n, "note": note}


def _crossover(x, y, seeds, reps):
    b = broken_power_law(x, y, grid=200)
    ci = seed_bootstrap(lambda i: broken_power_law(x[i], y[i], grid=200), seeds, ["x_star"], reps=reps)
    return b, ci["x_star"]


def fit_table(runs: pd.DataFrame, progress: float, reps: int = 300) -> tuple[pd.DataFrame, dict]:
    """Every fitted number with its interval, the theory value and whether they agree; plus the crossovers.

    The crossover √h·α* is where the two time scales meet: t_1/2 is O(1) in the lazy regime and ~ t1 ~ √h·α in
    the feature regime (the slides: "when the dynamics stops before t1 we are in the lazy regime"), so it is the
    breakpoint of a two-piece power law fitted to t_1/2 (pooled over widths, and per width for α*(h)). The
    power laws of each regime are then fitted on the points at least half a decade away from it.
    """
    rows = []
    th = runs[np.isfinite(runs.t_half)]
    tx, ty, ts = th.sqrt_h_alpha.to_numpy(), th.t_half.to_numpy(), th.seed.to_numpy()
    bp, bci = _crossover(tx, ty, ts, reps)
    xs = bp["x_star"]
    rows.append(_entry("crossover sqrt(h)*alpha* (all widths, from t_1/2)", xs, bci, None, len(tx),
                       note="breakpoint of a two-piece power law fitted to t_1/2; interval: bootstrap over seeds"))
    per_h = []
    for h, g in th.groupby("h"):
        gx, gy, gs = g.sqrt_h_alpha.to_numpy(), g.t_half.to_numpy(), g.seed.to_numpy()
        b, ci = _crossover(gx, gy, gs, max(reps // 2, 50))
        per_h.append({"h": int(h), "sqrt_h_alpha_star": b["x_star"], "ci": ci,
                      "alpha_star": b["x_star"] / math.sqrt(h)})
        rows.append(_entry(f"crossover sqrt(h)*alpha* at h = {int(h)}", b["x_star"], ci, None, len(gx)))
    hs = np.array([p["h"] for p in per_h], float)
    xh = np.array([p["sqrt_h_alpha_star"] for p in per_h], float)
    flat = power_law(hs, xh)
    rows.append(_entry("slope of sqrt(h)*alpha* vs h (flat: alpha* ~ h^-1/2)", flat["slope"], flat["slope_ci"], 0.0,
                       flat["n"], 0.15, "95% t interval over the widths"))
    tf_, tl_ = _side(tx, xs)
    tl, tf = power_law(tx[tl_], ty[tl_]), power_law(tx[tf_], ty[tf_])
    rows.append(_entry("t_1/2 slope vs sqrt(h)*alpha, lazy side", tl["slope"], tl["slope_ci"], 0.0, tl["n"], 0.15,
                       "theory: O(1) in the paper's time; 95% t interval"))
    rows.append(_entry("t_1/2 slope vs sqrt(h)*alpha, feature side", tf["slope"], tf["slope_ci"], 1.0, tf["n"], 0.2,
                       "theory: t ~ sqrt(h)*alpha"))
    kernel = {}
    top = runs.sqrt_h_alpha.max()
    t_half_lazy = _median(runs[runs.sqrt_h_alpha == top].t_half)
    for point, label in (("half", "L(0)/2"), ("progress", f"{progress:g} L(0)")):
        ok = runs[runs[f"reached_{point}"] & np.isfinite(runs[f"kernel_change_{point}"])]
        x, y = ok.sqrt_h_alpha.to_numpy(), ok[f"kernel_change_{point}"].to_numpy()
        feat = _side(x, xs)[0]
        if point == "half":
            lazy = _side(x, xs)[1]
            xp = xs
        else:
            # a run is lazy at a point reached at time T if it has not left the tangent space by then:
            # t1 ~ sqrt(h) alpha > T. Calibrated on the t_1/2 crossover (t1 = t_1/2 at sqrt(h) alpha*), the
            # crossover for this point is sqrt(h) alpha* x T / t_1/2, T and t_1/2 taken at the laziest runs
            t_p = _median(ok[ok.sqrt_h_alpha == top].t_progress)
            xp = xs * t_p / t_half_lazy
            lazy = x >= xp if math.isfinite(xp) else np.zeros(len(x), bool)
            rows.append(_entry(f"crossover sqrt(h)*alpha* at loss {label} (t1 = its time {t_p:.3g})", xp,
                               (math.nan, math.nan), None, len(x),
                               note="sqrt(h)*alpha* from t_1/2 times T / t_1/2, both at the largest sqrt(h)*alpha"))
        kl, kf = power_law(x[lazy], y[lazy]), power_law(x[feat], y[feat])
        few = "" if len(np.unique(x[lazy])) >= 2 else "; too few lazy points: extend sqrt_h_alphas above the crossover"
        rows.append(_entry(f"kernel change slope vs sqrt(h)*alpha at loss {label}, lazy side", kl["slope"],
                           kl["slope_ci"], -1.0, kl["n"], 0.15,
                           f"points above the crossover ({xp:.3g}{', by half a decade' if point == 'half' else ''})"
                           f"; 95% t interval{few}"))
        rows.append(_entry(f"kernel change slope vs sqrt(h)*alpha at loss {label}, feature side", kf["slope"],
                           kf["slope_ci"], None, kf["n"], note="points >= half a decade below the crossover"))
        xs2 = np.unique(x)[-2:]
        two = power_law(x[np.isin(x, xs2)], y[np.isin(x, xs2)]) if len(xs2) == 2 else power_law([], [])
        rows.append(_entry(f"kernel change local slope at loss {label} between sqrt(h)*alpha = "
                           f"{', '.join(f'{v:.3g}' for v in xs2)}", two["slope"], two["slope_ci"], None, two["n"],
                           note="how close the largest sqrt(h)*alpha values come to the lazy limit (-1)"))
        kernel[point] = {"lazy": kl, "feature": kf, "x_star": xp, "local": two,
                         "t": t_half_lazy if point == "half" else t_p}
    table = pd.DataFrame(rows)
    return table, {"x_star": xs, "broken": bp, "kernel": kernel, "per_h": per_h, "t_lazy": tl, "t_feature": tf}


def regime_winner(runs: pd.DataFrame, x_star: float = math.nan) -> dict:
    """Which regime generalises better: end-of-run test error, paired by (h, seed).

    With a crossover ``x_star``, each (h, seed) compares its mean test error over the feature side (sqrt(h) alpha
    at least half a decade below x_star) with its mean over the lazy side (half a decade above); otherwise, or if
    a side is empty, the smallest and the largest sqrt(h) alpha. Difference feature − lazy with a 95% t interval.
    """
    x = runs.sqrt_h_alpha.to_numpy()
    feat, lazy = _side(x, x_star)
    if not (feat.any() and lazy.any()):
        feat, lazy = x == x.min(), x == x.max()
    side = {"feature": runs[feat], "lazy": runs[lazy]}
    a, b = (side[k].groupby(["h", "seed"]).test_err_end.mean() for k in ("feature", "lazy"))
    d = (a - b).dropna().to_numpy()
    span = {k: (float(v.sqrt_h_alpha.min()), float(v.sqrt_h_alpha.max())) for k, v in side.items()}
    out = {"feature_sqrt_h_alpha": span["feature"], "lazy_sqrt_h_alpha": span["lazy"], "pairs": len(d),
           "feature_err": float(a.mean()), "lazy_err": float(b.mean()), "diff": float(d.mean()) if len(d) else math.nan}
    if len(d) >= 2 and d.std(ddof=1) > 0:
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        out["diff_ci"] = (out["diff"] - half, out["diff"] + half)
    else:
        out["diff_ci"] = (out["diff"], out["diff"])
    lo_ci, hi_ci = out["diff_ci"]
    out["winner"] = "feature" if hi_ci < 0 else "lazy" if lo_ci > 0 else "neither (difference not significant)"
    return out


def variance_collapse(cells: pd.DataFrame, when: str = "end") -> dict:
    """Spread across widths of log10(h Var) vs of log10(Var) at each sqrt(h)*alpha (smaller = better collapse)."""
    c = cells[np.isfinite(cells[f"var_{when}"]) & (cells[f"var_{when}"] > 0)]
    s_hv, s_v = [], []
    for _, g in c.groupby("sqrt_h_alpha"):
        if len(g) >= 2:
            s_hv.append(np.log10(g[f"h_var_{when}"]).std(ddof=1))
            s_v.append(np.log10(g[f"var_{when}"]).std(ddof=1))
    return {"spread_h_var": float(np.mean(s_hv)) if s_hv else math.nan,
            "spread_var": float(np.mean(s_v)) if s_v else math.nan, "points": len(s_hv)}


def f0_claim(runs: pd.DataFrame, per_h: list[dict]) -> tuple[bool | None, dict]:
    """Geiger et al.: at large width alpha* f(w0, x) << 1, so alpha* (f - f0) ~ alpha* f and subtracting f0 is not
    needed. Per width: alpha*(h) = (sqrt(h) alpha*) / sqrt(h) times the RMS over test points and seeds of f(w0, x);
    held when it falls with h (log-log slope < 0 over >= 3 widths) and is < 0.1 at the largest width."""
    f0 = runs.groupby("h").f0_rms.mean() if "f0_rms" in runs else pd.Series(dtype=float)
    rows = [(p["h"], p["sqrt_h_alpha_star"] / math.sqrt(p["h"]) * float(f0.get(p["h"], math.nan))) for p in per_h]
    rows = [(h, v) for h, v in rows if np.isfinite(v) and v > 0]
    numbers = {"alpha_star_f0_per_width": {str(h): v for h, v in rows}}
    if len(rows) < 3:
        numbers["note"] = f"{len(rows)} widths with a crossover and f0 (need 3)"
        return None, numbers
    slope = float(np.polyfit(np.log([h for h, _ in rows]), np.log([v for _, v in rows]), 1)[0])
    numbers.update(slope=slope, largest_width=rows[-1][0], at_largest_width=rows[-1][1])
    return bool(slope < 0 and rows[-1][1] < 0.1), numbers


def plateau_claim(runs: pd.DataFrame) -> tuple[bool | None, dict]:
    """Geiger et al.: the test error has a plateau at large alpha. Per width, the test error at the equal-progress
    point of the two largest sqrt(h) alpha, paired by seed: held when for every width the 95% t interval of the
    difference contains 0 (no detectable change left), with >= 2 seeds and >= 3 widths."""
    per, ok = {}, True
    for h, g in runs.groupby("h"):
        top = sorted(g.sqrt_h_alpha.unique())[-2:]
        if len(top) < 2:
            continue
        a, b = (g[g.sqrt_h_alpha == x].set_index("seed").test_err_progress for x in top)
        d = (b - a).dropna().to_numpy()
        if len(d) < 2:
            continue
        half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))) if d.std(ddof=1) > 0 \
            else 0.0
        lo, hi = float(d.mean()) - half, float(d.mean()) + half
        per[str(int(h))] = {"sqrt_h_alpha": [float(x) for x in top], "difference": float(d.mean()),
                            "interval": [lo, hi], "test_err": float(a.mean())}
        ok = ok and lo <= 0 <= hi
    numbers = {"per_width": per}
    if len(per) < 3:
        numbers["note"] = f"{len(per)} widths with two lazy-side points and >= 2 seeds (need 3)"
        return None, numbers
    return bool(ok), numbers


def _fmt_ci(r) -> str:
    lo, hi = r["ci_low"], r["ci_high"]
    ci = f" [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else " [no interval]"
    return f"{r['value']:.3g}{ci}"


def analyse(out: Path, cfg, curve_dirs: list[Path]) -> tuple[list[dict], str, dict]:
    """Fits, figure, claims and summary text from the tables; ``curve_dirs``: run folders whose kernel change along
    training is drawn (the widest cells). Returns (claims, summary text, other numbers)."""
    runs = pd.read_parquet(out / "phase_runs.parquet")
    cells = pd.read_parquet(out / "phase_cells.parquet")
    table, fits = fit_table(runs, cfg.progress)
    table.to_csv(out / "fits.csv", index=False)
    win = regime_winner(runs, fits["x_star"])
    coll = variance_collapse(cells)
    curves = pd.concat([load_runs(d) for d in curve_dirs] or [pd.DataFrame()], ignore_index=True)
    if len(curves):
        curves = curves[curves.metric == "ntk_distance"]
    fig = phase_figure(runs, cells, fits, curves, cfg.progress)
    save_figure(fig, out / "phase")
    n_conv, n = int(runs.converged.sum()), len(runs)
    n_div = int((runs.status == "diverged").sum())
    n_prog = int(runs.reached_progress.sum())
    widths = list(map(int, sorted(runs.h.unique())))
    sas = runs.sqrt_h_alpha
    lines = [f"phase: {cfg.source} parity, {cfg.arch.upper()} L = {cfg.depth}, {cfg.activation}, ptr = {cfg.ptr}, "
             f"widths {widths}, {runs.seed.nunique()} seeds, {sas.nunique()} values of sqrt(h)*alpha from "
             f"{sas.min():g} to {sas.max():g}, {cfg.dynamics}",
             f"runs: {n}; converged (every training margin >= 1): {n_conv}; stopped at the budget and flagged: "
             f"{n - n_conv - n_div}; diverged: {n_div}",
             f"fits use the equal-progress point (training loss <= {cfg.progress:g} L(0)), reached by {n_prog}/{n}"
             " runs", "", "Fitted numbers (95% intervals):"]
    for _, r in table.iterrows():
        verdict = "" if r["theory"] is None or pd.isna(r["theory"]) else f"  theory {r['theory']:g}: " + (
            "no fit (too few points)" if r["consistent"] is None else
            "consistent" if r["consistent"] else "NOT consistent")
        lines.append(f"  {r['quantity']}: {_fmt_ci(r)} (n = {r['n']}){verdict}")
    get = {r["quantity"]: r for _, r in table.iterrows()}
    lazy_ok = get["kernel change slope vs sqrt(h)*alpha at loss L(0)/2, lazy side"]["consistent"]
    late = get[f"kernel change slope vs sqrt(h)*alpha at loss {cfg.progress:g} L(0), lazy side"]
    late_x = fits["kernel"]["progress"]["x_star"]
    local = fits["kernel"]["progress"]["local"]["slope"]
    flat_ok = get["slope of sqrt(h)*alpha* vs h (flat: alpha* ~ h^-1/2)"]["consistent"]
    tl_ok = get["t_1/2 slope vs sqrt(h)*alpha, lazy side"]["consistent"]
    tf_ok = get["t_1/2 slope vs sqrt(h)*alpha, feature side"]["consistent"]

    def held(ok: bool | None) -> str:
        return "cannot be tested (too few points)" if ok is None else "holds" if ok else "does NOT hold"

    if n_prog == 0:
        late_text = f"No run reached loss {cfg.progress:g} L(0) within its budget: no late-time comparison."
    else:
        t_late = fits["kernel"]["progress"]["t"]
        late_text = (f"Later, at loss {cfg.progress:g} L(0) (reached at t ~ {t_late:.3g} by the laziest runs), a "
                     f"run is lazy only if t1 ~ sqrt(h) alpha exceeds that time: sqrt(h) alpha >~ {late_x:.3g}. "
                     f"Lazy-side slope there: {held(late['consistent'])} (n = {late['n']}); local slope between the "
                     f"two largest sqrt(h) alpha: {local:.3g} (the lazy limit is -1).")
    collapse = coll["spread_h_var"] < coll["spread_var"]
    lo, hi = win["diff_ci"]
    fs, ls = win["feature_sqrt_h_alpha"], win["lazy_sqrt_h_alpha"]
    lines += ["", "Plain statements:",
              f"- Lazy regime: the kernel change at t_1/2 falls as (sqrt(h) alpha)^-1: {held(lazy_ok)} in this run. "
              + late_text,
              f"- The crossover alpha* scales as h^-1/2 (sqrt(h) alpha* flat in h): {held(flat_ok)} in this run "
              f"({len(fits['per_h'])} widths).",
              f"- t_1/2 is O(1) in the lazy regime: {held(tl_ok)}; t_1/2 ~ sqrt(h) alpha in the feature regime: "
              f"{held(tf_ok)}.",
              f"- h * Var(alpha (f - f0)) over seeds: spread across widths {coll['spread_h_var']:.3g} decades vs "
              f"{coll['spread_var']:.3g} for Var itself -> "
              + ("h*Var collapses better than Var." if collapse else "no collapse of h*Var."),
              f"- Test error ({cfg.arch.upper()}, {cfg.source}): feature side (sqrt(h) alpha "
              f"{fs[0]:g}..{fs[1]:g}) {win['feature_err']:.4f} vs lazy side ({ls[0]:g}..{ls[1]:g}) "
              f"{win['lazy_err']:.4f}; difference {win['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] over {win['pairs']} "
              f"paired runs -> better regime: {win['winner']}."]
    ens = cells.groupby("sqrt_h_alpha")[["ensemble_test_err_end", "single_test_err_end"]].mean()
    lines.append("- Ensemble predictor (mean of alpha (f - f0) over seeds) vs single networks, test error averaged "
                 "over widths: " + ", ".join(f"{sa:g}: {r.ensemble_test_err_end:.3f} vs {r.single_test_err_end:.3f}"
                                             for sa, r in ens.iterrows()))
    f0_ok, f0_numbers = f0_claim(runs, fits["per_h"])
    plateau_ok, plateau_numbers = plateau_claim(runs)
    lines += ["- alpha* f(w0, x) per width: " + ", ".join(f"h={h}: {v:.3g}" for h, v in
                                                          f0_numbers["alpha_star_f0_per_width"].items())
              + f" -> subtracting f0 unnecessary at large width: {held(f0_ok)}.",
              "- Test-error plateau at large sqrt(h) alpha (difference between the two largest, paired by seed): "
              + ", ".join(f"h={h}: {v['difference']:+.4f} [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}]"
                          for h, v in plateau_numbers["per_width"].items()) + f" -> {held(plateau_ok)}."]
    src = "Geiger, Spigler, Jacot & Wyart 2020"

    def fit(q: str) -> dict:
        r = get[q]
        return {"value": r["value"], "interval": [r["ci_low"], r["ci_high"]], "theory": r["theory"], "n": r["n"]}

    claims = [
        claim("lazy_kernel_slope", "In the lazy regime the kernel change ||Theta - Theta0|| / ||Theta0|| at loss "
              "L(0)/2 falls as (sqrt(h) alpha)^-1 (fitted slope consistent with -1)",
              f"{src}, kernel change power laws",
              lazy_ok, **fit("kernel change slope vs sqrt(h)*alpha at loss L(0)/2, lazy side")),
        claim("alpha_star_scaling", "The crossover alpha* scales as h^-1/2: sqrt(h) alpha* does not depend on the "
              "width (slope vs h consistent with 0)", f"{src}, alpha* ~ 1/sqrt(h)", flat_ok,
              **fit("slope of sqrt(h)*alpha* vs h (flat: alpha* ~ h^-1/2)"), per_width=fits["per_h"]),
        claim("t_half_lazy", "In the lazy regime the time to halve the loss t_1/2 is O(1) in sqrt(h) alpha",
              f"{src}, t1 ~ sqrt(h) alpha", tl_ok, **fit("t_1/2 slope vs sqrt(h)*alpha, lazy side")),
        claim("t_half_feature", "In the feature regime t_1/2 grows as sqrt(h) alpha", f"{src}, t1 ~ sqrt(h) alpha",
              tf_ok, **fit("t_1/2 slope vs sqrt(h)*alpha, feature side")),
        claim("h_var_collapse", "h Var(alpha (f - f0)) over initialisations collapses across widths better than Var "
              "itself", f"{src}, ensemble averages", None if not np.isfinite(coll["spread_h_var"]) else
              bool(collapse), **coll),
        claim("f_minus_f0_unneeded", "At large width alpha* f(w0, x) << 1 (it falls with h and is < 0.1 at the "
              "largest width), so alpha (f - f0) ~ alpha f: subtracting f0 is not needed", f"{src}, slides "
              "'linearize the network with f - f0 was not necessary'", f0_ok, **f0_numbers),
        claim("test_error_plateau", "The test error reaches a plateau at large sqrt(h) alpha: between the two largest "
              "values it no longer changes detectably, at every width", f"{src}, 'there is a plateau for large "
              "values of alpha'", plateau_ok, **plateau_numbers),
    ]
    # each claim rests on runs that trained as far as the point it reads: t_1/2, the kernel at L(0)/2, alpha* and
    # the end-of-run variances on every run having halved its loss; the plateau on the two largest sqrt(h) alpha
    # of each width having reached the progress point. Otherwise it is not measured, whatever the fits say.
    top2 = runs.groupby("h").sqrt_h_alpha.transform(lambda v: v >= sorted(v.unique())[-2:][0])
    rests = {"test_error_plateau": (runs[top2].reached_progress, f"loss {cfg.progress:g} L(0) (the two largest "
                                    "sqrt(h) alpha of each width)")}
    for c in claims:
        done, point = rests.get(c["id"], (runs.reached_half, "loss L(0)/2"))
        c["numbers"]["runs_reached"] = f"{int(done.sum())} of {len(done)} reached {point}"
        if not done.all():
            c["held"] = None
            c["numbers"]["note"] = "; ".join(filter(None, (
                f"not measured: {len(done) - int(done.sum())} of the {len(done)} runs it rests on did not reach "
                f"{point} (budget spent, or diverged)", c["numbers"].get("note"))))
    extra = {"regime_winner": win, "runs": n, "converged": n_conv, "reached_progress": n_prog,
             "crossover_per_width": fits["per_h"]}
    return claims, "\n".join(lines), extra
