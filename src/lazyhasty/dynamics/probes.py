"""When to measure (log-spaced steps and equal-progress milestones) and what to measure (probes).

A probe is any callable ``probe(ctx) -> iterable of (split, group, metric, value)``, called once per run (one
member of an ensemble) at every measurement point. The engine turns the rows into the long table
``run_id, step, t, milestone, split, group, metric, value``. Built in: :func:`loss_probe`,
:func:`parameter_distance_probe` and :class:`LinearityProbe` (George et al., sec. 2 "Linearity measures").
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.groups import Split
from ..data.inputs import chunks
from ..metrics.alignment import kernel_alignment, kernel_distance
from ..metrics.linearity import features, same_signs, theta0_of
from ..metrics.ntk import ntk_gram
from .losses import Loss

Row = tuple[str, str, str, float]
Probe = Callable[["ProbeContext"], Iterable[Row]]


@dataclass(frozen=True)
class Schedule:
    """Measurement points.

    Args:
        points_per_decade: log-spaced steps: 0 and every distinct round(10^(k / points_per_decade)).
        milestone_ratio: r in (0, 1). Milestone k is the first step at which the (smoothed) mean training loss
            falls below L0 r^k, L0 the loss at initialisation (George et al.'s "equal progress").
            ``None`` disables milestones.
        smoothing: EMA factor for the training loss used by milestones and the loss-threshold stop;
            ``None`` picks 0 for full-batch steppers and 0.9 for minibatch ones (noisy batch losses).
        every: also measure every ``every`` steps (0: never).
        max_milestones: cap on k (r^k below float resolution is meaningless).
        levels: absolute loss levels (decreasing) used as milestones instead of L0 r^k: milestone k (1-based)
            is the first step with loss < levels[k - 1] (e.g. the thresholds of George et al.'s Fig. 1).
    """

    points_per_decade: int = 10
    milestone_ratio: float | None = 0.96
    smoothing: float | None = None
    every: int = 0
    max_milestones: int = 1000
    levels: tuple[float, ...] | None = None

    def milestones(self, loss0: float) -> Milestones | None:
        if self.levels is not None:
            return Milestones(loss0, levels=self.levels)
        if self.milestone_ratio is None:
            return None
        return Milestones(loss0, self.milestone_ratio, self.max_milestones)

    def __post_init__(self):
        if self.milestone_ratio is not None and not 0 < self.milestone_ratio < 1:
            raise ValueError(f"milestone_ratio must be in (0, 1), got {self.milestone_ratio}")
        if self.smoothing is not None and not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        for name in ("points_per_decade", "every", "max_milestones"):
            if not (0 <= getattr(self, name) < math.inf and getattr(self, name) == int(getattr(self, name))):
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)}")
        if self.levels is not None and not (len(self.levels) and all(map(math.isfinite, self.levels)) and all(
                a > b for a, b in zip(self.levels, self.levels[1:]))):
            raise ValueError(f"levels must be finite loss levels, strictly decreasing, got {self.levels}")

    def log_step(self, step: int) -> bool:
        if step == 0 or (self.every and step % self.every == 0):
            return True
        if self.points_per_decade <= 0:
            return False
        k = math.log10(step) * self.points_per_decade
        lo, hi = math.floor(k), math.ceil(k)
        return step in (round(10 ** (lo / self.points_per_decade)), round(10 ** (hi / self.points_per_decade)))


class Milestones:
    """Tracks equal-progress milestones: k is reached at the first update with loss < L0 * r^k
    (or, with explicit ``levels``, with loss < levels[k - 1])."""

    def __init__(self, loss0: float, ratio: float = 0.96, max_k: int = 1000, levels=None):
        self.loss0, self.ratio, self.max_k = float(loss0), float(ratio), int(max_k)
        self.levels = None if levels is None else [float(v) for v in levels]
        if self.levels is not None:
            self.max_k = len(self.levels)
        self.reached = 0  # milestone 0 is the initial point

    def threshold(self, k: int) -> float:
        if self.levels is not None:
            return self.levels[k - 1]
        return self.loss0 * self.ratio**k

    def update(self, loss: float) -> int | None:
        """The highest milestone newly crossed by ``loss``, or None."""
        k = self.reached
        while k < self.max_k and loss < self.threshold(k + 1):
            k += 1
        if k > self.reached:
            self.reached = k
            return k
        return None


@dataclass
class ProbeContext:
    """What a probe sees at a measurement point of one run.

    ``model`` is the run's module (for an ensemble member, the module it was built from, holding its current
    parameters), ``params0`` its theta0 named as ``model.named_parameters()`` names them. ``outputs(name)``
    gives the model's outputs on a split, (n, ...), computed once per point (by ``source``, which the engine
    shares between the members of an ensemble) or else by calling the model.
    """

    model: nn.Module
    splits: dict[str, Split]
    loss: Loss
    step: int
    t: float
    params0: dict[str, torch.Tensor]
    milestone: int | None = None
    run_id: str = "run"
    source: Callable[[str], torch.Tensor] | None = None
    batch_size: int = 4096
    computed: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def outputs(self, name: str) -> torch.Tensor:
        if name not in self.computed:
            if self.source is not None:
                self.computed[name] = self.source(name)
            else:
                with torch.no_grad():
                    x = self.splits[name].x
                    self.computed[name] = torch.cat([self.model(xb) for xb in chunks(x, self.batch_size)])
        return self.computed[name]


def loss_probe(ctx: ProbeContext) -> list[Row]:
    """Mean loss, accuracy and margin per split and per group (one run: the batched body on a batch of one)."""
    return _loss_probe_batched(BatchContext([0], ctx.splits, ctx.loss, lambda name: ctx.outputs(name)[None], [], []))[0]


def _group_means(split: Split) -> tuple[list[str], torch.Tensor]:
    """("all", groups...) and the (G + 1, n) float64 matrix whose rows average over each of them."""
    names, rows = ["all"], [torch.full((len(split),), 1.0 / len(split), dtype=torch.float64)]
    for g, idx in split.groups.items():
        if idx.numel():
            w = torch.zeros(len(split), dtype=torch.float64)
            w[idx.cpu()] = 1.0 / idx.numel()
            names.append(g)
            rows.append(w)
    return names, torch.stack(rows)


def _loss_probe_batched(batch: BatchContext) -> list[list[Row]]:
    """:func:`loss_probe` for several members at once: one loss evaluation and one matrix product per split and
    metric instead of one per member and group (one per member for per-member training sets, whose groups are each
    member's own)."""
    T = len(batch.members)
    rows: list[list[Row]] = [[] for _ in range(T)]
    for name, split in batch.splits.items():
        out = batch.outputs(name)  # (T, n, ...)
        n = out.shape[1]
        flat, y = out.flatten(0, 1), batch.targets(name).flatten(0, 1)
        w = batch.weights if name == "train" else None  # (T, n): each member's own training examples
        blocks = [(list(range(T)), *batch.group_means(name, split))] if not isinstance(split, OwnSets) else \
            [([t], *batch.group_means(name, split.sets[k], k)) for t, k in enumerate(batch.members)]
        for metric, per in (("loss", batch.loss(flat, y)), ("accuracy", batch.loss.correct(flat, y)),
                            ("margin", batch.loss.margin(flat, y))):
            per = per.reshape(T, n).double()
            for ts, groups, W in blocks:
                W = W.to(out.device)
                if w is None:
                    means = (per[ts] @ W.T).tolist()  # (t, G + 1)
                else:  # over the member's own examples: sum_i w_i l_i 1[i in g] / sum_i w_i 1[i in g]
                    mask, ww = (W > 0).double(), w[ts].double()
                    means = (((per[ts] * ww) @ mask.T) / (ww @ mask.T)).tolist()
                for t, m in zip(ts, means):
                    rows[t] += [(name, g, metric, v) for g, v in zip(groups, m)]
    return rows


def _distance_probe_batched(batch: BatchContext) -> list[list[Row]]:
    """:func:`parameter_distance_probe` for several members at once, from the stacked parameters. p - p0 is exact
    (Sterbenz) or rounded once relative to the difference itself; squares are summed in float64. ||theta0||^2 is
    computed once per member and run."""
    def sq(ts) -> list[float]:  # [(T, ...)] -> T squared norms of the concatenated rows
        return torch.linalg.vector_norm(torch.cat([t.flatten(1) for t in ts], 1), dim=1, dtype=torch.float64
                                        ).square().tolist()

    norms0 = batch.cache.setdefault(("theta0", "sq"), {})  # member -> ||theta0||^2 (split names are strings)
    todo = [pos for pos, k in enumerate(batch.members) if k not in norms0]
    if todo:
        ix = torch.tensor(todo, device=batch.params0[0].device)
        norms0.update(zip([batch.members[pos] for pos in todo], sq([p0[ix] for p0 in batch.params0])))
    num = sq([p - p0 for p, p0 in zip(batch.params, batch.params0)])
    return [[("-", "-", "param_distance", math.sqrt(a / norms0[k]) if norms0[k] else math.nan)]
            for a, k in zip(num, batch.members)]


def parameter_distance_probe(ctx: ProbeContext) -> list[Row]:
    """||theta - theta0|| / ||theta0|| over all parameters (split and group ``"-"``; one run: the batched body on a
    batch of one)."""
    now = dict(ctx.model.named_parameters())
    missing = [k for k in ctx.params0 if k not in now]
    if missing:
        raise KeyError(f"parameter {missing[0]!r} of theta0 is missing from theta")
    return _distance_probe_batched(BatchContext([0], ctx.splits, ctx.loss, ctx.outputs,
                                                [now[k].detach()[None] for k in ctx.params0],
                                                [p0[None] for p0 in ctx.params0.values()]))[0]


@dataclass
class BatchContext:
    """What a batched probe (``probe.batched(batch) -> one list of rows per member``) sees: several members of an
    ensemble at one measurement, with their outputs stacked (``outputs(name)``: (T, n, ...)), their parameters
    and theta0 stacked ((T, *shape) each, in the same order), and the splits and loss."""

    members: list[int]
    splits: dict[str, Split]
    loss: Loss
    outputs: Callable[[str], torch.Tensor]
    params: list[torch.Tensor]
    params0: list[torch.Tensor]
    cache: dict = field(default_factory=dict, repr=False)
    weights: torch.Tensor | None = None  # (T, n) example weights of the training split (``train(weights=)``)

    def group_means(self, name: str, split: Split, member: int | None = None) -> tuple[list[str], torch.Tensor]:
        """:func:`_group_means` of a split (of a member's own training set), computed once per engine."""
        key = name if member is None else (name, member)
        if key not in self.cache:
            self.cache[key] = _group_means(split)
        return self.cache[key]

    def targets(self, name: str) -> torch.Tensor:
        """Each member's targets on a split, (T, n, ...): its own for per-member training sets (:class:`OwnSets`)."""
        split = self.splits[name]
        if isinstance(split, OwnSets):
            return torch.stack([split.sets[k].y for k in self.members])
        return split.y.expand(len(self.members), *split.y.shape)


@dataclass(frozen=True)
class OwnSets:
    """The ``"train"`` split a batched probe sees when each member of an ensemble trains on its own set
    (``train(ensemble, [set_0, ..., set_E-1])``): member k's set is ``sets[k]`` (one length and group names).
    Its inputs, targets and groups differ per member, so they are read per member (``sets[k]``, ``batch.targets``,
    ``batch.outputs``), never as one split's."""

    sets: tuple[Split, ...]

    def __len__(self) -> int:
        return len(self.sets[0])

    def __getattr__(self, name):
        if name in ("x", "y", "groups"):
            raise TypeError(f"each member trains on its own set: read member k's {name} from sets[k] (or "
                            "batch.targets / batch.outputs), not from one split")
        raise AttributeError(name)


loss_probe.batched = _loss_probe_batched  # the engine calls these for the members measured at one point
parameter_distance_probe.batched = _distance_probe_batched


class LinearityProbe:
    """How far a run is from its linearisation, on a fixed probe set (what it compares with at theta0, K0
    included, computed once per run: :meth:`at_init`). Rows
    ``(split, "all", metric, value)`` at every measurement point:

    * ``ntk_alignment`` KA(K_t, K_0) (eq. 5 of George et al.) and ``ntk_distance`` ||K_t - K_0||_F / ||K_0||_F
      (Geiger et al.'s kernel change) on the probe inputs,
    * ``sign_similarity`` of ReLUs (skipped for networks without ReLU modules),
    * ``representation_alignment`` of the last linear layer's inputs (skipped for networks without ``nn.Linear``),

    Args:
        x: probe inputs (n, ...), e.g. 500 training examples. split: the ``split`` column of the rows.
        outputs: NTK layout used for the alignment (``"trace"`` is cheaper; ``"full"`` sees every output pair).
    """

    def __init__(self, x: torch.Tensor, split: str = "probe", outputs: str = "trace", ntk: bool = True,
                 signs: bool = True, representation: bool = True,
                 method: str = "auto", block: int = 256):
        self.x, self.split, self.outputs = x, split, outputs
        self.ntk, self.signs, self.representation = ntk, signs, representation
        self.method, self.block = method, block
        self._init: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> at_init(...)

    def at_init(self, ctx: ProbeContext) -> dict:
        """What the measures compare with, at the run's theta0: K0, the ReLU signs and the representation's Gram
        matrix, computed once per model and theta0 (a model trained again from where it stopped starts from a new
        theta0, and they are computed again)."""
        saved = self._init.get(ctx.model)
        if saved is None or saved["params0"].keys() != ctx.params0.keys() or not all(
                torch.equal(v, ctx.params0[k]) for k, v in saved["params0"].items()):
            p0 = {k: v.detach().clone() for k, v in ctx.params0.items()}
            signs, R0 = features(ctx.model, theta0_of(ctx.model, p0), self.x) if self.signs or self.representation \
                else ([], None)
            saved = self._init[ctx.model] = {"params0": p0, "signs": signs, "gram": None if R0 is None else R0 @ R0.T,
                                             "K0": ntk_gram(ctx.model, self.x, params=p0, outputs=self.outputs,
                                                            method=self.method, block=self.block) if self.ntk else None}
        return saved

    def __call__(self, ctx: ProbeContext) -> list[Row]:
        init, rows = self.at_init(ctx), []
        if self.ntk:
            K = ntk_gram(ctx.model, self.x, outputs=self.outputs, method=self.method, block=self.block)
            rows += [(self.split, "all", "ntk_alignment", kernel_alignment(K, init["K0"])),
                     (self.split, "all", "ntk_distance", kernel_distance(K, init["K0"]))]
        signs, R = features(ctx.model, None, self.x) if self.signs or self.representation else ([], None)
        if self.signs and signs:  # none for a network without ReLU modules
            rows.append((self.split, "all", "sign_similarity", same_signs(signs, init["signs"])))
        if self.representation and R is not None:  # none without an nn.Linear (e.g. the diagonal quadratic model)
            rows.append((self.split, "all", "representation_alignment", kernel_alignment(R @ R.T, init["gram"])))
        return rows


DEFAULT_PROBES: tuple[Probe, ...] = (loss_probe, parameter_distance_probe)
