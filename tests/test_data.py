"""Tests of ddpm_lib.data: toy sets, Gaussian data oracles, IDX files, Fashion-MNIST lookup and checks."""

import gzip
import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import ddpm_lib.data as D
from ddpm_lib.cli.data import main as data_main

SYSTEM_TRAIN = [
    D.SYSTEM_FASHION_MNIST_DIR / n for n in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
]
HAS_SYSTEM_TRAIN = all(p.is_file() for p in SYSTEM_TRAIN)


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
    """Tests see the repository's data folder, whatever the caller's environment says."""
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Hide every search location: an empty data folder and no Debian package."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(D.DATA_DIR_ENV, str(empty))
    monkeypatch.setattr(D, "SYSTEM_FASHION_MNIST_DIR", empty / "no-debian")
    return empty


# ---------------------------------------------------------------------------------------------
# 2-D toys


def test_swiss_roll_shape_range_and_formula():
    x = D.swiss_roll(5000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert x[:, 0].min() >= -0.95 and x[:, 0].max() <= 1.27
    assert x[:, 1].min() >= -1.11 and x[:, 1].max() <= 1.42
    # without noise, 10 x = t (cos t, sin t) with t = |10 x| in [1.5 pi, 4.5 pi]
    p = x.double() * 10
    t = p.norm(dim=1)
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    torch.testing.assert_close(p, torch.stack([t * torch.cos(t), t * torch.sin(t)], 1), atol=1e-4, rtol=0)
    # t is uniform: its mean is 3 pi
    assert abs(t.mean().item() - 3 * math.pi) < 0.05


def test_swiss_roll_deterministic_and_noise():
    a = D.swiss_roll(100, generator=torch.Generator().manual_seed(1))
    b = D.swiss_roll(100, generator=torch.Generator().manual_seed(1))
    c = D.swiss_roll(100, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    clean = D.swiss_roll(20000, generator=torch.Generator().manual_seed(3))
    noisy = D.swiss_roll(20000, generator=torch.Generator().manual_seed(3), noise=0.5)
    # same t draws; the noise is 0.5 / 10 per coordinate after scaling
    assert abs((noisy - clean).std().item() - 0.05) < 0.002


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_n(n):
    for f in (D.swiss_roll, D.gaussian_mixture, D.GaussianData(2).sample):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            f(n)


def test_gaussian_mixture_default_and_weights():
    g = torch.Generator().manual_seed(0)
    x = D.gaussian_mixture(16000, generator=g)
    assert x.shape == (16000, 2) and x.dtype == torch.float32
    means = D._eight_gaussians().float()
    k = torch.cdist(x, means).argmin(1)
    counts = torch.bincount(k, minlength=8)
    assert (counts - 2000).abs().max() < 200  # equal weights
    assert abs((x - means[k]).std().item() - 0.1) < 0.005
    y = D.gaussian_mixture_1d(20000, [-2.0, 3.0], [0.5, 1.0], [0.25, 0.75], generator=g)
    assert y.shape == (20000,)
    assert abs((y > 0.5).float().mean().item() - 0.75) < 0.02
    assert abs(y.mean().item() - (0.25 * -2 + 0.75 * 3)) < 0.03


def test_gaussian_mixture_log_prob_normalized():
    grid = torch.linspace(-8, 10, 20001, dtype=torch.float64)
    p = D.gaussian_mixture_log_prob(grid, [-2.0, 3.0], [0.5, 1.0], [1, 3]).exp()
    assert abs(torch.trapezoid(p, grid).item() - 1) < 1e-8
    # a single component is the normal density
    lp = D.gaussian_mixture_log_prob(torch.tensor([[0.3, -0.2]]), [[0.0, 0.0]], 2.0)
    ref = torch.distributions.Normal(0.0, 2.0).log_prob(torch.tensor([0.3, -0.2], dtype=torch.float64)).sum()
    torch.testing.assert_close(lp[0], ref)


# ---------------------------------------------------------------------------------------------
# Gaussian data


def test_gaussian_data_optimal_eps_by_regression():
    s = 0.7
    gd = D.GaussianData(dim=3, mean=torch.tensor([0.5, -1.0, 2.0]), std=s)
    g = torch.Generator().manual_seed(0)
    n = 50_000
    for ab in (0.05, 0.5, 0.95):
        x0 = gd.sample(n, generator=g, dtype=torch.float64)
        eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
        xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        # E[eps | x_t] is linear in x_t: least squares eps_i ~ a_i x_t,i + b_i, per dimension
        xc = xt - xt.mean(0)
        slope = (xc * (eps - eps.mean(0))).sum(0) / (xc**2).sum(0)
        inter = eps.mean(0) - slope * xt.mean(0)
        pred = gd.optimal_eps(xt, ab)
        a_hat = gd.optimal_eps(gd._m[None] * math.sqrt(ab) + torch.eye(3, dtype=torch.float64), ab).diagonal()
        b_hat = gd.optimal_eps(torch.zeros(1, 3, dtype=torch.float64), ab)[0]
        v = ab * s**2 + 1 - ab
        resid = ab * s**2 / v  # the minimum mean-squared error, per dimension
        se_slope = math.sqrt(resid / (n * v))
        torch.testing.assert_close(a_hat, slope, atol=5 * se_slope, rtol=0)
        se_inter = math.sqrt(resid / n * (1 + (xt.mean(0) ** 2).max().item() / v))
        torch.testing.assert_close(b_hat, inter, atol=5 * se_inter, rtol=0)
        mse = ((eps - pred) ** 2).mean().item()
        assert abs(mse - resid) < 5 * resid * math.sqrt(2 / (3 * n))
        # E[x0 | x_t] and E[eps | x_t] give back x_t exactly, and E[x0 | x_t] beats the prior mean
        x0h = gd.optimal_x0(xt, ab)
        torch.testing.assert_close(math.sqrt(ab) * x0h + math.sqrt(1 - ab) * pred, xt)
        assert ((x0 - x0h) ** 2).mean() < ((x0 - gd._m) ** 2).mean()


def test_gaussian_data_marginal_moments():
    gd = D.GaussianData(dim=2, mean=1.5, std=0.3)
    g = torch.Generator().manual_seed(1)
    ab = torch.tensor([0.9, 0.3], dtype=torch.float64)
    mean, var = gd.marginal(ab)
    assert mean.shape == var.shape == (2, 2)
    n = 200_000
    for i in range(2):
        eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
        xt = ab[i].sqrt() * gd.sample(n, g, torch.float64) + (1 - ab[i]).sqrt() * eps
        torch.testing.assert_close(xt.mean(0), mean[i], atol=0.01, rtol=0)
        torch.testing.assert_close(xt.var(0), var[i], atol=0.01, rtol=0)
    m1, v1 = gd.marginal(1.0)
    torch.testing.assert_close(v1, torch.full((2,), 0.09, dtype=torch.float64))
    m0, v0 = gd.marginal(0.0)
    assert torch.equal(m0, torch.zeros(2, dtype=torch.float64)) and torch.equal(
        v0, torch.ones(2, dtype=torch.float64)
    )


def test_gaussian_data_log_prob_and_broadcast():
    gd = D.GaussianData(dim=4, mean=torch.tensor([0.0, 1.0, -1.0, 2.0]), std=0.5)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    ref = torch.distributions.Normal(gd._m, 0.5).log_prob(x.double()).sum(1)
    torch.testing.assert_close(gd.log_prob(x), ref)
    ab = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.99], dtype=torch.float64)
    ref_t = torch.distributions.Normal(
        ab[:, None].sqrt() * gd._m, (ab[:, None] * 0.25 + 1 - ab[:, None]).sqrt()
    )
    torch.testing.assert_close(gd.marginal_log_prob(x, ab), ref_t.log_prob(x.double()).sum(1))
    # [N] alpha_bar broadcasts over image-shaped examples, like a per-example call
    xi = x.reshape(5, 1, 2, 2)
    out = gd.optimal_eps(xi, ab)
    assert out.shape == xi.shape and out.dtype == torch.float32
    for i in range(5):
        torch.testing.assert_close(out[i : i + 1], gd.optimal_eps(xi[i : i + 1], ab[i].item()))
    # eps_model indexes a schedule table by t
    table = torch.linspace(1, 0.01, 11, dtype=torch.float64)
    t = torch.tensor([1, 4, 10, 10, 2])
    torch.testing.assert_close(gd.eps_model(table)(x, t), gd.optimal_eps(x, table[t]))
    with pytest.raises(ValueError, match="std"):
        D.GaussianData(2, std=0.0)
    with pytest.raises(ValueError, match="values per example"):
        gd.optimal_eps(torch.zeros(3, 5), 0.5)


# ---------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    arr = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = arr + 7
    path = D.write_idx(tmp_path / name, arr)
    back = D.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4) and back.flags.writeable
    np.testing.assert_array_equal(back, arr)
    assert path.read_bytes() == D.write_idx(tmp_path / ("b" + name), arr).read_bytes()  # deterministic


def test_idx_layout_is_the_mnist_one(tmp_path):
    raw = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3) + bytes(range(6))
    (tmp_path / "x").write_bytes(raw)
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    for p in ("x", "x.gz"):
        np.testing.assert_array_equal(D.read_idx(tmp_path / p), np.arange(6, dtype=np.uint8).reshape(2, 3))
    be = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", -2, 70000)
    (tmp_path / "i").write_bytes(be)
    assert D.read_idx(tmp_path / "i").tolist() == [-2, 70000]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x08\x03\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x08030801"),
        (bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00", "unsupported IDX type code 0x07"),
        (bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 28, 28) + bytes(1000), "truncated IDX file"),
        (bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2), "truncated IDX file"),
        (bytes([0, 0, 0x08, 1]) + struct.pack(">I", 2) + bytes(3), "longer than its header"),
    ],
)
def test_idx_bad_files(tmp_path, raw, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=message) as e:
        D.read_idx(path)
    assert str(path) in str(e.value)


def test_idx_broken_gzip(tmp_path):
    raw = gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 100) + bytes(100))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="broken gzip") as e:
        D.read_idx(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


def test_fashion_mnist_test_split():
    x, y = D.fashion_mnist("test", download=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert x.min() == -1 and x.max() == 1
    assert torch.bincount(y, minlength=10).tolist() == [1000] * 10
    raw = D.read_idx(D.REPO_DATA_DIR / "fashion-mnist/t10k-images-idx3-ubyte.gz")
    assert torch.equal(D.to_uint8(x)[:, 0], torch.from_numpy(raw))
    assert torch.equal(D.from_uint8(raw[:, None]), x)
    assert len(D.FASHION_MNIST_CLASSES) == 10 and D.FASHION_MNIST_CLASSES[9] == "Ankle boot"


def test_fashion_mnist_train_10k_shipped():
    x, y = D.fashion_mnist("train-10k", download=False)
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert set(y.unique().tolist()) == set(range(10))


def test_fashion_mnist_examples_are_the_first_of_each_class():
    x, y = D.fashion_mnist("test", download=False)
    ex = D.fashion_mnist_examples((9, 2, 1), download=False)
    assert ex.shape == (3, 1, 28, 28) and ex.dtype == torch.float32
    for img, c in zip(ex, (9, 2, 1)):
        first = int((y == c).nonzero()[0])
        assert torch.equal(img, x[first]) and not (y[:first] == c).any()


@pytest.mark.skipif(not HAS_SYSTEM_TRAIN, reason="Debian's dataset-fashion-mnist is not installed")
def test_train_10k_is_the_first_10000_of_the_full_split(monkeypatch, tmp_path):
    shipped = D.fashion_mnist("train-10k", download=False)
    # no shipped subset in sight: it is cut from Debian's full training split
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    derived = D.fashion_mnist("train-10k", download=False)
    assert torch.equal(shipped[0], derived[0]) and torch.equal(shipped[1], derived[1])


def test_subset_labels_reproducible(tmp_path):
    # the subset script's writer gives the shipped bytes again (the labels; the images take seconds)
    src = D.REPO_DATA_DIR / "fashion-mnist/train-10k-labels-idx1-ubyte.gz"
    out = D.write_idx(tmp_path / src.name, D.read_idx(src))
    assert out.read_bytes() == src.read_bytes()


def test_unknown_split():
    with pytest.raises(ValueError, match="allowed: 'train', 'test', 'train-10k'"):
        D.fashion_mnist("valid")


def _copy_test_split(dest: Path):
    dest.mkdir(parents=True, exist_ok=True)
    for n in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(D.REPO_DATA_DIR / "fashion-mnist" / n, dest / n)
    return dest


def test_corrupted_file_fails_the_checksum(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    path = root / "t10k-labels-idx1-ubyte.gz"
    good = (D.REPO_DATA_DIR / "fashion-mnist" / path.name).read_bytes()
    D.fashion_mnist("test", download=False)  # the good copies are verified (and cached) first
    bad = bytearray(good)
    bad[100] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(D.DataIntegrityError) as e:
        D.fashion_mnist("test", root=root, download=False)
    msg = str(e.value)
    assert str(path) in msg and "sha256 mismatch" in msg
    assert "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05" in msg  # expected
    import hashlib

    assert hashlib.sha256(bytes(bad)).hexdigest() in msg  # actual


def test_verification_cache_sees_a_changed_file(tmp_path):
    root = _copy_test_split(tmp_path / "root")
    D.fashion_mnist("test", root=root, download=False)
    path = root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(D.DataIntegrityError, match="sha256 mismatch"):
        D.fashion_mnist("test", root=root, download=False)


def test_missing_files_name_three_ways(tmp_path, nowhere, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        D.fashion_mnist("test", root=root, download=False)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and str(root) in msg and str(nowhere) in msg
    assert "data folder" in msg and "DDPM_DATA_DIR" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg and D.FASHION_MNIST_URL in msg
    with pytest.raises(FileNotFoundError, match="first 10000 of train-images"):
        D.fashion_mnist("train-10k", root=root, download=False)

    # a download that fails says so, as a DownloadError (a FileNotFoundError; ddpm-data's exit code 1)
    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(D.urllib.request, "urlopen", no_network)
    with pytest.raises(
        D.DownloadError, match=r"apt-get install dataset-fashion-mnist(.|\n)*the download failed: network"
    ):
        D.fashion_mnist("test", root=root, download=True)
    assert not list(root.iterdir())


def test_download_is_verified_and_atomic(tmp_path, nowhere, monkeypatch):
    server = _copy_test_split(tmp_path / "server")
    monkeypatch.setattr(D, "FASHION_MNIST_URL", server.as_uri() + "/")
    dest = tmp_path / "dest"
    x, y = D.fashion_mnist("test", root=dest, download=True)
    assert x.shape == (10000, 1, 28, 28)
    assert sorted(p.name for p in dest.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # a download that does not match its hash leaves nothing behind
    dest2 = tmp_path / "dest2"
    (server / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the labels")
    with pytest.raises(D.DataIntegrityError, match="sha256 mismatch"):
        D.fashion_mnist("test", root=dest2, download=True)
    assert [p.name for p in dest2.iterdir()] == ["t10k-images-idx3-ubyte.gz"]


# ---------------------------------------------------------------------------------------------
# The registry


def test_registry_lists_every_file_with_provenance():
    reg = json.loads((D.REPO_DATA_DIR / "registry.json").read_text())["files"]
    originals = ["t10k-images-idx3", "t10k-labels-idx1", "train-images-idx3", "train-labels-idx1"]
    for name in originals:
        e = reg[f"fashion-mnist/{name}-ubyte.gz"]
        official = e["variants"]["official"]
        assert official["url"] == D.FASHION_MNIST_URL + f"{name}-ubyte.gz"
        assert len(official["sha256"]) == 64 and official["size"] > 0 and len(official["md5"]) == 32
        assert e["variants"]["debian"]["sha256"] != official["sha256"]  # Debian re-headered the gzip files
    assert not reg["fashion-mnist/train-images-idx3-ubyte.gz"]["shipped"]
    assert not reg["fashion-mnist/train-labels-idx1-ubyte.gz"]["shipped"]
    assert "make_fashion_mnist_subset" in reg["fashion-mnist/train-10k-images-idx3-ubyte.gz"]["source"]
    for key, e in reg.items():
        assert e["size"] > 0 and len(e["sha256"]) == 64 and e["source"] and e["licence"].startswith("MIT")
        assert (
            e["licence"].startswith("MIT, Zalando Research")
            or key == "ablations/swiss_roll_table2.json"
            or (key == "ablations/swiss_roll_table2.md")
        )
        assert (D.REPO_DATA_DIR / key).is_file() == e["shipped"]
    # the built-in table (used when no registry.json is found) agrees with the file
    for key, accepted in D._BUILTIN_REGISTRY.items():
        want = {(a["size"], a["sha256"]) for a in accepted}
        assert {(a["size"], a["sha256"]) for a in D._accepted(key)} == want


def test_registry_entry(tmp_path, monkeypatch):
    key = "fashion-mnist/t10k-labels-idx1-ubyte.gz"
    reg = json.loads((D.data_dir() / "registry.json").read_text())["files"]
    entry = D.registry_entry(key)
    assert entry == reg[key] and entry["shipped"]
    entry["sha256"] = "changed"  # a copy: the registry is not touched
    assert D.registry_entry(key)["sha256"] == reg[key]["sha256"]
    assert D.registry_entry("no/such/file") is None
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))  # a data folder without registry.json
    assert D.registry_entry(key) is None


def test_verify_registry(capsys):
    assert data_main(["verify"]) == 0  # ddpm-data verify
    assert capsys.readouterr().out.count("ok  ") == 10
    done = D.verify_registry()
    assert set(done) == {
        "ablations/swiss_roll_table2.json",
        "ablations/swiss_roll_table2.md",
        "ablations/fashion_mnist_table2.json",
        "ablations/fashion_mnist_table2.md",
        "checkpoints/fashion_mnist_unet_samples_1000steps.png",
        "fashion-mnist/t10k-images-idx3-ubyte.gz",
        "fashion-mnist/t10k-labels-idx1-ubyte.gz",
        "fashion-mnist/train-10k-images-idx3-ubyte.gz",
        "fashion-mnist/train-10k-labels-idx1-ubyte.gz",
        "trajectories/fashion_mnist_unet_ancestral1000_seed0.safetensors",
    }


def test_verify_registry_reports_missing_and_bad(tmp_path, monkeypatch, capsys):
    shutil.copy(D.REPO_DATA_DIR / "registry.json", tmp_path / "registry.json")
    shutil.copytree(D.REPO_DATA_DIR / "ablations", tmp_path / "ablations")
    grid = "checkpoints/fashion_mnist_unet_samples_1000steps.png"
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(D.REPO_DATA_DIR / grid, tmp_path / grid)
    _copy_test_split(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist/t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(D.DataIntegrityError) as e:
        D.verify_registry()
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz: sha256 mismatch" in msg
    assert "train-10k-images-idx3-ubyte.gz: missing" in msg
    assert "t10k-images" not in msg
    # ddpm-data verify: a check that fails exits 1, one error line with the problems indented below it
    assert data_main(["verify"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0] == "error: registry check failed:"
        and all(s.startswith("  ") for s in err[1:])
        and len(err) == 5
    )


# ---------------------------------------------------------------------------------------------
# Minibatches


def test_iterate_minibatches():
    x = torch.arange(10)
    y = x * 10
    batches = list(D.iterate_minibatches((x, y), 3, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and all(len(b[0]) == 3 for b in batches)
    seen = torch.cat([b[0] for b in batches])
    assert len(set(seen.tolist())) == 9
    assert all(torch.equal(bx * 10, by) for bx, by in batches)
    again = list(D.iterate_minibatches((x, y), 3, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    plain = list(D.iterate_minibatches(x, 4, shuffle=False, drop_last=False))
    assert [b.tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="batch_size"):
        next(D.iterate_minibatches(x, 11))
    with pytest.raises(ValueError, match="batch_size"):
        next(D.iterate_minibatches(x, 0))
    it = D.infinite_minibatches(x, 4, generator=torch.Generator().manual_seed(0))
    got = [next(it) for _ in range(7)]  # past several epochs
    assert all(b.shape == (4,) for b in got)


def test_gaussian_data_bound_terms_match_monte_carlo_and_bracket_the_nll():
    import ddpm_lib as dl

    gd = D.GaussianData(dim=4, mean=torch.tensor([0.3, -0.2, 0.0, 0.5]), std=0.5)
    sch = dl.NoiseSchedule.linear(T=40, beta_start=2.5e-3, beta_end=0.5)
    g = torch.Generator().manual_seed(0)
    H = 0.5 * math.log(2 * math.pi * math.e * 0.25)  # entropy per dimension, nats
    for variance in ("fixed_large", "fixed_small"):
        closed = gd.bound_terms(sch, variance)
        assert closed.shape == (sch.T + 1,)
        d = dl.GaussianDiffusion(sch, variance=variance, decoder="gaussian")
        x0 = gd.sample(4000, generator=g, dtype=torch.float64)
        mc = d.vlb_terms(gd.eps_model(sch.alpha_bars), x0, generator=g) / gd.dim  # [N x (T + 1)]
        given = gd.bound_terms(sch, variance, x0)
        assert given.shape == (4000, sch.T + 1)
        diff = (mc - given).sum(1)  # only x_t's noise is left
        assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff))
        assert abs(given.sum(1).mean().item() - closed.sum().item()) < 4 * given.sum(
            1
        ).std().item() / math.sqrt(4000)
        # the model's own cross-entropy lies between the entropy of the data and the bound
        ce = gd.model_cross_entropy(sch, variance)
        assert H - 1e-9 <= ce <= closed.sum().item()
    # examples whose squared deviations average exactly s^2 (and squares m^2 + s^2) give the data average
    one = D.GaussianData(dim=2, mean=0.3, std=0.5)
    x0 = torch.tensor([[0.8, -0.2]], dtype=torch.float64)  # m + s, m - s
    torch.testing.assert_close(
        one.bound_terms(sch, "fixed_large", x0)[0], one.bound_terms(sch, "fixed_large")
    )
    with pytest.raises(ValueError, match="variance"):
        one.bound_terms(sch, "learned")


def test_gaussian_data_model_cross_entropy_against_sampling():
    import ddpm_lib as dl

    gd = D.GaussianData(dim=2, mean=torch.tensor([0.4, -0.3]), std=0.6)
    sch = dl.NoiseSchedule.linear(T=20, beta_start=5e-3, beta_end=0.6)
    d = dl.GaussianDiffusion(sch, variance="fixed_small", decoder="gaussian")
    model = gd.eps_model(sch.alpha_bars)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    for tt in range(sch.T, 0, -1):  # the reverse chain with the decoder's noise at t = 1 as well
        t = torch.full((len(x),), tt)
        pm = d.p_mean_variance(model(x, t), x, t)
        x = pm["mean"] + pm["variance"].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    mp, vp = x.mean(0), x.var(0)
    ce = 0.5 * (torch.log(2 * math.pi * vp) + ((gd._m - mp) ** 2 + 0.36) / vp)
    assert abs(gd.model_cross_entropy(sch, "fixed_small") - ce.mean().item()) < 2e-3


def test_mixture_1d_points_are_gaussian_mixture_1d_as_a_float64_column():
    from ddpm_lib.mixtures import DEFAULT_MIXTURE as M

    x = D.mixture_1d_points(500, seed=3)
    ref = D.gaussian_mixture_1d(
        500, M["means"], M["stds"], M["weights"], generator=torch.Generator().manual_seed(3)
    )
    assert x.shape == (500, 1) and x.dtype == torch.float64
    assert torch.equal(x[:, 0], ref.double())
    other = D.mixture_1d_points(500, seed=3, mixture={"means": (5.0,), "stds": (0.1,), "weights": (1.0,)})
    assert abs(float(other.mean()) - 5.0) < 0.05
    with pytest.raises(ValueError, match="missing stds, weights"):
        D.mixture_1d_points(5, seed=0, mixture={"means": (0.0,)})
