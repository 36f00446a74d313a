"""Pretrained weights from a local file (never downloaded) and batch norm frozen to its statistics.

George et al. (appendix D) keep batch norm out of the alpha-scaling: its layers are set to evaluation mode so
that the running mean and variance stay at their pretrained values. ``freeze_batchnorm`` replaces every
``BatchNorm2d`` by :class:`FrozenBatchNorm2d`, which always normalises with the stored statistics (in train
mode too); its affine weight and bias remain trainable parameters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError


class FrozenBatchNorm2d(nn.Module):
    """y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, statistics fixed."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.eps = bn.eps
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.weight = nn.Parameter(bn.weight.detach().clone()) if bn.affine else None
        self.bias = nn.Parameter(bn.bias.detach().clone()) if bn.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                        training=False, eps=self.eps)


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d of ``model`` (in place) by a FrozenBatchNorm2d; returns the model."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, FrozenBatchNorm2d(child))
        else:
            freeze_batchnorm(child)
    return model


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
