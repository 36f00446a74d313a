"""Atomic writes and reading records back, including corrupt files."""

import json

import pandas as pd
import pytest

from lazyhasty import RunRecord, load_runs
from lazyhasty.errors import FolderInUse
from lazyhasty.runs import atomic_write
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
    for kw in (dict(errors="rasie"), dict(table="metric")):  # a typo is refused, not read as "warn" or as no runs
        with pytest.raises(ValueError, match="errors 'warn' or 'raise'"):
            load_runs(tmp_path, **kw)


def test_no_runs_read_back_as_the_columns_runs_would_have(tmp_path):
    """A folder without runs gives an empty table whose columns begin like a real run's (metrics or trace), so
    that code selecting columns works on it too."""
    import torch

    import lazyhasty as lh

    x, y = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), torch.tensor([1.0, -1.0], dtype=torch.float64)
    lh.train(lh.seeded(lambda: lh.MLP([2, 4, 1]).double(), 0), lh.Split(x, y), loss="bce", stepper=lh.GD(0.1),
             stop=lh.Stop(max_steps=2), record=RunRecord(tmp_path / "runs" / "r").start({"lr": 0.1}), progress=False)
    (tmp_path / "nothing").mkdir()
    for table in ("metrics", "trace"):
        real, empty = load_runs(tmp_path / "runs", table), load_runs(tmp_path / "nothing", table)
        assert len(real) and not len(empty) and list(real.columns[:len(empty.columns)]) == list(empty.columns)


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


def scalars_as_tensorboard_shows_them(folder):
    """{tag: {step: value}} read back through TensorBoard's own data provider (what its Scalars tab plots)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(folder))
    data = provider.read_scalars(context.RequestContext(), experiment_id="", plugin_name="scalars",
                                 downsample=10**9, run_tag_filter=None)
    (run,) = data.values()
    return {tag: {d.step: d.value for d in series} for tag, series in run.items()}


def test_what_a_record_writes_is_decided_by_its_arguments_only(tmp_path, monkeypatch):
    """No environment variable switches TensorBoard on, and a folder holding a run is reopened only when the call
    says it resumes (the Output an experiment is handed says both)."""
    from lazyhasty.runs import Checkpointing, Output

    monkeypatch.setenv("LAZYHASTY_TENSORBOARD", "1")  # what --tensorboard set before; now it means nothing
    RunRecord(tmp_path / "a").start({"lr": 0.3}).set_status("complete")
    assert not (tmp_path / "a" / "tensorboard").exists()
    with pytest.raises(FolderInUse):
        Output(tmp_path).record("a", {"lr": 0.3})
    rec = Output(tmp_path, Checkpointing(tmp_path, resume=True)).record("a", {"lr": 0.3})
    assert rec.status()["status"] == "running" and rec.tensorboard is None
    rec.set_status("complete")


def test_a_start_cut_short_before_its_config_is_reopened_by_a_resume(tmp_path, monkeypatch):
    """A signal between a run's first status and its config.json (seen: a killed sweep's worker, stopped at once)
    leaves a folder with a status that lists no file: a resume reopens it (nothing is in it to mix); a run that is
    not a resume is still refused."""
    from lazyhasty.runs import Checkpointing, Output
    from lazyhasty.runs.records import close_open_records

    def cut(self, name, content):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(RunRecord, "_save", cut)
        with pytest.raises(KeyboardInterrupt):
            RunRecord(tmp_path / "a").start({"lr": 0.3})
    close_open_records("interrupted", "interrupted by SIGTERM")  # what the process does on its way out
    assert not (tmp_path / "a" / "config.json").exists() and (tmp_path / "a" / "status.json").exists()
    with pytest.raises(FolderInUse):
        Output(tmp_path).record("a", {"lr": 0.3})
    rec = Output(tmp_path, Checkpointing(tmp_path, resume=True)).record("a", {"lr": 0.3})
    assert json.loads((tmp_path / "a" / "config.json").read_text())["lr"] == 0.3
    rec.set_status("complete")
    with pytest.raises(FolderInUse, match="of another config"):  # once written, another config is refused
        Output(tmp_path, Checkpointing(tmp_path, resume=True)).record("a", {"lr": 0.5})


def test_tensorboard_sink_has_every_scalar_of_the_parquet_record(tmp_path):
    """The second record sink: the same run written as Parquet and as TensorBoard events, compared value by value."""
    import torch

    from lazyhasty import GD, MLP, LinearityProbe, Schedule, Stop, loss_probe, seeded, train
    from lazyhasty.data import yinyang

    data = yinyang(40, seed=1, dtype=torch.float64)
    rec = RunRecord(tmp_path / "run", tensorboard=True).start({"lr": 0.3})
    train(seeded(lambda: MLP([2, 8, 1]).double(), 0), data, loss="bce", stepper=GD(0.3), stop=Stop(max_steps=40),
          schedule=Schedule(milestone_ratio=0.9), record=rec, splits={"test": yinyang(30, seed=2, dtype=torch.float64)},
          probes=(loss_probe, LinearityProbe(data.x[:10], signs=False)))
    tb = scalars_as_tensorboard_shows_them(tmp_path / "run" / "tensorboard")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    trace = pd.read_parquet(tmp_path / "run" / "trace.parquet")
    expected: dict[str, dict[int, float]] = {}
    for r in metrics.itertuples(index=False):
        expected.setdefault(f"{r.split}/{r.group}/{r.metric}", {})[int(r.step)] = r.value
    for r in metrics.dropna(subset=["milestone"]).itertuples(index=False):
        expected.setdefault("progress/milestone", {})[int(r.step)] = float(r.milestone)
    for name in ("loss", "t", "dt"):
        expected[f"trace/{name}"] = dict(zip(trace.step.astype(int), trace[name]))
    assert len(expected["progress/milestone"]) >= 3 and len(expected["trace/loss"]) == 41
    assert tb == expected  # every tag, step and value, exactly (stored in float64)
