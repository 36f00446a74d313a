"""Scaling-law fits for α × width sweeps (Geiger, Spigler, Jacot & Wyart 2020), as pure functions on arrays.

What they test, from the seed's slides: runs collapse against √h·α ("plot in function of √n α overlap the
lines"), the crossover α* ~ 1/√h ("the phase space is split in two by α* who decays with √n"), the time to leave
the tangent space t1 ~ √h·α, and the kernel change ||Θ − Θ0|| / ||Θ0|| ("the kernel evolution displays two
regimes").

All fits are in log10-log10 coordinates. ``power_law`` is ordinary least squares with a Student-t interval on
the slope; ``broken_power_law`` is a continuous two-piece power law whose breakpoint is the crossover between
the regimes; ``seed_bootstrap`` gives percentile intervals for any fit by resampling whole seeds (runs at
different α that share a seed share θ0, so a resample keeps each seed's runs together).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats


def _log_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in size: {x.shape} vs {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return np.log10(x[ok]), np.log10(y[ok])


def power_law(x, y, level: float = 0.95) -> dict:
    """Fit y = c x^s by least squares on (log10 x, log10 y); points with x or y <= 0 or non-finite are dropped.

    Returns ``slope``, ``slope_ci`` (the Student-t interval at ``level``; NaNs with fewer than 3 points or a
    single distinct x), ``log10_c``, ``n`` (points used) and ``r2``.
    """
    u, v = _log_pairs(x, y)
    n = len(u)
    nan = float("nan")
    if n < 2 or np.ptp(u) == 0:
        return {"slope": nan, "slope_ci": (nan, nan), "log10_c": nan, "n": n, "r2": nan}
    A = np.stack([u, np.ones_like(u)], 1)
    (s, c), *_ = np.linalg.lstsq(A, v, rcond=None)
    resid = v - A @ np.array([s, c])
    ss_res, ss_tot = float(resid @ resid), float(((v - v.mean()) ** 2).sum())
    ci = (nan, nan)
    if n >= 3:
        se = math.sqrt(ss_res / (n - 2) / float(((u - u.mean()) ** 2).sum()))
        q = stats.t.ppf(0.5 + level / 2, n - 2)
        ci = (float(s - q * se), float(s + q * se))
    return {"slope": float(s), "slope_ci": ci, "log10_c": float(c), "n": n,
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0}


def broken_power_law(x, y, grid: int = 400) -> dict:
    """Continuous two-piece power law: log y = c + s_low min(u - u*, 0) + s_high max(u - u*, 0), u = log10 x.

    The breakpoint u* is searched on a grid strictly inside the range of the data's distinct x values (at least
    two distinct x on each side); for each candidate (c, s_low, s_high) is a linear least-squares fit, and the
    candidate with the least squared error wins. Returns ``x_star`` (10^u*), ``slope_low``, ``slope_high``,
    ``log10_y_star`` (= c) and ``sse``; NaNs when there are fewer than 4 distinct x values.
    """
    u, v = _log_pairs(x, y)
    xs = np.unique(u)
    nan = float("nan")
    out = {"x_star": nan, "slope_low": nan, "slope_high": nan, "log10_y_star": nan, "sse": nan}
    if len(xs) < 4:
        return out
    ustars = np.linspace(xs[1], xs[-2], grid)  # (G,)
    d = u[None, :] - ustars[:, None]  # (G, n)
    A = np.stack([np.ones_like(d), np.minimum(d, 0), np.maximum(d, 0)], 2)  # (G, n, 3): one design per candidate
    coef = np.einsum("gkn,n->gk", np.linalg.pinv(A), v)  # (G, 3): least squares (SVD) for every candidate at once
    r = v[None, :] - np.einsum("gnk,gk->gn", A, coef)
    i = int(np.argmin(np.einsum("gn,gn->g", r, r)))  # the first of equal errors, as a scan would keep
    sse, ustar, (c, s_lo, s_hi) = float(r[i] @ r[i]), ustars[i], coef[i]
    return {"x_star": float(10**ustar), "slope_low": float(s_lo), "slope_high": float(s_hi),
            "log10_y_star": float(c), "sse": sse}


def seed_bootstrap(fit: Callable[[np.ndarray], dict], seeds, keys: list[str], reps: int = 1000,
                   level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile intervals of ``fit(mask_or_index)[key]`` under resampling whole seeds with replacement.

    ``fit`` receives an integer index array into the rows (a seed drawn twice contributes its rows twice).
    ``seeds``: the seed of each row. Resamples whose fit gives NaN are dropped; an interval needs >= 10 finite
    resamples, otherwise it is (nan, nan).
    """
    seeds = np.asarray(seeds)
    uniq = np.unique(seeds)
    rows = {s: np.nonzero(seeds == s)[0] for s in uniq}
    rng = np.random.default_rng(seed)
    vals: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(reps if len(uniq) else 0):
        draw = rng.choice(uniq, size=len(uniq), replace=True)
        res = fit(np.concatenate([rows[s] for s in draw]))
        for k in keys:
            if np.isfinite(res[k]):
                vals[k].append(res[k])
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    return {k: ((float(np.quantile(v, lo)), float(np.quantile(v, hi))) if len(v) >= 10 else (float("nan"),) * 2)
            for k, v in vals.items()}


def crossing_time(t, loss, level: float) -> float:
    """First time the loss falls to ``level``, linearly interpolated between the two recorded points around the
    crossing (t and loss: 1-d, in the order recorded). NaN if it never does. This is t_1/2 with
    level = L(0) / 2 (Geiger et al. 2020: the time at which α²·L reaches half its initial value; in the lazy regime
    it is O(1), in the feature regime it grows like t1 ~ √h·α)."""
    t, loss = np.asarray(t, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    below = np.nonzero(loss <= level)[0]
    if len(below) == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(t[0])
    l0, l1 = loss[i - 1], loss[i]
    w = (l0 - level) / (l0 - l1) if l0 != l1 else 1.0
    return float(t[i - 1] + w * (t[i] - t[i - 1]))


def consistent(value: float, ci: tuple[float, float], theory: float, tol: float) -> bool:
    """Whether a fitted number agrees with theory: its interval contains it, or it is within ``tol``."""
    lo, hi = ci
    inside = bool(np.isfinite(lo) and np.isfinite(hi) and lo <= theory <= hi)
    return inside or bool(np.isfinite(value) and abs(value - theory) <= tol)
