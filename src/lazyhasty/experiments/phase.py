"""phase: the feature-vs-lazy phase diagram of Geiger, Spigler, Jacot & Wyart (2020), an α × width sweep.

Setup (the issue's; the seed's slides): a binary task (class parity of Fashion-MNIST by default; MNIST, EMNIST,
CIFAR-10 from local copies, or a Gaussian teacher), centred with the training mean, PCA to ``pca`` dimensions
fitted on the training set, ||x|| = sqrt(d). Network: ``depth`` hidden layers of width h in the NTK
parametrisation (N(0, 1) weights, 1/sqrt(fan_in) per layer, last layer 1/sqrt(h)), normalised softplus
(beta = 5) or sqrt(2) ReLU, no bias; or a CNN (base width h) in the same parametrisation. Output
F = α (f_θ(x) − f_θ0(x)) (``AlphaScaled(center="zero")``), soft hinge with beta = 20 on y F.

Conventions. The trainer minimises the mean soft hinge of F with the step η/α² (see ``lazyhasty.train``): this is
exactly gradient flow on Geiger et al.'s L(w) = (1/α²) mean ℓ(α (f − f0), y), so our ``loss`` column is their
α²·L and our time t is theirs. Our α is the paper's α; the sweep's axis is √h·α (``sqrt_h_alphas``), the
collapse variable (α* ~ 1/√h). Paired runs: member ``seed`` has the same θ0 at every α (one ``seeded`` factory
per width).

Dynamics: gradient flow with Geiger et al.'s adaptive step (their published window 1e-4 < dgrad < 1e-2: a step
is rejected above ``max_dgrad``, dt grows by 1.1 below ``min_dgrad``, halves on rejection) or momentum flow
with τ = ``tau`` · min(1, √h·α) (the feature regime's time scale shrinks as √h·α). Stop when every training
margin is >= 1, or at ``max_steps`` / ``max_time``; unconverged runs are kept and flagged.

Equal progress. Within a CPU budget the lazy runs do not reach "every margin >= 1" (their last points are fitted
on a time scale > 1e4), so the scaling fits compare runs when the training loss first falls to ``progress``·L(0)
(every run in the quick preset gets there); end-of-run values are recorded and plotted too.

Layout: each (h, √h·α) cell is one vectorised ensemble over seeds, run as one job of the sweep runner (registry
``lazyhasty.experiments.phase:cells``; in its own process; an interrupted sweep resumes with the cells that are not
complete). Then the aggregation reads every cell's run records and ``outputs.npz`` (re-running a finished sweep
redoes only this), fits the scaling laws, draws ``phase.png`` and writes ``phase_runs.parquet``,
``phase_cells.parquet``, ``fits.csv``, ``summary.txt`` and ``claims.json``.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import lazyhasty as lh
from lazyhasty.data import SOURCES, binary_task, kriener_yinyang

from . import Experiment

HALF_DECADES = tuple(float(f"{10 ** (k / 2):.6g}") for k in range(-4, 6))  # 0.01 ... 316


@dataclass(frozen=True)
class Config:
    source: str = "fashion_mnist"  # fashion_mnist | mnist | emnist | cifar10 (class parity) | teacher | yinyang
    data_root: str | None = None  # folder of the dataset's files (needed for mnist, emnist, cifar10)
    ptr: int = 500  # training points (balanced)
    pte: int = 1000  # test points (balanced)
    pca: int | None = 10  # PCA dimension fitted on the training set (none: all pixels; the CNN needs none)
    whiten: bool = False
    arch: str = "fc"  # fc | cnn
    depth: int = 3  # hidden layers L (conv layers for the CNN)
    widths: tuple[int, ...] = (32, 64, 128, 256)  # h
    sqrt_h_alphas: tuple[float, ...] = HALF_DECADES  # the x axis, sqrt(h) * alpha
    activation: str = "softplus"  # softplus (normalised, beta) | relu (normalised: sqrt(2) relu)
    beta: float = 5.0  # softplus sharpness
    bias: bool = False
    hinge_beta: float = 20.0  # soft hinge sharpness
    seeds: int = 3  # initialisations per cell (members of one ensemble), seeds seed .. seed + seeds - 1
    seed: int = 0
    data_seed: int = 0  # which training / test points
    dynamics: str = "gradient_flow"  # gradient_flow | momentum_flow
    tau: float = 1.0  # momentum time scale at sqrt(h) alpha >= 1 (tau * min(1, sqrt(h) alpha))
    max_dgrad: float = 1e-2  # reject a step above this squared relative gradient change (Geiger et al.)
    min_dgrad: float = 1e-4  # grow dt below this
    max_steps: int = 2500
    max_time: float | None = None
    progress: float = 0.03  # equal-progress point for the fits: train loss <= progress * L(0)
    n_probe: int = 200  # training points on which the tangent kernel is measured
    dtype: str = "float32"  # float32 | float64
    compile: bool | None = None  # torch.compile each cell's step; None: when seeds * max_steps >= COMPILE_FROM
    workers: int = 2  # cells run at a time (local processes, or the SLURM array's parallelism)
    executor: str = "local"  # local | slurm (the sweep runner's back ends)
    slurm_partition: str | None = None
    slurm_time: int = 60  # minutes per cell job on SLURM
    gpus_per_run: int = 0  # GPUs per cell job on SLURM (with device=cuda)
    device: str = "cpu"

    def __post_init__(self):
        checks = [
            (self.source in (*SOURCES, "yinyang"),
             f"source must be one of {', '.join((*SOURCES, 'yinyang'))}, got {self.source!r}"),
            (self.source != "yinyang" or (self.pca is None and self.arch == "fc"),
             "yinyang has 4 features (Kriener et al.): set pca=none (and arch=fc)"),
            (self.arch in ("fc", "cnn"), f"arch must be fc or cnn, got {self.arch!r}"),
            (self.arch == "fc" or self.pca is None, "the CNN sees images: set pca=none"),
            (self.arch == "fc" or self.source != "teacher", "the CNN needs an image source, not the teacher"),
            (self.activation in ("softplus", "relu"), f"activation must be softplus or relu, got {self.activation!r}"),
            (self.dynamics in ("gradient_flow", "momentum_flow"), "dynamics must be gradient_flow or momentum_flow"),
            (self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}"),
            (len(self.widths) >= 1 and min(self.widths) >= 1, "widths must be integers >= 1"),
            (len(set(self.widths)) == len(self.widths), f"widths must be distinct, got {self.widths}"),
            (len(set(self.sqrt_h_alphas)) == len(self.sqrt_h_alphas), "sqrt_h_alphas must be distinct"),
            (self.pca is None or self.pca <= self.ptr, f"pca ({self.pca}) must be at most ptr ({self.ptr})"),
            (len(self.sqrt_h_alphas) >= 1 and min(self.sqrt_h_alphas) > 0, "sqrt_h_alphas must be numbers > 0"),
            (all(math.isfinite(a) for a in self.sqrt_h_alphas), "sqrt_h_alphas must be finite"),
            (self.seeds >= 1 and self.depth >= 1 and min(self.ptr, self.pte) >= 2, "seeds, depth >= 1; ptr, pte >= 2"),
            (0 < self.progress < 0.1, f"progress must be in (0, 0.1), got {self.progress}"),
            (0 < self.min_dgrad <= self.max_dgrad, "need 0 < min_dgrad <= max_dgrad"),
            (self.max_steps >= 1 and self.workers >= 1 and self.n_probe >= 2, "max_steps, workers >= 1; n_probe >= 2"),
            (self.tau > 0 and self.beta > 0 and self.hinge_beta > 0, "tau, beta and hinge_beta must be > 0"),
            (self.executor in ("local", "slurm"), "executor must be local or slurm"),
            (self.slurm_time >= 1 and self.gpus_per_run >= 0, "slurm_time must be >= 1 and gpus_per_run >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


PRESETS = {
    "quick": Config(),
    "tiny": Config(widths=(16, 32, 64), sqrt_h_alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0), seeds=2, ptr=100,
                   pte=200, max_steps=600, n_probe=50),
    # the paper's scale: 10k points, 16 widths from 10 to ~1400, 10 seeds, sqrt(h) alpha from 1e-4 to 1e6
    "paper": Config(ptr=10_000, pte=10_000, pca=None, seeds=10, max_steps=1_000_000, n_probe=500,
                    widths=tuple(int(round(w)) for w in np.geomspace(10, 1400, 16)),
                    sqrt_h_alphas=tuple(float(f"{10 ** (k / 2):.6g}") for k in range(-8, 13))),
    # the slides' CNN on CIFAR-10 (two classes by parity): pass data_root=<cifar-10-batches-py>
    "cnn": Config(source="cifar10", arch="cnn", pca=None, widths=(16, 32, 64), depth=3, ptr=2000, pte=2000,
                  seeds=3, max_steps=20_000, n_probe=200),
}


# A worker trains the cells of a width one after another and they share one compilation (3-5 s per worker and
# width), which makes a step 14% (h = 256) to 42% (h = 32) faster: cells that may take this many member-steps
# (the quick preset's: 3 seeds x 2500) repay it within about two cells; the tiny preset's (2 x 600) would not.
COMPILE_FROM = 5000


def compiles(cfg: Config) -> bool:
    """Whether a cell's step is compiled: ``compile`` when set, else by :data:`COMPILE_FROM` (a machine that cannot
    compile trains eagerly, with a note)."""
    return cfg.compile if cfg.compile is not None else cfg.seeds * cfg.max_steps >= COMPILE_FROM


def num_outputs(cfg: Config) -> int:
    return 3 if cfg.source == "yinyang" else 1


def factory(cfg: Config, h: int, x_shape: tuple[int, ...]):
    """The architecture at width h (called under ``seeded`` once per seed: θ0 depends on (seed, h) only)."""
    c = num_outputs(cfg)
    if cfg.arch == "fc":
        return lambda: lh.MLP([x_shape[0], *([h] * cfg.depth), c], activation=cfg.activation, beta=cfg.beta,
                              parametrization="ntk", bias=cfg.bias, normalize_activation=True)
    return lambda: lh.CNN(in_channels=x_shape[0], num_outputs=c, width=h, depth=cfg.depth, activation=cfg.activation,
                          parametrization="ntk", bias=cfg.bias, beta=cfg.beta, normalize_activation=True)


def cell_ensemble(cfg: Config, h: int, sqrt_h_alpha: float, x_shape: tuple[int, ...]) -> lh.Ensemble:
    """The members of one cell: AlphaScaled(seeded(factory, seed), α = √h·α / √h, center="zero") per seed, so the
    same seed has the same θ0 at every α."""
    make = factory(cfg, h, x_shape)
    return lh.Ensemble([lh.AlphaScaled(lh.seeded(make, s), sqrt_h_alpha / math.sqrt(h), center="zero")
                        for s in range(cfg.seed, cfg.seed + cfg.seeds)])


def load_task(cfg: Config):
    """(train, test) Splits. Binary tasks: y in {-1, +1}, one output. ``yinyang``: Kriener et al.'s three classes
    (features (x, y, 1 - x, 1 - y) as published, no centring or PCA), integer labels, three outputs and the
    multi-class soft hinge on f_y − max_{c≠y} f_c."""
    dtype = getattr(torch, cfg.dtype)
    if cfg.source == "yinyang":
        return (kriener_yinyang(cfg.ptr, seed=cfg.data_seed, dtype=dtype),
                kriener_yinyang(cfg.pte, seed=cfg.data_seed + 10_000, dtype=dtype))
    return binary_task(cfg.source, ptr=cfg.ptr, pte=cfg.pte, d=cfg.pca, whiten=cfg.whiten, seed=cfg.data_seed,
                       root=cfg.data_root, dtype=dtype, images=cfg.arch == "cnn")


def initial_loss(cfg: Config) -> float:
    return float(torch.nn.functional.softplus(torch.tensor(1.0, dtype=torch.float64), beta=cfg.hinge_beta))


def stepper(cfg: Config, sqrt_h_alpha: float):
    """The flow for one cell; the initial dt and momentum τ follow the feature regime's time scale min(1, √hα)."""
    scale = min(1.0, sqrt_h_alpha)
    common = dict(dt=1e-2 * scale, max_dgrad=cfg.max_dgrad, min_dgrad=cfg.min_dgrad, grow=1.1, shrink=2.0)
    if cfg.dynamics == "momentum_flow":
        return lh.MomentumFlow(tau=cfg.tau * scale, **common)
    return lh.GradientFlow(**common)


class OutputProbe:
    """Reports ||f − f0|| as the RMS over test points (and outputs) of F / α, the RMS of F = α (f − f0), and the
    smallest training margin; writes the test outputs F, (n, C), at the last equal-progress point (``milestone``)
    to ``folder/<run_id>.npy`` when it is measured: a file, not memory, since a cell resumed from its checkpoint
    does not measure that point again."""

    def __init__(self, folder: Path, milestone: int):
        self.folder, self.milestone = folder, milestone

    def __call__(self, ctx):
        out = ctx.outputs("test").reshape(len(ctx.splits["test"].y), -1).double()
        if ctx.milestone == self.milestone:
            npy = io.BytesIO()
            np.save(npy, out.cpu().numpy())
            lh.runs.atomic_write(self.folder / f"{ctx.run_id}.npy", npy.getvalue())
        alpha = float(ctx.model.alpha)
        rms = float(out.pow(2).mean().sqrt())
        margin = float(ctx.loss.margin(ctx.outputs("train"), ctx.splits["train"].y).min())
        return [("test", "all", "f_change", rms / alpha), ("test", "all", "output_rms", rms),
                ("train", "all", "min_margin", margin)]


def run_id(h: int, sqrt_h_alpha: float, seed: int) -> str:
    return f"h={h}-sqrt_h_alpha={sqrt_h_alpha:g}-seed={seed}"


def _value(m: pd.DataFrame, metric: str, split: str = "test") -> float:
    sel = m[(m.metric == metric) & (m.split == split) & (m.group.isin(["all", "-"]))]
    return float(sel.value.iloc[-1]) if len(sel) else float("nan")


# what run_rows reads of load_runs' table (every column of the config too, which each selection would copy)
ROW_COLUMNS = {"run_id", "step", "t", "milestone", "split", "group", "metric", "value", "h", "sqrt_h_alpha", "alpha",
               "seed", "f0_rms", "converged"}
# equal-progress points: milestone index -> name (levels L(0)/2, L(0)/10, progress * L(0))
PROGRESS_POINTS = {1: "half", 3: "progress"}


def run_rows(runs_dir: Path) -> list[dict]:
    """The numbers of every run in ``runs_dir``, read back with ``load_runs`` (tables checked against the sizes and
    checksums the runs recorded; config and status as columns): end-of-run values and the values at each
    equal-progress point (``*_half``: loss L(0)/2; ``*_progress``: loss progress * L(0))."""
    metrics = lh.load_runs(runs_dir, errors="raise")
    metrics = metrics[[c for c in metrics.columns if c in ROW_COLUMNS or c.startswith("status")]]  # not the config
    traces = dict(iter(lh.load_runs(runs_dir, table="trace", errors="raise").groupby("run_id")))
    rows = []
    for rid, m in metrics.groupby("run_id", sort=True):
        if rid not in traces:
            raise OSError(f"run {rid} in {runs_dir} has a metrics table but no trace table: its record is incomplete")
        s, tr, nan = m.iloc[0], traces[rid], float("nan")
        st = {k: (None if pd.isna(v) else v) for k, v in s.items() if k.startswith("status") or k == "converged"}
        loss0 = nan if st.get("status.loss0") is None else float(st["status.loss0"])
        last = m[m.step == m.step.max()]
        row = {"h": int(s.h), "sqrt_h_alpha": float(s.sqrt_h_alpha), "alpha": float(s.alpha), "seed": int(s.seed),
               "run_id": rid, "status": st["status"], "converged": bool(st["converged"]),
               "reason": st.get("status.reason") or "", "steps": st.get("status.steps"), "t_end": st.get("status.t"),
               "wall_s": st.get("status.wall_s"), "f0_rms": float(s.get("f0_rms", nan)),
               "train_loss_end": _value(last, "loss", "train"), "train_err_end": 1 - _value(last, "accuracy", "train"),
               "min_margin_end": _value(last, "min_margin", "train"), "test_err_end": 1 - _value(last, "accuracy"),
               "kernel_change_end": _value(last, "ntk_distance", "probe"),
               "param_change_end": _value(last, "param_distance", "-"), "f_change_end": _value(last, "f_change"),
               "t_half": lh.metrics.crossing_time(tr.t, tr.loss, 0.5 * loss0)}
        for k, name in PROGRESS_POINTS.items():
            at = m[m.milestone == k]
            reached = len(at) > 0
            row[f"reached_{name}"] = reached
            row[f"t_{name}"] = float(at.t.iloc[0]) if reached else nan
            for col, metric, split in (("test_err", "accuracy", "test"), ("kernel_change", "ntk_distance", "probe"),
                                       ("param_change", "param_distance", "-"), ("f_change", "f_change", "test")):
                v = _value(at, metric, split) if reached else nan
                row[f"{col}_{name}"] = 1 - v if col == "test_err" else v
        rows.append(row)
    return rows


def run_cell(cfg: Config, output: lh.runs.Output) -> None:
    """Train one (h, √h·α) cell: an ensemble over seeds. Writes one run record per seed and ``outputs.npz``
    (the test outputs F of every seed at the end and at the last equal-progress point); :func:`run_rows` reads
    them back."""
    torch.set_flush_denormal(True)  # softplus far in its tails makes denormal floats: 5x slower without this
    out = output.path
    h, sa = cfg.widths[0], cfg.sqrt_h_alphas[0]
    alpha = sa / math.sqrt(h)
    train_set, test_set = load_task(cfg)
    train_set, test_set = train_set.to(cfg.device), test_set.to(cfg.device)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    ens = cell_ensemble(cfg, h, sa, tuple(train_set.x.shape[1:])).to(device=cfg.device, dtype=getattr(torch, cfg.dtype))
    ids = [run_id(h, sa, s) for s in seeds]
    with torch.no_grad():  # |f(w0, x)| on the test points: is subtracting f0 needed (Geiger et al.)?
        f0 = [float(m.model(test_set.x).double().pow(2).mean().sqrt()) for m in (ens.member(k) for k in
                                                                                     range(len(seeds)))]
    recs = [output.record(f"runs/{rid}", cfg, h=h, sqrt_h_alpha=sa, alpha=alpha, seed=s, f0_rms=f)
            for s, rid, f in zip(seeds, ids, f0)]
    l0 = initial_loss(cfg)
    levels = (0.5 * l0, 0.1 * l0, cfg.progress * l0)
    progress_outputs = out / "progress_outputs"
    progress_outputs.mkdir(exist_ok=True)
    outputs = OutputProbe(progress_outputs, len(levels))
    probes = (lh.loss_probe, lh.parameter_distance_probe, outputs,
              lh.LinearityProbe(train_set.x[: cfg.n_probe], signs=False, representation=False))
    print(f"[phase] h = {h}, sqrt(h) alpha = {sa:g} (alpha = {alpha:.4g}): {len(seeds)} seeds, {cfg.dynamics}, "
          f"up to {cfg.max_steps} steps", flush=True)
    lh.train(ens, train_set, loss=lh.SoftHinge(cfg.hinge_beta), stepper=stepper(cfg, sa),
             stop=lh.Stop(max_steps=cfg.max_steps, max_time=cfg.max_time, min_margin=1.0),
             splits={"test": test_set}, probes=probes, run_id=ids, record=recs, data_seed=cfg.data_seed,
             schedule=lh.Schedule(levels=levels, points_per_decade=4), compile=compiles(cfg),
             checkpoint=output.checkpoints)
    with torch.no_grad():  # F at the end, from the trained parameters (the last measurement's outputs)
        F = torch.cat([ens(xb) for xb in test_set.x.split(4096)], dim=1)  # (seeds, n, C)
    f_end = F.reshape(len(seeds), len(test_set.y), -1).double().cpu().numpy()
    f_prog = [np.load(f) if (f := progress_outputs / f"{rid}.npy").is_file() else np.full_like(f_end[0], np.nan)
              for rid in ids]
    y = test_set.y.cpu().numpy()

    def write_npz(path):
        with open(path, "wb") as f:
            np.savez_compressed(f, f_end=f_end, f_progress=np.stack(f_prog), y=y, seeds=np.array(seeds))

    lh.runs.atomic_write(out / "outputs.npz", write_npz)


def cell_configs(cfg: Config) -> list[Config]:
    """One config per (h, √h·α), the widest first (the longest jobs start first). How cells are scheduled is not
    part of a cell's config, so a sweep started locally can be finished on a cluster and vice versa."""
    return [replace(cfg, widths=(h,), sqrt_h_alphas=(sa,), workers=1, executor="local", slurm_partition=None,
                    slurm_time=60, gpus_per_run=0)
            for h in sorted(cfg.widths, reverse=True) for sa in cfg.sqrt_h_alphas]


def cells() -> dict[str, Experiment]:
    """The registry of phase's cells, the sweep's jobs: ``phase`` trains one (h, √h·α) cell (:func:`run_cell`)."""
    return {"phase": Experiment("phase", "one (h, sqrt(h) alpha) cell of the phase diagram", Config, PRESETS,
                                run_cell)}


def cell_jobs(cfg: Config, out: Path) -> list:
    """The sweep runner's jobs, one per cell, in ``out/cells/<id>`` (the id hashes the cell's config)."""
    return lh.runs.config_jobs(f"{__name__}:cells", "phase", "quick", cell_configs(cfg), out / "cells")


def run_cells(cfg: Config, output: lh.runs.Output) -> dict:
    """Every cell as a job of the sweep runner under ``out/cells`` (resumable: complete cells are kept), with the
    experiment's checkpoint interval and TensorBoard setting."""
    jobs = cell_jobs(cfg, output.path)
    slurm = {"partition": cfg.slurm_partition, "time": cfg.slurm_time, "gpus_per_run": cfg.gpus_per_run}
    every = output.checkpoints.every_s if output.checkpoints is not None else 60.0
    return lh.run_sweep(jobs, output.path / "cells", executor=cfg.executor, workers=min(cfg.workers, len(jobs)),
                        slurm=slurm, checkpoint_every_s=every, tensorboard=output.tensorboard)


def predict(F: np.ndarray) -> np.ndarray:
    """Predicted labels from outputs (..., n, C): the sign for one output (labels +-1), else the arg-max."""
    return np.sign(F[..., 0]) if F.shape[-1] == 1 else F.argmax(-1)


def collect(cfg: Config, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, cells) from the records of this config's finished cells (cells of other configs in the same folder
    are left out): every run's row (:func:`run_rows`), and per cell the ensemble predictor and the variance over
    seeds (from ``outputs.npz``)."""
    runs, cells = [], []
    for job in cell_jobs(cfg, out):
        npz = job.dir / "outputs.npz"
        if not npz.is_file():
            continue
        rows = run_rows(npz.parent / "runs")
        if not rows:
            continue
        runs += rows
        with np.load(npz) as z:
            f_end, f_prog, y = z["f_end"], z["f_progress"], z["y"]
        h, sa = rows[0]["h"], rows[0]["sqrt_h_alpha"]
        row = {"h": h, "sqrt_h_alpha": sa, "alpha": rows[0]["alpha"], "seeds": len(rows),
               "converged": sum(r["converged"] for r in rows)}
        for when, F in (("end", f_end), ("progress", f_prog)):  # F: (seeds, n, C)
            F = F.reshape(len(F), len(y), -1)
            Fk = F[np.isfinite(F).reshape(len(F), -1).all(axis=1)]
            nan = float("nan")
            row[f"ensemble_test_err_{when}"] = float((predict(Fk.mean(0)) != y).mean()) if len(Fk) else nan
            row[f"single_test_err_{when}"] = float((predict(Fk) != y).mean()) if len(Fk) else nan
            var = float(Fk.var(axis=0, ddof=1).mean()) if len(Fk) >= 2 else nan
            row[f"var_{when}"] = var
            row[f"h_var_{when}"] = h * var
        cells.append(row)
    if not runs:
        return pd.DataFrame(), pd.DataFrame()
    return (pd.DataFrame(runs).sort_values(["h", "sqrt_h_alpha", "seed"], ignore_index=True),
            pd.DataFrame(cells).sort_values(["h", "sqrt_h_alpha"], ignore_index=True))


def main(cfg: Config, output: lh.runs.Output) -> dict:
    out = output.path
    wall0 = time.perf_counter()
    load_task(cfg)  # a missing or corrupt dataset is a clear error here, before any worker starts
    counts = run_cells(cfg, output)["counts"]
    if counts["failed"]:
        print(f"[phase] {counts['failed']} cells failed (see cells/*/worker.log); the analysis uses the others. "
              "Run the same command again to retry them.", flush=True)
    runs, cells = collect(cfg, out)
    if runs.empty:
        raise lh.UsageError(f"no cell finished; see the worker logs under {out / 'cells'}")
    lh.runs.atomic_write(out / "phase_runs.parquet", runs)
    lh.runs.atomic_write(out / "phase_cells.parquet", cells)
    from .phase_analysis import analyse  # scipy and matplotlib: the aggregation needs them, a cell's worker does not

    widest = [j.dir / "runs" for j in cell_jobs(cfg, out) if j.config["widths"] == [int(runs.h.max())]]
    claims, text, extra = analyse(out, cfg, [d for d in widest if d.is_dir()])
    lh.runs.atomic_write(out / "analysis.json", {**extra, "cells_failed": counts["failed"],
                                            "wall_s": round(time.perf_counter() - wall0, 1)})
    return lh.claims.write(out, "phase", claims, text + f"\nwall time: {time.perf_counter() - wall0:.0f} s",
                        out / "phase.png")


EXPERIMENT = Experiment("phase", "feature vs lazy phase diagram (Geiger et al. 2020): alpha x width sweep, scaling "
                        "fits, ensemble predictor", Config, PRESETS, main, demo_preset="tiny",
                        # its cells are sweep jobs named by their config: a resume with another grid reuses those
                        # it shares with the first and runs the others
                        resume_may_change=("widths", "sqrt_h_alphas", "workers", "executor", "slurm_partition",
                                           "slurm_time"))
