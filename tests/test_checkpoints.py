import copy
import dataclasses
import hashlib
import json
import os
import pickle
import random

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from ddpm_lib.checkpoints import (
    MODEL_REGISTRY,
    Checkpoint,
    CheckpointError,
    build_model,
    load_checkpoint,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    register_model,
    save_checkpoint,
    sha256_file,
)
from ddpm_lib.nets import MLP, UNet


def tiny_unet(**kw):
    cfg = dict(
        in_channels=1,
        out_channels=1,
        ch=8,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.1,
        resolution=8,
        groups=4,
    )
    cfg.update(kw)
    return UNet(**cfg)


def train_steps(model, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(32, 2, generator=g)
        t = torch.randint(1, 1001, (32,), generator=g)
        loss = (model(x, t) - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture
def mlp_ckpt(tmp_path):
    """A small MLP checkpoint with EMA and optimizer state: (path, model)."""
    torch.manual_seed(0)
    model = MLP(hidden=8, layers=1, time_dim=4)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    train_steps(model, opt, 2, seed=1)
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        config={"data": "swiss_roll"},
        ema_model=copy.deepcopy(model),
        optimizer=opt,
        step=2,
    )
    return path, model


# -- round trips -----------------------------------------------------------------------


def test_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    model = MLP(hidden=32)
    ema = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    train_steps(model, opt, 5, seed=1)
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 0.1)
    path = save_checkpoint(
        tmp_path / "run" / "ckpt.safetensors",
        model,
        config={"schedule": {"kind": "linear", "T": 1000}, "objective": "eps", "lr": 1e-3},
        ema_model=ema,
        optimizer=opt,
        step=5,
        extra_tensors={"losses": torch.arange(5.0)},
        rng_states={"torch": torch.get_rng_state()},
    )
    # continue without saving
    train_steps(model, opt, 3, seed=2)

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.step == 5
    model2 = MLP(hidden=32)
    opt2 = torch.optim.Adam(model2.parameters(), 1e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    model2.load_state_dict(ckpt.model_state)
    opt2.load_state_dict(ckpt.optimizer_state)
    train_steps(model2, opt2, 3, seed=2)
    for (n, p), q in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(p, q), n
    for k, v in opt.state_dict()["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(v[name], opt2.state_dict()["state"][k][name])
    assert opt2.param_groups[0]["betas"] == (0.9, 0.99)
    assert all(torch.equal(ckpt.ema_state[k], v) for k, v in ema.state_dict().items())
    assert torch.equal(ckpt.extra["losses"], torch.arange(5.0))


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    expected = torch.randn(3)
    path = save_checkpoint(
        tmp_path / "r.safetensors",
        MLP(hidden=4),
        config={},
        rng_states={"torch": state, "raw": b"\x00\x01\xff"},
    )
    ckpt = load_checkpoint(path)
    assert ckpt.rng_states["raw"].tolist() == [0, 1, 255]
    torch.set_rng_state(ckpt.rng_states["torch"])
    assert torch.equal(torch.randn(3), expected)


def test_config_metadata_and_sidecar(mlp_ckpt):
    path, model = mlp_ckpt
    ckpt = load_checkpoint(path)
    c = ckpt.config
    assert c["data"] == "swiss_roll" and c["step"] == 2
    assert c["model_class"] == "MLP"
    assert c["model_args"] == dict(data_dim=2, hidden=8, layers=1, time_dim=4, out_dim=None)
    assert c["library_version"] == "0.1.0"
    assert json.loads(path.with_suffix(".json").read_text()) == c
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"]


def test_build_model_uses_ema_when_asked(tmp_path):
    torch.manual_seed(0)
    model = tiny_unet()
    for p in model.parameters():
        nn.init.normal_(p, std=0.1)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        nn.init.normal_(p, std=0.1)
    path = save_checkpoint(tmp_path / "u.safetensors", model, config={}, ema_model=ema)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 1000])
    with torch.no_grad():
        for use_ema, ref in ((True, ema), (False, model)):
            built = build_model(load_checkpoint(path), use_ema=use_ema)
            assert isinstance(built, UNet) and not built.training and built.config == model.config
            torch.testing.assert_close(built(x, t), ref.eval()(x, t), rtol=0, atol=0)
    # without EMA weights, use_ema=True falls back to the raw weights
    path2 = save_checkpoint(tmp_path / "noema.safetensors", model, config={})
    assert torch.equal(build_model(path2).conv_in.weight, model.conv_in.weight)
    with pytest.raises(CheckpointError, match="no EMA"):
        load_checkpoint(path2, model=tiny_unet(), use_ema=True)


def test_load_into_model_passed(mlp_ckpt):
    path, model = mlp_ckpt
    fresh = MLP(hidden=8, layers=1, time_dim=4)
    load_checkpoint(path, model=fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))
    # dropout does not change the function: a model built with another dropout accepts the weights
    path2 = save_checkpoint(path.with_name("u.safetensors"), tiny_unet(dropout=0.1), config={})
    load_checkpoint(path2, model=tiny_unet(dropout=0.0))


def test_wrapped_models_are_unwrapped(tmp_path):
    model = MLP(hidden=8)
    ema = torch.optim.swa_utils.AveragedModel(model)
    path = save_checkpoint(tmp_path / "w.safetensors", model, config={}, ema_model=ema)
    ckpt = load_checkpoint(path)
    assert ckpt.ema_state.keys() == ckpt.model_state.keys() == model.state_dict().keys()


def test_optimizer_state_tensors_round_trip():
    torch.manual_seed(0)
    for make in (
        lambda p: torch.optim.Adam(p, 1e-3, amsgrad=True),
        lambda p: torch.optim.SGD(p, 0.1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.AdamW(p, 1e-3),
    ):
        model = MLP(hidden=8)
        opt = make(model.parameters())
        train_steps(model, opt, 2, seed=0)
        sd = opt.state_dict()
        tensors, skeleton = optimizer_state_to_tensors(sd)
        assert all(isinstance(v, torch.Tensor) for v in tensors.values())
        back = optimizer_state_from_tensors(tensors, json.loads(json.dumps(skeleton)))
        assert back["param_groups"] == sd["param_groups"]  # tuples (betas) and int keys preserved
        assert back["state"].keys() == sd["state"].keys()
        for k in sd["state"]:
            for name, v in sd["state"][k].items():
                assert (
                    torch.equal(back["state"][k][name], v)
                    if torch.is_tensor(v)
                    else back["state"][k][name] == v
                )


# -- atomic writes ---------------------------------------------------------------------


def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, MLP(hidden=4), config={"version": 1})
    before = sha256_file(path), path.with_suffix(".json").read_text()

    def boom(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk vanished"):
        save_checkpoint(path, MLP(hidden=16), config={"version": 2})
    monkeypatch.undo()
    assert (sha256_file(path), path.with_suffix(".json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]  # no temp file left
    assert load_checkpoint(path).config["version"] == 1


def test_save_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_checkpoint(tmp_path / "x.pt", MLP(), config={})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", MLP(), config={"f": object()})
    with pytest.raises(TypeError, match="extra_tensors"):
        save_checkpoint(tmp_path / "x.safetensors", MLP(), config={"betas": torch.ones(3)})
    assert list(tmp_path.iterdir()) == []


# -- refusing pickles ------------------------------------------------------------------

UNPICKLED = []


def _evil(*args):
    UNPICKLED.append(args)
    return {}


class Evil:
    def __reduce__(self):
        return (_evil, ("ran",))


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle"])
def test_refuses_pickles(tmp_path, writer):
    path = tmp_path / "bad.safetensors"
    payload = {"w": torch.zeros(3), "evil": Evil()}
    if writer == "torch.save":
        torch.save(payload, path)
    elif writer == "torch.save legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(CheckpointError, match="refusing to unpickle") as e:
        load_checkpoint(path)
    assert "pickle" in str(e.value) and str(path) in str(e.value)
    assert UNPICKLED == []


def test_header_length_that_looks_like_a_pickle_still_loads(tmp_path):
    # A safetensors file starts with its header length (u64, little-endian); a length such as
    # 0x0480 makes its first two bytes b"\x80\x04", a pickle protocol header. Not refused.
    model = MLP(hidden=4, layers=1, time_dim=4)
    for pad in range(0, 3000, 3):
        path = save_checkpoint(tmp_path / "p.safetensors", model, config={"pad": "x" * pad})
        head = path.read_bytes()[:2]
        if head[0] == 0x80 and 2 <= head[1] <= 5:
            break
    else:
        pytest.fail("no padding gave a pickle-like header")
    assert load_checkpoint(path).config["pad"] == "x" * pad


# -- damaged files ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["half", "header", "minus_one", "five", "empty"])
def test_truncated_file(mlp_ckpt, keep):
    path, _ = mlp_ckpt
    data = path.read_bytes()
    cut = {"half": len(data) // 2, "header": 40, "minus_one": len(data) - 1, "five": 5, "empty": 0}[keep]
    path.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_flipped_bytes_are_caught(mlp_ckpt):
    path, _ = mlp_ckpt
    data = path.read_bytes()
    good_sha = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == good_sha
    load_checkpoint(path, expected_sha256=good_sha)
    n_header = 8 + int.from_bytes(data[:8], "little")
    # every byte of the length field and the start of the header, then a fixed sample of the
    # rest (header JSON, metadata, optimizer skeleton, checksum, padding, tensor data)
    positions = list(range(16)) + random.Random(0).sample(range(16, len(data)), 250)
    assert any(p >= n_header for p in positions) and any(p < n_header for p in positions)
    for i in positions:
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            path.write_bytes(bad)
            with pytest.raises(CheckpointError, match="corrupt|truncated|format_version|not a ddpm_lib"):
                load_checkpoint(path)
    # a changed byte of tensor data, with the expected hash given: a sha256 mismatch
    bad = bytearray(data)
    bad[n_header + 5] ^= 0x10
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match="sha256 mismatch") as e:
        load_checkpoint(path, expected_sha256=good_sha)
    assert good_sha in str(e.value)
    # without it, the checksum stored in the file catches the change
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_plain_safetensors_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file(MLP(hidden=4).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a ddpm_lib checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_checkpoint(tmp_path / "missing.safetensors")


# -- mismatches and unknown classes ------------------------------------------------------


def test_mlp_checkpoint_into_unet_names_the_mismatch(mlp_ckpt):
    path, _ = mlp_ckpt
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, model=tiny_unet())
    msg = str(e.value)
    assert str(path) in msg and "class" in msg and "MLP(" in msg and "UNet(" in msg
    assert "missing from the checkpoint" in msg and "conv_in.weight" in msg
    assert "linears.0.weight" in msg
    assert len(msg) < 3000  # not torch's wall of text


def test_different_widths_name_keys_and_shapes(tmp_path):
    path = save_checkpoint(tmp_path / "w.safetensors", MLP(hidden=32), config={})
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, model=MLP(hidden=64))
    msg = str(e.value)
    assert "hidden=32 in the checkpoint, 64 in the model" in msg
    assert "linears.0.weight: checkpoint (32, 2) vs model (64, 2)" in msg
    path = save_checkpoint(tmp_path / "u.safetensors", tiny_unet(), config={})
    with pytest.raises(
        CheckpointError,
        match=r"ch=8 in the checkpoint, 16 in the model[\s\S]*"
        r"conv_in.weight: checkpoint \(8, 1, 3, 3\) vs model \(16, 1, 3, 3\)",
    ):
        load_checkpoint(path, model=tiny_unet(ch=16))
    # same shapes, different function (GroupNorm groups): caught by the arguments
    with pytest.raises(CheckpointError, match="groups=4 in the checkpoint, 2 in the model"):
        load_checkpoint(path, model=tiny_unet(groups=2))


@dataclasses.dataclass
class LinearConfig:
    n: int = 3


class Linear(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.config = LinearConfig(n)
        self.lin = nn.Linear(n, n)


def test_unknown_class_lists_known_ones(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "l.safetensors", Linear(), config={})
    ckpt = load_checkpoint(path)
    assert ckpt.model_class == "Linear" and ckpt.model_args == {"n": 3}
    # other modules may have registered more classes (the classifier does on import): list them all
    known = ", ".join(sorted(MODEL_REGISTRY))
    with pytest.raises(CheckpointError, match=f"unknown model class 'Linear'; known classes: {known}") as e:
        build_model(ckpt)
    assert str(path) in str(e.value) and "MLP" in known and "UNet" in known
    monkeypatch.setitem(MODEL_REGISTRY, "Linear", Linear)
    built = build_model(ckpt)
    assert torch.equal(built.lin.weight, ckpt.model_state["lin.weight"])
    monkeypatch.delitem(MODEL_REGISTRY, "Linear")
    register_model(Linear)  # the public way; monkeypatch restores the registry afterwards
    assert isinstance(build_model(ckpt), Linear)
