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
