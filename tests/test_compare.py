"""compare_regimes in float64: every run equals the single run trained by hand, the table equals a hand
interpolation at equal progress, the verdict equals the closed form of a synthetic table; records, report, the
command line and bad input."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import lazyhasty as lh
from lazyhasty.compare import regime_verdict
from lazyhasty.report import build_report


def factory():
    return lh.MLP([2, 16, 16, 1]).double()


DATA = lh.yinyang(60, seed=0, dtype=torch.float64)
TEST = lh.yinyang(40, seed=1, dtype=torch.float64)
KW = dict(loss="bce", stepper=lh.SGD(0.5, momentum=0.5, batch_size=20), stop=lh.Stop(max_steps=80),
          show_progress=False, probe_size=16)


@pytest.fixture(scope="module")
def comp():
    return lh.compare_regimes(factory, DATA, test=TEST, alphas=(10, 1), seeds=(0, 1), linearized=True, **KW)


def test_every_run_is_the_single_run_trained_by_hand(comp):
    assert comp.settings["regimes"] == ["alpha=1", "alpha=10", "linearized"]
    assert (comp.settings["feature"], comp.settings["lazy"]) == ("alpha=1", "alpha=10")
    for seed in (0, 1):
        for regime, wrap in (("alpha=1", lambda m: lh.AlphaScaled(m, 1.0)),
                             ("alpha=10", lambda m: lh.AlphaScaled(m, 10.0)), ("linearized", lh.Linearized)):
            single = lh.train(wrap(lh.seeded(factory, seed)), DATA, loss="bce", stepper=KW["stepper"],
                              stop=KW["stop"], splits={"test": TEST}, probes=(lh.loss_probe,), data_seed=seed,
                              schedule=lh.Schedule(points_per_decade=8), progress=False)
            got = comp.results[f"{regime}-seed={seed}"]
            np.testing.assert_allclose(got.trace.loss, single.trace.loss, rtol=1e-10, atol=1e-13)
            a = got.metrics[got.metrics.metric.isin(["loss", "accuracy"])].reset_index(drop=True)
            b = single.metrics[single.metrics.metric.isin(["loss", "accuracy"])].reset_index(drop=True)
            np.testing.assert_array_equal(a.step, b.step)
            np.testing.assert_allclose(a.value, b.value, rtol=1e-10, atol=1e-13)


def test_the_table_is_the_hand_interpolation_at_equal_progress(comp):
    t = comp.table
    assert set(t.regime) == {"alpha=1", "alpha=10", "linearized"} and set(t.split) == {"train", "test"}
    assert {"loss", "accuracy", "ntk_alignment", "sign_similarity", "representation_alignment"} <= set(t.columns)
    levels = np.sort(t.progress.unique())[::-1]
    assert len(levels) == 12 and levels[0] < min(r.metrics[(r.metrics.split == "train") & (r.metrics.group == "all")
                                                          & (r.metrics.metric == "loss")].value.iloc[0]
                                                 for r in comp.results.values())
    for rid, res in comp.results.items():
        m = res.metrics
        prog = m[(m.split == "train") & (m.group == "all") & (m.metric == "loss")].sort_values("step")
        mono = np.minimum.accumulate(prog.value.to_numpy())
        keep = np.concatenate([[True], np.diff(-mono) > 0])
        seed, regime = int(rid.split("seed=")[1]), rid.split("-seed=")[0]
        for split, group in (("train", "disk"), ("test", "near_boundary")):
            v = m[(m.split == split) & (m.group == group) & (m.metric == "loss")].sort_values("step").value.to_numpy()
            want = np.interp(-levels, -mono[keep], v[keep], left=np.nan, right=np.nan)
            row = t[(t.seed == seed) & (t.regime == regime) & (t.split == split) & (t.group == group)]
            np.testing.assert_allclose(row.sort_values("progress", ascending=False).loss, want, rtol=1e-12)
            assert (row.reached == row.loss.notna()).all()
    furthest = t[t.reached].progress.min()
    assert furthest == levels[-1]  # the grid ends where the furthest run got


def synthetic(levels=(0.5, 0.4, 0.3, 0.2), seeds=5):
    """Regimes alpha=1 (feature) and alpha=100 (lazy): 'hard' loss is higher for feature by 0.1 + 0.01 seed,
    'easy' lower by exactly 0.05; the lazy run of the last seed never reached the last level."""
    rows = []
    for s in range(seeds):
        for regime in ("alpha=1", "alpha=100"):
            for p in levels:
                reached = not (regime == "alpha=100" and s == seeds - 1 and p == levels[-1])
                feat = regime == "alpha=1"
                for group, loss in (("all", p), ("hard", p + (0.1 + 0.01 * s if feat else 0.0)),
                                    ("easy", p - (0.05 if feat else 0.0))):
                    rows.append({"seed": s, "regime": regime, "alpha": 1.0 if feat else 100.0, "split": "train",
                                 "group": group, "progress": p, "reached": reached,
                                 "loss": loss if reached else np.nan})
    return pd.DataFrame(rows)


def test_the_verdict_is_the_closed_form_of_a_synthetic_table():
    verdict, by_level = regime_verdict(synthetic(), "alpha=1", "alpha=100", ("train", "all", "loss"))
    v = verdict.set_index("group")
    assert v.loc["all", "ahead"] == "progress measure"
    hard, easy = v.loc["hard"], v.loc["easy"]
    assert hard.levels == 3 and hard.progress_to == 0.3 and hard.seeds == 5  # 0.2 was not reached in every seed
    assert hard.gap == pytest.approx(0.12, abs=1e-12) and hard.ahead == "lazy"
    assert 0.1 <= hard.ci_low < 0.12 < hard.ci_high <= 0.14
    assert easy.gap == pytest.approx(-0.05, abs=1e-12) and easy.ahead == "feature"
    assert easy.ci_low == pytest.approx(-0.05) and easy.ci_high == pytest.approx(-0.05)
    last = by_level[(by_level.group == "hard") & (by_level.progress == 0.2)].iloc[0]
    assert last.ahead == "not measured" and "1 of 5 seeds" in last.note
    one, _ = regime_verdict(synthetic(seeds=1), "alpha=1", "alpha=100", ("train", "all", "loss"))
    assert (one.set_index("group").loc[["hard", "easy"], "ahead"] == "not measured").all()  # no interval


def test_a_level_is_measured_exactly_where_both_regimes_reached_it_in_every_seed(comp):
    t = comp.table[comp.table.regime.isin(["alpha=1", "alpha=10"])]
    both = t.groupby(["split", "group", "progress"]).reached.all()
    lv = comp.by_level[comp.by_level.ahead != "progress measure"].set_index(["split", "group", "progress"])
    assert len(lv) and (lv.ahead == "not measured").any() and (lv.ahead != "not measured").any()
    pd.testing.assert_series_equal((lv.ahead != "not measured").rename("reached"), both.loc[lv.index],
                                   check_names=False)
    for r in comp.verdict[comp.verdict.ahead != "progress measure"].itertuples():  # its range: levels measured
        measured = lv.loc[(r.split, r.group)]
        measured = measured[measured.ahead != "not measured"].index
        assert r.levels == len(measured) and r.progress_to == measured.min() and r.progress_from == measured.max()


def test_save_writes_records_that_load_runs_and_the_report_read(comp, tmp_path):
    folder = comp.save(tmp_path / "c")
    runs = lh.load_runs(folder / "runs")
    assert runs.run_id.nunique() == 6
    assert (folder / "comparison.png").stat().st_size > 0 and (folder / "verdict.csv").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "table.parquet"), comp.table)
    claims = json.loads((folder / "claims.json").read_text())
    ids = {c["id"] for c in claims["claims"]}
    groups = comp.verdict[comp.verdict.ahead != "progress measure"]
    assert ids == {"stays_linear"} | {f"feature_first@{r.split}/{r.group}" for r in groups.itertuples()}
    html = build_report(folder).read_text()
    assert "compare" in html and "Runs by status: complete: 6" in html
    with pytest.raises(lh.UsageError, match="already holds run records"):
        lh.compare_regimes(factory, DATA, alphas=(1, 10), seeds=(0,), out=folder, **KW)


def test_bad_input_gets_a_clear_error():
    with pytest.raises(lh.UsageError, match="must return a torch.nn.Module"):
        lh.compare_regimes(lambda: "not a model", DATA, **KW)
    with pytest.raises(lh.UsageError, match="callable"):
        lh.compare_regimes(factory(), DATA, **KW)
    partial = lh.Split(DATA.x, DATA.y, lh.Groups({"first": np.arange(10)}, n=len(DATA)))
    with pytest.raises(lh.UsageError, match="50 of 60 examples in no group"):
        lh.compare_regimes(factory, partial, **KW)
    with pytest.raises(lh.UsageError, match="cannot take the model's outputs of shape \\(2, 1\\)"):
        lh.compare_regimes(factory, DATA, **{**KW, "loss": "cross_entropy"})
    with pytest.raises(lh.UsageError, match="unknown loss 'nope'"):
        lh.compare_regimes(factory, DATA, **{**KW, "loss": "nope"})
    with pytest.raises(lh.UsageError, match="two regimes"):
        lh.compare_regimes(factory, DATA, alphas=(1,), **KW)
    with pytest.raises(lh.UsageError, match="progress measure"):
        lh.compare_regimes(factory, DATA, alphas=(1, 10), seeds=(0,), progress=("train", "nope", "loss"), **KW)


USER_MODULE = '''
import torch
import lazyhasty as lh

def net():
    return lh.MLP([2, 16, 16, 1]).double()

def data():
    return lh.yinyang(60, seed=0, dtype=torch.float64), lh.yinyang(30, seed=1, dtype=torch.float64)

def not_a_model():
    return 3
'''


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "lazyhasty.cli", "compare", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_the_command_line_compares_a_users_model(tmp_path):
    (tmp_path / "mymodels.py").write_text(USER_MODULE)
    common = ["--alphas", "1,10", "--seeds", "0-1", "--loss", "bce", "--stepper", "gd", "--lr", "0.5",
              "--max-steps", "50"]
    r = cli(tmp_path, "--model", "mymodels:net", "--data", "mymodels:data", *common, "--out", "out")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train/disk: gap" in r.stdout and "test/near_boundary" in r.stdout
    assert (tmp_path / "out" / "verdict.csv").exists()
    assert lh.load_runs(tmp_path / "out" / "runs").run_id.nunique() == 4
    for args, msg in ((["--model", "mymodels:nothing", "--data", "mymodels:data"], "has no 'nothing'"),
                      (["--model", "nosuchmodule:net", "--data", "mymodels:data"], "cannot import 'nosuchmodule'"),
                      (["--model", "mymodels", "--data", "mymodels:data"], "expects package.module:name"),
                      (["--model", "mymodels:not_a_model", "--data", "mymodels:data"], "must return a torch.nn.Module"),
                      (["--model", "mymodels:net", "--data", "mymodels:net"], "must return a lazyhasty.Split")):
        r = cli(tmp_path, *args, *common, "--out", "bad")
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_claims_are_not_measured_without_the_regimes_or_the_targets(comp):
    """stays_linear is the hand minimum of each run's linearity rows; a missed target or a regime not shown makes
    every comparison claim 'not measured', never held or not held."""
    m = comp.metrics
    lin = comp.stays_linear()
    for seed in (0, 1):
        for regime, rid in (("feature", f"alpha=1-seed={seed}"), ("lazy", f"alpha=10-seed={seed}")):
            for measure in ("ntk_alignment", "sign_similarity"):
                hand = m[(m.run_id == rid) & (m.metric == measure)].value.min()
                assert lin["per_pair"][str(seed)][regime][measure] == pytest.approx(hand, rel=1e-12)
    expect = all(r["lazy"][k] >= 0.9 for r in lin["per_pair"].values() for k in r["lazy"]) and all(
        any(v < 0.9 for v in r["feature"].values()) for r in lin["per_pair"].values())
    assert lin["held"] == expect
    assert lh.gate(True, {"held": True}) is True and lh.gate(False, {"held": True}) is False
    assert lh.gate(True, {"held": False}) is None and lh.gate(False, {"held": None}) is None
    assert lh.gate(True, {"held": True}, ["alpha=10-seed=0"]) is None
    assert comp.missed() == []  # no loss target: no run can miss it
    short = lh.compare_regimes(factory, DATA, alphas=(1, 10), seeds=(0, 1), **{**KW, "stop": lh.Stop(
        max_steps=10, loss_below=1e-6)})
    assert short.missed() == sorted(short.runs.run_id)  # nobody reaches 1e-6 in 10 steps
    claims = short.claims()
    assert all(c["held"] is None for c in claims if c["id"] != "stays_linear")
    assert all("missed the progress target" in c["numbers"]["note"] for c in claims if c["id"] != "stays_linear")
