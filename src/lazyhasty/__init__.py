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

import importlib as _importlib

# where each public name lives; imported on first use (PEP 562), so that `lazyhasty --help`, a refused command and
# Ctrl-C while starting never wait for torch, and an interrupted start-up is handled by the command line
_HOME = {name: module for module, names in {
    "compare": "Comparison Regime compare_regimes compare_runs",
    "data": "DatasetError Groups Split yinyang",
    "dynamics.checkpoint": "CheckpointMismatch checkpointing",
    "dynamics.cscores": "estimate_cscores learning_speed",
    "dynamics.kernel": "kernel_regime",
    "dynamics.losses": "BCE MSE CrossEntropy Hinge QuadraticHinge SoftHinge get_loss",
    "dynamics.probes": "LinearityProbe Milestones ProbeContext Schedule loss_probe parameter_distance_probe",
    "dynamics.steppers": "GD SGD GradientFlow MomentumFlow",
    "dynamics.train": "RecordSink Stop TrainResult can_compile fork seeded train",
    "errors": "UsageError",
    "metrics.alignment": "kernel_alignment kernel_distance kernel_target_alignment",
    "metrics.linearity": "parameter_distance representation_alignment sign_similarity",
    "metrics.ntk": "ntk_gram",
    "metrics.progress": "at_equal_progress",
    "metrics.scaling": "broken_power_law consistent crossing_time power_law seed_bootstrap",
    "models.cnn": "CNN ResNet18",
    "models.ensemble": "Ensemble",
    "models.mlp": "MLP",
    "models.pretrained": "load_pretrained",
    "models.regimes": "AlphaScaled Linearized UnsupportedModule regime_alpha",
    "runs.records": "RunRecord TensorBoardSink atomic_write load_runs",
    "runs.sweep": "config_jobs run_sweep",
}.items() for name in names.split()}
_NAMESPACES = ("claims", "data", "theory", "plotting", "experiments")


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(_importlib.import_module(f".{_HOME[name]}", __name__), name)
    elif name in _NAMESPACES:
        value = _importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'lazyhasty' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_NAMESPACES})


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
