"""Registered pretrained checkpoints: register (with measured metrics), verify by sha256, load; clear refusals."""

import json
import shutil

import pytest
import torch
from tiny_runs import tiny_unet

from ddpm_lib import NoiseSchedule, GaussianDiffusion
from ddpm_lib import pretrained as P
from ddpm_lib.checkpoints import save_checkpoint
from ddpm_lib.cli.evaluate import main as evaluate_main
from ddpm_lib.cli.pretrained import main
from ddpm_lib.data import REPO_DATA_DIR, DataIntegrityError
from ddpm_lib.evaluate import point_metrics
from ddpm_lib.nets import MLP, UNet

torch.set_num_threads(1)


def tiny_diffusion_checkpoint(path, T=10, seed=0, ema=True):
    """A tiny UNet checkpoint following the trainer's config contract (EMA weights differ from the raw ones)."""
    model = tiny_unet(seed, jitter=False)
    ema_model = UNet(model.config)
    with torch.no_grad():
        for p, q in zip(model.parameters(), ema_model.parameters()):
            p.add_(0.01 * torch.randn_like(p))
            q.copy_(p + 0.01 * torch.randn_like(p))
    d = GaussianDiffusion(
        NoiseSchedule.linear(T=T, beta_start=0.1, beta_end=0.7), prediction="eps", variance="fixed_large"
    )
    cfg = {
        "diffusion": d.config(),
        "data": {"dataset": "fashion-mnist", "shape": [1, 28, 28]},
        "train": {"steps": 1, "batch_size": 2},
        "metrics": {"test_bpd": 7.5},
        "command": "made by a test",
    }
    save_checkpoint(path, model, config=cfg, ema_model=ema_model if ema else None, step=1)
    return model, ema_model, d


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A temporary data folder with a copy of the registry, made the data folder by $DDPM_DATA_DIR."""
    d = tmp_path / "data"
    (d / "checkpoints").mkdir(parents=True)
    shutil.copy(REPO_DATA_DIR / "registry.json", d / "registry.json")
    monkeypatch.setenv("DDPM_DATA_DIR", str(d))
    return d


def test_register_and_load_round_trip(data_dir):
    path = data_dir / "checkpoints" / "tiny.safetensors"
    model, ema_model, d = tiny_diffusion_checkpoint(path)
    before = json.loads((data_dir / "registry.json").read_text())
    entry = P.register_pretrained(
        "tiny", path, command="python -m ddpm_lib.train --tiny", description="a test model"
    )
    reg = json.loads((data_dir / "registry.json").read_text())
    # the other keys and entries are kept; the new one is under "pretrained"
    assert {k: v for k, v in reg.items() if k != "pretrained"} == {
        k: v for k, v in before.items() if k != "pretrained"
    }
    e = reg["pretrained"]["tiny"]
    assert e == entry
    assert e["path"] == "checkpoints/tiny.safetensors" and e["size"] == path.stat().st_size
    assert e["sha256"] == P.sha256_file(path) and e["command"] == "python -m ddpm_lib.train --tiny"
    assert e["metrics"] == {"test_bpd": 7.5} and e["description"] == "a test model"
    assert "tiny" in P.list_pretrained() and P.is_pretrained_name("tiny")

    p = P.load_pretrained("tiny")
    assert p.path == path and p.name == "tiny" and p.sha256 == e["sha256"]
    assert isinstance(p.diffusion, GaussianDiffusion) and p.diffusion.T == 10
    assert p.data_shape == (1, 28, 28) and not p.model.training
    assert torch.equal(p.diffusion.schedule.betas, d.schedule.betas)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.equal(p.model(x, t), ema_model.eval()(x, t))  # EMA weights by default
        raw = P.load_pretrained("tiny", use_ema=False).model
        assert torch.equal(raw(x, t), model.eval()(x, t))
    # load_model takes a path or a name
    assert P.load_model(str(path)).sha256 == e["sha256"]
    assert P.load_model("tiny").name == "tiny"


def test_register_cli_and_list(data_dir, capsys):
    path = data_dir / "checkpoints" / "cli.safetensors"
    tiny_diffusion_checkpoint(path)
    assert (
        main(["register", "cli-model", str(path), "--command", "python -m x --a 1", "--description", "d"])
        == 0
    )
    assert P.list_pretrained()["cli-model"]["command"] == "python -m x --a 1"
    assert main(["list"]) == 0
    assert "cli-model" in capsys.readouterr().out
    assert main(["verify", "cli-model"]) == 0
    capsys.readouterr()
    # a file outside the data folder is refused with the way out: a usage error (exit 2), one line
    outside = data_dir.parent / "outside.safetensors"
    shutil.copy(path, outside)
    with pytest.raises(ValueError, match="not under the data folder"):
        P.register_pretrained("x", outside, command="c")
    assert main(["register", "x", str(outside), "--command", "c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not under the data folder" in err and len(err.splitlines()) == 1
    assert main(["verify", "cli-model", "no-such-model"]) == 2
    assert "unknown pretrained name 'no-such-model'" in capsys.readouterr().err


def test_sha_mismatch_is_refused(data_dir):
    path = data_dir / "checkpoints" / "tiny.safetensors"
    tiny_diffusion_checkpoint(path)
    P.register_pretrained("tiny", path, command="c", description="")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError, match="sha256 mismatch for pretrained checkpoint 'tiny'") as e:
        P.load_pretrained("tiny")
    assert "Remake it with: c" in str(e.value)
    assert main(["verify", "tiny"]) == 1  # a check that fails
    with pytest.raises(DataIntegrityError, match="tiny"):
        P.verify_pretrained()


def test_truncated_and_missing_files_are_refused(data_dir):
    path = data_dir / "checkpoints" / "tiny.safetensors"
    tiny_diffusion_checkpoint(path)
    P.register_pretrained("tiny", path, command="c", description="")
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataIntegrityError, match="truncated"):
        P.load_pretrained("tiny")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        P.load_pretrained("tiny")


def test_unknown_name_lists_known_names(data_dir):
    path = data_dir / "checkpoints" / "tiny.safetensors"
    tiny_diffusion_checkpoint(path)
    P.register_pretrained("tiny-a", path, command="c")
    P.register_pretrained("tiny-b", path, command="c")
    with pytest.raises(P.UnknownPretrainedError, match="unknown pretrained name 'nope'.*tiny-a, tiny-b"):
        P.load_pretrained("nope")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor a registered.*tiny-a"):
        P.load_model("nope")


def test_shipped_registry_entries_verify():
    """Every pretrained checkpoint registered in the repository's registry is present and intact."""
    entries = json.loads((REPO_DATA_DIR / "registry.json").read_text()).get("pretrained", {})
    for name, e in entries.items():
        assert {"path", "sha256", "size", "command", "description", "metrics"} <= set(e), name
        assert e["path"].startswith("checkpoints/") and e["command"].strip(), name
        assert (REPO_DATA_DIR / e["path"]).stat().st_size == e["size"], name
        assert P.sha256_file(REPO_DATA_DIR / e["path"]) == e["sha256"], name


def tiny_roll_checkpoint(path, T=10):
    """A tiny untrained MLP for the swiss roll (2-D points), T = 10."""
    torch.manual_seed(0)
    model = MLP(hidden=16, layers=1, time_dim=8)
    d = GaussianDiffusion(NoiseSchedule.linear(T=T, beta_start=0.1, beta_end=0.7), decoder="gaussian")
    cfg = {
        "diffusion": d.config(),
        "data": {"dataset": "swiss-roll", "shape": [2]},
        "command": "made by a test",
    }
    save_checkpoint(path, model, config=cfg, ema_model=model, step=1)
    return model, d


def test_points_evaluation_becomes_the_registered_metrics(data_dir, tmp_path, capsys):
    """ddpm-evaluate --points measures a 2-D model; register --evaluation stores it, for this file only."""
    path = data_dir / "checkpoints" / "roll.safetensors"
    model, d = tiny_roll_checkpoint(path)
    out = tmp_path / "eval.json"
    argv = [
        str(path),
        "--points",
        "300",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        "--json",
        str(out),
    ]
    assert evaluate_main(argv) == 0
    assert "300 samples (ancestral, 10 steps): sliced W1 to the data" in capsys.readouterr().out
    res = json.loads(out.read_text())
    q = res["points"]
    assert res["command"] == "python -m ddpm_lib.evaluate " + " ".join(argv)
    want = point_metrics(model.eval(), d, "swiss-roll", 300, seed=3)  # the library call the command makes
    assert {k: q[k] for k in want} == json.loads(json.dumps(want))
    assert q["sampler"] == {"method": "ancestral", "steps": 10, "seed": 3} and q["n"] == 300
    assert q["w1_ratio"] == pytest.approx(q["sliced_w1_samples"] / q["sliced_w1_data"], rel=1e-12)
    assert q["w1_ratio"] > 2 and q["sliced_w1_noise"] > q["sliced_w1_data"]  # untrained: far from the data

    assert main(["register", "roll", str(path), "--evaluation", str(out), "--description", "d"]) == 0
    e = P.list_pretrained()["roll"]
    assert e["metrics"] == {"evaluated_by": res["command"], "points": q} and e["command"] == "made by a test"
    # an evaluation of another file is refused (exit 2, one line), and the registry keeps what it had
    other = data_dir / "checkpoints" / "other.safetensors"
    tiny_roll_checkpoint(other, T=12)
    capsys.readouterr()
    assert main(["register", "other", str(other), "--evaluation", str(out)]) == 2
    assert "the evaluation measured another file" in capsys.readouterr().err
    assert "other" not in P.list_pretrained()
    with pytest.raises(ValueError, match="no measurement"):
        P.evaluation_metrics({"sha256": P.sha256_file(path)}, path)
    # an image model has no --points
    image = data_dir / "checkpoints" / "tiny.safetensors"
    tiny_diffusion_checkpoint(image)
    assert evaluate_main([str(image), "--points", "10", "--device", "cpu", "--no-progress"]) == 2
    assert "--points is for models of 2-D points" in capsys.readouterr().err


def test_training_record_of_the_shipped_unet_states_what_its_entry_records():
    r = P.training_record("fashion-mnist-unet")
    entry = P.list_pretrained()["fashion-mnist-unet"]
    assert r.steps == entry["step"] and r.batch_size == entry["metrics"]["batch_size"]
    assert r.device == entry["metrics"]["device"]
    assert r.images == r.steps * r.batch_size
    assert r.epochs == pytest.approx(r.images / 60_000)
    assert r.command.startswith("python -m ddpm_lib.train ") and "(" not in r.command
    assert r.command in entry["command"]
    text = str(r)
    assert f"{r.steps:,} steps of batch {r.batch_size}" in text and r.command in text
    assert r.cpu_hours(3.0) == pytest.approx(r.images / 3.0 / 3600)
    with pytest.raises(ValueError, match="images_per_cpu_second"):
        r.cpu_hours(0)


def test_training_record_of_a_registered_file_and_refusals(data_dir):
    path = data_dir / "checkpoints" / "tiny.safetensors"
    tiny_diffusion_checkpoint(path)
    P.register_pretrained(
        "tiny-test",
        path,
        command="bash go.sh (equivalently python -m ddpm_lib.train --steps 1 --batch-size 2), then cp",
    )
    (data_dir / "checkpoints" / "tiny.json").write_text(json.dumps({"train": {"steps": 10, "batch_size": 2}}))
    r = P.training_record("tiny-test")
    assert (r.steps, r.batch_size, r.planned_steps, r.dataset) == (1, 2, 10, "fashion-mnist")
    assert r.command == "python -m ddpm_lib.train --steps 1 --batch-size 2"
    assert "hardware not recorded" in str(r) and "stopped at step 1 of the 10" in str(r)
    with pytest.raises(P.UnknownPretrainedError, match="no-such-model"):
        P.training_record("no-such-model")
