"""The HTML report: self-contained, and it renders in headless Chromium at 1280 px with every figure visible, no
horizontal scrolling and no browser error."""

import re
import shutil
import subprocess

import pytest

from lazyhasty.cli import main
from lazyhasty.report import build_report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    assert main(["run", "demo", "--out", str(root / "demo"), "--set", "max_steps=50", "--set", "n_train=30",
                 "--set", "seeds=1"]) == 0
    assert main(["run", "fig4", "--out", str(root / "fig4"), "--set", "points=20"]) == 0
    return build_report(root, title="test report")


def test_report_is_self_contained(report):
    text = report.read_text()
    assert text.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # no external assets
    for needle in ("demo (preset quick)", "fig4 (preset quick)", "Runs by status: complete: 2", "Provenance",
                   "Resolved config", "Contents", "code revision", "torch 2", "max_steps=50, n_train=30"):
        assert needle in text
    # the claims table: one row per claim with its readable sentence, never a raw JSON key
    assert text.count('<span class="held">held</span>') >= 3  # fig4's three examples
    # the demo's runs stop at 50 steps, before their target: none of its claims is earned
    assert text.count('<span class="notmeasured">not measured</span>') >= 1
    assert "linearization flips the learning order" in text and "example1_flipped" not in text
    assert re.search(r'href="#s-demo">demo \(preset quick\)</a>', text)  # the table of contents links sections


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--window-size=1280,900",
           "--dump-dom",
           report.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, "no DOM dumped"
    assert 'data-errors="0"' in body.group(0), body.group(0)
    figures = re.search(r'data-figures="(\d+)/(\d+)"', body.group(0))
    assert figures and figures.group(1) == figures.group(2) == "2", body.group(0)
    width = re.search(r'data-width="(\d+)"', body.group(0))
    assert width and int(width.group(1)) <= 1280, body.group(0)  # readable at 1280 px: no horizontal scrolling


def test_report_of_missing_folder(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2  # a folder with nothing to report: refused, no empty page written
    assert "nothing to report" in capsys.readouterr().err and not (tmp_path / "report.html").exists()


def test_reading_runs_never_imports_torch():
    """`lazyhasty report`, `lazyhasty claims` and `load_runs` read records: they start in 0.7 s, without torch's
    1.4 s import (a checkpoint series is only a type there)."""
    import sys

    code = ("import sys, lazyhasty as lh, lazyhasty.report, lazyhasty.runs.sweep\n"
            "lh.load_runs\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["False"], r.stdout + r.stderr[-2000:]


def test_a_run_left_running_reads_running_while_its_writer_lives_and_interrupted_once_it_died(tmp_path):
    import json
    import os
    import socket
    import sys

    from lazyhasty.runs import RunRecord

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "experiment.json").write_text(json.dumps({"experiment": "x", "status": "running",
                                                        "started": "2999-01-01T00:00:00+00:00",
                                                        "env": {"host": socket.gethostname(), "torch": "9.9-test"}}))
    (folder / ".lock").write_text(f"{os.getpid()}\n")  # the experiment's process: this one, alive
    rec = RunRecord(folder / "runs" / "r").start({"seed": 0})  # this process writes it: alive
    page = build_report(folder).read_text()
    assert "Runs by status: running: 1" in page and f"pid {os.getpid()} since" in page
    assert "x (preset None): running" in page and "torch 9.9-test" in page
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rec._lock.release()  # the writer is gone: its lock names a process that has ended
    (folder / "runs" / "r" / ".lock").write_text(f"{dead.pid}\n")
    (folder / ".lock").write_text(f"{dead.pid}\n")
    page = build_report(folder).read_text()
    assert "x (preset None): interrupted" in page
    assert "Runs by status: interrupted: 1" in page and f"was running (pid {dead.pid}) when its process died" in page
    (folder / "experiment.json").write_text(json.dumps({"experiment": "x", "status": "running"}))  # no start time
    assert "x (preset None): running" in build_report(folder).read_text()  # (an older lazyhasty's): kept
    rec.set_status("interrupted", "the test ends")  # no open record left for the process's exit to close
