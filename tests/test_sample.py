"""ddpm-sample (ddpm_lib.cli.sample over ddpm_lib.sample), end to end on tiny checkpoints with few steps."""

import shutil
import warnings

import pytest
import torch
from matplotlib import image as mpimg
from safetensors import safe_open
from safetensors.torch import load_file

from ddpm_lib import NoiseSchedule, GaussianDiffusion
from ddpm_lib import sample as S
from ddpm_lib.checkpoints import save_checkpoint
from ddpm_lib.cli.sample import main
from ddpm_lib.data import REPO_DATA_DIR
from ddpm_lib.nets import MLP
from ddpm_lib.pretrained import register_pretrained

torch.set_num_threads(1)

T = 10


def _diffusion(decoder="discretized"):
    return GaussianDiffusion(
        NoiseSchedule.linear(T=T, beta_start=0.1, beta_end=0.7),
        prediction="eps",
        variance="fixed_large",
        decoder=decoder,
    )


@pytest.fixture(scope="module")
def image_ckpt(tiny_unet_checkpoint):
    return tiny_unet_checkpoint[0]


@pytest.fixture(scope="module")
def roll_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "roll.safetensors"
    torch.manual_seed(0)
    model = MLP(hidden=16, layers=2, time_dim=8)
    cfg = {
        "diffusion": _diffusion("gaussian").config(),
        "data": {"dataset": "swiss-roll", "shape": [2]},
        "train": {},
        "metrics": {},
        "command": "test",
    }
    save_checkpoint(path, model, config=cfg, step=1)
    return path


def test_cli_ancestral_grid_trajectory_samples(image_ckpt, tmp_path):
    out, traj, raw = tmp_path / "grid.png", tmp_path / "traj.safetensors", tmp_path / "s.safetensors"
    rc = main(
        [
            str(image_ckpt),
            "--n",
            "6",
            "--out",
            str(out),
            "--seed",
            "3",
            "--trajectory",
            str(traj),
            "--record",
            "10,5,0",
            "--save-samples",
            str(raw),
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--nrow",
            "3",
            "--no-progress",
        ]
    )
    assert rc == 0
    img = mpimg.imread(out)
    assert img.shape[:2] == (2 * 30 + 2, 3 * 30 + 2)  # 2 rows x 3 columns of 28 px, 2 px padding
    samples = load_file(raw)["samples"]
    assert samples.shape == (6, 1, 28, 28) and torch.isfinite(samples).all()
    tr = load_file(traj)
    assert tr["ts"].tolist() == [10, 5, 0] and tr["timesteps"].tolist() == [10, 5, 0]
    assert tr["x_t"].shape == (3, 6, 1, 28, 28) and tr["pred_x0"].shape == (3, 6, 1, 28, 28)
    assert torch.equal(tr["x_t"][-1], samples)  # the state at t = 0 is the result
    assert torch.isnan(tr["pred_x0"][-1]).all() and torch.isfinite(tr["pred_x0"][:2]).all()
    with safe_open(str(traj), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "ddpm_lib.trajectory" and meta["method"] == "ancestral" and meta["seed"] == "3"

    # the same seed and batch size give the same samples; another seed differs
    r1 = S.sample_from_checkpoint(image_ckpt, 6, seed=3, batch_size=4, progress=False)
    assert torch.equal(r1.samples, samples)
    r2 = S.sample_from_checkpoint(image_ckpt, 6, seed=4, progress=False)
    assert not torch.equal(r2.samples, samples)


def test_respaced_and_ddim(image_ckpt, tmp_path):
    r = S.sample_from_checkpoint(
        image_ckpt, 3, method="respaced", steps=4, record=[10, 0], progress=False, out=tmp_path / "r.png"
    )
    assert r.info["steps"] == 4 and r.samples.shape == (3, 1, 28, 28)
    assert r.trajectory.timesteps.tolist() == [10, 0]
    assert (tmp_path / "r.png").is_file()
    # respacing to all T steps is ancestral sampling itself
    full = S.sample_from_checkpoint(image_ckpt, 3, seed=1, progress=False).samples
    resp = S.sample_from_checkpoint(image_ckpt, 3, seed=1, method="respaced", steps=T, progress=False).samples
    assert torch.allclose(full, resp, atol=1e-5)
    # DDIM with eta = 0 is deterministic given x_T, and records on its own grid
    d1 = S.sample_from_checkpoint(
        image_ckpt, 3, method="ddim", steps=5, seed=2, record=[10, 0], progress=False
    )
    d2 = S.sample_from_checkpoint(image_ckpt, 3, method="ddim", steps=5, seed=2, progress=False)
    assert torch.equal(d1.samples, d2.samples) and d1.trajectory.ts.tolist() == [10, 0]
    assert (
        main(
            [
                str(image_ckpt),
                "--n",
                "2",
                "--out",
                str(tmp_path / "d.png"),
                "--method",
                "ddim",
                "--steps",
                "3",
                "--eta",
                "1.0",
                "--clip",
                "--no-progress",
            ]
        )
        == 0
    )
    with pytest.warns(UserWarning, match="not on this sampler's grid"):
        S.sample_from_checkpoint(image_ckpt, 1, method="respaced", steps=2, record=[7], progress=False)
    # defaults: at most T steps, and the default trajectory times lie on the sampler's grid (no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = S.sample_from_checkpoint(
            image_ckpt, 1, method="ddim", trajectory=tmp_path / "t.safetensors", progress=False
        )
    assert r.info["steps"] == T and r.trajectory.timesteps.tolist() == [10, 8, 5, 3, 0]


def test_errors(image_ckpt, tmp_path, capsys):
    with pytest.raises(ValueError, match="use method='respaced'"):
        S.sample_from_checkpoint(image_ckpt, 2, steps=5, progress=False)
    # usage errors (exit 2, one line): no such file or name, more steps than T
    assert main([str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "neither a checkpoint file nor a registered pretrained name" in err
    assert main([str(image_ckpt), "--method", "ddim", "--steps", "50", "--out", str(tmp_path / "x.png")]) == 2
    assert "steps must be in 1..T" in capsys.readouterr().err
    # a failure while working (exit 1): the grid cannot be written where --out points
    (tmp_path / "file").write_text("")
    assert (
        main(
            [
                str(image_ckpt),
                "--n",
                "1",
                "--method",
                "ddim",
                "--steps",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path / "file" / "x.png"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("error: ")


def test_two_d_data_scatter(roll_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/samples.png, its folder made on the way
    assert main([str(roll_ckpt), "--n", "50", "--no-progress"]) == 0
    img = mpimg.imread(tmp_path / "runs" / "samples.png")
    assert img.ndim == 3 and img.shape[0] > 100
    r = S.sample_from_checkpoint(roll_ckpt, 5, method="ddim", steps=4, progress=False)
    assert r.samples.shape == (5, 2)


def test_by_registered_name(image_ckpt, tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    shutil.copy(REPO_DATA_DIR / "registry.json", data / "registry.json")
    shutil.copy(image_ckpt, data / "checkpoints" / "tiny.safetensors")
    monkeypatch.setenv("DDPM_DATA_DIR", str(data))
    register_pretrained("tiny-sampler", data / "checkpoints" / "tiny.safetensors", command="test")
    r = S.sample_from_checkpoint("tiny-sampler", 2, seed=3, progress=False)
    assert r.info["name"] == "tiny-sampler" and r.info["sha256"]
    assert torch.equal(r.samples, S.sample_from_checkpoint(image_ckpt, 2, seed=3, progress=False).samples)
    # a registered file found truncated is a failure (exit 1), not a usage error
    path = data / "checkpoints" / "tiny.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    assert main(["tiny-sampler", "--n", "1", "--out", str(tmp_path / "x.png"), "--no-progress"]) == 1
