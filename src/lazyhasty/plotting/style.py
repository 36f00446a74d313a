"""One style for every figure of the package, and the checks every saved figure passes (:func:`problems`).

A figure is saved at ``DPI`` and is never wider than ``MAX_WIDTH_PX``; every panel has data and a label on both
axes (quantity and unit); lines that differ in colour or style are named in a legend; regimes differ by line
style (``LINESTYLES``), so that they can be told apart in greyscale.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt

DPI = 130
MAX_WIDTH_PX = 1600
LINESTYLES = ("-", "--", ":", "-.")  # one per regime, in the order the regimes are listed
# the linearity metrics, in colours outside the viridis map used for groups and widths
LINEARITY_COLORS = {"ntk_alignment": "tab:red", "sign_similarity": "tab:purple",
                    "representation_alignment": "tab:brown"}


class FigureWarning(UserWarning):
    """A saved figure breaks the rules of :mod:`lazyhasty.plotting.style` (the tests turn it into an error)."""


def panels(nrows: int, ncols: int, width: float = 4.0, height: float = 3.3):
    """``plt.subplots`` with panels of about ``width`` x ``height`` inches, narrowed so that the figure stays
    within ``MAX_WIDTH_PX`` at ``DPI``. Returns (figure, 2-d array of axes)."""
    w = min(ncols * width, 0.95 * MAX_WIDTH_PX / DPI)
    return plt.subplots(nrows, ncols, figsize=(w, nrows * height), squeeze=False, layout="constrained")


def finish(fig) -> None:
    """The shared finishing touches (``save_figure`` applies them): panel titles at 9 pt, legends at most 8 pt."""
    for ax in fig.axes:
        ax.title.set_fontsize(min(ax.title.get_fontsize(), 9))
        if ax.get_legend() is not None:
            for t in ax.get_legend().get_texts():
                t.set_fontsize(min(t.get_fontsize(), 8))


def regime_styles(regimes) -> dict:
    """Line style per regime, in the order given (solid for the first)."""
    return {r: LINESTYLES[i % len(LINESTYLES)] for i, r in enumerate(regimes)}


def has_data(ax) -> bool:
    return bool([ln for ln in ax.get_lines() if len(ln.get_xdata())] or ax.collections or ax.images or ax.patches)


def mark_empty(ax, why: str) -> None:
    """A panel with nothing to draw says why, instead of showing empty axes."""
    if not has_data(ax):
        ax.cla()
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, color="grey", transform=ax.transAxes)
        ax.set_title(ax.get_title())


def _number(label: str):
    m = re.search(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", label)
    return (re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", label, count=1), float(m.group())) if m else None


def problems(fig) -> list[str]:
    """What a figure breaks of the rules above (its saved width is checked by ``save_figure``)."""
    out = []
    has_legend = bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        name = ax.get_title() or f"panel {i + 1}"
        if ax.get_label() == "<colorbar>":
            if not (ax.get_ylabel() or ax.get_xlabel()):
                out.append(f"{name}: colour bar without a label")
            continue
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
        if not has_data(ax):
            if not ax.texts:  # a panel without data must say why (see mark_empty)
                out.append(f"{name}: empty panel")
            continue
        twins = [t for t in ax.get_shared_x_axes().get_siblings(ax) if t is not ax]
        xlabel = ax.get_xlabel() or any(t.get_xlabel() for t in twins)  # a twinx panel shares its x label
        if not xlabel or not ax.get_ylabel():
            out.append(f"{name}: axis without a label (x: {ax.get_xlabel()!r}, y: {ax.get_ylabel()!r})")
        kinds = {(str(ln.get_color()), ln.get_linestyle()) for ln in lines if len(ln.get_xdata()) > 2}
        if len(kinds) > 1 and not has_legend:
            out.append(f"{name}: {len(kinds)} kinds of lines and no legend")
        legend = ax.get_legend()
        if legend is not None:
            keys = [_number(t.get_text()) for t in legend.get_texts()]
            for a, b in zip(keys, keys[1:]):
                if a and b and a[0] == b[0] and b[1] < a[1]:
                    out.append(f"{name}: legend labels out of numeric order ({a[1]:g} before {b[1]:g})")
                    break
    return out
