"""The phase experiment on an accelerator: the same cell on CPU and on ``--device`` (float64) must agree, and one
cell of the quick preset's size is timed on both (ratio printed). Usage: ``python benchmarks/phase_device.py``
(teacher task: needs no dataset)."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lazyhasty.experiments.phase import PRESETS, run_cell
from lazyhasty.runs import Output


def cell(device: str, dtype: str, h: int, sa: float, steps: int, ptr: int, out: Path) -> tuple[pd.DataFrame, float]:
    cfg = dataclasses.replace(PRESETS["quick"], source="teacher", widths=(h,), sqrt_h_alphas=(sa,), max_steps=steps,
                              device=device, dtype=dtype, ptr=ptr, pte=200, n_probe=50)
    t0 = time.perf_counter()
    rows = run_cell(cfg, Output(out))
    return pd.DataFrame(rows), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cols = ["t_end", "train_loss_end", "kernel_change_end", "param_change_end", "test_err_end", "t_half"]
    for sa in (0.1, 100.0):
        a, _ = cell("cpu", "float64", 64, sa, 150, 100, tmp / f"cpu{sa}")
        b, _ = cell(args.device, "float64", 64, sa, 150, 100, tmp / f"dev{sa}")
        rel = np.abs(a[cols].to_numpy() - b[cols].to_numpy()) / np.maximum(np.abs(a[cols].to_numpy()), 1e-12)
        print(f"sqrt(h) alpha = {sa:g}, float64, 150 steps: max relative difference cpu vs {args.device} over "
              f"{cols}: {np.nanmax(rel):.2e}")
    for h in (256, 1024):
        _, t_cpu = cell("cpu", "float32", h, 1.0, 300, 500, tmp / f"tc{h}")
        _, t_dev = cell(args.device, "float32", h, 1.0, 300, 500, tmp / f"td{h}")
        print(f"one cell, h = {h}, ptr = 500, 3 seeds, 300 steps, float32: cpu {t_cpu:.1f} s, {args.device} "
              f"{t_dev:.1f} s, ratio cpu/{args.device} = {t_cpu / t_dev:.1f}")


if __name__ == "__main__":
    main()
