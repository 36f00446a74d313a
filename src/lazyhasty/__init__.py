"""lazyhasty: train any PyTorch network in a controlled lazy or feature-learning regime, and measure it.

The public API is this module (50 names, grouped below by layer) and its namespaces: ``lazyhasty.data``
(datasets), ``lazyhasty.metrics`` (linearity metrics, equal progress, scaling fits), ``lazyhasty.runs`` (records,
sweeps, checkpoints, files), ``lazyhasty.claims`` (the claims experiments state, and when they are earned),
``lazyhasty.theory`` (closed forms) and ``lazyhasty.plotting`` (figures that read run records). Everything else
may move. Names are imported on first use, so that the command line starts without torch.
"""

from importlib import metadata as _metadata

from ._lazy import exports as _exports

try:
    __version__ = _metadata.version("lazyhasty")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

__getattr__, __dir__, __all__ = _exports(__name__, {
    # models and their regimes
    "models.regimes": "AlphaScaled Linearized",
    "models.ensemble": "Ensemble",
    "models.mlp": "MLP",
    "models.cnn": "CNN ResNet18",
    "models.pretrained": "load_pretrained",
    # every regime from one initialisation, compared at equal progress
    "compare": "compare_regimes compare_runs Regime Comparison",
    # the training engine, and what a user extends it with (a stepper, a loss, a probe)
    "dynamics.train": "train Stop same_init seeded can_compile",
    "dynamics.kernel": "kernel_regime",
    "dynamics.steppers": "Stepper GD SGD GradientFlow MomentumFlow",
    "dynamics.losses": "Loss CrossEntropy BCE MSE Hinge SoftHinge QuadraticHinge",
    "dynamics.probes": "Probe ProbeContext Schedule loss_probe parameter_distance_probe LinearityProbe",
    "dynamics.cscores": "estimate_cscores learning_speed",
    "metrics.ntk": "ntk_gram",
    # records, sweeps, data, errors
    "runs.records": "RunRecord load_runs",
    "runs.sweep": "run_sweep",
    "data.groups": "Split Groups",
    "errors": "UsageError",
}, namespaces=("claims", "data", "metrics", "runs", "theory", "plotting"))
