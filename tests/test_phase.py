"""The phase experiment (Geiger et al. 2020): scaling fits against exact data, paired initialisations, the lazy
regime's kernel-change slope on a tiny configuration, end to end through the CLI, and bad input."""

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import read_claims
from lazyhasty import seeded
from lazyhasty.config import override, to_assignments
from lazyhasty.experiments import registry
from lazyhasty.experiments.phase import (
    PRESETS,
    Config,
    cell_configs,
    cell_ensemble,
    cell_jobs,
    factory,
    run_cell,
    run_rows,
)
from lazyhasty.experiments.phase_analysis import regime_winner, variance_collapse
from lazyhasty.metrics.scaling import broken_power_law, consistent, crossing_time, power_law, seed_bootstrap
from lazyhasty.report import build_report
from lazyhasty.runs import Output

# ---------------------------------------------------------------- fits against exact and noisy synthetic data


def test_power_law_exact_and_interval():
    x = np.geomspace(0.1, 1000, 9)
    fit = power_law(x, 3.0 * x**-1.0)
    assert abs(fit["slope"] + 1) < 1e-12 and abs(fit["log10_c"] - math.log10(3)) < 1e-12
    rng = np.random.default_rng(0)
    xs = np.repeat(x, 5)
    hits = 0
    for _ in range(200):  # the 95% interval covers the true slope about 95% of the time
        y = 2.0 * xs**0.5 * np.exp(0.2 * rng.standard_normal(len(xs)))
        lo, hi = power_law(xs, y)["slope_ci"]
        hits += lo <= 0.5 <= hi
    assert 0.88 <= hits / 200 <= 0.995
    assert math.isnan(power_law([1, 1], [2, 3])["slope"])  # one distinct x: no fit
    assert power_law([1, 2, -1, np.nan], [1, 2, 3, 4])["n"] == 2  # non-positive / non-finite points dropped


def test_broken_power_law_recovers_the_breakpoint():
    x = np.geomspace(0.01, 1000, 11)
    x_star = 2.0
    y = np.where(x < x_star, (x / x_star) ** 1.0, (x / x_star) ** 0.0) * 4.0  # t ~ x below, flat above
    b = broken_power_law(x, y, grid=2000)
    assert abs(math.log10(b["x_star"] / x_star)) < 0.01
    assert abs(b["slope_low"] - 1) < 1e-2 and abs(b["slope_high"]) < 1e-2
    assert abs(b["log10_y_star"] - math.log10(4)) < 1e-2
    assert math.isnan(broken_power_law([1, 2, 3], [1, 2, 3])["x_star"])  # too few distinct x


def test_broken_power_law_equals_a_scan_of_least_squares_fits():
    """The candidates are fitted all at once; a scan over them, one np.linalg.lstsq each, gives the same fit
    (float64), on noisy data with repeated x (seeds) and on exact two-piece data."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        x = np.repeat(np.geomspace(0.01, 100, 5 + trial), 3)
        y = np.exp(rng.normal(0, 0.3 * (trial % 3), len(x))) * np.minimum(x, 2.0) ** 0.7
        u, v = np.log10(x), np.log10(y)
        best = None
        for ustar in np.linspace(np.unique(u)[1], np.unique(u)[-2], 150):
            A = np.stack([np.ones_like(u), np.minimum(u - ustar, 0), np.maximum(u - ustar, 0)], 1)
            coef = np.linalg.lstsq(A, v, rcond=None)[0]
            sse = float(((v - A @ coef) ** 2).sum())
            if best is None or sse < best[0] - 1e-12:
                best = (sse, ustar, coef)
        b = broken_power_law(x, y, grid=150)
        assert b["sse"] == pytest.approx(best[0], rel=1e-9, abs=1e-12)
        assert math.log10(b["x_star"]) == pytest.approx(best[1], abs=1e-12)
        assert [b["log10_y_star"], b["slope_low"], b["slope_high"]] == pytest.approx(list(best[2]), abs=1e-9)


def test_seed_bootstrap_resamples_whole_seeds():
    seeds = np.repeat([0, 1, 2, 3], 5)
    value = np.array([10.0, 20.0, 30.0, 40.0])[seeds]
    drawn = []

    def fit(idx):
        drawn.append(idx)
        return {"m": float(value[idx].mean())}

    ci = seed_bootstrap(fit, seeds, ["m"], reps=300)
    assert 10 <= ci["m"][0] < 25 < ci["m"][1] <= 40
    for idx in drawn[:20]:  # every seed drawn contributes all its rows
        counts = np.bincount(seeds[idx], minlength=4)
        assert set(counts) <= {0, 5, 10, 15, 20}


def test_crossing_time_and_consistent():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    loss = 1.0 - t / 4  # linear: reaches 0.5 at t = 2 exactly, 0.4 at 2.4
    assert crossing_time(t, loss, 0.5) == 2.0
    assert abs(crossing_time(t, loss, 0.4) - 2.4) < 1e-12
    assert math.isnan(crossing_time(t, loss, 0.1))
    assert consistent(-0.9, (-1.2, -0.8), -1, 0.01) and consistent(-0.95, (math.nan, math.nan), -1, 0.1)
    assert not consistent(-0.5, (-0.7, -0.3), -1, 0.15)


def test_regime_winner_and_variance_collapse_on_tables():
    rows = [{"h": h, "seed": s, "sqrt_h_alpha": sa, "test_err_end": err + 0.001 * s}
            for h in (16, 64) for s in range(3) for sa, err in ((0.01, 0.10), (1.0, 0.2), (100.0, 0.05))]
    w = regime_winner(pd.DataFrame(rows))  # no crossover given: the extremes
    assert w["winner"] == "lazy" and abs(w["diff"] - 0.05) < 1e-12 and w["pairs"] == 6
    rows += [{**r, "sqrt_h_alpha": 0.001, "test_err_end": 0.30} for r in rows if r["sqrt_h_alpha"] == 0.01]
    w = regime_winner(pd.DataFrame(rows), x_star=1.0)  # sides: <= 0.316 (0.001, 0.01) and >= 3.16 (100)
    assert w["feature_sqrt_h_alpha"] == (0.001, 0.01) and w["lazy_sqrt_h_alpha"] == (100.0, 100.0)
    assert abs(w["diff"] - (0.15 - 0.0005)) < 1e-12 and w["winner"] == "lazy"  # (0.30 + 0.10)/2 - 0.05, seeds
    cells = pd.DataFrame([{"sqrt_h_alpha": sa, "h": h, "var_end": c / h, "h_var_end": c}
                          for sa, c in ((0.1, 2.0), (1.0, 5.0)) for h in (16, 64, 256)])
    v = variance_collapse(cells)
    assert v["spread_h_var"] == 0 and v["spread_var"] > 0.5 and v["points"] == 2


# ---------------------------------------------------------------- configuration


def test_every_preset_round_trips_through_assignments():
    for exp in registry().values():
        for name, cfg in exp.presets.items():
            base = next(iter(exp.presets.values()))
            assert override(base, to_assignments(cfg)) == cfg, (exp.name, name)


def test_cells_split_the_grid_widest_first():
    cfg = dataclasses.replace(PRESETS["tiny"], widths=(8, 32), sqrt_h_alphas=(0.1, 10.0))
    cells = cell_configs(cfg)
    assert [(c.widths, c.sqrt_h_alphas) for c in cells] == [((32,), (0.1,)), ((32,), (10.0,)), ((8,), (0.1,)),
                                                            ((8,), (10.0,))]
    assert all(len(c.widths) == len(c.sqrt_h_alphas) == 1 for c in cells)
    assert {j.registry for j in cell_jobs(cfg, Path("/nonexistent"))} == {"lazyhasty.experiments.phase:cells"}


@pytest.mark.parametrize("bad, msg", [(["arch=cnn"], "pca=none"), (["progress=0.5"], "progress"),
                                      (["sqrt_h_alphas=0,1"], "sqrt_h_alphas"), (["source=svhn"], "source")])
def test_bad_config_is_a_usage_error(bad, msg):
    from lazyhasty.errors import UsageError

    with pytest.raises(UsageError, match=msg):
        override(PRESETS["quick"], bad)


# ---------------------------------------------------------------- paired initialisations


@pytest.mark.parametrize("arch", ["fc", "cnn"])
def test_same_seed_same_theta0_at_every_alpha(arch):
    cfg = Config(arch=arch, pca=None if arch == "cnn" else 10, source="fashion_mnist", depth=2)
    shape = (1, 12, 12) if arch == "cnn" else (10,)
    cfg = dataclasses.replace(cfg, seeds=3)
    a, b = cell_ensemble(cfg, 8, 0.01, shape), cell_ensemble(cfg, 8, 100.0, shape)
    pa, pb = a.stacked_params0(), b.stacked_params0()
    for k in pa:
        assert torch.equal(pa[k], pb[k])
    ref = dict(seeded(factory(cfg, 8, shape), 1).named_parameters())  # member 1 is exactly seeded(factory, 1)
    for k in pa:
        assert torch.equal(pa[k][1], ref[k].detach())
    assert a.member(1).alpha == pytest.approx(0.01 / math.sqrt(8)) and a.member(1).center == "zero"
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), torch.zeros(3, 5, 1)) and torch.equal(b(x), torch.zeros(3, 5, 1))  # F(θ0) = 0
    first = next(iter(pa))
    assert not torch.equal(pa[first][0], pa[first][1])  # seeds differ


# ---------------------------------------------------------------- physics on a tiny configuration


def test_lazy_regime_kernel_change_slope_is_minus_one(tmp_path):
    """Deep in the lazy regime, ||Θ_t − Θ_0|| / ||Θ_0|| ∝ 1/(√h α) at a fixed time (Geiger et al.)."""
    rows = []
    for sa in (30.0, 100.0, 300.0, 1000.0):
        cfg = Config(source="teacher", ptr=40, pte=40, pca=None, widths=(32,), sqrt_h_alphas=(sa,), seeds=2,
                     depth=2, max_steps=3000, n_probe=20, dtype="float64")
        run_cell(cfg, Output(tmp_path / f"sa{sa:g}"))
        rows += run_rows(tmp_path / f"sa{sa:g}" / "runs")
    df = pd.DataFrame(rows)
    assert df.reached_progress.all()  # compared at equal progress: training loss = 0.03 L(0)
    fit = power_law(df.sqrt_h_alpha, df.kernel_change_progress)
    assert abs(fit["slope"] + 1) < 0.05, fit
    assert abs(power_law(df.sqrt_h_alpha, df.param_change_progress)["slope"] + 1) < 0.05  # ||w − w0|| too
    t = df.pivot(index="seed", columns="sqrt_h_alpha", values="t_progress")  # lazy: the time does not depend on α
    assert np.allclose(t[1000.0], t[300.0], rtol=0.02)


def test_phase_end_to_end_through_the_cli_and_resume(tmp_path, capsys):
    out = tmp_path / "phase"
    sets = ["source=teacher", "pca=none", "widths=8,32", "sqrt_h_alphas=0.01,0.1,1,10,100", "seeds=2", "ptr=30",
            "pte=40", "max_steps=300", "n_probe=10"]
    args = ["run", "phase", "--preset", "tiny", "--out", str(out), *(a for s in sets for a in ("--set", s))]
    from lazyhasty.cli import main  # in this process (the cells run in a sweep worker of their own)
    from lazyhasty.plotting.style import FigureWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0, capsys.readouterr().err[-2000:]
    assert not [w for w in caught if issubclass(w.category, FigureWarning)], [str(w.message) for w in caught]
    for f in ("phase.png", "phase.pdf", "fits.csv", "summary.txt", "claims.json", "phase_runs.parquet",
              "phase_cells.parquet"):
        assert (out / f).is_file(), f
    runs = pd.read_parquet(out / "phase_runs.parquet")
    assert len(runs) == 2 * 5 * 2 and set(runs.status) <= {"complete", "diverged"}
    assert runs.converged.dtype == bool  # unconverged runs are kept and flagged, not dropped
    claims = read_claims(out, "phase", ["lazy_kernel_slope", "alpha_star_scaling", "f_minus_f0_unneeded",
                                        "test_error_plateau"])
    assert claims["f_minus_f0_unneeded"]["held"] is None  # two widths: not measured (needs three)
    assert np.isfinite(runs.f0_rms).all() and (runs.f0_rms > 0).all()
    page = build_report(out).read_text()  # the fits, not the cells' jobs
    assert "Scaling fits" in page and "Sweep" not in page and page.count("<section") == 1
    fits = pd.read_csv(out / "fits.csv")
    assert fits.quantity.str.contains("lazy side").any() and "Plain statements" in (out / "summary.txt").read_text()
    cells = pd.read_parquet(out / "phase_cells.parquet")
    assert len(cells) == 10 and np.isfinite(cells.ensemble_test_err_end).all()
    capsys.readouterr()

    def again(argv):
        code = main(argv)
        return code, *capsys.readouterr()

    code, _, err = again(args)  # the folder holds a run: refused without --resume
    assert code == 2 and "already holds records" in err and "Traceback" not in err
    args.append("--resume")
    code, stdout, _ = again(args)  # a second run keeps every finished cell
    assert code == 0 and "10 already done, 0 to run" in stdout, stdout[-1000:]
    sub = [a.replace("0.01,0.1,1,10,100", "0.1,1,10,100") for a in args]  # a sub-grid: its cells exist already
    code, stdout, _ = again(sub)
    assert code == 0 and "8 already done, 0 to run" in stdout, stdout[-1000:]
    assert len(pd.read_parquet(out / "phase_runs.parquet")) == 2 * 4 * 2  # only this grid's cells are analysed
    # a run whose trace table is gone: refused, naming the run
    runs_dir = next((out / "cells").glob("*/runs"))
    assert len(run_rows(runs_dir)) == 2
    next(runs_dir.glob("*/trace.parquet")).unlink()
    with pytest.raises(OSError, match="has a metrics table but no trace table"):
        run_rows(runs_dir)


def test_a_cell_killed_after_training_and_resumed_keeps_its_progress_outputs(tmp_path, monkeypatch):
    """The test outputs at the equal-progress point are measured once, during training: a cell whose process dies
    after its training call resumes (the call is not run again) with the same outputs.npz as an uninterrupted one.
    The cell runs here as a sweep worker runs it (its registry's experiment, through ``run_experiment``)."""
    import lazyhasty as lh
    from lazyhasty.dynamics.checkpoint import Checkpointing
    from lazyhasty.experiments.phase import cells
    from lazyhasty.runs.sweep import run_experiment

    cfg = dataclasses.replace(PRESETS["tiny"], source="teacher", pca=None, ptr=30, pte=20, depth=2, widths=(8,),
                              sqrt_h_alphas=(10.0,), seeds=2, max_steps=3000, n_probe=10, dtype="float64")
    cell = cells()["phase"]

    def run(folder, resume=False):
        folder.mkdir(exist_ok=True)
        return run_experiment(cell, cfg, Output(folder, Checkpointing(folder, 60.0, resume)))

    run(tmp_path / "ref")
    train = lh.train

    def killed(*a, **k):  # the process dies right after its training call
        train(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(lh, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "k")
    monkeypatch.setattr(lh, "train", train)
    run(tmp_path / "k", resume=True)
    with np.load(tmp_path / "ref" / "outputs.npz") as ref, np.load(tmp_path / "k" / "outputs.npz") as got:
        assert np.isfinite(ref["f_progress"]).all() and ref["f_progress"].shape == (2, 20, 1)
        for key in ("f_end", "f_progress", "y"):
            np.testing.assert_array_equal(got[key], ref[key])


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    from lazyhasty.cli import main

    code = main(["run", "phase", "--out", str(tmp_path / "o"), "--set", "source=mnist", "--set",
                 f"data_root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "MNIST file" in err and "Traceback" not in err, err


def test_cnn_cell_on_image_files(tmp_path):
    """The CNN in the NTK parametrisation on images in the IDX format (a fixture written like the real files)."""
    from test_images import write_idx

    rng = np.random.default_rng(3)
    for split, n in (("train", 40), ("t10k", 20)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051, gz=False)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, 2049, gz=False)
    cfg = Config(source="mnist", data_root=str(tmp_path), arch="cnn", pca=None, ptr=20, pte=10, depth=2,
                 widths=(4,), sqrt_h_alphas=(1.0,), seeds=2, max_steps=15, n_probe=6)
    run_cell(cfg, Output(tmp_path / "cell"))
    df = pd.DataFrame(run_rows(tmp_path / "cell" / "runs"))
    assert len(df) == 2 and (df.steps > 0).all() and np.isfinite(df.kernel_change_end).all()
    assert (df.kernel_change_end > 0).all() and np.isfinite(df.test_err_end).all()
    with np.load(tmp_path / "cell" / "outputs.npz") as z:
        assert z["f_end"].shape == (2, 10, 1) and np.isfinite(z["f_end"]).all()


def test_three_class_yinyang_cell(tmp_path):
    """Kriener et al.'s three classes: three outputs, the multi-class soft hinge, arg-max predictions."""
    cfg = Config(source="yinyang", pca=None, ptr=30, pte=30, depth=2, widths=(16,), sqrt_h_alphas=(1.0,), seeds=2,
                 max_steps=40, n_probe=8)
    run_cell(cfg, Output(tmp_path))
    df = pd.DataFrame(run_rows(tmp_path / "runs"))
    assert len(df) == 2 and np.isfinite(df.test_err_end).all() and (df.test_err_end < 1).all()
    with np.load(tmp_path / "outputs.npz") as z:
        assert z["f_end"].shape == (2, 30, 3) and set(np.unique(z["y"])) <= {0, 1, 2}
    from lazyhasty.experiments.phase import predict

    F = np.array([[[0.1, 0.9, -1.0], [2.0, 0.0, 0.0]]])
    assert predict(F).tolist() == [[1, 0]] and predict(np.array([[0.3], [-2.0]])).tolist() == [1.0, -1.0]
