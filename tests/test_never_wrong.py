"""Never silently wrong, round two: what a hostile or careless user found (issue 31). One test per class of fault,
each failing on the code before the fix: data files never run code, writes never replace what they do not own,
numbers the tool cannot compute correctly are refused, every claim rests on runs that got there, a refused
command writes nothing, and an interrupted command stops and resumes to the same claims."""

import importlib.util
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lazyhasty as lh
import lazyhasty.claims as claims_module
from lazyhasty.cli import main
from lazyhasty.data import DatasetError, cifar10
from lazyhasty.dynamics.probes import DEFAULT_PROBES
from lazyhasty.theory import infinite_ntk
from test_faults import ENDLESS, _sweep_job, alive, cli, one_line_error, sets, wait_for
from test_images import write_cifar

# ---------------------------------------------------------------------------------------------------------------
# Security: data files are data; writes only replace regular files; the report embeds only what it owns.


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_that_names_code_is_refused_and_never_run(tmp_path, protocol):
    root = tmp_path / "cifar"
    write_cifar(root)
    for name in root.iterdir():  # the real format in every pickle protocol numpy arrays use: still read
        batch = pickle.loads(name.read_bytes())
        name.write_bytes(pickle.dumps(batch, protocol=protocol))
    assert cifar10(root).x.shape == (30, 3, 32, 32)
    evil = _RunsCode()
    evil.marker = tmp_path / "ran"
    (root / "data_batch_2").write_bytes(pickle.dumps({b"data": evil, b"labels": [1]}, protocol=protocol))
    with pytest.raises(DatasetError, match="refused"):
        cifar10(root)
    assert not evil.marker.exists()


def test_writes_refuse_links_devices_fifos_and_folders(tmp_path, capsys):
    real = tmp_path / "README.md"
    real.write_text("a\n<!-- claims:begin -->\nold\n<!-- claims:end -->\nb\n")
    (tmp_path / "link.md").symlink_to(real)
    (tmp_path / "runs" / "fig4").mkdir(parents=True)  # one experiment's claims, to be tabulated
    (tmp_path / "runs" / "fig4" / "experiment.json").write_text(json.dumps({"experiment": "fig4", "preset": "quick"}))
    (tmp_path / "runs" / "fig4" / "claims.json").write_text(json.dumps({"experiment": "fig4", "claims": [
        {"id": "example1", "text": "Example 1: the order flips", "source": "Fig. 4", "held": True, "numbers": {}}]}))
    assert main(["claims", str(tmp_path / "runs"), "--readme", str(tmp_path / "link.md")]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert (tmp_path / "link.md").is_symlink() and "old" in real.read_text()  # neither replaced nor written
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    for target, what in ((tmp_path / "fifo", "FIFO"), (tmp_path / "folder", "folder"), (Path("/dev/null"), "device")):
        assert main(["report", str(tmp_path / "runs"), "--output", str(target)]) == 2
        assert what in capsys.readouterr().err
    assert Path("/dev/null").is_char_device() and (tmp_path / "fifo").is_fifo()
    (tmp_path / "lk").mkdir()
    (tmp_path / "lk" / ".lock").symlink_to(real)  # a planted lock link: never opened, so never truncated
    assert main(["run", "fig4", "--out", str(tmp_path / "lk"), "--set", "points=20"]) == 2
    assert "is a link" in capsys.readouterr().err and "old" in real.read_text()
    lh.runs.atomic_write(real, "replaced\n")  # a regular file is replaced as before
    assert real.read_text() == "replaced\n"


def test_the_report_embeds_only_regular_files_inside_the_folder_up_to_a_bound(tmp_path):
    from lazyhasty import report

    folder = tmp_path / "runs" / "exp"
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"experiment": "x", "status": "complete"}))
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"SECRET-BYTES" * 10)
    (folder / "a_link.png").symlink_to(secret)
    with open(folder / "b_huge.png", "wb") as f:  # sparse: 30 MiB on paper, nothing on disk
        f.truncate(30 * 2**20)
    (folder / "c_ok.png").write_bytes(b"\x89PNG fine")
    page = report.build_report(tmp_path / "runs").read_text()
    import base64

    assert base64.b64encode(b"SECRET-BYTES" * 10).decode() not in page
    assert base64.b64encode(b"\x89PNG fine").decode() in page
    assert "a_link.png: a link" in page and "b_huge.png: 30 MiB" in page
    assert len(page) < 2**20


# ---------------------------------------------------------------------------------------------------------------
# Numbers the tool cannot compute correctly are refused, or computed by the exact path.


class _Center(nn.Module):
    def forward(self, x):  # mixes the examples of a batch
        return x - x.mean(0, keepdim=True)


def _net():
    return lh.seeded(lambda: nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double(), 0)


def _hooked():
    m = _net()
    m[0].register_forward_hook(lambda mod, i, o: 2 * o)
    return m


def _own_forward():
    m = _net()
    plain = m[2].forward
    m[2].forward = lambda t: 3 * plain(t)
    return m


@pytest.mark.parametrize("make", [_hooked, _own_forward, lambda: nn.Sequential(_net()[0], _Center(), *_net()[1:]),
                                  _net], ids=["hook", "instance-forward", "batch-coupled", "plain"])
def test_ntk_auto_is_exact_under_hooks_own_forwards_and_coupled_batches(gen, make):
    x = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    m = make()
    ref = lh.ntk_gram(m, x, method="jacobian")
    assert torch.allclose(lh.ntk_gram(m, x, method="auto"), ref, rtol=1e-12, atol=1e-12)


def test_ntk_auto_is_exact_under_a_global_module_hook(gen):
    x = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    m = _net()
    h = nn.modules.module.register_module_forward_hook(lambda mod, i, o: 1.5 * o if isinstance(mod, nn.Linear)
                                                       else None)
    try:
        ref = lh.ntk_gram(m, x, method="jacobian")
        assert torch.allclose(lh.ntk_gram(m, x), ref, rtol=1e-12, atol=1e-12)
    finally:
        h.remove()


def test_labels_outside_the_loss_convention_and_nan_data_are_refused_before_step_0(gen, tmp_path):
    x = torch.randn(40, 4, generator=gen)
    y01 = (x[:, 0] > 0).float()
    for loss in ("bce", "hinge", "soft_hinge", "quadratic_hinge"):
        with pytest.raises(lh.UsageError, match=r"-1 or \+1.*y = 2 y - 1"):
            lh.train(lh.MLP([4, 8, 1]), lh.Split(x, y01), loss=loss, stepper=lh.GD(0.1), stop=lh.Stop(max_steps=1))
    with pytest.raises(lh.UsageError, match="class labels must be in 0..2"):
        lh.train(lh.MLP([4, 8, 3]), lh.Split(x, torch.full((40,), 3)), loss="cross_entropy", stepper=lh.GD(0.1),
                 stop=lh.Stop(max_steps=1))
    with pytest.raises(lh.UsageError, match="split 'test'"):  # every split, not only the training set
        lh.train(lh.MLP([4, 8, 1]), lh.Split(x, 2 * y01 - 1), splits={"test": lh.Split(x, y01)}, loss="bce",
                 stepper=lh.GD(0.1), stop=lh.Stop(max_steps=1))
    with pytest.raises(lh.UsageError, match="-1 or"):
        lh.kernel_regime(lh.MLP([4, 8, 1]), lh.Split(x, y01), loss="hinge", lr=0.1, steps=1)
    xn = x.clone()
    xn[3, 1] = float("nan")
    with pytest.raises(lh.UsageError, match="NaN"):
        lh.train(lh.MLP([4, 8, 1]), lh.Split(xn, 2 * y01 - 1), loss="bce", stepper=lh.GD(0.1),
                 stop=lh.Stop(max_steps=1))
    full, empty = lh.Split(x, 2 * y01 - 1), lh.Split(x[:0], y01[:0])
    for train, test in ((empty, full), (full, empty)):
        with pytest.raises(lh.UsageError, match="has no examples"):  # an empty split: no loss, not a torch error
            lh.train(lh.MLP([4, 8, 1]), train, splits={"test": test}, loss="bce", stepper=lh.GD(0.1),
                     stop=lh.Stop(max_steps=1))
    with pytest.raises(lh.UsageError, match=r"-1 or \+1"):  # a comparison: refused before any run record exists
        lh.compare_regimes(lambda: lh.MLP([4, 8, 1]), lh.Split(x, y01), loss="bce", stepper=lh.GD(0.1),
                           stop=lh.Stop(max_steps=1), seeds=[0], out=tmp_path / "c")
    assert not list(tmp_path.rglob("status.json"))
    res = lh.train(lh.MLP([4, 8, 1]), lh.Split(x, 2 * y01 - 1), loss="bce", stepper=lh.GD(0.1),
                   stop=lh.Stop(max_steps=1))
    assert res.status == "complete"


def test_kernel_regime_with_a_given_kernel_does_not_depend_on_alpha(gen):
    x = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    train = lh.Split(x, torch.sin(x[:, 0]))
    net = lh.seeded(lambda: lh.MLP([3, 16, 1], parametrization="ntk").double(), 0)
    default = lh.kernel_regime(net, train, loss="mse", lr=0.2, steps=30)
    for alpha in (1.0, 10.0, 100.0):  # the network's own kernel, given: the same trajectory as the default
        run = lh.kernel_regime(lh.AlphaScaled(lh.same_init(net), alpha), train, loss="mse", lr=0.2, steps=30,
                               kernel=lambda a, b: lh.ntk_gram(net, a, b))
        np.testing.assert_allclose(run.trace.loss, default.trace.loss, rtol=1e-10)


def test_infinite_ntk_describes_the_network_it_is_compared_with(gen):
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    errors = []
    for h in (64, 4096):
        net = lh.seeded(lambda h=h: lh.MLP([4, h, h, 1], parametrization="ntk").double(), 0)  # MLP's defaults
        for K in (infinite_ntk(x, like=net), infinite_ntk(x, depth=2)):  # infinite_ntk's defaults are MLP's
            errors.append(float((lh.ntk_gram(net, x, outputs="trace") - K).norm() / K.norm()))
    assert errors[2] < errors[0] / 3 and errors[3] < errors[1] / 3 and errors[2] < 0.05, errors
    with pytest.raises(ValueError, match="differ from the network's: bias=False"):
        infinite_ntk(x, like=net, bias=False)
    with pytest.raises(ValueError, match="NTK parametrisation"):
        infinite_ntk(x, like=lh.MLP([4, 8, 1]))


def _out_and_targets(kind: str, n: int, g):
    x = torch.randn(n, 3, generator=g)
    if kind == "binary (n,)":
        return 1, lh.Split(x, torch.where(x[:, 0] > 0, 1.0, -1.0))
    if kind == "binary (n, 1)":
        return 1, lh.Split(x, torch.where(x[:, :1] > 0, 1.0, -1.0))
    if kind == "classes":
        return 3, lh.Split(x, torch.randint(0, 3, (n,), generator=g))
    if kind == "regression (n,)":
        return 1, lh.Split(x, x[:, 0].sin())
    if kind == "regression (n, C)":
        return 2, lh.Split(x, x[:, :2].sin())
    return 3, lh.Split(x, nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float())  # one-hot


ACCEPTED = [("cross_entropy", "classes"), *((loss, kind) for loss in ("bce", "hinge", "soft_hinge",
            "quadratic_hinge") for kind in ("binary (n,)", "binary (n, 1)", "classes")),
            *(("mse", kind) for kind in ("binary (n,)", "binary (n, 1)", "regression (n,)", "regression (n, C)",
                                         "one-hot"))]


@pytest.mark.parametrize("loss, kind", ACCEPTED)
def test_every_default_probe_works_for_every_loss_and_target_shape(gen, loss, kind):
    C, train = _out_and_targets(kind, 24, gen)
    res = lh.train(lh.AlphaScaled(lh.MLP([3, 8, C]), 1.0), train, loss=loss, stepper=lh.GD(0.05),
                   stop=lh.Stop(max_steps=3, min_margin=1.0), probes=DEFAULT_PROBES)
    assert res.status == "complete", res.reason
    measured = set(res.metrics.metric)
    assert {"loss", "accuracy", "margin", "param_distance"} <= measured, measured
    assert np.isfinite(res.metrics.value).all()


def test_duplicate_run_ids_bf16_at_large_alpha_and_bad_stops(gen, tmp_path):
    data = lh.Split(torch.randn(8, 2, generator=gen), torch.ones(8))
    with pytest.raises(ValueError, match="distinct"):
        lh.train(lh.Ensemble([lh.MLP([2, 4, 1]), lh.MLP([2, 4, 1])]), data, loss="bce", stepper=lh.GD(0.1),
                 stop=lh.Stop(max_steps=1), run_id=["a", "a"])
    m = lh.AlphaScaled(lh.MLP([2, 4, 1]).to(torch.bfloat16), 100.0)
    with pytest.warns(UserWarning, match="float32 or float64 for alpha > 1"):
        lh.train(m, lh.Split(data.x.bfloat16(), data.y.bfloat16()), loss="bce", stepper=lh.GD(0.1),
                 stop=lh.Stop(max_steps=1))
    for bad in ({"max_steps": 10, "loss_below": float("nan")}, {"max_steps": 2.5}):
        with pytest.raises(ValueError):
            lh.Stop(**bad)


def test_records_of_the_wrong_json_type_are_unreadable_with_a_warning(tmp_path, gen):
    lh.train(lh.MLP([2, 4, 1]), lh.Split(torch.randn(8, 2, generator=gen), torch.ones(8)), loss="bce",
             stepper=lh.GD(0.1), stop=lh.Stop(max_steps=2), record=lh.RunRecord(tmp_path / "good").start({}))
    lh.train(lh.MLP([2, 4, 1]), lh.Split(torch.randn(8, 2, generator=gen), torch.ones(8)), loss="bce",
             stepper=lh.GD(0.1), stop=lh.Stop(max_steps=2), record=lh.RunRecord(tmp_path / "bad").start({}))
    (tmp_path / "bad" / "config.json").write_text("[1, 2]")
    with pytest.warns(UserWarning, match="cannot read run .*bad"):
        runs = lh.load_runs(tmp_path)
    assert set(runs.run_id) == {"good"}


# ---------------------------------------------------------------------------------------------------------------
# Claims rest on the runs that got there; a refused command writes nothing; every config is checked first.


def test_phase_claims_are_not_measured_when_no_run_progressed(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["run", "phase", "--preset", "tiny", "--out", str(out), "--set", "max_steps=20",
                 "--set", "sqrt_h_alphas=0.1,100", "--set", "widths=16,32", "--set", "workers=2"]) == 0
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert claims and all(c["held"] is None for c in claims), [(c["id"], c["held"]) for c in claims]
    assert all("did not reach" in c["numbers"]["note"] for c in claims if "runs_reached" in c["numbers"])


@pytest.mark.parametrize("experiment, assignments, message", [
    ("fig2_noise", ["n_test=1"], "n_test"),
    ("fig3", ["positive=1", "negative=1"], "overlap"),
    ("phase", ["pca=1000"], "pca"),
    ("phase", ["ptr=3"], "pca"),
    ("phase", ["widths=16,16"], "distinct"),
    ("fig1", ["alphas=1,1.0000001"], "distinct"),
])
def test_configs_are_refused_before_anything_runs(tmp_path, capsys, experiment, assignments, message):
    out = tmp_path / "o"
    assert main(["run", experiment, "--out", str(out), *sets(*assignments)]) == 2
    err = capsys.readouterr().err
    assert message in err and one_line_error(err), err
    assert not out.exists()  # not even an empty folder


def test_demo_checks_every_selected_experiment_before_the_first(tmp_path, capsys):
    assert main(["demo", "--only", "fig4,fig1", "--set", "q=3", "--out", str(tmp_path / "d")]) == 2
    assert "fig1: unknown key 'q'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_budget_no_run_can_finish_in_gives_not_measured(tmp_path, capsys):
    out = tmp_path / "f"
    small = sets("seeds=2", "grid=12", "max_steps=2", "n_train=40", "compile=false")
    assert main(["run", "fig1", "--out", str(out), *small]) == 0
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["held"] for c in claims] == [None] * len(claims)
    assert all("missed the progress target" in c["numbers"]["note"] for c in claims)


def test_a_refused_resume_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    small = sets("seeds=2", "grid=12", "max_steps=30", "n_train=40", "compile=false")
    assert main(["run", "fig1", "--out", str(out), *small]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["run", "fig1", "--out", str(out), "--resume", *small, "--set", "max_steps=31"]) == 2
    assert "max_steps (30 -> 31)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("experiment, small", [
    ("fig1", sets("seeds=2", "grid=12", "max_steps=400", "n_train=40", "compile=false")),
    ("demo", sets("n_train=30", "widths=8,8", "max_steps=40", "seeds=2", "dtype=float64")),
    ("fig4", sets("points=20")),
])
def test_killed_after_its_last_training_call_and_resumed_gives_the_same_claims(tmp_path, capsys, monkeypatch,
                                                                               experiment, small):
    assert main(["run", experiment, "--out", str(tmp_path / "ref"), *small]) == 0
    write = claims_module.write

    def killed(*args, **kwargs):  # the process dies after every training call, before the claims
        raise KeyboardInterrupt

    monkeypatch.setattr(claims_module, "write", killed)
    assert main(["run", experiment, "--out", str(tmp_path / "k"), *small]) == 130
    monkeypatch.setattr(claims_module, "write", write)
    assert main(["run", experiment, "--out", str(tmp_path / "k"), "--resume", *small]) == 0
    ref, got = (json.loads((tmp_path / d / "claims.json").read_text()) for d in ("ref", "k"))
    assert got == ref


def test_ctrl_c_ends_a_sweep_started_with_sigint_ignored(tmp_path):
    out = tmp_path / "s"
    p = cli("sweep", "demo", "--out", str(out), "--workers", "1", *sets(*ENDLESS), start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # a background job of a script
    try:
        job = wait_for(lambda: _sweep_job(out).get("status") == "running" and _sweep_job(out), 120, "the job")
        os.killpg(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:  # nothing outlives a failed test
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
    assert p.returncode == 130 and "interrupted" in err, err
    assert _sweep_job(out)["status"] == "interrupted" and not alive(job["pid"])


@pytest.mark.parametrize("name, text, message", [
    ("s.toml", 'experiment = "demo"\nsets = ["lr=0.1"]\n', "unknown key(s) 'sets'"),
    ("s.toml", b'experiment = "demo"\n# \xff\xfe\n', "cannot read sweep file"),
    ("s.toml", 'experiment = "demo"\ngrid = {lr = 0.1}\n', "table of non-empty lists"),
    ("s.toml", 'experiment = "demo"\nset = "lr=0.1"\n', "'set' must be a list"),
    ("s.yaml", "- experiment\n- demo\n", "is a table" if importlib.util.find_spec("yaml") else "needs PyYAML"),
    ("s.toml", 'experiment = 3\n', "'experiment' must be a string"),
])
def test_sweep_files_follow_a_strict_schema(tmp_path, capsys, name, text, message):
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["sweep", "--file", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and one_line_error(err), err
    assert not (tmp_path / "o").exists()


def test_sweep_folders_hold_their_own_jobs_only(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["sweep", "demo", "--grid", "lr=0.1", "--grid", "lr=0.5", "--out", str(out)]) == 2
    assert "given twice" in capsys.readouterr().err
    out.mkdir()
    (out / "sweep.json").write_text('{"jobs": 5}')
    for argv in (["sweep", "--status", str(out)], ["sweep", "demo", "--out", str(out)]):
        assert main(argv) == 2
        assert "not a readable sweep folder" in capsys.readouterr().err
    (out / "sweep.json").unlink()
    (out / "nested" / "run").mkdir(parents=True)
    (out / "nested" / "experiment.json").write_text('{"experiment": "fig4"}')
    assert main(["sweep", "demo", "--out", str(out)]) == 2
    assert "not this sweep's jobs" in capsys.readouterr().err


def test_the_command_line_starts_without_torch(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import sys, lazyhasty.cli; assert 'torch' not in sys.modules"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # Ctrl-C while starting reaches main(), which exits 130 in one line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(lh.train) and lh.claims.write is claims_module.write and "train" in dir(lh)


@pytest.mark.parametrize("target, progress, message", [(50.0, ("train", "all", "loss"), "already reached"),
                                                       (1.5, ("train", "all", "accuracy"), "never reachable")])
def test_a_comparison_target_the_runs_start_at_or_never_reach_is_refused(gen, tmp_path, target, progress, message):
    x = torch.randn(40, 4, generator=gen)
    with pytest.raises(lh.UsageError, match=message):
        lh.compare_regimes(lambda: lh.MLP([4, 8, 3]), lh.Split(x, torch.randint(0, 3, (40,), generator=gen)),
                           loss="cross_entropy", stepper=lh.GD(0.1), stop=lh.Stop(max_steps=1), seeds=[0],
                           target=target, progress=progress, out=tmp_path / "c")
    assert not list(tmp_path.rglob("*.json"))


def test_a_full_disk_leaves_every_record_with_a_final_status(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a 200 kB tmpfs (CI runs as root)")
    try:
        code = main(["run", "demo", "--out", str(disk / "d"), *sets("n_train=30", "widths=8,8", "max_steps=40",
                                                                     "seeds=3")])
        assert code == 1 and "No space left" in capsys.readouterr().err
        meta = json.loads((disk / "d" / "experiment.json").read_text())
        assert meta["status"] == "failed" and "No space left" in meta["reason"]
        runs = [p for p in (disk / "d" / "runs").iterdir()]
        states = [json.loads((p / "status.json").read_text())["status"] for p in runs]  # every run has one
        assert "failed" in states and set(states) <= {"complete", "failed"}, states
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_refused_compare_leaves_no_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "mine.py").write_text(
        "import torch, lazyhasty as lh\n"
        "def model():\n    return lh.MLP([4, 8, 3])\n"
        "def data():\n    g = torch.Generator().manual_seed(0)\n"
        "    return lh.Split(torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["compare", "--model", "mine:model", "--data", "mine:data", "--lr", "0.1", "--max-steps", "5",
                 "--target", "50", "--out", "c"]) == 2
    assert "already reached at initialisation" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
