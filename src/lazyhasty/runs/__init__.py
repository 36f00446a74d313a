from .output import prepare_output
from .records import RunRecord, TensorBoardSink, atomic_write, environment, find_runs, load_runs
from .sweep import Job, config_jobs, run_sweep

__all__ = ["RunRecord", "TensorBoardSink", "atomic_write", "environment", "find_runs", "load_runs",
           "prepare_output", "Job", "config_jobs", "run_sweep"]
