"""Run records, sweeps, checkpoints and safe writes (namespace ``lazyhasty.runs``; ``RunRecord``, ``load_runs``
and ``run_sweep`` are also in ``lazyhasty``)."""

from .._lazy import exports as _exports

__getattr__, __dir__, __all__ = _exports(__name__, {
    "records": "RunRecord TensorBoardSink Output load_runs",
    "sweep": "run_sweep config_jobs",
    "..dynamics.train": "RecordSink TrainResult",
    "..dynamics.checkpoint": "Checkpointing CheckpointMismatch",
    "..files": "atomic_write",
})
