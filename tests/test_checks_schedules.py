"""The cosine_schedule and schedule_design checkers of ddpm_lib.course.checks (chapters 07 and 14): each
accepts right answers and rejects the listed mistakes with a message naming the equation."""

import math

import pytest
import torch

from ddpm_lib import NoiseSchedule
from ddpm_lib.course import checks


def _run(name, fn):
    return checks.check(name, fn, verbose=False)


def _rejected(result, equation, hint=None):
    assert not result.passed, result.message
    assert result.message.startswith("✗")
    assert equation in result.message, result.message
    if hint is not None:
        assert hint in result.message, result.message


# ---- cosine_schedule ------------------------------------------------------------------------------
def _f(T, s, square=True, div=True, offset=True):
    u = torch.arange(T + 1, dtype=torch.float64) / T
    arg = ((u + s) / (1 + s) if div else u + s) if offset else u
    c = torch.cos(arg * math.pi / 2)
    return c**2 if square else c


def _clip(ab, mb):
    b = (1 - ab[1:] / ab[:-1]).clamp(max=mb)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - b, 0)])


def cos_ok(T, s, mb):
    f = _f(T, s)
    return _clip(f / f[0], mb)


COS_EQ = "Nichol & Dhariwal 2021, Eq. 17"


def test_cosine_schedule_accepts():
    r = _run("cosine_schedule", cos_ok)
    assert r.passed and COS_EQ in r.message
    assert _run(
        "cosine_schedule", lambda T, s, mb: NoiseSchedule.cosine(T, s=s, max_beta=mb).alpha_bars
    ).passed
    assert _run("cosine_schedule", lambda T, s, mb: cos_ok(T, s, mb).tolist()).passed  # a list is fine


def test_cosine_schedule_rejects():
    _rejected(
        _run("cosine_schedule", lambda T, s, mb: (lambda f: f / f[0])(_f(T, s))), COS_EQ, "did not clip"
    )
    _rejected(_run("cosine_schedule", lambda T, s, mb: _f(T, s)), COS_EQ, "divide by f(0)")
    _rejected(
        _run(
            "cosine_schedule", lambda T, s, mb: _clip(_f(T, s, square=False) / _f(T, s, square=False)[0], mb)
        ),
        COS_EQ,
        "cosine squared",
    )
    _rejected(
        _run(
            "cosine_schedule", lambda T, s, mb: _clip(_f(T, s, offset=False) / _f(T, s, offset=False)[0], mb)
        ),
        COS_EQ,
        "offset s is missing",
    )
    _rejected(
        _run("cosine_schedule", lambda T, s, mb: _clip(_f(T, s, div=False) / _f(T, s, div=False)[0], mb)),
        COS_EQ,
        "(1 + s)",
    )
    r = _run("cosine_schedule", lambda T, s, mb: cos_ok(T, s, mb)[1:])
    _rejected(r, COS_EQ, "alpha_bar_0 = 1 in front")
    _rejected(_run("cosine_schedule", lambda T, s, mb: None), COS_EQ, "return")

    def stub(T, s, mb):
        raise NotImplementedError("exercise: implement cosine_alpha_bars")

    _rejected(_run("cosine_schedule", stub), COS_EQ, "not implemented yet")
    with pytest.raises(checks.CheckFailed, match="Eq. 17"):
        checks.check("cosine_schedule", stub, verbose=False, raise_on_failure=True)


# ---- schedule_design ------------------------------------------------------------------------------
def design_ok(T, beta_1, alpha_bar_T):
    lo, hi = beta_1, 0.999
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        ab = torch.log1p(-torch.linspace(beta_1, mid, T, dtype=torch.float64)).sum().exp()
        lo, hi = (mid, hi) if ab > alpha_bar_T else (lo, mid)
    return torch.linspace(beta_1, 0.5 * (lo + hi), T, dtype=torch.float64)


DESIGN_EQ = "DDPM Eq. 4's alpha_bar_T"


def test_schedule_design_accepts_any_valid_design():
    assert _run("schedule_design", design_ok).passed

    def geometric(T, beta_1, alpha_bar_T):  # another design: beta_t = beta_1 r^(t-1), r by bisection
        lo, hi = 1.0, 2.0
        k = torch.arange(T, dtype=torch.float64)
        for _ in range(200):
            r = 0.5 * (lo + hi)
            b = (beta_1 * r**k).clamp(max=0.999)
            lo, hi = (r, hi) if torch.log1p(-b).sum().exp() > alpha_bar_T else (lo, r)
        return (beta_1 * (0.5 * (lo + hi)) ** k).clamp(max=0.999)

    assert _run("schedule_design", geometric).passed
    assert _run(
        "schedule_design", lambda *a: NoiseSchedule.from_betas(design_ok(*a))
    ).passed  # a NoiseSchedule too


def test_schedule_design_rejects():
    r = _run("schedule_design", lambda T, b1, ab: NoiseSchedule.from_betas(design_ok(T, b1, ab)).betas)
    _rejected(r, DESIGN_EQ, "placeholder beta_0")
    r = _run("schedule_design", lambda T, b1, ab: NoiseSchedule.from_betas(design_ok(T, b1, ab)).alpha_bars)
    _rejected(r, DESIGN_EQ, "table of alpha_bars")
    r = _run("schedule_design", lambda T, b1, ab: torch.linspace(b1, 0.02, T, dtype=torch.float64))
    _rejected(r, DESIGN_EQ, "alpha_bar_T = prod (1 - beta_t)")  # right only for the first target
    assert "T = 1000, beta_1 = 0.0001, alpha_bar_T = 0.0001:" in r.message and "Too much noise" in r.message

    def swapped(T, b1, ab):  # same beta_1 and alpha_bar_T, but beta falls once
        b = design_ok(T, b1, ab)
        b[[T // 2, T // 2 + 1]] = b[[T // 2 + 1, T // 2]]
        return b

    _rejected(_run("schedule_design", swapped), DESIGN_EQ, "must not decrease")
    r = _run("schedule_design", lambda T, b1, ab: design_ok(T, 2 * b1, ab))
    _rejected(r, DESIGN_EQ, "beta_1 = ")
    r = _run("schedule_design", lambda T, b1, ab: torch.full((T,), 1.5, dtype=torch.float64))
    _rejected(r, DESIGN_EQ, "not in (0, 1)")
    r = _run("schedule_design", lambda T, b1, ab: design_ok(T, b1, ab * 1.5))
    _rejected(r, DESIGN_EQ, "Too little noise")
    _rejected(
        _run("schedule_design", lambda T, b1, ab: design_ok(T, b1, ab)[:-1]), DESIGN_EQ, "expected T = "
    )

    def stub(T, b1, ab):
        raise NotImplementedError("exercise: implement design_betas")

    _rejected(_run("schedule_design", stub), DESIGN_EQ, "not implemented yet")


def test_new_checkers_registered_and_deterministic():
    assert {"cosine_schedule", "schedule_design"} <= set(checks.available())
    bad = lambda T, s, mb: _f(T, s)  # noqa: E731
    assert _run("cosine_schedule", bad).message == _run("cosine_schedule", bad).message
