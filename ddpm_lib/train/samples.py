"""What a run draws, beside the loop: samples with its EMA weights, and the figure of them it saves.

Taught in chapter 09. ``Trainer.sample`` and ``Trainer.save_samples`` are :func:`sample` and
:func:`save_samples`; sampling goes through :func:`ddpm_lib.sampling.generate` with its own
seeded generator, so it never touches the randomness of the steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import viz
from ..sampling import generate
from .config import stream_seed

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["sample", "save_samples"]


@torch.no_grad()
def sample(
    trainer: "Trainer",
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
    cfg = trainer.config
    steps = cfg.sample_steps if steps is None else int(steps)
    ancestral = steps == 0 or steps >= cfg.T
    if generator is None:
        seed = stream_seed(cfg.seed, "samples") if seed is None else seed
        generator = torch.Generator().manual_seed(seed)
    model = trainer.ema if use_ema else trainer.model
    was_training = model.training
    model.eval()
    try:
        x, traj = generate(
            model,
            trainer.diffusion,
            trainer.data_shape,
            int(n),
            method="ancestral" if ancestral else "respaced",
            steps=None if ancestral else steps,
            generator=generator,
            clip=trainer.image_data if clip_x0 is None else clip_x0,
            record=record,
            device=trainer.device,
            progress=progress,
        )
    finally:
        model.train(was_training)
    return (x, traj) if record is not None else x


def save_samples(trainer: "Trainer", path=None, progress: bool = False) -> Path | None:
    """A grid of config.n_samples EMA samples (a scatter plot for 2-D data) as a PNG (rank 0), by
    default ``out_dir/samples_<step>.png``; ``progress``: a bar for the sampling steps."""
    cfg, step = trainer.config, trainer.step_count
    if not trainer.is_main or cfg.n_samples == 0:
        return None
    path = Path(path) if path is not None else Path(cfg.out_dir) / f"samples_{step}.png"
    x = sample(trainer, cfg.n_samples, progress=progress)
    if trainer.image_data:
        return viz.save_image_grid(x, path)
    ref = trainer.point_sampler(
        cfg.n_samples, torch.Generator().manual_seed(stream_seed(cfg.seed, "reference"))
    )
    return viz.save_plot_2d(x, path, ref=ref, title=f"{cfg.dataset}, step {step}")
