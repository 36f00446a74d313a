"""Training regimes as wrappers: ``AlphaScaled`` (Chizat et al. 2019) and ``Linearized`` (its alpha -> inf limit).

A regime is a wrapper, not a flag: both keep the wrapped model's call signature and expose the wrapped
model's parameters as their own, so an optimiser, a stepper or ``torch.func.functional_call`` treats them
like any ``nn.Module``. The learning-rate rule eta_alpha = eta / alpha^2 is *not* applied here: it lives in
the training engine (:func:`lazyhasty.train`), which reads ``alpha`` from the wrapper. The output maps
(:func:`alpha_output`, :func:`linear_output`) are plain functions, so that :class:`~lazyhasty.Ensemble` evaluates
many wrapped members with exactly the same formulas.

Initial parameters theta0 are a frozen copy taken at wrap time, stored as buffers (so they follow
``.to(device/dtype)`` and are saved in ``state_dict``) under the names ``theta0__<param name>``.

State policy (buffers, e.g. BatchNorm's running mean and variance): a buffer is part of the function, not of the
parameters, so it is frozen at its wrap-time value. Every module with running statistics (BatchNorm*, InstanceNorm*
with ``track_running_stats``) normalises with the statistics it had when wrapped, in train and eval mode alike, and
never updates them: the lazy-vs-hasty paper's policy (George et al., footnote 2 and appendix D: the batch-norm mean
and variance kept at their initial or pre-trained values). Then f_theta is one function of theta in both modes, its
linearisation is well defined, and AlphaScaled(model, alpha) approaches Linearized(model) with a gap ~ 1/alpha.
Other train-mode behaviour (dropout) is kept. A module that changes any other buffer during its forward pass is an
error naming it, and so is batch norm without running statistics in :func:`~lazyhasty.ntk_gram` and the probes
(its output couples the examples of a batch: no kernel between examples exists). Attention runs its math kernels
(no fused fast path) where forward-mode AD needs them: :func:`ad_kernels`.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, jvp, linearize
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.modules.batchnorm import _NormBase
from torch.utils._pytree import tree_flatten

_PREFIX = "theta0__"


def running_stats(net: nn.Module) -> list[nn.Module]:
    """The modules of ``net`` that keep running statistics (BatchNorm*, InstanceNorm* with track_running_stats)."""
    return [m for m in net.modules() if isinstance(m, _NormBase) and m.track_running_stats]


def batch_coupled(net: nn.Module) -> list[str]:
    """Names of modules whose output mixes the examples of a batch: batch norm without running statistics."""
    return [n or type(net).__name__ for n, m in net.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats]


@contextmanager
def frozen_stats(net: nn.Module, stats: list[nn.Module] | None = None):
    """Inside: every module with running statistics (``stats``, default ``running_stats(net)``) normalises with them
    and does not update them (eval mode for those modules only). The state policy of the module docstring."""
    switched = [m for m in (running_stats(net) if stats is None else stats) if m.training]
    for m in switched:
        m.training = False
    try:
        yield
    finally:
        for m in switched:
            m.training = True


@contextmanager
def ad_kernels(net: nn.Module):
    """Inside: scaled dot-product attention uses its math kernel and nn.MultiheadAttention / TransformerEncoderLayer
    their composite path (the fused kernels have no forward-mode AD and no vmap rule). An operation torch.func
    still cannot transform (recurrent layers' fused kernels) raises :class:`UnsupportedModule`."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    except (RuntimeError, NotImplementedError) as e:
        if not any(k in str(e) for k in ("forward AD", "vmap", "batching rule", "broadcast shape", "functorch")):
            raise
        raise UnsupportedModule(net, e) from e
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


class UnsupportedModule(ValueError):
    """torch.func could not transform (jvp, vmap, jacrev) an operation of the network."""

    def __init__(self, net: nn.Module, err: Exception):
        suspects = [(n, type(m).__name__) for n, m in net.named_modules() if isinstance(m, nn.RNNBase)]
        where = f"module {suspects[0][0]!r} ({suspects[0][1]})" if suspects else "an operation of the network"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        super().__init__(f"torch.func cannot transform {where}: {first}. Linearized, ntk_gram and ensembles need "
                         "forward-mode AD and vmap through every operation: replace it by a version written with "
                         "plain torch ops (e.g. an RNN cell in a Python loop), or train it with AlphaScaled and a "
                         "large alpha one run at a time")


def check_buffers(net: nn.Module, named: list[tuple[str, torch.Tensor]],
                  versions: list[int] | None = None) -> list[int]:
    """Versions of the buffers ``named`` ((name in ``net``, tensor) pairs); given the versions before a forward pass,
    raise if that pass changed a buffer (a module with state this package does not know how to freeze)."""
    now = [b._version for _, b in named]
    if versions is not None and now != versions:
        name = next(n for (n, _), a, b in zip(named, versions, now) if a != b)
        owner = net.get_submodule(name.rpartition(".")[0])
        raise RuntimeError(f"the forward pass changed the buffer {name!r} of a {type(owner).__name__} module: "
                           "lazyhasty keeps buffers at their wrap-time values (batch norm's running statistics are "
                           "frozen for you); make this module keep its state constant, or hold it as a parameter")
    return now


def _frozen_name(name: str) -> str:
    return _PREFIX + name.replace(".", "__")


class _InputCache:
    """A tiny LRU of per-batch results, keyed by the *identity and version* of the input tensors (the leaves of the
    arguments' pytree, with its structure).

    An entry is reused only when the very same tensor objects come back with an unchanged ``_version`` (so an
    in-place edit of the input invalidates it) in the same train/eval mode; an entry holds its input tensors, so
    their ids cannot be recycled while it lives. Non-tensor arguments and inputs that require grad or are wrapped
    by a ``torch.func`` transform are never cached.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: OrderedDict[tuple, tuple[list, dict]] = OrderedDict()

    def entry(self, args: tuple, kwargs: dict, training: bool) -> dict | None:
        """The results remembered for these inputs (an empty dict to fill if they are new), or None."""
        items, spec = tree_flatten((args, {k: kwargs[k] for k in sorted(kwargs)}))
        if not items or not all(isinstance(t, torch.Tensor) and not t.requires_grad
                                and not torch._C._functorch.is_functorch_wrapped_tensor(t) for t in items):
            return None
        key = (training, spec, tuple((id(t), t._version) for t in items))
        if key not in self._entries:
            self._entries[key] = (items, {})
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return self._entries[key][1]

    def clear(self):
        self._entries.clear()


def alpha_output(f: torch.Tensor, f0: torch.Tensor, alpha, c) -> torch.Tensor:
    """f^alpha = c f0 + alpha (f - f0)   (eq. 4 of George et al.; c = 0 is Geiger et al.'s centring).

    The one place this formula lives: :class:`AlphaScaled` uses it with numbers, :class:`Ensemble` with one alpha
    and c per member (tensors shaped to broadcast over the member axis).
    """
    if isinstance(c, (int, float)):  # one member: c is 1 (keep) or 0 (zero); no multiplication by a constant
        return f0 + alpha * (f - f0) if c else alpha * (f - f0)
    return c * f0 + alpha * (f - f0)


def cached_f0(cache: _InputCache, compute: Callable[[], torch.Tensor], args: tuple, kwargs: dict,
              training: bool) -> torch.Tensor:
    """f_theta0 on the inputs ``args``: ``compute()`` without gradients, remembered per input batch (see
    :class:`_InputCache`), so a full-batch step evaluates the network once, not twice."""
    entry = cache.entry(args, kwargs, training)
    if entry is not None and "f0" in entry:
        return entry["f0"]
    with torch.no_grad():
        f0 = compute()
    if entry is not None:
        entry["f0"] = f0
    return f0


def linear_output(cache: _InputCache, fn: Callable, params0, delta, args: tuple, kwargs: dict,
                  training: bool) -> torch.Tensor:
    """f_bar = fn(params0) + J_fn(params0) delta   (eq. 3 of George et al.), differentiable in delta.

    ``torch.func.jvp`` for a batch seen once; for a batch seen again (same tensor, unchanged) the linearisation
    at params0 is built once with ``torch.func.linearize`` and reused, so a full-batch step costs about 4/3 of a
    plain step instead of 2x. No Jacobian is materialised. Used by :class:`Linearized` and :class:`Ensemble`.
    """
    entry = cache.entry(args, kwargs, training)
    if entry is None or not entry.get("seen"):  # a batch not seen before: plain jvp
        f0, df = jvp(fn, (params0,), (delta,))
        if entry is not None:
            entry["seen"] = True
        return f0.detach() + df
    if "jvp_fn" not in entry:  # seen again: build the reusable linearisation once
        with warnings.catch_warnings():
            # make_fx's constant folding warns about an internal detail that does not affect results
            warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
            f0, entry["jvp_fn"] = linearize(fn, params0)
        entry["f0"] = f0.detach()
    return entry["f0"] + entry["jvp_fn"](delta)


class _Regime(nn.Module):
    """Shared machinery: holds ``model`` and a frozen copy of its initial parameters and buffers."""

    alpha: float

    def __init__(self, model: nn.Module, cache_size: int = 4):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected an nn.Module to wrap, got {type(model).__name__}")
        if isinstance(model, _Regime):  # AlphaScaled(AlphaScaled(m, a), b) scales by a b, its rate by 1 / b^2
            raise TypeError(f"{type(self).__name__} wraps a network, not another regime wrapper "
                            f"({type(model).__name__}): wrap its .model instead")
        self.model = model
        self._param_names = [n for n, _ in model.named_parameters()]
        self._buffer_names = [n for n, _ in model.named_buffers()]
        for n, p in model.named_parameters():
            self.register_buffer(_frozen_name(n), p.detach().clone())
        for n, b in model.named_buffers():
            self.register_buffer(_frozen_name("buffer." + n), b.detach().clone())
        self._cache = _InputCache(cache_size)

    # -- theta0 -------------------------------------------------------------------------------------
    def params0(self) -> dict[str, torch.Tensor]:
        """theta0 as ``{name: tensor}`` with the wrapped model's parameter names (detached, frozen)."""
        return {n: getattr(self, _frozen_name(n)) for n in self._param_names}

    def buffers0(self) -> dict[str, torch.Tensor]:
        """The wrapped model's buffers at wrap time (e.g. batch-norm statistics)."""
        return {n: getattr(self, _frozen_name("buffer." + n)) for n in self._buffer_names}

    def _fn(self, args, kwargs) -> Callable[[dict], torch.Tensor]:
        """theta -> f_theta(args) with the buffers at wrap time."""
        buffers0 = self.buffers0()
        return lambda p: functional_call(self.model, (p, buffers0), args, kwargs)

    def f0(self, *args, **kwargs) -> torch.Tensor:
        """f_theta0(x): the wrapped model at its initial parameters, without gradients (cached per batch)."""
        return self._frozen(lambda: cached_f0(self._cache, lambda: self._fn(args, kwargs)(self.params0()), args,
                                              kwargs, self.training))

    def _frozen(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """compute() under the state policy: running statistics frozen, no other buffer changed."""
        if not self._buffer_names:
            return compute()
        named = [*self.model.named_buffers(), *self.buffers0().items()]
        before = check_buffers(self.model, named)
        with frozen_stats(self.model):
            out = compute()
        check_buffers(self.model, named, before)
        return out

    def _apply(self, fn, *a, **k):  # .to(), .double(), .cuda(): cached outputs are stale afterwards
        self._cache.clear()
        return super()._apply(fn, *a, **k)


class AlphaScaled(_Regime):
    """f^alpha(x) = c * f_theta0(x) + alpha * (f_theta(x) - f_theta0(x))   (eq. 4 of George et al.).

    Args:
        model: any ``nn.Module``; its current parameters become theta0.
        alpha: scale factor > 0. alpha = 1 is standard training, alpha -> inf is lazy (kernel) training,
            alpha < 1 learns features even more. The trainer divides the learning rate by alpha^2.
        center: ``"keep"`` (c = 1, George et al.: output equals the model's at init) or ``"zero"``
            (c = 0, Geiger et al.: output is zero at init).

    Shapes: same inputs and output shape as ``model``. Gradients w.r.t. theta are alpha times the model's.
    State: batch norm's running statistics stay at their wrap-time values in train and eval mode (module docstring).
    f_theta0 is evaluated with ``functional_call`` under ``no_grad`` and cached per input batch (by tensor
    identity and version), so a full-batch step costs one forward/backward of the model.
    """

    def __init__(self, model: nn.Module, alpha: float, center: str = "keep", cache_size: int = 4):
        alpha = float(alpha)
        if not alpha > 0 or alpha == float("inf"):
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}; use Linearized(model) for alpha = inf")
        if center not in ("keep", "zero"):
            raise ValueError(f"center must be 'keep' or 'zero', got {center!r}")
        super().__init__(model, cache_size)
        self.alpha = alpha
        self.center = center

    @property
    def c(self) -> float:
        """The weight of f_theta0 in the output: 1 for ``center="keep"``, 0 for ``"zero"``."""
        return 1.0 if self.center == "keep" else 0.0

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.given_f0(self.f0(*args, **kwargs), *args, **kwargs)

    def given_f0(self, f0: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The output on these inputs from ``f0``, f_theta0 on them (:meth:`f0`, kept by a caller that evaluates the
        same inputs again, e.g. a probe split at every measurement)."""
        return self._frozen(lambda: alpha_output(self.model(*args, **kwargs), f0, self.alpha, self.c))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, center={self.center!r}"


class Linearized(_Regime):
    """The first-order Taylor model f_bar(x) = f_theta0(x) + J_theta0(x) (theta - theta0)   (eq. 3 of George et al.).

    It is the alpha -> inf limit of :class:`AlphaScaled` (Chizat et al. 2019, Thm 2.4) and trains like any
    module: its parameters are the wrapped model's, and gradients flow through J_theta0 (theta - theta0).
    See :func:`linear_output` for how the Jacobian-vector product is computed and reused.

    Its ``alpha`` is 1: in function space the linearized dynamics do not depend on alpha.

    Shapes: same inputs and output shape as ``model``. State: the Jacobian is taken with batch norm's running
    statistics at their wrap-time values, in train and eval mode (module docstring); attention uses its math kernels.
    """

    alpha = 1.0

    def delta(self) -> dict[str, torch.Tensor]:
        """theta - theta0 as ``{name: tensor}``, differentiable w.r.t. theta."""
        p0 = self.params0()
        return {n: p - p0[n] for n, p in self.model.named_parameters()}

    def forward(self, *args, **kwargs) -> torch.Tensor:
        with ad_kernels(self.model):
            return self._frozen(lambda: linear_output(self._cache, self._fn(args, kwargs), self.params0(),
                                                      self.delta(), args, kwargs, self.training))


def regime_alpha(model: nn.Module) -> float:
    """The alpha of a regime wrapper (1.0 for a plain model or ``Linearized``)."""
    return float(getattr(model, "alpha", 1.0)) if isinstance(model, _Regime) else 1.0
