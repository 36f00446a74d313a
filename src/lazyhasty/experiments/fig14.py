"""fig14: Examples 1-3 of the quadratic model with trained networks (George et al., Fig. 14, appendix G).

Two networks, each on the data of fig4, each its own set of claims:

* ``dense`` (the paper's Fig. 14): a dense 2-layer *linear* network d -> width -> 1 without bias (PyTorch's
  default init times ``init_scale`` = 0.5), MSE loss 1/2 (f - y)^2, full-batch GD at lr 1e-3 / alpha^2 on the
  summed loss (the engine minimises the mean, so each run steps with n lr / alpha^2), alpha = 0.1 (feature) against
  alpha = 10 (lazy), forked from one initialisation, for ``seeds`` initialisations. The width (100) is ours: the
  paper does not state it.
* ``diagonal``: the quadratic model of section 4 itself as a network, f(x) = x^T V (w^2 / 2) with V the data's mode
  basis and w0 = sqrt(sigma) [1 ... 1] (eq. 9; deterministic: one run per regime), trained by GD at alpha = 1
  against ``Linearized`` (eq. 13, the exact lazy limit). Its time steps are the regimes' own (``diagonal_dt``; the
  linear regime's rates 2 mu theta0 are ~1e4 times slower at sigma = 1e-4), and the lazy one is run again at half
  its step (``rate_check``).

Every run trains until its mean training loss is ``loss_fraction`` x the loss of the zero predictor (1/2 mean y^2),
within ``max_steps``. Claims (fig4's ``example_claims``, the measures that give "held" on the closed forms, with
ids ``example<k>@dense`` / ``example<k>@diagonal``), each earned only with its network's ``stays_linear``: every
linearity measure the network has stays >= 0.9 in the lazy run and one falls below in the feature run. The dense
network has no ReLU (no sign similarity) and its kernel hardly rotates (NTK alignment >= 0.95 in both regimes), but
its hidden representation moves: representation alignment decides. The diagonal model has neither a ReLU nor a
linear read-out, and one mode dominates its kernel: the kernel's change ||K - K0|| / ||K0|| (read as the
similarity 1 - change) decides (Linearized: 0 by construction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

import lazyhasty as lh
from lazyhasty.plotting import examples_figure, save_figure
from lazyhasty.theory import mode_basis

from . import Experiment
from .fig4 import Config as Fig4Config
from .fig4 import comparisons, example_claims, example_lines, problems


@dataclass(frozen=True)
class Config:
    alphas: tuple[float, float] = (0.1, 100.0)  # dense: feature, lazy (the paper's lazy alpha is 10, whose
    # representation alignment falls to 0.89: not linear enough to be the lazy reference)
    width: int = 100  # dense hidden units (not stated in the paper)
    init_scale: float = 0.5  # PyTorch's default init times this (the paper's)
    lrs: tuple[float, float] = (1e-3, 5e-2)  # dense: eta on the summed loss per regime (feature: the paper's;
    # lazy: 50x, far below its stability limit, checked at half: rate_check); each run steps with eta / alpha^2
    seeds: int = 3  # dense initialisations: seed .. seed + seeds - 1
    sigma: float = 1e-4  # diagonal: w0 = sqrt(sigma) [1 ... 1] (fig4's)
    diagonal_dt: tuple[float, float] = (0.01, 20.0)  # diagonal: GD step in time units of the summed loss
    # (alpha = 1, Linearized)
    rate_check: bool = True  # also train the lazy regime at half its rate (step)
    max_steps: int = 200_000  # budget per run
    loss_fraction: float = 1e-2  # stop at this fraction of the zero predictor's loss
    seed: int = 0  # the first initialisation
    data_seed: int = 0  # labels and noisy/minority examples

    def __post_init__(self):
        if len(self.alphas) != 2 or min(self.alphas) <= 0 or self.alphas[0] >= self.alphas[1]:
            raise ValueError(f"alphas must be two numbers 0 < feature < lazy, got {self.alphas}")
        if len(self.diagonal_dt) != 2 or min(self.diagonal_dt) <= 0:
            raise ValueError(f"diagonal_dt must be two steps > 0, got {self.diagonal_dt}")
        if self.width < 1 or self.max_steps < 1 or self.seeds < 1 or not 0 < self.loss_fraction < 1:
            raise ValueError("width, seeds and max_steps must be >= 1 and 0 < loss_fraction < 1")


PRESETS = {"quick": Config(), "paper": Config(loss_fraction=1e-4, max_steps=2_000_000, seeds=10)}
SOURCE = "George et al. 2022, Fig. 14 (appendix G), Examples 1-3 (eqs. 16-19)"
RATE_CHECK = "lazy,half_rate"
DIAGONAL_MEASURES = {"linearity_measures": ("ntk_alignment", "ntk_distance"), "linearity_why": (
    "the diagonal model has neither a ReLU nor a linear read-out; one mode dominates its kernel, whose alignment with "
    "K0 then stays high while the modes' weights change by orders of magnitude: the kernel distance shows it")}


class QuadraticNet(nn.Module):
    """The quadratic model of George et al. (eq. 9) as a network: f(x) = x^T theta(w), theta = V (w^2 / 2).

    Args:
        V: (d, d) the data's mode basis (columns v_lambda, :func:`lazyhasty.theory.quadratic.mode_basis`).
        w0: (d,) initial parameters, all non-zero.
    Input (n, d), output (n, 1).
    """

    def __init__(self, V: torch.Tensor, w0: torch.Tensor):
        super().__init__()
        self.register_buffer("V", V)
        self.w = nn.Parameter(w0.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.V @ (0.5 * self.w**2)))[:, None]  # (n, 1)


def dense(d: int, cfg: Config) -> nn.Module:
    """The 2-layer linear network without bias, its default init scaled by ``init_scale``, in float64."""
    net = lh.MLP([d, cfg.width, 1], activation="linear", bias=False).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(cfg.init_scale)
    return net


def train_examples(cfg: Config, network: str, out: lh.runs.Output) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both regimes of one network on the three examples (``compare_regimes`` per example, records under
    ``out/<network>-<example>/``); returns (long table, runs table with ``example``)."""
    metrics, runs = [], []
    for ex, (X, y, groups) in problems(Fig4Config(seed=cfg.data_seed)).items():
        n = len(y)
        split = lh.Split(torch.tensor(X), torch.tensor(y), lh.Groups(groups, n=n))
        budget = lh.Stop(max_steps=cfg.max_steps)
        if network == "dense":
            (a_f, a_l), (lr_f, lr_l) = cfg.alphas, cfg.lrs
            regs = [lh.Regime(a_f, lh.GD(lr_f * n), budget), lh.Regime(a_l, lh.GD(lr_l * n), budget)]
            factory, seeds = (lambda X=X: dense(X.shape[1], cfg)), range(cfg.seed, cfg.seed + cfg.seeds)
        else:
            V = torch.tensor(mode_basis(X, y)[2])
            w0 = torch.full((X.shape[1],), float(np.sqrt(cfg.sigma)), dtype=torch.float64)
            (a_l, (dt_f, lr_l)) = None, cfg.diagonal_dt
            regs = [lh.Regime(1.0, lh.GD(dt_f * n), budget), lh.Regime(None, lh.GD(lr_l * n), budget)]
            factory, seeds = (lambda V=V, w0=w0: QuadraticNet(V, w0)), [cfg.seed]
        rate = RATE_CHECK if cfg.rate_check else None
        if rate:  # the lazy regime again at half its rate, twice its budget
            regs.append(lh.Regime(a_l, lh.GD(lr_l * n / 2), lh.Stop(max_steps=2 * cfg.max_steps), name=rate))
        print(f"[fig14] {network} network, {ex}: {', '.join(r.label for r in regs)}, {len(seeds)} seed(s), until "
              f"the mean loss is {cfg.loss_fraction:g} x the zero predictor's", flush=True)
        comp = lh.compare_regimes(factory, split, regimes=regs, lazy=regs[1].label, rate_check=rate, loss="mse",
                                  seeds=seeds,
                                  target=cfg.loss_fraction * float((0.5 * split.y**2).mean()), probe_size=n,
                                  schedule=lh.Schedule(milestone_ratio=0.9, points_per_decade=20),
                                  out=out.under(f"{network}-{ex}"), show_progress=True)
        key = f"{ex}:"  # run ids are unique within one comparison; prefixed, across the three
        metrics.append(comp.metrics.assign(run_id=key + comp.metrics.run_id))
        runs.append(comp.runs.assign(example=ex, run_id=key + comp.runs.run_id))
    return pd.concat(metrics, ignore_index=True), pd.concat(runs, ignore_index=True)


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    claims, lines, figs = [], ["fig14: Examples 1-3 with trained networks"], []
    for network in ("dense", "diagonal"):
        metrics, runs = train_examples(cfg, network, output)
        rate = RATE_CHECK if cfg.rate_check else None
        feature, lazy = [r for r in dict.fromkeys(runs.regime) if r != rate]
        comps = comparisons(metrics, runs, feature, lazy, exact=network == "diagonal", rate_check=rate,
                            **({} if network == "dense" else DIAGONAL_MEASURES))
        cs = example_claims(comps, SOURCE, suffix=f"@{network}")
        lin = comps["example1"].stays_linear()  # every example's runs, the same rule
        for c in comps.values():
            if c.stays_linear()["held"] is not True:
                lin = c.stays_linear()
        claims += [{**lh.claims.stays_linear_claim(lin, feature, lazy), "id": f"stays_linear@{network}"}, *cs]
        lines += [f"{network} network: {feature} vs {lazy}", lh.claims.linearity_line(lin), *example_lines(cs)]
        whole = comparisons(metrics, runs, feature, lazy, until=None, levels=60)  # the figure: the whole range
        marks = {c["id"].split("@")[0]: "not held" if c["held"] is False else "" for c in cs}
        figs.append(save_figure(examples_figure({ex: c.table for ex, c in whole.items()}, [feature, lazy],
                                                f"{network} network: {feature} (solid) vs {lazy} (dashed), first "
                                                "seed", marks), out / f"fig14-{network}")[0])
    return lh.claims.write(out, "fig14", claims, "\n".join(lines), figs[0])


EXPERIMENT = Experiment("fig14", "Examples 1-3 with a dense 2-layer linear network and the diagonal quadratic model "
                        "(Fig. 14)", Config, PRESETS, main)
