import math

import pytest
import torch

import ddpm_lib as dl
from analytic import OptimalGaussianEps, OptimalGaussianReverse

SCHED = dl.NoiseSchedule.linear(1000)


def _diff(**kw):
    return dl.GaussianDiffusion(SCHED, **kw)


def test_q_sample_mean_and_variance_monte_carlo(gen):
    d = _diff()
    x0 = torch.tensor([[0.8, -0.3, 0.0]], dtype=torch.float64).repeat(200_000, 1)
    for tt in [1, 100, 500, 1000]:
        t = torch.full((x0.shape[0],), tt)
        xt = d.q_sample(x0, t, generator=gen)
        ab = float(SCHED.alpha_bars[tt])
        se_mean = math.sqrt((1 - ab) / x0.shape[0])
        assert torch.allclose(xt.mean(0), math.sqrt(ab) * x0[0], atol=5 * se_mean)
        assert torch.allclose(xt.var(0), torch.full((3,), 1 - ab, dtype=torch.float64), rtol=0.02)
        q = d.q_mean_variance(x0[:1], t[:1])
        assert torch.allclose(q.mean, math.sqrt(ab) * x0[:1]) and torch.allclose(
            q.variance, torch.tensor(1 - ab, dtype=torch.float64)
        )


def test_closed_form_equals_iterating_the_chain(gen):
    """q(x_t|x_0) of Eq. 4 against T applications of q(x_t|x_{t-1}) (Eq. 2), by Monte Carlo."""
    s = dl.NoiseSchedule.linear(200, beta_end=0.05)
    d = dl.GaussianDiffusion(s)
    x0 = torch.full((100_000, 1), 0.9, dtype=torch.float64)
    x = x0
    for tt in range(1, 121):
        x = d.q_step(x, torch.full((x.shape[0],), tt), generator=gen)
    ab = float(s.alpha_bars[120])
    assert abs(float(x.mean()) - math.sqrt(ab) * 0.9) < 5 * math.sqrt((1 - ab) / 1e5)
    assert abs(float(x.var()) - (1 - ab)) < 0.02 * (1 - ab)


@pytest.mark.parametrize("tt", [1, 2, 10, 500, 1000])
def test_posterior_equals_gaussian_conditioning(tt):
    """q(x_{t-1}|x_t, x_0) (Eqs. 6-7) against conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0."""
    d = _diff()
    x0 = torch.tensor([[0.7], [-0.2]], dtype=torch.float64)
    xt = torch.tensor([[0.1], [1.3]], dtype=torch.float64)
    ab_prev, a, b = SCHED.alpha_bars[tt - 1], SCHED.alphas[tt], SCHED.betas[tt]
    m1, v1 = ab_prev.sqrt() * x0, 1 - ab_prev
    m2, v2, cov = a.sqrt() * m1, a * v1 + b, a.sqrt() * v1
    ref_mean = m1 + cov / v2 * (xt - m2)
    ref_var = v1 - cov**2 / v2
    post = d.q_posterior(x0, xt, torch.full((2,), tt))
    assert torch.allclose(post.mean, ref_mean, rtol=1e-10, atol=1e-12)
    assert torch.allclose(post.variance, ref_var.expand(2, 1), rtol=1e-10, atol=1e-15)


def test_posterior_against_bayes_on_a_grid():
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), normalised numerically on a grid."""
    tt, x0, xt = 50, 0.6, 0.2
    d = _diff()
    grid = torch.linspace(-3, 3, 200_001, dtype=torch.float64)
    ab_prev, a, b = SCHED.alpha_bars[tt - 1], SCHED.alphas[tt], SCHED.betas[tt]
    logp = dl.gaussian_log_likelihood(xt, a.sqrt() * grid, b.log()) + dl.gaussian_log_likelihood(
        grid, ab_prev.sqrt() * x0, (1 - ab_prev).log()
    )
    w = (logp - logp.max()).exp()
    w = w / w.sum()
    mean = (w * grid).sum()
    var = (w * (grid - mean) ** 2).sum()
    post = d.q_posterior(
        torch.tensor([[x0]], dtype=torch.float64),
        torch.tensor([[xt]], dtype=torch.float64),
        torch.tensor([tt]),
    )
    assert abs(float(post.mean) - float(mean)) < 1e-8
    assert abs(float(post.variance) - float(var)) < 1e-8


def test_parameterizations_agree():
    d = _diff(prediction="eps")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, dtype=torch.float64, generator=g) * 2 - 1
    eps = torch.randn(5, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([1, 2, 30, 600, 1000])
    xt = d.q_sample(x0, t, eps)
    assert torch.allclose(d.pred_x0_from_eps(xt, t, eps), x0, atol=1e-9)
    assert torch.allclose(d.pred_eps_from_x0(xt, t, x0), eps, atol=1e-9)
    true_mean = d.q_posterior(x0, xt, t).mean
    # Eq. 11: mu(x_t, eps) equals the posterior mean with the true eps
    assert torch.allclose(d.mean_from_eps(xt, t, eps), true_mean, atol=1e-10)
    assert torch.allclose(d.p_mean_variance(eps, xt, t)["mean"], true_mean, atol=1e-10)
    assert torch.allclose(d.pred_x0_from_mean(xt, t, true_mean), x0, atol=1e-6)
    p_x0 = _diff(prediction="x0").p_mean_variance(x0, xt, t)
    p_mu = _diff(prediction="mean").p_mean_variance(true_mean, xt, t)
    assert torch.allclose(p_x0["mean"], true_mean, atol=1e-10) and torch.allclose(
        p_x0["pred_eps"], eps, atol=1e-8
    )
    assert torch.allclose(p_mu["pred_x0"], x0, atol=1e-6)


def test_fixed_and_learned_variances():
    t = torch.tensor([1, 2, 500])
    x = torch.zeros(3, 2, dtype=torch.float64)
    large = _diff(variance="fixed_large").p_mean_variance(x, x, t)
    small = _diff(variance="fixed_small").p_mean_variance(x, x, t)
    assert torch.allclose(large["variance"][:, 0], SCHED.betas[t])
    assert torch.allclose(small["variance"][1:, 0], SCHED.posterior_variance[t[1:]])
    assert torch.isclose(
        small["variance"][0, 0], SCHED.posterior_variance[2]
    )  # beta~_1 = 0 replaced by beta~_2
    lr = _diff(variance="learned_range")
    for v, ref in [(1.0, SCHED.betas[t].log()), (-1.0, SCHED.posterior_log_variance_clipped[t])]:
        out = torch.cat([x, torch.full_like(x, v)], dim=1)
        assert torch.allclose(lr.p_mean_variance(out, x, t)["log_variance"][:, 0], ref)
    learned = _diff(variance="learned")
    out = torch.cat([x, torch.full_like(x, -3.0)], dim=1)
    assert torch.allclose(learned.p_mean_variance(out, x, t)["variance"], torch.full_like(x, math.exp(-3)))


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_bound_term_is_weighted_eps_mse(variance):
    """Eq. 12: L_{t-1} = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) ||eps - eps_theta||^2 + C for t >= 2."""
    d = _diff(variance=variance, loss="vlb", decoder="gaussian")
    g = torch.Generator().manual_seed(3)
    B, D = 6, 5
    x0 = torch.randn(B, D, dtype=torch.float64, generator=g)
    eps = torch.randn(B, D, dtype=torch.float64, generator=g)
    t = torch.tensor([2, 3, 50, 400, 999, 1000])
    W = torch.randn(D, D, dtype=torch.float64, generator=g) * 0.3
    model = lambda x, tt: x @ W + 0.001 * tt[:, None].double()
    terms = d.training_losses(model, x0, t, eps)
    kl_nats = terms["vb"] * D * math.log(2)
    xt = d.q_sample(x0, t, eps)
    mse_sum = ((eps - model(xt, t)) ** 2).sum(1)
    sigma2 = (SCHED.betas if variance == "fixed_large" else SCHED.posterior_variance)[t]
    btilde = SCHED.posterior_variance[t]
    C = D * 0.5 * ((sigma2 / btilde).log() + btilde / sigma2 - 1)
    assert torch.allclose(kl_nats, d.eps_mse_weight(t) * mse_sum + C, rtol=1e-8, atol=1e-10)
    assert torch.allclose(terms["loss"], 1000 * terms["vb"])


def test_l_simple_is_eps_mse():
    d = _diff(prediction="eps", loss="simple")
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(4, 1, 3, 3, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([1, 5, 500, 1000])
    model = lambda x, tt: 0.5 * x
    loss = d.training_loss(model, x0, t, eps)
    ref = ((eps - 0.5 * d.q_sample(x0, t, eps)) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(loss, ref)
    assert loss.shape == (4,)


def test_hybrid_loss_stops_the_mean_gradient():
    d = _diff(variance="learned_range", loss="hybrid", decoder="gaussian")
    x0 = torch.randn(8, 2, dtype=torch.float64)
    out = torch.zeros(8, 4, dtype=torch.float64, requires_grad=True)
    terms = d.training_losses(lambda x, t: out, x0, generator=torch.Generator().manual_seed(0))
    (terms["vb"].sum()).backward()
    assert out.grad[:, :2].abs().max() == 0 and out.grad[:, 2:].abs().max() > 0
    with pytest.raises(ValueError, match="needs variance='learned'"):
        _diff(loss="hybrid")


def test_bound_is_tight_for_gaussian_data_with_the_true_reverse_kernels():
    """For x_0 ~ N(m, s^2) the true q(x_{t-1}|x_t) is Gaussian. A model equal to it makes
    E[L] = E[-log q(x_0)] + KL(q(x_T) || N(0, I)): vlb_terms and bits_per_dim must reproduce that."""
    s = dl.NoiseSchedule.linear(100, beta_start=1e-3, beta_end=0.2)
    d = dl.GaussianDiffusion(s, prediction="mean", variance="learned", decoder="gaussian")
    m, sd, D, B = 0.3, 0.7, 2, 4000
    g = torch.Generator().manual_seed(5)
    x0 = m + sd * torch.randn(B, D, dtype=torch.float64, generator=g)
    terms = d.vlb_terms(OptimalGaussianReverse(s, m, sd), x0, generator=g)
    assert terms.shape == (B, s.T + 1)
    assert torch.allclose(terms[:, -1], d.prior_kl(x0).double())
    bound = terms.sum(1)
    nll = -dl.gaussian_log_likelihood(x0, m, math.log(sd**2)).sum(1)
    abT = float(s.alpha_bars[-1])
    kl_T = D * float(
        dl.normal_kl(torch.tensor(math.sqrt(abT) * m), math.log(abT * sd**2 + 1 - abT), 0.0, 0.0)
    )
    diff = bound - nll
    se = float(diff.std()) / math.sqrt(B)
    assert abs(float(diff.mean()) - kl_T) < 4 * se + 1e-6, (float(diff.mean()), kl_T, se)
    bpd = d.bits_per_dim(OptimalGaussianReverse(s, m, sd), x0[:10], generator=g)
    assert bpd.shape == (10,)


def test_vlb_terms_columns_and_l0_is_discretized_nll(gen):
    s = dl.NoiseSchedule.linear(20, beta_start=0.01, beta_end=0.5)
    d = dl.GaussianDiffusion(s, variance="fixed_large")
    x0 = torch.randint(0, 256, (3, 1, 2, 2), generator=gen).float() / 127.5 - 1
    model = lambda x, t: torch.zeros_like(x)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    terms = d.vlb_terms(model, x0, generator=g1)
    # replay the draws: column 0 uses the last draw (t = 1); the loop runs t = T..1
    for tt in range(s.T, 0, -1):
        xt = d.q_sample(x0, torch.full((3,), tt), generator=g2)
    p = d.p_mean_variance(model(xt, None), xt, torch.full((3,), 1))
    l0 = -dl.discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"]).sum((1, 2, 3))
    assert torch.allclose(terms[:, 0], l0.double(), rtol=1e-5)
    assert (terms[:, 1:] >= -1e-6).all()  # KLs are non-negative
    bpd = d.bits_per_dim(model, x0, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(bpd, terms.sum(1) / (4 * math.log(2)), rtol=1e-5)


def test_p_sample_noiseless_last_step_and_variance(gen):
    d = _diff(variance="fixed_large")
    x = torch.zeros(50_000, 1, dtype=torch.float64)
    out = torch.zeros_like(x)
    last = d.p_sample(out, x, torch.ones(50_000, dtype=torch.long), generator=gen)
    assert torch.equal(last, d.p_mean_variance(out, x, torch.ones(50_000, dtype=torch.long))["mean"])
    t = torch.full((50_000,), 700)
    draws = d.p_sample(out, x, t, generator=gen)
    assert abs(float(draws.var()) - float(SCHED.betas[700])) < 0.03 * float(SCHED.betas[700])


def test_ddim_eta_one_has_the_posterior_variance():
    d = _diff(prediction="eps")
    x = torch.zeros(40_000, 1, dtype=torch.float64)
    t = torch.full((40_000,), 300)
    draws = d.ddim_step(torch.zeros_like(x), x, t, 299, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert abs(float(draws.var()) - float(SCHED.posterior_variance[300])) < 0.03 * float(
        SCHED.posterior_variance[300]
    )
    det = d.ddim_step(torch.zeros_like(x[:2]), x[:2], t[:2], 0, eta=0.0)
    assert torch.allclose(det, torch.zeros_like(det))


def test_sample_is_reproducible_and_records_a_trajectory():
    s = dl.NoiseSchedule.linear(50, beta_end=0.3)
    d = dl.GaussianDiffusion(s)
    model = OptimalGaussianEps(s)
    a = d.sample(model, (4, 2), generator=torch.Generator().manual_seed(1), progress=False)
    b, traj = d.sample(
        model, (4, 2), generator=torch.Generator().manual_seed(1), progress=False, record=[50, 25, 1, 0]
    )
    assert torch.equal(a, b)
    assert traj.ts.tolist() == [50, 25, 1, 0] and traj.x_t.shape == (4, 4, 2)
    assert torch.equal(traj.x_t[-1], b) and torch.isnan(traj.pred_x0[-1]).all()
    c = d.sample(model, (4, 2), generator=torch.Generator().manual_seed(2), progress=False)
    assert not torch.equal(a, c)


def test_sampling_gaussian_data_with_the_optimal_model():
    """Algorithm 2 with the exact E[eps|x_t] of Gaussian data recovers that Gaussian (mean and std)."""
    s = dl.NoiseSchedule.linear(200, beta_start=1e-4, beta_end=0.1)
    d = dl.GaussianDiffusion(s, variance="fixed_small")
    x = d.sample(
        OptimalGaussianEps(s, 0.3, 0.7),
        (20_000, 1),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert abs(float(x.mean()) - 0.3) < 0.02 and abs(float(x.std()) - 0.7) < 0.03


def test_bad_inputs_give_clear_errors():
    d = _diff()
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must lie in 1..T = 1..1000"):
        d.q_sample(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"t must lie in 1..T"):
        d.q_sample(x, torch.tensor([1, 1001]))
    with pytest.raises(TypeError, match="integer tensor"):
        d.q_sample(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\)"):
        d.q_sample(x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="floating-point"):
        d.q_sample(torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"x0 must lie in \[-1, 1\]"):
        d.training_loss(lambda a, b: a, torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match=r"model_output must have shape \(2, 3\)"):
        d.p_mean_variance(torch.zeros(2, 6), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"model_output must have shape \(2, 6\)"):
        _diff(variance="learned").p_mean_variance(torch.zeros(2, 3), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="prediction must be one of"):
        _diff(prediction="v")
    with pytest.raises(ValueError, match="variance must be one of"):
        _diff(variance="big")
    with pytest.raises(ValueError, match="t_prev must be smaller than t"):
        d.ddim_step(x, x, torch.tensor([5, 5]), 5)
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        d.q_sample(x, torch.tensor([1, 2]), torch.zeros(3, 3))
