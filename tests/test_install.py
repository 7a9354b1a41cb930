"""Using the library outside the repository: the data folder rule, and a wheel installed elsewhere.

``pip install <clone>`` (not editable) builds a wheel; setup.py's ``build_course_data`` puts
data/registry.json and every file it ships into ``ddpm_lib/_data/`` of that wheel. Here a wheel is
built from this checkout, installed into a fresh venv outside it, and used from a folder outside
it with $DDPM_DATA_DIR unset: the pretrained U-Net samples, Fashion-MNIST loads, and what is not
shipped (CIFAR-10) fails with the file, where it looked and the fix.
"""

import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import ddpm_lib.data as D
from ddpm_lib import pretrained as P
from ddpm_lib.cli import data as data_cli
from ddpm_lib.cli import pretrained as pretrained_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No data folder anywhere: $DDPM_DATA_DIR unset, no clone's data/, no copy in the package, no Debian files."""
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(D, "REPO_DATA_DIR", tmp_path / "clone" / "data")
    monkeypatch.setattr(D, "PACKAGE_DATA_DIR", tmp_path / "site-packages" / "ddpm_lib" / "_data")
    monkeypatch.setattr(D, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-debian")
    return tmp_path


def _registry(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / D.REGISTRY_NAME).write_text(json.dumps({"format": 1, "files": {}, "pretrained": {}}))
    return folder


# ---------------------------------------------------------------------------------------------
# The rule (fast)


def test_data_dir_rule_order(nowhere, monkeypatch):
    repo, pkg = D.REPO_DATA_DIR, D.PACKAGE_DATA_DIR
    assert D.data_dir() == repo and "DDPM_DATA_DIR" in D.data_dir_problem()  # 4. none found
    _registry(pkg)
    assert D.data_dir() == pkg and D.data_dir_problem() is None  # 3. the copy a wheel carries
    _registry(repo)
    assert D.data_dir() == repo  # 2. the clone's data/ wins over a copy in the package
    monkeypatch.setenv(D.DATA_DIR_ENV, str(nowhere / "mine"))
    assert D.data_dir() == nowhere / "mine"  # 1. $DDPM_DATA_DIR wins, registry or not
    assert "holds no registry.json" in D.data_dir_problem()


def test_checkout_reads_its_own_data_folder(monkeypatch):
    """Running from the clone (or an editable install) reads data/ of the clone, as before."""
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    assert D.data_dir() == D.REPO_DATA_DIR == ROOT / "data"
    assert D.PACKAGE_DATA_DIR == ROOT / "ddpm_lib" / "_data" and not D.PACKAGE_DATA_DIR.exists()
    assert D.data_dir_problem() is None


def test_no_data_folder_errors_name_the_fix(nowhere, capsys):
    with pytest.raises(P.UnknownPretrainedError) as e:
        P.load_pretrained("fashion-mnist-unet")
    msg = str(e.value)
    assert "'fashion-mnist-unet'" in msg and "DDPM_DATA_DIR=" in msg and "pip install" in msg
    assert str(D.REPO_DATA_DIR) in msg and str(D.PACKAGE_DATA_DIR) in msg
    with pytest.raises(FileNotFoundError, match="DDPM_DATA_DIR="):
        P.load_model("fashion-mnist-unet")
    # `python -m ddpm_lib.pretrained list` says where it looked and fails
    assert pretrained_cli.main(["list"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "DDPM_DATA_DIR=" in out.err
    assert str(D.REPO_DATA_DIR) in out.err and str(D.PACKAGE_DATA_DIR) in out.err
    assert pretrained_cli.main(["verify"]) == 1 and "DDPM_DATA_DIR=" in capsys.readouterr().err
    assert data_cli.main(["verify"]) == 1
    assert "DDPM_DATA_DIR=" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError) as e:
        D.fashion_mnist("test", download=False)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and str(D.REPO_DATA_DIR / "fashion-mnist") in msg
    assert "no course data folder" in msg and "DDPM_DATA_DIR=" in msg


def test_data_dir_env_without_registry_fails_list(nowhere, monkeypatch, capsys):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(nowhere / "empty"))
    assert pretrained_cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert f"DDPM_DATA_DIR={nowhere / 'empty'} holds no registry.json" in err
    _registry(nowhere / "empty")
    assert pretrained_cli.main(["list"]) == 0
    assert "no pretrained checkpoints registered" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# A wheel installed outside the checkout (slow: build, install, load, sample)


def _expected_wheel_data() -> set:
    reg = json.loads((ROOT / "data" / "registry.json").read_text())
    files = {k for k, e in reg["files"].items() if e.get("shipped")} | {
        e["path"] for e in reg["pretrained"].values()
    }
    return {"registry.json"} | files


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


INSTALLED_CHECK = r"""
import json, torch
torch.set_num_threads(1)
import ddpm_lib as dl
from ddpm_lib import cifar
from ddpm_lib.data import data_dir
from ddpm_lib.sampling import generate

m = dl.load_pretrained("fashion-mnist-unet")
x, _ = generate(m.model, m.diffusion, m.data_shape, 2, method="ddim", steps=3, clip=True, progress=False)
images, labels = dl.fashion_mnist("test", download=False)
sub, _ = dl.fashion_mnist("train-10k", download=False)
try:
    cifar.cifar10("test", download=False)
    cifar_error = None
except FileNotFoundError as e:
    cifar_error = str(e)
print(json.dumps({
    "file": dl.__file__, "data_dir": str(data_dir()), "path": str(m.path),
    "shape": list(x.shape), "finite": bool(torch.isfinite(x).all()), "min": x.min().item(), "max": x.max().item(),
    "std": x.std().item(), "test": list(images.shape), "labels": labels.bincount().tolist(),
    "subset": list(sub.shape), "cifar_error": cifar_error,
}))
"""


@pytest.mark.slow
def test_wheel_installed_elsewhere_carries_the_data(tmp_path):
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", D.DATA_DIR_ENV, "PYTHONHOME")}
    # setuptools' build/ and egg-info go to tmp_path (distutils' DIST_EXTRA_CONFIG), not into the checkout
    (tmp_path / "egg").mkdir()
    (tmp_path / "build.cfg").write_text(
        f"[build]\nbuild_base = {tmp_path / 'build'}\n[egg_info]\negg_base = {tmp_path / 'egg'}\n"
    )
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INDEX="1",
        PIP_ROOT_USER_ACTION="ignore",
        PYTHONNOUSERSITE="1",
        DIST_EXTRA_CONFIG=str(tmp_path / "build.cfg"),
    )
    # 1. the wheel, as `pip install <clone>` builds it (no network: this environment's setuptools)
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT],
        env=env,
    )
    (wheel,) = dist.glob("ddpm_lib-*.whl")
    with zipfile.ZipFile(wheel) as z:
        carried = {n[len("ddpm_lib/_data/") :] for n in z.namelist() if n.startswith("ddpm_lib/_data/")}
    assert carried == _expected_wheel_data()
    size_mb = wheel.stat().st_size / 1e6
    assert size_mb < 45, f"the wheel grew to {size_mb:.1f} MB"
    # an sdist carries the same files under data/, so a wheel built from it (python -m build) has them too
    _run(
        [sys.executable, "-c", "import setuptools.build_meta as b, sys; b.build_sdist(sys.argv[1])", dist],
        cwd=ROOT,
        env=env,
    )
    (sdist,) = dist.glob("ddpm_lib-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = [m.name for m in t.getmembers() if m.isfile()]
    top = f"{sdist.name[: -len('.tar.gz')]}/data/"
    assert {n[len(top) :] for n in names if n.startswith(top)} == _expected_wheel_data()
    # an editable wheel carries none of it: it reads data/ of the clone, as before
    _run(
        [
            sys.executable,
            "-c",
            "import setuptools.build_meta as b, sys; b.build_editable(sys.argv[1])",
            dist / "e",
        ],
        cwd=ROOT,
        env=env,
    )
    (editable,) = (dist / "e").glob("ddpm_lib-*.whl")
    with zipfile.ZipFile(editable) as z:
        assert not [n for n in z.namelist() if "_data" in n or n.endswith(".safetensors")]

    # 2. a fresh venv outside the checkout: the wheel's own copy of ddpm_lib, and this environment's
    # dependencies through .pth lines naming its site-packages (a folder so added has its own .pth files,
    # the editable install's finder among them, left unrun; the checkout itself is not on the list)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=env)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).stdout.strip()
    )
    site = site.resolve()
    deps = dict.fromkeys(
        p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()
    )
    (site / "outer-deps.pth").write_text("".join(f"{d}\n" for d in deps))
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel], env=env)

    # 3. use it from a folder outside the checkout, $DDPM_DATA_DIR unset
    work = tmp_path / "homework"
    work.mkdir()
    r = json.loads(_run([py, "-c", INSTALLED_CHECK], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert Path(r["file"]).resolve().is_relative_to(site / "ddpm_lib"), r["file"]  # not the checkout's copy
    assert Path(r["data_dir"]) == site / "ddpm_lib" / "_data" and Path(r["path"]).is_relative_to(
        r["data_dir"]
    )
    assert r["shape"] == [2, 1, 28, 28] and r["finite"] and -1 <= r["min"] < r["max"] <= 1 and r["std"] > 0.1
    assert (
        r["test"] == [10000, 1, 28, 28] and r["labels"] == [1000] * 10 and r["subset"] == [10000, 1, 28, 28]
    )
    err = r["cifar_error"]
    assert err and "cifar-10-python.tar.gz" in err and str(site / "ddpm_lib" / "_data" / "cifar10") in err
    assert "DDPM_DATA_DIR" in err and "ddpm-data cifar10 download" in err

    listed = _run([py, "-m", "ddpm_lib.pretrained", "list"], cwd=work, env=env).stdout
    for name in json.loads((ROOT / "data" / "registry.json").read_text())["pretrained"]:
        assert f"{name}: checkpoints/" in listed
    print(
        f"wheel {wheel.name}: {size_mb:.1f} MB; built, installed and used in {time.perf_counter() - t0:.1f} s"
    )
