"""The kernel regime in function space against training the linearised model in parameter space (float64), and
the alpha-scaled model approaching it like 1/alpha."""

import numpy as np
import pandas as pd
import pytest
import torch

import lazyhasty as lh
from lazyhasty.theory import infinite_ntk


def data(gen, n, d, classes=None):
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if classes:
        return lh.Split(x, torch.randint(0, classes, (n,), generator=gen))
    return lh.Split(x, torch.randn(n, 1, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("loss, outputs", [("mse", 1), ("cross_entropy", 3), ("bce", 1)])
def test_equals_training_the_linearized_model(gen, loss, outputs):
    net = lh.seeded(lambda: lh.MLP([4, 16, 16, outputs], activation="tanh").double(), 0)
    train, test = data(gen, 12, 4, 3 if loss == "cross_entropy" else None), data(gen, 7, 4)
    if loss == "bce":
        train = lh.Split(train.x, torch.sign(train.y[:, 0]))
    test = lh.Split(test.x, train.y[:7])
    ref = lh.train(lh.Linearized(lh.same_init(net)), train, loss=loss, stepper=lh.GD(0.3), stop=lh.Stop(max_steps=60),
                   splits={"test": test}, probes=(lh.loss_probe,))
    got = lh.kernel_regime(net, train, loss=loss, lr=0.3, steps=60, splits={"test": test})
    assert got.status == ref.status == "complete" and got.steps == ref.steps == 60
    np.testing.assert_allclose(got.trace.loss, ref.trace.loss, rtol=1e-8, atol=1e-14)
    cols = ["step", "milestone", "split", "group", "metric"]
    pd.testing.assert_frame_equal(got.metrics[cols], ref.metrics[cols])
    np.testing.assert_allclose(got.metrics.value, ref.metrics.value, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(got.metrics.t, ref.metrics.t, rtol=1e-12)


def test_alpha_scaled_training_approaches_it_like_one_over_alpha(gen):
    net = lh.seeded(lambda: lh.MLP([3, 32, 1], activation="tanh").double(), 1)
    train = data(gen, 10, 3)
    kr = lh.kernel_regime(net, train, loss="mse", lr=0.1, steps=40)  # 2 / lambda_max(K / n) = 0.44
    gaps = []
    for alpha in (10.0, 100.0, 1000.0):
        run = lh.train(lh.AlphaScaled(lh.same_init(net), alpha), train, loss="mse", stepper=lh.GD(0.1),
                       stop=lh.Stop(max_steps=40), probes=(lh.loss_probe,))
        gaps.append(float(np.abs(run.trace.loss.to_numpy() - kr.trace.loss.to_numpy()).max()))
    slope = np.polyfit(np.log10([10, 100, 1000]), np.log10(gaps), 1)[0]
    assert -1.2 < slope < -0.75 and 7 < gaps[1] / gaps[2] < 13, gaps  # 1/alpha, cleanest at large alpha
    # the prediction does not depend on the wrapper's alpha
    kr100 = lh.kernel_regime(lh.AlphaScaled(lh.same_init(net), 100.0), train, loss="mse", lr=0.1, steps=40)
    np.testing.assert_allclose(kr100.trace.loss, kr.trace.loss, rtol=1e-10)


def test_a_given_kernel_and_records(gen, tmp_path):
    train = data(gen, 9, 3)
    net = lh.MLP([3, 8, 1], parametrization="ntk", bias=False).double()
    res = lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=10,
                           kernel=lambda a, b: infinite_ntk(a, b, like=net),
                           record=lh.RunRecord(tmp_path / "r").start({"regime": "kernel"}))
    assert res.status == "complete" and res.trace.loss.iloc[-1] < res.trace.loss.iloc[0]
    assert lh.RunRecord(tmp_path / "r").status()["status"] == "complete"
    assert len(lh.load_runs(tmp_path)) == len(res.metrics)
    with pytest.raises(ValueError, match=r"kernel returned shape \(9, 8\)"):
        lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=1, kernel=lambda a, b: torch.zeros(9, 8))
    def bad(kind):  # kernels that are none: the steps would not be the kernel regime of any network
        def k(a, b):
            K = infinite_ntk(a, b, like=net)
            return {"nan": K * float("nan"), "negative": -K, "asymmetric": K + torch.triu(torch.ones_like(K), 1)}[kind]
        return k

    for kind, match in (("nan", "non-finite"), ("negative", "positive semi-definite"),
                        ("asymmetric", "symmetric")):
        with pytest.raises(ValueError, match=match):
            lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=1, kernel=bad(kind))
    zero = lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=3, kernel=lambda a, b: torch.zeros(len(a), len(b)))
    assert zero.status == "complete" and zero.trace.loss.nunique() == 1  # the zero kernel is one: nothing moves
    with pytest.raises(TypeError, match="kernel must be a function"):  # a Gram matrix, not a function
        lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=1, kernel=torch.zeros(9, 9))
    with pytest.raises(ValueError, match="lr"):
        lh.kernel_regime(net, train, loss="mse", lr=float("nan"), steps=1)


def test_it_runs_on_the_engine_statuses_and_all(gen, tmp_path):
    """A step too large diverges and says so, in the result and the record, as train does; a probe that reaches
    for the network instead of the outputs is refused."""
    train = data(gen, 9, 3)
    net = lh.seeded(lambda: lh.MLP([3, 16, 1]).double(), 0)
    res = lh.kernel_regime(net, train, loss="mse", lr=1e3, steps=200,
                           record=lh.RunRecord(tmp_path / "r").start({"regime": "kernel"}))
    assert res.status == "diverged" and res.steps < 200 and "non-finite" in res.reason
    assert lh.RunRecord(tmp_path / "r").status()["status"] == "diverged"
    probe = lh.LinearityProbe(train.x[:4])
    with pytest.raises(TypeError, match="example indices"):
        lh.kernel_regime(net, train, loss="mse", lr=0.1, steps=3, probes=(lh.loss_probe, probe))


def test_the_function_space_model_has_the_kernel_value_and_the_output_gradient(gen):
    """The model kernel_regime trains (float64): outputs f0 + K gamma on any indices into its bank, and the gradient
    d(w . out)/d gamma = w scattered onto the training rows (so GD on gamma is GD in function space), for a split's
    block (views), a block across the training boundary and gathered indices alike."""
    from lazyhasty.dynamics.kernel import _KernelMachine

    M, n, C = 9, 5, 2
    m = _KernelMachine(torch.randn(M, C, generator=gen, dtype=torch.float64),
                       torch.randn(M, C, n, C, generator=gen, dtype=torch.float64), (C,), 1.0)
    with torch.no_grad():
        m.gamma.copy_(torch.randn(n, C, generator=gen, dtype=torch.float64))
    for idx in (torch.arange(0, 5), torch.arange(5, 9), torch.arange(3, 7), torch.tensor([0, 2, 7, 2])):
        out = m(idx)
        np.testing.assert_allclose(out.detach(), m.f0[idx] + torch.einsum("icjd,jd->ic", m.K[idx], m.gamma.detach()),
                                   rtol=1e-14, atol=1e-14)
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        expected = torch.zeros(n, C, dtype=torch.float64)
        for r, i in enumerate(idx.tolist()):
            if i < n:
                expected[i] += w[r]
        if out.requires_grad:
            (grad,) = torch.autograd.grad((out * w).sum(), m.gamma)
            assert torch.equal(grad, expected)
        else:  # no training row among them
            assert not expected.any()
    with pytest.raises(TypeError, match="example indices"):
        m(torch.zeros(3, 2))
