"""Checkpoints of the training engine: the whole state of one ``train`` call, written atomically, so that a killed,
pre-empted or requeued run continues where it stopped and ends with records bit-identical to a run that never
stopped.

A checkpoint is taken at the top of the engine's loop, where the state is whole: the parameters, buffers and theta0
of every member, the stepper's state (momentum, the adaptive time step and its counters), the evaluation the next
step starts from, every RNG (torch's CPU and CUDA generators; the batch order is replayed from ``data_seed`` up to
the position reached), each run's clock, milestones, stopping state and every row measured (written or not).
It is written every ``every_s`` seconds of training, and when SIGTERM, SIGHUP, SIGINT or SIGUSR2 arrives (the
loop finishes its step, writes the checkpoint, then stops; SIGUSR2, SLURM's warning before a time limit or
pre-emption, is then handed to submitit, which requeues the job).

Two ways to use it, both explicit: ``train(..., checkpoint=PATH)`` continues from PATH when it exists and deletes it
when the run ends; ``train(..., checkpoint=series)`` with a :class:`Checkpointing` series (what ``lazyhasty run``
and sweep jobs hand an experiment, ``Output.checkpoints``) gives the series' i-th call ``FOLDER/.checkpoints/
train-<i>.pt``, keeps its final state so that a resumed experiment skips the calls that had finished, and the runner
deletes the folder when the experiment completes. A call without ``checkpoint`` is never checkpointed. A checkpoint
that does not match the call resuming it (another stepper, budget, schedule, data, theta0) is refused, never used.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UsageError
from ..files import atomic_write, make_folder

FORMAT = 1


class CheckpointMismatch(UsageError):
    """A checkpoint written by a different training call than the one asked to resume from it."""


@dataclass
class Checkpointing:
    """A series of checkpoints, one per ``train`` call given it: ``folder/.checkpoints/train-<i>.pt`` for the i-th,
    written every ``every_s`` seconds (0: never); ``resume``: continue from the ones an earlier attempt left (and
    reopen its run records, :meth:`lazyhasty.RunRecord.start`). :meth:`clear` deletes them."""

    folder: Path
    every_s: float = 60.0
    resume: bool = False
    calls: int = 0

    def __post_init__(self):
        if not self.every_s >= 0:
            raise UsageError(f"checkpoint interval must be >= 0 seconds, got {self.every_s}")
        self.folder = Path(self.folder)

    def next_path(self) -> Path:
        path = self.folder / ".checkpoints" / f"train-{self.calls:04d}.pt"
        self.calls += 1
        return path

    def clear(self) -> None:
        """The experiment completed: its checkpoints are not needed any more."""
        shutil.rmtree(self.folder / ".checkpoints", ignore_errors=True)


def save(path: Path, payload: dict) -> None:
    make_folder(path.parent)
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **payload}, tmp))


def load(path: Path) -> dict | None:
    """The checkpoint at ``path`` (its tensors on the CPU), or None if there is none."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointMismatch(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); delete it to start "
                                 "that run again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatch(f"checkpoint {path} is not in this lazyhasty's format {FORMAT}; delete it to start "
                                 "that run again")
    return payload


def digest(*tensors: torch.Tensor | None) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes (the data a run trains on)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            t = t.detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)} {t.dtype};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check(saved: dict, now: dict, path: Path) -> None:
    """Refuse a checkpoint whose fingerprint differs from the call's (see :func:`lazyhasty.train`)."""
    diff = sorted(k for k in {*saved, *now} if saved.get(k) != now.get(k))
    if diff:
        detail = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now" for k in diff[:3])
        raise CheckpointMismatch(f"checkpoint {path} was written by a different training call ({detail}); delete "
                                 "it to start that run again")
