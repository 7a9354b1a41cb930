"""``ddpm-train`` (``python -m ddpm_lib.train``): train a DDPM from a TOML file and flags.

Settings come from the defaults, then ``--config FILE.toml``, then the flags; with ``--resume``,
from the checkpoint (unless --config is given), then the flags. Under torchrun the same command
trains data-parallel. Ctrl-C (or SIGTERM) stops training after the current step, with a
checkpoint of that step and one line saying how to resume (exit code 130, or 143 for SIGTERM).
The engine is ``ddpm_lib.train``; this module only parses and reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
from dataclasses import fields
from pathlib import Path

import torch

from ..train.config import (
    DATASETS,
    FIELD_TYPES,
    FIELDS,
    MODELS,
    SCHEDULES,
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
    to_toml,
)
from ..train.distributed import launched_by_torchrun
from ..train.interrupt import TrainingInterrupted
from ..train.rundir import load_resumable, open_run_dir
from ..train.trainer import Trainer
from ..utils import device as pick_device
from . import INTERRUPTED, TERMINATED, make_parser, output_folder, positive_int, run

__all__ = ["build_parser", "main"]


EXAMPLES = (
    "ddpm-train --config configs/swiss_roll.toml --out-dir runs/swiss-roll",
    "ddpm-train --resume runs/swiss-roll --steps 4000",
    "ddpm-train --config configs/fashion_mnist.toml --dataset fashion-mnist-10k --model unet-fmnist-tiny "
    "--steps 2000 --out-dir runs/fmnist-tiny",
)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "ddpm-train",
        "Train a DDPM (Algorithm 1 of Ho et al. 2020). Settings come from the defaults, then "
        "--config FILE.toml, then the flags below; with --resume, from the checkpoint (unless "
        "--config is given), then the flags. Under torchrun the same command trains data-parallel "
        "(torchrun -m ddpm_lib.train ...).",
        EXAMPLES,
        module="ddpm_lib.train",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file of the fields below (see configs/)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="continue from the latest checkpoint in out_dir (or in PATH, a run directory or a "
        "checkpoint file); --steps is the new total",
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch.set_num_threads for CPU training"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log.jsonl still written)")
    g = p.add_argument_group("training configuration (TrainConfig fields)")
    default = TrainConfig()
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}"]
        typ = FIELD_TYPES[f.name]
        shown = getattr(default, f.name)
        help_ = f"default: {json.dumps(shown)}"
        if f.name == "out_dir":
            help_ += " (runs/DATASET); made if missing, and checked before training"
        if f.name in ("dataset", "model", "schedule"):
            help_ += (
                f"; one of {', '.join({'dataset': DATASETS, 'model': MODELS, 'schedule': SCHEDULES}[f.name])}"
            )
        if typ is bool:
            g.add_argument(
                *flags,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_,
            )
        else:
            meta = "JSON" if typ is dict else f.name.upper()
            g.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS, metavar=meta, help=help_)
    return p


def resume_hint(trainer: Trainer, stop: TrainingInterrupted) -> str:
    """Where a stopped run was saved and the command that continues it."""
    launcher = f"torchrun --nproc_per_node {trainer.world_size} -m" if trainer.distributed else "python -m"
    return (
        f"checkpoint {stop.checkpoint}; resume with: {launcher} ddpm_lib.train --resume "
        f"{shlex.quote(str(trainer.config.out_dir))}"
    )


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    command = "python -m ddpm_lib.train " + shlex.join(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = None
    release_out_dir = lambda: None  # noqa: E731

    def body():
        nonlocal trainer, release_out_dir
        base = load_config(args.config) if args.config else None
        if args.resume is not None:
            where = args.resume or given.get("out_dir") or (base.out_dir if base else "")
            if not where:
                raise ConfigError("--resume needs a run directory: --resume PATH or --out-dir DIR")
            if args.print_config:
                ckpt = load_resumable(where)
                base = base or config_from_dict(ckpt.config.get("train") or {}, strict=False)
                print(to_toml(config_from_dict(given, base)), end="")
                return 0
            if given.get("out_dir"):
                output_folder(given["out_dir"], "--out-dir")
            trainer = Trainer.resume(where, config=base, command=command, **given)
        else:
            cfg = config_from_dict(given, base)
            if not cfg.out_dir:
                cfg = dataclasses.replace(cfg, out_dir=f"runs/{cfg.dataset}")
            if args.print_config:
                print(to_toml(cfg), end="")
                return 0
            pick_device(cfg.device)  # a device this machine lacks: refused before anything is made
            out = Path(cfg.out_dir)
            output_folder(out, "--out-dir")
            if (
                not launched_by_torchrun() or int(os.environ["RANK"]) == 0
            ):  # locked before looking, so no run starts in between
                release_out_dir = open_run_dir(out)
            if out.is_dir() and (
                any(out.glob("ckpt_*.safetensors")) or (out / "latest.safetensors").exists()
            ):
                raise ConfigError(
                    f"{out} already holds a run's checkpoints: pass --resume to continue it, or "
                    f"choose another --out-dir"
                )
            trainer = Trainer(cfg, command=command)
        if trainer.is_main:
            c = trainer.config
            print(
                f"training {c.model} on {c.dataset} {list(trainer.data_shape)}: step {trainer.step_count} -> "
                f"{c.steps}, global batch {c.batch_size} on {trainer.world_size} x {trainer.device}, "
                f"writing to {c.out_dir}",
                file=sys.stderr,
                flush=True,
            )
        start = trainer.step_count
        try:
            trainer.run(progress=not args.no_progress)
        except TrainingInterrupted as e:
            if trainer.is_main:
                print(f"interrupted at step {e.step}; {resume_hint(trainer, e)}", file=sys.stderr, flush=True)
            return TERMINATED if e.signum == signal.SIGTERM else INTERRUPTED
        if trainer.is_main:
            h = trainer.history
            latest = Path(trainer.config.out_dir) / "latest.safetensors"
            if trainer.step_count == start:  # resumed at or past --steps: nothing trained, nothing written
                print(
                    f"done: nothing trained (the run is at step {start}); no checkpoint written",
                    file=sys.stderr,
                )
            elif h.loss:
                print(
                    f"done: step {trainer.step_count}, loss {h.loss[-1]:.4f}; checkpoint {latest}",
                    file=sys.stderr,
                )
        return 0

    try:
        return run(body)
    finally:
        if trainer is not None:
            trainer.close()
        release_out_dir()


if __name__ == "__main__":
    sys.exit(main())
