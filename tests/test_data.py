"""Toy data generators: labels, balance, determinism, region labels."""

import numpy as np
import pytest
import torch

import lazyhasty as lh
from lazyhasty.data import kriener_class, kriener_yinyang, yinyang, yinyang_labels, yinyang_regions


def test_binary_yinyang_rule_and_regions():
    pts = np.array([[0.5, -0.5], [0.5, -0.85], [-0.5, 0.5], [-0.5, 0.9], [0.9, -0.9], [0.0, 0.05], [0.0, -0.5]])
    np.testing.assert_array_equal(yinyang_labels(pts), [-1, 1, 1, -1, 1, -1, 1])
    # disc centres are 'disk', (0.9, -0.9) is bulk, (0, 0.05) is within 0.1 of the line
    np.testing.assert_array_equal(yinyang_regions(pts)[[0, 2, 4, 5]], [1, 1, 0, 2])


def test_binary_yinyang_determinism_groups_and_noise():
    a, b, c = yinyang(200, seed=4), yinyang(200, seed=4), yinyang(200, seed=5)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    sizes = sum(len(a.groups[g]) for g in ("half_plane", "disk", "near_boundary"))
    assert sizes == 200  # regions partition the points
    assert torch.equal(a.y, torch.as_tensor(yinyang_labels(a.x.numpy().astype(float)), dtype=a.y.dtype))
    noisy = yinyang(200, seed=4, label_noise=0.1, noise_dims=3)
    assert noisy.x.shape == (200, 5) and len(noisy.groups["noisy"]) == 20
    flipped = (noisy.y != a.y).nonzero()[:, 0]
    assert sorted(flipped.tolist()) == sorted(noisy.groups["noisy"].tolist())


def test_kriener_yinyang():
    d = kriener_yinyang(600, seed=1)
    assert d.x.shape == (600, 4)
    np.testing.assert_allclose(d.x[:, 2:].numpy(), 1 - d.x[:, :2].numpy(), atol=1e-6)
    counts = np.bincount(d.y.numpy(), minlength=3)
    assert counts.tolist() == [200, 200, 200]  # balanced classes
    xy = d.x[:, :2].numpy().astype(float)
    assert (np.linalg.norm(xy - 0.5, axis=1) <= 0.5).all()
    np.testing.assert_array_equal(kriener_class(xy), d.y.numpy())
    # the two dots: centres belong to class 2; the upper-right point of the big disc is yin, lower-left yang
    np.testing.assert_array_equal(kriener_class(np.array([[0.25, 0.5], [0.75, 0.5], [0.5, 0.95], [0.5, 0.05]])),
                                  [2, 2, 1, 0])
    assert torch.equal(kriener_yinyang(600, seed=1).x, d.x)
    assert len(d.groups["dot"]) == 200 and len(d.groups["near_boundary"]) > 0


def test_groups_take_indices_or_masks_and_refuse_what_would_count_wrong():
    g = lh.Groups({"mask": np.array([False, True, True]), "idx": [2, 0], "none": []}, n=3)
    assert g["mask"].tolist() == [1, 2] and g["idx"].tolist() == [2, 0] and g["none"].numel() == 0
    for sel, why in ((np.array([0.0, 1.0, 1.0]), "boolean mask"), ([0, 0, 2], "listed twice"), ([-1], "in \\[0, 3\\)"),
                     ([3], "in \\[0, 3\\)")):
        with pytest.raises(ValueError, match=why):
            lh.Groups({"g": sel}, n=3)
    with pytest.raises(ValueError, match="in \\[0, n\\)"):  # no n: a negative index would count from the end
        lh.Groups({"g": [-1]})
    x, y = torch.zeros(6, 2), torch.zeros(6)
    for groups in (lh.Groups({"a": [0, 1]}, n=10), lh.Groups({"a": [0, 9]})):  # another set's groups
        with pytest.raises(ValueError, match="not of this split's 6 examples"):
            lh.Split(x, y, groups)
    assert lh.Split(x, y, lh.Groups({"a": [0, 5]})).groups["a"].tolist() == [0, 5]
    labels = np.array([0, 1, 1, 2])
    assert {k: v.tolist() for k, v in lh.Groups.from_labels(labels, names={0: "a"}).items()} == \
        {"a": [0], "1": [1, 2], "2": [3]}
    for names in ({0: "a", 1: "a"}, {0: "1"}):  # label 0's group would be replaced by label 1's
        with pytest.raises(ValueError, match="two labels make one group"):
            lh.Groups.from_labels(labels, names=names)


def test_a_split_is_checked_once_and_frozen():
    import dataclasses

    x, y = torch.zeros(6, 2), torch.zeros(6)
    s = lh.Split(x, y, {"a": [0, 1]}, info={"index": np.arange(6)})
    for name, value in (("y", y[:3]), ("groups", {"a": list(range(25))}), ("info", {})):
        with pytest.raises(dataclasses.FrozenInstanceError):  # a change would skip the checks made when it was made
            setattr(s, name, value)
    with pytest.raises(ValueError, match="not of this split's 6 examples"):  # replace() checks the new one
        dataclasses.replace(s, groups=lh.Groups({"a": [0, 9]}))
    with pytest.raises(ValueError, match="one entry per example"):
        lh.Split(x, y, info={"a": np.ones(5)})
    moved = s.to(dtype=torch.float64)
    assert moved.y.dtype == torch.float64 and moved.info["index"] is s.info["index"] and moved.groups is s.groups
    assert moved.info is not s.info  # its own dict (the arrays are shared): a key set on one is not on the other
