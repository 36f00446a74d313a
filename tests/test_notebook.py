"""The tutorial notebook runs from top to bottom (nbclient: a failing cell fails the test)."""

from pathlib import Path

import pytest

from lazyhasty.data import fashion_mnist

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "bring_your_own_model.ipynb"


def _missing() -> str | None:
    try:
        fashion_mnist(split="test")
    except Exception as e:  # the notebook reads Debian's Fashion-MNIST; .ci/run installs it
        return str(e)
    return None


@pytest.mark.skipif(_missing() is not None, reason=f"Fashion-MNIST is not on this machine: {_missing()}")
def test_the_tutorial_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "comparison: alpha=1 (feature) vs alpha=100 (lazy), 3 seed(s)" in text
    assert "largest gap between the alpha = 100 run and the kernel-regime prediction" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the comparison figure and the kernel-regime figure
