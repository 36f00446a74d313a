"""Figures (public namespace ``lazyhasty.plotting``): one function per figure. Plots read run records
(DataFrames from ``load_runs``, arrays the experiments saved) and never train."""

from .curves import loss_curves, save_figure
from .difficulty import equal_progress_figure
from .fig1 import fig1_figure
from .phase import phase_figure
from .quadratic import group_loss_panels
from .spurious import fig3_figure

__all__ = ["save_figure", "loss_curves", "equal_progress_figure", "fig1_figure", "phase_figure", "group_loss_panels",
           "fig3_figure"]
