"""Steppers against closed forms, an ODE solver and torch.optim (a second implementation), float64."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm
from torch import nn

from conftest import small_mlp
from lazyhasty import GD, SGD, AlphaScaled, GradientFlow, MomentumFlow, Split, Stop, same_init, train


def least_squares(gen, n=12, d=5):
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(0.1 * torch.randn(1, d, generator=gen, dtype=torch.float64))
    return X, y, model


def test_gd_matches_closed_form_iteration_and_time_units(gen):
    X, y, model = least_squares(gen)
    w = model.weight.detach().numpy()[0].copy()
    Xn, yn, n, lr = X.numpy(), y.numpy(), len(y), 0.1
    for _ in range(25):
        w = w - lr * Xn.T @ (Xn @ w - yn) / n  # grad of mean 1/2 (x.w - y)^2
    res = train(model, Split(X, y), loss="mse", stepper=GD(lr), stop=Stop(max_steps=25), probes=())
    np.testing.assert_allclose(model.weight.detach().numpy()[0], w, rtol=1e-12)
    assert res.steps == 25 and res.t == pytest.approx(25 * lr, rel=1e-12)


def test_lr_rule_lives_in_the_trainer(gen):
    """A linear model is its own linearisation, so f^alpha trained with eta/alpha^2 moves exactly like
    alpha = 1 in function space; and theory time does not depend on alpha."""
    X, y, model = least_squares(gen)
    outs, times = [], []
    for alpha in (1.0, 10.0, 1000.0):
        wrapped = AlphaScaled(same_init(model), alpha)
        res = train(wrapped, Split(X, y), loss="mse", stepper=GD(0.2), stop=Stop(max_steps=30), probes=())
        with torch.no_grad():
            outs.append(wrapped(X))
        times.append(res.t)
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-9, atol=1e-10)
    assert times == [pytest.approx(6.0)] * 3


def test_gradient_flow_matches_matrix_exponential(gen):
    X, y, model = least_squares(gen)
    Xn, yn, n = X.numpy(), y.numpy(), len(y)
    w0 = model.weight.detach().numpy()[0].copy()
    H = Xn.T @ Xn / n
    b = Xn.T @ yn / n
    T = 3.0
    res = train(model, Split(X, y), loss="mse", stepper=GradientFlow(dt=1e-3), stop=Stop(max_time=T), probes=())
    # exact flow w' = -(H w - b), evaluated at the time the run actually stopped
    w_star = np.linalg.lstsq(H, b, rcond=None)[0]
    exact = w_star + expm(-H * res.t) @ (w0 - w_star)
    got = model.weight.detach().numpy()[0]
    assert res.t >= T
    assert np.linalg.norm(got - exact) / np.linalg.norm(exact - w0) < 2e-3
    assert res.stepper_state["accepted"] == res.steps


def test_gradient_flow_rejects_and_adapts(gen):
    X, y, model = least_squares(gen)
    res = train(model, Split(X, y), loss="mse", stepper=GradientFlow(dt=50.0, max_dgrad=1e-2),
                stop=Stop(max_steps=60), probes=())
    assert res.stepper_state["rejected"] >= 1  # dt = 50 is far too large for these curvatures
    dts = res.trace["dt"].to_numpy()[1:]
    assert dts.max() < 50.0 and (np.diff(dts) > 0).any()  # shrunk, then grew back by 1.1 when calm
    assert np.allclose(dts[1:][np.diff(dts) > 0] / dts[:-1][np.diff(dts) > 0], 1.1)


def test_gradient_flow_growth_threshold(gen):
    """dt grows by 1.1 only when dgrad < min_dgrad (Geiger et al.'s window: reject above max, grow below min)."""
    X, y, _ = least_squares(gen)
    # the least-squares gradient is g = H w - b, so dgrad = dt^2 ||H g0||^2 / (||g0|| ||g1||), > 0 at every step
    runs = {}
    for low in (1e-300, 1.0, None):
        _, _, model = least_squares(torch.Generator().manual_seed(1234))
        res = train(model, Split(X, y), loss="mse", stop=Stop(max_steps=20), probes=(),
                    stepper=GradientFlow(dt=1e-3, max_dgrad=1.0, min_dgrad=low, max_dout=1e9))
        runs[low] = res.trace["dt"].to_numpy()[1:]
    assert np.allclose(runs[1e-300], 1e-3)  # never below the threshold: dt stays put
    assert np.allclose(runs[1.0], 1e-3 * 1.1 ** np.arange(20))  # always below it: grows every step
    assert runs[None][-1] > 1e-3  # default threshold max_dgrad / 2: these small steps grow
    with pytest.raises(ValueError, match="min_dgrad"):
        GradientFlow(max_dgrad=1e-3, min_dgrad=1e-2)


def test_gradient_flow_limits_output_change(gen):
    """The alpha * max|delta f| rule: no accepted step moves any training output by more than max_dout."""
    model = small_mlp(widths=(3, 16, 1))
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    data = Split(x, torch.sign(x[:, 0]))
    outs = []
    train(AlphaScaled(model, 10.0), data, loss="bce", stepper=GradientFlow(dt=10.0, max_dout=0.05,
          max_dgrad=1.0), stop=Stop(max_steps=30), probes=(), on_step=lambda ev: outs.append(ev.out[0]))
    jumps = [float((b - a).abs().max()) for a, b in zip(outs, outs[1:])]
    assert max(jumps) <= 0.05 + 1e-15


def test_momentum_flow_matches_ode_solver(gen):
    X, y, model = least_squares(gen)
    Xn, yn, n = X.numpy(), y.numpy(), len(y)
    w0 = model.weight.detach().numpy()[0].copy()
    d, tau, T = len(w0), 0.5, 2.0
    H, b = Xn.T @ Xn / n, Xn.T @ yn / n

    def rhs(t, z):  # tau v' = -(v + grad), w' = v
        w, v = z[:d], z[d:]
        return np.concatenate([v, -(v + H @ w - b) / tau])

    res = train(model, Split(X, y), loss="mse", stepper=MomentumFlow(tau=tau, dt=1e-3, max_dgrad=1e-5),
                stop=Stop(max_time=T), probes=())
    sol = solve_ivp(rhs, (0, res.t), np.concatenate([w0, np.zeros(d)]), rtol=1e-11, atol=1e-12)
    exact = sol.y[:d, -1]
    got = model.weight.detach().numpy()[0]
    assert np.linalg.norm(got - exact) / np.linalg.norm(exact - w0) < 5e-3


def test_momentum_flow_step_is_exact_for_constant_gradient():
    """With a linear loss the gradient is constant and each step integrates the ODE exactly (one member)."""
    p = nn.Parameter(torch.zeros(1, 3, dtype=torch.float64))  # (members, *shape)
    g = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    stepper = MomentumFlow(tau=0.7, dt=0.3)
    state = stepper.init_state([p])
    from lazyhasty.dynamics.steppers import Evaluation

    ev = Evaluation(torch.zeros(1), [g], torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, dtype=torch.bool))
    t = 0.0
    for _ in range(5):
        dt, _ = stepper.step([p], ev, lambda: ev, state)
        t += float(dt[0])
    # exact: v(t) = -(1 - e^{-t/tau}) g ; w(t) = -(t - tau (1 - e^{-t/tau})) g
    a = np.exp(-t / 0.7)
    np.testing.assert_allclose(p.detach().numpy(), -(t - 0.7 * (1 - a)) * g.numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["v"][0].numpy(), -(1 - a) * g.numpy(), rtol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 10.0])
def test_sgd_matches_torch_optim(gen, alpha):
    """Same minibatches, same update as torch.optim.SGD(lr / alpha^2, momentum) on the wrapped model."""
    base = small_mlp(widths=(3, 8, 1))
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    data = Split(x, torch.sign(x[:, 1]))
    ours = AlphaScaled(same_init(base), alpha)
    seen = []
    train(ours, data, loss="bce", stepper=SGD(0.3, momentum=0.9, batch_size=16), stop=Stop(max_steps=12),
          probes=(), data_seed=5, on_step=lambda ev: seen.append(ev.index.clone()))
    ref = AlphaScaled(same_init(base), alpha)
    opt = torch.optim.SGD(ref.parameters(), lr=0.3 / alpha**2, momentum=0.9)
    from lazyhasty import BCE

    for idx in seen[:12]:
        opt.zero_grad()
        BCE()(ref(x[idx]), data.y[idx]).mean().backward()
        opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert sorted(torch.cat(seen[:3]).tolist()) == list(range(40))  # one epoch = a permutation (16 + 16 + 8)


@pytest.mark.parametrize("make", [lambda: GD(0.0), lambda: SGD(0.1, momentum=1.0), lambda: GradientFlow(dt=-1),
                                  lambda: MomentumFlow(tau=0.0), lambda: GD(math.inf), lambda: SGD(math.nan),
                                  lambda: GradientFlow(dt=math.inf), lambda: GradientFlow(grow=math.inf),
                                  lambda: GradientFlow(min_dt=math.inf), lambda: MomentumFlow(tau=math.inf)])
def test_bad_stepper_arguments(make):
    with pytest.raises(ValueError):
        make()
