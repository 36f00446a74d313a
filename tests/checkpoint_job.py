"""A small training job for the checkpoint tests: ``python tests/checkpoint_job.py CASE FOLDER EVERY_S``.

Trains one case (a stepper, or an ensemble) into FOLDER with a resuming ``Checkpointing`` series, as
``lazyhasty run --resume`` does: run it again after a kill and it continues from its last checkpoint."""

import sys
from pathlib import Path

import torch
from torch import nn

from lazyhasty import (
    GD,
    MLP,
    SGD,
    AlphaScaled,
    Ensemble,
    GradientFlow,
    LinearityProbe,
    MomentumFlow,
    RunRecord,
    Schedule,
    Stop,
    loss_probe,
    seeded,
    train,
)
from lazyhasty.data import yinyang
from lazyhasty.runs import Checkpointing

CASES = ("gd", "sgd_momentum", "gradient_flow", "momentum_flow", "ensemble")


def dropout_net() -> nn.Module:  # SGD with dropout: the model's own RNG must be restored too
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1)).double()


def build(case: str, steps: int):
    data = yinyang(64, seed=3, dtype=torch.float64)
    net = seeded(lambda: MLP([2, 32, 32, 1]).double(), 0)
    if case == "gd":
        return AlphaScaled(net, alpha=2.0), GD(lr=0.5), Stop(max_steps=steps), data
    if case == "sgd_momentum":
        return seeded(dropout_net, 1), SGD(lr=0.05, momentum=0.9, batch_size=16), Stop(max_steps=steps), data
    if case == "gradient_flow":
        return AlphaScaled(net, alpha=0.5), GradientFlow(dt=0.05, max_dgrad=1e-3), Stop(max_steps=steps), data
    if case == "momentum_flow":
        return net, MomentumFlow(dt=0.05, tau=0.5, max_dgrad=1e-3), Stop(max_steps=steps), data
    if case == "ensemble":  # members stop at different steps (two reach the loss target)
        members = [AlphaScaled(seeded(lambda: MLP([2, 32, 32, 1]).double(), s), alpha=a)
                   for s, a in ((0, 1.0), (1, 4.0), (2, 0.25))]
        return Ensemble(members), GD(lr=1.0), Stop(max_steps=steps, loss_below=0.05), data
    raise SystemExit(f"unknown case {case}")


def main(case: str, folder: Path, every_s: float, steps: int = 1500) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(7)  # the dropout masks come from torch's global generator: seeded, and checkpointed
    series = Checkpointing(folder, every_s=every_s, resume=True)
    model, stepper, stop, data = build(case, steps)
    E = len(model) if isinstance(model, Ensemble) else 1
    records = [RunRecord(folder / f"run{k}").start({"case": case, "member": k}, resume=True) for k in range(E)]
    probes = (loss_probe, LinearityProbe(data.x[:16], outputs="trace"))
    train(model, data, loss="soft_hinge", stepper=stepper, stop=stop, probes=probes, progress=False,
          schedule=Schedule(points_per_decade=8, milestone_ratio=0.8, every=100), data_seed=5,
          run_id=[f"m{k}" for k in range(E)] if E > 1 else "m0", record=records if E > 1 else records[0],
          checkpoint=series)
    series.clear()  # the script completed: as lazyhasty's runner does, its checkpoints go


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]))
