"""The command line: bad input is one line on stderr and exit code 2; a run writes its records."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pandas as pd
import pytest

from lazyhasty.cli import main
from lazyhasty.config import override
from lazyhasty.errors import UsageError


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(w in text for w in ("demo", "run", "list"))
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "demo" in out and "quick" in out and "paper" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "nope"], "unknown experiment 'nope'"),
        (["run", "demo", "--preset", "huge"], "no preset 'huge'"),
        (["run", "demo", "--set", "colour=red"], "unknown key 'colour'"),
        (["run", "demo", "--set", "max_steps=many"], "max_steps expects an integer"),
        (["run", "demo", "--set", "alphas=0,100"], "alphas must be at least two distinct numbers > 0"),
        (["run", "demo", "--set", "alphas=-1"], "alphas must be at least two distinct numbers > 0"),
        (["run", "demo", "--set", "lr"], "expects key=value"),
        (["run", "fig1", "--set", "thresholds=2"], "lie between 0 and the initial loss"),  # before any training
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_output_folder(capsys, tmp_path):
    (tmp_path / "f").write_text("a file, not a folder")
    code, _, err = run_cli(capsys, "run", "demo", "--out", str(tmp_path / "f" / "out"))
    assert code == 2 and "cannot write to output folder" in err and err.count("\n") == 1


def test_demo_run_writes_records_and_report(capsys, tmp_path, monkeypatch):
    code, out, err = run_cli(capsys, "run", "demo", "--out", str(tmp_path), "--set", "max_steps=60", "--tensorboard",
                             "--set", "n_train=40", "--set", "widths=16,16", "--set", "dtype=float64",
                             "--set", "seeds=2")
    assert code == 0, err
    for f in ("experiment.json", "summary.json", "summary.txt", "claims.json", "comparison.png", "table.parquet"):
        assert (tmp_path / f).stat().st_size > 0, f
    for rid in ("alpha=1-seed=0", "alpha=100-seed=0", "alpha=1-seed=1", "alpha=100-seed=1"):
        status = json.loads((tmp_path / "runs" / rid / "status.json").read_text())
        assert status["status"] == "complete" and status["converged"] is False  # 60 steps do not reach loss 0.3
        cfg = json.loads((tmp_path / "runs" / rid / "config.json").read_text())
        assert cfg["regime"] == rid.split("-seed")[0] and cfg["seed"] == int(rid[-1])
        assert list((tmp_path / "runs" / rid / "tensorboard").glob("events.out.tfevents.*"))  # --tensorboard
    m1 = pd.read_parquet(tmp_path / "runs" / "alpha=1-seed=0" / "trace.parquet")
    m100 = pd.read_parquet(tmp_path / "runs" / "alpha=100-seed=0" / "trace.parquet")
    assert m1["loss"].iloc[0] == m100["loss"].iloc[0]  # forked: same theta0, same initial loss
    assert "alpha=100" in out and "at equal train/all/loss" in out
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert claims["experiment"] == "demo" and [c["id"] for c in claims["claims"]] == ["stays_linear"]


def test_console_entry_point_exit_code():
    p = subprocess.run([sys.executable, "-m", "lazyhasty.cli", "run", "demo", "--set", "alphas=0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "alpha" in p.stderr


@dataclass(frozen=True)
class _Cfg:
    a: int = 1
    b: float = 0.5
    c: tuple[float, ...] = (1.0,)
    d: bool = False
    e: str | None = None


def test_override_types():
    cfg = override(_Cfg(), ["a=3", "b=1e-3", "c=1,10,100", "d=true", "e=none"])
    assert cfg == _Cfg(3, 1e-3, (1.0, 10.0, 100.0), True, None)
    assert override(_Cfg(), ["e=x"]).e == "x"
    for bad in (["a=1.5"], ["d=maybe"], ["c="], ["z=1"]):
        with pytest.raises(UsageError):
            override(_Cfg(), bad)


def test_claims_table_show_and_readme_block(tmp_path, capsys):
    """`lazyhasty claims DIR` prints every claim of every experiment under DIR, `--readme` replaces only the marked
    block, `show DIR` prints the claims; bad input is exit 2 with one line."""
    import json

    root = tmp_path / "runs"
    for name, claims in (("fig4", [{"id": "example1", "text": "Example 1: the order flips between the regimes",
                                    "source": "Fig. 4", "held": True, "numbers": {}}]),
                         ("fig3", [{"id": "robust_first@bal_test", "text": "alpha=100 is more robust at first",
                                    "source": "Fig. 3", "held": None, "numbers": {"note": "a run missed"}}])):
        (root / name).mkdir(parents=True)
        (root / name / "experiment.json").write_text(json.dumps({"experiment": name, "preset": "quick",
                                                                 "wall_s": 12.3}))
        (root / name / "claims.json").write_text(json.dumps({"experiment": name, "claims": claims}))
    assert main(["claims", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| fig4 (quick, 12 s) | `example1` | **held** |" in out and "**not measured**" in out
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- claims:begin -->\nold\n<!-- claims:end -->\noutro\n")
    assert main(["claims", str(root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- claims:begin -->\n| experiment")
    assert text.endswith("<!-- claims:end -->\noutro\n")
    assert "old" not in text and text.count("robust_first@bal_test") == 1
    assert main(["show", str(root)]) == 0 and "example1: HELD" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["claims", str(tmp_path / "empty"), "--readme", str(readme)]) == 2  # the table stays
    assert readme.read_text() == text and "no claims.json under" in capsys.readouterr().err
    readme.write_text("no markers\n")
    for args, msg in ((["claims", str(tmp_path / "none")], "no such folder"),
                      (["claims", str(root), "--readme", str(readme)], "block to replace"),
                      (["show", str(tmp_path / "README.md")], "unknown experiment")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err
