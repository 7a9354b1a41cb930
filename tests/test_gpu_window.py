"""The GPU window of issue 16, rehearsed on the CPU at tiny size: scripts/gpu_fashion_mnist.py continues a
registered U-Net (a warm start) and measures it before and after, scripts/promote_unet.py puts the returned
parts together, judges the figures and installs the new model with its training windows in the registry.

The same scripts run on the GPU with configs/fashion_mnist_gpu.toml (scripts/gpu_session.sh); here a U-Net of
8 channels with T = 100 on the shipped 10,000-image subset, in a temporary data folder.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm_lib.checkpoints import load_checkpoint, sha256_file

REPO = Path(__file__).resolve().parents[1]
TINY_TOML = """
dataset = "fashion-mnist-10k"
model = "unet"
model_args = {ch = 8, ch_mult = [1, 2], num_res_blocks = 1, attn_resolutions = [14], groups = 4}
dropout = 0.1
T = 100
beta_end = 0.2
batch_size = 4
lr = 1e-3
warmup_steps = 2
ema_decay = 0.9
ema_warmup = 10
steps = 1000
ckpt_every = 0
sample_every = 0
log_every = 1
"""


def promote_module():
    spec = importlib.util.spec_from_file_location("promote_unet", REPO / "scripts" / "promote_unet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    """A data folder with a registered tiny U-Net trained 3 steps, and the GPU script's output continuing it
    (made once: the test that installs a new model puts the registered one back when it ends)."""
    tmp_path = tmp_path_factory.mktemp("window")
    with pytest.MonkeyPatch.context() as mp:
        yield from _window(tmp_path, mp)


def _window(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    (data / "registry.json").write_text((REPO / "data" / "registry.json").read_text())
    (data / "fashion-mnist").symlink_to(REPO / "data" / "fashion-mnist")
    for f in ("fashion_mnist_classifier.safetensors", "fashion_mnist_classifier.json"):
        (data / "checkpoints" / f).symlink_to(REPO / "data" / "checkpoints" / f)
    env = {**os.environ, "DDPM_DATA_DIR": str(data), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("DDPM_DATA_DIR", str(data))
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY_TOML)
    run = dict(env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    r = subprocess.run(
        [sys.executable, "-m", "ddpm_lib.train", "--config", str(toml), "--steps", "3", "--out-dir",
         str(tmp_path / "w1"), "--no-progress", "--threads", "1"],
        **run,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    from ddpm_lib.pretrained import register_pretrained

    shipped = data / "checkpoints" / "tiny_unet.safetensors"
    shipped.write_bytes((tmp_path / "w1" / "latest.safetensors").read_bytes())
    metrics = {
        "device": "cpu",
        "train_seconds": 1.5,
        "batch_size": 4,
        "fcd": {"value": 1e6, "n_generated": 8},
    }
    register_pretrained("tiny-unet", shipped, command="python -m ddpm_lib.train --steps 3", metrics=metrics)
    # the device session's script, as the GPU runs it, with the tiny settings: training, measuring, packing
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # this test's Python
    (bin_dir / "python3").chmod(0o755)
    device = tmp_path / "device_out"
    device.mkdir()
    tiny = f"--config {toml} --device cpu --steps 6 --bpd-subset 3 --fcd-samples 8 --grid-n 4 --eval-batch 4"
    tiny += " --split-mb 0.05"
    session_env = {
        **env,
        "PATH": f"{bin_dir}:{env['PATH']}",
        "OUT": str(device),
        "STAGES": "fmnist",
        "TRAIN_S": "600",
        "INIT_FROM": "tiny-unet",
        "FM_EXTRA": tiny,
        "WORK_DIR": str(tmp_path / "work"),
        "GPU_DATA": str(tmp_path / "gpu_data"),  # here the shipped subset stands for the training split
    }
    (tmp_path / "gpu_data").mkdir()
    (tmp_path / "gpu_data" / "fashion-mnist").symlink_to(REPO / "data" / "fashion-mnist")
    r = subprocess.run(["bash", "scripts/gpu_session.sh"], **{**run, "env": session_env})
    assert r.returncode == 0, r.stdout + r.stderr
    # back here: the bundle unpacked, the checkpoint's parts beside it
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(device / "bundle.tgz"), "-C", str(out)], check=True)
    out = out / "fmnist"
    for part in device.glob("unet.part.*"):
        (out / part.name).write_bytes(part.read_bytes())
    assert "fmnist done rc=0" in (out.parent / "timeline.txt").read_text(), (
        out.parent / "fmnist.log"
    ).read_text()
    yield data, out, shipped, env


def test_a_window_continues_the_registered_model_and_measures_it_before_and_after(window):
    data, out, shipped, env = window
    res = json.loads((out / "results.json").read_text())
    assert res["init_from"] == "tiny-unet" and res["init_sha256"] == sha256_file(shipped)
    assert res["start_step"] == 3 and res["steps"] == 6 and res["steps_this_run"] == 3
    parts = res["checkpoint"]["parts"]
    assert len(parts) >= 2 and not (out / "unet.safetensors").exists()  # split for the device tool
    assert res["checkpoint"]["remake"].endswith("--init-from tiny-unet --steps 6")
    bpd = res["bpd"]
    assert bpd["n"] == 3 and set(bpd) >= {"before", "after", "after_minus_before"}
    # the paired difference is the difference of the means (the same images, the same draws of x_t)
    assert bpd["after_minus_before"]["mean"] == pytest.approx(
        bpd["after"]["mean"] - bpd["before"]["mean"], abs=2e-4
    )
    # "before" is the registered model: the same figure as bits/dim of that file measured afresh
    from ddpm_lib.evaluate import bits_per_dim_on, load_test_split
    from ddpm_lib.pretrained import load_model

    p = load_model("tiny-unet", device="cpu")
    again = bits_per_dim_on(p.model, p.diffusion, load_test_split("fashion-mnist", 3), batch_size=4, seed=2)
    assert again["mean"] == pytest.approx(bpd["before"]["mean"], abs=1e-4)
    assert (out / "samples_1000steps.png").is_file() and (out / "fcd_samples.safetensors").is_file()


def test_promotion_judges_both_figures_and_installs_the_windows(window):
    data, out, shipped, env = window
    paths = (data / "registry.json", shipped, shipped.with_suffix(".json"))
    saved = {p: p.read_bytes() if p.exists() else None for p in paths}
    try:
        promotion_judges_and_installs(data, out, shipped, env)
    finally:
        for p, blob in saved.items():
            p.write_bytes(blob) if blob is not None else p.unlink(missing_ok=True)


def promotion_judges_and_installs(data, out, shipped, env):
    promote = [sys.executable, "scripts/promote_unet.py", str(out), "--name", "tiny-unet"]
    run = dict(env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    before = (data / "registry.json").read_text()

    # a truncated part is refused, naming it
    part = out / "unet.part.01"
    blob = part.read_bytes()
    part.write_bytes(blob[:-10])
    r = subprocess.run([*promote, "--dry-run"], **run)
    assert r.returncode == 2 and "a part is corrupt or truncated" in r.stderr
    part.write_bytes(blob)

    r = subprocess.run([*promote, "--dry-run"], **run)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "promotion.json").read_text())
    assert (data / "registry.json").read_text() == before  # a dry run installs nothing
    mod = promote_module()
    b = report["bpd"]
    assert report["promote"] == (
        b["after"]["mean"] < b["before"]["mean"] and report["fcd"]["new"]["value"] < 1e6
    )
    assert report["fcd"]["n"] == 8 and report["fcd"]["old"] == 1e6

    # the rule: both figures must improve
    fig = {"before": {"mean": 3.0}, "after": {"mean": 2.9}}
    assert mod.decide(fig, 5.0, 6.0)["promote"]
    assert not mod.decide(fig, 6.5, 6.0)["promote"]
    assert not mod.decide({"before": {"mean": 3.0}, "after": {"mean": 3.1}}, 5.0, 6.0)["promote"]

    # installing (whatever this tiny run's verdict): the file, its sidecar, the registry's windows
    verdict, ckpt_path, entry = mod.judge(out, "tiny-unet")
    new = mod.install(out, "tiny-unet", verdict, ckpt_path, entry)
    assert sha256_file(shipped) == new["sha256"] == verdict["new_sha256"] != entry["sha256"]
    assert load_checkpoint(shipped).step == 6
    assert json.loads(shipped.with_suffix(".json").read_text())["step"] == 6
    m = new["metrics"]
    assert [w["steps"] for w in m["windows"]] == [[0, 3], [3, 6]]
    assert m["windows"][1]["command"] == (
        "python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --init-from "
        "runs/fashion-mnist-gpu-w1/latest.safetensors --steps 6 --out-dir runs/fashion-mnist-gpu-w2"
    )
    assert m["train_steps"] == 6 and m["train_seconds"] == pytest.approx(
        1.5 + verdict["results"]["train_seconds"]
    )
    assert m["bits_per_dim_test"]["previous_model"] == b["before"]["mean"]
    # the keys chapters 07 (the bound) and 10 (the FCD) read from the entry
    assert set(m["bits_per_dim_test"]) >= {
        "mean",
        "stderr",
        "n_images",
        "L_T",
        "sum_L_t_minus_1",
        "L_0",
        "evaluated_by",
    }
    assert set(m["fcd"]) >= {"value", "n_generated", "sampler", "reference", "first_128_samples"}
    assert m["fcd"]["previous_model"] == 1e6 and "test_split_halves_8" in m["fcd"]
    from ddpm_lib.pretrained import training_record

    assert "trained in 2 sessions" in str(training_record("tiny-unet"))

    # a window that started from another file than the one registered now is refused
    r = subprocess.run([*promote, "--dry-run"], **run)
    assert r.returncode == 2 and "its 'before' figures are not this model's" in r.stderr


def test_warm_start_from_the_command_line(window, tmp_path):
    data, out, shipped, env = window
    toml = data.parent / "tiny.toml"
    r = subprocess.run(
        [sys.executable, "-m", "ddpm_lib.train", "--config", str(toml), "--init-from", "tiny-unet", "--steps",
         "5", "--out-dir", str(tmp_path / "w2"), "--no-progress", "--threads", "1"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(tmp_path / "w2" / "latest.safetensors")
    assert (
        ck.step == 5
        and ck.config["train"]["init_from"] == "tiny-unet"
        and ck.config["train"]["warmup_start"] == 3
    )
    assert torch.isfinite(
        torch.tensor(json.loads((tmp_path / "w2" / "log.jsonl").read_text().splitlines()[-1])["loss"])
    )
