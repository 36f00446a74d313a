"""The training engine on many members at once vs a Python loop of single runs, side by side in one process.

Issue targets (MLP 2 -> 64 -> 64 -> 64 -> 1, 100 yin-yang points, full-batch GD, float32, 100 members x 1000 steps):
the vectorised ensemble >= 3x faster than a loop of single runs (``train`` on one model at a time, the same
engine as an ensemble of one), and its achieved FLOP rate (forward + backward matmuls) against the dense float32
matmul rate measured in the same run (target >= 40%), eager and with ``train(compile=True)`` (its per-step time
from the steps after the first tenth of the run, so that the one-off compilation is printed apart). The loop is
timed on --loop-members members and scaled to --members (it is linear in the number of members); both are printed.

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

from lazyhasty import GD, MLP, AlphaScaled, Ensemble, Schedule, Stop, seeded, train
from lazyhasty.data import yinyang
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

    def vectorised(stamps=None, **measuring):
        ens = Ensemble([AlphaScaled(seeded(factory, s), 1.0) for s in range(args.members)])
        kw = {"probes": (), "schedule": sched, **measuring}
        if stamps is not None:
            kw["on_step"] = lambda ev: stamps.append(time.perf_counter())
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
    stamps: list[float] = []  # compiled: the time of every step after the first tenth (compilation happens in the
    t_full = vectorised(stamps, compile=True)  # first), and the whole run's wall time with its compilation
    first = args.steps // 10
    step_c = (stamps[-1] - stamps[first]) / (len(stamps) - 1 - first)
    rate = (rate0 + matmul_rate()) / 2
    achieved = flops_per_step(args.members, len(data)) * args.steps / t_vec
    achieved_c = flops_per_step(args.members, len(data)) / step_c
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {'-'.join(map(str, WIDTHS))}, "
          f"n = {len(data)}, {args.members} members x {args.steps} full-batch GD steps, float32")
    print(f"  vectorised ensemble: {t_vec:.2f} s eager, {t_full:.2f} s with train(compile=True) (compilation "
          f"{t_full - args.steps * step_c:.1f} s, then {step_c * 1e3:.2f} ms per step); loop over members: "
          f"{t_loop:.2f} s (timed on {args.loop_members}, scaled to {args.members})")
    ok1 = t_loop / t_vec >= 3
    frac, frac_c = achieved / rate, achieved_c / rate
    met1 = "met" if ok1 else "NOT MET"
    print(f"  {'loop / vectorised (eager)':<52} {t_loop / t_vec:>8.2f}x   target >= 3x    {met1}")
    print(f"  {'loop / vectorised (compiled, with its compilation)':<52} {t_loop / t_full:>8.2f}x")
    print(f"  {'achieved FLOP rate / dense matmul rate, eager':<52} {frac:>8.0%}"
          f"   ({achieved / 1e9:.1f} vs {rate / 1e9:.1f} GFLOP/s)")
    verdict = "met" if frac_c >= 0.4 else "NOT MET"
    print(f"  {'achieved FLOP rate / dense matmul rate, compiled':<52} {frac_c:>8.0%}    target >= 40%   {verdict}"
          f"   ({achieved_c / 1e9:.1f} GFLOP/s)")
    for name in ("schedule", "schedule+probes"):
        ratio = statistics.median(a / b for a, b in zip(times[name], times["bare"]))
        label = f"default {name} / bare engine"
        print(f"  {label:<52} {ratio:>8.2f}x   target <= 1.25x {'met' if ratio <= 1.25 else 'NOT MET'}"
              f"   (median of {args.repeats} interleaved pairs)")
    print(f"ensemble: {frac_c:.0%} of matmul peak, {t_loop / t_full:.1f}x a loop of single runs")


if __name__ == "__main__":
    main()
