"""The exercise checkers added for chapter 10: respaced_betas and ddim_step accept the right answer
(in more than one layout), reject each common mistake with a hint that names it, and turn a
student's errors into messages."""

import torch

from ddpm_lib.course import checks


def _v(a, x):
    return a.view(-1, *([1] * (x.ndim - 1)))


def _prev(ts):
    return torch.cat([torch.zeros(1, dtype=torch.long), ts[:-1]])


# ---- respaced_betas -------------------------------------------------------------------------------


def right_betas(ab, ts):
    return 1 - ab[ts] / ab[_prev(ts)]


def test_respaced_betas_accepts_the_right_answer_in_both_layouts():
    assert checks.check("respaced_betas", right_betas, verbose=False)
    with_placeholder = lambda ab, ts: torch.cat([torch.zeros(1, dtype=ab.dtype), right_betas(ab, ts)])  # noqa: E731
    assert checks.check("respaced_betas", with_placeholder, verbose=False)
    # float32 results pass too
    assert checks.check("respaced_betas", lambda ab, ts: right_betas(ab, ts).float(), verbose=False)


def test_respaced_betas_names_each_mistake():
    mistakes = {
        "original one-step beta": lambda ab, ts: 1 - ab[ts] / ab[ts - 1],
        "that is alpha'_k": lambda ab, ts: ab[ts] / ab[_prev(ts)],
        "upside down": lambda ab, ts: 1 - ab[_prev(ts)] / ab[ts],
        "accumulated from x_0": lambda ab, ts: 1 - ab[ts],
        "no square root": lambda ab, ts: 1 - (ab[ts] / ab[_prev(ts)]).sqrt(),
        "starts from x_0": lambda ab, ts: torch.cat(
            [torch.zeros(1, dtype=ab.dtype), 1 - ab[ts[1:]] / ab[ts[:-1]]]
        ),
    }
    for hint, fn in mistakes.items():
        r = checks.check("respaced_betas", fn, verbose=False)
        assert not r.passed, hint
        assert "Likely mistake" in r.message and hint in r.message, (hint, r.message)
        assert "beta'_k = 1 - abar_(tau_k) / abar_(tau_(k-1))" in r.message


def test_respaced_betas_reports_shape_and_errors():
    r = checks.check("respaced_betas", lambda ab, ts: right_betas(ab, ts)[:-1], verbose=False)
    assert not r.passed and "has shape (5,), expected (6,)" in r.message
    r = checks.check("respaced_betas", lambda ab, ts: None, verbose=False)
    assert not r.passed and "returned None" in r.message

    def todo(ab, ts):
        raise NotImplementedError

    assert "not implemented yet" in checks.check("respaced_betas", todo, verbose=False).message


# ---- ddim_step ----------------------------------------------------------------------------------------


def right_ddim(eps, x, t, tp, ab):
    at, ap = _v(ab[t], x), _v(ab[tp], x)
    x0 = (x - (1 - at).sqrt() * eps) / at.sqrt()
    return ap.sqrt() * x0 + (1 - ap).sqrt() * eps


def test_ddim_step_accepts_the_right_answer():
    r = checks.check("ddim_step", right_ddim, verbose=False)
    assert r.passed and "Song et al. 2021, Eq. 12" in r.message
    assert checks.check("ddim_step", lambda *a: right_ddim(*a).float(), verbose=False)


def test_ddim_step_names_each_mistake():
    def alphas(ab):
        return torch.cat([torch.ones(1, dtype=ab.dtype), ab[1:] / ab[:-1]])

    def one_step(eps, x, t, tp, ab):
        return right_ddim(eps, x, t, tp, alphas(ab))  # the one-step factors in place of the products

    def x_for_x0(eps, x, t, tp, ab):
        ap = _v(ab[tp], x)
        return ap.sqrt() * x + (1 - ap).sqrt() * eps

    def squared(eps, x, t, tp, ab):
        at, ap = _v(ab[t], x), _v(ab[tp], x)
        return ap * (x - (1 - at).sqrt() * eps) / at.sqrt() + (1 - ap) * eps

    def plus(eps, x, t, tp, ab):
        at, ap = _v(ab[t], x), _v(ab[tp], x)
        return ap.sqrt() * (x + (1 - at).sqrt() * eps) / at.sqrt() + (1 - ap).sqrt() * eps

    def no_direction(eps, x, t, tp, ab):
        at, ap = _v(ab[t], x), _v(ab[tp], x)
        return ap.sqrt() * (x - (1 - at).sqrt() * eps) / at.sqrt()

    mistakes = {
        "one-step alpha_t": one_step,
        "not x_t": x_for_x0,
        "both coefficients are square roots": squared,
        "x0_hat subtracts": plus,
        "direction term": no_direction,
    }
    for hint, fn in mistakes.items():
        r = checks.check("ddim_step", fn, verbose=False)
        assert not r.passed, hint
        assert "Likely mistake" in r.message and hint in r.message, (hint, r.message)


def test_ddim_step_rejects_random_numbers():
    def noisy(eps, x, t, tp, ab):
        return right_ddim(eps, x, t, tp, ab) + 0.01 * torch.randn_like(x)

    r = checks.check("ddim_step", noisy, verbose=False)
    assert not r.passed and "different results on the same inputs" in r.message


def test_new_checkers_are_listed():
    assert {"respaced_betas", "ddim_step"} <= set(checks.available())
