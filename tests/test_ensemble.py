"""The vectorised ensemble against single runs (float64), freezing, divergence isolation, records."""

import json

import numpy as np
import pytest
import torch

from lazyhasty import GD, MLP, SGD, AlphaScaled, RunRecord, Schedule, Stop, seeded, train, yinyang
from lazyhasty.dynamics.ensemble import Ensemble, train_ensemble


def factory():
    return MLP([2, 16, 16, 1]).double()


@pytest.fixture
def data():
    return yinyang(50, seed=3, dtype=torch.float64)


@pytest.mark.parametrize("stepper", [GD(0.3), SGD(0.1, momentum=0.9, batch_size=16)])
def test_members_follow_their_single_runs(data, stepper):
    seeds, alphas = [0, 1, 2, 0], [1.0, 1.0, 10.0, 100.0]
    ens = Ensemble(factory, seeds, alphas)
    for k, s in enumerate(seeds):  # identical theta0
        for name, p in seeded(factory, s).named_parameters():
            assert torch.equal(ens.member_params()[name][k], p)
    steps = 300
    results = train_ensemble(ens, data, loss="bce", stepper=stepper, stop=Stop(max_steps=steps), data_seed=7)
    for k, (s, a) in enumerate(zip(seeds, alphas)):
        single = AlphaScaled(seeded(factory, s), a)
        r = train(single, data, loss="bce", stepper=stepper, stop=Stop(max_steps=steps), data_seed=7)
        for name, p in single.model.named_parameters():
            torch.testing.assert_close(ens.member_params()[name][k], p.detach(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(results[k].trace["loss"], r.trace["loss"], rtol=1e-10, atol=1e-12)
        assert results[k].steps == r.steps and results[k].t == pytest.approx(r.t)
        m_ens = results[k].metrics.drop(columns="run_id")
        m_one = r.metrics.drop(columns="run_id")
        np.testing.assert_allclose(m_ens["value"], m_one["value"], rtol=1e-9, atol=1e-12)
        assert (m_ens["step"].to_numpy() == m_one["step"].to_numpy()).all()


def test_stopped_members_are_frozen(data):
    ens = Ensemble(factory, [0, 1], [1.0, 100.0])
    res = train_ensemble(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=3000, loss_below=0.45),
                         probes=())
    fast, slow = res
    assert fast.converged and fast.steps < slow.steps  # alpha = 1 reaches the threshold first
    single = AlphaScaled(seeded(factory, 0), 1.0)
    train(single, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=3000, loss_below=0.45), probes=())
    for name, p in single.model.named_parameters():  # member 0 stayed exactly where it stopped
        torch.testing.assert_close(ens.member_params()[name][0], p.detach(), rtol=0, atol=1e-10)
    assert len(fast.trace) == fast.steps + 1 and fast.trace["step"].max() == fast.steps


def test_one_diverging_member_leaves_the_others_alone(data):
    ens = Ensemble(factory, [0, 0], [1.0, 1.0])
    with torch.no_grad():
        ens.stacked[0][1, 0, 0] = float("inf")  # member 1 is broken from the start
    res = train_ensemble(ens, data, loss="mse", stepper=GD(0.5), stop=Stop(max_steps=200), probes=())
    assert res[1].status == "diverged" and res[0].status == "complete" and res[0].steps == 200
    single = AlphaScaled(seeded(factory, 0), 1.0)
    r = train(single, data, loss="mse", stepper=GD(0.5), stop=Stop(max_steps=200), probes=())
    np.testing.assert_allclose(res[0].trace["loss"], r.trace["loss"], rtol=1e-10)


def test_ensemble_records_and_milestone_levels(data, tmp_path):
    ens = Ensemble(factory, [0, 1, 2], 1.0)
    recs = [RunRecord(tmp_path / f"m{k}").start({"seed": k}) for k in range(3)]
    res = train_ensemble(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=2000, loss_below=0.4),
                         schedule=Schedule(levels=(0.6, 0.5, 0.4), points_per_decade=0), records=recs,
                         run_ids=[f"m{k}" for k in range(3)])
    for k, r in enumerate(res):
        ms = r.metrics.dropna(subset=["milestone"]).drop_duplicates("step")
        assert list(ms.milestone) == [1, 2, 3]
        for (step, m) in ms[["step", "milestone"]].itertuples(index=False):
            assert r.trace.loss[step] < (0.6, 0.5, 0.4)[m - 1] <= r.trace.loss[step - 1]
        st = json.loads((tmp_path / f"m{k}" / "status.json").read_text())
        assert st["status"] == "complete" and st["converged"] is True and st["ensemble_size"] == 3


def test_bad_ensemble_arguments():
    with pytest.raises(ValueError, match="alpha"):
        Ensemble(factory, [0, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match="alphas for"):
        Ensemble(factory, [0, 1], [1.0])
