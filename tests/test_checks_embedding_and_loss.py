"""The checkers chapters 08 (the U-Net) and 08 (training) added to ddpm_lib.course.checks: each accepts a correct
implementation and rejects the common mistakes, naming them."""

import math

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks


def _run(name, fn):
    return checks.check(name, fn, verbose=False)


def _rejected(result, hint):
    assert not result.passed, result.message
    assert result.message.startswith("✗"), result.message
    assert hint in result.message, result.message


# ---- timestep_embedding ---------------------------------------------------------------------------------


def temb(t, dim, base=10000.0, denom_shift=-1, layout="halves", sign=-1.0, shift=0, dtype=torch.float32):
    """A student's embedding in float32 (or float64), with switchable mistakes."""
    half = dim // 2
    freqs = torch.exp(sign * math.log(base) * torch.arange(half, dtype=dtype) / (half + denom_shift))
    args = (t.to(dtype) + shift)[:, None] * freqs[None]
    if layout == "swapped":
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if layout == "interleaved":
        return torch.stack([torch.sin(args), torch.cos(args)], dim=2).reshape(len(t), dim)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def test_timestep_embedding_accepts_the_library_and_float32_and_float64_versions():
    assert "timestep_embedding" in checks.available()
    assert _run("timestep_embedding", dl.timestep_embedding).passed
    assert _run("timestep_embedding", temb).passed
    assert _run("timestep_embedding", lambda t, d: temb(t, d, dtype=torch.float64)).passed
    assert checks.check_timestep_embedding(temb, verbose=False).passed


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(layout="swapped"), "halves are swapped"),
        (dict(layout="interleaved"), "interleaved"),
        (dict(denom_shift=0), "divides by h - 1"),
        (dict(sign=1.0), "frequencies grow"),
        (dict(base=math.exp(4.0)), "log10(10000)"),
        (dict(base=1000.0), "base is 1000"),
        (dict(shift=-1), "t - 1"),
        (dict(shift=1), "t + 1"),
    ],
)
def test_timestep_embedding_rejects_common_mistakes(mistake, hint):
    r = _run("timestep_embedding", lambda t, d: temb(t, d, **mistake))
    _rejected(r, hint)
    assert "10000^(-i / (h - 1))" in r.message


def test_timestep_embedding_messages_for_broken_functions():
    _rejected(_run("timestep_embedding", lambda t, d: temb(t, d)[:, :-1]), "shape")
    _rejected(_run("timestep_embedding", lambda t, d: None), "return")
    _rejected(_run("timestep_embedding", lambda t, d: temb(t, d) + 1e-3), "column")

    def not_yet(t, d):
        raise NotImplementedError

    _rejected(_run("timestep_embedding", not_yet), "not implemented")


# ---- l_simple -------------------------------------------------------------------------------------------


def _b(v, x):
    return v.reshape(-1, *[1] * (x.ndim - 1))


def l_simple(
    model,
    x0,
    t,
    noise,
    alpha_bars,
    *,
    ab_shift=0,
    sqrt=True,
    target="eps",
    t_model_shift=0,
    reduce="mean",
    square=True,
    one_step=False,
    swap=False,
):
    ab = _b(alpha_bars[t + ab_shift], x0)
    if one_step:
        ab = _b(alpha_bars[t] / alpha_bars[t - 1], x0)
    a, b = (ab.sqrt(), (1 - ab).sqrt()) if sqrt else (ab, 1 - ab)
    if swap:
        a, b = b, a
    x_t = a * x0 + b * noise
    out = model(x_t, t + t_model_shift)
    diff = (noise if target == "eps" else x0) - out
    err = diff**2 if square else diff.abs()
    per = err.flatten(1)
    if reduce == "batch":
        return per.mean()
    return per.sum(1) if reduce == "sum" else per.mean(1)


def test_l_simple_accepts_a_correct_loss_and_the_library():
    assert _run("l_simple", l_simple).passed
    d = dl.GaussianDiffusion(
        dl.NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.2), decoder="gaussian"
    )
    assert _run("l_simple", lambda m, x0, t, n, ab: d.training_losses(m, x0, t=t, noise=n)["loss"]).passed


@pytest.mark.parametrize(
    "mistake, hint",
    [
        (dict(one_step=True), "alpha_t, one step"),
        (dict(ab_shift=-1), "alpha_bars[t - 1]"),
        (dict(sqrt=False), "square roots"),
        (dict(swap=True), "swapped"),
        (dict(target="x0"), "the target is x_0"),
        (dict(t_model_shift=-1), "the network got t - 1"),
        (dict(reduce="sum"), "summed over the 16 dimensions"),
        (dict(square=False), "mean absolute error"),
        (dict(reduce="batch"), "one number, the mean over the batch"),
    ],
)
def test_l_simple_rejects_common_mistakes(mistake, hint):
    r = _run("l_simple", lambda *a: l_simple(*a, **mistake))
    _rejected(r, hint)
    assert "DDPM Eq. 14" in r.message


def test_l_simple_rejects_own_noise_and_bad_results():
    def own_noise(model, x0, t, noise, alpha_bars):
        return l_simple(model, x0, t, torch.randn_like(noise), alpha_bars)

    _rejected(_run("l_simple", own_noise), "noise")
    _rejected(_run("l_simple", lambda *a: l_simple(*a)[:3]), "shape")
    _rejected(_run("l_simple", lambda *a: l_simple(*a) * 1.01), "for the example with t = ")
