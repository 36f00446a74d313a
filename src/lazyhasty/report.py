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
.notmeasured{color:#fff;background:#777;padding:1px 6px;border-radius:3px;white-space:nowrap}
.small{color:#666;font-size:.85em}
table.claims td{vertical-align:top;overflow-wrap:anywhere}
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


VERDICTS = {True: ("held", "held"), False: ("notheld", "not held"), None: ("notmeasured", "not measured")}


def read_claims(folder: Path) -> list[dict] | None:
    """The claims of an experiment folder (``claims.json``: ``{"experiment", "claims": [...]}``), or None."""
    doc = _read_json(folder / "claims.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        return None
    return [c for c in doc["claims"] if isinstance(c, dict) and {"id", "text", "held"} <= set(c)]


def _numbers(v, depth: int = 0) -> str:
    """The evidence of a claim, compact: numbers to 4 significant digits, nested dicts one level deep."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_numbers(x, depth + 1) for x in v[:8]) + (", ..." if len(v) > 8 else "") + "]"
    if isinstance(v, dict):
        if depth >= 2:
            return "{...}"
        return "; ".join(f"{k}: {_numbers(x, depth + 1)}" for k, x in list(v.items())[:10])
    return str(v)


def _claims_html(claims: list[dict]) -> str:
    rows = []
    for c in claims:
        cls, word = VERDICTS.get(c["held"], VERDICTS[None])
        rows.append(f'<tr><td><span class="{cls}">{word}</span></td><td><b>{html.escape(c["id"])}</b><br>'
                    f'{html.escape(c["text"])}<br><span class="small">{html.escape(str(c.get("source", "")))}</span>'
                    f'</td><td class="small">{html.escape(_numbers(c.get("numbers", {})))}</td></tr>')
    return ("<table class='claims'><tr><th>verdict</th><th>claim</th><th>numbers</th></tr>" + "".join(rows)
            + "</table>")


def claims_rows(root: str | Path) -> list[tuple]:
    """(experiment, preset, claim id, verdict, text, wall seconds) of every experiment folder under ``root``."""
    rows = []
    for exp_file in sorted(Path(root).rglob("experiment.json")):
        meta = _read_json(exp_file) or {}
        claims = read_claims(exp_file.parent)
        for c in claims or []:
            rows.append((meta.get("experiment", exp_file.parent.name), meta.get("preset"), c["id"],
                         VERDICTS.get(c["held"], VERDICTS[None])[1], c["text"], meta.get("wall_s")))
    return rows


def claims_markdown(root: str | Path) -> str:
    """A Markdown table of every claim under ``root`` (what ``lazyhasty claims`` prints and puts in the README)."""
    rows = claims_rows(root)
    lines = ["| experiment (preset, run time) | claim | verdict | statement |", "|---|---|---|---|"]
    for exp, preset, cid, verdict, text, wall in rows:
        t = f", {wall:.0f} s" if isinstance(wall, (int, float)) else ""
        lines.append(f"| {exp} ({preset}{t}) | `{cid}` | **{verdict}** | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


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
    claims = read_claims(folder)
    if claims:
        parts.append(_claims_html(claims))
    elif (folder / "claims.json").exists():
        parts.append("<p class='notheld'>claims.json is not in the claims format ({experiment, claims: [...]})</p>")
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
