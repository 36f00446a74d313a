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
from lazyhasty.errors import UsageError
from lazyhasty.report import build_report


def factory():
    return lh.MLP([2, 16, 16, 1]).double()


DATA = lh.data.yinyang(60, seed=0, dtype=torch.float64)
TEST = lh.data.yinyang(40, seed=1, dtype=torch.float64)
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
    with pytest.raises(lh.UsageError, match="no split 'train' with group 'nope'"):
        lh.compare_regimes(factory, DATA, alphas=(1, 10), seeds=(0,), progress=("train", "nope", "loss"), **KW)
    with pytest.raises(lh.UsageError, match="give compare_regimes\\(..., target=\\)"):  # the target is on the axis
        lh.compare_regimes(factory, DATA, alphas=(1, 10), **{**KW, "stop": lh.Stop(max_steps=5, loss_below=0.3)})
    with pytest.raises(lh.UsageError, match="regime names become run folders"):
        lh.compare_regimes(factory, DATA, regimes=[1.0, lh.Regime(10.0, name="ten/a")], **KW)
    with pytest.raises(lh.UsageError, match="distinct regimes"):
        lh.compare_regimes(factory, DATA, regimes=[1.0, 10.0], lazy="alpha=3", **KW)
    with pytest.raises(lh.UsageError, match="probe_size >= 1"):  # no examples for the linearity metrics
        lh.compare_regimes(factory, DATA, alphas=(1, 10), **{**KW, "probe_size": 0})


USER_MODULE = '''
import torch
import lazyhasty as lh

def net():
    return lh.MLP([2, 16, 16, 1]).double()

def data():
    return lh.data.yinyang(60, seed=0, dtype=torch.float64), lh.data.yinyang(30, seed=1, dtype=torch.float64)

def not_a_model():
    return 3
'''


def cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "lazyhasty.cli", "compare", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_the_command_line_compares_a_users_model(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodels.py").write_text(USER_MODULE)
    common = ["--alphas", "1,10", "--seeds", "0-1", "--loss", "bce", "--stepper", "gd", "--lr", "0.5",
              "--max-steps", "50", "--target", "0.6"]
    r = cli(tmp_path, "--model", "mymodels:net", "--data", "mymodels:data", *common, "--out", "out")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train/disk: gap" in r.stdout and "test/near_boundary" in r.stdout
    assert (tmp_path / "out" / "verdict.csv").exists()
    assert lh.load_runs(tmp_path / "out" / "runs").run_id.nunique() == 4
    bad = [(["--model", "mymodels:nothing", "--data", "mymodels:data"], "has no 'nothing'"),
           (["--model", "nosuchmodule:net", "--data", "mymodels:data"], "cannot import 'nosuchmodule'"),
           (["--model", "mymodels", "--data", "mymodels:data"], "expects package.module:name"),
           (["--model", "mymodels:not_a_model", "--data", "mymodels:data"], "must return a torch.nn.Module"),
           (["--model", "mymodels:net", "--data", "mymodels:net"], "must return a lazyhasty.Split")]
    r = cli(tmp_path, *bad[0][0], *common, "--out", "bad")  # one refusal from a real process: exit code 2, no trace
    assert r.returncode == 2 and bad[0][1] in r.stderr and "Traceback" not in r.stderr, r.stderr
    from lazyhasty.cli import main  # the others in this process (each started a process and imported torch: 3 s)

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # what `import_object(cwd=True)` adds, undone after the test
    try:
        for args, msg in bad[1:]:
            code, err = main(["compare", *args, *common, "--out", "bad"]), capsys.readouterr().err
            assert code == 2 and msg in err and "Traceback" not in err, (args, err)
    finally:
        sys.modules.pop("mymodels", None)
    assert not (tmp_path / "bad").exists()


def test_claims_are_not_measured_without_the_regimes_or_the_targets(comp):
    """stays_linear is the hand minimum of each run's linearity rows; a missed target or a regime not shown makes
    every comparison claim 'not measured', never held or not held."""
    m = comp.metrics
    lin = comp.stays_linear()
    assert lin["measures"] == ["ntk_alignment", "sign_similarity", "representation_alignment"]
    for seed in (0, 1):
        for regime, rid in (("feature", f"alpha=1-seed={seed}"), ("lazy", f"alpha=10-seed={seed}")):
            for measure in lin["measures"]:
                hand = m[(m.run_id == rid) & (m.metric == measure)].value.min()
                assert lin["per_pair"][f"seed {seed}"][regime][measure] == pytest.approx(hand, rel=1e-12)
    expect = all(r["lazy"][k] >= 0.9 for r in lin["per_pair"].values() for k in r["lazy"]) and all(
        any(v < 0.9 for v in r["feature"].values()) for r in lin["per_pair"].values())
    assert lin["held"] == expect
    earned = lh.claims.earned
    assert earned(True, {"held": True}) is True and earned(False, {"held": True}) is False
    assert earned(True, {"held": False}) is None and earned(False, {"held": None}) is None
    assert earned(True, {"held": True}, ["alpha=10-seed=0"]) is None
    assert comp.missed() == []  # no target: no run can miss it
    short = lh.compare_regimes(factory, DATA, alphas=(1, 10), seeds=(0, 1), target=1e-6, **{**KW, "stop": lh.Stop(
        max_steps=10)})
    assert short.missed() == sorted(short.runs.run_id)  # nobody reaches 1e-6 in 10 steps
    claims = short.claims()
    assert all(c["held"] is None for c in claims if c["id"] != "stays_linear")
    assert all("missed the progress target" in c["numbers"]["note"] for c in claims if c["id"] != "stays_linear")


def test_a_diverged_run_missed_its_target_and_earns_no_claim():
    """A run that diverges before its target did not reach the progress where the claims live: it is missed
    (converged False), and no claim rests on it (before, 'stays_linear' came out not held from the diverged runs)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=g, dtype=torch.float64)
    y = torch.where(x[:, 0] * x[:, 1] > 0, 1.0, -1.0)
    far = x[:, 0].abs() > 0.5
    train = lh.Split(x, y, lh.Groups({"far": far, "near": ~far}, n=60))
    regimes = [lh.Regime(1.0, lh.GD(5.0), name="alpha=1"), lh.Regime(100.0, lh.GD(1.0), name="alpha=100")]
    comp = lh.compare_regimes(lambda: lh.MLP([2, 32, 1]).double(), train, regimes=regimes, loss="mse",
                              stop=lh.Stop(max_steps=50), target=0.5, seeds=(0, 2), show_progress=False)
    feature = comp.runs[comp.runs.regime == "alpha=1"]
    assert (feature.status == "diverged").all() and (feature.converged == False).all()  # noqa: E712
    assert comp.missed() == sorted(feature.run_id)
    for c in comp.claims():
        assert c["held"] is None and "missed the progress target" in c["numbers"]["note"], c


def test_per_regime_steppers_and_full_batch_seeds_in_one_ensemble_follow_their_single_runs():
    """Regimes with their own rates (a full-batch stepper trains every seed in one ensemble) and a target on the
    progress measure: each run equals its own single run, trained by hand with that stepper and Stop.reach."""
    regs = [lh.Regime(1.0, lh.GD(0.3)), lh.Regime(10.0, lh.GD(2.0)), lh.Regime(None, lh.GD(0.5), name="lin")]
    comp = lh.compare_regimes(factory, DATA, regimes=regs, lazy="alpha=10", loss="bce", stop=lh.Stop(max_steps=400),
                              target=0.55, seeds=(0, 1), show_progress=False, linearity=False)
    assert (comp.feature, comp.lazy) == ("alpha=1", "alpha=10") and comp.settings["target"] == 0.55
    for seed in (0, 1):
        for r in regs:
            net = lh.seeded(factory, seed)
            single = lh.train(lh.Linearized(net) if r.alpha is None else lh.AlphaScaled(net, r.alpha), DATA,
                              loss="bce", stepper=r.stepper, schedule=lh.Schedule(points_per_decade=8),
                              stop=lh.Stop(max_steps=400, reach=(("train", "all", "loss", 0.55),)), progress=False)
            got = comp.results[f"{r.label}-seed={seed}"]
            assert (got.steps, got.converged) == (single.steps, single.converged) and got.converged
            np.testing.assert_allclose(got.trace.loss, single.trace.loss, rtol=1e-10, atol=1e-13)
    assert comp.missed() == [] and comp.table.progress.min() == pytest.approx(0.55)  # the levels end at the target


def rising(gaps: dict, seeds=4, levels=(0.6, 0.7, 0.8, 0.9)):
    """An accuracy-axis table: the 'rare' group's accuracy of each regime is half the progress level plus its
    offset (per seed: + 0.001 seed, so that the intervals are not degenerate); the feature regime's kernel moved."""
    rows = []
    for s in range(seeds):
        for regime, off in gaps.items():
            for p in levels:
                for group, acc in (("common", p), ("rare", p / 2 + off + 0.001 * s)):
                    rows.append({"run_id": f"{regime}-seed={s}", "step": int(p * 10), "split": "train", "group": group,
                                 "metric": "accuracy", "value": acc})
                rows.append({"run_id": f"{regime}-seed={s}", "step": int(p * 10), "split": "train", "group": "all",
                             "metric": "loss", "value": 1 - p})
                rows.append({"run_id": f"{regime}-seed={s}", "step": int(p * 10), "split": "probe", "group": "all",
                             "metric": "ntk_alignment", "value": 0.5 if regime == "feature" else 0.99})
    m = pd.DataFrame(rows)
    runs = m[["run_id"]].drop_duplicates().assign(seed=lambda d: d.run_id.str.split("=").str[-1].astype(int),
                                                  regime=lambda d: d.run_id.str.split("-seed").str[0], alpha=1.0,
                                                  converged=True)
    return m, runs


def test_an_accuracy_axis_rises_and_higher_is_ahead():
    m, runs = rising({"feature": 0.1, "lazy": 0.0})
    c = lh.compare_runs(m, runs, progress=("train", "common", "accuracy"), feature="feature", lazy="lazy",
                        levels=[0.65, 0.75, 0.85])
    v = c.verdict.set_index("group").loc["rare"]
    assert v.ahead == "feature" and v.gap == pytest.approx(0.1) and v.levels == 3  # higher accuracy: ahead
    assert c.settings["measure"] == "accuracy" and list(c.table.progress.unique()) == [0.65, 0.75, 0.85]
    swapped = lh.compare_runs(m, runs, progress=("train", "common", "accuracy"), feature="lazy", lazy="feature",
                              levels=[0.65, 0.75, 0.85]).verdict.set_index("group").loc["rare"]
    assert swapped.ahead == "lazy" and swapped.gap == pytest.approx(-0.1)
    per_seed, used = c.gaps("feature", "lazy", "train", "rare")
    assert np.allclose(per_seed, 0.1) and used == [0.65, 0.75, 0.85]


def test_tables_that_give_no_single_answer_are_refused_and_a_non_finite_point_is_left_out():
    """Two values for one point (two tables of a run joined), or runs that do not pair one feature and one lazy
    run per seed, are refused; a point where the progress measure is not finite (a diverged run's last) has no
    place on the axis and is left out, instead of ending that run's range there."""
    m, runs = rising({"feature": 0.1, "lazy": 0.0})
    kw = dict(progress=("train", "common", "accuracy"), feature="feature", lazy="lazy", levels=[0.65, 0.75, 0.85])
    joined = pd.concat([m, m[m.run_id == "feature-seed=0"].assign(value=lambda d: d.value + 0.01)])
    with pytest.raises(ValueError, match="two different values"):
        lh.compare_runs(joined, runs, **kw)
    with pytest.raises(UsageError, match="per seed"):
        lh.compare_runs(m, runs[runs.run_id != "lazy-seed=0"], **kw)
    with pytest.raises(UsageError, match="twice"):
        lh.compare_runs(m, pd.concat([runs, runs.iloc[:1]]), **kw)
    common = (m.group == "common") & (m.metric == "accuracy") & (m.run_id == "lazy-seed=0")
    m.loc[common & (m.step == 7), "value"] = np.nan  # before, the run's range ended at the point before it
    v = lh.compare_runs(m, runs, **kw).verdict.set_index("group").loc["rare"]
    assert v.ahead == "feature" and v.gap == pytest.approx(0.1) and v.levels == 3


def test_a_verdict_that_changes_with_the_lazy_rate_is_not_measured():
    for other, expect in ((0.001, True), (0.2, None)):  # a second lazy run close to the first, or one that flips it
        m, runs = rising({"feature": 0.1, "lazy": 0.0, "lazy2": other})
        c = lh.compare_runs(m, runs, progress=("train", "common", "accuracy"), feature="feature", lazy="lazy",
                            levels=[0.65, 0.75, 0.85], settings={"rate_check": "lazy2"}, exact=False)
        claim = c.answer("x", "the feature regime learns the rare group first, whatever the lazy rate", "test",
                         "train", "rare")
        assert claim["held"] is expect and claim["numbers"]["rate_check"]["same_verdict"] is (expect is True)
        assert expect or "changes with the lazy run's rate" in claim["numbers"]["note"]


def test_linearity_verdict_on_the_measures_the_network_has():
    """Every recorded measure counts (the lazy run >= 0.9 on all, the feature run below on one); a kernel distance
    is judged as 1 - distance when asked for; a measure a network lacks is named with why."""
    rows = [("f", "ntk_alignment", 0.97), ("f", "representation_alignment", 0.4), ("f", "ntk_distance", 3.0),
            ("l", "ntk_alignment", 0.999), ("l", "representation_alignment", 0.95), ("l", "ntk_distance", 0.2)]
    m = pd.DataFrame(rows, columns=["run_id", "metric", "value"])
    v = lh.claims.linearity_verdict(m, {0: ("f", "l")})
    assert v["held"] is True and v["measures"] == ["ntk_alignment", "representation_alignment"]
    assert v["moved"] == {"0": ["representation_alignment"]} and "no ReLU" in v["note"]
    d = lh.claims.linearity_verdict(m, {0: ("f", "l")}, measures=("ntk_alignment", "ntk_distance"), why="test")
    assert d["held"] is False and d["per_pair"]["0"]["lazy"]["kernel_similarity"] == pytest.approx(0.8)
    assert d["why"] == "test" and d["per_pair"]["0"]["feature"]["kernel_similarity"] == pytest.approx(-2.0)
    assert lh.claims.linearity_verdict(m, {0: ("f", "l")}, exact=["l"], measures=("ntk_distance",))["held"] is True
    undefined = pd.concat([m, pd.DataFrame([("l", "representation_alignment", np.nan)], columns=m.columns)])
    u = lh.claims.linearity_verdict(undefined, {0: ("f", "l")})  # a NaN point (a dead representation) is not skipped
    assert u["held"] is None and "non-finite" in u["note"]


def test_the_kernel_regime_at_two_rates_agrees_at_equal_progress():
    """Why a lazy regime may take its own rate: a linearised network's GD path at equal progress converges as the
    rate falls (to its gradient flow), so halving the rate moves its per-group losses at equal progress far less
    than the regime gap does (float64)."""
    runs = []
    for name, wrap, lr in (("lin", lh.Linearized, 1.0), ("lin_half", lh.Linearized, 0.5),
                           ("feature", lambda m: lh.AlphaScaled(m, 1.0), 0.5)):
        r = lh.train(wrap(lh.seeded(factory, 0)), DATA, loss="bce", stepper=lh.GD(lr), progress=False,
                     stop=lh.Stop(max_steps=3000, reach=(("train", "all", "loss", 0.45),)), run_id=name,
                     schedule=lh.Schedule(points_per_decade=20, milestone_ratio=0.98))
        assert r.converged
        runs.append(r.metrics)
    m = pd.concat(runs)
    t = lh.metrics.at_equal_progress(m, grid=np.geomspace(0.68, 0.45, 10))
    t = t[(t.metric == "loss") & (t.split == "train") & (t.group != "all")]
    piv = t.pivot_table(index=["group", "progress"], columns="run_id", values="value")
    rate = (piv.lin - piv.lin_half).abs().max()
    regime = (piv.feature - piv.lin).abs().max()
    assert rate < regime / 10, (rate, regime)
