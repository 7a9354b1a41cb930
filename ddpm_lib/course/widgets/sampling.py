"""Chapter 09's explorer: scrub t through a stored sampling trajectory (Algorithm 2 of DDPM).

    traj, meta = load_trajectory()                  # the shipped 1000-step trajectory, sha256-checked
    eps = predicted_eps(traj, schedule)             # DDPM Eq. 4 solved for eps, from x_t and the predicted x_0
    box = reverse_process_explorer(traj, schedule)  # slider t: x_t, predicted eps, predicted x_0
    box.static_figure()                             # the same for a few t, as a matplotlib Figure

The stored file is made by ``bash scripts/make_trajectory.sh`` (``python -m ddpm_lib.sample ...
--trajectory``); its tensors are ``ts``, ``timesteps`` (K,), ``x_t`` and ``pred_x0`` (K, B, C, H, W),
with ``pred_x0`` NaN at t = 0, where no prediction is made (x_0 is the sample itself).

The predicted noise is not stored: a network that predicts eps gives
x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t) (Eq. 4 solved for x_0), so
eps_theta = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t) recovers it exactly, up to float32 rounding.

Every frame is drawn at construction (numpy + Pillow, a few milliseconds each): moving the slider
costs a dictionary lookup.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import _explorer, _new_figure

__all__ = [
    "DEFAULT_TRAJECTORY",
    "MAKE_TRAJECTORY",
    "load_trajectory",
    "predicted_eps",
    "reverse_process_explorer",
    "ImageGrid",
]

DEFAULT_TRAJECTORY = "trajectories/fashion_mnist_unet_ancestral1000_seed0.safetensors"
MAKE_TRAJECTORY = "bash scripts/make_trajectory.sh"


# ----------------------------------------------------------------------------------------------
# the stored trajectory
# ----------------------------------------------------------------------------------------------


def load_trajectory(path=None, verify: bool = True):
    """Load a trajectory written by ``python -m ddpm_lib.sample --trajectory``.

    :param path: a ``.safetensors`` file, or a path relative to the data folder (default
        :data:`DEFAULT_TRAJECTORY`, the one chapter 09 uses).
    :param verify: check the file's size and sha256 against ``data/registry.json`` when the
        registry lists it (files the registry does not list are loaded unchecked).
    :return: ``(Trajectory, metadata)``; metadata is the file's safetensors metadata with JSON values
        decoded (the checkpoint's sha256, the sampler, the seed ...).
    """
    from safetensors import safe_open

    from ...data import _load_registry, data_dir, verify_file
    from ...diffusion import Trajectory

    rel = DEFAULT_TRAJECTORY if path is None else path
    p = Path(rel)
    if not p.is_absolute() and not p.is_file():
        p = data_dir() / rel
    if not p.is_file():
        raise FileNotFoundError(f"no trajectory file at {p}. Make the shipped one with `{MAKE_TRAJECTORY}` "
                                "(python -m ddpm_lib.sample ... --trajectory FILE writes others)")
    if verify:
        try:
            key = p.resolve().relative_to(data_dir().resolve()).as_posix()
        except ValueError:
            key = None
        if key is not None and key in _load_registry():
            verify_file(p, key)
    with safe_open(str(p), framework="pt") as f:
        meta = dict(f.metadata() or {})
        names = set(f.keys())
        missing = {"ts", "x_t", "pred_x0"} - names
        if missing:
            raise ValueError(f"{p} is not a ddpm_lib trajectory: it lacks the tensors {sorted(missing)}")
        tensors = {k: f.get_tensor(k) for k in names}
    decoded = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except (TypeError, ValueError):
            decoded[k] = v
    traj = Trajectory(ts=tensors["ts"], x_t=tensors["x_t"], pred_x0=tensors["pred_x0"],
                      timesteps=tensors.get("timesteps"))
    return traj, decoded


def _check_trajectory(trajectory, name: str = "trajectory"):
    for attr in ("x_t", "pred_x0", "ts"):
        if not hasattr(trajectory, attr):
            raise TypeError(f"{name} must be a ddpm_lib Trajectory (ts, x_t, pred_x0), e.g. from load_trajectory() "
                            f"or sample(..., record=[...]); got {type(trajectory).__name__}")
    xs, x0s = trajectory.x_t, trajectory.pred_x0
    if not isinstance(xs, torch.Tensor) or xs.ndim != 5 or xs.shape[0] == 0:
        raise ValueError(f"{name}.x_t must be images of shape (K, B, C, H, W) with K >= 1, got "
                         f"{tuple(xs.shape) if isinstance(xs, torch.Tensor) else type(xs).__name__}")
    if xs.shape[2] not in (1, 3):
        raise ValueError(f"{name} images must have 1 or 3 channels, got {xs.shape[2]}")
    if tuple(x0s.shape) != tuple(xs.shape):
        raise ValueError(f"{name}.pred_x0 must have x_t's shape {tuple(xs.shape)}, got {tuple(x0s.shape)}")
    ts = trajectory.timesteps if getattr(trajectory, "timesteps", None) is not None else trajectory.ts
    ts = torch.as_tensor(ts).long()
    if ts.shape != (xs.shape[0],):
        raise ValueError(f"{name} has {xs.shape[0]} states but {ts.numel()} timesteps")
    if len(set(ts.tolist())) != ts.numel():
        raise ValueError(f"{name}'s timesteps must be distinct, got {ts.tolist()}")
    return ts


def _schedule_of(schedule):
    from ...diffusion import GaussianDiffusion
    from ...schedules import NoiseSchedule

    if schedule is None:
        return NoiseSchedule.linear(T=1000)
    if isinstance(schedule, GaussianDiffusion):
        return schedule.schedule
    if isinstance(schedule, NoiseSchedule):
        return schedule
    raise TypeError(f"schedule must be a NoiseSchedule or a GaussianDiffusion (the one that sampled), "
                    f"got {type(schedule).__name__}")


def predicted_eps(trajectory, schedule=None) -> torch.Tensor:
    """The network's eps prediction at every recorded state, from x_t and the predicted x_0.

    eps_theta = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t): DDPM Eq. 4 solved for eps, exact
    for a network that predicts eps (x0_hat was made from eps_theta by the same equation). Computed
    in float64 with :meth:`GaussianDiffusion.pred_eps_from_x0`; NaN at t = 0.

    :param trajectory: a :class:`Trajectory` with original timesteps in ``timesteps`` (or ``ts``).
    :param schedule: the sampler's original :class:`NoiseSchedule` (or its GaussianDiffusion);
        default: DDPM's linear schedule, T = 1000.
    :return: a float32 tensor shaped like ``trajectory.x_t``.
    """
    from ...diffusion import GaussianDiffusion

    ts = _check_trajectory(trajectory)
    s = _schedule_of(schedule)
    if int(ts.max()) > s.T or int(ts.min()) < 0:
        raise ValueError(f"the trajectory's timesteps lie in {int(ts.min())}..{int(ts.max())}, outside 0..T = "
                         f"0..{s.T} of the schedule given")
    d = GaussianDiffusion(s)
    out = torch.full(trajectory.x_t.shape, float("nan"), dtype=torch.float32)
    for k, t in enumerate(ts.tolist()):
        if t == 0:
            continue
        x = trajectory.x_t[k].double()
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        out[k] = d.pred_eps_from_x0(x, tt, trajectory.pred_x0[k].double()).float()
    return out


# ----------------------------------------------------------------------------------------------
# pictures: numpy mosaics with Pillow labels (fast enough to draw every frame up front)
# ----------------------------------------------------------------------------------------------


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _to_pixels(x: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """(C, H, W) values -> (H, W, 3) uint8, [lo, hi] mapped to 0..255 and clipped; NaN -> mid grey."""
    a = np.nan_to_num(x, nan=(lo + hi) / 2)
    a = np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    a = a.transpose(1, 2, 0)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


class ImageGrid:
    """A fixed layout of image cells with column and row titles, drawn once; :meth:`png` pastes
    images into a copy and writes a header line, so a frame costs a few milliseconds.

    :param nrows, ncols: cells; :param shape: (C, H, W) of every image; :param scale: pixel repeat.
    """

    def __init__(self, nrows: int, ncols: int, shape, col_titles: Sequence[str] = (), row_titles: Sequence[str] = (),
                 scale: int = 3, gap: int = 4, header: bool = True):
        from PIL import Image, ImageDraw

        self.scale, self.gap = int(scale), int(gap)
        self.h, self.w = int(shape[1]) * self.scale, int(shape[2]) * self.scale
        self.top = (18 if header else 0) + (16 if col_titles else 0)
        self.left = 70 if row_titles else 0
        self.nrows, self.ncols = int(nrows), int(ncols)
        H = self.top + self.nrows * (self.h + self.gap) + self.gap
        W = self.left + self.ncols * (self.w + self.gap) + self.gap
        self.template = Image.new("RGB", (W, H), (255, 255, 255))
        draw = ImageDraw.Draw(self.template)
        font = _font(11)
        for c, title in enumerate(col_titles):
            draw.text((self.left + self.gap + c * (self.w + self.gap), self.top - 15), title, fill=(40, 40, 40),
                      font=font)
        for r, title in enumerate(row_titles):
            draw.text((2, self.top + r * (self.h + self.gap) + self.h // 2 - 6), title, fill=(40, 40, 40), font=font)
        self.header_font = _font(12)

    def cell_origin(self, r: int, c: int) -> tuple:
        return self.left + self.gap + c * (self.w + self.gap), self.top + r * (self.h + self.gap)

    def png(self, rows, header: str = "", ranges: Sequence = (), highlight=None) -> bytes:
        """``rows[r][c]``: (C, H, W) values or None (blank); ``ranges[c]`` = (lo, hi) for column c
        (default (-1, 1)); ``highlight`` = (r, c) frames one cell in red."""
        from PIL import Image, ImageDraw

        canvas = self.template.copy()
        draw = ImageDraw.Draw(canvas)
        if header:
            draw.text((self.gap, 2), header, fill=(0, 0, 0), font=self.header_font)
        for r, row in enumerate(rows):
            for c, a in enumerate(row):
                if a is None:
                    continue
                lo, hi = ranges[c] if c < len(ranges) and ranges[c] is not None else (-1.0, 1.0)
                pix = _to_pixels(a, lo, hi)
                pix = np.repeat(np.repeat(pix, self.scale, axis=0), self.scale, axis=1)
                x, y = self.cell_origin(r, c)
                canvas.paste(Image.fromarray(pix), (x, y))
                if highlight is not None and tuple(highlight) == (r, c):
                    draw.rectangle([x - 2, y - 2, x + self.w + 1, y + self.h + 1], outline=(220, 30, 30), width=2)
        buf = io.BytesIO()
        canvas.save(buf, format="png", compress_level=1)
        return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# reverse_process_explorer
# ----------------------------------------------------------------------------------------------

EPS_RANGE = 3.0  # predicted eps is shown with -3..3 mapped to black..white


def _nearest(values: Sequence[int], v) -> int:
    """The element of ``values`` nearest to v (ties go to the larger one)."""
    return min(values, key=lambda a: (abs(a - v), -a))


def _steps_slider(W, values: Sequence, value, description: str, width: str = "520px", fmt=str):
    """A slider over the given values only (sorted), starting at the one nearest ``value``: each
    step, a key press or a drag notch, lands on a value that has its own frame."""
    values = sorted(values)
    return W.SelectionSlider(options=[(fmt(v), v) for v in values], value=_nearest(values, value), description=description,
                             continuous_update=True, layout=W.Layout(width=width))


class _ReverseProcessFrames:
    def __init__(self, trajectory, schedule, scale: int):
        ts = _check_trajectory(trajectory)
        self.s = _schedule_of(schedule)
        self.eps = predicted_eps(trajectory, self.s).numpy()
        self.xs = trajectory.x_t.float().numpy()
        self.x0s = trajectory.pred_x0.float().numpy()
        self.ts = [int(t) for t in ts.tolist()]
        self.order = sorted(range(len(self.ts)), key=lambda k: -self.ts[k])
        self.B = self.xs.shape[1]
        # the final samples: the state at the smallest recorded t (t = 0 when it was recorded)
        k_last = min(range(len(self.ts)), key=lambda k: self.ts[k])
        self.final = self.xs[k_last]
        self.t_final = self.ts[k_last]
        self.grid = ImageGrid(self.B, 3, self.xs.shape[2:], ["x_t", f"pred eps (-{EPS_RANGE:g}..{EPS_RANGE:g})", "pred x_0"],
                              scale=scale)
        self.frames = {}

    def draw_all(self):
        """Draw every frame now (the widget does, so that a slider step is a lookup)."""
        for k, t in enumerate(self.ts):
            if t not in self.frames:
                self.frames[t] = self._draw(k)
        return self

    def numbers(self, k: int) -> dict:
        t = self.ts[k]
        ab = float(self.s.alpha_bars[t])
        x0 = self.x0s[k]
        has = bool(np.isfinite(x0).all())
        return {
            "t": t, "alpha_bar": ab, "snr": ab / (1 - ab) if t > 0 else float("inf"),
            "std_x_t": float(self.xs[k].std()),
            "std_eps": float(self.eps[k].std()) if has else float("nan"),
            "dist_x0_to_final": float(((x0 - self.final) ** 2).mean()) if has else float("nan"),
            "dist_x_t_to_final": float(((self.xs[k] - self.final) ** 2).mean()),
        }

    def _draw(self, k: int):
        n = self.numbers(k)
        t = n["t"]
        rows = []
        for b in range(self.B):
            if t == 0:
                rows.append([self.xs[k, b], None, None])
            else:
                rows.append([self.xs[k, b], self.eps[k, b], self.x0s[k, b]])
        header = (f"t = {t}: abar_t = {n['alpha_bar']:.4f}" + (f", SNR = {n['snr']:.3g}" if t > 0 else " (the samples)"))
        png = self.grid.png(rows, header=header, ranges=[(-1, 1), (-EPS_RANGE, EPS_RANGE), (-1, 1)])
        if t == 0:
            html = (f"<code>t = 0: the samples x_0 (no prediction is made at t = 0) | std of x_0 "
                    f"{n['std_x_t']:.3f}</code>")
        else:
            html = (f"<code>t = {t} | abar_t = {n['alpha_bar']:.4g}, SNR = {n['snr']:.3g} | std(x_t) = "
                    f"{n['std_x_t']:.3f}, std(pred eps) = {n['std_eps']:.3f} | mean squared distance to the final "
                    f"sample (t = {self.t_final}): pred x_0 {n['dist_x0_to_final']:.4f}, x_t "
                    f"{n['dist_x_t_to_final']:.4f}</code>")
        return png, html

    def __call__(self, t):
        tt = _nearest(self.ts, int(t))
        if tt not in self.frames:
            self.frames[tt] = self._draw(self.ts.index(tt))
        return self.frames[tt]


def _static_reverse(frames: _ReverseProcessFrames, ts=None, index=None):
    """Rows x_t, pred eps, pred x_0 for each image (or image ``index``), one column per t."""
    if ts is None:
        T = max(frames.ts)
        want = [T, 0.75 * T, 0.5 * T, 0.3 * T, 0.2 * T, 0.1 * T, 0.05 * T, 0.02 * T, 0.01 * T, 0]
        ts = []
        for v in want:
            tt = _nearest(frames.ts, v)
            if tt not in ts:
                ts.append(tt)
    else:
        ts = [_nearest(frames.ts, int(v)) for v in ts]
    if index is None:
        images = list(range(frames.B))
    else:
        if not 0 <= int(index) < frames.B:
            raise ValueError(f"index must be in 0..{frames.B - 1}, got {index}")
        images = [int(index)]
    K = len(ts)
    kidx = [frames.ts.index(t) for t in ts]
    # one mosaic, one imshow: rows x_t, pred eps, pred x_0 for each image; columns the timesteps
    C, H, Wd = frames.xs.shape[2:]
    pad = 3
    rows = 3 * len(images)
    mosaic = np.full((rows * (H + pad) + pad, K * (Wd + pad) + pad, 3), 255, np.uint8)
    sources = ((frames.xs, -1, 1), (frames.eps, -EPS_RANGE, EPS_RANGE), (frames.x0s, -1, 1))
    for i, b in enumerate(images):
        for r, (arr, lo, hi) in enumerate(sources):
            for j, k in enumerate(kidx):
                a = arr[k, b]
                if np.isfinite(a).all():
                    y, x = pad + (3 * i + r) * (H + pad), pad + j * (Wd + pad)
                    mosaic[y:y + H, x:x + Wd] = _to_pixels(a, lo, hi)
    fig = _new_figure((0.62 * K + 1.0, 0.62 * rows + 0.7), 80)
    ax = fig.add_axes((0.1, 0.02, 0.88, 0.86))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([pad + j * (Wd + pad) + Wd / 2 for j in range(K)])
    ax.set_xticklabels([f"t={t}" for t in ts], fontsize=7)
    ax.xaxis.tick_top()
    labels = ("x_t", "pred eps", "pred x_0")
    ax.set_yticks([pad + q * (H + pad) + H / 2 for q in range(rows)])
    ax.set_yticklabels([labels[q % 3] + (f" ({images[q // 3]})" if len(images) > 1 and q % 3 == 0 else "")
                        for q in range(rows)], fontsize=7)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    fig.suptitle("Reverse process (Algorithm 2): x_t, predicted noise, predicted x_0 as t falls", fontsize=9)
    return fig


def reverse_process_explorer(trajectory=None, schedule=None, *, t: Optional[int] = None, static: bool = False,
                             static_ts=None, index=None):
    """Scrub t through a stored sampling trajectory: for each image, x_t, the predicted noise
    eps_theta(x_t, t) and the predicted x_0 (DDPM Sec. 4.3, progressive generation).

    :param trajectory: a :class:`Trajectory` (x_t and pred_x0 of shape (K, B, C, H, W), original
        timesteps), a path to a trajectory file, or None for the shipped one (:func:`load_trajectory`).
    :param schedule: the sampler's :class:`NoiseSchedule` or GaussianDiffusion (default: linear, T = 1000),
        used to recover eps from x_t and pred_x0 (:func:`predicted_eps`).
    :param t: the slider's initial value (default: the largest recorded t), snapped to the nearest
        recorded t. The slider steps through the recorded t only (e.g. every 10th, then every step
        below 20), so each step shows a new state; ``box.set(t=...)`` takes any t and snaps it.
    :param static: return a matplotlib Figure (columns: a few recorded t) instead of the widget.
    :param static_ts, index: the static figure's timesteps (snapped to recorded ones) and image (default all).
    :return: an ``ExplorerBox`` with ``controls`` {"t": SelectionSlider}; ``box.static_figure()`` draws the static figure.
    """
    if trajectory is None or isinstance(trajectory, (str, Path)):
        trajectory, _ = load_trajectory(trajectory)
    frames = _ReverseProcessFrames(trajectory, schedule, scale=3)
    if static:
        return _static_reverse(frames, static_ts, index)
    import ipywidgets as W

    frames.draw_all()
    T = max(frames.ts)
    t0 = T if t is None else int(t)
    if not min(frames.ts) <= t0 <= T:
        raise ValueError(f"t must lie in {min(frames.ts)}..{T} (the recorded range), got {t}")
    # a slider over the recorded t only, so that every step (a key press, a drag notch) is a new state
    recorded = sorted(set(frames.ts))
    controls = {"t": _steps_slider(W, recorded, t0, "t")}
    box = _explorer("reverse_process_explorer", frames, controls,
                    title=f"<b>Reverse process</b> (Algorithm 2, {len(frames.ts)} recorded states of a {T}-step "
                          f"chain): move t from {T} down to 0")
    box.static_figure = lambda ts=None, index=index: _static_reverse(frames, ts, index)
    box.frames = frames
    return box
