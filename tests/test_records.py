"""Atomic writes and reading records back, including corrupt files."""

import json

import pandas as pd
import pytest

from lazyhasty.runs import RunRecord, atomic_write, load_runs
from lazyhasty.runs.output import prepare_output


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "metrics.parquet"
    atomic_write(target, pd.DataFrame({"a": [1, 2]}))

    def crash(self, path, **kw):
        with open(path, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, pd.DataFrame({"a": [3, 4, 5]}))
    monkeypatch.undo()
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]  # no temporary file left behind


def test_corrupt_record_is_reported_not_read(tmp_path):
    for name in ("good", "bad"):
        rec = RunRecord(tmp_path / name).start({"name": name})
        rec.write(pd.DataFrame({"run_id": [name], "step": [0], "t": [0.0], "milestone": [None], "split": ["train"],
                                "group": ["all"], "metric": ["loss"], "value": [1.0]}), pd.DataFrame({"step": [0]}))
        rec.set_status("complete")
    (tmp_path / "bad" / "metrics.parquet").write_bytes(b"not parquet at all")
    with pytest.warns(UserWarning, match="cannot read run .*bad"):
        df = load_runs(tmp_path)
    assert set(df.run_id) == {"good"}
    with pytest.raises(OSError, match="bad"):
        load_runs(tmp_path, errors="raise")


def test_status_values_are_checked(tmp_path):
    rec = RunRecord(tmp_path / "r").start({})
    assert rec.status()["status"] == "running"
    with pytest.raises(ValueError):
        rec.set_status("finished-ish")
    rec.set_status("complete", "done", steps=3)
    s = json.loads((tmp_path / "r" / "status.json").read_text())
    assert s["status"] == "complete" and s["steps"] == 3 and "started" in s


def test_unwritable_output_is_a_usage_error(tmp_path):
    from lazyhasty.errors import UsageError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="cannot write to output folder"):
        prepare_output(blocker / "sub")
    atomic_write(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
