"""fig5_lr: the learning-rate control of George et al. (Fig. 5) on the fig2_noise setup.

alpha = 1 at several learning rates (and, as a yardstick, alpha = 100 at the middle rate), for each seed. If
the learning rate alone moved examples between groups the way alpha does, the noisy-example loss at equal clean
loss would differ between rates; the paper finds the trajectories coincide. Measured: for every pair of rates,
the mean absolute difference of the noisy loss at equal clean loss, against the same quantity between
alpha = 1 and alpha = 100 (mean +- std over seeds). Claim held when the largest learning-rate spread is smaller
than the alpha gap in every seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from lazyhasty import at_equal_progress, load_runs
from lazyhasty.plotting import equal_progress_figure, save_figure

from . import Experiment, write_claims
from ._difficulty import load_fmnist, mean_spread, noisy_split, run_regimes
from .fig2_noise import Config as NoiseConfig


@dataclass(frozen=True)
class Config(NoiseConfig):
    lrs: tuple[float, ...] = (0.04, 0.02, 0.01)  # alpha = 1 rates (all converge within the budget)
    linearity: bool = False

    def __post_init__(self):
        super().__post_init__()
        if len(self.lrs) < 2 or min(self.lrs) <= 0:
            raise ValueError(f"lrs must be at least two rates > 0, got {self.lrs}")


PRESETS = {"quick": Config(max_epochs=30),
           # the paper's rates on CIFAR-10 / ResNet18 (needs data_root and a GPU)
           "paper": Config(dataset="cifar10", n_train=50_000, n_test=10_000, arch="resnet18", width=64,
                           lrs=(0.01, 0.003, 1e-4), max_epochs=200, device="cuda")}


def main(cfg: Config, out: Path) -> dict:
    train_all, test = load_fmnist(cfg.data_root, cfg.n_train, cfg.n_test, cfg.data_seed, cfg.device, cfg.dataset)
    train, _ = noisy_split(cfg, train_all, cfg.data_seed)
    mid = sorted(cfg.lrs)[len(cfg.lrs) // 2]
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for lr in cfg.lrs:
            print(f"[fig5_lr] seed {seed}: alpha = 1, lr = {lr:g}", flush=True)
            run_regimes(cfg, train, {"test": test}, out, seed, alphas=(1.0,), lr=lr,
                        tag=f"lr={lr:g}-")
        print(f"[fig5_lr] seed {seed}: alpha = 100, lr = {mid:g} (yardstick)", flush=True)
        run_regimes(cfg, train, {"test": test}, out, seed, alphas=(100.0,), lr=mid,
                    tag=f"lr={mid:g}-")
    return summarize(cfg, out, mid)


def _noisy_curves(m, runs):
    t = at_equal_progress(m[m.run_id.isin(runs)], progress=("train", "clean", "loss"), grid=40)
    t = t[(t.split == "train") & (t.group == "noisy") & (t.metric == "loss")]
    return t.pivot_table(index="progress", columns="run_id", values="value").dropna()


def summarize(cfg: Config, out: Path, mid: float) -> dict:
    m = load_runs(out / "runs")
    lr_spread, alpha_gap = [], []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        ids = {lr: f"lr={lr:g}-alpha=1-seed={seed}" for lr in cfg.lrs}
        piv = _noisy_curves(m, list(ids.values()))
        lr_spread.append(max(float((piv[ids[a]] - piv[ids[b]]).abs().mean()) for a, b in
                             itertools.combinations(cfg.lrs, 2)))
        lin = f"lr={mid:g}-alpha=100-seed={seed}"
        piv2 = _noisy_curves(m, [ids[mid], lin])
        alpha_gap.append(float((piv2[ids[mid]] - piv2[lin]).abs().mean()))
    wins = sum(lr < a for lr, a in zip(lr_spread, alpha_gap))
    held = bool(wins == len(lr_spread))  # in every seed, not only on average
    lines = [f"fig5_lr: alpha = 1 at lr in {cfg.lrs}, alpha = 100 at lr {mid:g}, {cfg.seeds} seeds",
             "largest difference between learning rates of the noisy loss at equal clean loss: "
             + mean_spread(lr_spread),
             f"difference between alpha = 1 and alpha = 100 (lr {mid:g}): {mean_spread(alpha_gap)}",
             "per seed (lr spread vs alpha gap): " + ", ".join(f"{lr:.3f} vs {a:.3f}" for lr, a in
                                                                 zip(lr_spread, alpha_gap)),
             f"claim (the learning rate moves the trajectories less than alpha does, in every seed): "
             f"{'held' if held else 'NOT held'} ({wins} of {len(lr_spread)} seeds)"]
    text = "\n".join(lines) + "\n"
    styles = {f"lr={lr:g}-alpha=1": ls for lr, ls in zip(cfg.lrs, ("-", "-.", ":", (0, (1, 3))))}
    styles[f"lr={mid:g}-alpha=100"] = "--"
    fig = equal_progress_figure(m, [1.0, 100.0], progress=("train", "clean", "loss"), styles=styles,
                                groups=[("train", "clean"), ("train", "noisy"), ("test", "all")],
                                title="learning-rate control: alpha = 1 at several rates (one line style each), "
                                      "alpha = 100 dashed", xlabel="clean-example training loss")
    save_figure(fig, out / "fig5_lr")
    claims = {"lr_spread": lr_spread, "alpha_gap": alpha_gap, "claim_held": held, "seeds_held": wins}
    write_claims(out, text, claims)
    return claims


EXPERIMENT = Experiment("fig5_lr", "learning-rate control on Fashion-MNIST label noise (Fig. 5)", Config, PRESETS,
                        main)
