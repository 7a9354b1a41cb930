"""A run's whole state in a checkpoint, and back: what makes a resumed run continue bit for bit.

Taught in chapter 09. A training checkpoint holds the weights, the EMA, Adam's state, the step,
the history, the data order and the state of every random generator: the data order and flips (a
CPU generator), t and eps (a generator on the training device), dropout (the global torch RNG of
each process, and CUDA's on a GPU). ``check_compatible`` refuses a checkpoint of another run, and
``check_model_before_building`` does so on the meta device, before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Callable

import torch
import torch.distributed as dist
import torch.nn as nn

from pathlib import Path

from ..checkpoints import (
    Checkpoint,
    CheckpointError,
    build_on_meta,
    check_data_shape,
    check_model_fits,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .components import make_model
from .config import FREE_ON_RESUME, ConfigError, TrainConfig, config_from_dict, stream_seed
from .rundir import link_or_copy, load_resumable, prune

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "checkpoint_config",
    "save_run",
    "load_run",
    "resume_config",
    "rng_states",
    "restore_rng_states",
    "check_compatible",
    "init_checkpoint",
    "changed_settings",
    "model_problems",
    "check_model_before_building",
]


def checkpoint_config(trainer: "Trainer") -> dict:
    """The config stored in a run's checkpoints: diffusion, data, training configuration, command
    (``save_checkpoint`` adds model_class, model_args and step)."""
    return {
        "diffusion": trainer.diffusion.config(),
        "data": {"dataset": trainer.config.dataset, "shape": list(trainer.data_shape)},
        "train": asdict(trainer.config),
        "metrics": {},
        "command": trainer.command,
    }


def save_run(trainer: "Trainer", rng: dict, path=None) -> Path:
    """Write the whole run to a checkpoint (rank 0): weights, EMA, Adam, step, history, data order,
    the open window of statistics and the generators' states ``rng`` (from :func:`rng_states`).

    Without ``path``: ``out_dir/ckpt_<step>.safetensors``, ``latest.*`` pointed at it, and older
    step checkpoints pruned to ``keep_last``. Returns the path written.
    """
    cfg = trainer.config
    if path is None and not cfg.out_dir:
        raise ConfigError("save() needs a path or config.out_dir")
    extra = {**trainer.stats.history.to_tensors(), **trainer.batches.state(), **trainer.stats.window_state()}
    auto = path is None
    out = Path(cfg.out_dir) if auto else Path(path).parent
    path = out / f"ckpt_{trainer.step_count}.safetensors" if auto else Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        path,
        trainer.model,
        config=checkpoint_config(trainer),
        ema_model=trainer.ema,
        optimizer=trainer.optimizer,
        step=trainer.step_count,
        extra_tensors=extra,
        rng_states=rng,
    )
    if auto:
        link_or_copy(path, out / "latest.safetensors")
        link_or_copy(path.with_suffix(".json"), out / "latest.json")
        prune(out, trainer.step_count, cfg.keep_last)
    return path


def load_run(trainer: "Trainer", ckpt: Checkpoint, note: Callable[[str], object]) -> None:
    """Continue ``trainer`` from ``ckpt``: weights, EMA, optimizer, step, history, data order and
    every RNG state; changed settings and missing RNG states are reported through ``note``.
    Raises CheckpointError for a checkpoint of another run, or one that holds only a model."""
    check_compatible(trainer, ckpt)
    if ckpt.ema_state is None or ckpt.optimizer_state is None or ckpt.step is None:
        raise CheckpointError(
            f"{ckpt.path} lacks the EMA weights, optimizer state or step needed to resume "
            f"(it is a model-only checkpoint)"
        )
    load_weights(trainer.model, ckpt)  # refuses NaN, infinite or integer weights, naming the tensor
    load_weights(trainer.ema, ckpt, use_ema=True)
    trainer.optimizer.load_state_dict(ckpt.optimizer_state)
    trainer.step_count = int(ckpt.step)
    trainer.stats.load_state(ckpt.extra)
    trainer.batches.load_state(ckpt.extra)
    if changed := changed_settings(ckpt, trainer.config):
        note(
            "resuming with changed settings (the run will not continue bit-identically): "
            + ", ".join(changed)
        )
    restore_rng_states(trainer, ckpt.rng_states, note)


def resume_config(path, config: TrainConfig | None = None, overrides: dict | None = None):
    """(configuration, checkpoint) to continue the run in ``path`` (a run directory or a checkpoint
    file): the checkpoint's configuration (or ``config``) with ``overrides`` of TrainConfig fields
    applied and out_dir defaulting to the checkpoint's folder; its network is checked against the
    checkpoint before anything is built (:func:`check_model_before_building`)."""
    ckpt = load_resumable(path)
    if config is None:
        stored = ckpt.config.get("train")
        if not isinstance(stored, dict):
            raise CheckpointError(f"{ckpt.path} holds no training configuration to resume from")
        config = config_from_dict(stored, strict=False)
    cfg = config_from_dict(overrides or {}, base=config)
    if not cfg.out_dir:
        cfg = dataclasses.replace(cfg, out_dir=str(ckpt.path.parent))
    check_model_before_building(cfg, ckpt)
    return cfg, ckpt


def rng_states(trainer: "Trainer") -> dict:
    """Every generator's state, those of all processes gathered (a collective under DDP)."""
    own = {"torch_cpu": torch.get_rng_state()}
    if trainer.device.type == "cuda":
        own["torch_cuda"] = torch.cuda.get_rng_state(trainer.device)
    everyone = [own]
    if trainer.distributed:
        everyone = [None] * trainer.world_size
        dist.all_gather_object(everyone, own)
    noise = trainer.noise_generator
    states = {"data": trainer.data_generator.get_state(), f"noise_{noise.device.type}": noise.get_state()}
    for r, st in enumerate(everyone):
        for k, v in st.items():
            states[f"{k}.rank{r}"] = v
    return states


def restore_rng_states(trainer: "Trainer", rng: dict, note) -> None:
    """Set every generator from a checkpoint's states; where one is missing (saved on another
    device type, or by another number of processes) seed it afresh and say so through ``note``."""
    cfg, rank, step = trainer.config, trainer.rank, trainer.step_count
    if "data" in rng:
        trainer.data_generator.set_state(rng["data"])
    key = f"noise_{trainer.noise_generator.device.type}"
    if key in rng:
        trainer.noise_generator.set_state(rng[key])
    else:
        trainer.noise_generator.manual_seed(stream_seed(cfg.seed, "noise", step))
        note(
            f"the checkpoint holds no {key} state (saved on another device type): t and eps are "
            f"drawn from a fresh seed"
        )
    mine = f"torch_cpu.rank{rank}"
    if mine in rng:
        torch.set_rng_state(rng[mine])
    else:
        torch.manual_seed(stream_seed(cfg.seed, "dropout", rank, step))
        note(
            f"the checkpoint holds no RNG state for rank {rank} (another number of processes): "
            f"dropout continues from a fresh seed"
        )
    if trainer.device.type == "cuda":
        cuda = f"torch_cuda.rank{rank}"
        if cuda in rng:
            torch.cuda.set_rng_state(rng[cuda], trainer.device)
        else:
            torch.cuda.manual_seed(stream_seed(cfg.seed, "dropout-cuda", rank, step))


def init_checkpoint(spec: str) -> Checkpoint:
    """The checkpoint a warm start (``TrainConfig.init_from``) takes its weights from: a file, or a registered
    name (verified by sha256); a ConfigError says what is allowed when it is neither."""
    from ..pretrained import is_pretrained_name, list_pretrained, pretrained_path

    if is_pretrained_name(spec):
        return load_checkpoint(pretrained_path(spec))
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"init_from {spec!r} is neither a checkpoint file nor a registered name "
            f"({', '.join(list_pretrained()) or 'none registered'})"
        )
    return load_checkpoint(path)


def check_compatible(trainer: "Trainer", ckpt: Checkpoint, purpose: str = "resume from") -> None:
    """Raise CheckpointError when ``ckpt`` holds another model, diffusion or data set than ``trainer``
    (``purpose``: "resume from", or "start from" for a warm start, for the message)."""
    problems = model_problems(trainer.model, ckpt)
    theirs_d = ckpt.config.get("diffusion") or {}
    ours_d = json.loads(json.dumps(trainer.diffusion.config()))
    for k in [k for k in sorted(set(theirs_d) | set(ours_d)) if theirs_d.get(k) != ours_d.get(k)]:
        if k == "schedule":
            a, b = theirs_d.get(k) or {}, ours_d[k]
            same_name = a.get("T") == b["T"] and a.get("name") == b["name"]
            problems.append(
                f"schedule: {a.get('name')} with T = {a.get('T')} in the checkpoint, {b['name']} "
                f"with T = {b['T']} here" + (" (different betas)" if same_name else "")
            )
        else:
            problems.append(f"diffusion {k}: {theirs_d.get(k)!r} in the checkpoint, {ours_d.get(k)!r} here")
    data = ckpt.config.get("data") or {}
    cfg = trainer.config
    if data.get("dataset") != cfg.dataset or list(data.get("shape") or []) != list(trainer.data_shape):
        problems.append(
            f"data: {data.get('dataset')!r} {data.get('shape')} in the checkpoint, "
            f"{cfg.dataset!r} {list(trainer.data_shape)} here"
        )
    if problems:
        raise another_configuration(ckpt, problems, purpose)


def changed_settings(ckpt: Checkpoint, config: TrainConfig) -> list[str]:
    """The settings that differ from the checkpoint's and change the training trajectory."""
    old = ckpt.config.get("train") or {}
    return [
        f"{k} {old[k]!r} -> {v!r}"
        for k, v in asdict(config).items()
        if k in old and old[k] != v and k not in FREE_ON_RESUME
    ]


def model_problems(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """How ``model``'s class and arguments differ from those stored in ``ckpt`` (dropout may differ)."""
    if ckpt.model_class != type(model).__name__:
        return [f"model class: {ckpt.model_class} in the checkpoint, {type(model).__name__} here"]
    ours = json.loads(json.dumps(asdict(model.config)))
    theirs = ckpt.model_args or {}
    diff = [k for k in sorted(set(theirs) | set(ours)) if k != "dropout" and theirs.get(k) != ours.get(k)]
    if not diff:
        return []
    return [
        "model arguments: "
        + "; ".join(f"{k} = {theirs.get(k)!r} in the checkpoint, {ours.get(k)!r} here" for k in diff)
    ]


def another_configuration(
    ckpt: Checkpoint, problems: list[str], purpose: str = "resume from"
) -> CheckpointError:
    fix = (
        "resume with the checkpoint's own settings (no --config), or start a new run in another out_dir"
        if purpose == "resume from"
        else "give init_from a checkpoint of this model, diffusion and data set, or change the configuration to its"
    )
    return CheckpointError(
        f"cannot {purpose} {ckpt.path}: it was trained with another configuration:\n  "
        + "\n  ".join(problems)
        + "\n"
        + fix
    )


def check_model_before_building(cfg: TrainConfig, ckpt: Checkpoint) -> None:
    """Refuse a configuration whose network does not match the checkpoint, on the meta device,
    before a Trainer allocates it: the stored config may have been edited (model_args with
    layers = 10**7 would otherwise take gigabytes before any comparison)."""
    data = ckpt.config.get("data") if isinstance(ckpt.config.get("data"), dict) else {}
    shape = check_data_shape(data.get("shape"), f"cannot resume from {ckpt.path}: config['data']['shape']")
    stored = {k: tuple(v.shape) for k, v in ckpt.model_state.items()}
    where = f"cannot resume from {ckpt.path}: model {cfg.model!r} with model_args {cfg.model_args}"
    meta = build_on_meta(lambda: make_model(cfg, shape), stored, where)
    if problems := model_problems(meta, ckpt):
        raise another_configuration(ckpt, problems)
    check_model_fits(meta, stored, where)
