"""Image dataset loaders on fixture files written in exactly the standard formats, plus the real files."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lazyhasty.data.images import (
    DEBIAN_FASHION_MNIST,
    DatasetError,
    cifar10,
    cscores,
    fashion_mnist,
    label_noise,
    quantile_groups,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cscores"


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)


@pytest.fixture
def fmnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n, gz in (("train", 20, True), ("t10k", 8, False)):
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), 2051, gz)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, 2049, gz)
    return tmp_path


def test_fashion_mnist_fixture_gz_and_plain(fmnist_dir):
    tr = fashion_mnist(fmnist_dir, "train")
    te = fashion_mnist(fmnist_dir, "test")
    assert tr.x.shape == (20, 1, 28, 28) and te.x.shape == (8, 1, 28, 28)
    assert tr.x.dtype == torch.float32 and 0 <= float(tr.x.min()) and float(tr.x.max()) <= 1
    assert tr.y.tolist() == [i % 10 for i in range(20)]
    raw = gzip.decompress((fmnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    assert float(tr.x[3, 0, 5, 7]) == pytest.approx(raw[16 + 3 * 784 + 5 * 28 + 7] / 255)
    # a gzip file rewritten in place (same name, same size, within the clock's resolution) is read anew: the
    # decompressed contents a process keeps are found by the file's bytes, not its name or time
    write_idx(fmnist_dir / "train-images-idx3-ubyte.gz", np.full((20, 28, 28), 255), 2051, gz=True)
    assert float(fashion_mnist(fmnist_dir, "train").x.min()) == 1.0


def test_fashion_mnist_errors(fmnist_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LAZYHASTY_DATA", raising=False)
    f = fmnist_dir / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        fashion_mnist(fmnist_dir, "test")
    write_idx(f, np.zeros((8, 28, 28)), 2049, gz=False)  # a labels magic in an images file
    with pytest.raises(DatasetError, match="magic number 2049"):
        fashion_mnist(fmnist_dir, "test")
    (fmnist_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError, match="not a valid gzip"):
        fashion_mnist(fmnist_dir, "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr("lazyhasty.data.images.DEBIAN_FASHION_MNIST", tmp_path / "no-such-dir")
    with pytest.raises(DatasetError) as e:
        fashion_mnist(empty)
    assert str(empty) in str(e.value) and "apt-get install dataset-fashion-mnist" in str(e.value)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    te = fashion_mnist(split="test")
    assert te.x.shape == (10000, 1, 28, 28)
    assert np.bincount(te.y.numpy()).tolist() == [1000] * 10
    assert 0.2 < float(te.x.mean()) < 0.4  # mean pixel of Fashion-MNIST is about 0.29


def write_cifar(root: Path, n_per_batch=6):
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n_per_batch)), b"batch_label": name.encode()}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_fixture_batches(tmp_path):
    write_cifar(tmp_path / "c")
    tr, te = cifar10(tmp_path / "c", "train"), cifar10(tmp_path / "c", "test")
    assert tr.x.shape == (30, 3, 32, 32) and te.x.shape == (6, 3, 32, 32)
    with open(tmp_path / "c" / "data_batch_2", "rb") as f:
        b2 = pickle.load(f, encoding="bytes")
    # original order: example 6 is the first of batch 2; channel-major layout (R plane, then G, then B)
    assert tr.y[6] == b2[b"labels"][0]
    assert float(tr.x[6, 1, 0, 3]) == pytest.approx(b2[b"data"][0][1024 + 3] / 255)
    (tmp_path / "c" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a CIFAR-10 python batch"):
        cifar10(tmp_path / "c")
    with pytest.raises(DatasetError, match="not found"):
        cifar10(tmp_path / "nope")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared C-score files not present")
def test_public_cscores():
    with np.load(SHARED / "cifar10-cscores-orig-order.npz") as z:
        labels = z["labels"]
    s = cscores(SHARED / "cifar10-cscores-orig-order.npz", labels=labels)
    assert s.shape == (50000,) and 0 <= s.min() and s.max() <= 1
    wrong = labels.copy()
    wrong[:3] = (wrong[:3] + 1) % 10
    with pytest.raises(DatasetError, match="differ from the dataset's at 3 positions"):
        cscores(SHARED / "cifar10-cscores-orig-order.npz", labels=wrong)
    assert cscores(SHARED / "mnist-cscores.npy").shape == (60000,)
    with pytest.raises(DatasetError, match="60000 scores for a dataset of 10"):
        cscores(SHARED / "mnist-cscores.npy", labels=np.zeros(10))


def test_label_noise_and_quantile_groups():
    y = torch.arange(1000) % 10
    noisy, mask = label_noise(y, 0.15, 10, seed=3)
    assert int(mask.sum()) == 150
    assert bool((noisy[mask] != y[mask]).all()) and bool((noisy[~mask] == y[~mask]).all())
    counts = np.bincount(((noisy[mask] - y[mask]) % 10).numpy(), minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 5  # every other class is used
    assert torch.equal(label_noise(y, 0.15, 10, seed=3)[0], noisy)
    for bad in (torch.tensor([0, 12, 3]), torch.tensor([0.5, 1.7]), torch.tensor([-1, 2])):
        with pytest.raises(ValueError, match="class indices in 0..9"):
            label_noise(bad, 1.0, 10)
    g = quantile_groups(np.linspace(1, 0, 100), q=10)
    assert len(g) == 10 and all(len(v) == 10 for v in g.values())
    assert sorted(g["decile_1"].tolist()) == list(range(90, 100))  # lowest scores


def test_mnist_and_emnist_fixture_files(tmp_path, monkeypatch):
    from lazyhasty.data.images import emnist, mnist

    monkeypatch.delenv("LAZYHASTY_DATA", raising=False)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (12, 28, 28))
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs, 2051, gz=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(12) % 10, 2049, gz=True)
    for kind in ("train", "test"):  # EMNIST's own names; its images are stored transposed
        write_idx(tmp_path / f"emnist-digits-{kind}-images-idx3-ubyte.gz", imgs, 2051, gz=True)
        write_idx(tmp_path / f"emnist-digits-{kind}-labels-idx1-ubyte.gz", np.arange(12) % 10, 2049, gz=True)
    m = mnist(tmp_path, "test")
    assert m.x.shape == (12, 1, 28, 28) and m.y.tolist() == [i % 10 for i in range(12)]
    np.testing.assert_allclose(m.x[3, 0].numpy(), imgs[3] / 255.0, rtol=1e-6)
    e = emnist(tmp_path, "train")
    np.testing.assert_allclose(e.x[3, 0].numpy(), imgs[3].T / 255.0, rtol=1e-6)  # upright
    with pytest.raises(DatasetError, match=r"MNIST file train-images-idx3-ubyte\[.gz\] not found; looked in: .*nope"):
        mnist(tmp_path / "nope", "train")
    with pytest.raises(DatasetError, match="EMNIST \\(letters\\)"):
        emnist(tmp_path, "train", subset="letters")


def test_binary_task_from_mnist_images_keeps_the_pixel_layout(tmp_path):
    from lazyhasty.data.parity import binary_task

    rng = np.random.default_rng(2)
    for split, n in (("train", 40), ("t10k", 20)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051, gz=False)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, 2049, gz=False)
    tr, te = binary_task("mnist", ptr=20, pte=10, d=None, root=tmp_path, images=True)
    assert tr.x.shape == (20, 1, 28, 28) and te.x.shape == (10, 1, 28, 28)
    np.testing.assert_allclose(tr.x.flatten(1).norm(dim=1).numpy(), 28.0, rtol=1e-5)  # ||x|| = sqrt(784)
    with pytest.raises(ValueError, match="d=None"):
        binary_task("mnist", d=10, root=tmp_path, images=True)


def test_cscores_outside_zero_one_and_nan_are_refused(tmp_path):
    for bad in (np.nan, 1.5, -0.1):  # a NaN would sort as the easiest example, into the top decile
        np.save(tmp_path / "s.npy", np.array([0.2, bad, 0.9]))
        with pytest.raises(DatasetError, match="1 scores are NaN or outside"):
            cscores(tmp_path / "s.npy")
    with pytest.raises(ValueError, match="1 are NaN"):
        quantile_groups(np.array([0.2, np.nan, 0.9]), q=2)
