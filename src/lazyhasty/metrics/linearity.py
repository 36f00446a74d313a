"""How far the network has moved from its linearisation: sign similarity of ReLUs, representation alignment,
parameter distance (George et al., sec. 2 "Linearity measures"; Geiger et al. 2020).

All take the model (plain or a regime wrapper; for a wrapper the underlying network f_theta is measured) and
theta0 either as a ``{name: tensor}`` dict (the wrapper's or the network's names) or as a module holding theta0.
Inputs may be pytrees (:mod:`lazyhasty.data.inputs`); batch norm runs on its (frozen) running statistics.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ..data.inputs import batch_size
from ..models.activations import Activation
from ..models.regimes import frozen_stats
from .alignment import kernel_alignment
from .ntk import unwrap

# the stays-linear claim: the lazy run's kernel alignment and sign similarity stay above it, the feature run's fall
# below (a stated level: 1 = as at initialisation)
LINEAR_LEVEL = 0.9


def theta0_of(model: nn.Module, model0_or_params0) -> dict[str, torch.Tensor]:
    """theta0 under the network's own names, from a module holding it or a dict (the wrapper's names or its own)."""
    if isinstance(model0_or_params0, nn.Module):
        net0, _, _ = unwrap(model0_or_params0)
        return {k: v.detach() for k, v in net0.named_parameters()}
    _, p, _ = unwrap(model, dict(model0_or_params0))
    return p


def features(model: nn.Module, params, x, layer: str | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """One forward pass of the network (of a wrapper: its network f_theta) at ``params`` (its names; None: its own):
    whether each ReLU module's input is > 0 (bool tensors, in call order) and the representation R (n, h) in float64,
    the input of the last ``nn.Linear`` to run (or of module ``layer``), None where there is none."""
    net, _, _ = unwrap(model)
    mods = dict(net.named_modules())
    if layer is not None and layer not in mods:
        raise ValueError(f"no module named {layer!r}; modules: {', '.join(k for k in mods if k)}")
    reps = [mods[layer]] if layer is not None else [m for m in net.modules() if isinstance(m, nn.Linear)]
    signs: list[torch.Tensor] = []
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, inp, out: signs.append(inp[0].detach() > 0))
               for m in net.modules() if isinstance(m, nn.ReLU) or (isinstance(m, Activation) and m.name == "relu")]
    handles += [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach())) for m in reps]
    try:
        with torch.no_grad(), frozen_stats(net):
            functional_call(net, params, (x,)) if params is not None else net(x)
    finally:
        for h in handles:
            h.remove()
    return signs, seen[-1].reshape(batch_size(x), -1).double() if seen else None


def same_signs(now: list[torch.Tensor], then: list[torch.Tensor]) -> float:
    """The fraction of ReLU inputs, over every layer and example, with the same sign in both (:func:`features`)."""
    if [a.shape for a in now] != [b.shape for b in then]:  # a network whose ReLU calls depend on its parameters
        raise ValueError(f"the ReLU modules ran differently at theta0 ({len(then)} calls) and now ({len(now)} calls, "
                         "or other shapes): their signs cannot be compared one to one")
    return sum(int((a == b).sum()) for a, b in zip(now, then)) / sum(a.numel() for a in now)


def sign_similarity(model: nn.Module, model0_or_params0, x: torch.Tensor) -> float:
    """Fraction of ReLU pre-activations, over every ReLU layer and example, whose activation status
    (0 or > 0) is the same as at initialisation. 1 at init; < 1 once features move.

    ReLUs are found as ``nn.ReLU`` modules or lazyhasty ``Activation("relu")`` modules (functional
    ``torch.relu`` calls are invisible: a model without ReLU modules is an error).
    """
    now = features(model, None, x)[0]
    if not now:
        raise ValueError("sign_similarity found no ReLU module (nn.ReLU or Activation('relu')) in the model")
    return same_signs(now, features(model, theta0_of(model, model0_or_params0), x)[0])


def representation_alignment(model: nn.Module, params0, x: torch.Tensor, layer: str | None = None) -> float:
    """Kernel alignment of the example Gram matrices R_t R_t^T and R_0 R_0^T, where R (n, h) is the input of
    the last linear layer (the last non-softmax representation; George et al. sec. 2), or of ``layer``."""
    R = features(model, None, x, layer)[1]
    if R is None:
        raise ValueError(f"representation_alignment found no input to {layer or 'an nn.Linear layer'}; "
                         "pass layer='name'")
    R0 = features(model, theta0_of(model, params0), x, layer)[1]
    return kernel_alignment(R @ R.T, R0 @ R0.T)


def parameter_distance(params: dict[str, torch.Tensor] | nn.Module, params0: dict[str, torch.Tensor]) -> dict:
    """||theta - theta0|| / ||theta0||: ``{"total": ..., "<layer>": ...}`` with layers named by module
    (``layers.0`` for ``layers.0.weight`` and ``layers.0.bias``)."""
    if isinstance(params, nn.Module):
        params = dict(params.named_parameters())
    num: dict[str, float] = {}
    den: dict[str, float] = {}
    for k, p0 in params0.items():
        if k not in params:
            raise KeyError(f"parameter {k!r} of theta0 is missing from theta")
        layer = k.rsplit(".", 1)[0] if "." in k else k
        num[layer] = num.get(layer, 0.0) + float((params[k].detach().double() - p0.double()).pow(2).sum())
        den[layer] = den.get(layer, 0.0) + float(p0.double().pow(2).sum())
    out = {"total": math.sqrt(sum(num.values()) / sum(den.values())) if sum(den.values()) else math.nan}
    out.update({k: math.sqrt(num[k] / den[k]) if den[k] else math.nan for k in num})
    return out
