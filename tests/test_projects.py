"""Chapter 14's projects: each project checker accepts the reference solution and rejects wrong ones, and
ddpm_lib.course.projects' exact mixture is what it claims (its eps-model, its classifier)."""

import math

import pytest
import torch

from ddpm_lib import GaussianDiffusion
from ddpm_lib.course import checks
from ddpm_lib.mixtures import mixture_log_prob
from ddpm_lib.course.projects import NoisedMixture, guidance_mixture, toy_schedule, train_classifier


def _b(v, x):
    return v.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)


def _run(name, fn):
    return checks.check(name, fn, verbose=False)


def _rejected(result, *phrases):
    assert not result.passed and result.message.startswith("✗"), result.message
    for p in phrases:
        assert p in result.message, result.message


# ---- DDIM with eta > 0 ----
def ddim_eta(eps, x_t, t, t_prev, ab, eta, z, *, direction_minus_sigma=True, eta_pow=1):
    abt, abp = _b(ab[t], x_t), _b(ab[t_prev], x_t)
    x0 = (x_t - (1 - abt).sqrt() * eps) / abt.sqrt()
    sigma = eta**eta_pow * ((1 - abp) / (1 - abt) * (1 - abt / abp)).sqrt()
    dv = 1 - abp - sigma**2 if direction_minus_sigma else 1 - abp
    return abp.sqrt() * x0 + dv.clamp(min=0).sqrt() * eps + sigma * z


def test_ddim_eta_step():
    r = _run("ddim_eta_step", ddim_eta)
    assert r.passed and "Eqs. 12 and 16" in r.message
    _rejected(
        _run("ddim_eta_step", lambda *a: ddim_eta(*a, direction_minus_sigma=False)),
        "sqrt(1 - abar_(t_prev) - sigma^2)",
    )
    _rejected(_run("ddim_eta_step", lambda *a: ddim_eta(*a, eta_pow=0)), "multiplied by eta")
    _rejected(_run("ddim_eta_step", lambda *a: ddim_eta(*a[:6], 0 * a[6])), "no noise term")
    _rejected(_run("ddim_eta_step", lambda *a: ddim_eta(*a[:6], torch.randn_like(a[6]))), "different results")


# ---- classifier guidance ----
def noisy_batch(x0, diffusion, generator):
    t = diffusion.sample_t(x0.shape[0], generator=generator)
    return diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=generator, dtype=x0.dtype)), t


def test_noisy_batch():
    assert _run("noisy_batch", noisy_batch).passed
    _rejected(_run("noisy_batch", lambda x0, d, g: (x0, d.sample_t(len(x0), generator=g))), "clean x_0")
    _rejected(
        _run("noisy_batch", lambda x0, d, g: (noisy_batch(x0, d, g)[0], torch.full((len(x0),), 50))),
        "uniform",
    )

    def alpha_not_abar(x0, d, g):
        t = d.sample_t(x0.shape[0], generator=g)
        a = _b(d.schedule.alphas[t], x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g), t

    _rejected(_run("noisy_batch", alpha_not_abar), "correlation", "abar_t")

    def zero_based(x0, d, g):
        x, t = noisy_batch(x0, d, g)
        return x, t - 1

    _rejected(_run("noisy_batch", zero_based), "paper indexing")


def test_noisy_classifier_and_mixture():
    mix = guidance_mixture()
    exact = lambda x, t: mix.class_log_probs(x, t)  # noqa: E731
    r = checks.check("noisy_classifier", exact, verbose=False)
    assert r.passed and "t = 100: 0.00" in r.message
    clean = lambda x, t: mix.class_log_probs(x, 0)  # noqa: E731 - the best classifier of clean data
    _rejected(checks.check("noisy_classifier", clean, verbose=False), "trained on x_0 only")
    _rejected(checks.check("noisy_classifier", "not a function", verbose=False), "callable")

    def stub(x, t):
        raise NotImplementedError

    _rejected(checks.check("noisy_classifier", stub, verbose=False), "not implemented yet")
    learned = train_classifier(
        mix, lambda x0, g: noisy_batch(x0, GaussianDiffusion(mix.schedule), g), steps=300
    )
    assert checks.check("noisy_classifier", learned, verbose=False).passed


def test_noised_mixture_eps_is_the_posterior_mean():
    s = toy_schedule(50)
    mix = NoisedMixture(((-1.0, 0.0), (1.0, 1.0)), (0.2, 0.4), (0.3, 0.7), s)
    g = torch.Generator().manual_seed(0)
    x0, _ = mix.sample(200_000, g)
    t = torch.full((len(x0),), 20)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    d = GaussianDiffusion(s)
    x_t = d.q_sample(x0.double(), t, eps)
    # E[eps | x_t] minimizes the squared error: its residual is uncorrelated with any function of x_t
    resid = eps - mix.eps_model(x_t, t)
    for f in (x_t[:, :1], x_t[:, 1:], x_t.pow(2).sum(1, keepdim=True)):
        assert (resid * (f - f.mean())).mean(0).abs().max() < 0.01
    # q(x_t) is the mixture with scaled means and widened standard deviations (Eq. 4 per component)
    ab = float(s.alpha_bars[20])
    stds = [math.sqrt(ab * v**2 + 1 - ab) for v in (0.2, 0.4)]
    means = math.sqrt(ab) * mix.means
    expected = mixture_log_prob(x_t[:100], means, torch.tensor(stds, dtype=torch.float64), (0.3, 0.7))
    assert torch.allclose(mix.log_prob(x_t[:100], 20), expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="t must lie"):
        mix.class_log_probs(x_t[:3], 51)


def guided_eps(eps, x_t, t, y, classifier, ab, scale, *, sign=-1, logit=False):
    x = x_t.detach().requires_grad_(True)
    out = classifier(x, t)
    lp = out if logit else torch.log_softmax(out, 1)
    (grad,) = torch.autograd.grad(lp[torch.arange(len(y)), y].sum(), x)
    return eps + sign * scale * _b((1 - ab[t]).sqrt(), x_t) * grad


def test_guided_eps():
    assert _run("guided_eps", guided_eps).passed
    _rejected(_run("guided_eps", lambda *a: guided_eps(*a, sign=1)), "the sign")
    _rejected(_run("guided_eps", lambda *a: guided_eps(*a, logit=True)), "not of the raw logit")
    _rejected(_run("guided_eps", lambda *a: guided_eps(*a[:6], 1.0)), "scale s multiplies")


# ---- RePaint ----
def repaint(model, diffusion, x_known, mask, U, generator, *, back=True, replace_at_end=True):
    def known_at(tt):
        if tt == 0:
            return x_known
        t = torch.full((len(x_known),), tt)
        return diffusion.q_sample(x_known, t, torch.randn(x_known.shape, generator=generator))

    x = torch.randn(x_known.shape, generator=generator)
    x = mask * known_at(diffusion.T) + (1 - mask) * x
    for tt in range(diffusion.T, 0, -1):
        t = torch.full((len(x),), tt)
        for u in range(U if tt > 1 else 1):
            if u > 0 and back:
                x = diffusion.q_step(x_prev, t, generator=generator)  # noqa: F821 - set on the first pass
            x_prev = diffusion.p_sample(model(x, t), x, t, generator=generator)
            if tt > 1 or replace_at_end:
                x_prev = mask * known_at(tt - 1) + (1 - mask) * x_prev
        x = x_prev
    return x


def test_repaint():
    r = _run("repaint", repaint)
    assert r.passed and "incoherent fills" in r.message
    _rejected(_run("repaint", lambda *a: repaint(*a, replace_at_end=False)), "x_known's at the end")
    _rejected(_run("repaint", lambda m, d, xk, mask, U, g: repaint(m, d, xk, mask, 1, g)), "U is ignored")
    _rejected(_run("repaint", lambda *a: repaint(*a, back=False)), "misses the target")
