"""Spurious-correlation data: the Fashion-MNIST benchmark, and CelebA / Waterbirds loaders on fixture folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from lazyhasty import AlphaScaled, ResNet18
from lazyhasty.data.images import DatasetError
from lazyhasty.data.spurious import celeba, plant, spurious_fashion_mnist, waterbirds
from lazyhasty.models.pretrained import load_pretrained
from test_fmnist_experiments import data_root  # noqa: F401  (fixture: real data or IDX fixtures)


def test_spurious_fashion_mnist(data_root):  # noqa: F811
    tr = spurious_fashion_mnist(data_root, "train", rho=0.9, n=400, seed=1)
    y, a = tr.y.numpy(), tr.info["a"]
    assert len(tr) == 400 and (y == 1).sum() == 200
    assert abs((a == y).mean() - 0.9) < 0.05
    assert len(tr.groups["with_spurious"]) + len(tr.groups["without_spurious"]) == 400
    patch = tr.x[:, 0, :4, :4].flatten(1).mean(1).numpy()
    assert (patch[a > 0] == 1.0).all()  # the feature is planted exactly where a = +1
    assert torch.equal(plant(tr.info["clean"], -np.ones(400)), tr.info["clean"])
    bal = spurious_fashion_mnist(data_root, "test", n=200, balanced=True, seed=2)
    assert (bal.info["a"] == bal.y.numpy()).mean() == 0.5
    assert sorted(len(bal.groups[g]) for g in bal.groups if g.startswith("y=")) == [50, 50, 50, 50]
    again = spurious_fashion_mnist(data_root, "train", rho=0.9, n=400, seed=1)
    assert torch.equal(again.x, tr.x)


def make_celeba(root, fmt="txt"):
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names, attrs = ["Blond_Hair", "Smiling", "Male"], []
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)).save(root / "img_align_celeba" /
                                                                                   f"{i:06d}.jpg")
        attrs.append((f"{i:06d}.jpg", 1 if i % 2 else -1, -1, 1 if (i // 2) % 2 else -1))
    if fmt == "txt":
        lines = [str(len(attrs)), " ".join(names)] + [f"{f} {b:2d} {s:2d} {m:2d}" for f, b, s, m in attrs]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (root / "list_eval_partition.txt").write_text("".join(f"{f} {0 if i < 8 else 2}\n" for i, (f, *_) in
                                                              enumerate(attrs)))
    else:
        (root / "list_attr_celeba.csv").write_text("image_id," + ",".join(names) + "\n" + "".join(
            f"{f},{b},{s},{m}\n" for f, b, s, m in attrs))
        (root / "list_eval_partition.csv").write_text("image_id,partition\n" + "".join(
            f"{f},{0 if i < 8 else 2}\n" for i, (f, *_) in enumerate(attrs)))


@pytest.mark.parametrize("fmt", ["txt", "csv"])
def test_celeba_fixture(tmp_path, fmt):
    make_celeba(tmp_path, fmt)
    t = celeba(tmp_path)
    # fixture rows 0..3: dark-haired woman, blond woman, dark-haired man, blond man (Blond_Hair, Male)
    assert len(t.files) == 16 and t.y.tolist()[:4] == [-1, 1, -1, 1] and t.a.tolist()[:4] == [1, 1, -1, -1]
    s = t.to_split(progress=False)  # the images decoded, the attribute kept with them
    assert s.x.shape[0] == 16 and s.info["a"].tolist() == t.a.tolist() and s.y.tolist() == t.y.tolist()
    # Sagawa et al.: blond women and dark-haired men carry the spurious correlation, the other two are minorities
    assert t.groups["with_spurious"].tolist()[:2] == [1, 2] and t.groups["without_spurious"].tolist()[:2] == [0, 3]
    assert t.group_id.tolist()[:4] == [1, 3, 0, 2]  # g = 2y + a
    assert len(t.of_split("train").files) == 8 and len(t.of_split("test").files) == 8
    b = t.balanced(2, seed=0)
    assert np.bincount(b.group_id).tolist() == [2, 2, 2, 2]
    x = b.images([0, 1])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    with pytest.raises(DatasetError, match="fewer than k"):
        t.balanced(5)
    with pytest.raises(DatasetError, match="'Eyeglasses' not in"):
        celeba(tmp_path, target="Eyeglasses")
    (tmp_path / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DatasetError, match="missing"):
        t.images([3])


def test_waterbirds_fixture(tmp_path):
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    rng = np.random.default_rng(1)
    (tmp_path / "001.Black_footed_Albatross").mkdir()
    for i in range(8):
        f = f"001.Black_footed_Albatross/img_{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(tmp_path / f)
        rows.append(f"{i},{f},{i % 2},{i // 4},{(i // 2) % 2},/x/y.jpg")
    (tmp_path / "metadata.csv").write_text("\n".join(rows) + "\n")
    t = waterbirds(tmp_path)
    assert t.y.tolist() == [-1, 1] * 4 and t.a.tolist()[:4] == [-1, -1, 1, 1]
    assert sorted(t.groups) == sorted(["with_spurious", "without_spurious", "y=+1,a=+1", "y=+1,a=-1", "y=-1,a=+1",
                                       "y=-1,a=-1"])
    assert t.groups["with_spurious"].tolist() == [0, 3, 4, 7]
    assert t.images([0]).shape == (1, 3, 224, 224)
    (tmp_path / "metadata.csv").write_text("img_id,img_filename,y,split\n0,a.jpg,1,0\n")
    with pytest.raises(DatasetError, match="missing column"):
        waterbirds(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        waterbirds(tmp_path / "nope")


def test_pretrained_weights_and_their_frozen_batchnorm(tmp_path):
    src = ResNet18(num_outputs=1000)
    src.blocks[0].bn1.running_mean.fill_(0.5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = ResNet18(num_outputs=2)
    info = load_pretrained(dst, tmp_path / "w.pt")
    assert "head.weight" in info["skipped"] and "head.weight" in info["missing"]
    assert torch.equal(dst.stem[0].weight, src.stem[0].weight)
    bn = dst.blocks[0].bn1
    assert float(bn.running_mean[0]) == 0.5
    wrapped = AlphaScaled(dst, 100.0).train()
    x = torch.randn(2, 3, 32, 32)
    wrapped(x).sum().backward()
    assert float(bn.running_mean[0]) == 0.5 and int(bn.num_batches_tracked) == 0  # pretrained statistics kept
    assert bn.weight.grad is not None  # the affine parameters train
    with pytest.raises(Exception, match="not found"):
        load_pretrained(dst, tmp_path / "none.pt")


def test_fig3_waterbirds_path_on_fixture(tmp_path, capsys):
    """The paper-waterbirds code path (metadata, image decoding, pretrained ResNet18 with frozen batch norm) at a
    tiny size on the CPU."""
    import json

    from lazyhasty.cli import main

    rows = ["img_id,img_filename,y,split,place"]
    rng = np.random.default_rng(2)
    (tmp_path / "wb" / "birds").mkdir(parents=True)
    for i in range(16):
        f = f"birds/{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "wb" / f)
        rows.append(f"{i},{f},{i % 2},{0 if i < 8 else 2},{(i // 2) % 2}")
    (tmp_path / "wb" / "metadata.csv").write_text("\n".join(rows) + "\n")
    torch.save(ResNet18(num_outputs=1000, width=4).state_dict(), tmp_path / "w.pt")
    code = main(["run", "fig3", "--preset", "paper-waterbirds", "--out", str(tmp_path / "o"),
                 "--set", f"data_root={tmp_path / 'wb'}", "--set", f"pretrained={tmp_path / 'w.pt'}",
                 "--set", "device=cpu", "--set", "width=4", "--set", "image_size=32", "--set", "k_balanced=1",
                 "--set", "seeds=1", "--set", "max_epochs=1", "--set", "lazy_epochs=1", "--set", "batch_size=4",
                 "--set", "probe_size=4"])
    assert code == 0, capsys.readouterr().err
    claims = json.loads((tmp_path / "o" / "claims.json").read_text())
    assert "alpha=1" in {c["id"]: c for c in claims["claims"]}["robust_first@bal_test"]["numbers"]["gaps_per_alpha"]
    st = json.loads((tmp_path / "o" / "runs" / "alpha=100-seed=0" / "status.json").read_text())
    assert st["status"] == "complete"
