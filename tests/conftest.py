import pytest
import torch

torch.use_deterministic_algorithms(True)
torch.set_num_threads(2)


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
