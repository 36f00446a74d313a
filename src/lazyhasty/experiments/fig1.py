"""fig1: the yin-yang toy of George et al. (Fig. 1), many initialisations in both regimes, on the ensemble engine.

Setup (section 3.1): MLP 2 -> 60 -> 60 -> 60 -> 1 (ReLU, PyTorch default init), 100 yin-yang training points,
full-batch GD, binary cross-entropy on +-1 labels, alpha in {1, 100} forked from the same initialisation.
Each seed draws its own initialisation *and its own training set* (100 fresh points), so that the verdict does
not rest on one draw; the members of a vectorised ensemble each train on their own set (per-member example
weights over the union of ``members_per_call`` seeds' sets).

Choices where the paper is silent or its settings are out of reach on a CPU:
* Learning rates: the text says 0.01 for both. At 0.01 the alpha = 100 runs need ~1.6e5 steps to reach a mean
  loss of 0.3 (over an hour on 2 cores). The regimes are compared at equal training loss, not at equal time, so
  each gets the largest rate tried at which its loss descends at every step: eta = 0.05 for alpha = 1 (10 seeds:
  at 0.5 the loss rose on 25-37% of the steps, at 0.2 on 13-29%, at 0.1 on up to 16%, at 0.05 on none) and
  eta = 1 for alpha = 100 (nearly linear, no rise at 0.5 or 1); each run steps with eta / alpha^2. Checked on
  the quick preset: the alpha = 100 grid losses at eta = 1 and at eta = 0.05 differ by 0.0002-0.002 (mean
  absolute, per threshold), 27-290x less than the alpha gap (0.054-0.067). ``paper`` keeps 0.01 for both.
* Thresholds on the mean training loss: 0.5, 0.4, 0.3 (the loss at initialisation is ~0.69). Each run trains
  until it reaches the last one (``max_steps`` is a budget); a member that misses a threshold is flagged
  (status.json: converged = false) and left out of that threshold's statistics, and a threshold that fewer than
  two seeds reached in both regimes is "not measured".
* Easy points: grid points in the half-planes farther than 0.1 from every class boundary. Hard points: all the
  others (inside the two discs, within 0.1 of their rim, or within 0.1 of the line between the halves).
* Denormal floats are flushed to zero while training (late training was 5-7x slower with them).
Claims: ``easy_first@<threshold>`` per threshold (Delta = loss_nl - loss_lin < 0 on easy and > 0 on hard points,
95% bootstrap intervals over seeds) and ``stays_linear`` (kernel alignment and sign similarity on 256 fixed
points); the first are not measured unless the second holds.
Outputs: fig1.png/.pdf, grid.npz (every member's loss on the grid at each threshold), one record per run,
summary.txt and claims.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import lazyhasty as lh
from lazyhasty.data import yinyang, yinyang_labels, yinyang_regions
from lazyhasty.plotting import fig1_figure, save_figure

from . import Experiment, write_claims


@dataclass(frozen=True)
class Config:
    seeds: int = 100  # initialisations (members per regime): seeds seed .. seed + seeds - 1
    seed: int = 0  # the first seed
    n_train: int = 100  # yin-yang training points
    alphas: tuple[float, float] = (1.0, 100.0)  # non-linear, linearized
    lrs: tuple[float, float] = (0.05, 1.0)  # eta per regime, as alphas (see the module docstring: not 0.01)
    thresholds: tuple[float, ...] = (0.5, 0.4, 0.3)  # mean training loss levels compared at equal progress
    max_steps: int = 60_000  # budget per run (runs stop at the last threshold)
    members_per_call: int = 4  # seeds per vectorised ensemble (each trains on its own set among their union)
    probe_points: int = 256  # fixed uniform points for the linearity metrics
    grid: int = 250  # test grid resolution per side on [-1, 1]^2
    data_seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if len(self.alphas) != 2 or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be two numbers > 0 (non-linear, linear), got {self.alphas}")
        if self.seeds < 1 or self.grid < 10 or len(self.lrs) != 2 or min(self.lrs) <= 0 or self.members_per_call < 1:
            raise ValueError("seeds and members_per_call must be >= 1, grid >= 10 and lrs two rates > 0")
        if list(self.thresholds) != sorted(self.thresholds, reverse=True) or min(self.thresholds) <= 0:
            raise ValueError(f"thresholds must be positive and decreasing, got {self.thresholds}")


PRESETS = {
    "quick": Config(seeds=20, grid=100),
    "default": Config(),
    "paper": Config(lrs=(0.01, 0.01), max_steps=400_000),
}


class GridProbe:
    """At each threshold milestone, store the member's per-point loss on the test grid (not in the long table)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.maps: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, ctx):
        if ctx.milestone is None:
            return []
        with torch.no_grad():
            out = torch.cat([ctx.model(xb) for xb in self.x.split(16384)])
        loss = lh.BCE()(out, self.y).float().cpu().numpy()
        self.maps[(ctx.run_id, ctx.milestone)] = loss
        return [("grid", "all", "loss", float(loss.mean()))]


def grid_points(g: int, device: str = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    lin = np.linspace(-1, 1, g)
    xx, yy = np.meshgrid(lin, lin)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return torch.tensor(pts, dtype=torch.float32, device=device), pts


def run_id(alpha: float, seed: int) -> str:
    return f"alpha={alpha:g}-seed={seed}"


def training_set(cfg: Config, seed: int) -> lh.Split:
    """The training points of one seed (its own draw)."""
    return yinyang(cfg.n_train, seed=cfg.data_seed * 1_000_003 + seed)


def main(cfg: Config, out: Path) -> dict:
    wall0 = time.perf_counter()
    gx, pts = grid_points(cfg.grid, cfg.device)
    gy = torch.tensor(yinyang_labels(pts), dtype=torch.float32, device=cfg.device)
    probe = GridProbe(gx, gy)
    lin_x = torch.tensor(np.random.default_rng(cfg.data_seed).uniform(-1, 1, (cfg.probe_points, 2)),
                         dtype=torch.float32, device=cfg.device)
    linearity = lh.LinearityProbe(lin_x, split="probe", outputs="trace", per_layer=False)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    chunks = [seeds[i:i + cfg.members_per_call] for i in range(0, len(seeds), cfg.members_per_call)]
    train_s = 0.0
    torch.set_flush_denormal(True)  # denormals made late training 5-7x slower
    try:
        for alpha, lr in zip(cfg.alphas, cfg.lrs):
            print(f"[fig1] alpha = {alpha:g}: {cfg.seeds} members (own training set each), GD lr = {lr:g} / "
                  f"alpha^2, until loss < {min(cfg.thresholds):g} (budget {cfg.max_steps} steps)", flush=True)
            for chunk in chunks:
                sets = [training_set(cfg, s) for s in chunk]
                pool = lh.Split(torch.cat([d.x for d in sets]), torch.cat([d.y for d in sets])).to(cfg.device)
                weights = torch.block_diag(*[torch.ones(1, len(d)) for d in sets]).to(cfg.device)
                ens = lh.Ensemble([lh.AlphaScaled(lh.seeded(lambda: lh.MLP([2, 60, 60, 60, 1]), s), alpha)
                                   for s in chunk]).to(cfg.device)
                ids = [run_id(alpha, s) for s in chunk]
                recs = [lh.RunRecord(out / "runs" / rid).start(cfg, alpha=alpha, seed=s) for s, rid in zip(chunk, ids)]
                res = lh.train(ens, pool, loss="bce", stepper=lh.GD(lr), weights=weights,
                               stop=lh.Stop(max_steps=cfg.max_steps, loss_below=min(cfg.thresholds)),
                               schedule=lh.Schedule(levels=cfg.thresholds, points_per_decade=5),
                               probes=(probe, linearity), run_id=ids, record=recs, progress=True)
                train_s += res[0].wall_s - res[0].probe_s
    finally:
        torch.set_flush_denormal(False)
    # every member's grid loss at each threshold: (thresholds, 2 regimes, seeds, grid, grid); nan = not reached
    K, S, G = len(cfg.thresholds), cfg.seeds, cfg.grid
    maps = np.full((K, 2, S, G, G), np.nan, dtype=np.float32)
    for (rid, k), loss in probe.maps.items():
        a = float(rid.split("-")[0].split("=")[1])
        s = int(rid.split("seed=")[1]) - cfg.seed
        maps[k - 1, cfg.alphas.index(a), s] = loss.reshape(G, G)
    def write_npz(path):  # a file object, not a name: numpy would append ".npz" to the temporary name
        with open(path, "wb") as f:
            np.savez_compressed(f, losses=maps, points=pts, thresholds=np.array(cfg.thresholds),
                                alphas=np.array(cfg.alphas))

    lh.atomic_write(out / "grid.npz", write_npz)
    wall = time.perf_counter() - wall0
    return summarize(out, cfg, f"[fig1] wall {wall:.1f} s: training {train_s:.1f} s, evaluation {wall - train_s:.1f} s")


def summarize(out: Path, cfg: Config, timing: str = "") -> dict:
    """Statistics, claims and figure from the records and grid.npz only."""
    with np.load(out / "grid.npz") as z:
        maps, pts = z["losses"], z["points"]
    easy = yinyang_regions(pts) == 0  # half-planes, farther than 0.1 from every boundary; hard: everything else
    a_nl, a_lin = cfg.alphas
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    metrics = lh.load_runs(out / "runs")
    lin = lh.linearity_verdict(metrics, {s: (run_id(a_nl, s), run_id(a_lin, s)) for s in seeds})
    claims = [lh.stays_linear_claim(lin, f"alpha={a_nl:g}", f"alpha={a_lin:g}")]
    lines = [f"fig1: yin-yang, alpha = {a_nl:g} (non-linear) vs {a_lin:g} (linear), {cfg.seeds} seeds (own training "
             "set each), Delta = loss_nl - loss_lin on the grid", lh.linearity_line(lin)]
    for k, th in enumerate(cfg.thresholds):
        both = ~np.isnan(maps[k, 0, :, 0, 0]) & ~np.isnan(maps[k, 1, :, 0, 0])
        delta = (maps[k, 0, both] - maps[k, 1, both]).reshape(both.sum(), -1)  # (seeds, points)
        numbers: dict = {"threshold": th, "seeds": int(both.sum()),
                         "reached": {f"alpha={a:g}": int((~np.isnan(maps[k, r, :, 0, 0])).sum())
                                     for r, a in enumerate(cfg.alphas)}}
        held = None
        if both.sum() == cfg.seeds >= 2:  # every seed reached it in both regimes: no run left out
            d_easy, d_hard = delta[:, easy].mean(1), delta[:, ~easy].mean(1)
            ci_e, ci_h = lh.bootstrap_interval(d_easy), lh.bootstrap_interval(d_hard)
            held = bool(ci_e[1] < 0 and ci_h[0] > 0)
            numbers.update(easy_mean=float(d_easy.mean()), easy_ci95=ci_e, hard_mean=float(d_hard.mean()),
                           hard_ci95=ci_h)
            lines.append(f"loss < {th:g} ({both.sum()} seeds): Delta easy {d_easy.mean():+.4f} [{ci_e[0]:+.4f}, "
                         f"{ci_e[1]:+.4f}], hard {d_hard.mean():+.4f} [{ci_h[0]:+.4f}, {ci_h[1]:+.4f}]")
        else:
            numbers["note"] = f"{both.sum()} of {cfg.seeds} seeds reached loss {th:g} in both regimes (all needed)"
            lines.append(f"loss < {th:g}: {numbers['note']}; not measured")
        claims.append(lh.claim(f"easy_first@{th:g}", f"At mean training loss {th:g}, the non-linear run (alpha="
                               f"{a_nl:g}) has the lower loss on easy points and the higher loss on hard points than "
                               f"the linear one (alpha={a_lin:g}): 95% intervals of Delta below / above 0",
                               "George et al. 2022, Fig. 1, section 3.1", lh.gate(held, lin), **numbers))
    if timing:
        lines.append(timing)
    trace = lh.load_runs(out / "runs", table="trace")
    fig = fig1_figure(trace, maps, pts, cfg.thresholds, cfg.alphas, training_set(cfg, cfg.seed), metrics)
    paths = save_figure(fig, out / "fig1")
    return write_claims(out, "fig1", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig1", "yin-yang MLP, 100 seeds x alpha in {1, 100}: where the non-linear regime is ahead "
                        "(Fig. 1)", Config, PRESETS, main, default_preset="default")
