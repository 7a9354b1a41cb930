"""Algorithm 1 of Ho et al. 2020 as a Trainer: the loop, with the paper's engineering.

Taught in chapter 09::

    repeat
        x_0 ~ q(x_0);  t ~ Uniform{1..T};  eps ~ N(0, I)
        take a gradient step on ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2
    until converged

with Adam, a linear learning-rate warm-up, gradient clipping by the global norm, an exponential
moving average (EMA) of the weights for sampling, and random horizontal flips on CIFAR-10. The
parts live beside this file: ``config`` (TrainConfig), ``components`` (data, network, diffusion,
batches), ``ema``, ``history``, ``rundir`` (the run directory), ``state`` (checkpoints of the
whole run), ``samples`` (sampling with the EMA weights), ``interrupt`` (stopping on Ctrl-C or
SIGTERM after a whole step, with a checkpoint there) and ``distributed`` (torchrun). On one
device, training N steps in one go and training k steps, then resuming to N, give bit-identical
weights, also when the k steps ended with Ctrl-C.
"""

from __future__ import annotations

import math
import contextlib
import copy
import sys
from pathlib import Path
from typing import Callable

import torch

from ..checkpoints import Checkpoint, load_checkpoint, load_weights
from . import samples
from .components import Batches, load_data, make_diffusion, make_model
from .config import ConfigError, TrainConfig, api_command, stream_seed
from .distributed import agreed_signal, setup_processes, wrap_model
from .ema import ema_decay_at, ema_update
from .history import History, RunningStats, StepBar
from .interrupt import StopSignals, TrainingInterrupted
from .rundir import append_log, hold_run_dir
from .state import (
    check_compatible,
    checkpoint_config,
    init_checkpoint,
    load_run,
    resume_config,
    rng_states,
    save_run,
)

__all__ = ["Trainer"]


class Trainer:
    """Algorithm 1 for one TrainConfig: data, model, EMA copy, Adam, diffusion, and the loop.

    ``step()`` one optimizer step (returns its loss); ``run(steps=None)`` to ``config.steps`` (or
    ``steps`` more); ``sample(n)`` with the EMA weights; ``save()``; ``Trainer.resume(out_dir)``.
    Your own images: ``dataset="images"`` with ``data_root`` (a folder or an .npz), or
    ``Trainer(config, images=tensor)`` (uint8 or [-1, 1], (N, C, H, W); pass it again to ``resume``).
    Attributes: ``model`` (the raw network; ``net``: the module a step calls, in DDP or compiled when so),
    ``ema``, ``optimizer``, ``diffusion``, ``device``, ``step_count``, ``history``, ``data_shape``,
    ``batches`` (the global batch of every step) drawn with ``data_generator``, t and eps drawn
    with ``noise_generator``, ``point_sampler`` (2-D data; None for images).
    """

    def __init__(
        self, config: TrainConfig, *, command: str | None = None, images=None, _resuming: bool = False
    ):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = cfg = copy.deepcopy(config).validate()
        self.command = command if command is not None else api_command(cfg)
        self.processes = procs = setup_processes(cfg.device)
        self.rank, self.world_size, self.device = procs.rank, procs.world_size, procs.device
        self.distributed, self.is_main = procs.distributed, procs.is_main
        dev = self.device
        if cfg.bf16 and dev.type != "cuda":
            self._note(f"bf16 autocast is used on CUDA only; training in float32 on {dev.type}")
        if cfg.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                f"{self.world_size} processes"
            )
        # rank 0 writes out_dir: hold its lock (and clear leftovers of killed saves) until close()
        self._release_out_dir = hold_run_dir(self, cfg.out_dir) if self.is_main and cfg.out_dir else None

        self.point_sampler, self.data, self.data_shape = load_data(cfg, self.device, images)
        self.diffusion = make_diffusion(cfg)
        # model, EMA, optimizer: the same initial weights in every process; dropout differs between them
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        self.model = make_model(cfg, self.data_shape).to(dev)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        # a warm start continues the step count; its streams get seeds of their own (those of step 0 were spent)
        self.step_count = self._warm_start(cfg.init_from) if cfg.init_from and not _resuming else 0
        at = (self.step_count,) if self.step_count else ()
        torch.manual_seed(stream_seed(cfg.seed, "dropout", self.rank, *at))
        if dev.type == "cuda":
            torch.cuda.manual_seed(stream_seed(cfg.seed, "dropout-cuda", self.rank, *at))
        self.net = wrap_model(self.model, procs, cfg.compile)

        # randomness of the steps: data order and flips on the CPU, t and eps on the training device
        self.data_generator = torch.Generator().manual_seed(stream_seed(cfg.seed, "data", *at))
        noise_dev = dev if dev.type == "cuda" else torch.device("cpu")
        self.noise_generator = torch.Generator(device=noise_dev).manual_seed(
            stream_seed(cfg.seed, "noise", *at)
        )
        self.batches = Batches(
            self.data, self.point_sampler, cfg.batch_size, self.data_generator, cfg.random_flip
        )
        self.stats = RunningStats(cfg.T, cfg.batch_size, dev, self.world_size)
        self._saved_step = self._sampled_step = self._saved_path = None

    def _warm_start(self, spec: str) -> int:
        """Start from the model of ``spec`` (config.init_from: a checkpoint file or a registered name) that
        one samples with: the network and its EMA both from its EMA weights (its weights when it holds only
        a model, as the shipped files do), so a warm start from a run's checkpoint and one from that run's
        exported EMA are the same. Returns its step, where this run continues and its warm-up starts
        (config.warmup_start). Adam's moments are not carried over: they start at zero."""
        ckpt = init_checkpoint(spec)
        check_compatible(self, ckpt, purpose="start from")
        use_ema = ckpt.ema_state is not None
        load_weights(self.model, ckpt, use_ema=use_ema)  # refuses NaN, infinite or integer weights
        load_weights(self.ema, ckpt, use_ema=use_ema)
        step = int(ckpt.step or 0)
        if step >= self.config.steps:
            raise ConfigError(
                f"init_from {spec!r} is at step {step}, so steps (the total to train to) must be more than "
                f"{step}; got {self.config.steps}"
            )
        self.config.warmup_start = step
        self._note(f"starting from the weights of {ckpt.path} at step {step} (Adam afresh)")
        return step

    def _note(self, msg: str):
        if self.is_main:
            print(f"note: {msg}", file=sys.stderr, flush=True)

    def lr_at(self, step: int) -> float:
        """The learning rate of the update from ``step`` to step + 1: a linear warm-up, then constant
        (``lr_decay = "none"``, DDPM) or half a cosine from lr down to 0 at ``steps`` (``"cosine"``).

        DDPM's code uses lr * min(step / warmup, 1), whose first update has lr 0; here it is
        (step + 1) / warmup, one step earlier. The cosine's first update after the warm-up has the full lr.
        After a warm start (``init_from``) the warm-up counts from ``warmup_start``, the step started from.
        """
        cfg = self.config
        w, k = cfg.warmup_steps, step - cfg.warmup_start  # warmup_start: 0, or the step of a warm start
        if w > 0 and k + 1 < w:
            return cfg.lr * max(k + 1, 1) / w
        end_of_warmup = cfg.warmup_start + w
        if cfg.lr_decay == "cosine" and cfg.steps > end_of_warmup:
            done = min(1.0, max(0.0, (step - end_of_warmup) / (cfg.steps - end_of_warmup)))
            return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
        return cfg.lr

    @property
    def history(self) -> History:
        if not self.distributed:
            self.stats.flush()
        return self.stats.history

    @property
    def image_data(self) -> bool:
        return self.config.image_data

    # ---- one step of Algorithm 1 ----------------------------------------------------------
    def _draw_t_noise(self):
        """t ~ Uniform{1..T} and eps ~ N(0, I) for the global batch; this process's slice of them."""
        B, g = self.config.batch_size, self.noise_generator
        t = torch.randint(1, self.config.T + 1, (B,), generator=g, device=g.device)
        noise = torch.randn((B, *self.data_shape), generator=g, device=g.device)
        b = B // self.world_size
        sl = slice(self.rank * b, (self.rank + 1) * b)
        return t[sl].to(self.device), noise[sl].to(self.device)

    def _train_step(self):
        cfg = self.config
        x0 = self.batches.next(self.rank, self.world_size).to(self.device)
        t, noise = self._draw_t_noise()
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        autocast = cfg.bf16 and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            terms = self.diffusion.training_losses(self.net, x0, t=t, noise=noise)
        per_example = terms["loss"].float()
        self.optimizer.zero_grad(set_to_none=True)
        per_example.mean().backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        ema_update(self.ema, self.model, ema_decay_at(self.step_count, cfg.ema_decay, cfg.ema_warmup))
        self.step_count += 1
        self.stats.record(self.step_count, per_example, terms["t"], grad_norm, lr)

    def _close_window(self):
        line = self.stats.close_window(self.step_count)
        if line is not None and self.is_main and self.config.out_dir:
            append_log(Path(self.config.out_dir), line)

    def _iteration(self, signals: StopSignals, progress: bool = False):
        cfg = self.config
        self._train_step()
        s = self.step_count
        if s % cfg.log_every == 0:
            self._close_window()
        if cfg.out_dir and cfg.ckpt_every and s % cfg.ckpt_every == 0:
            self.save()
        if cfg.out_dir and cfg.sample_every and s % cfg.sample_every == 0:
            with signals.interruptible():
                self.save_samples(progress=progress)

    def step(self) -> float:
        """One optimizer step (with the logging, checkpoints and samples due at it); returns its loss."""
        self._iteration(StopSignals())
        self.stats.flush()
        return self.stats.history.loss[-1]

    def run(
        self,
        steps: int | None = None,
        callback: Callable[["Trainer"], object] | None = None,
        progress: bool = True,
    ) -> History:
        """Train to ``config.steps`` (or ``steps`` more), then save and sample (when out_dir is set).

        ``callback(trainer)`` runs after every step; returning True stops the run (under DDP it
        must return the same in every process). Ctrl-C (SIGINT) or SIGTERM stops it after the
        current step: a checkpoint of that step is written (with out_dir), then
        :class:`~ddpm_lib.train.interrupt.TrainingInterrupted`, a KeyboardInterrupt, is raised.
        ``progress``: bars for the steps and for sampling. Returns the history.
        """
        target = self.config.steps if steps is None else self.step_count + int(steps)
        if self.step_count >= target:
            self._note(f"already at step {self.step_count} >= {target}: nothing to train")
            return self.history
        progress = progress and self.is_main
        with StopSignals(immediate=not self.distributed) as signals:
            signum = None
            try:
                signum = self._loop(target, callback, progress, signals)
                if signum is None:
                    self._finish(progress, signals)
            except KeyboardInterrupt:  # a signal cut sampling short (StopSignals.interruptible)
                if signals.signum is None:
                    raise
            signum = signum or (None if self.distributed else signals.signum)
            if signum is not None:
                raise self._stopped_by(signum)
        return self.history

    def _loop(self, target: int, callback, progress: bool, signals: StopSignals) -> int | None:
        """Steps up to ``target``, until the callback returns True or a signal comes; returns the
        signal (the same in every process)."""
        bar = StepBar(target, self.step_count, self.stats.history, progress)
        self.stats.restart_timer(self.step_count)
        try:
            while self.step_count < target:
                self._iteration(signals, progress)
                bar.update(self.stats.history)
                if callback is not None and callback(self) is True:
                    break
                if signum := agreed_signal(self.processes, signals.signum):
                    return signum
        finally:
            bar.close()
        return None

    def _finish(self, progress: bool, signals: StopSignals):
        """The end of a run: the last window's log line, then a checkpoint and samples (with out_dir)."""
        cfg = self.config
        self._close_window()
        if cfg.out_dir and self._saved_step != self.step_count:
            self.save()
        if cfg.out_dir and cfg.sample_every and self._sampled_step != self.step_count:
            with signals.interruptible():
                self.save_samples(progress=progress)

    def _stopped_by(self, signum: int) -> TrainingInterrupted:
        """The exception a signal ends the run with, once a checkpoint holds the step reached (with out_dir)."""
        if self.config.out_dir and self._saved_step != self.step_count:
            self.save()
        saved = self._saved_path if self.config.out_dir and self._saved_step == self.step_count else None
        return TrainingInterrupted(self.step_count, saved, signum)

    # ---- sampling (ddpm_lib.train.samples) ----------------------------------------------------
    sample = samples.sample  # n samples with the EMA weights: see ddpm_lib.train.samples.sample

    def save_samples(self, path=None, progress: bool = False) -> Path | None:
        """A grid of config.n_samples EMA samples (a scatter plot for 2-D data) as a PNG (rank 0)."""
        self._sampled_step = self.step_count
        return samples.save_samples(self, path, progress)

    # ---- checkpoints ------------------------------------------------------------------------
    def checkpoint_config(self) -> dict:
        """The config stored in checkpoints (model_class, model_args, step are added by save_checkpoint)."""
        return checkpoint_config(self)

    def save(self, path=None) -> Path | None:
        """Write a checkpoint (every process must call this under DDP; rank 0 writes).

        Without ``path``: ``out_dir/ckpt_<step>.safetensors``, ``latest.safetensors`` pointed at
        it, and older step checkpoints pruned to ``keep_last``. Returns the path (None off rank 0).
        """
        self.stats.flush()
        rng = rng_states(self)  # a collective: every process takes part
        self._saved_step = self.step_count
        if not self.is_main:
            return None
        self._saved_path = save_run(self, rng, path)
        return self._saved_path

    def check_compatible(self, ckpt: Checkpoint) -> None:
        """Raise CheckpointError when ``ckpt`` holds another model, diffusion or data set than this run."""
        check_compatible(self, ckpt)

    def load_state(self, checkpoint) -> "Trainer":
        """Continue from a checkpoint (a path or Checkpoint): weights, EMA, optimizer, step, history,
        data order and every RNG state. Raises CheckpointError for a checkpoint of another run."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        load_run(self, ckpt, self._note)
        self._saved_step, self._saved_path = self.step_count, ckpt.path
        return self

    @classmethod
    def resume(
        cls, path, config: TrainConfig | None = None, command: str | None = None, images=None, **overrides
    ) -> "Trainer":
        """A Trainer continuing the run in ``path`` (a run directory or a checkpoint file).

        The configuration is the checkpoint's (or ``config``), with ``overrides`` of TrainConfig
        fields applied, e.g. ``Trainer.resume("runs/x", steps=20000)``.
        """
        cfg, ckpt = resume_config(path, config, overrides)
        return cls(cfg, command=command, images=images, _resuming=True).load_state(ckpt)

    def close(self):
        """Release out_dir's lock and leave the process group this trainer created (if any)."""
        if self._release_out_dir is not None:
            self._release_out_dir()
        self.processes.close()
