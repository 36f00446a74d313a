"""The quadratic model of George et al., section 4: closed-form gradient flow in both regimes.

Model. Least squares l(theta) = 1/2 ||X theta - y||^2 with X (n, d) = U M V^T (eq. 8), mu_lambda the squared
singular values, and the parametrisation theta = 1/2 sum_lambda w_lambda^2 v_lambda (eq. 9), trained by
gradient flow w' = -grad_w l (eq. 10). In the mode basis, with y_lambda = u_lambda^T y >= 0 (signs fixed by the
reflection of footnote 3), y~_lambda = sqrt(mu_lambda) y_lambda and theta*_lambda = y_lambda / sqrt(mu_lambda)
(theta*_lambda = theta0_lambda on the null space, footnote 4), the flow decouples (eq. 11):

    θ_λ' = -μ_λ w_λ² (θ_λ - θ*_λ) = 2 ỹ_λ θ_λ (1 - θ_λ / θ*_λ)

Discrepancies with the printed paper (each established by integrating the flow of the stated
parametrisation with ``simulate(method="ode")`` at rtol 1e-12 and comparing; see tests/test_theory.py):

1. Eq. 12 (non-linear regime) is correct as printed.
2. Eq. 13 (linearized regime). The lazy parametrisation is the first-order Taylor expansion of eq. 9 at w0,
   theta_bar = theta0 + sum_lambda w0_lambda (w_lambda - w0_lambda) v_lambda. (The printed form
   theta_bar = sum w_lambda w0_lambda v_lambda omits the constant -theta0 and would start at 2 theta0.) Its flow
   is theta_bar' = -mu w0^2 (theta_bar - theta*) with w0^2 = 2 theta0, so
       printed:   theta_lambda(t) = theta* + exp(-mu theta0 t) (theta0 - theta*)
       corrected: theta_lambda(t) = theta* + exp(-2 mu theta0 t) (theta0 - theta*)
   (the same as replacing Sigma(t) by Sigma(0) in eq. 11, Sigma(0) = V diag(mu w0^2) V^T).
3. Eq. 14 (epsilon-convergence times, epsilon << theta*, theta0 << theta*). Solving |theta(t) - theta*| = eps
   exactly from eq. 12 gives t = log[(theta* - theta0)(theta* - eps) / (eps theta0)] / (2 y~), hence
       printed:   t = (1 / y~) log(theta* / (eps theta0)),        t_lin = (1 / (mu theta0)) log(theta* / eps)
       corrected: t = (1 / (2 y~)) log(theta*^2 / (eps theta0)),  t_lin = (1 / (2 mu theta0)) log(theta* / eps)
   (the printed non-linear argument is not even dimensionless).
4. Text after eq. 14: the ratios of two modes' times are inverted. Corrected: t_lambda / t_lambda' ~
   y~_lambda' / y~_lambda (non-linear) and t_lin_lambda / t_lin_lambda' ~ mu_lambda' theta0_lambda' /
   (mu_lambda theta0_lambda) (linear), up to logarithmic factors.
5. Eq. 15 (sequentialisation). With the corrected eq. 14 and theta0 = sigma theta~0,
       θ_λ'(t_λ) = θ*_λ' θ̃0_λ' / (θ̃0_λ' + θ*_λ' [ε θ̃0_λ / θ*_λ²]^ρ σ^(ρ - 1)),
   rho = y~_lambda' / y~_lambda, to leading order. The printed exponent 2 rho - 1 would make the limit switch at
   rho = 1/2, contradicting the printed case split at y~_lambda' = y~_lambda; with rho - 1 the case split holds.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

REGIMES = ("nonlinear", "linear")


def _check_regime(regime: str) -> None:
    if regime not in REGIMES:
        raise ValueError(f"regime must be 'nonlinear' or 'linear', got {regime!r}")


def mode_basis(X: np.ndarray, y: np.ndarray, rtol: float = 1e-10):
    """SVD of X in the paper's conventions, with signs fixed so that y_lambda = u_lambda^T y >= 0.

    Within a group of equal singular values the basis is not unique (and the parametrisation of eq. 9 depends on
    it): we rotate it so that y projects on the group's first vector only. Returns (mu (d,), U (n, d') the left
    vectors of the non-zero modes padded with zeros, V (d, d) with columns v_lambda, rank).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    U, s, Vt = np.linalg.svd(X, full_matrices=True)
    tol = max(n, d) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    r = int((s > tol).sum())
    V = Vt.T.copy()  # (d, d)
    Ur = U[:, :r].copy()
    i = 0
    while i < r:  # rotate degenerate groups so that y lies on the first vector of each group
        j = i + 1
        while j < r and abs(s[j] - s[i]) <= rtol * s[i]:
            j += 1
        if j - i > 1:
            block = Ur[:, i:j]
            coef = block.T @ y
            if np.linalg.norm(coef) > 0:
                Q, _ = np.linalg.qr(np.column_stack([coef, np.eye(j - i)]))
                R = Q[:, : j - i]
                R[:, 0] *= np.sign(R[:, 0] @ coef) or 1.0
                Ur[:, i:j] = block @ R
                V[:, i:j] = V[:, i:j] @ R
        i = j
    yl = Ur.T @ y  # (r,)
    flip = np.where(yl < 0, -1.0, 1.0)
    Ur *= flip
    V[:, :r] *= flip
    mu = np.zeros(d)
    mu[:r] = s[:r] ** 2
    return mu, Ur, V, r


class QuadraticModel:
    """Closed-form dynamics of the quadratic model (Proposition 1 of George et al., corrected where noted).

    Args:
        X: inputs (n, d). y: labels (n,). w0: initial parameters in the mode basis (d,), all non-zero
            (the paper's examples use w0 = sqrt(sigma) [1, ..., 1]).

    Attributes (all numpy, float64): ``mu`` (d,), ``V`` (d, d) with columns v_lambda, ``y_modes`` y_lambda (d,)
    (0 beyond the rank), ``y_tilde`` (d,), ``theta0`` (d,) = w0^2 / 2, ``theta_star`` (d,) (footnote 4), ``rank``.
    """

    def __init__(self, X, y, w0):
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        n, d = self.X.shape
        w0 = np.broadcast_to(np.asarray(w0, dtype=np.float64), (d,)).copy()
        if self.y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {self.y.shape}")
        if np.any(w0 == 0):
            raise ValueError("every w0_lambda must be non-zero (Proposition 1 assumes it)")
        if not all(np.isfinite(a).all() for a in (self.X, self.y, w0)):
            raise ValueError("X, y and w0 must be finite")
        self.w0 = w0
        self.mu, self.U, self.V, self.rank = mode_basis(self.X, self.y)
        r = self.rank
        self.y_modes = np.zeros(d)
        self.y_modes[:r] = self.U.T @ self.y
        self.y_tilde = np.sqrt(self.mu) * self.y_modes
        self.theta0 = 0.5 * w0**2
        self.theta_star = self.theta0.copy()
        self.theta_star[:r] = self.y_modes[:r] / np.sqrt(self.mu[:r])

    # -- closed forms ---------------------------------------------------------------------------------
    def theta(self, t, regime: str = "nonlinear") -> np.ndarray:
        """theta_lambda(t) in the mode basis, shape (T, d) for t of shape (T,).

        nonlinear: eq. 12, theta0 theta* / (theta0 - exp(-2 y~ t)(theta0 - theta*)), or theta0 / (1 + 2 mu theta0 t)
        when theta* = 0. linear: eq. 13 corrected, theta* + exp(-2 mu theta0 t)(theta0 - theta*).
        """
        _check_regime(regime)
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))[:, None]  # (T, 1)
        if not (np.isfinite(t) & (t >= 0)).all():  # the closed forms start at t = 0
            raise ValueError("times must be finite and >= 0")
        th0, ths, mu, yt = self.theta0, self.theta_star, self.mu, self.y_tilde
        if regime == "linear":
            return ths + np.exp(-2.0 * mu * th0 * t) * (th0 - ths)
        zero = ths == 0
        safe = np.where(zero, 1.0, ths)
        logistic = th0 * safe / (th0 - np.exp(-2.0 * yt * t) * (th0 - safe))
        return np.where(zero, th0 / (1.0 + 2.0 * mu * th0 * t), logistic)

    def theta_vector(self, t, regime: str = "nonlinear") -> np.ndarray:
        """theta(t) in input coordinates, (T, d) = theta_modes @ V^T."""
        return self.theta(t, regime) @ self.V.T

    def predictions(self, t, regime: str = "nonlinear") -> np.ndarray:
        """X theta(t), shape (T, n)."""
        return self.theta_vector(t, regime) @ self.X.T

    def per_example_loss(self, t, regime: str = "nonlinear") -> np.ndarray:
        """1/2 (x_i^T theta(t) - y_i)^2, shape (T, n)."""
        return 0.5 * (self.predictions(t, regime) - self.y) ** 2

    def mean_loss(self, t, regime: str = "nonlinear") -> np.ndarray:
        """Mean over examples of the per-example loss, shape (T,). Non-increasing in t under gradient flow."""
        return self.per_example_loss(t, regime).mean(axis=1)

    def time_at_loss(self, levels, regime: str = "nonlinear", t_max: float = 1e12) -> np.ndarray:
        """The time at which the mean loss equals each level (equal progress), by root finding; nan if the
        level is never reached or is above the initial loss."""
        from scipy.optimize import brentq

        levels = np.atleast_1d(np.asarray(levels, dtype=np.float64))
        start = float(self.mean_loss(0.0, regime)[0])
        end = float(self.mean_loss(t_max, regime)[0])
        out = np.full(levels.shape, np.nan)
        for k, level in enumerate(levels):
            if end < level <= start:
                f = lambda lt, level=level: float(self.mean_loss(np.exp(lt), regime)[0]) - level  # noqa: E731
                lo = -60.0 if f(-60.0) > 0 else None
                out[k] = 0.0 if lo is None else np.exp(brentq(f, lo, np.log(t_max), xtol=1e-13, rtol=1e-13))
        return out

    # -- convergence times ----------------------------------------------------------------------------
    def convergence_time(self, eps: float, regime: str = "nonlinear") -> np.ndarray:
        """Exact first time t with |θ_λ(t) - θ*_λ| <= ε, per mode (d,) (0 if already there, inf if never).

        nonlinear, θ* != 0: t = log[|θ0 - θ*| (θ* + s ε) / (ε θ0)] / (2 ỹ), s = sign(θ0 - θ*);
        nonlinear, θ* = 0: t = (θ0 / ε - 1) / (2 μ θ0); linear: t = log(|θ0 - θ*| / ε) / (2 μ θ0).
        """
        _check_regime(regime)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        th0, ths, mu, yt = self.theta0, self.theta_star, self.mu, self.y_tilde
        gap = np.abs(th0 - ths)
        out = np.full(th0.shape, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            if regime == "linear":
                rate = 2.0 * mu * th0
                t = np.log(gap / eps) / rate
            else:
                s = np.sign(th0 - ths)
                t_log = np.log(gap * (ths + s * eps) / (eps * th0)) / (2.0 * yt)
                t_zero = (th0 / eps - 1.0) / (2.0 * mu * th0)
                t = np.where(ths == 0, t_zero, t_log)
                rate = np.where(ths == 0, mu, yt)
        moving = rate > 0
        out[moving] = t[moving]
        out[gap <= eps] = 0.0
        return out

    def convergence_time_asymptotic(self, eps: float, regime: str = "nonlinear") -> np.ndarray:
        """Eq. 14, corrected: (1/(2 y~)) log(theta*^2/(eps theta0)) and (1/(2 mu theta0)) log(theta*/eps), per mode
        (nan where theta* = 0 or mu = 0)."""
        _check_regime(regime)
        th0, ths, mu, yt = self.theta0, self.theta_star, self.mu, self.y_tilde
        with np.errstate(divide="ignore", invalid="ignore"):
            if regime == "linear":
                t = np.log(ths / eps) / (2.0 * mu * th0)
            else:
                t = np.log(ths**2 / (eps * th0)) / (2.0 * yt)
        return np.where((ths > 0) & (mu > 0), t, np.nan)

    def printed_eq14(self, eps: float, regime: str = "nonlinear") -> np.ndarray:
        """Eq. 14 exactly as printed (for comparison only; see the module docstring)."""
        th0, ths, mu, yt = self.theta0, self.theta_star, self.mu, self.y_tilde
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.log(ths / eps) / (mu * th0) if regime == "linear" else np.log(ths / (eps * th0)) / yt
        return np.where((ths > 0) & (mu > 0), t, np.nan)


def _grad_w(X, y, V, w, w0, regime):
    """grad_w of 1/2 ||X theta(w) - y||^2 in input coordinates (no mode decoupling used)."""
    if regime == "nonlinear":
        theta = V @ (0.5 * w**2)  # eq. 9
        dtheta_dw = w
    else:
        theta = V @ (0.5 * w0**2 + w0 * (w - w0))  # first-order Taylor expansion of eq. 9 at w0
        dtheta_dw = w0
    return dtheta_dw * (V.T @ (X.T @ (X @ theta - y)))


def simulate(X, y, w0, regime: str, t_grid, method: str = "ode", lr: float | None = None,
             basis: np.ndarray | None = None, rtol: float = 1e-12, atol: float = 1e-14) -> np.ndarray:
    """Integrate the actual dynamics w' = -grad_w l of the parametrisation, in input coordinates.

    Args:
        X (n, d), y (n,), w0 (d,): data and initial parameters (mode basis, as in :class:`QuadraticModel`).
        regime: ``"nonlinear"`` (theta = 1/2 sum w^2 v, eq. 9) or ``"linear"`` (its Taylor expansion at w0).
        t_grid: increasing times (T,) at which to report theta.
        method: ``"ode"`` (scipy ``solve_ivp``, DOP853 at tolerances rtol/atol) or ``"gd"`` (gradient descent
            with step ``lr``; reported at the steps nearest to t_grid / lr).
        basis: the columns v_lambda (d, d); default the sign-fixed basis of :func:`mode_basis`.
    Returns:
        theta in the mode basis, shape (T, d).
    """
    _check_regime(regime)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t_grid = np.asarray(t_grid, dtype=np.float64)
    V = mode_basis(X, y)[2] if basis is None else np.asarray(basis, dtype=np.float64)
    w0 = np.broadcast_to(np.asarray(w0, dtype=np.float64), (X.shape[1],)).copy()

    def to_theta(W):  # (T, d) parameters -> theta in the mode basis
        return 0.5 * W**2 if regime == "nonlinear" else 0.5 * w0**2 + w0 * (W - w0)

    if method == "ode":
        sol = solve_ivp(lambda t, w: -_grad_w(X, y, V, w, w0, regime), (0.0, float(t_grid[-1])), w0,
                        method="DOP853", t_eval=t_grid, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        return to_theta(sol.y.T)
    if method == "gd":
        if lr is None or not lr > 0:
            raise ValueError("method='gd' needs a learning rate lr > 0")
        steps = np.rint(t_grid / lr).astype(int)
        w, out, k = w0.copy(), [], 0
        for target in steps:
            while k < target:
                w = w - lr * _grad_w(X, y, V, w, w0, regime)
                k += 1
            out.append(w.copy())
        return to_theta(np.array(out))
    raise ValueError(f"method must be 'ode' or 'gd', got {method!r}")
