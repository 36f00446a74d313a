"""lazyhasty: train any PyTorch network in a controlled lazy or feature-learning regime, and measure it.

The public API is this module; everything else may move.
"""

__version__ = "0.1.0"

from .data import Groups, Split, yinyang  # noqa: E402
from .dynamics import (  # noqa: E402
    BCE,
    GD,
    MSE,
    SGD,
    CrossEntropy,
    GradientFlow,
    Hinge,
    Milestones,
    MomentumFlow,
    ProbeContext,
    QuadraticHinge,
    Schedule,
    SoftHinge,
    Stop,
    TrainResult,
    fork,
    get_loss,
    loss_probe,
    parameter_distance_probe,
    seeded,
    train,
)
from .metrics import (  # noqa: E402
    LinearityProbe,
    at_equal_progress,
    broken_power_law,
    crossing_time,
    kernel_alignment,
    kernel_distance,
    kernel_target_alignment,
    ntk_gram,
    parameter_distance,
    power_law,
    representation_alignment,
    seed_bootstrap,
    sign_similarity,
)
from .models import CNN, MLP, AlphaScaled, Linearized, ResNet18, regime_alpha  # noqa: E402
from .runs import RunRecord, load_runs  # noqa: E402

__all__ = [
    # regimes and models
    "AlphaScaled", "Linearized", "regime_alpha", "MLP", "CNN", "ResNet18",
    # training
    "train", "Stop", "Schedule", "TrainResult", "fork", "seeded",
    "GD", "SGD", "GradientFlow", "MomentumFlow",
    "CrossEntropy", "BCE", "MSE", "Hinge", "SoftHinge", "QuadraticHinge", "get_loss",
    "ProbeContext", "Milestones", "loss_probe", "parameter_distance_probe",
    # linearity metrics
    "ntk_gram", "kernel_alignment", "kernel_distance", "kernel_target_alignment", "sign_similarity",
    "representation_alignment", "parameter_distance", "LinearityProbe", "at_equal_progress",
    # scaling laws (Geiger et al.)
    "power_law", "broken_power_law", "seed_bootstrap", "crossing_time",
    # data and records
    "Split", "Groups", "yinyang", "RunRecord", "load_runs",
]
