"""Small helpers: device choice and seeding."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = ["device", "seed_everything", "atomic_write"]


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never half of one; if ``write`` raises (a failed
    checksum, an interrupted download) the temporary file is removed and ``path`` is untouched.
    The temporary file keeps ``path``'s suffix, for writers that choose a format by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped files are for everyone
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def device(prefer="auto") -> torch.device:
    """The library's one device rule; every function that takes a ``device`` resolves it here.

    ``"auto"`` (the default, ``dl.device()``): cuda if there is one, then mps, then cpu.
    ``None``: the CPU, which is what loading and sampling functions default to, so that a chapter
    computes the same numbers on any machine. A name (``"cpu"``, ``"cuda:1"``) or a torch.device:
    that device, after checking that it exists (a clear error instead of a failure deep in torch).
    """
    if prefer is None:
        return torch.device("cpu")
    if isinstance(prefer, str) and prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        d = torch.device(prefer)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', None, or a torch device such as 'cpu' or 'cuda:0'; got {prefer!r}"
        ) from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {str(d)!r} was asked for but torch.cuda.is_available() is False (use 'auto' or 'cpu')"
        )
    mps = getattr(torch.backends, "mps", None)
    if d.type == "mps" and not (mps is not None and mps.is_available()):
        raise RuntimeError("device 'mps' was asked for but torch.backends.mps.is_available() is False")
    return d


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
