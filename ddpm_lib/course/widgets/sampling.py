"""reverse_process_explorer (chapter 10): scrub t through a stored sampling trajectory (Algorithm 2 of DDPM).

    traj, meta = load_trajectory()                  # ddpm_lib.trajectories: the shipped 1000-step trajectory
    box = reverse_process_explorer(traj, schedule)  # slider t: x_t, predicted eps, predicted x_0
    box.static_figure()                             # the same for a few t, as a matplotlib Figure

The stored file (:mod:`ddpm_lib.trajectories`) keeps x_t and the predicted x_0; the predicted noise is
recovered from them by :func:`ddpm_lib.sampling.predicted_eps` (DDPM Eq. 4 solved for eps).

Every frame is drawn at construction (numpy + Pillow, a few milliseconds each, on :mod:`.framework`'s
:class:`~.framework.ImageGrid`): moving the slider costs a dictionary lookup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...sampling import check_trajectory, predicted_eps, schedule_of
from ...trajectories import load_trajectory
from .framework import ImageGrid, explorer, mosaic_still, nearest, steps_slider, to_pixels

__all__ = ["reverse_process_explorer"]

EPS_RANGE = 3.0  # predicted eps is shown with -3..3 mapped to black..white


def _check_image_trajectory(trajectory, name: str = "trajectory") -> torch.Tensor:
    """:func:`ddpm_lib.sampling.check_trajectory`, and images (K, B, C, H, W) with 1 or 3 channels."""
    ts = check_trajectory(trajectory, name)
    xs = trajectory.x_t
    if xs.ndim != 5:
        raise ValueError(
            f"{name}.x_t must be images of shape (K, B, C, H, W) with K >= 1, got {tuple(xs.shape)}"
        )
    if xs.shape[2] not in (1, 3):
        raise ValueError(f"{name} images must have 1 or 3 channels, got {xs.shape[2]}")
    return ts


class _ReverseProcessFrames:
    def __init__(self, trajectory, schedule, scale: int):
        ts = _check_image_trajectory(trajectory)
        self.s = schedule_of(schedule)
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
        self.grid = ImageGrid(
            self.B,
            3,
            self.xs.shape[2:],
            ["x_t", f"pred eps (-{EPS_RANGE:g}..{EPS_RANGE:g})", "pred x_0"],
            scale=scale,
        )
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
            "t": t,
            "alpha_bar": ab,
            "snr": ab / (1 - ab) if t > 0 else float("inf"),
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
        header = f"t = {t}: abar_t = {n['alpha_bar']:.4f}" + (
            f", SNR = {n['snr']:.3g}" if t > 0 else " (the samples)"
        )
        png = self.grid.png(rows, header=header, ranges=[(-1, 1), (-EPS_RANGE, EPS_RANGE), (-1, 1)])
        if t == 0:
            html = (
                f"<code>t = 0: the samples x_0 (no prediction is made at t = 0) | std of x_0 "
                f"{n['std_x_t']:.3f}</code>"
            )
        else:
            html = (
                f"<code>t = {t} | abar_t = {n['alpha_bar']:.4g}, SNR = {n['snr']:.3g} | std(x_t) = "
                f"{n['std_x_t']:.3f}, std(pred eps) = {n['std_eps']:.3f} | mean squared distance to the final "
                f"sample (t = {self.t_final}): pred x_0 {n['dist_x0_to_final']:.4f}, x_t "
                f"{n['dist_x_t_to_final']:.4f}</code>"
            )
        return png, html

    def __call__(self, t):
        tt = nearest(self.ts, int(t))
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
            tt = nearest(frames.ts, v)
            if tt not in ts:
                ts.append(tt)
    else:
        ts = [nearest(frames.ts, int(v)) for v in ts]
    if index is None:
        images = list(range(frames.B))
    else:
        if not 0 <= int(index) < frames.B:
            raise ValueError(f"index must be in 0..{frames.B - 1}, got {index}")
        images = [int(index)]
    kidx = [frames.ts.index(t) for t in ts]
    # one mosaic, one panel: rows x_t, pred eps, pred x_0 for each image; columns the timesteps
    sources = ((frames.xs, -1, 1), (frames.eps, -EPS_RANGE, EPS_RANGE), (frames.x0s, -1, 1))
    cells, row_labels = [], []
    names = (r"$x_t$", r"pred. $\epsilon$", r"pred. $x_0$")
    for b in images:
        for r, (arr, lo, hi) in enumerate(sources):
            cells.append(
                [to_pixels(arr[k, b], lo, hi) if np.isfinite(arr[k, b]).all() else None for k in kidx]
            )
            row_labels.append(names[r] + (f" ({b})" if len(images) > 1 and r == 0 else ""))
    return mosaic_still(
        cells,
        row_labels,
        [f"{t}" for t in ts],
        title=r"Reverse process (Algorithm 2): $x_t$, predicted noise, predicted $x_0$ as $t$ falls",
        cell_inches=0.62,
        note=r"columns: $t$; pred. $\epsilon$ shown from "
        + f"-{EPS_RANGE:g} (black) to +{EPS_RANGE:g} (white)",
    )


def reverse_process_explorer(
    trajectory=None,
    schedule=None,
    *,
    t: Optional[int] = None,
    static: bool = False,
    static_ts=None,
    index=None,
):
    """Scrub t through a stored sampling trajectory: for each image, x_t, the predicted noise
    eps_theta(x_t, t) and the predicted x_0 (DDPM Sec. 4.3, progressive generation).

    :param trajectory: a :class:`Trajectory` (x_t and pred_x0 of shape (K, B, C, H, W), original
        timesteps), a path to a trajectory file, or None for the shipped one (:func:`load_trajectory`).
    :param schedule: the sampler's :class:`NoiseSchedule` or GaussianDiffusion (default: linear, T = 1000),
        used to recover eps from x_t and pred_x0 (:func:`predicted_eps`).
    :param t: the slider's initial value (default: the largest recorded t), snapped to the nearest
        recorded t. The slider steps through the recorded t only (e.g. every 10th, then every step
        below 20), so each step shows a new state; ``box.set(t=...)`` takes any t and snaps it.
    :param static: return the still (a pyplot Figure, one mosaic: a few recorded t as columns) instead of the widget.
    :param static_ts, index: the static figure's timesteps (snapped to recorded ones) and image (default all).
    :return: an ``ExplorerBox`` with ``controls`` {"t": SelectionSlider}; ``box.static_figure()`` draws
        the static figure.
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
    controls = {"t": steps_slider(W, recorded, t0, "t")}
    box = explorer(
        "reverse_process_explorer",
        frames,
        controls,
        title=f"<b>Reverse process</b> (Algorithm 2, {len(frames.ts)} recorded states of a {T}-step "
        f"chain): move t from {T} down to 0",
    )
    box.static_figure = lambda ts=None, index=index: _static_reverse(frames, ts, index)
    box.frames = frames
    return box
