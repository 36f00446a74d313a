"""Fault tests: every way a user or a machine can lose, mix or mislabel a run, driven through the command line.

Bad input: exit 2, one line, no traceback, nothing written. Interruptions: every run ends with a final status
saying why, finished work is kept, and running the same command again resumes.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pandas as pd
import pytest
import torch

import lazyhasty as lh
from conftest import alive
from lazyhasty.cli import main
from lazyhasty.config import ZERO_OK
from lazyhasty.errors import FolderInUse
from lazyhasty.experiments import REGISTRY, registry
from lazyhasty.files import FolderLock
from lazyhasty.runs.sweep import job_id, sweep_status

TINY = ["n_train=30", "widths=8,8", "max_steps=40", "seeds=1", "dtype=float64"]  # demo in about a second
ENDLESS = ["n_train=30", "widths=8,8", "max_steps=100000000", "loss_threshold=1e-12", "seeds=1", "dtype=float64"]
RUN = Path("runs") / "alpha=1-seed=0"  # the demo's first run, in its folder


def cli(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lazyhasty.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def sets(*assignments: str) -> list[str]:
    return [a for s in assignments for a in ("--set", s)]


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.rglob("status.json")}


def one_line_error(err: str) -> bool:
    """No traceback, and one line once progress bars (stderr) are left out."""
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.strip() and "%|" not in x]
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------
# Bad values of every config field of every experiment: exit 2, one line naming the field, nothing written.

def _bad_values(name: str, tp) -> list[str]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # empty (or blank) means None for an optional field
        inner = [a for a in args if a is not type(None)][0]
        return [v for v in _bad_values(name, inner) if v.strip()]
    if origin is typing.Literal:
        return ["bogus", ""]
    if origin in (tuple, list):
        return ["", *(f"{v},{v}" for v in _bad_values(name, args[0]) if v not in ("", "bogus"))]
    if tp is bool:
        return ["maybe", ""]
    if tp is int:
        return ["abc", "1.5", "-1" if name in ZERO_OK else "0", "-5", "1000000000000", ""]
    if tp is float:
        return ["abc", "nan", "inf", "-inf", "-1" if name in ZERO_OK else "0", "1e300", ""]
    if tp is str:
        return ["", "   "] + (["/no/such/place"] if name.endswith(("_root", "_file")) or name == "pretrained" else [])
    raise AssertionError(f"no bad values for {name}: {tp}")


BAD_CASES = [(exp, f.name, v) for exp, e in sorted(registry().items()) for f in dataclasses.fields(e.config)
             for v in _bad_values(f.name, typing.get_type_hints(e.config)[f.name])]


FREE_TEXT = {"slurm_partition"}  # any name may be a partition; sbatch itself refuses one that does not exist


def test_the_table_covers_every_field_of_every_experiment():
    covered = {(e, k) for e, k, _ in BAD_CASES}
    assert covered == {(e, f.name) for e, x in registry().items() for f in dataclasses.fields(x.config)
                       if f.name not in FREE_TEXT}
    assert len(BAD_CASES) > 300


@pytest.mark.parametrize("experiment, key, value", BAD_CASES)
def test_bad_config_value_is_refused_before_anything_runs(tmp_path, capsys, experiment, key, value):
    out = tmp_path / "out"
    code = main(["run", experiment, "--out", str(out), "--set", f"{key}={value}"])
    err = capsys.readouterr().err
    assert code == 2 and one_line_error(err), (key, value, err)
    assert key in err or "lambda" in err, err  # the message names the field (cross-field checks name theirs)
    assert not out.exists() or not any(out.rglob("*.json")), "a refused run wrote records"


@pytest.mark.parametrize("argv, message", [
    (["run", "demo", "--set", "device=cuda:7"], "device=cuda:7"),
    (["run", "demo", "--set", "device=tpu"], "not a device"),
    (["sweep", "demo", "--seeds", "0-100000000", "--out", "{tmp}/s"], "at most 10000"),
    (["sweep", "demo", "--seeds", "0-99999999999999", "--out", "{tmp}/s"], "out of range"),
    (["sweep", "demo", "--seeds", "5-1", "--out", "{tmp}/s"], "--seeds expects"),
    (["sweep", "demo", "--grid", "lr=" + ",".join(str(i / 1000 + 0.001) for i in range(101)), "--grid",
      "seed=" + ",".join(map(str, range(101))), "--out", "{tmp}/s"], "at most 10000"),
    (["sweep", "demo", "--workers", "0", "--out", "{tmp}/s"], "--workers"),
    (["sweep", "demo", "--grid", "lr=nan,0.1", "--out", "{tmp}/s"], "lr"),
    (["sweep", "demo", "--set", "data_seed=-3", "--out", "{tmp}/s"], "data_seed must be >= 0"),
    (["run", "demo", "--resume", "--out", "{tmp}/r"], "nothing to resume"),
    (["run", "demo", "--resume"], "--resume needs --out"),
    (["run", "demo", "--checkpoint-every", "-1", "--out", "{tmp}/r"], "--checkpoint-every"),
    (["run", "demo", "--checkpoint-every", "nan", "--out", "{tmp}/r"], "--checkpoint-every"),
    (["sweep", "demo", "--checkpoint-every", "-5", "--out", "{tmp}/s"], "--checkpoint-every"),
    (["demo", "--only", "nope", "--out", "{tmp}/d"], "unknown experiment"),
    (["report", "{tmp}/nothing-here"], "no such folder"),
    (["run", "demo", "--set", "alphas=1,,100", "--out", "{tmp}/r"], "comma-separated list"),
    (["run", "fig3", "--set", "pretrained={tmp}/weights.pt", "--out", "{tmp}/r"], "arch=resnet18"),
    (["sweep", "demo", "--executor", "slurm", "--out", "{tmp}/s"], "sbatch"),
])
def test_bad_command_lines(tmp_path, capsys, argv, message):
    if "cuda" in message and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    if message == "sbatch" and shutil.which("sbatch"):
        pytest.skip("this machine has SLURM")
    (tmp_path / "weights.pt").write_bytes(b"")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and one_line_error(err), err
    assert not (tmp_path / "s").exists()  # refused before the sweep folder is kept


def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = main(["run", "demo", "--out", str(tmp_path / "o"), "--set", "device=cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "device=cuda" in err and one_line_error(err)


# ---------------------------------------------------------------------------------------------------------------
# A run owns its folder.

def test_a_folder_holding_records_is_refused_and_the_default_never_overwrites(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine"
    assert main(["run", "demo", "--out", str(out), *sets(*TINY)]) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code = main(["run", "demo", "--out", str(out), *sets(*TINY, "alphas=1,10")])
    err = capsys.readouterr().err
    assert code == 2 and "already holds records" in err and one_line_error(err)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # untouched
    monkeypatch.chdir(tmp_path)  # without --out: runs/demo, then runs/demo.2, never mixed
    assert main(["run", "demo", *sets(*TINY)]) == 0
    assert main(["run", "demo", *sets(*TINY, "alphas=1,10")]) == 0
    first, second = (json.loads((tmp_path / "runs" / d / "experiment.json").read_text()) for d in ("demo", "demo.2"))
    assert first["config"]["alphas"] == [1.0, 100.0] and second["config"]["alphas"] == [1.0, 10.0]
    summary = (tmp_path / "runs" / "demo.2" / "summary.txt").read_text()
    assert "alpha=10" in summary and "alpha=100" not in summary  # a summary reads only its own call's runs


def test_two_writers_of_one_folder_are_impossible(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lazyhasty.files import "
                               "FolderLock; FolderLock(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(tmp_path / "busy")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["run", "demo", "--out", str(tmp_path / "busy"), *sets(*TINY)])
        err = capsys.readouterr().err
        assert code == 2 and f"in use by process {holder.pid}" in err and one_line_error(err)
        with pytest.raises(FolderInUse, match=str(holder.pid)):
            lh.RunRecord(tmp_path / "busy").start({})
        script = "import sys; from lazyhasty.cli import main; print(main(['sweep', 'demo', '--out', sys.argv[1]]), " \
               "'torch' in sys.modules)"
        sweep = subprocess.run([sys.executable, "-c", script, str(tmp_path / "busy")], capture_output=True, text=True,
                               timeout=60)
        assert sweep.stdout.split() == ["2", "False"], sweep  # a sweep is refused before it imports torch
        assert f"in use by process {holder.pid}" in sweep.stderr and one_line_error(sweep.stderr)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    rec = lh.RunRecord(tmp_path / "busy").start({})  # the kernel released the lock of the killed process
    with pytest.raises(FolderInUse, match="in use"):  # and a second writer in this process is refused too
        lh.RunRecord(tmp_path / "busy").start({})
    rec.set_status("complete")
    with pytest.raises(FolderInUse, match="already holds a run"):
        lh.RunRecord(tmp_path / "busy").start({})


def test_records_are_0644_folders_0755_and_renames_are_fsynced(tmp_path, monkeypatch):
    from lazyhasty import files as records

    synced, real = [], records.fsync_folder
    monkeypatch.setattr(records, "fsync_folder", lambda d: (synced.append(Path(d)), real(d)))
    old = os.umask(0o077)  # even under a strict umask
    try:
        rec = lh.RunRecord(tmp_path / "a" / "b").start({"x": 1})
        rec.write(pd.DataFrame({"step": [0]}), pd.DataFrame({"step": [0]}))
        rec.set_status("complete")
    finally:
        os.umask(old)
    for p in (tmp_path / "a" / "b").iterdir():
        if not p.name.startswith("."):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755
    assert synced.count(tmp_path / "a" / "b") >= 5  # config, env, status x2, tables: each rename made durable


def test_train_ids_are_unique_and_load_runs_keeps_folders_apart(tmp_path, gen):
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    data = lh.Split(x, torch.sign(x[:, 0]))
    model = lh.MLP([2, 4, 1]).double()
    a, b = (lh.train(lh.same_init(model), data, loss="bce", stepper=lh.GD(0.1), stop=lh.Stop(max_steps=2))
            for _ in range(2))
    assert a.metrics.run_id.iloc[0] != b.metrics.run_id.iloc[0]
    for parent in ("x", "y"):  # two runs called "same" in two folders
        lh.train(lh.same_init(model), data, loss="bce", stepper=lh.GD(0.1), stop=lh.Stop(max_steps=2),
                 record=lh.RunRecord(tmp_path / parent / "same").start({"parent": parent}))
    table = lh.load_runs(tmp_path)
    assert set(table.run_id) == {"x/same", "y/same"} and set(table.path) == {str(tmp_path / p / "same") for p in "xy"}
    assert table.groupby("run_id")["parent"].nunique().max() == 1


# ---------------------------------------------------------------------------------------------------------------
# Every way out of a run leaves a final status.

def test_an_error_before_the_loop_and_a_failed_flush_leave_failed(tmp_path, gen):
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    rec = lh.RunRecord(tmp_path / "shape").start({})
    with pytest.raises(ValueError, match=r"\(10, 1\).*\(10, 3\)"):  # refused when the first loss is computed
        lh.train(lh.MLP([2, 4, 1]).double(), lh.Split(x, torch.randn(10, 3, dtype=torch.float64)), loss="mse",
                 stepper=lh.GD(0.1), stop=lh.Stop(max_steps=5), record=rec)
    st = rec.status()
    assert st["status"] == "failed" and "ValueError" in st["reason"]

    class Full(lh.RunRecord):
        def write(self, metrics, trace):
            raise OSError(28, "No space left on device")

    rec = Full(tmp_path / "full").start({})
    with pytest.raises(OSError, match="No space"):
        lh.train(lh.MLP([2, 4, 1]).double(), lh.Split(x, torch.sign(x[:, 0])), loss="bce", stepper=lh.GD(0.1),
                 stop=lh.Stop(max_steps=5), record=rec)
    st = rec.status()
    assert st["status"] == "failed" and "No space" in st["reason"] and "writing its tables failed" in st["reason"]


def test_a_process_that_exits_mid_run_marks_it_failed(tmp_path):
    code = ("import sys, lazyhasty as lh; lh.RunRecord(sys.argv[1]).start({}); "
            "raise SystemExit(3)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 3
    st = json.loads((tmp_path / "r" / "status.json").read_text())
    assert st["status"] == "failed" and "exited before the run ended" in st["reason"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_leaves_interrupted_and_exit_130(tmp_path, sig):
    out = tmp_path / "o"
    p = cli("run", "demo", "--out", str(out), *sets(*ENDLESS))
    wait_for(lambda: (out / RUN / "trace.parquet").exists(), 120, "the first flush")
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and one_line_error(err), err
    st = statuses(out)[RUN.name]
    assert st["status"] == "interrupted" and ("SIGTERM" if sig == signal.SIGTERM else "Ctrl-C") in st["reason"]
    assert st["steps"] > 0 and len(pd.read_parquet(out / RUN / "trace.parquet")) > 0  # nothing lost
    assert json.loads((out / "experiment.json").read_text())["status"] == "interrupted"


# ---------------------------------------------------------------------------------------------------------------
# Sweeps: atomic lock, complete means verified, workers die with the sweep, Ctrl-C resumes.

def test_eight_sweeps_at_once_one_runs_the_others_name_its_pid(tmp_path):
    out = tmp_path / "s"
    procs = [cli("sweep", "demo", "--out", str(out), "--workers", "1", *sets(*TINY)) for _ in range(8)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    ran = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] == 2]
    assert len(ran) + len(refused) == 8 and len(ran) >= 1, [r[0] for r in results]
    for _, _, err in refused:
        assert ("in use by process" in err and one_line_error(err)), err
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "complete" for e in events) == 1  # the one job ran exactly once


def _sweep_job(out: Path) -> dict:
    jobs = [json.loads(p.read_text()) for p in out.glob("*/job.json")]
    return jobs[0] if len(jobs) == 1 else {}


def _sweep_story(out: Path) -> tuple:
    """What a failed sweep assertion shows: the job, its events and its worker's log."""
    events = (out / "events.jsonl").read_text() if (out / "events.jsonl").exists() else ""
    return _sweep_job(out), events[-2000:], [f.read_text()[-2000:] for f in out.glob("*/worker.log")]


def test_a_killed_sweep_takes_its_workers_and_ctrl_c_resumes(tmp_path):
    out = tmp_path / "s"
    args = ("sweep", "demo", "--out", str(out), "--workers", "1", *sets(*ENDLESS))
    p = cli(*args)
    job = wait_for(lambda: _sweep_job(out).get("pid") and _sweep_job(out), 120, "the worker")
    assert [r[1] for r in sweep_status(out)] == ["running"]  # what --status says of a live job
    p.kill()  # SIGKILL: the sweep cannot clean up; its worker must still die
    p.communicate()
    wait_for(lambda: not alive(job["pid"]), 30, "the orphaned worker to end")
    job = _sweep_job(out)
    assert job["status"] == "interrupted" and "SIGTERM" in job["reason"], _sweep_story(out)  # it said why

    p = cli(*args)  # resumes the interrupted job; Ctrl-C stops it cleanly
    try:
        wait_for(lambda: _sweep_job(out).get("status") == "running", 120, "the resumed job")
    except AssertionError:  # (seen once: a start cut short by the kill was refused as another config's run)
        p.kill()
        raise AssertionError(("the resumed job never ran", p.communicate(), _sweep_story(out))) from None
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == 130 and one_line_error(err) and "resume" in err, (err, stdout, _sweep_story(out))
    assert "interrupted" in stdout and "continue from its checkpoints" in stdout and "resumed" in stdout
    job = _sweep_job(out)
    assert job["status"] == "interrupted" and not alive(job["pid"])
    assert all(s["status"] == "interrupted" for s in statuses(out).values())

    r = subprocess.run([sys.executable, "-m", "lazyhasty.cli", "sweep", "demo", "--out", str(out), "--workers", "1",
                        *sets(*TINY[:-3], "loss_threshold=1e-12", "max_steps=40", "dtype=float64", "alphas=1,10")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # another config in the same sweep folder finishes


def test_a_job_is_complete_only_when_its_files_match(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sweep", "demo", "--out", str(out), "--workers", "1", *sets(*TINY)]
    assert main(argv) == 0
    job = next(out.glob("*/job.json")).parent
    spec = json.loads((job / "job.json").read_text())
    assert spec["status"] == "complete" and f"{RUN}/metrics.parquet" in spec["files"]
    capsys.readouterr()

    def rerun_reason(damage) -> str:
        damage()
        assert main(argv) == 0
        return capsys.readouterr().out

    assert "1 already done, 0 to run" in rerun_reason(lambda: None)
    assert "missing" in rerun_reason(lambda: (job / RUN / "trace.parquet").unlink())
    f = job / "runs" / "alpha=100-seed=0" / "metrics.parquet"
    assert "bytes" in rerun_reason(lambda: f.write_bytes(f.read_bytes()[:-10]))  # truncated
    f = job / "summary.txt"
    assert "checksum" in rerun_reason(lambda: f.write_text(f.read_text().replace("alpha", "alpbo")))

    from lazyhasty.runs.sweep import run_job  # an inner run that never finished: the job is not complete

    s = job / RUN / "status.json"
    s.write_text(json.dumps({**json.loads(s.read_text()), "status": "running"}))
    (job / "job.json").write_text(json.dumps({**json.loads((job / "job.json").read_text()), "status": "pending"}))
    with pytest.MonkeyPatch.context() as m:  # the experiment "finishes" but leaves its run running
        m.setattr("lazyhasty.experiments.demo.EXPERIMENT", dataclasses.replace(
            registry()["demo"], main=lambda cfg, folder: {}))
        assert run_job(job) == "failed"
    assert f"did not finish: {RUN} running" in json.loads((job / "job.json").read_text())["reason"]


def test_report_marks_incomplete_runs_and_survives_a_malformed_folder(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "demo", "--out", str(out), *sets(*TINY)]) == 0
    f = out / RUN / "metrics.parquet"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "experiment.json").write_text("[1, 2]")
    (tmp_path / "bad" / "r").mkdir()
    (tmp_path / "bad" / "r" / "status.json").write_text("{not json")
    (tmp_path / "bad2").mkdir()
    (tmp_path / "bad2" / "sweep.json").write_text('{"jobs": [1, {"id": 3}, {"id": "x", "assignments": [1]}]}')
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err
    page = (tmp_path / "report.html").read_text()
    assert "incomplete" in page and "alpha=1" in page and "recorded" in page
    assert "unreadable" in page


def test_adding_a_config_field_with_a_default_keeps_job_ids(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Before:
        lr: float = 0.1
        seed: int = 0

    @dataclasses.dataclass(frozen=True)
    class After:  # the next version of the code: one more field, with a default
        lr: float = 0.1
        seed: int = 0
        momentum: float = 0.0

    assert job_id("e", Before(lr=0.5, seed=3)) == job_id("e", After(lr=0.5, seed=3))
    assert job_id("e", Before()) == job_id("e", After())
    assert job_id("e", After(lr=0.5, momentum=0.9)) != job_id("e", After(lr=0.5))
    assert job_id("e", Before(lr=0.5), schema=2) != job_id("e", Before(lr=0.5))  # a schema change re-runs
    assert job_id("e", Before(lr=0.5)) != job_id("f", Before(lr=0.5))


def test_seeds_work_for_every_experiment():
    from lazyhasty.runs.sweep import plan

    for name in registry():
        jobs = plan(REGISTRY, name, None, [], [], "7-8", Path("/tmp/unused"))
        assert [j.config["seed"] for j in jobs] == [7, 8], name
        assert all(j.config.get("seeds", 1) == 1 for j in jobs), name
        assert len({j.id for j in jobs}) == 2


def test_folder_lock_names_its_holder(tmp_path):
    lock = FolderLock(tmp_path, "sweep folder")
    with pytest.raises(FolderInUse, match=f"sweep folder {tmp_path} is in use by process {os.getpid()}"):
        FolderLock(tmp_path, "sweep folder")
    lock.release()
    FolderLock(tmp_path).release()


def test_sweep_status_reads_without_running(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", "demo", "--out", str(out), "--workers", "1", *sets(*TINY), "--grid", "lr=0.2,0.4"]) == 0
    victim = next(out.glob(f"*/{RUN}/trace.parquet"))
    victim.unlink()
    capsys.readouterr()
    assert main(["sweep", "--status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 complete" in text and "1 corrupt" in text and "missing" in text and "lr=0.2" in text
    assert not victim.exists()  # nothing was re-run
    code = main(["sweep", "--status", str(tmp_path)])
    assert code == 2 and "not a readable sweep folder" in capsys.readouterr().err

    # a job.json that says running: running while its process lives, else interrupted (a reused PID is not it)
    spec_file = next(f for f in out.glob("*/job.json") if "lr=0.4" in f.read_text())
    spec = json.loads(spec_file.read_text())
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for started, host, state in (("2999-01-01T00:00:00+00:00", me["host"], "running"),  # this process: alive
                                 ("2000-01-01T00:00:00+00:00", me["host"], "interrupted"),  # started after it
                                 ("2999-01-01T00:00:00+00:00", "elsewhere", "running")):  # cannot be checked
        spec_file.write_text(json.dumps({**spec, "status": "running", "pid": me["pid"],
                                         "attempts": [{**me, "host": host, "started": started}]}))
        (row,) = [r for r in sweep_status(out) if "lr=0.4" in r[3]]
        assert row[1] == state and (host == me["host"] or "not checked" in row[2]), (started, host, row)
    spec_file.write_text(json.dumps({**spec, "status": "running", "pid": me["pid"],
                                     "attempts": [{**me, "started": "2000-01-01T00:00:00+00:00"}]}))
    from lazyhasty.report import build_report

    html = build_report(out).read_text()  # the report says the same
    assert f"was running (pid {me['pid']}) when its process died" in html


def test_a_signal_that_c_code_turned_into_another_error_still_reads_interrupted():
    """SIGTERM during an extension module's import reaches Python as ImportError('initialization failed') raised
    from the signal's exception (seen in CI: scipy's HiGHS wrapper): the job is interrupted, not failed."""
    from lazyhasty.errors import Interrupted, stopped_by

    try:
        try:
            raise Interrupted("SIGTERM")
        except Interrupted as signal_error:
            raise ImportError("initialization failed") from signal_error
    except ImportError as e:
        assert stopped_by(e) == ("interrupted", "interrupted by SIGTERM")
    assert stopped_by(ValueError("bad")) == ("failed", "ValueError: bad")


def _signalled(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs in the main thread, between two bytecodes


def test_only_the_first_signal_stops_and_repeats_cannot_cut_the_records_short():
    """A dying multi-threaded parent sends a worker its PR_SET_PDEATHSIG once per thread (seen in CI: a killed
    sweep's worker, stopped by the first SIGTERM, was killed by the second while it wrote job.json). Once a signal
    has stopped the block, repeats are ignored, and a training loop started after it raises it again at every safe
    point (seen: the first exception raised inside importlib's weakref callback, which Python swallows, and the
    worker trained on, deaf). A new block starts afresh. In a training loop, the same signal twice within a second
    is one request (its checkpoint is still written); a different one acts at once."""
    from lazyhasty.errors import Deferred, Interrupted, signals_interrupt

    with signals_interrupt():
        with pytest.raises(Interrupted, match="SIGTERM"):
            _signalled(signal.SIGTERM)  # (as if swallowed: the block goes on)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the process is stopping: nothing raises
            _signalled(sig)
        d = Deferred()
        try:
            _signalled(signal.SIGINT)
            assert d.pending == signal.SIGTERM  # the stop, not the repeat
            for _ in range(2):  # raised again at every safe point until it ends the loop
                with pytest.raises(Interrupted, match="SIGTERM"):
                    d.act()
        finally:
            d.restore()
    with signals_interrupt(), pytest.raises(KeyboardInterrupt):
        _signalled(signal.SIGINT)

    d = Deferred()
    try:
        assert d.pending is None
        _signalled(signal.SIGTERM)
        _signalled(signal.SIGTERM)
        assert d.pending == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            _signalled(signal.SIGINT)
    finally:
        d.restore()
