"""fig5_lr: the learning-rate control of George et al. (Fig. 5) on the fig2_noise set-up.

Is the non-linear regime's preference for clean examples an effect of alpha, or only of a smaller effective step
(alpha scales the parameter step by 1/alpha)? alpha = 1 trains at the base learning rate and at smaller ones (the
paper: base 0.01 and {0.003, 1e-4, 1e-6}), and alpha = 100 at the base rate, from the same initialisation and
minibatch order, for each seed. The paper's measure is accuracy: at equal clean-example training accuracy, the
noisy examples' training accuracy (how many wrong labels are fitted). If the rate alone moved examples between
groups the way alpha does, the alpha = 1 trajectories would spread apart; the paper finds they coincide.

Every run trains until its training loss reaches ``loss_target`` (its own progress target); the budgets are
``max_epochs`` x base rate / rate for alpha = 1 (a 10x smaller rate needs 10x the steps) and ``max_epochs`` x
``lazy_epochs`` for alpha = 100 (the paper trains alpha = 1 for 200 epochs and alpha = 100 for 2500: 12.5x). A run
that misses its target is reported, and the claim is then "not measured".

Claims: ``stays_linear`` (alpha = 1 vs alpha = 100 at the base rate) and ``lr_not_alpha``: in every seed, the
largest mean absolute difference of the noisy accuracy at equal clean accuracy between two alpha = 1 rates is
smaller than the same difference between alpha = 1 and alpha = 100 at the base rate (over the clean-accuracy range
every compared run covers).

The quick preset departs from the paper to fit a CPU: Fashion-MNIST (2000 examples) and an MLP instead of
CIFAR-10 and ResNet18, rates base 0.02 and {0.006, 0.002} (ratios 1, 0.3, 0.1 instead of down to 1e-4).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import lazyhasty as lh
from lazyhasty.plotting import equal_progress_figure, save_figure

from . import Experiment, write_claims
from ._difficulty import load_fmnist, mean_spread, noisy_split, progress_curves, run_regimes
from .fig2_noise import Config as NoiseConfig

PROGRESS = ("train", "clean", "accuracy")


@dataclass(frozen=True)
class Config(NoiseConfig):
    lrs: tuple[float, ...] = (0.02, 0.006, 0.002)  # alpha = 1 rates: the base rate (alpha = 100's too) first
    lazy_epochs: float = 12.5  # alpha = 100's budget in units of max_epochs (the paper's 2500 / 200)
    n_train: int = 2_000
    n_test: int = 1_000
    alphas: tuple[float, ...] = (1.0, 100.0)

    def __post_init__(self):
        super().__post_init__()
        if len(self.lrs) < 2 or min(self.lrs) <= 0 or max(self.lrs) != self.lrs[0]:
            raise ValueError(f"lrs must be at least two rates > 0, the base (largest) first; got {self.lrs}")
        if self.lazy_epochs < 1:
            raise ValueError("lazy_epochs must be >= 1")


PRESETS = {"quick": Config(max_epochs=40),
           # the paper's rates on CIFAR-10 / ResNet18, 200 epochs for alpha = 1 (needs data_root and a GPU)
           "paper": Config(dataset="cifar10", n_train=50_000, n_test=10_000, arch="resnet18", width=64,
                           lrs=(0.01, 0.003, 1e-4, 1e-6), max_epochs=200, loss_target=0.01, device="cuda")}


def run_id(lr: float, alpha: float, seed: int) -> str:
    return f"lr={lr:g}-alpha={alpha:g}-seed={seed}"


def main(cfg: Config, out: Path) -> dict:
    train_all, test = load_fmnist(cfg.data_root, cfg.n_train, cfg.n_test, cfg.data_seed, cfg.device, cfg.dataset)
    train, _ = noisy_split(cfg, train_all, cfg.data_seed)
    base, lazy = cfg.lrs[0], cfg.alphas[-1]
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for lr in cfg.lrs:  # alpha = 1 at every rate; alpha = 100 at the base rate, in the same ensemble
            alphas = [1.0, lazy] if lr == base else [1.0]
            budget = cfg.max_epochs * base / lr * (cfg.lazy_epochs if lr == base else 1)
            print(f"[fig5_lr] seed {seed}, lr {lr:g}: alpha {', '.join(f'{a:g}' for a in alphas)} until loss < "
                  f"{cfg.loss_target:g} (budget {budget:g} epochs)", flush=True)
            run_regimes(cfg, train, {"test": test}, out, seed, alphas=alphas, lr=lr, tag=f"lr={lr:g}-",
                        max_epochs=budget)
    return summarize(cfg, out)


def summarize(cfg: Config, out: Path) -> dict:
    m = lh.load_runs(out / "runs")
    base, lazy = cfg.lrs[0], cfg.alphas[-1]
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    lin = lh.linearity_verdict(m, {s: (run_id(base, 1.0, s), run_id(base, lazy, s)) for s in seeds})
    missed = [rid for rid in m.run_id.unique()
              if not json.loads((out / "runs" / rid / "status.json").read_text()).get("converged")]
    lr_spread, alpha_gap = [], []
    for s in seeds:
        ids = {lr: run_id(lr, 1.0, s) for lr in cfg.lrs}
        piv = progress_curves(m, [*ids.values(), run_id(base, lazy, s)], PROGRESS, ("train", "noisy", "accuracy"),
                              decreasing=False)  # noisy training accuracy at equal clean training accuracy
        lr_spread.append(max(float((piv[ids[a]] - piv[ids[b]]).abs().mean()) for a, b in
                             itertools.combinations(cfg.lrs, 2)) if len(piv) else float("nan"))
        alpha_gap.append(float((piv[ids[base]] - piv[run_id(base, lazy, s)]).abs().mean()) if len(piv)
                         else float("nan"))
    wins = sum(a < b for a, b in zip(lr_spread, alpha_gap))
    held = None if missed or any(v != v for v in lr_spread + alpha_gap) else wins == len(seeds)
    note = (f"runs that missed the loss target within their budget: {', '.join(sorted(missed))}" if missed else
            "" if held is not None else "no clean-accuracy range shared by every run")
    claims = [lh.stays_linear_claim(lin, "alpha=1", f"alpha={lazy:g}"),
              lh.claim("lr_not_alpha", f"At equal clean-example training accuracy, the noisy examples' accuracy of "
                       f"alpha = 1 moves less between learning rates {', '.join(f'{lr:g}' for lr in cfg.lrs)} than "
                       f"between alpha = 1 and alpha = {lazy:g} (in every seed): the effect is alpha's, not the "
                       "rate's", "George et al. 2022, Fig. 5 (section 3.2.2)", lh.gate(held, lin),
                       lr_spread=lr_spread, alpha_gap=alpha_gap, seeds_held=wins, note=note)]
    lines = [f"fig5_lr: alpha = 1 at lr in {cfg.lrs}, alpha = {lazy:g} at lr {base:g}, {cfg.seeds} seeds; noisy "
             "training accuracy at equal clean training accuracy", lh.linearity_line(lin),
             "largest difference between learning rates: " + mean_spread(lr_spread),
             f"difference between alpha = 1 and alpha = {lazy:g}: {mean_spread(alpha_gap)}"]
    if note:
        lines.append(note)
    styles = {f"lr={lr:g}-alpha=1": ls for lr, ls in zip(cfg.lrs, ("-", "-.", ":", (0, (1, 3))))}
    styles[f"lr={base:g}-alpha={lazy:g}"] = "--"
    fig = equal_progress_figure(m, [1.0, lazy], progress=PROGRESS, decreasing=False, styles=styles,
                                groups=[("train", "clean"), ("train", "noisy"), ("test", "all")],
                                title=f"learning-rate control: alpha = 1 at several rates (one line style each), "
                                      f"alpha = {lazy:g} dashed", xlabel="clean-example training accuracy")
    paths = save_figure(fig, out / "fig5_lr")
    return write_claims(out, "fig5_lr", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig5_lr", "learning-rate control on Fashion-MNIST label noise (Fig. 5)", Config, PRESETS,
                        main)
