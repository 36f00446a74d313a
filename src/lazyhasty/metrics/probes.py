"""Linearity probes for the trainer, computed on a fixed probe set (K0 computed once per run)."""

from __future__ import annotations

import weakref

import torch

from ..dynamics.probes import ProbeContext, Row
from .alignment import kernel_alignment, kernel_distance
from .linearity import parameter_distance, representation_alignment, sign_similarity
from .ntk import ntk_gram


class LinearityProbe:
    """Rows ``(split, "all", metric, value)`` at every measurement point:

    * ``ntk_alignment`` KA(K_t, K_0) and ``ntk_distance`` ||K_t - K_0||_F / ||K_0||_F on the probe inputs,
    * ``sign_similarity`` of ReLUs (skipped for networks without ReLU modules),
    * ``representation_alignment`` of the last linear layer's inputs,
    * ``param_distance`` per layer (group = layer name; the total is reported by ``parameter_distance_probe``).

    Args:
        x: probe inputs (n, ...), e.g. 500 training examples. split: the ``split`` column of the rows.
        outputs: NTK layout used for the alignment (``"trace"`` is cheaper; ``"full"`` sees every output pair).
    """

    def __init__(self, x: torch.Tensor, split: str = "probe", outputs: str = "trace", ntk: bool = True,
                 signs: bool = True, representation: bool = True, per_layer: bool = True,
                 method: str = "auto", block: int = 256):
        self.x, self.split, self.outputs = x, split, outputs
        self.ntk, self.signs, self.representation, self.per_layer = ntk, signs, representation, per_layer
        self.method, self.block = method, block
        self._K0: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def kernel0(self, ctx: ProbeContext) -> torch.Tensor:
        if ctx.model not in self._K0:
            self._K0[ctx.model] = ntk_gram(ctx.model, self.x, params=ctx.params0, outputs=self.outputs,
                                           method=self.method, block=self.block)
        return self._K0[ctx.model]

    def __call__(self, ctx: ProbeContext) -> list[Row]:
        rows: list[Row] = []
        if self.ntk:
            K0 = self.kernel0(ctx)
            K = ntk_gram(ctx.model, self.x, outputs=self.outputs, method=self.method, block=self.block)
            rows += [(self.split, "all", "ntk_alignment", kernel_alignment(K, K0)),
                     (self.split, "all", "ntk_distance", kernel_distance(K, K0))]
        if self.signs:
            try:
                rows.append((self.split, "all", "sign_similarity", sign_similarity(ctx.model, ctx.params0, self.x)))
            except ValueError:
                self.signs = False  # no ReLU modules: nothing to measure
        if self.representation:
            rows.append((self.split, "all", "representation_alignment",
                         representation_alignment(ctx.model, ctx.params0, self.x)))
        if self.per_layer:
            dist = parameter_distance(ctx.model, ctx.params0)
            rows += [("-", layer, "param_distance", v) for layer, v in dist.items() if layer != "total"]
        return rows
