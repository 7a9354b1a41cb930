"""ddpm_lib.trajectories: sampling trajectories as safetensors files, and the stored one of chapter 10.

save_trajectory writes what ``python -m ddpm_lib.sample --trajectory`` writes (checked against the
shipped file, which that command made), load_trajectory reads it back bit for bit, and the shipped
trajectory is registered, verified and consistent with the U-Net's last, noiseless step.
"""

import json
import struct
from pathlib import Path

import pytest
import torch

import ddpm_lib as dl
from ddpm_lib.data import DataIntegrityError, data_dir, registry_entry, verify_file
from ddpm_lib.sampling import predicted_eps
from ddpm_lib.trajectories import (
    DEFAULT_TRAJECTORY,
    MAKE_TRAJECTORY,
    TRAJECTORY_FORMAT,
    load_trajectory,
    save_trajectory,
)

pytest.importorskip("safetensors")


def toy_model(x, t):
    """A deterministic stand-in for eps_theta: shrinks x_t by a t-dependent factor."""
    return x * (0.3 + 0.5 * (t.float() / 1000).view(-1, *([1] * (x.ndim - 1))))


@pytest.fixture(scope="module")
def trajectory():
    d = dl.GaussianDiffusion(dl.NoiseSchedule.linear(T=1000))
    _, traj = d.respace(20).sample(
        toy_model,
        (2, 1, 8, 8),
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=[20, 10, 5, 1, 0],
    )
    return traj


def _read(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def test_round_trip_is_exact_and_decodes_metadata(tmp_path, trajectory):
    path = save_trajectory(
        trajectory,
        tmp_path / "sub" / "t.safetensors",
        {"seed": 7, "method": "respaced", "eta": None, "shape": [1, 8, 8]},
    )
    assert path == tmp_path / "sub" / "t.safetensors" and path.stat().st_mode & 0o777 == 0o644
    header, _ = _read(path)
    assert header["__metadata__"] == {
        "format": "ddpm_lib.trajectory",
        "seed": "7",
        "method": "respaced",
        "eta": "null",
        "shape": "[1, 8, 8]",
    }  # strings as they are, the rest JSON
    traj, meta = load_trajectory(path)
    for name in ("ts", "timesteps", "x_t", "pred_x0"):
        a, b = getattr(traj, name), getattr(trajectory, name)
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(9.0), b.nan_to_num(9.0)), name
    assert torch.isnan(traj.pred_x0[-1]).all() and traj.timesteps.tolist() == [1000, 500, 250, 50, 0]
    assert meta == {
        "format": TRAJECTORY_FORMAT,
        "seed": 7,
        "method": "respaced",
        "eta": None,
        "shape": [1, 8, 8],
    }


def test_save_writes_what_the_sample_command_writes(tmp_path):
    # the shipped trajectory was written by `python -m ddpm_lib.sample ... --trajectory`: load it and
    # write it again; the tensors and the metadata must come out the same (the header's key order is
    # safetensors' own and varies)
    src = data_dir() / DEFAULT_TRAJECTORY
    if not src.is_file():
        pytest.skip(f"no stored trajectory ({MAKE_TRAJECTORY} makes it)")
    traj, meta = load_trajectory(src)
    out = save_trajectory(traj, tmp_path / "again.safetensors", meta)
    (h1, d1), (h2, d2) = _read(src), _read(out)
    assert h1 == h2 and d1 == d2


def test_refusals(tmp_path, trajectory):
    with pytest.raises(FileNotFoundError, match="make_trajectory.sh|ddpm_lib.sample"):
        load_trajectory("/nonexistent/trajectory.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a ddpm_lib trajectory"):
        load_trajectory(tmp_path / "other.safetensors")
    with pytest.raises(TypeError, match=r"load_trajectory\(\.\.\.\)\[0\]"):
        save_trajectory((trajectory, {}), tmp_path / "pair.safetensors")
    bad = dl.Trajectory(trajectory.ts, trajectory.x_t, trajectory.pred_x0[:, :1], trajectory.timesteps)
    with pytest.raises(ValueError, match="pred_x0 must have x_t's shape"):
        save_trajectory(bad, tmp_path / "bad.safetensors")
    assert not (tmp_path / "pair.safetensors").exists() and not (tmp_path / "bad.safetensors").exists()


def test_a_registered_file_is_verified(tmp_path, monkeypatch, trajectory):
    # a file under the data folder that the registry lists is checked against its sha256 before loading
    root = tmp_path / "data"
    rel = "trajectories/t.safetensors"
    path = save_trajectory(trajectory, root / rel)
    entry = {"sha256": "0" * 64, "size": path.stat().st_size, "shipped": True, "source": "test"}
    (root / "registry.json").write_text(json.dumps({"files": {rel: entry}}))
    monkeypatch.setenv("DDPM_DATA_DIR", str(root))
    assert registry_entry(rel) == entry
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        load_trajectory(rel)
    assert load_trajectory(rel, verify=False)[0].x_t.shape == trajectory.x_t.shape


# ---- the stored trajectory of chapter 10 ----------------------------------------------------------


def test_stored_trajectory_is_registered_and_consistent():
    schedule = dl.NoiseSchedule.linear(T=1000)
    entry = registry_entry(DEFAULT_TRAJECTORY)
    path = data_dir() / DEFAULT_TRAJECTORY
    if entry is None or not path.is_file():
        pytest.skip(f"no stored trajectory yet ({MAKE_TRAJECTORY} makes it)")
    assert entry["shipped"] and "make_trajectory.sh" in entry["source"]
    assert verify_file(path, DEFAULT_TRAJECTORY) == entry["sha256"]
    assert path.stat().st_size < 5_000_000
    traj, meta = load_trajectory()
    ts = traj.timesteps.tolist()
    assert ts[0] == 1000 and 0 in ts and set(range(0, 20)) <= set(ts)
    assert meta["method"] == "ancestral" and meta["steps"] == 1000 and meta["format"] == TRAJECTORY_FORMAT
    # the last step is noiseless: x_0 = mu_theta(x_1, 1), from the stored eps
    eps = predicted_eps(traj, schedule)
    d = dl.GaussianDiffusion(schedule)
    k1, k0 = ts.index(1), ts.index(0)
    B = traj.x_t.shape[1]
    mean = d.p_mean_variance(eps[k1], traj.x_t[k1], torch.ones(B, dtype=torch.long))["mean"]
    assert (traj.x_t[k0] - mean).abs().max() < 1e-4


def test_make_trajectory_script_names_the_registered_file():
    script = (Path(__file__).resolve().parents[1] / "scripts" / "make_trajectory.sh").read_text()
    assert "python -m ddpm_lib.sample fashion-mnist-unet --method ancestral" in script
    assert DEFAULT_TRAJECTORY.split("/")[-1] in script and "--trajectory" in script
