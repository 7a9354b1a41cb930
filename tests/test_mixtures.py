"""ddpm_lib.mixtures: mixture densities and the true reverse kernel of one forward step on a 1-D
mixture (chapter 02, section 2; drawn by the reverse-kernel explorer).

Checked against exact integrals on fine grids and against the Gaussian cases in closed form:
Bayes' rule's normalizer is the noised mixture's density, a single Gaussian's kernel is the closed
form, a mixture's kernel is the responsibility-weighted mixture of its components' kernels."""

import math

import numpy as np
import pytest
import torch

from ddpm_lib import mixtures as M

GRID = np.linspace(-6, 6, 6001)
MIX = M.DEFAULT_MIXTURE


# ---- densities --------------------------------------------------------------------------------------


def test_mixture_params_checks_and_normalizes():
    means, stds, w = M.mixture_params([-1.0, 2.0], 0.5, [1, 3])
    assert means.shape == (2, 1) and stds.shape == (2, 1) and means.dtype == torch.float64
    assert torch.equal(w, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert torch.equal(
        M.mixture_params([[0.0, 1.0]], [[0.1, 0.2]], None)[2], torch.ones(1, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="stds must all be > 0"):
        M.mixture_params([0.0, 1.0], [0.1, 0.0], None)
    with pytest.raises(ValueError, match="weights must be 2 numbers"):
        M.mixture_params([0.0, 1.0], 0.1, [1, -1])
    with pytest.raises(ValueError, match="stds must be a number, \\[K\\] or \\[K x D\\] with K = 2"):
        M.mixture_params([0.0, 1.0], [0.1, 0.2, 0.3], None)


def test_mixture_log_prob_integrates_to_one_and_matches_the_numpy_density():
    lp = M.mixture_log_prob(torch.from_numpy(GRID), MIX["means"], MIX["stds"], MIX["weights"])
    assert lp.dtype == torch.float64 and lp.shape == GRID.shape
    assert np.trapezoid(lp.exp().numpy(), GRID) == pytest.approx(1.0, abs=1e-12)
    pdf = M.mixture_pdf(GRID, MIX["means"], MIX["stds"], MIX["weights"])
    np.testing.assert_allclose(pdf, lp.exp().numpy(), rtol=1e-12, atol=1e-300)
    # 2-D, diagonal: the product of two 1-D Gaussians
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    want = math.log(M.gaussian_pdf(0.3, 0.0, 4.0) * M.gaussian_pdf(-0.2, 0.0, 4.0))
    assert float(M.mixture_log_prob(x, [[0.0, 0.0]], 2.0)[0]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("beta", [1e-3, 0.1, 0.7])
def test_noised_mixture_pdf_is_the_forward_marginal(beta):
    # q(x^t) = int N(x^t; sqrt(1 - beta) y, beta) q(y) dy: the closed form against the integral on a grid
    s = math.sqrt(1 - beta)
    closed = M.mixture_pdf(GRID, MIX["means"], MIX["stds"], MIX["weights"], scale=s, extra_var=beta)
    prior = M.mixture_pdf(GRID, MIX["means"], MIX["stds"], MIX["weights"])
    for x_t in (-1.5, 0.3, 2.0):
        integral = np.trapezoid(M.gaussian_pdf(x_t, s * GRID, beta) * prior, GRID)
        assert integral == pytest.approx(float(np.interp(x_t, GRID, closed)), rel=1e-6, abs=1e-12)
    # and it is the density of the scaled components, each N(s m_k, s^2 s_k^2 + beta)
    lp = M.mixture_log_prob(
        torch.from_numpy(GRID),
        [s * m for m in MIX["means"]],
        [math.sqrt(s**2 * sd**2 + beta) for sd in MIX["stds"]],
        MIX["weights"],
    )
    np.testing.assert_allclose(closed, lp.exp().numpy(), rtol=1e-12, atol=1e-300)


def test_gaussian_pdf_moments():
    p = M.gaussian_pdf(GRID, 0.4, 0.3)
    assert np.trapezoid(p, GRID) == pytest.approx(1.0, abs=1e-12)
    assert M.moment_match(GRID, p) == pytest.approx((0.4, 0.3), abs=1e-10)


# ---- the true reverse kernel --------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1e-3, 0.05, 0.5, 0.9])
@pytest.mark.parametrize("x_t", [-1.0, 0.4, 2.0])
def test_reverse_kernel_integrates_to_one(beta, x_t):
    p = M.true_reverse_kernel(GRID, x_t, beta)
    assert p.min() >= 0
    assert np.trapezoid(p, GRID) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("beta", [1e-3, 0.05, 0.5, 0.9])
@pytest.mark.parametrize("x_t", [-1.0, 0.4, 2.0])
def test_reverse_kernel_single_gaussian_is_closed_form(beta, x_t):
    mean, std = 0.3, 0.7
    p = M.true_reverse_kernel(GRID, x_t, beta, means=[mean], stds=[std], weights=[1.0])
    m, v = M.gaussian_reverse_kernel(x_t, beta, mean, std)
    exact = np.exp(-0.5 * (GRID - m) ** 2 / v) / math.sqrt(2 * math.pi * v)
    assert np.abs(p - exact).max() < 1e-6 * exact.max()
    mm, vv = M.moment_match(GRID, p)
    assert mm == pytest.approx(m, abs=1e-6) and vv == pytest.approx(v, rel=1e-5)
    assert M.kernel_kl_to_gaussian(GRID, p) < 1e-8


def test_reverse_kernel_closed_form_against_bayes_by_hand():
    # the closed form from completing the square, against a direct product on a grid
    x_t, beta, mean, std = 0.5, 0.2, -0.4, 0.8
    m, v = M.gaussian_reverse_kernel(x_t, beta, mean, std)
    unnorm = np.exp(-0.5 * (x_t - math.sqrt(1 - beta) * GRID) ** 2 / beta - 0.5 * (GRID - mean) ** 2 / std**2)
    p = unnorm / np.trapezoid(unnorm, GRID)
    assert np.trapezoid(p * GRID, GRID) == pytest.approx(m, abs=1e-9)
    assert np.trapezoid(p * (GRID - m) ** 2, GRID) == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("beta", [0.01, 0.5])
def test_mixture_kernel_is_the_responsibility_weighted_mixture_of_component_kernels(beta):
    # chapter 02's closed form: q(x^{t-1} | x^t) = sum_k r_k(x^t) N(m_k, v_k), r_k ∝ w_k q_k(x^t)
    grid = np.linspace(-5, 5, 4001)
    means, stds, w = (np.array(MIX[k], dtype=np.float64) for k in ("means", "stds", "weights"))
    s = math.sqrt(1 - beta)
    for x_t in (-1.0, 0.3, 1.2):
        r = w * M.gaussian_pdf(x_t, s * means, s**2 * stds**2 + beta)
        r = r / r.sum()
        m, v = M.gaussian_reverse_kernel(x_t, beta, means, stds)
        closed = sum(r[k] * M.gaussian_pdf(grid, m[k], v[k]) for k in range(3))
        p = M.true_reverse_kernel(grid, x_t, beta)
        assert np.abs(p - closed).max() < 1e-10
        mean = float((r * m).sum())
        var = float((r * (v + (m - mean) ** 2)).sum())
        assert M.moment_match(grid, p) == pytest.approx((mean, var), abs=1e-10)


def test_gaussian_reverse_kernel_broadcasts_over_components():
    # chapter 02 builds the mixture's reverse kernel from all K components at once
    means = torch.tensor([-1.2, 0.2, 1.4], dtype=torch.float64)
    stds = torch.tensor([0.25, 0.2, 0.3], dtype=torch.float64)
    x_t = torch.tensor([[-1.0], [0.3]], dtype=torch.float64)
    m, v = M.gaussian_reverse_kernel(x_t, 0.1, means, stds)
    assert m.shape == (2, 3) and v.shape == (3,)
    for i in range(2):
        for k in range(3):
            mk, vk = M.gaussian_reverse_kernel(float(x_t[i, 0]), 0.1, float(means[k]), float(stds[k]))
            assert math.isclose(float(m[i, k]), mk, rel_tol=1e-12) and math.isclose(
                float(v[k]), vk, rel_tol=1e-12
            )


def test_kl_to_gaussian_of_a_uniform_density_is_closed_form():
    # KL(U[-1, 1] || N(0, 1/3)) = -log 2 + 0.5 log(2 pi / 3) + 0.5
    grid = np.linspace(-1, 1, 20001)
    kl = M.kernel_kl_to_gaussian(grid, np.full_like(grid, 3.0))  # any scale: it is normalized on the grid
    assert kl == pytest.approx(-math.log(2) + 0.5 * math.log(2 * math.pi / 3) + 0.5, abs=1e-8)


def test_reverse_kernel_gaussian_for_small_beta_not_for_large():
    kl = {
        b: max(M.kernel_kl_to_gaussian(GRID, M.true_reverse_kernel(GRID, x, b)) for x in (-1.0, 0.3, 1.2))
        for b in (1e-3, 0.01, 0.1, 0.5)
    }
    assert kl[1e-3] < 1e-3 < 0.05 < kl[0.5]
    assert kl[1e-3] < kl[0.01] < kl[0.1] < kl[0.5]


def test_reverse_kernel_tensor_in_tensor_out_and_checks():
    g = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    p = M.true_reverse_kernel(g, 0.0, 0.1)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.float64
    assert isinstance(M.true_reverse_kernel(g.numpy(), 0.0, 0.1), np.ndarray)
    with pytest.raises(ValueError, match="beta"):
        M.true_reverse_kernel(g, 0.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        M.gaussian_reverse_kernel(0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="increasing"):
        M.true_reverse_kernel(g.flip(0), 0.0, 0.1)
    with pytest.raises(ValueError, match="at least 3 points"):
        M.moment_match([0.0, 1.0], [1.0, 1.0])


# ---- Sohl-Dickstein's bound on a 1-D mixture (chapter 02) ---------------------------------------------
from ddpm_lib.diffusion import GaussianDiffusion  # noqa: E402
from ddpm_lib.schedules import NoiseSchedule  # noqa: E402

F64 = torch.float64


def _constant(T, alpha_bar_T=1e-3):
    return NoiseSchedule.from_betas([1.0 - alpha_bar_T ** (1.0 / T)] * T, name="constant")


def test_noised_components_are_the_convolution_of_the_data_with_the_forward_noise():
    g = torch.linspace(-7, 7, 2801, dtype=F64)
    ab = 0.3
    m, v, w = M.noised_components(torch.tensor(ab, dtype=F64))
    closed = (w * torch.exp(-0.5 * (g[:, None] - m) ** 2 / v) / torch.sqrt(2 * math.pi * v)).sum(-1)
    q0 = M.mixture_log_prob(g, MIX["means"], MIX["stds"], MIX["weights"]).exp()
    kern = torch.exp(-0.5 * (g[:, None] - math.sqrt(ab) * g[None]) ** 2 / (1 - ab)) / math.sqrt(
        2 * math.pi * (1 - ab)
    )
    conv = torch.trapezoid(kern * q0[None], g, dim=1)
    assert float((closed - conv).abs().max()) < 1e-9
    m1, v1, _ = M.noised_components(torch.ones((), dtype=F64))
    assert torch.allclose(m1, torch.tensor(MIX["means"], dtype=F64))
    assert torch.allclose(v1, torch.tensor(MIX["stds"], dtype=F64) ** 2)


def test_mixture_reverse_kernel_is_bayes_rule_and_ideal_reverse_its_moments():
    beta, xt = 0.2, 0.3
    m0, v0, w = M.noised_components(torch.ones((), dtype=F64))
    r, means, variances = M.mixture_reverse_kernel(torch.tensor([xt], dtype=F64), beta, m0, v0, w)
    assert r.shape == (1, 3) and abs(float(r.sum()) - 1) < 1e-12
    g = torch.linspace(-5, 5, 4001, dtype=F64)
    closed = (
        r * torch.exp(-0.5 * (g[:, None] - means) ** 2 / variances) / torch.sqrt(2 * math.pi * variances)
    ).sum(-1)
    assert float((closed - M.true_reverse_kernel(g, xt, beta)).abs().max()) < 1e-9
    s = NoiseSchedule.from_betas([beta], warn=False)
    mean, log_var = M.ideal_reverse(s)(torch.tensor([xt], dtype=F64), 1)
    mm, vv = M.moment_match(g, M.true_reverse_kernel(g, xt, beta))
    assert abs(float(mean[0]) - mm) < 1e-9 and abs(float(log_var[0].exp()) - vv) < 1e-9
    mean_b, log_var_b = M.ideal_reverse(s, variance="beta")(torch.tensor([xt], dtype=F64), 1)
    assert float(mean_b[0]) == float(mean[0]) and abs(float(log_var_b[0].exp()) - beta) < 1e-15
    with pytest.raises(ValueError, match="variance must be"):
        M.ideal_reverse(s, variance="large")
    with pytest.raises(ValueError, match="t must lie in 1..1"):
        M.ideal_reverse(s)(torch.zeros(1, dtype=F64), 2)


def test_grid_log_prob_and_affine_chain_agree_for_gaussian_data_and_integrate_to_one():
    s = _constant(5)
    rev = M.ideal_reverse(s, means=[0.5], stds=[0.5], weights=None, variance="beta")
    x0 = torch.tensor([[-0.5], [0.5], [1.5]], dtype=F64)
    grid = torch.linspace(-6, 6, 241, dtype=F64)
    assert (
        float((M.grid_log_prob(rev, s.T, x0, grid) - M.affine_chain_log_prob(rev, s.T, x0)).abs().max())
        < 1e-8
    )
    total = float(M.grid_log_prob(M.ideal_reverse(s), s.T, grid, grid).exp().sum() * (grid[1] - grid[0]))
    assert abs(total - 1) < 1e-6


def test_importance_weights_average_to_p_and_their_log_to_the_quadrature_bound():
    s = _constant(4)
    rev = M.ideal_reverse(s)
    x0 = torch.tensor([[-1.0], [0.4]], dtype=F64)
    log_w = M.log_importance_weights(s, rev, x0, 20_000, torch.Generator().manual_seed(0))
    assert log_w.shape == (2, 20_000)
    log_p = M.grid_log_prob(rev, s.T, x0, torch.linspace(-6, 6, 241, dtype=F64))
    ratio = (log_w - log_p[:, None]).exp()
    assert float(((ratio.mean(1) - 1) / (ratio.std(1) / math.sqrt(20_000))).abs().max()) < 4
    K = M.bound_from_terms(
        M.bound_terms(GaussianDiffusion(s, decoder="gaussian"), rev, x0, *M.gauss_hermite(32))
    )
    z = (log_w.mean(1) - K) / (log_w.std(1) / math.sqrt(20_000))
    assert float(z.abs().max()) < 4 and bool((K < log_p).all())  # Jensen


def test_one_step_weight_is_the_formula_and_gauss_hermite_integrates_moments():
    s = NoiseSchedule.from_betas([0.3], warn=False)
    rev = M.ideal_reverse(s, variance="beta")
    x0 = torch.tensor([[0.7]], dtype=F64)
    log_w = M.log_importance_weights(s, rev, x0, 3, torch.Generator().manual_seed(1))
    eps = torch.randn((3, 1), generator=torch.Generator().manual_seed(1), dtype=F64)
    x1 = math.sqrt(0.7) * 0.7 + math.sqrt(0.3) * eps
    mean, log_var = rev(x1, 1)

    def ln(v, m, var):
        return -0.5 * (v - m) ** 2 / var - 0.5 * torch.log(2 * math.pi * torch.as_tensor(var, dtype=F64))

    expected = ln(x1, 0.0, 1.0) + ln(0.7, mean, log_var.exp()) - ln(x1, math.sqrt(0.7) * 0.7, 0.3)
    assert torch.allclose(log_w[0], expected[:, 0], rtol=0, atol=1e-10)
    nodes, weights = M.gauss_hermite(8)
    assert abs(float((weights * nodes**2).sum()) - 1) < 1e-12
    assert abs(float((weights * nodes**4).sum()) - 3) < 1e-12
    with pytest.raises(ValueError, match="n must be >= 1"):
        M.gauss_hermite(0)
