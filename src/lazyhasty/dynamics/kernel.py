"""The kernel regime in function space: gradient descent on the outputs with the tangent kernel at initialisation.

A linearised model f(x) = f0(x) + J0(x)(theta - theta0) trained by gradient descent, theta <- theta - eta
J0(X)^T g with g = dL/df(X) (L the mean loss over the n training examples), moves its outputs on any input by

    f(x) <- f(x) - eta Theta0(x, X) g,        Theta0(x, X) = J0(x) J0(X)^T  (the empirical NTK at theta0),

so the whole trajectory needs only Theta0 on (train, train) and (split, train): P parameters never appear, which
pays whenever P >> n. With ``kernel=`` any other kernel (e.g. :func:`lazyhasty.theory.infinite_ntk`) gives that
kernel's prediction. For ``AlphaScaled(model, alpha)`` the kernel is alpha^2 Theta0 and the step eta / alpha^2,
as in :func:`lazyhasty.train`; the prediction does not depend on alpha.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..data.groups import Split
from ..metrics.ntk import ntk_gram
from ..models.regimes import frozen_stats, regime_alpha
from .losses import Loss, get_loss
from .probes import Probe, Schedule, loss_probe
from .steppers import GD
from .train import RecordSink, Stop, TrainResult, train


def _full(K: torch.Tensor, n1: int, n2: int, C: int) -> torch.Tensor:
    """A kernel as (n1, C, n2, C): given so, or (n1, n2) for a kernel shared by independent outputs."""
    if K.shape == (n1, n2):
        return torch.einsum("ij,cd->icjd", K, torch.eye(C, dtype=K.dtype, device=K.device))
    if K.shape == (n1, C, n2, C):
        return K
    raise ValueError(f"kernel returned shape {tuple(K.shape)}; expected ({n1}, {n2}) or ({n1}, {C}, {n2}, {C})")


def _check_kernel(K: list[torch.Tensor]) -> None:
    """A kernel given to :func:`kernel_regime` must be one: finite on every split, and on the training set
    symmetric and positive semi-definite (to rounding: 1e4 ulp of its largest entry; N ulp for the eigenvalues)."""
    if not all(bool(torch.isfinite(k).all()) for k in K):
        raise ValueError("kernel returned non-finite values")
    N = K[0].shape[0] * K[0].shape[1]
    G = K[0].reshape(N, N).double()
    ulp = torch.finfo(K[0].dtype).eps * float(G.abs().max())
    if ulp == 0:  # the zero kernel: nothing moves, and it is one
        return
    psd = bool(torch.linalg.cholesky_ex((G + G.T) / 2 + 10 * N * ulp * torch.eye(N, dtype=G.dtype))[1] == 0)
    if float((G - G.T).abs().max()) > 1e4 * ulp or not psd:
        raise ValueError("kernel(train, train) is not symmetric positive semi-definite: it is no tangent kernel, and "
                         "gradient descent on it would not be the kernel regime")


class _KernelMachine(nn.Module):
    """The kernel regime as a model the engine trains: its inputs are indices into a bank of every split's
    examples (the n training examples first), its outputs f(x) = f0(x) + K(x, X) gamma, (m, ...), with K the
    wrapper's kernel (M, C, n, C) and gamma (n, C) the dual coefficients (0 at the start), and ``alpha`` the
    wrapper's, so that the engine's step is lr / alpha^2 (:func:`lazyhasty.train`).

    Its gradient is taken in function space: d out_i / d gamma is the selection of row i for a training example
    (the value K gamma, the gradient of gamma_i - gamma_i, which is 0), so GD on gamma is
    gamma <- gamma - (lr / alpha^2) dL/df(X), i.e. f <- f - (lr / alpha^2) K(., X) dL/df(X): the kernel regime's
    update, with every status, probe, stop rule and signal of the one engine. Only ``kernel_regime`` builds it."""

    def __init__(self, f0: torch.Tensor, K: torch.Tensor, shape: tuple[int, ...], alpha: float):
        super().__init__()
        n, C = K.shape[2], K.shape[3]
        self.register_buffer("f0", f0)  # (M, C)
        self.register_buffer("K", K)  # (M, C, n, C)
        self.gamma = nn.Parameter(torch.zeros(n, C, dtype=K.dtype, device=K.device))
        self.shape, self.alpha, self.n = shape, alpha, n

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.ndim != 1:
            raise TypeError("the kernel regime's model takes example indices, not inputs: a probe of kernel_regime "
                            "reads ctx.outputs(split), not the network")
        m, a = len(idx), int(idx[0]) if len(idx) else 0
        if (a + m <= self.n or a >= self.n) and torch.equal(idx, torch.arange(a, a + m, device=idx.device)):
            rows, own = slice(a, a + m), self.gamma[a:a + m] if a + m <= self.n else None  # a split's block: views
        else:
            rows, own = idx, self.gamma[idx.clamp(max=self.n - 1)] * (idx < self.n)[:, None]
        out = self.f0[rows] + torch.einsum("icjd,jd->ic", self.K[rows], self.gamma.detach())  # (m, C)
        if own is not None:  # training rows: the value K gamma, the gradient of gamma_i
            out = out + (own - own.detach())
        return out.reshape(m, *self.shape)


def kernel_regime(model: nn.Module, train_set: Split, *, loss: Loss | str, lr: float, steps: int,
                  splits: dict[str, Split] | None = None,
                  kernel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  probes: Sequence[Probe] = (loss_probe,), schedule: Schedule | None = None,
                  run_id: str | None = None, record: RecordSink | None = None,
                  progress: bool | None = None) -> TrainResult:
    """Gradient descent in function space, f <- f - (lr / alpha^2) Theta0 df(mean loss), for ``steps`` steps.

    Args:
        model: the network at theta0 (a plain module or a regime wrapper): its outputs at theta0 start the
            trajectory, and its empirical NTK is the kernel unless ``kernel`` is given.
        train_set: the n training examples; also probed as split ``"train"``.
        loss: any loss of the package (not only MSE).
        lr: eta, as for ``GD(lr)``; theory time t = steps * lr.
        kernel: ``kernel(x1, x2)`` -> (n1, n2) (the same kernel for every output) or (n1, C, n2, C): the kernel of
            the network inside the regime wrapper, without its alpha (e.g. ``infinite_ntk``, or ``ntk_gram`` of the
            unwrapped network). The update uses the wrapper's kernel, alpha^2 times it, with the rate lr / alpha^2,
            so alpha cancels, exactly as with the default, ``ntk_gram(model, x1, x2, outputs="full")`` (the
            wrapper's kernel).
        probes, schedule, run_id, record, progress: as for :func:`lazyhasty.train`, whose engine runs the steps
            (probes see ``ctx.outputs(split)``; the parameters are the dual coefficients, not the network's).

    Returns:
        A :class:`TrainResult`, its tables like ``train``'s, so that ``train(Linearized(model), ..., GD(lr))``
        and this give the same numbers (tested to 1e-8 in float64).
    """
    if not (math.isfinite(lr) and lr > 0) or int(steps) != steps or steps < 0:
        raise ValueError(f"lr must be a finite number > 0 and steps an integer >= 0, got lr={lr}, steps={steps}")
    if kernel is not None and not callable(kernel):
        raise TypeError(f"kernel must be a function (x1, x2) -> (n1, n2) or (n1, C, n2, C), not {kernel.__class__}")
    alpha = regime_alpha(model)
    gram = (lambda x1, x2: ntk_gram(model, x1, x2, outputs="full")) if kernel is None else \
        (lambda x1, x2: alpha**2 * kernel(x1, x2))  # the wrapper's kernel
    splits = {"train": train_set, **(splits or {})}
    with torch.no_grad(), frozen_stats(model):  # batch norm on its running statistics, as in ntk_gram
        f0 = {name: model(s.x) for name, s in splits.items()}  # (m, ...) outputs at theta0
    shape = tuple(f0["train"].shape[1:])
    C, n = math.prod(shape), len(train_set)
    K = [_full(gram(s.x, train_set.x).detach(), len(s), n, C) for s in splits.values()]  # (m, C, n, C) each
    if kernel is not None:
        _check_kernel(K)
    bank = _KernelMachine(torch.cat([f.reshape(len(f), C) for f in f0.values()]),
                          torch.cat(K).to(f0["train"].dtype), shape, alpha)
    start, index = 0, {}
    for name, s in splits.items():  # each split's examples as indices into the bank, with its targets and groups
        index[name] = Split(torch.arange(start, start + len(s), device=f0["train"].device), s.y, s.groups)
        start += len(s)
    return train(bank, index["train"], loss=get_loss(loss), stepper=GD(lr), stop=Stop(max_steps=int(steps)),
                 splits={k: v for k, v in index.items() if k != "train"}, probes=probes, schedule=schedule,
                 run_id=run_id, record=record, progress=progress, compile=False)
