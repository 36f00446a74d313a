"""Output folders: checked for writability before any work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError


def prepare_output(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check that a file can be written there; else :class:`UsageError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"cannot write to output folder {str(path)!r}: {e.strerror or e}") from None
    return path
