import os

import pytest
import torch

torch.use_deterministic_algorithms(True)


def _own_cores() -> None:
    """Under pytest-xdist (``make test`` runs one test process per core), pin each test process to its own cores.
    What it starts (CLI runs, sweep workers, the notebook's kernel) inherits the pinning, so the sweep runner sees
    one core and starts one single-threaded worker: no two processes fight over a core. One test process (plain
    ``pytest``) uses two threads, as before."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    have = sorted(os.sched_getaffinity(0))
    if worker and count <= len(have):
        os.sched_setaffinity(0, have[int(worker.removeprefix("gw"))::count])
        threads = str(len(os.sched_getaffinity(0)))
    else:  # one test process, or more test processes than cores
        threads = str(1 if worker else min(2, len(have)))
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    torch.set_num_threads(int(threads))


_own_cores()


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie has ended: its files and locks are released)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def gen():
    """A seeded generator: tests draw their randomness from it, never from the global RNG."""
    return torch.Generator().manual_seed(1234)


def small_mlp(widths=(3, 16, 16, 2), activation="tanh", bias=True, seed=0, parametrization="standard"):
    from lazyhasty import MLP, seeded

    return seeded(lambda: MLP(list(widths), activation=activation, bias=bias,
                              parametrization=parametrization).double(), seed)


def read_claims(folder, experiment, ids=()):
    """claims.json of an experiment folder, checked against the one format of every experiment; ``ids`` must be
    among its claims. Returns {id: claim}."""
    import json
    from pathlib import Path

    doc = json.loads((Path(folder) / "claims.json").read_text())
    assert set(doc) == {"experiment", "claims"} and doc["experiment"] == experiment
    by_id = {}
    for c in doc["claims"]:
        assert set(c) == {"id", "text", "source", "held", "numbers"}, c
        assert c["held"] in (True, False, None) and isinstance(c["numbers"], dict)
        assert isinstance(c["text"], str) and len(c["text"]) > 20 and c["source"]
        by_id[c["id"]] = c
    assert len(by_id) == len(doc["claims"]), "claim ids must be unique"
    missing = set(ids) - set(by_id)
    assert not missing, f"missing claims {missing}; got {sorted(by_id)}"
    return by_id


# Files whose tests run for tens of seconds (whole presets, sweeps with subprocesses, the notebook): collected
# first, so that under pytest-xdist the test processes finish together instead of one waiting for the last long one.
LONG_FIRST = ("test_verdicts.py", "test_notebook.py", "test_sweep.py", "test_phase.py", "test_faults.py",
              "test_checkpoint.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: LONG_FIRST.index(item.path.name) if item.path.name in LONG_FIRST else len(LONG_FIRST))
