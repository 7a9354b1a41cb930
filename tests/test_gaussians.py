import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import ddpm_lib as dl


def test_normal_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(100, generator=g, dtype=torch.float64),
        torch.randn(100, generator=g, dtype=torch.float64),
    )
    lv1, lv2 = (
        torch.randn(100, generator=g, dtype=torch.float64),
        torch.randn(100, generator=g, dtype=torch.float64),
    )
    ref = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(dl.normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-12, atol=1e-12)


def test_normal_kl_monte_carlo():
    g = torch.Generator().manual_seed(1)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(1.7)
    x = m1 + math.exp(0.5 * lv1) * torch.randn(400_000, generator=g, dtype=torch.float64)
    mc = dl.gaussian_log_likelihood(x, m1, lv1) - dl.gaussian_log_likelihood(x, m2, lv2)
    exact = float(dl.normal_kl(torch.tensor(m1), lv1, m2, lv2))
    assert abs(float(mc.mean()) - exact) < 4 * float(mc.std()) / math.sqrt(x.numel())


def test_log_likelihood_and_entropy_against_torch():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    assert torch.allclose(
        dl.gaussian_log_likelihood(x, 0.5, math.log(2.0)), Normal(0.5, math.sqrt(2.0)).log_prob(x), atol=1e-12
    )
    assert math.isclose(
        float(dl.gaussian_entropy(torch.tensor(math.log(2.0)))), float(Normal(0, math.sqrt(2)).entropy())
    )


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize(
    "mean, log_scale",
    [
        (0.0, math.log(0.1)),
        (-0.97, math.log(0.01)),
        (0.5, math.log(3.0)),
        (1.3, math.log(1e-3)),
        (0.2, math.log(1e-4)),
    ],
)
def test_discretized_probs_sum_to_one(mean, log_scale, exact):
    p = dl.discretized_gaussian_probs(
        torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64), exact=exact
    )
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
    ll = dl.discretized_gaussian_log_likelihood(
        torch.tensor([0.5]), torch.tensor([-0.5]), torch.tensor([math.log(0.03)])
    )
    assert torch.isfinite(ll).all() and float(ll) < -400
    approx = dl.discretized_gaussian_log_likelihood(
        torch.tensor([0.5]), torch.tensor([-0.5]), torch.tensor([math.log(0.03)]), exact=False
    )
    assert math.isclose(float(approx), math.log(1e-12), rel_tol=1e-6)


def test_discretized_rejects_data_outside_range():
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        dl.discretized_gaussian_log_likelihood(torch.tensor([1.5]), 0.0, 0.0)


def test_flat_reductions():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(dl.sum_flat(x), x.reshape(2, -1).sum(1))
    assert torch.equal(dl.mean_flat(x), x.reshape(2, -1).mean(1))


@pytest.mark.parametrize("exact", [True, False])
def test_discretized_gradients_are_finite_and_right(exact):
    """Regression: the unused branches of the exact decoder (an edge bin's interior formula, the lower-
    tail form where the upper one is used) once put nan into the gradient through torch.where, so
    every training run with loss 'vlb' diverged within a few steps."""
    grid = torch.arange(256, dtype=torch.float64) * (2.0 / 255.0) - 1.0
    x = grid[torch.tensor([0, 1, 100, 127, 128, 200, 254, 255])]
    for m, log_s in [
        (0.0, math.log(0.01)),
        (0.9, math.log(0.01)),
        (-0.95, math.log(1e-3)),
        (0.3, math.log(0.5)),
        (5.0, math.log(0.02)),
        (-3.0, math.log(2.0)),
    ]:
        mean = torch.full_like(x, m, requires_grad=True)
        log_scale = torch.full_like(x, log_s, requires_grad=True)
        ll = dl.discretized_gaussian_log_likelihood(x, mean, log_scale, exact=exact)
        ll.sum().backward()
        assert (
            torch.isfinite(ll).all()
            and torch.isfinite(mean.grad).all()
            and torch.isfinite(log_scale.grad).all()
        ), (m, log_s, ll, mean.grad, log_scale.grad)
        if exact:  # the gradient agrees with central differences of the function itself
            h = 1e-6
            f = lambda mm: dl.discretized_gaussian_log_likelihood(
                x, torch.full_like(x, mm), log_scale.detach()
            )
            fd = (f(m + h) - f(m - h)) / (2 * h)
            torch.testing.assert_close(mean.grad, fd, rtol=1e-4, atol=1e-4)
