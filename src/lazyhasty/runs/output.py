"""Output folders: checked for writability, and owned by one command, before any work starts."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import FolderInUse, UsageError
from ..files import FolderLock, make_folder

RECORD_FILES = ("experiment.json", "status.json", "sweep.json", "job.json")  # what marks a folder as holding records


def prepare_output(path: str | Path) -> Path:
    """Create ``path`` (and parents, 0755) and check that a file can be written there; else :class:`UsageError`."""
    path = Path(path)
    try:
        make_folder(path)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write to output folder {str(path)!r}: {e.strerror or e}") from None
    return path


def lock_output(path: str | Path, what: str = "output folder") -> FolderLock:
    """``path`` created and checked (:func:`prepare_output`), then locked; ``release(discard=True)`` removes it again
    if this call created it and nothing was written there (a refused command)."""
    created = not Path(path).exists()
    lock = FolderLock(prepare_output(path), what)
    lock.created = created
    return lock


def records_in(path: Path) -> Path | None:
    """The first record file under ``path`` (a run, an experiment, a sweep), or None."""
    return next((f for f in path.rglob("*.json") if f.name in RECORD_FILES), None) if path.is_dir() else None


def claim_output(path: str | Path | None, default: Path, resume: str | None = None) -> tuple[Path, FolderLock]:
    """The folder a command writes, created and locked for this process.

    ``path`` given: used only if it holds no records (else :class:`FolderInUse`: records are never mixed or
    overwritten), or, with ``resume`` (an experiment name), if its ``experiment.json`` is of that experiment (each
    run folder inside then refuses a config other than its own, and each checkpoint a training call other than
    its own). ``path`` None: ``default`` if it holds no records, else the first free ``default.2``,
    ``default.3``, ... so that running a command twice keeps both results."""
    if resume is not None and path is not None:
        try:
            name = json.loads((Path(path) / "experiment.json").read_text()).get("experiment")
        except (OSError, ValueError, AttributeError):
            raise FolderInUse(f"nothing to resume in {path}: it holds no readable experiment.json") from None
        if name != resume:
            raise FolderInUse(f"{path} does not hold a run of {resume} to resume (its experiment.json names "
                              f"{name!r})")
        return Path(path), FolderLock(path, "output folder")
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = (default if i == 1 else default.with_name(f"{default.name}.{i}") for i in range(1, 10_000))
    for folder in candidates:
        held = records_in(folder)
        if held is None:
            try:
                lock = lock_output(folder)
            except FolderInUse:
                if path is not None:
                    raise
                continue  # another command is starting in the default folder: take the next one
            held = records_in(folder)  # checked again under the lock: another command may have just begun
            if held is None:
                return folder, lock
            lock.release()
        if path is not None:
            raise FolderInUse(f"output folder {folder} already holds records ({held.relative_to(folder)}); choose "
                              "another --out (records are never mixed or overwritten)")
    raise UsageError(f"no free output folder next to {default}")
