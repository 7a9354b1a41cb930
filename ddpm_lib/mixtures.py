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
- Sohl-Dickstein's bound on a 1-D mixture, computed exactly (chapter 02): :func:`noised_components` and
  :func:`mixture_reverse_kernel` (q(x^t) and q(x^{t-1} | x^t) in closed form); :func:`ideal_reverse` (the best
  Gaussian reverse process); :func:`grid_log_prob` (Eq. 6 by nested integrals on a grid) and
  :func:`affine_chain_log_prob` (the same in closed form for affine means); :func:`log_importance_weights`
  (Eq. 9 along forward trajectories); :func:`gauss_hermite`, :func:`bound_terms` and :func:`bound_from_terms`
  (the pieces of Eq. 14 by quadrature, and K from them).

Taught in chapters 02 and 12.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .gaussians import gaussian_entropy, gaussian_log_likelihood, normal_kl

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
    "noised_components",
    "mixture_reverse_kernel",
    "ideal_reverse",
    "grid_log_prob",
    "log_importance_weights",
    "affine_chain_log_prob",
    "gauss_hermite",
    "bound_terms",
    "bound_from_terms",
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


# ---- Sohl-Dickstein's bound on a 1-D mixture, computed exactly (chapter 02) --------------------------
def _mix1d(means, stds, weights):
    means, stds, weights = mixture_params(means, stds, weights)
    if means.shape[1] != 1:
        raise ValueError(f"means must describe a 1-D mixture ([K] or [K x 1]), got {tuple(means.shape)}")
    return means[:, 0], stds[:, 0], weights


def noised_components(
    alpha_bars,
    means=DEFAULT_MIXTURE["means"],
    stds=DEFAULT_MIXTURE["stds"],
    weights=DEFAULT_MIXTURE["weights"],
):
    """The K Gaussian components of a noised 1-D mixture q(x^t) = sum_k w_k N(m_k(t), v_k(t)).

    Each component N(mu_k, s_k^2) of the data stays Gaussian under the forward process:
    m_k(t) = sqrt(abar_t) mu_k and v_k(t) = abar_t s_k^2 + 1 - abar_t (abar_t = prod_{s<=t} (1 - beta_s)).

    :param alpha_bars: abar_t, a number or a tensor of any shape.
    :return: (means, variances, weights): the first two of shape alpha_bars.shape + (K,), float64;
        the weights (K,), summing to 1.

    Taught in chapter 02.
    """
    mu, sd, w = _mix1d(means, stds, weights)
    ab = torch.as_tensor(alpha_bars, dtype=torch.float64).unsqueeze(-1)
    return ab.sqrt() * mu, ab * sd**2 + 1 - ab, w


def mixture_reverse_kernel(x_t, beta: float, prior_means, prior_vars, weights):
    """The true reverse kernel q(x^{t-1} | x^t) in closed form when q(x^{t-1}) is a 1-D mixture.

    With q(x^{t-1}) = sum_k w_k N(prior_means_k, prior_vars_k), Bayes' rule gives a mixture of the
    components' Gaussian kernels (:func:`gaussian_reverse_kernel`), each weighted by its
    responsibility for x^t, r_k(x^t) ∝ w_k N(x^t; sqrt(1 - beta) m_k, (1 - beta) v_k + beta):

        q(x^{t-1} | x^t) = sum_k r_k(x^t) N(x^{t-1}; means_k(x^t), variances_k).

    :param x_t: values of x^t, any shape S.
    :param beta: the step's variance beta_t in (0, 1).
    :param prior_means: the K component means of q(x^{t-1}), (K,); ``prior_vars`` their variances, (K,).
    :param weights: the K weights, (K,), summing to 1.
    :return: (responsibilities, means, variances): the first two of shape S + (K,), the last (K,).

    Taught in chapter 02.
    """
    beta = float(beta)
    x = torch.as_tensor(x_t, dtype=torch.float64).unsqueeze(-1)
    prior_means = torch.as_tensor(prior_means, dtype=torch.float64)
    prior_vars = torch.as_tensor(prior_vars, dtype=torch.float64)
    means, variances = gaussian_reverse_kernel(x, beta, prior_means, prior_vars.sqrt())
    var_t = (1 - beta) * prior_vars + beta  # q_k(x^t)
    log_r = (
        torch.log(torch.as_tensor(weights, dtype=torch.float64))
        - 0.5 * (x - math.sqrt(1 - beta) * prior_means) ** 2 / var_t
        - 0.5 * torch.log(2 * math.pi * var_t)
    )
    return torch.softmax(log_r, -1), means, variances


def ideal_reverse(
    schedule,
    means=DEFAULT_MIXTURE["means"],
    stds=DEFAULT_MIXTURE["stds"],
    weights=DEFAULT_MIXTURE["weights"],
    variance: str = "matched",
):
    """The best Gaussian reverse process p(x^{t-1} | x^t) for 1-D mixture data, for every t.

    Its mean is that of the true reverse kernel, E[x^{t-1} | x^t] (:func:`mixture_reverse_kernel`); its
    variance is the kernel's own (``variance="matched"``: the Gaussian closest to the true kernel in
    KL, what a perfectly trained network with a free mean and variance gives) or beta_t
    (``variance="beta"``: DDPM's fixed sigma_t^2 = beta_t with the best mean). For one Gaussian
    component the mean is affine in x^t.

    :param schedule: a NoiseSchedule (``betas`` and ``alpha_bars``, paper indexing).
    :return: ``reverse(x_t, t) -> (mean, log_variance)``, both shaped like x_t, for t in 1..T.

    Taught in chapter 02.
    """
    if variance not in ("matched", "beta"):
        raise ValueError(f"variance must be 'matched' or 'beta', got {variance!r}")
    comp_means, comp_vars, w = noised_components(schedule.alpha_bars, means, stds, weights)  # row t: q(x^t)

    def reverse(x_t, t: int):
        if not 1 <= int(t) <= schedule.T:
            raise ValueError(f"t must lie in 1..{schedule.T}, got {t}")
        beta = float(schedule.betas[t])
        r, m, v = mixture_reverse_kernel(x_t, beta, comp_means[t - 1], comp_vars[t - 1], w)
        mean = (r * m).sum(-1)
        if variance == "beta":
            return mean, torch.full_like(mean, math.log(beta))
        return mean, (r * (v + (m - mean.unsqueeze(-1)) ** 2)).sum(-1).log()

    return reverse


def grid_log_prob(reverse, T: int, x0, grid) -> torch.Tensor:
    """log p(x^0) = log int p(x^{0:T}) dx^{1:T} as T nested 1-D integrals on a grid.

    Sohl-Dickstein et al. 2015, Eq. 6: p(x^T) = N(0, 1) on the grid (their Eq. 4); then
    p(x^{t-1}) = int p(x^{t-1} | x^t) p(x^t) dx^t for t = T..2, each a matrix-vector product (a
    Riemann sum on a uniform grid, exact to round-off for such smooth integrands);
    the last step is evaluated at the points x0.

    :param reverse: ``reverse(x_t, t) -> (mean, log_variance)`` of Gaussian kernels (:func:`ideal_reverse`).
    :param grid: a uniform grid of x values, (G,), covering the densities' mass.
    :param x0: the points, (M,) or (M, 1).
    :return: log p(x0), (M,), float64.

    Taught in chapter 02.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    dx = grid[1] - grid[0]
    col = grid[:, None]

    def kernel(at, t):  # p(at | x^t = grid), (len(at), G)
        mean, log_var = reverse(col, t)
        return torch.exp(
            -0.5 * (at - mean.T) ** 2 / log_var.T.exp() - 0.5 * (math.log(2 * math.pi) + log_var.T)
        )

    p = torch.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)  # p(x^T) = pi(x^T) = N(0, 1)
    for t in range(T, 1, -1):
        p = kernel(col, t) @ p * dx
    return (kernel(torch.as_tensor(x0, dtype=torch.float64).reshape(-1, 1), 1) @ p * dx).log()


def log_importance_weights(schedule, reverse, x0, n: int, generator=None) -> torch.Tensor:
    """log w(x^{0:T}) (Sohl-Dickstein et al. 2015, Eq. 9's integrand) along n forward trajectories from each x0.

        w = pi(x^T) prod_{t=1}^{T} p(x^{t-1} | x^t) / q(x^t | x^{t-1}),  pi = N(0, 1),

    with x^t = sqrt(1 - beta_t) x^{t-1} + sqrt(beta_t) eps drawn step by step. The mean of w over
    trajectories is p(x^0); the mean of log w is the bound K (Sohl-Dickstein et al. 2015, Eq. 12).

    :param reverse: ``reverse(x_t, t) -> (mean, log_variance)`` (:func:`ideal_reverse`).
    :param x0: the data points, (M, 1).
    :return: (M, n), float64.

    Taught in chapter 02.
    """
    x = torch.as_tensor(x0, dtype=torch.float64).reshape(-1, 1).repeat_interleave(n, 0)
    log_w = torch.zeros(len(x), dtype=torch.float64)

    def log_normal(v, m, lv):
        return -0.5 * (v - m) ** 2 / lv.exp() - 0.5 * (math.log(2 * math.pi) + lv)

    for t in range(1, schedule.T + 1):
        beta = schedule.betas[t]
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x_next = (1 - beta).sqrt() * x + beta.sqrt() * noise  # x^t ~ q(x^t | x^{t-1})
        mean, log_var = reverse(x_next, t)
        log_w += log_normal(x, mean, log_var)[:, 0]  # + log p(x^{t-1} | x^t)
        log_w -= log_normal(x_next, (1 - beta).sqrt() * x, beta.log())[:, 0]  # - log q(x^t | x^{t-1})
        x = x_next
    log_w += log_normal(x, 0.0, torch.zeros((), dtype=torch.float64))[:, 0]  # + log pi(x^T)
    return log_w.reshape(-1, n)


def affine_chain_log_prob(reverse, T: int, x0) -> torch.Tensor:
    """Exact log p(x^0) when every p(x^{t-1} | x^t) = N(a_t x^t + b_t, v_t) (a mean affine in x^t).

    N(0, 1) pushed through T affine-Gaussian steps stays Gaussian: m <- a_t m + b_t,
    v <- a_t^2 v + v_t. The a_t, b_t and v_t are read off ``reverse`` at x^t = 0 and 1 (so the
    variance must not depend on x^t: :func:`ideal_reverse` of one Gaussian component).

    :param x0: the points, (M,) or (M, 1).
    :return: log p(x0), (M,), float64.

    Taught in chapter 02.
    """
    m, v = 0.0, 1.0
    probe = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    for t in range(T, 0, -1):
        mean, log_var = reverse(probe, t)
        b, a = float(mean[0]), float(mean[1] - mean[0])
        m, v = a * m + b, a * a * v + float(log_var[0].exp())
    x = torch.as_tensor(x0, dtype=torch.float64).reshape(-1)
    return -0.5 * (x - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v)


def gauss_hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights (summing to 1) that integrate against N(0, 1), exact for polynomials of degree < 2n.

    Gauss-Hermite quadrature: E[f(eps)] ~ sum_i weights_i f(nodes_i) for eps ~ N(0, 1).

    :return: (nodes, weights), each (n,), float64.

    Taught in chapter 05.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    nodes, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(nodes, dtype=torch.float64), torch.tensor(w / w.sum(), dtype=torch.float64)


def bound_terms(diffusion, reverse, x0, nodes, weights) -> dict:
    """The pieces of the bound K for each data point, Sohl-Dickstein et al. 2015, Eq. 14 plus its t = 1 term, in nats.

    Each piece is an expectation over q(x^0, x^t) for one t: a 1-D integral over
    x^t = sqrt(abar_t) x^0 + sqrt(1 - abar_t) eps given x^0, done with ``nodes`` and ``weights``
    (:func:`gauss_hermite`, or Monte Carlo draws with weights 1/n).

    :param diffusion: a GaussianDiffusion (``q_sample``, ``q_posterior`` and its schedule).
    :param reverse: ``reverse(x_t, t) -> (mean, log_variance)`` of p(x^{t-1} | x^t).
    :param x0: the data points, (M, 1).
    :return: a dict of (M,) tensors (the entropies are numbers): ``kl`` = sum_{t>=2} E KL(q(x^{t-1}|x^t, x^0)
        || p(x^{t-1}|x^t)); ``H_T`` = H_q(X^T|X^0); ``H_1`` = H_q(X^1|X^0); ``cross_T`` = -E log pi(x^T);
        ``H_pi`` = H(pi); ``edge`` = E[log p(x^0|x^1) - log q(x^1|x^0)] (the t = 1 term).

    Taught in chapter 05.
    """
    s = diffusion.schedule
    x0 = torch.as_tensor(x0, dtype=torch.float64).reshape(-1, 1)
    M, Q = len(x0), len(nodes)
    X0 = x0.repeat_interleave(Q, 0)
    E = nodes.repeat(M)[:, None]

    def average(v):  # E over eps for each x0
        return (v.reshape(M, Q) * weights).sum(1)

    def at(t):
        return torch.full((M * Q,), t)

    kl = torch.zeros(M, dtype=torch.float64)
    for t in range(2, s.T + 1):
        x_t = diffusion.q_sample(X0, at(t), E)
        post = diffusion.q_posterior(X0, x_t, at(t))
        mean, log_var = reverse(x_t, t)
        kl += average(normal_kl(post.mean, post.log_variance, mean, log_var)[:, 0])
    mean, log_var = reverse(diffusion.q_sample(X0, at(1), E), 1)
    H_1 = gaussian_entropy(s.betas[1].log())
    return {
        "kl": kl,
        "H_T": gaussian_entropy(s.log_one_minus_alpha_bars[s.T]),
        "H_1": H_1,
        "cross_T": -average(gaussian_log_likelihood(diffusion.q_sample(X0, at(s.T), E), 0.0, 0.0)[:, 0]),
        "H_pi": gaussian_entropy(torch.tensor(0.0, dtype=torch.float64)),
        "edge": average(gaussian_log_likelihood(X0, mean, log_var)[:, 0]) + H_1,
    }


def bound_from_terms(terms: dict) -> torch.Tensor:
    """K from :func:`bound_terms`' pieces, nothing approximated.

    Sohl-Dickstein et al. 2015, Eq. 14 with the cross-entropy -E log pi(x^T) for H_p(X^T) and the
    t = 1 term kept: K = -kl + H_T - H_1 - cross_T + edge, (M,).

    Taught in chapter 05.
    """
    b = terms
    return -b["kl"] + b["H_T"] - b["H_1"] - b["cross_T"] + b["edge"]
