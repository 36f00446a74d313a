"""The empirical neural tangent kernel, K(x, x')_{cc'} = grad_theta f_c(x) . grad_theta f_c'(x').

Two algorithms (``method``):

* ``"structured"`` -- for networks whose parameters all live in ``nn.Linear`` layers (``NTKLinear`` included).
  A layer y = s W a + s_b b contributes K_l[i c, j c'] = (s^2 a_i.a_j + s_b^2) (delta_ic . delta_jc') where a are
  the layer's inputs and delta_ic = d f_c(x_i) / d y_i its output-gradients. One forward pass and one batched
  backward pass (all C outputs at once, ``is_grads_batched``) give every a and delta; the kernel is then a sum
  of matrix products. Per-example parameter gradients are never formed. FLOPs for the full layout:
  sum_l 2 n1 n2 (fan_in + C^2 fan_out), versus 2 n1 n2 C^2 P for J J^T.
* ``"jacobian"`` -- any module: per-example Jacobians by ``vmap(jacrev)`` on blocks of ``block`` examples,
  contracted parameter tensor by parameter tensor. Memory per block: block * C * P numbers.
* ``"auto"`` picks ``structured`` when every trainable parameter belongs to an ``nn.Linear`` layer that runs
  once per forward pass, else ``jacobian``.

Regime wrappers: for ``AlphaScaled(model, alpha)`` the kernel is alpha^2 times the model's; for
``Linearized(model)`` it is the model's kernel at theta0 (its Jacobian is constant).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..models.regimes import AlphaScaled, Linearized

LAYOUTS = ("full", "trace", "diagonal")
METHODS = ("auto", "structured", "jacobian")


def unwrap(model: nn.Module, params: dict | None = None) -> tuple[nn.Module, dict | None, float]:
    """(network, parameters to evaluate it at or None for its own, kernel factor) for a model or regime.

    ``params`` may use the wrapper's names (``model.<name>``) or the network's.
    """
    factor = 1.0
    if isinstance(model, (AlphaScaled, Linearized)):
        if isinstance(model, AlphaScaled):
            factor = model.alpha**2
        if params is not None:
            params = {k.removeprefix("model."): v for k, v in params.items()}
        elif isinstance(model, Linearized):
            params = model.params0()
        model = model.model
    return model, params, factor


def _as_2d(f: torch.Tensor) -> torch.Tensor:
    return f[:, None] if f.ndim == 1 else f.reshape(f.shape[0], -1)


def _linear_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers if they hold every trainable parameter, else None."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    covered = {id(p) for m in layers for p in (m.weight, m.bias) if p is not None}
    if all(id(p) in covered for p in model.parameters() if p.requires_grad):
        return layers
    return None


def _structured_factors(model, layers, params, x, block):
    """Per layer: a (n, fan_in), delta (C, n, fan_out), weight and bias scales. None if a layer is reused or sees
    anything but one input row per example (e.g. (n, T, d) tokens), where this rule would be wrong."""
    acts: dict[int, list] = {id(m): [] for m in layers}
    deltas: dict[int, list] = {id(m): [] for m in layers}
    if params is None:
        params = dict(model.named_parameters())
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    for xb in x.split(block):
        outs, ins = [], []

        def hook(mod, inp, out, ins=ins, outs=outs):
            ins.append((mod, inp[0]))
            outs.append(out)

        handles = [m.register_forward_hook(hook) for m in layers]
        try:
            with torch.enable_grad():
                f = _as_2d(functional_call(model, params, (xb,)))  # (b, C)
                C = f.shape[1]
                if len(outs) != len(layers) or len({id(m) for m, _ in ins}) != len(layers):
                    return None  # a layer ran twice or not at all: structure unknown
                if any(a.ndim != 2 or a.shape[0] != f.shape[0] for _, a in ins):
                    return None  # a layer applied per token (weight sharing within an example): not this rule
                basis = torch.eye(C, dtype=f.dtype, device=f.device)[:, None, :].expand(C, f.shape[0], C)
                ds = torch.autograd.grad(f, outs, grad_outputs=basis, is_grads_batched=True, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        for (m, a), d, o in zip(ins, ds, outs):
            if d is None:
                d = torch.zeros((C, *o.shape), dtype=o.dtype, device=o.device)
            acts[id(m)].append(a.detach().reshape(-1, a.shape[-1]))
            deltas[id(m)].append(d.detach().reshape(C, -1, d.shape[-1]))
    out = []
    for m in layers:
        a = torch.cat(acts[id(m)])  # (n, fan_in)
        d = torch.cat(deltas[id(m)], dim=1)  # (C, n, fan_out)
        ws = float(getattr(m, "weight_scale", 1.0))
        bs = float(getattr(m, "bias_scale", 1.0)) if m.bias is not None and m.bias.requires_grad else 0.0
        out.append((a, d, ws if m.weight.requires_grad else 0.0, bs))
    return out


def _is_readout(d: torch.Tensor) -> float | None:
    """If delta[c, i, :] = s e_c for all i (a plain read-out layer), return s; else None."""
    C, n, fo = d.shape
    if fo != C:
        return None
    s = d[0, 0, 0]
    eye = torch.eye(C, dtype=d.dtype, device=d.device)[:, None, :] * s
    return float(s) if torch.equal(d, eye.expand(C, n, C)) else None


def _structured(model, layers, params, x1, x2, outputs, block):
    f1 = _structured_factors(model, layers, params, x1, block)
    if f1 is None:
        return None
    f2 = f1 if x2 is None else _structured_factors(model, layers, params, x2, block)
    n1, n2 = f1[0][0].shape[0], f2[0][0].shape[0]
    C = f1[0][1].shape[0]
    dtype, device = f1[0][0].dtype, f1[0][0].device
    shape = {"full": (n1, C, n2, C), "trace": (n1, n2), "diagonal": (n1, n2, C)}[outputs]
    K = torch.zeros(shape, dtype=dtype, device=device)
    H = None
    for (a1, d1, ws, bs), (a2, d2, _, _) in zip(f1, f2):
        G = torch.mm(a1, a2.T) if ws else torch.zeros(n1, n2, dtype=dtype, device=device)  # (n1, n2)
        G.mul_(ws * ws).add_(bs * bs)
        s1 = _is_readout(d1)
        s = s1 if s1 is not None and (d2 is d1 or _is_readout(d2) == s1) else None
        if s is not None:  # delta . delta' = s^2 [c = c']: only the diagonal output blocks change
            G.mul_(s * s)
            if outputs == "full":
                K.diagonal(dim1=1, dim2=3).add_(G[:, :, None])
            elif outputs == "trace":
                K.add_(G, alpha=C)
            else:
                K.add_(G[:, :, None])
            continue
        fo = d1.shape[2]
        if outputs == "full":
            D1 = d1.permute(1, 0, 2).reshape(n1 * C, fo)  # rows (i, c)
            D2 = D1 if d2 is d1 else d2.permute(1, 0, 2).reshape(n2 * C, fo)
            if H is None:
                H = torch.empty(n1 * C, n2 * C, dtype=dtype, device=device)
            torch.mm(D1, D2.T, out=H)  # (n1 C, n2 C)
            K.addcmul_(G[:, None, :, None], H.view(n1, C, n2, C))
        elif outputs == "trace":
            Ht = torch.mm(d1.permute(1, 0, 2).reshape(n1, C * fo), d2.permute(1, 0, 2).reshape(n2, C * fo).T)
            K.addcmul_(G, Ht)
        else:
            Hd = torch.bmm(d1, d2.transpose(1, 2))  # (C, n1, n2)
            K.addcmul_(G[:, :, None], Hd.permute(1, 2, 0))
    return K


def _jacobian(model, params, x1, x2, outputs, block):
    if params is None:
        params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def f_single(p, x):
        return _as_2d(functional_call(model, (p, buffers), (x[None],)))[0]  # (C,)

    jac = vmap(jacrev(f_single), in_dims=(None, 0))

    def jac_block(xb) -> list[torch.Tensor]:
        J = jac(params, xb)  # {name: (b, C, *shape)}
        return [J[k].reshape(xb.shape[0], J[k].shape[1], -1) for k in params]  # each (b, C, P_k)

    blocks1 = list(x1.split(block))
    blocks2 = blocks1 if x2 is None else list(x2.split(block))
    cache: dict[int, list] = {}
    rows = []
    for i, xb in enumerate(blocks1):
        J1 = jac_block(xb)
        cols = []
        for j, yb in enumerate(blocks2):
            if x2 is None and j == i:
                J2 = J1
            else:
                J2 = cache.get(j) if x2 is not None or j > i else None
                if J2 is None:
                    J2 = jac_block(yb)
                    if x2 is not None and sum(t.numel() for t in J2) * len(blocks2) < 2**28:
                        cache[j] = J2  # keep column Jacobians when they fit in ~1 GB
            if outputs == "full":
                k = sum(torch.einsum("icp,jdp->icjd", a, b) for a, b in zip(J1, J2))
            elif outputs == "trace":
                k = sum(torch.einsum("icp,jcp->ij", a, b) for a, b in zip(J1, J2))
            else:
                k = sum(torch.einsum("icp,jcp->ijc", a, b) for a, b in zip(J1, J2))
            cols.append(k)
        rows.append(torch.cat(cols, dim=2 if outputs == "full" else 1))
    return torch.cat(rows, dim=0)


def ntk_gram(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, params: dict | None = None,
             outputs: str = "full", method: str = "auto", block: int = 256) -> torch.Tensor:
    """Empirical NTK Gram matrix (Jacot et al. 2018; George et al. sec. 2; Geiger et al. Theta).

    Args:
        model: any ``nn.Module``, a regime wrapper included (see module docstring).
        x1: inputs (n1, ...). x2: inputs (n2, ...), default x1 (the symmetric Gram).
        params: evaluate at these parameters ({name: tensor}) instead of the model's own.
        outputs: ``"full"`` -> (n1, C, n2, C); ``"trace"`` -> (n1, n2), sum_c K_{ic,jc};
            ``"diagonal"`` -> (n1, n2, C), K_{ic,jc}.
        method: ``"auto"``, ``"structured"`` or ``"jacobian"``.
        block: examples per forward/backward (bounds the memory of activations or Jacobians).
    Returns:
        K in the model's dtype and device, without gradient.
    """
    if outputs not in LAYOUTS:
        raise ValueError(f"outputs must be one of {LAYOUTS}, got {outputs!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    net, params, factor = unwrap(model, params)
    K = None
    if method in ("auto", "structured"):
        layers = _linear_layers(net)
        if layers is not None:
            K = _structured(net, layers, params, x1, x2, outputs, block)
        if K is None and method == "structured":
            raise ValueError("method='structured' needs every trainable parameter in an nn.Linear layer that runs "
                             "once per forward pass; use method='jacobian' (or 'auto') for this model")
    if K is None:
        K = _jacobian(net, params, x1, x2, outputs, block)
    K = K.detach()
    return K.mul_(factor) if factor != 1.0 else K
