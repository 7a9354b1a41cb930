import os
import sys

import pytest
import torch

# Tests run on the CPU with 2 threads (this machine and CI have 2 cores).
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    """A fresh CPU generator with a fixed seed, for reproducible draws."""
    return torch.Generator().manual_seed(1234)
