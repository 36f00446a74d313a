"""NTK engine and linearity metrics against a plain reference (per-example backward passes, J J^T), float64."""

import math

import pytest
import torch
from torch import nn

from conftest import small_mlp
from lazyhasty import (
    CNN,
    GD,
    AlphaScaled,
    LinearityProbe,
    Linearized,
    Split,
    Stop,
    ntk_gram,
    parameter_distance_probe,
    same_init,
    seeded,
    train,
)
from lazyhasty.metrics import (
    kernel_alignment,
    kernel_distance,
    kernel_target_alignment,
    parameter_distance,
    representation_alignment,
    sign_similarity,
)
from lazyhasty.metrics.alignment import center


def reference_jacobian(model, x):
    """(n, C, P) by one backward pass per example and output: the textbook construction."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        f = model(x[i : i + 1]).reshape(-1)
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(fc, params, retain_graph=True)])
                                 for fc in f]))
    return torch.stack(rows)


def reference_ntk(model, x1, x2):
    J1, J2 = reference_jacobian(model, x1), reference_jacobian(model, x2)
    return torch.einsum("icp,jdp->icjd", J1, J2)


def layouts(K_full):
    return {"full": K_full, "trace": torch.einsum("icjc->ij", K_full), "diagonal": torch.einsum("icjc->ijc", K_full)}


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("outputs_dim", [1, 10])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_ntk_methods_equal_reference(gen, outputs_dim, bias, parametrization, method):
    model = small_mlp(widths=(5, 12, 9, outputs_dim), activation="relu", bias=bias, parametrization=parametrization)
    x1 = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    x2 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    ref = layouts(reference_ntk(model, x1, x2))
    ref_sym = layouts(reference_ntk(model, x1, x1))
    for outputs in ("full", "trace", "diagonal"):
        K = ntk_gram(model, x1, x2, outputs=outputs, method=method, block=3)
        assert K.shape == ref[outputs].shape
        assert rel(K, ref[outputs]) < 1e-10
        assert rel(ntk_gram(model, x1, outputs=outputs, method=method, block=5), ref_sym[outputs]) < 1e-10


def test_layouts_are_consistent(gen):
    model = small_mlp(widths=(4, 10, 3))
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    full = ntk_gram(model, x)
    torch.testing.assert_close(ntk_gram(model, x, outputs="trace"), torch.einsum("icjc->ij", full))
    torch.testing.assert_close(ntk_gram(model, x, outputs="diagonal"), torch.einsum("icjc->ijc", full))
    assert torch.allclose(full, full.permute(2, 3, 0, 1))  # symmetric


def test_structured_handles_convolutions_and_shared_layers_exactly(gen):
    cnn = seeded(lambda: CNN(in_channels=1, num_outputs=2, width=3, depth=2).double(), 0)
    xc = torch.randn(3, 1, 6, 6, generator=gen, dtype=torch.float64)
    assert rel(ntk_gram(cnn, xc), reference_ntk(cnn, xc, xc)) < 1e-10

    class Shared(nn.Module):  # the same Linear used twice: structured factors would be wrong
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(3, 6)
            self.mid = nn.Linear(6, 6)
            self.out = nn.Linear(6, 1)

        def forward(self, x):
            return self.out(torch.tanh(self.mid(torch.tanh(self.mid(torch.tanh(self.inp(x)))))))

    net = seeded(lambda: Shared().double(), 0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    assert rel(ntk_gram(net, x), reference_ntk(net, x, x)) < 1e-10
    x2 = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    for outputs, ref in layouts(reference_ntk(cnn, x2, xc)).items():  # blocks of 2 across 3 and 2 examples
        assert rel(ntk_gram(cnn, x2, xc, outputs=outputs, method="structured", block=2), ref) < 1e-10
        assert rel(ntk_gram(cnn, xc, outputs=outputs, block=2), layouts(reference_ntk(cnn, xc, xc))[outputs]) < 1e-10


def test_per_token_linear_layers_sum_over_token_pairs(gen):
    """nn.Linear on (n, T, d) shares its weights over tokens: the rule for one input row per example would return a
    (nT, nT) kernel. The structured path sums the per-example gradient over tokens, whatever the output shape."""

    class PerToken(nn.Module):  # (n, T, d) -> per-token MLP -> mean over tokens -> read-out
        def __init__(self, pool: bool):
            super().__init__()
            self.tok, self.out, self.pool = nn.Linear(3, 5), nn.Linear(5, 2), pool

        def forward(self, x):
            h = torch.tanh(self.tok(x))
            return self.out(h.mean(1)) if self.pool else self.out(h).flatten(1)  # (n, 2) or (n, T * 2)

    for pool in (True, False):
        net = seeded(lambda pool=pool: PerToken(pool).double(), 0)
        x1 = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
        x2 = torch.randn(3, 6, 3, generator=gen, dtype=torch.float64)
        for outputs, ref in layouts(reference_ntk(net, x1, x2)).items():
            K = ntk_gram(net, x1, x2, outputs=outputs)
            assert K.shape == ref.shape and rel(K, ref) < 1e-10, (pool, outputs)


def test_regime_kernels(gen):
    base = small_mlp(widths=(3, 8, 2))
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    K_base = ntk_gram(base, x)
    torch.testing.assert_close(ntk_gram(AlphaScaled(same_init(base), 4.0), x), 16.0 * K_base)
    lin = Linearized(same_init(base))
    with torch.no_grad():
        for p in lin.model.parameters():
            p.add_(0.5)
    torch.testing.assert_close(ntk_gram(lin, x), K_base)  # Linearized: always the kernel at theta0
    assert rel(ntk_gram(lin.model, x), K_base) > 1e-3  # ... though the network itself moved
    torch.testing.assert_close(ntk_gram(lin.model, x, params=lin.params0()), K_base)


def test_alignment_properties(gen):
    A = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    B = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    K1, K2 = A @ A.T, B @ B.T
    assert kernel_alignment(K1, K1) == pytest.approx(1.0, abs=1e-14)
    assert kernel_alignment(3.0 * K1, 0.2 * K2) == pytest.approx(kernel_alignment(K1, K2), rel=1e-13)
    assert kernel_alignment(K1, K2) == pytest.approx(float((K1 * K2).sum() / (K1.norm() * K2.norm())), rel=1e-13)
    shifted = A + torch.randn(1, 5, generator=gen, dtype=torch.float64)  # the same constant added to every example
    Ks = shifted @ shifted.T
    assert kernel_alignment(Ks, K2, centered=True) == pytest.approx(kernel_alignment(K1, K2, centered=True), rel=1e-12)
    assert kernel_alignment(Ks, K2) != pytest.approx(kernel_alignment(K1, K2), rel=1e-3)
    assert math.isnan(kernel_alignment(K1, torch.zeros_like(K1)))  # undefined (a dead representation), not a crash
    # the same holds per output for the full layout (n, C, n, C): features (n, C, p) shifted by a constant per output
    F = torch.randn(6, 2, 4, generator=gen, dtype=torch.float64)
    Fs = F + torch.randn(1, 2, 4, generator=gen, dtype=torch.float64)
    G = torch.randn(6, 2, 4, generator=gen, dtype=torch.float64)
    full = lambda Z: torch.einsum("icp,jdp->icjd", Z, Z)  # noqa: E731
    assert kernel_alignment(full(Fs), full(G), centered=True) == pytest.approx(
        kernel_alignment(full(F), full(G), centered=True), rel=1e-12)
    H = torch.eye(8, dtype=torch.float64) - 1 / 8
    torch.testing.assert_close(center(K1), H @ K1 @ H)


def test_kernel_distance_and_target_alignment(gen):
    A = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    K0 = A @ A.T
    assert kernel_distance(K0, K0) == 0.0
    assert kernel_distance(2 * K0, K0) == pytest.approx(1.0)
    y = torch.tensor([1.0, -1, 1, 1, -1, -1], dtype=torch.float64)
    yc = y - y.mean()
    assert kernel_target_alignment(K0, y) == pytest.approx(float(yc @ K0 @ yc / (K0.norm() * (yc @ yc))), rel=1e-13)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    Y = torch.nn.functional.one_hot(labels, 3).double()
    Y = Y - Y.mean(0)
    Kd = torch.stack([K0, 2 * K0, K0 + 1], dim=2)  # diagonal layout (n, n, C)
    expected = sum(float(Y[:, c] @ Kd[:, :, c] @ Y[:, c]) for c in range(3)) / (float(Kd.norm()) * float((Y**2).sum()))
    assert kernel_target_alignment(Kd, labels) == pytest.approx(expected, rel=1e-13)
    # y y^T itself is perfectly aligned with y
    assert kernel_target_alignment(torch.outer(yc, yc), y) == pytest.approx(1.0, rel=1e-13)


def test_sign_similarity_and_representation_alignment(gen):
    base = small_mlp(widths=(3, 32, 32, 1), activation="relu")
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    model = AlphaScaled(same_init(base), 1.0)
    assert sign_similarity(model, model.params0(), x) == 1.0
    assert sign_similarity(model, base, x) == 1.0
    assert representation_alignment(model, model.params0(), x) == pytest.approx(1.0, abs=1e-14)
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    s = sign_similarity(model, model.params0(), x)
    assert 0.3 < s < 1.0
    # by hand: pre-activations of both hidden layers
    def pre(m):
        z1 = m.layers[0](x)
        return [z1, m.layers[1](torch.relu(z1))]
    with torch.no_grad():
        now, then = pre(model.model), pre(base)
    manual = sum(int(((a > 0) == (b > 0)).sum()) for a, b in zip(now, then)) / sum(a.numel() for a in now)
    assert s == manual
    assert representation_alignment(model, model.params0(), x) < 0.999
    with pytest.raises(ValueError, match="no ReLU"):
        sign_similarity(small_mlp(activation="tanh"), small_mlp(activation="tanh"), x)


def test_parameter_distance(gen):
    base = small_mlp(widths=(3, 4, 1))
    p0 = {k: v.detach().clone() for k, v in base.named_parameters()}
    with torch.no_grad():
        base.layers[1].weight.mul_(2.0)
    d = parameter_distance(base, p0)
    w = p0["layers.1.weight"]
    l1 = math.sqrt(float((w**2).sum()) / (float((w**2).sum()) + float((p0["layers.1.bias"] ** 2).sum())))
    assert d["layers.1"] == pytest.approx(l1, rel=1e-13) and d["layers.0"] == 0.0
    total = math.sqrt(float((w**2).sum()) / sum(float((v**2).sum()) for v in p0.values()))
    assert d["total"] == pytest.approx(total, rel=1e-13)


def test_linearity_probe_in_training(gen):
    base = small_mlp(widths=(2, 32, 32, 1), activation="relu")
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    data = Split(x, torch.sign(x[:, 0] * x[:, 1]))
    res = {}
    for name, model in {"1": AlphaScaled(same_init(base), 1.0), "lin": Linearized(same_init(base))}.items():
        r = train(model, data, loss="bce", stepper=GD(2.0), stop=Stop(max_steps=150), probes=(LinearityProbe(x[:20]),))
        m = r.metrics
        res[name] = m[m.step == m.step.max()].set_index("metric")["value"]
        first = m[m.step == 0].set_index("metric")["value"]
        assert first["ntk_alignment"] == pytest.approx(1.0, abs=1e-6) and first["sign_similarity"] == 1.0
    assert res["lin"]["ntk_alignment"] == pytest.approx(1.0, abs=1e-6)  # the linearized model's kernel never moves
    assert res["1"]["ntk_alignment"] < 0.99 and res["1"]["ntk_distance"] > 0.05
    assert res["1"]["sign_similarity"] < 1.0


def test_the_linearity_probe_measures_from_each_calls_theta0_as_computed_by_hand(gen):
    """A plain network trained twice with one probe: the second call starts from a new theta0 (where the first
    stopped; its parameter distance starts at 0), and every linearity measure is taken from it (K0 included, which
    the probe once kept from the first call). Each value equals a direct float64 computation: the NTK from
    per-example gradients, the pre-activations' signs and the last hidden layer's Gram by hand."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 1)).double()
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    data, xp = Split(x, torch.sign(x[:, 0] * x[:, 1])), x[:12]
    probe = LinearityProbe(xp)

    def by_hand(theta):
        def f(p, xi):
            return torch.func.functional_call(net, p, (xi[None],))[0, 0]

        J = torch.func.vmap(torch.func.grad(f), in_dims=(None, 0))(theta, xp)
        J = torch.cat([J[k].flatten(1) for k in theta], 1)
        z1 = xp @ theta["0.weight"].T + theta["0.bias"]
        z2 = torch.relu(z1) @ theta["2.weight"].T + theta["2.bias"]
        return J @ J.T, [z1 > 0, z2 > 0], torch.relu(z2)

    def align(A, B):
        return float((A * B).sum() / (A.norm() * B.norm()))

    for _ in range(2):
        theta0 = {k: v.detach().clone() for k, v in net.named_parameters()}
        m = train(net, data, loss="bce", stepper=GD(2.0), stop=Stop(max_steps=60), probes=(parameter_distance_probe,
                  probe), progress=False).metrics
        first, last = (m[m.step == s].set_index("metric")["value"] for s in (0, m.step.max()))
        assert first["param_distance"] == 0 and first["sign_similarity"] == 1.0
        assert first["ntk_alignment"] == pytest.approx(1.0, abs=1e-12) and first["ntk_distance"] < 1e-12
        K0, s0, R0 = by_hand(theta0)
        K, s, R = by_hand({k: v.detach() for k, v in net.named_parameters()})
        assert last["ntk_alignment"] == pytest.approx(align(K, K0), rel=1e-10) and last["ntk_alignment"] < 0.999
        assert last["ntk_distance"] == pytest.approx(float((K - K0).norm() / K0.norm()), rel=1e-10)
        assert last["sign_similarity"] == sum(int((a == b).sum()) for a, b in zip(s, s0)) / sum(a.numel() for a in s)
        assert last["representation_alignment"] == pytest.approx(align(R @ R.T, R0 @ R0.T), rel=1e-10)


def test_sign_similarity_refuses_relus_that_ran_differently_at_theta0():
    """A network that applies its ReLU a number of times that depends on its parameters: the signs at theta0 and now
    do not pair up one to one, so the measure is refused instead of comparing the first calls only."""
    from lazyhasty.metrics.linearity import sign_similarity

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.relu = torch.nn.Linear(3, 3), torch.nn.ReLU()

        def forward(self, x):
            h = self.relu(self.lin(x))
            return self.relu(h - 1) if self.lin.bias.sum() > 0 else h

    torch.manual_seed(0)
    net, x = Branchy(), torch.randn(5, 3, dtype=torch.float64)
    net.double()
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        net.lin.bias.fill_(1.0)
    p0["lin.bias"] = torch.full((3,), -1.0, dtype=torch.float64)
    assert sign_similarity(net, {k: v.detach().clone() for k, v in net.named_parameters()}, x) == 1.0
    with pytest.raises(ValueError, match="ran differently at theta0"):
        sign_similarity(net, p0, x)


def test_a_training_process_never_imports_sympy_or_scipy_stats():
    """torch.autograd.grad with tensor grad_outputs imports sympy (0.35 s of every process that trains): the
    structured NTK and the training gradients take scalar backward passes instead. Nor does the claims module
    import scipy.stats (0.6 s) before a bootstrap over seeds needs it."""
    import subprocess
    import sys

    code = ("import sys, torch, lazyhasty as lh\n"
            "data = lh.Split(torch.randn(16, 2), torch.arange(16) % 3)\n"
            "lh.train(lh.AlphaScaled(lh.MLP([2, 8, 3]), 2.0), data, loss='cross_entropy', stepper=lh.GD(0.1),\n"
            "         stop=lh.Stop(max_steps=3), probes=(lh.loss_probe, lh.LinearityProbe(data.x[:4])),\n"
            "         progress=False)\n"
            "import lazyhasty.claims\n"
            "print(lh.ntk_gram(lh.MLP([2, 8, 3]), data.x).shape, 'sympy' in sys.modules, 'scipy.stats' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[-2:] == ["False", "False"], r.stdout + r.stderr[-2000:]
