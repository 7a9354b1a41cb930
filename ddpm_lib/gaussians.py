"""Gaussian KL divergences, log-likelihoods, the discretized decoder's likelihood and entropies.

All functions work elementwise on broadcastable tensors and return values in nats; sum over
dimensions yourself, or reduce (B, ...) to (B,) with :func:`sum_flat` or :func:`mean_flat`.

Taught in chapters 01, 04 and 07.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "normal_kl",
    "gaussian_log_likelihood",
    "discretized_gaussian_log_likelihood",
    "discretized_gaussian_probs",
    "gaussian_entropy",
    "standard_normal_cdf",
    "approx_standard_normal_cdf",
    "mean_flat",
    "sum_flat",
]

LOG_2PI = math.log(2 * math.pi)


def _t(x, ref: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.tensor(
        x,
        dtype=ref.dtype if ref is not None else torch.get_default_dtype(),
        device=ref.device if ref is not None else None,
    )


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.

    0.5 * (logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2) - 1): the
    closed form that makes each L_{t-1} of DDPM Eq. 5 computable without sampling.

    Taught in chapters 01 and 04.
    """
    ref = next((x for x in (mean1, logvar1, mean2, logvar2) if isinstance(x, torch.Tensor)), None)
    if ref is None:
        raise TypeError("normal_kl needs at least one tensor argument")
    mean1, logvar1, mean2, logvar2 = (_t(x, ref) for x in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (
        logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0
    )


def gaussian_log_likelihood(x, mean, log_var) -> torch.Tensor:
    """log N(x; mean, exp(log_var)), the elementwise density, in nats.

    Taught in chapter 01.
    """
    x, mean, log_var = (_t(v, x if isinstance(x, torch.Tensor) else None) for v in (x, mean, log_var))
    return -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * torch.exp(-log_var))


def gaussian_entropy(log_var) -> torch.Tensor:
    """The differential entropy of N(., exp(log_var)) per dimension, in nats.

    H = 0.5 (1 + log 2 pi + log_var).

    Taught in chapters 02 and 12.
    """
    log_var = _t(log_var)
    return 0.5 * (1.0 + LOG_2PI + log_var)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x), the standard normal CDF, exact (through erf).

    The bin probabilities of the discretized decoder (DDPM Eq. 13) are differences of Phi.

    Taught in chapter 07.
    """
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of Phi that DDPM's code uses (Page 1977); its largest error is about 2e-4.

    Taught in chapter 07.
    """
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _log_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # log Phi(x) without underflow for very negative x (special.log_ndtr is stable there)
    return torch.special.log_ndtr(x)


def discretized_gaussian_log_likelihood(x, mean, log_scale, *, exact: bool = True) -> torch.Tensor:
    """log p(x | mean, scale) for 8-bit data scaled to [-1, 1], elementwise (DDPM Eq. 13).

    Each of the 256 values x = 2k/255 - 1 owns the bin [x - 1/255, x + 1/255]; the first bin
    extends to -inf and the last to +inf, so the 256 probabilities sum to 1 exactly.
    ``exact=True`` uses the exact normal CDF in log space (stable in the tails); ``exact=False`` uses
    the tanh approximation of DDPM's original code, clamped at 1e-12 as there.

    :param x: data in [-1, 1] (values off the 8-bit grid are accepted: the bin is centred on x).
    :param mean: the decoder's mean, broadcastable with x.
    :param log_scale: log(sigma), half the log variance, broadcastable with x.
    :return: the log-probabilities in nats, in the broadcast shape of x, mean and log_scale.

    Taught in chapter 07.
    """
    x = _t(x)
    mean, log_scale = _t(mean, x), _t(log_scale, x)
    if x.numel() and (x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6):
        raise ValueError(
            f"x must lie in [-1, 1] (8-bit data scaled by x/127.5 - 1); got values in "
            f"[{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    centered = x - mean
    inv_stdv = torch.exp(-log_scale)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    lower_edge = x < -0.999
    upper_edge = x > 0.999
    if exact:
        # Each branch below is evaluated everywhere but used only where selected; torch.where passes
        # 0 * (the discarded branch's gradient) back, and 0 * inf = nan. So each branch gets its real
        # inputs where it is used and harmless ones (a = -1, b = 1) elsewhere.
        interior = ~(lower_edge | upper_edge)
        upper = min_in > 0  # both ends in the upper tail: difference of survival functions
        use_lo, use_up = interior & ~upper, interior & upper
        a_lo, b_lo = torch.where(use_lo, min_in, -1.0), torch.where(use_lo, plus_in, 1.0)
        a_up, b_up = torch.where(use_up, min_in, -1.0), torch.where(use_up, plus_in, 1.0)
        # log(Phi(b) - Phi(a)) = log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b))), stable for a <= 0;
        # for a > 0 the mirrored form log(Q(a) - Q(b)) with Q(z) = Phi(-z)
        log_phi_b = _log_normal_cdf(b_lo)
        mid_lower = log_phi_b + torch.log1p(-torch.exp((_log_normal_cdf(a_lo) - log_phi_b).clamp(max=0)))
        log_q_a = _log_normal_cdf(-a_up)
        mid_upper = log_q_a + torch.log1p(-torch.exp((_log_normal_cdf(-b_up) - log_q_a).clamp(max=0)))
        log_delta = torch.where(upper, mid_upper, mid_lower)
        log_cdf_plus = _log_normal_cdf(torch.where(lower_edge, plus_in, 0.0))  # log P(X <= x + 1/255)
        log_one_minus_cdf_min = _log_normal_cdf(-torch.where(upper_edge, min_in, 0.0))  # log P(X > x - 1/255)
        return torch.where(
            lower_edge, log_cdf_plus, torch.where(upper_edge, log_one_minus_cdf_min, log_delta)
        )
    cdf_plus = approx_standard_normal_cdf(plus_in)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        lower_edge,
        log_cdf_plus,
        torch.where(upper_edge, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


def discretized_gaussian_probs(mean, log_scale, *, exact: bool = True) -> torch.Tensor:
    """The 256 bin probabilities of the discretized decoder (DDPM Eq. 13).

    A mean of shape (...) gives probabilities of shape (..., 256), which sum to 1 over the last dimension.

    Taught in chapter 07.
    """
    mean = _t(mean)
    log_scale = _t(log_scale, mean)
    grid = torch.arange(256, dtype=mean.dtype, device=mean.device) * (2.0 / 255.0) - 1.0
    return discretized_gaussian_log_likelihood(
        grid, mean.unsqueeze(-1), log_scale.unsqueeze(-1), exact=exact
    ).exp()


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """The mean over all dimensions but the first: (B, ...) -> (B,).

    How L_simple is reduced per example (as in DDPM's code).

    Taught in chapter 09.
    """
    return x.reshape(x.shape[0], -1).mean(dim=1)


def sum_flat(x: torch.Tensor) -> torch.Tensor:
    """The sum over all dimensions but the first: (B, ...) -> (B,).

    A diagonal Gaussian's KL or log-likelihood is the sum of its per-dimension terms: how each term of
    the bound is formed per example.

    Taught in chapter 04.
    """
    return x.reshape(x.shape[0], -1).sum(dim=1)
