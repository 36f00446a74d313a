"""fig5_lr: the learning-rate control of George et al. (Fig. 5) on the fig2_noise set-up.

Is the non-linear regime's preference for clean examples an effect of alpha, or only of a smaller effective step
(alpha scales the parameter step by 1/alpha)? alpha = 1 trains at the base learning rate and at smaller ones (the
paper: base 0.01 and {0.003, 1e-4, 1e-6}), and alpha = 100 at its own rate, from the same initialisation and
minibatch order, for each seed, and compared as in fig2_noise: the noisy examples' training loss at equal
clean-example training loss. If the rate alone moved examples between groups the way alpha does, the alpha = 1
trajectories would spread apart; the paper finds they coincide.

Every run trains until its clean-example training loss reaches ``target`` (the progress axis itself); the
budgets are ``max_epochs`` x base rate / rate for alpha = 1 (a 5x smaller rate needs 5x the steps) and
``lazy_epochs`` for alpha = 100. All runs go through one ``compare_regimes``.

Claims: ``stays_linear`` (alpha = 1 at the base rate vs alpha = 100) and ``lr_not_alpha``: in every seed, the
largest mean absolute difference of the noisy loss at equal clean loss between two alpha = 1 rates
(``Comparison.gaps``) is smaller than the same difference between alpha = 1 and alpha = 100 (and than with the
alpha = 100 run at half its rate: ``rate_check``).

The quick preset departs from the paper to fit a CPU: Fashion-MNIST (2000 examples) and an MLP instead of
CIFAR-10 and ResNet18, rates base 0.05 and {0.02, 0.01} (ratios 1, 0.4, 0.2 instead of down to 1e-4: a rate of
1e-6 x base needs 1e6 x the steps), and the loss instead of the paper's accuracy: the runs stop at clean loss
0.5 (fig2_noise's target), where the noisy examples' accuracy is still ~0 in every run (measured: the gaps between
any two runs were ~0.01 at clean accuracy 0.8) and cannot tell the runs apart, while their loss can.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

import lazyhasty as lh

from . import Experiment
from ._difficulty import compare, load_fmnist, mean_spread, model_factory, noisy_split, regimes
from .fig2_noise import Config as NoiseConfig


@dataclass(frozen=True)
class Config(NoiseConfig):
    lrs: tuple[float, ...] = (0.05, 0.02, 0.01)  # alpha = 1 rates, the base (largest) first (paper: 0.01 ... 1e-6)
    alphas: tuple[float, ...] = (1.0, 100.0)

    def __post_init__(self):
        super().__post_init__()
        if len(self.lrs) < 2 or min(self.lrs) <= 0 or max(self.lrs) != self.lrs[0] or len(set(self.lrs)) != len(
                self.lrs):
            raise ValueError(f"lrs must be at least two distinct rates > 0, the base (largest) first; got {self.lrs}")
        if len(self.alphas) != 2 or self.alphas[0] != 1:
            raise ValueError(f"alphas must be (1, lazy alpha), got {self.alphas}")


PRESETS = {"quick": Config(),
           # the paper's rates on CIFAR-10 / ResNet18, 200 epochs for alpha = 1 (needs data_root and a GPU)
           "paper": Config(dataset="cifar10", n_train=50_000, n_test=10_000, arch="resnet18", width=64,
                           lrs=(0.01, 0.003, 1e-4, 1e-6), lr=0.01, lazy_lr=0.01, max_epochs=200, lazy_epochs=2500,
                           target=0.01, device="cuda")}
PROGRESS = ("train", "clean", "loss")


def rate_name(lr: float) -> str:
    return f"lr={lr:g},alpha=1"


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    train_all, test = load_fmnist(cfg.data_root, cfg.n_train, cfg.n_test, cfg.data_seed, cfg.device, cfg.dataset)
    train, _ = noisy_split(cfg, train_all, cfg.data_seed)
    base = cfg.lrs[0]
    spe = -(-len(train) // cfg.batch_size)
    regs = [lh.Regime(1.0, lh.SGD(lr, cfg.momentum, cfg.batch_size), lh.Stop(max_steps=int(cfg.max_epochs * base / lr
                                                                                            * spe)), rate_name(lr))
            for lr in cfg.lrs] + regimes(cfg, len(train))[1:]
    print(f"[fig5_lr] alpha = 1 at lr {', '.join(f'{lr:g}' for lr in cfg.lrs)}, alpha = {cfg.alphas[-1]:g} at "
          f"{cfg.lazy_lr:g}; {cfg.seeds} seeds, until clean loss {cfg.target:g}", flush=True)
    factory = model_factory(cfg.arch, cfg.width, 10, tuple(train.x.shape[1:]))
    comp = compare(cfg, factory, train, {"test": test}, PROGRESS, output, regs=regs, feature=rate_name(base))
    def verdict(c: lh.Comparison) -> tuple[bool | None, dict]:
        """In every seed, the largest mean |difference| of the noisy loss between two alpha = 1 rates is smaller than
        the one between alpha = 1 (base rate) and the lazy run."""
        spread = np.max([c.gaps(rate_name(a), rate_name(b), "train", "noisy", absolute=True)[0]
                         for a, b in itertools.combinations(cfg.lrs, 2)], axis=0)
        gap, levels = c.gaps(c.feature, c.lazy, "train", "noisy", absolute=True)
        return (bool(np.all(spread < gap)) if len(levels) else None), dict(
            lr_spread=spread.tolist(), gap=gap.tolist(), levels=len(levels), seeds_held=int(np.sum(spread < gap)),
            progress=f"{'/'.join(PROGRESS)} from {levels[0]:.3g} to {levels[-1]:.3g}" if len(levels) else "",
            note="" if len(levels) else "no clean-loss level shared by every run")

    lazy = comp.lazy
    claims = [lh.claims.stays_linear_claim(comp.stays_linear(), comp.feature, lazy),
              comp.judged("lr_not_alpha", f"At equal clean-example training loss, the noisy examples' loss of alpha = "
                          f"1 moves less between learning rates {', '.join(f'{lr:g}' for lr in cfg.lrs)} than between "
                          f"alpha = 1 and {lazy} (in every seed): the effect is alpha's, not the rate's",
                          "George et al. 2022, Fig. 5 (section 3.2.2)", verdict)]
    spread, gap = (claims[1]["numbers"][k] for k in ("lr_spread", "gap"))
    lines = [f"fig5_lr: alpha = 1 at lr in {cfg.lrs}, {lazy} at lr {cfg.lazy_lr:g}, {cfg.seeds} seeds; noisy "
             "training loss at equal clean training loss", comp.summary(),
             "largest mean |difference| between learning rates: " + mean_spread(spread),
             f"mean |difference| between alpha = 1 and {lazy}: {mean_spread(gap)}"]
    return lh.claims.write(out, "fig5_lr", claims, "\n".join(lines), out / "comparison.png")


EXPERIMENT = Experiment("fig5_lr", "learning-rate control on Fashion-MNIST label noise (Fig. 5)", Config, PRESETS,
                        main)
