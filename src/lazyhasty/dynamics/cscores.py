"""Example difficulty by training: the hold-out C-score estimator and a learning-speed proxy.

C-score (Jiang et al. 2021; eq. 7 of George et al.): C(x, y) = E_r E_{D ~ data \\ (x, y), |D| = r n} [P(f(x; D) = y)],
estimated by training ``runs_per_ratio`` models on random subsets of each size ratio r and averaging, for each
example, its correctness (or the probability of its label) under the models that did *not* train on it; the
per-ratio estimates are then averaged over ratios. All models of all ratios train as one vectorised
ensemble (per-member example weights select each member's subset).

Learning speed (Jiang et al.'s cheap proxy): the mean over training checkpoints and seeds of each training
example's correctness, from models trained on all the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.groups import Split
from ..data.inputs import chunks, first
from ..models.ensemble import Ensemble
from .checkpoint import Checkpointing
from .probes import Schedule
from .steppers import SGD
from .train import Stop, seeded, train


def _epoch_steps(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def estimate_cscores(split: Split, model_fn: Callable[[], nn.Module], ratios: Sequence[float] = tuple(
        np.round(np.arange(0.1, 1.0, 0.1), 2)), runs_per_ratio: int = 3, epochs: int = 10, seed: int = 0,
        lr: float = 0.05, momentum: float = 0.9, batch_size: int = 128, score: str = "correct",
        progress: bool | None = None, checkpoint: Checkpointing | None = None) -> dict:
    """Hold-out C-scores of every example of ``split`` (cross-entropy, integer labels).

    Args:
        split: examples x (n, ...) and labels y (n,).
        model_fn: builds one model (member k is seeded with ``seed * 1000 + k``).
        ratios: subset sizes as fractions of n. runs_per_ratio: models per ratio.
        epochs: SGD epochs over the full set (each member only learns from its subset's examples in a batch).
        score: ``"correct"`` (0/1) or ``"prob"`` (softmax probability of the label).
        checkpoint: as for :func:`lazyhasty.train` (an experiment's ``out.checkpoints``).
    Returns:
        dict with ``scores`` (n,), ``per_ratio`` (len(ratios), n) (nan where an example was never held out),
        ``held_out_counts`` (len(ratios), n).
    """
    if score not in ("correct", "prob"):
        raise ValueError(f"score must be 'correct' or 'prob', got {score!r}")
    if not ratios or min(ratios) <= 0 or max(ratios) >= 1:
        raise ValueError("ratios must lie in (0, 1)")
    n = len(split)
    rng = np.random.default_rng(seed)
    members = [(r, k) for r in ratios for k in range(runs_per_ratio)]
    weights = torch.zeros(len(members), n, dtype=first(split.x).dtype)
    for m, (r, _) in enumerate(members):
        weights[m, rng.choice(n, size=max(1, int(round(r * n))), replace=False)] = 1.0
    ens = Ensemble([seeded(model_fn, seed * 1000 + m) for m in range(len(members))]).to(first(split.x).device)
    steps = epochs * _epoch_steps(n, batch_size)
    train(ens, split, loss="cross_entropy", stepper=SGD(lr, momentum=momentum, batch_size=batch_size),
          stop=Stop(max_steps=steps), probes=(), schedule=Schedule(points_per_decade=0, milestone_ratio=None),
          data_seed=seed, weights=weights.to(first(split.x).device), progress=progress, checkpoint=checkpoint)
    ens.eval()
    with torch.no_grad():
        out = torch.cat([ens(xb) for xb in chunks(split.x, 2048)], dim=1)  # (E, n, C)
    if score == "correct":
        val = (out.argmax(-1) == split.y).double()
    else:
        val = torch.softmax(out.double(), -1).gather(-1, split.y.long().expand(len(members), n)[..., None])[..., 0]
    val = val.cpu().numpy()
    held = (weights == 0).cpu().numpy()
    per_ratio = np.full((len(ratios), n), np.nan)
    counts = np.zeros((len(ratios), n), dtype=int)
    for i, r in enumerate(ratios):
        rows = [m for m, (rr, _) in enumerate(members) if rr == r]
        c = held[rows].sum(0)
        counts[i] = c
        with np.errstate(invalid="ignore"):
            per_ratio[i] = np.where(c > 0, (val[rows] * held[rows]).sum(0) / np.maximum(c, 1), np.nan)
    with warnings.catch_warnings():  # an example never held out at any ratio gets nan, not a made-up score
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = np.nanmean(per_ratio, axis=0)
    return {"scores": scores, "per_ratio": per_ratio, "held_out_counts": counts, "ratios": list(ratios)}


def learning_speed(split: Split, model_fn: Callable[[], nn.Module], epochs: int = 5, seeds: Sequence[int] = (0, 1),
                   lr: float = 0.05, momentum: float = 0.9, batch_size: int = 128,
                   progress: bool | None = None, checkpoint: Checkpointing | None = None) -> np.ndarray:
    """Mean correctness of each training example over per-epoch checkpoints and seeds, shape (n,).

    The correctness at each epoch end is a row of the run's table (group: the example's index), not a value kept
    aside: a call resumed from its checkpoint (``lazyhasty run --resume``) has every epoch's rows, measured before
    the interruption or after (``checkpoint``: as for :func:`lazyhasty.train`)."""
    n = len(split)

    def correctness(ctx):  # (split, example index, "correct", 0 or 1) at every checkpoint after the first
        if not ctx.step:
            return []
        c = ctx.loss.correct(ctx.outputs("train"), ctx.splits["train"].y).double().cpu().tolist()  # (n,)
        return [("train", str(i), "correct", v) for i, v in enumerate(c)]

    ens = Ensemble([seeded(model_fn, s) for s in seeds]).to(first(split.x).device)
    per_epoch = _epoch_steps(n, batch_size)
    results = train(ens, split, loss="cross_entropy", stepper=SGD(lr, momentum=momentum, batch_size=batch_size),
                    stop=Stop(max_steps=epochs * per_epoch), probes=(correctness,),
                    schedule=Schedule(points_per_decade=0, milestone_ratio=None, every=per_epoch),
                    run_id=[f"seed{s}" for s in seeds], progress=progress, checkpoint=checkpoint)
    seen = []
    for r in results:  # rows in the order measured: (checkpoints, n) per run
        m = r.metrics[r.metrics.metric == "correct"]
        if len(m) != epochs * n or not (m.group.to_numpy().reshape(epochs, n) == np.arange(n).astype(str)).all():
            raise RuntimeError(f"learning_speed: run {m.run_id.iloc[0] if len(m) else '?'} holds {len(m)} "
                               f"correctness rows, not {epochs} epochs x {n} examples")
        seen.append(m.value.to_numpy().reshape(epochs, n).mean(axis=0))
    return np.mean(seen, axis=0)
