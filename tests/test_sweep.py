"""Sweeps: planning, skipping completed jobs, and the fault tests (SIGKILL, dead worker, corrupt records)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import alive
from lazyhasty.cli import main
from lazyhasty.errors import UsageError
from lazyhasty.experiments import REGISTRY
from lazyhasty.runs.sweep import cores, job_state, load_sweep_file, parse_seeds, plan, run_sweep, share_cores

FAST = ["n_train=30", "widths=8,8", "max_steps=60", "seeds=1", "dtype=float64"]


def events(out: Path) -> list[dict]:
    f = out / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def completes_per_job(out: Path) -> dict:
    c: dict = {}
    for e in events(out):
        if e["event"] in ("complete", "diverged"):
            c[e["job"]] = c.get(e["job"], 0) + 1
    return c


def metrics_by_job(out: Path) -> dict:
    return {p.parent.parent.parent.name + "/" + p.parent.name: pd.read_parquet(p)
            for p in out.glob("*/runs/*/metrics.parquet")}


def test_plan_ids_grid_and_seeds(tmp_path):
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("1,5,7") == [1, 5, 7]
    assert parse_seeds("0-1,4") == [0, 1, 4]
    for bad in ("a-b", "3-1", ""):
        with pytest.raises(UsageError):
            parse_seeds(bad)
    jobs = plan(REGISTRY, "demo", "quick", FAST, ["lr=0.1,0.5", "alphas=1,10;1,100"], "0-1", tmp_path)
    assert len(jobs) == 8 and len({j.id for j in jobs}) == 8
    again = plan(REGISTRY, "demo", "quick", FAST, ["lr=0.1,0.5", "alphas=1,10;1,100"], "0-1", tmp_path)
    assert [j.id for j in jobs] == [j.id for j in again]  # stable ids
    assert {tuple(j.config["alphas"]) for j in jobs} == {(1.0, 10.0), (1.0, 100.0)}
    with pytest.raises(UsageError, match="unknown grid key"):
        plan(REGISTRY, "demo", "quick", [], ["colour=red"], None, tmp_path)
    fig1 = plan(REGISTRY, "fig1", "quick", [], [], "3-4", tmp_path)  # a seed count: one job per seed all the same
    assert [(j.config["seed"], j.config["seeds"]) for j in fig1] == [(3, 1), (4, 1)]
    with pytest.raises(UsageError, match="at most 10000"):
        plan(REGISTRY, "demo", "quick", [], [], "0-100000000", tmp_path)
    f = tmp_path / "sweep.toml"
    f.write_text('experiment = "demo"\nseeds = "0-1"\nset = ["max_steps=10"]\n[grid]\nlr = [0.1, 0.2]\n'
                 'alphas = [[1, 10], [1, 100]]\n')
    spec = load_sweep_file(f)
    assert spec["experiment"] == "demo" and spec["grid"] == ["lr=0.1,0.2", "alphas=1,10;1,100"]


def test_sweep_runs_once_and_skips_completed(tmp_path, capsys, monkeypatch):
    args = ["sweep", "demo", "--grid", "lr=0.2,0.5", "--seeds", "0-1", "--out", str(tmp_path), "--workers", "2"]
    for a in FAST:
        args += ["--set", a]
    assert main([*args, "--tensorboard"]) == 0
    said = capsys.readouterr().out
    workers, threads = share_cores(2, cores())
    assert "4 complete, 0 diverged, 0 failed" in said
    assert f"4 to run; {workers} worker{'s' * (workers > 1)} x {threads} torch thread" in said
    events = list(tmp_path.glob("*/runs/alpha=*/tensorboard/events.out.tfevents.*"))  # written by the worker processes
    assert len(events) == 8
    assert main(args) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().out
    assert set(completes_per_job(tmp_path).values()) == {1} and len(completes_per_job(tmp_path)) == 4


def test_workers_times_threads_never_exceed_the_cores():
    for available in (1, 2, 3, 8, 64):
        for asked in (1, 2, 3, 4, 7, 100):
            workers, threads = share_cores(asked, available)
            assert 1 <= workers <= min(asked, available) and threads >= 1
            assert workers * threads <= available and (workers == min(asked, available))
            assert workers * (threads + 1) > available  # no core left idle that a thread could use
    assert share_cores(4, 2) == (2, 1) and share_cores(1, 2) == (1, 2) and share_cores(3, 8) == (3, 2)


SWEEP = ["sweep", "demo", "--grid", "seed=0,1,2", "--workers", "1", "--set", "n_train=60", "--set", "widths=16,16",
         "--set", "max_steps=1200", "--set", "seeds=1", "--set", "dtype=float64"]


def _start_sweep(out: Path, extra=()) -> subprocess.Popen:
    """The sweep in a process of its own, for a test that kills it (:func:`_sweep` runs it to its end here)."""
    return subprocess.Popen([sys.executable, "-m", "lazyhasty.cli", *SWEEP, "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _sweep(out: Path) -> int:
    return main([*SWEEP, "--out", str(out)])


def _wait_for(cond, timeout=120):
    t0 = time.time()
    while not cond():
        if time.time() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.1)


def test_sigkill_mid_sweep_then_resume_is_exact(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert _sweep(ref) == 0
    p = _start_sweep(out, extra=("--checkpoint-every", "0.05", "--workers", "1"))
    # SIGKILL the worker, then the sweep, once one job is done and the next one has written a mid-run checkpoint

    def mid_run():  # the job folders holding a checkpoint of a training call that had not finished
        found = set()
        for f in out.glob("*/.checkpoints/train-*.pt"):
            with contextlib.suppress(Exception):  # replaced while read
                if not torch.load(f, weights_only=True)["done"]:
                    found.add(f.parent.parent)
        return found

    _wait_for(lambda: len(completes_per_job(out)) >= 1 and mid_run())
    workers = [spec["pid"] for spec in (json.loads(f.read_text()) for f in out.glob("*/job.json"))
               if spec.get("status") == "running"]
    for pid in workers:
        os.killpg(pid, signal.SIGKILL)  # the worker (its own process group), at once
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    _wait_for(lambda: not any(map(alive, workers)), 30)  # its job folder's lock is released once it has ended
    killed_mid_run = mid_run()
    assert killed_mid_run, "the job ended between its checkpoint and the kill"
    states = [job_state(j)[0] for j in plan(REGISTRY, "demo", "quick", ["n_train=60", "widths=16,16", "max_steps=1200",
                                                               "seeds=1", "dtype=float64"], ["seed=0,1,2"], None,
                                            out)]
    assert "interrupted" in states and "complete" in states
    assert _sweep(out) == 0
    for job in killed_mid_run:  # continued from its checkpoint: some run of the job lists the resume
        resumes = [json.loads(f.read_text()).get("resumes", []) for f in job.glob("runs/*/status.json")]
        assert any(r and r[0]["step"] >= 0 for r in resumes), job
    assert not list(out.glob("*/.checkpoints"))  # a completed job deletes its checkpoints
    assert {e["event"] for e in events(out)} >= {"running", "resumed", "complete"}
    assert completes_per_job(out) == {k: 1 for k in completes_per_job(ref)}  # each job completed exactly once
    a, b = metrics_by_job(ref), metrics_by_job(out)
    assert a.keys() == b.keys() and len(a) == 6
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])  # bit-identical to the uninterrupted sweep


def test_killed_worker_fails_only_its_job_and_rerun_finishes(tmp_path):
    p = _start_sweep(tmp_path, extra=("--workers", "2"))

    def running_pid():
        for d in tmp_path.iterdir():
            spec = json.loads((d / "job.json").read_text()) if (d / "job.json").exists() else {}
            if spec.get("status") == "running" and spec.get("pid"):
                return spec["pid"], d
        return None

    _wait_for(lambda: running_pid() is not None)
    pid, victim = running_pid()
    os.kill(pid, signal.SIGKILL)
    assert p.wait(timeout=300) == 1  # a failed job: non-zero exit
    spec = json.loads((victim / "job.json").read_text())
    assert spec["status"] == "failed" and "signal 9" in spec["reason"]
    others = [json.loads((d / "job.json").read_text())["status"] for d in tmp_path.iterdir()
              if d.is_dir() and d != victim and (d / "job.json").exists()]
    assert others == ["complete", "complete"]
    assert _sweep(tmp_path) == 0
    assert json.loads((victim / "job.json").read_text())["status"] == "complete"


def test_corrupt_record_is_detected_and_rerun(tmp_path, capsys):
    args = ["sweep", "demo", "--grid", "lr=0.3", "--out", str(tmp_path)] + sum((["--set", a] for a in FAST), [])
    assert main(args) == 0
    victim = next(tmp_path.glob("*/runs/alpha=100-seed=0/metrics.parquet"))
    victim.write_bytes(victim.read_bytes()[:50])  # truncated
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "corrupt" in out and "metrics.parquet" in out and "1 to run" in out
    pd.read_parquet(victim)  # readable again


def test_sweep_bad_input(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["sweep", "demo", "--out", str(tmp_path / "f" / "o")]) == 2
    assert main(["sweep", "demo", "--out", str(tmp_path / "o"), "--seeds", "x"]) == 2
    assert main(["sweep", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to output folder" in err and "--seeds expects" in err and "Traceback" not in err


def test_one_worker_runs_its_jobs_in_turn_and_goes_on_after_a_failed_one(tmp_path, monkeypatch):
    """A local worker is one process for many jobs (Python and torch are imported once): each job's output goes to
    its own worker.log, and a job that fails is recorded as failed while the next one still runs."""
    (tmp_path / "lab.py").write_text(
        "import dataclasses\n"
        "from lazyhasty.experiments import registry as builtin\n\n\n"
        "def registry():\n"
        "    demo = builtin()['demo']\n\n"
        "    def main(cfg, out):\n"
        "        if cfg.lr == 0.3:\n"
        "            raise RuntimeError('this job fails on purpose')\n"
        "        return demo.main(cfg, out)\n\n"
        "    return {'demo': dataclasses.replace(demo, main=main)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the worker imports the registry by name too
    jobs = plan("lab:registry", "demo", "quick", FAST, ["lr=0.2,0.3,0.4"], None, tmp_path / "s")
    result = run_sweep(jobs, tmp_path / "s", workers=1, progress=False)
    assert result["counts"] == {"complete": 2, "diverged": 0, "failed": 1, "interrupted": 0}
    spec = {j.config["lr"]: json.loads((j.dir / "job.json").read_text()) for j in jobs}
    log = {j.config["lr"]: (j.dir / "worker.log").read_text() for j in jobs}
    assert [spec[lr]["status"] for lr in (0.2, 0.3, 0.4)] == ["complete", "failed", "complete"]
    assert len({s["pid"] for s in spec.values()}) == 1  # one process ran the three jobs, in turn
    assert "this job fails on purpose" in log[0.3] and "Traceback" in log[0.3]
    assert not any("fails on purpose" in log[lr] for lr in (0.2, 0.4))
