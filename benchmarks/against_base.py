"""Wall time of every experiment's quick preset at this checkout vs a base git revision, side by side.

The base revision's ``src/`` is extracted with ``git archive`` into a temporary folder; each experiment then runs
through the command line (``lazyhasty run NAME --preset quick``) alternately with the base's source and this
checkout's (same interpreter and installed packages; ``PYTHONPATH`` selects the source), ``--rounds`` times, and
the ratio of median wall times (this / base) is printed. A ratio <= 1 means this checkout is not slower.

Usage: python benchmarks/against_base.py --base REV [--only demo,fig1] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("demo", "fig1", "fig2_noise", "fig2_cscores", "fig5_lr", "fig3", "fig4", "fig14", "phase")


def timed(src: Path, name: str, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "lazyhasty.cli", "run", name, "--preset", "quick", "--out", str(out)],
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{name} failed with {src}: {p.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--only", help="comma-separated experiments (default: all)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    names = args.only.split(",") if args.only else EXPERIMENTS
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(HERE), "archive", args.base, "src"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sources = {"base": base / "src", "this": HERE / "src"}
        print(f"{'experiment':<14} {'base s':>8} {'this s':>8} {'this/base':>10}", flush=True)
        ratios = []
        for name in names:
            times: dict[str, list[float]] = {"base": [], "this": []}
            for r in range(args.rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for which in order:
                    times[which].append(timed(sources[which], name, Path(tmp) / f"{which}-{name}-{r}"))
            b, t = statistics.median(times["base"]), statistics.median(times["this"])
            ratios.append(t / b)
            print(f"{name:<14} {b:>8.1f} {t:>8.1f} {t / b:>10.2f}", flush=True)
        print(f"all quick presets: this / base = {sum(ratios) / len(ratios):.2f} on average, "
              f"{max(ratios):.2f} at most (base {args.base})")


if __name__ == "__main__":
    main()
