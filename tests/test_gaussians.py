import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import ddpm_lib as dl


def test_normal_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    ref = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(dl.normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-12, atol=1e-12)


def test_normal_kl_monte_carlo():
    g = torch.Generator().manual_seed(1)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(1.7)
    x = m1 + math.exp(0.5 * lv1) * torch.randn(400_000, generator=g, dtype=torch.float64)
    mc = (dl.gaussian_log_likelihood(x, m1, lv1) - dl.gaussian_log_likelihood(x, m2, lv2))
    exact = float(dl.normal_kl(torch.tensor(m1), lv1, m2, lv2))
    assert abs(float(mc.mean()) - exact) < 4 * float(mc.std()) / math.sqrt(x.numel())


def test_log_likelihood_and_entropy_against_torch():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    assert torch.allclose(dl.gaussian_log_likelihood(x, 0.5, math.log(2.0)),
                          Normal(0.5, math.sqrt(2.0)).log_prob(x), atol=1e-12)
    assert math.isclose(float(dl.gaussian_entropy(torch.tensor(math.log(2.0)))), float(Normal(0, math.sqrt(2)).entropy()))


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("mean, log_scale", [(0.0, math.log(0.1)), (-0.97, math.log(0.01)), (0.5, math.log(3.0)),
                                             (1.3, math.log(1e-3)), (0.2, math.log(1e-4))])
def test_discretized_probs_sum_to_one(mean, log_scale, exact):
    p = dl.discretized_gaussian_probs(torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64),
                                      exact=exact)
    assert p.shape == (256,)
    tol = 1e-10 if exact else 2e-3  # the tanh approximation's bins do not telescope exactly after clamping
    assert abs(float(p.sum()) - 1) < tol


def test_discretized_against_scipy_cdf():
    from scipy.stats import norm
    mean, sd = 0.1, 0.05
    k = torch.arange(256, dtype=torch.float64)
    x = 2 * k / 255 - 1
    ours = dl.discretized_gaussian_log_likelihood(x, mean, math.log(sd)).exp().numpy()
    xs = x.numpy()
    ref = norm.cdf(xs + 1 / 255, mean, sd) - norm.cdf(xs - 1 / 255, mean, sd)
    ref[0] = norm.cdf(xs[0] + 1 / 255, mean, sd)
    ref[-1] = 1 - norm.cdf(xs[-1] - 1 / 255, mean, sd)
    assert abs(ours - ref).max() < 1e-12


def test_discretized_tails_are_finite_with_exact_cdf():
    # 30 standard deviations away: the exact log-CDF stays finite, the approximation clamps at log(1e-12)
    ll = dl.discretized_gaussian_log_likelihood(torch.tensor([0.5]), torch.tensor([-0.5]), torch.tensor([math.log(0.03)]))
    assert torch.isfinite(ll).all() and float(ll) < -400
    approx = dl.discretized_gaussian_log_likelihood(torch.tensor([0.5]), torch.tensor([-0.5]),
                                                    torch.tensor([math.log(0.03)]), exact=False)
    assert math.isclose(float(approx), math.log(1e-12), rel_tol=1e-6)


def test_discretized_rejects_data_outside_range():
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        dl.discretized_gaussian_log_likelihood(torch.tensor([1.5]), 0.0, 0.0)


def test_flat_reductions():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(dl.sum_flat(x), x.reshape(2, -1).sum(1))
    assert torch.equal(dl.mean_flat(x), x.reshape(2, -1).mean(1))
