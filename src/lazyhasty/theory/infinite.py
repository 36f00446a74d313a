"""The neural tangent kernel of a fully connected network at infinite width (Jacot et al. 2018), in the package's
MLP conventions: ``MLP(widths, activation, parametrization="ntk", bias, beta, normalize_activation)``.

NTK parametrisation, layer l: z^{l+1} = W^l phi(z^l) / sqrt(h_l) + s_b b^l with W, b ~ N(0, 1) (first layer:
phi = identity on the input, h_0 = d). As every hidden width goes to infinity the output kernel is deterministic
and the same for every output channel (Jacot et al., Theorem 1):

    Sigma^1(x, x') = x.x' / d + s_b^2,                          Theta^1 = Sigma^1
    Sigma^{l+1}    = E[phi(u) phi(v)] + s_b^2,                  (u, v) ~ N(0, [[S(x,x), S(x,x')], [., S(x',x')]])
    Sigmadot^{l+1} = E[phi'(u) phi'(v)]                         with S = Sigma^l
    Theta^{l+1}    = Theta^l Sigmadot^{l+1} + Sigma^{l+1}

applied once per hidden layer; the read-out gives Theta^{L+1}. ReLU has closed forms (the arc-cosine kernels of
Cho & Saul 2009): with cos(theta) = S(x,x') / sqrt(S(x,x) S(x',x')),
E[relu(u) relu(v)] = sqrt(S S') (sin theta + (pi - theta) cos theta) / (2 pi) and
E[step(u) step(v)] = (pi - theta) / (2 pi). Other activations use Gauss-Hermite quadrature in two dimensions.
A normalised activation (phi / c) divides both expectations by c^2.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..models.activations import ACTIVATIONS, Activation


def _gauss_hermite(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w with sum_k w_k g(z_k) ~ E[g(Z)], Z ~ N(0, 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(points)
    return z, w / math.sqrt(2 * math.pi)


def _expectations(act: Activation, a: np.ndarray, b: np.ndarray, c: np.ndarray, points: int):
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[a, c], [c, b]]), elementwise over arrays."""
    if act.name == "relu":
        norm = np.sqrt(a * b)
        cos = np.clip(np.divide(c, norm, out=np.zeros_like(c), where=norm > 0), -1.0, 1.0)
        theta = np.arccos(cos)
        k0 = (math.pi - theta) / (2 * math.pi)
        k1 = norm * (np.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
        s2 = act.scale**2
        return k1 * s2, k0 * s2
    z, w = _gauss_hermite(points)
    z1, z2, ww = z[:, None], z[None, :], np.outer(w, w)  # (P, 1), (1, P), (P, P)
    shape = np.broadcast(a, b, c).shape
    a, b, c = (np.broadcast_to(t, shape).reshape(-1) for t in (a, b, c))
    e, edot = np.empty(a.size), np.empty(a.size)
    chunk = max(1, 2_000_000 // points**2)  # entries at a time: bounded memory
    for i in range(0, a.size, chunk):
        sa, sc, sb = a[i:i + chunk, None, None], c[i:i + chunk, None, None], b[i:i + chunk, None, None]
        rho = np.divide(sc, np.sqrt(sa), out=np.zeros_like(sc), where=sa > 0)
        rest = np.sqrt(np.maximum(sb - rho * rho, 0.0))
        u, v = np.sqrt(sa) * z1 + 0 * z2, rho * z1 + rest * z2  # u ~ N(0, a), v ~ N(0, b), cov(u, v) = c
        (fu, gu), (fv, gv) = _phi_and_grad(act, u), _phi_and_grad(act, v)
        e[i:i + chunk] = (fu * fv * ww).sum((1, 2))
        edot[i:i + chunk] = (gu * gv * ww).sum((1, 2))
    return e.reshape(shape), edot.reshape(shape)


def _phi_and_grad(act: Activation, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.as_tensor(t, dtype=torch.float64).requires_grad_(True)
    y = act(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach().numpy(), g.numpy()


def _settings_of(mlp) -> dict:
    """The infinite-width settings of an ``MLP`` (or a regime wrapper of one) in the NTK parametrisation."""
    from ..models.mlp import MLP, NTKLinear

    net = getattr(mlp, "model", mlp)
    if not isinstance(net, MLP):
        raise ValueError(f"like= takes a lazyhasty MLP (or a regime wrapper of one), got {type(net).__name__}")
    if not all(type(layer) is NTKLinear for layer in net.layers):
        raise ValueError("like= needs an MLP in the NTK parametrisation (parametrization='ntk'): in the standard "
                         "one the kernel grows with the width and has no finite infinite-width limit")
    biases = {layer.bias is not None for layer in net.layers}
    scales = {layer.bias_scale for layer in net.layers}
    if len(biases) != 1 or len(scales) != 1:
        raise ValueError("like= needs the same bias setting in every layer")
    return {"depth": len(net.layers) - 1, "activation": net.act.name, "bias": biases.pop(),
            "bias_scale": scales.pop(), "beta": net.act.beta, "normalize_activation": net.act.normalize}


def infinite_ntk(x1: torch.Tensor, x2: torch.Tensor | None = None, *, like=None, depth: int | None = None,
                 activation: str | None = None, bias: bool | None = None, bias_scale: float | None = None,
                 beta: float | None = None, normalize_activation: bool | None = None, points: int = 128
                 ) -> torch.Tensor:
    """Theta_inf(x1, x2) of ``MLP([d, h, ..., h, C], activation, parametrization="ntk", bias, beta,
    normalize_activation)`` with ``depth`` hidden layers, as h -> infinity (module docstring).

    Args:
        x1: (n1, d) inputs; x2: (n2, d), default x1.
        like: an ``MLP`` in the NTK parametrisation (or a regime wrapper of one): every setting below is read
            from it (a setting also given must agree with it). The safe way to compare a network with its limit.
        depth: number of hidden layers L >= 1 (required without ``like``).
        activation, bias, beta, normalize_activation: as for ``MLP``, with ``MLP``'s defaults (relu, with biases,
            beta 1, not normalised).
        bias_scale: the layers' bias scale (``NTKLinear``'s default 1).
        points: Gauss-Hermite nodes per dimension for activations other than relu (relu is in closed form).
            Measured against adaptive quadrature (tests/test_infinite.py) at 128 nodes: relative error below 1e-5
            for softplus with beta = 5 (a sharp bend) and below 1e-9 for tanh; more nodes, smaller error.

    Returns:
        (n1, n2) float64 tensor: the kernel of each output channel (channels are independent and identical:
        the full kernel is this times the identity over outputs), on x1's device.
    """
    given = {"depth": depth, "activation": activation, "bias": bias, "bias_scale": bias_scale, "beta": beta,
             "normalize_activation": normalize_activation}
    if like is not None:
        settings = _settings_of(like)
        clash = [f"{k}={v!r} (the network's: {settings[k]!r})" for k, v in given.items()
                 if v is not None and v != settings[k]]
        if clash:
            raise ValueError(f"infinite_ntk(like=...) got settings that differ from the network's: {', '.join(clash)}")
    else:
        if depth is None:
            raise ValueError("infinite_ntk needs depth= (the number of hidden layers), or like=<an MLP>")
        settings = {**{"activation": "relu", "bias": True, "bias_scale": 1.0, "beta": 1.0,
                       "normalize_activation": False}, **{k: v for k, v in given.items() if v is not None}}
    depth, activation, bias, bias_scale, beta, normalize_activation = (settings[k] for k in given)
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth}")
    if x1.ndim != 2 or (x2 is not None and (x2.ndim != 2 or x2.shape[1] != x1.shape[1])):
        raise ValueError(f"inputs must be (n, d) with the same d, got {tuple(x1.shape)} and "
                         f"{None if x2 is None else tuple(x2.shape)}")
    act = Activation(activation, beta=beta, normalize=normalize_activation)
    a = x1.detach().double().cpu().numpy()
    b = a if x2 is None else x2.detach().double().cpu().numpy()
    d, sb2 = a.shape[1], (bias_scale**2 if bias else 0.0)
    cross = a @ b.T / d + sb2  # Sigma^1(x1, x2)
    diag1, diag2 = (a * a).sum(1) / d + sb2, (b * b).sum(1) / d + sb2  # Sigma^1(x, x) on each side
    theta = cross.copy()
    for _ in range(int(depth)):
        A, B = np.broadcast_to(diag1[:, None], cross.shape), np.broadcast_to(diag2[None, :], cross.shape)
        e, edot = _expectations(act, A, B, cross, points)
        theta = theta * edot + e + sb2
        cross = e + sb2
        diag1 = _expectations(act, diag1, diag1, diag1, points)[0] + sb2
        diag2 = _expectations(act, diag2, diag2, diag2, points)[0] + sb2
    return torch.as_tensor(theta, device=x1.device)
