"""Chapter 12's explorer: inpainting as multiplying every reverse step by r(x_t) (Sohl-Dickstein et
al. 2015, Sec. 2.5), with r a delta on the known pixels (:func:`ddpm_lib.inpaint`).

    box = inpainting_explorer()          # the shipped U-Net, one Fashion-MNIST test image, 20 respaced steps
    box.controls["region"].value = "left"            # center, left, top or random pixels
    box.controls["size"].value = 0.5                 # the fraction of pixels hidden
    box.controls["t"].value = 500                    # x_t of the inpainting trajectory at t
    box.static_figure()                              # a few settings, as a matplotlib Figure
    inpainting_explorer(static=True)                 # the same without ipywidgets

Everything is computed at construction: one call of :func:`ddpm_lib.inpaint` on a batch that holds
every (region, size) mask for every image, recording x_t and the predicted x_0 at about ``n_t``
timesteps (:func:`inpainting_trajectories`). A slider step then draws one frame from those arrays
with numpy and Pillow (a few milliseconds) and the frame is cached, so moving back is a lookup.
The cost is the sampling: regions x sizes x images x steps network calls (the default
4 x 2 x 1 x 20 = 160 image-steps, about 6 s for the shipped U-Net on a 2-core CPU).

Each row of the picture is one image: the original, the masked input (the hole in red), x_t at
the chosen t (known pixels: a fresh sample of q(x_t | x_0); unknown ones: the reverse process),
the network's prediction of x_0 from x_t, and the restored image x_0.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from .framework import FRAME_FONT_PX, default_images, explorer, mosaic_still, pil_font

__all__ = ["REGIONS", "make_mask", "InpaintingRun", "inpainting_trajectories", "inpainting_explorer"]

REGIONS = ("center", "left", "top", "random")
_HOLE_RGB = np.array([205, 55, 55], dtype=np.uint8)


def make_mask(region: str, size: float, shape=(28, 28), seed: int = 0) -> torch.Tensor:
    """A mask for :func:`ddpm_lib.inpaint`: 1 where pixels are known, 0 where they are to be filled.

    :param region: ``"center"`` (a centred square), ``"left"`` (the left columns), ``"top"`` (the top
        rows) or ``"random"`` (pixels drawn by a seeded permutation).
    :param size: the fraction of pixels hidden, in (0, 1) (rounded to whole rows, columns or pixels).
    :param shape: (H, W).
    :param seed: seeds the ``"random"`` region.
    :return: a float tensor of shape (1, H, W) holding 0 and 1, with at least one pixel hidden and one known.
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {', '.join(REGIONS)}; got {region!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < float(size) < 1:
        raise ValueError(f"size must be the fraction of pixels hidden, a number in (0, 1); got {size!r}")
    if len(shape) != 2 or any(int(n) < 2 for n in shape):
        raise ValueError(f"shape must be (H, W) with H, W >= 2; got {tuple(shape)}")
    H, W = (int(n) for n in shape)
    size = float(size)
    mask = torch.ones(1, H, W)
    if region == "center":
        h = min(max(1, round(H * math.sqrt(size))), H - 1)
        w = min(max(1, round(W * math.sqrt(size))), W - 1)
        top, left = (H - h) // 2, (W - w) // 2
        mask[:, top : top + h, left : left + w] = 0
    elif region == "left":
        mask[:, :, : min(max(1, round(W * size)), W - 1)] = 0
    elif region == "top":
        mask[:, : min(max(1, round(H * size)), H - 1), :] = 0
    else:
        k = min(max(1, round(H * W * size)), H * W - 1)
        idx = torch.randperm(H * W, generator=torch.Generator().manual_seed(int(seed)))[:k]
        mask.view(-1)[idx] = 0
    return mask


@dataclass
class InpaintingRun:
    """What :func:`inpainting_trajectories` computed, on the CPU.

    ``images`` (N, C, H, W) the originals; ``masks`` (M, 1, H, W) with ``settings[m] = (region, size)``;
    ``timesteps`` (K,) the recorded original timesteps, decreasing, ending at 0; ``x_t`` and
    ``pred_x0`` (K, M, N, C, H, W) (``pred_x0`` is NaN at t = 0); ``result`` (M, N, C, H, W) the restored x_0.
    """

    images: torch.Tensor
    masks: torch.Tensor
    settings: list
    timesteps: torch.Tensor
    x_t: torch.Tensor
    pred_x0: torch.Tensor
    result: torch.Tensor
    steps: int

    def index(self, region: str, size: float) -> int:
        for m, (r, s) in enumerate(self.settings):
            if r == region and math.isclose(s, float(size)):
                return m
        raise KeyError(f"no mask for region {region!r}, size {size!r}; computed: {self.settings}")


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor (N, C, H, W) in [-1, 1], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not torch.isfinite(images).all() or float(images.min()) < -1 - 1e-6 or float(images.max()) > 1 + 1e-6:
        raise ValueError("images must hold finite values in [-1, 1] (the model's data range)")
    return images.float()


def inpainting_trajectories(
    model,
    diffusion,
    images: torch.Tensor,
    regions: Sequence[str] = REGIONS,
    sizes: Sequence[float] = (0.25, 0.5),
    steps: int = 20,
    n_t: int = 11,
    seed: int = 0,
    mask_seed: int = 0,
    progress: bool = False,
) -> InpaintingRun:
    """Inpaint every image under every (region, size) mask in one batch, recording the trajectory.

    Runs :func:`ddpm_lib.inpaint` (known pixels replaced by a fresh q(x_t | x_0) sample at every step)
    on ``diffusion.respace(steps)``, recording about ``n_t`` timesteps evenly spread from T to 0.

    :param model: ``model(x_t, t) -> output`` for ``diffusion``.
    :param diffusion: the :class:`GaussianDiffusion` the model was trained with.
    :param images: (N, C, H, W) in [-1, 1].
    :param regions, sizes: the masks (:func:`make_mask`).
    :param steps: respaced sampling steps, 1..T.
    :param n_t: how many timesteps to record (at least 2: T and 0).
    :param seed: seeds the sampler's generator; ``mask_seed`` the random-pixel masks.
    :return: an :class:`InpaintingRun`.
    """
    from ...diffusion import GaussianDiffusion
    from ...sampling import inpaint

    if not callable(model):
        raise TypeError("model must be a callable model(x_t, t) -> output")
    if not isinstance(diffusion, GaussianDiffusion):
        raise TypeError(
            f"diffusion must be the GaussianDiffusion the model was trained with, got "
            f"{type(diffusion).__name__}"
        )
    images = _check_images(images)
    regions = list(regions)
    if not regions or any(r not in REGIONS for r in regions) or len(set(regions)) != len(regions):
        raise ValueError(f"regions must be distinct names from {', '.join(REGIONS)}; got {regions}")
    sizes = [float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else s for s in sizes]
    if (
        not sizes
        or any(not isinstance(s, float) or not 0 < s < 1 for s in sizes)
        or len(set(sizes)) != len(sizes)
    ):
        raise ValueError(
            f"sizes must be distinct fractions of pixels hidden, each in (0, 1); got {list(sizes)}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= diffusion.T:
        raise ValueError(f"steps must be an integer in 1..T = 1..{diffusion.T}, got {steps!r}")
    if isinstance(n_t, bool) or not isinstance(n_t, int) or n_t < 2:
        raise ValueError(f"n_t must be an integer >= 2 (T and 0 are always recorded), got {n_t!r}")
    N, C, H, W = images.shape
    settings = [(r, s) for r in regions for s in sizes]
    masks = torch.stack([make_mask(r, s, (H, W), seed=mask_seed) for r, s in settings])  # (M, 1, H, W)
    M = len(settings)
    d = diffusion.respace(steps) if steps < diffusion.T else diffusion
    record = sorted({int(round(k)) for k in np.linspace(0, steps, min(n_t, steps + 1))})
    dev = (
        next((p.device for p in model.parameters()), torch.device("cpu"))
        if hasattr(model, "parameters")
        else torch.device("cpu")
    )
    x_known = images.unsqueeze(0).expand(M, N, C, H, W).reshape(M * N, C, H, W).to(dev)
    mask_b = masks.unsqueeze(1).expand(M, N, 1, H, W).reshape(M * N, 1, H, W).to(dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    with torch.no_grad():
        result, traj = inpaint(model, d, x_known, mask_b, generator=gen, progress=progress, record=record)
    K = traj.ts.numel()
    shape = (K, M, N, C, H, W)
    return InpaintingRun(
        images=images.cpu(),
        masks=masks.cpu(),
        settings=settings,
        timesteps=traj.timesteps.cpu().long(),
        x_t=traj.x_t.float().reshape(shape),
        pred_x0=traj.pred_x0.float().reshape(shape),
        result=result.float().cpu().reshape(M, N, C, H, W),
        steps=steps,
    )


# ----------------------------------------------------------------------------------------------
# drawing: numpy + Pillow
# ----------------------------------------------------------------------------------------------


def _pixels(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) uint8; NaN -> mid grey."""
    a = np.nan_to_num(x.numpy().astype(np.float64), nan=0.0)
    a = np.clip(np.round((a + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


class _InpaintDrawer:
    COLS = ("original", "masked input", "x_t", "predicted x_0", "restored x_0")

    def __init__(self, run: InpaintingRun, scale: int):
        from PIL import Image, ImageDraw

        self.run = run
        self.scale = int(scale)
        N, C, H, W = run.images.shape
        self.h, self.w, self.gap, self.top = H * self.scale, W * self.scale, 6, 46
        self.template = Image.new(
            "RGB",
            (len(self.COLS) * (self.w + self.gap) + self.gap, self.top + N * (self.h + self.gap)),
            (255, 255, 255),
        )
        draw = ImageDraw.Draw(self.template)
        font = pil_font(FRAME_FONT_PX)
        for c, title in enumerate(self.COLS):
            draw.text(
                (self.gap + c * (self.w + self.gap), self.top - 19), title, fill=(40, 40, 40), font=font
            )
        self.header_font = pil_font(FRAME_FONT_PX)
        self.t_index = {int(t): k for k, t in enumerate(run.timesteps.tolist())}

    def _up(self, a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, self.scale, axis=0), self.scale, axis=1)

    def cells(self, region, size, t):
        """(rows of the 5 pictures per image as (H, W, 3) uint8, the hole mask, the step index k)."""
        run = self.run
        m = run.index(region, size)
        if int(t) not in self.t_index:
            raise ValueError(f"t = {t} was not recorded; recorded: {sorted(self.t_index)}")
        k = self.t_index[int(t)]
        hole = run.masks[m, 0].numpy() == 0
        rows = []
        for n in range(run.images.shape[0]):
            x0 = run.images[n]
            masked = _pixels(x0)
            masked[hole] = _HOLE_RGB
            pred = run.pred_x0[k, m, n] if int(t) > 0 else run.x_t[k, m, n]
            rows.append(
                [
                    _pixels(x0),
                    masked,
                    _pixels(run.x_t[k, m, n].clamp(-1, 1)),
                    _pixels(pred.clamp(-1, 1)),
                    _pixels(run.result[m, n].clamp(-1, 1)),
                ]
            )
        return rows, hole, k

    def __call__(self, region, size, t):
        from PIL import Image, ImageDraw

        run = self.run
        m = run.index(region, size)
        rows, hole, k = self.cells(region, size, t)
        canvas = self.template.copy()
        draw = ImageDraw.Draw(canvas)
        mses, fills = [], []
        for n, cells in enumerate(rows):
            x0 = run.images[n]
            y = self.top + n * (self.h + self.gap)
            for c, a in enumerate(cells):
                canvas.paste(Image.fromarray(self._up(a)), (self.gap + c * (self.w + self.gap), y))
            err = (run.result[m, n].clamp(-1, 1) - x0)[:, torch.from_numpy(hole)]
            mses.append(float((err**2).mean()))
            known = x0[:, torch.from_numpy(~hole)]
            fills.append(float(((x0[:, torch.from_numpy(hole)] - known.mean()) ** 2).mean()))
        header = (
            f"{region}, {size:.0%} hidden ({int(hole.sum())} pixels) | t = {int(t)} "
            f"({'start: noise in the hole' if k == 0 else 'the result' if int(t) == 0 else 'on the way'})"
            f" | {run.steps} respaced steps"
        )
        draw.text((self.gap, 4), header, fill=(0, 0, 0), font=self.header_font)
        buf = io.BytesIO()
        canvas.save(buf, format="png", compress_level=1)
        html = (
            f"<code>{region}, {size:.0%} hidden | t = {int(t)} | MSE in the hole: restored "
            f"{np.mean(mses):.3f}, filled with the mean of the known pixels {np.mean(fills):.3f} "
            f"(averaged over {len(mses)} image{'s' if len(mses) > 1 else ''})</code>"
        )
        return buf.getvalue(), html


def _inpainting_still(drawer: _InpaintDrawer, settings, titles):
    """The still: one mosaic, a row per setting and image (original, masked input with the hole in red,
    x_t, predicted x_0, restored x_0), each row named by its setting."""
    cells, labels = [], []
    for i, st in enumerate(settings):
        rows, hole, _ = drawer.cells(st["region"], st["size"], st["t"])
        name = (
            titles[i]
            if titles is not None
            else f"{st['region']}, {st['size']:.0%} hidden, t = {int(st['t'])}"
        )
        for n, row in enumerate(rows):
            cells.append(row)
            labels.append(name + (f" ({n})" if len(rows) > 1 else ""))
    return mosaic_still(
        cells,
        labels,
        ["original", "masked input", "$x_t$", "predicted $x_0$", "restored $x_0$"],
        title=f"Inpainting ({drawer.run.steps} respaced steps): the known pixels fixed, the hole (red) sampled",
        cell_inches=1.0,
    )


def inpainting_explorer(
    model=None,
    diffusion=None,
    images: Optional[torch.Tensor] = None,
    *,
    regions: Sequence[str] = REGIONS,
    sizes: Sequence[float] = (0.25, 0.5),
    steps: int = 20,
    n_t: int = 11,
    n_images: int = 1,
    seed: int = 0,
    scale: int = 4,
    run: Optional[InpaintingRun] = None,
    static: bool = False,
    progress: bool = False,
):
    """Inpainting (Sohl-Dickstein et al. 2015, Sec. 2.5; :func:`ddpm_lib.inpaint`): pick the hidden
    region, its size and t, and see x_t of the inpainting trajectory beside the original, the masked
    input, the predicted x_0 and the result.

    :param model, diffusion: a trained model and its diffusion (default: the shipped
        ``fashion-mnist-unet``, loaded with :func:`ddpm_lib.load_pretrained`).
    :param images: (N, C, H, W) in [-1, 1]; default ``n_images`` Fashion-MNIST test images of different classes.
    :param regions, sizes, steps, n_t, seed: what to precompute (:func:`inpainting_trajectories`); the
        cost is len(regions) x len(sizes) x N x steps network calls.
    :param run: an :class:`InpaintingRun` computed before (then model, diffusion and images are not used).
    :param scale: pixels per image pixel.
    :param static: return the still (a pyplot Figure: one mosaic, a row per setting and image) instead
        of the widget.
    :return: an ``ExplorerBox`` with ``controls`` region (Dropdown), size and t (SelectionSliders).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer in 1..16, got {scale!r}")
    if run is None:
        if model is None:
            if diffusion is not None:
                raise ValueError(
                    "diffusion was given without a model: pass both, or neither for the shipped U-Net"
                )
            from ...pretrained import load_pretrained

            p = load_pretrained("fashion-mnist-unet")
            model, diffusion = p.model, p.diffusion
        elif diffusion is None:
            raise ValueError(
                "model was given without its diffusion: pass the GaussianDiffusion it was trained with"
            )
        if images is None:
            if isinstance(n_images, bool) or not isinstance(n_images, int) or not 1 <= n_images <= 10:
                raise ValueError(f"n_images must be an integer in 1..10, got {n_images!r}")
            images = default_images(n_images)
        run = inpainting_trajectories(
            model,
            diffusion,
            images,
            regions=regions,
            sizes=sizes,
            steps=steps,
            n_t=n_t,
            seed=seed,
            progress=progress,
        )
    elif not isinstance(run, InpaintingRun):
        raise TypeError(
            f"run must be an InpaintingRun (from inpainting_trajectories), got {type(run).__name__}"
        )
    drawer = _InpaintDrawer(run, scale)
    regions_run = list(dict.fromkeys(r for r, _ in run.settings))
    sizes_run = list(dict.fromkeys(s for _, s in run.settings))
    ts = sorted(int(t) for t in run.timesteps.tolist())
    t_mid = min(ts, key=lambda v: abs(v - ts[-1] / 2))
    big = sizes_run[-1]
    settings = [dict(region=regions_run[0], size=big, t=t_mid)] + [
        dict(region=r, size=big, t=0) for r in regions_run
    ]
    if static:
        return _inpainting_still(drawer, settings, None)
    import ipywidgets as W

    controls = {  # t first: the slider a reader reaches first
        "t": W.SelectionSlider(
            options=ts, value=0, description="t", continuous_update=True, layout=W.Layout(width="420px")
        ),
        "region": W.Dropdown(options=regions_run, value=regions_run[0], description="region"),
        "size": W.SelectionSlider(
            options=[(f"{s:.0%}", s) for s in sizes_run],
            value=big,
            description="hidden",
            continuous_update=True,
        ),
    }
    return explorer(
        "inpainting_explorer",
        drawer,
        controls,
        static_settings=settings,
        still=lambda full, titles: _inpainting_still(drawer, full, titles),
        title="<b>Inpainting</b>: each reverse step times r(x_t), a delta on the known pixels "
        "(known pixels: a fresh sample of q(x_t | x_0); the hole: the reverse process)",
    )
