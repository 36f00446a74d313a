"""Spurious correlations: an offline benchmark built from Fashion-MNIST, and loaders for CelebA and Waterbirds.

Conventions: binary label y in {-1, +1}, spurious attribute a in {-1, +1}. An example is *with spurious* when
a = y (the easy feature agrees with the label) and *without* when a != y. Groups: ``with_spurious``,
``without_spurious`` and the four cells ``y=+1,a=+1``, ``y=+1,a=-1``, ``y=-1,a=+1``, ``y=-1,a=-1``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .groups import Groups, Split
from .images import DatasetError, fashion_mnist

UPPER_BODY = (0, 2, 4, 6)  # T-shirt/top, Pullover, Coat, Shirt
FOOTWEAR = (5, 7, 9)  # Sandal, Sneaker, Ankle boot


def spurious_groups(y: np.ndarray, a: np.ndarray) -> Groups:
    groups = {"with_spurious": a == y, "without_spurious": a != y}
    for yy in (1, -1):
        for aa in (1, -1):
            groups[f"y={yy:+d},a={aa:+d}"] = (y == yy) & (a == aa)
    return Groups(groups, n=len(y))


def plant(x: torch.Tensor, a: np.ndarray, feature: str = "patch", size: int = 4) -> torch.Tensor:
    """Images (n, 1, 28, 28) with the spurious feature where a = +1: a bright ``size`` x ``size`` patch in the top
    left corner (``"patch"``) or a bright 2-pixel border (``"border"``); a = -1 leaves the image unchanged."""
    x = x.clone()
    on = torch.as_tensor(a > 0)
    if feature == "patch":
        x[on, :, :size, :size] = 1.0
    elif feature == "border":
        x[on, :, :2, :] = 1.0
        x[on, :, -2:, :] = 1.0
        x[on, :, :, :2] = 1.0
        x[on, :, :, -2:] = 1.0
    else:
        raise ValueError(f"feature must be 'patch' or 'border', got {feature!r}")
    return x


def spurious_fashion_mnist(root=None, split: str = "train", rho: float = 0.95, n: int | None = None,
                           positive=UPPER_BODY, negative=FOOTWEAR, feature: str = "patch", balanced: bool = False,
                           seed: int = 0, device: str = "cpu") -> Split:
    """A binary task on Fashion-MNIST (``positive`` classes, y = +1, vs ``negative`` classes, y = -1; default
    upper-body garments vs footwear) with a spurious feature planted in the image that agrees with the label for
    a fraction ``rho`` of the examples (``balanced=True``: exactly half, and the four (y, a) cells equal in size,
    for evaluation sets).

    The core feature is learnable on its own (garment shape; fig3 reports a linear probe's accuracy on the
    clean images); the planted one is easier: a linear read-out of a few pixels. Deterministic in ``seed``.

    Returns a ``Split``: x (n, 1, 28, 28), y (n,) in {-1., +1.}, groups as in the module docstring; the clean
    images and the attribute are kept as ``split.info["clean"]`` and ``split.info["a"]``.
    """
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    if set(positive) & set(negative):
        raise ValueError("positive and negative classes overlap")
    base = fashion_mnist(root, split)
    labels = base.y.numpy()
    rng = np.random.default_rng(seed)
    pos = rng.permutation(np.nonzero(np.isin(labels, positive))[0])
    neg = rng.permutation(np.nonzero(np.isin(labels, negative))[0])
    m = min(len(pos), len(neg)) if n is None else n // 2
    if m > min(len(pos), len(neg)):
        raise DatasetError(f"asked for {n} examples; only {2 * min(len(pos), len(neg))} balanced ones exist in {split}")
    idx = np.concatenate([pos[:m], neg[:m]])
    y = np.concatenate([np.ones(m), -np.ones(m)])
    if balanced:  # each (y, a) cell gets half of its class
        a = np.concatenate([np.where(np.arange(m) < m // 2, 1.0, -1.0)] * 2) * y
    else:
        agree = rng.random(2 * m) < rho
        a = np.where(agree, y, -y)
    order = rng.permutation(2 * m)
    idx, y, a = idx[order], y[order], a[order]
    clean = base.x[torch.as_tensor(idx)]
    x = plant(clean, a, feature)
    return Split(x.to(device), torch.tensor(y, dtype=x.dtype, device=device), spurious_groups(y, a),
                 {"clean": clean, "a": a})


# -- CelebA and Waterbirds: user-supplied local copies -------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _center_crop(img, size: int):
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    t = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (t - mean) / std


def celeba_transform(img, size: int = 224) -> torch.Tensor:
    """Centre crop 178, resize to ``size`` (224: the usual CelebA setup), ImageNet normalisation."""
    from PIL import Image

    return _to_tensor(_center_crop(img, 178).resize((size, size), Image.BILINEAR))


def waterbirds_transform(img, size: int = 224) -> torch.Tensor:
    """Resize to 256/224 x ``size``, centre crop ``size`` (224: the group-DRO setup), ImageNet normalisation."""
    from PIL import Image

    big = round(size * 256 / 224)
    return _to_tensor(_center_crop(img.resize((big, big), Image.BILINEAR), size))


@dataclass
class ImageTable:
    """Image files with binary labels and attributes; decodes images on demand (``images(indices)``)."""

    folder: Path
    files: list[str]
    y: np.ndarray  # {-1, +1}
    a: np.ndarray  # {-1, +1}
    split: np.ndarray  # 0 train, 1 validation, 2 test
    transform: object
    size: int = 224  # output image size (smaller sizes for quick checks)

    @property
    def groups(self) -> Groups:
        return spurious_groups(self.y, self.a)

    @property
    def group_id(self) -> np.ndarray:
        """g = 2 y + a with y, a in {0, 1} (the group-DRO numbering)."""
        return 2 * (self.y > 0).astype(int) + (self.a > 0).astype(int)

    def subset(self, idx) -> ImageTable:
        idx = np.asarray(idx)
        return ImageTable(self.folder, [self.files[i] for i in idx], self.y[idx], self.a[idx], self.split[idx],
                          self.transform, self.size)

    def of_split(self, name: str) -> ImageTable:
        code = {"train": 0, "val": 1, "valid": 1, "test": 2}.get(name)
        if code is None:
            raise ValueError(f"split must be train, val or test, got {name!r}")
        return self.subset(np.nonzero(self.split == code)[0])

    def balanced(self, k: int, seed: int = 0) -> ImageTable:
        """k examples from each of the four (y, a) cells (George et al. use k = 180)."""
        rng = np.random.default_rng(seed)
        picks = []
        for g in range(4):
            cell = np.nonzero(self.group_id == g)[0]
            if len(cell) < k:
                raise DatasetError(f"group g={g} has only {len(cell)} examples, fewer than k = {k}")
            picks.append(rng.choice(cell, size=k, replace=False))
        return self.subset(np.sort(np.concatenate(picks)))

    def images(self, indices=None, progress: bool | None = None) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        from tqdm import tqdm

        indices = range(len(self.files)) if indices is None else indices
        out = []
        for i in tqdm(indices, desc="decoding images", disable=(None if progress is None else not progress),
                      leave=False):
            path = self.folder / self.files[i]
            if not path.is_file():
                raise DatasetError(f"image {path} listed in the metadata is missing")
            try:
                with Image.open(path) as img:
                    out.append(self.transform(img, self.size))
            except UnidentifiedImageError:
                raise DatasetError(f"{path} is not a readable image") from None
        return torch.stack(out)

    def to_split(self, progress: bool | None = None) -> Split:
        """All images decoded in memory (3 x size x size float32 each), labels y, groups; ``info["a"]`` kept."""
        return Split(self.images(progress=progress), torch.tensor(self.y, dtype=torch.float32), self.groups,
                     {"a": self.a})


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CelebA list file: .csv (header row) or the original .txt (count line, header line, whitespace rows)."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        return rows[0], rows[1:]
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if lines and len(lines[0]) == 1 and lines[0][0].isdigit():  # list_attr_celeba.txt starts with the count
        header, rows = ["image_id"] + lines[1], lines[2:]
    else:
        header, rows = None, lines
    return header, rows


def _first(root: Path, names: list[str]) -> Path:
    for n in names:
        if (root / n).is_file():
            return root / n
    raise DatasetError(f"none of {', '.join(names)} found in {root}; expected a CelebA copy with attribute and "
                       "partition lists and img_align_celeba/ (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)")


def celeba(root: str | Path, target: str = "Blond_Hair", spurious: str = "Male", sign: int = -1) -> ImageTable:
    """CelebA from ``root``: ``list_attr_celeba.txt`` or ``.csv`` (+-1 attributes), ``list_eval_partition.txt`` or
    ``.csv`` (0 train, 1 val, 2 test), images in ``img_align_celeba/``.

    y = the ``target`` attribute, a = ``sign`` x the ``spurious`` attribute, oriented so that a = y marks the groups
    that carry the correlation. The default is Sagawa et al.'s: blond hair vs gender, where blond women and
    dark-haired men are the majority (with spurious, a = -Male) and blond men and dark-haired women the minority."""
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign}")
    root = Path(root)
    header, rows = _read_table(_first(root, ["list_attr_celeba.txt", "list_attr_celeba.csv"]))
    if header is None:
        raise DatasetError(f"{root}: the attribute list has no header line with attribute names")
    for col in (target, spurious):
        if col not in header:
            raise DatasetError(f"{root}: attribute {col!r} not in the attribute list (columns: {len(header) - 1})")
    ti, si = header.index(target), header.index(spurious)
    files = [r[0] for r in rows]
    try:
        y = np.array([int(r[ti]) for r in rows])
        a = sign * np.array([int(r[si]) for r in rows])
    except (ValueError, IndexError):
        raise DatasetError(f"{root}: malformed attribute rows (expected +-1 values)") from None
    if not (set(np.unique(y)) <= {-1, 1} and set(np.unique(a)) <= {-1, 1}):
        raise DatasetError(f"{root}: attributes must be -1 or 1")
    _, prow = _read_table(_first(root, ["list_eval_partition.txt", "list_eval_partition.csv"]))
    part = {r[0]: int(r[1]) for r in prow if len(r) >= 2 and r[1].lstrip("-").isdigit()}
    missing = [f for f in files if f not in part]
    if missing:
        raise DatasetError(f"{root}: {len(missing)} images have no partition (first: {missing[0]})")
    return ImageTable(root / "img_align_celeba", files, y, a, np.array([part[f] for f in files]), celeba_transform)


def waterbirds(root: str | Path) -> ImageTable:
    """Waterbirds from ``root``/``metadata.csv`` with columns img_id, img_filename, y, split, place (the group-DRO /
    WILDS format; y = 1 water bird, place = 1 water background). y and a are mapped to {-1, +1}."""
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise DatasetError(f"{meta} not found; expected the Waterbirds folder of Sagawa et al. (group DRO) with "
                           "metadata.csv and the image folders")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"img_id", "img_filename", "y", "split", "place"}
    if not rows or not need <= set(rows[0]):
        have = set(rows[0]) if rows else set()
        raise DatasetError(f"{meta}: missing column(s) {', '.join(sorted(need - have))}")
    try:
        y = np.array([2 * int(r["y"]) - 1 for r in rows])
        a = np.array([2 * int(r["place"]) - 1 for r in rows])
        split = np.array([int(r["split"]) for r in rows])
    except ValueError:
        raise DatasetError(f"{meta}: y, place and split must be integers") from None
    return ImageTable(root, [r["img_filename"] for r in rows], y, a, split, waterbirds_transform)
