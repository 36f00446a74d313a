"""Binary tasks of Geiger, Spigler, Jacot & Wyart (2020): preprocessing as in their setup, done on the training set.

``binary_task`` returns ptr training and pte test points with labels +-1 and balanced classes:
* ``"fashion_mnist"``, ``"mnist"``, ``"emnist"`` (digits subset), ``"cifar10"``: the parity of the class index
  (even -> +1, odd -> -1), as in the paper's "parity" tasks ("reduced to 2 classes"); read from local files;
* ``"teacher"``: x ~ N(0, I_D), y = the sign of a random one-hidden-layer tanh teacher, thresholded at its
  median so that the classes are balanced (a synthetic task for the fastest checks).
Preprocessing (both): centre with the *training* mean, optionally project on the first d principal components
of the training set (whitened or not), then rescale every example to ||x|| = sqrt(d). Nothing about the test
set is used to fit the preprocessing.
"""

from __future__ import annotations

import numpy as np
import torch

from .groups import Groups, Split
from .images import DatasetError, cifar10, emnist, fashion_mnist, mnist

IMAGE_SOURCES = {"fashion_mnist": fashion_mnist, "mnist": mnist, "emnist": emnist, "cifar10": cifar10}
SOURCES = (*IMAGE_SOURCES, "teacher")


class Preprocess:
    """Centre with the training mean, optional PCA (fitted on the training set), ||x|| = sqrt(d)."""

    def __init__(self, train_x: np.ndarray, d: int | None = None, whiten: bool = False):
        x = np.asarray(train_x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        self.components = None
        self.scale = None
        if d is not None:
            if not 1 <= d <= min(x.shape):
                raise ValueError(f"PCA dimension d must be in [1, {min(x.shape)}], got {d}")
            _, s, vt = np.linalg.svd(x - self.mean, full_matrices=False)
            self.components = vt[:d]  # (d, D)
            self.scale = s[:d] / np.sqrt(len(x) - 1) if whiten else None  # per-component std
        self.dim = d if d is not None else x.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) - self.mean
        if self.components is not None:
            z = z @ self.components.T
            if self.scale is not None:
                z = z / self.scale
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.where(norms > 0, norms, 1.0) * np.sqrt(self.dim)


def _balanced(labels: np.ndarray, n: int, rng) -> np.ndarray:
    pos, neg = np.nonzero(labels > 0)[0], np.nonzero(labels < 0)[0]
    if n // 2 > min(len(pos), len(neg)):
        raise DatasetError(f"asked for {n} balanced examples; only {2 * min(len(pos), len(neg))} available")
    idx = np.concatenate([rng.choice(pos, n // 2, replace=False), rng.choice(neg, n - n // 2, replace=False)])
    return rng.permutation(idx)


def binary_task(source: str = "fashion_mnist", ptr: int = 500, pte: int = 1000, d: int | None = 10,
                whiten: bool = False, seed: int = 0, root=None, input_dim: int = 30,
                dtype: torch.dtype = torch.float32, images: bool = False) -> tuple[Split, Split]:
    """(train, test) Splits with x (n, d) and y (n,) in {-1., +1.}; groups ``positive`` / ``negative``.

    Args:
        source: one of :data:`SOURCES`: an image dataset (class parity) or ``"teacher"``.
        ptr, pte: training and test set sizes (balanced classes).
        d: PCA dimension fitted on the training set (None: keep all input dimensions).
        whiten: divide each principal component by its training standard deviation.
        input_dim: dimension D of the teacher task's Gaussian inputs.
        root: folder of the image files (see :mod:`lazyhasty.data.images`; CIFAR-10 needs it).
        images: return x with the images' shape (n, C, H, W) (for a CNN; needs ``d=None``).
    Shapes: x (n, d) (or (n, C, H, W) with ``images``), y (n,).
    """
    if images and d is not None:
        raise ValueError("images=True keeps the pixel layout: it needs d=None (no PCA)")
    rng = np.random.default_rng(seed)
    shape = None
    if source in IMAGE_SOURCES:
        load = IMAGE_SOURCES[source]
        if source == "cifar10" and root is None:
            raise DatasetError("CIFAR-10 is read from a local copy: pass its cifar-10-batches-py folder as root "
                               "(data_root=...)")
        tr, te = load(root, "train"), load(root, "test")
        shape = tuple(tr.x.shape[1:])
        xtr_all, xte_all = tr.x.flatten(1).numpy(), te.x.flatten(1).numpy()
        ytr_all = np.where(tr.y.numpy() % 2 == 0, 1.0, -1.0)
        yte_all = np.where(te.y.numpy() % 2 == 0, 1.0, -1.0)
    elif source == "teacher":
        g = np.random.default_rng(10_000 + seed)
        w1, w2 = g.standard_normal((input_dim, 32)) / np.sqrt(input_dim), g.standard_normal(32)
        n_all = 4 * (ptr + pte)
        x_all = g.standard_normal((n_all, input_dim))
        score = np.tanh(x_all @ w1) @ w2
        y_all = np.where(score > np.median(score), 1.0, -1.0)
        half = n_all // 2
        xtr_all, ytr_all, xte_all, yte_all = x_all[:half], y_all[:half], x_all[half:], y_all[half:]
    else:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if images and shape is None:
        raise ValueError(f"images=True needs an image source, not {source!r}")
    itr, ite = _balanced(ytr_all, ptr, rng), _balanced(yte_all, pte, rng)
    prep = Preprocess(xtr_all[itr], d, whiten)

    def split(x, y):
        z = torch.tensor(prep(x), dtype=dtype)
        return Split(z.view(-1, *shape) if images else z, torch.tensor(y, dtype=dtype),
                     Groups({"positive": y > 0, "negative": y < 0}, n=len(y)))

    return split(xtr_all[itr], ytr_all[itr]), split(xte_all[ite], yte_all[ite])
