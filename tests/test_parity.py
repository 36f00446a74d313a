"""Geiger et al.'s binary tasks: balanced classes, preprocessing fitted on the training set only, ||x|| = sqrt(d)."""

import numpy as np
import pytest

from lazyhasty.data.parity import Preprocess, binary_task
from test_fmnist_experiments import data_root  # noqa: F401  (fixture: real data or IDX fixtures)


def test_preprocess_against_a_direct_computation():
    rng = np.random.default_rng(0)
    tr = rng.standard_normal((200, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1]) + 3.0
    te = rng.standard_normal((50, 6)) + 3.0
    p = Preprocess(tr, d=3, whiten=True)
    # second implementation: eigen-decomposition of the training covariance
    cov = np.cov(tr, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    top = evecs[:, ::-1][:, :3]
    z = (te - tr.mean(0)) @ top / np.sqrt(evals[::-1][:3])
    z = z / np.linalg.norm(z, axis=1, keepdims=True) * np.sqrt(3)
    got = p(te)
    np.testing.assert_allclose(np.abs(got), np.abs(z), rtol=1e-8, atol=1e-10)  # up to the sign of each component
    assert np.allclose(np.linalg.norm(got, axis=1), np.sqrt(3))
    q = Preprocess(tr)  # no PCA: centring and norm only
    assert q.dim == 6 and np.allclose(np.linalg.norm(q(tr), axis=1), np.sqrt(6))
    with pytest.raises(ValueError, match="PCA dimension"):
        Preprocess(tr, d=7)


@pytest.mark.parametrize("source", ["fashion_mnist", "teacher"])
def test_binary_task(source, data_root):  # noqa: F811
    tr, te = binary_task(source, ptr=100, pte=60, d=10, seed=1, root=data_root)
    assert tr.x.shape == (100, 10) and te.x.shape == (60, 10)
    assert int((tr.y > 0).sum()) == 50 and int((te.y > 0).sum()) == 30
    np.testing.assert_allclose(tr.x.norm(dim=1).numpy(), np.sqrt(10), rtol=1e-5)
    again, _ = binary_task(source, ptr=100, pte=60, d=10, seed=1, root=data_root)
    assert np.array_equal(again.x.numpy(), tr.x.numpy())
    assert len(tr.groups["positive"]) == 50
