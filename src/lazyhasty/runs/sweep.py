"""Sweeps: a grid of experiment configs, each run once, surviving interruptions, on one machine or a cluster.

Layout of a sweep folder::

    DIR/sweep.json          the plan: experiment, preset, overrides, every job's id and assignments
    DIR/events.jsonl        one line per job start / end (appended, for auditing "exactly once")
    DIR/<job id>/job.json   the job's spec and status: pending | running | complete | diverged | failed
    DIR/<job id>/...        the experiment's own output (figures, run records)

A job's id is a hash of the experiment name and its fully resolved config, so the same command always maps the
same config to the same folder. Experiments come from a registry that the caller names (``"module:function"``,
e.g. ``lazyhasty.experiments:registry``): the runner never imports the experiments, it records the registry's name
in each job so that a worker process (or a SLURM job) can look its experiment up. A registry maps names to
objects with ``config`` (the config dataclass), ``default_preset``, ``preset(name)`` and ``main(config, folder)``.
Running a sweep runs exactly the jobs that are not complete: a job whose ``job.json`` says ``running`` was
interrupted (its process died) and is wiped and restarted from scratch; a ``complete`` job whose files do not
all parse (a corrupt or half-written file) is reported and re-run.

Back ends: ``local`` (default) runs each job in its own worker process, at most ``workers`` at a time, with
torch's threads split between them, so a worker that dies takes only its own job with it; ``slurm`` and
``submitit-local`` submit the jobs through submitit as a job array (the latter runs real subprocesses on this
machine: the SLURM code path without ``sbatch``). A preempted SLURM job is requeued (submitit's checkpoint) and
restarts its run cleanly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pandas as pd
from tqdm.auto import tqdm

from ..config import override, split_assignment, to_assignments, to_dict
from ..errors import UsageError
from .records import _now, atomic_write

FINAL = ("complete", "diverged")


@dataclass(frozen=True)
class Job:
    id: str
    experiment: str
    preset: str
    assignments: tuple[str, ...]  # key=value overrides that define this job
    config: dict
    dir: Path
    registry: str  # "module:function" returning the experiment registry (looked up by the worker)


def get_experiment(registry: str, name: str):
    """Experiment ``name`` of the registry named ``"module:function"`` (imported by name, not by this module)."""
    import importlib

    module, _, attr = registry.partition(":")
    exps = getattr(importlib.import_module(module), attr)()
    if name not in exps:
        raise UsageError(f"unknown experiment {name!r}; available: {', '.join(sorted(exps))} (see `lazyhasty list`)")
    return exps[name]


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ``"0-2,9"`` -> [0, 1, 2, 9]."""
    out: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--seeds expects a range like 0-4 or a list like 0,3,7; got {text!r}")
        lo = int(m.group(1))
        out.extend(range(lo, int(m.group(2)) + 1) if m.group(2) is not None else [lo])
    return out


def _is_sequence_field(cfg_cls, key: str) -> bool:
    tp = get_type_hints(cfg_cls).get(key)
    return get_origin(tp) in (tuple, list) or any(get_origin(a) in (tuple, list) for a in get_args(tp))


def parse_grid(specs: list[str], cfg_cls) -> dict[str, list[str]]:
    """``["alpha=1,10,100", "widths=64,64;128,128"]`` -> {key: [value, ...]}. Values of a sequence-typed field
    are separated by ``;`` (a value itself is a comma list); other fields' values by ``,``."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, vals = split_assignment(spec, cfg_cls, "grid key", "--grid expects key=v1,v2,...")
        sep = ";" if _is_sequence_field(cfg_cls, key) else ","
        values = [v.strip() for v in vals.split(sep) if v.strip()]
        if not values:
            raise UsageError(f"--grid {key} has no values")
        grid[key] = values
    return grid


def load_sweep_file(path: str | Path) -> dict:
    """A sweep file (TOML, or YAML if PyYAML is installed) with keys experiment, preset, grid (table of lists),
    seeds (string or list), set (list of key=value)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"sweep file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UsageError("reading a YAML sweep file needs PyYAML (pip install pyyaml), or use TOML") from None
            data = yaml.safe_load(text) or {}
        else:
            import tomllib

            data = tomllib.loads(text)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"cannot parse sweep file {path}: {e}") from None
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise UsageError(f"{path}: 'grid' must be a table of lists")
    seeds = data.get("seeds")
    if isinstance(seeds, list):
        seeds = ",".join(str(s) for s in seeds)
    return {"experiment": data.get("experiment"), "preset": data.get("preset"), "seeds": seeds,
            "set": list(data.get("set", [])),
            "grid": [f"{k}={(';' if any(isinstance(v, list) for v in vs) else ',').join(_fmt(v) for v in vs)}"
                     for k, vs in grid.items()]}


def _fmt(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)


def job_id(experiment: str, config: dict) -> str:
    blob = json.dumps({"experiment": experiment, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def plan(registry: str, experiment: str, preset: str | None, sets: list[str], grid: list[str], seeds: str | None,
         out: Path) -> list[Job]:
    """Expand the grid (times the seeds) into jobs with stable ids. Validates every config up front."""
    exp = get_experiment(registry, experiment)
    preset = preset or exp.default_preset
    base = override(exp.preset(preset), sets)
    axes = parse_grid(grid, exp.config)
    if seeds is not None:
        if "seed" not in {f.name for f in dataclasses.fields(exp.config)}:
            raise UsageError(f"experiment {experiment!r} has no 'seed' field; sweep its seeds with --grid")
        axes["seed"] = [str(s) for s in parse_seeds(seeds)]
    keys = list(axes)
    jobs, seen = [], set()
    for combo in itertools.product(*(axes[k] for k in keys)):
        assignments = tuple(f"{k}={v}" for k, v in zip(keys, combo))
        cfg = to_dict(override(base, assignments))
        jid = job_id(experiment, cfg)
        if jid in seen:
            continue
        seen.add(jid)
        jobs.append(Job(jid, experiment, preset, tuple(sets) + assignments, cfg, out / jid, registry))
    return jobs


def config_jobs(registry: str, experiment: str, preset: str, configs, out: Path) -> list[Job]:
    """One job per config dataclass (ids hash the experiment and the config), in ``out/<id>``."""
    jobs = []
    for c in configs:
        d = to_dict(c)
        jid = job_id(experiment, d)
        jobs.append(Job(jid, experiment, preset, tuple(to_assignments(c)), d, out / jid, registry))
    return jobs


def read_job(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / "job.json").read_text())
    except (OSError, ValueError):
        return None


def verify_outputs(job_dir: Path) -> list[str]:
    """Files of a finished job that cannot be read back (corrupt or half-written)."""
    bad = []
    for f in sorted(job_dir.rglob("*")):
        if f.name.startswith(".") and f.name.endswith(".tmp"):
            bad.append(f"{f} (temporary file left behind)")
            continue
        try:
            if f.suffix == ".parquet":
                pd.read_parquet(f)
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as e:
            bad.append(f"{f} ({type(e).__name__})")
    return bad


def job_state(job: Job) -> tuple[str, str]:
    """(state, why) with state in complete | diverged | failed | interrupted | corrupt | missing."""
    spec = read_job(job.dir)
    if spec is None:
        return ("missing", "") if not (job.dir / "job.json").exists() else ("corrupt", "job.json unreadable")
    status = spec.get("status")
    if status in FINAL:
        bad = verify_outputs(job.dir)
        return ("corrupt", "; ".join(bad)) if bad else (status, spec.get("reason") or "")
    if status == "running":
        return "interrupted", f"was running (pid {spec.get('pid')}) when its process died"
    if status == "failed":
        return "failed", spec.get("reason") or ""
    return "missing", ""


def _log_event(out: Path, **event) -> None:
    line = json.dumps({"time": _now(), **event}) + "\n"
    fd = os.open(out / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line: lines never interleave
    finally:
        os.close(fd)


def prepare_job(job: Job) -> None:
    """Fresh job folder holding only its spec (an interrupted or corrupt attempt is wiped)."""
    if job.dir.exists():
        shutil.rmtree(job.dir)
    job.dir.mkdir(parents=True)
    atomic_write(job.dir / "job.json", {"id": job.id, "experiment": job.experiment, "preset": job.preset,
                                        "assignments": list(job.assignments), "config": job.config,
                                        "registry": job.registry, "status": "pending"})


def run_job(job_dir: str | Path) -> str:
    """Run one prepared job in this process; returns its final status. Used by workers and submitit."""
    import torch

    job_dir = Path(job_dir)
    spec = read_job(job_dir)
    if spec is None:
        raise RuntimeError(f"no readable job.json in {job_dir}")
    if os.environ.get("LAZYHASTY_THREADS"):
        torch.set_num_threads(int(os.environ["LAZYHASTY_THREADS"]))
    sweep_dir = job_dir.parent
    atomic_write(job_dir / "job.json", {**spec, "status": "running", "pid": os.getpid(), "started": _now()})
    _log_event(sweep_dir, job=spec["id"], event="start", pid=os.getpid())
    t0 = time.perf_counter()
    exp = get_experiment(spec["registry"], spec["experiment"])
    cfg = override(exp.preset(spec["preset"]), spec["assignments"])
    try:
        exp.main(cfg, job_dir)
    except BaseException as e:
        atomic_write(job_dir / "job.json", {**spec, "status": "failed", "reason": f"{type(e).__name__}: {e}",
                                            "finished": _now()})
        _log_event(sweep_dir, job=spec["id"], event="failed")
        raise
    statuses = [json.loads(p.read_text()).get("status") for p in job_dir.rglob("status.json")]
    final = "diverged" if "diverged" in statuses else "complete"
    reason = f"{statuses.count('diverged')} of {len(statuses)} runs diverged" if final == "diverged" else ""
    atomic_write(job_dir / "job.json", {**spec, "status": final, "reason": reason, "finished": _now(),
                                        "wall_s": round(time.perf_counter() - t0, 2)})
    _log_event(sweep_dir, job=spec["id"], event=final)
    return final


class SubmititJob:
    """The callable submitit runs: one job folder. On preemption it is requeued and restarts its run cleanly."""

    def __init__(self, job_dir: str):
        self.job_dir = job_dir

    def __call__(self) -> str:
        return run_job(self.job_dir)

    def checkpoint(self):  # submitit calls this on preemption / timeout and requeues what it returns
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititJob(self.job_dir))


def _run_local(todo: list[Job], workers: int, bar) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "LAZYHASTY_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    queue = list(todo)
    running: dict[subprocess.Popen, Job] = {}
    while queue or running:
        while queue and len(running) < workers:
            job = queue.pop(0)
            log = open(job.dir / "worker.log", "wb")  # noqa: SIM115 (closed when the worker ends)
            proc = subprocess.Popen([sys.executable, "-m", "lazyhasty.runs.worker", str(job.dir)], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
            proc._log = log  # type: ignore[attr-defined]
            running[proc] = job
        time.sleep(0.05)
        for proc in [p for p in running if p.poll() is not None]:
            job = running.pop(proc)
            proc._log.close()  # type: ignore[attr-defined]
            spec = read_job(job.dir) or {}
            if proc.returncode != 0 and spec.get("status") not in ("failed", *FINAL):
                why = (f"worker killed by signal {-proc.returncode}" if proc.returncode < 0
                       else f"worker exited with code {proc.returncode}")
                atomic_write(job.dir / "job.json", {**spec, "status": "failed", "reason": why, "finished": _now()})
                _log_event(job.dir.parent, job=job.id, event="failed", reason=why)
            bar.update(1)


def _run_submitit(todo: list[Job], executor_name: str, out: Path, bar, slurm: dict) -> None:
    import submitit

    folder = out / ".submitit" / "%j"
    if executor_name == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=int(slurm.get("time") or 60))
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {"timeout_min": int(slurm.get("time") or 60), "slurm_array_parallelism": slurm.get("workers") or 64}
        if slurm.get("partition"):
            params["slurm_partition"] = slurm["partition"]
        if slurm.get("gpus_per_run"):
            params["gpus_per_node"] = int(slurm["gpus_per_run"])
        ex.update_parameters(**params)
    with ex.batch():
        handles = [(ex.submit(SubmititJob(str(job.dir))), job) for job in todo]
    for handle, job in handles:
        try:
            handle.result()
        except Exception as e:  # the job's own job.json already says why, unless the worker died
            spec = read_job(job.dir) or {}
            if spec.get("status") not in ("failed", *FINAL):
                atomic_write(job.dir / "job.json", {**spec, "status": "failed",
                                                    "reason": f"{type(e).__name__}: {str(e)[:300]}"})
        bar.update(1)


def run_sweep(jobs: list[Job], out: Path, executor: str = "local", workers: int | None = None,
              progress: bool | None = True, slurm: dict | None = None) -> dict:
    """Run every job that is not complete. Returns counts by final status and the list of re-run reasons."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".sweep.lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
            os.kill(pid, 0)
            raise UsageError(f"another sweep (pid {pid}) is running in {out}; wait for it or remove {lock}")
        except (ProcessLookupError, ValueError, PermissionError):
            pass  # stale lock from a killed sweep
    lock.write_text(str(os.getpid()))
    try:
        atomic_write(out / "sweep.json", {"jobs": [{"id": j.id, "experiment": j.experiment, "preset": j.preset,
                                                    "assignments": list(j.assignments)} for j in jobs]})
        todo, notes, skipped = [], [], 0
        for job in jobs:
            state, why = job_state(job)
            if state in FINAL:
                skipped += 1
                continue
            if state in ("interrupted", "corrupt", "failed"):
                notes.append(f"{job.id}: {state}{': ' + why if why else ''} -> re-run")
            prepare_job(job)
            todo.append(job)
        for n in notes:
            print(f"[sweep] {n}", flush=True)
        print(f"[sweep] {len(jobs)} jobs: {skipped} already done, {len(todo)} to run", flush=True)
        workers = max(1, workers or (os.cpu_count() or 1))
        bar = tqdm(total=len(todo), desc="sweep", unit="job", disable=(None if progress is None else not progress))
        if todo:
            if executor == "local":
                _run_local(todo, workers, bar)
            elif executor in ("slurm", "submitit-local"):
                _run_submitit(todo, executor, out, bar, {**(slurm or {}), "workers": workers})
            else:
                raise UsageError(f"unknown executor {executor!r}; choose local, slurm or submitit-local")
        bar.close()
    finally:
        lock.unlink(missing_ok=True)
    counts = {"complete": 0, "diverged": 0, "failed": 0}
    for job in jobs:
        state, _ = job_state(job)
        counts[state if state in counts else "failed"] += 1
    return {"counts": counts, "rerun": notes}
