"""The SLURM back end against a real cluster (``scripts/slurm-local.sh start``; `.ci/run` starts one when it runs as
root with apt). Skipped, with the reason, where no SLURM controller answers."""

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


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_cluster() is not None, reason=str(_cluster()))]

FAST = ["n_train=30", "widths=8,8", "max_steps=60", "dtype=float64"]


def sweep(out: Path, *extra: str, settings=FAST, wait: bool = True):
    args = [sys.executable, "-m", "lazyhasty.cli", "sweep", "demo", "--grid", "lr=0.2,0.4", "--out", str(out),
            *(a for s in settings for a in ("--set", s)), *extra]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out_, err = p.communicate(timeout=600)
        return p.returncode, out_, err
    return p


def metrics(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): pd.read_parquet(p) for p in sorted(out.glob("*/*/metrics.parquet"))}


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
    endless = ["n_train=30", "widths=8,8", "max_steps=100000000", "loss_threshold=1e-12", "dtype=float64"]
    p = sweep(out, "--executor", "slurm", "--partition", "debug", settings=endless, wait=False)
    t0 = time.monotonic()
    while not any(json.loads(j.read_text()).get("status") == "running" for j in out.glob("*/job.json")):
        assert time.monotonic() - t0 < 120, "no job started"
        time.sleep(0.5)
    subprocess.run(["scancel", "--full", "--name", "SubmititJob"], check=False)
    subprocess.run(["scancel", "--full", "-u", "root"], check=False)
    _, err = p.communicate(timeout=300)
    assert p.returncode != 0 and "Traceback" not in err.split("lazyhasty:")[-1]
    states = {json.loads(j.read_text())["status"] for j in out.glob("*/job.json")}
    assert states <= {"failed", "interrupted"}, states
    code, stdout, err = sweep(out, "--executor", "slurm", "--partition", "debug")  # finishes: same folder, new config
    assert code == 0, err[-2000:]
