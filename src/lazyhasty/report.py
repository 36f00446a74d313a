"""``lazyhasty report DIR``: one self-contained HTML page from run records (figures embedded, no network)."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path

from .errors import UsageError
from .runs.records import STATUSES, atomic_write, check_files

CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.held{color:#fff;background:#2a7d2a;padding:1px 6px;border-radius:3px}
.notheld{color:#fff;background:#b23b3b;padding:1px 6px;border-radius:3px}
.small{color:#666;font-size:.85em}
"""

SCRIPT = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; }, true);
var __consoleError = console.error;
console.error = function () { window.__errors += 1; __consoleError.apply(console, arguments); };
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (im) {
    var r = im.getBoundingClientRect();
    if (im.naturalWidth > 0 && im.naturalHeight > 0 && r.width > 0 && r.height > 0) ok += 1;
  });
  document.body.dataset.figures = ok + '/' + imgs.length;
  document.body.dataset.errors = window.__errors;
});
"""


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _run_state(status_file: Path) -> tuple[str, str]:
    """(status, problem) of one run folder: its recorded status, or ``incomplete`` / ``unreadable`` with why when
    its files differ from the sizes and checksums its status lists."""
    s = _read_json(status_file)
    if not isinstance(s, dict):
        return "unreadable", "status.json cannot be read"
    bad = check_files(status_file.parent, s["files"]) if isinstance(s.get("files"), dict) else []
    if bad:
        return "incomplete", "; ".join(bad[:3])
    if s.get("status") not in STATUSES:
        return "unreadable", f"unknown status {s.get('status')!r}"
    return s["status"], "" if s["status"] != "running" else "still running, or its process was killed"


def _img(p: Path) -> str:
    data = base64.b64encode(p.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"></figure>'


def _claims_html(claims: dict) -> str:
    items = []

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, bool) and ("held" in k or "flipped" in k):
                cls, word = ("held", "held") if v else ("notheld", "not held")
                items.append(f'<li>{html.escape(prefix + k)}: <span class="{cls}">{word}</span></li>')

    walk(claims)
    return "<ul>" + "".join(items) + "</ul>" if items else ""


def _table(rows: list[tuple], head: tuple) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _section(folder: Path, title: str, config: dict | None, max_figures: int = 12) -> str:
    try:
        return _section_of(folder, title, config, max_figures)
    except (OSError, ValueError, AttributeError, TypeError) as e:  # a malformed folder is shown as such, never skipped
        return (f"<h2>{html.escape(title)}</h2><p class='notheld'>cannot read {html.escape(str(folder))}: "
                f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</p>")


def _section_of(folder: Path, title: str, config: dict | None, max_figures: int) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>", f'<p class="small">{html.escape(str(folder))}</p>']
    summary = folder / "summary.txt"
    if summary.exists():
        parts.append(f"<pre>{html.escape(summary.read_text())}</pre>")
    claims = _read_json(folder / "claims.json")
    if isinstance(claims, dict):
        parts.append(_claims_html(claims))
    figs = sorted(folder.glob("*.png"))
    for f in figs[:max_figures]:
        parts.append(_img(f))
    statuses, incomplete = Counter(), []
    env = None
    for st in sorted(folder.rglob("status.json")):
        state, why = _run_state(st)
        statuses[state] += 1
        if why:
            incomplete.append((str(st.parent.relative_to(folder)), state, why))
        env = env or _read_json(st.parent / "env.json")
    if statuses:
        parts.append("<p>Runs by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) + "</p>")
    if incomplete:
        parts.append("<p class='notheld'>Runs whose records are incomplete or unreadable (their files differ from "
                     "what their status recorded, or they never finished):</p>"
                     + _table(incomplete[:50], ("run", "state", "why")))
    if config:
        parts.append("<details><summary>Resolved config</summary>"
                     + _table(sorted((k, json.dumps(v)) for k, v in config.items()), ("key", "value")) + "</details>")
    summ = _read_json(folder / "summary.json")
    wall = summ.get("wall_s") if isinstance(summ, dict) else None
    if env:
        prov = {k: env.get(k) for k in ("lazyhasty", "git_sha", "torch", "numpy", "python", "device", "torch_threads",
                                        "platform")}
        if wall is not None:
            prov["wall_s"] = wall
        parts.append("<p class='small'>Provenance: " + html.escape(", ".join(f"{k} {v}" for k, v in prov.items()))
                     + "</p>")
    return "\n".join(parts)


def build_report(root: str | Path, out: str | Path | None = None, title: str = "lazyhasty report") -> Path:
    """Write ``report.html`` for every experiment folder (``experiment.json``) and sweep (``sweep.json``) under
    ``root``. Returns the path."""
    root = Path(root)
    try:
        if not root.is_dir():
            raise UsageError(f"no such folder: {root}")
        exp_files, sweep_files = sorted(root.rglob("experiment.json")), sorted(root.rglob("sweep.json"))
    except OSError as e:
        raise UsageError(f"cannot read {root}: {e.strerror or e}") from None
    sections = []
    for exp_file in exp_files:
        meta = _read_json(exp_file)
        meta = meta if isinstance(meta, dict) else {"status": "unreadable experiment.json"}
        folder = exp_file.parent
        name = meta.get("experiment", folder.name)
        state = meta.get("status")
        title = f"{name} (preset {meta.get('preset')})" + (f": {state}" if state not in (None, "complete") else "")
        sections.append(_section(folder, title, meta.get("config") if isinstance(meta.get("config"), dict) else None))
    for sweep_file in sweep_files:
        plan = _read_json(sweep_file)
        folder = sweep_file.parent
        jobs = [j for j in (plan.get("jobs") if isinstance(plan, dict) else None) or []
                if isinstance(j, dict) and isinstance(j.get("id"), str)]
        rows = []
        for j in jobs:
            spec = _read_json(folder / j["id"] / "job.json")
            spec = spec if isinstance(spec, dict) else {}
            state = spec.get("status", "missing")
            if state in ("complete", "diverged"):
                bad = check_files(folder / j["id"], spec["files"]) if isinstance(spec.get("files"), dict) else [
                    "job.json lists no files"]
                state, spec = ("incomplete", {"reason": "; ".join(bad[:2])}) if bad else (state, spec)
            rows.append((j["id"], " ".join(map(str, j.get("assignments", []))), state, spec.get("reason") or ""))
        counts = Counter(r[2] for r in rows)
        sections.append(f"<h2>Sweep {html.escape(folder.name)}</h2><p>Jobs by status: "
                        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "</p>"
                        + _table(rows, ("job", "assignments", "status", "reason")))
        for j in jobs[:6]:
            jd = folder / j["id"]
            spec = _read_json(jd / "job.json")
            if isinstance(spec, dict) and any(jd.glob("*.png")):
                sections.append(_section(jd, f"job {j['id']}: {' '.join(map(str, j.get('assignments', [])))}",
                                         spec.get("config") if isinstance(spec.get("config"), dict) else None))
    if not sections:
        sections.append("<p>No experiment or sweep records found under this folder.</p>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(sections) + "</body></html>")
    path = Path(out) if out else root / "report.html"
    try:
        atomic_write(path, page)
    except OSError as e:
        raise UsageError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return path
