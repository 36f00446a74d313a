"""Each loss against a numpy re-implementation of its formula, per example, float64."""

import numpy as np
import pytest
import torch

from lazyhasty import BCE, MSE, CrossEntropy, Hinge, QuadraticHinge, SoftHinge
from lazyhasty.dynamics.losses import correct, get_loss, margins


@pytest.fixture
def binary(gen):
    f = torch.randn(50, 1, generator=gen, dtype=torch.float64) * 3
    y = torch.where(torch.rand(50, generator=gen) < 0.5, -1.0, 1.0).double()
    return f, y


def sp(z):  # numerically stable softplus in numpy
    return np.logaddexp(0.0, z)


@pytest.mark.parametrize(
    "loss, ref",
    [
        (BCE(), lambda m: sp(-m)),
        (Hinge(), lambda m: np.maximum(0.0, 1 - m)),
        (SoftHinge(20.0), lambda m: sp(20.0 * (1 - m)) / 20.0),
        (SoftHinge(2.0), lambda m: sp(2.0 * (1 - m)) / 2.0),
        (QuadraticHinge(), lambda m: 0.5 * np.maximum(0.0, 1 - m) ** 2),
    ],
)
def test_margin_losses(binary, loss, ref):
    f, y = binary
    per = loss(f, y)
    assert per.shape == (50,)
    m = (f[:, 0] * y).numpy()
    np.testing.assert_allclose(per.numpy(), ref(m), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(loss.correct(f, y).numpy(), np.sign(f[:, 0].numpy()) == y.numpy())


def test_mse_binary_and_vector(binary, gen):
    f, y = binary
    np.testing.assert_allclose(MSE()(f, y).numpy(), 0.5 * (f[:, 0].numpy() - y.numpy()) ** 2, rtol=1e-13)
    F = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    np.testing.assert_allclose(MSE()(F, Y).numpy(), 0.5 * ((F - Y).numpy() ** 2).sum(1), rtol=1e-13)


def test_cross_entropy_and_multiclass_margin(gen):
    F = torch.randn(30, 5, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (30,), generator=gen)
    Fn, yn = F.numpy(), y.numpy()
    lse = np.log(np.exp(Fn - Fn.max(1, keepdims=True)).sum(1)) + Fn.max(1)
    np.testing.assert_allclose(CrossEntropy()(F, y).numpy(), lse - Fn[np.arange(30), yn], rtol=1e-12)
    other = Fn.copy()
    other[np.arange(30), yn] = -np.inf
    np.testing.assert_allclose(margins(F, y).numpy(), Fn[np.arange(30), yn] - other.max(1), rtol=1e-13)
    np.testing.assert_array_equal(correct(F, y).numpy(), Fn.argmax(1) == yn)


def test_get_loss_by_name_and_unknown():
    assert isinstance(get_loss("soft_hinge", beta=5.0), SoftHinge)
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("l7")


# Every loss on every shape it accepts, against a float64 reference written here from the formula, and every
# shape it must refuse. (The bug this guards: MSE on (n, 1) outputs and (n, 1) targets once broadcast to (n, n).)
def _ref(name, f, y):
    """Reference per-example loss: f, y numpy float64; binary f is (n,), class scores (n, C), targets as given."""
    if name == "mse":
        d = f - y
        return 0.5 * (d**2 if d.ndim == 1 else (d**2).sum(1))
    if f.ndim == 2:  # class indices
        yi = y.astype(int)
        if name == "cross_entropy":
            mx = f.max(1)
            return np.log(np.exp(f - mx[:, None]).sum(1)) + mx - f[np.arange(len(f)), yi]
        others = f.copy()
        others[np.arange(len(f)), yi] = -np.inf
        m = f[np.arange(len(f)), yi] - others.max(1)
    else:
        m = y * f
    return {"bce": sp(-m), "hinge": np.maximum(0.0, 1 - m), "soft_hinge": sp(20.0 * (1 - m)) / 20.0,
            "quadratic_hinge": 0.5 * np.maximum(0.0, 1 - m) ** 2}[name]


N, C = 7, 4
MARGIN_LOSSES = ("bce", "hinge", "soft_hinge", "quadratic_hinge")
ACCEPTED = [  # (loss, output shape, target shape, target kind)
    *[(name, (N,), (N,), "pm1") for name in MARGIN_LOSSES],
    *[(name, (N, 1), (N,), "pm1") for name in MARGIN_LOSSES],
    *[(name, (N, 1), (N, 1), "pm1") for name in MARGIN_LOSSES],
    *[(name, (N, C), (N,), "index") for name in (*MARGIN_LOSSES, "cross_entropy")],
    ("mse", (N,), (N,), "real"), ("mse", (N, 1), (N,), "real"), ("mse", (N, 1), (N, 1), "real"),
    ("mse", (N, C), (N, C), "real"),
]
REFUSED = [
    *[(name, (N, 1), (N, 2), "real") for name in (*MARGIN_LOSSES, "mse")],
    *[(name, (N,), (N + 1,), "pm1") for name in (*MARGIN_LOSSES, "mse")],
    *[(name, (N, C), (N, C), "real") for name in (*MARGIN_LOSSES, "cross_entropy")],
    *[(name, (N, C), (N,), "real") for name in (*MARGIN_LOSSES, "cross_entropy")],  # float class labels
    ("cross_entropy", (N,), (N,), "index"), ("cross_entropy", (N, 1), (N,), "index"),
    ("mse", (N,), (N, 1), "real"), ("mse", (N, C), (N,), "index"), ("mse", (N, 2, 2), (N, 2, 2), "real"),
    ("bce", (N, 2, 2), (N,), "pm1"), ("mse", (), (), "real"),
]


def _targets(gen, shape, kind):
    if kind == "index":
        return torch.randint(0, C, shape, generator=gen)
    if kind == "pm1":
        return torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).double()
    return torch.randn(shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name, out_shape, y_shape, kind", ACCEPTED)
def test_every_loss_on_every_accepted_shape(gen, name, out_shape, y_shape, kind):
    f = torch.randn(out_shape, generator=gen, dtype=torch.float64) * 2
    y = _targets(gen, y_shape, kind)
    per = get_loss(name)(f, y)
    assert per.shape == (N,) and per.dtype == torch.float64
    fn, yn = f.numpy(), y.numpy().astype(np.float64)
    if fn.ndim == 2 and fn.shape[1] == 1:  # one output: compare as (n,) against targets (n,)
        fn, yn = fn[:, 0], yn.reshape(N)
    np.testing.assert_allclose(per.numpy(), _ref(name, fn, yn), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, out_shape, y_shape, kind", REFUSED)
def test_every_loss_refuses_mismatched_shapes_naming_both(gen, name, out_shape, y_shape, kind):
    f = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    y = _targets(gen, y_shape, kind)
    with pytest.raises(ValueError) as e:
        get_loss(name)(f, y)
    assert str(tuple(out_shape)) in str(e.value) and str(tuple(y_shape)) in str(e.value)


def test_training_refuses_mse_targets_that_would_broadcast(gen):
    """train() with one-output MSE and (n, 1) targets trains on the half mean squared error (not an (n, n) mean)."""
    import lazyhasty as lh

    x = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(12, 1, generator=gen, dtype=torch.float64)
    model = lh.MLP([3, 5, 1]).double()
    with torch.no_grad():
        expected = 0.5 * ((model(x) - y) ** 2).mean().item()
    res = lh.train(model, lh.Split(x, y), loss="mse", stepper=lh.GD(0.01), stop=lh.Stop(max_steps=1))
    first = res.trace.loss.iloc[0]
    assert first == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match=r"\(12, 1\).*\(12, 2\)"):
        lh.train(model, lh.Split(x, torch.randn(12, 2, dtype=torch.float64)), loss="mse", stepper=lh.GD(0.01),
                 stop=lh.Stop(max_steps=1))


def test_softplus_losses_are_exact_far_from_the_margin():
    """Margins where torch's default softplus cut-off (20) would drop log(1 + e^-z) ~ 2e-9: exact here."""
    f = torch.tensor([-60.0, -38.0, -25.0, -21.0, 21.0, 60.0], dtype=torch.float64)
    y = torch.ones(6, dtype=torch.float64)
    np.testing.assert_allclose(BCE()(f, y).numpy(), sp(-f.numpy()), rtol=1e-15, atol=0)
    np.testing.assert_allclose(SoftHinge(2.0)(f, y).numpy(), sp(2.0 * (1 - f.numpy())) / 2.0, rtol=1e-15, atol=0)
