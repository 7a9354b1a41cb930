"""A checkpoint whose config was edited (checksum recomputed, so it loads) must be refused
before its config's numbers allocate anything: sample, evaluate and train --resume alike.

The memory tests run the command in a child process and compare its peak RSS after the
command with its peak after importing the library: before the checks, these files drove the
child to 3-6 GB; a refusal costs a few MB.
"""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ddpm_lib import GaussianDiffusion, NoiseSchedule
from ddpm_lib.checkpoints import CheckpointError, build_model, load_checkpoint, save_checkpoint
from ddpm_lib.nets import MLP
from ddpm_lib.pretrained import load_model
from ddpm_lib.schedules import MAX_T
from ddpm_lib.train import ConfigError, TrainConfig, Trainer
from tiny_runs import tiny_roll

ROOT = Path(__file__).resolve().parents[1]
# peak RSS a refused command may add to the imports' (it was gigabytes before the checks)
REFUSAL_BUDGET_MB = 200


def rewrite_config(src, dst, edit, text=None) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with ``edit(config)`` applied to its stored config (or the
    config's JSON replaced by ``text``, which need not be an object) and the checksum recomputed as
    save_checkpoint computes it (sha256 over the metadata without the checksum, then each tensor's
    name, dtype, shape and bytes in name order): a file that passes every integrity check yet
    describes something else."""
    tensors = load_file(src)
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    if text is None:
        cfg = json.loads(meta["config"])
        edit(cfg)
        text = json.dumps(cfg, sort_keys=True)
    meta["config"] = text
    h = hashlib.sha256(
        json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode()
    )
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    meta["checksum"] = h.hexdigest()
    save_file(tensors, dst, metadata=meta)
    return Path(dst)


def run_measured(module: str, *args) -> tuple[int, str, float]:
    """(exit code, stderr, MB of peak RSS added after the imports) of ``module``'s main(args) (a command
    line of ddpm_lib.cli), in a fresh interpreter."""
    code = (
        "import resource, sys\n"
        f"from {module} import main\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "rc = main(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(f'added_kb={peak - base}', file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )

    def cap_memory():  # a regression fails this test instead of exhausting the machine
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_memory,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    lines = r.stderr.strip().splitlines()
    added = [int(line.split("=")[1]) for line in lines if line.startswith("added_kb=")]
    return r.returncode, r.stderr, (added[-1] / 1024 if added else float("inf"))


@pytest.fixture(scope="module")
def roll_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "roll.safetensors"
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(
        NoiseSchedule.linear(T=10, beta_start=0.1, beta_end=0.7), decoder="gaussian"
    )
    cfg = {"diffusion": diffusion.config(), "data": {"dataset": "swiss-roll", "shape": [2]}, "train": {}}
    model = MLP(hidden=16, layers=2, time_dim=8)
    return save_checkpoint(path, model, config=cfg, ema_model=model, step=1)


def test_rewrite_config_keeps_a_loadable_file(roll_ckpt, tmp_path):
    # the helper's checksum is the library's: an unedited copy loads and builds
    copy = rewrite_config(roll_ckpt, tmp_path / "same.safetensors", lambda cfg: None)
    assert load_checkpoint(copy).model_args == load_checkpoint(roll_ckpt).model_args
    build_model(copy)


CRAFTED = {
    "layers": (
        lambda c: c["model_args"].update(layers=10**7),
        r"more than \d+ parameter tensors, but the file stores \d+",
    ),
    "hidden": (lambda c: c["model_args"].update(hidden=12000), "does not match the tensors stored"),
    "data-shape": (lambda c: c["data"].update(shape=[2, 10**8]), r"data shape must be \(D,\) or \(C, H, W\)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_sample_refuses_an_edited_config_before_allocating(roll_ckpt, tmp_path, case):
    edit, message = CRAFTED[case]
    bad = rewrite_config(roll_ckpt, tmp_path / f"{case}.safetensors", edit)
    rc, err, added_mb = run_measured(
        "ddpm_lib.cli.sample",
        bad,
        "--n",
        "4",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        tmp_path / "o.png",
    )
    assert rc == 2, err  # a checkpoint that cannot be used as given: a usage error
    assert f"error: {bad}" in err and re.search(message, err), err
    assert "Traceback" not in err
    assert added_mb < REFUSAL_BUDGET_MB, f"the refusal took {added_mb:.0f} MB"


@pytest.mark.slow
def test_evaluate_goes_through_the_same_checks(roll_ckpt, tmp_path):
    bad = rewrite_config(roll_ckpt, tmp_path / "layers.safetensors", CRAFTED["layers"][0])
    rc, err, added_mb = run_measured(
        "ddpm_lib.cli.evaluate", bad, "--fid-samples", "4", "--device", "cpu", "--no-progress"
    )
    assert rc == 2 and "parameter tensors, but the file stores" in err, err
    assert added_mb < REFUSAL_BUDGET_MB
    with pytest.raises(CheckpointError, match="refused before building it"):
        load_model(bad)


def test_build_model_names_the_file_and_first_mismatches(roll_ckpt, tmp_path):
    bad = rewrite_config(roll_ckpt, tmp_path / "wide.safetensors", CRAFTED["hidden"][0])
    with pytest.raises(CheckpointError) as e:
        build_model(bad)
    msg = str(e.value)
    assert str(bad) in msg and "hidden=12000" in msg
    assert "linears.0.weight: checkpoint (16, 2) vs model (12000, 2)" in msg and "... and" in msg


def test_unet_resolution_that_changes_no_weight_is_bounded(tmp_path, make_tiny_unet):
    # a U-Net's resolution shapes no weight: only the data-shape bound stops a sampler allocating it
    model = make_tiny_unet(jitter=False)
    diffusion = GaussianDiffusion(NoiseSchedule.linear(T=10, beta_start=0.1, beta_end=0.7))
    src = save_checkpoint(
        tmp_path / "u.safetensors",
        model,
        ema_model=model,
        step=1,
        config={"diffusion": diffusion.config(), "data": {"dataset": "x", "shape": [1, 28, 28]}},
    )

    def huge(c):
        c["model_args"].update(resolution=2**20, attn_resolutions=[2**19])
        c["data"]["shape"] = [1, 2**20, 2**20]

    with pytest.raises(
        CheckpointError, match=r"holds 1099511627776 numbers per example, more than the 16777216"
    ):
        load_model(rewrite_config(src, tmp_path / "huge.safetensors", huge))
    mismatch = rewrite_config(
        src, tmp_path / "other.safetensors", lambda c: c["data"].update(shape=[3, 28, 28])
    )
    with pytest.raises(
        CheckpointError, match=r"\[3, 28, 28\] does not fit the network, which takes \[1, 28, 28\]"
    ):
        load_model(mismatch)


def test_stored_schedule_and_configured_T_are_bounded():
    with pytest.raises(ValueError, match=f"T = {MAX_T + 1} betas, more than MAX_T = {MAX_T}"):
        NoiseSchedule.from_dict({"betas": [0.01] * (MAX_T + 1)})
    with pytest.raises(ConfigError, match=f"T must be <= {MAX_T}"):
        TrainConfig(dataset="swiss-roll", model="mlp", T=10**9).validate()


@pytest.fixture
def roll_run(tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_roll(out, steps=2, sample_every=0, log_every=1)).run(progress=False)
    return out


@pytest.mark.slow
def test_resume_refuses_an_edited_config_before_allocating(roll_run):
    latest = roll_run / "latest.safetensors"

    def more_layers(c):
        c["model_args"]["layers"] = c["train"]["model_args"]["layers"] = 10**7

    rewrite_config(latest, latest, more_layers)
    rc, err, added_mb = run_measured(
        "ddpm_lib.cli.train", "--resume", roll_run, "--steps", "4", "--no-progress"
    )
    assert rc == 2, err
    assert f"error: cannot resume from {latest}" in err and "refused before building it" in err, err
    assert added_mb < REFUSAL_BUDGET_MB, f"the refusal took {added_mb:.0f} MB"


def test_resume_refuses_a_huge_T_or_data_shape(roll_run):
    latest = roll_run / "latest.safetensors"
    rewrite_config(latest, latest, lambda c: c["train"].update(T=10**9))
    with pytest.raises(ConfigError, match=f"T must be <= {MAX_T}"):
        Trainer.resume(roll_run)
    rewrite_config(latest, latest, lambda c: (c["train"].update(T=10), c["data"].update(shape=[10**9])))
    with pytest.raises(CheckpointError, match=r"cannot resume from .*data shape \[1000000000\] holds"):
        Trainer.resume(roll_run)
