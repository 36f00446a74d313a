"""Shared machinery of the example-difficulty experiments (fig2_noise, fig2_cscores, fig5_lr, fig3) on
Fashion-MNIST: data, the model, and the regimes each one compares through ``compare_regimes``.

Each seed varies both the initialisation and the minibatch order (George et al., appendix F). Within a seed the
regimes are forked from one theta0 and see the same minibatches. Every run trains until the comparison's own
progress measure reaches the target (``Stop.reach``), within a budget; a run that misses it is reported and the
claims resting on it are not measured.

Rates. The feature regimes step with ``lr``, the lazy one with ``lazy_lr`` (a linear model tolerates a larger rate
and needs more steps; the paper gives alpha = 100 5x the epochs instead). That is allowed only because the
comparison is made at equal progress, not at equal time, and only where it is shown not to matter: with
``rate_check`` every seed also trains the lazy regime at half its rate, and each claim reports whether its verdict
is the same with either lazy run (``numbers.rate_check``; not measured where it is not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import lazyhasty as lh
from lazyhasty.data import cifar10, fashion_mnist, label_noise


@dataclass(frozen=True)
class RegimeConfig:
    """Fields shared by the experiments that train forked regimes with SGD + momentum (fig2_noise, fig2_cscores,
    fig3, fig5_lr); each experiment adds its own and may change these defaults. Paper values (CIFAR-10, ResNet18)
    are in the ``paper`` presets; the quick presets depart where a 2-core CPU needs it (said per field)."""

    data_root: str | None = None  # dataset folder (Fashion-MNIST default: $LAZYHASTY_DATA/fashion-mnist, Debian's)
    arch: str = "mlp"  # mlp (two hidden layers of `width`), cnn or resnet18 (paper: resnet18)
    width: int = 256
    alphas: tuple[float, ...] = (1.0, 100.0)  # feature regime(s), the lazy reference last (paper: 1 and 100)
    lr: float = 0.05  # eta of the feature regimes; every run steps with eta / alpha^2 (paper: 0.01)
    lazy_lr: float = 0.25  # eta of the lazy regime (paper: lr, and 5x the epochs); see the module docstring
    rate_check: bool = True  # also train the lazy regime at lazy_lr / 2: is the verdict the same?
    momentum: float = 0.9  # (paper)
    batch_size: int = 128  # (paper)
    max_epochs: float = 40  # budget of a feature run (paper: 200 epochs)
    lazy_epochs: float = 120  # budget of a lazy run at lazy_lr (twice that at lazy_lr / 2) (paper: 1000)
    target: float = 0.5  # every run trains until its progress measure reaches this (each experiment says which)
    milestone_ratio: float = 0.9  # measurement points where the smoothed training loss falls below L0 * r^k
    seeds: int = 3  # each seed varies the initialisation and the minibatch order: seeds seed .. seed + seeds - 1
    seed: int = 0  # the first seed
    data_seed: int = 0  # data subset, noisy labels, planted features
    probe_size: int = 200  # examples for the linearity metrics
    linearity: bool = True  # NTK alignment, sign similarity, representation alignment at every measurement
    device: str = "cpu"

    def __post_init__(self):
        a = self.alphas
        if len(a) < 2 or not all(x > 0 for x in a) or len(set(a)) != len(a) or a[-1] != max(a):
            raise ValueError(f"alphas must be at least two distinct numbers > 0, the lazy reference (the largest) "
                             f"last; got {a}")
        for name in ("max_epochs", "lazy_epochs", "lr", "lazy_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if not 0 < self.milestone_ratio < 1:
            raise ValueError(f"milestone_ratio must be in (0, 1), got {self.milestone_ratio}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


def load_fmnist(root: str | None, n_train: int, n_test: int, seed: int, device: str,
                dataset: str = "fashion_mnist") -> tuple[lh.Split, lh.Split]:
    """A class-balanced random subset of the train (n_train) and test (n_test) sets, deterministic in seed.

    ``dataset``: ``"fashion_mnist"`` (Debian's copy or ``root``) or ``"cifar10"`` (the python batches in ``root``).
    The subsets keep track of their positions in the original training order (``split.info["index"]``), so that
    per-example scores published in that order (C-scores) can be attached.
    """
    if dataset == "fashion_mnist":
        tr, te = fashion_mnist(root, "train"), fashion_mnist(root, "test")
    elif dataset == "cifar10":
        if root is None:
            raise lh.UsageError("dataset=cifar10 needs data_root=<your cifar-10-batches-py folder>")
        tr, te = cifar10(root, "train"), cifar10(root, "test")
    else:
        raise lh.UsageError(f"dataset must be fashion_mnist or cifar10, got {dataset!r}")
    if min(n_train, n_test) < 10:
        raise lh.UsageError(f"n_train and n_test must be >= 10 (class-balanced: one example per class at least), got "
                            f"{n_train} and {n_test}")
    g = torch.Generator().manual_seed(seed)

    def subset(s: lh.Split, n: int) -> lh.Split:
        per = n // 10
        counts = [int((s.y == c).sum()) for c in range(10)]
        if per > min(counts):
            raise lh.UsageError(f"{n} examples, {per} per class, but the split has only {min(counts)} of one class")
        idx = torch.cat([(s.y == c).nonzero()[:, 0][torch.randperm(counts[c], generator=g)[:per]]
                         for c in range(10)])
        idx = idx[torch.randperm(len(idx), generator=g)]
        return lh.Split(s.x[idx].to(device), s.y[idx].to(device), info={"index": idx.numpy()})

    return subset(tr, n_train), subset(te, n_test)


def model_factory(arch: str, width: int, outputs: int = 10, in_shape: tuple[int, ...] = (1, 28, 28)):
    """mlp (flatten, two hidden layers of ``width``), cnn (3 conv layers) or resnet18 (CIFAR variant, batch norm
    off: the C-score estimator trains plain members as one ensemble, where per-member running statistics cannot be
    updated; the regime wrappers alone freeze them)."""
    if arch == "mlp":
        d = int(torch.tensor(in_shape).prod())
        return lambda: torch.nn.Sequential(torch.nn.Flatten(), lh.MLP([d, width, width, outputs]))
    if arch == "cnn":
        return lambda: lh.CNN(in_channels=in_shape[0], num_outputs=outputs, width=max(1, width // 8), depth=3)
    if arch == "resnet18":
        return lambda: lh.ResNet18(num_outputs=outputs, in_channels=in_shape[0], width=width, batchnorm=False)
    raise lh.UsageError(f"arch must be mlp, cnn or resnet18, got {arch!r}")


LAZY_HALF = "lazy,half_rate"


def regimes(cfg, n_train: int, feature_lrs: dict[float, float] | None = None) -> list[lh.Regime]:
    """The regimes of one comparison: every alpha but the last at ``lr`` (or ``feature_lrs[alpha]``) with a
    budget of ``max_epochs``, the last (lazy) at ``lazy_lr`` with ``lazy_epochs``, and with ``rate_check`` the
    lazy one again at half its rate and twice its budget (named :data:`LAZY_HALF`)."""
    spe = -(-n_train // cfg.batch_size)

    def sgd(lr: float) -> lh.SGD:
        return lh.SGD(lr, cfg.momentum, cfg.batch_size)

    out = [lh.Regime(a, sgd((feature_lrs or {}).get(a, cfg.lr)), lh.Stop(max_steps=int(cfg.max_epochs * spe)))
           for a in cfg.alphas[:-1]]
    lazy = cfg.alphas[-1]
    out.append(lh.Regime(lazy, sgd(cfg.lazy_lr), lh.Stop(max_steps=int(cfg.lazy_epochs * spe))))
    if cfg.rate_check:
        out.append(lh.Regime(lazy, sgd(cfg.lazy_lr / 2), lh.Stop(max_steps=int(2 * cfg.lazy_epochs * spe)),
                             name=LAZY_HALF))
    return out


def compare(cfg, factory, train: lh.Split, splits: dict[str, lh.Split], progress: tuple[str, str, str],
            out: lh.runs.Output, loss: str = "cross_entropy", regs: list[lh.Regime] | None = None,
            feature: str | None = None, points_per_decade: int = 5) -> lh.Comparison:
    """``compare_regimes`` with the experiment's regimes, every run until ``progress`` reaches ``cfg.target``,
    measured at log-spaced steps, at loss milestones and once an epoch."""
    spe = -(-len(train) // cfg.batch_size)
    regs = regs or regimes(cfg, len(train))
    return lh.compare_regimes(
        lambda: factory().to(cfg.device), train, splits=splits, regimes=regs,
        feature=feature or f"alpha={cfg.alphas[0]:g}", lazy=f"alpha={cfg.alphas[-1]:g}", loss=loss,
        rate_check=LAZY_HALF if cfg.rate_check else None,
        target=cfg.target, progress=progress, seeds=range(cfg.seed, cfg.seed + cfg.seeds),
        schedule=lh.Schedule(milestone_ratio=cfg.milestone_ratio, points_per_decade=points_per_decade, every=spe),
        probe_size=cfg.probe_size, linearity=cfg.linearity, out=out, show_progress=True)


def mean_spread(values) -> str:
    """"mean ± sample std (n = number of finite values)"; "n/a" when no value is finite."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a (no comparable range)"
    return f"{v.mean():+.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f} (n = {len(v)})"


def noisy_split(cfg, split: lh.Split, seed: int) -> tuple[lh.Split, torch.Tensor]:
    y_noisy, mask = label_noise(split.y.cpu(), cfg.noise, 10, seed=cfg.data_seed * 7919 + seed)
    groups = lh.Groups({"clean": (~mask).numpy(), "noisy": mask.numpy()}, n=len(split))
    return lh.Split(split.x, y_noisy.to(split.y.device), groups), mask
