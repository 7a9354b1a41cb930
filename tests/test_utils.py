"""ddpm_lib.utils: the one device rule, seeding, and atomic writes."""

import os

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.utils import atomic_write, device


def test_device_rule():
    assert device(None) == torch.device("cpu")  # what loading and sampling default to
    assert device("cpu") == device(torch.device("cpu")) == torch.device("cpu")
    auto = dl.device()  # "auto": cuda, then mps, then cpu
    assert auto == device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        assert auto.type in ("mps", "cpu")
        with pytest.raises(RuntimeError, match="cuda.*is_available"):
            device("cuda:0")
    with pytest.raises(ValueError, match="device must be 'auto', None, or a torch device"):
        device("gpu")


def test_load_pretrained_follows_the_rule():
    assert next(dl.load_pretrained("swiss-roll-mlp").model.parameters()).device == torch.device("cpu")
    assert (
        next(dl.load_pretrained("swiss-roll-mlp", device="auto").model.parameters()).device.type
        == dl.device().type
    )


def test_seed_everything_returns_a_generator_seeded_alike():
    g = dl.seed_everything(3)
    a = torch.randn(4, generator=g)
    dl.seed_everything(3)
    assert torch.equal(torch.randn(4, generator=torch.Generator().manual_seed(3)), a)


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("one"))
    with pytest.raises(ZeroDivisionError):
        atomic_write(target, lambda tmp: (open(tmp, "w").write("two"), 1 / 0))
    assert target.read_text() == "one" and os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.slow
def test_every_public_submodule_is_reachable_from_the_package():
    """After `import ddpm_lib as dl`, dl.viz.show_images and friends work without importing the submodule."""
    import subprocess
    import sys

    code = (
        "import ddpm_lib as dl, pkgutil\n"
        "mods = {m.name for m in pkgutil.iter_modules(dl.__path__)} - {'cli', 'course', 'version'}\n"
        "assert mods == set(dl.SUBMODULES), sorted(mods ^ set(dl.SUBMODULES))\n"
        "assert callable(dl.viz.show_images) and callable(dl.data.fashion_mnist) and dl.train.Trainer\n"
        "assert set(dl.SUBMODULES) <= set(dir(dl))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
