"""ddpm_lib.course.replay: verdicts instead of residual digits, and the scanner that finds outputs another CPU prints
differently (tests/test_book.py applies it to every stored chapter and to `book execute`)."""

import pytest

from ddpm_lib.course.replay import MAX_SIGNIFICANT, below, fragile_numbers, within_sigma


def rules(text):
    return [(f.number, f.rule) for f in fragile_numbers(text)]


def test_below_is_a_verdict_that_shows_a_failure():
    assert below(3.1e-15) == "< 1e-12"
    assert below(-4e-7, 1e-6) == "< 1e-06"
    assert below(0.0, 1e-5) == "< 1e-05"
    assert below(0.3, 2) == "< 2"
    assert below(5.5e-6, 1e-6) == "5.5e-06 (NOT below 1e-06)"
    assert below(float("nan"), 1e-6) == "nan (NOT below 1e-06)"
    assert below(float("inf")) == "inf (NOT below 1e-12)"


def test_within_sigma_is_a_verdict_in_standard_errors():
    assert within_sigma(1.506, 1.504, 1.6e-3) == "within 3 sigma: True"
    assert within_sigma(1.52, 1.504, 1.6e-3) == "within 3 sigma: False"
    assert within_sigma(3.399e-05, 2.018e-05, 1.4e-05, n_sigma=1) == "within 1 sigma: True"
    assert (
        fragile_numbers("Monte Carlo 3.399e-05 +- 1.4e-05 (one standard error): within 3 sigma: True") == []
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        # the six cells that failed on an Intel AVX-512 machine (issue 10), as they were printed
        ("beta = 0.001    6.1e-17    2.2e-09    1.5e-12", [("6.1e-17", "round-off")]),
        ("sum of the 256 probabilities: max |sum - 1| = 1.6e-15", [("1.6e-15", "round-off")]),
        ("Upsample vs conv3x3(nearest 2x): max |diff| 1.5e-06 (output size 4.1)", [("1.5e-06", "residual")]),
        (
            "unrolled formula vs the trainer's EMA: max |diff| 5.2e-07 (weights of size 0.28)",
            [("5.2e-07", "residual")],
        ),
        ("bound term (Eqs. 8, 12): max relative difference 9e-13", [("9e-13", "round-off")]),
        ("bound term: max relative difference 1e-11", [("1e-11", "residual")]),
        ("the library's bound term 0.0787; max |diff| 9.2e-08", [("9.2e-08", "residual")]),
        # an exact zero printed as digits is a residual too
        ("max |live - stored| = 0.0e+00", [("0.0e+00", "residual")]),
        ("(|diff| 0.0000, 3 sigma of MC error 0.0005)", [("0.0000", "residual")]),
        # more digits than float32 holds
        ("loss 0.123456789", [("0.123456789", "digits")]),
        ("< 0.12345678912", [("0.12345678912", "digits")]),
    ],
)
def test_fragile_numbers_are_found(line, expected):
    assert rules(line) == expected
    assert all(f.advice and line.strip()[:40] in str(f) for f in fragile_numbers(line))


@pytest.mark.parametrize(
    "line",
    [
        "max |diff| < 1e-12",
        "library vs the formula, max |diff| over t = 2..T < 1e-12",
        "agrees to 1e-6; within 1e-5 of the closed form",
        "T = 4000  abar_T 2.653e-18  exp(-sum beta) 3.478e-18",  # tiny values that are the lesson, with 3+ digits
        "closed form 1.504e+00 nats, Monte Carlo 1.506e+00: |diff| 2.1e-03",  # a Monte Carlo difference, not round-off
        "DDPM's original code uses a tanh approximation of Phi: max |diff| to the exact CDF 2.4e-04",
        "shift by 1: conv_in alone < 1e-06, the whole U-Net 1.3e-01 (relative difference)",
        "the CIFAR-10 preset has 35,746,307 parameters; seed 1234567890",
        "(1.5 SE apart, SE 1.6e-02)   over the data +0.00158",
        "abar_T = 4.04e-05, L_T = 2.9e-05 bits per dimension",
        "p_sample(z) equals the mean exactly: True",
    ],
)
def test_numbers_that_replay_are_accepted(line):
    assert fragile_numbers(line) == []


def test_clauses_and_lines_are_separate():
    # the residual word governs its own clause only
    assert rules("max |diff| < 1e-6 (output size 3.6e-05)") == []
    assert rules("max |diff| 3e-7; alpha_bar 4.04e-05") == [("3e-7", "residual")]
    assert rules("max |diff|\n4.04e-05") == []
    assert MAX_SIGNIFICANT == 7
