"""lazyhasty: train any PyTorch network in a controlled lazy or feature-learning regime, and measure it.

The public API is this module and three namespaces: ``lazyhasty.data`` (datasets), ``lazyhasty.theory`` (closed
forms of the quadratic model) and ``lazyhasty.plotting`` (figures that read run records). Everything else may move.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lazyhasty")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

from .data import DatasetError, Groups, Split, yinyang  # noqa: E402
from .dynamics import (  # noqa: E402
    BCE,
    GD,
    MSE,
    SGD,
    CrossEntropy,
    GradientFlow,
    Hinge,
    LinearityProbe,
    Milestones,
    MomentumFlow,
    ProbeContext,
    QuadraticHinge,
    RecordSink,
    Schedule,
    SoftHinge,
    Stop,
    TrainResult,
    estimate_cscores,
    fork,
    get_loss,
    learning_speed,
    loss_probe,
    parameter_distance_probe,
    seeded,
    train,
)
from .errors import UsageError  # noqa: E402
from .metrics import (  # noqa: E402
    at_equal_progress,
    broken_power_law,
    consistent,
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
from .models import (  # noqa: E402
    CNN,
    MLP,
    AlphaScaled,
    Ensemble,
    Linearized,
    ResNet18,
    freeze_batchnorm,
    load_pretrained,
    regime_alpha,
)
from .runs import RunRecord, TensorBoardSink, atomic_write, config_jobs, load_runs, run_sweep  # noqa: E402

__all__ = [
    # regimes, ensembles and models
    "AlphaScaled", "Linearized", "Ensemble", "regime_alpha", "MLP", "CNN", "ResNet18", "freeze_batchnorm",
    "load_pretrained",
    # training: the engine, stopping, measurement points, steppers, losses, probes
    "train", "Stop", "Schedule", "Milestones", "TrainResult", "fork", "seeded",
    "GD", "SGD", "GradientFlow", "MomentumFlow",
    "CrossEntropy", "BCE", "MSE", "Hinge", "SoftHinge", "QuadraticHinge", "get_loss",
    "ProbeContext", "loss_probe", "parameter_distance_probe", "LinearityProbe",
    # linearity metrics and equal progress
    "ntk_gram", "kernel_alignment", "kernel_distance", "kernel_target_alignment", "sign_similarity",
    "representation_alignment", "parameter_distance", "at_equal_progress",
    # scaling laws (Geiger et al.) and example difficulty (C-scores)
    "power_law", "broken_power_law", "consistent", "seed_bootstrap", "crossing_time",
    "estimate_cscores", "learning_speed",
    # data, records, sweeps, errors
    "Split", "Groups", "yinyang", "RecordSink", "RunRecord", "TensorBoardSink", "load_runs", "atomic_write",
    "run_sweep", "config_jobs", "UsageError", "DatasetError",
]
