"""fig2_cscores: example difficulty by C-score on Fashion-MNIST, alpha = 1 vs 100, at equal training loss.

George et al., section 3.2.1 / Fig. 2 top, offline: C-scores are *estimated* (the paper loaded precomputed CIFAR
scores; none are published for Fashion-MNIST) with the hold-out estimator of Jiang et al. (eq. 7) on a pool of
examples, using vectorised ensembles of the same architecture. The pool is then split into a training part and
a held-out part, both cut into C-score deciles; both regimes train on the training part from the same
initialisation and minibatch order, for each seed. The learning-speed proxy and its rank correlation with the
C-scores, and the mean C-score per class, are reported.

Claim checked: at equal mean training loss, the loss gap between the hardest (lowest C-score) and easiest
deciles is wider for alpha = 1 than for alpha = 100 (mean over the shared progress range; per seed and mean +-
std over seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from lazyhasty import Split, at_equal_progress, atomic_write, estimate_cscores, learning_speed, load_runs
from lazyhasty.data import FASHION_CLASSES, cifar10, cscores, fashion_mnist, quantile_groups
from lazyhasty.plotting import equal_progress_figure, save_figure

from . import Experiment, write_claims
from ._difficulty import RegimeConfig, load_fmnist, mean_spread, model_factory, run_regimes


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
    linearity: bool = False  # fig2_noise reports them; off here to keep the quick preset quick

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
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        print(f"[fig2_cscores] seed {seed}: regimes {cfg.alphas} on {n_tr} examples", flush=True)
        run_regimes(cfg, train, {"held_out": held}, out, seed)
    return summarize(cfg, out, scores, speed, pool.y.cpu().numpy())


def decile_gap(m, run_id: str, split: str) -> float:
    t = at_equal_progress(m[m.run_id == run_id], progress=("train", "all", "loss"), grid=40)
    t = t[(t.split == split) & (t.metric == "loss")]
    piv = t.pivot_table(index="progress", columns="group", values="value")
    return float((piv["decile_1"] - piv["decile_10"]).mean())


def summarize(cfg: Config, out: Path, scores, speed, labels) -> dict:
    m = load_runs(out / "runs")
    a_nl, a_lin = cfg.alphas[0], cfg.alphas[-1]
    gaps = {split: {a: [] for a in (a_nl, a_lin)} for split in ("train", "held_out")}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for split in gaps:
            for a in (a_nl, a_lin):
                gaps[split][a].append(decile_gap(m, f"alpha={a:g}-seed={seed}", split))
    diff = {s: [x - y for x, y in zip(g[a_nl], g[a_lin])] for s, g in gaps.items()}
    held = bool(all(d > 0 for d in diff["train"]))  # nan (no comparable range) counts as not held
    per_class = {FASHION_CLASSES[c]: float(np.mean(scores[labels == c])) for c in range(10)}
    rho = float(spearmanr(scores, speed).statistic)
    lines = [f"fig2_cscores: Fashion-MNIST, {len(scores)} examples with estimated C-scores, {cfg.arch}, alpha "
             f"{a_nl:g} vs {a_lin:g}, {cfg.seeds} seeds",
             f"C-score: mean {np.mean(scores):.3f}, rank correlation with learning speed {rho:+.3f}",
             "mean C-score per class: " + ", ".join(f"{k} {v:.2f}" for k, v in per_class.items())]
    for split in ("train", "held_out"):
        lines.append(f"{split}: loss(decile 1) - loss(decile 10) at equal mean training loss: "
                     + "; ".join(f"alpha={a:g} {mean_spread(v)}" for a, v in gaps[split].items())
                     + f"; difference {mean_spread(diff[split])}")
    lines.append("claim (hard-easy gap wider for the non-linear regime on the training set, every seed): "
                 + ("held" if held else "NOT held"))
    text = "\n".join(lines) + "\n"
    groups = [("train", f"decile_{k}") for k in (1, 4, 7, 10)] + [("held_out", "decile_1"), ("held_out", "decile_10")]
    fig = equal_progress_figure(m, cfg.alphas, progress=("train", "all", "loss"), groups=groups,
                                title=f"Fashion-MNIST C-score deciles: solid alpha={a_nl:g}, dashed alpha={a_lin:g}",
                                xlabel="mean training loss")
    save_figure(fig, out / "fig2_cscores")
    claims = {"decile_gap": {s: {f"alpha={a:g}": v for a, v in g.items()} for s, g in gaps.items()},
              "gap_difference": diff, "claim_held": held, "cscore_speed_spearman": rho,
              "mean_cscore_per_class": per_class}
    write_claims(out, text, claims)
    return claims


EXPERIMENT = Experiment("fig2_cscores", "Fashion-MNIST C-score deciles (estimated): per-decile loss at equal "
                        "progress (Fig. 2 top)", Config, PRESETS, main)
