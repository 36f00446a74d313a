"""The rules every saved figure follows (lazyhasty.plotting.style): each broken rule is named; the experiments'
own figures are checked wherever their tests run them in-process (a FigureWarning is an error in the tests)."""

import matplotlib.image
import pytest

from lazyhasty.plotting import save_figure
from lazyhasty.plotting.style import MAX_WIDTH_PX, FigureWarning, mark_empty, panels, problems


def test_each_broken_rule_is_named():
    fig, ax = panels(1, 4)
    ax[0, 0].plot([1, 2, 3], [1, 2, 3])  # no labels
    ax[0, 1].set(xlabel="t", ylabel="loss")  # empty
    a = ax[0, 2]
    a.plot([1, 2, 3], [1, 2, 3], color="r")
    a.plot([1, 2, 3], [3, 2, 1], color="b")  # two kinds of lines, no legend anywhere
    a.set(xlabel="t", ylabel="loss", title="lines")
    b = ax[0, 3]
    b.plot([1, 2, 3], [1, 2, 3], label="h = 128")
    b.plot([1, 2, 3], [1, 2, 4], label="h = 16")
    b.set(xlabel="t", ylabel="loss", title="widths")
    found = " | ".join(problems(fig))
    assert "panel 1: axis without a label" in found and "panel 2: empty panel" in found
    assert "lines: 2 kinds of lines and no legend" in found
    b.legend()  # a legend anywhere in the figure names the lines (e.g. one shared legend)
    found = " | ".join(problems(fig))
    assert "no legend" not in found and "widths: legend labels out of numeric order (128 before 16)" in found


def test_a_figure_that_follows_the_rules_passes_and_an_empty_panel_may_say_why(tmp_path):
    fig, ax = panels(1, 2)
    ax[0, 0].plot([1, 2, 3], [1, 2, 3], ls="-", label="alpha = 1")
    ax[0, 0].plot([1, 2, 3], [1, 3, 3], ls="--", label="alpha = 100")
    ax[0, 0].set(xlabel="t (theory time)", ylabel="training loss")
    ax[0, 0].legend()
    mark_empty(ax[0, 1], "not measured: no run reached L(0)/2")
    assert problems(fig) == []
    png, _ = save_figure(fig, tmp_path / "ok")
    assert matplotlib.image.imread(png).shape[1] <= MAX_WIDTH_PX


def test_a_figure_too_wide_or_unlabelled_is_saved_with_a_warning(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(20, 3))
    ax.plot([1, 2], [1, 2])
    with pytest.warns(FigureWarning, match="px wide .*at most 1600.*|axis without a label"):
        paths = save_figure(fig, tmp_path / "wide", formats=("png",))
    assert paths[0].is_file()  # saved all the same: the warning names what to fix
