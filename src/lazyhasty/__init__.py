"""lazyhasty: train any PyTorch network in a controlled lazy or feature-learning regime, and measure it.

The public API is this module and four namespaces: ``lazyhasty.data`` (datasets), ``lazyhasty.theory`` (closed
forms of the quadratic model), ``lazyhasty.claims`` (the claims experiments state, and when they are earned) and
``lazyhasty.plotting`` (figures that read run records). Everything else may move.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lazyhasty")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

# ruff: noqa: E402
from . import claims
from .compare import Comparison, Regime, compare_regimes, compare_runs
from .data import DatasetError, Groups, Split, yinyang
from .dynamics.checkpoint import CheckpointMismatch, checkpointing
from .dynamics.cscores import estimate_cscores, learning_speed
from .dynamics.kernel import kernel_regime
from .dynamics.losses import BCE, MSE, CrossEntropy, Hinge, QuadraticHinge, SoftHinge, get_loss
from .dynamics.probes import LinearityProbe, Milestones, ProbeContext, Schedule, loss_probe, parameter_distance_probe
from .dynamics.steppers import GD, SGD, GradientFlow, MomentumFlow
from .dynamics.train import RecordSink, Stop, TrainResult, can_compile, fork, seeded, train
from .errors import UsageError
from .metrics.alignment import kernel_alignment, kernel_distance, kernel_target_alignment
from .metrics.linearity import parameter_distance, representation_alignment, sign_similarity
from .metrics.ntk import ntk_gram
from .metrics.progress import at_equal_progress
from .metrics.scaling import broken_power_law, consistent, crossing_time, power_law, seed_bootstrap
from .models.cnn import CNN, ResNet18
from .models.ensemble import Ensemble
from .models.mlp import MLP
from .models.pretrained import load_pretrained
from .models.regimes import AlphaScaled, Linearized, UnsupportedModule, regime_alpha
from .runs.records import RunRecord, TensorBoardSink, atomic_write, load_runs
from .runs.sweep import config_jobs, run_sweep

__all__ = [
    # regimes, ensembles and models
    "AlphaScaled", "Linearized", "Ensemble", "regime_alpha", "MLP", "CNN", "ResNet18",
    "load_pretrained", "UnsupportedModule",
    # one call: every regime from one initialisation, compared at equal progress; claims (lazyhasty.claims)
    "compare_regimes", "compare_runs", "Regime", "Comparison", "claims",
    # training: the engine, stopping, measurement points, steppers, losses, probes
    "train", "can_compile", "checkpointing", "CheckpointMismatch", "kernel_regime", "Stop", "Schedule", "Milestones",
    "TrainResult", "fork", "seeded",
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
