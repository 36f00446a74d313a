"""Cost of one training step in each regime, relative to a plain step, measured side by side.

Issue target (MLP 2-256-256-256-1, N = 2000, full batch, float32):
    AlphaScaled step <= 1.1 x plain step   (f_theta0 on the training set is cached)
    Linearized  step <= 1.6 x plain step   (the linearisation at theta0 is built once and reused)

Each method runs the real trainer (``lazyhasty.train``, GD, no probes) for STEPS steps; methods are
interleaved over ROUNDS rounds so that machine noise hits all of them alike, and the ratio of medians is
printed. Usage: python benchmarks/regimes.py [--rounds 7] [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lazyhasty import GD, MLP, AlphaScaled, Linearized, Schedule, Split, Stop, same_init, seeded, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()

    torch.manual_seed(0)
    x = torch.rand(args.n, 2) * 2 - 1
    data = Split(x, torch.where(x[:, 1] <= 0, 1.0, -1.0))
    base = seeded(lambda: MLP([2, 256, 256, 256, 1]), 0)
    makers = {"plain": lambda: same_init(base), "AlphaScaled": lambda: AlphaScaled(same_init(base), 100.0),
              "Linearized": lambda: Linearized(same_init(base))}
    schedule = Schedule(points_per_decade=0, milestone_ratio=None)

    def one(make) -> float:
        model = make()
        train(model, data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=3), probes=(), schedule=schedule)
        t0 = time.perf_counter()  # warm (caches built, as in any run longer than two steps)
        train(model, data, loss="bce", stepper=GD(0.1), stop=Stop(max_steps=args.steps), probes=(),
              schedule=schedule)
        return (time.perf_counter() - t0) / args.steps

    times = {k: [] for k in makers}
    for _ in range(args.rounds):
        for k, make in makers.items():
            times[k].append(one(make))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, N = {args.n}, MLP 2-256-256-256-1, "
          f"float32, {args.rounds} rounds x {args.steps} steps")
    print(f"{'method':<12} {'median ms/step':>15} {'ratio':>7} {'target':>7}  met")
    targets = {"plain": None, "AlphaScaled": 1.1, "Linearized": 1.6}
    ok = True
    for k in makers:
        r = med[k] / med["plain"]
        tgt = targets[k]
        met = "" if tgt is None else ("yes" if r <= tgt else "NO")
        ok &= tgt is None or r <= tgt
        print(f"{k:<12} {1e3 * med[k]:>15.2f} {r:>7.2f} {'' if tgt is None else f'<= {tgt}':>7}  {met}")
    print("all targets met" if ok else "some targets NOT met")


if __name__ == "__main__":
    main()
