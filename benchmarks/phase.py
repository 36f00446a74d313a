"""What makes the phase experiment's quick preset fit in 15 minutes, measured side by side in one process.

1. Flushing denormal floats: the feature regime drives softplus far into its tails, where float32 underflows to
   denormals that are slow on CPUs. Ratio = one cell's training time without / with ``torch.set_flush_denormal``.
2. The ensemble engine: the seeds of one cell as one vectorised ensemble vs one run after another.
3. ``train(compile=True)`` on the same cell, its compilation included.
Both on one cell of the quick preset (Fashion-MNIST parity if installed, else the teacher task), with a fixed
step budget so that every variant does the same number of updates. Usage: ``python benchmarks/phase.py``.

``--grid [WIDTHS] [--splits 1,2]``: instead, the whole quick preset (or its grid at the given widths) as
``lazyhasty run phase`` runs it, then ``benchmarks/phase_plain.py`` (an independent plain-PyTorch script: the same
grid, members of one width batched, one thread per process, two processes; ``--splits``: its widest width in 1 and
in 2 jobs), one after the other, and their ratio (issue 33's target:
lazyhasty / plain <= 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lazyhasty import Schedule, SoftHinge, Stop, loss_probe, train
from lazyhasty.experiments.phase import PRESETS, cell_ensemble, load_task, stepper


def one(cfg, h, sa, seeds, steps, train_set, compile=False) -> float:
    cfg = dataclasses.replace(cfg, seed=seeds[0], seeds=len(seeds))
    ens = cell_ensemble(cfg, h, sa, tuple(train_set.x.shape[1:]))
    t0 = time.perf_counter()
    train(ens, train_set, loss=SoftHinge(cfg.hinge_beta), stepper=stepper(cfg, sa), stop=Stop(max_steps=steps),
          probes=(loss_probe,), schedule=Schedule(milestone_ratio=None, points_per_decade=0), progress=False,
          compile=compile)
    return time.perf_counter() - t0


def grid(widths: str, splits: tuple[int, ...] = (1, 2)) -> None:
    """``lazyhasty run phase`` (quick preset) and the plain script on the same grid, one after the other."""
    here = Path(__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lazyhasty.cli", "run", "phase", "--preset", "quick", "--set",
                        f"widths={widths}", "--out", f"{tmp}/phase"], check=True, stdout=subprocess.DEVNULL)
        ours = time.perf_counter() - t0
    plain = {}
    for split in splits:  # 1: one job per width (the reference); 2: the widest split in two (balanced)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(here / "phase_plain.py"), "--widths", widths, "--split", str(split)],
                       check=True)
        plain[split] = time.perf_counter() - t0
    print(f"phase quick preset, widths {widths}, 10 sqrt(h) alpha x 3 seeds per width, 2 processes:")
    labels = {1: "one job per width", 2: "widest split in two"}
    print(f"  lazyhasty run phase {ours:.0f} s (training, probes, records, analysis, figure); plain script "
          + ", ".join(f"{plain[k]:.0f} s {labels.get(k, f'widest split in {k}')}" for k in splits)
          + " (training and the final test error only)")
    for split in splits:
        label = labels.get(split, f"widest split in {split}")
        print(f"  {'lazyhasty / plain script, ' + label:<52} {ours / plain[split]:6.2f}x   target <= 1   "
              f"{'met' if ours <= plain[split] else 'NOT MET'}")


def main():
    if "--grid" in sys.argv:
        i = sys.argv.index("--grid")
        given = sys.argv[i + 1] if len(sys.argv) > i + 1 and not sys.argv[i + 1].startswith("-") else None
        splits = sys.argv[sys.argv.index("--splits") + 1:][:1] if "--splits" in sys.argv else ["1,2"]
        try:
            parts = tuple(int(k) for k in splits[0].split(","))
        except (IndexError, ValueError):
            parts = ()
        if not parts or min(parts) < 1:
            print(f"--splits expects jobs for the widest width, e.g. 1,2 (each >= 1); got {splits}", file=sys.stderr)
            sys.exit(2)
        return grid(given or ",".join(map(str, PRESETS["quick"].widths)), parts)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--sqrt-h-alpha", type=float, default=0.01, help="a feature-regime cell (denormals appear)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PRESETS["quick"]
    try:
        train_set, _ = load_task(cfg)
    except Exception as e:  # no Fashion-MNIST here: the teacher task has the same shapes after PCA
        print(f"[bench] {e}; using the teacher task")
        cfg = dataclasses.replace(cfg, source="teacher")
        train_set, _ = load_task(cfg)
    h, sa, steps = args.width, args.sqrt_h_alpha, args.steps
    seeds = list(range(cfg.seeds))
    print(f"one cell: h = {h}, sqrt(h) alpha = {sa:g}, {len(seeds)} seeds, ptr = {len(train_set.y)}, "
          f"{steps} steps, 1 thread")
    torch.set_flush_denormal(False)
    slow = one(cfg, h, sa, seeds, steps, train_set)
    torch.set_flush_denormal(True)
    fast = one(cfg, h, sa, seeds, steps, train_set)
    seq = sum(one(cfg, h, sa, [s], steps, train_set) for s in seeds)
    compiled = one(cfg, h, sa, seeds, steps, train_set, compile=True)
    print(f"{'variant':<44} {'seconds':>8} {'ratio':>7}")
    print(f"{'ensemble, denormals flushed (what phase does)':<44} {fast:8.2f} {1.0:7.2f}")
    print(f"{'ensemble, denormals kept':<44} {slow:8.2f} {slow / fast:7.2f}")
    print(f"{'seeds one after another, denormals flushed':<44} {seq:8.2f} {seq / fast:7.2f}")
    print(f"{'ensemble, flushed, train(compile=True)':<44} {compiled:8.2f} {compiled / fast:7.2f}")


if __name__ == "__main__":
    main()
