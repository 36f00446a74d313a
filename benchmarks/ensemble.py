"""The training engine on many members at once vs a Python loop of single runs, side by side in one process.

Issue targets (MLP 2 -> 64 -> 64 -> 64 -> 1, 100 yin-yang points, full-batch GD, float32, 100 members x 1000 steps):
the vectorised ensemble >= 3x faster than a loop of single runs (``train`` on one model at a time, the same
engine as an ensemble of one), and its achieved FLOP rate (forward + backward matmuls) against the dense float32
matmul rate measured in the same run (target >= 40%). The loop is timed on --loop-members members and scaled to
--members (it is linear in the number of members); both are printed.

Measuring must not cost more than training (target: <= 1.25x): the same ensemble with the default measurement
schedule (log-spaced points and equal-progress milestones) and then with the default probes too, each timed
against the bare engine (no measurement at all), interleaved.

Usage: python benchmarks/ensemble.py [--members 100] [--steps 1000] [--loop-members 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lazyhasty import GD, MLP, AlphaScaled, Ensemble, Schedule, Stop, seeded, train, yinyang
from lazyhasty.dynamics.probes import DEFAULT_PROBES

WIDTHS = [2, 64, 64, 64, 1]


def factory():
    return MLP(WIDTHS)


def matmul_rate() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / statistics.median(times)


def flops_per_step(members: int, n: int) -> float:
    """Forward (1x) and backward (2x: input and weight gradients) matmul FLOPs of one full-batch step."""
    macs = sum(a * b for a, b in zip(WIDTHS[:-1], WIDTHS[1:])) * n
    return 3 * 2 * macs * members


def main():
    ap = argparse.ArgumentParser(description="ensemble engine benchmark")
    ap.add_argument("--members", type=int, default=100)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--loop-members", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = yinyang(100, seed=0)
    sched = Schedule(points_per_decade=0, milestone_ratio=None)
    stop = Stop(max_steps=args.steps)

    def vectorised(**measuring):
        ens = Ensemble([AlphaScaled(seeded(factory, s), 1.0) for s in range(args.members)])
        kw = {"probes": (), "schedule": sched, **measuring}
        t0 = time.perf_counter()
        train(ens, data, loss="bce", stepper=GD(0.01), stop=stop, progress=False, **kw)
        return time.perf_counter() - t0

    def loop():
        t0 = time.perf_counter()
        for s in range(args.loop_members):
            train(AlphaScaled(seeded(factory, s), 1.0), data, loss="bce", stepper=GD(0.01), stop=stop, probes=(),
                  schedule=sched)
        return (time.perf_counter() - t0) * args.members / args.loop_members

    rate0 = matmul_rate()
    times = {"bare": [], "schedule": [], "schedule+probes": []}
    for _ in range(args.repeats):  # interleaved: the machine's drift hits every variant alike
        times["bare"].append(vectorised())
        times["schedule"].append(vectorised(schedule=Schedule()))
        times["schedule+probes"].append(vectorised(schedule=Schedule(), probes=DEFAULT_PROBES))
    t_vec = min(times["bare"])
    t_loop = loop()
    rate = (rate0 + matmul_rate()) / 2
    achieved = flops_per_step(args.members, len(data)) * args.steps / t_vec
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {'-'.join(map(str, WIDTHS))}, "
          f"n = {len(data)}, {args.members} members x {args.steps} full-batch GD steps, float32")
    print(f"  vectorised ensemble: {t_vec:.2f} s; loop over members: {t_loop:.2f} s "
          f"(timed on {args.loop_members}, scaled to {args.members})")
    ok1 = t_loop / t_vec >= 3
    frac = achieved / rate
    ok2 = frac >= 0.4
    print(f"  {'loop / vectorised':<40} {t_loop / t_vec:>8.2f}x   target >= 3x    {'met' if ok1 else 'NOT MET'}")
    verdict = "met" if ok2 else "NOT MET"
    print(f"  {'achieved FLOP rate / dense matmul rate':<40} {frac:>8.0%}    target >= 40%   {verdict}"
          f"   ({achieved / 1e9:.1f} vs {rate / 1e9:.1f} GFLOP/s)")
    for name in ("schedule", "schedule+probes"):
        ratio = statistics.median(a / b for a, b in zip(times[name], times["bare"]))
        label = f"default {name} / bare engine"
        print(f"  {label:<40} {ratio:>8.2f}x   target <= 1.25x {'met' if ratio <= 1.25 else 'NOT MET'}"
              f"   (median of {args.repeats} interleaved pairs)")
    print(f"ensemble: {frac:.0%} of matmul peak, {t_loop / t_vec:.1f}x a loop of single runs")


if __name__ == "__main__":
    main()
