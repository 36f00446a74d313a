"""One directory per run, written atomically, and read back as one DataFrame.

A run directory holds
    config.json      the resolved configuration
    env.json         package versions, git SHA, device, threads, seed, host
    metrics.parquet  the long table: run_id, step, t, milestone, split, group, metric, value
    trace.parquet    per-step trace: step, t, loss (the training objective the stepper saw), dt
    status.json      {"status": running|complete|diverged|failed, "reason": ..., timestamps, ...}
Every file is written to a temporary file in the same folder and renamed into place, so a killed run leaves
either the previous complete file or the new complete file, never half of one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import pandas as pd

from ..dynamics.train import METRIC_COLUMNS

STATUSES = ("running", "complete", "diverged", "failed")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: str | Path, content) -> None:
    """Write ``path`` so that a crash never leaves half of it: into a temporary file in the same folder, fsynced,
    then renamed into place. ``content``: a str (text), bytes, a DataFrame (Parquet), a dict or list (JSON), or a
    callable ``write(tmp_path)`` that writes the file itself (figures, npz archives)."""
    path = Path(path)
    if isinstance(content, (dict, list)):
        content = json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
    data = content.encode() if isinstance(content, str) else content

    def write(p: Path) -> None:
        if isinstance(data, pd.DataFrame):
            data.to_parquet(p, index=False)
        else:
            p.write_bytes(data) if isinstance(data, bytes) else data(p)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def git_sha() -> str | None:
    """The git commit of the lazyhasty source tree, if it is a git checkout (with '+dirty' if modified)."""
    try:  # the full SHA (tags excluded), with the mark when tracked files are modified
        p = subprocess.run(["git", "describe", "--always", "--dirty=+dirty", "--abbrev=40", "--exclude=*"],
                           cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def environment(seed: int | None = None, device: str = "cpu") -> dict:
    """Provenance of a run: versions, git SHA, device, threads, seed, host."""
    import matplotlib
    import numpy
    import scipy
    import torch

    try:
        version = metadata.version("lazyhasty")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        version = None
    env = {
        "lazyhasty": version,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "matplotlib": matplotlib.__version__,
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


class RunRecord:
    """The directory of one run, and the engine's :class:`~lazyhasty.RecordSink` for it (Parquet tables, JSON
    status). Create with :meth:`start`; every write is atomic.

    Args:
        path: the run's folder.
        tensorboard: also write TensorBoard event files under ``path/tensorboard`` (a :class:`TensorBoardSink`);
            ``None`` reads the environment variable ``LAZYHASTY_TENSORBOARD`` (set by ``--tensorboard``).
    """

    def __init__(self, path: str | Path, tensorboard: bool | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        if tensorboard is None:
            tensorboard = os.environ.get("LAZYHASTY_TENSORBOARD", "") not in ("", "0")
        self.tensorboard = TensorBoardSink(self.path / "tensorboard") if tensorboard else None

    def start(self, config, **fields) -> RunRecord:
        """Create the folder with ``config.json`` (``config``, a dict or a config dataclass, updated with
        ``fields``), ``env.json`` (provenance, with the config's ``seed`` and ``device``) and status ``running``."""
        config = {**(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config), **fields}
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "config.json", config)
        atomic_write(self.path / "env.json", environment(config.get("seed"), config.get("device") or "cpu"))
        self.set_status("running", started=_now())
        return self

    def status(self) -> dict | None:
        f = self.path / "status.json"
        return json.loads(f.read_text()) if f.exists() else None

    def set_status(self, status: str, reason: str | None = None, **info) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        old = self.status() or {}
        atomic_write(self.path / "status.json", {**old, **info, "status": status, "reason": reason, "updated": _now()})
        if self.tensorboard is not None and status != "running":
            self.tensorboard.set_status(status, reason, **info)

    def write(self, metrics: pd.DataFrame, trace: pd.DataFrame) -> None:
        atomic_write(self.path / "metrics.parquet", metrics)
        atomic_write(self.path / "trace.parquet", trace)
        if self.tensorboard is not None:
            self.tensorboard.write(metrics, trace)


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
    with ``run_id``, ``status`` and the run's flattened config as columns (a config key that collides with a
    table column is prefixed ``config.``).

    A run whose files cannot be read is reported (``errors="warn"``: a warning naming the file, the run is
    left out; ``"raise"``: an error) and never silently read.
    """
    frames = []
    for run in find_runs(path):
        try:
            status = json.loads((run / "status.json").read_text())
            config = json.loads((run / "config.json").read_text())
            f = run / f"{table}.parquet"
            if not f.exists():
                continue  # e.g. a run that failed before its first measurement: its status says why
            df = pd.read_parquet(f)
        except Exception as e:  # corrupt or half-written file
            msg = f"cannot read run {run}: {type(e).__name__}: {e}"
            if errors == "raise":
                raise OSError(msg) from e
            warnings.warn(msg, stacklevel=2)
            continue
        df["run_id"] = run.name
        df["status"] = status.get("status")
        for k, v in _flatten(config).items():
            col = k if k not in df.columns else f"config.{k}"
            df[col] = [v] * len(df)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=METRIC_COLUMNS if table == "metrics" else ["run_id"])
    return pd.concat(frames, ignore_index=True)
