"""Exercise checkers: compare a student's function with ddpm_lib's on random inputs, and say which
equation is wrong.

    from ddpm_lib.course import checks
    checks.check("q_sample", my_q_sample)          # the same as checks.check_q_sample(my_q_sample)

Every checker calls the student's function on fixed-seed random inputs (so its message is the same
on every run), compares the result with the library's implementation of the same equation, and
returns a :class:`CheckResult` ``(passed, message)`` after printing the message: ``✓ ... matches
DDPM Eq. N`` or ``✗ ...`` with what the equation should be, what the student's function gives at
one timestep against what it should give, and, when the result matches a common mistake (alpha_t
for alpha_bar_t, t shifted by one, a variance where a standard deviation belongs, ...), a hint
naming it. ``raise_on_failure=True`` raises :class:`CheckFailed` (an AssertionError) instead of
only printing; ``verbose=False`` prints nothing.

Checkers (``available()`` lists them; the chapters register more with :func:`register`):

- ``alpha_bars``: ``fn(betas) -> alpha_bars``, betas = beta_1..beta_T (length T), the result of
  length T + 1 with alpha_bars[0] = 1 (DDPM's notation for Eq. 4; chapter 00's warm-up);
- ``q_sample``: ``fn(x0, t, noise, alpha_bars) -> x_t`` (DDPM Eq. 4);
- ``posterior``: ``fn(x0, x_t, t, schedule) -> (mean, variance)`` of q(x_{t-1} | x_t, x_0) (Eqs. 6-7);
- ``normal_kl``: ``fn(mean1, logvar1, mean2, logvar2) -> KL`` elementwise (the KLs of Eq. 5);
- ``discretized_log_likelihood``: ``fn(x, mean, log_scale) -> log p(x)`` elementwise (Eq. 13);
- ``p_sample_step``: ``fn(eps_pred, x_t, t, schedule, noise) -> x_{t-1}`` (Algorithm 2, line 4).
- ``mean_from_eps``: ``fn(eps_pred, x_t, t, schedule) -> mu_theta`` (DDPM Eq. 11);
- ``timestep_embedding``: ``fn(t, dim) -> (B, dim)``, the sinusoidal time embedding (DDPM Sec. 4, chapter 08);
- ``l_simple``: ``fn(model, x0, t, noise, alpha_bars) -> (B,)``, Algorithm 1's loss per example (Eq. 14, chapter 09).
- ``respaced_betas``: ``fn(alpha_bars, timesteps) -> betas`` of a chain on fewer timesteps (Nichol & Dhariwal 2021,
  Sec. 4; chapter 10);
- ``ddim_step``: ``fn(eps_pred, x_t, t, t_prev, alpha_bars) -> x_(t_prev)``, one DDIM step with eta = 0 (Song et al.
  2021, Eq. 12; chapter 10).
- ``cosine_schedule``: ``fn(T, s, max_beta) -> alpha_bars`` (length T + 1), the cosine schedule (Nichol & Dhariwal
  2021, Eq. 17; chapter 14);
- ``schedule_design``: ``fn(T, beta_1, alpha_bar_T) -> betas`` (length T), any nondecreasing schedule with that
  beta_1 and alpha_bar_T (an open design problem; chapter 14).
- ``mu_mse_weight``: ``fn(t, schedule) -> w`` (B,), the weight w_t = beta_t^2 / (alpha_t (1 - abar_t)) that makes
  ||mu~ - mu_theta||^2 = w_t ||eps - eps_theta||^2 under Eq. 11 (DDPM Eqs. 8-12; chapter 11);
- ``optimal_variance``: ``fn(mean_q, var_q, mean_theta) -> v``, the variance minimizing the Gaussian KL of Eq. 5
  for a given mean, var_q + (mean_q - mean_theta)^2 (a learned diagonal Sigma; chapter 11).
- ``resnet_block_parameters``: ``fn(in_ch, out_ch, temb_ch) -> int``, the parameter count of DDPM's residual
  block, derived from its equation (chapter 08);
- ``mixed_noise_variance``: ``fn(lam, rho) -> v``, the variance of (1 - lam) eps + lam eps' for unit-variance
  noises with correlation rho (chapter 13).

Indexing is the papers' (and the library's): t = 1..T, tables of length T + 1 indexed by t,
``alpha_bars[0] == 1``; t is a LongTensor of shape (B,), data tensors have shape (B, ...).

Adding a checker (in this module): write ``body(fn) -> (passed, message)`` decorated with
``@_checker("name", "the equation in words (DDPM Eq. N)")``; inside, call the student's function with
``_call(name, fn, *args)`` (its errors become messages), convert its result with ``_tensor``, compare
with the library on inputs drawn from a fixed-seed ``_gen(seed)``, and on a mismatch build the
message from the values at one failing timestep plus ``_hints(got, candidates)``, where each candidate
is ``(the result a known mistake gives, its hint, mask of examples or None)``. For a number or tensor
the student computed, :func:`check_value` needs no new checker. Every checker needs a test in
tests/test_checks.py that it accepts the right answer and rejects each listed mistake.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..diffusion import GaussianDiffusion
from ..gaussians import discretized_gaussian_log_likelihood, gaussian_log_likelihood, normal_kl
from ..schedules import NoiseSchedule

__all__ = [
    "CheckResult",
    "CheckFailed",
    "check",
    "register",
    "available",
    "check_value",
    "check_alpha_bars",
    "check_q_sample",
    "check_posterior",
    "check_normal_kl",
    "check_discretized_log_likelihood",
    "check_p_sample_step",
    "check_mean_from_eps",
    "check_timestep_embedding",
    "check_l_simple",
    "check_respaced_betas",
    "check_ddim_step",
    "check_cosine_schedule",
    "check_schedule_design",
    "check_resnet_block_parameters",
    "check_mixed_noise_variance",
]

PASS, FAIL = "✓", "✗"
RTOL, ATOL = 1e-5, 1e-6


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check: ``passed`` and the ``message`` that was printed."""

    passed: bool
    message: str
    name: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self):  # the message was printed when the check ran; show nothing twice
        return None


class CheckFailed(AssertionError):
    """Raised by a checker called with ``raise_on_failure=True`` when the function is wrong."""


class _Wrong(Exception):
    """Internal: the student's function failed in a way that ends the check with this message."""


_CHECKERS: dict = {}


def register(name: str, *aliases: str):
    """Register a checker ``fn(fn_or_value, **kwargs) -> CheckResult`` under ``name`` (and aliases)."""

    def deco(checker):
        for n in (name, *aliases):
            _CHECKERS[n] = checker
        return checker

    return deco


def available() -> list:
    """The names :func:`check` accepts."""
    return sorted(_CHECKERS)


def check(name: str, fn_or_value, **kwargs) -> CheckResult:
    """Run the checker registered as ``name`` on a student's function (or value)."""
    if name not in _CHECKERS:
        raise KeyError(f"no checker named {name!r}; available: {', '.join(available())}")
    return _CHECKERS[name](fn_or_value, **kwargs)


def _finish(name: str, passed: bool, message: str, verbose: bool, raise_on_failure: bool) -> CheckResult:
    result = CheckResult(passed, message, name)
    if verbose:
        print(message)
    if raise_on_failure and not passed:
        raise CheckFailed(message)
    return result


def _checker(name: str, equation: str):
    """Wrap a check body ``body(fn) -> (passed, message)``: printing, raising, student errors."""

    def deco(body):
        @functools.wraps(body)
        def run(fn, *, verbose: bool = True, raise_on_failure: bool = False, **kwargs) -> CheckResult:
            if not callable(fn):
                return _finish(
                    name,
                    False,
                    f"{FAIL} {name}: pass your function itself (not its result), got a {type(fn).__name__}",
                    verbose,
                    raise_on_failure,
                )
            try:
                passed, message = body(fn, **kwargs)
            except _Wrong as e:
                passed, message = False, f"{FAIL} {name}: {e} It should compute {equation}."
            return _finish(name, passed, message, verbose, raise_on_failure)

        register(name)(run)
        return run

    return deco


def check_value(
    name: str,
    value,
    expected,
    *,
    equation: str,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    verbose: bool = True,
    raise_on_failure: bool = False,
) -> CheckResult:
    """Compare a number or tensor a student computed with the expected one (for value exercises)."""
    try:
        got = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return _finish(
            name,
            False,
            f"{FAIL} {name}: expected a number or tensor, got {type(value).__name__}",
            verbose,
            raise_on_failure,
        )
    exp = torch.as_tensor(expected, dtype=torch.float64)
    if got.shape != exp.shape:
        msg = f"{FAIL} {name}: shape {tuple(got.shape)}, expected {tuple(exp.shape)} ({equation})"
        return _finish(name, False, msg, verbose, raise_on_failure)
    if torch.allclose(got, exp, rtol=rtol, atol=atol, equal_nan=True):
        return _finish(name, True, f"{PASS} {name} matches {equation}", verbose, raise_on_failure)
    g, e = (_fmt(x) for x in (got, exp))
    return _finish(
        name,
        False,
        f"{FAIL} {name} is off: it should be {equation}; yours is {g} (expected {e})",
        verbose,
        raise_on_failure,
    )


# ---- helpers ------------------------------------------------------------------------------
def _fmt(x, digits: int = 4) -> str:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.numel() == 1:
        v = float(x)
        return f"{v:.{digits}g}" if (v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4)) else f"{v:.{digits}f}"
    flat = x.flatten()
    body = ", ".join(_fmt(v, digits) for v in flat[:4])
    return f"[{body}{', ...' if flat.numel() > 4 else ''}]"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _schedule() -> NoiseSchedule:
    # short and coarse, so that alpha_t, alpha_bar_t and t - 1 give visibly different numbers
    return NoiseSchedule.linear(T=100, beta_start=1e-3, beta_end=0.2)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))


def _call(name: str, fn: Callable, *args):
    """Call the student's function on copies of the inputs, turning its errors into messages."""
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    try:
        return fn(*args)
    except NotImplementedError:
        raise _Wrong(
            "not implemented yet (it raises NotImplementedError): replace the `raise` with your code."
        ) from None
    except RuntimeError as e:
        text = str(e)
        if "size of tensor" in text or "must match the size" in text or "broadcast" in text:
            raise _Wrong(
                f"raised RuntimeError: {text.splitlines()[0]}. A table indexed by t has shape (B,): "
                "reshape it to (B, 1, ..., 1) to broadcast against data of shape (B, C, ...), "
                "e.g. `a[t].view(-1, *[1] * (x.ndim - 1))`."
            ) from None
        raise _Wrong(f"raised RuntimeError: {text.splitlines()[0] if text else ''}.") from None
    except Exception as e:  # noqa: BLE001 - any error in student code becomes a message
        first = str(e).splitlines()[0] if str(e) else ""
        raise _Wrong(f"raised {type(e).__name__}: {first}.") from None


def _tensor(name: str, out, shape, what: str = "the result") -> torch.Tensor:
    if out is None:
        raise _Wrong("returned None: did you forget `return`?")
    try:
        out = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"returned a {type(out).__name__}, expected a tensor.") from None
    if not out.is_floating_point():
        out = out.double()
    if tuple(out.shape) != tuple(shape):
        raise _Wrong(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}.")
    return out.double()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> torch.Tensor:
    """Elementwise closeness, NaN-safe (a NaN in either is 'not close')."""
    return torch.isclose(a.double(), b.double(), rtol=rtol, atol=atol)


def _per_example_ok(a: torch.Tensor, b: torch.Tensor, **tol) -> torch.Tensor:
    return _close(a, b, **tol).reshape(a.shape[0], -1).all(dim=1)


def _matches(got: torch.Tensor, candidate: torch.Tensor, where: Optional[torch.Tensor] = None) -> bool:
    """Does ``got`` equal a mistaken ``candidate`` (on the examples ``where``, default all)?"""
    if candidate.shape != got.shape:
        return False
    if where is not None:
        if not bool(where.any()):
            return False
        got, candidate = got[where], candidate[where]
    finite = torch.isfinite(candidate)
    if not bool(finite.all()):
        return False
    return bool(_close(got, candidate).all())


def _hints(got: torch.Tensor, candidates, where_fail: Optional[torch.Tensor] = None) -> str:
    found = []
    for cand, hint, where in candidates:
        try:
            if _matches(got, cand, where):
                found.append(hint)
        except Exception:  # noqa: BLE001 - a candidate that cannot be formed just does not match
            continue
    return (" Likely mistake: " + " ".join(found)) if found else ""


def _off(name: str, equation: str, detail: str, got: torch.Tensor, candidates) -> tuple:
    """A failed check's ``(False, message)``: what it should compute, where the student's result
    differs (``detail``), and the likely mistakes among ``candidates`` that ``got`` matches."""
    return False, f"{FAIL} {name} is off: it should be {equation}; {detail}." + _hints(got, candidates)


def _check_deterministic(name: str, fn, args, first: torch.Tensor, shape) -> None:
    again = _tensor(name, _call(name, fn, *args), shape)
    if not bool(_close(first, again, rtol=0, atol=0).all()):
        raise _Wrong(
            "gives different results on the same inputs: use the `noise` argument you are given "
            "instead of drawing your own random numbers."
        )


# ---- alpha_bars (chapter 00's demo) ------------------------------------------------------------
_ABAR_EQ = "alpha_bar_t = prod_{s=1..t} alpha_s with alpha_s = 1 - beta_s (DDPM's notation for Eq. 4)"


@_checker("alpha_bars", _ABAR_EQ + ", a table of length T + 1 with alpha_bars[0] = 1")
def check_alpha_bars(fn) -> tuple:
    """``fn(betas) -> alpha_bars``: betas is beta_1..beta_T (length T); the result has length T + 1,
    ``alpha_bars[0] = 1`` and ``alpha_bars[t] = prod_{s<=t} (1 - beta_s)`` (paper indexing)."""
    s = NoiseSchedule.linear(T=50, beta_start=1e-3, beta_end=0.2)
    betas = s.betas[1:].clone()
    T = s.T
    out = _call("alpha_bars", fn, betas)
    if out is None:
        raise _Wrong("returned None: did you forget `return`?")
    got = torch.as_tensor(out).double()
    expected = s.alpha_bars
    if got.ndim == 1 and got.shape[0] == T:
        hint = ""
        if _matches(got, expected[1:]):
            hint = " Your values are alpha_bar_1..alpha_bar_T: put alpha_bar_0 = 1 in front."
        return False, (
            f"{FAIL} alpha_bars has length T = {T}, but with paper indexing the table has length "
            f"T + 1 = {T + 1}: alpha_bars[0] = 1 belongs to x_0 (data, no noise yet) and "
            f"alpha_bars[t] = alpha_bar_t.{hint} It should compute {_ABAR_EQ}."
        )
    got = _tensor("alpha_bars", got, (T + 1,))
    if bool(_close(got, expected).all()):
        return True, f"{PASS} alpha_bars matches {_ABAR_EQ}, with alpha_bars[0] = 1"
    bad = int((~_close(got, expected)).nonzero()[0])
    one = torch.ones(1, dtype=torch.float64)
    candidates = [
        (
            torch.cat([one, torch.cumprod(betas, 0)]),
            "you multiplied the betas; alpha_bar multiplies the alphas, alpha_s = 1 - beta_s.",
            None,
        ),
        (
            torch.cat([one, 1 - betas]),
            "you returned alpha_t = 1 - beta_t; alpha_bar_t is the running product (torch.cumprod).",
            None,
        ),
        (
            torch.cat([one, 1 - torch.cumsum(betas, 0)]),
            "you subtracted the running sum of the betas: that is "
            "only a first-order approximation of the product.",
            None,
        ),
        (
            torch.cat([one, one, torch.cumprod(1 - betas, 0)[:-1]]),
            "your table is shifted by one: alpha_bars[t] must include alpha_t itself.",
            None,
        ),
    ]
    return _off(
        "alpha_bars",
        _ABAR_EQ,
        f"your alpha_bars[{bad}] = {_fmt(got[bad])} (expected {_fmt(expected[bad])})",
        got,
        candidates,
    )


# ---- q_sample: DDPM Eq. 4 -------------------------------------------------------------------
_Q_EQ = "x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4)"


@_checker("q_sample", _Q_EQ)
def check_q_sample(fn) -> tuple:
    """``fn(x0, t, noise, alpha_bars) -> x_t``; alpha_bars has length T + 1 (alpha_bars[0] = 1)."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(4)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    x0 = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    ab = s.alpha_bars.clone()
    args = (x0, t, noise, ab)
    got = _tensor("q_sample", _call("q_sample", fn, *args), x0.shape, "x_t")
    _check_deterministic("q_sample", fn, args, got, x0.shape)
    expected = d.q_sample(x0, t, noise)
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} q_sample matches {_Q_EQ}"
    i = int((~ok).nonzero()[0])
    ti = int(t[i])
    one, zero = torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64)
    tt = torch.tensor([ti])
    a = _tensor("q_sample", _call("q_sample", fn, one, tt, zero, ab), one.shape, "x_t").mean()
    b = _tensor("q_sample", _call("q_sample", fn, zero, tt, one, ab), one.shape, "x_t").mean()
    ea, eb = math.sqrt(float(ab[ti])), math.sqrt(1 - float(ab[ti]))
    parts = []
    if not math.isclose(float(a), ea, rel_tol=RTOL, abs_tol=ATOL):
        parts.append(f"your mean at t={ti} is {_fmt(a)} x_0 (expected sqrt(abar_{ti}) x_0 = {_fmt(ea)} x_0)")
    if not math.isclose(float(b), eb, rel_tol=RTOL, abs_tol=ATOL):
        parts.append(f"your noise scale at t={ti} is {_fmt(b)} (expected sqrt(1 - abar_{ti}) = {_fmt(eb)})")
    if not parts:
        parts.append(f"at t={ti} your x_t is {_fmt(got[i])} (expected {_fmt(expected[i])})")
    A = lambda tab: _bcast(tab[t], x0)  # noqa: E731
    alphas = torch.cat([torch.ones(1, dtype=torch.float64), ab[1:] / ab[:-1]])
    tm1 = (t - 1).clamp(min=0)
    tp1 = (t + 1).clamp(max=s.T)
    candidates = [
        (
            _bcast(alphas[t], x0).sqrt() * x0 + (1 - _bcast(alphas[t], x0)).sqrt() * noise,
            "you used alpha_t = 1 - beta_t, the factor of one step; q(x_t | x_0) needs the product "
            "alpha_bar_t = prod_{s<=t} alpha_s.",
            None,
        ),
        (
            _bcast(ab[tm1], x0).sqrt() * x0 + (1 - _bcast(ab[tm1], x0)).sqrt() * noise,
            "you read alpha_bars[t - 1]: the table uses paper indexing (alpha_bars[t] is abar_t, alpha_bars[0] = 1), "
            "so do not shift t by one (that is diffusers' 0-based k = t - 1).",
            t > 1,
        ),
        (
            _bcast(ab[tp1], x0).sqrt() * x0 + (1 - _bcast(ab[tp1], x0)).sqrt() * noise,
            "you read alpha_bars[t + 1]: alpha_bars[t] is abar_t already.",
            t < s.T,
        ),
        (
            A(ab).sqrt() * x0 + (1 - A(ab)) * noise,
            "the noise is scaled by the variance 1 - abar_t; it takes the standard deviation sqrt(1 - abar_t).",
            None,
        ),
        (A(ab) * x0 + (1 - A(ab)).sqrt() * noise, "x_0 is scaled by abar_t; it takes sqrt(abar_t).", None),
        (
            A(ab) * x0 + (1 - A(ab)) * noise,
            "both scales are squared: the mean is sqrt(abar_t) x_0 and the standard deviation sqrt(1 - abar_t).",
            None,
        ),
        (
            (1 - A(ab)).sqrt() * x0 + A(ab).sqrt() * noise,
            "the two scales are swapped: sqrt(abar_t) goes with x_0 (it tends to 0 as t grows).",
            None,
        ),
        (A(ab).sqrt() * x0, "you left out the noise term sqrt(1 - abar_t) eps.", None),
        (
            A(ab).sqrt() * x0 + (1 - A(ab).sqrt()) * noise,
            "the noise scale is 1 - sqrt(abar_t); it is sqrt(1 - abar_t) (so that the variances add to 1).",
            None,
        ),
    ]
    return _off("q_sample", _Q_EQ, "; ".join(parts), got, candidates)


# ---- posterior: DDPM Eqs. 6-7 ------------------------------------------------------------------
_POST_EQ = (
    "q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 "
    "+ sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t and beta~_t = (1 - abar_{t-1}) / (1 - abar_t) "
    "beta_t (DDPM Eqs. 6-7)"
)


def _as_var(name: str, v, like: torch.Tensor) -> torch.Tensor:
    if v is None:
        raise _Wrong("returned None for the variance.")
    try:
        v = torch.as_tensor(v, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise _Wrong(f"returned a {type(v).__name__} for the variance, expected a tensor.") from None
    if v.ndim == 1 and v.shape[0] == like.shape[0]:
        v = _bcast(v, like)
    try:
        return torch.broadcast_to(v, like.shape).clone()
    except RuntimeError:
        raise _Wrong(
            f"the variance has shape {tuple(v.shape)}, which does not broadcast to x_t's "
            f"{tuple(like.shape)} (return shape (B,), (B, 1, ..., 1) or x_t's shape)."
        ) from None


def _unpack_posterior(out, like):
    if not isinstance(out, (tuple, list)) or len(out) < 2:
        raise _Wrong(f"returned {type(out).__name__}; it should return a pair (mean, variance).")
    mean = _tensor("posterior", out[0], like.shape, "the mean")
    return mean, _as_var("posterior", out[1], like)


@_checker("posterior", _POST_EQ)
def check_posterior(fn) -> tuple:
    """``fn(x0, x_t, t, schedule) -> (mean, variance)`` of q(x_{t-1} | x_t, x_0), with beta~_1 = 0."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(7)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    x0 = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    mean, var = _unpack_posterior(_call("posterior", fn, x0, x_t, t, s), x0)
    ref = d.q_posterior(x0, x_t, t)
    ok_m, ok_v = _per_example_ok(mean, ref.mean), _per_example_ok(var, ref.variance)
    if bool(ok_m.all() and ok_v.all()):
        return True, f"{PASS} posterior matches {_POST_EQ}"
    i = int((~(ok_m & ok_v)).nonzero()[0])
    ti = int(t[i])
    tt = torch.tensor([ti])
    one, zero = torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64)
    c0 = _unpack_posterior(_call("posterior", fn, one, zero, tt, s), one)[0].mean()
    ct = _unpack_posterior(_call("posterior", fn, zero, one, tt, s), one)[0].mean()
    e0, et = float(s.posterior_mean_coef1[ti]), float(s.posterior_mean_coef2[ti])
    ev = float(s.posterior_variance[ti])
    parts = []
    if not bool(ok_m[i]):
        parts.append(
            f"your mean at t={ti} is {_fmt(c0)} x_0 + {_fmt(ct)} x_t (expected {_fmt(e0)} x_0 + "
            f"{_fmt(et)} x_t)"
        )
    if not bool(ok_v[i]):
        parts.append(f"your variance at t={ti} is {_fmt(var[i].mean())} (expected beta~_{ti} = {_fmt(ev)})")
    B = lambda tab, tt=t: _bcast(tab[tt], x0).expand_as(x0)  # noqa: E731
    ab, al, be = s.alpha_bars, s.alphas, s.betas
    abp = torch.cat([torch.ones(1, dtype=torch.float64), s.alpha_bars[:-1]])  # abar_{t-1}
    bt = (1 - abp) / (1 - ab) * be
    bt[0] = float("nan")
    c1 = abp.sqrt() * be / (1 - ab)
    c2 = al.sqrt() * (1 - abp) / (1 - ab)
    mean_cands = [
        (
            B(ab.sqrt() * be / (1 - ab)) * x0 + B(c2) * x_t,
            "the x_0 coefficient uses sqrt(abar_t); Eq. 7 has sqrt(abar_{t-1}) beta_t / (1 - abar_t).",
            None,
        ),
        (
            B(c1) * x0 + B(ab.sqrt() * (1 - abp) / (1 - ab)) * x_t,
            "the x_t coefficient uses sqrt(abar_t); Eq. 7 has sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t).",
            None,
        ),
        (
            B(c1) * x0 + B(al.sqrt() * (1 - ab) / (1 - ab)) * x_t,
            "the x_t coefficient uses (1 - abar_t) in the numerator; Eq. 7 has (1 - abar_{t-1}).",
            None,
        ),
        (B(c2) * x0 + B(c1) * x_t, "the two coefficients are swapped.", None),
        (
            B(c1, (t - 1).clamp(min=1)) * x0 + B(c2, (t - 1).clamp(min=1)) * x_t,
            "you evaluated the coefficients at t - 1: the tables use paper indexing, so index them with t.",
            t > 1,
        ),
    ]
    var_cands = [
        (
            B(be),
            "the variance is beta_t (the forward step's variance, one of DDPM's choices for sigma_t^2 of "
            "p, Sec. 3.2); the posterior's is beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.",
            None,
        ),
        (
            B(bt).sqrt(),
            "you returned the standard deviation sqrt(beta~_t); return the variance beta~_t.",
            t > 1,
        ),
        (
            B((1 - ab) / (1 - abp) * be),
            "the ratio is upside down: beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.",
            None,
        ),
        (
            B(torch.where(torch.arange(s.T + 1) == 1, bt[2], bt)),
            "at t = 1 the posterior variance is beta~_1 = 0 exactly (abar_0 = 1); only its log is clipped, "
            "in the library, to log beta~_2.",
            None,
        ),
        (B(bt, (t - 1).clamp(min=2)), "you evaluated beta~ at t - 1: index the tables with t.", t > 2),
    ]
    hint = ""
    if not bool(ok_m.all()):
        hint += _hints(mean, mean_cands)
    if not bool(ok_v.all()):
        hint += _hints(var, var_cands)
    return False, f"{FAIL} posterior is off: it should be {_POST_EQ}; " + "; ".join(parts) + "." + hint


# ---- normal_kl -------------------------------------------------------------------------------
_KL_EQ = (
    "KL(N(m1, v1) || N(m2, v2)) = 1/2 (log v2 - log v1 + v1 / v2 + (m1 - m2)^2 / v2 - 1), elementwise, "
    "the closed form that makes each L_{t-1} of DDPM Eq. 5 exact"
)


@_checker("normal_kl", _KL_EQ)
def check_normal_kl(fn) -> tuple:
    """``fn(mean1, logvar1, mean2, logvar2) -> KL(N(mean1, e^logvar1) || N(mean2, e^logvar2))`` elementwise."""
    g = _gen(11)
    shape = (4, 3)
    m1, m2 = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2))
    l1, l2 = (torch.rand(shape, generator=g, dtype=torch.float64) * 4 - 3 for _ in range(2))
    got = _tensor("normal_kl", _call("normal_kl", fn, m1, l1, m2, l2), shape, "the KL")
    expected = normal_kl(m1, l1, m2, l2)
    same = _tensor("normal_kl", _call("normal_kl", fn, m1, l1, m1, l1), shape, "the KL")
    if bool(_close(got, expected).all()) and bool(
        _close(same, torch.zeros(shape, dtype=torch.float64)).all()
    ):
        return True, f"{PASS} normal_kl matches {_KL_EQ}"
    pm1, pl1, pm2, pl2 = (torch.tensor([[v]], dtype=torch.float64) for v in (0.5, math.log(0.25), -0.5, 0.0))
    y = _tensor("normal_kl", _call("normal_kl", fn, pm1, pl1, pm2, pl2), (1, 1), "the KL")
    ey = normal_kl(pm1, pl1, pm2, pl2)
    parts = [f"your KL(N(0.5, 0.25) || N(-0.5, 1)) = {_fmt(y)} (expected {_fmt(ey)})"]
    if not bool(_close(same, torch.zeros(shape, dtype=torch.float64)).all()):
        parts.append(f"the KL of a Gaussian with itself must be 0, yours is {_fmt(same.flatten()[0])}")
    v1, v2 = l1.exp(), l2.exp()
    candidates = [
        (2 * expected, "you left out the factor 1/2.", None),
        (
            normal_kl(m2, l2, m1, l1),
            "the arguments are swapped: KL is not symmetric, and the first Gaussian "
            "(the true posterior q in L_{t-1}) is the one the expectation is over.",
            None,
        ),
        (expected + 0.5, "you left out the -1 (check: the KL of a Gaussian with itself is 0).", None),
        (
            0.5 * (l2 - l1 + v1 / v2 + (m1 - m2) ** 2 - 1),
            "the squared mean difference is not divided by v2.",
            None,
        ),
        (
            0.5 * (l2 - l1 + v1 / v2 + (m1 - m2) ** 2 / v1 - 1),
            "the squared mean difference is divided by v1; it is divided by v2.",
            None,
        ),
        (
            0.5 * (l1 - l2 + v1 / v2 + (m1 - m2) ** 2 / v2 - 1),
            "the log term has the wrong sign: log v2 - log v1.",
            None,
        ),
        (
            normal_kl(m1, 2 * l1, m2, 2 * l2),
            "the log-variances were treated as log standard deviations.",
            None,
        ),
        (
            0.5 * (l2 - l1 + l1.exp() / l2.exp() + (m1 - m2) ** 2 / l2 - 1),
            "you divided by the log-variance instead of the variance exp(logvar2).",
            None,
        ),
    ]
    return _off("normal_kl", _KL_EQ, "; ".join(parts), got, candidates)


# ---- discretized decoder: DDPM Eq. 13 --------------------------------------------------------------
_DEC_EQ = (
    "log p(x_0 | x_1) per value: log of the Gaussian's mass on [x - 1/255, x + 1/255], the first bin "
    "extended to -inf (x = -1) and the last to +inf (x = 1) (DDPM Eq. 13)"
)


@_checker("discretized_log_likelihood", _DEC_EQ)
def check_discretized_log_likelihood(fn) -> tuple:
    """``fn(x, mean, log_scale) -> log p(x)`` elementwise; x on the 8-bit grid in [-1, 1], log_scale = log sigma.

    The exact normal CDF and DDPM's tanh approximation of it are both accepted."""
    g = _gen(13)
    k = torch.cat([torch.tensor([0, 255, 0, 255, 127, 128]), torch.randint(1, 255, (18,), generator=g)])
    x = (k.double() * 2 / 255 - 1).reshape(4, 6)
    log_scale = torch.rand(4, 6, generator=g, dtype=torch.float64) * (
        math.log(0.3) - math.log(0.02)
    ) + math.log(0.02)
    z = (torch.randn(4, 6, generator=g, dtype=torch.float64)).clamp(-2, 2)
    mean = x + z * log_scale.exp()
    got = _tensor(
        "discretized_log_likelihood",
        _call("discretized_log_likelihood", fn, x, mean, log_scale),
        x.shape,
        "the log-likelihood",
    )
    exact = discretized_gaussian_log_likelihood(x, mean, log_scale, exact=True)
    approx = discretized_gaussian_log_likelihood(x, mean, log_scale, exact=False)
    if bool(_close(got, exact).all()):
        return True, f"{PASS} discretized_log_likelihood matches {_DEC_EQ}"
    if bool(_close(got, approx, rtol=1e-4, atol=1e-5).all()):
        return True, (
            f"{PASS} discretized_log_likelihood matches {_DEC_EQ}, with DDPM's tanh approximation "
            "of the normal CDF"
        )
    bad = ~(_close(got, exact) | _close(got, approx, rtol=1e-4, atol=1e-5))
    parts = []
    edge = (x.abs() > 0.999) & bad
    if bool(edge.any()):
        j = tuple(int(v) for v in edge.nonzero()[0])
        side = "-inf" if float(x[j]) < 0 else "+inf"
        parts.append(
            f"at the edge x = {float(x[j]):+.0f} (mean {_fmt(mean[j])}, sigma {_fmt(log_scale[j].exp())}) "
            f"yours is {_fmt(got[j])} (expected {_fmt(exact[j])}: the bin extends to {side})"
        )
    inner = bad & ~(x.abs() > 0.999)
    if bool(inner.any()):
        j = tuple(int(v) for v in inner.nonzero()[0])
        parts.append(
            f"at x = {_fmt(x[j])} (mean {_fmt(mean[j])}, sigma {_fmt(log_scale[j].exp())}) yours is "
            f"{_fmt(got[j])} (expected {_fmt(exact[j])})"
        )
    std = lambda v: torch.distributions.Normal(0.0, 1.0).cdf(v)  # noqa: E731
    sig = log_scale.exp()

    def binned(half, sigma=sig, edges=True):
        hi, lo = std((x + half - mean) / sigma), std((x - half - mean) / sigma)
        p = hi - lo
        if edges:
            p = torch.where(x < -0.999, hi, torch.where(x > 0.999, 1 - lo, p))
        return p.log()

    candidates = [
        (
            binned(2 / 255),
            "each bin is [x - 1/255, x + 1/255]: the grid step is 2/255, half of it on each side.",
            None,
        ),
        (binned(0.5 / 255), "each bin is [x - 1/255, x + 1/255] (you used half that width).", None),
        (
            binned(1 / 255, edges=False),
            "the edge bins are open: at x = -1 use Phi((x + 1/255 - mu)/sigma), at "
            "x = 1 use 1 - Phi((x - 1/255 - mu)/sigma).",
            None,
        ),
        (
            binned(1 / 255, sigma=(0.5 * log_scale).exp()),
            "log_scale is log sigma (the standard deviation), not the log-variance.",
            None,
        ),
        (binned(1 / 255, sigma=(2 * log_scale).exp()), "log_scale is log sigma; you squared sigma.", None),
        (
            gaussian_log_likelihood(x, mean, 2 * log_scale),
            "that is the log density at x; Eq. 13 integrates the density over x's bin.",
            None,
        ),
        (
            gaussian_log_likelihood(x, mean, 2 * log_scale) + math.log(2 / 255),
            "density times bin width approximates the bin's mass; use the CDF difference (exact, and right at "
            "the edges).",
            None,
        ),
    ]
    return _off("discretized_log_likelihood", _DEC_EQ, "; ".join(parts), got, candidates)


# ---- one sampling step: Algorithm 2, line 4 -----------------------------------------------------------
_STEP_EQ = (
    "x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta) + sigma_t z, with z = 0 at t = 1 "
    "(DDPM Algorithm 2, line 4; the mean is Eq. 11)"
)


@_checker("p_sample_step", _STEP_EQ)
def check_p_sample_step(fn) -> tuple:
    """``fn(eps_pred, x_t, t, schedule, noise) -> x_{t-1}``; sigma_t^2 = beta_t or beta~_t (both accepted)."""
    s = _schedule()
    large = GaussianDiffusion(s, variance="fixed_large")
    small = GaussianDiffusion(s, variance="fixed_small")
    g = _gen(17)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    eps = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    z = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    args = (eps, x_t, t, s, z)
    got = _tensor("p_sample_step", _call("p_sample_step", fn, *args), x_t.shape, "x_{t-1}")
    _check_deterministic("p_sample_step", fn, args, got, x_t.shape)
    exp_large = large.p_sample(eps, x_t, t, z)
    exp_small = small.p_sample(eps, x_t, t, z)
    if bool(_close(got, exp_large).all()):
        return True, f"{PASS} p_sample_step matches {_STEP_EQ}, with sigma_t^2 = beta_t"
    if bool(_close(got, exp_small).all()):
        return True, f"{PASS} p_sample_step matches {_STEP_EQ}, with sigma_t^2 = beta~_t"
    ok = _per_example_ok(got, exp_large) | _per_example_ok(got, exp_small)
    i = int((~ok).nonzero()[0]) if bool((~ok).any()) else 0
    ti = int(t[i])
    tt = torch.tensor([ti])
    one, zero = torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64)

    def probe(e, x, n):
        return _tensor(
            "p_sample_step", _call("p_sample_step", fn, e, x, tt, s, n), one.shape, "x_{t-1}"
        ).mean()

    cx, ce, cz = probe(zero, one, zero), probe(one, zero, zero), probe(zero, zero, one)
    al, ab, be = float(s.alphas[ti]), float(s.alpha_bars[ti]), float(s.betas[ti])
    ex, ee = 1 / math.sqrt(al), -be / math.sqrt(al * (1 - ab))
    ez = 0.0 if ti == 1 else math.sqrt(be)
    ez_small = 0.0 if ti == 1 else math.sqrt(float(s.posterior_variance[ti]))
    sigma_text = (
        "0 z: no noise at t = 1"
        if ti == 1
        else f"sigma_{ti} z with sigma_{ti} = sqrt(beta_{ti}) = {_fmt(ez)} or sqrt(beta~_{ti}) = {_fmt(ez_small)}"
    )
    msg = (
        f"at t={ti} your x_(t-1) is {_fmt(cx)} x_t {'-' if float(ce) < 0 else '+'} {_fmt(abs(float(ce)))} eps_theta "
        f"+ {_fmt(cz)} z (expected {_fmt(ex)} x_t - {_fmt(abs(ee))} eps_theta + {sigma_text})"
    )
    T = lambda tab, tt_=t: _bcast(tab[tt_], x_t)  # noqa: E731
    alt, abt, bet = T(s.alphas), T(s.alpha_bars), T(s.betas)
    nz = _bcast((t > 1).double(), x_t)
    mean = (x_t - bet / (1 - abt).sqrt() * eps) / alt.sqrt()
    sig_l, sig_s = bet.sqrt(), T(s.posterior_log_variance_clipped).mul(0.5).exp()
    tm1 = (t - 1).clamp(min=1)
    mean_m1 = (x_t - T(s.betas, tm1) / (1 - T(s.alpha_bars, tm1)).sqrt() * eps) / T(s.alphas, tm1).sqrt()
    candidates = []
    for sig in (sig_l, sig_s):
        candidates += [
            (mean + sig * z, "at t = 1 the last step adds no noise: z = 0 (Algorithm 2, line 3).", None),
            (
                mean + nz * sig**2 * z,
                "sigma_t z takes the standard deviation sigma_t, not the variance sigma_t^2.",
                None,
            ),
            (
                (x_t - bet / (1 - abt).sqrt() * eps) / abt.sqrt() + nz * sig * z,
                "the mean divides by sqrt(alpha_t), the one-step factor, not by sqrt(abar_t).",
                None,
            ),
            (
                (x_t - bet / (1 - abt) * eps) / alt.sqrt() + nz * sig * z,
                "eps_theta's coefficient is beta_t / sqrt(1 - abar_t); you dropped the square root.",
                None,
            ),
            (
                (x_t - (1 - abt) / (1 - abt).sqrt() * eps) / alt.sqrt() + nz * sig * z,
                "eps_theta's coefficient is (1 - alpha_t) / sqrt(1 - abar_t) = beta_t / sqrt(1 - abar_t): alpha_t, "
                "not abar_t, in the numerator.",
                None,
            ),
            (
                (x_t + bet / (1 - abt).sqrt() * eps) / alt.sqrt() + nz * sig * z,
                "the predicted noise is subtracted from x_t, not added.",
                None,
            ),
            (
                mean_m1 + nz * sig * z,
                "you evaluated the tables at t - 1: they use paper indexing, index them with t.",
                t > 1,
            ),
            (
                mean - nz * sig * z,
                "Algorithm 2 adds sigma_t z (with the z you are given), you subtracted it.",
                None,
            ),
        ]
    return _off("p_sample_step", _STEP_EQ, msg, got, candidates)


# ---- the mean through the predicted noise: DDPM Eq. 11 (chapter 06) -------------------------------------
_EPS_MEAN_EQ = (
    "mu_theta(x_t, t) = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta) (DDPM Eq. 11: Eq. 7's "
    "mu~_t with x_0 = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t))"
)


@_checker("mean_from_eps", _EPS_MEAN_EQ)
def check_mean_from_eps(fn) -> tuple:
    """``fn(eps_pred, x_t, t, schedule) -> mu_theta`` of p(x_{t-1} | x_t), through the predicted noise (Eq. 11)."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(19)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    eps = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    args = (eps, x_t, t, s)
    got = _tensor("mean_from_eps", _call("mean_from_eps", fn, *args), x_t.shape, "mu_theta")
    expected = d.mean_from_eps(x_t, t, eps)
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} mean_from_eps matches {_EPS_MEAN_EQ}"
    i = int((~ok).nonzero()[0])
    ti = int(t[i])
    tt = torch.tensor([ti])
    one, zero = torch.ones(1, 2, 3, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64)

    def probe(e, x):
        return _tensor("mean_from_eps", _call("mean_from_eps", fn, e, x, tt, s), one.shape, "mu_theta").mean()

    cx, ce = probe(zero, one), probe(one, zero)
    al, ab, be = float(s.alphas[ti]), float(s.alpha_bars[ti]), float(s.betas[ti])
    ex, ee = 1 / math.sqrt(al), be / math.sqrt(al * (1 - ab))
    msg = (
        f"at t={ti} your mu_theta is {_fmt(cx)} x_t {'-' if float(ce) <= 0 else '+'} {_fmt(abs(float(ce)))} "
        f"eps_theta (expected 1/sqrt(alpha_{ti}) = {_fmt(ex)} times x_t, minus beta_{ti} / sqrt(alpha_{ti} "
        f"(1 - abar_{ti})) = {_fmt(ee)} times eps_theta)"
    )
    T = lambda tab, tt_=t: _bcast(tab[tt_], x_t)  # noqa: E731
    alt, abt, bet = T(s.alphas), T(s.alpha_bars), T(s.betas)
    tm1 = (t - 1).clamp(min=1)
    candidates = [
        (
            (x_t - bet / (1 - abt).sqrt() * eps) / abt.sqrt(),
            "the mean divides by sqrt(alpha_t), the one-step factor, not by sqrt(abar_t).",
            None,
        ),
        (
            (x_t - bet / (1 - abt) * eps) / alt.sqrt(),
            "eps_theta's coefficient is beta_t / sqrt(1 - abar_t); you dropped the square root.",
            None,
        ),
        (
            (x_t - (1 - abt) / (1 - abt).sqrt() * eps) / alt.sqrt(),
            "eps_theta's coefficient has beta_t = 1 - alpha_t in the numerator, not 1 - abar_t.",
            None,
        ),
        (
            (x_t - bet.sqrt() / (1 - abt).sqrt() * eps) / alt.sqrt(),
            "eps_theta's coefficient has beta_t in the numerator, not sqrt(beta_t).",
            None,
        ),
        (
            (x_t + bet / (1 - abt).sqrt() * eps) / alt.sqrt(),
            "the predicted noise is subtracted from x_t, not added.",
            None,
        ),
        (x_t - bet / (1 - abt).sqrt() * eps, "you left out the factor 1/sqrt(alpha_t) in front.", None),
        (
            (x_t - (1 - abt).sqrt() * eps) / abt.sqrt(),
            "that is the predicted x_0 (Eq. 4 solved for x_0); the mean of p(x_{t-1} | x_t) is Eq. 11.",
            None,
        ),
        (
            (x_t - T(s.betas, tm1) / (1 - T(s.alpha_bars, tm1)).sqrt() * eps) / T(s.alphas, tm1).sqrt(),
            "you evaluated the tables at t - 1: they use paper indexing, index them with t.",
            t > 1,
        ),
    ]
    return _off("mean_from_eps", _EPS_MEAN_EQ, msg, got, candidates)


# ---- the sinusoidal time embedding (DDPM Sec. 4 and Appendix B; Vaswani et al. 2017, Sec. 3.5) ---------
_TEMB_EQ = (
    "emb(t) = [sin(t w_0), ..., sin(t w_(h-1)), cos(t w_0), ..., cos(t w_(h-1))] with h = dim // 2 and "
    "w_i = 10000^(-i / (h - 1)): the Transformer's sinusoidal embedding as DDPM's get_timestep_embedding "
    "writes it, sines in the first half, cosines in the second"
)


def _temb_reference(
    t: torch.Tensor,
    dim: int,
    base: float = 10000.0,
    denom=None,
    layout: str = "halves",
    sign: float = -1.0,
    shift: int = 0,
) -> torch.Tensor:
    """The embedding in float64, and (with other arguments) the common mistakes' versions of it."""
    h = dim // 2
    i = torch.arange(h, dtype=torch.float64)
    w = torch.exp(sign * math.log(base) * i / (h - 1 if denom is None else denom))
    a = (t.double() + shift)[:, None] * w[None]
    if layout == "swapped":
        return torch.cat([torch.cos(a), torch.sin(a)], dim=1)
    if layout == "interleaved":
        return torch.stack([torch.sin(a), torch.cos(a)], dim=2).reshape(len(t), 2 * h)
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


@_checker("timestep_embedding", _TEMB_EQ)
def check_timestep_embedding(fn) -> tuple:
    """``fn(t, dim) -> (B, dim)``: t a LongTensor (B,) of timesteps (the paper's t, fed as is), dim even.

    Compared in float64 with a tolerance of 2e-4, which float32 arithmetic meets (t w_i is rounded to
    about t * 6e-8 in float32, 6e-5 at t = 1000)."""
    t = torch.tensor([1, 2, 7, 50, 333, 1000])
    tol = dict(rtol=0.0, atol=2e-4)
    for dim in (32, 10):
        got = _tensor(
            "timestep_embedding",
            _call("timestep_embedding", fn, t.clone(), dim),
            (len(t), dim),
            f"the embedding for dim = {dim}",
        )
        expected = _temb_reference(t, dim)
        ok = _close(got, expected, **tol)
        if bool(ok.all()):
            continue
        h = dim // 2
        i, j = (int(v) for v in (~ok).nonzero()[0])
        ti = int(t[i])
        if j < h:
            what = f"sin(t w_{j}) with w_{j} = 10000^(-{j}/{h - 1})"
        else:
            what = f"cos(t w_{j - h}) with w_{j - h} = 10000^(-{j - h}/{h - 1})"
        msg = (
            f"for dim = {dim} at t = {ti}, column {j} (it should be {what}) yours is {_fmt(got[i, j])} "
            f"(expected {_fmt(expected[i, j])})"
        )
        ref = lambda **kw: _temb_reference(t, dim, **kw)  # noqa: E731
        # growing frequencies give arguments up to 10^7, which float32 cannot resolve: compare where t w <= 100
        big = t.double()[:, None] * torch.exp(
            math.log(10000.0) * torch.arange(h, dtype=torch.float64) / (h - 1)
        )
        grows = (big <= 100).repeat(1, 2)
        candidates = [
            (ref(layout="swapped"), "the halves are swapped: sines first, then cosines.", None),
            (
                ref(layout="interleaved"),
                "you interleaved sin and cos (sin in even columns, cos in odd ones), as the "
                "Transformer paper writes PE(pos, 2i), PE(pos, 2i + 1); DDPM's code puts all "
                "sines in the first half and all cosines in the second.",
                None,
            ),
            (
                ref(denom=h),
                "the exponent is -i / h (the Transformer's 2i / d_model, also improved-diffusion's "
                "choice); DDPM's get_timestep_embedding divides by h - 1, so that the slowest frequency "
                "is exactly 1/10000.",
                None,
            ),
            (
                ref(sign=1.0),
                "the frequencies grow with i (10000^(+i/(h-1))): they must fall from w_0 = 1 to "
                "w_(h-1) = 1/10000 (the periods grow from 2 pi to 2 pi 10000).",
                grows,
            ),
            (
                ref(base=math.exp(math.log10(10000.0))),
                "the frequency base is wrong: you took log10(10000) = 4 where "
                "the natural log ln(10000) belongs (w_i = exp(-ln(10000) i / "
                "(h - 1))).",
                None,
            ),
            (ref(base=1000.0), "the frequency base is 1000; it is 10000 (max_period).", None),
            (
                ref(shift=-1),
                "you embedded t - 1 (a 0-based timestep, as in diffusers); the network receives the "
                "paper's t as is.",
                t > 1,
            ),
            (ref(shift=1), "you embedded t + 1; the network receives the paper's t as is.", None),
        ]
        # compared with the checker's tolerance, so that a float32 version of a mistake is recognized too
        hint = ""
        for cand, hnt, where in candidates:
            sel = torch.ones(len(t), dtype=torch.bool) if where is None else where  # rows, or rows x columns
            if bool(_close(got[sel], cand[sel], **tol).all()):
                hint = " Likely mistake: " + hnt
                break
        return False, f"{FAIL} timestep_embedding is off: it should be {_TEMB_EQ}; {msg}." + hint
    return True, f"{PASS} timestep_embedding matches {_TEMB_EQ}"


# ---- Algorithm 1's loss for a batch: L_simple (DDPM Eq. 14) ---------------------------------------------
_LSIMPLE_EQ = (
    "L_simple = || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2 per example, "
    "averaged over its dimensions (DDPM Eq. 14; Algorithm 1, line 5)"
)


def _toy_eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for eps_theta whose output depends on x_t and on t (so t - 1 shows)."""
    scale = _bcast(t.to(x.dtype) / 100.0, x)
    return 0.5 * x + 0.3 * torch.tanh(2.0 * x) * scale - 0.2 * scale


@_checker("l_simple", _LSIMPLE_EQ)
def check_l_simple(fn) -> tuple:
    """``fn(model, x0, t, noise, alpha_bars) -> (B,)``: the per-example loss of Algorithm 1 for a batch,
    with the t and eps given (model(x_t, t) is eps_theta; alpha_bars has length T + 1)."""
    s = _schedule()
    d = GaussianDiffusion(s, decoder="gaussian")
    g = _gen(19)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    x0 = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    ab = s.alpha_bars.clone()
    model = _toy_eps_model
    args = (model, x0, t, noise, ab)
    out = _call("l_simple", fn, *args)
    expected = d.training_losses(model, x0, t=t, noise=noise)["loss"]
    if out is not None:
        o = torch.as_tensor(out).double() if isinstance(out, (torch.Tensor, float, int)) else None
        if o is not None and o.numel() == 1 and math.isclose(float(o), float(expected.mean()), rel_tol=1e-6):
            return False, (
                f"{FAIL} l_simple returned one number, the mean over the batch ({_fmt(o)}); return the "
                f"loss of every example, shape (B,) = ({len(t)},): the trainer averages them itself (and "
                f"keeps them per t). It should compute {_LSIMPLE_EQ}."
            )
    got = _tensor("l_simple", out, (len(t),), "the loss")
    _check_deterministic("l_simple", fn, args, got, (len(t),))
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} l_simple matches {_LSIMPLE_EQ}"
    i = int((~ok).nonzero()[0])
    ti = int(t[i])
    msg = f"for the example with t = {ti} yours is {_fmt(got[i])} (expected {_fmt(expected[i])})"
    A = lambda tab, tt=t: _bcast(tab[tt], x0)  # noqa: E731
    alphas = torch.cat([torch.ones(1, dtype=torch.float64), ab[1:] / ab[:-1]])
    mse = lambda a, b: ((a - b) ** 2).flatten(1).mean(1)  # noqa: E731

    def loss_with(x_t, target=noise, tt=t):
        return mse(target, model(x_t, tt))

    x_t = A(ab).sqrt() * x0 + (1 - A(ab)).sqrt() * noise
    tm1 = (t - 1).clamp(min=0)
    candidates = [
        (
            loss_with(A(alphas).sqrt() * x0 + (1 - A(alphas)).sqrt() * noise),
            "x_t used alpha_t, one step's factor; q(x_t | x_0) (Eq. 4) needs alpha_bar_t.",
            None,
        ),
        (
            loss_with(A(ab, tm1).sqrt() * x0 + (1 - A(ab, tm1)).sqrt() * noise),
            "you read alpha_bars[t - 1]: the table uses paper indexing, alpha_bars[t] is abar_t.",
            t > 1,
        ),
        (
            loss_with(A(ab) * x0 + (1 - A(ab)) * noise),
            "x_t has abar_t and 1 - abar_t where their square roots belong.",
            None,
        ),
        (
            loss_with(A(ab).sqrt() * x0 + (1 - A(ab)) * noise),
            "the noise is scaled by the variance 1 - abar_t; it takes sqrt(1 - abar_t).",
            None,
        ),
        (
            loss_with((1 - A(ab)).sqrt() * x0 + A(ab).sqrt() * noise),
            "the scales of x_0 and eps are swapped in x_t.",
            None,
        ),
        (
            loss_with(x_t, target=x0),
            "the target is x_0; with the eps parameterization the network predicts the "
            "noise eps, so compare its output with eps.",
            None,
        ),
        (loss_with(x_t, tt=tm1), "the network got t - 1; it receives the paper's t as is.", t > 1),
        (
            loss_with(x0),
            "the network was given x_0; it must see the noised x_t = sqrt(abar_t) x_0 + "
            "sqrt(1 - abar_t) eps.",
            None,
        ),
        (
            ((noise - model(x_t, t)) ** 2).flatten(1).sum(1),
            f"you summed over the {x0[0].numel()} dimensions; the library (as DDPM's code, mean_flat) averages "
            "over them (a constant factor that would only rescale the learning rate).",
            None,
        ),
        (
            (noise - model(x_t, t)).abs().flatten(1).mean(1),
            "that is the mean absolute error; L_simple squares the difference.",
            None,
        ),
    ]
    return _off("l_simple", _LSIMPLE_EQ, msg, got, candidates)


# ---- respaced betas: sampling on fewer steps (Nichol & Dhariwal 2021, Sec. 4; chapter 10) ------------
_RESPACE_EQ = (
    "beta'_k = 1 - abar_(tau_k) / abar_(tau_(k-1)) for k = 1..K, with tau_0 = 0 and abar_0 = 1: the chain on "
    "the kept timesteps tau_1 < ... < tau_K keeps DDPM Eq. 4's abar_(tau_k) (Nichol & Dhariwal 2021, Sec. 4)"
)


@_checker("respaced_betas", _RESPACE_EQ)
def check_respaced_betas(fn) -> tuple:
    """``fn(alpha_bars, timesteps) -> betas``: alpha_bars of length T + 1 (alpha_bars[0] = 1), timesteps the
    kept tau_1 < ... < tau_K (a LongTensor); the result is beta'_1..beta'_K (length K; a table of length
    K + 1 with a placeholder in front, as the library's, is accepted too)."""
    s = _schedule()
    ts = torch.tensor([3, 10, 25, 50, 75, 100])
    K = ts.numel()
    ab = s.alpha_bars.clone()
    out = _call("respaced_betas", fn, ab, ts)
    if out is not None and isinstance(out, torch.Tensor) and out.ndim == 1 and out.shape[0] == K + 1:
        out = out[1:]  # the library's layout: index k is beta'_k, [0] a placeholder
    got = _tensor("respaced_betas", out, (K,), "the respaced betas")
    expected = s.respace(ts).betas[1:]
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} respaced_betas matches {_RESPACE_EQ}"
    k = int((~ok).nonzero()[0])
    prev = torch.cat([torch.zeros(1, dtype=torch.long), ts[:-1]])
    candidates = [
        (
            s.betas[ts],
            "you took the original one-step beta_(tau_k); a respaced step jumps from tau_(k-1) to tau_k, "
            "over many original steps: use the ratio abar_(tau_k) / abar_(tau_(k-1)).",
            None,
        ),
        (
            ab[ts] / ab[prev],
            "that is alpha'_k = abar_(tau_k) / abar_(tau_(k-1)); beta'_k = 1 - alpha'_k.",
            None,
        ),
        (
            1 - ab[prev] / ab[ts],
            "the ratio is upside down: abar falls with t, so abar_(tau_k) / abar_(tau_(k-1)) < 1.",
            None,
        ),
        (
            1 - ab[ts],
            "1 - abar_(tau_k) is the noise variance accumulated from x_0 up to tau_k, not one respaced "
            "step's.",
            None,
        ),
        (
            1 - (ab[ts] / ab[prev]).sqrt(),
            "no square root: alpha'_k multiplies variances as alpha_t does (beta'_k = 1 - alpha'_k).",
            None,
        ),
        (
            torch.cat([torch.zeros(1, dtype=torch.float64), 1 - ab[ts[1:]] / ab[ts[:-1]]]),
            "the first respaced step starts from x_0 (tau_0 = 0, abar_0 = 1): beta'_1 = 1 - abar_(tau_1), not 0.",
            None,
        ),
    ]
    return _off(
        "respaced_betas",
        _RESPACE_EQ,
        f"at k = {k + 1} (tau = {int(ts[k])}, previous tau = {int(prev[k])}) yours is {_fmt(got[k])}, "
        f"expected {_fmt(expected[k])}",
        got,
        candidates,
    )


# ---- one DDIM step, eta = 0 (Song et al. 2021, Eq. 12; chapter 10) --------------------------------------
_DDIM_EQ = (
    "x_(t_prev) = sqrt(abar_(t_prev)) x0_hat + sqrt(1 - abar_(t_prev)) eps_theta, with "
    "x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) (DDPM Eq. 4 solved for x_0) and abar_0 = 1 "
    "(Song et al. 2021, Eq. 12 with eta = 0)"
)


@_checker("ddim_step", _DDIM_EQ)
def check_ddim_step(fn) -> tuple:
    """``fn(eps_pred, x_t, t, t_prev, alpha_bars) -> x_(t_prev)``: t and t_prev LongTensors (B,) with
    0 <= t_prev < t (t_prev = 0 gives x_0); alpha_bars of length T + 1 (alpha_bars[0] = 1)."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(23)
    t = torch.tensor([10, 1, 100, 37, 64, 50])
    t_prev = torch.tensor([5, 0, 80, 36, 0, 25])
    eps = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    ab = s.alpha_bars.clone()
    args = (eps, x_t, t, t_prev, ab)
    got = _tensor("ddim_step", _call("ddim_step", fn, *args), x_t.shape, "x_(t_prev)")
    _check_deterministic("ddim_step", fn, args, got, x_t.shape)
    expected = d.ddim_step(eps, x_t, t, t_prev, eta=0.0)
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} ddim_step matches {_DDIM_EQ}"
    i = int((~ok).nonzero()[0])
    A = lambda tab, tt: _bcast(tab[tt], x_t)  # noqa: E731
    abt, abp = A(ab, t), A(ab, t_prev)
    x0_hat = (x_t - (1 - abt).sqrt() * eps) / abt.sqrt()
    alphas = torch.cat([torch.ones(1, dtype=torch.float64), ab[1:] / ab[:-1]])
    al_t, al_p = A(alphas, t), A(alphas, t_prev)
    x0_al = (x_t - (1 - al_t).sqrt() * eps) / al_t.sqrt()
    candidates = [
        (
            al_p.sqrt() * x0_al + (1 - al_p).sqrt() * eps,
            "you used the one-step alpha_t; DDIM uses the products abar_t and abar_(t_prev) (Eq. 4's).",
            None,
        ),
        (
            abp.sqrt() * x_t + (1 - abp).sqrt() * eps,
            "the first term takes the predicted x0_hat, not x_t.",
            None,
        ),
        (
            abp * x0_hat + (1 - abp) * eps,
            "both coefficients are square roots: sqrt(abar_(t_prev)) and sqrt(1 - abar_(t_prev)).",
            None,
        ),
        (
            abp.sqrt() * (x_t + (1 - abt).sqrt() * eps) / abt.sqrt() + (1 - abp).sqrt() * eps,
            "x0_hat subtracts the predicted noise: x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t).",
            None,
        ),
        (
            abp.sqrt() * x0_hat,
            "you left out the direction term sqrt(1 - abar_(t_prev)) eps_theta that points back "
            "to x_(t_prev).",
            None,
        ),
        (
            abt.sqrt() * x0_hat + (1 - abt).sqrt() * eps,
            "that gives x_t back: the coefficients take abar at t_prev.",
            None,
        ),
    ]
    return _off(
        "ddim_step",
        _DDIM_EQ,
        f"for t = {int(t[i])} -> t_prev = {int(t_prev[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
        got,
        candidates,
    )


# ---- the weight of the unweighted mu~ loss (DDPM Eqs. 8, 11, 12; chapter 11) ---------------------------------
_MU_W_EQ = (
    "||mu~_t - mu_theta||^2 = w_t ||eps - eps_theta||^2 with w_t = beta_t^2 / (alpha_t (1 - abar_t)), "
    "from Eq. 11's mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t) (DDPM Eqs. 8-12)"
)


@_checker("mu_mse_weight", _MU_W_EQ)
def check_mu_mse_weight(fn) -> tuple:
    """``fn(t, schedule) -> w`` of shape (B,): the factor that turns L_simple's ||eps - eps_theta||^2 into
    the unweighted mean loss ||mu~_t - mu_theta||^2 (Table 2's third row) when mu_theta is formed from
    eps_theta by Eq. 11. ``schedule`` is a NoiseSchedule (tables of length T + 1, indexed by t)."""
    s = _schedule()
    t = torch.tensor([1, 2, 10, 37, 64, 100])
    got = _tensor("mu_mse_weight", _call("mu_mse_weight", fn, t, s), t.shape, "w")
    expected = s.eps_coef[t] ** 2 / s.alphas[t]
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} mu_mse_weight matches {_MU_W_EQ}"
    i = int((~ok).nonzero()[0])
    b, a, ab = s.betas[t], s.alphas[t], s.alpha_bars[t]
    tm1 = (t - 1).clamp(min=1)
    candidates = [
        (
            b / (a * (1 - ab)),
            "square beta_t too: the coefficient of eps in Eq. 11 is beta_t / sqrt(1 - abar_t), and "
            "the squared error squares the whole coefficient.",
            None,
        ),
        (
            b**2 / (ab * (1 - ab)),
            "the 1 / sqrt(alpha_t) in Eq. 11 is the one-step alpha_t, not abar_t.",
            None,
        ),
        (
            b / (2 * a * (1 - ab)),
            "that is the bound's weight lambda_t of Eq. 12 with sigma_t^2 = beta_t; the "
            "unweighted mu~ loss has no 1 / (2 sigma_t^2) (multiply by 2 beta_t).",
            None,
        ),
        (
            b / (a * (1 - ab)).sqrt(),
            "that is the coefficient itself; the loss is a squared error, so square it.",
            None,
        ),
        (s.eps_coef[tm1] ** 2 / s.alphas[tm1], "t is shifted by one: use the tables at t itself.", None),
    ]
    return _off(
        "mu_mse_weight",
        _MU_W_EQ,
        f"at t = {int(t[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
        got,
        candidates,
    )


# ---- the best variance for a given mean (the KL of Eq. 5 with a learned diagonal Sigma; chapter 11) ------------
_OPT_VAR_EQ = (
    "the variance v that minimizes KL(N(mu_q, var_q) || N(mu_theta, v)) per dimension: "
    "v* = var_q + (mu_q - mu_theta)^2 (set d KL / d v = 0 in the Gaussian KL of DDPM Eq. 5)"
)


@_checker("optimal_variance", _OPT_VAR_EQ)
def check_optimal_variance(fn) -> tuple:
    """``fn(mean_q, var_q, mean_theta) -> v`` elementwise (same shape): the diagonal variance of
    p_theta(x_{t-1} | x_t) that makes the KL term of the bound smallest, given the mean the model predicts."""
    g = _gen(31)
    m_q = torch.randn(5, 3, generator=g, dtype=torch.float64)
    v_q = torch.rand(5, 3, generator=g, dtype=torch.float64) * 0.1 + 1e-3
    m_p = m_q + 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    got = _tensor("optimal_variance", _call("optimal_variance", fn, m_q, v_q, m_p), m_q.shape, "v")
    expected = v_q + (m_q - m_p) ** 2
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} optimal_variance matches {_OPT_VAR_EQ}"
    kl = lambda v: normal_kl(m_q, v_q.log(), m_p, v.clamp(min=1e-300).log())  # noqa: E731
    i = tuple(int(j) for j in (~ok).nonzero()[0])
    err2 = (m_q - m_p) ** 2
    candidates = [
        (
            v_q,
            "that ignores the model's mean error: with mu_theta != mu_q the KL is smallest for a wider Gaussian.",
            None,
        ),
        (err2, "the posterior's own variance var_q counts too: v* = var_q + (mu_q - mu_theta)^2.", None),
        (expected.sqrt(), "that is a standard deviation; the question asks for the variance.", None),
        (v_q.sqrt() + (m_q - m_p).abs(), "add variances, not standard deviations.", None),
        ((v_q - err2).abs(), "the mean error widens the best Gaussian: add it.", None),
    ]
    hint = _hints(got, candidates)
    extra = ""
    if bool(torch.isfinite(got).all()) and bool((got > 0).all()):
        extra = (
            f" Your v gives KL = {_fmt(kl(got)[i])} nats there; the best is {_fmt(kl(expected)[i])} "
            f"(ddpm_lib.normal_kl)."
        )
    return False, (
        f"{FAIL} optimal_variance is off: it should be {_OPT_VAR_EQ}; at element {i} yours is "
        f"{_fmt(got[i])}, expected {_fmt(expected[i])}.{extra}" + hint
    )


# ---- the cosine schedule: Nichol & Dhariwal 2021, Eq. 17 (chapter 14) -----------------------------------
_COS_EQ = (
    "alpha_bar_t = f(t) / f(0) with f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), then beta_t = 1 - alpha_bar_t / "
    "alpha_bar_(t-1) clipped at max_beta and alpha_bar_t = prod_(s<=t) (1 - beta_s) again, a table of length "
    "T + 1 with alpha_bar_0 = 1 (Nichol & Dhariwal 2021, Eq. 17)"
)


@_checker("cosine_schedule", _COS_EQ)
def check_cosine_schedule(fn) -> tuple:
    """``fn(T, s, max_beta) -> alpha_bars`` of length T + 1, as :meth:`NoiseSchedule.cosine` builds them."""
    cases = [(10, 0.008, 0.999), (1000, 0.008, 0.999), (50, 0.05, 0.5)]
    for T, s, mb in cases:
        out = _call("cosine_schedule", fn, T, s, mb)
        if out is None:
            raise _Wrong("returned None: did you forget `return`?")
        try:
            got = torch.as_tensor(out).double().flatten()
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong(f"returned a {type(out).__name__}, expected a tensor of length T + 1.") from None
        expected = NoiseSchedule.cosine(T, s=s, max_beta=mb).alpha_bars
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        if got.shape[0] == T:
            hint = (
                " (your values are alpha_bar_1..alpha_bar_T: put alpha_bar_0 = 1 in front)"
                if _matches(got, expected[1:], None) or _matches(got, (f / f[0])[1:], None)
                else ""
            )
            return False, (
                f"{FAIL} cosine_schedule for T = {T} has length T = {T}; with paper indexing the table "
                f"has length T + 1 = {T + 1}, alpha_bars[0] = 1{hint}. It should compute {_COS_EQ}."
            )
        if got.shape[0] != T + 1:
            raise _Wrong(f"for T = {T} the table has length {got.shape[0]}, expected T + 1 = {T + 1}.")
        ok = _close(got, expected)
        if bool(ok.all()):
            continue
        bad = int((~ok).nonzero()[0])
        raw = f / f[0]

        def reclip(ab):
            prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
            b = (1 - ab[1:] / prev[1:]).clamp(max=mb)
            return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - b, 0)])

        fc = torch.cos((steps + s) / (1 + s) * math.pi / 2)
        f_nos = torch.cos(steps * math.pi / 2) ** 2
        f_nodiv = torch.cos((steps + s) * math.pi / 2) ** 2
        candidates = [
            (
                raw,
                f"you did not clip: beta_t = 1 - alpha_bar_t / alpha_bar_(t-1) must be clipped at max_beta = {mb} "
                "(near t = T it tends to 1, and alpha_bar_T would be exactly 0), then alpha_bar recomputed as the "
                "product of (1 - beta).",
                None,
            ),
            (f, "divide by f(0): alpha_bar_t = f(t) / f(0), so that alpha_bar_0 = 1.", None),
            (reclip(fc / fc[0]), "f(t) is the cosine squared.", None),
            (
                reclip(f_nos / f_nos[0]),
                "the offset s is missing: f(t) = cos^2(((t/T + s) / (1 + s)) pi/2).",
                None,
            ),
            (reclip(f_nodiv / f_nodiv[0]), "divide (t/T + s) by (1 + s).", None),
        ]
        return _off(
            "cosine_schedule",
            _COS_EQ,
            f"for T = {T}, s = {s}, max_beta = {mb} your alpha_bars[{bad}] = {_fmt(got[bad])} "
            f"(expected {_fmt(expected[bad])})",
            got,
            candidates,
        )
    return True, f"{PASS} cosine_schedule matches {_COS_EQ}"


# ---- an open design problem: a schedule with a given beta_1 and alpha_bar_T (chapter 14) -------------------
_DESIGN_EQ = (
    "a schedule beta_1..beta_T (length T) with the given beta_1, nondecreasing, each in (0, 1), whose "
    "alpha_bar_T = prod_(t=1..T) (1 - beta_t) (DDPM Eq. 4's alpha_bar_T) equals the target"
)


@_checker("schedule_design", _DESIGN_EQ)
def check_schedule_design(fn) -> tuple:
    """``fn(T, beta_1, alpha_bar_T) -> betas`` (length T). Any schedule meeting the constraints passes: the
    requested beta_1 (relative 1e-6), nondecreasing (to 1e-12), in (0, 1), and |log alpha_bar_T - log target|
    <= 1e-3. It is tried on four targets."""
    cases = [(1000, 1e-4, 1e-4), (1000, 1e-4, 1e-3), (200, 1e-3, 1e-4), (50, 1e-3, 1e-2)]
    for T, b1, target in cases:
        where = f"for T = {T}, beta_1 = {b1:g}, alpha_bar_T = {target:g}"
        out = _call("schedule_design", fn, T, b1, target)
        if out is None:
            raise _Wrong("returned None: did you forget `return`?")
        if isinstance(out, NoiseSchedule):
            out = out.betas[1:]
        try:
            betas = torch.as_tensor(out).double().flatten()
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong(f"returned a {type(out).__name__}, expected a tensor of beta_1..beta_T.") from None
        if betas.shape[0] == T + 1:
            first = float(betas[0])
            hint = (
                " (a leading 0 is the placeholder beta_0 of the library's tables: leave it out)"
                if first == 0
                else " (it looks like a table of alpha_bars: return the betas)"
                if first == 1
                else ""
            )
            return (
                False,
                f"{FAIL} schedule_design {where}: {T + 1} values, expected T = {T}{hint}. It should be {_DESIGN_EQ}.",
            )
        if betas.shape[0] != T:
            raise _Wrong(f"{where} it returned {betas.shape[0]} values, expected T = {T} (beta_1..beta_T).")
        if not bool(torch.isfinite(betas).all()) or not bool(((betas > 0) & (betas < 1)).all()):
            i = int((~(torch.isfinite(betas) & (betas > 0) & (betas < 1))).nonzero()[0])
            return False, (
                f"{FAIL} schedule_design {where}: beta_{i + 1} = {_fmt(betas[i])} is not in (0, 1). "
                f"It should be {_DESIGN_EQ}."
            )
        if not math.isclose(float(betas[0]), b1, rel_tol=1e-6):
            return False, (
                f"{FAIL} schedule_design {where}: beta_1 = {_fmt(betas[0])}, expected {b1:g}. "
                f"It should be {_DESIGN_EQ}."
            )
        drops = (betas[1:] < betas[:-1] - 1e-12).nonzero()
        if len(drops):
            i = int(drops[0]) + 1
            return False, (
                f"{FAIL} schedule_design {where}: beta_{i + 1} = {_fmt(betas[i])} < beta_{i} = "
                f"{_fmt(betas[i - 1])}; the schedule must not decrease. It should be {_DESIGN_EQ}."
            )
        ab_T = float(torch.log1p(-betas).sum().exp())
        if abs(math.log(ab_T) - math.log(target)) > 1e-3:
            lin = float(
                torch.log1p(-torch.linspace(b1, float(betas[-1]), T, dtype=torch.float64)).sum().exp()
            )
            hint = ""
            if ab_T > target:
                hint = " Too little noise: raise the later betas."
            else:
                hint = " Too much noise: lower the later betas."
            hint += (
                f" (A linear schedule from beta_1 to your beta_T = {_fmt(betas[-1])} has alpha_bar_T = {_fmt(lin)};"
                " alpha_bar_T falls as beta_T grows, so bisection on beta_T finds the linear one.)"
            )
            return False, (
                f"{FAIL} schedule_design {where}: your alpha_bar_T = prod (1 - beta_t) = {_fmt(ab_T)}, "
                f"expected {target:g} (to 0.1%).{hint} It should be {_DESIGN_EQ}."
            )
    return True, f"{PASS} schedule_design meets the constraints: {_DESIGN_EQ}, for all four targets"


# ---- chapter 12: multiplying distributions (Sohl-Dickstein et al. 2015, Sec. 2.5 and 2.6) ----------------
_PERTURB_EQ = (
    "p~(x_{t-1} | x_t) ≈ N(mu + Sigma grad log r(mu), Sigma): the kernel's mean moves by its variance "
    "times the gradient of log r evaluated at the mean mu (Sohl-Dickstein et al. 2015, App. C, Eq. 61)"
)


@_checker("perturbed_mean", _PERTURB_EQ)
def check_perturbed_mean(fn) -> tuple:
    """``fn(mean, variance, grad_log_r) -> mean'``; grad_log_r is a callable y -> grad log r(y)."""
    from ..sampling import perturbed_mean

    g = _gen(23)
    mean = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    var = torch.rand(5, 1, 1, generator=g, dtype=torch.float64) * 0.2 + 0.01
    c, w = 0.7, 0.5  # a Gaussian window r(y) = exp(-|y - c|^2 / (2 w^2))
    window = lambda y: -(y - c) / w**2  # noqa: E731
    slope, edge = 3.0, 0.2  # a soft half-space r(y) = sigmoid(slope (y - edge)), not Gaussian
    soft = lambda y: slope * torch.sigmoid(-slope * (y - edge))  # noqa: E731
    got_w = _tensor("perturbed_mean", _call("perturbed_mean", fn, mean, var, window), mean.shape, "the mean")
    got_s = _tensor("perturbed_mean", _call("perturbed_mean", fn, mean, var, soft), mean.shape, "the mean")
    exp_w, exp_s = perturbed_mean(mean, var, window), perturbed_mean(mean, var, soft)
    if bool(_close(got_w, exp_w).all()) and bool(_close(got_s, exp_s).all()):
        return True, f"{PASS} perturbed_mean matches {_PERTURB_EQ}"
    bad_w = not bool(_close(got_w, exp_w).all())
    got, exp, grad, name = (
        (got_w, exp_w, window, "a Gaussian window") if bad_w else (got_s, exp_s, soft, "a soft half-space")
    )
    i = tuple(int(j) for j in (~_close(got, exp)).nonzero()[0])
    gm = grad(mean)
    candidates = [
        (
            mean - var * gm,
            "the sign: the energy E_r = -log r has gradient g = -grad log r, and the mean moves by "
            "-Sigma g = +Sigma grad log r (Eqs. 60-61), towards larger r.",
            None,
        ),
        (mean + var.sqrt() * gm, "Sigma is the variance, not the standard deviation.", None),
        (mean + var**2 * gm, "multiply by the variance Sigma once, not squared.", None),
        (mean + gm, "scale the gradient by the kernel's variance Sigma: a narrow kernel barely moves.", None),
        (
            mean + 0.5 * var * gm,
            "there is no factor 1/2: completing the square (Eqs. 57-59) gives mu + Sigma g' "
            "with g' = grad log r(mu).",
            None,
        ),
        (
            mean + var * grad(torch.zeros_like(mean)),
            "evaluate grad log r at the kernel's mean mu (Eq. 56 expands log r around mu), not at 0.",
            None,
        ),
        (var * gm, "the result is the shifted mean mu + Sigma grad log r(mu), not the shift alone.", None),
    ]
    if bad_w:
        candidates.append(
            (
                (mean / var + c / w**2) / (1 / var + 1 / w**2),
                "that is the exact product of two Gaussians, right for a Gaussian r only; the exercise "
                "asks for the first-order rule, which works for any smooth r.",
                None,
            )
        )
    hint = _hints(got, candidates)
    return False, (
        f"{FAIL} perturbed_mean is off for {name}: it should be {_PERTURB_EQ}; at element {i} "
        f"(mu = {_fmt(mean[i])}, Sigma = {_fmt(var[i[0], 0, 0])}) yours is {_fmt(got[i])}, expected "
        f"{_fmt(exp[i])}.{hint}"
    )


_ENTROPY_EQ = (
    "H(X_t|X_{t-1}) + H(X_{t-1}|X_0) - H(X_t|X_0) <= H(X_{t-1}|X_t) <= H(X_t|X_{t-1}) (Sohl-Dickstein "
    "et al. 2015, Eq. 24), per dimension in nats, with H(X_t|X_{t-1}) = 1/2 log(2 pi e beta_t) and "
    "H(X_t|X_0) = 1/2 log(2 pi e (1 - abar_t)) for the Gaussian forward process"
)


@_checker("entropy_bounds", _ENTROPY_EQ)
def check_entropy_bounds(fn) -> tuple:
    """``fn(schedule) -> (lower, upper)``, tables of length T + 1 (paper indexing); compared at t >= 2."""
    s = _schedule()
    T = s.T
    out = _call("entropy_bounds", fn, s)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise _Wrong(f"returned a {type(out).__name__}; return a pair (lower, upper).")
    lo_raw, up_raw = (torch.as_tensor(v, dtype=torch.float64) if v is not None else None for v in out)
    if lo_raw is None or up_raw is None:
        raise _Wrong("returned None in the pair: did you forget to fill in lower or upper?")
    if lo_raw.ndim == 1 and lo_raw.shape[0] == T:
        return False, (
            f"{FAIL} entropy_bounds: your tables have length T = {T}; with paper indexing they have "
            f"length T + 1 = {T + 1}, index t meaning the step x_t -> x_(t-1) (put a NaN at t = 0). "
            f"It should compute {_ENTROPY_EQ}."
        )
    lower = _tensor("entropy_bounds", lo_raw, (T + 1,), "lower")
    upper = _tensor("entropy_bounds", up_raw, (T + 1,), "upper")
    exp_lo, exp_up = s.reverse_entropy_bounds()
    ok_lo = _close(lower[2:], exp_lo[2:])
    ok_up = _close(upper[2:], exp_up[2:])
    if bool(ok_lo.all()) and bool(ok_up.all()):
        return True, f"{PASS} entropy_bounds matches {_ENTROPY_EQ}"
    ts = torch.arange(2, T + 1)
    beta, ab, ab1 = s.betas[2:], s.alpha_bars[2:], s.alpha_bars[1:-1]
    h = lambda v: 0.5 * torch.log(2 * math.pi * math.e * v)  # noqa: E731
    parts, hint = [], ""
    if not bool(ok_lo.all()):
        k = int((~ok_lo).nonzero()[0])
        parts.append(f"lower at t = {int(ts[k])} is {_fmt(lower[2 + k])}, expected {_fmt(exp_lo[2 + k])}")
        hint += _hints(
            lower[2:],
            [
                (exp_up[2:], "you returned the upper bound as the lower one: return (lower, upper).", None),
                (exp_lo[2:] / math.log(2), "entropies in nats (natural log), not bits.", None),
                (
                    2 * exp_lo[2:],
                    "the entropy of N(m, v) is 1/2 log(2 pi e v): the factor 1/2 is missing.",
                    None,
                ),
                (
                    0.5 * torch.log(beta * (1 - ab1) / (1 - ab)),
                    "the 2 pi e belongs inside the log: each of the three entropies is 1/2 log(2 pi e v).",
                    None,
                ),
                (
                    h(beta * (1 - ab) / (1 - ab1)),
                    "the signs: + H(X_{t-1}|X_0) - H(X_t|X_0), so the ratio is "
                    "(1 - abar_{t-1}) / (1 - abar_t) (beta~_t).",
                    None,
                ),
                (
                    h(beta * (1 - s.alphas[1:-1]) / (1 - s.alphas[2:])),
                    "H(X_t|X_0) uses 1 - abar_t (the product of the alphas), not 1 - alpha_t.",
                    None,
                ),
                (
                    0.5 * (1 + math.log(2 * math.pi) + 0.5 * torch.log(s.posterior_variance[2:])),
                    "the entropy takes the log of the variance, not of the standard deviation.",
                    None,
                ),
            ],
        )
    if not bool(ok_up.all()):
        k = int((~ok_up).nonzero()[0])
        parts.append(f"upper at t = {int(ts[k])} is {_fmt(upper[2 + k])}, expected {_fmt(exp_up[2 + k])}")
        hint += _hints(
            upper[2:],
            [
                (exp_lo[2:], "you returned the lower bound as the upper one: return (lower, upper).", None),
                (exp_up[2:] / math.log(2), "entropies in nats (natural log), not bits.", None),
                (
                    2 * exp_up[2:],
                    "the entropy of N(m, v) is 1/2 log(2 pi e v): the factor 1/2 is missing.",
                    None,
                ),
                (
                    0.5 * torch.log(beta),
                    "the 2 pi e belongs inside the log: H = 1/2 log(2 pi e beta_t).",
                    None,
                ),
                (
                    h(s.betas[1:-1]),
                    "upper[t] is H(X_t|X_{t-1}) = 1/2 log(2 pi e beta_t): index with t, not t - 1.",
                    None,
                ),
                (
                    0.5 * (1 + math.log(2 * math.pi) + 0.5 * torch.log(beta)),
                    "the entropy takes the log of the variance beta_t, not of the standard deviation.",
                    None,
                ),
            ],
        )
    # the same slip usually shows in both tables: name it once
    found = list(dict.fromkeys(h.strip() for h in hint.split("Likely mistake:") if h.strip()))
    hint = (" Likely mistake: " + " ".join(found)) if found else ""
    return False, f"{FAIL} entropy_bounds is off: it should be {_ENTROPY_EQ}; " + "; ".join(
        parts
    ) + "." + hint


# ---- chapter 08 ----
_RESBLOCK_EQ = (
    "the parameters of DDPM's residual block with in_ch -> out_ch channels reading a time embedding of "
    "width temb_ch: GroupNorm 2 in_ch + conv1 (9 in_ch out_ch + out_ch) + temb_proj (temb_ch out_ch + out_ch) "
    "+ GroupNorm 2 out_ch + conv2 (9 out_ch^2 + out_ch), plus a 1x1 shortcut (in_ch out_ch + out_ch) only "
    "when in_ch != out_ch (ddpm_lib.ResnetBlock)"
)
_TWO_CONVS = (
    "the block has two 3x3 convolutions (conv1: in_ch -> out_ch, conv2: out_ch -> out_ch), "
    "each after a GroupNorm."
)
_RESBLOCK_CASES = ((64, 64, 256), (64, 128, 256), (128, 128, 512), (128, 256, 512), (32, 64, 128))


def _resblock_count(in_ch: int, out_ch: int, temb_ch: int) -> int:
    from ..nets import ResnetBlock, count_parameters

    with torch.device("meta"):
        return count_parameters(ResnetBlock(in_ch, out_ch, temb_ch, dropout=0.1, groups=32))


@_checker("resnet_block_parameters", _RESBLOCK_EQ)
def check_resnet_block_parameters(fn) -> tuple:
    """``fn(in_ch, out_ch, temb_ch) -> int``: the number of trainable parameters of one residual
    block, derived from its equation; compared with ``count_parameters`` of the library's block."""
    got, expected = [], []
    for case in _RESBLOCK_CASES:
        out = _call("resnet_block_parameters", fn, *case)
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            out = out.item()
        if isinstance(out, float) and out.is_integer():
            out = int(out)
        if out is None:
            raise _Wrong("returned None: did you forget `return`?")
        if not isinstance(out, int) or isinstance(out, bool):
            raise _Wrong(f"returned a {type(out).__name__}; return the count as an int.")
        got.append(out)
        expected.append(_resblock_count(*case))
    if got == expected:
        return True, f"{PASS} resnet_block_parameters matches {_RESBLOCK_EQ}"
    i = next(k for k, (a, b) in enumerate(zip(got, expected)) if a != b)

    def mistake(f):
        return torch.tensor([float(f(*c, e)) for c, e in zip(_RESBLOCK_CASES, expected)])

    skip = lambda i_, o: (i_ * o + o) if i_ != o else 0  # noqa: E731
    candidates = [
        (
            mistake(lambda i_, o, te, e: e - 2 * i_ - 2 * o),
            "each GroupNorm has a scale and a shift per channel (2 in_ch + 2 out_ch in all).",
            None,
        ),
        (
            mistake(lambda i_, o, te, e: e - skip(i_, o)),
            "when in_ch != out_ch the shortcut is a 1x1 "
            "convolution with in_ch out_ch weights and out_ch biases.",
            None,
        ),
        (
            mistake(lambda i_, o, te, e: e + (0 if i_ != o else i_ * o + o)),
            "the shortcut is the identity (no parameters) when in_ch == out_ch.",
            None,
        ),
        (
            mistake(lambda i_, o, te, e: e - te * o - o),
            "the time embedding enters through a dense layer temb_proj: temb_ch -> out_ch, with its biases.",
            None,
        ),
        (
            mistake(lambda i_, o, te, e: e - 3 * o - (o if i_ != o else 0)),
            "every convolution and dense layer has one bias per output channel.",
            None,
        ),
        (
            mistake(lambda i_, o, te, e: e - 6 * i_ * o - 6 * o * o),
            "a 3x3 convolution from C to C' "
            "channels has 9 C C' weights (3 x 3 taps for every pair of channels).",
            None,
        ),
        (mistake(lambda i_, o, te, e: e - 9 * o * o - o - 2 * o), _TWO_CONVS, None),
        (mistake(lambda i_, o, te, e: e - 9 * o * o - o), _TWO_CONVS, None),
    ]
    case = dict(zip(("in_ch", "out_ch", "temb_ch"), _RESBLOCK_CASES[i]))
    detail = (
        f"for {', '.join(f'{k} = {v}' for k, v in case.items())} yours is {got[i]:,}, "
        f"expected {expected[i]:,} (count_parameters(ResnetBlock(...)))"
    )
    return _off(
        "resnet_block_parameters", _RESBLOCK_EQ, detail, torch.tensor([float(v) for v in got]), candidates
    )


# ---- chapter 13 ----
_MIXED_NOISE_EQ = (
    "the variance per coordinate of the noise part (1 - lambda) eps + lambda eps' of the linearly mixed "
    "latent, for unit-variance eps and eps' with correlation rho: (1 - lambda)^2 + lambda^2 + "
    "2 lambda (1 - lambda) rho (Var(aX + bY) = a^2 Var X + b^2 Var Y + 2 a b Cov(X, Y))"
)


@_checker("mixed_noise_variance", _MIXED_NOISE_EQ)
def check_mixed_noise_variance(fn) -> tuple:
    """``fn(lam, rho) -> v`` elementwise for tensors lam and rho of the same shape (float64)."""
    lam = torch.tensor([0.0, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0, 0.3, 0.6], dtype=torch.float64)
    rho = torch.tensor([0.0, 0.0, 0.0, 1.0, -1.0, 0.5, 0.3, -0.4, 0.8], dtype=torch.float64)
    got = _tensor("mixed_noise_variance", _call("mixed_noise_variance", fn, lam, rho), lam.shape, "v")
    a, b = 1 - lam, lam
    expected = a**2 + b**2 + 2 * a * b * rho
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} mixed_noise_variance matches {_MIXED_NOISE_EQ}"
    i = int((~ok).nonzero()[0])
    candidates = [
        (
            a**2 + b**2,
            "the two noises are correlated: add the covariance term 2 lambda (1 - lambda) rho.",
            None,
        ),
        (
            a**2 + b**2 + a * b * rho,
            "Var(aX + bY) has the cross term 2 a b Cov(X, Y), with the factor 2.",
            None,
        ),
        (
            a**2 + b**2 + 2 * a * b * rho**2,
            "the covariance of two unit-variance noises is rho, not rho^2.",
            None,
        ),
        (a + b + 2 * a * b * rho, "scaling a noise by a multiplies its variance by a^2, not a.", None),
        (expected.sqrt(), "that is a standard deviation; the question asks for the variance.", None),
        (
            torch.ones_like(lam),
            "the mix keeps unit variance only when the noises are the same (rho = 1).",
            None,
        ),
    ]
    return _off(
        "mixed_noise_variance",
        _MIXED_NOISE_EQ,
        f"at lambda = {float(lam[i]):g}, rho = {float(rho[i]):g} yours is {_fmt(got[i])}, "
        f"expected {_fmt(expected[i])}",
        got,
        candidates,
    )
