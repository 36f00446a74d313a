"""A plain-PyTorch phase diagram, written apart from lazyhasty's engine: the reference that ``benchmarks/phase.py
--grid`` times ``lazyhasty run phase`` against (issue 33).

The same grid as the phase experiment's config (the same binary task from ``lazyhasty.data.binary_task``: only
the data is shared): per width h, every (√h·α, seed) member of that width trained at once with stacked weights
and batched matmuls; the NTK parametrisation with the normalised softplus (beta 5), no bias, output
F = α (f − f0); soft hinge (beta 20) on y F; gradient flow with Geiger et al.'s adaptive step decided per member
(reject above ``max_dgrad`` or when an output moves by more than 0.1, dt / 2; dt x 1.1 below ``min_dgrad``);
a member stops when every training margin is >= 1 or after ``max_steps`` accepted steps. It measures the test
error at the end and nothing else. Widths are shared out over ``--workers`` processes of one thread each; with
``--split K`` the widest width's alphas are split into K jobs, so that the two processes finish together.

Usage: python benchmarks/phase_plain.py [--widths 32,64,128,256] [--workers 2]; prints one line per width and
``plain: <seconds> s``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import time

import numpy as np
import torch

from lazyhasty.data import binary_task

HALF_DECADES = [10 ** (k / 2) for k in range(-4, 6)]


def softplus_scale(beta: float) -> float:
    """1 / sqrt(E[softplus_beta(z)^2]), z ~ N(0, 1), by the trapezoid rule on [-12, 12]."""
    z = np.linspace(-12, 12, 200_001)
    phi = np.logaddexp(0.0, beta * z) / beta
    return 1 / math.sqrt(np.trapezoid(phi**2 * np.exp(-z * z / 2) / math.sqrt(2 * math.pi), z))


def width_job(job: tuple) -> tuple[int, float, float, int]:
    h, part, args = job
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte) = [(s.x.float(), s.y.float()) for s in binary_task("fashion_mnist", ptr=args.ptr,
                                                                                   pte=args.pte, d=args.pca, seed=0)]
    sas = [(sa, s) for sa in HALF_DECADES[part] for s in range(args.seeds)]
    M, d = len(sas), xtr.shape[1]
    alpha = torch.tensor([sa / math.sqrt(h) for sa, _ in sas])
    g = torch.Generator().manual_seed(h)
    sizes = [d] + [h] * args.depth + [1]
    W = [torch.randn(M, b, a, generator=g).requires_grad_() for a, b in zip(sizes[:-1], sizes[1:])]
    c = softplus_scale(args.beta)

    def f(W, x):  # (M, n) outputs f_theta(x)
        z = x.expand(M, *x.shape)
        for k, w in enumerate(W):
            z = torch.bmm(z, w.transpose(1, 2)) / math.sqrt(w.shape[2])
            if k < len(W) - 1:
                z = torch.nn.functional.softplus(z, beta=args.beta) * c
        return z[..., 0]

    with torch.no_grad():
        f0_tr, f0_te = f(W, xtr), f(W, xte)

    def evaluate():
        F = alpha[:, None] * (f(W, xtr) - f0_tr)
        loss = torch.nn.functional.softplus(1 - ytr * F, beta=20.0).mean(1)  # (M,)
        grads = torch.autograd.grad((loss / alpha**2).sum(), W)
        return loss.detach(), [q.detach() for q in grads], F.detach()

    dt = torch.tensor([1e-2 * min(1.0, sa) for sa, _ in sas], dtype=torch.float64)
    steps = torch.zeros(M, dtype=torch.long)
    live = torch.ones(M, dtype=torch.bool)
    loss, G, F = evaluate()
    calls = 0
    while live.any():
        calls += 1
        old = [w.detach().clone() for w in W]
        step = (dt * live).float()
        with torch.no_grad():
            for w, q in zip(W, G):
                w -= step.view(-1, 1, 1) * q
        loss1, G1, F1 = evaluate()
        n0 = sum(q.double().pow(2).sum((1, 2)) for q in G).sqrt()
        n1 = sum(q.double().pow(2).sum((1, 2)) for q in G1).sqrt()
        dd = sum((a - b).double().pow(2).sum((1, 2)) for a, b in zip(G1, G))
        dgrad = torch.where(n0 * n1 > 0, dd / (n0 * n1), torch.zeros_like(dd))
        dout = (F1 - F).abs().amax(1).double()
        ok = torch.isfinite(loss1) & (dgrad <= args.max_dgrad) & (dout <= 0.1)
        accept = ok & live
        with torch.no_grad():
            for w, o in zip(W, old):
                w.copy_(torch.where(accept.view(-1, 1, 1), w, o))
        keep = accept.view(-1, 1, 1)
        G = [torch.where(keep, a, b) for a, b in zip(G1, G)]
        F = torch.where(accept.view(-1, 1), F1, F)
        calm = ok & (dgrad < args.min_dgrad) & (dout < 0.05)
        dt = torch.where(live & ~ok, dt / 2, torch.where(accept & calm, dt * 1.1, dt))
        steps += accept.long()
        margin = (ytr * F).amin(1)
        live &= (margin < 1) & (steps < args.max_steps)
    with torch.no_grad():
        Fte = alpha[:, None] * (f(W, xte) - f0_te)
    err = float((torch.sign(Fte) != yte).float().mean())
    return h, time.perf_counter() - t0, err, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ptr", type=int, default=500)
    ap.add_argument("--pte", type=int, default=1000)
    ap.add_argument("--pca", type=int, default=10)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--beta", type=float, default=5.0)
    ap.add_argument("--max-steps", type=int, default=2500)
    ap.add_argument("--max-dgrad", type=float, default=1e-2)
    ap.add_argument("--min-dgrad", type=float, default=1e-4)
    ap.add_argument("--split", type=int, default=1, help="the widest width's alphas as this many jobs (balance)")
    args = ap.parse_args()
    widths = sorted((int(w) for w in args.widths.split(",")), reverse=True)
    k = len(HALF_DECADES)
    jobs = [(widths[0], slice(i * k // args.split, (i + 1) * k // args.split), args) for i in range(args.split)]
    jobs += [(h, slice(None), args) for h in widths[1:]]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for h, wall, err, calls in pool.imap_unordered(width_job, jobs):
            print(f"  width {h}: {wall:.1f} s, {calls} trial steps, mean test error {err:.3f}", flush=True)
    print(f"plain: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
