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


KRIENER_CLASSES = ("yang", "yin", "dot")
KRIENER_REGIONS = ("bulk", "near_boundary", "dot")


def kriener_class(x: np.ndarray, r_small: float = 0.1, r_big: float = 0.5) -> np.ndarray:
    """Class (0 yang, 1 yin, 2 dot) of points x (n, 2) in the Yin-Yang dataset of Kriener et al. (2021).

    The symbol lives in the disc of radius r_big centred at (r_big, r_big); the two dots have radius r_small and
    centres (r_big/2, r_big) and (3 r_big/2, r_big). Yin is the upper half outside the right half-disc of radius
    r_big/2, plus the left half-disc (without its dot); yang is the rest; the dots are the third class.
    """
    left = np.array([0.5 * r_big, r_big])
    right = np.array([1.5 * r_big, r_big])
    d_left = np.linalg.norm(x - left, axis=1)
    d_right = np.linalg.norm(x - right, axis=1)
    yin = (d_right <= r_small) | ((d_left > r_small) & (d_left <= 0.5 * r_big)) | (
        (x[:, 1] > r_big) & (d_right > 0.5 * r_big))
    dots = (d_left < r_small) | (d_right < r_small)
    return np.where(dots, 2, yin.astype(int))


def kriener_yinyang(n: int = 1000, seed: int = 0, r_small: float = 0.1, r_big: float = 0.5, margin: float = 0.03,
                    dtype: torch.dtype = torch.float32) -> Split:
    """The three-class Yin-Yang dataset (Kriener et al. 2021): rejection sampling in the big disc, cycling
    through the classes so that they are balanced; features (x, y, 1 - x, 1 - y).

    Returns a ``Split`` with x (n, 4), integer labels y (n,) in {0 yang, 1 yin, 2 dot}, and groups by class and
    by region: ``dot``, ``near_boundary`` (within ``margin`` of another class) or ``bulk``.
    """
    if n < 3:
        raise ValueError(f"n must be >= 3, got {n}")
    rng = np.random.default_rng(seed)
    pts, labels = [], []
    centre = np.array([r_big, r_big])
    while len(pts) < n:
        want = len(pts) % 3
        while True:  # draw until a point of the wanted class falls in the big disc
            p = rng.uniform(0, 2 * r_big, size=(1, 2))
            if np.linalg.norm(p - centre) <= r_big and kriener_class(p, r_small, r_big)[0] == want:
                break
        pts.append(p[0])
        labels.append(want)
    xy = np.array(pts)
    y = np.array(labels)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    near = np.zeros(n, dtype=bool)
    for a in angles:  # another class within `margin`
        moved = xy + margin * np.array([np.cos(a), np.sin(a)])
        inside = np.linalg.norm(moved - centre, axis=1) <= r_big
        near |= inside & (kriener_class(moved, r_small, r_big) != y)
    regions = np.where(y == 2, 2, np.where(near, 1, 0))
    groups = {name: regions == i for i, name in enumerate(KRIENER_REGIONS)}
    groups.update({f"class_{c}": y == i for i, c in enumerate(KRIENER_CLASSES)})
    feats = np.concatenate([xy, 1 - xy], axis=1)
    return Split(torch.as_tensor(feats, dtype=dtype), torch.as_tensor(y), Groups(groups, n=n))
