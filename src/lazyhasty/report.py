"""``lazyhasty report DIR``: one self-contained HTML page from run records (figures embedded, no network)."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path

from .runs.records import atomic_write

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
    statuses = Counter()
    env = None
    for st in folder.rglob("status.json"):
        s = _read_json(st) or {}
        statuses[s.get("status", "unreadable")] += 1
        env = env or _read_json(st.parent / "env.json")
    if statuses:
        parts.append("<p>Runs by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) + "</p>")
    if config:
        parts.append("<details><summary>Resolved config</summary>"
                     + _table(sorted((k, json.dumps(v)) for k, v in config.items()), ("key", "value")) + "</details>")
    wall = (_read_json(folder / "summary.json") or {}).get("wall_s")
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
    if not root.is_dir():
        from .errors import UsageError

        raise UsageError(f"no such folder: {root}")
    sections = []
    for exp_file in sorted(root.rglob("experiment.json")):
        meta = _read_json(exp_file) or {}
        folder = exp_file.parent
        name = meta.get("experiment", folder.name)
        sections.append(_section(folder, f"{name} (preset {meta.get('preset')})", meta.get("config")))
    for sweep_file in sorted(root.rglob("sweep.json")):
        plan = _read_json(sweep_file) or {}
        folder = sweep_file.parent
        rows = []
        for j in plan.get("jobs", []):
            spec = _read_json(folder / j["id"] / "job.json") or {}
            rows.append((j["id"], " ".join(j.get("assignments", [])), spec.get("status", "missing"),
                         spec.get("reason") or ""))
        counts = Counter(r[2] for r in rows)
        sections.append(f"<h2>Sweep {html.escape(folder.name)}</h2><p>Jobs by status: "
                        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "</p>"
                        + _table(rows, ("job", "assignments", "status", "reason")))
        for j in plan.get("jobs", [])[:6]:
            jd = folder / j["id"]
            if (jd / "job.json").exists() and any(jd.glob("*.png")):
                sections.append(_section(jd, f"job {j['id']}: {' '.join(j.get('assignments', []))}",
                                         (_read_json(jd / "job.json") or {}).get("config")))
    if not sections:
        sections.append("<p>No experiment or sweep records found under this folder.</p>")
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>"
            + "\n".join(sections) + "</body></html>")
    path = Path(out) if out else root / "report.html"
    atomic_write(path, page)
    return path
