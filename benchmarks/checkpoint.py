"""What checkpointing costs (issue 19: <= 2% of run time at the default interval of 60 s), measured side by side.

For each workload the same training runs, interleaved, without checkpoints and with one every ``SHORT_S`` seconds;
the extra time per checkpoint is (with - without) / checkpoints written, cross-checked against the time spent
in ``checkpoint.save`` itself. At the default interval a run pays one checkpoint per 60 s of training, so its
overhead is cost / 60 s. Workloads: ResNet18 (the lazy-vs-hasty paper's network, 11 M parameters, SGD with
momentum: the largest state a CPU preset writes), a CNN with SGD + momentum, and the phase experiment's
100-member ensemble under gradient flow (small state, many measured rows).

Also printed: what a resume costs before its first step (reading the checkpoint, replaying the minibatch order
to its position) for the paper's longest run, α = 100 for 2500 epochs of CIFAR-10 at batch size 128.
"""

import statistics
import tempfile
import time
from pathlib import Path

import torch

import lazyhasty as lh
from lazyhasty.dynamics import checkpoint as checkpoints

SHORT_S = 0.5
DEFAULT_S = 60.0


def workloads():
    gen = torch.Generator().manual_seed(0)
    cifar = lh.Split(torch.randn(256, 3, 32, 32, generator=gen), torch.randint(0, 10, (256,), generator=gen))
    fmnist = lh.Split(torch.randn(2000, 1, 28, 28, generator=gen), torch.randint(0, 10, (2000,), generator=gen))
    x = torch.randn(400, 2, generator=gen)
    phase = lh.Split(x, torch.sign(x[:, :1] * x[:, 1:]))
    yield ("ResNet18, SGD + momentum, alpha 100",
           lambda: lh.AlphaScaled(lh.seeded(lambda: lh.ResNet18(batchnorm=False), 0), 100.0), cifar,
           dict(loss="cross_entropy", stepper=lh.SGD(0.1, batch_size=32, momentum=0.9), stop=lh.Stop(max_steps=20)))
    yield ("CNN, SGD + momentum, alpha 1",
           lambda: lh.AlphaScaled(lh.seeded(lambda: lh.CNN(width=32), 0), 1.0), fmnist,
           dict(loss="cross_entropy", stepper=lh.SGD(0.05, batch_size=64, momentum=0.9), stop=lh.Stop(max_steps=150)))
    yield ("100-member ensemble 2-64-64-64-1, gradient flow",
           lambda: lh.Ensemble([lh.AlphaScaled(lh.seeded(lambda: lh.MLP([2, 64, 64, 64, 1], parametrization="ntk"), s),
                                               1.0) for s in range(100)]), phase,
           dict(loss="soft_hinge", stepper=lh.GradientFlow(), stop=lh.Stop(max_steps=400)))


def timed_run(make, data, kw, folder: Path, every_s: float) -> tuple[float, int, float, int]:
    """Wall time of one run; checkpoints written, seconds inside checkpoint.save, bytes of the last one."""
    model = make()
    spent, count, size = [0.0], [0], [0]
    save = checkpoints.save

    def timed_save(path, payload):
        t0 = time.perf_counter()
        save(path, payload)
        spent[0] += time.perf_counter() - t0
        count[0] += 1
        size[0] = path.stat().st_size

    checkpoints.save = timed_save
    try:
        t0 = time.perf_counter()
        lh.train(model, data, **kw, progress=False, checkpoint=folder / "run.pt" if every_s else None,
                 checkpoint_every_s=every_s or None)
        wall = time.perf_counter() - t0
    finally:
        checkpoints.save = save
    return wall, count[0], spent[0], size[0]


def replay_cost(epochs: int = 2500, n: int = 50_000, batch_size: int = 128) -> tuple[int, float]:
    stream = lh.SGD(0.1, batch_size=batch_size).batches(n, torch.Generator().manual_seed(0))
    skip = epochs * (n // batch_size)
    t0 = time.perf_counter()
    for _ in range(skip):
        next(stream)
    return skip, time.perf_counter() - t0


def main(repeats: int = 3) -> None:
    torch.set_num_threads(2)
    print(f"checkpoint every {SHORT_S:g} s vs none, {repeats} interleaved repeats; overhead at the default "
          f"{DEFAULT_S:g} s = cost per checkpoint / {DEFAULT_S:g} s")
    print(f"{'workload':<48} {'MB':>6} {'none s':>7} {'with s':>7} {'ckpts':>5} {'A/B s/ckpt':>10} "
          f"{'save s/ckpt':>11} {'at 60 s':>8}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, data, kw in workloads():
            timed_run(make, data, {**kw, "stop": lh.Stop(max_steps=2)}, Path(tmp), 0)  # warm-up
            bare, ckpt, saves, spent, size = [], [], [], [], 0
            for _ in range(repeats):
                bare.append(timed_run(make, data, kw, Path(tmp), 0)[0])
                wall, count, sec, size = timed_run(make, data, kw, Path(tmp), SHORT_S)
                ckpt.append(wall)
                saves.append(count)
                spent.append(sec)
            b, c, k = statistics.median(bare), statistics.median(ckpt), statistics.median(saves)
            per_ab = max(c - b, 0.0) / max(k, 1)
            per_save = sum(spent) / max(sum(saves), 1)
            overhead = max(per_ab, per_save) / DEFAULT_S
            worst = max(worst, overhead)
            print(f"{name:<48} {size / 2**20:>6.1f} {b:>7.2f} {c:>7.2f} {k:>5} {per_ab:>10.3f} {per_save:>11.3f} "
                  f"{100 * overhead:>7.2f}%", flush=True)
    skip, replay = replay_cost()
    print(f"resume of alpha = 100 after 2500 CIFAR-10 epochs (batch 128): replaying {skip:,} batch positions takes "
          f"{replay:.2f} s, {replay / DEFAULT_S:.2f}x one checkpoint interval")
    print(f"checkpoint: {100 * worst:.2f}% of run time at the default {DEFAULT_S:g} s interval (worst workload; "
          "target <= 2%)")


if __name__ == "__main__":
    main()
