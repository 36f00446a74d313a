"""Sweeps: a grid of experiment configs, each run once, surviving interruptions, on one machine or a cluster.

Layout of a sweep folder::

    DIR/sweep.json          the plan: experiment, preset, overrides, every job's id and assignments
    DIR/events.jsonl        one line per job start / end (appended, for auditing "exactly once")
    DIR/<job id>/job.json   the job's spec and status: pending | running | complete | diverged | failed
    DIR/<job id>/...        the experiment's own output (figures, run records)

A job's id is a hash of the experiment's name, its config schema version (``Experiment.schema``, raised when a
change of the code changes what a config means) and the config fields that differ from the config class's
defaults: the same command always maps the same config to the same folder, and adding a field with a default keeps
finished jobs finished. Experiments come from a registry that the caller names (``"module:function"``,
e.g. ``lazyhasty.experiments:registry``): the runner never imports the experiments, it records the registry's name
in each job so that a worker process (or a SLURM job) can look its experiment up. A registry maps names to
objects with ``config`` (the config dataclass), ``default_preset``, ``preset(name)`` and ``main(config, folder)``.
Running a sweep runs exactly the jobs that are not complete. A job is complete only when its ``job.json`` says
complete (or diverged: a finished measurement) and every file it lists exists with the recorded size and SHA-256.
A job that was interrupted (or whose process died) continues from its checkpoints (every training run's whole
state, written every ``checkpoint_every_s`` seconds and on SIGTERM / SIGUSR2: :mod:`lazyhasty.dynamics.checkpoint`)
and ends bit-identical to an uninterrupted job; a job that failed or whose files differ is reported, wiped and
re-run from scratch. A job counts as complete only if every run record inside it reached a final status itself.

One sweep at a time per folder: the sweep holds ``DIR/.lock`` (flock; a second sweep exits 2 naming the PID).
Workers run in their own process groups and die with the sweep (Linux: PR_SET_PDEATHSIG); Ctrl-C or SIGTERM stops
them, marks their jobs interrupted and exits 130; running the same command again resumes.

Back ends: ``local`` (default) runs each job in its own worker process, at most ``workers`` at a time, with
torch's threads split between them, so a worker that dies takes only its own job with it; ``slurm`` submits
them through submitit as a job array. A SLURM job that is pre-empted, reaches its time limit (SIGUSR2,
submitit's checkpoint) or is requeued (``scontrol requeue``) writes its checkpoint, is requeued and continues from
it. The sweep prints one line per job state change (pending, running, resumed, complete, failed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

from ..config import MAX_INT, changed_fields, check_machine, override, split_assignment, to_assignments, to_dict
from ..errors import FolderInUse, UsageError, signals_interrupt, stopped_by
from ..files import FolderLock, atomic_write, make_folder
from .output import RECORD_FILES, records_in
from .records import DIED, FINAL_STATUSES, Output, _now, check_files, close_open_records, file_digest, writer_state

FINAL = ("complete", "diverged")
MAX_JOBS = 10_000  # a sweep plans at most this many jobs (a typo such as --seeds 0-100000000 is refused at once)


@dataclass(frozen=True)
class Job:
    id: str
    experiment: str
    preset: str
    assignments: tuple[str, ...]  # key=value overrides that define this job
    config: dict
    dir: Path
    registry: str  # "module:function" returning the experiment registry (looked up by the worker)


def import_object(spec: str, what: str = "registry", cwd: bool = False):
    """The object named ``package.module:name``; ``cwd``: the current folder is importable too (a user's module).
    A malformed name, a module that does not import or a missing name is a :class:`UsageError` naming ``what``."""
    import importlib

    mod, sep, name = spec.partition(":")
    if not sep or not mod or not name.isidentifier():
        raise UsageError(f"{what} expects package.module:name, got {spec!r}")
    if cwd and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod)
    except Exception as e:
        raise UsageError(f"{what}: cannot import {mod!r}: {type(e).__name__}: {e}") from None
    if not hasattr(module, name):
        raise UsageError(f"{what}: module {mod!r} has no {name!r}")
    return getattr(module, name)


def get_experiment(registry: str, name: str):
    """Experiment ``name`` of the registry named ``"module:function"`` (imported by name, not by this module)."""
    exps = import_object(registry)()
    if name not in exps:
        raise UsageError(f"unknown experiment {name!r}; available: {', '.join(sorted(exps))} (see `lazyhasty list`)")
    return exps[name]


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` -> [0, 3, 7]; ``"0-2,9"`` -> [0, 1, 2, 9]."""
    ranges = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"--seeds expects a range like 0-4 or a list like 0,3,7; got {text!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi > MAX_INT:
            raise UsageError(f"--seeds: seed {hi} is out of range (at most {MAX_INT})")
        ranges.append(range(lo, hi + 1))
    if sum(map(len, ranges)) > MAX_JOBS:
        raise UsageError(f"--seeds {text} names {sum(map(len, ranges))} seeds; a sweep has at most {MAX_JOBS} jobs")
    return [s for r in ranges for s in r]


def _is_sequence_field(cfg_cls, key: str) -> bool:
    tp = get_type_hints(cfg_cls).get(key)
    return get_origin(tp) in (tuple, list) or any(get_origin(a) in (tuple, list) for a in get_args(tp))


def parse_grid(specs: list[str], cfg_cls) -> dict[str, list[str]]:
    """``["alpha=1,10,100", "widths=64,64;128,128"]`` -> {key: [value, ...]}. Values of a sequence-typed field
    are separated by ``;`` (a value itself is a comma list); other fields' values by ``,``."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, vals = split_assignment(spec, cfg_cls, "grid key", "--grid expects key=v1,v2,...")
        if key in grid:
            raise UsageError(f"grid key {key!r} is given twice; list all its values in one: {key}=v1,v2,...")
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
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read sweep file {path}: {e}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UsageError("reading a YAML sweep file needs PyYAML (pip install pyyaml), or use TOML") from None
            data = yaml.safe_load(text)
            data = {} if data is None else data
        else:
            import tomllib

            data = tomllib.loads(text)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"cannot parse sweep file {path}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a sweep file is a table (experiment, preset, grid, seeds, set), not a "
                         f"{type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SWEEP_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; a sweep file has "
                         f"{', '.join(SWEEP_KEYS)}")
    for key in ("experiment", "preset"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UsageError(f"{path}: '{key}' must be a string, got {data[key]!r}")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(vs, list) and vs for vs in grid.values()):
        raise UsageError(f"{path}: 'grid' must be a table of non-empty lists, e.g. grid = {{lr = [0.1, 0.5]}}")
    seeds = data.get("seeds")
    if isinstance(seeds, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        seeds = ",".join(str(x) for x in seeds)
    if seeds is not None and not isinstance(seeds, str):
        raise UsageError(f"{path}: 'seeds' must be a string like '0-4' or a list of integers, got {seeds!r}")
    sets = data.get("set") or []
    if not isinstance(sets, list) or not all(isinstance(a, str) for a in sets):
        raise UsageError(f"{path}: 'set' must be a list of 'key=value' strings, got {sets!r}")
    return {"experiment": data.get("experiment"), "preset": data.get("preset"), "seeds": seeds, "set": sets,
            "grid": [f"{k}={(';' if any(isinstance(v, list) for v in vs) else ',').join(_fmt(v) for v in vs)}"
                     for k, vs in grid.items()]}


SWEEP_KEYS = ("experiment", "preset", "grid", "seeds", "set")


def _fmt(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)


def job_id(experiment: str, config, schema: int = 1) -> str:
    """12 hex digits hashing the experiment, its config schema version and the config's non-default fields."""
    blob = json.dumps({"experiment": experiment, "schema": schema, "config": changed_fields(config)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _job(exp, preset: str, config, assignments: tuple[str, ...], out: Path, registry: str) -> Job:
    jid = job_id(exp.name, config, getattr(exp, "schema", 1))
    return Job(jid, exp.name, preset, assignments, to_dict(config), out / jid, registry)


def plan(registry: str, experiment: str, preset: str | None, sets: list[str], grid: list[str], seeds: str | None,
         out: Path) -> list[Job]:
    """Expand the grid (times the seeds) into jobs with stable ids. Validates every config up front.

    ``seeds`` makes one job per seed, whatever the experiment: it sets the config's ``seed`` (the first
    initialisation seed) and, where the config has a ``seeds`` count, ``seeds=1``."""
    exp = get_experiment(registry, experiment)
    preset = preset or exp.default_preset
    base = override(exp.preset(preset), sets)
    axes = {k: [(f"{k}={v}",) for v in vals] for k, vals in parse_grid(grid, exp.config).items()}
    if seeds is not None:
        fields = {f.name for f in dataclasses.fields(exp.config)}
        if "seed" not in fields:
            raise UsageError(f"experiment {experiment!r} has no 'seed' field; sweep its seeds with --grid")
        axes["seed"] = [(f"seed={s}", *(("seeds=1",) if "seeds" in fields else ())) for s in parse_seeds(seeds)]
    size = 1
    for vals in axes.values():
        size *= len(vals)
    if size > MAX_JOBS:
        raise UsageError(f"the grid has {size} jobs; a sweep has at most {MAX_JOBS}")
    jobs, seen = [], set()
    for combo in itertools.product(*axes.values()):
        assignments = tuple(a for group in combo for a in group)
        job = _job(exp, preset, override(base, assignments), tuple(sets) + assignments, out, registry)
        if job.id not in seen:
            seen.add(job.id)
            jobs.append(job)
    return jobs


def config_jobs(registry: str, experiment: str, preset: str, configs, out: Path) -> list[Job]:
    """One job per config dataclass (ids as in :func:`plan`), in ``out/<id>``."""
    exp = get_experiment(registry, experiment)
    return [_job(exp, preset, c, tuple(to_assignments(c)), out, registry) for c in configs]


def read_job(job_dir: Path) -> dict | None:
    try:
        spec = json.loads((job_dir / "job.json").read_text())
    except (OSError, ValueError):
        return None
    return spec if isinstance(spec, dict) else None


def job_files(job_dir: Path) -> dict:
    """{relative path: {size, sha256}} of every file a finished job wrote (not job.json, the worker's log, or
    hidden files such as locks)."""
    files = {}
    for f in sorted(job_dir.rglob("*")):
        rel = f.relative_to(job_dir)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts) and \
                rel.as_posix() not in ("job.json", "worker.log"):
            files[rel.as_posix()] = file_digest(f)
    return files


def job_state(job: Job, live: bool = False) -> tuple[str, str]:
    """(state, why) with state in complete | diverged | failed | interrupted | corrupt | pending | missing; a job
    whose job.json says running is interrupted (what a sweep, which holds the folder, finds after one that died),
    or with ``live`` (a reader beside a sweep that may be running) :func:`~lazyhasty.runs.records.writer_state` of
    the process its last attempt names."""
    spec = read_job(job.dir)
    if spec is None:
        return ("missing", "") if not (job.dir / "job.json").exists() else ("corrupt", "job.json unreadable")
    status = spec.get("status")
    if status in FINAL:
        if not isinstance(spec.get("files"), dict):
            return "corrupt", "job.json lists no files (written by an older lazyhasty)"
        bad = check_files(job.dir, spec["files"])
        return ("corrupt", "; ".join(bad[:3]) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")) if bad \
            else (status, spec.get("reason") or "")
    if status == "running":
        attempt = (spec.get("attempts") or [{}])[-1]
        return writer_state(spec.get("pid"), attempt.get("started"), attempt.get("host")) if live else \
            ("interrupted", DIED.format(spec.get("pid")))
    if status in ("failed", "interrupted", "pending"):
        return status, spec.get("reason") or ""
    return "missing", ""


def _log_event(out: Path, **event) -> None:
    line = json.dumps({"time": _now(), **event}) + "\n"
    fd = os.open(out / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask, like every record
        os.write(fd, line.encode())  # one write per line: lines never interleave
    finally:
        os.close(fd)


def prepare_job(job: Job, checkpoint_every_s: float = 60.0, tensorboard: bool = False) -> None:
    """The job's folder with its spec, status pending. An interrupted attempt (or one whose process died) is kept,
    to continue from its checkpoints; a failed or corrupt one is wiped. Refused with :class:`FolderInUse` if a
    process still holds the folder (e.g. a worker of a sweep that was killed)."""
    state, _ = job_state(job)
    attempts = (read_job(job.dir) or {}).get("attempts", []) if state == "interrupted" else []
    if job.dir.exists():
        lock = FolderLock(job.dir, "job folder")
        if not attempts:
            shutil.rmtree(job.dir)
        lock.release()
    make_folder(job.dir)
    atomic_write(job.dir / "job.json", {"id": job.id, "experiment": job.experiment, "preset": job.preset,
                                        "assignments": list(job.assignments), "config": job.config,
                                        "registry": job.registry, "status": "pending", "attempts": attempts,
                                        "checkpoint_every_s": checkpoint_every_s, "tensorboard": tensorboard},
                 reserve=True)


def run_experiment(exp, cfg, output: Output) -> dict | None:
    """An experiment's ``main`` into ``output``: the one way the command line (``lazyhasty run``) and sweep jobs
    run one. Its checkpoints are deleted once ``main`` completes (an error keeps them, for a resume)."""
    summary = exp.main(cfg, output)
    if output.checkpoints is not None:
        output.checkpoints.clear()
    return summary


def run_job(job_dir: str | Path) -> str:
    """Run one prepared job in this process; returns its final status. Used by workers and submitit.

    The job holds its folder's lock while it runs. A job that ran before (an interrupted attempt, a requeued
    SLURM job) continues from its checkpoints. It ends complete or diverged only if every run record inside it
    reached that status itself; its job.json then lists every file with its size and checksum."""
    import torch

    from ..dynamics.checkpoint import Checkpointing

    job_dir = Path(job_dir)
    spec = read_job(job_dir)
    if spec is None:
        raise RuntimeError(f"no readable job.json in {job_dir}")
    lock = FolderLock(job_dir, "job folder")
    if os.environ.get("LAZYHASTY_THREADS"):
        torch.set_num_threads(int(os.environ["LAZYHASTY_THREADS"]))
    sweep_dir = job_dir.parent
    t0 = time.perf_counter()

    def finish(status: str, reason: str) -> str:
        atomic_write(job_dir / "job.json", {**spec, "status": status, "reason": reason, "finished": _now(),
                                            "wall_s": round(time.perf_counter() - t0, 2),
                                            "files": job_files(job_dir) if status in FINAL else {}}, reserve=True)
        _log_event(sweep_dir, job=spec["id"], event=status, **({"reason": reason} if reason else {}))
        lock.release()
        return status

    resume = bool(spec.get("attempts"))
    attempt = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
               **({"slurm_job": _slurm_id()} if "SLURM_JOB_ID" in os.environ else {})}
    spec = {**spec, "pid": os.getpid(), "started": _now(), "attempts": [*spec.get("attempts", []), attempt]}
    try:
        atomic_write(job_dir / "job.json", {**spec, "status": "running"}, reserve=True)
        _log_event(sweep_dir, job=spec["id"], event="resumed" if resume else "running", pid=os.getpid(),
                   host=attempt["host"])
        exp = get_experiment(spec["registry"], spec["experiment"])
        cfg = override(exp.preset(spec["preset"]), spec["assignments"])
        check_machine(to_dict(cfg))
        run_experiment(exp, cfg, Output(job_dir, Checkpointing(job_dir, spec.get("checkpoint_every_s", 60.0), resume),
                                        bool(spec.get("tensorboard"))))
    except BaseException as e:
        status, reason = stopped_by(e)
        close_open_records(status, reason)
        finish(status, reason)
        raise
    runs = {}
    for p in job_dir.rglob("status.json"):
        try:
            runs[p.parent.relative_to(job_dir).as_posix()] = json.loads(p.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            runs[p.parent.relative_to(job_dir).as_posix()] = "unreadable"
    unfinished = {r: st for r, st in runs.items() if st not in FINAL}
    if unfinished:
        return finish("failed", f"{len(unfinished)} of {len(runs)} runs did not finish: "
                      + ", ".join(f"{r} {st}" for r, st in sorted(unfinished.items())[:5]))
    diverged = sum(st == "diverged" for st in runs.values())
    return finish("diverged", f"{diverged} of {len(runs)} runs diverged") if diverged else finish("complete", "")


def _slurm_id() -> str:
    """This SLURM job's id as squeue and scontrol name it: ``<array job>_<task>`` for a task of a job array (the
    array's first task shares its bare numeric id with the whole array), else the job id."""
    env = os.environ
    if "SLURM_ARRAY_JOB_ID" in env and "SLURM_ARRAY_TASK_ID" in env:
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


class SubmititJob:
    """The callable submitit runs: one job folder. On pre-emption or timeout it is requeued and continues from its
    checkpoints. SIGTERM (``scancel``, a requeue) ends it at once as interrupted, as it does a local worker's job:
    submitit's own handler would ignore it until SLURM's KillWait ran out and SIGKILL left the job unrecorded."""

    def __init__(self, job_dir: str):
        self.job_dir = job_dir

    def __call__(self) -> str:
        with signals_interrupt():
            return run_job(self.job_dir)

    def checkpoint(self):  # submitit calls this on preemption / timeout and requeues what it returns
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititJob(self.job_dir))


def _die_with_parent() -> None:
    """In a worker, before exec: its own process group, and SIGTERM when the sweep process dies (Linux)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _fail_if_unfinished(job: Job, why: str, status: str = "failed") -> None:
    """Give a job whose worker ended without a final status one (the worker died, or the sweep stopped it)."""
    spec = read_job(job.dir) or {}
    if spec.get("status") not in FINAL_STATUSES:
        atomic_write(job.dir / "job.json", {**spec, "status": status, "reason": why, "finished": _now()},
                     reserve=True)
        _log_event(job.dir.parent, job=job.id, event=status, reason=why)


class _Lines:
    """One printed line per job state change: what the jobs log in the sweep's events.jsonl (running, resumed,
    complete, diverged, failed, interrupted) and, on SLURM, the queue's own states (pending, running, ...)."""

    def __init__(self, out: Path, jobs: list[Job], quiet: bool = False):
        self.file, self.quiet = out / "events.jsonl", quiet
        self.pos = self.file.stat().st_size if self.file.exists() else 0
        self.names = {j.id: " ".join(j.assignments) for j in jobs}
        self.total, self.seen = len(jobs), {}

    def say(self, job: str, state: str, detail: str = "") -> None:
        if self.seen.get(job) == (state, detail):
            return
        self.seen[job] = (state, detail)
        if not self.quiet:
            ended = sum(st in (*FINAL, "failed") for st, _ in self.seen.values())
            print(f"[sweep] {job} {state:<11} {self.names.get(job, '')}" + (f"  ({detail})" if detail else "")
                  + (f"  [{ended}/{self.total} ended]" if state in (*FINAL, "failed") else ""), flush=True)

    def poll(self) -> None:
        """Print the events the jobs logged since the last call."""
        try:
            with open(self.file, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        lines = data.split(b"\n")
        self.pos += len(data) - len(lines[-1])  # a line still being written is read next time
        for line in lines[:-1]:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("job") in self.names:
                detail = ev.get("reason") or (f"pid {ev['pid']} on {ev.get('host', '?')}" if "pid" in ev else "")
                self.say(ev["job"], ev.get("event", "?"), detail)


def cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM allocation or a container's share), not the
    machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def share_cores(workers: int, available: int) -> tuple[int, int]:
    """(workers, torch threads per worker) for local workers on ``available`` cores: never more workers than cores,
    and workers x threads <= cores (two threads per process on a shared 2-core machine can run tens of times
    slower than one)."""
    workers = max(1, min(workers, available))
    return workers, max(1, available // workers)


def _run_local(todo: list[Job], workers: int, threads: int, lines: _Lines) -> None:
    """The jobs on ``workers`` local worker processes (:mod:`lazyhasty.runs.worker`), each running one job after
    another. A worker that dies fails only the job it was running; a new one takes the rest."""
    env = {**os.environ, "LAZYHASTY_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    queue = list(todo)
    running: dict[subprocess.Popen, Job | None] = {}  # worker -> the job it runs (None: it is ending)

    def give(proc: subprocess.Popen) -> None:  # the next job, or end of input: the worker exits
        running[proc] = queue.pop(0) if queue else None
        with contextlib.suppress(BrokenPipeError):
            if running[proc] is None:
                proc.stdin.close()
            else:
                proc.stdin.write(f"{running[proc].dir}\n".encode())
                proc.stdin.flush()

    try:
        while queue or running:
            while queue and len(running) < workers and all(job is not None for job in running.values()):
                proc = subprocess.Popen([sys.executable, "-m", "lazyhasty.runs.worker"], env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, preexec_fn=_die_with_parent)  # stdout: job statuses
                os.set_blocking(proc.stdout.fileno(), False)
                give(proc)
            time.sleep(0.05)
            for proc in list(running):
                with contextlib.suppress(BlockingIOError):
                    if running[proc] is not None and os.read(proc.stdout.fileno(), 4096):  # done: the next one
                        _fail_if_unfinished(running[proc], "its worker ended it without a final status")  # (a
                        give(proc)  # job.json it could not read, say); a no-op for a job that has one
                if proc.poll() is not None:  # the job it holds (if any) was not done: it gets a final status
                    job = running.pop(proc)
                    proc.stdout.close()
                    if job is not None:
                        _fail_if_unfinished(job, f"worker killed by signal {-proc.returncode}" if proc.returncode < 0
                                            else f"worker exited with code {proc.returncode}")
            lines.poll()
    finally:  # Ctrl-C, SIGTERM or an error here: stop every worker (and what it started), then mark its job
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc, job in running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
            if job is not None:
                _fail_if_unfinished(job, "the sweep was stopped", "interrupted")


def _run_slurm(todo: list[Job], out: Path, lines: _Lines, slurm: dict) -> None:
    import logging

    import submitit

    # a cluster without accounting answers no sacct query; the sweep tracks its jobs with squeue instead
    logging.getLogger("submitit").addFilter(lambda record: "sacct" not in record.getMessage())
    ex = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster="slurm")
    params = {"timeout_min": int(slurm.get("time") or 60), "slurm_array_parallelism": slurm.get("workers") or 64}
    if slurm.get("partition"):
        params["slurm_partition"] = slurm["partition"]
    if slurm.get("gpus_per_run"):
        params["gpus_per_node"] = int(slurm["gpus_per_run"])
    ex.update_parameters(**params)
    with ex.batch():
        handles = [(ex.submit(SubmititJob(str(job.dir))), job) for job in todo]
    pending, vanished = dict(handles), set()
    try:
        while pending:
            for handle, job in list(pending.items()):
                # only the result file: submitit's other test asks sacct, which a cluster without accounting
                # answers with an error message on every poll
                if handle.paths.result_pickle.exists():
                    try:
                        handle.result()
                    except Exception as e:  # the job's own job.json already says why, unless the worker died
                        _fail_if_unfinished(job, f"{type(e).__name__}: {str(e)[:300]}")
                    del pending[handle]
            queued = _slurm_queue() if pending else None
            if queued is not None:  # without accounting, submitit never learns that a job died without a result
                gone = {h for h in pending if str(h.job_id) not in queued}
                for handle in gone & vanished:  # absent twice in a row: it ended
                    _fail_if_unfinished(pending.pop(handle), f"SLURM job {handle.job_id} ended without a result "
                                        f"(cancelled, killed or out of memory; see {handle.paths.stderr})")
                vanished = gone
                for handle, job in pending.items():  # the queue's own states; running is the job's own line
                    state = queued.get(str(handle.job_id), "RUNNING")
                    if state != "RUNNING":
                        lines.say(job.id, state.lower(), f"SLURM job {handle.job_id}")
            lines.poll()
            time.sleep(1.0)
    except BaseException:  # stopped while waiting: cancel what is still queued or running
        for handle, job in pending.items():
            with contextlib.suppress(Exception):
                handle.cancel()
            _fail_if_unfinished(job, "the sweep was stopped", "interrupted")
        raise


def _slurm_queue() -> dict[str, str] | None:
    """{job id: state} of this user's SLURM jobs still queued or running (array tasks one by one; PENDING, RUNNING,
    ...), or None if squeue fails."""
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-u", str(os.getuid()), "-o", "%i %T"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2) \
        if r.returncode == 0 else None


def run_sweep(jobs: list[Job], out: Path, executor: str = "local", workers: int | None = None,
              progress: bool | None = True, slurm: dict | None = None, checkpoint_every_s: float = 60.0,
              tensorboard: bool = False, lock: FolderLock | None = None) -> dict:
    """Run every job that is not complete. Returns counts by final status and the list of re-run reasons.

    ``checkpoint_every_s``: how often each job's training runs write their checkpoints; ``tensorboard``: every run
    record of the jobs also writes TensorBoard files. ``progress``: print one line per job state change.

    Refused with :class:`FolderInUse` (exit 2 on the command line) while another sweep holds ``out``, or when
    ``out`` holds the records of another experiment or of a single run. ``lock``: ``out``'s lock if the caller
    holds it already (the command line takes it before it plans the jobs), released at the end."""
    if executor not in ("local", "slurm"):
        raise UsageError(f"unknown executor {executor!r}; choose local or slurm")
    lock = lock or FolderLock(make_folder(out), "sweep folder")
    try:
        old = {"jobs": read_plan(out) if (out / "sweep.json").exists() else []}
        mine = {"sweep.json", *(j["id"] for j in old["jobs"])}
        other = next((p for p in out.iterdir() if p.name not in mine and (p.name in RECORD_FILES or records_in(p))),
                     None)
        if other is not None:
            raise FolderInUse(f"{out} holds records that are not this sweep's jobs ({other.name}); a sweep folder "
                              "holds its own jobs only: choose another --out")
        names = {j.experiment for j in jobs} | {j["experiment"] for j in old["jobs"]}
        if len(names) > 1:
            raise FolderInUse(f"{out} holds a sweep of {', '.join(sorted(names - {jobs[0].experiment}))}; a sweep "
                              "folder holds one experiment: choose another --out")
        listed = {j.id: {"id": j.id, "experiment": j.experiment, "preset": j.preset,
                         "assignments": list(j.assignments)} for j in jobs}
        atomic_write(out / "sweep.json", {"jobs": [*(j for j in old.get("jobs", []) if j["id"] not in listed),
                                                   *listed.values()]})
        todo, notes, skipped = [], [], 0
        for job in jobs:
            state, why = job_state(job)
            if state in FINAL:
                skipped += 1
                continue
            if state != "missing":
                notes.append(f"{job.id}: {state}{': ' + why if why else ''} -> " + (
                    "continue from its checkpoints" if state == "interrupted" else "re-run"))
            prepare_job(job, checkpoint_every_s, tensorboard)
            todo.append(job)
        for n in notes:
            print(f"[sweep] {n}", flush=True)
        have = cores()
        asked = max(1, workers or have)
        workers, threads = share_cores(asked, have) if executor == "local" else (asked, 0)
        how = (f"; {workers} worker{'s' * (workers > 1)} x {threads} torch thread{'s' * (threads > 1)} on {have} "
               f"cores" + (f" ({asked} workers asked: at most one per core)" if asked > workers else "")
               if executor == "local" else f"; {executor}, up to {workers} at a time")
        print(f"[sweep] {len(jobs)} jobs: {skipped} already done, {len(todo)} to run{how if todo else ''}",
              flush=True)
        lines = _Lines(out, todo, quiet=progress is False)
        if todo and executor == "local":
            _run_local(todo, workers, threads, lines)
        elif todo:
            _run_slurm(todo, out, lines, {**(slurm or {}), "workers": workers})
        lines.poll()
    finally:
        lock.release()
    counts = {"complete": 0, "diverged": 0, "failed": 0, "interrupted": 0}
    for job in jobs:
        state, _ = job_state(job)
        counts[state if state in counts else "failed"] += 1
    return {"counts": counts, "rerun": notes}


def read_plan(out: Path) -> list[dict]:
    """The jobs listed in ``out/sweep.json`` (``{"jobs": [{"id", "experiment", "preset", "assignments"}, ...]}``),
    checked field by field; anything else is a :class:`FolderInUse` error naming the file."""
    try:
        doc = json.loads((out / "sweep.json").read_text())
    except (OSError, ValueError):
        doc = None
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, list) or not all(
            isinstance(j, dict) and isinstance(j.get("id"), str) and re.fullmatch(r"[0-9a-f]{12}", j["id"])
            and isinstance(j.get("experiment"), str) and isinstance(j.get("preset"), (str, type(None)))
            and isinstance(j.get("assignments"), list) and all(isinstance(a, str) for a in j["assignments"])
            for j in jobs):
        raise FolderInUse(f"{out} is not a readable sweep folder: its sweep.json is missing or not a valid plan "
                          "(choose another --out, or restore the file)")
    return jobs


def sweep_status(out: Path) -> list[tuple[str, str, str, str]]:
    """(job id, state, why, assignments) of every job a sweep folder's plan lists, verified as a sweep would
    (sizes and checksums included), without starting or locking anything. A job whose job.json says running is
    ``running`` while its process lives (on another machine, as job.json says: it cannot be checked from here)."""
    jobs = [Job(j["id"], j["experiment"], j["preset"], tuple(j["assignments"]), {}, out / j["id"], "")
            for j in read_plan(out)]
    return [(j.id, *job_state(j, live=True), " ".join(j.assignments)) for j in jobs]
