"""Inputs as pytrees: a tensor, a tuple or list of tensors, or a dict of them (``{"input_ids": ..., "mask": ...}``),
every leaf batched along dimension 0. Wherever lazyhasty accepts inputs x (``Split``, ``train``, ensembles,
``ntk_gram``, the probes, the cache of the regime wrappers) it accepts such a tree and hands it to the model as
one argument, ``model(x)``: a model whose forward takes several arguments gets a one-line adapter.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_leaves, tree_map


def leaves(x) -> list[torch.Tensor]:
    """The tensors of an input tree; an error naming the first leaf that is not a tensor."""
    out = tree_leaves(x)
    if not out:
        raise ValueError("inputs hold no tensor: give a tensor, a tuple or a dict of tensors")
    for t in out:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"inputs must be tensors (a tensor, a tuple or a dict of tensors); found a "
                            f"{type(t).__name__}")
    return out


def batch_size(x) -> int:
    """n, the common length of every leaf along dimension 0 (an error if the leaves disagree)."""
    sizes = {tuple(t.shape[:1]) for t in leaves(x)}
    if len(sizes) != 1 or () in sizes:
        shapes = ", ".join(str(tuple(t.shape)) for t in leaves(x))
        raise ValueError(f"every input tensor must be batched along dimension 0 with one length; got shapes {shapes}")
    return sizes.pop()[0]


def take(x, index):
    """The examples ``index`` (an index tensor or a slice) of every leaf."""
    return tree_map(lambda t: t[index], x)


def chunks(x, size: int) -> list:
    """Consecutive blocks of at most ``size`` examples."""
    n = batch_size(x)
    return [take(x, slice(i, i + size)) for i in range(0, n, size)]


def cast(x, device=None, dtype=None):
    """Every leaf on ``device``; floating-point leaves in ``dtype`` (integer ids and masks keep theirs)."""
    return tree_map(lambda t: t.to(device=device, dtype=dtype if t.is_floating_point() else None), x)


def first(x) -> torch.Tensor:
    """The first floating-point leaf (else the first leaf): where an input's dtype and device are read."""
    ts = leaves(x)
    return next((t for t in ts if t.is_floating_point()), ts[0])
