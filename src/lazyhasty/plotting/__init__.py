"""Figures (public namespace ``lazyhasty.plotting``): one function per figure. Plots read run records
(DataFrames from ``load_runs``, arrays the experiments saved) and never train."""

import sys

import matplotlib

if "IPython" not in sys.modules:  # scripts, tests, the command line: no GUI windows; notebooks keep their backend
    matplotlib.use("Agg")

from .compare import comparison_figure  # noqa: E402
from .curves import save_figure  # noqa: E402
from .fig1 import fig1_figure  # noqa: E402
from .phase import phase_figure  # noqa: E402
from .quadratic import examples_figure  # noqa: E402

__all__ = ["save_figure", "comparison_figure", "fig1_figure", "phase_figure",
           "examples_figure"]
