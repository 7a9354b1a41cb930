"""forward_explorer (chapters 01 and 03): scrub the forward process x_t = q_sample(x_0, t, eps), eps fixed
(DDPM Eq. 4), for a few images and 2-D points, beside the schedule's alpha_bar_t and SNR(t).

Built on :mod:`.framework` (cached frames, blitted redraws); the schedules are
:meth:`ddpm_lib.NoiseSchedule.named`, the noising :meth:`ddpm_lib.GaussianDiffusion.q_sample`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from ...diffusion import GaussianDiffusion
from ...schedules import NoiseSchedule
from .framework import FRAME_DPI, Blitter, default_images, explorer, new_figure, to_pixels, vary_titles

__all__ = ["forward_explorer"]

_LN2 = math.log(2.0)


class _ForwardDrawer:
    def __init__(self, images: torch.Tensor, points: torch.Tensor, seed: int, dpi: int):
        self.images = images.to(torch.float64)
        self.points = points.to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        self.img_noise = torch.randn(self.images.shape, generator=g, dtype=torch.float64)
        self.pt_noise = torch.randn(self.points.shape, generator=g, dtype=torch.float64)
        self.x0_sq = float((self.images**2).mean())
        self._sched_cache: OrderedDict = OrderedDict()
        n = self.images.shape[0]
        fig = self.fig = new_figure((9.0, 5.6), dpi)
        gs = fig.add_gridspec(
            2,
            max(n, 1) + 2,
            height_ratios=[1.0, 0.85],
            hspace=0.5,
            wspace=0.45,
            left=0.08,
            right=0.98,
            top=0.88,
            bottom=0.1,
        )
        self.img_artists = []
        for i in range(n):
            ax = fig.add_subplot(gs[0, i])
            # nearest: each 28 x 28 pixel is a block (and no smoothing pass per frame)
            self.img_artists.append(
                ax.imshow(
                    np.zeros(self.images.shape[2:]), cmap="gray", vmin=-1, vmax=1, interpolation="nearest"
                )
            )
            ax.set_axis_off()
        ax = self.ax_pts = fig.add_subplot(gs[0, n:])
        self.scatter = ax.scatter(
            self.points[:, 0], self.points[:, 1], s=1.5, alpha=0.5, c="C0", linewidths=0
        )
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=10)
        half = (n + 2) // 2
        self.ax_ab = fig.add_subplot(gs[1, :half])
        self.ax_snr = fig.add_subplot(gs[1, half:])
        (self.l_ab,) = self.ax_ab.plot([], [], c="C0")
        (self.m_ab,) = self.ax_ab.plot([], [], "o", c="C3", ms=5)
        self.ax_ab.set_ylim(-0.03, 1.03)
        self.ax_ab.set_ylabel(r"$\bar\alpha_t$", fontsize=10)
        (self.l_snr,) = self.ax_snr.plot([], [], c="C1")
        (self.m_snr,) = self.ax_snr.plot([], [], "o", c="C3", ms=5)
        self.ax_snr.set_yscale("log")
        self.ax_snr.set_ylabel(r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$", fontsize=10)
        for a in (self.ax_ab, self.ax_snr):
            a.set_xlabel(r"$t$", fontsize=10)
            a.tick_params(labelsize=10)
        self.suptitle = fig.suptitle("", fontsize=11)
        self.title_pts = ax.set_title("", fontsize=10)
        # the suptitle changes only with the schedule, so it is drawn with the static background; the one
        # text that changes with t is short and plain (no mathtext to parse per frame): text is the costly part
        self.blit = Blitter(fig, self.img_artists + [self.scatter, self.m_ab, self.m_snr, self.title_pts])
        self._layout = None

    def schedule(self, schedule, T, beta_1, beta_T):
        key = (schedule, T, round(beta_1, 12), round(beta_T, 12))
        if key not in self._sched_cache:
            # the cosine schedule has no beta_1, beta_T to set (its sliders are disabled)
            kw = {} if schedule == "cosine" else {"beta_start": beta_1, "beta_end": beta_T}
            s = NoiseSchedule.named(schedule, T=T, warn=False, **kw)
            self._sched_cache[key] = (s, GaussianDiffusion(s))
            while len(self._sched_cache) > 32:
                self._sched_cache.popitem(last=False)
        return self._sched_cache[key]

    def __call__(self, t, schedule, beta_1, beta_T, T):
        t = int(min(max(t, 1), T))
        s, d = self.schedule(schedule, T, beta_1, beta_T)
        n = self.images.shape[0]
        if n:
            xt = d.q_sample(self.images, torch.full((n,), t, dtype=torch.long), self.img_noise)
            for art, im in zip(self.img_artists, xt):
                art.set_data(im[0].clamp(-1, 1).numpy())
        pts = d.q_sample(self.points, torch.full((self.points.shape[0],), t, dtype=torch.long), self.pt_noise)
        self.scatter.set_offsets(pts.numpy())
        ts = np.arange(0, T + 1)
        ab = s.alpha_bars.numpy()
        snr = s.snr.numpy()
        layout = (schedule, T, round(beta_1, 12), round(beta_T, 12))
        if layout != self._layout:
            self.l_ab.set_data(ts, ab)
            self.l_snr.set_data(ts[1:], snr[1:])
            for a in (self.ax_ab, self.ax_snr):
                a.set_xlim(0, T)
            lo, hi = max(float(snr[1:].min()), 1e-12), float(snr[1:].max())
            self.ax_snr.set_ylim(lo / 2, hi * 2)
            self._layout = layout
        self.m_ab.set_data([t], [ab[t]])
        self.m_snr.set_data([t], [snr[t]])
        lt_bits = s.prior_kl(self.x0_sq) / _LN2
        abT = float(s.alpha_bars[-1])
        self.suptitle.set_text(
            f"{s.name} schedule, T = {T}, "
            + r"$\beta_1$"
            + f" = {float(s.betas[1]):.3g}, "
            + r"$\beta_T$"
            + f" = {float(s.betas[-1]):.3g}: "
            + r"$\bar\alpha_T$"
            + f" = {abT:.3g}, "
            + r"$L_T$"
            + f" = {lt_bits:.3g} bits/dim"
        )
        self.title_pts.set_text(f"x\u209c at t = {t}: \u1fb1\u209c = {ab[t]:.4f}")  # x_t, alpha-bar_t
        png = self.blit.frame(layout)
        warn = " &mdash; <b>x_T keeps signal</b>: increase T or beta_T" if abT > 1e-2 else ""
        html = (
            f"<code>{s.name}, T = {T}, beta_1 = {float(s.betas[1]):.3g}, beta_T = {float(s.betas[-1]):.3g}"
            f" | t = {t}: alpha_bar_t = {ab[t]:.4g}, SNR = {snr[t]:.3g}"
            f" | L_T = KL(q(x_T|x_0) || N(0, I)) = {lt_bits:.3g} bits/dim (alpha_bar_T = {abT:.3g})</code>{warn}"
        )
        return png, html


_NAMES = {"beta_1": r"$\beta_1$", "beta_T": r"$\beta_T$", "schedule": None}
MAX_STILL_SETTINGS = 6


def _forward_still(drawer: _ForwardDrawer, settings, titles):
    """The still: x_t of every image for each setting (one mosaic, a row per setting, at most 6), and
    alpha_bar_t of each schedule against t / T with a numbered mark at each setting's t and L_T in
    the legend. Two panels."""
    from ...viz import course_style, still_figure

    settings = list(settings)
    titles = vary_titles(settings, _NAMES) if titles is None else list(titles)
    if not 1 <= len(settings) <= MAX_STILL_SETTINGS:
        raise ValueError(f"the still shows 1 to {MAX_STILL_SETTINGS} settings, got {len(settings)}")
    n_img = max(drawer.images.shape[0], 1)
    H, W = drawer.images.shape[2:]
    rows, marks, curves = [], [], {}
    for st in settings:
        T = int(st["T"])
        t = int(min(max(int(st["t"]), 1), T))
        s, d = drawer.schedule(st["schedule"], T, float(st["beta_1"]), float(st["beta_T"]))
        xt = d.q_sample(
            drawer.images, torch.full((drawer.images.shape[0],), t, dtype=torch.long), drawer.img_noise
        )
        rows.append([to_pixels(im.clamp(-1, 1).numpy()) for im in xt])
        key = (s.name, T, float(s.betas[1]), float(s.betas[-1]))
        if key not in curves:
            lt = s.prior_kl(drawer.x0_sq) / _LN2
            curves[key] = (
                s,
                f"{s.name}, T = {T}, " + r"$\beta_T$" + f" = {float(s.betas[-1]):.3g}: "
                r"$L_T$" + f" = {lt:.2g} bits/dim",
            )
        marks.append((key, t, float(s.alpha_bars[t])))
    n = len(settings)
    cell, pad = 1.0, 2
    with course_style():
        fig = still_figure((9.8, max(cell * n + 1.9, 3.6)), layout="constrained")
        a_img, a_ab = fig.subplots(1, 2, width_ratios=[n_img * cell + 1.6, 3.6])
        mosaic = np.full((n * (H + pad) + pad, n_img * (W + pad) + pad, 3), 255, np.uint8)
        for i, row in enumerate(rows):
            for j, a in enumerate(row):
                y, x = pad + i * (H + pad), pad + j * (W + pad)
                mosaic[y : y + H, x : x + W] = a
        a_img.imshow(mosaic, interpolation="nearest")
        a_img.set_yticks([pad + i * (H + pad) + H / 2 for i in range(n)])
        a_img.set_yticklabels(
            [
                f"{i + 1}: {title}\n" + r"$\bar\alpha_t$" + f" = {ab:.3g}"
                for i, (title, (_, _, ab)) in enumerate(zip(titles, marks))
            ]
        )
        a_img.set_xticks([])
        a_img.tick_params(length=0)
        for sp in a_img.spines.values():
            sp.set_visible(False)
        a_img.set_title(r"$x_t$ ($\epsilon$ fixed)")
        colors = {}
        for j, (key, (s, label)) in enumerate(curves.items()):
            colors[key] = f"C{j}"
            a_ab.plot(np.arange(0, s.T + 1) / s.T, s.alpha_bars.numpy(), c=colors[key], label=label)
        for i, (key, t, ab) in enumerate(marks):
            a_ab.plot([t / key[1]], [ab], "o", c=colors[key], ms=7, mec="k", mew=0.6)
            a_ab.annotate(str(i + 1), (t / key[1], ab), xytext=(6, 3), textcoords="offset points")
        a_ab.set(xlim=(0, 1.08), ylim=(-0.03, 1.05), xlabel=r"$t / T$", ylabel=r"$\bar\alpha_t$")
        a_ab.set_title(r"$\bar\alpha_t$ of each schedule; dots: the rows")
        a_ab.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        fig.suptitle(
            r"Forward process: $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$"
        )
    return fig


def forward_explorer(
    images=None,
    points=None,
    *,
    n_images: int = 4,
    n_points: int = 1000,
    T: int = 1000,
    schedule: str = "linear",
    beta_1: float = 1e-4,
    beta_T: float = 0.02,
    t: int | None = None,
    seed: int = 0,
    dpi: int = FRAME_DPI,
    static: bool = False,
):
    """Scrub the forward process: x_t = q_sample(x_0, t, eps) with eps fixed (DDPM Eq. 4).

    Shows x_t for a few images and for 2-D points, beside the schedule's alpha_bar_t and SNR(t)
    (log scale) with a marker at t, and prints L_T = KL(q(x_T|x_0) || N(0, I)) in bits/dim
    (``NoiseSchedule.prior_kl`` with the images' E[x_0^2]).

    :param images: an (N, C, H, W) tensor in [-1, 1] (C = 1); default: ``n_images`` Fashion-MNIST test
        images of different classes.
    :param points: an (M, 2) tensor; default: ``n_points`` swiss-roll points (seeded).
    :param T, schedule, beta_1, beta_T, t: the controls' initial values (t defaults to T // 4).
    :param seed: seeds the points and the fixed noise.
    :param static: return the still (a pyplot Figure of a few settings) instead of the widget.
    :return: an ``ExplorerBox`` with ``controls`` t, schedule, beta_1, beta_T, T (see the module doc);
        its ``static_figure(settings)`` draws the still of up to 6 settings: x_t of the images in one
        mosaic (a row per setting) beside alpha_bar_t of each schedule with a mark at each t.
    """
    from ...data import swiss_roll

    if images is None:
        images = default_images(n_images)
    images = torch.as_tensor(images, dtype=torch.float64)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    if points is None:
        points = swiss_roll(n_points, generator=torch.Generator().manual_seed(seed))
    points = torch.as_tensor(points, dtype=torch.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape (M, 2), got {tuple(points.shape)}")
    t = T // 4 if t is None else t
    drawer = _ForwardDrawer(images, points, seed, dpi)
    settings = [
        dict(t=tt, schedule=schedule, beta_1=beta_1, beta_T=beta_T, T=T)
        for tt in sorted({max(1, T // 20), T // 4, T // 2, T})
    ]
    if static:
        return _forward_still(drawer, settings, None)

    import ipywidgets as W

    style = {"description_width": "initial"}
    controls = {
        "t": W.IntSlider(
            value=t, min=1, max=T, description="t", continuous_update=True, layout=W.Layout(width="420px")
        ),
        "schedule": W.Dropdown(
            options=["linear", "cosine", "quadratic"], value=schedule, description="schedule"
        ),
        "beta_1": W.FloatLogSlider(
            value=beta_1,
            base=10,
            min=-5,
            max=-2,
            step=0.25,
            description="beta_1",
            continuous_update=False,
            readout_format=".2g",
            style=style,
        ),
        "beta_T": W.FloatLogSlider(
            value=beta_T,
            base=10,
            min=-3,
            max=-0.5,
            step=0.125,
            description="beta_T",
            continuous_update=False,
            readout_format=".3g",
            style=style,
        ),
        "T": W.Dropdown(options=sorted({10, 50, 100, 250, 500, 1000, 2000, T}), value=T, description="T"),
    }

    def on_change(ex, name, value):
        if name == "T":
            c = ex.controls["t"]
            old_max = c.max
            frac = c.value / old_max
            c.max = value
            c.value = max(1, min(value, round(frac * value)))
        if name == "schedule":
            for k in ("beta_1", "beta_T"):
                ex.controls[k].disabled = value == "cosine"

    controls["beta_1"].disabled = controls["beta_T"].disabled = schedule == "cosine"
    return explorer(
        "forward_explorer",
        drawer,
        controls,
        on_change=on_change,
        static_settings=settings,
        still=lambda full, titles: _forward_still(drawer, full, titles),
        title="<b>Forward process</b>: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eps fixed",
    )
