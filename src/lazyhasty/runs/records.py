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

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

STATUSES = ("running", "complete", "diverged", "failed")
METRIC_COLUMNS = ["run_id", "step", "t", "milestone", "split", "group", "metric", "value"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename tmp_path onto ``path`` (same folder, so the rename is atomic)."""
    path = Path(path)
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


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def git_sha() -> str | None:
    """The git commit of the lazyhasty source tree, if it is a git checkout (with '+dirty' if modified)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int | None = None, device: str = "cpu") -> dict:
    """Provenance of a run: versions, git SHA, device, threads, seed, host."""
    import matplotlib
    import numpy
    import scipy
    import torch

    from .. import __version__

    env = {
        "lazyhasty": __version__,
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
    """The directory of one run. Create with :meth:`start`; every write is atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.run_id = self.path.name

    def start(self, config: dict, seed: int | None = None, device: str = "cpu") -> RunRecord:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / "config.json", config)
        atomic_write_json(self.path / "env.json", environment(seed, device))
        self.set_status("running", started=_now())
        return self

    def status(self) -> dict | None:
        f = self.path / "status.json"
        return json.loads(f.read_text()) if f.exists() else None

    def set_status(self, status: str, reason: str | None = None, **extra) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        old = self.status() or {}
        new = {**old, **extra, "status": status, "reason": reason, "updated": _now()}
        atomic_write_json(self.path / "status.json", new)

    def write_metrics(self, rows: pd.DataFrame) -> None:
        atomic_write_parquet(self.path / "metrics.parquet", rows)

    def write_trace(self, trace: pd.DataFrame) -> None:
        atomic_write_parquet(self.path / "trace.parquet", trace)


def metrics_frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df["milestone"] = df["milestone"].astype("Int64")
    df["step"] = df["step"].astype("int64")
    return df


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
