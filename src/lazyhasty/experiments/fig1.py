"""fig1: the yin-yang toy of George et al. (Fig. 1), many initialisations in both regimes, on the ensemble engine.

Setup (section 3.1): MLP 2 -> 60 -> 60 -> 60 -> 1 (ReLU, PyTorch default init), 100 yin-yang training points,
full-batch GD, binary cross-entropy on +-1 labels, alpha in {1, 100} forked from the same initialisation.
Each seed draws its own initialisation *and its own training set* (100 fresh points): the members of a vectorised
ensemble each train on their own set (``train(ensemble, [set_0, ...])``, one computation for all of them), every
run until its training loss reaches the last threshold (``Stop.reach``).

Choices where the paper is silent or its settings are out of reach on a CPU:
* Learning rates: the text says 0.01 for both; at 0.01 the alpha = 100 runs need ~1.6e5 steps to reach a mean
  loss of 0.3 (over an hour on 2 cores). The regimes are compared at equal training loss, not at equal time, so
  each gets the largest rate tried at which its loss descends at every step: eta = 0.05 for alpha = 1 (at 0.5 the
  loss rose on 25-37% of the steps) and eta = 1 for alpha = 100 (nearly linear, no rise), and alpha = 100 is also
  trained at eta = 0.5 (``rate_check``): each claim holds only where its verdict is the same with that run.
  ``paper`` keeps 0.01 for both.
* Thresholds on the mean training loss: 0.5, 0.4, 0.3 (at initialisation ~0.69).
* Easy points: grid points in the half-planes farther than 0.1 from every class boundary. Hard points: all the
  others (inside the two discs, within 0.1 of their rim, or within 0.1 of the line between the halves). The grid
  is a probe split with these two groups.
* Denormal floats are flushed to zero while training (late training was 5-7x slower with them); the step is
  ``torch.compile``d where the machine can.
Claims (``compare_runs`` on the records, the thresholds as its levels): ``easy_first@<threshold>`` per threshold
(Delta = loss_nl - loss_lin < 0 on easy and > 0 on hard points, 95% bootstrap intervals over seeds) and
``stays_linear``. Outputs: fig1.png/.pdf, grid/<run>-<k>.npy (every member's loss on the grid at each threshold,
written when measured), one record per run, summary.txt and claims.json.
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

from . import Experiment

RATE_CHECK = "lazy,half_rate"


@dataclass(frozen=True)
class Config:
    seeds: int = 100  # initialisations (members per regime): seeds seed .. seed + seeds - 1
    seed: int = 0  # the first seed
    n_train: int = 100  # yin-yang training points
    alphas: tuple[float, float] = (1.0, 100.0)  # non-linear, linearized
    lrs: tuple[float, float] = (0.05, 1.0)  # eta per regime, as alphas (see the module docstring: not 0.01)
    thresholds: tuple[float, ...] = (0.5, 0.4, 0.3)  # mean training loss levels compared at equal progress
    max_steps: int = 60_000  # budget per run (runs stop at the last threshold)
    members_per_call: int = 100  # seeds per vectorised ensemble (each member trains on its own set)
    rate_check: bool = True  # also train the linear regime at half its rate: is every verdict the same?
    compile: bool = True  # torch.compile the training step (~2x the eager speed after one compilation, which its
    # three rates share); eager, with a note, where this machine cannot compile
    probe_points: int = 256  # fixed uniform points for the linearity metrics
    grid: int = 250  # test grid resolution per side on [-1, 1]^2
    data_seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if len(self.alphas) != 2 or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be two numbers > 0 (non-linear, linear), got {self.alphas}")
        if self.seeds < 1 or self.grid < 10 or len(self.lrs) != 2 or min(self.lrs) <= 0 or self.members_per_call < 1:
            raise ValueError("seeds and members_per_call must be >= 1, grid >= 10 and lrs two rates > 0")
        if list(self.thresholds) != sorted(self.thresholds, reverse=True) or not 0 < min(self.thresholds) \
                or not max(self.thresholds) < 0.69:  # above it every run would stop at step 0
            raise ValueError(f"thresholds must be decreasing and lie between 0 and the initial loss (~0.69, binary "
                             f"cross-entropy at outputs near 0), got {self.thresholds}")


PRESETS = {
    "quick": Config(seeds=20, grid=100),
    "default": Config(),
    "paper": Config(lrs=(0.01, 0.01), max_steps=400_000),
}


class GridMaps:
    """At each threshold milestone, the member's loss on every grid point, written to ``folder/<run>-<k>.npy``
    (atomic; not in the long table: 10^4 - 10^5 points): the figure's maps, which a resumed run finds on disk."""

    def __init__(self, folder: Path, y: torch.Tensor):
        self.folder, self.y = folder, y

    def __call__(self, ctx):
        if ctx.milestone is not None:
            loss = lh.BCE()(ctx.outputs("grid"), self.y).float().cpu().numpy()

            def write(path):
                with open(path, "wb") as f:
                    np.save(f, loss)

            self.folder.mkdir(parents=True, exist_ok=True)
            lh.runs.atomic_write(self.folder / f"{ctx.run_id}-{ctx.milestone}.npy", write)
        return []


def grid_split(g: int, device: str = "cpu") -> tuple[lh.Split, np.ndarray]:
    """The g x g test grid on [-1, 1]^2 with its true labels and groups ``easy`` (half-planes, farther than 0.1
    from every class boundary) and ``hard`` (everything else); also the points as numpy."""
    lin = np.linspace(-1, 1, g)
    xx, yy = np.meshgrid(lin, lin)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    easy = yinyang_regions(pts) == 0
    split = lh.Split(torch.tensor(pts, dtype=torch.float32, device=device),
                     torch.tensor(yinyang_labels(pts), dtype=torch.float32, device=device),
                     lh.Groups({"easy": easy, "hard": ~easy}, n=len(pts)))
    return split, pts


def run_id(regime: str, seed: int) -> str:
    return f"{regime}-seed={seed}"


def training_set(cfg: Config, seed: int) -> lh.Split:
    """The training points of one seed (its own draw)."""
    return yinyang(cfg.n_train, seed=cfg.data_seed * 1_000_003 + seed)


def regimes(cfg: Config) -> list[tuple[str, float, float]]:
    """(name, alpha, lr) of every regime: the two of the comparison, and the lazy one at half its rate."""
    (a_nl, a_lin), (lr_nl, lr_lin) = cfg.alphas, cfg.lrs
    out = [(f"alpha={a_nl:g}", a_nl, lr_nl), (f"alpha={a_lin:g}", a_lin, lr_lin)]
    return out + ([(RATE_CHECK, a_lin, lr_lin / 2)] if cfg.rate_check else [])


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    wall0 = time.perf_counter()
    grid, _ = grid_split(cfg.grid, cfg.device)
    maps = GridMaps(out / "grid", grid.y)
    lin_x = torch.tensor(np.random.default_rng(cfg.data_seed).uniform(-1, 1, (cfg.probe_points, 2)),
                         dtype=torch.float32, device=cfg.device)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    chunks = [seeds[i:i + cfg.members_per_call] for i in range(0, len(seeds), cfg.members_per_call)]
    target = (("train", "all", "loss", min(cfg.thresholds)),)  # each member's own training loss
    torch.set_flush_denormal(True)  # denormals made late training 5-7x slower
    try:
        for name, alpha, lr in regimes(cfg):
            print(f"[fig1] {name}: {cfg.seeds} members (own training set each), GD lr = {lr:g} / alpha^2, until "
                  f"loss < {min(cfg.thresholds):g} (budget {cfg.max_steps} steps)", flush=True)
            for chunk in chunks:
                sets = [training_set(cfg, s).to(cfg.device) for s in chunk]
                ens = lh.Ensemble([lh.AlphaScaled(lh.seeded(lambda: lh.MLP([2, 60, 60, 60, 1]), s), alpha)
                                   for s in chunk]).to(cfg.device)
                ids = [run_id(name, s) for s in chunk]
                recs = [output.record(f"runs/{rid}", cfg, regime=name, alpha=alpha, lr=lr, seed=s)
                        for s, rid in zip(chunk, ids)]
                lh.train(ens, sets, loss="bce", stepper=lh.GD(lr), splits={"grid": grid},
                         stop=lh.Stop(max_steps=cfg.max_steps, reach=target),
                         schedule=lh.Schedule(levels=cfg.thresholds, points_per_decade=5),
                         probes=(lh.loss_probe, lh.LinearityProbe(lin_x), maps), run_id=ids, record=recs,
                         progress=True, compile=cfg.compile, checkpoint=output.checkpoints)
    finally:
        torch.set_flush_denormal(False)
    return summarize(out, cfg, f"[fig1] wall {time.perf_counter() - wall0:.1f} s")


def grid_maps(out: Path, cfg: Config) -> np.ndarray:
    """Every member's grid loss at each threshold, (thresholds, 2 regimes, seeds, grid, grid), NaN where a run did
    not reach it, from the files :class:`GridMaps` wrote."""
    K, S, G = len(cfg.thresholds), cfg.seeds, cfg.grid
    maps = np.full((K, 2, S, G, G), np.nan, dtype=np.float32)
    for r, (name, _, _) in enumerate(regimes(cfg)[:2]):
        for s in range(S):
            for k in range(K):
                f = out / "grid" / f"{run_id(name, cfg.seed + s)}-{k + 1}.npy"
                if f.exists():
                    maps[k, r, s] = np.load(f, allow_pickle=False).reshape(G, G)
    return maps


def summarize(out: Path, cfg: Config, timing: str = "") -> dict:
    """Statistics, claims and figure from the records and the grid maps only."""
    metrics = lh.load_runs(out / "runs")
    names = [n for n, _, _ in regimes(cfg)]
    comp = lh.compare_runs(metrics, progress=("train", "all", "loss"), feature=names[0], lazy=names[1],
                           levels=list(cfg.thresholds), settings={"rate_check": RATE_CHECK if cfg.rate_check else None})
    lin = comp.stays_linear()
    claims = [lh.claims.stays_linear_claim(lin, names[0], names[1])]
    lines = [f"fig1: yin-yang, {names[0]} (non-linear) vs {names[1]} (linear), {cfg.seeds} seeds (own training set "
             "each), Delta = loss_nl - loss_lin on the grid at equal training loss", lh.claims.linearity_line(lin)]
    def at_threshold(th: float):
        def verdict(c: lh.Comparison) -> tuple[bool | None, dict]:
            bl = c.by_level[(c.by_level.split == "grid") & np.isclose(c.by_level.progress, th)].set_index("group")
            easy, hard = bl.loc["easy"], bl.loc["hard"]
            measured = "not measured" not in (easy.ahead, hard.ahead)
            return (easy.ahead == "feature" and hard.ahead == "lazy") if measured else None, dict(
                threshold=th, seeds=int(easy.seeds), easy_mean=easy.gap, easy_ci95=[easy.ci_low, easy.ci_high],
                hard_mean=hard.gap, hard_ci95=[hard.ci_low, hard.ci_high], note=easy.note or hard.note)
        return verdict

    for th in cfg.thresholds:
        c = comp.judged(f"easy_first@{th:g}", f"At mean training loss {th:g}, the non-linear run ({names[0]}) has the "
                        f"lower loss on easy points and the higher loss on hard points than the linear one "
                        f"({names[1]}): 95% intervals of Delta below / above 0",
                        "George et al. 2022, Fig. 1, section 3.1", at_threshold(th))
        n = c["numbers"]
        lines.append(f"loss {th:g}: Delta easy {n['easy_mean']:+.4f} [{n['easy_ci95'][0]:+.4f}, "
                     f"{n['easy_ci95'][1]:+.4f}], hard {n['hard_mean']:+.4f} [{n['hard_ci95'][0]:+.4f}, "
                     f"{n['hard_ci95'][1]:+.4f}] ({n['seeds']} seeds)")
        claims.append(c)
    if timing:
        lines.append(timing)
    maps = grid_maps(out, cfg)
    _, pts = grid_split(cfg.grid)
    trace = lh.load_runs(out / "runs", table="trace")
    trace = trace[trace.regime.isin(names[:2])]
    fig = fig1_figure(trace, maps, pts, cfg.thresholds, cfg.alphas, training_set(cfg, cfg.seed),
                      metrics[metrics.regime.isin(names[:2])])
    paths = save_figure(fig, out / "fig1")
    return lh.claims.write(out, "fig1", claims, "\n".join(lines), paths[0])


EXPERIMENT = Experiment("fig1", "yin-yang MLP, 100 seeds x alpha in {1, 100}: where the non-linear regime is ahead "
                        "(Fig. 1)", Config, PRESETS, main, default_preset="default")
