"""ddpm_lib.train: EMA arithmetic, learning, exact resume, checkpoint files and their config,
the command line end to end, data parallelism (two gloo processes), and errors for bad input.

Tiny models throughout: a U-Net with ch=8 on 28x28 Fashion-MNIST images, the MLP on 2-D data.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from tiny_runs import free_port, join_as_rank

from ddpm_lib.checkpoints import CheckpointError, load_checkpoint
from ddpm_lib.cli.train import main
from ddpm_lib.train import (
    DATASETS,
    MODELS,
    ConfigError,
    TrainConfig,
    Trainer,
    config_from_dict,
    ema_update,
    load_config,
    make_model,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY_UNET = {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [14], "groups": 4}


def tiny_unet_config(out_dir="", **kw) -> TrainConfig:
    """A 28x28 U-Net with 8 channels on 10 Fashion-MNIST images; dropout and flips on."""
    base = dict(
        dataset="fashion-mnist-10k",
        n_examples=10,
        random_flip=True,
        model="unet",
        model_args=TINY_UNET,
        dropout=0.1,
        T=100,
        beta_end=0.2,
        batch_size=4,
        lr=1e-3,
        warmup_steps=2,
        ema_decay=0.9,
        steps=6,
        log_every=2,
        ckpt_every=0,
        sample_every=0,
        n_samples=4,
        sample_steps=5,
        out_dir=str(out_dir),
    )
    base.update(kw)
    return TrainConfig(**base)


def swiss_config(out_dir="", **kw) -> TrainConfig:
    base = dict(
        dataset="swiss-roll",
        model="mlp",
        decoder="gaussian",
        T=200,
        beta_end=0.1,
        batch_size=256,
        lr=2e-3,
        ema_decay=0.99,
        steps=300,
        log_every=50,
        ckpt_every=0,
        sample_every=0,
        out_dir=str(out_dir),
    )
    base.update(kw)
    return TrainConfig(**base)


def states(path):
    """model / ema / optimizer tensors of a checkpoint file, by name."""
    return {k: v for k, v in load_file(str(path)).items() if k.split(".")[0] in ("model", "ema", "optim")}


# -- EMA ------------------------------------------------------------------------------------


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros(2))


def test_ema_update_is_exact():
    ema, model = WithBuffer(), WithBuffer()
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(1.0)
        for p in model.parameters():
            p.fill_(3.0)
        model.count.fill_(7.0)
    ema_update(ema, model, 0.75)  # 0.75 * 1 + 0.25 * 3: exact in binary
    assert all(torch.equal(p, torch.full_like(p, 1.5)) for p in ema.parameters())
    assert torch.equal(ema.count, torch.full((2,), 7.0))  # buffers are copied
    ema_update(ema, model, 0.75)  # 0.75 * 1.5 + 0.25 * 3 = 1.875
    assert all(torch.equal(p, torch.full_like(p, 1.875)) for p in ema.parameters())
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in model.parameters())  # the model is untouched

    # random values: the float32 result agrees with the formula in float64 to float32 rounding
    torch.manual_seed(0)
    ema, model = WithBuffer(), WithBuffer()
    before = [p.detach().double().clone() for p in ema.parameters()]
    ema_update(ema, model, 0.9999)
    for e, e0, p in zip(ema.parameters(), before, model.parameters()):
        torch.testing.assert_close(e.double(), 0.9999 * e0 + (1 - 0.9999) * p.double(), rtol=2e-7, atol=1e-9)


def test_trainer_updates_ema_after_each_optimizer_step():
    tr = Trainer(tiny_unet_config(ema_decay=0.5, dropout=0.0))
    assert all(torch.equal(e, p) for e, p in zip(tr.ema.parameters(), tr.model.parameters()))
    before = [e.clone() for e in tr.ema.parameters()]
    tr.step()
    changed = 0
    for e, e0, p in zip(tr.ema.parameters(), before, tr.model.parameters()):
        torch.testing.assert_close(e, 0.5 * e0 + 0.5 * p, rtol=0, atol=1e-7)
        changed += int(not torch.equal(e, e0))
    assert changed > 0 and not tr.ema.training and all(not p.requires_grad for p in tr.ema.parameters())


def test_ema_warmup_decay_schedule_and_trainer():
    from ddpm_lib.train import ema_decay_at

    assert ema_decay_at(0, 0.9999) == 0.9999 and ema_decay_at(10**6, 0.9999) == 0.9999
    assert [ema_decay_at(k, 0.9, 10) for k in (0, 1, 2, 80, 81, 1000)] == pytest.approx(
        [1 / 10, 2 / 11, 3 / 12, 81 / 90, 0.9, 0.9]
    )
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        ema_decay_at(0, 0.9, -1)
    with pytest.raises(ConfigError, match="ema_warmup must be >= 0"):
        tiny_unet_config(ema_warmup=-1).validate()
    # in the trainer: two steps with warm-up 10 use decays 1/10 then 2/11
    tr = Trainer(tiny_unet_config(ema_decay=0.999, ema_warmup=10, dropout=0.0))
    for k, d in enumerate((1 / 10, 2 / 11)):
        before = [e.clone() for e in tr.ema.parameters()]
        tr.step()
        for e, e0, p in zip(tr.ema.parameters(), before, tr.model.parameters()):
            torch.testing.assert_close(e, d * e0 + (1 - d) * p, rtol=0, atol=1e-6)


def test_warmup_schedule():
    tr = Trainer(swiss_config(warmup_steps=4, lr=1e-3))
    assert [tr.lr_at(s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    tr.step()
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4) and tr.history.lr == [
        pytest.approx(2.5e-4)
    ]


def test_cosine_decay_after_the_warmup_reaches_zero_at_the_last_step():
    tr = Trainer(swiss_config(warmup_steps=2, lr=1e-3, lr_decay="cosine", steps=10))
    expected = [5e-4, 1e-3] + [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)]
    assert [tr.lr_at(s) for s in range(10)] == pytest.approx(expected)
    assert tr.lr_at(2) == pytest.approx(1e-3) and tr.lr_at(10) == pytest.approx(0.0, abs=1e-18)
    tr.run(progress=False)
    assert tr.history.lr == pytest.approx(expected)  # what the optimizer used, step by step
    # no warm-up: the first update has the full rate
    assert Trainer(swiss_config(lr=1e-3, lr_decay="cosine", steps=4)).lr_at(0) == pytest.approx(1e-3)


def test_lr_decay_must_be_one_the_trainer_knows():
    with pytest.raises(ConfigError, match="lr_decay must be one of 'none', 'cosine'; got 'linear'"):
        swiss_config(lr_decay="linear").validate()


# -- learning ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_run_lowers_the_loss_and_records_history():
    tr = Trainer(swiss_config(steps=300))
    h = tr.run(progress=False)
    assert h.step == list(range(1, 301)) and len(h.loss) == len(h.grad_norm) == len(h.lr) == 300
    first, last = sum(h.loss[:20]) / 20, sum(h.loss[-50:]) / 50
    assert last < 0.6 * first, (first, last)  # about 0.9 -> 0.35
    assert h.window_step == [50, 100, 150, 200, 250, 300]
    assert all(sum(c) == 50 * 256 for c in h.window_count)
    t_mid, by_t = h.loss_by_t(since_step=150)
    assert len(t_mid) == 20 and t_mid[0] == pytest.approx(5.5) and t_mid[-1] == pytest.approx(195.5)
    # predicting eps is hard at small t (x_t is almost x_0) and easy at large t (x_t is almost eps)
    assert by_t[0] > 3 * by_t[-1]
    x = tr.sample(500, steps=50)
    assert x.shape == (500, 2) and torch.isfinite(x).all()


# -- exact resume -----------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
    # 10 examples and batch 4: a new permutation every 2 steps; dropout and flips on; samples in between
    a = Trainer(tiny_unet_config(tmp_path / "a", steps=6, sample_every=2))
    a.run(progress=False)
    b = Trainer(tiny_unet_config(tmp_path / "b", steps=3))
    b.run(progress=False)
    assert not (tmp_path / "b" / "ckpt_6.safetensors").exists()
    b2 = Trainer.resume(tmp_path / "b", steps=6)
    assert b2.step_count == 3 and b2.history.step == [1, 2, 3]
    b2.run(progress=False)
    sa, sb = states(tmp_path / "a" / "ckpt_6.safetensors"), states(tmp_path / "b" / "ckpt_6.safetensors")
    assert sa.keys() == sb.keys() and any(k.startswith("optim.") for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert a.history.loss == b2.history.loss
    assert (tmp_path / "a" / "samples_2.png").exists() and not (tmp_path / "b" / "samples_2.png").exists()

    # the test can fail: the same resume with the dropout RNG disturbed ends elsewhere
    c = Trainer.resume(tmp_path / "b" / "ckpt_3.safetensors", out_dir=str(tmp_path / "c"), steps=6)
    torch.manual_seed(12345)
    c.run(progress=False)
    sc = states(tmp_path / "c" / "ckpt_6.safetensors")
    assert not torch.equal(sa["model.conv_in.weight"], sc["model.conv_in.weight"])


# -- checkpoint files ---------------------------------------------------------------------------


def test_checkpoints_at_ckpt_every_pruned_and_their_config(tmp_path):
    cfg = swiss_config(
        tmp_path,
        steps=10,
        ckpt_every=3,
        keep_last=2,
        sample_every=5,
        n_samples=100,
        sample_steps=10,
        log_every=5,
    )
    seen = {}

    def look(tr):
        seen[tr.step_count] = sorted(p.name for p in tmp_path.glob("ckpt_*.safetensors"))

    Trainer(cfg).run(progress=False, callback=look)
    assert seen[3] == ["ckpt_3.safetensors"]
    assert seen[6] == ["ckpt_3.safetensors", "ckpt_6.safetensors"]
    assert seen[9] == ["ckpt_6.safetensors", "ckpt_9.safetensors"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        ".lock",
        "ckpt_10.json",
        "ckpt_10.safetensors",
        "ckpt_9.json",
        "ckpt_9.safetensors",
        "latest.json",
        "latest.safetensors",
        "log.jsonl",
        "samples_10.png",
        "samples_5.png",
    ]
    ck = load_checkpoint(tmp_path / "latest.safetensors")
    assert ck.step == 10 and load_checkpoint(tmp_path / "ckpt_9.safetensors").step == 9
    c = ck.config
    assert {"diffusion", "data", "train", "metrics", "command", "model_class", "model_args", "step"} <= set(c)
    assert c["data"] == {"dataset": "swiss-roll", "shape": [2]}
    assert c["train"] == json.loads(json.dumps(asdict(cfg))) and c["metrics"] == {}
    assert c["model_class"] == "MLP" and c["model_args"]["data_dim"] == 2 and c["step"] == 10
    assert c["diffusion"]["decoder"] == "gaussian" and c["diffusion"]["schedule"]["T"] == 200
    assert c["command"].startswith("ddpm_lib.train.Trainer(TrainConfig(dataset='swiss-roll'")
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 10
    assert {"data", "noise_cpu", "torch_cpu.rank0"} <= set(ck.rng_states)
    assert ck.ema_state is not None and ck.optimizer_state is not None
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10] and all(r["images_per_s"] > 0 for r in log)


# -- the command line ---------------------------------------------------------------------------


def cli(*args, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, "-m", "ddpm_lib.train", *args, "--no-progress", "--threads", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.mark.slow
def test_cli_swiss_roll_end_to_end(tmp_path):
    out = tmp_path / "roll"
    cli(
        "--config",
        "configs/swiss_roll.toml",
        "--steps",
        "50",
        "--out-dir",
        str(out),
        "--ckpt-every",
        "20",
        "--sample-every",
        "50",
        "--n-samples",
        "200",
    )
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "ckpt_40.safetensors",
        "ckpt_50.safetensors",
        "latest.safetensors",
    ]
    assert (out / "samples_50.png").exists()
    ck = load_checkpoint(out / "latest.safetensors")
    assert ck.step == 50 and ck.config["train"]["T"] == 200 and ck.config["train"]["lr"] == 2e-3
    assert "--config configs/swiss_roll.toml --steps 50" in ck.config["command"]
    r = cli("--resume", "--out-dir", str(out), "--steps", "60")
    assert load_checkpoint(out / "latest.safetensors").step == 60 and (out / "samples_60.png").exists()
    assert "step 50 -> 60" in r.stderr


def test_cli_refuses_to_start_over_an_existing_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    Trainer(swiss_config(tmp_path, steps=1)).run(progress=False)
    assert main(["--config", "configs/swiss_roll.toml", "--out-dir", str(tmp_path), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err


@pytest.mark.slow
def test_cli_tiny_unet_on_fashion_mnist_and_resume(tmp_path):
    import matplotlib.image as mpimg

    common = [
        "--dataset",
        "fashion-mnist-10k",
        "--n-examples",
        "32",
        "--model",
        "unet",
        "--model-args",
        json.dumps(TINY_UNET),
        "--T",
        "100",
        "--beta-end",
        "0.2",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--ema-decay",
        "0.9",
        "--sample-every",
        "4",
        "--n-samples",
        "4",
        "--sample-steps",
        "5",
        "--log-every",
        "2",
        "--random-flip",
    ]
    cli(*common, "--steps", "4", "--out-dir", str(tmp_path / "r"))
    grid = mpimg.imread(tmp_path / "r" / "samples_4.png")
    assert grid.shape[:2] == (2 * 30 + 2, 2 * 30 + 2)  # 2 x 2 images of 28 x 28 with 2-pixel padding
    # the resumed and the uninterrupted run in this process (main() is the CLI without the start-up)
    assert main(["--resume", str(tmp_path / "r"), "--steps", "6", "--no-progress"]) == 0
    assert main([*common, "--steps", "6", "--out-dir", str(tmp_path / "once"), "--no-progress"]) == 0
    s1, s2 = states(tmp_path / "r" / "latest.safetensors"), states(tmp_path / "once" / "latest.safetensors")
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # resumed == uninterrupted, through the CLI
    ck = load_checkpoint(tmp_path / "r" / "latest.safetensors")
    assert ck.step == 6 and ck.config["model_class"] == "UNet" and ck.config["model_args"]["ch"] == 8
    assert ck.config["data"] == {"dataset": "fashion-mnist-10k", "shape": [1, 28, 28]}
    assert ck.config["diffusion"]["decoder"] == "discretized"


def test_config_sources_toml_then_flags(tmp_path, capsys):
    toml = tmp_path / "x.toml"
    toml.write_text(
        'dataset = "gaussian-mixture"\nmodel = "mlp"\nlr = 1\nsteps = 7\n'
        "model_args = { hidden = 16, layers = 1 }\n"
    )
    cfg = load_config(toml)
    assert (
        cfg.lr == 1.0
        and isinstance(cfg.lr, float)
        and cfg.steps == 7
        and cfg.model_args == {"hidden": 16, "layers": 1}
    )
    assert (
        main(["--config", str(toml), "--steps", "9", "--batch-size", "32", "--random-flip", "--print-config"])
        == 2
    )
    assert "random_flip flips images" in capsys.readouterr().err
    assert (
        main(["--config", str(toml), "--steps", "9", "--model-args", '{"hidden": 8}', "--print-config"]) == 0
    )
    printed = capsys.readouterr().out
    assert "steps = 9" in printed and 'dataset = "gaussian-mixture"' in printed and "{hidden = 8}" in printed
    assert main(["--dropout", "none", "--no-bf16", "--print-config"]) == 0
    assert "# dropout = (unset)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--batch-size" in capsys.readouterr().out


def test_presets_load_and_cifar10_has_the_papers_settings():
    for name in ("fashion_mnist", "cifar10", "swiss_roll"):
        load_config(REPO / "configs" / f"{name}.toml")
    c = load_config(REPO / "configs" / "cifar10.toml")
    assert (
        c.dataset,
        c.model,
        c.batch_size,
        c.lr,
        c.warmup_steps,
        c.grad_clip,
        c.ema_decay,
        c.random_flip,
        c.dropout,
        c.steps,
        c.schedule,
        c.T,
        c.beta_start,
        c.beta_end,
        c.prediction,
        c.loss,
        c.variance,
    ) == (
        "cifar10",
        "unet-cifar10",
        128,
        2e-4,
        5000,
        1.0,
        0.9999,
        True,
        0.1,
        800_000,
        "linear",
        1000,
        1e-4,
        0.02,
        "eps",
        "simple",
        "fixed_large",
    )
    with torch.device("meta"):
        net = make_model(c, (3, 32, 32))
    assert sum(p.numel() for p in net.parameters()) == 35_746_307
    s = load_config(REPO / "configs" / "swiss_roll.toml")
    assert (s.model, s.T, s.beta_end, s.batch_size, s.lr, s.steps, s.variance, s.resolved_decoder) == (
        "mlp",
        200,
        0.1,
        256,
        2e-3,
        3000,
        "fixed_large",
        "gaussian",
    )
    f = load_config(REPO / "configs" / "fashion_mnist.toml")
    assert (
        f.model == "unet-fmnist-tiny"
        and f.ema_warmup == 10
        and f.dataset == "fashion-mnist"
        and f.resolved_decoder == "discretized"
    )


def test_cifar10_path_with_flips(monkeypatch):
    import ddpm_lib.data

    images = torch.rand(8, 3, 32, 32) * 2 - 1
    calls = []
    monkeypatch.setattr(
        ddpm_lib.data,
        "cifar10",
        lambda split, root: calls.append((split, root)) or (images, torch.zeros(8, dtype=torch.long)),
        raising=False,
    )
    cfg = TrainConfig(
        dataset="cifar10",
        data_root="/somewhere",
        model="unet",
        random_flip=True,
        dropout=0.0,
        model_args={**TINY_UNET, "attn_resolutions": [16]},
        T=100,
        beta_end=0.2,
        batch_size=4,
    )
    tr = Trainer(cfg)
    assert calls == [("train", "/somewhere")] and tr.data_shape == (3, 32, 32)
    assert tr.model.config.in_channels == 3 and tr.diffusion.decoder == "discretized"
    g = tr.data_generator.get_state()
    x = tr.batches.next()
    tr.data_generator.set_state(g)
    perm = torch.randperm(8, generator=tr.data_generator)[:4]
    flip = torch.rand(4, generator=tr.data_generator) < 0.5
    assert 0 < int(flip.sum()) < 4  # this seed flips some and keeps some
    want = torch.where(flip[:, None, None, None], images[perm].flip(-1), images[perm])
    assert torch.equal(x, want)
    assert math.isfinite(tr.step())


# -- bad input --------------------------------------------------------------------------------


def test_bad_configurations_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="dataset must be one of.*'swiss-roll'.*did you mean 'cifar10'"):
        TrainConfig(dataset="cifar-10").validate()
    with pytest.raises(ConfigError, match="model must be one of.*'unet-fmnist-small'"):
        TrainConfig(model="resnet").validate()
    with pytest.raises(ConfigError, match="schedule must be one of"):
        TrainConfig(schedule="sigmoid").validate()
    with pytest.raises(
        ConfigError, match="unknown configuration field.*'batchsize'.*did you mean 'batch_size'"
    ):
        config_from_dict({"batchsize": 3})
    with pytest.raises(ConfigError, match="lr must be float"):
        config_from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="model 'unet-fmnist-small' does not fit dataset 'swiss-roll'"):
        TrainConfig(dataset="swiss-roll").validate()
    with pytest.raises(ConfigError, match="decoder 'discretized' is for 8-bit images"):
        swiss_config(decoder="discretized").validate()
    with pytest.raises(ConfigError, match="model_args has unknown key.*'width'.*allowed: in_channels"):
        make_model(TrainConfig(model="unet", model_args={"width": 3}), (1, 28, 28))
    with pytest.raises(ConfigError, match="built for 3x32x32 images.*has 1x28x28"):
        make_model(TrainConfig(model="unet-cifar10"), (1, 28, 28))
    with pytest.raises(ConfigError, match="batch_size 8 exceeds the 5 training examples"):
        Trainer(tiny_unet_config(n_examples=5, batch_size=8))
    import ddpm_lib.data

    monkeypatch.delattr(ddpm_lib.data, "cifar10", raising=False)
    monkeypatch.setitem(sys.modules, "ddpm_lib.cifar", None)  # as if the module were missing
    with pytest.raises(ConfigError, match="needs ddpm_lib.data.cifar10"):
        Trainer(TrainConfig(dataset="cifar10", model="unet-cifar10"))
    bad = tmp_path / "bad.toml"
    bad.write_text('datset = "swiss-roll"\n')
    with pytest.raises(ConfigError, match="bad.toml: unknown configuration field.*did you mean 'dataset'"):
        load_config(bad)
    assert set(DATASETS) >= {
        "fashion-mnist",
        "fashion-mnist-10k",
        "cifar10",
        "swiss-roll",
        "gaussian-mixture",
    }
    assert set(MODELS) >= {"mlp", "unet-fmnist-small", "unet-fmnist-base", "unet-cifar10", "unet"}


def test_resume_with_another_model_or_diffusion_is_refused(tmp_path, capsys):
    Trainer(swiss_config(tmp_path, steps=2)).run(progress=False)
    with pytest.raises(CheckpointError, match=r"another configuration:\n  model arguments: hidden = 128"):
        Trainer.resume(tmp_path, config=swiss_config(tmp_path, model_args={"hidden": 64}))
    with pytest.raises(
        CheckpointError, match="schedule: linear with T = 200 in the checkpoint, linear with T = 100"
    ):
        Trainer.resume(tmp_path, config=swiss_config(tmp_path, T=100))
    with pytest.raises(CheckpointError, match="diffusion prediction: 'eps' in the checkpoint, 'x0' here"):
        Trainer.resume(tmp_path, config=swiss_config(tmp_path, prediction="x0"))
    assert main(["--resume", str(tmp_path), "--model-args", '{"hidden": 64}', "--steps", "3"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- data parallel ------------------------------------------------------------------------------


def _ddp_worker(rank, world, port, cfg, out):
    join_as_rank(rank, world, port)
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    tr = Trainer(cfg)
    assert tr.distributed and tr.world_size == world and isinstance(tr.net, DistributedDataParallel)
    losses = [tr.step() for _ in range(2)]
    tr.save()  # a collective: gathers every rank's RNG state; rank 0 writes
    if rank == 0:
        save_file(
            {
                **{f"model.{k}": v for k, v in tr.model.state_dict().items()},
                **{f"ema.{k}": v for k, v in tr.ema.state_dict().items()},
                "loss": torch.tensor(losses, dtype=torch.float64),
            },
            out,
        )
    tr.close()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    # no dropout; t, eps, order and flips are drawn for the global batch and split by rank
    cfg = tiny_unet_config(tmp_path / "ddp", dropout=0.0, n_examples=16, batch_size=8, steps=2)
    out = str(tmp_path / "ddp.safetensors")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, free_port(), cfg, out), nprocs=2, join=True)
    one = Trainer(dataclasses.replace(cfg, out_dir=""))
    assert not one.distributed
    losses = [one.step() for _ in range(2)]
    got = load_file(out)
    assert got["loss"].tolist() == pytest.approx(losses, rel=1e-6)
    moved = 0
    for k, v in one.model.state_dict().items():
        torch.testing.assert_close(got[f"model.{k}"], v, rtol=0, atol=1e-6)
        moved += int(not torch.equal(v, one.ema.state_dict()[k]))
    for k, v in one.ema.state_dict().items():
        torch.testing.assert_close(got[f"ema.{k}"], v, rtol=0, atol=1e-6)
    assert moved > 0
    ck = load_checkpoint(tmp_path / "ddp" / "latest.safetensors")
    assert ck.step == 2 and {"torch_cpu.rank0", "torch_cpu.rank1"} <= set(ck.rng_states)


def test_debias_ema_recovers_the_average_of_the_trained_weights():
    """ema_N = d^N w_0 + (1-d) sum d^(N-k) w_k; debiasing leaves only the trained iterates."""
    from ddpm_lib.train import debias_ema

    torch.manual_seed(0)
    d, N = 0.9, 7
    w0 = torch.randn(5, dtype=torch.float64)
    ws = [torch.randn(5, dtype=torch.float64) for _ in range(N)]
    ema = w0.clone()
    for w in ws:
        ema = d * ema + (1 - d) * w
    ref = sum((1 - d) * d ** (N - 1 - k) * w for k, w in enumerate(ws)) / (1 - d**N)
    out = debias_ema({"w": ema, "n": torch.tensor(3)}, {"w": w0, "n": torch.tensor(0)}, d, N)
    assert torch.allclose(out["w"], ref, atol=1e-12) and int(out["n"]) == 3
    with pytest.raises(ValueError, match="steps must be >= 1"):
        debias_ema({"w": ema}, {"w": w0}, d, 0)


def test_resume_refuses_non_finite_weights(tmp_path):
    """A run whose saved weights hold a NaN (a diverged step, a damaged file) is not resumed silently."""
    from tiny_runs import tiny_roll

    trainer = Trainer(tiny_roll(tmp_path / "run", steps=2, sample_every=0, ckpt_every=0))
    trainer.run(progress=False)
    with torch.no_grad():
        trainer.model.linears[0].weight[0, 0] = float("nan")
    trainer.save()
    trainer.close()
    with pytest.raises(CheckpointError, match=r"tensor model\.linears\.0\.weight holds 1 NaN or infinite"):
        Trainer.resume(tmp_path / "run")


def test_a_full_disk_while_copying_latest_names_the_file(tmp_path, monkeypatch):
    import errno
    import shutil

    from ddpm_lib.train import rundir

    src = tmp_path / "ckpt_1.safetensors"
    src.write_bytes(b"x" * 10)

    def no_link(a, b):
        raise OSError(errno.EXDEV, "cross-device link")

    def full(a, b):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "link", no_link)
    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(OSError, match=r"cannot write .*latest\.safetensors: No space left on device"):
        rundir.link_or_copy(src, tmp_path / "latest.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_1.safetensors"]


# ---- your own images (dataset "images") ---------------------------------------------------------------


def _own(tmp_path, **kw):
    settings = dict(
        dataset="images",
        model="unet",
        model_args={"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "groups": 4},
        T=10,
        beta_start=0.1,
        beta_end=0.7,
        batch_size=4,
        steps=4,
        ckpt_every=2,
        sample_every=0,
        out_dir=str(tmp_path),
    )
    return TrainConfig(**{**settings, **kw})


def _blobs(n=12, size=16, channels=1):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.slow
def test_own_images_from_a_tensor_train_and_resume_bit_identically(tmp_path):
    images = _blobs()
    whole = Trainer(_own(tmp_path / "whole"), images=images)
    whole.run(progress=False)
    whole.close()
    part = Trainer(_own(tmp_path / "part", steps=2), images=images)
    part.run(progress=False)
    part.close()
    resumed = Trainer.resume(tmp_path / "part", images=images, steps=4)
    resumed.run(progress=False)
    resumed.close()
    assert resumed.data_shape == (1, 16, 16) and resumed.step_count == 4
    for a, b in zip(whole.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="images= goes with dataset 'images'"):
        Trainer(dataclasses.replace(_own(tmp_path / "x"), dataset="fashion-mnist-10k"), images=images)
    with pytest.raises(ConfigError, match=r"C = 1 or 3"):
        Trainer(_own(tmp_path / "y"), images=torch.zeros(4, 2, 16, 16, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        Trainer(_own(tmp_path / "z"), images=torch.full((4, 1, 16, 16), 3.0))


@pytest.mark.parametrize("layout", ["folder", "npz", "npy"])
def test_own_images_from_a_folder_or_numpy_file(tmp_path, layout):
    import numpy as np
    from PIL import Image

    from ddpm_lib.data import load_image_files

    images = _blobs(n=5, channels=3)
    hwc = images.permute(0, 2, 3, 1).numpy()
    if layout == "folder":
        src = tmp_path / "imgs"
        src.mkdir()
        for i, a in enumerate(hwc):
            Image.fromarray(a).save(src / f"{i:03d}.png")
        (src / "notes.txt").write_text("not an image")
    elif layout == "npz":
        src = tmp_path / "imgs.npz"
        np.savez(src, images=hwc)
    else:
        src = tmp_path / "imgs.npy"
        np.save(src, images.numpy())  # (N, C, H, W) as is
    assert torch.equal(load_image_files(src), images)  # PNG is lossless: the same bytes come back
    trainer = Trainer(_own(tmp_path / "run", data_root=str(src), steps=1))
    trainer.run(progress=False)
    assert trainer.data_shape == (3, 16, 16) and trainer.step_count == 1
    trainer.close()


def test_own_images_are_checked_with_the_file_named(tmp_path):
    import numpy as np
    from PIL import Image

    from ddpm_lib.data import ImageLayoutError, load_image_files

    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / "a.png")
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(src / "b.png")
    with pytest.raises(ImageLayoutError, match=r"b\.png: 16x8 pixels, the first image has 16x16"):
        load_image_files(src)
    with pytest.raises(ConfigError, match=r"data_root '.*imgs': .*b\.png: 16x8 pixels"):
        Trainer(_own(tmp_path / "run-mixed", data_root=str(src)))  # a usage error, not bad data
    np.save(tmp_path / "f.npy", np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="dtype float32; store 8-bit images"):
        load_image_files(tmp_path / "f.npy")
    with pytest.raises(FileNotFoundError, match="no such folder or file of images"):
        load_image_files(tmp_path / "missing")
    with pytest.raises(ConfigError, match="dataset 'images' trains on your own images: give data_root"):
        Trainer(_own(tmp_path / "run"))


# -- a warm start (init_from): the weights of a trained model, a fresh optimizer ---------------------


def test_warm_start_takes_the_weights_and_step_and_warms_up_again(tmp_path):
    first = Trainer(swiss_config(tmp_path / "a", steps=20, warmup_steps=4))
    first.run(progress=False)
    ckpt = tmp_path / "a" / "latest.safetensors"
    # a training checkpoint: the network and the EMA both start from its EMA weights
    tr = Trainer(swiss_config(steps=30, warmup_steps=4, init_from=str(ckpt)))
    assert tr.step_count == 20 and tr.config.warmup_start == 20
    pairs = zip(tr.model.parameters(), tr.ema.parameters(), first.ema.parameters(), first.model.parameters())
    for p, q, e, raw in pairs:
        assert torch.equal(p, e) and torch.equal(q, e) and not torch.equal(p, raw)
    assert not tr.optimizer.state  # Adam's moments start at zero
    # the warm-up runs again from step 20: 1/4, 2/4, 3/4 of lr, then lr
    assert [tr.lr_at(s) for s in range(20, 25)] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3])
    # the streams of the steps are not those of the first run's step 0
    assert not torch.equal(tr.data_generator.get_state(), first.data_generator.get_state())
    fresh = Trainer(swiss_config(steps=30, warmup_steps=4))
    assert not torch.equal(tr.data_generator.get_state(), fresh.data_generator.get_state())
    h = tr.run(progress=False)
    assert h.step == list(range(21, 31)) and h.lr[0] == pytest.approx(5e-4)

    # the run's EMA exported alone (as the shipped files are): the same start, so the same run
    from ddpm_lib.checkpoints import save_checkpoint

    ema_only = save_checkpoint(
        tmp_path / "ema.safetensors", first.ema, config=first.checkpoint_config(), step=20
    )
    tr2 = Trainer(swiss_config(steps=30, warmup_steps=4, init_from=str(ema_only)))
    tr2.run(progress=False)
    assert tr2.history.loss == h.loss
    for p, q in zip(tr2.ema.parameters(), tr.ema.parameters()):
        assert torch.equal(p, q)


def test_a_warm_started_run_resumes_bit_identically(tmp_path):
    base = Trainer(swiss_config(tmp_path / "a", steps=10))
    base.run(progress=False)
    init = str(tmp_path / "a" / "latest.safetensors")
    whole = Trainer(swiss_config(tmp_path / "whole", steps=30, warmup_steps=5, init_from=init))
    whole.run(progress=False)
    part = Trainer(swiss_config(tmp_path / "part", steps=30, warmup_steps=5, init_from=init))
    part.run(steps=7, progress=False)
    (tmp_path / "a" / "latest.safetensors").unlink()  # resuming does not need the file started from
    resumed = Trainer.resume(tmp_path / "part")
    assert resumed.config.warmup_start == 10 and resumed.step_count == 17
    resumed.run(progress=False)
    assert resumed.history.lr == pytest.approx(whole.history.lr)
    for p, q in zip(resumed.ema.parameters(), whole.ema.parameters()):
        assert torch.equal(p, q)


def test_warm_start_errors_name_what_is_allowed(tmp_path):
    with pytest.raises(
        ConfigError, match=r"init_from 'nope\.safetensors' is neither a checkpoint file nor a registered"
    ):
        Trainer(swiss_config(init_from="nope.safetensors"))
    first = Trainer(swiss_config(tmp_path / "a", steps=10))
    first.run(progress=False)
    ckpt = str(tmp_path / "a" / "latest.safetensors")
    with pytest.raises(ConfigError, match="is at step 10, so steps .* must be more than 10; got 10"):
        Trainer(swiss_config(steps=10, init_from=ckpt))
    with pytest.raises(
        CheckpointError,
        match=r"(?s)cannot start from .*schedule: linear with T = 200 in the checkpoint, linear with T = 100 here",
    ):
        Trainer(swiss_config(steps=20, T=100, init_from=ckpt))
    with pytest.raises(ConfigError, match="warmup_start must be >= 0"):
        swiss_config(warmup_start=-1).validate()
