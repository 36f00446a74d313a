"""Real image datasets, read offline from local files in their standard formats.

* Fashion-MNIST: the four IDX files (gzip or not), from ``root``, ``$LAZYHASTY_DATA/fashion-mnist``, or
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
* MNIST and EMNIST: their IDX files (gzip or not), from ``root`` or ``$LAZYHASTY_DATA/mnist`` / ``emnist``.
* CIFAR-10: the python-pickle batches ``data_batch_1..5`` and ``test_batch`` (``cifar-10-batches-py``), read by an
  unpickler that admits data only (dicts, lists, bytes, numbers, numpy arrays): a file that names code is refused.
* C-scores of Jiang et al. (2021): ``cifar10-cscores-orig-order.npz`` / ``cifar100-...`` (keys ``scores``,
  ``labels``) and ``mnist-cscores.npy``, from a user path.
Nothing is ever downloaded; a missing or malformed file is a :class:`DatasetError` that says where we looked
and how to get the data.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .groups import Groups, Split

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DatasetError(UsageError):
    """A dataset that is missing, truncated or corrupt (a usage error: the CLI exits with code 2)."""


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric

    return {(mod, name): obj for mods, name, obj in (
        (("numpy.core.multiarray", "numpy._core.multiarray"), "_reconstruct", multiarray._reconstruct),
        (("numpy.core.multiarray", "numpy._core.multiarray"), "scalar", multiarray.scalar),
        (("numpy.core.numeric", "numpy._core.numeric"), "_frombuffer", numeric._frombuffer),
        (("numpy",), "ndarray", np.ndarray), (("numpy",), "dtype", np.dtype), (("_codecs",), "encode", codecs.encode),
    ) for mod in mods}


class _DataUnpickler(pickle.Unpickler):
    """Reads a pickle that holds data only: dicts, lists, bytes, strings, numbers and numpy arrays / scalars. Any
    other global (a function, a class: what a crafted file needs to run code) is refused, never looked up."""

    def find_class(self, module, name):
        allowed = _numpy_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a data file never needs (refused: "
                                         "loading it could run code)")
        return allowed[(module, name)]


_GUNZIPPED: dict[bytes, bytes] = {}  # sha256 of a gzip file -> its contents (the last four files read)


def _open_maybe_gz(path: Path) -> bytes:
    """A file's bytes, gunzipped when it is gzip. Decompressed contents are kept by the compressed bytes' hash, so
    a process that reads a dataset again (a sweep worker's cells, a test session) does not decompress it again,
    and a file that changed is never served from the old contents."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    key = hashlib.sha256(data).digest()
    if key not in _GUNZIPPED:
        try:
            contents = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path} is not a valid gzip file ({e}); re-download or reinstall it") from None
        if len(_GUNZIPPED) >= 4:
            del _GUNZIPPED[next(iter(_GUNZIPPED))]
        _GUNZIPPED[key] = contents
    return _GUNZIPPED[key]


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX array (LeCun's MNIST format): big-endian magic (0x08 = uint8, then the number of dimensions),
    dimension sizes, then the data. Validates the magic number and that the payload has exactly the size
    announced by the header."""
    raw = _open_maybe_gz(path)
    if len(raw) < 8:
        raise DatasetError(f"{path} is truncated ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: magic number {magic} (expected {expected_magic}); not an IDX file of this kind")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DatasetError(f"{path}: header announces {size} bytes of data, file has {len(raw) - header}; "
                           "the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(root, name: str, sub: str = "fashion-mnist", default: Path | None = DEBIAN_FASHION_MNIST
          ) -> tuple[Path | None, list[Path]]:
    """The first existing ``name`` or ``name.gz`` in the search path, and the folders looked in: ``root`` alone when
    it is given (a given folder is used or refused, never replaced by another), else ``$LAZYHASTY_DATA/<sub>``
    and ``default``."""
    places = []
    if root is not None:
        places.append(Path(root))
    else:
        if os.environ.get("LAZYHASTY_DATA"):
            places.append(Path(os.environ["LAZYHASTY_DATA"]) / sub)
        if default is not None:
            places.append(default)
    for d in places:
        for cand in (d / name, d / f"{name}.gz"):
            if cand.is_file():
                return cand, places
    return None, places


def _idx_split(root, split: str, names: tuple[str, str], sub: str, default: Path | None, what: str, howto: str,
               dtype: torch.dtype, transpose: bool = False) -> Split:
    """A Split from an IDX image file and its label file: x (n, 1, H, W) in [0, 1] (``transpose``: images stored
    transposed, returned upright), y (n,) int64, one group ``class_<label>`` per label present."""
    if split not in _IDX_FILES:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    arrays = []
    for name, magic in zip(names, (2051, 2049)):
        path, places = _find(root, name, sub, default)
        if path is None:
            raise DatasetError(f"{what} file {name}[.gz] not found; looked in: "
                               f"{', '.join(map(str, places)) or '(no folder given)'}. {howto}")
        arrays.append(read_idx(path, magic))
    images, labels = arrays
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{what}: {images.shape[0]} images of shape {images.shape[1:]} for "
                           f"{labels.shape[0]} labels; the files do not belong together")
    if transpose:
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    x = torch.tensor(images, dtype=dtype).div_(255.0).unsqueeze(1)
    return Split(x, torch.tensor(labels.astype(np.int64)),
                 Groups.from_labels(labels, names={int(i): f"class_{int(i)}" for i in np.unique(labels)}))


def fashion_mnist(root: str | Path | None = None, split: str = "train", dtype: torch.dtype = torch.float32) -> Split:
    """Fashion-MNIST (Xiao et al. 2017) as a ``Split``: x (n, 1, 28, 28) in [0, 1], y (n,) int64 in 0..9.

    Args:
        root: folder with the IDX files; otherwise ``$LAZYHASTY_DATA/fashion-mnist``, then the Debian package's
            ``/usr/share/datasets/fashion-mnist``.
        split: ``"train"`` (60000) or ``"test"`` (10000).
    """
    s = _idx_split(root, split, _IDX_FILES.get(split, ()), "fashion-mnist", DEBIAN_FASHION_MNIST, "Fashion-MNIST",
                   "Install it with `sudo apt-get install dataset-fashion-mnist`, or download the four IDX files "
                   "from https://github.com/zalandoresearch/fashion-mnist into a folder and pass it as root "
                   "(or set LAZYHASTY_DATA=<folder containing fashion-mnist/>)", dtype)
    if s.x.shape[2:] != (28, 28):
        raise DatasetError(f"Fashion-MNIST {split}: images of shape {tuple(s.x.shape[2:])}, expected (28, 28)")
    if int(s.y.max()) > 9:
        raise DatasetError(f"Fashion-MNIST {split}: label {int(s.y.max())} out of range 0..9")
    return s


def mnist(root: str | Path | None = None, split: str = "train", dtype: torch.dtype = torch.float32) -> Split:
    """MNIST (LeCun et al. 1998) from its four IDX files (gzip or not) in ``root`` or ``$LAZYHASTY_DATA/mnist``:
    x (n, 1, 28, 28) in [0, 1], y (n,) int64 in 0..9. ``split``: ``"train"`` (60000) or ``"test"`` (10000)."""
    return _idx_split(root, split, _IDX_FILES.get(split, ()), "mnist", None, "MNIST",
                      "Download the four IDX files (train-images-idx3-ubyte.gz, ...) from "
                      "http://yann.lecun.com/exdb/mnist/ into a folder and pass it as root "
                      "(or set LAZYHASTY_DATA=<folder containing mnist/>)", dtype)


def emnist(root: str | Path | None = None, split: str = "train", subset: str = "digits",
           dtype: torch.dtype = torch.float32) -> Split:
    """EMNIST (Cohen et al. 2017), one subset of the IDX release (``gzip/emnist-<subset>-train-images-idx3-ubyte.gz``
    etc.), from ``root`` or ``$LAZYHASTY_DATA/emnist``. The IDX images are stored transposed; they are returned
    upright. x (n, 1, 28, 28) in [0, 1], y (n,) int64 as in the files (``letters`` counts from 1)."""
    names = (f"emnist-{subset}-{split}-images-idx3-ubyte", f"emnist-{subset}-{split}-labels-idx1-ubyte")
    return _idx_split(root, split, names, "emnist", None, f"EMNIST ({subset})",
                      "Download gzip.zip from https://www.nist.gov/itl/products-and-services/emnist-dataset, unzip "
                      "it and pass the gzip folder as root (or set LAZYHASTY_DATA=<folder containing emnist/>)",
                      dtype, transpose=True)


def cifar10(root: str | Path, split: str = "train", dtype: torch.dtype = torch.float32) -> Split:
    """CIFAR-10 from the python-pickle batches in ``root`` (``cifar-10-batches-py``), in the original order:
    x (n, 3, 32, 32) in [0, 1], y (n,) int64. ``split``: ``"train"`` (data_batch_1..5) or ``"test"``."""
    root = Path(root)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"] if split == "test" \
        else None
    if names is None:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    xs, ys = [], []
    for name in names:
        path = root / name
        if not path.is_file():
            raise DatasetError(f"CIFAR-10 batch {path} not found; download and extract the python version "
                               "(cifar-10-python.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html and pass "
                               "the cifar-10-batches-py folder")
        try:
            with open(path, "rb") as f:
                batch = _DataUnpickler(f, encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except Exception as e:
            raise DatasetError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DatasetError(f"{path}: data of shape {data.shape} with {len(labels)} labels; expected (n, 3072)")
        xs.append(data)
        ys.append(labels)
    data = np.concatenate(xs).reshape(-1, 3, 32, 32)
    labels = np.concatenate(ys)
    if labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"CIFAR-10 labels out of range 0..9 in {root}")
    x = torch.tensor(data, dtype=dtype).div_(255.0)
    return Split(x, torch.tensor(labels), Groups.from_labels(labels, names={i: f"class_{i}" for i in range(10)}))


def cscores(path: str | Path, labels=None) -> np.ndarray:
    """C-scores of Jiang et al. (2021) from a ``.npz`` (keys ``scores``, ``labels``) or ``.npy`` (scores only).

    If ``labels`` (the dataset's labels in its original order) are given and the file has labels, they must
    match element by element; otherwise this is an error (the scores would be attached to the wrong examples).
    Returns the scores, float64 (n,).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"C-score file {path} not found; the public files are at "
                           "https://github.com/pluskid/structural-regularity (cifar10-cscores-orig-order.npz, "
                           "cifar100-cscores-orig-order.npz, mnist-cscores.npy)")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                scores = np.asarray(z["scores"], dtype=np.float64)
                file_labels = np.asarray(z["labels"]) if "labels" in z.files else None
        else:
            scores = np.asarray(np.load(path), dtype=np.float64)
            file_labels = None
    except Exception as e:
        raise DatasetError(f"cannot read C-scores from {path}: {type(e).__name__}: {e}") from None
    if scores.ndim != 1:
        raise DatasetError(f"{path}: scores must be one-dimensional, got shape {scores.shape}")
    if not ((scores >= 0) & (scores <= 1)).all():  # a C-score is an expected accuracy; NaN would sort as easiest
        raise DatasetError(f"{path}: {int(np.sum(~((scores >= 0) & (scores <= 1))))} scores are NaN or outside [0, 1]")
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(scores):
            raise DatasetError(f"{path} has {len(scores)} scores for a dataset of {len(labels)} examples")
        if file_labels is not None and not np.array_equal(file_labels, labels):
            bad = int(np.sum(file_labels != labels))
            raise DatasetError(f"{path}: the file's labels differ from the dataset's at {bad} positions; the scores "
                               "are not in this dataset's order")
    return scores


def label_noise(y, fraction: float, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the labels of ``round(fraction * n)`` examples, chosen at random, by a *different* class drawn
    uniformly. Returns (noisy labels (n,), noisy mask (n,) bool)."""
    y = torch.as_tensor(y)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if y.is_floating_point() or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
        raise ValueError(f"labels must be class indices in 0..{num_classes - 1} (a label outside would wrap round)")
    y = y.long()
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    idx = torch.randperm(n, generator=g)[: int(round(fraction * n))]
    shift = torch.randint(1, num_classes, (len(idx),), generator=g)  # 1..C-1: never the true class
    noisy = y.clone()
    noisy[idx] = (y[idx] + shift) % num_classes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[idx] = True
    return noisy, mask


def quantile_groups(scores, q: int = 10, prefix: str = "decile") -> Groups:
    """Groups of examples by quantile of ``scores`` (q = 10: deciles; group ``{prefix}_1`` has the lowest scores).
    Ties are broken by order so that groups have equal sizes (up to one)."""
    scores = np.asarray(scores)
    if not np.isfinite(scores).all():
        raise ValueError(f"scores must be finite; {int(np.sum(~np.isfinite(scores)))} are NaN or infinite")
    order = np.argsort(scores, kind="stable")
    bins = np.array_split(order, q)
    return Groups({f"{prefix}_{i + 1}": b for i, b in enumerate(bins)}, n=len(scores))
