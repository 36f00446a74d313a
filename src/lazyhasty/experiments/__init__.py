"""The experiment registry. Each experiment is one module with a frozen ``Config`` dataclass, its ``PRESETS``
(at least ``quick`` and ``paper``) and ``main(config, out) -> summary``; the module exposes ``EXPERIMENT``.
Experiments use the public API (``from lazyhasty import ...``) and these small helpers only."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazyhasty import UsageError, atomic_write

REGISTRY = f"{__name__}:registry"  # how the sweep runner and its workers find this registry
_MODULES = ("demo", "fig1", "fig2_noise", "fig2_cscores", "fig5_lr", "fig3", "fig4", "fig14", "phase")


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: type
    presets: Mapping[str, Any]
    main: Callable[[Any, Path], dict]
    default_preset: str = "quick"  # what `lazyhasty run NAME` uses without --preset
    demo_preset: str = "quick"  # what `lazyhasty demo` runs
    schema: int = 1  # raise when a code change alters what a config means: sweeps then re-run its finished jobs

    def preset(self, name: str) -> Any:
        if name not in self.presets:
            raise UsageError(f"experiment {self.name!r} has no preset {name!r}; presets: {', '.join(self.presets)}")
        return self.presets[name]


VERDICT = {True: "held", False: "NOT held", None: "not measured"}


def write_claims(out: Path, name: str, claims: list[dict], text: str, figure: Path | None = None) -> dict:
    """Every experiment's closing step: ``claims.json`` in the one format of every experiment
    (``{"experiment": name, "claims": [lazyhasty.claim(...), ...]}``), ``summary.txt`` (``text`` and one line per
    claim), both atomic, and the summary printed. Returns the claims.json content."""
    doc = {"experiment": name, "claims": claims}
    text = text.rstrip("\n") + "\n\nclaims:\n" + "".join(
        f"  [{VERDICT[c['held']]}] {c['id']}: {c['text']} ({c['source']})\n" for c in claims)
    atomic_write(out / "summary.txt", text)
    atomic_write(out / "claims.json", doc)
    print(text + (f"[{name}] figure: {figure}" if figure is not None else ""))
    return doc


def registry() -> dict[str, Experiment]:
    """Every registered experiment by name."""
    exps = {}
    for mod in _MODULES:
        e = importlib.import_module(f"{__name__}.{mod}").EXPERIMENT
        exps[e.name] = e
    return exps

