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


# ---- chapter 08 ----
def _resblock(i, o, te, norms=True, shortcut="auto", temb=True, biases=True, taps=9):
    n = (2 * i + 2 * o) if norms else 0
    b = 1 if biases else 0
    n += taps * i * o + b * o + taps * o * o + b * o
    n += (te * o + b * o) if temb else 0
    if (shortcut == "auto" and i != o) or shortcut == "always":
        n += i * o + b * o
    return n


def test_resnet_block_parameters():
    eq = "ddpm_lib.ResnetBlock"
    r = _run("resnet_block_parameters", _resblock)
    assert r.passed, r.message
    assert _run("resnet_block_parameters", lambda *a: torch.tensor(_resblock(*a))).passed
    for kw, hint in [
        (dict(norms=False), "GroupNorm has a scale and a shift"),
        (dict(shortcut="never"), "1x1 convolution"),
        (dict(shortcut="always"), "identity"),
        (dict(temb=False), "temb_proj"),
        (dict(biases=False), "one bias per output channel"),
        (dict(taps=3), "9 C C' weights"),
    ]:
        assert_rejected(_run("resnet_block_parameters", lambda *a, kw=kw: _resblock(*a, **kw)), eq, hint)
    one_conv = lambda i, o, te: 9 * i * o + o + te * o + o + 2 * i + 2 * o + (i * o + o) * (i != o)  # noqa: E731
    r = _run("resnet_block_parameters", one_conv)
    assert_rejected(r, eq, "two 3x3 convolutions")
    assert_rejected(_run("resnet_block_parameters", lambda i, o, te: 1.5), eq, "as an int")

    def todo(i, o, te):
        raise NotImplementedError

    assert_rejected(_run("resnet_block_parameters", todo), eq, "not implemented yet")


# ---- chapter 13 ----
def test_mixed_noise_variance():
    eq = "(1 - lambda)^2 + lambda^2"
    right = lambda lam, rho: (1 - lam) ** 2 + lam**2 + 2 * lam * (1 - lam) * rho  # noqa: E731
    assert _run("mixed_noise_variance", right).passed
    for wrong, hint in [
        (lambda lam, rho: (1 - lam) ** 2 + lam**2, "add the covariance term"),
        (lambda lam, rho: (1 - lam) ** 2 + lam**2 + lam * (1 - lam) * rho, "with the factor 2"),
        (lambda lam, rho: (1 - lam) ** 2 + lam**2 + 2 * lam * (1 - lam) * rho**2, "not rho^2"),
        (lambda lam, rho: 1 + 2 * lam * (1 - lam) * rho, "not a."),
        (lambda lam, rho: right(lam, rho).sqrt(), "standard deviation"),
        (lambda lam, rho: torch.ones_like(lam), "only when the noises are the same"),
    ]:
        assert_rejected(_run("mixed_noise_variance", wrong), eq, hint)
    assert_rejected(_run("mixed_noise_variance", lambda lam, rho: None), eq, "forget `return`")
