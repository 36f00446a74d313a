from .output import prepare_output
from .records import (
    RunRecord,
    atomic_write,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    environment,
    find_runs,
    load_runs,
)

__all__ = ["RunRecord", "atomic_write", "atomic_write_json", "atomic_write_parquet", "atomic_write_text",
           "environment", "find_runs", "load_runs", "prepare_output"]
