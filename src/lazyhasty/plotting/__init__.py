"""Figures (public namespace ``lazyhasty.plotting``): one function per figure. Plots read run records
(DataFrames from ``load_runs``, arrays the experiments saved) and never train."""

import sys

import matplotlib

if "IPython" not in sys.modules:  # scripts, tests, the command line: no GUI windows; notebooks keep their backend
    matplotlib.use("Agg")

from .compare import comparison_figure  # noqa: E402
from .curves import loss_curves, save_figure  # noqa: E402
from .difficulty import equal_progress_figure  # noqa: E402
from .fig1 import fig1_figure  # noqa: E402
from .phase import phase_figure  # noqa: E402
from .quadratic import group_loss_panels  # noqa: E402
from .spurious import fig3_figure  # noqa: E402

__all__ = ["save_figure", "loss_curves", "comparison_figure", "equal_progress_figure", "fig1_figure", "phase_figure",
           "group_loss_panels", "fig3_figure"]
