"""Each loss against a numpy re-implementation of its formula, per example, float64."""

import numpy as np
import pytest
import torch

from lazyhasty import BCE, MSE, CrossEntropy, Hinge, QuadraticHinge, SoftHinge, get_loss
from lazyhasty.dynamics.losses import correct, margins


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
