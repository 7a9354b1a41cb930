"""Sample from a trained checkpoint: ancestral (Algorithm 2), respaced, or DDIM; write a PNG grid.

    ddpm-sample CKPT_OR_NAME --n 64 --out runs/samples.png [--method ancestral|respaced|ddim]
        [--steps K] [--eta 0] [--seed 0] [--clip] [--device auto] [--batch-size B]
        [--trajectory traj.safetensors --record 1000,750,500,250,0] [--save-samples samples.safetensors]

(the command line is :mod:`ddpm_lib.cli.sample`; ``python -m ddpm_lib.sample`` runs it too;
from Python, :func:`sample_from_checkpoint`). CKPT_OR_NAME is a checkpoint file (``.safetensors``
written by the trainer) or a name registered in ``data/registry.json`` (see
:mod:`ddpm_lib.pretrained`). The default is ancestral sampling with all T steps; ``--method
respaced --steps K`` runs the same ancestral sampler on K evenly spaced timesteps (Nichol &
Dhariwal 2021), ``--method ddim --steps K --eta E`` DDIM (Song et al. 2021). The noise comes from a CPU generator seeded by ``--seed``, so a seed (and batch size:
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

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from .diffusion import GaussianDiffusion, Trajectory
from .pretrained import Pretrained, load_model, resolve_device
from .sampling import ddim_sample, ddim_timesteps

__all__ = ["SampleResult", "METHODS", "DEFAULT_STEPS", "generate", "sample_from_checkpoint", "save_samples_png"]

METHODS = ("ancestral", "respaced", "ddim")
DEFAULT_STEPS = {"respaced": 100, "ddim": 50}


@dataclass
class SampleResult:
    """What :func:`sample_from_checkpoint` made: samples (N, ...) on the CPU, the trajectory, and how."""

    samples: torch.Tensor
    trajectory: Optional[Trajectory]
    info: dict
    files: dict = field(default_factory=dict)


def _available_ts(diffusion: GaussianDiffusion, method: str, steps: Optional[int]) -> list[int]:
    """Original timesteps at which a sampler has a state (0 is the result)."""
    if method == "ancestral":
        return list(range(diffusion.T + 1))
    if method == "respaced":
        return diffusion.schedule.respace(steps).timesteps.tolist()
    return [0, *ddim_timesteps(diffusion.T, steps).tolist()]


def _snap_record(record: Sequence[int], available: list[int], T: int) -> list[int]:
    out = []
    for r in record:
        r = int(r)
        if not 0 <= r <= T:
            raise ValueError(f"--record timesteps must lie in 0..T = 0..{T}, got {r}")
        near = min(available, key=lambda a: (abs(a - r), -a))
        if near != r:
            warnings.warn(f"timestep {r} is not on this sampler's grid; recording t = {near} instead", stacklevel=4)
        out.append(near)
    return sorted(set(out), reverse=True)


@torch.no_grad()
def generate(model, diffusion: GaussianDiffusion, shape, n: int, *, method: str = "ancestral",
             steps: Optional[int] = None, eta: float = 0.0, generator: Optional[torch.Generator] = None,
             clip: bool = False, record: Optional[Sequence[int]] = None, device=None,
             batch_size: Optional[int] = None, progress: bool = True):
    """Draw ``n`` samples of one example ``shape`` in batches; returns (samples on the CPU, Trajectory or None).

    method: "ancestral" (all T steps; ``steps`` must be None or T), "respaced" (ancestral on
    ``steps`` timesteps) or "ddim" (``steps`` timesteps, ``eta``). ``record`` holds original
    timesteps (0 = the result); each is moved to the nearest one the sampler visits.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if method == "ancestral":
        if steps not in (None, diffusion.T):
            raise ValueError(f"ancestral sampling runs all T = {diffusion.T} steps; for {steps} steps use "
                             f"method='respaced' (or 'ddim')")
        steps = diffusion.T
    else:
        steps = min(DEFAULT_STEPS[method], diffusion.T) if steps is None else int(steps)
        if not 1 <= steps <= diffusion.T:
            raise ValueError(f"steps must be in 1..T = 1..{diffusion.T}, got {steps}")
    if method == "ddim" and eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if record is not None:
        ts = _available_ts(diffusion, method, steps)
        record = _snap_record(record, ts, diffusion.T)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device = resolve_device(device)
    bs = n if not batch_size else int(batch_size)
    chunks, trajs = [], []
    done = 0
    while done < n:
        b = min(bs, n - done)
        shp = (b, *shape)
        if method == "ancestral":
            out = diffusion.sample(model, shp, generator=gen, progress=progress, clip_x0=clip, device=device,
                                   record=record)
        elif method == "respaced":
            sp = diffusion.respace(steps)
            rec = None
            if record is not None:  # original timesteps -> indices of the respaced schedule
                idx = {t: k for k, t in enumerate(sp.schedule.timesteps.tolist())}
                rec = [idx[t] for t in record]
            out = sp.sample(model, shp, generator=gen, progress=progress, clip_x0=clip, device=device, record=rec)
        else:
            out = ddim_sample(model, diffusion, shp, steps=steps, eta=eta, generator=gen, clip_x0=clip,
                              progress=progress, device=device, record=record)
        x, traj = out if record is not None else (out, None)
        chunks.append(x.float().cpu())
        if traj is not None:
            trajs.append(traj)
        done += b
    samples = torch.cat(chunks)
    traj = None
    if trajs:
        t0 = trajs[0]
        traj = Trajectory(ts=t0.ts.clone(),
                          x_t=torch.cat([t.x_t for t in trajs], dim=1),
                          pred_x0=torch.cat([t.pred_x0 for t in trajs], dim=1),
                          timesteps=t0.timesteps.clone() if t0.timesteps is not None else t0.ts.clone())
    return samples, traj


def save_samples_png(samples: torch.Tensor, path, nrow: Optional[int] = None, title: Optional[str] = None) -> Path:
    """Images (N, C, H, W) in [-1, 1] as a PNG grid; 2-D points (N, 2) as a scatter plot."""
    path = Path(path)
    if samples.ndim == 4:
        try:
            from .viz import save_image_grid
        except ImportError:  # pragma: no cover - viz is part of the library
            save_image_grid = _save_image_grid
        return save_image_grid(samples, path, nrow=nrow)
    if samples.ndim == 2 and samples.shape[1] == 2:
        try:
            from .viz import save_plot_2d
        except ImportError:  # pragma: no cover
            save_plot_2d = _save_plot_2d
        return save_plot_2d(samples, path, title=title)
    raise ValueError(f"can picture images (N, C, H, W) or 2-D points (N, 2), got samples of shape {tuple(samples.shape)}")


def _save_image_grid(images, path, nrow=None):  # pragma: no cover - fallback without viz
    import math

    import numpy as np
    from matplotlib import image as mpimg

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + 2) + 2, min(n, nrow) * (w + 2) + 2, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + k * (w + 2):2 + k * (w + 2) + w] = x[i].transpose(1, 2, 0)
    grid = np.repeat(grid, 3, axis=2) if c == 1 else grid
    mpimg.imsave(path, grid, format="png")
    return Path(path)


def _save_plot_2d(samples, path, title=None):  # pragma: no cover - fallback without viz
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(samples[:, 0].numpy(), samples[:, 1].numpy(), s=3, alpha=0.5, linewidths=0)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return Path(path)


def _save_safetensors(tensors: dict, path, metadata: dict) -> Path:
    from safetensors.torch import save_file

    from .utils import atomic_write

    return atomic_write(path, lambda tmp: save_file(
        {k: v.contiguous() for k, v in tensors.items()}, tmp,
        metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}))


def sample_from_checkpoint(spec, n: int = 64, *, method: str = "ancestral", steps: Optional[int] = None,
                           eta: float = 0.0, seed: int = 0, clip: bool = False, record: Optional[Sequence[int]] = None,
                           device=None, batch_size: Optional[int] = None, use_ema: bool = True,
                           out: Optional[str | Path] = None, trajectory: Optional[str | Path] = None,
                           save_samples: Optional[str | Path] = None, nrow: Optional[int] = None,
                           progress: bool = True, loaded: Optional[Pretrained] = None) -> SampleResult:
    """Load a checkpoint file or a registered name and draw ``n`` samples; optionally write files.

    ``out``: a PNG (image grid, or scatter plot for 2-D data); ``trajectory``: a safetensors file
    with x_t and pred_x0 at ``record`` (default 1000, 750, 500, 250, 0 scaled to T); ``save_samples``:
    the raw samples as safetensors. ``loaded``: an already loaded :class:`Pretrained` (skips loading).
    Returns a :class:`SampleResult`.
    """
    p = loaded if loaded is not None else load_model(spec, device=device, use_ema=use_ema)
    if p.diffusion is None:
        raise ValueError(f"{spec}: its config has no 'diffusion' entry: not a diffusion model checkpoint")
    shape = p.data_shape
    if shape is None:
        raise ValueError(f"{spec}: cannot tell the data shape (no config['data']['shape'] and an unknown network)")
    T = p.diffusion.T
    if trajectory is not None and record is None:  # T, 3T/4, T/2, T/4, 0, each moved onto the sampler's grid
        used = T if method == "ancestral" else (min(DEFAULT_STEPS[method], T) if steps is None else int(steps))
        grid = _available_ts(p.diffusion, method, used) if method == "ancestral" or 1 <= used <= T else [0, T]
        record = sorted({min(grid, key=lambda a: (abs(a - T * f), -a)) for f in (1.0, 0.75, 0.5, 0.25, 0.0)},
                        reverse=True)
    dev = next(p.model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    samples, traj = generate(p.model, p.diffusion, shape, n, method=method, steps=steps, eta=eta, generator=gen,
                             clip=clip, record=record, device=dev, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    used_steps = T if method == "ancestral" else (min(DEFAULT_STEPS[method], T) if steps is None else int(steps))
    info = {"checkpoint": str(p.path), "name": p.name, "sha256": p.sha256, "method": method, "steps": used_steps,
            "eta": eta if method == "ddim" else None, "seed": int(seed), "clip": bool(clip), "n": int(n),
            "shape": list(shape), "T": T, "use_ema": bool(use_ema), "device": str(dev), "seconds": round(seconds, 3),
            "dataset": p.config["data"].get("dataset") if isinstance(p.config.get("data"), dict) else None}
    files = {}
    if out is not None:
        title = f"{method}, {used_steps} steps" if samples.ndim == 2 else None
        files["out"] = save_samples_png(samples, out, nrow=nrow, title=title)
    if trajectory is not None:
        files["trajectory"] = _save_safetensors(traj.to_tensors(), trajectory, {"format": "ddpm_lib.trajectory", **info})
    if save_samples is not None:
        files["samples"] = _save_safetensors({"samples": samples}, save_samples, {"format": "ddpm_lib.samples", **info})
    return SampleResult(samples=samples, trajectory=traj, info=info, files=files)
