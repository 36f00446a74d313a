"""The SLURM back end against a real cluster (``scripts/slurm-local.sh start``; `.ci/run` starts one when it runs as
root with apt). Skipped, with the reason, where no SLURM controller answers."""

import contextlib
import fcntl
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest


def _cluster() -> str | None:
    if not shutil.which("sbatch"):
        return "sbatch is not installed (scripts/slurm-local.sh start sets up a single-node cluster)"
    r = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%t"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        return "no SLURM controller with a 'debug' partition answers (scripts/slurm-local.sh start)"
    return None


# one cluster, one test at a time: under pytest-xdist (``--dist loadgroup``) every SLURM test goes to the same test
# process, which runs them in turn while the other processes go on with the rest (none waits for the cluster)
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm"),
              pytest.mark.skipif(_cluster() is not None, reason=str(_cluster()))]


def queue() -> str:
    """The cluster's state, for a failure message: the node and every job with SLURM's reason for waiting."""
    q = subprocess.run(["squeue", "-h", "-o", "%i %j %t %M %r"], capture_output=True, text=True).stdout
    n = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t %E"], capture_output=True, text=True).stdout
    return f"sinfo: {n.strip()!r}; squeue: {q.strip()!r}"


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def an_empty_queue(tmp_path_factory):
    """Jobs left on the cluster by an earlier, killed session would hold its CPUs and leave ours pending: say so at
    once instead of timing out (scripts/slurm-local.sh start cancels them on a cluster it started). A test that
    fails leaves no sweep process running behind it. One cluster, one test at a time: under pytest-xdist the test
    processes take turns through a lock in their shared temporary folder (only one holds these tests under
    ``make test``; the lock also covers other ways of running them)."""
    with open(tmp_path_factory.getbasetemp().parent / "lazyhasty-slurm-tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, after the test
        t0 = time.monotonic()  # a job cancelled by the test before may still be completing
        while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split():
            assert time.monotonic() - t0 < 30, f"the SLURM queue is not empty before the test: {queue()}"
            time.sleep(0.5)
        yield
        while STARTED:
            p = STARTED.pop()
            if p.poll() is None:
                p.kill()
            p.communicate()
        if subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split():
            subprocess.run(["scancel", "--full", "--name", "SubmititJob"], check=False)  # the queue was empty before


FAST = ["n_train=30", "widths=8,8", "max_steps=60", "seeds=1", "dtype=float64"]


def sweep(out: Path, *extra: str, settings=FAST, wait: bool = True):
    """The sweep command line: run to its end in this process (returns exit code, stdout, stderr), or started in
    a process of its own (``wait=False``: returns it, for a test that signals it)."""
    args = ["sweep", "demo", "--grid", "lr=0.2,0.4", "--out", str(out), *(a for s in settings for a in ("--set", s)),
            *extra]
    if wait:  # the jobs run in SLURM's processes either way; here the sweep saves a second import of torch
        from lazyhasty.cli import main

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(args)
        return code, stdout.getvalue(), stderr.getvalue()
    p = subprocess.Popen([sys.executable, "-m", "lazyhasty.cli", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    STARTED.append(p)
    return p


def metrics(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): pd.read_parquet(p) for p in sorted(out.glob("*/runs/*/metrics.parquet"))}


def test_a_real_slurm_sweep_equals_a_local_one(tmp_path):
    code, out, err = sweep(tmp_path / "slurm", "--executor", "slurm", "--partition", "debug", "--time", "10")
    assert code == 0, err[-2000:]
    assert "2 complete" in out
    assert sweep(tmp_path / "local", "--workers", "1")[0] == 0
    a, b = metrics(tmp_path / "slurm"), metrics(tmp_path / "local")
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])  # the same bits through sbatch as through a local worker
    for job in (tmp_path / "slurm").glob("*/job.json"):
        spec = json.loads(job.read_text())
        assert spec["status"] == "complete" and spec["files"], spec  # verified like every job


def test_a_cancelled_slurm_job_is_rerun(tmp_path):
    out = tmp_path / "s"
    endless = ["n_train=30", "widths=8,8", "max_steps=100000000", "loss_threshold=1e-12", "seeds=1", "dtype=float64"]
    p = sweep(out, "--executor", "slurm", "--partition", "debug", "--time", "5", settings=endless, wait=False)
    t0 = time.monotonic()
    while not any(json.loads(j.read_text()).get("status") == "running" for j in out.glob("*/job.json")):
        assert time.monotonic() - t0 < 120, f"no job started: {queue()}"
        time.sleep(0.5)
    running = [j for j in out.glob("*/job.json") if json.loads(j.read_text()).get("status") == "running"]
    subprocess.run(["scancel", "--full", "--name", "SubmititJob"], check=False)
    subprocess.run(["scancel", "--full", "-u", "root"], check=False)
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "Traceback" not in err.split("lazyhasty:")[-1]
    states = {json.loads(j.read_text())["status"] for j in out.glob("*/job.json")}
    assert states <= {"failed", "interrupted"}, states
    for j in running:  # SLURM's SIGTERM stopped it at once and it said so (not SIGKILL after KillWait, unrecorded)
        spec = json.loads(j.read_text())
        assert spec["status"] == "interrupted" and "SIGTERM" in spec["reason"], spec
    # finishes: same folder, new config
    code, stdout, err = sweep(out, "--executor", "slurm", "--partition", "debug", "--time", "5")
    assert code == 0, err[-2000:]


LONG = ["n_train=60", "widths=16,16", "max_steps=2000", "loss_threshold=1e-12", "seeds=1", "dtype=float64"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The same sweep as the requeued one, run locally without interruption: the reference bits (once for both)."""
    out = tmp_path_factory.mktemp("local")
    assert sweep(out, "--workers", "1", settings=LONG)[0] == 0
    return metrics(out)


@pytest.mark.parametrize("how", ["scontrol requeue", "SIGUSR2"])
def test_a_requeued_slurm_job_resumes_from_its_checkpoint_bit_identical(tmp_path, how, uninterrupted):
    """Mid-run, either `scontrol requeue` (SLURM stops the job with SIGTERM: the run writes its checkpoint) or
    SIGUSR2, SLURM's warning before pre-emption or the time limit (the run writes its checkpoint, then submitit's
    handler requeues the job). Either way the job starts again, continues from the checkpoint and ends with the same
    bits as a local sweep."""
    import torch

    out = tmp_path / "slurm"
    p = sweep(out, "--executor", "slurm", "--partition", "debug", "--time", "10", "--checkpoint-every", "0.05",
              settings=LONG, wait=False)

    def mid_run():
        for f in out.glob("*/.checkpoints/train-*.pt"):
            try:
                if not torch.load(f, weights_only=True)["done"]:
                    return f.parent.parent
            except Exception:  # replaced while read
                pass
        return None

    t0 = time.monotonic()
    while (job := mid_run()) is None:
        assert time.monotonic() - t0 < 180 and p.poll() is None, f"no job reached a mid-run checkpoint: {queue()}"
        time.sleep(0.05)
    slurm_id = json.loads((job / "job.json").read_text())["attempts"][-1]["slurm_job"]
    r = subprocess.run(["scontrol", "requeue", slurm_id] if how == "scontrol requeue" else
                       ["scancel", "--signal=USR2", slurm_id], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()  # SLURM holds a requeued job for 2 minutes (BeginTime); the test lifts the hold
    while "BeginTime" not in subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%r"], capture_output=True,
                                            text=True).stdout:
        assert time.monotonic() - t0 < 120 and p.poll() is None, f"the job was not requeued: {queue()}"
        time.sleep(0.2)
    subprocess.run(["scontrol", "update", f"JobId={slurm_id}", "StartTime=now"], check=True)
    stdout, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-2000:]
    assert f"{job.name} resumed" in stdout and "accounting" not in stdout + err, stdout + err
    spec = json.loads((job / "job.json").read_text())
    assert spec["status"] == "complete" and len(spec["attempts"]) == 2
    others = [json.loads(f.read_text()) for f in out.glob("*/job.json") if f.parent != job]
    assert [len(o["attempts"]) for o in others] == [1]  # only the job that was signalled ran twice
    resumes = [json.loads(f.read_text()).get("resumes") for f in job.glob("runs/*/status.json")]
    assert any(r and r[0]["step"] > 0 for r in resumes), resumes  # continued from the checkpoint, not from step 0
    assert not list(out.glob("*/.checkpoints"))
    a, b = metrics(out), uninterrupted
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k], check_exact=True)


def test_phase_cells_through_slurm_keep_their_ids(tmp_path):
    """phase's cells as a SLURM job array; a cell's job id does not depend on how it was scheduled."""
    import dataclasses

    from lazyhasty.experiments.phase import Config, cell_configs, main
    from lazyhasty.runs import Output

    cfg = Config(source="teacher", pca=None, ptr=20, pte=20, depth=2, widths=(8,), sqrt_h_alphas=(1.0, 10.0),
                 seeds=2, max_steps=30, n_probe=5, executor="slurm", slurm_partition="debug", slurm_time=5)
    main(cfg, Output(tmp_path))
    assert json.loads((tmp_path / "analysis.json").read_text())["runs"] == 4 and (tmp_path / "phase.png").is_file()
    ids = sorted(p.name for p in (tmp_path / "cells").iterdir() if (p / "outputs.npz").is_file())
    local = [dataclasses.replace(c, executor="local") for c in cell_configs(cfg)]
    assert cell_configs(dataclasses.replace(cfg, executor="local", workers=5)) == local
    assert len(ids) == 2
