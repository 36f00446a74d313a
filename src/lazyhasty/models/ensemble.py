"""Ensembles: E members of one architecture evaluated as one computation (torch.func's model-ensembling recipe).

``Ensemble(members)`` stacks the members' trainable parameters along a new leading axis and evaluates every
member at once with ``vmap`` over ``functional_call``. Members are plain modules, ``AlphaScaled`` wrappers (any
alpha and centre per member) or ``Linearized`` wrappers, all of one architecture; a member's output is computed
with its wrapper's own output map (:func:`alpha_output`, :func:`linear_output`), so member k of an ensemble is
the module it was built from, evaluated in a batch.

The stacked parameters are the ensemble's state while it trains: ``member(k)`` copies row k back into member k's
module and returns that module. An ensemble of one stacks nothing: its parameters are views of its member's own,
and its member is called as it is (no ``vmap``, the wrapper's own caches), so it accepts any module, trains it in
place and costs what a plain training step costs; ``lazyhasty.train`` trains every model as an ensemble of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_map

from ..data.inputs import leaves
from .regimes import (
    AlphaScaled,
    Linearized,
    _InputCache,
    _Regime,
    ad_kernels,
    alpha_output,
    cached_f0,
    frozen_stats,
    linear_output,
    running_stats,
)


def _network(member: nn.Module) -> nn.Module:
    return member.model if isinstance(member, _Regime) else member


def _structure(net: nn.Module) -> list[tuple]:
    params = [("parameter", n, tuple(p.shape), p.dtype, p.device, p.requires_grad) for n, p in net.named_parameters()]
    buffers = [("buffer", n, tuple(b.shape), b.dtype, b.device) for n, b in net.named_buffers()]
    return [type(net).__name__, *params, *buffers]


class Ensemble(nn.Module):
    """E members of one architecture, evaluated together: ``forward(x)`` maps x (n, ...) to (E, n, ...).

    Args:
        members: modules of the same structure (class, parameter and buffer names, shapes, dtypes, devices):
            plain modules, :class:`AlphaScaled` with any alpha and centre per member, or all :class:`Linearized`
            (a linearized member's output is computed differently, so it cannot share an ensemble with others).
            Build paired members with ``seeded`` and ``same_init``: member k then starts from exactly the theta0 of the
            single run with the same seed.
    Attributes:
        alphas: (E,) each member's alpha (1 for plain and Linearized members).
        params: the trainable parameters, one (E, *shape) tensor per parameter of the architecture.
    """

    def __init__(self, members: Sequence[nn.Module], cache_size: int = 4):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for k, m in enumerate(members):
            if not isinstance(m, nn.Module) or isinstance(m, Ensemble):
                raise TypeError(f"member {k} must be a module (not an Ensemble), got {type(m).__name__}")
        linear = [isinstance(m, Linearized) for m in members]
        if any(linear) and not all(linear):
            raise ValueError("Linearized members cannot share an ensemble with plain or AlphaScaled members (their "
                             "outputs are computed differently): train them as an ensemble of their own")
        nets = [_network(m) for m in members]
        ref = _structure(nets[0])
        for k, net in enumerate(nets[1:], 1):
            s = _structure(net)
            if s != ref:
                diff = next((a, b) for a, b in zip([*ref, None], [*s, None]) if a != b)
                raise ValueError(f"member {k} does not have member 0's structure: {diff[1]} vs {diff[0]}")
        self.members = nn.ModuleList(members)
        self.linear, self.plain = all(linear), not any(isinstance(m, _Regime) for m in members)
        self._names = [n for n, p in nets[0].named_parameters() if p.requires_grad]
        self._const_names = [n for n, p in nets[0].named_parameters() if not p.requires_grad]
        self._const_names += [n for n, _ in nets[0].named_buffers()]
        self._tied = len(list(nets[0].named_parameters(remove_duplicate=False))) > len(list(nets[0].parameters()))

        def stack(tensors, copy=False):  # an ensemble of one keeps views of its member's tensors
            tensors = [t.detach() for t in tensors]
            return tensors[0].clone()[None] if copy and len(tensors) == 1 else \
                tensors[0][None] if len(tensors) == 1 else torch.stack(tensors).clone()

        if len(members) > 1:  # the stacked parameters are the ensemble's own state
            self._stacked = nn.ParameterList([nn.Parameter(stack(dict(net.named_parameters())[n] for net in nets))
                                              for n in self._names])
        for i, n in enumerate(self._names):  # theta0: the wrapper's frozen copy, or a plain member's parameters now
            self.register_buffer(f"theta0_{i}", stack([m.params0()[n] if isinstance(m, _Regime)
                                                       else dict(m.named_parameters())[n] for m in members],
                                                      copy=not isinstance(members[0], _Regime)))
        for i, n in enumerate(self._const_names):  # frozen parameters and buffers: constants of the computation
            self.register_buffer(f"const_{i}", stack([{**dict(net.named_parameters()), **dict(net.named_buffers()),
                                                       **(m.buffers0() if isinstance(m, _Regime) else {})}[n]
                                                      for m, net in zip(members, nets)]))
        dtype = next(nets[0].parameters()).dtype if self._names else torch.get_default_dtype()
        self.register_buffer("alphas", torch.tensor([float(getattr(m, "alpha", 1.0)) for m in members], dtype=dtype))
        self.register_buffer("c", torch.tensor([m.c if isinstance(m, AlphaScaled) else 1.0 for m in members],
                                               dtype=dtype))
        self._caches = (_InputCache(cache_size), _InputCache(cache_size))  # shared inputs, own inputs
        self._lookup: dict = {}  # leaves, theta0 and constants by name, rebuilt after .to()

    def __len__(self) -> int:
        return len(self.members)

    # -- stacked state ----------------------------------------------------------------------------------
    def _leaves(self) -> list[torch.Tensor]:
        """The tensors gradients are taken with respect to: the stacked parameters, or for an ensemble of one the
        member's own parameters."""
        if "leaves" not in self._lookup:
            named = dict(_network(self.members[0]).named_parameters())
            self._lookup["leaves"] = list(self._stacked) if len(self) > 1 else [named[n] for n in self._names]
        return self._lookup["leaves"]

    @property
    def params(self) -> list[torch.Tensor]:
        """The trainable parameters, one (E, *shape) tensor each: what a stepper updates in place. An ensemble of
        one stacks nothing: these are views of its member's own parameters, which therefore train in place."""
        leaves = self._leaves()
        return leaves if len(self) > 1 else [p.detach()[None] for p in leaves]

    def gradients(self, objective: torch.Tensor) -> list[torch.Tensor]:
        """d objective / d params, shaped like :attr:`params` (zeros for a parameter the objective does not use).
        The objective is a scalar (a tensor grad_outputs would make torch import sympy, 0.4 s, on first use)."""
        leaves = self._leaves()
        grads = torch.autograd.grad(objective, leaves, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]
        return grads if len(self) > 1 else [g[None] for g in grads]

    def stacked_params0(self) -> dict[str, torch.Tensor]:
        """theta0 of every member, {name: (E, *shape)}."""
        if "theta0" not in self._lookup:
            self._lookup["theta0"] = {n: getattr(self, f"theta0_{i}") for i, n in enumerate(self._names)}
        return self._lookup["theta0"]

    def params0(self, k: int) -> dict[str, torch.Tensor]:
        """theta0 of member k, named as ``member(k).named_parameters()`` names them."""
        prefix = "model." if isinstance(self.members[k], _Regime) else ""
        return {prefix + n: p0[k] for n, p0 in self.stacked_params0().items()}

    def member(self, k: int) -> nn.Module:
        """Member k as the module it was built from (its own type), holding its current parameters."""
        if len(self) > 1:
            named = dict(_network(self.members[k]).named_parameters())
            with torch.no_grad():
                for n, p in zip(self._names, self._stacked):
                    named[n].copy_(p[k])
        return self.members[k]

    # -- evaluation -------------------------------------------------------------------------------------
    def _fn(self, args: tuple, kwargs: dict, own: bool = False, members: torch.Tensor | None = None
            ) -> Callable[[dict], torch.Tensor]:
        """Stacked parameters -> stacked network outputs on the given inputs: {name: (E, *shape)} -> (E, n, ...);
        ``own``: every input tensor is (E, n, ...), member k's inputs at [k]; ``members``: the parameters (and
        inputs) are those of these members only (an index tensor (T,)), whose constants are then used."""
        if "consts" not in self._lookup:  # looked up once: torch.compile then guards these, not all E members
            self._lookup["net"] = _network(self.members[0])  # the template: functional_call swaps every tensor
            self._lookup["consts"] = {n: getattr(self, f"const_{i}") for i, n in enumerate(self._const_names)}
        net, consts = self._lookup["net"], self._lookup["consts"]
        if members is not None:
            consts = {n: c[members] for n, c in consts.items()}

        def one(p, c, a):
            return functional_call(net, (p, c), a, kwargs, tie_weights=self._tied)

        return lambda P: vmap(one, in_dims=(0, 0, 0 if own else None))(P, consts, args)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self._evaluate(args, kwargs, False)

    def own(self, *args, **kwargs) -> torch.Tensor:
        """Each member on its own inputs: every input tensor is (E, n, ...), member k's inputs at [k] (per-member
        training sets, ``train(ensemble, [set_0, ..., set_E-1])``) -> (E, n, ...)."""
        bad = [tuple(t.shape) for t in leaves(args) if t.ndim == 0 or t.shape[0] != len(self)]
        if bad:
            raise ValueError(f"own inputs must hold one block per member along dimension 0 ({len(self)}), got "
                             f"shapes {bad}")
        return self._evaluate(args, kwargs, True)

    def given_f0(self, f0: torch.Tensor | None, *args, own: bool = False, members: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        """What ``forward`` (``own``: :meth:`own`) gives, from f_theta0 on these inputs (``f0`` (E, n, ...), kept by a
        caller that evaluates the same inputs again; None for plain members), for ``members`` only (an index tensor
        (T,); None: all) -> (T, n, ...). Plain and AlphaScaled members."""
        if self.linear:
            raise ValueError("Linearized members have no f0 to give: call the ensemble")
        if len(self) == 1:  # its member, called as it is
            m, args = self.members[0], tree_map(lambda t: t[0], args) if own else args
            return (m(*args, **kwargs) if f0 is None else m.given_f0(f0[0], *args, **kwargs))[None]
        ix = slice(None) if members is None else members
        with self.evaluating():
            return self.outputs({n: p[ix] for n, p in zip(self._names, self._stacked)}, None if f0 is None else f0[ix],
                                tree_map(lambda t: t[ix], args) if own else args, kwargs, own, members)

    def _evaluate(self, args: tuple, kwargs: dict, own: bool) -> torch.Tensor:
        if len(self) == 1:  # an ensemble of one is its member, called as it is, with a member axis added
            return self.members[0](*(tree_map(lambda t: t[0], args) if own else args), **kwargs)[None]
        with self.evaluating():
            P = dict(zip(self._names, self._stacked))
            if self.linear:
                P0 = self.stacked_params0()
                delta = {n: p - P0[n] for n, p in P.items()}
                return linear_output(self._caches[own], self._fn(args, kwargs, own), P0, delta, args, kwargs,
                                     self.training)
            return self.outputs(P, self.f0(*args, own=own, **kwargs), args, kwargs, own)

    @contextmanager
    def evaluating(self):
        """Around any evaluation of the stacked members: batch norm's statistics frozen (the wrappers' state policy)
        and kernels that torch.func can transform; plain members that would update running statistics are refused."""
        net = _network(self.members[0])
        if "stats" not in self._lookup:
            self._lookup["stats"] = running_stats(net)
        stats = self._lookup["stats"]
        if self.plain and self.training and stats:
            raise ValueError(f"plain members with running statistics ({type(stats[0]).__name__}) cannot train as one "
                             "ensemble: each would update its own statistics. Wrap them, AlphaScaled(member, 1.0), to "
                             "freeze the statistics at initialisation (George et al.'s policy), or train them one by "
                             "one")
        with frozen_stats(net, stats), ad_kernels(net):
            yield

    def f0(self, *args, own: bool = False, **kwargs) -> torch.Tensor | None:
        """Every member's f_theta0 on these inputs (``own``: as :meth:`own` takes them), (E, n, ...), cached per
        batch; None for plain members."""
        if self.plain:
            return None
        if len(self) == 1:  # its member's own f0 (AlphaScaled, Linearized)
            return self.members[0].f0(*(tree_map(lambda t: t[0], args) if own else args), **kwargs)[None]
        P0 = self.stacked_params0()
        with self.evaluating():
            return cached_f0(self._caches[own], lambda: self._fn(args, kwargs, own)(P0), args, kwargs, self.training)

    def outputs(self, P: dict[str, torch.Tensor], f0: torch.Tensor | None, args: tuple, kwargs: dict,
                own: bool = False, members: torch.Tensor | None = None) -> torch.Tensor:
        """The members' outputs (E, n, ...) as a pure function of stacked parameters ``P`` ({name: (E, *shape)}) and
        f0 (:meth:`f0`): what torch.func differentiates and torch.compile traces. Plain and AlphaScaled members;
        ``own``: inputs as :meth:`own` takes them; ``members`` (T,): P, f0 and own inputs are those of these members
        only, -> (T, n, ...)."""
        f = self._fn(args, kwargs, own, members)(P)  # (E, n, ...)
        if f0 is None:
            return f
        shape = (-1, *([1] * (f.ndim - 1)))
        alphas, c = (self.alphas, self.c) if members is None else (self.alphas[members], self.c[members])
        return alpha_output(f, f0, alphas.view(shape), c.view(shape))

    def _apply(self, fn, *a, **k):  # .to(), .double(): cached outputs and tensors are stale afterwards
        for cache in self._caches:
            cache.clear()
        self._lookup.clear()
        return super()._apply(fn, *a, **k)
