from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
from matplotlib.layout_engine import ConstrainedLayoutEngine

from ..files import atomic_write
from .style import DPI, MAX_WIDTH_PX, FigureWarning, finish, problems


def save_figure(fig, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``path_stem.png`` (and ``.pdf``) at the shared DPI, atomically; returns the paths. A figure
    that breaks the shared rules (:mod:`lazyhasty.plotting.style`: labels, legends, empty panels, width) is saved
    with a :class:`~lazyhasty.plotting.style.FigureWarning` naming each problem."""
    finish(fig)
    found = problems(fig)
    # lay the panels out once: a constrained layout (``panels``: every label inside) in the first format's draw, kept
    # by the others; any other figure is cut to its tight bounding box, from one layout before it is drawn
    bbox = None
    if not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
        bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    paths = []
    for fmt in formats:
        p = Path(f"{path_stem}.{fmt}")
        atomic_write(p, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches=bbox))
        fig.set_layout_engine("none")
        if fmt == "png" and (width := matplotlib.image.imread(p).shape[1]) > MAX_WIDTH_PX:
            found.append(f"{width} px wide (at most {MAX_WIDTH_PX})")
        paths.append(p)
    plt.close(fig)
    if found:
        warnings.warn(f"figure {paths[0]}: " + "; ".join(found), FigureWarning, stacklevel=2)
    return paths
