"""Chapter 13's explorers: reconstruction from x_t and interpolation in x_t space (DDPM Secs. 4.3 and 4.4).

    grid = reconstruction_grid(model, diffusion, x0, ts=[...], n_draws=3, steps=25)
    box = reconstruction_explorer(grid)          # slider t: x_0, x_t, and the decoded draws
    igrid = interpolation_grid(model, diffusion, x0_a, x0_b, lambdas=..., ts=[...], steps=25)
    box = interpolation_explorer(igrid)          # sliders lambda and t

Sampling with the U-Net costs tens of milliseconds per image and step on a CPU, so the explorers
never sample while a slider moves: the grids are computed first (by :func:`reconstruction_grid`
and :func:`interpolation_grid`, which call :func:`ddpm_lib.sampling.reconstruct` and
:func:`ddpm_lib.sampling.interpolate` on a respaced chain), the explorers draw every frame at
construction, and a slider step is a dictionary lookup. Passing a model instead of a grid computes
a small default grid first.

Timesteps are the original ones (1..T). With ``steps`` = K the reverse process runs on K evenly
spaced timesteps (:meth:`GaussianDiffusion.respace`); every t asked for must lie on that grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .framework import ImageGrid, explorer, mosaic_still, nearest, steps_slider, to_pixels

__all__ = [
    "ReconstructionGrid",
    "InterpolationGrid",
    "reconstruction_grid",
    "interpolation_grid",
    "reconstruction_explorer",
    "interpolation_explorer",
]


# ----------------------------------------------------------------------------------------------
# the grids (the expensive part: the reverse process from x_t, for every setting)
# ----------------------------------------------------------------------------------------------


@dataclass
class ReconstructionGrid:
    """x_0, and for each t in ``ts``: ``n_draws`` encodings x_t ~ q(x_t | x_0) and their decodings.

    ``x0`` (B, C, H, W); ``x_t`` and ``samples`` (M, D, B, C, H, W) for M timesteps and D draws;
    ``ts`` (M,) original timesteps; ``steps`` the respaced chain's length (T when not respaced);
    ``network_evaluations`` how many images the network saw in all.
    """

    ts: torch.Tensor
    x0: torch.Tensor
    x_t: torch.Tensor
    samples: torch.Tensor
    steps: int
    T: int
    network_evaluations: int

    def mean_sq_distance(self) -> torch.Tensor:
        """(M,) mean over draws, images and pixels of (sample - x_0)^2, for each t."""
        return ((self.samples - self.x0) ** 2).flatten(1).mean(1)


@dataclass
class InterpolationGrid:
    """Two sets of images and, for each t and lambda, the mixed latent and its decoding.

    ``x0_a``, ``x0_b`` (B, C, H, W); ``x_bar`` (mixed latents) and ``samples`` (M, L, B, C, H, W) for
    M timesteps ``ts`` and L values ``lambdas``.
    """

    ts: torch.Tensor
    lambdas: torch.Tensor
    x0_a: torch.Tensor
    x0_b: torch.Tensor
    x_bar: torch.Tensor
    samples: torch.Tensor
    steps: int
    T: int
    network_evaluations: int


def _check_images(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must be a float tensor of images (B, C, H, W) with B >= 1, got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {x.shape[1]}")
    return x


def _chain(diffusion, steps):
    """The diffusion to sample with and {original t: its index} on it."""
    from ...diffusion import GaussianDiffusion

    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError(f"diffusion must be a GaussianDiffusion, got {type(diffusion).__name__}")
    if steps is None or int(steps) == diffusion.T:
        d = diffusion
    else:
        if not isinstance(steps, (int, np.integer)) or not 1 <= int(steps) <= diffusion.T:
            raise ValueError(
                f"steps must be an integer in 1..T = 1..{diffusion.T} (or None for all T), got {steps!r}"
            )
        d = diffusion.respace(int(steps))
    index = {int(t): k for k, t in enumerate(d.schedule.timesteps.tolist()) if k > 0}
    return d, index


def _timesteps(ts, index: dict, T: int, steps) -> list:
    try:
        ts = [int(t) for t in ts]
    except (TypeError, ValueError):
        raise TypeError(f"ts must be a sequence of integer timesteps, got {ts!r}") from None
    if not ts:
        raise ValueError("ts must hold at least one timestep")
    if len(set(ts)) != len(ts):
        raise ValueError(f"ts must be distinct, got {ts}")
    grid = sorted(index)
    for t in ts:
        if not 1 <= t <= T:
            raise ValueError(f"every t in ts must lie in 1..T = 1..{T}, got {t}")
        if t not in index:
            near = sorted(grid, key=lambda a: abs(a - t))[:2]
            raise ValueError(
                f"t = {t} is not on the {len(grid)}-step chain (steps={steps}); the nearest timesteps "
                f"there are {sorted(near)}"
            )
    return sorted(ts)


@torch.no_grad()
def reconstruction_grid(
    model,
    diffusion,
    x0: torch.Tensor,
    ts: Sequence[int],
    n_draws: int = 3,
    steps: Optional[int] = 25,
    seed: int = 0,
    clip_x0: bool = False,
) -> ReconstructionGrid:
    """Noise each image to x_t ~ q(x_t | x_0) ``n_draws`` times and run the reverse process back to
    x_0 (:func:`ddpm_lib.sampling.reconstruct`, DDPM Sec. 4.3), for every t in ``ts``.

    :param model: ``model(x_t, t) -> output`` for ``diffusion``.
    :param diffusion: the model's :class:`GaussianDiffusion` (its variance choice is used).
    :param x0: (B, C, H, W) images in [-1, 1].
    :param ts: original timesteps in 1..T, on the respaced chain (see the module doc).
    :param n_draws: encodings per image and t (each with its own x_t and reverse-process noise).
    :param steps: length K of the respaced chain (None: all T steps).
    :param seed: seeds the one CPU generator used for every draw, t after t.
    """
    from ...sampling import CountingModel, reconstruct

    x0 = _check_images(x0, "x0")
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    d, index = _chain(diffusion, steps)
    ts = _timesteps(ts, index, diffusion.T, steps)
    counter = CountingModel(model)
    g = torch.Generator().manual_seed(int(seed))
    B = x0.shape[0]
    rep = x0.repeat(n_draws, 1, 1, 1)  # draw-major: rows j * B + b
    xts, outs = [], []
    for t in ts:
        k = index[t]
        x, traj = reconstruct(counter, d, rep, k, generator=g, clip_x0=clip_x0, progress=False, record=[k])
        xts.append(traj.x_t[0].reshape(n_draws, B, *x0.shape[1:]))
        outs.append(x.cpu().reshape(n_draws, B, *x0.shape[1:]))
    return ReconstructionGrid(
        ts=torch.tensor(ts),
        x0=x0.cpu(),
        x_t=torch.stack(xts),
        samples=torch.stack(outs),
        steps=d.T,
        T=diffusion.T,
        network_evaluations=counter.images,
    )


@torch.no_grad()
def interpolation_grid(
    model,
    diffusion,
    x0_a: torch.Tensor,
    x0_b: torch.Tensor,
    lambdas: Sequence[float] = tuple(i / 8 for i in range(9)),
    ts: Sequence[int] = (250, 500),
    steps: Optional[int] = 25,
    seed: int = 0,
    clip_x0: bool = False,
) -> InterpolationGrid:
    """For every t in ``ts``: encode both images, x_t ~ q(x_t | x0_a) and x'_t ~ q(x_t | x0_b), mix
    x̄_t = (1 - lambda) x_t + lambda x'_t for every lambda, and decode x̄_t by the reverse process
    with the same noise for every lambda (:func:`ddpm_lib.sampling.interpolate`, DDPM Sec. 4.4).

    :param x0_a, x0_b: (B, C, H, W) images in [-1, 1], paired by position.
    :param lambdas: mixing weights in [0, 1]; :param ts: original timesteps on the respaced chain.
    """
    from ...sampling import CountingModel, interpolate

    x0_a, x0_b = _check_images(x0_a, "x0_a"), _check_images(x0_b, "x0_b")
    if x0_a.shape != x0_b.shape:
        raise ValueError(
            f"x0_a and x0_b must have the same shape, got {tuple(x0_a.shape)} and {tuple(x0_b.shape)}"
        )
    try:
        lam = [float(v) for v in lambdas]
    except (TypeError, ValueError):
        raise TypeError(f"lambdas must be a sequence of numbers in [0, 1], got {lambdas!r}") from None
    if not lam or any(not 0.0 <= v <= 1.0 for v in lam):
        raise ValueError(f"lambdas must be a non-empty sequence of numbers in [0, 1], got {lam}")
    d, index = _chain(diffusion, steps)
    ts = _timesteps(ts, index, diffusion.T, steps)
    counter = CountingModel(model)
    g = torch.Generator().manual_seed(int(seed))
    B, L = x0_a.shape[0], len(lam)
    bars, outs = [], []
    for t in ts:
        k = index[t]
        x, traj = interpolate(
            counter, d, x0_a, x0_b, lam, k, generator=g, clip_x0=clip_x0, progress=False, record=[k]
        )
        bars.append(traj.x_t[0].reshape(L, B, *x0_a.shape[1:]))
        outs.append(x.cpu())
    return InterpolationGrid(
        ts=torch.tensor(ts),
        lambdas=torch.tensor(lam, dtype=torch.float64),
        x0_a=x0_a.cpu(),
        x0_b=x0_b.cpu(),
        x_bar=torch.stack(bars),
        samples=torch.stack(outs),
        steps=d.T,
        T=diffusion.T,
        network_evaluations=counter.images,
    )


# ----------------------------------------------------------------------------------------------
# defaults when a model (or nothing) is passed instead of a grid
# ----------------------------------------------------------------------------------------------


def _default_model(model, diffusion):
    if model is None:
        from ...pretrained import load_pretrained

        p = load_pretrained("fashion-mnist-unet")
        return p.model, p.diffusion
    if diffusion is None:
        raise ValueError("pass the model's GaussianDiffusion as diffusion= along with the model")
    if not callable(model):
        raise TypeError(
            f"the first argument must be a grid, a model (callable) or None, got {type(model).__name__}"
        )
    return model, diffusion


def _default_test_images(idx):
    from ...data import fashion_mnist

    images, _ = fashion_mnist("test", download=False)
    return images[list(idx)]


# ----------------------------------------------------------------------------------------------
# reconstruction_explorer
# ----------------------------------------------------------------------------------------------


class _ReconstructionFrames:
    def __init__(self, grid: ReconstructionGrid, scale: int = 3):
        self.grid = grid
        self.ts = [int(t) for t in grid.ts.tolist()]
        M, D, B = grid.samples.shape[:3]
        self.D, self.B = D, B
        self.dist = grid.mean_sq_distance().tolist()
        x0 = grid.x0.float().numpy()
        xt = grid.x_t.float().numpy()
        sm = grid.samples.float().numpy()
        # the scale of "unrelated": mean squared distance between different originals
        if B > 1:
            diffs = [float(((x0[i] - x0[j]) ** 2).mean()) for i in range(B) for j in range(B) if i < j]
            self.unrelated = float(np.mean(diffs))
        else:
            self.unrelated = float("nan")
        cols = ["x_0", "x_t (draw 1)"] + [f"draw {j + 1}" for j in range(D)]
        layout = ImageGrid(B, 2 + D, x0.shape[1:], cols, scale=scale)
        self.frames = {}
        for m, t in enumerate(self.ts):
            rows = [[x0[b], xt[m, 0, b], *[sm[m, j, b] for j in range(D)]] for b in range(B)]
            png = layout.png(
                rows,
                header=f"reconstruction from t = {t} ({grid.steps}-step chain): "
                f"mean sq. distance to x_0 {self.dist[m]:.3f}",
            )
            unrel = f" (between different originals: {self.unrelated:.3f})" if B > 1 else ""
            html = (
                f"<code>t = {t} | {D} draws of x_t ~ q(x_t | x_0) per image, each decoded by the reverse process "
                f"| mean squared distance to x_0: {self.dist[m]:.4f}{unrel}</code>"
            )
            self.frames[t] = (png, html)

    def __call__(self, t):
        return self.frames[nearest(self.ts, int(t))]


def _static_reconstruction(frames: _ReconstructionFrames, index: int = 0):
    g = frames.grid
    if not 0 <= int(index) < frames.B:
        raise ValueError(f"index must be in 0..{frames.B - 1}, got {index}")
    D = frames.D
    cells = [
        [to_pixels(a.float().numpy()) for a in (g.x0[index], g.x_t[m, 0, index], *g.samples[m, :, index])]
        for m in range(len(frames.ts))
    ]
    return mosaic_still(
        cells,
        [f"t = {t}" for t in frames.ts],
        ["$x_0$", "$x_t$ (draw 1)"] + [f"draw {j + 1}" for j in range(D)],
        title=r"Reconstruction: $x_0 \to x_t \sim q(x_t \mid x_0) \to$ reverse process, "
        f"{D} draws per $t$",
        cell_inches=0.9,
    )


def reconstruction_explorer(
    grid=None,
    diffusion=None,
    images=None,
    *,
    ts: Sequence[int] = (40, 200, 400, 600, 1000),
    n_draws: int = 3,
    steps: Optional[int] = 25,
    seed: int = 0,
    t: Optional[int] = None,
    static: bool = False,
    index: int = 0,
):
    """Reconstruction from x_t: for each t, the original x_0, one x_t ~ q(x_t | x_0) and several
    decodings of independent x_t by the reverse process (DDPM Sec. 4.3, Fig. 7-8 of the paper): the
    smaller t, the more the decodings share with x_0.

    :param grid: a :class:`ReconstructionGrid` (from :func:`reconstruction_grid`), or a model
        (with ``diffusion``), or None for the shipped U-Net; a grid is then computed with ``images``
        (default: three Fashion-MNIST test images), ``ts``, ``n_draws``, ``steps`` and ``seed``.
    :param t: the slider's initial value (default: the middle of ``ts``), snapped to the grid's t; the
        slider steps through the grid's t only, and ``box.set(t=...)`` snaps.
    :param static: return the still (a pyplot Figure, one mosaic: rows t; image ``index``) instead of the widget.
    :return: an ``ExplorerBox`` with ``controls`` {"t": SelectionSlider}.
    """
    if not isinstance(grid, ReconstructionGrid):
        model, diffusion = _default_model(grid, diffusion)
        x0 = _default_test_images((0, 1, 2)) if images is None else images
        grid = reconstruction_grid(model, diffusion, x0, ts, n_draws=n_draws, steps=steps, seed=seed)
    frames = _ReconstructionFrames(grid)
    if static:
        return _static_reconstruction(frames, index)
    import ipywidgets as W

    lo, hi = min(frames.ts), max(frames.ts)
    t0 = frames.ts[len(frames.ts) // 2] if t is None else int(t)
    if not lo <= t0 <= hi:
        raise ValueError(f"t must lie in {lo}..{hi} (the grid's timesteps {frames.ts}), got {t}")
    controls = {"t": steps_slider(W, frames.ts, t0, "t")}  # the grid's t only: each step a new picture
    box = explorer(
        "reconstruction_explorer",
        frames,
        controls,
        title=f"<b>Reconstruction</b> from x_t ~ q(x_t | x_0), t in {sorted(frames.ts)}",
    )
    box.static_figure = lambda index=index: _static_reconstruction(frames, index)
    box.grid = grid
    return box


# ----------------------------------------------------------------------------------------------
# interpolation_explorer
# ----------------------------------------------------------------------------------------------


class _InterpolationFrames:
    def __init__(self, grid: InterpolationGrid, scale: int = 3, pair: int = 0):
        self.grid = grid
        self.ts = [int(t) for t in grid.ts.tolist()]
        self.lams = [float(v) for v in grid.lambdas.tolist()]
        M, L, B = grid.samples.shape[:3]
        if not 0 <= pair < B:
            raise ValueError(f"pair must be in 0..{B - 1}, got {pair}")
        a = grid.x0_a[pair].float().numpy()
        b = grid.x0_b[pair].float().numpy()
        xb = grid.x_bar[:, :, pair].float().numpy()
        sm = grid.samples[:, :, pair].float().numpy()
        self.frames = {}
        top = ImageGrid(1, 4, a.shape, ["x_0 (source)", "mixed x_t", "decoded", "x'_0 (target)"], scale=4)
        strip = ImageGrid(1, L, a.shape, [f"{v:.3g}" for v in self.lams], scale=2, header=False)
        from PIL import Image
        import io

        for m, t in enumerate(self.ts):
            for li, lam in enumerate(self.lams):
                da = float(((sm[m, li] - a) ** 2).mean())
                db = float(((sm[m, li] - b) ** 2).mean())
                p1 = top.png(
                    [[a, xb[m, li], sm[m, li], b]],
                    header=f"t = {t}, lambda = {lam:.3g}: x_t mixed as (1 - lambda) x_t + lambda x'_t",
                )
                p2 = strip.png([list(sm[m])], highlight=(0, li))
                im1 = Image.open(io.BytesIO(p1))
                im2 = Image.open(io.BytesIO(p2))
                canvas = Image.new(
                    "RGB", (max(im1.width, im2.width), im1.height + im2.height), (255, 255, 255)
                )
                canvas.paste(im1, (0, 0))
                canvas.paste(im2, (0, im1.height))
                buf = io.BytesIO()
                canvas.save(buf, format="png", compress_level=1)
                html = (
                    f"<code>t = {t}, lambda = {lam:.3g} | mean squared distance of the decoded image to x_0 "
                    f"{da:.4f}, to x'_0 {db:.4f} | bottom row: every lambda at this t</code>"
                )
                self.frames[(t, round(lam, 9))] = (buf.getvalue(), html)

    def __call__(self, t, lam):
        return self.frames[(nearest(self.ts, int(t)), round(min(self.lams, key=lambda v: abs(v - lam)), 9))]


def _static_interpolation(grid: InterpolationGrid, pair: int = 0):
    M, L, B = grid.samples.shape[:3]
    if not 0 <= int(pair) < B:
        raise ValueError(f"pair must be in 0..{B - 1}, got {pair}")
    cells = [
        [to_pixels(a.float().numpy()) for a in (grid.x0_a[pair], *grid.samples[m, :, pair], grid.x0_b[pair])]
        for m in range(M)
    ]
    return mosaic_still(
        cells,
        [f"t = {t}" for t in grid.ts.tolist()],
        ["$x_0$"] + [f"{v:.3g}" for v in grid.lambdas.tolist()] + ["$x'_0$"],
        title=r"Interpolation in $x_t$ space: decode $(1 - \lambda)\, x_t + \lambda\, x'_t$",
        note=r"columns: $\lambda$ (the same reverse-process noise for every $\lambda$)",
        cell_inches=0.72,
    )


def interpolation_explorer(
    grid=None,
    diffusion=None,
    images=None,
    *,
    lambdas: Sequence[float] = tuple(i / 8 for i in range(9)),
    ts: Sequence[int] = (200, 400, 600),
    steps: Optional[int] = 25,
    seed: int = 0,
    t: Optional[int] = None,
    lam: float = 0.5,
    pair: int = 0,
    static: bool = False,
):
    """Interpolation between two images in x_t space (DDPM Sec. 4.4, Figs. 8-9 of the paper): sliders
    for lambda and t; the picture shows both sources, the mixed latent, its decoding, and the row of
    decodings for every lambda at this t.

    :param grid: an :class:`InterpolationGrid` (from :func:`interpolation_grid`), or a model (with
        ``diffusion``), or None for the shipped U-Net; a grid is then computed with ``images`` =
        (x0_a, x0_b) (default: two Fashion-MNIST test images), ``lambdas``, ``ts``, ``steps``, ``seed``.
    :param t, lam: the sliders' initial values, snapped to the grid's values; the sliders step through
        the grid's values only, and ``box.set(...)`` snaps.
    :param pair: which pair of the grid's images to show.
    :param static: return the still (a pyplot Figure, one mosaic: rows t, columns lambda) instead of the widget.
    :return: an ``ExplorerBox`` with ``controls`` {"lam": FloatSlider, "t": IntSlider}.
    """
    if not isinstance(grid, InterpolationGrid):
        model, diffusion = _default_model(grid, diffusion)
        if images is None:
            x = _default_test_images((0, 1))
            images = (x[:1], x[1:2])
        if not isinstance(images, (tuple, list)) or len(images) != 2:
            raise ValueError("images must be a pair (x0_a, x0_b) of (B, C, H, W) tensors")
        grid = interpolation_grid(
            model, diffusion, images[0], images[1], lambdas=lambdas, ts=ts, steps=steps, seed=seed
        )
    if static:
        return _static_interpolation(grid, pair)
    frames = _InterpolationFrames(grid, pair=pair)
    import ipywidgets as W

    lo, hi = min(frames.ts), max(frames.ts)
    t0 = frames.ts[len(frames.ts) // 2] if t is None else int(t)
    if not lo <= t0 <= hi:
        raise ValueError(f"t must lie in {lo}..{hi} (the grid's timesteps {frames.ts}), got {t}")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    lams = [float(v) for v in frames.lams]
    # the grid's lambda and t only (lambdas need not be evenly spaced): each step a new picture
    controls = {
        "lam": steps_slider(W, lams, float(lam), "lambda", "420px", fmt=lambda v: f"{v:.3f}"),
        "t": steps_slider(W, frames.ts, t0, "t", "420px"),
    }
    box = explorer(
        "interpolation_explorer",
        frames,
        controls,
        title=f"<b>Interpolation in x_t space</b>: lambda in {[round(v, 3) for v in lams]}, "
        f"t in {sorted(frames.ts)}",
    )
    box.static_figure = lambda pair=pair: _static_interpolation(grid, pair)
    box.grid = grid
    return box
