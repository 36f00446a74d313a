"""Claims: one format for every experiment's statements, earned only when the runs were in their regimes and
reached the progress where the statement lives (namespace ``lazyhasty.claims``).

A claim is ``{"id", "text", "source", "held", "numbers"}``: a readable sentence, the paper's figure or equation,
``held`` True / False / None (not measured) and the evidence. :func:`write` is the one writer of ``claims.json``
(``{"experiment": name, "claims": [...]}``) and ``summary.txt``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_write
from .metrics.linearity import LINEAR_LEVEL

VERDICT = {True: "held", False: "NOT held", None: "not measured"}
# how far a run is from its linearisation: the measures of George et al. (section 2.2), 1 at initialisation and
# falling as the network leaves it, and Geiger et al.'s kernel change ||K_t - K_0||_F / ||K_0||_F, read as the
# kernel similarity 1 - change (1 at initialisation too). Which of them a network has: sign similarity needs ReLU
# modules, representation alignment a last nn.Linear layer.
MEASURES = ("ntk_alignment", "sign_similarity", "representation_alignment")  # scale-free: the default
AS_SIMILARITY = {"ntk_distance": "kernel_similarity"}  # a distance d is judged as 1 - d under this name
ABSENT = {"sign_similarity": "the network has no ReLU module", "ntk_alignment": "no kernel was recorded",
          "ntk_distance": "no kernel was recorded", "representation_alignment": "the network has no nn.Linear read-out"}


def claim(id: str, text: str, source: str, held: bool | None, **numbers) -> dict:
    """One entry of ``claims.json``: ``text`` a readable sentence, ``source`` the paper's figure or equation,
    ``held`` True / False / None (not measured), ``numbers`` the evidence (JSON values)."""
    return {"id": id, "text": text, "source": source, "held": None if held is None else bool(held),
            "numbers": numbers}


def write(out: Path, name: str, claims: list[dict], text: str, figure: Path | None = None) -> dict:
    """The one writer of ``claims.json`` (``{"experiment": name, "claims": [...]}``) and ``summary.txt`` (``text``
    and one line per claim), both atomic; the summary is printed. Returns the claims.json content."""
    doc = {"experiment": name, "claims": claims}
    text = text.rstrip("\n") + "\n\nclaims:\n" + "".join(
        f"  [{VERDICT[c['held']]}] {c['id']}: {c['text']} ({c['source']})\n" for c in claims)
    atomic_write(Path(out) / "summary.txt", text)
    atomic_write(Path(out) / "claims.json", doc)
    print(text + (f"[{name}] figure: {figure}" if figure is not None else ""))
    return doc


def earned(held: bool | None, stays_linear: dict, missed: Sequence[str] = ()) -> bool | None:
    """A regime comparison is answered only when the runs are shown to be in their regimes (the ``stays_linear``
    claim held) and every run reached its progress target (none ``missed``): then ``held``, else None."""
    return held if stays_linear["held"] is True and not len(missed) else None


def missed_note(missed: Sequence[str]) -> str:
    """Why a claim is not measured when runs missed their targets ("" when none did)."""
    return f"not measured: {len(missed)} run(s) missed the progress target (budget spent, or diverged): " \
        f"{', '.join(missed)}" if len(missed) else ""


def bootstrap_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap, 2000 resamples, fixed RNG);
    NaN with fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    import scipy.stats  # here, not at the top: 0.6 s of every process, and a run of one seed never needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=2000,
                                    method="percentile", random_state=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def linearity_verdict(metrics: pd.DataFrame, pairs: Mapping[int | str, tuple[str, str]],
                      level: float = LINEAR_LEVEL, measures: Sequence[str] = MEASURES,
                      exact: Sequence[str] = (), why: str = "") -> dict:
    """Whether the two runs of every pair are in their regimes (George et al. 2022, section 2.2): the lazy run stays
    linear (every linearity measure the network has stays >= ``level`` at every measurement: kernel alignment with
    initialisation KA(K_t, K_0) of eq. 5, ReLU sign similarity, representation alignment, and the kernel similarity
    1 - ||K_t - K_0||_F / ||K_0||_F of Geiger et al.), while the feature run leaves (at least one falls below).

    Every measure the network has is used, so that a network whose kernel hardly rotates while its representation
    moves (a deep linear network) is judged on the one that moves; a measure it lacks is named with why. The
    default measures are scale-free (a kernel that only grows leaves the order of learning, hence the comparison at
    equal progress, unchanged); where the change that matters shows only in the kernel's size, pass
    ``measures=(..., "ntk_distance")`` and say ``why`` (the diagonal quadratic model at small initialisation:
    one mode dominates its kernel, whose alignment then stays high while the modes' weights change by orders of
    magnitude).

    Args:
        metrics: the runs' long table (``load_runs`` layout), with the rows of a ``LinearityProbe``.
        pairs: ``{key: (feature_run_id, lazy_run_id)}``, e.g. per seed.
        exact: lazy runs that are linear by construction (``Linearized``, closed forms): they stay linear whatever
            their recorded measures.
        why: why these measures (kept in the result).
    Returns:
        ``{"held": True | False | None, "level", "measures", "why", "per_pair": {key: {regime: {measure: min}}},
        "moved": {key: [measures the feature run fell below on]}, "note"}``; None when no measure was recorded.
    """
    ids = [r for p in pairs.values() for r in p]
    m = metrics[metrics.metric.isin(measures) & metrics.run_id.isin(ids)]
    absent = [k for k in measures if not (m.metric == k).any()]
    m = m.assign(value=np.where(m.metric.isin(list(AS_SIMILARITY)), 1.0 - m.value, m.value),
                 metric=m.metric.replace(AS_SIMILARITY))
    present = [AS_SIMILARITY.get(k, k) for k in measures if k not in absent]
    out = {"held": None, "level": float(level), "measures": present, "why": why, "per_pair": {}, "moved": {},
           "note": "; ".join(f"no {k.replace('_', ' ')}: {ABSENT.get(k, 'not recorded')}" for k in absent)}
    if not present:
        out["note"] = "no linearity measure was recorded (LinearityProbe off): not measured"
        return out
    mins = m.groupby(["run_id", "metric"]).value.min()
    mins[m.value.isna().groupby([m.run_id, m.metric]).any()] = np.nan  # an undefined point is never skipped
    held = True
    for key, (feature, lazy) in pairs.items():
        row = {name: {k: float(mins.get((rid, k), np.nan)) for k in present}
               for name, rid in (("feature", feature), ("lazy", lazy))}
        out["per_pair"][str(key)] = row
        if not all(np.isfinite(v) for r in row.values() for v in r.values()):
            out["note"] = f"{key}: a run recorded no value, or a non-finite one"
            return out
        moved = [k for k in present if row["feature"][k] < level]
        out["moved"][str(key)] = moved
        lazy_ok = lazy in exact or all(row["lazy"][k] >= level for k in present)
        held = held and lazy_ok and bool(moved)
    out["held"] = bool(held)
    return out


def linearity_line(v: dict) -> str:
    """One readable line of a :func:`linearity_verdict`."""
    mins = "; ".join(f"{key}: " + ", ".join(f"{regime} min {k} {x:.3f}" for regime, r in row.items()
                                            for k, x in r.items()) for key, row in v["per_pair"].items())
    return (f"stays linear (lazy >= {v['level']:g} on every one of {', '.join(v['measures']) or 'nothing'}, "
            f"feature below on one): {VERDICT[v['held']]}" + (f" ({v['note']})" if v["note"] else "")
            + (f"; {mins}" if mins else ""))


def stays_linear_claim(verdict: dict, feature: str, lazy: str) -> dict:
    """The ``stays_linear`` claim from a :func:`linearity_verdict`."""
    ms = [m.replace("_", " ") for m in verdict["measures"]]
    names = (", ".join(ms[:-1]) + " and " + ms[-1] if len(ms) > 1 else "".join(ms)) or "linearity measures"
    return claim("stays_linear", f"The lazy run ({lazy}) stays linear: its {names} stay >= {verdict['level']:g} at "
                 f"every measurement, while the feature run ({feature}) leaves the kernel regime: one of them falls "
                 "below", "George et al. 2022, section 2.2 (eq. 5); Chizat et al. 2019", verdict["held"],
                 **{k: v for k, v in verdict.items() if k != "held"})
