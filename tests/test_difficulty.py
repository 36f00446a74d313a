"""C-score estimation, learning speed and equal-progress comparison on data where the answers are known."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from lazyhasty import MLP
from lazyhasty.data.groups import Split
from lazyhasty.dynamics.cscores import estimate_cscores, learning_speed
from lazyhasty.metrics import at_equal_progress


@pytest.fixture(scope="module")
def mixture():
    """Two Gaussian classes in 8-d; 10% of the labels flipped: those examples are the hard ones."""
    g = torch.Generator().manual_seed(0)
    n = 300
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g) + 2.0 * (2 * y[:, None] - 1) * torch.eye(8)[0]
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=g)[:30]] = True
    return Split(x, torch.where(flipped, 1 - y, y)), flipped.numpy()


def small():
    return MLP([8, 32, 2])


def test_cscores_rank_the_known_hard_examples_low(mixture):
    split, flipped = mixture
    res = estimate_cscores(split, small, ratios=(0.3, 0.6, 0.9), runs_per_ratio=4, epochs=8, seed=0)
    s = res["scores"]
    assert s.shape == (300,) and res["per_ratio"].shape == (3, 300)
    assert np.all((res["held_out_counts"] >= 0) & (res["held_out_counts"] <= 4))
    assert s[~flipped].mean() > 0.8 and s[flipped].mean() < 0.3  # flipped labels are never "consistent"
    speed = learning_speed(split, small, epochs=4, seeds=(0, 1))
    assert speed[~flipped].mean() > speed[flipped].mean()
    assert spearmanr(s, speed).statistic > 0.3


class Stopped(Exception):
    pass


@pytest.mark.parametrize("stop_at", [None, 7], ids=["after_the_call", "mid_call"])
def test_learning_speed_resumed_from_its_checkpoint_equals_an_uninterrupted_one(mixture, tmp_path, monkeypatch,
                                                                               stop_at):
    """The per-epoch correctness is state of the runs (their rows, in the checkpoint), not of the Python call: a
    block interrupted after the call finished, or in its middle, gives the same speeds when resumed."""
    from lazyhasty.dynamics import cscores
    from lazyhasty.runs import Checkpointing

    split, _ = mixture
    fresh = learning_speed(split, small, epochs=3, seeds=(0, 1), batch_size=64)
    plain, steps = cscores.train, []

    def on_step(ev):
        steps.append(1)
        if stop_at is not None and len(steps) > stop_at:
            raise Stopped

    monkeypatch.setattr(cscores, "train", lambda *a, **k: plain(*a, **k, on_step=on_step))
    with pytest.raises(Stopped):
        learning_speed(split, small, epochs=3, seeds=(0, 1), batch_size=64,
                       checkpoint=Checkpointing(tmp_path, every_s=1e-9))
        raise Stopped  # after the call: the experiment stops before it completes
    stop_at = None
    resumed = learning_speed(split, small, epochs=3, seeds=(0, 1), batch_size=64,
                             checkpoint=Checkpointing(tmp_path, every_s=1e-9, resume=True))
    assert resumed.shape == (300,) and np.array_equal(resumed, fresh)


def test_cscore_holdout_bookkeeping(mixture):
    split, _ = mixture
    res = estimate_cscores(split, small, ratios=(0.5,), runs_per_ratio=2, epochs=1, seed=1, score="prob")
    counts = res["held_out_counts"][0]
    # each of the two members holds out half of the examples
    assert counts.sum() == 2 * 150 and set(np.unique(counts)) <= {0, 1, 2}
    assert np.isnan(res["per_ratio"][0][counts == 0]).all() and (res["per_ratio"][0][counts > 0] <= 1).all()


def run_table(rid, clean, noisy):
    rows = []
    for step, (c, nz) in enumerate(zip(clean, noisy)):
        rows += [(rid, step, "train", "clean", "loss", c), (rid, step, "train", "noisy", "loss", nz)]
    return pd.DataFrame(rows, columns=["run_id", "step", "split", "group", "metric", "value"])


def test_at_equal_progress_interpolates_on_a_common_monotone_grid():
    fast = run_table("fast", [2.0, 1.0, 0.5, 0.25], [2.0, 2.5, 2.0, 1.0])
    slow = run_table("slow", [2.0, 1.5, 1.2, 1.0, 0.9, 1.1, 0.5], [2.0, 2.0, 1.9, 1.8, 1.7, 1.6, 1.0])
    t = at_equal_progress(pd.concat([fast, slow]), progress=("train", "clean", "loss"), grid=[2.0, 1.0, 0.5])
    piv = t[t.group == "noisy"].pivot_table(index="progress", columns="run_id", values="value")
    assert piv.loc[1.0, "fast"] == pytest.approx(2.5) and piv.loc[1.0, "slow"] == pytest.approx(1.8)
    # the slow run regressed (0.9 -> 1.1) at step 5: made monotone, clean = 0.5 is reached at step 6 only
    assert piv.loc[0.5, "slow"] == pytest.approx(1.0) and piv.loc[0.5, "fast"] == pytest.approx(2.0)
    auto = at_equal_progress(pd.concat([fast, slow]), progress=("train", "clean", "loss"), grid=5)
    assert auto.progress.max() == pytest.approx(2.0) and auto.progress.min() == pytest.approx(0.5)  # shared range


def test_at_equal_progress_equals_interpolating_each_series_by_hand():
    """Runs with series measured at some steps only, NaN values, a repeated row and a series with one value (left
    out), against np.interp series by series; a step given two different values is refused."""
    rng = np.random.default_rng(0)
    rows = []
    for rid in ("a", "b", "c"):
        steps = np.sort(rng.choice(40, 12, replace=False))
        loss = np.sort(rng.uniform(0.1, 2.0, len(steps)))[::-1]
        for k, (s, v) in enumerate(zip(steps, loss)):
            rows.append((rid, s, "train", "all", "loss", v))
            if k % 3:  # measured at two steps in three
                rows.append((rid, s, "test", "g", "accuracy", np.nan if k == 4 else rng.uniform()))
            rows.append((rid, s, "probe", "all", "ntk_alignment", rng.uniform()))
        rows.append(next(r for r in rows if r[1] == steps[2] and r[4] == "ntk_alignment"))  # the same row again
        rows.append((rid, steps[0], "test", "lone", "loss", 1.0))  # one value: nothing to interpolate
    m = pd.DataFrame(rows, columns=["run_id", "step", "split", "group", "metric", "value"])
    grid = [1.5, 1.0, 0.7, 0.3]
    with pytest.raises(ValueError, match="two different values"):
        at_equal_progress(pd.concat([m, m.iloc[-3:].assign(value=99.0)]), grid=grid)
    got = at_equal_progress(m, grid=grid)
    assert len(got) == 3 * 3 * len(grid) and "lone" not in set(got.group)
    for (rid, split, group, metric), d in got.groupby(["run_id", "split", "group", "metric"]):
        run = m[m.run_id == rid].drop_duplicates(["split", "group", "metric", "step"])
        p = run[run.metric.eq("loss") & run.split.eq("train")].set_index("step").value
        v = run[run.split.eq(split) & run.group.eq(group) & run.metric.eq(metric)].set_index("step").value
        v = v.reindex(p.index)
        ok = v.notna().to_numpy()
        want = np.interp(-np.array(grid), -p.to_numpy()[ok], v.to_numpy()[ok], left=np.nan, right=np.nan)
        np.testing.assert_allclose(d.sort_values("progress", ascending=False).value, want, rtol=0, atol=0)
