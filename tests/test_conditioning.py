"""The library pieces chapter 12 added: NoiseSchedule.reverse_entropy_bounds (Sohl-Dickstein et al.
2015, Eq. 24), sampling.perturbed_mean (App. C, Eq. 61) and sampling.sample_perturbed (Sec. 2.5)."""

import math

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.sampling import perturbed_mean, sample_perturbed


# ---- reverse_entropy_bounds --------------------------------------------------------------------
def test_entropy_bounds_closed_forms():
    s = dl.NoiseSchedule.linear(T=300, beta_start=1e-4, beta_end=0.05)
    lo, up = s.reverse_entropy_bounds()
    assert lo.shape == up.shape == (s.T + 1,)
    assert math.isnan(float(lo[0])) and math.isnan(float(up[0]))
    assert float(lo[1]) == -math.inf
    h = lambda v: 0.5 * torch.log(2 * math.pi * math.e * v)  # noqa: E731
    torch.testing.assert_close(up[1:], h(s.betas[1:]))
    torch.testing.assert_close(lo[2:], h(s.posterior_variance[2:]))  # lower_t = entropy of beta~_t
    assert bool((lo[1:] <= up[1:]).all())


@pytest.mark.parametrize("std", [1.0, 1e-4, 0.5])
def test_entropy_bounds_are_attained_by_gaussian_data(std):
    """Data N(0, std^2): H(X_{t-1}|X_t) = 1/2 log(2 pi e V_{t-1} beta_t / V_t), V_t = abar_t std^2 + 1 - abar_t:
    the upper bound for std = 1, the lower bound as std -> 0, in between otherwise."""
    s = dl.NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.1)
    lo, up = s.reverse_entropy_bounds()
    _, V = dl.GaussianData(dim=1, std=std).marginal(s.alpha_bars)
    V = V[:, 0]
    true = 0.5 * torch.log(2 * math.pi * math.e * V[:-1] * s.betas[1:] / V[1:])
    if std == 1.0:
        torch.testing.assert_close(true, up[1:])
    elif std < 1e-3:
        torch.testing.assert_close(true[1:], lo[2:], atol=1e-5, rtol=1e-5)
    else:
        assert bool((true[1:] > lo[2:]).all()) and bool((true < up[1:]).all())


# ---- perturbed_mean ----------------------------------------------------------------------------------
def test_perturbed_mean_is_first_order_in_the_variance():
    """For a Gaussian r = N(c, w^2) the product is exactly Gaussian; the first-order mean's error
    shrinks like Sigma^2 (slope 2 on a log-log scale)."""
    c, w = 0.8, 0.5
    mu = torch.tensor([[0.1, -0.4]], dtype=torch.float64)
    errs = []
    for var in (1e-2, 1e-3, 1e-4):
        exact = (mu / var + c / w**2) / (1 / var + 1 / w**2)
        approx = perturbed_mean(mu, var, lambda y: -(y - c) / w**2)
        errs.append(float((approx - exact).abs().max()))
    slopes = [math.log10(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(1.9 < k < 2.1 for k in slopes), slopes


def test_perturbed_mean_bad_arguments():
    m = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="grad_log_r must be a callable"):
        perturbed_mean(m, 0.1, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shaped like mean"):
        perturbed_mean(m, 0.1, lambda y: y[0])
    with pytest.raises(ValueError, match="variance must be >= 0"):
        perturbed_mean(m, -0.1, lambda y: y)
    with pytest.raises(ValueError, match="variance must be >= 0"):
        perturbed_mean(m, -torch.ones(2, 1), lambda y: y)
    with pytest.raises(TypeError, match="mean must be a tensor"):
        perturbed_mean([0.0], 0.1, lambda y: y)


# ---- sample_perturbed --------------------------------------------------------------------------------
def _gaussian_setup(T=60):
    s = dl.NoiseSchedule.linear(T=T, beta_start=1e-3, beta_end=0.2, warn=False)
    d = dl.GaussianDiffusion(s, variance="fixed_large", decoder="gaussian")
    return s, d, dl.GaussianData(dim=1, std=1.0).eps_model(s.alpha_bars)


def test_sample_perturbed_without_r_is_algorithm_2():
    s, d, model = _gaussian_setup()
    a = d.sample(model, (64, 1), generator=torch.Generator().manual_seed(3), progress=False)
    b = sample_perturbed(
        model, d, (64, 1), lambda m, v, t: (m, v), generator=torch.Generator().manual_seed(3), progress=False
    )
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # sqrt(v) vs exp(log v / 2): float32 rounding


def test_sample_perturbed_h_transform_reaches_p_times_r():
    """Data N(0, 1), r = exp(-x^2 / (2 w^2)): with r_{t-1} = E[r(x_0) | x_{t-1}] the chain samples
    p r = N(0, w^2 / (1 + w^2)); with r fixed at every step it lands near p r^2 instead."""
    s, d, model = _gaussian_setup()
    w, n = 0.5, 20000

    def grad_log_h(y, t):  # h_t(x) = E[r(x_0) | x_t = x] for unit Gaussian data
        ab = s.alpha_bars[t]
        return -ab * y / (w**2 + 1 - ab)

    g = torch.Generator().manual_seed(0)
    x = sample_perturbed(
        model,
        d,
        (n, 1),
        lambda m, v, t: (perturbed_mean(m, v, lambda y: grad_log_h(y, t - 1)), v),
        generator=g,
        progress=False,
    )
    target = w**2 / (1 + w**2)
    assert abs(float(x.var()) - target) < 4 * target * math.sqrt(2 / n) + 0.01
    x_T = torch.randn(n, 1, generator=g) * math.sqrt(target)  # p~(x_T) = pi r
    y = sample_perturbed(
        model,
        d,
        (n, 1),
        lambda m, v, t: (perturbed_mean(m, v, lambda u: -u / w**2), v),
        generator=g,
        noise=x_T,
        progress=False,
    )
    assert float(y.var()) < 0.8 * target  # much narrower than p r: r acts more than once


def test_sample_perturbed_record_and_bad_arguments():
    s, d, model = _gaussian_setup(T=10)
    x, traj = sample_perturbed(
        model,
        d,
        (4, 1),
        lambda m, v, t: (m, v),
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=[10, 5, 0],
    )
    assert traj.ts.tolist() == [10, 5, 0] and torch.equal(traj.x_t[-1], x)
    with pytest.raises(TypeError, match="perturb must be a callable"):
        sample_perturbed(model, d, (4, 1), None, progress=False)
    with pytest.raises(ValueError, match="noise must have shape"):
        sample_perturbed(model, d, (4, 1), lambda m, v, t: (m, v), noise=torch.zeros(3, 1), progress=False)
    with pytest.raises(ValueError, match="perturb's mean must be a tensor of shape"):
        sample_perturbed(model, d, (4, 1), lambda m, v, t: (m[:2], v), progress=False)
    with pytest.raises(TypeError, match="tuple"):
        sample_perturbed(model, d, (4, 1), lambda m, v, t: m, progress=False)
    with pytest.raises(ValueError, match="negative variance"):
        sample_perturbed(model, d, (4, 1), lambda m, v, t: (m, -v), progress=False)
