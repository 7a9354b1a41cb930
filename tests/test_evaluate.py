"""Evaluation: the Fréchet distance, the Fréchet classifier distance, bits/dim end to end."""

import json
import math

import numpy as np
import pytest
import torch

from ddpm_lib import evaluate as E
from ddpm_lib.cli.evaluate import main
from ddpm_lib.data import fashion_mnist

torch.set_num_threads(1)
scipy_linalg = pytest.importorskip("scipy.linalg")


def _random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d + 3))
    return a @ a.T / a.shape[1]


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ---------------------------------------------------------------------------------------------
# the Fréchet distance


@pytest.mark.parametrize("d", [2, 7, 40])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
        want = _scipy_frechet(mu1, s1, mu2, s2)
        got = E.frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(want, rel=1e-8, abs=1e-9)
        # tensors work as well, and the distance is symmetric
        t = [torch.from_numpy(v) for v in (mu1, s1, mu2, s2)]
        assert E.frechet_distance(*t) == pytest.approx(got, rel=1e-12)
        assert E.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-8)


def test_frechet_closed_forms():
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2
    assert E.frechet_distance([0.5], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(
        1.5**2 + (2 - 3) ** 2, rel=1e-12
    )
    assert E.frechet_distance(0.0, 1.0, 0.0, 0.25) == pytest.approx(0.25, rel=1e-12)
    # diagonal: sum of the 1-D distances
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    want = ((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert E.frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(want, rel=1e-10)
    # a rotation of both: unchanged; identical Gaussians: 0
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert E.frechet_distance(q @ m1, q @ np.diag(v1) @ q.T, q @ m2, q @ np.diag(v2) @ q.T) == pytest.approx(
        want, rel=1e-8
    )
    s = _random_cov(rng, 6)
    assert abs(E.frechet_distance(m1, s, m1, s)) < 1e-10


def test_frechet_singular_covariances_and_errors():
    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 20, rank=5), _random_cov(rng, 20, rank=3)  # fewer samples than dimensions
    d = E.frechet_distance(np.zeros(20), s1, np.zeros(20), s2)
    assert math.isfinite(d) and d >= 0
    assert abs(E.frechet_distance(np.zeros(20), s1, np.zeros(20), s1)) < 1e-12
    with pytest.raises(ValueError, match="same length"):
        E.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        E.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


# ---------------------------------------------------------------------------------------------
# the Fréchet classifier distance (the shipped classifier)


@pytest.mark.slow
def test_fcd_halves_of_the_test_split_vs_noise():
    x, _ = fashion_mnist("test")
    a, b = x[:2000], x[2000:4000]
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mu, sigma = E.classifier_statistics(a)
    assert mu.shape == (128,) and sigma.shape == (128, 128) and mu.dtype == torch.float64
    assert torch.allclose(sigma, sigma.T)
    halves = E.fcd(a, b)
    vs_noise = E.fcd(noise, a)
    assert 0 <= halves < 0.05 * vs_noise, (halves, vs_noise)
    assert abs(E.fcd(a, a)) < 1e-6 * vs_noise
    assert "NOT Inception FID" in E.FCD_NOTE


def test_fcd_floor_falls_with_n_and_refuses_more_than_half_the_split():
    # the bias of the Frechet distance at small n: 500 real images score worse than 2,000 against real ones
    f500, f2000 = E.fcd_floor(500), E.fcd_floor(2000)
    assert 0 < f2000 < f500, (f500, f2000)
    assert round(f2000, 2) == 1.28  # the floor the shipped model's registry entry records beside its FCD
    with pytest.raises(
        ValueError, match=r"n must be an integer in 2\.\.5000 \(half the test split\), got 5001"
    ):
        E.fcd_floor(5001)


# ---------------------------------------------------------------------------------------------
# bits/dim and the command line on a tiny checkpoint (T = 10)


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_unet_checkpoint):
    return tiny_unet_checkpoint


def test_bits_per_dim_on_agrees_with_the_library(tiny_ckpt):
    _, model, d = tiny_ckpt
    x, _ = fashion_mnist("test")
    x = x[:5]
    r = E.bits_per_dim_on(model, d, x, batch_size=5, seed=7)
    want = d.bits_per_dim(model, x, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(r["bpd"], want.double(), rtol=1e-12, atol=0)
    assert r["mean"] == pytest.approx(float(want.double().mean()), rel=1e-12)
    assert r["stderr"] == pytest.approx(float(want.double().std() / math.sqrt(5)), rel=1e-9)
    assert r["L_T"] + r["L_t_minus_1"] + r["L_0"] == pytest.approx(r["mean"], rel=1e-12)
    assert r["terms_mean"].shape == (11,) and r["L_T"] > 0 and r["L_0"] > 0


@pytest.mark.slow
def test_cli_bpd_and_fcd_end_to_end(tiny_ckpt, tmp_path, capsys):
    path = tiny_ckpt[0]
    out = tmp_path / "eval.json"
    rc = main(
        [
            str(path),
            "--bpd",
            "--subset",
            "6",
            "--fid-samples",
            "12",
            "--sample-steps",
            "3",
            "--batch-size",
            "4",
            "--json",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    b = res["bpd"]
    assert b["n"] == 6 and b["subset"] == 6 and b["stderr"] > 0
    assert b["L_T"] + b["L_t_minus_1"] + b["L_0"] == pytest.approx(b["mean"], rel=1e-9)
    assert "bits/dim on 6 test images" in printed
    f = res["fcd"]
    assert f["n_generated"] == 12 and f["sampler"] == {"method": "respaced", "steps": 3, "seed": 0}
    assert math.isfinite(f["value"]) and f["value"] > 0
    assert "NOT Inception FID" in f["note"] and "NOT Inception FID" in printed
    # the same seed and batch size give the same numbers
    assert (
        main(
            [
                str(path),
                "--bpd",
                "--subset",
                "6",
                "--batch-size",
                "4",
                "--json",
                str(tmp_path / "b.json"),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "b.json").read_text())["bpd"]["mean"] == b["mean"]
    # nothing asked: a usage error (exit 2), one line
    assert main([str(path)]) == 2
    assert (
        capsys.readouterr().err
        == "error: nothing to evaluate: ask for --bpd, --fid-samples N and/or --points N\n"
    )
