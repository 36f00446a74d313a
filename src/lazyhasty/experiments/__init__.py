"""The experiment registry. Each experiment is one module with a frozen ``Config`` dataclass, its ``PRESETS``
(at least ``quick`` and ``paper``) and ``main(config, out) -> summary``; the module exposes ``EXPERIMENT``.
Experiments use the public API (``from lazyhasty import ...``); ``lazyhasty.claims.write`` writes their claims."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lazyhasty import UsageError

REGISTRY = f"{__name__}:registry"  # how the sweep runner and its workers find this registry
_MODULES = ("demo", "fig1", "fig2_noise", "fig2_cscores", "fig5_lr", "fig3", "fig4", "fig14", "phase")


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: type
    presets: Mapping[str, Any]
    main: Callable[[Any, Any], dict | None]  # main(cfg, out: lazyhasty.runs.Output): where and how it writes
    default_preset: str = "quick"  # what `lazyhasty run NAME` uses without --preset
    demo_preset: str = "quick"  # what `lazyhasty demo` runs
    schema: int = 1  # raise when a code change alters what a config means: sweeps then re-run its finished jobs
    resume_may_change: tuple[str, ...] = ()  # fields a --resume may change (else the config must be the same)

    def preset(self, name: str) -> Any:
        if name not in self.presets:
            raise UsageError(f"experiment {self.name!r} has no preset {name!r}; presets: {', '.join(self.presets)}")
        return self.presets[name]


class _Registry(Mapping):
    """Experiments by name, each module imported when it is first asked for: a sweep worker that runs one cell of
    phase does not import the other experiments (matplotlib, scipy, ...), about 2 s per worker process."""

    def __getitem__(self, name: str) -> Experiment:
        if name not in _MODULES:
            raise KeyError(name)
        return importlib.import_module(f"{__name__}.{name}").EXPERIMENT

    def __iter__(self):
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


def registry() -> Mapping[str, Experiment]:
    """Every registered experiment by name (a module's name is its experiment's)."""
    return _Registry()

