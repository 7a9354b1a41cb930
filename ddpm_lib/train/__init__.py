"""The training engine: Algorithm 1 of Ho et al. 2020 as a Trainer, with its configuration,
EMA, history, run directory, checkpointed state and data-parallel setup (chapter 09).

From Python (a chapter)::

    from ddpm_lib.train import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(dataset="swiss-roll", model="mlp", T=200, beta_end=0.1, steps=3000,
                                  batch_size=256, lr=2e-3, decoder="gaussian"))
    trainer.run()                      # or trainer.step() in your own loop
    trainer.history.loss               # the loss of every step; history.loss_by_t() by timestep
    x = trainer.sample(1000)           # with the EMA weights

From the shell (``ddpm_lib.cli.train``)::

    ddpm-train --config configs/fashion_mnist.toml --out-dir runs/fmnist
    ddpm-train --config configs/fashion_mnist.toml --out-dir runs/fmnist --resume --steps 60000
    torchrun --nproc_per_node 8 -m ddpm_lib.train --config configs/cifar10.toml --out-dir runs/cifar10

A run directory holds ``ckpt_<step>.safetensors`` (the last ``keep_last``), ``latest.safetensors``
(a hard link to, or copy of, the newest), each with its ``.json`` sidecar, ``samples_<step>.png``
and ``log.jsonl`` (one line of statistics every ``log_every`` steps), and ``.lock``: the
Trainer that writes the directory holds a flock on it, so a second process is refused (see
``ddpm_lib.train.rundir``, which also removes temporary files that killed saves left).

Ctrl-C (SIGINT) or SIGTERM during ``run()`` stops training after the current step: a checkpoint
of that step is written, then ``TrainingInterrupted`` (a KeyboardInterrupt) is raised, and
``Trainer.resume(out_dir)`` continues from there as if nothing had happened (``ddpm-train``
prints one line with the resume command and exits with 130, or 143 for SIGTERM).

Modules: ``config`` (TrainConfig, TOML, flags), ``components`` (data, network, diffusion, batches),
``ema``, ``history``, ``rundir``, ``state`` (the run in a checkpoint), ``samples`` (sampling with
the EMA weights), ``interrupt`` (stopping on a signal), ``distributed`` (torchrun), ``trainer``
(the loop).
"""

from .components import make_diffusion, make_model
from .config import (
    DATASETS,
    LR_DECAYS,
    MODELS,
    SCHEDULES,
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
    stream_seed,
    to_toml,
)
from .ema import debias_ema, ema_decay_at, ema_update
from .history import History
from .interrupt import TrainingInterrupted
from .rundir import RunDirInUseError, find_checkpoint, load_resumable
from .trainer import Trainer

__all__ = [
    "TrainConfig",
    "Trainer",
    "History",
    "ConfigError",
    "RunDirInUseError",
    "TrainingInterrupted",
    "ema_update",
    "ema_decay_at",
    "debias_ema",
    "make_model",
    "make_diffusion",
    "load_config",
    "config_from_dict",
    "to_toml",
    "stream_seed",
    "find_checkpoint",
    "load_resumable",
    "DATASETS",
    "MODELS",
    "SCHEDULES",
    "LR_DECAYS",
]
