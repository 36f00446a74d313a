"""Regime wrappers against closed forms and a second implementation (explicit Jacobians), in float64."""

import copy

import pytest
import torch
from torch.func import functional_call, jacrev

from conftest import small_mlp
from lazyhasty import GD, AlphaScaled, Linearized, Split, Stop, same_init, train


def perturb(model, gen, scale=0.1):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def explicit_jacobian(model, params0, x):
    """J (n, C, P) of the model at params0, materialised with jacrev: the reference implementation."""
    names = list(params0)
    J = jacrev(lambda p: functional_call(model, p, (x,)))(params0)  # {name: (n, C, *shape)}
    n, C = x.shape[0], J[names[0]].shape[1]
    return torch.cat([J[k].reshape(n, C, -1) for k in names], dim=2), names


@pytest.mark.parametrize("bias", [True, False])
def test_wrappers_equal_model_at_init(gen, bias):
    model = small_mlp(bias=bias)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    f = model(x)
    torch.testing.assert_close(AlphaScaled(same_init(model), 37.0)(x), f, rtol=0, atol=1e-14)
    torch.testing.assert_close(Linearized(same_init(model))(x), f, rtol=0, atol=1e-14)
    assert torch.equal(AlphaScaled(same_init(model), 5.0, center="zero")(x), torch.zeros_like(f))


def test_alpha_scaled_formula_and_gradients(gen):
    model = small_mlp()
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    f0 = model(x).detach()
    alpha = 7.5
    for center, c in (("keep", 1.0), ("zero", 0.0)):
        wrapped = AlphaScaled(same_init(model), alpha, center=center)
        perturb(wrapped.model, torch.Generator().manual_seed(3))
        plain = copy.deepcopy(wrapped.model)
        out = wrapped(x)
        f = plain(x)
        torch.testing.assert_close(out, c * f0 + alpha * (f - f0), rtol=1e-13, atol=1e-13)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        g_wrapped = torch.autograd.grad((out * w).sum(), list(wrapped.model.parameters()))
        g_plain = torch.autograd.grad((f * w).sum(), list(plain.parameters()))
        for a, b in zip(g_wrapped, g_plain):
            torch.testing.assert_close(a, alpha * b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("path", ["jvp", "cached-linearize", "grad-input"])
def test_linearized_equals_explicit_taylor_model(gen, path):
    """f_bar = f0 + J0 (theta - theta0) and grad = J0^T w, against materialised Jacobians."""
    model = small_mlp(widths=(3, 8, 8, 4))
    params0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    J, names = explicit_jacobian(model, params0, x := torch.randn(6, 3, generator=gen, dtype=torch.float64))
    f0 = model(x).detach()
    lin = Linearized(same_init(model))
    perturb(lin.model, gen, 0.3)
    delta = torch.cat([(dict(lin.model.named_parameters())[k] - params0[k]).reshape(-1) for k in names]).detach()
    expected = f0 + torch.einsum("ncp,p->nc", J, delta)
    if path == "cached-linearize":
        lin(x)  # first sighting: jvp path; second: the reusable linearisation
        assert lin._cache.entry((x,), {}, lin.training).get("seen")
    xin = x.clone().requires_grad_(True) if path == "grad-input" else x
    out = lin(xin)
    if path == "cached-linearize":
        assert "jvp_fn" in lin._cache.entry((x,), {}, lin.training)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), [dict(lin.model.named_parameters())[k] for k in names])
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in grads]), torch.einsum("ncp,nc->p", J, w),
                               rtol=1e-12, atol=1e-12)


def test_linearized_is_first_order_taylor(gen):
    """|f(theta0 + eps v) - f_bar(theta0 + eps v)| = O(eps^2): halving eps divides the error by ~4."""
    model = small_mlp(widths=(3, 12, 12, 1), activation="tanh")
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in model.parameters()]
    errors = []
    for eps in (1e-2, 5e-3, 2.5e-3):
        lin = Linearized(same_init(model))
        moved = same_init(model)
        with torch.no_grad():
            for p, q, d in zip(lin.model.parameters(), moved.parameters(), direction):
                p.add_(eps * d)
                q.add_(eps * d)
        with torch.no_grad():
            errors.append(float((moved(x) - lin(x)).abs().max()))
    assert errors[0] > 1e-9  # the network is genuinely non-linear at this scale
    for a, b in zip(errors, errors[1:]):
        assert 3.6 < a / b < 4.4


def test_alpha_scaled_tracks_linearized_as_alpha_grows(gen):
    """Chizat et al. Thm 2.4: GD on f^alpha with lr eta/alpha^2 approaches GD on f_bar as alpha -> inf."""
    base = small_mlp(widths=(2, 32, 32, 1), activation="tanh")
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    data = Split(x, torch.sign(x[:, 0] * x[:, 1]))

    def final_outputs(model):
        train(model, data, loss="mse", stepper=GD(0.05), stop=Stop(max_steps=200), probes=())
        with torch.no_grad():
            return model(x)

    f_lin = final_outputs(Linearized(same_init(base)))
    with torch.no_grad():
        moved = float((f_lin - base(x)).norm())
    assert moved > 0.1  # training did move the function
    dist = {a: float((final_outputs(AlphaScaled(same_init(base), a)) - f_lin).norm()) for a in (1e2, 1e4)}
    assert dist[1e4] < dist[1e2] / 30  # ~1/alpha
    assert dist[1e4] < 1e-3 * moved


def test_f0_cache_is_keyed_on_identity_and_version(gen):
    model = small_mlp()
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    for wrapped in (AlphaScaled(same_init(model), 3.0), Linearized(same_init(model))):
        wrapped(x)
        wrapped(x)
        with torch.no_grad():
            x.add_(1.0)  # in-place edit: the cached f0 is stale and must not be used
        torch.testing.assert_close(wrapped(x), model(x), rtol=1e-13, atol=1e-13)
        y = x.clone()  # a different tensor with equal values: computed afresh, same result
        torch.testing.assert_close(wrapped(y), model(y), rtol=1e-13, atol=1e-13)


def test_dtype_change_after_wrapping_clears_cache(gen):
    model = small_mlp().float()
    wrapped = AlphaScaled(model, 2.0)
    x = torch.randn(4, 3, generator=gen)
    wrapped(x)
    wrapped.double()
    assert all(v.dtype == torch.float64 for v in wrapped.params0().values())
    assert wrapped(x.double()).dtype == torch.float64


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_alpha_is_a_clear_error(alpha):
    with pytest.raises(ValueError, match="alpha"):
        AlphaScaled(small_mlp(), alpha)


@pytest.mark.parametrize("outer", [lambda m: AlphaScaled(m, 3.0), Linearized])
def test_a_regime_wrapper_is_not_wrapped_again(outer):
    """AlphaScaled(AlphaScaled(m, 2), 3) would scale f - f0 by 6 while the engine steps with eta / 3^2, and
    Linearized(AlphaScaled(m, 2)) would train on 4 Theta0 at the rate meant for Theta0: both refused."""
    for inner in (AlphaScaled(small_mlp(), 2.0), Linearized(small_mlp())):
        with pytest.raises(TypeError, match="not another regime wrapper"):
            outer(inner)


def test_theta0_is_frozen_and_saved():
    wrapped = AlphaScaled(small_mlp(), 4.0)
    assert all(not v.requires_grad for v in wrapped.params0().values())
    assert len(list(wrapped.parameters())) == len(list(wrapped.model.parameters()))
    assert any(k.startswith("theta0__") for k in wrapped.state_dict())
