"""Data of Examples 1-3 of George et al., section 4.4. Each returns X (n, d), y (n,) and group labels."""

from __future__ import annotations

import numpy as np


def example1(mu) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 16: x_i = sqrt(mu_i) e_i, y_i = mu_{n-i+1} / sqrt(mu_i), mu_1 >= ... >= mu_n > 0; d = n.

    Each example is a mode: the linearized regime learns example i at rate ~ mu_i (index 1 first), the non-linear
    one by y~_i = mu_{n-i+1} (index n first). Groups: the example index.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1 or len(mu) < 1 or np.any(mu <= 0) or np.any(np.diff(mu) > 0):
        raise ValueError("mu must be a non-increasing sequence of positive numbers")
    n = len(mu)
    X = np.diag(np.sqrt(mu))
    y = mu[::-1] / np.sqrt(mu)
    return X, y, np.arange(n)


def _labels(n: int, rng) -> np.ndarray:
    y = np.ones(n)
    y[rng.permutation(n)[: n // 2]] = -1.0  # balanced classes
    return y


def _labels_and_flips(n: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels y and kappa with q entries -1 (noisy / minority examples), drawn in this order."""
    rng = np.random.default_rng(seed)
    y = _labels(n, rng)
    kappa = np.ones(n)
    kappa[rng.choice(n, size=q, replace=False)] = -1.0
    return y, kappa


def example2(n: int = 20, q: int = 5, eta: float = 0.5, d: int = 200, seed: int = 0):
    """Eq. 17, label noise: x_i = kappa_i y_i e_1 + eta e_{i+1}, with q 'noisy' examples (kappa_i = -1).

    Returns X (n, d), y (n,), noisy (n,) bool. The top left singular vector is u_1 = y_bar / sqrt(n) with
    y_bar_i = kappa_i y_i, and the dominant mode of y is (1 - 2q/n) y_bar (eq. 18).
    """
    if not (d > n and 1 <= q < -(-n // 2) and eta > 0):
        raise ValueError("example2 needs d > n, 1 <= q < ceil(n/2) and eta > 0")
    y, kappa = _labels_and_flips(n, q, seed)
    X = np.zeros((n, d))
    X[:, 0] = kappa * y
    X[np.arange(n), np.arange(n) + 1] = eta
    return X, y, kappa < 0


def example3(n: int = 20, q: int = 5, lam: float = 0.5, eta: float = 0.5, d: int = 200, seed: int = 0):
    """Eq. 19, spurious correlation: x_i = kappa_i y_i e_1 + lam y_i e_2 + eta e_{i+2}; the spurious feature e_1
    agrees with the label for the n - q majority examples (kappa_i = 1), the core feature lam y_i e_2 for all.

    Returns X (n, d), y (n,), with_spurious (n,) bool (True for the majority group).
    """
    if not (d > n + 1 and 1 <= q < -(-n // 2) and 0 < lam < 1 and eta > 0):
        raise ValueError("example3 needs d > n + 1, 1 <= q < ceil(n/2), 0 < lam < 1 and eta > 0")
    y, kappa = _labels_and_flips(n, q, seed)
    X = np.zeros((n, d))
    X[:, 0] = kappa * y
    X[:, 1] = lam * y
    X[np.arange(n), np.arange(n) + 2] = eta
    return X, y, kappa > 0
