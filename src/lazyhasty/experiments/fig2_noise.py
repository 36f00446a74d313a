"""fig2_noise: label noise on Fashion-MNIST, alpha = 1 vs 100 forked, compared at equal clean-example loss.

George et al., section 3.2.2 / Fig. 2 bottom, on Fashion-MNIST (offline, CPU) instead of CIFAR-10: 15% of a
training subset gets a wrong label (uniformly among the other classes); an MLP (or small CNN) trains with SGD +
momentum at alpha in {1, 100} from the same initialisation and the same minibatch order, for each of 3 seeds
(initialisation and batch order both vary with the seed). Tracked: loss / accuracy on clean and noisy training
examples, test loss / accuracy, and the linearity metrics (NTK alignment, sign similarity, representation
alignment) on 500 training examples.

Claim checked with ``compare_regimes`` (per seed, the gap averaged over the clean-loss levels both regimes reached
in every seed, then a bootstrap interval over seeds): at equal clean-example loss the noisy examples' loss is
higher for alpha = 1 than for alpha = 100 (the non-linear regime memorises noise later); "not measured" when the
regimes share no progress range. The best test loss of each regime is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lazyhasty import SGD, Schedule, Stop, claim, compare_regimes, gate, missed_note, stays_linear_claim

from . import Experiment, write_claims
from ._difficulty import RegimeConfig, load_fmnist, mean_spread, model_factory, noisy_split


@dataclass(frozen=True)
class Config(RegimeConfig):
    dataset: str = "fashion_mnist"  # fashion_mnist (offline, Debian's copy) or cifar10 (your local copy)
    n_train: int = 10_000  # class-balanced training subset
    n_test: int = 2_000
    noise: float = 0.15  # fraction of training labels replaced by another class

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.noise < 1 or self.n_train < 100:
            raise ValueError("noise must be in (0, 1) and n_train >= 100")


PRESETS = {
    "quick": Config(),
    # the paper's setting (CIFAR-10, ResNet18, SGD + momentum, 200 epochs): needs data_root and a GPU
    "paper": Config(dataset="cifar10", n_train=50_000, n_test=10_000, arch="resnet18", width=64, max_epochs=200,
                    lr=0.01, batch_size=128, loss_target=0.01, device="cuda"),
}


def main(cfg: Config, out: Path) -> dict:
    train_all, test = load_fmnist(cfg.data_root, cfg.n_train, cfg.n_test, cfg.data_seed, cfg.device, cfg.dataset)
    train, _ = noisy_split(cfg, train_all, cfg.data_seed)  # the same noisy labels for every seed
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    print(f"[fig2_noise] alpha in {cfg.alphas}, seeds {list(seeds)}, {cfg.n_train} examples, {cfg.noise:.0%} noisy",
          flush=True)
    net = model_factory(cfg.arch, cfg.width, 10, tuple(train.x.shape[1:]))
    comp = compare_regimes(lambda: net().to(cfg.device), train, test=test, alphas=cfg.alphas, loss="cross_entropy",
                           stepper=SGD(cfg.lr, cfg.momentum, cfg.batch_size), seeds=seeds,
                           stop=Stop(max_steps=cfg.max_epochs * -(-len(train) // cfg.batch_size),
                                     loss_below=cfg.loss_target),
                           progress=("train", "clean", "loss"), probe_size=cfg.probe_size, linearity=cfg.linearity,
                           schedule=Schedule(milestone_ratio=cfg.milestone_ratio, points_per_decade=5), out=out)
    lin = comp.stays_linear()
    noisy = comp.verdict.set_index(["split", "group"]).loc[("train", "noisy")]
    held = None if noisy.ahead == "not measured" else bool(noisy.ahead == "lazy")  # gap > 0, interval above 0
    test_loss = comp.metrics[(comp.metrics.split == "test") & (comp.metrics.group == "all")
                             & (comp.metrics.metric == "loss")]
    best = {f"alpha={a:g}": test_loss[test_loss.alpha == a].groupby("seed").value.min().tolist() for a in cfg.alphas}
    text = "\n".join([f"fig2_noise: {cfg.dataset}, {cfg.noise:.0%} label noise, {cfg.arch}, {cfg.seeds} seeds",
                      comp.summary(), "best test loss: " + "; ".join(f"{k} {mean_spread(v)}" for k, v in best.items())])
    source = "George et al. 2022, Fig. 2 (bottom), section 3.2.2"
    claims = [stays_linear_claim(lin, comp.settings["feature"], comp.settings["lazy"]),
              claim("noisy_later", f"At equal clean-example training loss, the noisy examples' loss is higher for "
                    f"{comp.settings['feature']} than for {comp.settings['lazy']}: the non-linear regime fits the "
                    "noisy labels later", source, gate(held, lin, comp.missed()), gap=noisy.gap,
                    interval=[noisy.ci_low, noisy.ci_high], levels=noisy.levels,
                    per_seed=noisy.per_seed if isinstance(noisy.per_seed, list) else [],
                    note=missed_note(comp.missed()) or noisy.note,
                    best_test_loss=best)]
    return write_claims(out, "fig2_noise", claims, text, out / "comparison.png")


EXPERIMENT = Experiment("fig2_noise", "Fashion-MNIST with 15% label noise: noisy vs clean loss at equal progress "
                        "(Fig. 2 bottom)", Config, PRESETS, main)
