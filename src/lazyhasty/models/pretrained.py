"""Pretrained weights from a local file (never downloaded).

George et al. (appendix D) keep batch norm's running mean and variance at their pretrained values: the regime
wrappers do that for every model they wrap (the state policy of :mod:`lazyhasty.models.regimes`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError


def load_pretrained(model: nn.Module, path: str | Path, skip: tuple[str, ...] = ("head.", "fc.")) -> dict:
    """Load a state dict saved with ``torch.save`` from a local ``path`` into ``model``, leaving out keys that
    start with ``skip`` (the read-out, replaced by a fresh one) and keys whose shapes differ. Returns the keys
    loaded, skipped and missing; a missing file or an unreadable one is a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"pretrained weights not found: {path} (weights are read from a local file only)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot read pretrained weights from {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and not k.startswith(skip) and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    return {"loaded": sorted(keep), "skipped": sorted(set(state) - set(keep)),
            "missing": sorted(set(own) - set(keep))}
