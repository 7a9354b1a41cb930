"""Small helpers: device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["device", "seed_everything"]


def device(prefer: str | None = None) -> torch.device:
    """cuda if there is one, then mps, then cpu (or ``prefer`` when given and available)."""
    if prefer is not None:
        if prefer == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch.cuda.is_available() is False")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
