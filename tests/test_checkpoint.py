"""Checkpoints: a run stopped anywhere (an exception, SIGTERM, SIGKILL at a random moment) and resumed ends with
records and parameters bit-identical to a run that never stopped, for every stepper and an ensemble."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import checkpoint_job
import lazyhasty as lh
from checkpoint_job import CASES, build
from lazyhasty import RunRecord, Schedule, loss_probe, train
from lazyhasty.cli import main
from lazyhasty.runs import Checkpointing, CheckpointMismatch

HERE = Path(__file__).parent
SCHEDULE = Schedule(points_per_decade=8, milestone_ratio=0.8, every=50)


class Stopped(Exception):
    pass


def run(case, steps=300, stop_at=None, checkpoint=None, signal_at=None, data_seed=5, **kw):
    """Train one case in this process; ``stop_at``: raise at that point (on_step call), ``signal_at``: (call,
    signal) sent to this process. Returns (results, final parameters)."""
    model, stepper, stop, data = build(case, steps)
    calls = []

    def on_step(ev):
        calls.append(1)
        if signal_at is not None and len(calls) == signal_at[0]:
            os.kill(os.getpid(), signal_at[1])
        if stop_at is not None and len(calls) > stop_at:
            raise Stopped

    E = len(model) if isinstance(model, lh.Ensemble) else 1
    torch.manual_seed(7)
    results = train(model, data, loss="soft_hinge", stepper=stepper, stop=stop, probes=(loss_probe,),
                    schedule=SCHEDULE, data_seed=data_seed, progress=False, on_step=on_step, checkpoint=checkpoint,
                    run_id=[f"m{k}" for k in range(E)] if E > 1 else "m0", **kw)
    results = results if isinstance(results, list) else [results]
    return results, [p.detach().clone() for p in model.parameters()], len(calls)


def assert_same(a, b):
    (ra, pa, _), (rb, pb, _) = a, b
    for x, y in zip(ra, rb):
        pd.testing.assert_frame_equal(x.metrics, y.metrics, check_exact=True)
        pd.testing.assert_frame_equal(x.trace, y.trace, check_exact=True)
        assert (x.status, x.reason, x.steps, x.t, x.converged) == (y.status, y.reason, y.steps, y.t, y.converged)
    assert all(torch.equal(p, q) for p, q in zip(pa, pb))


@pytest.mark.parametrize("case", CASES)
def test_stopped_anywhere_then_resumed_is_bit_identical(tmp_path, case):
    ref = run(case)
    for stop_at in (1, 2, 57, 180):  # the first point, the second, a measurement point, late (ensemble: after a stop)
        ckpt = tmp_path / f"{stop_at}.pt"
        with pytest.raises(Stopped):
            run(case, stop_at=stop_at, checkpoint=ckpt, checkpoint_every_s=1e-9)  # a checkpoint at every point
        assert ckpt.is_file()
        assert_same(run(case, checkpoint=ckpt), ref)
        assert not ckpt.exists()  # a finished run deletes its checkpoint


def test_the_default_compile_switch_is_where_it_was_after_a_resume(tmp_path, monkeypatch):
    """The default rule compiles after COMPILE_AFTER member-steps (here 150: step 50 of 3 members). A run stopped
    before the switch and resumed switches at the same step, one stopped after it compiles again at once: both end
    bit-identical to the run that never stopped."""
    import lazyhasty.dynamics.train as engine

    monkeypatch.setattr(engine, "COMPILE_AFTER", 150)
    ref = run("ensemble", steps=120)
    for stop_at in (30, 80):
        ckpt = tmp_path / f"{stop_at}.pt"
        with pytest.raises(Stopped):
            run("ensemble", steps=120, stop_at=stop_at, checkpoint=ckpt, checkpoint_every_s=1e-9)
        assert_same(run("ensemble", steps=120, checkpoint=ckpt), ref)


def test_a_signal_while_compiling_stops_at_once_and_loses_nothing(tmp_path, monkeypatch):
    """Compiling takes seconds (tens on a new machine), too long to defer a signal over: the default rule's switch
    writes a checkpoint first, and SIGTERM during the compilation stops the run at once (here a compilation made to
    take a minute); resumed, the run ends bit-identical to the run that never stopped."""
    import lazyhasty.dynamics.train as engine

    monkeypatch.setattr(engine, "COMPILE_AFTER", 150)
    ref = run("ensemble", steps=120)
    real, armed = engine._compiled, [True]

    def slow(*args):
        step, fused = real(*args)

        def first_compiles_for_a_minute(*a):
            if armed:
                armed.clear()
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(60)
            return step(*a)
        return first_compiles_for_a_minute, fused

    monkeypatch.setattr(engine, "_compiled", slow)
    ckpt, t0 = tmp_path / "c.pt", time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run("ensemble", steps=120, checkpoint=ckpt, checkpoint_every_s=1e9)  # no periodic checkpoints
    assert time.monotonic() - t0 < 30 and not armed
    assert [r["step"] for r in torch.load(ckpt, weights_only=True)["runs"]] == [50, 50, 50]  # the switch's point
    assert_same(run("ensemble", steps=120, checkpoint=ckpt), ref)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_the_checkpoint_and_stops_at_a_whole_state(tmp_path, sig):
    ref, ckpt = run("sgd_momentum"), tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):  # Interrupted (SIGTERM) is a KeyboardInterrupt, like Ctrl-C
        run("sgd_momentum", checkpoint=ckpt, checkpoint_every_s=1e9, signal_at=(40, sig))  # no periodic ones
    saved = torch.load(ckpt, weights_only=True)
    assert [r["step"] for r in saved["runs"]] == [40]  # written at the next point, after the signal
    assert_same(run("sgd_momentum", checkpoint=ckpt), ref)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_sigusr2_writes_a_checkpoint_and_training_goes_on(tmp_path):
    ref, ckpt = run("gd"), tmp_path / "c.pt"
    seen = []
    model, stepper, stop, data = build("gd", 300)

    def on_step(ev):
        seen.append(torch.load(ckpt, weights_only=True)["runs"][0]["step"] if ckpt.exists() else None)
        if len(seen) == 30:
            os.kill(os.getpid(), signal.SIGUSR2)

    got = train(model, data, loss="soft_hinge", stepper=stepper, stop=stop, probes=(loss_probe,), schedule=SCHEDULE,
                data_seed=5, progress=False, on_step=on_step, run_id="m0", checkpoint=ckpt, checkpoint_every_s=1e9)
    assert seen[30] == 30 and seen[29] is None  # written at the point after the signal; no exit
    assert_same(([got], [p.detach().clone() for p in model.parameters()], 0), ref)


def test_a_sigusr2_handler_that_declines_to_requeue_leaves_the_run_interrupted_and_resumable(tmp_path):
    """submitit raises from its SIGUSR2 handler when it will not requeue (timed out too often): the run stops as
    interrupted, with its checkpoint, and continues from it."""
    ref, ckpt = run("gd"), tmp_path / "c.pt"

    def declines(signum, frame):
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    old = signal.signal(signal.SIGUSR2, declines)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGUSR2 .*timed-out too many times"):
            run("gd", checkpoint=ckpt, checkpoint_every_s=1e9, signal_at=(30, signal.SIGUSR2))
        assert signal.getsignal(signal.SIGUSR2) is declines
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert torch.load(ckpt, weights_only=True)["runs"][0]["step"] == 30
    assert_same(run("gd", checkpoint=ckpt), ref)


def test_a_checkpoint_of_another_call_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    with pytest.raises(Stopped):
        run("gd", stop_at=20, checkpoint=ckpt, checkpoint_every_s=1e-9)
    with pytest.raises(CheckpointMismatch, match="stop"):
        run("gd", steps=400, checkpoint=ckpt)
    model, stepper, stop, data = build("gd", 300)
    with pytest.raises(CheckpointMismatch, match="theta0"):
        train(lh.AlphaScaled(lh.seeded(lambda: lh.MLP([2, 32, 32, 1]).double(), 9), alpha=2.0), data,
              loss="soft_hinge", stepper=stepper, stop=stop, probes=(loss_probe,), schedule=SCHEDULE, data_seed=5,
              progress=False, run_id="m0", checkpoint=ckpt)
    with pytest.raises(CheckpointMismatch, match="data_seed"):
        run("gd", checkpoint=ckpt, data_seed=6)
    with pytest.raises(CheckpointMismatch, match="stepper"):
        run("gradient_flow", checkpoint=ckpt)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="cannot be read"):
        run("gd", checkpoint=ckpt)


def test_a_resumed_block_skips_finished_calls_and_continues_the_rest(tmp_path):
    """Two calls given one Checkpointing series: call 0 finished, call 1 was stopped. Resuming returns call 0 from
    its final state (no training) and continues call 1; the records say so. A call given no series is never
    checkpointed."""
    def experiment(series, stop_second=None):
        out = []
        for i, case in enumerate(("gd", "gradient_flow")):
            model, stepper, stop, data = build(case, 200)
            calls = []

            def on_step(ev, i=i, calls=calls):
                calls.append(1)
                if i == 1 and stop_second is not None and len(calls) > stop_second:
                    raise Stopped

            rec = RunRecord(series.folder / f"run{i}").start({"case": case}, resume=series.resume)
            r = train(model, data, loss="soft_hinge", stepper=stepper, stop=stop, probes=(loss_probe,),
                      schedule=SCHEDULE, data_seed=5, progress=False, on_step=on_step, run_id=f"r{i}", record=rec,
                      checkpoint=series if series.every_s else None)
            out.append((r, len(calls), [p.detach().clone() for p in model.parameters()]))
        return out

    with pytest.raises(Stopped):
        experiment(Checkpointing(tmp_path, every_s=1e-9), stop_second=77)
    assert json.loads((tmp_path / "run1" / "status.json").read_text())["status"] == "failed"
    assert sorted(p.name for p in (tmp_path / ".checkpoints").iterdir()) == ["train-0000.pt", "train-0001.pt"]
    with pytest.raises(lh.UsageError, match="already holds"):  # not resuming: the folders are taken
        experiment(Checkpointing(tmp_path, every_s=1e-9))
    resumed = experiment(Checkpointing(tmp_path, every_s=1e-9, resume=True))
    assert resumed[0][1] == 0 and 0 < resumed[1][1] < 200  # call 0 did not train again; call 1 continued
    reference = tmp_path / "ref"
    reference.mkdir()
    fresh = experiment(Checkpointing(reference, every_s=0))
    assert not (reference / ".checkpoints").exists()
    for (a, _, pa), (b, _, pb) in zip(resumed, fresh):
        pd.testing.assert_frame_equal(a.metrics, b.metrics, check_exact=True)
        assert all(torch.equal(p, q) for p, q in zip(pa, pb))
    st = json.loads((tmp_path / "run1" / "status.json").read_text())
    assert st["status"] == "complete" and [r["step"] for r in st["resumes"]] == [77]  # the last point before it stopped
    assert "resumes" not in json.loads((tmp_path / "run0" / "status.json").read_text())
    Checkpointing(tmp_path).clear()  # what the runner does when the experiment completes
    assert not (tmp_path / ".checkpoints").exists()
    for name in ("metrics", "trace"):  # the records on disk too
        for i in (0, 1):
            assert (tmp_path / f"run{i}" / f"{name}.parquet").read_bytes() == \
                (reference / f"run{i}" / f"{name}.parquet").read_bytes()


def _job(case: str, folder: Path, every: float) -> subprocess.Popen:
    log = folder.parent / f"{folder.name}.log"
    with open(log, "ab") as f:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, str(HERE / "checkpoint_job.py"), case, str(folder), str(every)],
                                stdout=subprocess.DEVNULL, stderr=f)


def _mid_run_checkpoint(folder: Path, after: float) -> bool:
    for f in folder.glob(".checkpoints/*.pt"):
        try:
            if f.stat().st_mtime > after and not torch.load(f, weights_only=True)["done"]:
                return True
        except Exception:  # replaced while read
            pass
    return False


def _reference(case: str, folder: Path) -> None:
    """The uninterrupted run of ``checkpoint_job.py``, in this process (a subprocess would only add torch's import),
    with a fresh process's settings."""
    threads = torch.get_num_threads()
    torch.set_flush_denormal(False)  # the default (the phase tests switch it on)
    try:
        checkpoint_job.main(case, folder, 1e9)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", CASES)
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, case):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _reference(case, ref)
    rng, kills = random.Random(case), 0
    for _ in range(12):
        t0 = time.time()
        p = _job(case, out, 0.02)
        while p.poll() is None and kills < 2 and not _mid_run_checkpoint(out, t0) and time.time() - t0 < 60:
            time.sleep(0.005)
        if p.poll() is None and kills < 2:
            time.sleep(rng.uniform(0, 0.3))  # a random moment: mid-step, mid-write, mid-probe
            p.kill()
            p.wait()
            kills += 1
            continue
        assert p.wait(timeout=120) == 0, (tmp_path / "killed.log").read_text()[-2000:]
        break
    assert kills == 2
    resumes = []
    for run_dir in sorted(ref.glob("run*")):
        for name in ("metrics.parquet", "trace.parquet"):
            assert (out / run_dir.name / name).read_bytes() == (run_dir / name).read_bytes(), (run_dir.name, name)
        st = json.loads((out / run_dir.name / "status.json").read_text())
        assert st["status"] == json.loads((run_dir / "status.json").read_text())["status"]
        resumes += st.get("resumes", [])
    assert resumes and any(r["step"] > 0 for r in resumes)
    assert not (out / ".checkpoints").exists()


def test_cli_sigterm_then_run_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    sets = [a for s in ("n_train=60", "widths=16,16", "max_steps=1500", "seeds=1", "dtype=float64")
            for a in ("--set", s)]

    def cli(out, *extra):
        return subprocess.Popen([sys.executable, "-m", "lazyhasty.cli", "run", "demo", "--out", str(out), *sets,
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["run", "demo", "--out", str(ref), *sets]) == 0  # the reference in this process
    t0, p = time.time(), cli(out, "--checkpoint-every", "0.05")
    while not _mid_run_checkpoint(out, t0) and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume" in err, err
    assert json.loads((out / "experiment.json").read_text())["status"] == "interrupted"
    # another config: its runs' folders refuse it, nothing is mixed
    assert main(["run", "demo", "--out", str(out), *sets, "--resume", "--set", "lr=0.3"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "Traceback" not in err, err
    p = cli(out, "--resume")
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["status"] == "complete" and meta["resumes"][0]["previous_status"] == "interrupted"
    a, b = lh.load_runs(ref), lh.load_runs(out)
    cols = ["run_id", "step", "t", "milestone", "split", "group", "metric", "value"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert any("resumes" in json.loads(f.read_text()) for f in out.rglob("status.json"))
    assert not (out / ".checkpoints").exists()
