"""The Fashion-MNIST experiments end to end at tiny sizes: on the real Debian files when installed (CI installs
them), else on IDX fixture files written in the same format."""


import numpy as np
import pytest

from conftest import read_claims
from lazyhasty.cli import main
from lazyhasty.data.images import DEBIAN_FASHION_MNIST
from test_images import write_idx


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    if DEBIAN_FASHION_MNIST.is_dir():
        return None  # the real data
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("t10k", 400)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        images[np.arange(n), labels * 2, :] = 255  # a learnable stripe per class
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images, 2051, gz=True)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels, 2049, gz=True)
    return str(root)


def sets(data_root, *extra):
    out = [] if data_root is None else ["--set", f"data_root={data_root}"]
    for e in extra:
        out += ["--set", e]
    return out


def test_fig2_noise_tiny(tmp_path, data_root, capsys):
    """The set-up end to end at a size too small to reach its target: every run is reported as having missed it,
    and the claim is "not measured" with that reason, never a verdict."""
    assert main(["run", "fig2_noise", "--out", str(tmp_path), *sets(data_root, "n_train=500", "n_test=200",
                 "seeds=2", "max_epochs=2", "lazy_epochs=2", "probe_size=40", "width=32", "target=0.01")]) == 0
    claims = read_claims(tmp_path, "fig2_noise", ["stays_linear", "noisy_later"])
    noisy, lin = claims["noisy_later"], claims["stays_linear"]
    assert set(lin["numbers"]["per_pair"]) == {"seed 0", "seed 1"}
    assert noisy["held"] is None and "missed the progress target" in noisy["numbers"]["note"]
    assert noisy["numbers"]["rate_check"]["other_lazy_run"] == "lazy,half_rate"
    assert (tmp_path / "comparison.png").stat().st_size > 0 and (tmp_path / "verdict.csv").exists()
    m = __import__("lazyhasty").load_runs(tmp_path / "runs")
    assert {"clean", "noisy"} <= set(m.group) and {"ntk_alignment", "sign_similarity"} <= set(m.metric)
    assert set(m.run_id) == {f"{r}-seed={s}" for r in ("alpha=1", "alpha=100", "lazy,half_rate") for s in (0, 1)}
    assert not m.converged.any()  # 0.01 in 2 epochs: nobody


def test_fig2_cscores_and_fig5_tiny(tmp_path, data_root, capsys):
    assert main(["run", "fig2_cscores", "--out", str(tmp_path / "c"), *sets(
        data_root, "n_pool=600", "ratios=0.3,0.7", "runs_per_ratio=2", "estimator_epochs=2", "seeds=1",
        "max_epochs=2", "lazy_epochs=2", "width=32")]) == 0
    claims = read_claims(tmp_path / "c", "fig2_cscores", ["stays_linear", "hard_later", "hard_later@held_out",
                                                           "cscore_tracks_speed"])
    speed = claims["cscore_tracks_speed"]["numbers"]
    assert set(speed["mean_cscore_per_class"]) and -1 <= speed["spearman"] <= 1
    assert claims["hard_later"]["held"] is None  # one seed: no interval, never a verdict
    with np.load(tmp_path / "c" / "cscores.npz") as z:
        assert z["scores"].shape == (600,)
    assert main(["run", "fig5_lr", "--out", str(tmp_path / "l"), *sets(
        data_root, "n_train=400", "n_test=100", "seeds=1", "max_epochs=2", "lazy_epochs=2", "width=32",
        "lrs=0.04,0.02", "rate_check=false")]) == 0
    claims = read_claims(tmp_path / "l", "fig5_lr", ["stays_linear", "lr_not_alpha"])
    assert len(claims["lr_not_alpha"]["numbers"]["lr_spread"]) in (0, 1)
    m = __import__("lazyhasty").load_runs(tmp_path / "l" / "runs")
    assert set(m.run_id) == {"lr=0.04,alpha=1-seed=0", "lr=0.02,alpha=1-seed=0", "alpha=100-seed=0"}
    steps = m.groupby("run_id").step.max()  # budgets (4 steps an epoch): half the rate, twice the 2 epochs
    assert steps["lr=0.02,alpha=1-seed=0"] <= 16 and steps["alpha=100-seed=0"] <= 8


def test_missing_dataset_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lazyhasty.data.images.DEBIAN_FASHION_MNIST", tmp_path / "none")
    monkeypatch.delenv("LAZYHASTY_DATA", raising=False)
    (tmp_path / "empty").mkdir()
    code = main(["run", "fig2_noise", "--out", str(tmp_path / "o"), "--set", f"data_root={tmp_path / 'empty'}"])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "dataset-fashion-mnist" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "experiment.json").exists()  # refused before anything ran: the folder stays free
    # a given data_root is used or refused, never replaced by the system's copy
    monkeypatch.undo()
    code = main(["run", "fig2_noise", "--out", str(tmp_path / "o"), "--set", f"data_root={tmp_path / 'empty'}"])
    assert code == 2 and str(tmp_path / "empty") in capsys.readouterr().err


def test_fig3_tiny(tmp_path, data_root, capsys):
    assert main(["run", "fig3", "--out", str(tmp_path), *sets(data_root, "n_train=600", "k_balanced=10",
                 "n_test=200", "seeds=1", "max_epochs=2", "lazy_epochs=2", "width=32", "probe_size=40")]) == 0
    claims = read_claims(tmp_path, "fig3", ["stays_linear", "robust_first@bal_train", "robust_first@bal_test"])
    first = claims["robust_first@bal_train"]["numbers"]
    assert 0.5 <= first["linear_probe_accuracy"] <= 1 and set(first["gaps_per_alpha"]) == {"alpha=0.5", "alpha=1"}
    assert claims["robust_first@bal_train"]["held"] is None  # one seed: no interval, never a verdict
    m = __import__("lazyhasty").load_runs(tmp_path / "runs")
    assert {"with_spurious", "without_spurious", "y=+1,a=-1"} <= set(m.group)
    assert {"bal_train", "bal_test"} <= set(m.split)
    assert main(["run", "fig3", "--preset", "paper-waterbirds", "--out", str(tmp_path / "w")]) == 2


def test_cifar10_paths_on_fixture_batches(tmp_path, capsys):
    """The paper presets' code path (CIFAR-10 batches, ResNet18, published C-scores) at a tiny size, on CPU."""
    from test_images import write_cifar

    write_cifar(tmp_path / "cifar", n_per_batch=60)
    root = str(tmp_path / "cifar")
    common = ["--set", "dataset=cifar10", "--set", f"data_root={root}", "--set", "arch=resnet18",
              "--set", "width=4", "--set", "seeds=1", "--set", "max_epochs=1", "--set", "lazy_epochs=1",
              "--set", "rate_check=false", "--set", "device=cpu"]
    assert main(["run", "fig2_noise", "--out", str(tmp_path / "n"), *common, "--set", "n_train=100",
                 "--set", "n_test=40", "--set", "probe_size=10"]) == 0
    m = __import__("lazyhasty").load_runs(tmp_path / "n" / "runs")
    assert {"clean", "noisy"} <= set(m.group)
    from lazyhasty.data.images import cifar10

    labels = cifar10(root).y.numpy()
    np.savez(tmp_path / "cs.npz", scores=np.linspace(0, 1, len(labels)), labels=labels)
    assert main(["run", "fig2_cscores", "--out", str(tmp_path / "c"), *common, "--set", "n_pool=200",
                 "--set", f"cscore_file={tmp_path / 'cs.npz'}", "--set", "linearity=false",
                 "--set", "estimator_epochs=2"]) == 0
    with np.load(tmp_path / "c" / "cscores.npz") as z:
        assert z["scores"].shape == (200,)
    np.savez(tmp_path / "bad.npz", scores=np.zeros(len(labels)), labels=(labels + 1) % 10)
    assert main(["run", "fig2_cscores", "--out", str(tmp_path / "b"), *common, "--set", "n_pool=200",
                 "--set", f"cscore_file={tmp_path / 'bad.npz'}"]) == 2
    assert "not in this dataset's order" in capsys.readouterr().err
