"""``lazyhasty report DIR``: one self-contained HTML page from run records (a Jinja2 template; figures embedded,
no network); ``lazyhasty claims`` / ``show DIR``: the claims of every experiment."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from .errors import FolderInUse, UsageError
from .runs.records import STATUSES, atomic_write, check_files, writer_state
from .runs.sweep import sweep_status


def _read_json(p: Path):
    """A record's JSON, or None: unreadable, malformed, or not a regular file (a link is never followed)."""
    try:
        return json.loads(p.read_bytes()) if stat.S_ISREG(p.lstat().st_mode) else None
    except (OSError, ValueError):
        return None


MAX_EMBED = 20 * 2**20  # bytes: a figure or text larger than this is listed, not embedded


def _embeddable(f: Path, folder: Path) -> bytes | str:
    """The bytes of ``f`` if the page may embed it: a regular file (not a link) inside ``folder``, at most
    ``MAX_EMBED`` bytes; else why not (the page lists it as left out)."""
    try:
        st = f.lstat()
        if not stat.S_ISREG(st.st_mode):
            return "a link or not a regular file"
        if not f.resolve().is_relative_to(folder.resolve()):
            return "outside the records folder"
        if st.st_size > MAX_EMBED:
            return f"{st.st_size / 2**20:.0f} MiB, over the {MAX_EMBED // 2**20} MiB limit"
        return f.read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"


def _run_state(status_file: Path) -> tuple[str, str]:
    """(status, problem) of one run folder: its recorded status, or ``incomplete`` / ``unreadable`` with why when
    its files differ from the sizes and checksums its status lists; a run recorded ``running`` is ``interrupted``
    when the process writing it has died (:func:`~lazyhasty.runs.records.writer_state`)."""
    s = _read_json(status_file)
    if not isinstance(s, dict):
        return "unreadable", "status.json cannot be read"
    bad = check_files(status_file.parent, s["files"]) if isinstance(s.get("files"), dict) else []
    if bad:
        return "incomplete", "; ".join(bad[:3])
    if s.get("status") not in STATUSES:
        return "unreadable", f"unknown status {s.get('status')!r}"
    if s["status"] != "running":
        return s["status"], ""
    return writer_state(_writer(status_file.parent), s.get("updated"),
                        (_read_json(status_file.parent / "env.json") or {}).get("host"))


def _writer(folder: Path) -> int | None:
    """The PID of the process that holds (or last held) ``folder``'s lock, which its ``.lock`` file names."""
    lock = _embeddable(folder / ".lock", folder)  # a regular file inside the folder, never a link
    return int(lock.split()[0]) if isinstance(lock, bytes) and lock.split() and lock.split()[0].isdigit() else None


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


def _fits(folder: Path) -> list[dict]:
    """The scaling fits of a phase folder (fits.csv), formatted for the report."""
    data = _embeddable(folder / "fits.csv", folder)
    try:
        import io

        import pandas as pd

        t = pd.read_csv(io.BytesIO(data))
    except (OSError, ValueError, TypeError):  # TypeError: not embeddable (absent, a link, too large)
        return []

    def f(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) and v == v else "" if v != v else str(v)

    return [{"quantity": r.quantity, "value": f(r.value), "interval": f"[{f(r.ci_low)}, {f(r.ci_high)}]",
             "theory": f(r.theory), "n": f(r.n)} for r in t.itertuples()]


def _section(folder: Path, root: Path, title: str, meta: dict, max_figures: int = 12) -> dict:
    """Everything the template shows of one experiment folder; a folder that cannot be read is shown as such."""
    sec = {"anchor": _anchor(folder, root), "title": title, "folder": str(folder), "wall_s": meta.get("wall_s"),
           "overrides": [str(o) for o in meta.get("overrides") or []], "preset": meta.get("preset"),
           "revision": (meta.get("env") or {}).get("git_sha") if isinstance(meta.get("env"), dict) else None}
    try:
        claims = read_claims(folder)
        sec["claims_broken"] = claims is None and (folder / "claims.json").exists()
        sec["claims"] = [{**c, "css": VERDICTS.get(c["held"], VERDICTS[None])[0],
                          "word": VERDICTS.get(c["held"], VERDICTS[None])[1], "source": c.get("source", ""),
                          "numbers": _numbers(c.get("numbers", {}))} for c in claims or []]
        if claims:
            counts = Counter(c["word"] for c in sec["claims"])
            sec["counts"] = ", ".join(f"{n} {w}" for w, n in counts.items())
        sec["fits"] = _fits(folder)
        sec["figures"], sec["left_out"] = [], []
        for f in sorted(folder.glob("*.png"))[:max_figures]:
            data = _embeddable(f, folder)
            if isinstance(data, bytes):
                sec["figures"].append({"name": f.stem, "data": base64.b64encode(data).decode()})
            else:
                sec["left_out"].append(f"{f.name}: {data}")
        statuses, incomplete, env = Counter(), [], None
        for st in sorted(folder.rglob("status.json")):
            state, why = _run_state(st)
            statuses[state] += 1
            if why:
                incomplete.append((str(st.parent.relative_to(folder)), state, why))
            env = env or _read_json(st.parent / "env.json")
        sec["statuses"] = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        sec["incomplete"] = incomplete[:50]
        summary = _embeddable(folder / "summary.txt", folder) if (folder / "summary.txt").exists() else b""
        if isinstance(summary, str):
            sec["left_out"].append(f"summary.txt: {summary}")
        sec["summary"] = summary.decode(errors="replace") if isinstance(summary, bytes) else ""
        config = meta.get("config")
        sec["config"] = sorted((k, json.dumps(v)) for k, v in config.items()) if isinstance(config, dict) else []
        if isinstance(env, dict):
            sec["provenance"] = ", ".join(f"{k} {env.get(k)}" for k in ("lazyhasty", "git_sha", "torch", "numpy",
                                                                         "python", "device", "torch_threads"))
    except (OSError, ValueError, AttributeError, TypeError) as e:  # a malformed folder is shown as such, never skipped
        sec["error"] = f"cannot read {folder}: {type(e).__name__}: {e}"
    return sec


def _anchor(folder: Path, root: Path) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in str(folder.relative_to(root)) or "root")


def _sweep_section(folder: Path, root: Path) -> list[dict]:
    """A sweep's jobs with their verified states, as ``lazyhasty sweep --status`` prints them
    (:func:`~lazyhasty.runs.sweep.sweep_status`), then the first jobs' own figures and claims."""
    sec = {"anchor": _anchor(folder, root), "title": f"Sweep {folder.name}", "folder": str(folder), "wall_s": None}
    try:
        rows = [(jid, assignments, state, why) for jid, state, why, assignments in sweep_status(folder)]
    except FolderInUse as e:
        return [{**sec, "error": str(e)}]
    counts = Counter(r[2] for r in rows)
    out = [{**sec, "jobs": rows, "statuses": ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())),
            "counts": f"{len(rows)} jobs"}]
    for jid, assignments, _, _ in rows[:6]:  # the first jobs' own figures and claims
        spec = _read_json(folder / jid / "job.json")
        if isinstance(spec, dict) and any((folder / jid).glob("*.png")):
            out.append(_section(folder / jid, root, f"job {jid}: {assignments}", {"config": spec.get("config")}))
    return out


def build_report(root: str | Path, out: str | Path | None = None, title: str = "lazyhasty report") -> Path:
    """Write ``report.html`` (a Jinja2 template, ``templates/report.html.j2``; self-contained: figures embedded,
    no external asset) for every experiment folder (``experiment.json``) and sweep (``sweep.json``) under ``root``:
    a table of contents, per experiment its claims (``claims.json``), figures, the config that differs from its
    preset, run time, code revision and run counts; the phase experiment's scaling fits instead of its cell jobs.
    Folders inside an experiment's folder (the phase cells) are that experiment's, not sections of their own.
    Returns the path."""
    import jinja2

    root = Path(root)
    try:
        if not root.is_dir():
            raise UsageError(f"no such folder: {root}")
        found = sorted([(f.parent, "experiment") for f in root.rglob("experiment.json")]
                       + [(f.parent, "sweep") for f in root.rglob("sweep.json")])
    except OSError as e:
        raise UsageError(f"cannot read {root}: {e.strerror or e}") from None
    if not found:  # an empty page would look like a report of nothing
        raise UsageError(f"nothing to report under {root}: no experiment.json or sweep.json (run an experiment first)")
    exp_dirs = {d for d, kind in found if kind == "experiment"}
    sections, env = [], None
    for folder, kind in found:
        if any(parent in exp_dirs for parent in folder.parents):
            continue  # inside an experiment: its own jobs (phase cells)
        if kind == "sweep":
            sections += _sweep_section(folder, root)
            continue
        meta = _read_json(folder / "experiment.json")
        meta = meta if isinstance(meta, dict) else {"status": "unreadable experiment.json"}
        env = env or (meta.get("env") if isinstance(meta.get("env"), dict) else None)
        state = meta.get("status")
        if state == "running" and meta.get("started"):  # while the process holding the folder lives (an older
            # lazyhasty recorded no start time to check a process against: its word is kept)
            host = meta["env"].get("host") if isinstance(meta.get("env"), dict) else None
            state = writer_state(_writer(folder), meta.get("started"), host)[0]
        name = meta.get("experiment", folder.name)
        sections.append(_section(folder, root, f"{name} (preset {meta.get('preset')})"
                                 + (f": {state}" if state not in (None, "complete") else ""), meta))
    template = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined).from_string(
        resources.files("lazyhasty").joinpath("templates/report.html.j2").read_text())
    page = template.render(title=title, sections=sections, env=env, root=str(root),
                           built=time.strftime("%Y-%m-%d %H:%M"))
    path = Path(out) if out else root / "report.html"
    try:
        atomic_write(path, page)
    except OSError as e:
        raise UsageError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return path
