"""Distances between sample sets, for scoring 2-D toys and low-dimensional samples."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["sliced_wasserstein", "mmd_rbf"]


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (N, D) and (M, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def sliced_wasserstein(
    x: torch.Tensor, y: torch.Tensor, n_projections: int = 256, generator: Optional[torch.Generator] = None
) -> float:
    """Sliced 1-Wasserstein distance between two sample sets (N, D) and (M, D).

    Averages over random unit directions the 1-D Wasserstein-1 distance of the projections,
    computed exactly from quantiles (both sets are resampled to a common quantile grid).
    """
    _check_pair(x, y)
    x, y = x.double(), y.double()
    D = x.shape[1]
    dirs = torch.randn(D, n_projections, generator=generator, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ dirs, dim=0)
    py, _ = torch.sort(y @ dirs, dim=0)
    n = max(px.shape[0], py.shape[0])
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    ix = (q * px.shape[0]).long().clamp(max=px.shape[0] - 1)
    iy = (q * py.shape[0]).long().clamp(max=py.shape[0] - 1)
    return float((px[ix] - py[iy]).abs().mean())


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Squared maximum mean discrepancy with a sum of RBF kernels (unbiased estimate)."""
    _check_pair(x, y)
    x, y = x.double(), y.double()
    xx, yy, xy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    k = lambda d2: sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)
    n, m = x.shape[0], y.shape[0]
    kxx = (k(xx).sum() - k(torch.zeros(())) * n) / (n * (n - 1))
    kyy = (k(yy).sum() - k(torch.zeros(())) * m) / (m * (m - 1))
    return float(kxx + kyy - 2 * k(xy).mean())
