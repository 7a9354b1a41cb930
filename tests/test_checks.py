"""ddpm_lib.course.checks: every checker accepts a correct implementation and rejects common mistakes with a
message that names the right equation (and, where cheap, the mistake)."""

import math

import pytest
import torch

from ddpm_lib.course import checks
from ddpm_lib.course.replay import fragile_numbers


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
    # no slip fits a 20% error: the message names none
    assert (
        "relative error 2.0e-01, tolerance rtol 1e-06, atol 1e-08." in r.message and "slip" not in r.message
    )


def test_check_value_calls_a_function_and_reports_an_unfinished_exercise():
    assert _value(lambda: torch.tensor([1.0, 2.0]) * 2, [2.0, 4.0]).passed

    def stub():
        raise NotImplementedError("exercise: implement it")

    r = _value(stub, 1.0)
    assert not r.passed and "not implemented yet" in r.message and "It should be Eq. X." in r.message
    r = _value(lambda: 1 / 0, 1.0)
    assert not r.passed and "raised ZeroDivisionError" in r.message


def _value(value, expected, **tol):
    return checks.check_value("v", value, expected, equation="Eq. X", verbose=False, **tol)


def test_check_value_states_the_relative_error_and_the_tolerance():
    r = _value(7.278e-06, 7.279e-06, rtol=1e-6, atol=0.0)
    assert not r.passed
    assert "yours 7.278e-06, expected 7.279e-06: relative error 1.4e-04, tolerance rtol 1e-06." in r.message
    # enough digits that the two numbers differ on the page, one more than the first that differs ...
    assert (
        "yours 0.2500001, expected 0.2500000: relative error 4.0e-07, tolerance rtol 1e-09, atol 1e-08."
        in _value(0.2500001, 0.25, rtol=1e-9).message
    )
    assert "yours 0.897086, expected 0.897018: relative error 7.6e-05" in _value(0.8970859, 0.8970181).message
    # ... and never more than 7 significant digits, which no stored output may print (replay.MAX_SIGNIFICANT):
    # closer numbers differ in the relative error
    m = _value(0.25 + 1e-10, 0.25, rtol=1e-12, atol=0.0).message
    assert "yours 0.2500000, expected 0.2500000: relative error 4.0e-10" in m
    assert not fragile_numbers(m)
    # a tensor: the element furthest outside the tolerance
    r = _value([1.976e-05, 7.278e-06], [1.976e-05, 7.279e-06], rtol=1e-9, atol=1e-15)
    assert "yours [1.976e-05, 7.278e-06], expected [1.976e-05, 7.279e-06]" in r.message
    assert (
        "worst element 1: yours 7.278e-06, expected 7.279e-06, relative error 1.4e-04; tolerance rtol 1e-09, "
        in (r.message)
    )
    r = _value([[0.5, 1.0], [2.0, 0.0]], [[0.5, 1.0], [2.0, 0.1]])
    assert "worst element (1, 1): yours 0.0000, expected 0.1000, relative error 1.0e+00" in r.message
    assert "absolute error 1.0e-03 where 0 is expected" in _value(1e-3, 0.0).message
    assert "yours is nan" in _value(float("nan"), 1.0).message
    assert "tolerance atol 1e-04" in _value(1.0, 2.0, rtol=0.0, atol=1e-4).message


def test_check_value_names_the_common_slips():
    ln2 = math.log(2)
    r = _value(3.0 * ln2, 3.0)  # nats where bits are asked
    assert "times ln 2: nats vs bits?" in r.message and "the expected one is in bits" in r.message
    r = _value(torch.tensor([1.5, 2.5]) / ln2, torch.tensor([1.5, 2.5]))  # bits where nats are asked
    assert "divided by ln 2: nats vs bits?" in r.message and "the expected one is in nats" in r.message
    assert "opposite sign: a sign slip" in _value(-0.7, 0.7).message
    assert "twice the expected value: a factor of 2" in _value([2.0, 6.0], [1.0, 3.0]).message
    assert "half the expected value: a factor of 2" in _value(1.5, 3.0).message
    r = _value([1.976e-05, 7.278e-06], [1.976e-05, 7.279e-06], rtol=1e-9, atol=1e-15)
    assert (
        "close (within 0.014%, outside the tolerance): an approximation where the exact value is asked?"
        in (r.message)
    )
    assert "float32 round-off" not in r.message
    r = _value(
        torch.tensor(0.1, dtype=torch.float32), 0.1, rtol=1e-12, atol=0.0
    )  # float32 for a float64 value
    assert (
        "close (within 1.5e-08 relative" in r.message and "float32 round-off: compute in float64" in r.message
    )
    assert "slip" not in _value(1.1, 1.0).message  # 10%: not close, and no factor fits
    # zeros in the expected value must stay zeros for a ratio to fit
    assert "twice" not in _value([2.0, 1.0], [1.0, 0.0]).message


def test_checkers_state_the_tolerance_and_name_a_slip_when_no_mistake_fits():
    r = _run("q_sample", q_alpha)  # a listed mistake: named, with the worst element and the tolerance
    assert (
        "; worst element (3, 0, 1): yours 0.5493, expected -0.0901, relative error 7.1e+00; tolerance rtol "
        in (r.message)
    )
    assert "tolerance rtol 1e-05, atol 1e-06. Likely mistake: you used alpha_t" in r.message
    assert "Likely slip" not in r.message
    r = _run("normal_kl", lambda *a: kl_ok(*a) / math.log(2))  # the KL in bits
    assert "relative error" in r.message and "divided by ln 2: nats vs bits?" in r.message
    r = _run("normal_kl", lambda *a: -kl_ok(*a))
    assert "opposite sign" in r.message
    r = _run(
        "posterior", lambda x0, x_t, t, s: (post_ok(x0, x_t, t, s)[0] * 1.001, post_ok(x0, x_t, t, s)[1])
    )
    assert "the mean's worst element" in r.message and "close (within 0.1%" in r.message
    r = _run("p_sample_step", lambda *a: step(*a, noise_at_1=True))
    assert "tolerance rtol 1e-05, atol 1e-06. Likely mistake: at t = 1" in r.message


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


# ---- chapter 01 ----
def elbo_ok(x, m, s2, w, b, sigma2, kl_sign=-1, spread=True, minus_one=True):
    sq = (x - w * m - b) ** 2 + (w**2 * s2 if spread else 0)
    recon = -0.5 * torch.log(2 * math.pi * sigma2) - sq / (2 * sigma2)
    kl = 0.5 * (m**2 + s2 - (1 if minus_one else 0) - torch.log(s2))
    return recon + kl_sign * kl


def test_gaussian_elbo():
    eq = "chapter 01, section 1"
    assert _run("gaussian_elbo", elbo_ok).passed
    assert_rejected(_run("gaussian_elbo", lambda *a: elbo_ok(*a, kl_sign=1)), eq, "KL term is subtracted")
    assert_rejected(_run("gaussian_elbo", lambda *a: elbo_ok(*a, spread=False)), eq, "w^2 s2 / (2 sigma2)")
    assert_rejected(_run("gaussian_elbo", lambda *a: elbo_ok(*a, minus_one=False)), eq, "the -1")
    assert_rejected(
        _run(
            "gaussian_elbo",
            lambda x, m, s2, w, b, sig2: elbo_ok(x, m, s2, w, b, sig2) + 0.25 * torch.log(sig2),
        ),
        eq,
        "not sigma",
    )
    r = _run("gaussian_elbo", lambda *a: (_ for _ in ()).throw(NotImplementedError("exercise")))
    assert_rejected(r, eq, "not implemented yet")


def fstep(x_prev, beta, noise, sq_x=True, sq_b=True):
    b = _b(beta, x_prev)
    return ((1 - b).sqrt() if sq_x else 1 - b) * x_prev + (b.sqrt() if sq_b else b) * noise


def test_forward_step():
    eq = "DDPM Eq. 2"
    assert _run("forward_step", fstep).passed
    assert_rejected(_run("forward_step", lambda *a: fstep(*a, sq_b=False)), eq, "square root sqrt(beta_t)")
    assert_rejected(_run("forward_step", lambda *a: fstep(*a, sq_x=False)), eq, "not 1 - beta_t")
    assert_rejected(_run("forward_step", lambda x, b, n: x + _b(b, x).sqrt() * n), eq, "variance grows")
    # no reshape: (B,) against (B, 1, 4, 4) does not broadcast, and the message says how to fix it
    assert_rejected(
        _run("forward_step", lambda x, b, n: (1 - b).sqrt() * x + b.sqrt() * n), eq, "(B, 1, ..., 1)"
    )


def chain_var(v0, beta, t, power=1.0):
    keep = (1 - beta) ** (t * power)
    return keep * v0 + 1 - keep


def test_chain_variance():
    eq = "Var(x_t) = (1 - beta) Var(x_(t-1)) + beta"
    assert _run("chain_variance", chain_var).passed
    # the checker's closed form against a Monte Carlo run of the chain
    g = torch.Generator().manual_seed(0)
    x = 1.7 * torch.randn(400_000, generator=g, dtype=torch.float64)
    for _ in range(12):
        x = math.sqrt(1 - 0.1) * x + math.sqrt(0.1) * torch.randn(x.shape, generator=g, dtype=torch.float64)
    exact = float(chain_var(torch.tensor(1.7**2), torch.tensor(0.1), torch.tensor(12)))
    assert abs(float(x.var()) - exact) < 4 * exact * math.sqrt(2 / len(x))
    assert_rejected(_run("chain_variance", lambda v0, b, t: v0 + t * b), eq, "multiplies the variance")
    assert_rejected(_run("chain_variance", lambda v0, b, t: (1 - b) ** t * v0 + t * b), eq, "geometric sum")
    assert_rejected(_run("chain_variance", lambda *a: chain_var(*a, power=0.5)), eq, "its square")
    assert_rejected(_run("chain_variance", lambda v0, b, t: (1 - b) ** t * v0), eq, "noise is missing")
    assert_rejected(_run("chain_variance", lambda v0, b, t: chain_var(v0, b, t - 1)), eq, "the power t")


# ---- chapter 03 ----
def lt_bits(ab, sq):
    return 0.5 * (ab * sq - ab - torch.log1p(-ab)) / math.log(2)


def test_prior_term_bits():
    eq = "in bits"
    assert _run("prior_term_bits", lt_bits).passed
    assert _run(
        "prior_term_bits", lambda ab, sq: 0.5 * (ab * sq - ab - torch.log(1 - ab)) / math.log(2)
    ).passed
    assert_rejected(_run("prior_term_bits", lambda ab, sq: lt_bits(ab, sq) * math.log(2)), eq, "in nats")
    r = _run("prior_term_bits", lambda ab, sq: 0.5 * ab * sq / math.log(2))
    assert_rejected(r, eq, "the approximation")
    assert "relative error" in r.message and "tolerance 1e-06" in r.message
    assert_rejected(_run("prior_term_bits", lambda ab, sq: 2 * lt_bits(ab, sq)), eq, "factor 1/2")
    assert_rejected(_run("prior_term_bits", lambda ab, sq: 784 * lt_bits(ab, sq)), eq, "784 pixels")


def smallest_T_ok(target, sq, b1, bT, unit=1.0, shift=0):
    T = 2
    while checks._lt_bits_linear(T, sq, b1, bT) * unit > target:
        T += 1
    return T + shift


def test_smallest_T():
    eq = "the smallest T"
    r = _run("smallest_T", smallest_T_ok)
    assert r.passed and "T = 1068" in r.message, r.message
    assert_rejected(_run("smallest_T", lambda *a: smallest_T_ok(*a, unit=math.log(2))), eq, "in nats")
    r = _run("smallest_T", lambda *a: smallest_T_ok(*a, shift=-1))
    assert_rejected(r, eq, "more steps are needed")
    assert "one step short" in r.message and "1068" not in r.message  # the answer is not given away
    assert_rejected(_run("smallest_T", lambda *a: smallest_T_ok(*a, shift=1)), eq, "fewer steps suffice")
    est = lambda t, sq, b1, bT: math.ceil(2 * math.log(sq / (2 * math.log(2) * t)) / (b1 + bT))  # noqa: E731
    assert_rejected(_run("smallest_T", est), eq, "first guess")
    assert_rejected(_run("smallest_T", lambda *a: 1000.5), eq, "whole number")


# ---- chapter 06 ----
def _x0_weight(t, s, sigma2):
    c = s.alpha_bars[t - 1].sqrt() * s.betas[t] / (1 - s.alpha_bars[t])
    return c**2 / (2 * sigma2)


def test_x0_mse_weight():
    eq = "1/2 (SNR(t-1) - SNR(t))"
    assert _run("x0_mse_weight", _x0_weight).passed
    # the same weight written as Eq. 12's w_t times SNR(t)
    w_snr = lambda t, s, v: s.betas[t] ** 2 / (2 * v * s.alphas[t] * (1 - s.alpha_bars[t])) * s.snr[t]  # noqa: E731
    assert _run("x0_mse_weight", w_snr).passed
    w_eps = lambda t, s, v: s.betas[t] ** 2 / (2 * v * s.alphas[t] * (1 - s.alpha_bars[t]))  # noqa: E731
    assert_rejected(_run("x0_mse_weight", w_eps), eq, "multiply by SNR(t)")
    assert_rejected(
        _run("x0_mse_weight", lambda t, s, v: w_eps(t, s, v) / s.snr[t]), eq, "divide the other way"
    )
    assert_rejected(_run("x0_mse_weight", lambda t, s, v: w_eps(t, s, v) * s.snr[t].sqrt()), eq, "not sqrt")
    r = _run("x0_mse_weight", lambda t, s, v: 0.5 * (s.snr[t - 1] - s.snr[t]))
    assert_rejected(r, eq, "only for sigma_t^2 = beta~_t")
    assert "with sigma_t^2 = beta_t," in r.message and "relative tolerance" in r.message
    assert_rejected(_run("x0_mse_weight", lambda t, s, v: 2 * _x0_weight(t, s, v)), eq, "factor 1/2")
    assert_rejected(
        _run("x0_mse_weight", lambda t, s, v: _x0_weight((t - 1).clamp(min=2), s, v)), eq, "shifted"
    )
    half = lambda t, s, v: s.alpha_bars[t - 1] * s.betas[t] / (2 * v * (1 - s.alpha_bars[t]))  # noqa: E731
    assert_rejected(_run("x0_mse_weight", half), eq, "square the whole coefficient")

    def stub(t, s, v):
        raise NotImplementedError("exercise")

    assert_rejected(_run("x0_mse_weight", stub), eq, "not implemented yet")


# ---- chapter 07 ----
def _sigma_for_bits(bits):
    return 1 / (255 * torch.special.ndtri(torch.tensor((1 + 2.0**-bits) / 2, dtype=torch.float64)))


def test_sigma_for_bits():
    eq = "2 Phi(1/(255 sigma)) - 1"
    r = _run("sigma_for_bits", _sigma_for_bits)
    assert r.passed, r.message
    assert _run("sigma_for_bits", lambda b: float(_sigma_for_bits(b))).passed
    nats = lambda b: 1 / (255 * torch.special.ndtri(torch.tensor((1 + math.exp(-b)) / 2)).double())  # noqa: E731
    assert_rejected(_run("sigma_for_bits", nats), eq, "not nats")
    assert_rejected(_run("sigma_for_bits", lambda b: 2 * _sigma_for_bits(b)), eq, "half-width 1/255")
    assert_rejected(_run("sigma_for_bits", lambda b: _sigma_for_bits(b) / 2), eq, "not 1/(2 * 255)")
    assert_rejected(_run("sigma_for_bits", lambda b: _sigma_for_bits(b) ** 2), eq, "variance")
    r = _run("sigma_for_bits", lambda b: (1.0, 2.0))
    assert_rejected(r, eq, "return one number")

    def stub(bits):
        raise NotImplementedError("exercise")

    assert_rejected(_run("sigma_for_bits", stub), eq, "not implemented yet")


# ---- chapter 02 ----
def _entropy_terms(s, bits=False, sign=1, with_pi=True, var_T="abar", log_sd=False):
    def h(v):
        return (
            0.5 * math.log(2 * math.pi * math.e * v)
            if not log_sd
            else 0.5 * math.log(2 * math.pi * math.e) + 0.25 * math.log(v)
        )

    v_T = 1 - float(s.alpha_bars[s.T]) if var_T == "abar" else float(s.betas[s.T])
    out = sign * (h(v_T) - h(float(s.betas[1])) - (h(1.0) if with_pi else 0.0))
    return out / math.log(2) if bits else out


def test_entropy_terms():
    eq = "Sohl-Dickstein et al. 2015, Eq. 14"
    assert _run("entropy_terms", _entropy_terms).passed
    assert_rejected(_run("entropy_terms", lambda s: _entropy_terms(s, bits=True)), eq, "bits")
    assert_rejected(_run("entropy_terms", lambda s: _entropy_terms(s, sign=-1)), eq, "signs")
    assert_rejected(_run("entropy_terms", lambda s: _entropy_terms(s, with_pi=False)), eq, "H(pi)")
    assert_rejected(_run("entropy_terms", lambda s: _entropy_terms(s, var_T="beta")), eq, "1 - abar_T")
    assert_rejected(_run("entropy_terms", lambda s: _entropy_terms(s, log_sd=True)), eq, "standard deviation")
    r = _run("entropy_terms", lambda s: (_ for _ in ()).throw(NotImplementedError()))
    assert not r.passed and "not implemented yet" in r.message


def _two(log_w, shift=True, n_div=True, swap=False):
    top = log_w.max(1, keepdim=True).values if shift else torch.zeros_like(log_w[:, :1])
    log_p = top[:, 0] + torch.log(torch.exp(log_w - top).sum(1) / (log_w.shape[1] if n_div else 1))
    return (log_w.mean(1), log_p) if swap else (log_p, log_w.mean(1))


def test_two_estimates():
    eq = "Eq. 9"
    assert _run("two_estimates", _two).passed
    assert_rejected(_run("two_estimates", lambda lw: _two(lw, shift=False)), eq, "underflowed")
    assert_rejected(_run("two_estimates", lambda lw: _two(lw, n_div=False)), eq, "subtract log n")
    assert_rejected(_run("two_estimates", lambda lw: _two(lw, swap=True)), eq, "swapped")
    assert_rejected(_run("two_estimates", lambda lw: (lw.mean(1), lw.mean(1))), eq, "mean of log w")
    assert_rejected(_run("two_estimates", lambda lw: lw.mean(1)), eq, "pair")


def test_lognormal_gap():
    eq = "E[w] = exp(mu + var / 2)"
    assert _run("lognormal_gap", lambda mu, var: var / 2).passed
    assert_rejected(_run("lognormal_gap", lambda mu, var: var.sqrt() / 2), eq, "not sd / 2")
    assert_rejected(_run("lognormal_gap", lambda mu, var: mu + var / 2), eq, "subtract E[log w]")
    assert_rejected(_run("lognormal_gap", lambda mu, var: var), eq, "factor 1/2")
    assert_rejected(_run("lognormal_gap", lambda mu, var: -var / 2), eq, "concave")


# ---- chapter 04 ----
def test_variance_choice():
    eq = "DDPM Sec. 3.2"
    right = {"one point": "beta_tilde", "standard normal": "beta"}
    assert _run("variance_choice", right.get).passed
    r = _run("variance_choice", lambda d: "beta")
    assert_rejected(r, eq, "knowing x_t adds nothing")
    r = _run("variance_choice", lambda d: "beta_tilde")
    assert_rejected(r, eq, "reversible")
    assert_rejected(_run("variance_choice", lambda d: "small"), eq, 'answer "beta" or "beta_tilde"')
    r = _run("variance_choice", lambda d: (_ for _ in ()).throw(NotImplementedError()))
    assert not r.passed and "not implemented yet" in r.message


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


# ---- chapter 09 ----
def _l_simple(cast):
    def fn(model, x0, t, noise, alpha_bars):
        ab = alpha_bars[t].view(-1, *[1] * (x0.ndim - 1))
        ab = ab.to(x0.dtype) if cast else ab
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        return ((noise - model(x_t, t)) ** 2).flatten(1).mean(1)

    return fn


def test_l_simple_float32():
    eq = "DDPM Eq. 14"
    r = _run("l_simple_float32", _l_simple(cast=True))
    assert r.passed, r.message
    r = _run(
        "l_simple_float32", _l_simple(cast=False)
    )  # passes the float64 check, fails on the U-Net's dtype
    assert _run("l_simple", _l_simple(cast=False)).passed
    assert_rejected(r, eq, ".to(x0.dtype)")

    def wrong(model, x0, t, noise, alpha_bars):  # alpha_t for alpha_bar_t: the float64 check's hint shows
        al = torch.cat([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])[t].to(x0.dtype)
        al = al.view(-1, *[1] * (x0.ndim - 1))
        return ((noise - model(al.sqrt() * x0 + (1 - al).sqrt() * noise, t)) ** 2).flatten(1).mean(1)

    assert_rejected(_run("l_simple_float32", wrong), eq, "alpha_bar_t")

    def todo(*a):
        raise NotImplementedError

    assert "not implemented yet" in _run("l_simple_float32", todo).message


def test_x0_mse_from_eps_mse():
    eq = "DDPM Eq. 4 solved for x_0"
    assert _run("x0_mse_from_eps_mse", lambda e, t, ab: (1 - ab[t]) / ab[t] * e).passed
    mistakes = {
        "upside down": lambda e, t, ab: ab[t] / (1 - ab[t]) * e,
        "by the square": lambda e, t, ab: ((1 - ab[t]) / ab[t]).sqrt() * e,
        "one-step alpha_t": lambda e, t, ab: (1 - ab[t] / ab[t - 1]) / (ab[t] / ab[t - 1]) * e,
        "paper indexing": lambda e, t, ab: (1 - ab[t - 1]) / ab[t - 1] * e,
        "left that factor out": lambda e, t, ab: e / ab[t],
        "divided by abar_t too": lambda e, t, ab: (1 - ab[t]) * e,
    }
    for hint, fn in mistakes.items():
        assert_rejected(_run("x0_mse_from_eps_mse", fn), eq, hint)


# ---- chapter 10 ----
def _clipped_mean(eps, x_t, t, s, clip=(-1, 1), what="x0", swap=False, abar_x0=True):
    ab, abm1 = _b(s.alpha_bars[t], x_t), _b(s.alpha_bars[t - 1], x_t)
    al, be = _b(s.alphas[t], x_t), _b(s.betas[t], x_t)
    c1, c2 = abm1.sqrt() * be / (1 - ab), al.sqrt() * (1 - abm1) / (1 - ab)
    a = ab if abar_x0 else al
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    if what == "x0":
        x0 = x0.clamp(*clip)
    if swap:
        c1, c2 = c2, c1
    mean = c1 * x0 + c2 * (x_t.clamp(-1, 1) if what == "x_t" else x_t)
    return mean.clamp(-1, 1) if what == "mean" else mean


def test_clipped_mean():
    eq = "DDPM Eq. 7's posterior mean at the clipped prediction"
    r = _run("clipped_mean", _clipped_mean)
    assert r.passed, r.message
    mistakes = {
        "you did not clip": dict(what=None),
        "not the mean": dict(what="mean"),
        "not [0, 1]": dict(clip=(0, 1)),
        "not x_t": dict(what="x_t"),
        "swapped": dict(swap=True),
        "not alpha_t": dict(abar_x0=False),
    }
    for hint, kw in mistakes.items():
        assert_rejected(_run("clipped_mean", lambda *a, kw=kw: _clipped_mean(*a, **kw)), eq, hint)


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
