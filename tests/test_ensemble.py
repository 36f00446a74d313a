"""One engine: every member of an ensemble follows the single run with its seed (float64), for every regime and
stepper; freezing, divergence isolation, records; Linearized members against explicit Jacobians."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, jacrev

from lazyhasty import (
    GD,
    MLP,
    SGD,
    AlphaScaled,
    Ensemble,
    GradientFlow,
    Linearized,
    MomentumFlow,
    RunRecord,
    Schedule,
    Stop,
    seeded,
    train,
)
from lazyhasty.data import yinyang


def factory():
    return MLP([2, 16, 16, 1]).double()


@pytest.fixture
def data():
    return yinyang(50, seed=3, dtype=torch.float64)


SEEDS = [0, 1, 2]
KINDS = {
    "plain": lambda s, k: seeded(factory, s),
    "alpha": lambda s, k: AlphaScaled(seeded(factory, s), (0.5, 100.0, 0.5)[k]),
    "linearized": lambda s, k: Linearized(seeded(factory, s)),
}


def network(m):
    return m.model if isinstance(m, (AlphaScaled, Linearized)) else m


def assert_follows(member, single, theta0, tol=1e-10):
    """||theta_member - theta_single|| <= tol ||theta_single - theta0||: relative to how far training moved."""
    a = torch.cat([p.detach().flatten() for p in network(member).parameters()])
    b = torch.cat([p.detach().flatten() for p in network(single).parameters()])
    moved = float((b - theta0).norm())
    assert moved > 0
    assert float((a - b).norm()) <= tol * moved, (float((a - b).norm()), moved)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stepper", [GD(0.3), SGD(0.1, momentum=0.9, batch_size=16)], ids=["gd", "sgd-momentum"])
def test_members_follow_their_single_runs(data, kind, stepper):
    steps = 250
    ens = Ensemble([KINDS[kind](s, k) for k, s in enumerate(SEEDS)])
    results = train(ens, data, loss="bce", stepper=stepper, stop=Stop(max_steps=steps), data_seed=7)
    for k, s in enumerate(SEEDS):
        single = KINDS[kind](s, k)
        theta0 = torch.cat([p.detach().flatten() for p in network(single).parameters()])
        r = train(single, data, loss="bce", stepper=stepper, stop=Stop(max_steps=steps), data_seed=7)
        member = ens.member(k)
        assert type(member) is type(single)
        assert_follows(member, single, theta0)
        np.testing.assert_allclose(results[k].trace["loss"], r.trace["loss"], rtol=1e-10)
        assert results[k].steps == r.steps == steps and results[k].t == pytest.approx(r.t)
        m_ens, m_one = results[k].metrics, r.metrics
        assert (m_ens["step"].to_numpy() == m_one["step"].to_numpy()).all()
        np.testing.assert_allclose(m_ens["value"], m_one["value"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("flow", [GradientFlow(dt=0.5, max_dgrad=1e-3), MomentumFlow(tau=0.5, dt=0.5, max_dgrad=1e-3)],
                         ids=["gradient-flow", "momentum-flow"])
def test_adaptive_flow_members_take_their_single_runs_steps(data, flow):
    """Accept / reject decisions and dt are made per member: each member reproduces its single run's steps."""
    alphas = (0.5, 1.0, 30.0)
    ens = Ensemble([AlphaScaled(seeded(factory, s), a) for s, a in zip(SEEDS, alphas)])
    results = train(ens, data, loss="bce", stepper=flow, stop=Stop(max_steps=200), probes=())
    rejected = 0
    for k, (s, a) in enumerate(zip(SEEDS, alphas)):
        single = AlphaScaled(seeded(factory, s), a)
        theta0 = torch.cat([p.detach().flatten() for p in single.parameters()])
        r = train(single, data, loss="bce", stepper=flow, stop=Stop(max_steps=200), probes=())
        assert results[k].stepper_state == r.stepper_state  # same accepted / rejected counts, same last dt
        np.testing.assert_allclose(results[k].trace["dt"], r.trace["dt"], rtol=1e-12)
        np.testing.assert_allclose(results[k].trace["loss"], r.trace["loss"], rtol=1e-10)
        assert_follows(ens.member(k), single, theta0)
        rejected += r.stepper_state["rejected"]
    assert rejected > 0  # the test exercises rejections (dt = 0.5 is too large at first)


def test_stopped_members_are_frozen(data):
    """A member that reaches its target stops where the single run stops, also under momentum."""
    stepper, stop = SGD(0.2, momentum=0.9, batch_size=50), Stop(max_steps=3000, loss_below=0.45)
    ens = Ensemble([AlphaScaled(seeded(factory, 0), 1.0), AlphaScaled(seeded(factory, 0), 100.0)])
    fast, slow = train(ens, data, loss="bce", stepper=stepper, stop=stop, probes=())
    assert fast.converged and fast.steps < slow.steps  # alpha = 1 reaches the threshold first
    single = AlphaScaled(seeded(factory, 0), 1.0)
    theta0 = torch.cat([p.detach().flatten() for p in single.parameters()])
    r = train(single, data, loss="bce", stepper=stepper, stop=stop, probes=())
    assert r.steps == fast.steps
    assert_follows(ens.member(0), single, theta0)  # member 0 stayed exactly where it stopped
    assert len(fast.trace) == fast.steps + 1 and fast.trace["step"].max() == fast.steps


def test_one_diverging_member_leaves_the_others_alone(data):
    ens = Ensemble([AlphaScaled(seeded(factory, 0), 1.0), AlphaScaled(seeded(factory, 0), 1.0)])
    with torch.no_grad():
        ens.params[0][1, 0, 0] = float("inf")  # member 1 is broken from the start
    res = train(ens, data, loss="mse", stepper=GD(0.5), stop=Stop(max_steps=200), probes=())
    assert res[1].status == "diverged" and res[0].status == "complete" and res[0].steps == 200
    r = train(AlphaScaled(seeded(factory, 0), 1.0), data, loss="mse", stepper=GD(0.5), stop=Stop(max_steps=200),
              probes=())
    np.testing.assert_allclose(res[0].trace["loss"], r.trace["loss"], rtol=1e-10)


def test_ensemble_records_and_milestone_levels(data, tmp_path):
    ens = Ensemble([AlphaScaled(seeded(factory, k), 1.0) for k in range(3)])
    recs = [RunRecord(tmp_path / f"m{k}").start({"seed": k}) for k in range(3)]
    res = train(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=2000, loss_below=0.4),
                schedule=Schedule(levels=(0.6, 0.5, 0.4), points_per_decade=0), record=recs,
                run_id=[f"m{k}" for k in range(3)])
    for k, r in enumerate(res):
        ms = r.metrics.dropna(subset=["milestone"]).drop_duplicates("step")
        assert list(ms.milestone) == [1, 2, 3]
        for (step, m) in ms[["step", "milestone"]].itertuples(index=False):
            assert r.trace.loss[step] < (0.6, 0.5, 0.4)[m - 1] <= r.trace.loss[step - 1]
        st = json.loads((tmp_path / f"m{k}" / "status.json").read_text())
        assert st["status"] == "complete" and st["converged"] is True and st["ensemble_size"] == 3


def test_linearized_ensemble_against_explicit_jacobians(gen):
    """f_bar_k(x) = f(x; theta0_k) + J_k(x) (theta_k - theta0_k), J_k by jacrev, for every member (float64)."""
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    ens = Ensemble([Linearized(seeded(factory, s)) for s in SEEDS])
    with torch.no_grad():
        for p in ens.params:
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    for _ in range(2):  # the second call goes through the cached linearisation
        out = ens(x)  # (E, n, 1)
        for k, s in enumerate(SEEDS):
            net = seeded(factory, s)
            p0 = {n: p.detach() for n, p in net.named_parameters()}
            J = jacrev(lambda p, net=net: functional_call(net, p, (x,)))(p0)
            delta = {n: stacked[k] - p0[n] for n, stacked in zip(p0, ens.params)}
            ref = functional_call(net, p0, (x,)) + sum(J[n].reshape(20, 1, -1) @ delta[n].reshape(-1) for n in p0)
            torch.testing.assert_close(out[k], ref, rtol=1e-12, atol=1e-14)


def test_member_holds_current_parameters_and_theta0(data):
    ens = Ensemble([seeded(factory, 0), seeded(factory, 1)])
    train(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=20), probes=())
    for k in range(2):
        m = ens.member(k)
        for (name, p), stacked in zip(m.named_parameters(), ens.params):
            assert torch.equal(p, stacked[k])
            assert torch.equal(ens.params0(k)[name], dict(seeded(factory, k).named_parameters())[name])
    with torch.no_grad():
        torch.testing.assert_close(ens(data.x)[1], ens.member(1)(data.x), rtol=1e-12, atol=0)


def test_bad_ensembles():
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ValueError, match="Linearized"):
        Ensemble([Linearized(seeded(factory, 0)), AlphaScaled(seeded(factory, 0), 1.0)])
    with pytest.raises(ValueError, match="structure"):
        Ensemble([seeded(factory, 0), MLP([2, 8, 1]).double()])
    with pytest.raises(TypeError, match="module"):
        Ensemble([seeded(factory, 0), "not a module"])
    ens = Ensemble([seeded(factory, 0), seeded(factory, 1)])
    with pytest.raises(ValueError, match="one run id"):
        train(ens, yinyang(10, dtype=torch.float64), loss="bce", stepper=GD(0.1), stop=Stop(max_steps=1),
              run_id=["only one"])


def test_batched_probes_and_reused_outputs_equal_the_per_member_path():
    """The engine's fast measurement (batched loss and distance probes, the step's own outputs reused for a network
    that computes the same in eval mode) gives the rows of the per-member path, in float64: the second
    implementation is the same probes called one member at a time on eval-mode outputs (a network with a
    Dropout(p=0) is not known to be mode-free, so it takes that path)."""
    import torch.nn as nn

    import lazyhasty as lh
    from lazyhasty.dynamics.train import _mode_free

    data = lh.data.yinyang(40, seed=0, dtype=torch.float64)
    test = lh.data.yinyang(30, seed=1, dtype=torch.float64)

    def plain():
        return lh.MLP([2, 16, 16, 1]).double()

    def with_dropout():
        return nn.Sequential(lh.MLP([2, 16, 16, 1]).double(), nn.Dropout(0.0))

    def run(make, probes):
        ens = lh.Ensemble([lh.AlphaScaled(lh.seeded(make, s), a) for s, a in ((0, 1.0), (1, 10.0), (2, 0.5))])
        res = lh.train(ens, data, loss="bce", stepper=lh.GD(0.3), stop=lh.Stop(max_steps=60), splits={"test": test},
                       probes=probes, schedule=lh.Schedule(points_per_decade=6, milestone_ratio=0.97), progress=False,
                       run_id=["a", "b", "c"])
        return ens, pd.concat([r.metrics for r in res]).sort_values(["run_id", "step", "split", "group", "metric"])

    fast_ens, fast = run(plain, (lh.loss_probe, lh.parameter_distance_probe))
    per_member = (lambda ctx: lh.loss_probe(ctx), lambda ctx: lh.parameter_distance_probe(ctx))  # no .batched
    slow_ens, slow = run(with_dropout, per_member)
    assert _mode_free(fast_ens) and not _mode_free(slow_ens)
    assert len(fast) == len(slow) > 100 and {"loss", "accuracy", "margin", "param_distance"} <= set(fast.metric)
    for col in ("run_id", "step", "split", "group", "metric"):
        assert fast[col].tolist() == slow[col].tolist()
    np.testing.assert_allclose(fast.value.to_numpy(), slow.value.to_numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("stepper", [GD(0.3), SGD(0.1, momentum=0.9, batch_size=16)], ids=["gd", "sgd-momentum"])
def test_compiled_steps_follow_the_single_runs(data, stepper):
    """train(compile=True) (one torch.compile'd torch.func gradient) moves every member of an AlphaScaled ensemble
    exactly as its eager single run does (float64), minibatches and momentum included, and members that reach the
    loss target stop where their single runs stop (GD's step is fused into the compiled gradient: a stopped member
    must not take its proposed step); a Linearized ensemble is refused."""
    stop = Stop(max_steps=60, loss_below=0.5)
    ens = Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)])
    results = train(ens, data, loss="bce", stepper=stepper, stop=stop, data_seed=7, compile=True)
    assert 0 < min(r.steps for r in results) < max(r.steps for r in results) == 60
    for k, s in enumerate(SEEDS):
        single = KINDS["alpha"](s, k)
        theta0 = torch.cat([p.detach().flatten() for p in network(single).parameters()])
        r = train(single, data, loss="bce", stepper=stepper, stop=stop, data_seed=7)
        assert results[k].steps == r.steps
        assert_follows(ens.member(k), single, theta0)
        np.testing.assert_allclose(results[k].trace["loss"], r.trace["loss"], rtol=1e-10)
        np.testing.assert_allclose(results[k].metrics["value"], r.metrics["value"], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="compile=True needs plain or AlphaScaled"):
        train(Ensemble([KINDS["linearized"](s, k) for k, s in enumerate(SEEDS)]), data, loss="bce", stepper=stepper,
              stop=Stop(max_steps=2), compile=True)


def test_a_compiled_step_at_another_rate_takes_that_rate(data):
    """GD's rate enters the compiled step as a tensor (another rate reuses the compiled code, fig1's three rates
    compile once): each rate's compiled run equals its eager run (float64), so no rate is left over from a graph."""
    def ens():
        return Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)])

    for lr in (0.3, 0.05, 0.3 * 3):
        compiled, eager = ens(), ens()
        for e, how in ((compiled, True), (eager, False)):
            train(e, data, loss="bce", stepper=GD(lr), stop=Stop(max_steps=15), progress=False, compile=how)
        for a, b in zip(compiled.params, eager.params):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("how", ["no compiler", "compile fails"])
@pytest.mark.parametrize("compile", [True, None])
def test_where_compiling_cannot_work_the_run_goes_on_eagerly_with_a_note(data, monkeypatch, capfd, how, compile):
    """No C++ compiler (can_compile says no), or a model whose compiled step raises on its first call: compile=True
    and the default rule both train eagerly, say so in one line on stderr, and give the eager run's parameters."""
    import lazyhasty.dynamics.train as engine

    monkeypatch.setattr(engine, "COMPILE_AFTER", 30)
    monkeypatch.setattr(engine, "_NOTED", set())
    if how == "no compiler":
        monkeypatch.setattr(engine, "can_compile", lambda device="cpu": (False, "RuntimeError: no C++ compiler"))
    else:
        def broken(*args):
            raise torch._dynamo.exc.TorchDynamoException("C++ compile error")

        monkeypatch.setattr(engine, "_compiled", lambda *args: (broken, False))
        monkeypatch.setattr(engine, "can_compile", lambda device="cpu": (True, ""))
    ens, eager = (Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)]) for _ in range(2))
    train(ens, data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=20), progress=False, compile=compile)
    note = capfd.readouterr().err
    assert note.count("[lazyhasty]") == 1 and "training eagerly" in note
    assert ("no C++ compiler" if how == "no compiler" else "C++ compile error") in note
    train(eager, data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=20), progress=False, compile=False)
    for a, b in zip(ens.params, eager.params):
        assert torch.equal(a, b)


def test_by_default_a_run_is_compiled_once_its_members_took_compile_after_steps(data, monkeypatch):
    """compile=None (the default): eager steps until the members together have taken COMPILE_AFTER steps, compiled
    ones from the next point on (GD on an ensemble: its step fused, so the evaluation carries a proposal); the same
    parameters as an eager run (float64); a Linearized ensemble is never compiled and never refused."""
    import lazyhasty.dynamics.train as engine

    monkeypatch.setattr(engine, "COMPILE_AFTER", 60)  # 3 members: the switch after 20 steps
    fused = []

    def ens():
        return Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)])

    auto, eager = ens(), ens()
    train(auto, data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=40), progress=False,
          on_step=lambda ev: fused.append(ev.proposal is not None))
    train(eager, data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=40), progress=False, compile=False)
    assert fused == [False] * 20 + [True] * 21  # points 0 .. 19 eager, point 20 (60 member-steps taken) on compiled
    for p, q in zip(auto.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    lin = Ensemble([KINDS["linearized"](s, k) for k, s in enumerate(SEEDS)])
    fused.clear()
    train(lin, data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=40), progress=False,
          on_step=lambda ev: fused.append(ev.proposal is not None))
    assert fused == [False] * 41


def test_a_proposal_of_the_wrong_shape_is_refused(data):
    """A stepper whose fused step (Stepper.proposal) returns tensors of another shape than the parameters is refused
    instead of broadcast into them."""
    class Broken(GD):
        def proposal(self, P, G, live):
            return {k: p[0] - self.lr * G[k][0] for k, p in P.items()}  # member 0's row only

    ens = Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)])
    with pytest.raises(ValueError, match=r"Broken.proposal gave .* the shape"):
        train(ens, data, loss="bce", stepper=Broken(0.1), stop=Stop(max_steps=2), compile=True, progress=False)


def own_sets(n=40):
    """One training set per member (its own draw), each with its own groups (yin-yang regions) and a group that is
    empty in one of them."""
    from lazyhasty import Split
    sets = [yinyang(n, seed=20 + k, dtype=torch.float64) for k in range(len(SEEDS))]
    return [Split(d.x, d.y, {**d.groups, "some": torch.arange(k)}) for k, d in enumerate(sets)]


def own_probe(ctx):
    """An unbatched probe: what a run sees as its training split (its own set's targets)."""
    return [("train", "all", "y_sum", float(ctx.splits["train"].y.sum()))]


@pytest.mark.parametrize("kind,compiled", [("plain", False), ("alpha", False), ("alpha", True),
                                           ("linearized", False)])
@pytest.mark.parametrize("stepper", [GD(0.3), SGD(0.1, momentum=0.9, batch_size=16)], ids=["gd", "sgd-momentum"])
def test_members_on_their_own_training_sets_follow_their_single_runs(kind, compiled, stepper):
    """train(ensemble, [set_0, ..., set_E-1]): member k trains on its own set, evaluated as one computation, exactly
    as its single run on that set does (float64): parameters, losses, steps (a loss target stops members at
    different steps), and every probe row, the batched loss probe with groups and an unbatched probe reading
    ctx.splits["train"] included; eager and compiled."""
    from lazyhasty import loss_probe, parameter_distance_probe

    sets, test = own_sets(), yinyang(30, seed=9, dtype=torch.float64)
    stop, probes = Stop(max_steps=80, loss_below=0.55), (loss_probe, parameter_distance_probe, own_probe)
    kw = dict(loss="bce", stepper=stepper, stop=stop, data_seed=7, splits={"test": test}, probes=probes,
              progress=False)
    ens = Ensemble([KINDS[kind](s, k) for k, s in enumerate(SEEDS)])
    results = train(ens, sets, compile=compiled, **kw)
    if isinstance(stepper, GD):
        assert 0 < min(r.steps for r in results) < max(r.steps for r in results)
    for k, s in enumerate(SEEDS):
        single = KINDS[kind](s, k)
        theta0 = torch.cat([p.detach().flatten() for p in network(single).parameters()])
        r = train(single, sets[k], compile=False, **kw)
        assert results[k].steps == r.steps
        assert_follows(ens.member(k), single, theta0, tol=1e-9)
        np.testing.assert_allclose(results[k].trace["loss"], r.trace["loss"], rtol=1e-10)
        m_ens, m_one = results[k].metrics, r.metrics
        assert m_ens[["step", "split", "group", "metric"]].equals(m_one[["step", "split", "group", "metric"]])
        assert {"disk", "all"} <= set(m_ens.group) and "y_sum" in set(m_ens.metric)
        assert ("some" in set(m_ens.group)) == (k > 0)  # an empty group has no rows
        np.testing.assert_allclose(m_ens["value"], m_one["value"], rtol=1e-9, atol=1e-12)
    assert len({float(r.metrics.query("metric == 'y_sum'").value.iloc[0]) for r in results}) == len(SEEDS)


def test_own_training_sets_are_checked():
    """A list of training sets must hold one Split per member with one length, shapes and group names; the batched
    probes' view of them refuses to be read as one split."""
    from lazyhasty import Split
    from lazyhasty.dynamics.probes import OwnSets

    sets = own_sets()
    ens = Ensemble([KINDS["alpha"](s, k) for k, s in enumerate(SEEDS)])
    kw = dict(loss="bce", stepper=GD(0.1), stop=Stop(max_steps=2), progress=False)
    with pytest.raises(ValueError, match="one Split per member"):
        train(ens, sets[:2], **kw)
    with pytest.raises(ValueError, match="set 2 differs"):
        train(ens, [*sets[:2], yinyang(41, seed=1, dtype=torch.float64)], **kw)
    with pytest.raises(ValueError, match="set 1 differs"):
        train(ens, [sets[0], Split(sets[1].x, sets[1].y, {"other": torch.arange(9)}), sets[2]], **kw)
    with pytest.raises(ValueError, match="one block per member"):
        ens.own(sets[0].x)
    with pytest.raises(TypeError, match="its own set"):
        _ = OwnSets(tuple(sets)).y


@pytest.mark.parametrize("members", [1, 3])
def test_probe_splits_measured_from_kept_f0_equal_the_modules_own_outputs(members):
    """A probe split's outputs come from f_theta0 kept per call (and, in an ensemble, only for the members measured
    at that point): the loss probe's rows equal the loss of each run's module called on the split at the same
    point (float64), under minibatches that would have pushed the split out of the wrapper's own cache, with
    members measured at different points (a loss target)."""
    from lazyhasty import BCE, loss_probe

    data, test = yinyang(60, seed=4, dtype=torch.float64), yinyang(5000, seed=5, dtype=torch.float64)
    test_ = test.x.clone()  # the module is called on another tensor: no cache can be shared with the engine

    def direct(ctx):
        with torch.no_grad():
            return [("test", "all", "direct", float(BCE()(ctx.model(test_), test.y).mean()))]

    nets = [AlphaScaled(seeded(factory, s), a) for s, a in zip(SEEDS[:members], (1.0, 30.0, 0.5))]
    res = train(nets[0] if members == 1 else Ensemble(nets), data, loss="bce", stepper=SGD(0.2, batch_size=8),
                stop=Stop(max_steps=120, loss_below=0.6), splits={"test": test}, probes=(loss_probe, direct),
                progress=False, data_seed=3)
    res = [res] if members == 1 else res
    if members > 1:
        assert len({r.steps for r in res}) > 1
    for r in res:
        m = r.metrics[(r.metrics.split == "test") & (r.metrics.group == "all")]
        got = m[m.metric == "loss"].set_index("step").value
        want = m[m.metric == "direct"].set_index("step").value
        assert len(got) > 5 and got.index.equals(want.index)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)
