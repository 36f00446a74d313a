"""Any network: a zoo of architectures through the NTK rules, the regime wrappers, ensembles, training and the probes.

The structured NTK is checked against a reference written here with torch.func.jacrev on one example at a time
(float64, every output layout); batch norm's state policy against the lazy limit (gap ~ 1/alpha).
"""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import tree_map

from lazyhasty import (
    CNN,
    GD,
    MLP,
    SGD,
    AlphaScaled,
    Ensemble,
    LinearityProbe,
    Linearized,
    ResNet18,
    Schedule,
    Split,
    Stop,
    ntk_gram,
    same_init,
    seeded,
    train,
)
from lazyhasty.metrics import kernel_alignment
from lazyhasty.models.regimes import UnsupportedModule

T, D = 4, 6  # tokens, model width of the sequence models


class PerToken(nn.Module):
    """A per-token MLP on (n, T, d), mean over tokens, read-out."""

    def __init__(self):
        super().__init__()
        self.tok1, self.tok2, self.out = nn.Linear(3, 8), nn.Linear(8, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.out(torch.relu(self.tok2(torch.tanh(self.tok1(x)))).mean(1))


class EmbedNorm(nn.Module):
    """Token ids (n, T) -> Embedding -> LayerNorm -> per-token Linear -> mean -> read-out."""

    def __init__(self):
        super().__init__()
        self.emb, self.norm = nn.Embedding(11, D), nn.LayerNorm(D)
        self.tok, self.out = nn.Linear(D, D), nn.Linear(D, 3)

    def forward(self, ids):
        return self.out(torch.relu(self.tok(self.norm(self.emb(ids)))).mean(1))


class Encoder(nn.Module):
    """One TransformerEncoderLayer on (n, T, d) (batch_first) or (T, n, d), mean over tokens, read-out."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.layer = nn.TransformerEncoderLayer(D, 2, 12, dropout=0.0, batch_first=batch_first)
        self.out = nn.Linear(D, 2)

    def forward(self, x):
        if not self.batch_first:
            return self.out(self.layer(x.transpose(0, 1)).mean(0))
        return self.out(self.layer(x).mean(1))


class Attention(nn.Module):
    """nn.MultiheadAttention (self-attention), then a per-token Linear on its output, mean, read-out."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.attn = nn.MultiheadAttention(D, 2, batch_first=batch_first)
        self.out = nn.Linear(D, 1)

    def forward(self, x):
        x = x if self.batch_first else x.transpose(0, 1)
        h = self.attn(x, x, x, need_weights=False)[0]
        return self.out(h.mean(1 if self.batch_first else 0))


class DictInput(nn.Module):
    """{"input_ids": (n, T) long, "mask": (n, T) float, "extra": (n, 2)} -> masked mean of embeddings -> MLP."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, D)
        self.mix = nn.Linear(D + 2, 7)
        self.out = nn.Linear(7, 2)

    def forward(self, batch):
        e = self.emb(batch["input_ids"]) * batch["mask"][..., None]
        h = e.sum(1) / batch["mask"].sum(1, keepdim=True).clamp_min(1)
        return self.out(torch.relu(self.mix(torch.cat([h, batch["extra"]], 1))))


class Recurrent(nn.Module):
    """An LSTM or GRU over (n, T, 3), read-out of the last hidden state: fused kernels torch.func cannot transform."""

    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.rnn, self.out = cell(3, 5, batch_first=True), nn.Linear(5, 2)

    def forward(self, x):
        return self.out(self.rnn(x)[0][:, -1])


def bn_cnn(act=nn.ReLU):
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), act(), nn.Conv2d(3, 4, 3, stride=2),
                         nn.BatchNorm2d(4), act(), nn.Flatten(), nn.Linear(4 * 2 * 2, 2))


def _inputs(name, n, g):
    if name in ("mlp",):
        return torch.randn(n, 5, generator=g, dtype=torch.float64)
    if name in ("cnn", "cnn_bn"):
        return torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    if name == "resnet18":
        return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64)
    if name == "per_token":
        return torch.randn(n, T, 3, generator=g, dtype=torch.float64)
    if name == "embed_norm":
        return torch.randint(0, 11, (n, T), generator=g)
    if name == "dict":
        mask = (torch.rand(n, T, generator=g) > 0.3).double()
        return {"input_ids": torch.randint(0, 11, (n, T), generator=g), "mask": mask,
                "extra": torch.randn(n, 2, generator=g, dtype=torch.float64)}
    return torch.randn(n, T, D, generator=g, dtype=torch.float64)  # encoder / attention


def _bn_stats(net):  # give batch norm non-trivial running statistics, as a trained network has
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


ZOO = {
    "mlp": lambda: MLP([5, 7, 6, 3], activation="tanh"),
    "cnn": lambda: CNN(in_channels=1, num_outputs=2, width=3, depth=2),
    "cnn_bn": lambda: _bn_stats(bn_cnn()),
    "per_token": PerToken,
    "embed_norm": EmbedNorm,
    "encoder_bf": lambda: Encoder(True),
    "encoder_sf": lambda: Encoder(False),
    "attention_bf": lambda: Attention(True),
    "attention_sf": lambda: Attention(False),
    "resnet18": lambda: _bn_stats(ResNet18(num_outputs=2, width=2)),
    "dict": DictInput,
}


def make(name):
    return seeded(lambda: ZOO[name]().double(), 0)


def reference_ntk(net, x1, x2):
    """(n1, C, n2, C) from torch.func.jacrev of the network on one example at a time, in eval mode (batch norm on
    its running statistics), contracted over all parameters."""
    net.eval()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = dict(net.named_buffers())
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused kernels have no batching rule for jacrev
    try:
        with sdpa_kernel(SDPBackend.MATH):
            return _reference_ntk(net, params, buffers, x1, x2)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _reference_ntk(net, params, buffers, x1, x2):

    def jac(x):
        rows = []
        n = len(torch.utils._pytree.tree_leaves(x)[0])
        for i in range(n):
            xi = tree_map(lambda t, i=i: t[i : i + 1], x)
            J = jacrev(lambda p, xi=xi: functional_call(net, (p, buffers), (xi,)).reshape(-1))(params)
            rows.append(torch.cat([J[k].reshape(J[k].shape[0], -1) for k in params], 1))
        return torch.stack(rows)  # (n, C, P)

    return torch.einsum("icp,jdp->icjd", jac(x1), jac(x2))


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", list(ZOO))
def test_structured_ntk_equals_jacrev_reference(name, gen):
    net = make(name).train()  # train mode: batch norm must still use its running statistics
    x1, x2 = _inputs(name, 5, gen), _inputs(name, 3, gen)
    with torch.no_grad():
        ref_full = reference_ntk(net, x1, x2)
        ref_sym = reference_ntk(net, x1, x1)
    net.train()
    ref = {"full": ref_full, "trace": torch.einsum("icjc->ij", ref_full),
           "diagonal": torch.einsum("icjc->ijc", ref_full)}
    for outputs, K_ref in ref.items():
        for method in ("structured", "jacobian"):
            K = ntk_gram(net, x1, x2, outputs=outputs, method=method, block=2)
            assert K.shape == K_ref.shape, (outputs, method)
            assert rel(K, K_ref) < 1e-10, (outputs, method, rel(K, K_ref))
    assert rel(ntk_gram(net, x1, block=3), ref_sym) < 1e-10
    assert all(not m.training or not isinstance(m, nn.BatchNorm2d) or int(m.num_batches_tracked) == 0
               for m in net.modules())  # nothing updated the statistics


@pytest.mark.parametrize("name", list(ZOO))
def test_end_to_end(name, gen):
    """AlphaScaled, Linearized, Ensemble, train with the LinearityProbe and ntk_gram on every architecture."""
    base = make(name)
    x, xp = _inputs(name, 8, gen), _inputs(name, 4, gen)
    C = base.eval()(x).shape[1]
    base.train()
    y = torch.randn(8, C, generator=gen, dtype=torch.float64)
    data = Split(x, y)
    buffers0 = {k: v.clone() for k, v in base.named_buffers()}

    lin = Linearized(same_init(base))
    out0 = lin(x)
    assert (out0 - lin(x)).abs().max() == 0  # the cached linearisation gives the same numbers
    res = train(lin, data, loss="mse", stepper=GD(0.05), stop=Stop(max_steps=3),
                probes=(LinearityProbe(xp),), schedule=Schedule(points_per_decade=1, milestone_ratio=None))
    m = res.metrics
    ka = m[m.metric == "ntk_alignment"].value
    assert len(ka) >= 2 and (ka - 1).abs().max() < 1e-9  # a linearized model's kernel never moves
    assert res.status == "complete"

    members = [AlphaScaled(same_init(base), a) for a in (1.0, 100.0)]
    ens = Ensemble(members)
    res = train(ens, data, loss="mse", stepper=SGD(0.05, batch_size=4), stop=Stop(max_steps=3),
                probes=(LinearityProbe(xp),), schedule=Schedule(points_per_decade=1, milestone_ratio=None),
                progress=False)
    assert [r.status for r in res] == ["complete", "complete"]
    single = AlphaScaled(same_init(base), 100.0)
    train(single, data, loss="mse", stepper=SGD(0.05, batch_size=4), stop=Stop(max_steps=3), probes=(),
          schedule=Schedule(points_per_decade=0, milestone_ratio=None))
    with torch.no_grad():
        assert (ens.member(1)(x) - single(x)).abs().max() < 1e-10  # member k is the single run
    for k, b in ens.member(1).model.named_buffers():
        assert torch.equal(b, buffers0[k]), k  # statistics frozen

    K = ntk_gram(single, xp, outputs="trace")
    K0 = ntk_gram(base, xp, outputs="trace")
    assert K.shape == (4, 4) and math.isfinite(kernel_alignment(K, K0))


def test_batch_norm_lazy_limit_gap_shrinks_like_one_over_alpha(gen):
    """AlphaScaled(model, alpha) trained in train mode on minibatches approaches Linearized(model) trained on the
    same batches: the gap in the outputs (eval mode and train mode alike) falls ~ 1/alpha over alpha = 10..1000.

    tanh, not ReLU: with ReLU, sign flips at alpha = 10 and 100 add to the gap, and its ratios over the same alphas
    read 4.9 and 97 (a kink effect, not the batch-norm policy's)."""
    base = seeded(lambda: _bn_stats(bn_cnn(nn.Tanh)).double(), 0)
    x = torch.randn(32, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    xt = torch.randn(16, 1, 6, 6, generator=gen, dtype=torch.float64)
    data = Split(x, y)

    def fit(model):
        train(model, data, loss="mse", stepper=SGD(0.05, batch_size=8), stop=Stop(max_steps=40), probes=(),
              schedule=Schedule(points_per_decade=0, milestone_ratio=None), data_seed=3)
        with torch.no_grad():
            return model.eval()(xt), model.train()(xt)

    lin_eval, lin_train = fit(Linearized(same_init(base)))
    with torch.no_grad():
        moved = float((lin_eval - base.eval()(xt)).norm())
    assert torch.equal(lin_eval, lin_train)
    gaps = []
    for alpha in (10.0, 100.0, 1000.0):
        wrapped = AlphaScaled(same_init(base), alpha)
        f_eval, f_train = fit(wrapped)
        assert torch.equal(f_eval, f_train)  # one function in both modes
        for k, b in wrapped.model.named_buffers():
            assert torch.equal(b, dict(base.named_buffers())[k])
        gaps.append(float((f_eval - lin_eval).norm()) / moved)
    assert gaps[0] < 0.5  # the linearised run moved: the comparison is not trivially small
    for a, b in zip(gaps, gaps[1:]):
        assert 7 < a / b < 14, gaps  # ~ 1/alpha


def test_unsupported_state_is_a_clear_error(gen):
    coupled = seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False),
                                           nn.Linear(4, 1)).double(), 0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="'1'.*track_running_stats=True"):
        ntk_gram(coupled, x)
    dropout = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match="'1' is dropout in train mode.*model.eval"):
        ntk_gram(dropout, x)
    assert ntk_gram(dropout.eval(), x).shape == (5, 1, 5, 1)
    for x1, x2 in ((x[:0], None), (x, x[:0])):  # no examples: a clear error, not torch's reshape message
        with pytest.raises(ValueError, match="at least one example"):
            ntk_gram(dropout, x1, x2)

    class Counter(nn.Module):  # a module with state lazyhasty does not know
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.lin(x)

    with pytest.raises(RuntimeError, match="buffer 'calls' of a Counter module"):
        AlphaScaled(seeded(lambda: Counter().double(), 0), 10.0)(x)
    xs = torch.randn(3, 4, 3, generator=gen)
    with pytest.raises(UnsupportedModule, match="module 'rnn' \\(LSTM\\)"):
        Linearized(Recurrent())(xs)
    with pytest.raises(UnsupportedModule, match="module 'rnn' \\(GRU\\)"):
        ntk_gram(Recurrent(nn.GRU), xs)
    plain = [seeded(lambda: bn_cnn().double(), s) for s in (0, 1)]
    xi = torch.randn(4, 1, 6, 6, generator=gen, dtype=torch.float64)
    with pytest.raises(ValueError, match="AlphaScaled\\(member, 1.0\\)"):
        Ensemble(plain)(xi)
    assert Ensemble(plain).eval()(xi).shape == (2, 4, 2)  # evaluating them is fine


def test_dict_inputs_everywhere(gen):
    """Split, minibatch training, the Linearized cache and ensembles take a dict of tensors."""
    base = make("dict")
    x = _inputs("dict", 10, gen)
    data = Split(x, torch.randn(10, 2, generator=gen, dtype=torch.float64))
    assert len(data) == 10 and data.to(dtype=torch.float32).x["input_ids"].dtype == torch.int64
    with pytest.raises(ValueError, match="dimension 0"):
        Split({"a": torch.zeros(3, 2), "b": torch.zeros(4)}, torch.zeros(3))
    with pytest.raises(ValueError, match="dimension 0"):
        ntk_gram(base, {**x, "extra": x["extra"][:4]})
    lin = Linearized(same_init(base))
    lin(x)
    lin(x)
    entry = lin._cache.entry((x,), {}, lin.training)
    assert entry is not None and "jvp_fn" in entry  # the second call reused the linearisation
    x2 = {k: v.clone() for k, v in x.items()}
    with torch.no_grad():
        torch.testing.assert_close(lin(x2), lin(x), rtol=0, atol=1e-12)
    ens = Ensemble([Linearized(same_init(base)), Linearized(same_init(base))])
    res = train(ens, data, loss="mse", stepper=SGD(0.1, batch_size=4), stop=Stop(max_steps=5), probes=(),
                schedule=Schedule(points_per_decade=0, milestone_ratio=None), progress=False)
    single = Linearized(same_init(base))
    done = train(single, data, loss="mse", stepper=SGD(0.1, batch_size=4), stop=Stop(max_steps=5), probes=(),
                 schedule=Schedule(points_per_decade=0, milestone_ratio=None))
    assert [r.status for r in res] == ["complete"] * 2 and done.status == "complete"
    with torch.no_grad():
        assert (ens.member(0)(x) - single(x)).abs().max() < 1e-10
        assert (ens.member(0)(x) - lin(x)).abs().max() > 1e-6  # it trained


def test_unknown_or_modified_layers_go_to_the_generic_rule(gen):
    """A Linear subclass with its own forward, a Linear whose output is edited in place, and a Conv2d with
    groups = 2 are never given a structured rule: the kernel still equals the reference."""

    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x) + 0.1 * x.sum(-1, keepdim=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, groups=2)
            self.a, self.b, self.out = Doubled(16, 6), nn.Linear(6, 5), nn.Linear(5, 2)

        def forward(self, x):
            h = self.a(torch.tanh(self.conv(x)).flatten(1))
            return self.out(torch.relu_(self.b(h)))  # in place on b's output

    net = seeded(lambda: Net().double(), 0)
    x1 = torch.randn(4, 2, 4, 4, generator=gen, dtype=torch.float64)
    x2 = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = reference_ntk(net, x1, x2)
    for outputs, K_ref in {"full": ref, "trace": torch.einsum("icjc->ij", ref)}.items():
        assert rel(ntk_gram(net, x1, x2, outputs=outputs), K_ref) < 1e-10


def test_factored_and_dense_gradients_contract_alike(gen):
    """The factored per-example gradients (w, A, B) of a shared layer give the same kernel blocks as the dense
    (b, C, P) tensors they stand for, alone and against a dense item."""
    from lazyhasty.metrics.ntk import _dense, _pair

    def item(n):
        return (torch.randn(3, 5, generator=gen, dtype=torch.float64), torch.randn(n, 5, 4, generator=gen,
                dtype=torch.float64), torch.randn(n, 5, generator=gen, dtype=torch.float64))

    a, b = item(4), item(6)
    dense_b = _dense(b)
    for outputs in ("full", "trace", "diagonal"):
        want = _pair(_dense(a), dense_b, outputs)
        assert rel(_pair(a, b, outputs), want) < 1e-12
        assert rel(_pair(a, dense_b, outputs), want) < 1e-12
    full = torch.einsum("icp,jdp->icjd", _dense(a), dense_b)
    assert rel(_pair(a, b, "trace"), torch.einsum("icjc->ij", full)) < 1e-12


def test_tied_and_reused_weights_go_to_the_generic_rule(gen):
    """A Linear whose weight is tied to another Linear, or also used functionally elsewhere, contributes more than its
    own call: the structured rule must not see only the call."""

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.b.weight = self.a.weight

        def forward(self, x):
            h = torch.tanh(self.a(x))
            return self.out(torch.tanh(self.b(h)) + h @ self.out.weight.T @ self.out.weight)

    net = seeded(lambda: Tied().double(), 0)
    x1, x2 = torch.randn(4, 4, generator=gen, dtype=torch.float64), torch.randn(3, 4, generator=gen,
                                                                                 dtype=torch.float64)
    with torch.no_grad():
        ref = reference_ntk(net, x1, x2)
    assert rel(ntk_gram(net, x1, x2), ref) < 1e-10


def test_compare_regimes_on_dict_inputs_and_batch_norm(gen):
    """compare_regimes takes dict inputs, and its input check leaves seed 0's batch-norm statistics as built."""
    from lazyhasty import compare_regimes
    from lazyhasty.compare import _check_inputs
    from lazyhasty.dynamics.losses import get_loss

    x = _inputs("dict", 12, gen)
    data = Split(x, torch.randint(0, 2, (12,), generator=gen))
    comp = compare_regimes(lambda: DictInput().double(), data, alphas=(1.0, 100.0), loss="cross_entropy",
                           stepper=GD(0.1),
                           stop=Stop(max_steps=4), seeds=(0, 1), probe_size=6, show_progress=False)
    table = comp.table
    assert len(table) and {"seed", "regime", "ntk_alignment", "representation_alignment"} <= set(table.columns)
    net = seeded(lambda: bn_cnn().double(), 0).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    xi = torch.randn(4, 1, 6, 6, generator=gen, dtype=torch.float64)
    _check_inputs(net, Split(xi, torch.randn(4, 2, dtype=torch.float64)), {}, get_loss("mse"))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_kernel_regime_of_a_batch_norm_network_equals_its_linearized_training(gen):
    """kernel_regime on a batch-norm CNN in train mode (statistics frozen, as in ntk_gram) equals training
    Linearized(model) by GD, float64; the network's statistics stay as built."""
    from lazyhasty import kernel_regime, loss_probe

    net = seeded(lambda: _bn_stats(bn_cnn(nn.Tanh)).double(), 0).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = Split(torch.randn(10, 1, 6, 6, generator=gen, dtype=torch.float64),
                 torch.randint(0, 2, (10,), generator=gen))
    ref = train(Linearized(same_init(net)), data, loss="cross_entropy", stepper=GD(0.3), stop=Stop(max_steps=30),
                probes=(loss_probe,))
    got = kernel_regime(net, data, loss="cross_entropy", lr=0.3, steps=30)
    torch.testing.assert_close(torch.tensor(got.trace.loss.to_numpy()), torch.tensor(ref.trace.loss.to_numpy()),
                               rtol=1e-8, atol=1e-14)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
