"""The binary yin-yang toy of George et al. (Fig. 1a).

n points uniform on [-1, 1]^2; label y = +1 if x_2 <= 0 else -1, flipped inside two discs (radius 0.3,
centres (0.5, -0.5) and (-0.5, 0.5)), so each half-plane holds a small disc of the other class.
"""

from __future__ import annotations

import numpy as np
import torch

from .groups import Groups, Split

REGIONS = ("half_plane", "disk", "near_boundary")


def yinyang_labels(x: np.ndarray, radius: float = 0.3,
                   centres: tuple[tuple[float, float], ...] = ((0.5, -0.5), (-0.5, 0.5))) -> np.ndarray:
    """Labels (+1 / -1) of points x (n, 2) under the yin-yang rule."""
    y = np.where(x[:, 1] <= 0, 1.0, -1.0)
    for c in centres:
        inside = np.linalg.norm(x[:, :2] - np.asarray(c), axis=1) < radius
        y[inside] *= -1
    return y


def yinyang_regions(x: np.ndarray, radius: float = 0.3,
                    centres: tuple[tuple[float, float], ...] = ((0.5, -0.5), (-0.5, 0.5)),
                    margin: float = 0.1) -> np.ndarray:
    """Region of each point (n,) as an index into :data:`REGIONS`: inside a disc (1), within ``margin`` of a
    class boundary outside the discs (2), or elsewhere in a half-plane (0)."""
    d_line = np.abs(x[:, 1])
    d_disc = np.stack([np.linalg.norm(x[:, :2] - np.asarray(c), axis=1) for c in centres], axis=1)
    inside = (d_disc < radius).any(axis=1)
    near = (d_line < margin) | (np.abs(d_disc - radius) < margin).any(axis=1)
    return np.where(inside, 1, np.where(near, 2, 0))


def yinyang(n: int = 100, seed: int = 0, radius: float = 0.3, noise_dims: int = 0, label_noise: float = 0.0,
            dtype: torch.dtype = torch.float32) -> Split:
    """Sample the binary yin-yang toy.

    Args:
        n: number of points.
        seed: numpy seed (the same seed gives the same points).
        radius: radius of the two flipped discs.
        noise_dims: extra input dimensions of N(0, 1) noise appended to (x_1, x_2).
        label_noise: fraction of labels flipped at random (group ``noisy``).

    Returns:
        ``Split`` with x (n, 2 + noise_dims), y (n,) in {-1, +1} and groups by region (and ``noisy``/``clean``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    y = yinyang_labels(x, radius)
    regions = yinyang_regions(x, radius)
    groups = {name: regions == i for i, name in enumerate(REGIONS)}
    if label_noise > 0:
        noisy = np.zeros(n, dtype=bool)
        noisy[rng.choice(n, size=int(round(label_noise * n)), replace=False)] = True
        y[noisy] *= -1
        groups.update(noisy=noisy, clean=~noisy)
    if noise_dims:
        x = np.concatenate([x, rng.standard_normal((n, noise_dims))], axis=1)
    return Split(torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype), Groups(groups, n=n))
