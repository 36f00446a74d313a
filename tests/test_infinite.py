"""The infinite-width NTK against a second implementation of its Gaussian expectations (scipy's adaptive
quadrature, float64) and against the empirical NTK of the package's MLP as the width grows."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import lazyhasty as lh
from lazyhasty.models.activations import Activation
from lazyhasty.theory import infinite_ntk
from lazyhasty.theory.infinite import _expectations

PHI = {  # (phi, phi') in numpy, written from the formulas
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: float(z > 0)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "softplus": (lambda z: np.logaddexp(0.0, 5.0 * z) / 5.0, lambda z: 1 / (1 + np.exp(-5.0 * z))),
}


def reference_expectations(name: str, scale: float, a: float, b: float, c: float) -> tuple[float, float]:
    """E[phi(u) phi(v)], E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[a, c], [c, b]]): adaptive 2-D quadrature of the
    bivariate density over the four quadrants (phi bends at 0, so each piece is smooth)."""
    inv, det = np.linalg.inv(np.array([[a, c], [c, b]])), a * b - c * c

    def density(u, v):
        q = inv[0, 0] * u * u + 2 * inv[0, 1] * u * v + inv[1, 1] * v * v
        return math.exp(-q / 2) / (2 * math.pi * math.sqrt(det))

    out = []
    for f in PHI[name]:
        total = 0.0
        for ulo, uhi in ((-12 * math.sqrt(a), 0.0), (0.0, 12 * math.sqrt(a))):
            for vlo, vhi in ((-12 * math.sqrt(b), 0.0), (0.0, 12 * math.sqrt(b))):
                total += integrate.dblquad(lambda v, u, f=f: f(u) * f(v) * density(u, v), ulo, uhi, vlo, vhi,
                                           epsabs=1e-13, epsrel=1e-11)[0]
        out.append(total * scale**2)
    return tuple(out)


@pytest.mark.parametrize("name, normalize", [("relu", False), ("relu", True), ("tanh", False), ("softplus", True)])
def test_gaussian_expectations_match_adaptive_quadrature(name, normalize):
    act = Activation(name, beta=5.0 if name == "softplus" else 1.0, normalize=normalize)
    rtol = {"relu": 1e-8, "tanh": 1e-9, "softplus": 1e-5}[name]  # closed form; 128 Gauss-Hermite nodes
    for a, b, c in ((1.0, 1.0, 0.3), (0.7, 2.0, -0.9), (1.5, 1.2, 1.2)):
        got = _expectations(act, np.array(a), np.array(b), np.array(c), 128)
        want = reference_expectations(name, act.scale, a, b, c)
        np.testing.assert_allclose([float(got[0]), float(got[1])], want, rtol=rtol, atol=1e-12)


def test_relu_kernel_closed_forms_at_the_extremes():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    K = infinite_ntk(x, depth=1, activation="relu", bias=False)  # Sigma1 = x.x'/2
    # orthogonal inputs: Sigma1 = 0, theta = pi/2; parallel: theta = 0
    s11, s33 = 0.5, 2.0
    np.testing.assert_allclose(K[0, 1], 0 * 0.25 + math.sqrt(s11 * s11) / (2 * math.pi), rtol=1e-14)
    np.testing.assert_allclose(K[0, 0], s11 * 0.5 + s11 / 2, rtol=1e-14)
    np.testing.assert_allclose(K[0, 2], 1.0 * 0.5 + math.sqrt(s11 * s33) / 2, rtol=1e-14)
    assert torch.allclose(K, K.T)


@pytest.mark.parametrize("activation, normalize, bias", [("relu", False, False), ("softplus", True, True)])
def test_empirical_ntk_converges_like_one_over_sqrt_width(activation, normalize, bias):
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    beta = 5.0 if activation == "softplus" else 1.0
    K = infinite_ntk(x, depth=2, activation=activation, bias=bias, beta=beta, normalize_activation=normalize)
    widths, errors = (256, 512, 1024, 2048, 4096, 8192), []
    for h in widths:
        errs = []
        for seed in range(4):
            net = lh.seeded(lambda h=h: lh.MLP([5, h, h, 1], activation=activation, parametrization="ntk", bias=bias,
                                               beta=beta, normalize_activation=normalize).double(), seed)
            errs.append(float((lh.ntk_gram(net, x, outputs="trace") - K).norm() / K.norm()))
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.8 < slope < -0.3, (slope, errors)  # h^(-1/2), up to the spread of 4 seeds
    assert errors[-1] < 0.04, errors


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        infinite_ntk(torch.zeros(2, 3), depth=0)
    with pytest.raises(ValueError, match="activation"):
        infinite_ntk(torch.zeros(2, 3), depth=1, activation="gelu")
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        infinite_ntk(torch.zeros(2, 3), torch.zeros(2, 4), depth=1)
