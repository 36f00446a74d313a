"""The empirical neural tangent kernel, K(x, x')_{cc'} = grad_theta f_c(x) . grad_theta f_c'(x').

K is a sum over parameter tensors, and each tensor is handled by the cheapest exact rule that applies:

* **Linear layers seen once per example** (a (n, fan_in) input): y = s W a + s_b b contributes
  K_l[i c, j c'] = (s^2 a_i.a_j + s_b^2) (delta_ic . delta_jc'), delta_ic = d f_c(x_i) / d y_i. One forward pass and
  one backward pass per output give every a and delta; the kernel is a sum of matrix products and per-example
  gradients are never formed.
* **Weight sharing within an example**: a Linear layer on tokens (n, T, fan_in) and Conv2d (positions). The
  per-example gradient is summed over the shared positions, g_ic = s sum_t delta_ict a_it^T (for a convolution
  a_it are the unfolded input patches; Novak et al. 2022's structured derivatives), from the same forward and
  backward pass, and contracted: K_l = g g'^T.
* **Every other parameter** (embeddings, norms, attention projections held as raw parameters, modules called
  twice, modules not listed below) goes to the generic rule: per-example Jacobians by ``vmap(jacrev)`` of those
  parameters only, contracted tensor by tensor. A module is given a structured rule only when it is one of
  ``nn.Linear``, ``NTKLinear``, ``nn.Conv2d`` (zero padding, groups = 1), ``NTKConv2d``, runs exactly once per
  forward pass, shares no parameter, keeps its output unmodified, and sees the examples along dimension 0 (checked
  by running two batch sizes), has no hook and no instance-level ``forward``; and only when no global module hook
  is registered and the network computes each example independently (two examples together give the outputs of
  each alone). Nothing else is guessed: everything else goes to the generic rule.

``method="jacobian"`` sends every parameter to the generic rule (the reference the tests compare against);
``"structured"`` and ``"auto"`` use the rules above.

Regime wrappers: for ``AlphaScaled(model, alpha)`` the kernel is alpha^2 times the model's; for
``Linearized(model)`` it is the model's kernel at theta0 (its Jacobian is constant). Batch norm is evaluated with its
running statistics (for a wrapper, the frozen wrap-time ones: the state policy of :mod:`lazyhasty.models.regimes`);
batch norm without running statistics couples the examples and is refused. Inputs may be pytrees
(:mod:`lazyhasty.data.inputs`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from ..data.inputs import batch_size, chunks, first, take
from ..models.cnn import NTKConv2d
from ..models.mlp import NTKLinear
from ..models.regimes import AlphaScaled, Linearized, ad_kernels, batch_coupled, frozen_stats

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


_LINEAR = (nn.Linear, NonDynamicallyQuantizableLinear, NTKLinear)
_CONV = (nn.Conv2d, NTKConv2d)


def _known(m: nn.Module) -> bool:
    if type(m) in _LINEAR:
        return True
    return type(m) in _CONV and m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)


def _call(net, params, buffers, x):
    f = functional_call(net, (params, buffers), (x,))
    return f[:, None] if f.ndim == 1 else f.reshape(f.shape[0], -1)  # (n, C)


def _hooked(net, modules, params, buffers, x):
    """One forward pass recording each module's (input, output, their versions at the hook); f as (b, C)."""
    seen: dict[int, list] = {id(m): [] for m in modules}

    def hook(mod, inp, out):
        seen[id(mod)].append((inp[0], out, (inp[0]._version, out._version)))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        f = _call(net, params, buffers, x)
    finally:
        for h in handles:
            h.remove()
    return f, seen


class _Uses(TorchFunctionMode):
    """Counts, per tensor of ``watch``, the torch calls that take it as an argument."""

    def __init__(self, watch):
        super().__init__()
        self.ids = {id(t) for t in watch}
        self.count: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor) and id(t) in self.ids:
                self.count[id(t)] = self.count.get(id(t), 0) + 1
        return func(*args, **kwargs)


def _global_hooks() -> bool:
    """Whether a module hook registered for every module (``nn.modules.module.register_module_*_hook``) is on."""
    from torch.nn.modules import module as M

    return any(getattr(M, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks"))


def _altered(m: nn.Module) -> bool:
    """Whether ``m`` may not compute its class's forward: it has hooks of its own, or an instance attribute
    ``forward`` shadowing the class's."""
    return "forward" in vars(m) or any(getattr(m, name, None) for name in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def _mixes(f_batch: torch.Tensor, f_alone: torch.Tensor) -> bool:
    """Whether outputs of examples computed together differ from those computed one at a time (beyond 1024 ulp of
    the largest output): a module that mixes the examples of a batch."""
    scale = float(f_alone.abs().max()) if f_alone.numel() else 0.0
    return bool((f_batch - f_alone).abs().max() > 1024 * torch.finfo(f_batch.dtype).eps * max(scale, 1e-30))


def _plan(net, params, buffers, x) -> tuple[list[nn.Module], list[str]]:
    """(modules given a structured rule, parameter names left to the generic rule), from forward passes on the first
    two examples and on the first one (to see which dimension is the examples'). A parameter used by any other
    torch call than its module's one (weight tying, a functional reuse) keeps its module on the generic rule."""
    owned = {id(m): [f"{mn}.{pn}" if mn else pn for pn, _ in m.named_parameters(recurse=False)]
             for mn, m in net.named_modules()}
    if _global_hooks():
        return [], list(params)  # a hook on every module may change any layer's output: nothing is structured
    cands = [m for m in net.modules() if _known(m) and not _altered(m)]
    uses = _Uses(params.values())
    with torch.no_grad():
        with uses:
            f2, two = _hooked(net, cands, params, buffers, take(x, slice(0, 2)))
        f1, one = _hooked(net, cands, params, buffers, take(x, slice(0, 1)))
        b = min(2, batch_size(x))
        if b == 2 and _mixes(f2, torch.cat([f1, _call(net, params, buffers, take(x, slice(1, 2)))])):
            return [], list(params)  # examples are not computed independently: the per-example rules do not hold
    chosen = []
    for m in cands:
        if len(two[id(m)]) != 1 or len(one[id(m)]) != 1:
            continue  # not run, or run several times: generic
        if any(n not in params or uses.count.get(id(params[n])) != 1 for n in owned[id(m)]
               if getattr(m, n.rpartition(".")[2]).requires_grad):
            continue  # a parameter tied to another or used again elsewhere
        (a2, o2, v2), (a1, _, _) = two[id(m)][0], one[id(m)][0]
        if (a2._version, o2._version) != v2 or a2.shape[0] != b or a1.shape[0] != 1 or a2.shape[1:] != a1.shape[1:]:
            continue  # input or output edited in place afterwards, or examples not along dimension 0
        if type(m) in _CONV and a2.ndim != 4:
            continue
        if any(_scales(m)):
            chosen.append(m)
    mine = {n for m in chosen for n in owned[id(m)]}
    return chosen, [n for n in params if n not in mine]


def _scales(m) -> tuple[float, float]:
    ws = float(getattr(m, "weight_scale", 1.0)) if m.weight.requires_grad else 0.0
    bs = float(getattr(m, "bias_scale", 1.0)) if m.bias is not None and m.bias.requires_grad else 0.0
    return ws, bs


def _factors(net, modules, params, buffers, x):
    """One forward and one backward pass per output on a block: per module either ("gram", a (b, fan_in),
    delta (C, b, fan_out)) for a linear layer seen once per example, or ("jac", g (b, C, P_m)) per-example gradients
    summed over shared positions."""
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():
        f, seen = _hooked(net, modules, params, buffers, x)
        b, C = f.shape
        if any(len(seen[id(m)]) != 1 for m in modules):
            raise RuntimeError("the network ran its layers differently on this block than on the first examples; "
                               "use method='jacobian'")
        outs = [seen[id(m)][0][1] for m in modules]
        # output c's gradients, one backward pass each (a scalar output: torch.autograd.grad with tensor
        # grad_outputs imports sympy, a third of a second per process, for its shape check)
        per_c = [torch.autograd.grad(f[:, c].sum(), outs, retain_graph=c < C - 1, allow_unused=True)
                 for c in range(C)] if outs else []
        ds = [None if all(t is None for t in g) else torch.stack([torch.zeros_like(o) if t is None else t for t in g])
              for g, o in zip(zip(*per_c), outs)]
    res = []
    for m, d, o in zip(modules, ds, outs):
        a = seen[id(m)][0][0].detach()
        d = torch.zeros((C, *o.shape), dtype=o.dtype, device=o.device) if d is None else d.detach()
        ws, bs = _scales(m)
        if type(m) in _CONV:  # patches (b, L, cin k k) and output-gradients (C, b, L, cout) over positions L
            a = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2)
            res.append(("jac", _shared(a, d.flatten(3).transpose(2, 3), ws, bs)))
        elif a.ndim == 2:
            res.append(("gram", a, d, ws, bs))
        else:  # tokens: (b, T, fan_in), (C, b, T, fan_out)
            res.append(("jac", _shared(a.reshape(b, -1, a.shape[-1]), d.reshape(C, b, -1, d.shape[-1]), ws, bs)))
    return res


def _shared(a: torch.Tensor, d: torch.Tensor, ws: float, bs: float):
    """Per-example gradients of a layer whose weights are shared over positions L: a (b, L, k) inputs, d (C, b, L, o)
    output-gradients -> g (b, C, o k [+ o]) with g_ic = ws sum_l d_icl a_il^T (and bs sum_l d_icl for the bias).

    When the output-gradients factor as d[c, i, l, o] = w[c, o] u[i, l, o] (to 32 ulp: the last layer before pooling
    and a linear read-out, where d is the read-out weight times an activation derivative), the gradient is
    w[c, o] A_i[o] with A_i[o] = sum_l u_ilo a_il, and the result is the tuple (w (C, o), A (b, o, k), B (b, o)): the
    kernel then costs n^2 o k instead of n^2 C^2 o k (:func:`_pair`)."""
    power = d.pow(2).sum(0).flatten(0, 1)  # (b L, o)
    w = d.flatten(1, 2)[:, power.argmax(0), torch.arange(d.shape[3], device=d.device)]  # (C, o): a column per unit
    w = w / w.norm(dim=0, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
    u = torch.einsum("co,cblo->blo", w, d)
    if float((d - w[:, None, None, :] * u).norm()) <= 32 * torch.finfo(d.dtype).eps * float(d.norm()):
        return w, ws * torch.einsum("blo,blk->bok", u, a), bs * u.sum(1)
    return torch.cat([ws * torch.einsum("cblo,blk->bcok", d, a).flatten(2), bs * d.sum(2).transpose(0, 1)], 2)


def _dense(item) -> torch.Tensor:
    """A per-example gradient item as the tensor (b, C, P)."""
    if isinstance(item, torch.Tensor):
        return item
    w, A, B = item
    return torch.cat([torch.einsum("co,bok->bcok", w, A).flatten(2), torch.einsum("co,bo->bco", w, B)], 2)


def _pair(x, y, outputs: str) -> torch.Tensor:
    """The kernel block of two per-example gradient items (a tensor (n, C, P) or a factored (w, A, B))."""
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return _contract(_dense(x), _dense(y), outputs)
    (w1, A1, B1), (w2, A2, B2) = x, y
    M = torch.bmm(A1.transpose(0, 1), A2.permute(1, 2, 0)).addcmul_(B1.T[:, :, None], B2.T[:, None, :])  # (o, n1, n2)
    if outputs == "full":
        return torch.einsum("co,do,oij->icjd", w1, w2, M)
    if outputs == "trace":
        return torch.einsum("o,oij->ij", (w1 * w2).sum(0), M)
    return torch.einsum("co,oij->ijc", w1 * w2, M)


def _is_readout(d: torch.Tensor) -> float | None:
    """If delta[c, i, :] = s e_c for all i (a plain read-out layer), return s; else None."""
    C, n, fo = d.shape
    if fo != C:
        return None
    s = d[0, 0, 0]
    eye = torch.eye(C, dtype=d.dtype, device=d.device)[:, None, :] * s
    return float(s) if torch.equal(d, eye.expand(C, n, C)) else None


def _add_gram(K, a1, d1, a2, d2, ws, bs, outputs, H=None):
    """K += the contribution (s^2 a.a' + s_b^2) (delta . delta') of one linear layer seen once per example."""
    n1, n2, C = a1.shape[0], a2.shape[0], d1.shape[0]
    G = torch.mm(a1, a2.T) if ws else torch.zeros(n1, n2, dtype=K.dtype, device=K.device)  # (n1, n2)
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
        return H
    fo = d1.shape[2]
    if outputs == "full":
        D1 = d1.permute(1, 0, 2).reshape(n1 * C, fo)  # rows (i, c)
        D2 = D1 if d2 is d1 else d2.permute(1, 0, 2).reshape(n2 * C, fo)
        if H is None:
            H = torch.empty(n1 * C, n2 * C, dtype=K.dtype, device=K.device)
        torch.mm(D1, D2.T, out=H)  # (n1 C, n2 C)
        K.addcmul_(G[:, None, :, None], H.view(n1, C, n2, C))
    elif outputs == "trace":
        Ht = torch.mm(d1.permute(1, 0, 2).reshape(n1, C * fo), d2.permute(1, 0, 2).reshape(n2, C * fo).T)
        K.addcmul_(G, Ht)
    else:
        Hd = torch.bmm(d1, d2.transpose(1, 2))  # (C, n1, n2)
        K.addcmul_(G[:, :, None], Hd.permute(1, 2, 0))
    return H


def _contract(a: torch.Tensor, b: torch.Tensor, outputs: str) -> torch.Tensor:
    """Per-example gradients (n1, C, P), (n2, C, P) -> their kernel block in the layout."""
    if outputs == "full":
        return torch.einsum("icp,jdp->icjd", a, b)
    if outputs == "trace":
        return torch.einsum("icp,jcp->ij", a, b)
    return torch.einsum("icp,jcp->ijc", a, b)


def _kernel(net, params, buffers, x1, x2, outputs, block, structured):
    """K over blocks of examples: gram-type layers from factors of all examples, per-example gradients (structured
    jac-type layers and the generic rule) block by block."""
    xp = x1 if x2 is None or batch_size(x1) > 1 else tree_map(lambda u, v: torch.cat([u, v[:1]]), x1, x2)
    modules, rest = _plan(net, params, buffers, xp) if structured else ([], list(params))
    P_rest = {k: params[k] for k in rest}
    fixed = {k: v.detach() for k, v in params.items() if k not in P_rest}

    def f_single(p, x):
        return _call(net, {**fixed, **p}, buffers, tree_map(lambda t: t[None], x))[0]  # (C,)

    jac = vmap(jacrev(f_single), in_dims=(None, 0))

    def block_factors(xb) -> tuple[list, list]:
        fac = _factors(net, modules, params, buffers, xb) if modules else []
        grams = [r[1:] for r in fac if r[0] == "gram"]
        js = [r[1] for r in fac if r[0] == "jac"]
        if P_rest:
            J = jac(P_rest, xb)  # {name: (b, C, *shape)}
            js += [J[k].reshape(J[k].shape[0], J[k].shape[1], -1) for k in P_rest]
        return grams, js

    blocks = [chunks(x1, block)] + ([] if x2 is None else [chunks(x2, block)])
    grams: list[list] = [[], []]  # per side, per block: the gram-type factors
    jacs: dict[tuple[int, int], list] = {}  # (side, block) -> per-example gradients, kept while they fit in ~1 GB
    budget = 2**28

    def jac_of(side, j):
        if (side, j) not in jacs:
            g, J = block_factors(blocks[side][j])
            if len(grams[side]) == j:
                grams[side].append(g)
            nonlocal budget
            size = sum(t.numel() for item in J for t in ([item] if isinstance(item, torch.Tensor) else item))
            if size <= budget:
                budget -= size
                jacs[(side, j)] = J
            return J
        return jacs[(side, j)]

    for side, bl in enumerate(blocks):  # one pass over every block: gram factors, and the first per-example gradients
        for j in range(len(bl)):
            jac_of(side, j)
    n1 = batch_size(x1)
    n2 = n1 if x2 is None else batch_size(x2)
    J0 = jac_of(0, 0)
    C = (J0[0].shape[1] if isinstance(J0[0], torch.Tensor) else J0[0][0].shape[0]) if J0 else \
        grams[0][0][0][1].shape[0]
    ref = next(iter(params.values())) if params else first(x1)
    shape = {"full": (n1, C, n2, C), "trace": (n1, n2), "diagonal": (n1, n2, C)}[outputs]
    K = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    col = 2 if outputs == "full" else 1
    if J0:
        starts = [[0], [0]]
        for side, bl in enumerate(blocks):
            for b in bl:
                starts[side].append(starts[side][-1] + batch_size(b))
        other = 0 if x2 is None else 1
        for i in range(len(blocks[0])):
            J1 = jac_of(0, i)
            for j in range(i if x2 is None else 0, len(blocks[other])):
                k = sum(_pair(a, b, outputs) for a, b in zip(J1, jac_of(other, j)))
                r, c = slice(starts[0][i], starts[0][i + 1]), slice(starts[other][j], starts[other][j + 1])
                idx = [slice(None)] * K.ndim
                idx[0], idx[col] = r, c
                K[tuple(idx)] += k
                if x2 is None and j != i:  # the symmetric block
                    idx[0], idx[col] = c, r
                    K[tuple(idx)] += k.permute(2, 3, 0, 1) if outputs == "full" else k.transpose(0, 1)
    H = None
    for layer in range(len(grams[0][0])):
        a1 = torch.cat([g[layer][0] for g in grams[0]])
        d1 = torch.cat([g[layer][1] for g in grams[0]], dim=1)
        a2, d2 = (a1, d1) if x2 is None else (torch.cat([g[layer][0] for g in grams[1]]),
                                              torch.cat([g[layer][1] for g in grams[1]], dim=1))
        H = _add_gram(K, a1, d1, a2, d2, *grams[0][0][layer][2:], outputs, H)
    return K


def ntk_gram(model: nn.Module, x1, x2=None, *, params: dict | None = None, outputs: str = "full",
             method: str = "auto", block: int = 256) -> torch.Tensor:
    """Empirical NTK Gram matrix (Jacot et al. 2018; George et al. sec. 2; Geiger et al. Theta).

    Args:
        model: any ``nn.Module``, a regime wrapper included (see module docstring).
        x1: inputs (n1, ...): a tensor or a tuple / dict of tensors batched along dimension 0.
        x2: inputs (n2, ...), default x1 (the symmetric Gram).
        params: evaluate at these parameters ({name: tensor}) instead of the model's own.
        outputs: ``"full"`` -> (n1, C, n2, C); ``"trace"`` -> (n1, n2), sum_c K_{ic,jc};
            ``"diagonal"`` -> (n1, n2, C), K_{ic,jc}. C is the number of outputs per example (all trailing
            dimensions of the output flattened).
        method: ``"auto"`` or ``"structured"`` (the rules of the module docstring) or ``"jacobian"`` (generic only).
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
    if not all(batch_size(x) for x in ((x1,) if x2 is None else (x1, x2))):  # also: leaves of different lengths
        raise ValueError("ntk_gram needs at least one example in x1 and in x2")
    net, params, factor = unwrap(model, params)
    coupled = batch_coupled(net)
    if coupled:
        raise ValueError(f"module {coupled[0]!r} is batch norm without running statistics: its output mixes the "
                         "examples of a batch, so it has no kernel between examples; build it with "
                         "track_running_stats=True (lazyhasty then freezes the statistics)")
    random = [n for n, m in net.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p]
    if random:
        raise ValueError(f"module {random[0]!r} is dropout in train mode: the network is a random function and its "
                         "kernel would change with every call; call model.eval() first")
    if params is None:
        params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    buffers = model.buffers0() if isinstance(model, (AlphaScaled, Linearized)) else dict(net.named_buffers())
    with frozen_stats(net), ad_kernels(net):
        K = _kernel(net, params, buffers, x1, x2, outputs, block, structured=method != "jacobian").detach()
    return K.mul_(factor) if factor != 1.0 else K
