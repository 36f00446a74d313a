"""Files written so that a crash never leaves half of one (records, figures, checkpoints)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path

from .errors import FolderInUse, UsageError


def writable_target(path: str | Path) -> Path:
    """``path`` if a write may replace it: a new path or a regular file. A symbolic link, a device, a FIFO, a socket
    or a folder is refused (:class:`UsageError`): a write never replaces what it does not own, and it never writes
    through a link (it would replace the link, not the file it points to; name the target itself)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"refusing to write {path}: it is a symbolic link (to {os.readlink(path)}); lazyhasty "
                         "replaces only regular files; give the link's target itself")
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise UsageError(f"refusing to write {path}: it is {kind}, not a regular file")
    return path


BLOCK = 4096  # bytes: what a file takes on disk at the least


def atomic_write(path: str | Path, content, reserve: bool = False) -> None:
    """Write ``path`` so that a crash never leaves half of it: into a temporary file in the same folder, fsynced,
    then renamed into place. ``content``: a str (text), bytes, a DataFrame (Parquet), a dict or list (JSON), or a
    callable ``write(tmp_path)`` that writes the file itself (figures, npz archives). Only a new path or a regular
    file is written (:func:`writable_target`).

    ``reserve`` (statuses): text is padded with spaces to a whole disk block, which costs no space, so that when
    the disk is full the next status still fits: it is then written over the old one in place (the one write that
    is not atomic, and only then)."""
    path = writable_target(path)
    if isinstance(content, (dict, list)):
        content = json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
    data = content.encode() if isinstance(content, str) else content
    if reserve and isinstance(data, bytes):
        data += b" " * (-len(data) % BLOCK)

    def write(p: Path) -> None:
        if hasattr(data, "to_parquet"):  # a DataFrame (pandas is not imported for the others)
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
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are for everyone who may read the folder
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        size = path.stat().st_size if reserve and isinstance(data, bytes) and path.is_file() else -1
        if not (isinstance(e, OSError) and e.errno == errno.ENOSPC and size >= len(data)):
            raise
        with open(path, "r+b") as f:  # the disk is full, and the new status fits in the old one's blocks
            f.write(data + b" " * (size - len(data)))
            os.fsync(f.fileno())
        return
    fsync_folder(path.parent)


def fsync_folder(folder: str | Path) -> None:
    """Make a rename (or a new file) in ``folder`` durable: fsync the folder itself."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(path: str | Path) -> Path:
    """``mkdir -p`` with 0755 folders (whatever the umask), each new one fsynced into its parent."""
    path = Path(path)
    if not path.is_dir():
        make_folder(path.parent)
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise
        else:
            os.chmod(path, 0o755)
            fsync_folder(path.parent)
    return path


class FolderLock:
    """An exclusive lock on ``folder`` (``flock`` on ``folder/.lock``, which holds the owner's PID), so that two
    processes can never write one run or one sweep. Released by :meth:`release`, or by the kernel when the process
    ends in any way (kill -9 included): a lock can never be left stale.

    Raises :class:`FolderInUse`, naming the PID that holds it, when another process (or another lock in this one)
    holds the folder."""

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.created = not Path(folder).exists()  # by this lock: removed again by release(discard=True) if unused
        self.path = make_folder(folder) / ".lock"
        try:  # never through a link: a planted .lock link would truncate the file it points to
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            why = "a link" if self.path.is_symlink() else e.strerror
            raise FolderInUse(f"cannot lock {what} {folder}: its {self.path.name} is {why}; lazyhasty writes only "
                              "regular files it owns") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FolderInUse(f"{what} {folder} is in use by process {holder}; wait for it to finish or choose "
                              "another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self, discard: bool = False) -> None:
        """Unlock; with ``discard`` (a refused command), a folder this lock created and nothing else wrote to is
        removed again."""
        if discard and self.fd is not None and self.created and os.listdir(self.path.parent) == [".lock"]:
            self.path.unlink()
            self.path.parent.rmdir()
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
