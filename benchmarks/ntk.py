"""Empirical NTK: lazyhasty's structured engine against the usual ways, measured side by side in one run.

Setting of the issue: MLP 784-512-512-10 (ReLU), n = 1000 Fashion-MNIST-sized inputs, the full [n, C, n, C]
Gram, float32, the machine's cores. Competitors:
  (a) per-example backward loop, then J J^T (the approach of Geiger et al.'s code),
  (b) torch.func vmap(jacrev) + contraction (lazyhasty's generic ``method="jacobian"``),
  (c) nngeometry 0.4 ``GramMatrix`` (optional: ``pip install --target benchmarks/.deps --no-deps nngeometry==0.4``;
      it is never a dependency of lazyhasty).
(a) and (b) materialise per-example Jacobians (n C x P = 27 GB at n = 1000), so they are timed against the
structured engine at a smaller n (``--n-small``); both scale as n^2, and the extrapolation to n is printed
as such. Targets: structured >= 100x faster than (b), >= 4x faster than (c), achieved FLOP rate >= 40% of the
dense float32 matmul rate measured in this run, peak extra memory <= 3x the Gram's bytes + one activation block.
Also: one full measurement (NTK on 500 probe examples + sign similarity + representation alignment) relative to
one training epoch on 10k examples (SGD, batch 128).

Second case (issue 17): the CNN of lazyhasty.CNN (3 conv layers 1-32-64-128, 3x3, stride 2 after the first,
global average pooling, linear read-out) on 1x28x28 inputs, full Gram at n = 500 (``--n-cnn``): the structured
Conv2d rule against nngeometry 0.4 (target >= 10x) and against the generic vmap(jacrev) path. Third case: a
sequence model (embedding, a TransformerEncoderLayer, per-token read-out averaged over 16 tokens) at n = 200,
structured (per-token Linear rules, attention on the generic rule) against the generic path; nngeometry has no
rule for attention.

Usage: python benchmarks/ntk.py [--n 1000] [--n-small 100] [--n-cnn 500] [--rounds 3] [--cnn-repeats 5]
[--only cnn]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / ".deps"))  # optional benchmark-only packages (nngeometry)

from lazyhasty import (  # noqa: E402
    CNN,
    MLP,
    SGD,
    AlphaScaled,
    LinearityProbe,
    ProbeContext,
    Schedule,
    Split,
    Stop,
    ntk_gram,
    seeded,
    train,
)

WIDTHS = [784, 512, 512, 10]


def make_model():
    return seeded(lambda: MLP(WIDTHS), 0)


def median_time(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(rounds: int) -> float:
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    return 2 * 4096**3 / median_time(lambda: a @ b, max(rounds, 3))


def structured_flops(n: int, C: int = 10) -> float:
    """FLOPs the structured engine performs for the full Gram of this MLP (x2 = x1)."""
    P = sum(fi * fo + fo for fi, fo in zip(WIDTHS[:-1], WIDTHS[1:]))
    flops = 2 * n * P + C * 2 * n * P  # forward + C batched backward passes (input gradients)
    for k, (fi, fo) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        flops += 2 * n * n * fi  # a a^T
        if k < len(WIDTHS) - 2:
            flops += 2 * (n * C) ** 2 * fo + 2 * (n * C) ** 2  # delta delta^T, then G (.) H accumulated
        else:
            flops += n * n * C  # read-out layer: G added to the C diagonal blocks
    return flops


def per_example_loop(model, x):
    """(a): one backward pass per example and output, J (n C, P), then J J^T."""
    params = list(model.parameters())
    rows = []
    for i in range(len(x)):
        f = model(x[i : i + 1])[0]
        for c in range(f.shape[0]):
            g = torch.autograd.grad(f[c], params, retain_graph=c < f.shape[0] - 1)
            rows.append(torch.cat([t.reshape(-1) for t in g]))
    J = torch.stack(rows)
    return (J @ J.T).reshape(len(x), -1, len(x), J.shape[0] // len(x))


def nngeometry_gram(model, x):
    from nngeometry import GramMatrix

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=250)
    return GramMatrix(model, loader, function=lambda xb: model(xb)).data  # (C, n, C, n)


def _hwm_bytes() -> int:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_child(n: int) -> None:
    torch.manual_seed(0)
    model, x = make_model(), torch.randn(n, 784)
    ntk_gram(model, x[:8])  # warm up the allocator and code paths
    base = _hwm_bytes()
    K = ntk_gram(model, x, outputs="full", method="structured", block=256)
    print(_hwm_bytes() - base, K.numel() * K.element_size())


def peak_memory(n: int) -> tuple[int, int]:
    """Peak extra resident memory (high-water mark of RSS) of one structured NTK, in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--peak-child", str(n)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1])


def measurement_vs_epoch(rounds):
    torch.manual_seed(0)
    model = AlphaScaled(make_model(), 1.0)
    x, y = torch.randn(10_000, 784), torch.randint(0, 10, (10_000,))
    probe = LinearityProbe(x[:500], outputs="full")
    ctx = ProbeContext(model, {}, None, 0, 0.0, {"model." + k: v.detach().clone()
                                                 for k, v in model.model.named_parameters()})
    probe(ctx)  # K0 once per run
    t_measure = median_time(lambda: probe(ctx), rounds)
    probe_trace = LinearityProbe(x[:500], outputs="trace")
    probe_trace(ctx)
    t_trace = median_time(lambda: probe_trace(ctx), rounds)
    data = Split(x, y)
    sched = Schedule(points_per_decade=0, milestone_ratio=None)
    t_epoch = median_time(lambda: train(model, data, loss="cross_entropy", stepper=SGD(0.01, momentum=0.9,
                          batch_size=128), stop=Stop(max_steps=79), probes=(), schedule=sched), rounds)
    return t_measure, t_trace, t_epoch


def nngeometry_time(model, x, rounds):
    try:
        nngeometry_gram(model, x[:8])
    except ImportError:
        return None
    return median_time(lambda: nngeometry_gram(model, x), rounds)


class Sequence(torch.nn.Module):
    """Token ids (n, 16) -> embedding 32 -> TransformerEncoderLayer (4 heads, 64 hidden) -> Linear per token, mean."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 32)
        self.layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.out = torch.nn.Linear(32, 10)

    def forward(self, ids):
        return self.out(self.layer(self.emb(ids))).mean(1)


MET: list[bool] = []  # every target's outcome, in the order printed


def info(name, value):
    print(f"  {name:<58} {value:>12}")


def line(name, value, target, met):
    MET.append(met)
    print(f"  {name:<58} {value:>12}   target {target:<10} {'met' if met else 'NOT MET'}")


def other_cases(args):
    """The CNN and the sequence model: structured vs nngeometry and vs the generic path, measured here."""
    torch.manual_seed(0)
    cnn = seeded(lambda: CNN(in_channels=1, num_outputs=10), 0)
    x = torch.randn(args.n_cnn, 1, 28, 28)
    xs = x[:50]
    ntk_gram(cnn, x[:8])
    ref = ntk_gram(cnn, xs, method="jacobian", block=25)
    err = float((ntk_gram(cnn, xs, block=25) - ref).norm() / ref.norm())
    t_s_small = median_time(lambda: ntk_gram(cnn, xs, outputs="full"), args.rounds)
    t_g_small = median_time(lambda: ntk_gram(cnn, xs, outputs="full", method="jacobian", block=25), 1)
    pairs = []  # (structured, nngeometry) seconds, measured back to back, --cnn-repeats times
    for _ in range(args.cnn_repeats):
        t_s = median_time(lambda: ntk_gram(cnn, x, outputs="full"), args.rounds)
        t_c = nngeometry_time(cnn, x, 1)
        pairs.append((t_s, t_c))
        if t_c is None:
            break
    print(f"\nCNN 1-32-64-128 on 1x28x28, full Gram, n = {args.n_cnn}: structured {t_s:.2f} s; structured vs generic "
          f"at n = 50: relative difference {err:.1e}")
    if t_c is not None:
        K_nng = nngeometry_gram(cnn, xs).permute(1, 0, 3, 2)
        info("    nngeometry vs generic at n = 50: relative difference",
             f"{float((K_nng - ref).norm() / ref.norm()):.1e}")
        ratios = [c / s for s, c in pairs]
        print("    nngeometry / structured in each of the repeats: " + ", ".join(f"{r:.1f}x" for r in ratios))
        line(f"(c) nngeometry / structured, CNN, n = {args.n_cnn}, min of {len(ratios)}", f"{min(ratios):.1f}x",
             ">= 10x", min(ratios) >= 10)
    else:
        print("  (c) nngeometry: not importable, CNN comparison skipped")
    info("(b) vmap(jacrev) / structured, CNN, both at n = 50", f"{t_g_small / t_s_small:.1f}x")

    seq = seeded(Sequence, 0)
    ids = torch.randint(0, 50, (200, 16))
    ntk_gram(seq, ids[:8])
    ref = ntk_gram(seq, ids[:40], method="jacobian", block=20)
    err = float((ntk_gram(seq, ids[:40], block=20) - ref).norm() / ref.norm())
    t_s = median_time(lambda: ntk_gram(seq, ids, outputs="full"), args.rounds)
    t_g = median_time(lambda: ntk_gram(seq, ids, outputs="full", method="jacobian"), 1)
    print(f"\nsequence model (embedding, TransformerEncoderLayer, per-token read-out; 16 tokens), full Gram, n = 200: "
          f"structured {t_s:.2f} s; vs generic at n = 40: relative difference {err:.1e}")
    info("(b) vmap(jacrev) / structured, sequence model, n = 200", f"{t_g / t_s:.1f}x")
    print("  (c) nngeometry: no rule for attention layers, not compared")


def main():
    ap = argparse.ArgumentParser(description="NTK engine benchmark (ratios measured in one run)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-small", type=int, default=100)
    ap.add_argument("--n-cnn", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cnn-repeats", type=int, default=5, help="side-by-side CNN pairs (the minimum ratio counts)")
    ap.add_argument("--only", choices=("all", "cnn"), default="all", help="cnn: the CNN and sequence cases only")
    ap.add_argument("--peak-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if min(args.cnn_repeats, args.rounds) < 1:
        ap.error("--cnn-repeats and --rounds must be >= 1")
    if args.peak_child:
        return _peak_child(args.peak_child)
    if args.only == "cnn":
        other_cases(args)
        return print("\nall targets met" if all(MET) else "\nsome targets NOT met")
    torch.manual_seed(0)
    model = make_model()
    x = torch.randn(args.n, 784)
    xs = x[: args.n_small]
    scale = (args.n / args.n_small) ** 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MLP {'-'.join(map(str, WIDTHS))}, "
          f"float32, full Gram [n, C, n, C]")

    ntk_gram(model, x[:16])  # warm-up
    rate = matmul_rate(args.rounds)
    t_struct = median_time(lambda: ntk_gram(model, x, outputs="full", method="structured"), args.rounds)
    rate2 = matmul_rate(args.rounds)  # measured before and after: the machine drifts
    mm = (rate + rate2) / 2
    flops = structured_flops(args.n)
    t_struct_small = median_time(lambda: ntk_gram(model, xs, outputs="full", method="structured"), args.rounds)
    t_b = median_time(lambda: ntk_gram(model, xs, outputs="full", method="jacobian", block=50), 1)
    t_a = median_time(lambda: per_example_loop(model, xs), 1)
    K_ref = ntk_gram(model, xs, outputs="full", method="jacobian", block=50)
    err = float((ntk_gram(model, xs) - K_ref).norm() / K_ref.norm())
    try:
        nngeometry_gram(model, xs)
        K_nng = nngeometry_gram(model, xs).permute(1, 0, 3, 2)
        err_nng = float((K_nng - K_ref).norm() / K_ref.norm())
        t_c = median_time(lambda: nngeometry_gram(model, x), args.rounds)
    except ImportError:
        t_c = None
    peak, gram_bytes = peak_memory(args.n)
    act_block = 256 * sum(WIDTHS) * 4 * (1 + 10)  # one block: activations and C output-gradients
    t_measure, t_trace, t_epoch = measurement_vs_epoch(args.rounds)

    print(f"\nstructured, n = {args.n}: {t_struct:.3f} s  ({flops:.3g} FLOPs -> {flops / t_struct / 1e9:.1f} GFLOP/s; "
          f"dense matmul in this run: {mm / 1e9:.1f} GFLOP/s)")
    print(f"structured vs jacobian reference at n = {args.n_small}: relative difference {err:.2e}")
    if t_c is not None:
        print(f"nngeometry vs jacobian reference at n = {args.n_small}: relative difference {err_nng:.2e}")
    print(f"\n  {'ratio':<58} {'measured':>12}")
    line(f"(b) vmap(jacrev) / structured, both at n = {args.n_small}", f"{t_b / t_struct_small:.0f}x", ">= 100x",
         t_b / t_struct_small >= 100)
    info(f"    (b) extrapolated to n = {args.n} (x (n/n_small)^2) / structured", f"{t_b * scale / t_struct:.0f}x")
    info(f"(a) per-example loop / structured, both at n = {args.n_small}", f"{t_a / t_struct_small:.0f}x")
    if t_c is not None:
        line(f"(c) nngeometry GramMatrix / structured, n = {args.n}", f"{t_c / t_struct:.2f}x", ">= 4x",
             t_c / t_struct >= 4)
    else:
        print("  (c) nngeometry: not importable, skipped (pip install --target benchmarks/.deps --no-deps "
              "nngeometry==0.4)")
    frac = flops / t_struct / mm
    line("achieved FLOP rate / dense matmul rate", f"{frac:.0%}", ">= 40%", frac >= 0.4)
    line("peak extra memory / (3 x Gram bytes + one activation block)",
         f"{peak / (3 * gram_bytes + act_block):.2f}", "<= 1", peak <= 3 * gram_bytes + act_block)
    print(f"    (peak extra {peak / 2**20:.0f} MiB; Gram {gram_bytes / 2**20:.0f} MiB)")
    info("full measurement (NTK full, 500 ex. + signs + repr.) / epoch", f"{t_measure / t_epoch:.2f}")
    info("full measurement (NTK trace, 500 ex. + signs + repr.) / epoch", f"{t_trace / t_epoch:.2f}")
    print(f"    (epoch = 10k examples, SGD batch 128: {t_epoch:.2f} s)")
    other_cases(args)
    print("\nall targets met" if all(MET) else "\nsome targets NOT met")


if __name__ == "__main__":
    main()
