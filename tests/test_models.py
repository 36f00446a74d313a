"""Models: parametrisations, normalised activations, architectures."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import simpson

from lazyhasty import CNN, MLP, AlphaScaled, Linearized, ResNet18, seeded
from lazyhasty.models.activations import Activation, second_moment
from lazyhasty.models.mlp import NTKLinear


def gauss_moment(phi):
    """E[phi(z)^2], z ~ N(0,1), by a dense Simpson rule: a second implementation of the normalisation."""
    z = np.linspace(-14, 14, 400_001)
    return float(simpson(phi(z) ** 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), x=z))


def test_activation_second_moments():
    assert second_moment("relu") == pytest.approx(0.5, rel=1e-12)  # closed form
    assert second_moment("tanh") == pytest.approx(gauss_moment(np.tanh), rel=1e-10)
    sp5 = lambda z: np.logaddexp(0.0, 5 * z) / 5  # noqa: E731
    assert second_moment("softplus", 5.0) == pytest.approx(gauss_moment(sp5), rel=1e-10)
    z = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(Activation("relu", normalize=True)(z), math.sqrt(2) * torch.relu(z))
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("gelu7")


def test_ntk_parametrisation_statistics(gen):
    """N(0,1) weights, 1/sqrt(fan_in) scaling: with normalised activations pre-activations stay ~N(0,1)."""
    h = 2048
    model = seeded(lambda: MLP([50, h, h, 1], activation="softplus", beta=5.0, parametrization="ntk",
                               bias=False, normalize_activation=True).double(), 0)
    assert all(isinstance(layer, NTKLinear) for layer in model.layers)
    w = model.layers[1].weight.detach()
    assert abs(float(w.std()) - 1) < 0.01 and abs(float(w.mean())) < 0.01
    x = torch.randn(200, 50, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(50)  # ||x|| = sqrt(d)
    with torch.no_grad():
        pre1 = model.layers[0](x)
        pre2 = model.layers[1](model.act(pre1))
    assert abs(float(pre1.var()) - 1) < 0.05 and abs(float(pre2.var()) - 1) < 0.05
    manual = torch.nn.functional.linear(x, model.layers[0].weight) / math.sqrt(50)
    torch.testing.assert_close(pre1, manual)


def test_standard_mlp_uses_pytorch_default_init():
    a = seeded(lambda: MLP([3, 5, 1]), 0)
    b = seeded(lambda: torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1)), 0)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_resnet18_cifar_variant():
    net = ResNet18(num_outputs=10)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962  # the well-known CIFAR ResNet18 count
    bn_params = sum(p.numel() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    no_bn = ResNet18(num_outputs=10, batchnorm=False)
    assert sum(p.numel() for p in no_bn.parameters()) == 11_173_962 - bn_params
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in no_bn.modules())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_cnn_shapes_and_regimes(parametrization, gen):
    net = seeded(lambda: CNN(in_channels=1, num_outputs=3, width=4, depth=3, parametrization=parametrization)
                 .double(), 0)
    x = torch.randn(5, 1, 12, 12, generator=gen, dtype=torch.float64)
    f = net(x)
    assert f.shape == (5, 3) and net.hidden(x).shape == (5, 16)
    torch.testing.assert_close(Linearized(net)(x), f)
    torch.testing.assert_close(AlphaScaled(net, 3.0)(x), f)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="widths"):
        MLP([3])
    with pytest.raises(ValueError, match="parametrization"):
        MLP([3, 1], parametrization="mup")
