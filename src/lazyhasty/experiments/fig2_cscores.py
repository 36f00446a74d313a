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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from lazyhasty import (
    SGD,
    Schedule,
    Split,
    Stop,
    atomic_write,
    bootstrap_interval,
    claim,
    compare_regimes,
    estimate_cscores,
    gate,
    learning_speed,
    missed_note,
    stays_linear_claim,
)
from lazyhasty.data import FASHION_CLASSES, cifar10, cscores, fashion_mnist, quantile_groups

from . import Experiment, write_claims
from ._difficulty import RegimeConfig, load_fmnist, model_factory


@dataclass(frozen=True)
class Config(RegimeConfig):
    dataset: str = "fashion_mnist"  # fashion_mnist (offline) or cifar10 (your local copy)
    cscore_file: str | None = None  # published C-scores (in the dataset's original order) instead of estimating
    n_pool: int = 6_000  # examples whose C-scores are estimated
    held_out_fraction: float = 0.2  # part of the pool kept out of the regime comparison's training
    ratios: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # subset ratios of the estimator
    runs_per_ratio: int = 3
    estimator_epochs: int = 8
    loss_target: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.held_out_fraction < 1 or self.n_pool < 200:
            raise ValueError("held_out_fraction must be in (0, 1) and n_pool >= 200")


PRESETS = {
    "quick": Config(),
    # the paper's setting: CIFAR-10, ResNet18, the published scores (cifar10-cscores-orig-order.npz); GPU
    "paper": Config(dataset="cifar10", n_pool=50_000, cscore_file="cifar10-cscores-orig-order.npz",
                    arch="resnet18", width=64, max_epochs=200, lr=0.01, device="cuda"),
}


def main(cfg: Config, out: Path) -> dict:
    pool, _ = load_fmnist(cfg.data_root, cfg.n_pool, 10, cfg.data_seed, cfg.device, cfg.dataset)
    factory = model_factory(cfg.arch, cfg.width, 10, tuple(pool.x.shape[1:]))
    if cfg.cscore_file:  # published scores, checked against the dataset's labels in its original order
        full = (fashion_mnist(cfg.data_root, "train") if cfg.dataset == "fashion_mnist" else cifar10(cfg.data_root)).y
        full = full.numpy()
        published = cscores(cfg.cscore_file, labels=full)
        est = {"scores": published[pool.index], "per_ratio": np.full((1, len(pool)), np.nan)}
        print(f"[fig2_cscores] using published C-scores from {cfg.cscore_file}", flush=True)
    else:
        print(f"[fig2_cscores] estimating C-scores of {len(pool)} examples: {len(cfg.ratios)} ratios x "
              f"{cfg.runs_per_ratio} runs, {cfg.estimator_epochs} epochs", flush=True)
        est = estimate_cscores(pool, factory, cfg.ratios, cfg.runs_per_ratio, cfg.estimator_epochs,
                               seed=cfg.data_seed, lr=cfg.lr, momentum=cfg.momentum, batch_size=cfg.batch_size,
                               progress=True)
    speed = learning_speed(pool, factory, epochs=max(2, cfg.estimator_epochs // 2), seeds=(0, 1), lr=cfg.lr,
                           momentum=cfg.momentum, batch_size=cfg.batch_size, progress=True)
    scores = np.nan_to_num(est["scores"], nan=float(np.nanmean(est["scores"])))

    def write(path):
        with open(path, "wb") as f:
            np.savez_compressed(f, scores=est["scores"], per_ratio=est["per_ratio"], speed=speed,
                                labels=pool.y.cpu().numpy())

    atomic_write(out / "cscores.npz", write)
    n_tr = int(round(len(pool) * (1 - cfg.held_out_fraction)))
    tr_idx, ho_idx = torch.arange(n_tr), torch.arange(n_tr, len(pool))
    train = Split(pool.x[tr_idx], pool.y[tr_idx], quantile_groups(scores[:n_tr]))
    held = Split(pool.x[ho_idx], pool.y[ho_idx], quantile_groups(scores[n_tr:]))
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    print(f"[fig2_cscores] seeds {list(seeds)}: regimes {cfg.alphas} on {n_tr} examples", flush=True)
    comp = compare_regimes(lambda: factory().to(cfg.device), train, splits={"held_out": held}, alphas=cfg.alphas,
                           loss="cross_entropy", stepper=SGD(cfg.lr, cfg.momentum, cfg.batch_size), seeds=seeds,
                           stop=Stop(max_steps=cfg.max_epochs * -(-n_tr // cfg.batch_size), loss_below=cfg.loss_target),
                           probe_size=cfg.probe_size, linearity=cfg.linearity,
                           schedule=Schedule(milestone_ratio=cfg.milestone_ratio, points_per_decade=5), out=out)
    return summarize(cfg, out, comp, scores, speed, pool.y.cpu().numpy())


def summarize(cfg: Config, out: Path, comp, scores, speed, labels) -> dict:
    v = comp.verdict.set_index(["split", "group"])
    lin = comp.stays_linear()
    lines = [f"fig2_cscores: {cfg.dataset}, {len(scores)} examples with "
             f"{'published' if cfg.cscore_file else 'estimated'} C-scores, {cfg.arch}, {cfg.seeds} seeds"]
    sp = spearmanr(scores, speed)
    rho, pvalue = float(sp.statistic), float(sp.pvalue)
    per_class = {FASHION_CLASSES[c] if cfg.dataset == "fashion_mnist" else str(c): float(np.mean(scores[labels == c]))
                 for c in range(10)}
    lines += [f"C-score: mean {np.mean(scores):.3f}, rank correlation with learning speed {rho:+.3f}",
              "mean C-score per class: " + ", ".join(f"{k} {x:.2f}" for k, x in per_class.items()), comp.summary()]
    claims = [stays_linear_claim(lin, comp.settings["feature"], comp.settings["lazy"])]
    for split in ("train", "held_out"):
        hard, easy = v.loc[(split, "decile_1")], v.loc[(split, "decile_10")]
        measured = "not measured" not in (hard.ahead, easy.ahead)
        diff = np.asarray(hard.per_seed) - np.asarray(easy.per_seed) if measured else np.array([])
        lo, hi = bootstrap_interval(diff) if measured else (float("nan"), float("nan"))
        held = None if not measured or len(diff) < 2 else bool(lo > 0)
        claims.append(claim(
            "hard_later" if split == "train" else "hard_later@held_out",
            f"At equal mean training loss, loss(lowest C-score decile) - loss(highest decile) on the {split} examples "
            f"is wider for {comp.settings['feature']} than for {comp.settings['lazy']}: the non-linear regime learns "
            "the hard examples later", "George et al. 2022, Fig. 2 (top), section 3.2.1",
            gate(held, lin, comp.missed()),
            difference=float(diff.mean()) if len(diff) else float("nan"), interval=[lo, hi],
            per_seed=[float(d) for d in diff], levels=hard.levels,
            note=missed_note(comp.missed()) or ("" if measured else hard.note or easy.note)))
    claims.append(claim("cscore_tracks_speed", "The estimated C-score rank-correlates with how fast a standard run "
                        "learns each example (Spearman > 0, p < 0.05)",
                        "Jiang et al. 2021, eq. 7; George et al. 2022, appendix F", bool(rho > 0 and pvalue < 0.05),
                        spearman=rho, p_value=pvalue, mean_cscore_per_class=per_class))
    return write_claims(out, "fig2_cscores", claims, "\n".join(lines), out / "comparison.png")


EXPERIMENT = Experiment("fig2_cscores", "Fashion-MNIST C-score deciles (estimated): per-decile loss at equal "
                        "progress (Fig. 2 top)", Config, PRESETS, main)
