"""Algorithm 1 of Ho et al. 2020 as a Trainer: the loop, with the paper's engineering.

Taught in chapter 08::

    repeat
        x_0 ~ q(x_0);  t ~ Uniform{1..T};  eps ~ N(0, I)
        take a gradient step on ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2
    until converged

with Adam, a linear learning-rate warm-up, gradient clipping by the global norm, an exponential
moving average (EMA) of the weights for sampling, and random horizontal flips on CIFAR-10. The
parts live beside this file: ``config`` (TrainConfig), ``components`` (data, network, diffusion,
batches), ``ema``, ``history``, ``rundir`` (the run directory), ``state`` (checkpoints of the
whole run) and ``distributed`` (torchrun). On one device, training N steps in one go and training
k steps, then resuming to N, give bit-identical weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import weakref
from pathlib import Path
from typing import Callable

import torch

from .. import viz
from ..checkpoints import Checkpoint, CheckpointError, load_checkpoint
from ..sampling import generate
from .components import Batches, load_data, make_diffusion, make_model
from .config import ConfigError, TrainConfig, api_command, config_from_dict, stream_seed
from .distributed import setup_processes, wrap_model
from .ema import ema_decay_at, ema_update
from .history import History, RunningStats
from .rundir import append_log, load_resumable, open_run_dir
from .state import (
    changed_settings,
    check_compatible,
    check_model_before_building,
    checkpoint_config,
    restore_rng_states,
    rng_states,
    save_run,
)

__all__ = ["Trainer"]


class Trainer:
    """Algorithm 1 for one TrainConfig: data, model, EMA copy, Adam, diffusion, and the loop.

    ``step()`` one optimizer step (returns its loss); ``run(steps=None)`` to ``config.steps`` (or
    ``steps`` more); ``sample(n)`` with the EMA weights; ``save()``; ``Trainer.resume(out_dir)``.
    Attributes: ``model`` (the raw network), ``ema``, ``optimizer``, ``diffusion``, ``device``,
    ``step_count``, ``history``, ``data_shape``.
    """

    def __init__(self, config: TrainConfig, *, command: str | None = None):
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
        # rank 0 writes out_dir: hold its lock (and clear leftovers of killed saves) until close(),
        # or until this object is collected; the kernel drops it if the process dies
        self._release_out_dir = lambda: None
        if self.is_main and cfg.out_dir:
            self._release_out_dir = open_run_dir(cfg.out_dir)
            weakref.finalize(self, self._release_out_dir)

        self._sampler, self.data, self.data_shape = load_data(cfg, self.device)
        self.diffusion = make_diffusion(cfg)
        # model, EMA, optimizer: the same initial weights in every process; dropout differs between them
        torch.manual_seed(stream_seed(cfg.seed, "init"))
        self.model = make_model(cfg, self.data_shape).to(dev)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        torch.manual_seed(stream_seed(cfg.seed, "dropout", self.rank))
        if dev.type == "cuda":
            torch.cuda.manual_seed(stream_seed(cfg.seed, "dropout-cuda", self.rank))
        self._net = wrap_model(self.model, procs, cfg.compile)

        # randomness of the steps: data order and flips on the CPU, t and eps on the training device
        self._data_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, "data"))
        noise_dev = dev if dev.type == "cuda" else torch.device("cpu")
        self._noise_gen = torch.Generator(device=noise_dev).manual_seed(stream_seed(cfg.seed, "noise"))
        self._batches = Batches(self.data, self._sampler, cfg.batch_size, self._data_gen, cfg.random_flip)
        self.step_count = 0
        self.stats = RunningStats(cfg.T, cfg.batch_size, dev, self.world_size)
        self._saved_step = self._sampled_step = None

    def _note(self, msg: str):
        if self.is_main:
            print(f"note: {msg}", file=sys.stderr, flush=True)

    def lr_at(self, step: int) -> float:
        """The learning rate of the update from ``step`` to step + 1 (linear warm-up, then constant).

        DDPM's code uses lr * min(step / warmup, 1), whose first update has lr 0; here it is
        (step + 1) / warmup, one step earlier.
        """
        w = self.config.warmup_steps
        return self.config.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

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
        B, g = self.config.batch_size, self._noise_gen
        t = torch.randint(1, self.config.T + 1, (B,), generator=g, device=g.device)
        noise = torch.randn((B, *self.data_shape), generator=g, device=g.device)
        b = B // self.world_size
        sl = slice(self.rank * b, (self.rank + 1) * b)
        return t[sl].to(self.device), noise[sl].to(self.device)

    def _train_step(self):
        cfg = self.config
        x0 = self._batches.next(self.rank, self.world_size).to(self.device)
        t, noise = self._draw_t_noise()
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._net.train()
        autocast = cfg.bf16 and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            terms = self.diffusion.training_losses(self._net, x0, t=t, noise=noise)
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

    def _iteration(self):
        cfg = self.config
        self._train_step()
        s = self.step_count
        if s % cfg.log_every == 0:
            self._close_window()
        if cfg.out_dir and cfg.ckpt_every and s % cfg.ckpt_every == 0:
            self.save()
        if cfg.out_dir and cfg.sample_every and s % cfg.sample_every == 0:
            self.save_samples()

    def step(self) -> float:
        """One optimizer step (with the logging, checkpoints and samples due at it); returns its loss."""
        self._iteration()
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
        must return the same in every process). Returns the history.
        """
        cfg = self.config
        target = cfg.steps if steps is None else self.step_count + int(steps)
        if self.step_count >= target:
            self._note(f"already at step {self.step_count} >= {target}: nothing to train")
            return self.history
        from tqdm.auto import tqdm

        bar = tqdm(
            total=target,
            initial=self.step_count,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (progress and self.is_main),
        )
        self.stats.restart_timer(self.step_count)
        try:
            while self.step_count < target:
                n_windows = len(self.stats.history.window_step)
                self._iteration()
                bar.update(1)
                if len(self.stats.history.window_step) > n_windows:
                    h = self.stats.history
                    bar.set_postfix(loss=f"{h.loss[-1]:.4f}", img_s=f"{h.window_images_per_s[-1]:.1f}")
                if callback is not None and callback(self) is True:
                    break
        finally:
            bar.close()
        self._close_window()
        if cfg.out_dir and self._saved_step != self.step_count:
            self.save()
        if cfg.out_dir and cfg.sample_every and self._sampled_step != self.step_count:
            self.save_samples()
        return self.history

    # ---- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        use_ema: bool = True,
        progress: bool = False,
        clip_x0: bool | None = None,
        record=None,
    ):
        """n samples (on the CPU) with the EMA weights (or the raw ones), by :func:`ddpm_lib.sampling.generate`.

        ``steps``: respaced sampling steps (None: ``config.sample_steps``; 0 or >= T: all T, Algorithm 2).
        Noise comes from ``generator``, else a CPU generator seeded with ``seed`` (else a fixed seed
        of the run). ``clip_x0`` defaults to True for images (as DDPM's sampler), False for 2-D data.
        With ``record`` (original timesteps, 0 = the result) returns ``(samples, Trajectory)``.
        """
        steps = self.config.sample_steps if steps is None else int(steps)
        ancestral = steps == 0 or steps >= self.config.T
        if generator is None:
            seed = stream_seed(self.config.seed, "samples") if seed is None else seed
            generator = torch.Generator().manual_seed(seed)
        model = self.ema if use_ema else self.model
        was_training = model.training
        model.eval()
        try:
            x, traj = generate(
                model,
                self.diffusion,
                self.data_shape,
                int(n),
                method="ancestral" if ancestral else "respaced",
                steps=None if ancestral else steps,
                generator=generator,
                clip=self.image_data if clip_x0 is None else clip_x0,
                record=record,
                device=self.device,
                progress=progress,
            )
        finally:
            model.train(was_training)
        return (x, traj) if record is not None else x

    def save_samples(self, path=None) -> Path | None:
        """A grid of config.n_samples EMA samples (a scatter plot for 2-D data) as a PNG (rank 0)."""
        self._sampled_step = self.step_count
        cfg = self.config
        if not self.is_main or cfg.n_samples == 0:
            return None
        path = Path(path) if path is not None else Path(cfg.out_dir) / f"samples_{self.step_count}.png"
        x = self.sample(cfg.n_samples)
        if self.image_data:
            return viz.save_image_grid(x, path)
        ref = self._sampler(cfg.n_samples, torch.Generator().manual_seed(stream_seed(cfg.seed, "reference")))
        return viz.save_plot_2d(x, path, ref=ref, title=f"{cfg.dataset}, step {self.step_count}")

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
        return save_run(self, rng, path)

    def check_compatible(self, ckpt: Checkpoint) -> None:
        """Raise CheckpointError when ``ckpt`` holds another model, diffusion or data set than this run."""
        check_compatible(self, ckpt)

    def load_state(self, checkpoint) -> "Trainer":
        """Continue from a checkpoint (a path or Checkpoint): weights, EMA, optimizer, step, history,
        data order and every RNG state. Raises CheckpointError for a checkpoint of another run."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        check_compatible(self, ckpt)
        if ckpt.ema_state is None or ckpt.optimizer_state is None or ckpt.step is None:
            raise CheckpointError(
                f"{ckpt.path} lacks the EMA weights, optimizer state or step needed to resume "
                f"(it is a model-only checkpoint)"
            )
        self.model.load_state_dict(ckpt.model_state)
        self.ema.load_state_dict(ckpt.ema_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.step_count = self._saved_step = int(ckpt.step)
        self.stats.load_state(ckpt.extra)
        self._batches.load_state(ckpt.extra)
        if changed := changed_settings(ckpt, self.config):
            self._note(
                "resuming with changed settings (the run will not continue bit-identically): "
                + ", ".join(changed)
            )
        restore_rng_states(self, ckpt.rng_states, self._note)
        return self

    @classmethod
    def resume(
        cls, path, config: TrainConfig | None = None, command: str | None = None, **overrides
    ) -> "Trainer":
        """A Trainer continuing the run in ``path`` (a run directory or a checkpoint file).

        The configuration is the checkpoint's (or ``config``), with ``overrides`` of TrainConfig
        fields applied, e.g. ``Trainer.resume("runs/x", steps=20000)``.
        """
        ckpt = load_resumable(path)
        if config is None:
            stored = ckpt.config.get("train")
            if not isinstance(stored, dict):
                raise CheckpointError(f"{ckpt.path} holds no training configuration to resume from")
            config = config_from_dict(stored, strict=False)
        cfg = config_from_dict(overrides, base=config)
        if not cfg.out_dir:
            cfg = dataclasses.replace(cfg, out_dir=str(ckpt.path.parent))
        check_model_before_building(cfg, ckpt)
        return cls(cfg, command=command).load_state(ckpt)

    def close(self):
        """Release out_dir's lock and leave the process group this trainer created (if any)."""
        self._release_out_dir()
        self.processes.close()
