"""demo: one MLP on the yin-yang toy, trained at alpha = 1 and alpha = 100 from the same initialisation.

The smallest end-to-end use of the library (George et al., section 3.1, in miniature): ``compare_regimes`` forks
one theta0 per seed into ``AlphaScaled(model, alpha)`` for each alpha, trains each with full-batch GD at
learning rate eta / alpha^2 until its training loss reaches the target, and compares the per-region training
losses at equal progress (equal training loss). The seeds' runs share one vectorised ensemble (full-batch GD sees
the same batch in every seed).

Claim: ``stays_linear`` (the regimes are what they say). The per-region verdicts are in the summary and figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import lazyhasty as lh

from . import Experiment


@dataclass(frozen=True)
class Config:
    n_train: int = 100  # yin-yang training points (the paper: 100)
    widths: tuple[int, ...] = (60, 60, 60)  # hidden widths: 2 -> 60 -> 60 -> 60 -> 1 is the paper's 4-layer MLP
    alphas: tuple[float, ...] = (1.0, 100.0)  # regimes, forked from one theta0
    lr: float = 0.5  # eta; each run steps with eta / alpha^2 (the paper uses 0.01 and far more steps)
    max_steps: int = 8000  # budget per run (the lazy runs reach loss 0.3 in 3,200-6,300 steps)
    loss_threshold: float = 0.3  # every run trains until its mean training loss is below this
    seeds: int = 3  # initialisations: seed .. seed + seeds - 1
    seed: int = 0  # the first initialisation
    data_seed: int = 0  # yin-yang sample
    dtype: str = "float32"  # float32 or float64
    device: str = "cpu"

    def __post_init__(self):
        if len(self.alphas) < 2 or min(self.alphas) <= 0 or len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas must be at least two distinct numbers > 0, got alphas={self.alphas}")
        if self.n_train < 2 or self.max_steps < 1 or not self.lr > 0 or self.seeds < 1:
            raise ValueError("n_train must be >= 2, max_steps and seeds >= 1 and lr > 0")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0 < self.loss_threshold < 0.69:
            raise ValueError(f"loss_threshold must lie between 0 and the initial loss (~0.69), got "
                             f"{self.loss_threshold}")


PRESETS = {
    "quick": Config(),
    "paper": Config(lr=0.01, max_steps=400_000, seeds=10),
}


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    dtype = getattr(torch, cfg.dtype)
    data = lh.data.yinyang(cfg.n_train, seed=cfg.data_seed, dtype=dtype).to(cfg.device)
    print(f"[demo] alpha in {cfg.alphas}, {cfg.seeds} seeds: GD, lr = {cfg.lr:g} / alpha^2, until the training loss "
          f"is {cfg.loss_threshold:g} (budget {cfg.max_steps} steps)", flush=True)
    comp = lh.compare_regimes(lambda: lh.MLP([2, *cfg.widths, 1]).to(device=cfg.device, dtype=dtype), data,
                              alphas=cfg.alphas, loss="bce", stepper=lh.GD(cfg.lr),
                              stop=lh.Stop(max_steps=cfg.max_steps), target=cfg.loss_threshold,
                              seeds=range(cfg.seed, cfg.seed + cfg.seeds), probe_size=cfg.n_train, out=output,
                              show_progress=True)
    text = "demo: yin-yang MLP, alpha-scaled, forked from one initialisation per seed\n" + comp.summary()
    doc = lh.claims.write(out, "demo", [lh.claims.stays_linear_claim(comp.stays_linear(), comp.feature, comp.lazy)],
                          text, out / "comparison.png")
    return {**doc, "runs": comp.runs.to_dict(orient="records")}


EXPERIMENT = Experiment(
    name="demo",
    description="yin-yang MLP at alpha = 1 and 100 from one initialisation per seed, compared at equal progress",
    config=Config,
    presets=PRESETS,
    main=main,
)
