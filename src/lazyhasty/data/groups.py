"""Splits of examples and named groups within them, used by every probe."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from .inputs import batch_size, cast


class Groups(Mapping):
    """Named groups of examples: ``{name: LongTensor of example indices}``.

    Build from integer index lists (each example once), boolean masks or an integer/str label per example
    (:meth:`from_labels`); float selections are refused (a 0/1 mask of floats would read as the indices 0 and 1).
    Groups may overlap; every probe also reports the implicit group ``"all"``.
    """

    def __init__(self, groups: Mapping[str, object] | None = None, n: int | None = None):
        self._g: dict[str, torch.Tensor] = {}
        for name, sel in (groups or {}).items():
            idx = torch.as_tensor(np.asarray(sel))
            if idx.dtype == torch.bool:
                if n is not None and idx.numel() != n:
                    raise ValueError(f"group {name!r}: mask has {idx.numel()} entries for {n} examples")
                idx = idx.nonzero()[:, 0]
            elif idx.numel() and (idx.is_floating_point() or idx.is_complex()):  # 0.5 -> 0, a 0/1 mask read as indices
                raise ValueError(f"group {name!r}: give example indices (integers) or a boolean mask, not {idx.dtype}")
            idx = idx.long().reshape(-1)
            if idx.numel() and (idx.min() < 0 or (n is not None and idx.max() >= n)):
                raise ValueError(f"group {name!r}: indices must lie in [0, {n if n is not None else 'n'})")
            if idx.unique().numel() != idx.numel():
                raise ValueError(f"group {name!r}: an example is listed twice; its loss would count twice in the mean")
            if name == "all":
                raise ValueError("'all' is reserved: every probe reports it")
            self._g[str(name)] = idx
        self.n = n

    @classmethod
    def from_labels(cls, labels, names: Mapping | None = None) -> Groups:
        """One group per distinct label value (optionally renamed by ``names``)."""
        labels = np.asarray(labels)
        out = {}
        for v in np.unique(labels):
            key = names[v] if names is not None and v in names else str(v)
            if key in out:  # a later label would replace the group of the first
                raise ValueError(f"two labels make one group {key!r}; give each label its own name (or build "
                                 "merged groups with Groups({name: indices}))")
            out[key] = np.nonzero(labels == v)[0]
        return cls(out, n=len(labels))

    def __getitem__(self, k: str) -> torch.Tensor:
        return self._g[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._g)

    def __len__(self) -> int:
        return len(self._g)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {v.numel()}" for k, v in self._g.items())
        return f"Groups({sizes})"


@dataclass(frozen=True)
class Split:
    """A set of examples to train on or probe: inputs x (n, ...) -- a tensor, or a tuple or dict of tensors each
    batched along dimension 0 (see :mod:`lazyhasty.data.inputs`) --, targets y (n, ...), optional groups, and
    ``info``: further per-example data kept with the examples, each of length n (e.g. a spurious attribute ``"a"``,
    the clean images ``"clean"``, positions in the source dataset ``"index"``). Checked once, when made, and
    frozen: ``dataclasses.replace(split, ...)`` makes a changed split, checked again."""

    x: torch.Tensor | tuple | dict
    y: torch.Tensor
    groups: Groups = field(default_factory=Groups)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        n = batch_size(self.x)
        if n != len(self.y):
            raise ValueError(f"x has {n} examples but y has {len(self.y)}")
        if any(len(v) != n for v in self.info.values()):
            raise ValueError(f"info {({k: len(v) for k, v in self.info.items()})} must hold one entry per example "
                             f"({n})")
        if not isinstance(self.groups, Groups):
            object.__setattr__(self, "groups", Groups(self.groups, n=n))
        elif self.groups.n not in (None, n) or any(len(g) and int(g.max()) >= n for g in self.groups.values()):
            raise ValueError(f"these groups (of {self.groups.n or 'unknown n'} examples, largest index "
                             f"{max((int(g.max()) for g in self.groups.values() if len(g)), default=-1)}) are not "
                             f"of this split's {n} examples")

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device=None, dtype=None) -> Split:
        return Split(cast(self.x, device, dtype), cast(self.y, device, dtype), self.groups, dict(self.info))
