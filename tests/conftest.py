import pytest
import torch

# One thread: the tests use small tensors, where a second OpenMP thread costs more than it
# gives (and a loaded 2-core machine makes 2 threads up to 10x slower).
torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fresh CPU generator with a fixed seed, for reproducible draws."""
    return torch.Generator().manual_seed(1234)
