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
