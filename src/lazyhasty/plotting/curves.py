from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt

from ..files import atomic_write
from .style import DPI, MAX_WIDTH_PX, FigureWarning, finish, problems


def save_figure(fig, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``path_stem.png`` (and ``.pdf``) at the shared DPI, atomically; returns the paths. A figure
    that breaks the shared rules (:mod:`lazyhasty.plotting.style`: labels, legends, empty panels, width) is saved
    with a :class:`~lazyhasty.plotting.style.FigureWarning` naming each problem."""
    finish(fig)
    found = problems(fig)
    if fig.get_layout_engine() is not None:  # lay the panels out once, not in each of the formats' two draws
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    paths = []
    for fmt in formats:
        p = Path(f"{path_stem}.{fmt}")
        atomic_write(p, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))
        if fmt == "png" and (width := matplotlib.image.imread(p).shape[1]) > MAX_WIDTH_PX:
            found.append(f"{width} px wide (at most {MAX_WIDTH_PX})")
        paths.append(p)
    plt.close(fig)
    if found:
        warnings.warn(f"figure {paths[0]}: " + "; ".join(found), FigureWarning, stacklevel=2)
    return paths
