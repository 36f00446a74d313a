"""Shared machinery of the example-difficulty experiments (fig2_noise, fig2_cscores, fig5_lr) on Fashion-MNIST.

Each seed varies both the initialisation and the minibatch order (George et al., appendix F). Within a seed the
regimes are forked: one ``Ensemble`` whose members share theta0 and see the same minibatches, differing only in
alpha. Runs stop at a training-loss target or an epoch budget (flagged unconverged in status.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import lazyhasty as lh
from lazyhasty.data import cifar10, fashion_mnist, label_noise


@dataclass(frozen=True)
class RegimeConfig:
    """Fields shared by the experiments that train forked regimes with SGD (fig2_noise, fig2_cscores, fig3,
    fig5_lr); each experiment adds its own and may change these defaults."""

    data_root: str | None = None  # dataset folder (Fashion-MNIST default: $LAZYHASTY_DATA/fashion-mnist, Debian's)
    arch: str = "mlp"  # mlp (two hidden layers of `width`), cnn or resnet18
    width: int = 256
    alphas: tuple[float, ...] = (1.0, 100.0)  # forked from one initialisation; the last is the lazy reference
    lr: float = 0.02  # eta; each run steps with eta / alpha^2
    momentum: float = 0.9
    batch_size: int = 128
    max_epochs: int = 40  # budget per run
    loss_target: float = 0.3  # stop a run once its (smoothed) mean training loss is below this
    milestone_ratio: float = 0.9  # equal-progress measurement points at L0 * r^k
    seeds: int = 3  # each seed varies the initialisation and the minibatch order: seeds seed .. seed + seeds - 1
    seed: int = 0  # the first seed
    data_seed: int = 0  # data subset, noisy labels, planted features
    probe_size: int = 500  # examples for the linearity metrics
    linearity: bool = True  # NTK alignment, sign similarity, representation alignment at every measurement
    device: str = "cpu"

    def __post_init__(self):
        if len(self.alphas) < 2 or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be at least two numbers > 0, got {self.alphas}")
        if self.seeds < 1 or self.max_epochs < 1 or not self.lr > 0:
            raise ValueError("seeds and max_epochs must be >= 1 and lr > 0")


def load_fmnist(root: str | None, n_train: int, n_test: int, seed: int, device: str,
                dataset: str = "fashion_mnist") -> tuple[lh.Split, lh.Split]:
    """A class-balanced random subset of the train (n_train) and test (n_test) sets, deterministic in seed.

    ``dataset``: ``"fashion_mnist"`` (Debian's copy or ``root``) or ``"cifar10"`` (the python batches in ``root``).
    The subsets keep track of their positions in the original training order (``split.index``), so that
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
    g = torch.Generator().manual_seed(seed)

    def subset(s: lh.Split, n: int) -> lh.Split:
        per = n // 10
        idx = torch.cat([(s.y == c).nonzero()[:, 0][torch.randperm(int((s.y == c).sum()), generator=g)[:per]]
                         for c in range(10)])
        idx = idx[torch.randperm(len(idx), generator=g)]
        out = lh.Split(s.x[idx].to(device), s.y[idx].to(device))
        out.index = idx.numpy()
        return out

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


def run_regimes(cfg, train_set: lh.Split, splits: dict[str, lh.Split], out: Path, seed: int, alphas=None,
                lr: float | None = None, tag: str = "", loss: str = "cross_entropy", outputs: int = 10,
                factory=None, max_epochs: float | None = None, points_per_decade: int = 5) -> list[str]:
    """Train the regimes of one seed as one forked ensemble (same theta0 and minibatch order), each until its own
    training loss reaches ``cfg.loss_target`` or the budget (``max_epochs``, default ``cfg.max_epochs``) runs out;
    returns the run ids ``<tag>alpha=<a>-seed=<seed>``. Records under out/runs/."""
    alphas = list(alphas or cfg.alphas)
    lr = cfg.lr if lr is None else lr
    steps_per_epoch = -(-len(train_set) // cfg.batch_size)
    max_epochs = cfg.max_epochs if max_epochs is None else max_epochs
    ids = [f"{tag}alpha={a:g}-seed={seed}" for a in alphas]
    recs = [lh.RunRecord(out / "runs" / rid).start(cfg, alpha=a, seed=seed, lr=lr) for a, rid in zip(alphas, ids)]
    factory = factory or model_factory(cfg.arch, cfg.width, outputs, tuple(train_set.x.shape[1:]))
    ens = lh.Ensemble([lh.AlphaScaled(lh.seeded(factory, seed), a) for a in alphas]).to(cfg.device)
    g = torch.Generator().manual_seed(10_000 + seed)
    probe_x = train_set.x[torch.randperm(len(train_set), generator=g)[: cfg.probe_size]]
    probes = [lh.loss_probe, lh.parameter_distance_probe]
    if cfg.linearity:
        probes.append(lh.LinearityProbe(probe_x, split="probe", outputs="trace", per_layer=False))
    lh.train(ens, train_set, loss=loss, splits=splits, stepper=lh.SGD(lr, cfg.momentum, cfg.batch_size),
             stop=lh.Stop(max_steps=int(max_epochs * steps_per_epoch), loss_below=cfg.loss_target),
             schedule=lh.Schedule(milestone_ratio=cfg.milestone_ratio, points_per_decade=points_per_decade),
             data_seed=seed, run_id=ids, record=recs, progress=True, probes=probes)
    return ids


def progress_curves(metrics: pd.DataFrame, runs: list[str], progress, value, points: int = 40,
                    decreasing: bool = True) -> pd.DataFrame:
    """value = (split, group, metric) of each run at equal progress, one column per run, over the progress range
    every run covers (no rows when they share none)."""
    try:
        t = lh.at_equal_progress(metrics[metrics.run_id.isin(runs)], progress=progress, grid=points,
                                 decreasing=decreasing)
    except ValueError:  # the runs share no range of progress (e.g. far too short): nothing to compare
        return pd.DataFrame()
    t = t[(t.split == value[0]) & (t.group == value[1]) & (t.metric == value[2])]
    return t.pivot_table(index="progress", columns="run_id", values="value").dropna()


def gap_at_equal_progress(metrics: pd.DataFrame, run_a: str, run_b: str, progress, value,
                          points: int = 40, decreasing: bool = True) -> float:
    """Mean over the shared progress range of value(run_a) - value(run_b), interpolated at equal progress."""
    piv = progress_curves(metrics, [run_a, run_b], progress, value, points, decreasing)
    return float((piv[run_a] - piv[run_b]).mean()) if len(piv) else float("nan")


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
