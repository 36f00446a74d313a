"""Progress towards the real stopping rule: the fraction's closed forms, plain lines off a terminal, and a
training call whose loss target ends it long before max_steps reports that target's progress, not the steps'."""

import io
import math
import re
import sys

import pytest
import torch

import lazyhasty as lh
from lazyhasty.dynamics import progress
from lazyhasty.dynamics.progress import Progress, run_fraction


def test_the_fraction_is_the_largest_of_the_budgets_and_the_log_loss_target():
    assert run_fraction(25, 0.0, 1.0, 1.0, lh.Stop(max_steps=100)) == 0.25
    assert run_fraction(25, 3.0, 1.0, 1.0, lh.Stop(max_steps=100, max_time=4.0)) == 0.75
    stop = lh.Stop(max_steps=10**6, loss_below=0.01)
    assert run_fraction(10, 0.0, 0.1, 1.0, stop) == pytest.approx(0.5)  # log(1/0.1) / log(1/0.01)
    assert run_fraction(10, 0.0, 1e-3, 1.0, stop) == 1.0 and run_fraction(10, 0.0, 2.0, 1.0, stop) == 1e-5
    assert run_fraction(10, 0.0, float("nan"), 1.0, stop) == 1e-5
    assert run_fraction(0, 0.0, 0.5, 0.005, stop) == 1.0  # started below its target


def test_off_a_terminal_a_plain_line_at_most_every_interval():
    out = io.StringIO()
    p = Progress("run-x", None, every_s=0.0, stream=out)
    assert p.bar is None
    p.update(0.25, "step 5, loss 0.3")
    p.update(0.5, "step 10, loss 0.2")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[run-x] 25% step 5, loss 0.3, elapsed 0m00s, ETA ")
    quiet, never = io.StringIO(), io.StringIO()
    p = Progress("run-y", None, every_s=3600.0, stream=quiet)
    p.update(0.5, "x")
    Progress("run-z", False, every_s=0.0, stream=never).update(0.5, "x")
    assert quiet.getvalue() == "" and never.getvalue() == ""


def test_a_loss_target_sets_the_progress_of_a_training_call(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    data = lh.data.yinyang(50, seed=0, dtype=torch.float64)
    net = lh.AlphaScaled(lh.seeded(lambda: lh.MLP([2, 32, 1]).double(), 0), 1.0)
    res = lh.train(net, data, loss="bce", stepper=lh.GD(0.5), stop=lh.Stop(max_steps=10**6, loss_below=0.2),
                   probes=(lh.loss_probe,), progress=True, on_step=lambda ev: __import__("time").sleep(0.003))
    assert res.converged and res.steps < 5000
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("[")]
    assert lines, err.getvalue()
    pct = [int(re.search(r"\] (\d+)% ", ln).group(1)) for ln in lines]
    loss = [float(re.search(r"loss ([0-9.e+-]+) \(target 0.2\)", ln).group(1)) for ln in lines]
    loss0 = res.metrics[(res.metrics.metric == "loss") & (res.metrics.group == "all")].value.iloc[0]
    for p, L in zip(pct, loss):  # the target's log-progress, where steps / max_steps would say 0%
        assert abs(p - 100 * math.log(loss0 / L) / math.log(loss0 / 0.2)) <= 1
    assert pct == sorted(pct) and max(pct) > 5
