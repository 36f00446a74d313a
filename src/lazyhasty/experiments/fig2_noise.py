"""fig2_noise: label noise on Fashion-MNIST, alpha = 1 vs 100 forked, compared at equal clean-example loss.

George et al., section 3.2.2 / Fig. 2 bottom, on Fashion-MNIST (offline, CPU) instead of CIFAR-10: 15% of a
training subset gets a wrong label (uniformly among the other classes); an MLP trains with SGD + momentum at
alpha in {1, 100} from the same initialisation and the same minibatch order, for each seed (initialisation and
batch order both vary with the seed). Progress is the clean examples' training loss (the paper's x-axis), and
every run trains until it reaches ``target`` on that same measure. Tracked: loss / accuracy on clean and noisy
training examples, test loss / accuracy, and the linearity metrics on 200 training examples.

Claim ``noisy_later`` (``Comparison.answer``): at equal clean-example loss the noisy examples' loss is higher for
alpha = 1 than for alpha = 100 (the non-linear regime fits the noisy labels later): per seed the gap averaged over
the clean-loss levels from the start to the target, its bootstrap interval over seeds above 0. The best test loss
of each regime is reported alongside.

Quick preset: 2000 examples, MLP 784-256-256-10, batch 128, lr 0.05 for alpha = 1 and 0.25 for alpha = 100 (its
verdict checked at 0.125: ``rate_check``), clean-loss target 0.5 (the paper trains to ~0); measured: alpha = 1
reaches it in ~15 epochs, alpha = 100 in ~35 (70 at half the rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import lazyhasty as lh

from . import Experiment
from ._difficulty import RegimeConfig, compare, load_fmnist, mean_spread, model_factory, noisy_split


@dataclass(frozen=True)
class Config(RegimeConfig):
    dataset: str = "fashion_mnist"  # fashion_mnist (offline, Debian's copy) or cifar10 (your local copy)
    n_train: int = 2_000  # class-balanced training subset (paper: the 50 000 of CIFAR-10)
    n_test: int = 1_000
    noise: float = 0.15  # fraction of training labels replaced by another class (paper)
    target: float = 0.5  # clean-example training loss every run trains to (paper: ~0, 200 / 1000 epochs)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.noise < 1 or self.n_train < 100:
            raise ValueError("noise must be in (0, 1) and n_train >= 100")


PRESETS = {
    "quick": Config(),
    # the paper's setting (CIFAR-10, ResNet18, SGD + momentum, 200 / 1000 epochs): needs data_root and a GPU
    "paper": Config(dataset="cifar10", n_train=50_000, n_test=10_000, arch="resnet18", width=64, max_epochs=200,
                    lazy_epochs=1000, lr=0.01, lazy_lr=0.01, batch_size=128, target=0.01, device="cuda"),
}
SOURCE = "George et al. 2022, Fig. 2 (bottom), section 3.2.2"


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    train_all, test = load_fmnist(cfg.data_root, cfg.n_train, cfg.n_test, cfg.data_seed, cfg.device, cfg.dataset)
    train, _ = noisy_split(cfg, train_all, cfg.data_seed)  # the same noisy labels for every seed
    print(f"[fig2_noise] alpha in {cfg.alphas}, {cfg.seeds} seeds, {cfg.n_train} examples, {cfg.noise:.0%} noisy, "
          f"until clean loss {cfg.target:g}", flush=True)
    factory = model_factory(cfg.arch, cfg.width, 10, tuple(train.x.shape[1:]))
    comp = compare(cfg, factory, train, {"test": test}, ("train", "clean", "loss"), output)
    test_loss = comp.metrics[(comp.metrics.split == "test") & (comp.metrics.group == "all")
                             & (comp.metrics.metric == "loss")]
    best = {r: test_loss[test_loss.regime == r].groupby("seed").value.min().tolist() for r in (comp.feature, comp.lazy)}
    text = "\n".join([f"fig2_noise: {cfg.dataset}, {cfg.noise:.0%} label noise, {cfg.arch}, {cfg.seeds} seeds",
                      comp.summary(), "best test loss: " + "; ".join(f"{k} {mean_spread(v)}" for k, v in best.items())])
    claims = [lh.claims.stays_linear_claim(comp.stays_linear(), comp.feature, comp.lazy),
              comp.answer("noisy_later", f"At equal clean-example training loss, the noisy examples' loss is higher "
                          f"for {comp.feature} than for {comp.lazy}: the non-linear regime fits the noisy labels "
                          "later", SOURCE, "train", "noisy", expect="lazy", best_test_loss=best)]
    return lh.claims.write(out, "fig2_noise", claims, text, out / "comparison.png")


EXPERIMENT = Experiment("fig2_noise", "Fashion-MNIST with 15% label noise: noisy vs clean loss at equal progress "
                        "(Fig. 2 bottom)", Config, PRESETS, main)
