"""fig2_noise: label noise on Fashion-MNIST, alpha = 1 vs 100 forked, compared at equal clean-example loss.

George et al., section 3.2.2 / Fig. 2 bottom, on Fashion-MNIST (offline, CPU) instead of CIFAR-10: 15% of a
training subset gets a wrong label (uniformly among the other classes); an MLP (or small CNN) trains with SGD +
momentum at alpha in {1, 100} from the same initialisation and the same minibatch order, for each of 3 seeds
(initialisation and batch order both vary with the seed). Tracked: loss / accuracy on clean and noisy training
examples, test loss / accuracy, and the linearity metrics (NTK alignment, sign similarity, representation
alignment) on 500 training examples.

Claim checked (per seed, then mean +- std over seeds): at equal clean-example loss the noisy examples' loss is
higher for alpha = 1 than for alpha = 100 (the non-linear regime memorises noise later); the best test loss of
each regime is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lazyhasty import load_runs
from lazyhasty.plotting import equal_progress_figure, save_figure

from . import Experiment, write_claims
from ._difficulty import (
    RegimeConfig,
    finite_mean,
    gap_at_equal_progress,
    load_fmnist,
    mean_spread,
    noisy_split,
    run_regimes,
)


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
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        train, _ = noisy_split(cfg, train_all, cfg.data_seed)  # the same noisy labels for every seed
        print(f"[fig2_noise] seed {seed}: alpha in {cfg.alphas}, {cfg.n_train} examples, {cfg.noise:.0%} noisy",
              flush=True)
        run_regimes(cfg, train, {"test": test}, out, seed)
    return summarize(cfg, out)


def summarize(cfg: Config, out: Path) -> dict:
    m = load_runs(out / "runs")
    a_nl, a_lin = cfg.alphas[0], cfg.alphas[-1]
    gaps, best = [], {a: [] for a in cfg.alphas}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        ra, rb = f"alpha={a_nl:g}-seed={seed}", f"alpha={a_lin:g}-seed={seed}"
        gaps.append(gap_at_equal_progress(m, ra, rb, ("train", "clean", "loss"), ("train", "noisy", "loss")))
        for a in cfg.alphas:
            d = m[(m.run_id == f"alpha={a:g}-seed={seed}") & (m.split == "test") & (m.metric == "loss")
                  & (m.group == "all")]
            best[a].append(float(d.value.min()))
    held = bool(all(g > 0 for g in gaps))  # nan (no comparable range) counts as not held
    lines = [f"fig2_noise: Fashion-MNIST, {cfg.noise:.0%} label noise, {cfg.arch}, alpha {a_nl:g} vs {a_lin:g}, "
             f"{cfg.seeds} seeds",
             f"noisy-example loss at equal clean loss, alpha={a_nl:g} minus alpha={a_lin:g} (mean over the shared "
             f"range): {mean_spread(gaps)}; per seed: " + ", ".join(f"{g:+.4f}" for g in gaps),
             "claim (higher for the non-linear regime, every seed): " + ("held" if held else "NOT held"),
             "best test loss: " + "; ".join(f"alpha={a:g} {mean_spread(v)}" for a, v in best.items())]
    text = "\n".join(lines) + "\n"
    fig = equal_progress_figure(m, cfg.alphas, progress=("train", "clean", "loss"),
                                groups=[("train", "clean"), ("train", "noisy"), ("test", "all")],
                                title=f"{cfg.dataset}, {cfg.noise:.0%} label noise: solid alpha={a_nl:g}, "
                                      f"dashed alpha={a_lin:g}", xlabel="clean-example training loss")
    save_figure(fig, out / "fig2_noise")
    claims = {"noisy_gap_per_seed": gaps, "noisy_gap_mean": finite_mean(gaps), "claim_held": held,
              "best_test_loss": {f"alpha={a:g}": v for a, v in best.items()}}
    write_claims(out, text, claims)
    return claims


EXPERIMENT = Experiment("fig2_noise", "Fashion-MNIST with 15% label noise: noisy vs clean loss at equal progress "
                        "(Fig. 2 bottom)", Config, PRESETS, main)
