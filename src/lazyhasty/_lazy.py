"""Public names imported on first use (PEP 562), so that ``lazyhasty --help``, a refused command and Ctrl-C while
starting never wait for torch."""

from __future__ import annotations

import importlib


def exports(package: str, homes: dict[str, str], namespaces: tuple[str, ...] = ()):
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``: ``homes`` maps a module (relative to the
    package) to its public names, separated by spaces; ``namespaces`` are submodules reached as attributes."""
    home = {name: module for module, names in homes.items() for name in names.split()}
    names = [*home, *namespaces]

    def __getattr__(name: str):
        if name in home:
            module = home[name] if home[name].startswith(".") else f".{home[name]}"
            value = getattr(importlib.import_module(module, package), name)
        elif name in namespaces:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(importlib.import_module(package)), *names})

    return __getattr__, __dir__, names
