"""Gaussian mixtures in closed form, and the true reverse kernel of one forward step on a 1-D mixture.

One forward step q(x^t | x^{t-1}) = N(sqrt(1 - beta) x^{t-1}, beta) (Sohl-Dickstein et al. 2015, Eq. 2)
on data q(x^{t-1}) that is a mixture of Gaussians, and its reverse q(x^{t-1} | x^t) by Bayes' rule
(their Sec. 2.2): close to a Gaussian for small beta, clearly not for large beta. Chapter 02 (section
2, "The reverse trajectory and the true reverse kernel") and its reverse-kernel explorer draw these
functions; chapter 12 reuses :data:`DEFAULT_MIXTURE` and the mixture densities.

- :func:`mixture_params`, :func:`mixture_log_prob`: a mixture's parameters, checked, and its exact
  log-density (torch, float64); :func:`mixture_pdf`, :func:`gaussian_pdf`: densities in numpy, for plots.
- :func:`true_reverse_kernel`: q(x^{t-1} | x^t) on a grid, by Bayes' rule;
  :func:`gaussian_reverse_kernel`: the same in closed form when q(x^{t-1}) is one Gaussian;
  :func:`moment_match` and :func:`kernel_kl_to_gaussian`: a density's mean and variance on a grid,
  and its KL to the Gaussian with those moments (how far from Gaussian the kernel is).

Taught in chapters 02 and 12.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "DEFAULT_MIXTURE",
    "mixture_params",
    "mixture_log_prob",
    "mixture_pdf",
    "gaussian_pdf",
    "true_reverse_kernel",
    "gaussian_reverse_kernel",
    "moment_match",
    "kernel_kl_to_gaussian",
]

# the 1-D mixture of chapters 02 and 12 (and of the reverse-kernel explorer)
DEFAULT_MIXTURE = {"means": (-1.2, 0.2, 1.4), "stds": (0.25, 0.2, 0.3), "weights": (0.3, 0.3, 0.4)}


def mixture_params(means, stds, weights):
    """A mixture's parameters, checked, as float64 tensors.

    :param means: the component means, (K, D), or (K,) for a 1-D mixture.
    :param stds: the standard deviations (all > 0): a number, (K,) or (K, D).
    :param weights: K non-negative weights with a positive sum (normalized here); None for equal weights.
    :return: (means, stds, weights) of shapes (K, D), (K, D) and (K,), the weights summing to 1.

    Taught in chapters 02 and 12.
    """
    means = torch.as_tensor(means, dtype=torch.float64)
    if means.ndim == 1:
        means = means[:, None]
    if means.ndim != 2 or means.shape[0] < 1:
        raise ValueError(f"means must have shape [K x D] (or [K] for 1-D), got {tuple(means.shape)}")
    k, d = means.shape
    stds = torch.as_tensor(stds, dtype=torch.float64)
    if stds.ndim == 0:
        stds = stds.expand(k)
    if stds.ndim == 1:
        if stds.shape[0] != k:
            raise ValueError(f"stds must be a number, [K] or [K x D] with K = {k}, got {tuple(stds.shape)}")
        stds = stds[:, None].expand(k, d)
    if tuple(stds.shape) != (k, d):
        raise ValueError(f"stds must be a number, [K] or [K x D] with K = {k}, got {tuple(stds.shape)}")
    if not bool((stds > 0).all()):
        raise ValueError("stds must all be > 0")
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if tuple(weights.shape) != (k,) or not bool((weights >= 0).all()) or not weights.sum() > 0:
        raise ValueError(f"weights must be {k} numbers >= 0 with a positive sum, got {weights.tolist()}")
    return means, stds, weights / weights.sum()


def mixture_log_prob(x, means, stds=0.1, weights=None) -> torch.Tensor:
    """The exact log-density of a mixture of Gaussians with diagonal covariances.

        log q(x) = log sum_k w_k N(x; means_k, diag(stds_k^2)),

    computed with logsumexp (the other arguments as in :func:`mixture_params`).

    :param x: the points, (N, D), or (N,) for a 1-D mixture.
    :return: log q(x) in nats, float64, shape (N,).

    Taught in chapters 02 and 12.
    """
    means, stds, weights = mixture_params(means, stds, weights)
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim == 1 and means.shape[1] == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(f"x must have shape [N x {means.shape[1]}], got {tuple(x.shape)}")
    z = (x[:, None, :] - means[None]) / stds[None]  # (N, K, D)
    log_comp = -0.5 * (z**2).sum(-1) - torch.log(stds).sum(-1) - 0.5 * means.shape[1] * math.log(2 * math.pi)
    return torch.logsumexp(log_comp + torch.log(weights), dim=1)


def mixture_pdf(
    x: np.ndarray, means, stds, weights, scale: float = 1.0, extra_var: float = 0.0
) -> np.ndarray:
    """The density of a 1-D mixture after scaling and added Gaussian noise, in numpy (for plots).

        sum_k w_k N(x; scale m_k, scale^2 s_k^2 + extra_var)

    is the density of scale X + sqrt(extra_var) eps for X ~ the mixture (weights normalized here), at
    the points x of shape (N,); the result has shape (N,). With ``scale = sqrt(1 - beta)`` and
    ``extra_var = beta`` it is q(x^t) one forward step after the mixture q(x^{t-1}): the normalizer of
    :func:`true_reverse_kernel`.

    Taught in chapter 02.
    """
    m = np.asarray(means, dtype=np.float64)[None] * scale
    v = (np.asarray(stds, dtype=np.float64)[None] * scale) ** 2 + extra_var
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return (w * np.exp(-0.5 * (x[:, None] - m) ** 2 / v) / np.sqrt(2 * math.pi * v)).sum(1)


def gaussian_pdf(x, mean, var):
    """N(x; mean, var) in numpy, elementwise and broadcasting (var > 0).

    Taught in chapters 02 and 04.
    """
    return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * math.pi * var)


# ----------------------------------------------------------------------------------------------
# The true reverse kernel of a 1-D mixture (Sohl-Dickstein et al. 2015, Sec. 2.2)
# ----------------------------------------------------------------------------------------------


def _as_grid(grid) -> torch.Tensor:
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.ndim != 1 or g.numel() < 3:
        raise ValueError(f"grid must be a 1-D array of at least 3 points, got shape {tuple(g.shape)}")
    if not bool((g[1:] > g[:-1]).all()):
        raise ValueError("grid must be strictly increasing")
    return g


def _like(out: torch.Tensor, grid):
    return out if isinstance(grid, torch.Tensor) else out.numpy()


def true_reverse_kernel(
    grid,
    x_t: float,
    beta: float,
    means=DEFAULT_MIXTURE["means"],
    stds=DEFAULT_MIXTURE["stds"],
    weights=DEFAULT_MIXTURE["weights"],
):
    """The true reverse kernel q(x^{t-1} | x^t) on a grid, by Bayes' rule.

    Sohl-Dickstein et al. 2015, Sec. 2.2:

        q(x^{t-1} | x^t) = q(x^t | x^{t-1}) q(x^{t-1}) / q(x^t),
        q(x^t | x^{t-1}) = N(x^t; sqrt(1 - beta) x^{t-1}, beta)   (their Eq. 2, DDPM Eq. 2),

    with q(x^{t-1}) the 1-D Gaussian mixture (means, stds, weights), evaluated at every grid
    point and normalized so that its trapezoid-rule integral over the grid is 1 (the grid must
    cover the kernel's mass).

    :param grid: increasing values of x^{t-1}, shape (G,) (array or tensor).
    :param x_t: the value x^t conditioned on.
    :param beta: the step's variance beta_t in (0, 1).
    :return: the density on the grid, float64, shape (G,): a tensor if ``grid`` is one, else a numpy array.

    Taught in chapter 02.
    """
    if not 0 < beta < 1:
        raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
    g = _as_grid(grid)
    log_prior = mixture_log_prob(
        g, means=torch.as_tensor(means, dtype=torch.float64).reshape(-1, 1), stds=stds, weights=weights
    )
    log_lik = -0.5 * (x_t - math.sqrt(1 - beta) * g) ** 2 / beta
    logp = log_prior + log_lik
    p = torch.exp(logp - logp.max())
    z = torch.trapezoid(p, g)
    return _like(p / z, grid)


def gaussian_reverse_kernel(x_t: float, beta: float, mean: float, std: float) -> tuple[float, float]:
    """The reverse kernel in closed form when q(x^{t-1}) = N(mean, std^2).

    Bayes' rule with q(x^t | x^{t-1}) = N(sqrt(1 - beta) x^{t-1}, beta), completing the square, gives a
    Gaussian N(m, v) with

        1 / v = 1 / std^2 + (1 - beta) / beta,   m = v (mean / std^2 + sqrt(1 - beta) x_t / beta)

    (the computation that gives DDPM Eqs. 6-7's posterior, here in 1-D). Tensors broadcast: chapter 02
    passes all K components of a mixture at once.

    :return: (m, v), the kernel's mean and variance.

    Taught in chapter 02.
    """
    if not 0 < beta < 1:
        raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
    v = 1.0 / (1.0 / std**2 + (1 - beta) / beta)
    m = v * (mean / std**2 + math.sqrt(1 - beta) * x_t / beta)
    return m, v


def moment_match(grid, density) -> tuple[float, float]:
    """The mean and variance of a density given on a grid (trapezoid rule).

    They are those of the Gaussian closest to the density in KL(density || Gaussian): the ideal
    Gaussian reverse kernel.

    Taught in chapter 02.
    """
    g = _as_grid(grid)
    p = torch.as_tensor(density, dtype=torch.float64)
    z = torch.trapezoid(p, g)
    m = torch.trapezoid(p * g, g) / z
    v = torch.trapezoid(p * (g - m) ** 2, g) / z
    return float(m), float(v)


def kernel_kl_to_gaussian(grid, density) -> float:
    """KL(p || N(m, v)) in nats on the grid (trapezoid rule), where N(m, v) has p's mean and variance.

    The moments come from :func:`moment_match`. 0 for a Gaussian p, larger the further p is from one:
    the non-Gaussianity of a reverse kernel.

    Taught in chapter 02.
    """
    g = _as_grid(grid)
    p = torch.as_tensor(density, dtype=torch.float64)
    p = p / torch.trapezoid(p, g)
    m, v = moment_match(g, p)
    log_q = -0.5 * (g - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v)
    safe = torch.where(p > 0, p, torch.ones_like(p))
    integrand = torch.where(p > 0, p * (torch.log(safe) - log_q), torch.zeros_like(p))
    return max(float(torch.trapezoid(integrand, g)), 0.0)
