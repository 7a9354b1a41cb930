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
- ``gaussian_elbo``: ``fn(x, m, s2, w, b, sigma2) -> ELBO`` of the 1-D linear-Gaussian VAE, elementwise (chapter 01);
- ``forward_step``: ``fn(x_prev, beta, noise) -> x_t``, one step of the forward chain (DDPM Eq. 2; chapter 01);
- ``chain_variance``: ``fn(v0, beta, t) -> Var(x_t)`` after t steps with a constant beta (chapter 01);
- ``prior_term_bits``: ``fn(alpha_bar_T, x0_sq_mean) -> L_T`` in bits per dimension, exact (chapter 03);
- ``smallest_T``: ``fn(target_bits, x0_sq_mean, beta_1, beta_T) -> T``, the fewest linear-schedule steps whose
  L_T meets the target (chapter 03).
- ``x0_mse_weight``: ``fn(t, schedule, sigma2) -> lambda`` (B,), the weight of L_(t-1) on ||x_0 - x0_theta||^2
  for a fixed variance sigma_t^2, 1/2 (SNR(t-1) - SNR(t)) when sigma_t^2 = beta~_t (DDPM Eqs. 7-12; chapter 06);
- ``sigma_for_bits``: ``fn(bits) -> sigma``, the decoder's sigma at which a value it is centred on costs
  ``bits`` bits (DDPM Eq. 13; chapter 07).
- ``entropy_terms``: ``fn(schedule) -> float``, H_q(X^T|X^0) - H_q(X^1|X^0) - H_p(X^T) of Sohl-Dickstein et al.
  2015, Eq. 14 (chapter 02);
- ``two_estimates``: ``fn(log_w) -> (log_p, K)``, the estimates of log p(x^0) (Eq. 9) and K (Eq. 12) from log
  importance weights (M, n) (chapter 02);
- ``lognormal_gap``: ``fn(mu, var) -> gap``, the Jensen gap log E[w] - E[log w] of a log-normal weight (chapter 02);
- ``variance_choice``: ``fn(data) -> "beta" | "beta_tilde"``, which fixed reverse variance gives the smaller
  L_{t-1} at small t for one-point data and for N(0, 1) data (DDPM Sec. 3.2; chapter 04).
- ``ddim_eta_step``: ``fn(eps_pred, x_t, t, t_prev, alpha_bars, eta, noise) -> x_(t_prev)``, DDIM's step with
  noise level eta (Song et al. 2021, Eqs. 12 and 16; chapter 14's project 14.8);
- ``noisy_batch``: ``fn(x0, diffusion, generator) -> (x_t, t)``, a noise-conditioned classifier's training input
  (Algorithm 1, lines 3-4), checked by its statistics; ``noisy_classifier``: a measured target, a classifier
  ``clf(x_t, t) -> logits`` within 0.05 nats of the exact p(y | x_t) of :mod:`ddpm_lib.course.projects`' mixture;
  ``guided_eps``: ``fn(eps_pred, x_t, t, y, classifier, alpha_bars, scale) -> eps_hat`` (Dhariwal & Nichol
  2021, Sec. 4.2) (chapter 14's project 14.9);
- ``repaint``: ``fn(model, diffusion, x_known, mask, U, generator) -> x_0``, RePaint's resampling loop (Lugmayr
  et al. 2022, Algorithm 1), a measured target against ``inpaint(..., resample=U)`` (chapter 14's project 14.10).
- ``min_eps_loss``: ``fn(alpha_bar, s2) -> loss``, the smallest L_simple per dimension at a step, for data
  N(0, s2 I): alpha_bar s2 / (alpha_bar s2 + 1 - alpha_bar) (chapter 11: a loss's size is not a step's difficulty).
- ``window_r_t_grad``: ``fn(x, alpha_bar, c, w) -> grad``, grad log r_t for r_t = E[r(x_0) | x_t] with a Gaussian
  window r on N(0, 1) data (Sohl-Dickstein et al. 2015, Sec. 2.5; chapter 12).
- ``l_simple_float32``: ``l_simple`` again, then on float32 images and a float32 network with the float64 tables a
  ``NoiseSchedule`` holds (the U-Net refuses float64 input; chapter 09);
- ``x0_mse_from_eps_mse``: ``fn(eps_mse, t, alpha_bars) -> (B,)``, the squared error of the predicted x_0 that an
  eps error implies, (1 - abar_t) / abar_t times it (DDPM Eq. 4 solved for x_0; chapter 09);
- ``clipped_mean``: ``fn(eps_pred, x_t, t, schedule) -> mean`` of p(x_{t-1} | x_t) with the predicted x_0 clipped to
  [-1, 1] before Eq. 7's posterior mean is formed (``clip_x0=True``; chapter 10).
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
is ``(the result a known mistake gives, its hint, mask of examples or None)``; pass ``expected=`` (and
the tolerance used) to ``_off`` so that the message also gives the worst element's relative error
against the tolerance and, when no candidate fits, the common slip that does (``_slips``: nats vs bits,
a flipped sign, a factor of 2, close but not exact). For a number or tensor
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
from .replay import MAX_SIGNIFICANT

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
    "check_gaussian_elbo",
    "check_forward_step",
    "check_chain_variance",
    "check_prior_term_bits",
    "check_smallest_T",
    "check_x0_mse_weight",
    "check_sigma_for_bits",
    "check_entropy_terms",
    "check_two_estimates",
    "check_lognormal_gap",
    "check_variance_choice",
    "check_ddim_eta_step",
    "check_noisy_batch",
    "check_noisy_classifier",
    "check_guided_eps",
    "check_repaint",
    "check_min_eps_loss",
    "check_window_r_t_grad",
    "check_l_simple_float32",
    "check_x0_mse_from_eps_mse",
    "check_clipped_mean",
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
    """Compare a number or tensor a student computed with the expected one (for value exercises).

    Passes when every element is within ``atol + rtol * |expected|`` (NaN equals NaN). A failure says
    what it should be, yours against the expected value with the relative error and the tolerance
    (``yours 7.278e-06, expected 7.279e-06: relative error 1.4e-04, tolerance rtol 1e-06, atol 1e-08``;
    for a tensor, the worst element), and names the common slip it fits (:func:`_slips`): a ratio of
    ln 2 (nats vs bits), a flipped sign, a factor of 2, or a value within a few percent (an
    approximation where the exact value is asked).

    ``value`` may be a function of no arguments that computes it (``lambda: my_fn(x)``): it is called
    here, so an exercise not done yet (NotImplementedError) or failing gets a message, not a traceback."""
    if callable(value):
        try:
            value = _call(name, value)
        except _Wrong as e:
            return _finish(
                name, False, f"{FAIL} {name}: {e} It should be {equation}.", verbose, raise_on_failure
            )
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
    digits = _digits(got, exp)
    g, e = (_fmt(x, digits) for x in (got, exp))
    return _finish(
        name,
        False,
        f"{FAIL} {name} is off: it should be {equation}; yours {g}, expected {e}: "
        f"{_tolerance_text(got, exp, rtol, atol)}." + _slip_text(got, exp, rtol, atol),
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


def _worst(got: torch.Tensor, exp: torch.Tensor, rtol: float, atol: float) -> int:
    """The flat index of the element furthest outside the tolerance (a non-finite one first)."""
    g, e = got.flatten(), exp.flatten()
    excess = (g - e).abs() / (atol + rtol * e.abs()).clamp(min=1e-300)
    bad = ~(torch.isfinite(g) == torch.isfinite(e))
    excess = torch.where(bad | torch.isnan(excess), torch.full_like(excess, math.inf), excess)
    same_nan = torch.isnan(g) & torch.isnan(e)
    excess = torch.where(same_nan, torch.zeros_like(excess), excess)
    return int(excess.argmax())


def _rel_error(got: torch.Tensor, exp: torch.Tensor, i: int) -> float:
    g, e = float(got.flatten()[i]), float(exp.flatten()[i])
    return abs(g - e) / abs(e) if e != 0 else math.inf


def _digits(got: torch.Tensor, exp: torch.Tensor, rtol: float = 0.0, atol: float = 0.0) -> int:
    """Enough significant digits that the worst element of ``got`` and ``exp`` print differently, one
    beyond the first that differs and at most 7 (``replay.MAX_SIGNIFICANT``): a digit further down is
    float32's or the CPU's, and a stored message must replay on any computer. Closer values than that
    differ in the printed relative error."""
    rel = _rel_error(got, exp, _worst(got, exp, max(rtol, 1e-300), atol))
    if not math.isfinite(rel) or rel <= 0:
        return 4
    return int(min(MAX_SIGNIFICANT, max(4, math.ceil(-math.log10(rel)) + 1)))


def _tol(rtol: float, atol: float) -> str:
    parts = [f"rtol {rtol:.0e}"] if rtol else []
    parts += [f"atol {atol:.0e}"] if atol or not rtol else []
    return "tolerance " + ", ".join(parts)


def _tolerance_text(got: torch.Tensor, exp: torch.Tensor, rtol: float, atol: float) -> str:
    """``relative error 1.4e-04, tolerance rtol 1e-06, atol 1e-08`` for one number; for a tensor, the
    element furthest outside the tolerance (``worst element (1, 0): yours 0.5493, expected -0.0901,
    relative error 7.1e+00; tolerance ...``)."""
    got, exp = got.double(), exp.double()
    i = _worst(got, exp, rtol, atol)
    g, e = float(got.flatten()[i]), float(exp.flatten()[i])
    if not math.isfinite(g):
        err = f"yours is {g}"
    elif e == 0:
        err = f"absolute error {abs(g):.1e} where 0 is expected"
    else:
        err = f"relative error {_rel_error(got, exp, i):.1e}"
    if got.numel() == 1:
        return f"{err}, {_tol(rtol, atol)}"
    idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), got.shape))
    d = _digits(got.flatten()[i : i + 1], exp.flatten()[i : i + 1])
    where = idx if len(idx) > 1 else idx[0]
    err = err.replace(f"yours is {g}", "not finite")
    return f"worst element {where}: yours {_fmt(g, d)}, expected {_fmt(e, d)}, {err}; {_tol(rtol, atol)}"


def _slip_text(got: torch.Tensor, exp: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> str:
    """`` Likely slip: ...`` for the slips of :func:`_slips`, or an empty string."""
    slips = _slips(got, exp, rtol, atol)
    return (" Likely slip: " + " ".join(slips)) if slips else ""


#: a value within this relative distance of the expected one (but outside the tolerance) is "close"
CLOSE_RTOL = 0.05


def _slips(got: torch.Tensor, exp: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> list:
    """The common slips that ``got`` fits against ``exp`` (shapes equal), as sentences: a ratio of ln 2
    either way (nats vs bits), a flipped sign, a factor of 2 either way, or every element within
    :data:`CLOSE_RTOL` (an approximation, or float32, where the exact value is asked)."""
    got, exp = got.double().flatten(), exp.double().flatten()
    nz = exp != 0
    if not bool(torch.isfinite(got).all()) or not bool(torch.isfinite(exp).all()) or not bool(nz.any()):
        return []
    tol = max(rtol, 1e-6)  # a slip made in exact arithmetic gives the ratio to about float64 round-off

    def ratio_is(c: float) -> bool:
        return bool(torch.isclose(got[nz], c * exp[nz], rtol=tol, atol=0).all()) and bool(
            (got[~nz].abs() <= atol).all()
        )

    ln2 = math.log(2)
    if ratio_is(ln2):
        return [
            "yours is the expected value times ln 2: nats vs bits? (a value in nats divided by ln 2 is in bits; "
            "the expected one is in bits)"
        ]
    if ratio_is(1 / ln2):
        return [
            "yours is the expected value divided by ln 2: nats vs bits? (bits times ln 2 are nats; the expected "
            "one is in nats)"
        ]
    if ratio_is(-1.0):
        return [
            "yours has the opposite sign: a sign slip (log p for -log p, or a difference taken the wrong way)?"
        ]
    if ratio_is(2.0):
        return ["yours is twice the expected value: a factor of 2 (a missing 1/2)?"]
    if ratio_is(0.5):
        return ["yours is half the expected value: a factor of 2 (a 1/2 too many)?"]
    rel = ((got[nz] - exp[nz]).abs() / exp[nz].abs()).max()
    if bool((got[~nz].abs() <= atol).all()) and float(rel) <= CLOSE_RTOL:
        fp32 = (
            " (a relative error this small is float32 round-off: compute in float64)"
            if float(rel) <= 2 * torch.finfo(torch.float32).eps
            else ""
        )
        within = f"{100 * float(rel):.2g}%" if float(rel) >= 1e-4 else f"{float(rel):.1e} relative"
        return [
            f"close (within {within}, outside the tolerance): an approximation where the exact value is "
            f"asked?{fp32}"
        ]
    return []


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


def _off(
    name: str,
    equation: str,
    detail: str,
    got: torch.Tensor,
    candidates,
    expected: Optional[torch.Tensor] = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> tuple:
    """A failed check's ``(False, message)``: what it should compute, where the student's result
    differs (``detail``), and the likely mistakes among ``candidates`` that ``got`` matches. With
    ``expected`` (the right result, shaped as ``got``), also the largest relative error against the
    tolerance (``rtol``, ``atol``: the ones the check used) and, when no candidate matches, the common
    slip it fits (:func:`_slips`: nats vs bits, a sign, a factor of 2, close but not exact)."""
    hint = _hints(got, candidates)
    tol = ""
    if expected is not None and tuple(expected.shape) == tuple(got.shape):
        tol = "; " + _tolerance_text(got, expected, rtol, atol)
        hint = hint or _slip_text(got, expected, rtol, atol)
    return False, f"{FAIL} {name} is off: it should be {equation}; {detail}{tol}." + hint


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
        expected=expected,
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
    return _off("q_sample", _Q_EQ, "; ".join(parts), got, candidates, expected=expected)


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
    if not bool(ok_m.all()):
        parts.append("the mean's " + _tolerance_text(mean, ref.mean, RTOL, ATOL))
    if not bool(ok_v.all()):
        parts.append("the variance's " + _tolerance_text(var, ref.variance, RTOL, ATOL))
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
        hint += _hints(mean, mean_cands) or _slip_text(mean, ref.mean)
    if not bool(ok_v.all()):
        hint += _hints(var, var_cands) or _slip_text(var, ref.variance)
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
    return _off("normal_kl", _KL_EQ, "; ".join(parts), got, candidates, expected=expected)


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
    return _off("discretized_log_likelihood", _DEC_EQ, "; ".join(parts), got, candidates, expected=exact)


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
    nearer = exp_large if (got - exp_large).abs().max() <= (got - exp_small).abs().max() else exp_small
    return _off("p_sample_step", _STEP_EQ, msg, got, candidates, expected=nearer)


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
    return _off("mean_from_eps", _EPS_MEAN_EQ, msg, got, candidates, expected=expected)


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
        tol_text = _tolerance_text(got, expected, tol["rtol"], tol["atol"])
        return False, f"{FAIL} timestep_embedding is off: it should be {_TEMB_EQ}; {msg}; {tol_text}." + hint
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
    return _off("l_simple", _LSIMPLE_EQ, msg, got, candidates, expected=expected)


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
        expected=expected,
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
        expected=expected,
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
        expected=expected,
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
        f"{_fmt(got[i])}, expected {_fmt(expected[i])}; {_tolerance_text(got, expected, RTOL, ATOL)}.{extra}"
        + (hint or _slip_text(got, expected))
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
            expected=expected,
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
    hint = _hints(got, candidates) or _slip_text(got, exp)
    return False, (
        f"{FAIL} perturbed_mean is off for {name}: it should be {_PERTURB_EQ}; at element {i} "
        f"(mu = {_fmt(mean[i])}, Sigma = {_fmt(var[i[0], 0, 0])}) yours is {_fmt(got[i])}, expected "
        f"{_fmt(exp[i])}; {_tolerance_text(got, exp, RTOL, ATOL)}.{hint}"
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
        parts.append(
            f"lower at t = {int(ts[k])} is {_fmt(lower[2 + k])}, expected {_fmt(exp_lo[2 + k])} ("
            + _tolerance_text(lower[2 + k : 3 + k], exp_lo[2 + k : 3 + k], RTOL, ATOL)
            + ")"
        )
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
        parts.append(
            f"upper at t = {int(ts[k])} is {_fmt(upper[2 + k])}, expected {_fmt(exp_up[2 + k])} ("
            + _tolerance_text(upper[2 + k : 3 + k], exp_up[2 + k : 3 + k], RTOL, ATOL)
            + ")"
        )
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


# ---- chapter 01 ----
_ELBO_EQ = (
    "ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) with E_q[log p(x|z)] = -1/2 log(2 pi sigma2) - "
    "((x - w m - b)^2 + w^2 s2) / (2 sigma2) and KL(N(m, s2) || N(0, 1)) = 1/2 (m^2 + s2 - 1 - log s2), "
    "elementwise; it equals log p(x) - KL(q(z|x) || p(z|x)) (chapter 01, section 1)"
)


@_checker("gaussian_elbo", _ELBO_EQ)
def check_gaussian_elbo(fn) -> tuple:
    """``fn(x, m, s2, w, b, sigma2) -> ELBO`` elementwise, for the 1-D linear-Gaussian model p(z) = N(0, 1),
    p(x|z) = N(w z + b, sigma2) and the encoder q(z|x) = N(m, s2); compared with Route 2,
    log p(x) - KL(q(z|x) || p(z|x)), on 50 random settings."""
    g = _gen(11)
    x, m, w, b = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(4))
    s2, sig2 = (torch.rand(50, generator=g, dtype=torch.float64) * 2 + 0.05 for _ in range(2))
    got = _tensor("gaussian_elbo", _call("gaussian_elbo", fn, x, m, s2, w, b, sig2), (50,), "the ELBO")
    post_m, post_v = w * (x - b) / (w**2 + sig2), sig2 / (w**2 + sig2)
    expected = gaussian_log_likelihood(x, b, torch.log(w**2 + sig2)) - normal_kl(
        m, s2.log(), post_m, post_v.log()
    )
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} gaussian_elbo matches {_ELBO_EQ}"
    recon = -0.5 * torch.log(2 * math.pi * sig2) - ((x - w * m - b) ** 2 + w**2 * s2) / (2 * sig2)
    kl = 0.5 * (m**2 + s2 - 1 - torch.log(s2))
    candidates = [
        (recon + kl, "the KL term is subtracted: ELBO = reconstruction - KL(q(z|x) || p(z)).", None),
        (
            recon + w**2 * s2 / (2 * sig2) - kl,
            "the term -w^2 s2 / (2 sigma2) is missing: under z = m + s eps, E_q[(x - w z - b)^2] = "
            "(x - w m - b)^2 + w^2 s2, so the encoder's spread adds to the squared error.",
            None,
        ),
        (
            recon - 0.5 * (m**2 + s2 - torch.log(s2)),
            "the -1 in the KL is missing (check: KL(N(0, 1) || N(0, 1)) = 0).",
            None,
        ),
        (
            recon - 0.5 * (m**2 + s2 - 1 + torch.log(s2)),
            "the sign of log s2 in the KL: it is 1/2 (m^2 + s2 - 1 - log s2).",
            None,
        ),
        (
            recon + 0.25 * torch.log(sig2) - kl,
            "the normalizer is -1/2 log(2 pi sigma2), with the variance sigma2 inside the log (not sigma).",
            None,
        ),
    ]
    i = int((~ok).nonzero()[0])
    detail = (
        f"at x = {_fmt(x[i])}, m = {_fmt(m[i])}, s2 = {_fmt(s2[i])}, w = {_fmt(w[i])}, b = {_fmt(b[i])}, "
        f"sigma2 = {_fmt(sig2[i])} yours is {_fmt(got[i])} (expected {_fmt(expected[i])})"
    )
    return _off("gaussian_elbo", _ELBO_EQ, detail, got, candidates)


_FWD_STEP_EQ = (
    "x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, with one beta_t per example reshaped to "
    "(B, 1, ..., 1) (DDPM Eq. 2, reparameterized)"
)


@_checker("forward_step", _FWD_STEP_EQ)
def check_forward_step(fn) -> tuple:
    """``fn(x_prev, beta, noise) -> x_t``: x_prev and noise of shape (B, ...), beta of shape (B,); compared
    with ``GaussianDiffusion.q_step`` on a coarse schedule (betas up to 0.2, so every slip shows)."""
    s = _schedule()
    g = _gen(12)
    t = torch.tensor([1, 10, 30, 50, 99, 100])
    x_prev = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    beta = s.betas[t]
    got = _tensor("forward_step", _call("forward_step", fn, x_prev, beta, eps), x_prev.shape, "x_t")
    expected = GaussianDiffusion(s).q_step(x_prev, t, eps)
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} forward_step matches {_FWD_STEP_EQ}"
    bb = _bcast(beta, x_prev)
    candidates = [
        (
            (1 - bb).sqrt() * x_prev + bb * eps,
            "beta_t is the variance of the added noise: multiply eps by its square root sqrt(beta_t).",
            None,
        ),
        (
            (1 - bb) * x_prev + bb.sqrt() * eps,
            "scale x_{t-1} by sqrt(1 - beta_t), not 1 - beta_t: then the variance stays 1 for unit-variance data.",
            None,
        ),
        (
            x_prev + bb.sqrt() * eps,
            "x_{t-1} must be scaled by sqrt(1 - beta_t) (without it the variance grows at every step).",
            None,
        ),
    ]
    i = int((~ok).nonzero()[0])
    detail = f"at beta_t = {_fmt(beta[i])} your x_t[{i}] is {_fmt(got[i])} (expected {_fmt(expected[i])})"
    return _off("forward_step", _FWD_STEP_EQ, detail, got, candidates)


_CHAINVAR_EQ = (
    "Var(x_t) = (1 - beta)^t v0 + 1 - (1 - beta)^t, from Var(x_t) = (1 - beta) Var(x_(t-1)) + beta "
    "for x_t = sqrt(1 - beta) x_(t-1) + sqrt(beta) eps with eps independent of x_(t-1)"
)


_CHAINVAR_TASK = (
    "Var(x_t) after t steps of x_t = sqrt(1 - beta) x_(t-1) + sqrt(beta) eps, eps independent of x_(t-1): "
    "solve the recursion Var(x_t) = (1 - beta) Var(x_(t-1)) + beta from Var(x_0) = v0"
)


@_checker("chain_variance", _CHAINVAR_TASK)
def check_chain_variance(fn) -> tuple:
    """``fn(v0, beta, t) -> Var(x_t)`` elementwise: 1-D data of variance v0, t steps of a chain with a constant
    beta (t = 0 gives v0). Tensors of shape (40,), t a LongTensor."""
    g = _gen(13)
    n = 40
    v0 = torch.rand(n, generator=g, dtype=torch.float64) * 4 + 0.05
    beta = torch.rand(n, generator=g, dtype=torch.float64) * 0.3 + 0.01
    t = torch.randint(0, 41, (n,), generator=g)
    t[:3] = torch.tensor([0, 1, 2])
    got = _tensor("chain_variance", _call("chain_variance", fn, v0, beta, t), (n,), "the variance")
    keep = (1 - beta) ** t
    expected = keep * v0 + 1 - keep
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} chain_variance matches {_CHAINVAR_EQ}"
    half = (1 - beta) ** (t / 2)
    candidates = [
        (
            v0 + t * beta,
            "each step also multiplies the variance that is already there by (1 - beta): "
            "Var(x_t) = (1 - beta) Var(x_(t-1)) + beta.",
            None,
        ),
        (
            keep * v0 + t * beta,
            "the noise added at step s is shrunk by the t - s steps after it: the noise variance is "
            "beta (1 + (1 - beta) + ... + (1 - beta)^(t-1)), a geometric sum.",
            None,
        ),
        (
            half * v0 + 1 - half,
            "the factor sqrt(1 - beta) multiplies x, so (1 - beta), its square, multiplies the variance.",
            None,
        ),
        (keep * v0, "the added noise is missing: each step adds beta to the variance.", None),
        (
            (1 - beta) ** (t - 1) * v0 + 1 - (1 - beta) ** (t - 1),
            "t steps give the power t (check t = 1: (1 - beta) v0 + beta).",
            None,
        ),
    ]
    i = int((~ok).nonzero()[0])
    detail = (
        f"for v0 = {_fmt(v0[i])}, beta = {_fmt(beta[i])}, t = {int(t[i])} yours is {_fmt(got[i])} "
        f"(expected {_fmt(expected[i])})"
    )
    return _off("chain_variance", _CHAINVAR_TASK, detail, got, candidates)


# ---- chapter 03 ----
_LT_BITS_EQ = (
    "L_T per dimension in bits = 1/2 (abar_T E[x_0^2] - abar_T - log(1 - abar_T)) / ln 2, the average over "
    "the data of KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1)), elementwise (exact, not the "
    "approximation for small abar_T)"
)


@_checker("prior_term_bits", _LT_BITS_EQ)
def check_prior_term_bits(fn) -> tuple:
    """``fn(alpha_bar_T, x0_sq_mean) -> L_T`` in bits per dimension, elementwise (broadcasting); compared with
    ``NoiseSchedule.prior_kl`` on nine schedules (linear, quadratic, cosine at T = 10, 100, 1000) and three
    values of E[x_0^2], to relative 1e-6 (so the small-abar_T approximation, off by about abar_T / 2
    relative, is refused)."""
    ln2 = math.log(2.0)
    makers = [NoiseSchedule.linear, NoiseSchedule.quadratic, NoiseSchedule.cosine]
    schedules = [mk(T=T, warn=False) for mk in makers for T in (10, 100, 1000)]
    sq = torch.tensor([0.68, 0.25, 1.0], dtype=torch.float64)
    ab = torch.tensor([float(s.alpha_bars[-1]) for s in schedules], dtype=torch.float64)
    expected = torch.tensor(
        [[s.prior_kl(float(v)) / ln2 for v in sq] for s in schedules], dtype=torch.float64
    )
    got = _tensor(
        "prior_term_bits", _call("prior_term_bits", fn, ab[:, None], sq[None, :]), expected.shape, "L_T"
    )
    rtol = 1e-6
    ok = _close(got, expected, rtol=rtol, atol=1e-300)
    if bool(ok.all()):
        return True, f"{PASS} prior_term_bits matches {_LT_BITS_EQ}"
    A, S = ab[:, None], sq[None, :]
    nats = expected * ln2
    approx = 0.5 * A * S / ln2
    candidates = [
        (
            nats,
            "that is L_T in nats; divide by ln 2 for bits (your values are ln 2 = 0.693 times the expected).",
            None,
        ),
        (
            approx,
            "that is the approximation 1/2 abar_T E[x_0^2] / ln 2 for abar_T << 1; the exercise asks for the "
            "exact value, -abar_T - log(1 - abar_T) included (use torch.log1p(-abar_T) for accuracy).",
            None,
        ),
        (
            approx * ln2,
            "that is the small-abar_T approximation, in nats: the exact value in bits is asked.",
            None,
        ),
        (2 * expected, "the factor 1/2 is missing.", None),
        (expected * 784, "per dimension: do not sum over the 784 pixels of an image.", None),
    ]
    i, j = (int(k) for k in (~ok).nonzero()[0])
    rel = abs(float(got[i, j] / expected[i, j]) - 1) if float(expected[i, j]) != 0 else float("inf")
    detail = (
        f"for abar_T = {_fmt(ab[i])}, E[x_0^2] = {_fmt(sq[j])} yours is {_fmt(got[i, j], 7)} (expected "
        f"{_fmt(expected[i, j], 7)}: relative error {rel:.1e}, tolerance {rtol:.0e})"
    )
    return _off("prior_term_bits", _LT_BITS_EQ, detail, got, candidates)


_SMALLEST_T_EQ = (
    "the smallest T for which the linear schedule from beta_1 to beta_T over T steps has "
    "L_T = 1/2 (abar_T E[x_0^2] - abar_T - log(1 - abar_T)) / ln 2 <= the target, in bits per dimension "
    "(L_T falls as T grows)"
)


def _lt_bits_linear(T: int, x0_sq: float, beta_1: float, beta_T: float) -> float:
    s = NoiseSchedule.linear(T=T, beta_start=beta_1, beta_end=beta_T, warn=False)
    return s.prior_kl(x0_sq) / math.log(2.0)


def _smallest_T(target: float, x0_sq: float, beta_1: float, beta_T: float) -> int:
    lo, hi = 2, 2
    while _lt_bits_linear(hi, x0_sq, beta_1, beta_T) > target:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _lt_bits_linear(mid, x0_sq, beta_1, beta_T) <= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@_checker("smallest_T", _SMALLEST_T_EQ)
def check_smallest_T(fn) -> tuple:
    """``fn(target_bits, x0_sq_mean, beta_1, beta_T) -> T`` (an int): the smallest number of steps of the linear
    schedule with those ends whose L_T is at most ``target_bits`` bits per dimension. Tried on three cases,
    the first DDPM's ends, Fashion-MNIST's E[x_0^2] = 0.68 and DDPM's L_T of 1e-5 bits/dim."""
    cases = [(1e-5, 0.68, 1e-4, 0.02), (1e-3, 0.68, 1e-4, 0.02), (1e-4, 1.0, 1e-3, 0.05)]
    answers = []
    for target, sq, b1, bT in cases:
        where = f"for target {target:g} bits/dim, E[x_0^2] = {sq}, beta_1 = {b1:g}, beta_T = {bT:g}"
        out = _call("smallest_T", fn, target, sq, b1, bT)
        if out is None:
            raise _Wrong("returned None: did you forget `return`?")
        try:
            T = int(out)
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong(f"returned a {type(out).__name__}, expected an integer T.") from None
        if T != float(out):
            raise _Wrong(f"{where} it returned {out}, not a whole number of steps.")
        want = _smallest_T(target, sq, b1, bT)
        answers.append(want)
        if T == want:
            continue
        hints = []
        if T == _smallest_T(target / math.log(2.0), sq, b1, bT):
            hints.append(
                "your L_T is in nats while the target is in bits: divide the nats by ln 2 (or compare with "
                "target * ln 2)."
            )
        if T == want - 1:
            hints.append(
                "one step short: the smallest T with L_T <= target is asked, not the largest above it."
            )
        if T == want + 1:
            hints.append("one step too many: T - 1 already meets the target.")
        est = math.ceil(2 * math.log(sq / (2 * math.log(2.0) * target)) / (b1 + bT))
        if T == est:
            hints.append(
                "that is the estimate from abar_T ~ exp(-T (beta_1 + beta_T) / 2) and L_T ~ abar_T E[x_0^2] / "
                "(2 ln 2): a good first guess, but the exact L_T of NoiseSchedule.linear(...) decides."
            )
        if not 1 <= T <= 10**6:
            raise _Wrong(f"{where} it returned T = {T}; a number of steps is a positive integer.")
        # say which way the answer is off, not the answer (the exercise is to find it)
        lt = _lt_bits_linear(T, sq, b1, bT)
        if lt > target:
            why = f"L_T = {_fmt(lt)} bits/dim there is above the target: more steps are needed"
        else:
            why = (
                f"L_T = {_fmt(lt)} bits/dim there meets the target, but so does T = {T - 1} "
                f"(L_T = {_fmt(_lt_bits_linear(T - 1, sq, b1, bT))}): fewer steps suffice"
            )
        return False, (
            f"{FAIL} smallest_T is off: it should be {_SMALLEST_T_EQ}; {where} yours is T = {T}: {why}."
            + (" Likely mistake: " + " ".join(hints) if hints else "")
        )
    return True, (
        f"{PASS} smallest_T matches {_SMALLEST_T_EQ}: T = {answers[0]} for DDPM's ends, Fashion-MNIST and "
        f"1e-5 bits/dim (T = {answers[1]} for 1e-3 bits/dim)"
    )


# ---- chapter 06 ----
_X0_W_EQ = (
    "the weight lambda_t with L_(t-1) - C = lambda_t ||x_0 - x0_theta||^2 for a fixed variance sigma_t^2: "
    "lambda_t = c_t^2 / (2 sigma_t^2) with c_t = sqrt(abar_(t-1)) beta_t / (1 - abar_t) (mu~_t - mu_theta = "
    "c_t (x_0 - x0_theta)), i.e. Eq. 12's w_t times SNR(t) = abar_t / (1 - abar_t); for sigma_t^2 = beta~_t it is "
    "1/2 (SNR(t-1) - SNR(t)) (DDPM Eqs. 7, 8 and 12)"
)


@_checker("x0_mse_weight", _X0_W_EQ)
def check_x0_mse_weight(fn) -> tuple:
    """``fn(t, schedule, sigma2) -> lambda`` of shape (B,): the weight of the bound's term L_(t-1) on the
    squared error of the predicted x_0, for t in 2..T and the reverse variances ``sigma2`` (B,) at those t.
    Checked with sigma_t^2 = beta_t, beta~_t and a value between them (relative tolerance 1e-5)."""
    s = _schedule()
    t = torch.tensor([2, 3, 10, 37, 64, 100])
    b, a, ab, ab1 = s.betas[t], s.alphas[t], s.alpha_bars[t], s.alpha_bars[t - 1]
    snr, snr1 = s.snr[t], s.snr[t - 1]
    for label, sigma2 in (
        ("beta~_t", s.posterior_variance[t]),
        ("beta_t", b),
        ("sqrt(beta_t beta~_t)", (b * s.posterior_variance[t]).sqrt()),
    ):
        got = _tensor("x0_mse_weight", _call("x0_mse_weight", fn, t, s, sigma2.clone()), t.shape, "lambda")
        expected = s.posterior_mean_coef1[t] ** 2 / (2 * sigma2)
        ok = _close(got, expected)
        if bool(ok.all()):
            continue
        i = int((~ok).nonzero()[0])
        w_eps = b**2 / (2 * sigma2 * a * (1 - ab))
        tm1 = t - 1
        cands = [
            (
                w_eps,
                "that is Eq. 12's weight of ||eps - eps_theta||^2; in x_0 space eps - eps_theta = "
                "sqrt(SNR(t)) (x0_theta - x_0), so multiply by SNR(t) = abar_t / (1 - abar_t).",
                None,
            ),
            (w_eps / snr, "divide the other way: ||eps - eps_theta||^2 = SNR(t) ||x_0 - x0_theta||^2.", None),
            (w_eps * snr.sqrt(), "square the factor: SNR(t), not sqrt(SNR(t)).", None),
            (
                0.5 * (snr1 - snr),
                "1/2 (SNR(t-1) - SNR(t)) holds only for sigma_t^2 = beta~_t; for another sigma_t^2 it is "
                "scaled by beta~_t / sigma_t^2.",
                None,
            ),
            (2 * expected, "the KL carries 1 / (2 sigma_t^2): the factor 1/2 is missing.", None),
            (
                s.posterior_mean_coef1[tm1.clamp(min=2)] ** 2 / (2 * sigma2),
                "t is shifted by one: use the tables at t (and abar_(t-1) where the posterior mean has it).",
                None,
            ),
            (
                ab1 * b / (2 * sigma2 * (1 - ab)),
                "c_t is sqrt(abar_(t-1)) beta_t / (1 - abar_t): square the whole coefficient, (1 - abar_t) too.",
                None,
            ),
        ]
        return _off(
            "x0_mse_weight",
            _X0_W_EQ,
            f"with sigma_t^2 = {label}, at t = {int(t[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])} "
            f"(relative tolerance {RTOL:g})",
            got,
            cands,
        )
    return True, f"{PASS} x0_mse_weight matches {_X0_W_EQ}"


# ---- chapter 07 ----
_SHARP_EQ = (
    "the sigma at which a decoder centred on an interior grid value gives it -log2 P = bits: "
    "P = Phi(1/(255 sigma)) - Phi(-1/(255 sigma)) = 2 Phi(1/(255 sigma)) - 1 (DDPM Eq. 13, a bin of half-width "
    "1/255), so sigma = 1 / (255 Phi^-1((1 + 2^-bits) / 2))"
)


@_checker("sigma_for_bits", _SHARP_EQ)
def check_sigma_for_bits(fn) -> tuple:
    """``fn(bits) -> sigma`` for a float ``bits`` > 0: the standard deviation of the discretized decoder
    (mean exactly on an interior value x_k) at which x_k's code length -log2 P(k) is ``bits``. Checked at
    several values of bits (relative tolerance 1e-5)."""
    bits = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    got = torch.empty_like(bits)
    for j, b in enumerate(bits.tolist()):
        out = _call("sigma_for_bits", fn, b)
        try:
            got[j] = float(torch.as_tensor(out, dtype=torch.float64).reshape(()))
        except (TypeError, ValueError, RuntimeError):
            raise _Wrong(f"returned {type(out).__name__} for bits = {b}; return one number, sigma.") from None
    nd = torch.special.ndtri
    expected = 1 / (255 * nd((1 + 2.0**-bits) / 2))
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} sigma_for_bits matches {_SHARP_EQ}"
    i = int((~ok).nonzero()[0])
    cands = [
        (1 / (255 * nd((1 + torch.exp(-bits)) / 2)), "bits, not nats: P = 2^-bits, not e^-bits.", None),
        (2 * expected, "the bin of x_k is x_k +- 1/255 (half-width 1/255, width 2/255).", None),
        (expected / 2, "the bin of x_k is x_k +- 1/255: its half-width is 1/255, not 1/(2 * 255).", None),
        (expected**2, "that is a variance; the question asks for sigma, a standard deviation.", None),
    ]
    return _off(
        "sigma_for_bits",
        _SHARP_EQ,
        f"for bits = {bits[i].item():g} yours is {_fmt(got[i])}, expected {_fmt(expected[i])} "
        f"(relative tolerance {RTOL:g})",
        got,
        cands,
    )


# ---- chapter 02 ----
_ENTROPY_TERMS_EQ = (
    "H_q(X^T|X^0) - H_q(X^1|X^0) - H_p(X^T) per dimension in nats, with H(N(m, v)) = 1/2 log(2 pi e v): "
    "v = 1 - abar_T, beta_1 and 1 (Sohl-Dickstein et al. 2015, Eq. 14, pi = N(0, 1))"
)


@_checker("entropy_terms", _ENTROPY_TERMS_EQ)
def check_entropy_terms(fn) -> tuple:
    """``fn(schedule) -> float``: the entropy terms of Sohl-Dickstein et al. 2015, Eq. 14 for 1-D Gaussian diffusion
    (chapter 02, Exercise 2.2). Tried on a short constant schedule and on DDPM's linear one."""
    h = lambda v: 0.5 * math.log(2 * math.pi * math.e * v)  # noqa: E731
    for s in (NoiseSchedule.from_betas([0.3] * 5, warn=False), NoiseSchedule.linear(T=1000)):
        out = _call("entropy_terms", fn, s)
        if isinstance(out, (int, float)):  # a Python float: keep all its digits
            out = torch.tensor(float(out), dtype=torch.float64)
        got = _tensor("entropy_terms", out, (), "the result")
        ab_T, b1, b_T = float(s.alpha_bars[s.T]), float(s.betas[1]), float(s.betas[s.T])
        expected = h(1 - ab_T) - h(b1) - h(1.0)
        if abs(float(got) - expected) <= 1e-9 + 1e-9 * abs(expected):
            continue
        tg = torch.tensor(float(got), dtype=torch.float64)
        candidates = [
            (
                torch.tensor(expected / math.log(2), dtype=torch.float64),
                "that is in bits: use the natural log (nats).",
                None,
            ),
            (
                torch.tensor(-expected, dtype=torch.float64),
                "the signs: + H_q(X^T|X^0), - H_q(X^1|X^0), - H_p(X^T).",
                None,
            ),
            (torch.tensor(h(1 - ab_T) - h(b1)), "H_p(X^T) = H(pi) = 1/2 log(2 pi e) is missing.", None),
            (
                torch.tensor(h(b_T) - h(b1) - h(1.0)),
                "H_q(X^T|X^0) uses the variance of q(x^T|x^0), 1 - abar_T, not beta_T.",
                None,
            ),
            (
                torch.tensor(h(1 - ab_T) - h(float(s.betas[0]) if float(s.betas[0]) > 0 else 1.0) - h(1.0)),
                "paper indexing: beta_1 is schedule.betas[1] (betas[0] is a placeholder).",
                None,
            ),
            (
                torch.tensor(
                    0.25 * (math.log(1 - ab_T) - math.log(b1)) - 0.5 * math.log(2 * math.pi * math.e)
                ),
                "the entropy takes the log of the variance, not of the standard deviation.",
                None,
            ),
        ]
        return _off(
            "entropy_terms",
            _ENTROPY_TERMS_EQ,
            f"for {s} yours is {_fmt(tg)}, expected {_fmt(expected)}",
            tg,
            candidates,
        )
    return True, f"{PASS} entropy_terms matches {_ENTROPY_TERMS_EQ}"


_TWO_EST_EQ = (
    "(log (1/n) sum_n exp(log w_n), (1/n) sum_n log w_n) over the last axis: the estimates of log p(x^0) "
    "(Sohl-Dickstein et al. 2015, Eq. 9) and of K (their Eq. 12), the first computed as "
    "max + log mean exp(log w - max)"
)


@_checker("two_estimates", _TWO_EST_EQ)
def check_two_estimates(fn) -> tuple:
    """``fn(log_w) -> (log_p, K)``, log_w of shape (M, n), each result (M,) (chapter 02, Exercise 2.3). The weights
    lie near exp(-800), which underflows to 0 in float64: only the shifted form survives."""
    g = _gen(41)
    log_w = -800.0 + 2.0 * torch.randn(4, 500, generator=g, dtype=torch.float64)
    out = _call("two_estimates", fn, log_w)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise _Wrong(f"returned a {type(out).__name__}; return a pair (log_p_estimate, K_estimate).")
    log_p = _tensor("two_estimates", out[0], (4,), "log_p_estimate")
    K = _tensor("two_estimates", out[1], (4,), "K_estimate")
    exp_p = torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])
    exp_K = log_w.mean(1)
    ok_p, ok_K = _close(log_p, exp_p, rtol=1e-9, atol=1e-9), _close(K, exp_K, rtol=1e-9, atol=1e-9)
    if bool(ok_p.all()) and bool(ok_K.all()):
        return True, f"{PASS} two_estimates matches {_TWO_EST_EQ}"
    if not bool(torch.isfinite(log_p).all()):
        return False, (
            f"{FAIL} two_estimates: your log_p_estimate is {_fmt(log_p)}: exp(log w) underflowed to 0 "
            f"(log w is near -800). Subtract the largest log w before exp and add it back after the log. "
            f"It should compute {_TWO_EST_EQ}."
        )
    if bool(_close(log_p, exp_K).all()) and bool(_close(K, exp_p).all()):
        return (
            False,
            f"{FAIL} two_estimates: the pair is swapped: return (log_p_estimate, K_estimate). "
            f"It should compute {_TWO_EST_EQ}.",
        )
    bad, got, exp = ("log_p_estimate", log_p, exp_p) if not bool(ok_p.all()) else ("K_estimate", K, exp_K)
    candidates = [
        (torch.logsumexp(log_w, 1), "the mean divides by n: subtract log n from the logsumexp.", None),
        (
            log_w.max(1).values,
            "the largest log w alone is not the estimate: add log mean exp(log w - max).",
            None,
        ),
        (exp_K, "that is the mean of log w (K); log p needs the log of the mean of w.", None),
        (exp_p, "that is log mean w (the estimate of log p); K is the mean of log w.", None),
    ]
    return _off(
        "two_estimates", _TWO_EST_EQ, f"your {bad} is {_fmt(got)}, expected {_fmt(exp)}", got, candidates
    )


_LOGNORMAL_EQ = (
    "log E[w] - E[log w] for log w ~ N(mu, var): E[w] = exp(mu + var / 2) (complete the square), so the gap "
    "is var / 2, whatever mu"
)


@_checker("lognormal_gap", _LOGNORMAL_EQ)
def check_lognormal_gap(fn) -> tuple:
    """``fn(mu, var) -> gap`` elementwise (chapter 02, Exercise 2.4): the Jensen gap of a log-normal weight. The
    expected value is computed here by Gauss-Hermite quadrature of E[exp(X)], not from the formula."""
    import numpy as np

    mu = torch.tensor([-3.0, 0.0, 0.5, 2.0, -800.0], dtype=torch.float64)
    var = torch.tensor([0.04, 0.5, 1.0, 0.2, 0.3], dtype=torch.float64)
    got = _tensor("lognormal_gap", _call("lognormal_gap", fn, mu, var), mu.shape, "the gap")
    nodes, w = np.polynomial.hermite_e.hermegauss(60)
    nodes, w = torch.tensor(nodes), torch.tensor(w / w.sum())
    log_mean_w = torch.logsumexp(var.sqrt()[:, None] * nodes + w.log(), 1) + mu  # log E[exp(mu + sd * eps)]
    expected = log_mean_w - mu
    ok = _close(got, expected, rtol=1e-8, atol=1e-10)
    if bool(ok.all()):
        return True, f"{PASS} lognormal_gap matches {_LOGNORMAL_EQ}"
    i = int((~ok).nonzero()[0])
    candidates = [
        (var.sqrt() / 2, "var is the variance: the gap is var / 2, not sd / 2.", None),
        (mu + var / 2, "that is log E[w]; subtract E[log w] = mu.", None),
        (var, "the factor 1/2: E[exp(X)] = exp(mu + var / 2).", None),
        (-var / 2, "the sign: log is concave, so log E[w] >= E[log w] and the gap is >= 0.", None),
    ]
    return _off(
        "lognormal_gap",
        _LOGNORMAL_EQ,
        f"at mu = {_fmt(mu[i])}, var = {_fmt(var[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
        got,
        candidates,
    )


# ---- chapter 04 ----
_VARIANCE_CHOICE_EQ = (
    "with the best mean, L_{t-1} = 1/2 (log(sigma^2 / beta~_t) + v* / sigma^2 - 1), smallest at sigma^2 = v* = "
    "Var[x_{t-1} | x_t]: v* = beta~_t when the data are one point (x_0 is then known), v* = beta_t when the data "
    "are N(0, 1) (the chain is then stationary and reversible, so the reverse step is the forward one mirrored) "
    "(DDPM Sec. 3.2)"
)


@_checker("variance_choice", _VARIANCE_CHOICE_EQ)
def check_variance_choice(fn) -> tuple:
    """``fn(data) -> "beta" or "beta_tilde"`` for data in ("one point", "standard normal") (chapter 04, Exercise 4.2):
    which fixed reverse variance sigma_t^2 gives the smaller KL term L_{t-1} at small t, with the best reverse mean."""
    expected = {"one point": "beta_tilde", "standard normal": "beta"}
    wrong = []
    for data, answer in expected.items():
        got = _call("variance_choice", fn, data)
        if got not in ("beta", "beta_tilde"):
            raise _Wrong(f'returned {got!r} for {data!r}; answer "beta" or "beta_tilde".')
        if got != answer:
            wrong.append((data, got, answer))
    if not wrong:
        return True, f"{PASS} variance_choice matches {_VARIANCE_CHOICE_EQ}"
    why = {
        "one point": "if every data point is the same x_0, knowing x_t adds nothing about x_0, so the reverse step "
        "is exactly the posterior N(mu~_t, beta~_t).",
        "standard normal": "for data N(0, 1) the forward chain starts in its stationary distribution and is "
        "reversible (detailed balance), so q(x_{t-1} | x_t) = N(sqrt(alpha_t) x_t, beta_t): variance beta_t.",
    }
    detail = "; ".join(f"for {d!r} you chose {g!r}: {why[d]}" for d, g, _ in wrong)
    return False, f"{FAIL} variance_choice is off: {detail} It should follow {_VARIANCE_CHOICE_EQ}."


# ---- chapter 14 ----
# the projects: DDIM with eta > 0, classifier guidance (a noise-conditioned classifier and the guided eps),
# RePaint-style resampling; the problems with exact answers live in ddpm_lib.course.projects
_DDIM_ETA_EQ = (
    "x_(t_prev) = sqrt(abar_(t_prev)) x0_hat + sqrt(1 - abar_(t_prev) - sigma^2) eps_theta + sigma z, with "
    "x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) and "
    "sigma = eta sqrt((1 - abar_(t_prev)) / (1 - abar_t)) sqrt(1 - abar_t / abar_(t_prev)) "
    "(Song et al. 2021, Eqs. 12 and 16)"
)


@_checker("ddim_eta_step", _DDIM_ETA_EQ)
def check_ddim_eta_step(fn) -> tuple:
    """``fn(eps_pred, x_t, t, t_prev, alpha_bars, eta, noise) -> x_(t_prev)``: one DDIM step with
    eta >= 0 (noise is z, used where sigma > 0); checked at eta = 0, 0.5 and 1."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(131)
    t = torch.tensor([10, 2, 100, 37, 64, 50])
    t_prev = torch.tensor([5, 1, 80, 36, 0, 25])
    eps, x_t, z = (torch.randn(6, 2, 3, generator=g, dtype=torch.float64) for _ in range(3))
    ab = s.alpha_bars.clone()
    A = lambda tab, tt: _bcast(tab[tt], x_t)  # noqa: E731
    abt, abp, al_t = A(ab, t), A(ab, t_prev), A(s.alphas, t)
    x0_hat = (x_t - (1 - abt).sqrt() * eps) / abt.sqrt()
    for eta in (0.5, 1.0, 0.0):
        args = (eps, x_t, t, t_prev, ab, eta, z)
        got = _tensor("ddim_eta_step", _call("ddim_eta_step", fn, *args), x_t.shape, "x_(t_prev)")
        _check_deterministic("ddim_eta_step", fn, args, got, x_t.shape)
        expected = d.ddim_step(eps, x_t, t, t_prev, eta=eta, noise=z)
        ok = _per_example_ok(got, expected)
        if bool(ok.all()):
            continue
        i = int((~ok).nonzero()[0])
        ratio = (1 - abp) / (1 - abt)
        sig = eta * (ratio * (1 - abt / abp)).sqrt()

        def step(sigma, direction_var=None):
            dv = 1 - abp - sigma**2 if direction_var is None else direction_var
            return abp.sqrt() * x0_hat + dv.clamp(min=0).sqrt() * eps + sigma * z

        candidates = [
            (
                step(sig, 1 - abp),
                "the direction term is sqrt(1 - abar_(t_prev) - sigma^2) eps_theta: the "
                "noise sigma z takes its share of the variance 1 - abar_(t_prev).",
                None,
            ),
            (
                abp.sqrt() * x0_hat + (1 - abp - sig**2).clamp(min=0).sqrt() * eps + sig**2 * z,
                "z is scaled by the standard deviation sigma, not by the variance sigma^2.",
                None,
            ),
            (
                step(eta * (ratio * (1 - al_t)).sqrt()),
                "the last factor of sigma is 1 - abar_t / abar_(t_prev) "
                "(the beta of the whole jump from t to t_prev), not the one-step beta_t = 1 - alpha_t.",
                None,
            ),
            (
                step(eta * (1 - abt / abp).sqrt()),
                "sigma^2 is the posterior variance of the jump: "
                "(1 - abar_(t_prev)) / (1 - abar_t) (1 - abar_t / abar_(t_prev)), times eta^2.",
                None,
            ),
            (
                step((ratio * (1 - abt / abp)).sqrt()),
                "sigma is multiplied by eta (eta = 0: deterministic DDIM).",
                None,
            ),
            (
                step(eta**2 * (ratio * (1 - abt / abp)).sqrt()),
                "sigma = eta sqrt(...), so sigma^2 has eta^2, not sigma eta^2.",
                None,
            ),
            (d.ddim_step(eps, x_t, t, t_prev, eta=0.0), "no noise term: with eta > 0 add sigma z.", None),
            (step(sig) - sig * z, "no noise term: with eta > 0 add sigma z.", None),
        ]
        return _off(
            "ddim_eta_step",
            _DDIM_ETA_EQ,
            f"with eta = {eta}, for t = {int(t[i])} -> t_prev = {int(t_prev[i])} yours is {_fmt(got[i])}, "
            f"expected {_fmt(expected[i])}",
            got,
            candidates,
        )
    return True, f"{PASS} ddim_eta_step matches {_DDIM_ETA_EQ}, at eta = 0, 0.5 and 1"


_NOISY_BATCH_EQ = (
    "t ~ Uniform{1..T} for each example and x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I) "
    "(DDPM Algorithm 1, lines 3-4, and Eq. 4): a classifier of x_t is trained on x_t and t"
)


@_checker("noisy_batch", _NOISY_BATCH_EQ)
def check_noisy_batch(fn) -> tuple:
    """``fn(x0, diffusion, generator) -> (x_t, t)``: checked by its statistics on 4,000 two-dimensional
    points (t uniform on 1..T; the implied noise standard normal and independent of x_0)."""
    d = GaussianDiffusion(_schedule())
    T, n = d.T, 4000
    x0 = torch.randn(n, 2, generator=_gen(137)) * 0.7 + 0.3
    out = _call("noisy_batch", fn, x0, d, _gen(139))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise _Wrong(f"returned a {type(out).__name__}; return the pair (x_t, t).")
    x_t = _tensor("noisy_batch", out[0], x0.shape, "x_t")
    t = torch.as_tensor(out[1])
    again = _call("noisy_batch", fn, x0, d, _gen(139))
    if not torch.equal(_tensor("noisy_batch", again[0], x0.shape, "x_t"), x_t):
        raise _Wrong("gives different results for the same generator: draw t and the noise from `generator`.")
    if tuple(t.shape) != (n,) or t.is_floating_point():
        raise _Wrong(
            f"t must be a LongTensor of shape ({n},), one timestep per example; got "
            f"{t.dtype} of shape {tuple(t.shape)}."
        )
    t = t.long()
    if bool(torch.equal(x_t, x0.double())):
        return False, (
            f"{FAIL} noisy_batch returns the clean x_0: a classifier trained on it is a clean "
            f"classifier. It should compute {_NOISY_BATCH_EQ}."
        )
    if int(t.min()) < 1 or int(t.max()) > T:
        hint = (
            " Likely mistake: t counts from 1 (paper indexing), as d.sample_t gives it."
            if int(t.min()) == 0
            else ""
        )
        return False, (
            f"{FAIL} noisy_batch is off: t must lie in 1..T = 1..{T}, yours spans "
            f"{int(t.min())}..{int(t.max())}. It should compute {_NOISY_BATCH_EQ}.{hint}"
        )
    mean_t = float(t.double().mean())
    if int(t.min()) > 3 or int(t.max()) < T - 2 or abs(mean_t - (T + 1) / 2) > 3:
        return False, (
            f"{FAIL} noisy_batch is off: t should be uniform on 1..{T} (mean {(T + 1) / 2}); yours "
            f"spans {int(t.min())}..{int(t.max())} with mean {mean_t:.1f}. It should compute "
            f"{_NOISY_BATCH_EQ}."
        )
    ab = _bcast(d.schedule.alpha_bars[t], x0)
    r = (x_t - ab.sqrt() * x0.double()) / (1 - ab).sqrt()  # the noise your x_t implies
    corr = float(((r - r.mean()) * (x0 - x0.mean())).mean() / (r.std() * x0.std()))
    if abs(float(r.mean())) > 0.06 or abs(float(r.var()) - 1) > 0.08 or abs(corr) > 0.06:
        al = _bcast(d.schedule.alphas[t], x0)
        r_al = (x_t - al.sqrt() * x0.double()) / (1 - al).sqrt()
        hint = ""
        if abs(float(r_al.mean())) < 0.06 and abs(float(r_al.var()) - 1) < 0.08:
            hint = " Likely mistake: you used the one-step alpha_t; q(x_t | x_0) takes the product abar_t."
        return False, (
            f"{FAIL} noisy_batch is off: the noise your x_t implies, (x_t - sqrt(abar_t) x_0) / "
            f"sqrt(1 - abar_t), has mean {float(r.mean()):.3f}, variance {float(r.var()):.3f} and "
            f"correlation {corr:.3f} with x_0 (expected 0, 1 and 0). It should compute "
            f"{_NOISY_BATCH_EQ}.{hint}"
        )
    return True, (
        f"{PASS} noisy_batch matches {_NOISY_BATCH_EQ}: t uniform on 1..{T}, the implied noise "
        f"standard normal and independent of x_0"
    )


_NOISY_CLF_TS = (0, 10, 25, 50, 100)
_NOISY_CLF_TOL = 0.05


def check_noisy_classifier(classifier, *, mixture=None, verbose: bool = True, raise_on_failure: bool = False):
    """A measured target: ``classifier(x_t, t) -> logits (N, K)`` on chapter 14's two-class mixture
    (:func:`ddpm_lib.course.projects.guidance_mixture`) is within 0.05 nats of the exact p(y | x_t) in
    cross-entropy at t = 0, 10, 25, 50 and 100 (4,000 labelled draws each); the message reports the
    excess at each t."""
    from .projects import guidance_mixture

    name = "noisy_classifier"
    if not callable(classifier):
        msg = (
            f"{FAIL} {name}: pass the classifier itself, a callable classifier(x_t, t) -> logits; got a "
            f"{type(classifier).__name__}"
        )
        return _finish(name, False, msg, verbose, raise_on_failure)
    mix = mixture or guidance_mixture()
    try:
        excess = mix.excess_cross_entropy(classifier, ts=_NOISY_CLF_TS)
    except NotImplementedError:
        msg = f"{FAIL} {name}: not implemented yet (it raises NotImplementedError): replace the `raise` with your code."
        return _finish(name, False, msg, verbose, raise_on_failure)
    except Exception as e:  # noqa: BLE001 - any error in student code becomes a message
        first = str(e).splitlines()[0] if str(e) else ""
        msg = f"{FAIL} {name}: calling classifier(x_t, t) raised {type(e).__name__}: {first}"
        return _finish(name, False, msg, verbose, raise_on_failure)
    table = ", ".join(f"t = {t}: {v:.2f}" for t, v in excess.items())
    target = f"within {_NOISY_CLF_TOL} nats of the exact p(y | x_t) in cross-entropy at every t"
    if all(v <= _NOISY_CLF_TOL for v in excess.values()):
        return _finish(
            name, True, f"{PASS} {name}: {target} (excess nats: {table})", verbose, raise_on_failure
        )
    bad = [t for t, v in excess.items() if v > _NOISY_CLF_TOL]
    hint = ""
    if excess[0] <= _NOISY_CLF_TOL and bad:
        hint = (
            " Likely mistake: it is good on clean data and poor on noisy x_t, like a classifier trained on "
            "x_0 only: train it on x_t ~ q(x_t | x_0) at random t and give it t."
        )
    msg = f"{FAIL} {name} misses the target: {target}; excess nats: {table} (over the target at t = {bad}).{hint}"
    return _finish(name, False, msg, verbose, raise_on_failure)


register("noisy_classifier")(check_noisy_classifier)

_GUIDED_EPS_EQ = (
    "eps_hat = eps_theta - s sqrt(1 - abar_t) grad_(x_t) log p(y | x_t), with log p(y | x_t) = "
    "log_softmax(classifier(x_t, t))[y] (Dhariwal & Nichol 2021, Sec. 4.2, with guidance scale s)"
)


def _guidance_test_classifier(mix):
    # logits = the exact log p(y | x_t) plus a term shared by the classes: the same probabilities, so a
    # gradient of the raw logit instead of the log-probability shows
    return lambda x, t: mix.class_log_probs(x, t).to(x.dtype) + 0.7 * x.sum(1, keepdim=True) ** 2


@_checker("guided_eps", _GUIDED_EPS_EQ)
def check_guided_eps(fn) -> tuple:
    """``fn(eps_pred, x_t, t, y, classifier, alpha_bars, scale) -> eps_hat``: y a LongTensor (B,) of class
    indices, ``classifier(x_t, t) -> logits (B, K)``."""
    from .projects import guidance_mixture

    mix = guidance_mixture(_schedule())
    clf = _guidance_test_classifier(mix)
    g = _gen(149)
    t = torch.tensor([1, 10, 30, 50, 80, 100])
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    eps, x_t = (torch.randn(6, 2, generator=g, dtype=torch.float64) for _ in range(2))
    ab, scale = mix.schedule.alpha_bars.clone(), 2.0
    got = _tensor("guided_eps", _call("guided_eps", fn, eps, x_t, t, y, clf, ab, scale), x_t.shape, "eps_hat")

    def grad_of(f):
        x = x_t.detach().requires_grad_(True)
        (gr,) = torch.autograd.grad(f(x).sum(), x)
        return gr

    idx = torch.arange(6)
    grad = grad_of(lambda x: torch.log_softmax(clf(x, t), 1)[idx, y])
    c = _bcast((1 - ab[t]).sqrt(), x_t)
    expected = eps - scale * c * grad
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} guided_eps matches {_GUIDED_EPS_EQ}"
    i = int((~ok).nonzero()[0])
    candidates = [
        (
            eps + scale * c * grad,
            "the sign: eps_theta is -sqrt(1 - abar_t) times the score grad log p(x_t), so adding "
            "grad log p(y | x_t) to the score subtracts it from eps.",
            None,
        ),
        (
            eps - scale * grad,
            "the gradient is multiplied by sqrt(1 - abar_t) (eps = -sqrt(1 - abar_t) times the score).",
            None,
        ),
        (eps - scale * c**2 * grad, "the factor is sqrt(1 - abar_t), not 1 - abar_t.", None),
        (eps - c * grad, "the guidance scale s multiplies the gradient.", None),
        (
            eps - scale * c * grad_of(lambda x: clf(x, t)[idx, y]),
            "take the gradient of log p(y | x_t) = log_softmax(logits)[y], not of the raw logit.",
            None,
        ),
        (
            eps - scale * c * grad_of(lambda x: torch.log_softmax(clf(x, t), 1)[idx, 1 - y]),
            "the gradient of the class y you are asked for, log p(y | x_t), indexed per example.",
            None,
        ),
        (
            eps - scale * _bcast(ab[t].sqrt(), x_t) * grad,
            "the factor is sqrt(1 - abar_t), not sqrt(abar_t).",
            None,
        ),
    ]
    return _off(
        "guided_eps",
        _GUIDED_EPS_EQ,
        f"at t = {int(t[i])}, y = {int(y[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
        got,
        candidates,
    )


_REPAINT_EQ = (
    "for t = T..1: repeat U times (once at t = 1): x_(t-1) = p_sample of x_t with the known coordinates "
    "replaced by a draw of q(x_(t-1) | x_known) (x_known itself at t - 1 = 0), and, between repeats, x_t = "
    "q_step(x_(t-1)) (one forward step, DDPM Eq. 2) (Lugmayr et al. 2022, Algorithm 1)"
)


class _CallCounter:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


def _wrong_side(x: torch.Tensor, x_known: torch.Tensor) -> float:
    """The fraction of filled x_2 on the other side of 0 from the known x_1: incoherent with the data."""
    return float((torch.sign(x[:, 1]) != torch.sign(x_known[:, 0])).double().mean())


@_checker("repaint", _REPAINT_EQ)
def check_repaint(fn) -> tuple:
    """``fn(model, diffusion, x_known, mask, U, generator) -> x_0``, a measured target: on two Gaussian
    blobs at (-1, -1) and (1, 1) (std 0.3, T = 50, the exact eps-model) with x_1 known and x_2 filled,
    U = 3, 1,000 points: the known coordinates kept exactly, about U network calls per step, and the
    fraction of incoherent fills (x_2 on the other side of 0 from x_1) within 0.02 of the library's
    ``inpaint(..., resample=3)``."""
    from ..sampling import inpaint
    from .projects import INPAINTING_MIXTURE, NoisedMixture, toy_schedule

    s = toy_schedule(50)
    d = GaussianDiffusion(s, variance="fixed_large", decoder="gaussian")
    mix = NoisedMixture(**INPAINTING_MIXTURE, schedule=s)
    x_known, _ = mix.sample(1000, _gen(151))
    mask = torch.tensor([1.0, 0.0])
    U, T = 3, s.T
    model = _CallCounter(mix.eps_model)
    got = _tensor(
        "repaint", _call("repaint", fn, model, d, x_known, mask, U, _gen(157)), x_known.shape, "x_0"
    )
    if not bool(_close(got[:, 0], x_known[:, 0].double(), rtol=0, atol=1e-5).all()):
        return False, (
            f"{FAIL} repaint: the known coordinate x_1 must equal x_known's at the end (at t - 1 = 0 "
            f"the known part is x_known itself). It should compute {_REPAINT_EQ}."
        )
    lib = {
        u: _wrong_side(
            inpaint(mix.eps_model, d, x_known, mask, generator=_gen(157), progress=False, resample=u), x_known
        )
        for u in (1, U)
    }
    yours = _wrong_side(got.float(), x_known)
    report = (
        f"incoherent fills {yours:.1%} (the library's: {lib[U]:.1%} with U = {U}, {lib[1]:.1%} "
        f"without resampling); {model.calls} network calls for T = {T}, U = {U}"
    )
    if model.calls < (T - 1) * U + 1 or model.calls > T * U:
        hint = " Likely mistake: U is ignored: each t takes U passes." if model.calls == T else ""
        return False, (
            f"{FAIL} repaint is off: it should call the network about U T = {U * T} times "
            f"({(T - 1) * U + 1} if t = 1 takes one pass); {report}. It should compute "
            f"{_REPAINT_EQ}.{hint}"
        )
    if yours > lib[U] + 0.02:
        return False, (
            f"{FAIL} repaint misses the target: {report}. It should compute {_REPAINT_EQ}. Between "
            "passes, go back one step with q_step from the x_(t-1) you just made, and replace the known "
            "part after every p_sample."
        )
    return True, f"{PASS} repaint matches {_REPAINT_EQ}: {report}"


# ---- chapter 11 ----
# ---- the smallest possible eps-loss at a step, for Gaussian data (chapter 11: loss size is not difficulty) ----
_MIN_EPS_EQ = (
    "the smallest E||eps - eps_theta(x_t)||^2 per dimension at a step with alpha_bar, for data N(0, s2 I): "
    "x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps is Gaussian with variance alpha_bar s2 + 1 - alpha_bar, "
    "the best predictor is E[eps | x_t] = sqrt(1 - alpha_bar) x_t / (alpha_bar s2 + 1 - alpha_bar), and what "
    "it leaves is 1 - (1 - alpha_bar) / (alpha_bar s2 + 1 - alpha_bar) = alpha_bar s2 / (alpha_bar s2 + 1 - alpha_bar)"
)


@_checker("min_eps_loss", _MIN_EPS_EQ)
def check_min_eps_loss(fn) -> tuple:
    """``fn(alpha_bar, s2) -> loss`` of alpha_bar's shape: the irreducible L_simple per dimension of the best
    possible network at each step, for data N(0, s2 I) (``alpha_bar`` a float64 tensor in (0, 1), ``s2`` > 0)."""
    ab = torch.tensor([0.9999, 0.99, 0.9, 0.5, 0.1, 1e-3], dtype=torch.float64)
    out = {}
    for s2 in (1.0, 0.25):
        got = _tensor("min_eps_loss", _call("min_eps_loss", fn, ab, s2), ab.shape, "the loss")
        v = ab * s2 + 1 - ab
        expected = ab * s2 / v
        out[s2] = (got, expected, v)
        ok = _close(got, expected)
        if bool(ok.all()):
            continue
        i = int((~ok).nonzero()[0])
        candidates = [
            (
                (1 - ab) / v,
                "that is the share of eps the best predictor explains; the loss is what it leaves: 1 - that.",
                None,
            ),
            (
                1 - ab,
                "the best predictor uses x_t: the loss is not the noise's share of x_t's variance.",
                None,
            ),
            (ab * s2, "divide by the variance of x_t, alpha_bar s2 + 1 - alpha_bar.", None),
            (s2 * (1 - ab) / v, "that is the error of the best prediction of x_0, not of eps.", None),
            (
                torch.ones_like(ab),
                "the best network uses x_t, so it beats predicting 0 (loss 1) wherever x_t says something about eps.",
                None,
            ),
        ]
        return _off(
            "min_eps_loss",
            _MIN_EPS_EQ,
            f"at alpha_bar = {_fmt(ab[i])}, s2 = {s2:g} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
            got,
            candidates,
        )
    got = out[1.0][0]
    return True, (
        f"{PASS} min_eps_loss matches {_MIN_EPS_EQ}. For s2 = 1 it is {_fmt(got[0])} at alpha_bar = 0.9999 (t near 0, "
        f"where x_t is almost x_0: easy to denoise, yet its small noise is almost impossible to pick out) and "
        f"{_fmt(got[-1])} at alpha_bar = 0.001 (x_t is almost pure noise: eps is easy to read off, x_0 is lost)"
    )


# ---- chapter 12 ----
# ---- r_t = E[r(x_0) | x_t] for a Gaussian window on N(0, 1) data (Sohl-Dickstein Sec. 2.5; chapter 12) ----------
_WINDOW_EQ = (
    "grad log r_t(x) = -sqrt(abar) (sqrt(abar) x - c) / (w^2 + 1 - abar) for r(x_0) = exp(-(x_0 - c)^2 / (2 w^2)) and "
    "data N(0, 1): given x_t = x, x_0 ~ N(sqrt(abar) x, 1 - abar), so r_t(x) = E[r(x_0) | x_t = x] is proportional "
    "to exp(-(sqrt(abar) x - c)^2 / (2 (w^2 + 1 - abar)))"
)


@_checker("window_r_t_grad", _WINDOW_EQ)
def check_window_r_t_grad(fn) -> tuple:
    """``fn(x, alpha_bar, c, w) -> grad`` of x's shape: the gradient of log r_t at x, where r_t(x) = E[r(x_0) | x_t = x]
    for the window r(x_0) = exp(-(x_0 - c)^2 / (2 w^2)) and data N(0, 1) (``x`` a float64 tensor, the rest floats)."""
    x = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    c, w = 0.7, 0.5
    for ab in (0.9, 0.3, 0.999):
        got = _tensor("window_r_t_grad", _call("window_r_t_grad", fn, x, ab, c, w), x.shape, "the gradient")
        ra, v = math.sqrt(ab), w**2 + 1 - ab
        expected = -ra * (ra * x - c) / v
        ok = _close(got, expected)
        if bool(ok.all()):
            continue
        i = int((~ok).nonzero()[0])
        candidates = [
            (
                -(ra * x - c) / v,
                "the chain rule: d/dx of (sqrt(abar) x - c)^2 brings out a factor sqrt(abar).",
                None,
            ),
            (
                -ra * (ra * x - c) / w**2,
                "x_0 given x_t is spread by 1 - abar too: the width is w^2 + 1 - abar.",
                None,
            ),
            (-ra * (x - c) / v, "x_0 given x_t is centred at sqrt(abar) x, not at x.", None),
            (
                -(ab * x - c) / v,
                "the window's centre c is not scaled: (sqrt(abar) x - c), times sqrt(abar) outside.",
                None,
            ),
            (
                -(x - c) / w**2,
                "that is grad log r itself (the paper's fixed r); r_t averages r over x_0 given x_t.",
                None,
            ),
            (
                ra * (ra * x - c) / v,
                "the sign: log r_t falls away from the window, so its gradient points back.",
                None,
            ),
        ]
        return _off(
            "window_r_t_grad",
            _WINDOW_EQ,
            f"at alpha_bar = {ab:g}, x = {_fmt(x[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
            got,
            candidates,
        )
    return True, (
        f"{PASS} window_r_t_grad matches {_WINDOW_EQ}. As abar -> 1 it becomes grad log r; as abar -> 0 it vanishes "
        "(x_t then says nothing about x_0)"
    )


# ---- chapter 09 ----
_LSIMPLE32_EQ = _LSIMPLE_EQ + ", computed in the images' dtype (float32 for the U-Net)"


def _float32_only_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The stand-in eps_theta with float32 weights: like the U-Net, it refuses any other input dtype."""
    if x.dtype != torch.float32:
        raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got {x.dtype} and torch.float32")
    return _toy_eps_model(x, t)


@_checker("l_simple_float32", _LSIMPLE32_EQ)
def check_l_simple_float32(fn) -> tuple:
    """``fn(model, x0, t, noise, alpha_bars) -> (B,)`` as for ``l_simple`` (checked first), then with float32
    ``x0`` and ``noise``, the float64 ``alpha_bars`` of a NoiseSchedule and a network with float32 weights."""
    first = check_l_simple(fn, verbose=False)
    if not first.passed:
        return False, first.message
    s = _schedule()
    d = GaussianDiffusion(s, decoder="gaussian")
    g = _gen(29)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    x0 = (torch.rand(6, 1, 4, 4, generator=g) * 2 - 1).float()
    noise = torch.randn(6, 1, 4, 4, generator=g).float()
    try:
        out = _call("l_simple_float32", fn, _float32_only_model, x0, t, noise, s.alpha_bars.clone())
    except _Wrong as e:
        if "dtype" not in str(e):
            raise
        raise _Wrong(
            "is right in float64 but fails on float32 images: the schedule's tables are float64 (kept exact for "
            "the bound), so alpha_bars[t] * x0 became float64 and the network's float32 weights refuse it "
            "('mat1 and mat2 must have the same dtype'). Cast what you read from the table to the data's dtype: "
            "`alpha_bars[t].to(x0.dtype)`."
        ) from None
    got = _tensor("l_simple_float32", out, (len(t),), "the loss")
    expected = d.training_losses(_float32_only_model, x0, t=t, noise=noise)["loss"].double()
    if bool(_close(got, expected, rtol=1e-4, atol=1e-5).all()):
        return True, f"{PASS} l_simple matches {_LSIMPLE32_EQ}"
    return False, (
        f"{FAIL} l_simple_float32: right in float64, off on float32 images: yours {_fmt(got)}, expected "
        f"{_fmt(expected)}. It should compute {_LSIMPLE32_EQ}."
    )


_X0_ERR_EQ = (
    "||x_0 - x0_hat||^2 = (1 - abar_t) / abar_t ||eps - eps_theta||^2, since x0_hat = (x_t - sqrt(1 - abar_t) "
    "eps_theta) / sqrt(abar_t) and x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (DDPM Eq. 4 solved for x_0)"
)


@_checker("x0_mse_from_eps_mse", _X0_ERR_EQ)
def check_x0_mse_from_eps_mse(fn) -> tuple:
    """``fn(eps_mse, t, alpha_bars) -> (B,)``: the mean squared error of the predicted x_0 that a mean squared
    error ``eps_mse`` (B,) of the predicted noise at timesteps ``t`` (B,) implies."""
    s = _schedule()
    g = _gen(31)
    t = torch.tensor([10, 1, 100, 37, 2, 64])
    eps_mse = torch.rand(6, generator=g, dtype=torch.float64) + 0.1
    ab = s.alpha_bars.clone()
    got = _tensor(
        "x0_mse_from_eps_mse", _call("x0_mse_from_eps_mse", fn, eps_mse, t, ab), (6,), "the x_0 error"
    )
    a = ab[t]
    expected = (1 - a) / a * eps_mse
    ok = _close(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} x0_mse_from_eps_mse matches {_X0_ERR_EQ}"
    i = int((~ok).nonzero()[0])
    alphas = torch.cat([torch.ones(1, dtype=torch.float64), ab[1:] / ab[:-1]])
    am1 = ab[(t - 1).clamp(min=0)]
    candidates = [
        (
            a / (1 - a) * eps_mse,
            "the ratio is upside down: x0_hat divides the eps error by sqrt(abar_t).",
            None,
        ),
        (
            ((1 - a) / a).sqrt() * eps_mse,
            "that scales the error's standard deviation; a squared error scales by the square, (1 - abar_t) / abar_t.",
            None,
        ),
        ((1 - alphas[t]) / alphas[t] * eps_mse, "use abar_t (Eq. 4's), not the one-step alpha_t.", None),
        ((1 - am1) / am1 * eps_mse, "the table uses paper indexing: alpha_bars[t] is abar_t.", t > 1),
        (
            eps_mse / a,
            "the eps error enters x0_hat multiplied by sqrt(1 - abar_t): you left that factor out.",
            None,
        ),
        ((1 - a) * eps_mse, "x0_hat divides by sqrt(abar_t): the error is divided by abar_t too.", None),
    ]
    return _off(
        "x0_mse_from_eps_mse",
        _X0_ERR_EQ,
        f"at t = {int(t[i])} yours is {_fmt(got[i])}, expected {_fmt(expected[i])}",
        got,
        candidates,
    )


# ---- chapter 10 ----
_CLIPPED_MEAN_EQ = (
    "mu = coef1_t clip(x0_hat, -1, 1) + coef2_t x_t, with x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t), "
    "coef1_t = sqrt(abar_(t-1)) beta_t / (1 - abar_t) and coef2_t = sqrt(alpha_t) (1 - abar_(t-1)) / (1 - abar_t) "
    "(DDPM Eq. 7's posterior mean at the clipped prediction of x_0)"
)


@_checker("clipped_mean", _CLIPPED_MEAN_EQ)
def check_clipped_mean(fn) -> tuple:
    """``fn(eps_pred, x_t, t, schedule) -> mean`` of p(x_{t-1} | x_t) with x0_hat clipped to [-1, 1] first, as
    ``GaussianDiffusion.p_mean_variance(..., clip_x0=True)``."""
    s = _schedule()
    d = GaussianDiffusion(s)
    g = _gen(37)
    t = torch.tensor([10, 2, 100, 37, 90, 64])
    x_t = 1.5 * torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    got = _tensor("clipped_mean", _call("clipped_mean", fn, eps, x_t, t, s), x_t.shape, "the mean")
    expected = d.p_mean_variance(eps, x_t, t, clip_x0=True)["mean"]
    ok = _per_example_ok(got, expected)
    if bool(ok.all()):
        return True, f"{PASS} clipped_mean matches {_CLIPPED_MEAN_EQ}"
    i = int((~ok).nonzero()[0])
    A = lambda tab, tt=t: _bcast(tab[tt], x_t)  # noqa: E731
    ab, abm1, al, be = A(s.alpha_bars), A(s.alpha_bars, t - 1), A(s.alphas), A(s.betas)
    c1, c2 = abm1.sqrt() * be / (1 - ab), al.sqrt() * (1 - abm1) / (1 - ab)
    x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    al_x0 = (x_t - (1 - al).sqrt() * eps) / al.sqrt()
    candidates = [
        (c1 * x0 + c2 * x_t, "you did not clip: clip x0_hat to [-1, 1] before forming the mean.", None),
        (
            (c1 * x0 + c2 * x_t).clamp(-1, 1),
            "clip the predicted x_0, not the mean: x_(t-1) is noisy and may lie outside [-1, 1].",
            None,
        ),
        (
            c1 * x0.clamp(0, 1) + c2 * x_t,
            "the data are scaled to [-1, 1], so clip to [-1, 1], not [0, 1].",
            None,
        ),
        (c1 * x0 + c2 * x_t.clamp(-1, 1), "clip the predicted x_0, not x_t.", None),
        (c2 * x0.clamp(-1, 1) + c1 * x_t, "the coefficients of x0_hat and x_t are swapped.", None),
        (
            c1 * al_x0.clamp(-1, 1) + c2 * x_t,
            "x0_hat takes abar_t (Eq. 4 solved for x_0), not alpha_t.",
            None,
        ),
    ]
    return _off(
        "clipped_mean",
        _CLIPPED_MEAN_EQ,
        f"at t = {int(t[i])} the mean of yours is {_fmt(got[i].mean())}, expected {_fmt(expected[i].mean())}",
        got,
        candidates,
    )


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
