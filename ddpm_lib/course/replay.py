"""Numbers that replay on any computer: how a chapter prints a check, and a scanner for those that don't.

A chapter's stored outputs are compared, digit by digit, when a reader runs
``pytest --nbval chapters/``. Another CPU (AVX2 or AVX-512, x86 or ARM), another thread count or
another torch changes the order of floating-point sums and the kernels that compute them, so the
last bits of every float32 result and the round-off left in every float64 identity change too.
What a chapter prints must therefore be a fact about the mathematics, not about the CPU:

* a residual (two ways of computing the same thing) is printed as a verdict against its
  tolerance with :func:`below`: ``max |diff| < 1e-12``, never its digits (``3.1e-15``);
* an exact equality is printed as one (``torch.equal(...)``: ``True``), not as ``0.0e+00``;
* a Monte Carlo estimate or a trained model's score is seeded and printed with the digits its
  standard error (and float32) can hold, typically 3 or 4; a comparison with a closed form is a
  verdict in standard errors (:func:`within_sigma`: ``within 3 sigma: True``);
* a wall time is printed only in a cell tagged ``nbval-ignore-output`` (with ``%%time`` or a
  progress bar), never in a compared cell.

:func:`fragile_numbers` finds what breaks these rules in a chapter's output text;
``python -m ddpm_lib.course.book execute`` refuses to store such an output and ``book check`` reports it.
The rules (each problem names its rule and the fix):

``residual``
    a number below :data:`RESIDUAL_LIMIT` (``1e-4``, zero included) printed with digits after a word
    that introduces a difference (``diff``, ``difference``, ``residual``, ``round-off``, ``max |a - b|``)
    in the same clause. Differences that are the lesson (an approximation's error of ``2.4e-04``, a
    network's lack of equivariance of ``1.3e-01``) are larger than that and stay numbers.
``round-off``
    a number below :data:`ROUNDOFF_LIMIT` (``1e-12``) printed with one or two significant digits, as
    residuals are: at that size a float64 difference is round-off, whatever it is called. (A tiny value
    that is the lesson, such as alpha_bar_T = 2.653e-18 at T = 4000, is printed with three or more
    digits, which a float64 product holds on any CPU.)
``digits``
    a decimal with more than :data:`MAX_SIGNIFICANT` (7) significant digits: more than float32 holds, and
    more than any estimate in the course can.

A number is a verdict, not a residual, when ``<``, ``<=``, ``≤``, ``>``, ``to``, ``within``, ``below``,
``under`` or ``than`` stands right before it (``< 1e-12``, ``agrees to 1e-6``). Defined for the course's
tools; chapter 00 states the rule for the reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "below",
    "within_sigma",
    "fragile_numbers",
    "FragileNumber",
    "RESIDUAL_LIMIT",
    "ROUNDOFF_LIMIT",
    "MAX_SIGNIFICANT",
]

RESIDUAL_LIMIT = 1e-4
ROUNDOFF_LIMIT = 1e-12
MAX_SIGNIFICANT = 7


def below(value: float, tol: float = 1e-12) -> str:
    """A residual as a verdict against its tolerance: ``"< 1e-12"`` when ``|value| < tol``.

    ``value`` is a residual (a max |difference| between two computations of one quantity) whose digits
    depend on the CPU; ``tol`` is the tolerance the lesson claims (default: float64 round-off). When the
    check fails the digits are printed with ``NOT below``, so that the stored output (and a replay) shows
    the failure.
    """
    value = float(value)
    bound = f"{tol:.0e}" if tol < 1e-3 else f"{tol:g}"
    if abs(value) < tol:
        return f"< {bound}"
    return f"{abs(value):.1e} (NOT below {bound})"  # NaN lands here too


def within_sigma(estimate: float, exact: float, stderr: float, n_sigma: float = 3) -> str:
    """A Monte Carlo estimate against its closed form, as a verdict: ``"within 3 sigma: True"``.

    ``stderr`` is the estimate's standard error. The difference itself is noise whose digits change with
    the CPU, so it is not printed; print the estimate with the digits its standard error allows.
    """
    ok = abs(float(estimate) - float(exact)) < n_sigma * float(stderr)
    return f"within {n_sigma:g} sigma: {ok}"


@dataclass(frozen=True)
class FragileNumber:
    """One number in an output that a different CPU may print differently."""

    line: str  # the output line, stripped
    number: str  # the number as printed
    rule: str  # "residual", "round-off" or "digits"

    @property
    def advice(self) -> str:
        if self.rule == "digits":
            return (
                f"{self.number!r} has more than {MAX_SIGNIFICANT} significant digits: round it to the digits the "
                "computation holds (float32: about 6; an estimate: those its standard error allows)"
            )
        if self.rule == "round-off":
            return (
                f"{self.number!r} is below {ROUNDOFF_LIMIT:.0e}, round-off whose digits the CPU decides: print a "
                "verdict with ddpm_lib.course.replay.below(value, tol) ('< 1e-12'), or torch.equal for an exact zero"
            )
        return (
            f"{self.number!r} is a residual printed as digits: print a verdict with "
            "ddpm_lib.course.replay.below(value, tol) ('max |diff| < 1e-6'), or torch.equal(...) for an exact equality"
        )

    def __str__(self) -> str:
        return f"{self.line[:110]!r}: {self.advice}"


_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_RESIDUAL_WORD_RE = re.compile(r"\bdiff\b|\bdifferences?\b|\bresiduals?\b|\bround-?off\b|max\s*\|")
_VERDICT_BEFORE_RE = re.compile(r"(?:<|<=|≤|>|>=|≥|\bto|\bwithin|\bbelow|\bunder|\bthan)\s*$")
# a clause ends at these: a number after them no longer belongs to the difference named before
_CLAUSE_END = ";,()"


def _significant_digits(token: str) -> int:
    mantissa = re.split(r"[eE]", token.lstrip("+-"))[0]
    if "." not in mantissa:
        return 0  # an integer: a count or an index, exact
    digits = mantissa.replace(".", "").lstrip("0")
    return len(digits)


def fragile_numbers(text: str) -> list:
    """Every number in ``text`` (a chapter's printed output) that breaks the rules of this module.

    Returns a list of :class:`FragileNumber`; empty when every number replays on any computer.
    """
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        words = [m.end() for m in _RESIDUAL_WORD_RE.finditer(line)]
        for m in _NUMBER_RE.finditer(line):
            token = m.group(0)
            try:
                value = abs(float(token))
            except ValueError:  # pragma: no cover - the regex admits only floats
                continue
            before = line[: m.start()]
            verdict = bool(_VERDICT_BEFORE_RE.search(before))
            if _significant_digits(token) > MAX_SIGNIFICANT:  # before the verdict test: '< 0.123456789' too
                found.append(FragileNumber(line, token, "digits"))
                continue
            if verdict:
                continue
            if 0 < value < ROUNDOFF_LIMIT and _significant_digits(token) <= 2:
                found.append(FragileNumber(line, token, "round-off"))
                continue
            if value < RESIDUAL_LIMIT and ("." in token or "e" in token.lower() or value == 0):
                # the nearest word that names a difference, in this clause
                start = max((w for w in words if w <= m.start()), default=None)
                if start is not None and not any(ch in line[start : m.start()] for ch in _CLAUSE_END):
                    found.append(FragileNumber(line, token, "residual"))
    return found
