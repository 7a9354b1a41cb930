"""Chapter 12's exercise checkers: each accepts the right answer and rejects each listed mistake
with the hint that names it."""

import math

import pytest
import torch

from ddpm_lib.course import checks
from ddpm_lib.sampling import perturbed_mean


def _fails_with(name, fn, *needles):
    r = checks.check(name, fn, verbose=False)
    assert not r.passed, f"{name} accepted a wrong answer"
    for n in needles:
        assert n in r.message, f"expected {n!r} in: {r.message}"
    return r


# ---- perturbed_mean (Sohl-Dickstein et al. 2015, App. C, Eq. 61) ------------------------------------
def test_perturbed_mean_accepts_the_library_and_a_reimplementation():
    assert checks.check("perturbed_mean", perturbed_mean, verbose=False).passed
    assert checks.check("perturbed_mean", lambda m, v, g: m + v * g(m), verbose=False).passed
    assert "perturbed_mean" in checks.available()


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda m, v, g: m - v * g(m), "the sign"),
        (lambda m, v, g: m + v.sqrt() * g(m), "not the standard deviation"),
        (lambda m, v, g: m + v**2 * g(m), "not squared"),
        (lambda m, v, g: m + g(m), "scale the gradient"),
        (lambda m, v, g: m + 0.5 * v * g(m), "no factor 1/2"),
        (lambda m, v, g: m + v * g(torch.zeros_like(m)), "at the kernel's mean"),
        (lambda m, v, g: v * g(m), "not the shift alone"),
        (lambda m, v, g: (m / v + 0.7 / 0.25) / (1 / v + 1 / 0.25), "exact product of two Gaussians"),
    ],
)
def test_perturbed_mean_names_the_mistake(wrong, hint):
    _fails_with("perturbed_mean", wrong, hint, "App. C, Eq. 61")


def test_perturbed_mean_rejects_a_hardcoded_r_and_student_errors():
    # right for the Gaussian window, ignores the r it is given: caught by the second, non-Gaussian r
    r = _fails_with("perturbed_mean", lambda m, v, g: m + v * (-(m - 0.7) / 0.25), "soft half-space")
    assert "expected" in r.message
    _fails_with("perturbed_mean", lambda m, v, g: None, "returned None")
    _fails_with("perturbed_mean", lambda m, v, g: m[0], "shape")
    r = checks.check("perturbed_mean", 3.0, verbose=False)
    assert not r.passed and "function itself" in r.message


# ---- entropy_bounds (Sohl-Dickstein et al. 2015, Eq. 24) ---------------------------------------------
def _bounds(s):
    h = lambda v: 0.5 * torch.log(2 * math.pi * math.e * v)  # noqa: E731
    nan = torch.full((1,), float("nan"), dtype=torch.float64)
    lower = torch.cat([nan, h(s.betas[1:]) + h(1 - s.alpha_bars[:-1]) - h(1 - s.alpha_bars[1:])])
    upper = torch.cat([nan, h(s.betas[1:])])
    return lower, upper


def test_entropy_bounds_accepts_the_library_and_a_reimplementation():
    assert checks.check("entropy_bounds", lambda s: s.reverse_entropy_bounds(), verbose=False).passed
    assert checks.check("entropy_bounds", _bounds, verbose=False).passed
    # numpy arrays and lists are fine too
    assert checks.check(
        "entropy_bounds", lambda s: tuple(v.numpy() for v in _bounds(s)), verbose=False
    ).passed


def _scaled(f):
    return lambda s: tuple(f(v, s) for v in _bounds(s))


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda s: _bounds(s)[::-1], "return (lower, upper)"),
        (_scaled(lambda v, s: v / math.log(2)), "not bits"),
        (_scaled(lambda v, s: 2 * v), "factor 1/2 is missing"),
        (
            lambda s: (0.5 * torch.log(s.posterior_variance), 0.5 * torch.log(s.betas)),
            "2 pi e belongs inside the log",
        ),
        (
            lambda s: (
                0.5
                * torch.log(2 * math.pi * math.e * s.betas * (1 - s.alpha_bars) / (1 - s.alpha_bars.roll(1))),
                _bounds(s)[1],
            ),
            "the signs",
        ),
        (
            lambda s: (
                _bounds(s)[0],
                torch.cat([torch.full((1,), float("nan"), dtype=torch.float64), _bounds(s)[1][:-1]]),
            ),
            "index with t, not t - 1",
        ),
        (
            lambda s: (
                0.5 * (1 + math.log(2 * math.pi) + 0.5 * torch.log(s.posterior_variance)),
                _bounds(s)[1],
            ),
            "not of the standard deviation",
        ),
    ],
)
def test_entropy_bounds_names_the_mistake(wrong, hint):
    _fails_with("entropy_bounds", wrong, hint, "Eq. 24")


def test_entropy_bounds_wrong_length_and_shape():
    _fails_with("entropy_bounds", lambda s: tuple(v[1:] for v in _bounds(s)), "length T + 1")
    _fails_with("entropy_bounds", lambda s: _bounds(s)[0], "pair")
    _fails_with("entropy_bounds", lambda s: (None, _bounds(s)[1]), "None")
