"""ddpm_lib.course.checks: every checker accepts a correct implementation and rejects common mistakes with a
message that names the right equation (and, where cheap, the mistake)."""

import math

import pytest
import torch

from ddpm_lib.course import checks


def _b(v, x):
    return v.reshape(-1, *[1] * (x.ndim - 1))


def _run(name, fn):
    return checks.check(name, fn, verbose=False)


def assert_rejected(result, equation, hint=None):
    assert not result.passed
    assert result.message.startswith("✗")
    assert equation in result.message, result.message
    if hint is not None:
        assert hint in result.message, result.message


def test_registry_and_dispatch(capsys):
    assert {
        "alpha_bars",
        "q_sample",
        "posterior",
        "normal_kl",
        "discretized_log_likelihood",
        "p_sample_step",
    } <= set(checks.available())
    with pytest.raises(KeyError, match="available"):
        checks.check("no-such-check", lambda: None)
    r = checks.check_q_sample(q_ok)
    out = capsys.readouterr().out
    assert r.passed and bool(r) and out.strip() == r.message
    assert r.message.startswith("✓") and "DDPM Eq. 4" in r.message
    with pytest.raises(checks.CheckFailed, match="DDPM Eq. 4"):
        checks.check("q_sample", q_var, verbose=False, raise_on_failure=True)
    assert not checks.check("q_sample", 3.0, verbose=False).passed


def test_messages_are_deterministic():
    a = _run("q_sample", q_alpha).message
    b = _run("q_sample", q_alpha).message
    assert a == b


def test_check_value():
    assert checks.check_value("abar_T", 0.25, 0.25, equation="Eq. 4", verbose=False).passed
    r = checks.check_value("abar_T", 0.3, 0.25, equation="Eq. 4", verbose=False)
    assert not r.passed and "Eq. 4" in r.message and "0.3000" in r.message


# ---- alpha_bars ------------------------------------------------------------------------------
def ab_ok(betas):
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)])


def test_alpha_bars():
    assert _run("alpha_bars", ab_ok).passed
    eq = "DDPM's notation for Eq. 4"
    assert_rejected(_run("alpha_bars", lambda b: torch.cumprod(1 - b, 0)), eq, "alpha_bars[0] = 1")
    assert_rejected(
        _run("alpha_bars", lambda b: torch.cat([torch.ones(1, dtype=b.dtype), 1 - b])), eq, "running product"
    )
    assert_rejected(
        _run("alpha_bars", lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(b, 0)])),
        eq,
        "multiplied the betas",
    )
    assert_rejected(_run("alpha_bars", lambda b: None), eq, "return")


# ---- q_sample --------------------------------------------------------------------------------
def q_ok(x0, t, noise, ab):
    a = _b(ab[t], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def q_alpha(x0, t, noise, ab):
    al = torch.cat([torch.ones(1, dtype=ab.dtype), ab[1:] / ab[:-1]])
    a = _b(al[t], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def q_var(x0, t, noise, ab):
    a = _b(ab[t], x0)
    return a.sqrt() * x0 + (1 - a) * noise


def test_q_sample():
    eq = "x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4)"
    r = _run("q_sample", q_ok)
    assert r.passed and eq in r.message
    r = _run("q_sample", q_alpha)
    assert_rejected(r, eq, "alpha_t = 1 - beta_t")
    assert "your mean at t=10 is" in r.message and "(expected sqrt(abar_10) x_0 = 0.9507 x_0)" in r.message

    def off_by_one(x0, t, noise, ab):
        return q_ok(x0, t - 1, noise, ab)

    assert_rejected(_run("q_sample", off_by_one), eq, "alpha_bars[t - 1]")
    assert_rejected(_run("q_sample", q_var), eq, "standard deviation sqrt(1 - abar_t)")

    def no_sqrt_signal(x0, t, noise, ab):
        a = _b(ab[t], x0)
        return a * x0 + (1 - a).sqrt() * noise

    assert_rejected(_run("q_sample", no_sqrt_signal), eq, "x_0 is scaled by abar_t")

    def swapped(x0, t, noise, ab):
        a = _b(ab[t], x0)
        return (1 - a).sqrt() * x0 + a.sqrt() * noise

    assert_rejected(_run("q_sample", swapped), eq, "swapped")

    def no_reshape(x0, t, noise, ab):
        return ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * noise

    assert_rejected(_run("q_sample", no_reshape), eq, "(B, 1, ..., 1)")

    def own_noise(x0, t, noise, ab):
        return q_ok(x0, t, torch.randn_like(x0), ab)

    assert_rejected(_run("q_sample", own_noise), eq, "use the `noise` argument")

    def stub(x0, t, noise, ab):
        raise NotImplementedError("exercise: implement q_sample")

    assert_rejected(_run("q_sample", stub), eq, "not implemented yet")


# ---- posterior -------------------------------------------------------------------------------
def post_ok(x0, x_t, t, s):
    ab, abp = s.alpha_bars[t], s.alpha_bars[t - 1]
    be, al = s.betas[t], s.alphas[t]
    c0 = abp.sqrt() * be / (1 - ab)
    ct = al.sqrt() * (1 - abp) / (1 - ab)
    var = (1 - abp) / (1 - ab) * be
    return _b(c0, x0) * x0 + _b(ct, x0) * x_t, var  # variance of shape (B,) is accepted


def test_posterior():
    eq = "DDPM Eqs. 6-7"
    assert _run("posterior", post_ok).passed

    def full_shape_var(x0, x_t, t, s):
        m, v = post_ok(x0, x_t, t, s)
        return m, _b(v, x0).expand_as(x0)

    assert _run("posterior", full_shape_var).passed

    def var_beta(x0, x_t, t, s):
        return post_ok(x0, x_t, t, s)[0], s.betas[t]

    assert_rejected(_run("posterior", var_beta), eq, "the variance is beta_t")

    def var_std(x0, x_t, t, s):
        m, v = post_ok(x0, x_t, t, s)
        return m, v.sqrt()

    assert_rejected(_run("posterior", var_std), eq, "standard deviation")

    def abar_t_in_c0(x0, x_t, t, s):
        m, v = post_ok(x0, x_t, t, s)
        ab, abp, be = s.alpha_bars[t], s.alpha_bars[t - 1], s.betas[t]
        wrong = _b(ab.sqrt() * be / (1 - ab) - abp.sqrt() * be / (1 - ab), x0) * x0
        return m + wrong, v

    assert_rejected(_run("posterior", abar_t_in_c0), eq, "x_0 coefficient uses sqrt(abar_t)")

    def clipped_at_1(x0, x_t, t, s):
        m, v = post_ok(x0, x_t, t, s)
        return m, torch.where(t == 1, s.posterior_variance[2], v)

    r = _run("posterior", clipped_at_1)
    assert_rejected(r, eq, "beta~_1 = 0")
    assert "at t=1" in r.message

    def shifted(x0, x_t, t, s):
        return post_ok(x0, x_t, (t - 1).clamp(min=1), s)

    assert_rejected(_run("posterior", shifted), eq, "t - 1")
    assert_rejected(_run("posterior", lambda x0, x_t, t, s: x0), eq, "pair (mean, variance)")


# ---- normal_kl -------------------------------------------------------------------------------
def kl_ok(m1, l1, m2, l2):
    return 0.5 * (l2 - l1 + torch.exp(l1 - l2) + (m1 - m2) ** 2 * torch.exp(-l2) - 1)


def test_normal_kl():
    eq = "DDPM Eq. 5"
    assert _run("normal_kl", kl_ok).passed
    assert_rejected(_run("normal_kl", lambda *a: 2 * kl_ok(*a)), eq, "factor 1/2")
    assert_rejected(_run("normal_kl", lambda m1, l1, m2, l2: kl_ok(m2, l2, m1, l1)), eq, "swapped")
    assert_rejected(_run("normal_kl", lambda *a: kl_ok(*a) + 0.5), eq, "the -1")
    assert_rejected(
        _run("normal_kl", lambda m1, l1, m2, l2: 0.5 * (l2 - l1 + torch.exp(l1 - l2) + (m1 - m2) ** 2 - 1)),
        eq,
        "not divided by v2",
    )
    r = _run("normal_kl", lambda *a: kl_ok(*a).sum())
    assert_rejected(r, eq, "shape ()")


# ---- discretized decoder -------------------------------------------------------------------------
def _cdf(v):
    return 0.5 * (1 + torch.erf(v / math.sqrt(2)))


def dec(x, mean, log_scale, half=1 / 255, edges=True, sigma=None):
    sigma = log_scale.exp() if sigma is None else sigma
    hi, lo = _cdf((x + half - mean) / sigma), _cdf((x - half - mean) / sigma)
    p = hi - lo
    if edges:
        p = torch.where(x < -0.999, hi, torch.where(x > 0.999, 1 - lo, p))
    return p.log()


def dec_tanh(x, mean, log_scale):
    approx = lambda v: 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))  # noqa: E731
    s = log_scale.exp()
    hi, lo = approx((x + 1 / 255 - mean) / s), approx((x - 1 / 255 - mean) / s)
    p = torch.where(x < -0.999, hi, torch.where(x > 0.999, 1 - lo, hi - lo))
    return p.clamp(min=1e-12).log()


def test_discretized_log_likelihood():
    eq = "DDPM Eq. 13"
    assert _run("discretized_log_likelihood", dec).passed
    r = _run("discretized_log_likelihood", dec_tanh)
    assert r.passed and "tanh" in r.message
    assert_rejected(
        _run("discretized_log_likelihood", lambda x, m, ls: dec(x, m, ls, half=2 / 255)),
        eq,
        "grid step is 2/255",
    )
    r = _run("discretized_log_likelihood", lambda x, m, ls: dec(x, m, ls, edges=False))
    assert_rejected(r, eq, "edge bins are open")
    assert "at the edge x = -1" in r.message
    assert_rejected(
        _run("discretized_log_likelihood", lambda x, m, ls: dec(x, m, ls, sigma=(0.5 * ls).exp())),
        eq,
        "not the log-variance",
    )
    gauss = lambda x, m, ls: -0.5 * (math.log(2 * math.pi) + 2 * ls + (x - m) ** 2 * torch.exp(-2 * ls))  # noqa: E731
    assert_rejected(_run("discretized_log_likelihood", gauss), eq, "log density")


# ---- p_sample_step ---------------------------------------------------------------------------------
def step(eps, x_t, t, s, z, var="beta", noise_at_1=False, sig_pow=1, denom="alpha"):
    al, ab, be = _b(s.alphas[t], x_t), _b(s.alpha_bars[t], x_t), _b(s.betas[t], x_t)
    mean = (x_t - be / (1 - ab).sqrt() * eps) / (al if denom == "alpha" else ab).sqrt()
    v = be if var == "beta" else _b(s.posterior_variance[t], x_t)
    nz = torch.ones_like(v) if noise_at_1 else _b((t > 1).double(), x_t)
    return mean + nz * v.sqrt() ** sig_pow * z


def test_p_sample_step():
    eq = "DDPM Algorithm 2, line 4"
    r = _run("p_sample_step", step)
    assert r.passed and "beta_t" in r.message
    r = _run("p_sample_step", lambda *a: step(*a, var="tilde"))
    assert r.passed and "beta~_t" in r.message
    assert_rejected(_run("p_sample_step", lambda *a: step(*a, noise_at_1=True)), eq, "z = 0")
    assert_rejected(_run("p_sample_step", lambda *a: step(*a, sig_pow=2)), eq, "not the variance")
    r = _run("p_sample_step", lambda *a: step(*a, denom="abar"))
    assert_rejected(r, eq, "sqrt(alpha_t)")
    assert "at t=10 your x_(t-1) is" in r.message

    assert_rejected(_run("p_sample_step", _shift), eq, "t - 1")
    assert_rejected(
        _run("p_sample_step", lambda eps, x_t, t, s, z: step(-eps, x_t, t, s, z)), eq, "subtracted"
    )


def _shift(eps, x_t, t, s, z):
    tm1 = (t - 1).clamp(min=1)
    al, ab, be = _b(s.alphas[tm1], x_t), _b(s.alpha_bars[tm1], x_t), _b(s.betas[t], x_t)
    be_m1 = _b(s.betas[tm1], x_t)
    mean = (x_t - be_m1 / (1 - ab).sqrt() * eps) / al.sqrt()
    return mean + _b((t > 1).double(), x_t) * be.sqrt() * z


# ---- chapter 11 ----
def test_min_eps_loss():
    eq = "the smallest E||eps - eps_theta(x_t)||^2"
    right = lambda ab, s2: ab * s2 / (ab * s2 + 1 - ab)  # noqa: E731
    r = _run("min_eps_loss", right)
    assert r.passed and "at alpha_bar = 0.9999" in r.message
    # the same number by Monte Carlo with the exact E[eps | x_t] of Gaussian data (ddpm_lib.GaussianData)
    ab = torch.tensor([0.99, 0.5], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(200_000, 2, generator=g, dtype=torch.float64) * 0.5,
        torch.randn(200_000, 2, generator=g),
    )
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps.double()
    best = (1 - ab).sqrt() * x_t / (ab * 0.25 + 1 - ab)
    assert torch.allclose(((eps - best) ** 2).mean(0), right(ab, 0.25), rtol=0.02)
    mistakes = {
        "share of eps": lambda ab, s2: (1 - ab) / (ab * s2 + 1 - ab),
        "share of x_t's variance": lambda ab, s2: 1 - ab,
        "divide by the variance": lambda ab, s2: ab * s2,
        "prediction of x_0": lambda ab, s2: s2 * (1 - ab) / (ab * s2 + 1 - ab),
        "beats predicting 0": lambda ab, s2: torch.ones_like(ab),
    }
    for hint, fn in mistakes.items():
        assert_rejected(_run("min_eps_loss", fn), eq, hint)
    assert_rejected(
        _run("min_eps_loss", lambda ab, s2: (_ for _ in ()).throw(NotImplementedError)), eq, "not implemented"
    )


# ---- chapter 12 ----
def test_window_r_t_grad():
    eq = "grad log r_t(x) = -sqrt(abar) (sqrt(abar) x - c)"
    right = lambda x, ab, c, w: -math.sqrt(ab) * (math.sqrt(ab) * x - c) / (w**2 + 1 - ab)  # noqa: E731
    r = _run("window_r_t_grad", right)
    assert r.passed and "As abar -> 1" in r.message
    # the same gradient by autograd of log E[r(x_0) | x_t = x], the expectation on a grid of x_0
    x = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    ab, c, w = 0.6, 0.7, 0.5
    x0 = torch.linspace(-10, 10, 40001, dtype=torch.float64)
    dens = torch.exp(-0.5 * (x0 - math.sqrt(ab) * x[:, None]) ** 2 / (1 - ab) - 0.5 * (x0 - c) ** 2 / w**2)
    (g,) = torch.autograd.grad(torch.trapezoid(dens, x0).log().sum(), x)
    assert torch.allclose(g, right(x.detach(), ab, c, w), rtol=1e-6)
    mistakes = {
        "chain rule": lambda x, ab, c, w: -(math.sqrt(ab) * x - c) / (w**2 + 1 - ab),
        "spread by 1 - abar": lambda x, ab, c, w: -math.sqrt(ab) * (math.sqrt(ab) * x - c) / w**2,
        "centred at sqrt(abar) x": lambda x, ab, c, w: -math.sqrt(ab) * (x - c) / (w**2 + 1 - ab),
        "fixed r": lambda x, ab, c, w: -(x - c) / w**2,
        "the sign": lambda x, ab, c, w: -right(x, ab, c, w),
    }
    for hint, fn in mistakes.items():
        assert_rejected(_run("window_r_t_grad", fn), eq, hint)
