"""Library pieces added for chapters 04-06: the ``mean_from_eps`` checker (DDPM Eq. 11).

It must accept a correct implementation, reject each common mistake with a hint that names it, and
turn broken student code into a message rather than an exception.
"""

import torch

from ddpm_lib.course import checks

EQ = "DDPM Eq. 11"


def _b(v, x):
    return v.reshape(-1, *[1] * (x.ndim - 1))


def _tabs(t, s, x):
    return _b(s.alphas[t], x), _b(s.alpha_bars[t], x), _b(s.betas[t], x)


def mean_ok(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()


def mean_via_x0(eps, x_t, t, s):
    """The same mean, computed another way: Eq. 7 with x_0 predicted from eps (must also pass)."""
    a, ab, b = _tabs(t, s, x_t)
    abp = _b(s.alpha_bars[t - 1], x_t)
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    return abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * x_t


def mean_abar(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t - b / (1 - ab).sqrt() * eps) / ab.sqrt()


def mean_nosqrt(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t - b / (1 - ab) * eps) / a.sqrt()


def mean_plus(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t + b / (1 - ab).sqrt() * eps) / a.sqrt()


def mean_no_prefactor(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return x_t - b / (1 - ab).sqrt() * eps


def mean_is_x0(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def mean_shifted(eps, x_t, t, s):
    return mean_ok(eps, x_t, (t - 1).clamp(min=1), s)


def mean_sqrt_beta(eps, x_t, t, s):
    a, ab, b = _tabs(t, s, x_t)
    return (x_t - b.sqrt() / (1 - ab).sqrt() * eps) / a.sqrt()


def test_mean_from_eps_is_registered_and_accepts_correct_versions():
    assert "mean_from_eps" in checks.available()
    for fn in (mean_ok, mean_via_x0):
        r = checks.check("mean_from_eps", fn, verbose=False)
        assert r.passed, r.message
        assert r.message.startswith("✓") and EQ in r.message


def test_mean_from_eps_rejects_common_mistakes_with_their_hint():
    cases = {
        mean_abar: "not by sqrt(abar_t)",
        mean_nosqrt: "dropped the square root",
        mean_plus: "subtracted from x_t, not added",
        mean_no_prefactor: "left out the factor 1/sqrt(alpha_t)",
        mean_is_x0: "that is the predicted x_0",
        mean_shifted: "at t - 1",
        mean_sqrt_beta: "not sqrt(beta_t)",
    }
    for fn, hint in cases.items():
        r = checks.check("mean_from_eps", fn, verbose=False)
        assert not r.passed, fn.__name__
        assert r.message.startswith("✗") and EQ in r.message, r.message
        assert hint in r.message, (fn.__name__, r.message)
        assert "your mu_theta is" in r.message


def test_mean_from_eps_messages_are_deterministic_and_broken_code_becomes_a_message(capsys):
    a = checks.check("mean_from_eps", mean_abar, verbose=False).message
    assert a == checks.check("mean_from_eps", mean_abar, verbose=False).message

    def not_done(eps, x_t, t, s):
        raise NotImplementedError

    def no_return(eps, x_t, t, s):
        mean_ok(eps, x_t, t, s)

    def bad_shape(eps, x_t, t, s):
        return mean_ok(eps, x_t, t, s)[:, 0]

    def broadcast_error(eps, x_t, t, s):
        return x_t / s.alphas[t]  # (B,) against (B, 2, 3)

    for fn, text in (
        (not_done, "not implemented"),
        (no_return, "returned None"),
        (bad_shape, "shape"),
        (broadcast_error, "reshape"),
    ):
        r = checks.check("mean_from_eps", fn, verbose=False)
        assert not r.passed and text in r.message, r.message
    assert not checks.check("mean_from_eps", torch.zeros(3), verbose=False).passed
    r = checks.check("mean_from_eps", mean_ok)  # verbose: the message is printed
    assert capsys.readouterr().out.strip() == r.message
