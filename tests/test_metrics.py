"""Distances between point sets: the sliced Wasserstein distance and the W1 ratio of samples to data."""

import math

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.metrics import W1_RATIO_DATA_SEED, sliced_w1_ratio, sliced_w1_ratios, sliced_wasserstein

torch.set_num_threads(1)


def roll(n, seed):
    return dl.swiss_roll(n, generator=torch.Generator().manual_seed(seed))


def test_sliced_wasserstein_in_one_dimension_is_the_exact_w1():
    """In 1-D every direction is +1 or -1, and W1 of two equal-size sets is the mean |sorted x - sorted y|."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(500, 1, generator=g), 2 * torch.randn(500, 1, generator=g) + 0.3
    exact = (x.double().sort(0)[0] - y.double().sort(0)[0]).abs().mean().item()
    assert sliced_wasserstein(x, y, n_projections=8, generator=g) == pytest.approx(exact, rel=1e-12)


def test_w1_ratio_is_the_averaged_sliced_distance_over_the_floor():
    """The definition, spelled out: 8 pairs of fresh data sets from W1_RATIO_DATA_SEED on, the same directions."""
    x = roll(300, 5) + 0.05 * torch.randn(300, 2, generator=torch.Generator().manual_seed(6))
    r = sliced_w1_ratio(x)
    sw = lambda a, b: sliced_wasserstein(a, b, 256, torch.Generator().manual_seed(0))  # noqa: E731
    sets = [
        (roll(300, W1_RATIO_DATA_SEED + 2 * k), roll(300, W1_RATIO_DATA_SEED + 2 * k + 1)) for k in range(8)
    ]
    w1 = sum(sw(x, ref) for ref, _ in sets) / 8
    floor = sum(sw(again, ref) for ref, again in sets) / 8
    assert r["n"] == 300
    assert r["w1"] == pytest.approx(w1, rel=1e-12) and r["w1_floor"] == pytest.approx(floor, rel=1e-12)
    assert r["ratio"] == pytest.approx(w1 / floor, rel=1e-12)
    assert sliced_w1_ratio(x) == r  # seeded: the same numbers every time
    # several sample sets against the same data sets: the same numbers as one call each
    y = roll(300, 9)
    assert sliced_w1_ratios([x, y]) == [r, sliced_w1_ratio(y)]


def test_w1_ratio_tells_data_from_a_missing_arm_blur_and_noise():
    n = 2000
    data = sliced_w1_ratio(roll(n, 7))["ratio"]  # data the ratio has not seen: about 1 (measured 0.83)
    u = 0.25 + 0.75 * torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = 1.5 * math.pi * (1 + 2 * u)  # dl.swiss_roll without its innermost quarter
    no_inner_arm = (torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10).float()
    blur = lambda sigma: roll(n, 7) + sigma * torch.randn(n, 2, generator=torch.Generator().manual_seed(8))  # noqa: E731
    noise = sliced_w1_ratio(torch.randn(n, 2, generator=torch.Generator().manual_seed(9)))["ratio"]
    assert 0.7 < data < 1.3
    assert sliced_w1_ratio(no_inner_arm)["ratio"] > 3  # misplaced mass: measured 5.4
    # a blur moves little mass far: 0.05 (a sixth of the gap between the arms) is not seen, 0.2 is
    assert sliced_w1_ratio(blur(0.05))["ratio"] < 1.3 < 1.6 < sliced_w1_ratio(blur(0.2))["ratio"]  # 0.98, 2.1
    assert noise > 10  # measured 15
    assert (
        sliced_w1_ratio(blur(0.2))["w1_floor"] == sliced_w1_ratio(roll(n, 7))["w1_floor"]
    )  # it depends on n only


def test_w1_ratio_other_data_and_refusals():
    mix = lambda n, generator: dl.gaussian_mixture(n, generator=generator)  # noqa: E731
    x = dl.gaussian_mixture(400, generator=torch.Generator().manual_seed(1))
    assert 0.7 < sliced_w1_ratio(x, mix, n_sets=4)["ratio"] < 1.4
    assert sliced_w1_ratio(x)["ratio"] > 3  # the mixture is not the swiss roll
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        sliced_w1_ratio(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN or infinite"):
        sliced_w1_ratio(torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="n_sets"):
        sliced_w1_ratio(x, n_sets=0)
    with pytest.raises(ValueError, match="same D"):
        sliced_w1_ratio(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="differ in shape"):
        sliced_w1_ratios([x, x[:10]])
    with pytest.raises(ValueError, match="no sample sets"):
        sliced_w1_ratios([])
