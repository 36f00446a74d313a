"""fig2_cscores: example difficulty by C-score on Fashion-MNIST, alpha = 1 vs 100, at equal training loss.

George et al., section 3.2.1 / Fig. 2 top, offline: C-scores are *estimated* (the paper loaded precomputed CIFAR
scores; none are published for Fashion-MNIST) with the hold-out estimator of Jiang et al. (eq. 7) on a pool of
examples, using vectorised ensembles of the same architecture. The pool is then split into a training part and
a held-out part, both cut into C-score deciles; both regimes train on the training part from the same
initialisation and minibatch order, for each seed. The learning-speed proxy and its rank correlation with the
C-scores, and the mean C-score per class, are reported.

Both regimes run through ``compare_regimes`` with the linearity metrics, each to the training-loss target on its
own (``max_epochs`` is a budget, and a run that misses the target is reported as such). Claims: ``stays_linear``
(the regimes are what they say), and ``hard_later``: at equal mean training loss, the loss gap between the hardest
(lowest C-score) and the easiest decile is wider for alpha = 1 than for alpha = 100 (per seed, the mean over the
loss levels both regimes reached in every seed; held when the bootstrap interval over seeds lies above 0; not
measured without a shared level or without ``stays_linear``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import lazyhasty as lh
from lazyhasty import Split, estimate_cscores, learning_speed
from lazyhasty.claims import bootstrap_interval
from lazyhasty.data import FASHION_CLASSES, cifar10, cscores, fashion_mnist, quantile_groups
from lazyhasty.runs import atomic_write

from . import Experiment
from ._difficulty import RegimeConfig, compare, load_fmnist, model_factory


@dataclass(frozen=True)
class Config(RegimeConfig):
    dataset: str = "fashion_mnist"  # fashion_mnist (offline) or cifar10 (your local copy)
    cscore_file: str | None = None  # published C-scores (in the dataset's original order) instead of estimating
    n_pool: int = 2_500  # examples whose C-scores are estimated (paper: the 50 000 of CIFAR-10, published scores)
    held_out_fraction: float = 0.2  # part of the pool kept out of the regime comparison's training
    ratios: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # subset ratios of the estimator
    runs_per_ratio: int = 3
    estimator_epochs: int = 8
    target: float = 0.3  # mean training loss every run trains to (the paper's progress axis; paper: ~0)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.held_out_fraction < 1 or self.n_pool < 200:
            raise ValueError("held_out_fraction must be in (0, 1) and n_pool >= 200")


PRESETS = {
    "quick": Config(),
    # the paper's setting: CIFAR-10, ResNet18, the published scores (cifar10-cscores-orig-order.npz); GPU
    "paper": Config(dataset="cifar10", n_pool=50_000, cscore_file="cifar10-cscores-orig-order.npz",
                    arch="resnet18", width=64, max_epochs=200, lazy_epochs=1000, lr=0.01, lazy_lr=0.01, target=0.01,
                    device="cuda"),
}


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    t0 = time.perf_counter()
    pool, _ = load_fmnist(cfg.data_root, cfg.n_pool, 10, cfg.data_seed, cfg.device, cfg.dataset)
    factory = model_factory(cfg.arch, cfg.width, 10, tuple(pool.x.shape[1:]))
    if cfg.cscore_file:  # published scores, checked against the dataset's labels in its original order
        full = (fashion_mnist(cfg.data_root, "train") if cfg.dataset == "fashion_mnist" else cifar10(cfg.data_root)).y
        full = full.numpy()
        published = cscores(cfg.cscore_file, labels=full)
        est = {"scores": published[pool.info["index"]], "per_ratio": np.full((1, len(pool)), np.nan)}
        print(f"[fig2_cscores] using published C-scores from {cfg.cscore_file}", flush=True)
    else:
        print(f"[fig2_cscores] estimating C-scores of {len(pool)} examples: {len(cfg.ratios)} ratios x "
              f"{cfg.runs_per_ratio} runs, {cfg.estimator_epochs} epochs", flush=True)
        est = estimate_cscores(pool, factory, cfg.ratios, cfg.runs_per_ratio, cfg.estimator_epochs,
                               seed=cfg.data_seed, lr=cfg.lr, momentum=cfg.momentum, batch_size=cfg.batch_size,
                               progress=True, checkpoint=output.checkpoints)
    speed = learning_speed(pool, factory, epochs=max(2, cfg.estimator_epochs // 2), seeds=(0, 1), lr=cfg.lr,
                           momentum=cfg.momentum, batch_size=cfg.batch_size, progress=True,
                           checkpoint=output.checkpoints)
    scores = np.nan_to_num(est["scores"], nan=float(np.nanmean(est["scores"])))
    print(f"[fig2_cscores] C-scores and learning speed in {time.perf_counter() - t0:.0f} s", flush=True)

    def write(path):
        with open(path, "wb") as f:
            np.savez_compressed(f, scores=est["scores"], per_ratio=est["per_ratio"], speed=speed,
                                labels=pool.y.cpu().numpy())

    atomic_write(out / "cscores.npz", write)
    n_tr = int(round(len(pool) * (1 - cfg.held_out_fraction)))
    tr_idx, ho_idx = torch.arange(n_tr), torch.arange(n_tr, len(pool))
    train = Split(pool.x[tr_idx], pool.y[tr_idx], quantile_groups(scores[:n_tr]))
    held = Split(pool.x[ho_idx], pool.y[ho_idx], quantile_groups(scores[n_tr:]))
    print(f"[fig2_cscores] {cfg.seeds} seeds: regimes {cfg.alphas} on {n_tr} examples, until mean training loss "
          f"{cfg.target:g}", flush=True)
    comp = compare(cfg, factory, train, {"held_out": held}, ("train", "all", "loss"), output)
    return summarize(cfg, out, comp, scores, speed, pool.y.cpu().numpy())


def spread_gap(comp: lh.Comparison, lazy: str, split: str) -> tuple[np.ndarray, list]:
    """Per seed, [loss(decile 1) - loss(decile 10)] of the feature run minus the same of ``lazy``, averaged over
    the levels both reached in every seed: > 0 when the feature regime leaves the hard examples further behind."""
    hard, levels = comp.gaps(comp.feature, lazy, split, "decile_1")
    easy, _ = comp.gaps(comp.feature, lazy, split, "decile_10")
    return hard - easy, levels


def summarize(cfg: Config, out: Path, comp: lh.Comparison, scores, speed, labels) -> dict:
    lin = comp.stays_linear()
    lines = [f"fig2_cscores: {cfg.dataset}, {len(scores)} examples with "
             f"{'published' if cfg.cscore_file else 'estimated'} C-scores, {cfg.arch}, {cfg.seeds} seeds"]
    sp = spearmanr(scores, speed)
    rho, pvalue = float(sp.statistic), float(sp.pvalue)
    per_class = {FASHION_CLASSES[c] if cfg.dataset == "fashion_mnist" else str(c): float(np.mean(scores[labels == c]))
                 for c in range(10)}
    lines += [f"C-score: mean {np.mean(scores):.3f}, rank correlation with learning speed {rho:+.3f}",
              "mean C-score per class: " + ", ".join(f"{k} {x:.2f}" for k, x in per_class.items()), comp.summary()]
    claims = [lh.claims.stays_linear_claim(lin, comp.feature, comp.lazy)]
    for split in ("train", "held_out"):
        def verdict(c: lh.Comparison, split=split) -> tuple[bool | None, dict]:
            diff, levels = spread_gap(c, c.lazy, split)
            lo, hi = bootstrap_interval(diff)
            return (bool(lo > 0) if len(levels) and len(diff) > 1 else None), dict(
                gap=float(diff.mean()) if len(diff) else float("nan"), interval=[lo, hi],
                per_seed=[float(d) for d in diff], levels=len(levels),
                progress=f"train/all/loss from {levels[0]:.3g} to {levels[-1]:.3g}" if len(levels) else "")

        c = comp.judged("hard_later" if split == "train" else "hard_later@held_out",
                        f"At equal mean training loss, loss(lowest C-score decile) - loss(highest decile) on the "
                        f"{split} examples is wider for {comp.feature} than for {comp.lazy}: the non-linear regime "
                        "learns the hard examples later", "George et al. 2022, Fig. 2 (top), section 3.2.1", verdict)
        n = c["numbers"]
        lines.append(f"{split}: [loss(decile 1) - loss(decile 10)] of {comp.feature} minus {comp.lazy}: "
                     f"{n['gap']:+.4f} [{n['interval'][0]:+.4f}, {n['interval'][1]:+.4f}] over {n['levels']} levels")
        claims.append(c)
    claims.append(lh.claims.claim("cscore_tracks_speed", "The estimated C-score rank-correlates with how fast a "
                                  "standard run learns each example (Spearman > 0, p < 0.05)",
                                  "Jiang et al. 2021, eq. 7; George et al. 2022, appendix F",
                                  bool(rho > 0 and pvalue < 0.05), spearman=rho, p_value=pvalue,
                                  mean_cscore_per_class=per_class))
    return lh.claims.write(out, "fig2_cscores", claims, "\n".join(lines), out / "comparison.png")


EXPERIMENT = Experiment("fig2_cscores", "Fashion-MNIST C-score deciles (estimated): per-decile loss at equal "
                        "progress (Fig. 2 top)", Config, PRESETS, main)
