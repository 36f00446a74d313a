"""When the kernel regime in function space (``kernel_regime``) beats training the linearised model
(``train(Linearized(model), GD)``): the same trajectory (tests/test_kernel_regime.py), timed side by side in one run.

The linearised model costs a JVP and a VJP over all P parameters per step; the function-space run computes the
NTK once (n^2 C^2 entries) and then costs O(n^2 C^2) per step. Printed: P, n, both wall times and their ratio.
"""

import time

import torch

import lazyhasty as lh


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(steps: int = 200, n: int = 100) -> None:
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 10, generator=gen)
    data = lh.Split(x, torch.randn(n, 1, generator=gen))
    print(f"{'P':>10} {'n':>5} {'linearized s':>13} {'kernel s':>9} {'ratio':>7}")
    for h in (64, 256, 1024):
        net = lh.seeded(lambda h=h: lh.MLP([10, h, h, 1], activation="tanh", parametrization="ntk"), 0)
        P = sum(p.numel() for p in net.parameters())
        lin = timed(lambda net=net: lh.train(lh.Linearized(lh.same_init(net)), data, loss="mse", stepper=lh.GD(0.1),
                                             stop=lh.Stop(max_steps=steps), probes=(lh.loss_probe,), progress=False))
        ker = timed(lambda net=net: lh.kernel_regime(net, data, loss="mse", lr=0.1, steps=steps))
        print(f"{P:>10} {n:>5} {lin:>13.2f} {ker:>9.2f} {lin / ker:>6.1f}x")


if __name__ == "__main__":
    main()
