import math
import warnings

import pytest
import torch

import ddpm_lib as dl


def test_linear_tables_paper_indexing():
    s = dl.NoiseSchedule.linear(T=1000)
    assert s.T == 1000
    for name in [
        "betas",
        "alphas",
        "alpha_bars",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "snr",
        "sqrt_alpha_bars",
    ]:
        tab = getattr(s, name)
        assert tab.dtype == torch.float64 and tab.shape == (1001,), name
    assert s.alpha_bars[0] == 1.0 and s.betas[0] == 0.0
    assert math.isclose(float(s.betas[1]), 1e-4) and math.isclose(float(s.betas[1000]), 0.02)
    assert s.posterior_variance[1] == 0.0
    assert torch.allclose(s.alpha_bars[1:], torch.cumprod(1 - s.betas[1:], 0))
    # Eq. 7 written out for one t
    t = 37
    ab, abp, b = s.alpha_bars[t], s.alpha_bars[t - 1], s.betas[t]
    assert torch.isclose(s.posterior_variance[t], (1 - abp) / (1 - ab) * b)
    assert torch.isclose(s.posterior_mean_coef1[t], abp.sqrt() * b / (1 - ab))
    assert torch.isclose(s.posterior_mean_coef2[t], (1 - b).sqrt() * (1 - abp) / (1 - ab))
    assert s.posterior_log_variance_clipped[1] == s.posterior_log_variance_clipped[2]
    assert torch.isclose(s.snr[t], ab / (1 - ab))
    assert (s.alpha_bars[1:] < s.alpha_bars[:-1]).all()


def test_cosine_matches_nichol_dhariwal():
    T, sh = 1000, 0.008
    s = dl.NoiseSchedule.cosine(T)
    f = lambda t: math.cos((t / T + sh) / (1 + sh) * math.pi / 2) ** 2
    for t in [1, 10, 500, 900]:
        assert math.isclose(float(s.alpha_bars[t]), f(t) / f(0), rel_tol=1e-9)
    assert float(s.betas.max()) <= 0.999


@pytest.mark.filterwarnings("ignore:schedule .* does not reach noise")
def test_quadratic_and_from_betas():
    q = dl.NoiseSchedule.quadratic(T=100, beta_start=1e-4, beta_end=0.05)
    assert torch.allclose(q.betas[1:].sqrt(), torch.linspace(0.01, math.sqrt(0.05), 100, dtype=torch.float64))
    b = torch.linspace(1e-3, 0.2, 50)
    s = dl.NoiseSchedule.from_betas(b)
    assert torch.allclose(s.betas[1:], b.double())
    s2 = dl.NoiseSchedule.from_dict(s.to_dict())
    assert torch.equal(s2.alpha_bars, s.alpha_bars)


@pytest.mark.parametrize("steps", [1, 10, 50, 999, 1000, [1, 5, 300, 1000]])
def test_respace_keeps_alpha_bars(steps):
    s = dl.NoiseSchedule.linear(1000)
    r = s.respace(steps)
    n = steps if isinstance(steps, int) else len(steps)
    assert r.T == n and r.timesteps[0] == 0 and r.timesteps[-1] == 1000
    # float64 round-off of 1 - (1 - abar_k / abar_{k-1}) when abar is tiny: relative 1e-11 at most
    assert torch.allclose(r.alpha_bars, s.alpha_bars[r.timesteps], rtol=1e-10, atol=0)
    if steps == 1000:
        assert torch.allclose(r.betas, s.betas, rtol=1e-10)
    # respacing a respaced schedule refers back to the original timesteps
    if n >= 5:
        rr = r.respace(5)
        assert torch.allclose(rr.alpha_bars, s.alpha_bars[rr.timesteps], rtol=1e-10)


def test_warns_when_schedule_does_not_reach_noise():
    with pytest.warns(UserWarning, match=r"alpha_bar_T = 0\.9"):
        dl.NoiseSchedule.linear(T=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dl.NoiseSchedule.linear(T=1000)


@pytest.mark.parametrize(
    "betas, msg",
    [
        ([0.1, 0.0], "beta_2"),
        ([0.1, 1.0], "beta_2"),
        ([-0.1], "beta_1"),
        ([0.1, float("nan")], "finite"),
        ([], "T >= 1"),
    ],
)
def test_bad_betas(betas, msg):
    with pytest.raises(ValueError, match=msg):
        dl.NoiseSchedule.from_betas(torch.tensor(betas, dtype=torch.float64))


@pytest.mark.filterwarnings("ignore:schedule .* does not reach noise")
def test_bad_constructor_args():
    with pytest.raises(ValueError, match="T must be a positive integer"):
        dl.NoiseSchedule.linear(T=0)
    with pytest.raises(ValueError, match="beta_end must lie in the open interval"):
        dl.NoiseSchedule.linear(T=100, beta_end=1.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        dl.NoiseSchedule.named("sigmoid")
    s = dl.NoiseSchedule.linear(100)
    with pytest.raises(ValueError, match=r"steps must be in 1..T"):
        s.respace(101)
    with pytest.raises(ValueError, match="strictly increasing"):
        s.respace([5, 3])
    with pytest.raises(ValueError, match=r"t must lie in 1..T = 1..100"):
        s.check_t(torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="integer tensor"):
        s.check_t(torch.tensor([1.0]))


def test_prior_kl_matches_normal_kl():
    s = dl.NoiseSchedule.linear(1000)
    ab = s.alpha_bars[-1]
    x0 = torch.tensor(0.8, dtype=torch.float64)
    kl = dl.normal_kl(ab.sqrt() * x0, (1 - ab).log(), torch.zeros(()), torch.zeros(()))
    assert math.isclose(float(kl), s.prior_kl(x0_sq_mean=0.64), rel_tol=1e-9)


@pytest.mark.parametrize("T", [1, 8, 50, 1000])
def test_constant_schedule_reaches_alpha_bar_T_with_equal_betas(T):
    s = dl.NoiseSchedule.constant(T, alpha_bar_T=1e-3)
    assert s.T == T and s.name == "constant"
    assert torch.equal(s.betas[1:], s.betas[1:].min().expand(T))
    assert abs(float(s.alpha_bars[-1]) - 1e-3) < 1e-15


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 2.0])
def test_constant_schedule_rejects_alpha_bar_T_outside_0_1(bad):
    with pytest.raises(ValueError, match="alpha_bar_T must lie in the open interval"):
        dl.NoiseSchedule.constant(10, alpha_bar_T=bad)
