"""The training loop: forking, stopping, divergence, milestones, measurement points, records."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lazyhasty import (
    GD,
    MLP,
    SGD,
    AlphaScaled,
    GradientFlow,
    Linearized,
    RunRecord,
    Schedule,
    Split,
    Stop,
    load_runs,
    same_init,
    seeded,
    train,
)
from lazyhasty.data import yinyang


@pytest.fixture
def data():
    return yinyang(64, seed=1, dtype=torch.float64)


def base_model(seed=0):
    return seeded(lambda: MLP([2, 24, 24, 1]).double(), seed)


def test_forked_runs_share_theta0_and_minibatches(data):
    """Runs that differ only in alpha (or regime) start bit-identical and see the same minibatch sequence."""
    a, b = base_model(7), base_model(7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # same seed, same theta0
    runs = {"1": AlphaScaled(same_init(a), 1.0), "100": AlphaScaled(same_init(a), 100.0),
            "lin": Linearized(same_init(a))}
    for w in runs.values():
        assert all(torch.equal(p, q) for p, q in zip(w.params0().values(), a.parameters()))
    batches = {}
    for name, model in runs.items():
        seen = []
        stepper = SGD(0.1, momentum=0.9, batch_size=10)
        train(model, data, loss="bce", stepper=stepper, stop=Stop(max_steps=20), data_seed=3, probes=(),
              on_step=lambda ev, seen=seen: seen.append(ev.index.tolist()))
        batches[name] = seen
    assert batches["1"] == batches["100"] == batches["lin"]
    other = []
    train(AlphaScaled(same_init(a), 1.0), data, loss="bce", stepper=SGD(0.1, batch_size=10), stop=Stop(max_steps=20),
          data_seed=4, probes=(), on_step=lambda ev: other.append(ev.index.tolist()))
    assert other != batches["1"]  # the data seed, not the model, decides the order


def test_stop_max_steps_and_time(data):
    r = train(base_model(), data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=17), probes=())
    assert (r.status, r.steps, r.converged) == ("complete", 17, None)
    r = train(base_model(), data, loss="bce", stepper=GD(0.3), stop=Stop(max_time=2.0), probes=())
    assert r.t >= 2.0 and r.t - 0.3 < 2.0 and "max_time" in r.reason


def test_stop_on_loss_threshold(data):
    r = train(base_model(), data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=5000, loss_below=0.5),
              probes=())
    losses = r.trace["loss"].to_numpy()
    assert r.converged is True and losses[-1] < 0.5 and (losses[:-1] >= 0.5).all()


def test_stop_on_margins(gen):
    x = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    data = Split(x, torch.sign(x[:, 0] + 0.3 * x[:, 1]))
    margins = []
    r = train(base_model(), data, loss="soft_hinge", stepper=GD(1.0), stop=Stop(max_steps=20000, min_margin=1.0),
              probes=(), on_step=lambda ev: margins.append(float((ev.out[0, :, 0] * data.y).min())))
    assert r.converged is True and margins[-1] >= 1.0 and max(margins[:-1]) < 1.0


def test_budget_without_target_reports_not_converged(data):
    r = train(base_model(), data, loss="bce", stepper=GD(0.01), stop=Stop(max_steps=3, loss_below=1e-6), probes=())
    assert r.status == "complete" and r.converged is False


def test_divergence_is_a_status_not_an_exception(data, tmp_path):
    rec = RunRecord(tmp_path / "r").start({"lr": 1e6})
    r = train(AlphaScaled(base_model(), 1.0), data, loss="mse", stepper=GD(1e6), stop=Stop(max_steps=500),
              record=rec)
    assert r.status == "diverged" and "non-finite" in r.reason and r.steps < 500
    assert json.loads((tmp_path / "r" / "status.json").read_text())["status"] == "diverged"


def test_stop_and_schedule_need_numbers_that_mean_something():
    with pytest.raises(ValueError, match="budget"):
        Stop(loss_below=0.1)
    for bad in (dict(max_steps=2.5), dict(max_steps=True), dict(max_steps=10, loss_below=float("nan")),
                dict(max_steps=10, reach=(("train", "all", "loss"),)),
                dict(max_steps=10, reach=(("train", "all", "loss", float("inf")),)),
                dict(max_steps=10, reach=(("-", "-", "param_distance", 0.1),))):  # rises: would 'stop' at step 0
        with pytest.raises(ValueError):
            Stop(**bad)
    for bad in (dict(points_per_decade=float("inf")), dict(every=-2), dict(every=0.5), dict(levels=(0.5, 0.5)),
                dict(levels=(0.3, 0.5)), dict(levels=(0.5, float("nan"))), dict(levels=())):  # NaN: never reached
        with pytest.raises(ValueError, match="points_per_decade|every|levels"):
            Schedule(**bad)


def test_stop_on_a_measured_group_loss_and_a_rising_accuracy(data):
    """Stop.reach: the run ends at the first measurement point where every target is met (a loss at or below, an
    accuracy at or above its value), never earlier; converged True; a measure no probe records is refused at
    step 0."""
    for target in (("train", "disk", "loss", 0.55), ("train", "half_plane", "accuracy", 0.8)):
        r = train(base_model(), data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=3000, reach=(target,)),
                  schedule=Schedule(points_per_decade=20))
        split, group, metric, value = target
        v = r.metrics[(r.metrics.split == split) & (r.metrics.group == group) & (r.metrics.metric == metric)]
        v = v.sort_values("step").value.to_numpy()
        met = v <= value if metric == "loss" else v >= value
        assert r.converged is True and met[-1] and not met[:-1].any() and f"{group}/{metric}" in r.reason
        assert r.steps == int(r.metrics.step.max())
    with pytest.raises(ValueError, match="train/nope/loss, which no probe recorded"):
        train(base_model(), data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=30, reach=(
            ("train", "nope", "loss", 0.1),)))


def test_a_members_training_rows_are_its_own_examples(data):
    """With per-member example weights (each member its own training subset), the loss probe's train rows are
    each member's own weighted means: at every measurement of full-batch GD they equal the member's objective
    (float64), and a group's mean is over the member's examples of that group."""
    from lazyhasty import Ensemble

    n = len(data)
    w = torch.zeros(2, n, dtype=torch.float64)
    w[0, : n // 2], w[1, n // 2:] = 1.0, 1.0
    ens = Ensemble([AlphaScaled(base_model(s), 1.0) for s in (0, 1)])
    res = train(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=40), weights=w)
    for r in res:
        rows = r.metrics[(r.metrics.split == "train") & (r.metrics.group == "all") & (r.metrics.metric == "loss")]
        trace = r.trace.set_index("step").loss
        np.testing.assert_allclose(rows.value.to_numpy(), trace.loc[rows.step].to_numpy(), rtol=1e-12)
    ens0 = ens.member(0)
    with torch.no_grad():
        per = torch.nn.functional.softplus(-data.y * ens0(data.x)[:, 0])
    disk = data.groups["disk"]
    own = disk[disk < n // 2]
    last = res[0].metrics[(res[0].metrics.group == "disk") & (res[0].metrics.split == "train")
                          & (res[0].metrics.metric == "loss")].sort_values("step").value.iloc[-1]
    assert last == pytest.approx(float(per[own].mean()), rel=1e-12)


@pytest.mark.parametrize("kw, match", [(dict(splits={"train": None}), "'train' is the training set's"),
                                       (dict(flush_every_s=float("nan")), "flush_every_s"),
                                       (dict(checkpoint_every_s=-5.0), "checkpoint_every_s")])
def test_a_split_that_would_replace_the_training_set_and_intervals_that_mean_nothing_are_refused(data, kw, match):
    with pytest.raises(ValueError, match=match):  # before: probes measured another set as "train", or never flushed
        train(base_model(), data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=2), **kw)


@pytest.mark.parametrize("bad", ["zero row", "negative", "nan"])
def test_example_weights_that_define_no_mean_are_refused(data, bad):
    """A member without a positive weight, a negative weight or a NaN would make its 'mean loss' 0, unbounded or NaN
    (a run that looks complete, or diverged): refused before anything trains."""
    from lazyhasty import Ensemble

    w = torch.ones(2, len(data), dtype=torch.float64)
    w[1] = {"zero row": 0.0, "negative": -1.0, "nan": float("nan")}[bad]
    ens = Ensemble([AlphaScaled(base_model(s), 1.0) for s in (0, 1)])
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        train(ens, data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=2), weights=w)


def test_milestones_are_first_crossings(data):
    ratio = 0.9
    r = train(base_model(), data, loss="bce", stepper=GD(0.5), stop=Stop(max_steps=400),
              schedule=Schedule(milestone_ratio=ratio, points_per_decade=0))
    losses = r.trace["loss"].to_numpy()
    loss0 = losses[0]
    ms = r.metrics.dropna(subset=["milestone"]).drop_duplicates("step")[["step", "milestone"]]
    assert len(ms) >= 5
    reached = 0
    for step, k in ms.itertuples(index=False):
        # step is the first at which the loss is below L0 r^k, and no deeper milestone was crossed there
        assert losses[step] < loss0 * ratio**k and (losses[:step] >= loss0 * ratio**k).all()
        assert losses[step] >= loss0 * ratio ** (k + 1)
        assert k > reached
        reached = k
    # every milestone the trace crossed is accounted for
    assert reached == max(k for k in range(200) if (losses < loss0 * ratio**k).any())


def test_log_spaced_measurement_steps(data):
    r = train(base_model(), data, loss="bce", stepper=GD(0.01), stop=Stop(max_steps=150),
              schedule=Schedule(points_per_decade=5, milestone_ratio=None))
    measured = sorted(r.metrics["step"].unique())
    expected = sorted({0, 150} | {round(10 ** (k / 5)) for k in range(12) if round(10 ** (k / 5)) <= 150})
    assert measured == expected


def test_long_table_has_groups_and_splits(data):
    test = yinyang(50, seed=9, dtype=torch.float64)
    r = train(base_model(), data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=5), splits={"test": test})
    m = r.metrics
    assert list(m.columns) == ["run_id", "step", "t", "milestone", "split", "group", "metric", "value"]
    assert {"train", "test"} <= set(m.split)
    assert {"all", "disk", "half_plane", "near_boundary"} <= set(m.group)
    first = m[(m.step == 0) & (m.split == "train") & (m.metric == "loss")].set_index("group")["value"]
    # group means recombine into the overall mean
    sizes = {g: len(data.groups[g]) for g in ("disk", "half_plane", "near_boundary")}
    assert sum(first[g] * s for g, s in sizes.items()) / len(data) == pytest.approx(first["all"], rel=1e-12)
    assert first["all"] == pytest.approx(r.trace["loss"].iloc[0], rel=1e-12)
    pd0 = m[(m.step == 0) & (m.metric == "param_distance")]["value"].item()
    assert pd0 == 0.0


def test_records_are_complete_and_loadable(data, tmp_path):
    for alpha in (1.0, 10.0):
        rec = RunRecord(tmp_path / f"alpha={alpha:g}").start({"alpha": alpha, "lr": 0.1, "nested": {"a": 1}}, seed=0)
        res = train(AlphaScaled(base_model(), alpha), data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=30),
                    run_id=rec.run_id, record=rec)
    run = tmp_path / "alpha=10"
    assert {"config.json", "env.json", "metrics.parquet", "trace.parquet", "status.json"} <= {
        p.name for p in run.iterdir()}
    env = json.loads((run / "env.json").read_text())
    assert {"torch", "numpy", "git_sha", "device", "torch_threads", "seed"} <= set(env)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "complete" and status["steps"] == 30 and status["alpha"] == 10.0
    pd.testing.assert_frame_equal(pd.read_parquet(run / "metrics.parquet"), res.metrics)
    df = load_runs(tmp_path)
    assert set(df.run_id) == {"alpha=1", "alpha=10"} and set(df.alpha) == {1.0, 10.0}
    assert "nested.a" in df.columns and (df.status == "complete").all()
    mine = df[df.run_id == "alpha=10"]  # the status's numbers and words, as the run wrote them
    for key in ("reason", "steps", "t", "wall_s", "loss0", "probe_s"):
        assert (mine[f"status.{key}"] == status[key]).all(), key
    assert not {"status.files", "status.status", "status.converged"} & set(df.columns)


def test_a_failing_run_keeps_its_results(data, tmp_path):
    def exploding_probe(ctx):
        if ctx.step >= 8:
            raise RuntimeError("probe exploded")
        return [("train", "all", "step_seen", ctx.step)]

    rec = RunRecord(tmp_path / "r").start({})
    with pytest.raises(RuntimeError, match="probe exploded"):
        train(base_model(), data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=50), probes=(exploding_probe,),
              schedule=Schedule(every=1, milestone_ratio=None), record=rec)
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["status"] == "failed" and "probe exploded" in status["reason"]
    kept = pd.read_parquet(tmp_path / "r" / "metrics.parquet")
    assert sorted(kept.step) == list(range(8))


def test_gradient_flow_run_in_theory_time_is_alpha_independent_when_lazy(data):
    """t is shared across alpha: at large alpha the loss curve vs t converges to the linearized one."""
    base = base_model()
    curves = {}
    for name, model in {"lin": Linearized(same_init(base)), "a": AlphaScaled(same_init(base), 1e3)}.items():
        r = train(model, data, loss="mse", stepper=GradientFlow(dt=1e-2), stop=Stop(max_time=1.0), probes=())
        curves[name] = (r.trace["t"].to_numpy(), r.trace["loss"].to_numpy())
    t_lin, l_lin = curves["lin"]
    t_a, l_a = curves["a"]
    assert math.isclose(np.interp(1.0, t_a, l_a), np.interp(1.0, t_lin, l_lin), rel_tol=1e-3)
