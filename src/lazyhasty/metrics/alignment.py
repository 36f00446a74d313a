"""Kernel alignment and distances. Every function accepts the three Gram layouts of :func:`ntk_gram`:
full (n, C, n, C), trace (n, n) and diagonal (n, n, C, one (n, n) kernel per output)."""

from __future__ import annotations

import math

import torch


def _as_matrices(K: torch.Tensor) -> torch.Tensor:
    """A batch of square matrices (B, m, m) whose trace products define Tr[K1 K2] for the layout."""
    if K.ndim == 2:
        if K.shape[0] != K.shape[1]:
            raise ValueError(f"kernel alignment needs a square Gram matrix, got shape {tuple(K.shape)}")
        return K[None]
    if K.ndim == 3:  # diagonal: (n, n, C) -> (C, n, n)
        return K.permute(2, 0, 1)
    if K.ndim == 4:  # full: (n, C, n, C) -> (1, nC, nC)
        n, C = K.shape[0], K.shape[1]
        return K.reshape(1, n * C, K.shape[2] * K.shape[3])
    raise ValueError(f"expected a Gram matrix of 2, 3 or 4 dimensions, got shape {tuple(K.shape)}")


def center(K: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / n acting on the *example* indices (per output for full/diagonal layouts).

    This removes any constant added to the features (or outputs) of every example."""
    if K.ndim == 2:
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
    if K.ndim == 3:  # (n, n, C)
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean((0, 1), keepdim=True)
    if K.ndim == 4:  # (n, C, n, C)
        return K - K.mean(0, keepdim=True) - K.mean(2, keepdim=True) + K.mean((0, 2), keepdim=True)
    raise ValueError(f"expected a Gram matrix of 2, 3 or 4 dimensions, got shape {tuple(K.shape)}")


def kernel_alignment(K1: torch.Tensor, K2: torch.Tensor, centered: bool = False) -> float:
    """KA(K1, K2) = Tr[K1 K2] / (||K1||_F ||K2||_F)   (Cristianini et al. 2001; eq. 5 of George et al.).

    With ``centered=True`` both kernels are first centred, H K H (Cortes et al. 2012). Equals 1 for K1 = K2
    and is invariant to scaling either kernel. Computed in float64. Undefined (NaN) when either kernel is zero,
    e.g. the representation of a network whose ReLUs all died.
    """
    if K1.shape != K2.shape:
        raise ValueError(f"kernels have different shapes: {tuple(K1.shape)} vs {tuple(K2.shape)}")
    if centered:
        K1, K2 = center(K1.double()), center(K2.double())
    A, B = _as_matrices(K1.double()), _as_matrices(K2.double())
    tr = float((A * B.transpose(1, 2)).sum())  # sum_b Tr[A_b B_b]
    norms = float(A.norm()) * float(B.norm())
    return tr / norms if norms > 0 else math.nan


def kernel_distance(K: torch.Tensor, K0: torch.Tensor) -> float:
    """||K - K0||_F / ||K0||_F: how far the kernel moved from initialisation (Geiger et al. 2020, slide "the kernel
    evolution displays two regimes": ||Theta - Theta_0|| / ||Theta_0||, Theta the NTK)."""
    if K.shape != K0.shape:
        raise ValueError(f"kernels have different shapes: {tuple(K.shape)} vs {tuple(K0.shape)}")
    return float((K.double() - K0.double()).norm() / K0.double().norm())


def targets_matrix(y: torch.Tensor, num_classes: int | None = None, centered: bool = True) -> torch.Tensor:
    """Labels as a target matrix Y (n, C): +-1 labels as a column, class indices one-hot; centred over examples."""
    if y.ndim == 2:
        Y = y.double()
    elif y.is_floating_point():
        Y = y.double()[:, None]
    else:
        Y = torch.nn.functional.one_hot(y.long(), num_classes).double()
    return Y - Y.mean(0, keepdim=True) if centered else Y


def kernel_target_alignment(K: torch.Tensor, y: torch.Tensor, centered: bool = True) -> float:
    """y^T K y / (||K||_F ||y||^2) (Cristianini et al. 2001), y one-hot and centred for classification.

    Layouts: trace -> Tr[Y^T K Y]; diagonal -> sum_c Y_c^T K_c Y_c; full -> vec(Y)^T K vec(Y). For binary +-1
    labels with a single output all three coincide.
    """
    K = K.double()
    n = K.shape[0]
    C = K.shape[1] if K.ndim == 4 else (K.shape[2] if K.ndim == 3 else None)
    Y = targets_matrix(y, num_classes=C, centered=centered)  # (n, C')
    if Y.shape[0] != n:
        raise ValueError(f"{Y.shape[0]} labels for a kernel on {n} examples")
    if K.ndim == 2:
        num = float(torch.einsum("ic,ij,jc->", Y, K, Y))
    elif K.ndim == 3:
        num = float(torch.einsum("ic,ijc,jc->", Y, K, Y))
    else:
        num = float(torch.einsum("ic,icjd,jd->", Y, K, Y))
    return num / (float(K.norm()) * float((Y**2).sum()))
