"""Experiments end to end at tiny sizes: they run from the CLI and write figures, records and claims."""

import json

import pandas as pd

from lazyhasty.cli import main


def test_fig4_reproduces_the_closed_form_claims(tmp_path, capsys):
    assert main(["run", "fig4", "--out", str(tmp_path), "--set", "points=25"]) == 0
    for f in ("fig4.png", "fig4.pdf", "curves.parquet", "summary.txt", "claims.json"):
        assert (tmp_path / f).stat().st_size > 0
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert claims["example1_flipped"] and claims["example2_held"] and claims["example3_held"]
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    assert set(curves.example) == {"example1", "example2", "example3"} and set(curves.run) == {"nonlinear", "linear"}


def test_fig14_runs_and_reports_orderings(tmp_path, capsys):
    code = main(["run", "fig14", "--out", str(tmp_path), "--set", "width=16", "--set", "max_steps=300",
                 "--set", "alphas=1,100"])
    assert code == 0
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert {"example1_held", "example2_held", "example3_held"} <= set(claims)
    assert (tmp_path / "fig14.png").stat().st_size > 0
    runs = sorted(p.name for p in tmp_path.iterdir() if (p / "status.json").exists())
    assert len(runs) == 9 and "example2-linearized" in runs  # 3 examples x (2 alphas + linearized)
    cfg = json.loads((tmp_path / "example1-alpha=1" / "config.json").read_text())
    assert cfg["lr"] > 0 and cfg["alpha"] == 1.0


def test_fig1_tiny(tmp_path, capsys):
    code = main(["run", "fig1", "--out", str(tmp_path), "--set", "seeds=3", "--set", "grid=20",
                 "--set", "max_steps=400", "--set", "thresholds=0.6,0.55", "--set", "bootstrap=100"])
    assert code == 0
    import numpy as np

    with np.load(tmp_path / "grid.npz") as z:
        assert z["losses"].shape == (2, 2, 3, 20, 20)
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert {"claim_held", "thresholds", "train_s", "eval_s"} <= set(claims)
    assert (tmp_path / "fig1.png").stat().st_size > 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 6 and all((r / "metrics.parquet").exists() for r in runs)
