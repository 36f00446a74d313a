"""One function per figure. Plots read run records (DataFrames from ``load_runs``) and never train."""

from .curves import loss_curves, save_figure

__all__ = ["loss_curves", "save_figure"]
