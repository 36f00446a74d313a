"""One directory per run, written atomically, and read back as one DataFrame.

A run directory holds
    config.json      the resolved configuration
    env.json         package versions, git SHA, device, threads, seed, host
    metrics.parquet  the long table: run_id, step, t, milestone, split, group, metric, value
    trace.parquet    per-step trace: step, t, loss (the training objective the stepper saw), dt
    status.json      {"status": running|complete|diverged|failed|interrupted, "reason": ..., timestamps,
                      "files": {name: {"size", "sha256"}} of the files above as last written, ...}
    .lock            held (flock) by the one process writing the run; the kernel releases it when that process ends
Every file is written to a temporary file in the same folder, fsynced, made 0644 and renamed into place, and the
folder is fsynced after the rename, so a killed run (or a crashed machine) leaves either the previous complete file
or the new complete file, never half of one. A run owns its folder: a second writer, or a second run started in a
folder that holds one, is refused (:class:`FolderInUse`). A run that ends in any way other than SIGKILL leaves a
final status: the engine sets it, and a process that exits with a run still ``running`` marks it ``failed``.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import FolderInUse
from ..files import FolderLock, atomic_write

if TYPE_CHECKING:  # torch: not imported by a process that only plans, watches or reads runs
    from ..dynamics.checkpoint import Checkpointing

STATUSES = ("running", "complete", "diverged", "failed", "interrupted")
FINAL_STATUSES = STATUSES[1:]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_digest(path: Path) -> dict:
    """{"size": bytes, "sha256": hex digest} of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def check_files(folder: Path, files: dict) -> list[str]:
    """What is wrong with the files a status lists (``{relative name: file_digest}``): missing, wrong size,
    wrong checksum. Empty when every file is exactly as recorded."""
    bad = []
    for name, want in sorted(files.items()):
        f = folder / name
        if not f.is_file():
            bad.append(f"{f} is missing")
            continue
        got = file_digest(f)
        if got["size"] != want.get("size"):
            bad.append(f"{f} has {got['size']} bytes, {want.get('size')} recorded")
        elif got["sha256"] != want.get("sha256"):
            bad.append(f"{f} does not match its recorded checksum")
    return bad


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The git commit of the lazyhasty source tree, if it is a git checkout (with '+dirty' if modified)."""
    try:  # the full SHA (tags excluded), with the mark when tracked files are modified
        p = subprocess.run(["git", "describe", "--always", "--dirty=+dirty", "--abbrev=40", "--exclude=*"],
                           cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


@functools.cache  # read once per process: a sweep's records each ask (0.6 s for fig1's 60 runs)
def _version(dist: str) -> str | None:
    """An installed distribution's version, None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(seed: int | None = None, device: str = "cpu") -> dict:
    """Provenance of a run: versions, git SHA, device, threads, seed, host. The libraries' versions are read from
    their installed metadata, without importing them (matplotlib alone takes about a second to import)."""
    import torch

    env = {
        "lazyhasty": _version("lazyhasty"),  # None for a source tree on sys.path, not installed
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: _version(name) for name in ("numpy", "scipy", "pandas", "matplotlib")},
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seed": seed,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    return env


DIED = "was running (pid {}) when its process died"


def writer_state(pid, started: str | None, host: str | None) -> tuple[str, str]:
    """Whether the process that a record says is writing it (``pid`` on ``host``, writing since the ISO time
    ``started``) still is: ("running", why) while that process lives (Linux; a PID reused by a process that started
    later is not it) or when it runs on another machine (not checked from here), else ("interrupted", why)."""
    if host is not None and host != socket.gethostname():
        return "running", f"pid {pid} on {host}, as recorded (not checked from here)"
    try:  # not ended (a zombie), and not another process that reuses its PID
        fields = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(x.split()[1]) for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime"))
        alive = fields[0] not in "ZX" and boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") <= \
            _dt.datetime.fromisoformat(started).timestamp() + 1
    except (OSError, StopIteration, LookupError, TypeError, ValueError):
        alive = False
    return ("running", f"pid {pid} since {started}") if alive else ("interrupted", DIED.format(pid))


class RunRecord:
    """The directory of one run, and the engine's :class:`~lazyhasty.RecordSink` for it (Parquet tables, JSON
    status). Create with :meth:`start`; every write is atomic.

    Args:
        path: the run's folder.
        tensorboard: also write TensorBoard event files under ``path/tensorboard`` (a :class:`TensorBoardSink`).
    """

    def __init__(self, path: str | Path, tensorboard: bool = False):
        self.path = Path(path)
        self.run_id = self.path.name
        self.tensorboard = TensorBoardSink(self.path / "tensorboard") if tensorboard else None
        self._lock: FolderLock | None = None
        self._written: list[str] = []  # files of the run, listed with their digests in every status written

    def start(self, config, *, resume: bool = False, **fields) -> RunRecord:
        """Take the folder (refused with :class:`FolderInUse` if another process writes it or it already holds a
        run) and write ``config.json`` (``config``, a dict or a config dataclass, updated with ``fields``),
        ``env.json`` (provenance, with the config's ``seed`` and ``device``) and status ``running``.

        With ``resume`` (``lazyhasty run --resume``, a requeued sweep job: :meth:`Output.record`) a folder that
        holds this run, with the same config, is reopened instead: the engine then continues it from its
        checkpoint (or trains it again) and gives it its final status again."""
        config = {**(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config), **fields}
        self._lock = FolderLock(self.path, "run folder")
        old = self.status()
        if old is not None:  # (no config.json: a start cut short after its first status, which lists no file)
            same = _json(config) == _json(json.loads((self.path / "config.json").read_text())) \
                if (self.path / "config.json").is_file() else not old.get("files")
            if not (resume and same):
                self._lock.release()
                raise FolderInUse(f"run folder {self.path} already holds a run's records" + (
                    " of another config" if resume else "") + "; choose another folder "
                    "(records are never overwritten)")
            self._written = [f for f in old.get("files", {}) if (self.path / f).is_file()]
        _OPEN.add(self)
        self.set_status("running", started=(old or {}).get("started", _now()))  # first: a run always has a status
        self._save("config.json", config)
        self._save("env.json", environment(config.get("seed"), config.get("device") or "cpu"))
        self.set_status("running")
        return self

    def resumed(self, step: int, t: float) -> None:
        """The engine continued this run from a checkpoint at ``step``: listed in ``status.json["resumes"]``.
        (TensorBoard event files then hold the points measured between that checkpoint and the interruption
        twice, with equal values.)"""
        resumes = (self.status() or {}).get("resumes", [])
        self.set_status("running", resumes=[*resumes, {"step": step, "t": t, "at": _now(),
                                                       "host": socket.gethostname()}])

    def _save(self, name: str, content) -> None:
        atomic_write(self.path / name, content)
        if name not in self._written:
            self._written.append(name)

    def status(self) -> dict | None:
        f = self.path / "status.json"
        return json.loads(f.read_text()) if f.exists() else None

    def set_status(self, status: str, reason: str | None = None, **info) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        old = self.status() or {}
        atomic_write(self.path / "status.json", {**old, **info, "status": status, "reason": reason, "updated": _now(),
                                                 "files": {f: file_digest(self.path / f) for f in self._written}},
                     reserve=True)
        if status != "running":
            _OPEN.discard(self)
            if self.tensorboard is not None:
                self.tensorboard.set_status(status, reason, **info)
            if self._lock is not None:
                self._lock.release()

    def write(self, metrics: pd.DataFrame, trace: pd.DataFrame) -> None:
        self._save("metrics.parquet", metrics)
        self._save("trace.parquet", trace)
        if self.tensorboard is not None:
            self.tensorboard.write(metrics, trace)


@dataclasses.dataclass
class Output:
    """Where an experiment writes and how, as its runner hands it to ``main(cfg, out)`` (``lazyhasty run``, a sweep
    job; or you, in a script): the folder ``path``; each ``train`` call checkpointed in the series ``checkpoints``
    (None: never), which also says whether this attempt resumes an earlier one; TensorBoard files beside every run
    record when ``tensorboard``. Nothing else decides these: no environment variable, no enclosing context."""

    path: Path
    checkpoints: Checkpointing | None = None
    tensorboard: bool = False

    def __post_init__(self):
        self.path = Path(self.path)

    @property
    def resume(self) -> bool:
        return self.checkpoints is not None and self.checkpoints.resume

    def under(self, name: str) -> Output:
        """The same settings (and checkpoint series) for a subfolder, e.g. one comparison of several."""
        return Output(self.path / name, self.checkpoints, self.tensorboard)

    def record(self, path: str | Path, config, **fields) -> RunRecord:
        """A started :class:`RunRecord` at ``self.path / path`` (reopened when this attempt resumes)."""
        return RunRecord(self.path / path, tensorboard=self.tensorboard).start(config, resume=self.resume, **fields)


def _json(d) -> object:
    return json.loads(json.dumps(d, sort_keys=True, default=str))


_OPEN: set[RunRecord] = set()  # records of this process whose run has not ended


def close_open_records(status: str, reason: str) -> int:
    """Give every run of this process that is still ``running`` a final status (what the command line does on an
    error, Ctrl-C or SIGTERM; at exit, any left are marked ``failed``). Returns how many were closed."""
    n = 0
    for rec in list(_OPEN):
        try:
            rec.set_status(status, reason)
            n += 1
        except Exception:  # the disk may be what failed; the others still get theirs
            _OPEN.discard(rec)
    return n


atexit.register(close_open_records, "failed", "the process exited before the run ended")


class TensorBoardSink:
    """A :class:`~lazyhasty.RecordSink` that writes a run as TensorBoard event files in ``folder``: every value
    of its tables as a scalar, stored in float64 (new-style scalar summaries).

    Tags: ``<split>/<group>/<metric>`` for each row of the long table at its step, ``progress/milestone`` (the
    milestone k) at the steps where one was reached, and ``trace/loss``, ``trace/t``, ``trace/dt`` at every step.
    Needs the optional extra: ``pip install 'lazyhasty[tensorboard]'``.
    """

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("TensorBoard event files need the tensorboard package: "
                              "pip install 'lazyhasty[tensorboard]'") from None
        self.folder, self._writer_class, self._writer, self._done = Path(folder), SummaryWriter, None, (0, 0)

    def _open(self):
        if self._writer is None:
            self._writer = self._writer_class(str(self.folder))
        return self._writer

    def _scalar(self, tag: str, value, step) -> None:
        self._open().add_scalar(tag, float(value), int(step), new_style=True, double_precision=True)

    def write(self, metrics: pd.DataFrame, trace: pd.DataFrame) -> None:
        m0, t0 = self._done
        new = metrics.iloc[m0:]
        for step, split, group, metric, value in zip(new.step, new.split, new.group, new.metric, new.value):
            self._scalar(f"{split}/{group}/{metric}", value, step)
        for step, k in new.dropna(subset=["milestone"]).drop_duplicates("step")[["step", "milestone"]].itertuples(
                index=False):
            self._scalar("progress/milestone", k, step)
        for row in trace.iloc[t0:].itertuples(index=False):
            for name in ("loss", "t", "dt"):
                self._scalar(f"trace/{name}", getattr(row, name), row.step)
        self._done = (len(metrics), len(trace))
        self._open().flush()

    def set_status(self, status: str, reason: str | None = None, **info) -> None:
        self._open().add_text("status", f"{status}: {reason or ''}")
        self._writer.close()
        self._writer = None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if not isinstance(v, list) else tuple(v)
    return out


def find_runs(path: str | Path) -> list[Path]:
    """Every run directory (one holding status.json) under ``path``, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such folder: {path}")
    return sorted(p.parent for p in path.rglob("status.json"))


def load_runs(path: str | Path, table: str = "metrics", errors: str = "warn") -> pd.DataFrame:
    """One DataFrame of every run under ``path``: the rows of each run's ``metrics`` (or ``trace``) table,
    with ``run_id`` (the run's folder relative to ``path``, so runs of two folders never share one), ``path``
    (its folder), ``status``, ``converged`` (None: the run had no target; False: it missed it), the status's other
    scalars as ``status.<key>`` (``status.reason``, ``status.steps``, ``status.t``, ``status.loss0``, ...) and the
    flattened config as columns (a config key that collides with a table column is prefixed ``config.``).

    A run whose files cannot be read, or differ from the sizes and checksums its status recorded, is reported
    (``errors="warn"``: a warning naming the file, the run is left out; ``"raise"``: an error) and never read.
    """
    if table not in ("metrics", "trace") or errors not in ("warn", "raise"):  # a typo must not mean "warn"
        raise ValueError(f"table must be 'metrics' or 'trace' and errors 'warn' or 'raise'; got {table!r}, {errors!r}")
    frames, root = [], Path(path)
    for run in find_runs(root):
        try:
            status = json.loads((run / "status.json").read_text())
            config = json.loads((run / "config.json").read_text())
            if not isinstance(status, dict) or not isinstance(config, dict):
                raise ValueError("status.json and config.json must each hold a JSON object")
            f = run / f"{table}.parquet"
            if not f.exists():
                continue  # e.g. a run that failed before its first measurement: its status says why
            bad = check_files(run, {k: v for k, v in (status.get("files") or {}).items() if k == f.name})
            if bad:
                raise OSError("; ".join(bad))
            df = pd.read_parquet(f)
        except Exception as e:  # corrupt or half-written file
            msg = f"cannot read run {run}: {type(e).__name__}: {e}"
            if errors == "raise":
                raise OSError(msg) from e
            warnings.warn(msg, stacklevel=2)
            continue
        df["run_id"] = run.name if run == root else run.relative_to(root).as_posix()
        cols = {"path": str(run), "status": status.get("status"), "converged": status.get("converged"),
                **{f"status.{k}": v for k, v in status.items() if k not in ("status", "converged")
                   and isinstance(v, (str, int, float, bool, type(None)))}}
        for k, v in _flatten(config).items():
            cols[k if k not in df.columns and k not in cols else f"config.{k}"] = v
        # one concatenation, not a column at a time (two thirds of the time of reading a phase diagram's runs)
        frames.append(pd.concat([df, pd.DataFrame({k: [v] * len(df) for k, v in cols.items()}, index=df.index)],
                                axis=1))
    if not frames:
        from ..dynamics.train import METRIC_COLUMNS, TRACE_COLUMNS  # the columns a run's rows would have had

        return pd.DataFrame(columns=[*(METRIC_COLUMNS if table == "metrics" else [*TRACE_COLUMNS, "run_id"]), "path",
                                     "status", "converged"])
    return pd.concat(frames, ignore_index=True)
