"""Sample from a trained checkpoint: ancestral (Algorithm 2), respaced, or DDIM; write a PNG grid.

    ddpm-sample CKPT_OR_NAME --n 64 --out runs/samples.png [--method ancestral|respaced|ddim]
        [--steps K] [--eta 0] [--seed 0] [--clip] [--device auto] [--batch-size B]
        [--trajectory traj.safetensors --record 1000,750,500,250,0] [--save-samples samples.safetensors]

(the command line is :mod:`ddpm_lib.cli.sample`; ``python -m ddpm_lib.sample`` runs it too;
from Python, :func:`sample_from_checkpoint`). CKPT_OR_NAME is a checkpoint file (``.safetensors``
written by the trainer) or a name registered in ``data/registry.json`` (see
:mod:`ddpm_lib.pretrained`). The default is ancestral sampling with all T steps; ``--method
respaced --steps K`` runs the same ancestral sampler on K evenly spaced timesteps (Nichol &
Dhariwal 2021), ``--method ddim --steps K --eta E`` DDIM (Song et al. 2021). The noise comes from
a CPU generator seeded by ``--seed``, so a seed (and batch size:
batches draw their noise in turn) gives the same samples on any device, up to floating-point
differences of the network.

Images are written as a PNG grid (8-bit, round((x + 1) * 127.5)); 2-D data as a scatter plot.
``--trajectory`` stores x_t and the predicted x_0 at the ``--record`` timesteps (original t;
0 is the result) as safetensors tensors ``ts``, ``timesteps``, ``x_t`` (K, N, ...), ``pred_x0``
(K, N, ...; NaN at t = 0); ``--save-samples`` stores the raw samples (N, ...) as ``samples``.
"""

from __future__ import annotations

# python -m ddpm_lib.sample runs ddpm-sample; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.sample import main

    raise SystemExit(main())

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .diffusion import Trajectory
from .pretrained import Pretrained, load_model
from .sampling import DEFAULT_STEPS, METHODS, check_sampler_args, generate, sampler_timesteps
from .trajectories import save_samples as save_samples_file
from .trajectories import save_trajectory
from .utils import prepare_output
from .viz import save_image_grid, save_plot_2d

__all__ = [
    "SampleResult",
    "METHODS",
    "DEFAULT_STEPS",
    "generate",
    "sample_from_checkpoint",
    "save_samples_png",
]


@dataclass
class SampleResult:
    """What :func:`sample_from_checkpoint` made: samples (N, ...) on the CPU, the trajectory, and how."""

    samples: torch.Tensor
    trajectory: Optional[Trajectory]
    info: dict
    files: dict = field(default_factory=dict)


def save_samples_png(
    samples: torch.Tensor, path, nrow: Optional[int] = None, title: Optional[str] = None, scale: int = 1
) -> Path:
    """Images (N, C, H, W) in [-1, 1] as a PNG grid; 2-D points (N, 2) as a scatter plot."""
    path = Path(path)
    if samples.ndim == 4:
        return save_image_grid(samples, path, nrow=nrow, scale=scale)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return save_plot_2d(samples, path, title=title)
    raise ValueError(
        f"can picture images (N, C, H, W) or 2-D points (N, 2), got samples of shape {tuple(samples.shape)}"
    )


def sample_from_checkpoint(
    spec,
    n: int = 64,
    *,
    method: str = "ancestral",
    steps: Optional[int] = None,
    eta: float = 0.0,
    seed: int = 0,
    clip: bool = False,
    record: Optional[Sequence[int]] = None,
    device=None,
    batch_size: Optional[int] = None,
    use_ema: bool = True,
    out: Optional[str | Path] = None,
    trajectory: Optional[str | Path] = None,
    save_samples: Optional[str | Path] = None,
    nrow: Optional[int] = None,
    scale: int = 1,
    progress: bool = True,
    loaded: Optional[Pretrained] = None,
) -> SampleResult:
    """Load a checkpoint file or a registered name and draw ``n`` samples; optionally write files.

    ``out``: a PNG (image grid, or scatter plot for 2-D data); ``trajectory``: a safetensors file
    with x_t and pred_x0 at ``record`` (default 1000, 750, 500, 250, 0 scaled to T); ``save_samples``:
    the raw samples as safetensors. Each is checked before loading and sampling
    (:func:`ddpm_lib.utils.prepare_output`: missing folders are made, a symlink is written through).
    ``loaded``: an already loaded :class:`Pretrained` (skips loading). Returns a :class:`SampleResult`.
    """
    # every argument that can be checked without the model is checked before minutes of sampling
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer in 1..16, got {scale!r}")
    if nrow is not None and (not isinstance(nrow, int) or isinstance(nrow, bool) or nrow < 1):
        raise ValueError(
            f"nrow (images per row of the grid) must be a positive integer or None, got {nrow!r}"
        )
    check_sampler_args(n, method, eta, batch_size)
    for path in (out, trajectory, save_samples):
        if path is not None:
            prepare_output(path)  # a folder that cannot be written fails now, not after sampling
    p = loaded if loaded is not None else load_model(spec, device=device, use_ema=use_ema)
    if p.diffusion is None:
        raise ValueError(f"{spec}: its config has no 'diffusion' entry: not a diffusion model checkpoint")
    shape = p.data_shape
    if shape is None:
        raise ValueError(
            f"{spec}: cannot tell the data shape (no config['data']['shape'] and an unknown network)"
        )
    T = p.diffusion.T
    used_steps = (
        T if method == "ancestral" else (min(DEFAULT_STEPS[method], T) if steps is None else int(steps))
    )
    if trajectory is not None and record is None:  # T, 3T/4, T/2, T/4, 0, each moved onto the sampler's grid
        grid = (
            sampler_timesteps(p.diffusion, method, used_steps)
            if method == "ancestral" or 1 <= used_steps <= T
            else [0, T]
        )
        record = sorted(
            {min(grid, key=lambda a: (abs(a - T * f), -a)) for f in (1.0, 0.75, 0.5, 0.25, 0.0)}, reverse=True
        )
    dev = next(p.model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    samples, traj = generate(
        p.model,
        p.diffusion,
        shape,
        n,
        method=method,
        steps=steps,
        eta=eta,
        generator=gen,
        clip=clip,
        record=record,
        device=dev,
        batch_size=batch_size,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    info = {
        "checkpoint": str(p.path),
        "name": p.name,
        "sha256": p.sha256,
        "method": method,
        "steps": used_steps,
        "eta": eta if method == "ddim" else None,
        "seed": int(seed),
        "clip": bool(clip),
        "n": int(n),
        "shape": list(shape),
        "T": T,
        "use_ema": bool(use_ema),
        "device": str(dev),
        "seconds": round(seconds, 3),
        "dataset": p.config["data"].get("dataset") if isinstance(p.config.get("data"), dict) else None,
    }
    files = {}
    if out is not None:
        title = f"{method}, {used_steps} steps" if samples.ndim == 2 else None
        files["out"] = save_samples_png(samples, out, nrow=nrow, title=title, scale=scale)
    if trajectory is not None:
        files["trajectory"] = save_trajectory(traj, trajectory, info)
    if save_samples is not None:
        files["samples"] = save_samples_file(samples, save_samples, info)
    return SampleResult(samples=samples, trajectory=traj, info=info, files=files)
