"""The course's ipywidgets, reusable in homework.

Three explorers, each a function that returns an ipywidgets container (an ``ExplorerBox``, a
``VBox``):

    forward_explorer(images=None, points=None)   # chapters 01, 03: x_t = q_sample(x_0, t, eps), schedules
    reverse_kernel_explorer()                    # chapter 02: the true reverse kernel q(x^{t-1}|x^t), 1-D
    posterior_explorer()                         # chapter 04: q(x_{t-1}|x_t, x_0) = N(mu~_t, beta~_t)

With ``static=True`` each returns a matplotlib Figure instead, a few representative settings
side by side (for a static page, or a machine with no front end).

How they stay fast: every picture is a PNG drawn by one persistent matplotlib figure whose
artists are updated in place, then cached by the controls' values, and shown in a
``widgets.Image``; moving a slider back to a value seen before costs a dictionary lookup.
The content is deterministic: noise and samples come from seeded generators and stay fixed,
so only the controls change the picture.

The returned box has, for tests and homework:

    box.controls      dict name -> control widget (set ``.value`` to move it)
    box.image         the ``widgets.Image`` showing the current picture (``.value`` is PNG bytes)
    box.readout       a ``widgets.HTML`` line with the numbers for the current setting
    box.png           the current picture, PNG bytes (same as ``box.image.value``)
    box.set(**values) set several controls at once (one redraw)
    box.render(**values) the PNG for a setting, without touching the controls (cached)
    box.static_figure() a matplotlib Figure of a few settings side by side

Shown where no widget front end runs (nbconvert, GitHub), the box falls back to its current
picture: its display bundle carries an ``image/png`` beside the widget view.

ipywidgets is imported only inside these functions: ``import ddpm_lib`` works without it.
The pure computations behind ``reverse_kernel_explorer`` are plain functions:
:func:`true_reverse_kernel`, :func:`gaussian_reverse_kernel`, :func:`moment_match`,
:func:`kernel_kl_to_gaussian`.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "forward_explorer",
    "reverse_kernel_explorer",
    "posterior_explorer",
    "true_reverse_kernel",
    "gaussian_reverse_kernel",
    "moment_match",
    "kernel_kl_to_gaussian",
    "Explorer",
]

DEFAULT_MIXTURE = {"means": (-1.2, 0.2, 1.4), "stds": (0.25, 0.2, 0.3), "weights": (0.3, 0.3, 0.4)}
_LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------
# The true reverse kernel of a 1-D mixture (Sohl-Dickstein et al. 2015, Sec. 2.2)
# ----------------------------------------------------------------------------------------------


def _as_grid(grid) -> torch.Tensor:
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.ndim != 1 or g.numel() < 3:
        raise ValueError(f"grid must be a 1-D array of at least 3 points, got shape {tuple(g.shape)}")
    if not bool((g[1:] > g[:-1]).all()):
        raise ValueError("grid must be strictly increasing")
    return g


def _like(out: torch.Tensor, grid):
    return out if isinstance(grid, torch.Tensor) else out.numpy()


def true_reverse_kernel(grid, x_t: float, beta: float, means=DEFAULT_MIXTURE["means"],
                        stds=DEFAULT_MIXTURE["stds"], weights=DEFAULT_MIXTURE["weights"]):
    """The true reverse kernel q(x^{t-1} | x^t) on a grid, by Bayes' rule.

        q(x^{t-1} | x^t) = q(x^t | x^{t-1}) q(x^{t-1}) / q(x^t),
        q(x^t | x^{t-1}) = N(x^t; sqrt(1 - beta) x^{t-1}, beta),

    with q(x^{t-1}) the 1-D Gaussian mixture (means, stds, weights), evaluated at every grid
    point and normalized so that its trapezoid-rule integral over the grid is 1 (the grid must
    cover the kernel's mass).

    :param grid: increasing values of x^{t-1} (array or tensor).
    :param x_t: the value x^t conditioned on.
    :param beta: the step's variance beta_t in (0, 1).
    :return: the density on the grid, float64, a tensor if ``grid`` is one, else a numpy array.
    """
    from ...data import gaussian_mixture_log_prob

    if not 0 < beta < 1:
        raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
    g = _as_grid(grid)
    log_prior = gaussian_mixture_log_prob(g, means=torch.as_tensor(means, dtype=torch.float64).reshape(-1, 1),
                                          stds=stds, weights=weights)
    log_lik = -0.5 * (x_t - math.sqrt(1 - beta) * g) ** 2 / beta
    logp = log_prior + log_lik
    p = torch.exp(logp - logp.max())
    z = torch.trapezoid(p, g)
    return _like(p / z, grid)


def gaussian_reverse_kernel(x_t: float, beta: float, mean: float, std: float) -> tuple[float, float]:
    """The reverse kernel in closed form when q(x^{t-1}) = N(mean, std^2): it is Gaussian,
    N(m, v) with 1 / v = 1 / std^2 + (1 - beta) / beta and m = v (mean / std^2 + sqrt(1 - beta) x_t / beta).

    :return: (m, v), the kernel's mean and variance.
    """
    if not 0 < beta < 1:
        raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
    v = 1.0 / (1.0 / std**2 + (1 - beta) / beta)
    m = v * (mean / std**2 + math.sqrt(1 - beta) * x_t / beta)
    return m, v


def moment_match(grid, density) -> tuple[float, float]:
    """The mean and variance of a density given on a grid (trapezoid rule)."""
    g = _as_grid(grid)
    p = torch.as_tensor(density, dtype=torch.float64)
    z = torch.trapezoid(p, g)
    m = torch.trapezoid(p * g, g) / z
    v = torch.trapezoid(p * (g - m) ** 2, g) / z
    return float(m), float(v)


def kernel_kl_to_gaussian(grid, density) -> float:
    """KL(p || N(m, v)) in nats on the grid, where N(m, v) has p's mean and variance: 0 for a
    Gaussian p, larger the further p is from one (the non-Gaussianity of a reverse kernel)."""
    g = _as_grid(grid)
    p = torch.as_tensor(density, dtype=torch.float64)
    p = p / torch.trapezoid(p, g)
    m, v = moment_match(g, p)
    log_q = -0.5 * (g - m) ** 2 / v - 0.5 * math.log(2 * math.pi * v)
    safe = torch.where(p > 0, p, torch.ones_like(p))
    integrand = torch.where(p > 0, p * (torch.log(safe) - log_q), torch.zeros_like(p))
    return max(float(torch.trapezoid(integrand, g)), 0.0)


def _mixture_pdf(x: np.ndarray, means, stds, weights, scale: float = 1.0, extra_var: float = 0.0) -> np.ndarray:
    """Density of sum_k w_k N(scale * m_k, scale^2 s_k^2 + extra_var) at x (numpy)."""
    m = np.asarray(means, dtype=np.float64)[None] * scale
    v = (np.asarray(stds, dtype=np.float64)[None] * scale) ** 2 + extra_var
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    return (w * np.exp(-0.5 * (x[:, None] - m) ** 2 / v) / np.sqrt(2 * math.pi * v)).sum(1)


def _gauss_pdf(x, m, v):
    return np.exp(-0.5 * (x - m) ** 2 / v) / math.sqrt(2 * math.pi * v)


# ----------------------------------------------------------------------------------------------
# The explorer: controls -> cached PNG frames in a widgets.Image
# ----------------------------------------------------------------------------------------------


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.canvas.print_png(buf)
    return buf.getvalue()


def _canvas_png(fig) -> bytes:
    """The Agg canvas as it stands (no redraw), as an RGB PNG with fast compression."""
    from PIL import Image

    w, h = fig.canvas.get_width_height()
    im = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="png", compress_level=1)
    return buf.getvalue()


class Blitter:
    """Draws a figure's static part once per layout (axes, ticks, labels, fixed curves) and
    then only its animated artists per frame: about 50 ms a frame instead of 250 ms."""

    def __init__(self, fig, animated):
        self.fig = fig
        self.animated = list(animated)
        for a in self.animated:
            a.set_animated(True)
        self._layout = object()
        self._bg = None

    def frame(self, layout_key=None) -> bytes:
        canvas = self.fig.canvas
        if self._bg is None or layout_key != self._layout:
            canvas.draw()  # animated artists are left out of a full draw
            self._bg = canvas.copy_from_bbox(self.fig.bbox)
            self._layout = layout_key
        canvas.restore_region(self._bg)
        for a in self.animated:
            self.fig.draw_artist(a)
        return _canvas_png(self.fig)


def _new_figure(figsize, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _key(values: dict) -> tuple:
    return tuple((k, round(v, 12) if isinstance(v, float) else v) for k, v in sorted(values.items()))


class Explorer:
    """Turns a drawing function into a cached widget.

    :param draw: ``draw(**values) -> (png_bytes, readout_html)`` for one setting of the controls.
    :param controls: an ordered dict name -> ipywidgets control (its ``.value`` is passed to draw).
    :param title: an HTML line above the controls.
    :param cache_size: how many frames to keep (least recently used are dropped).
    :param on_change: optional ``on_change(explorer, name, value)`` called before a redraw
        (to adjust other controls, e.g. a slider's range).
    """

    def __init__(self, draw: Callable, controls: dict, title: str = "", cache_size: int = 512,
                 on_change: Callable | None = None, static_settings: Sequence[dict] = ()):
        import ipywidgets as W

        self._draw = draw
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = int(cache_size)
        self.controls = dict(controls)
        self.on_change = on_change
        self.static_settings = list(static_settings)
        self._hold = False
        png, html = self.render_full(**self.values())
        self.image = W.Image(value=png, format="png", layout=W.Layout(max_width="100%"))
        self.readout = W.HTML(value=html)
        rows = [W.HTML(value=title)] if title else []
        rows += [W.HBox(list(self.controls.values())[i:i + 3]) for i in range(0, len(self.controls), 3)]
        rows += [self.readout, self.image]
        self.box = _box_class()(children=rows)
        self.box.explorer = self
        self.box.controls = self.controls
        self.box.image = self.image
        self.box.readout = self.readout
        self.box.set = self.set
        self.box.render = self.render
        self.box.static_figure = self.static_figure
        for name, c in self.controls.items():
            c.observe(self._observer(name), names="value")

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def render_full(self, **values) -> tuple[bytes, str]:
        key = _key(values)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._draw(**values)
            self._cache[key] = hit
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit

    def render(self, **values) -> bytes:
        """The PNG for a setting (missing names take the controls' current values)."""
        return self.render_full(**{**self.values(), **values})[0]

    @property
    def png(self) -> bytes:
        return self.image.value

    def refresh(self) -> None:
        png, html = self.render_full(**self.values())
        if self.image.value != png:
            self.image.value = png
        if self.readout.value != html:
            self.readout.value = html

    def set(self, **values) -> None:
        """Set several controls, then redraw once. A number given to a selection control whose
        options are numbers (a slider over recorded t) snaps to the nearest option."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise KeyError(f"unknown controls {sorted(unknown)}; known: {sorted(self.controls)}")
        self._hold = True
        try:
            for k, v in values.items():
                self.controls[k].value = _snap_to_option(self.controls[k], v)
        finally:
            self._hold = False
        self.refresh()

    def _observer(self, name):
        def cb(change):
            if self.on_change is not None:
                held, self._hold = self._hold, True
                try:
                    self.on_change(self, name, change["new"])
                finally:
                    self._hold = held
            if not self._hold:
                self.refresh()

        return cb

    def static_figure(self, settings: Sequence[dict] | None = None, titles: Sequence[str] | None = None):
        """A matplotlib Figure of the frames for a few settings (default: the widget's
        representative ones), stacked top to bottom."""
        settings = list(settings if settings is not None else self.static_settings) or [self.values()]
        return _static_only(lambda **s: (self.render(**s), ""), settings, titles)


def _snap_to_option(control, v):
    """v, or the nearest of a selection control's numeric option values (ties go to the larger)."""
    options = getattr(control, "options", None)
    if not options or isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    vals = [o[1] if isinstance(o, tuple) else o for o in options]
    if v in vals or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in vals):
        return v
    return min(vals, key=lambda a: (abs(a - v), -a))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


_BOX = None


def _box_class():
    """``ExplorerBox``: a VBox whose display bundle also carries its current picture as PNG,
    shown where no widget front end runs."""
    global _BOX
    if _BOX is None:
        import ipywidgets as W

        class ExplorerBox(W.VBox):
            @property
            def png(self) -> bytes:
                return self.image.value

            def __repr__(self):
                return f"<{self.explorer.name} widget; controls: {', '.join(self.controls)}>"

            def _repr_mimebundle_(self, **kwargs):
                data = super()._repr_mimebundle_(**kwargs)
                data["text/plain"] = repr(self)
                data["image/png"] = base64.b64encode(self.image.value).decode("ascii")
                return data

            def _repr_png_(self):
                return self.image.value

        _BOX = ExplorerBox
    return _BOX


def _explorer(name, draw, controls, **kw):
    ex = Explorer(draw, controls, **kw)
    ex.name = name
    return ex.box


# ----------------------------------------------------------------------------------------------
# 1. forward_explorer (chapters 01 and 03)
# ----------------------------------------------------------------------------------------------


def _synthetic_images(n: int) -> torch.Tensor:
    """Four simple 28 x 28 shapes in [-1, 1], used only when Fashion-MNIST is not found."""
    y, x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    shapes = [((x - 13.5) ** 2 + (y - 13.5) ** 2 < 90), ((x > 6) & (x < 21) & (y > 6) & (y < 21)),
              ((x.long() // 4) % 2 == 0), ((x - y).abs() < 3) | ((x + y - 27).abs() < 3)]
    imgs = torch.stack([shapes[i % 4].float() * 2 - 1 for i in range(n)])
    return imgs[:, None]


def _default_images(n: int = 4) -> torch.Tensor:
    from ...data import fashion_mnist

    try:
        images, labels = fashion_mnist("test", download=False)
    except (FileNotFoundError, OSError, ValueError) as e:
        warnings.warn(f"Fashion-MNIST test images not found ({e}); forward_explorer shows simple shapes instead",
                      stacklevel=3)
        return _synthetic_images(n)
    # one image of each of the first n classes, the first of each in the test set: deterministic
    idx = [int((labels == c).nonzero()[0]) for c in (9, 2, 1, 8, 0, 3, 4, 5, 6, 7)[:n]]
    return images[idx]


def _make_schedule(schedule: str, T: int, beta_1: float, beta_T: float):
    from ...schedules import NoiseSchedule

    if schedule == "cosine":
        return NoiseSchedule.cosine(T=T, warn=False)
    if schedule == "quadratic":
        return NoiseSchedule.quadratic(T=T, beta_start=beta_1, beta_end=beta_T, warn=False)
    if schedule == "linear":
        return NoiseSchedule.linear(T=T, beta_start=beta_1, beta_end=beta_T, warn=False)
    raise ValueError(f"schedule must be linear, cosine or quadratic, got {schedule!r}")


class _ForwardDrawer:
    def __init__(self, images: torch.Tensor, points: torch.Tensor, seed: int, dpi: int):
        from ...diffusion import GaussianDiffusion

        self._GD = GaussianDiffusion
        self.images = images.to(torch.float64)
        self.points = points.to(torch.float64)
        g = torch.Generator().manual_seed(seed)
        self.img_noise = torch.randn(self.images.shape, generator=g, dtype=torch.float64)
        self.pt_noise = torch.randn(self.points.shape, generator=g, dtype=torch.float64)
        self.x0_sq = float((self.images ** 2).mean())
        self._sched_cache: OrderedDict = OrderedDict()
        n = self.images.shape[0]
        fig = self.fig = _new_figure((9.0, 5.2), dpi)
        gs = fig.add_gridspec(2, max(n, 1) + 2, height_ratios=[1.0, 0.85], hspace=0.45, wspace=0.35,
                              left=0.06, right=0.98, top=0.88, bottom=0.1)
        self.img_artists = []
        for i in range(n):
            ax = fig.add_subplot(gs[0, i])
            # nearest: each 28 x 28 pixel is a block (and no smoothing pass per frame)
            self.img_artists.append(ax.imshow(np.zeros(self.images.shape[2:]), cmap="gray", vmin=-1, vmax=1,
                                              interpolation="nearest"))
            ax.set_axis_off()
        ax = self.ax_pts = fig.add_subplot(gs[0, n:])
        self.scatter = ax.scatter(self.points[:, 0], self.points[:, 1], s=1.5, alpha=0.5, c="C0", linewidths=0)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        half = (n + 2) // 2
        self.ax_ab = fig.add_subplot(gs[1, :half])
        self.ax_snr = fig.add_subplot(gs[1, half:])
        (self.l_ab,) = self.ax_ab.plot([], [], c="C0")
        (self.m_ab,) = self.ax_ab.plot([], [], "o", c="C3", ms=5)
        self.ax_ab.set_ylim(-0.03, 1.03)
        self.ax_ab.set_title(r"$\bar\alpha_t$", fontsize=9)
        (self.l_snr,) = self.ax_snr.plot([], [], c="C1")
        (self.m_snr,) = self.ax_snr.plot([], [], "o", c="C3", ms=5)
        self.ax_snr.set_yscale("log")
        self.ax_snr.set_title(r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$", fontsize=9)
        for a in (self.ax_ab, self.ax_snr):
            a.set_xlabel("t", fontsize=8)
            a.tick_params(labelsize=7)
        self.suptitle = fig.suptitle("", fontsize=10)
        self.title_pts = ax.set_title("", fontsize=9)
        # the suptitle changes only with the schedule, so it is drawn with the static background; the one
        # text that changes with t is short and plain (no mathtext to parse per frame): text is the costly part
        self.blit = Blitter(fig, self.img_artists + [self.scatter, self.m_ab, self.m_snr, self.title_pts])
        self._layout = None

    def schedule(self, schedule, T, beta_1, beta_T):
        key = (schedule, T, round(beta_1, 12), round(beta_T, 12))
        if key not in self._sched_cache:
            s = _make_schedule(schedule, T, beta_1, beta_T)
            self._sched_cache[key] = (s, self._GD(s))
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
            f"{s.name} schedule, T = {T}, " + r"$\beta_1$" + f" = {float(s.betas[1]):.3g}, " + r"$\beta_T$"
            + f" = {float(s.betas[-1]):.3g}: " + r"$\bar\alpha_T$" + f" = {abT:.3g}, "
            + r"$L_T$" + f" = {lt_bits:.3g} bits/dim")
        self.title_pts.set_text(f"x\u209c at t = {t}: \u1fb1\u209c = {ab[t]:.4f}")  # x_t, alpha-bar_t
        png = self.blit.frame(layout)
        warn = " &mdash; <b>x_T keeps signal</b>: increase T or beta_T" if abT > 1e-2 else ""
        html = (f"<code>{s.name}, T = {T}, beta_1 = {float(s.betas[1]):.3g}, beta_T = {float(s.betas[-1]):.3g}"
                f" | t = {t}: alpha_bar_t = {ab[t]:.4g}, SNR = {snr[t]:.3g}"
                f" | L_T = KL(q(x_T|x_0) || N(0, I)) = {lt_bits:.3g} bits/dim (alpha_bar_T = {abT:.3g})</code>{warn}")
        return png, html


def forward_explorer(images=None, points=None, *, n_images: int = 4, n_points: int = 1000, T: int = 1000,
                     schedule: str = "linear", beta_1: float = 1e-4, beta_T: float = 0.02, t: int | None = None,
                     seed: int = 0, dpi: int = 72, static: bool = False):
    """Scrub the forward process: x_t = q_sample(x_0, t, eps) with eps fixed (DDPM Eq. 4).

    Shows x_t for a few images and for 2-D points, beside the schedule's alpha_bar_t and SNR(t)
    (log scale) with a marker at t, and prints L_T = KL(q(x_T|x_0) || N(0, I)) in bits/dim
    (``NoiseSchedule.prior_kl`` with the images' E[x_0^2]).

    :param images: an (N, C, H, W) tensor in [-1, 1] (C = 1); default: ``n_images`` Fashion-MNIST test
        images of different classes.
    :param points: an (M, 2) tensor; default: ``n_points`` swiss-roll points (seeded).
    :param T, schedule, beta_1, beta_T, t: the controls' initial values (t defaults to T // 4).
    :param seed: seeds the points and the fixed noise.
    :param static: return a matplotlib Figure of a few settings instead of the widget.
    :return: an ``ExplorerBox`` with ``controls`` t, schedule, beta_1, beta_T, T (see the module doc).
    """
    from ...data import swiss_roll

    if images is None:
        images = _default_images(n_images)
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
    settings = [dict(t=tt, schedule=schedule, beta_1=beta_1, beta_T=beta_T, T=T)
                for tt in sorted({max(1, T // 20), T // 4, T // 2, T})]
    if static:
        return _static_only(drawer, settings)

    import ipywidgets as W

    style = {"description_width": "initial"}
    controls = {
        "t": W.IntSlider(value=t, min=1, max=T, description="t", continuous_update=True,
                         layout=W.Layout(width="420px")),
        "schedule": W.Dropdown(options=["linear", "cosine", "quadratic"], value=schedule, description="schedule"),
        "beta_1": W.FloatLogSlider(value=beta_1, base=10, min=-5, max=-2, step=0.25, description="beta_1",
                                   continuous_update=False, readout_format=".2g", style=style),
        "beta_T": W.FloatLogSlider(value=beta_T, base=10, min=-3, max=-0.5, step=0.125, description="beta_T",
                                   continuous_update=False, readout_format=".3g", style=style),
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
    return _explorer("forward_explorer", drawer, controls, on_change=on_change, static_settings=settings,
                     title="<b>Forward process</b>: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, "
                           "eps fixed")


def _static_only(drawer, settings, titles=None):
    """The static figure without ipywidgets: frames drawn by ``drawer`` stacked vertically."""
    import matplotlib.image as mpimg

    frames = [mpimg.imread(io.BytesIO(drawer(**s)[0]), format="png") for s in settings]
    h = sum(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    fig = _new_figure((w / 80, h / 80 + 0.3 * len(frames)), 80)
    for i, (f, s) in enumerate(zip(frames, settings)):
        ax = fig.add_subplot(len(frames), 1, i + 1)
        ax.imshow(f)
        ax.set_axis_off()
        ax.set_title(titles[i] if titles else ", ".join(f"{k} = {_fmt(v)}" for k, v in s.items()), fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# 2. reverse_kernel_explorer (chapter 02)
# ----------------------------------------------------------------------------------------------


class _ReverseDrawer:
    """Kernels are drawn standardized, z = (x^{t-1} - m) / s with m, s^2 the kernel's mean and
    variance, so the moment-matched Gaussian is always N(0, 1) and the axes never move.

    Speed: text is most of a frame's cost, so every fixed word (titles, x^t) is drawn once into the
    blitted background and only the numbers are redrawn. Frames for the slider's own values
    10**(lo + k step) (``log_grid = (lo, step, n)``) are drawn at exactly those values and kept by k,
    so a frame is the same whichever thread drew it; a lock serializes drawing on the one figure,
    which lets :func:`_prefetch_in_background` fill the cache while the user reads."""

    ZMAX, YMAX = 4.5, 1.0
    CACHE_SIZE = 256

    def __init__(self, x_ts, means, stds, weights, grid, dpi, log_grid=None):
        import threading

        self._lock = threading.Lock()
        self._frames: OrderedDict = OrderedDict()
        self._waiting = 0  # foreground requests waiting for the lock: the prefetch gives way to them
        self.log_grid = log_grid
        self.x_ts = [float(x) for x in x_ts]
        self.means, self.stds, self.weights = means, stds, weights
        self.grid = np.asarray(grid, dtype=np.float64)
        k = len(self.x_ts)
        fig = self.fig = _new_figure((2.5 * (k + 1), 3.2), dpi)
        axes = fig.subplots(1, k + 1)
        fig.subplots_adjust(left=0.03, right=0.99, top=0.74, bottom=0.16, wspace=0.2)
        self.ax0 = axes[0]
        g = self.grid
        prior = _mixture_pdf(g, means, stds, weights)
        self.ax0.plot(g, prior, c="C0", label="q(x^{t-1})")
        (self.l_marg,) = self.ax0.plot(g, g * 0, c="C1", label="q(x^t)")
        for i, x in enumerate(self.x_ts):
            self.ax0.axvline(x, c=f"C{i + 2}", ls=":", lw=1.2)
        pad = 3.5 * float(np.max(stds)) + 1
        lo, hi = float(np.min(means)) - pad, float(np.max(means)) + pad
        self.ax0.set_xlim(max(lo, g[0]), min(hi, g[-1]))
        self.ax0.set_ylim(0, 1.15 * float(prior.max()))
        self.ax0.legend(fontsize=7, loc="upper left")
        self.ax0.set_title("q(x^{t-1}), q(x^t); dotted: x^t", fontsize=8)
        self.ax0.set_yticks([])
        self.ax0.tick_params(labelsize=7)
        self.z = np.linspace(-self.ZMAX, self.ZMAX, 801)
        self.lines, self.titles = [], []
        for i, (ax, x) in enumerate(zip(axes[1:], self.x_ts)):
            ax.plot(self.z, _gauss_pdf(self.z, 0.0, 1.0), c="k", ls="--", lw=1, label="Gaussian, same mean/var")
            (lt,) = ax.plot(self.z, self.z * 0, c=f"C{i + 2}", lw=2, label="true kernel")
            ax.set_xlim(-self.ZMAX, self.ZMAX)
            ax.set_ylim(0, self.YMAX)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            ax.set_xlabel("(x^{t-1} - mean) / sd", fontsize=7)
            ax.set_title(f"x^t = {x:+.2f}", fontsize=8, pad=13)  # fixed: drawn once, in the background
            self.titles.append(ax.text(0.5, 1.015, "", transform=ax.transAxes, ha="center", va="bottom",
                                       fontsize=7))  # the numbers, redrawn per frame
            self.lines.append(lt)
        axes[1].legend(fontsize=6, loc="upper right", framealpha=0.6)
        fig.text(0.5, 0.985, "true reverse kernel q(x^(t-1) | x^t) vs its moment-matched Gaussian:",
                 ha="right", va="top", fontsize=10)
        self.suptitle = fig.text(0.505, 0.985, "", ha="left", va="top", fontsize=10)
        self.blit = Blitter(fig, [self.l_marg, *self.lines, *self.titles, self.suptitle])

    def compute(self, beta):
        out = []
        for x in self.x_ts:
            p = true_reverse_kernel(self.grid, x, beta, self.means, self.stds, self.weights)
            m, v = moment_match(self.grid, p)
            kl = kernel_kl_to_gaussian(self.grid, p)
            out.append((x, p, m, v, kl))
        return out

    def _snap(self, beta):
        """(the value to draw, the cache key): a slider value 10**(lo + k step) becomes exactly that, key k."""
        if self.log_grid is not None and beta > 0:
            lo, step, n = self.log_grid
            e = math.log10(beta)
            k = round((e - lo) / step)
            if 0 <= k < n and abs(e - (lo + k * step)) < 1e-9:
                return 10.0 ** (lo + k * step), ("k", k)
        return beta, ("beta", round(beta, 12))

    def __call__(self, beta):
        """(png, readout html) for beta, drawn now unless cached (the foreground: a slider step)."""
        beta, key = self._snap(float(beta))
        hit = self._frames.get(key)
        if hit is None:
            self._waiting += 1
            try:
                hit = self._get_or_draw(beta, key)
            finally:
                self._waiting -= 1
        return hit

    def prefetch(self, beta) -> None:
        """Draw and cache the frame for beta if it is not cached, after any waiting foreground request."""
        import time

        while self._waiting:
            time.sleep(0.002)
        beta, key = self._snap(float(beta))
        if key not in self._frames:
            self._get_or_draw(beta, key)

    def _get_or_draw(self, beta, key):
        with self._lock:
            hit = self._frames.get(key)  # another thread may have drawn it while we waited
            if hit is None:
                hit = self._frames[key] = self._draw(beta)
                while len(self._frames) > self.CACHE_SIZE:
                    self._frames.popitem(last=False)
            return hit

    def _draw(self, beta):
        g = self.grid
        self.l_marg.set_ydata(_mixture_pdf(g, self.means, self.stds, self.weights, math.sqrt(1 - beta), beta))
        res = self.compute(beta)
        for lt, title, (x, p, m, v, kl) in zip(self.lines, self.titles, res):
            sd = math.sqrt(v)
            lt.set_ydata(np.interp(m + sd * self.z, g, p, left=0.0, right=0.0) * sd)
            title.set_text(f"KL = {kl:.2g} nats, mean {m:+.2f}, sd {sd:.2g}")
        worst = max(r[4] for r in res)
        self.suptitle.set_text(f"beta = {beta:.3g}, largest KL = {worst:.2g} nats")
        html = "<code>beta = {:.3g} | ".format(beta) + " | ".join(
            f"x^t = {x:+.2f}: mean {m:+.3f}, var {v:.3g}, KL(true || Gaussian) = {kl:.3g} nats"
            for x, _, m, v, kl in res) + "</code>"
        return self.blit.frame(), html


def reverse_kernel_explorer(*, means=DEFAULT_MIXTURE["means"], stds=DEFAULT_MIXTURE["stds"],
                            weights=DEFAULT_MIXTURE["weights"], x_ts=(-1.0, 0.3, 1.2), beta: float = 0.01,
                            grid=None, dpi: int = 72, static: bool = False):
    """The true reverse kernel q(x^{t-1} | x^t) of one forward step on a 1-D mixture, against the
    Gaussian with its mean and variance, as beta grows (Sohl-Dickstein et al. 2015, Sec. 2.2):
    near-Gaussian for small beta, clearly not for large beta. Each panel's title gives
    KL(true || moment-matched Gaussian) in nats (:func:`kernel_kl_to_gaussian`).

    :param means, stds, weights: the mixture q(x^{t-1}).
    :param x_ts: the values of x^t conditioned on (one panel each).
    :param beta: the slider's initial value.
    :param grid: the grid of x^{t-1} (default: 4001 points on [-5, 5]).
    :param static: return a matplotlib Figure for beta = 0.001, 0.05, 0.5 instead.
    :return: an ``ExplorerBox`` with ``controls`` {"beta": FloatLogSlider}.
    """
    grid = np.linspace(-5, 5, 4001) if grid is None else np.asarray(grid, dtype=np.float64)
    lo, hi, step = -3.0, math.log10(0.95), 0.05  # the slider: beta = 10**e, e from lo to hi in steps of step
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    drawer = _ReverseDrawer(x_ts, means, stds, weights, grid, dpi, log_grid=(lo, step, n))
    settings = [dict(beta=b) for b in (0.001, 0.05, 0.5)]
    if static:
        return _static_only(drawer, settings)
    import ipywidgets as W

    controls = {"beta": W.FloatLogSlider(value=beta, base=10, min=lo, max=hi, step=step,
                                         description="beta", readout_format=".3g", continuous_update=True,
                                         layout=W.Layout(width="420px"))}
    box = _explorer("reverse_kernel_explorer", drawer, controls, static_settings=settings,
                    title="<b>True reverse kernel</b> q(x^{t-1}|x^t) ∝ q(x^t|x^{t-1}) q(x^{t-1}) on a grid")
    _prefetch_in_background(drawer, controls["beta"], [10.0 ** (lo + k * step) for k in range(n)] + [10.0 ** hi])
    return box


def _prefetch_in_background(drawer, control, values, pause: float = 0.02):
    """On the first change of ``control``, draw the frames for ``values`` in a daemon thread, nearest to
    that first value (in log scale) first, so that the following slider steps find their frame ready.

    Nothing runs until a person (or a test) moves the control, so executing a notebook pays nothing.
    ``drawer.prefetch`` waits for any slider step being answered and serializes drawing with the
    drawer's lock; the short ``pause`` between frames lets the kernel's main thread in. At interpreter
    exit the thread is stopped and joined (a daemon thread killed inside a torch call can abort the
    process). Returns the ``threading.Event`` that stops it.
    """
    import atexit
    import threading

    stop = threading.Event()
    started = []

    def run(start):
        for v in sorted(values, key=lambda v: abs(math.log(v / start))):
            if stop.is_set():
                return
            drawer.prefetch(v)
            stop.wait(pause)

    def on_change(change):
        if not started and change["new"] > 0:
            thread = threading.Thread(target=run, args=(float(change["new"]),), daemon=True,
                                      name="reverse_kernel_explorer frames")
            started.append(thread)
            atexit.register(_stop_thread, stop, thread)
            thread.start()

    control.observe(on_change, names="value")
    return stop


def _stop_thread(stop, thread, timeout: float = 30.0) -> None:
    stop.set()
    if thread.is_alive():
        thread.join(timeout)


# ----------------------------------------------------------------------------------------------
# 3. posterior_explorer (chapter 04)
# ----------------------------------------------------------------------------------------------


class _PosteriorDrawer:
    """Left: the densities over the data range (a fixed y range; narrow ones are cut at the top).
    Middle: the same standardized by the posterior, z = (x_{t-1} - mu~_t) / sd, with sd the
    narrowest positive width, so that its axes never move. Right: beta_t and beta~_t."""

    ZMAX = 6.0

    def __init__(self, schedule, x0, seed, dpi):
        from ...diffusion import GaussianDiffusion

        self.s = schedule
        self.d = GaussianDiffusion(schedule)
        self.x0 = float(x0)
        g = torch.Generator().manual_seed(seed)
        self.eps = torch.randn(1, 1, generator=g, dtype=torch.float64)
        fig = self.fig = _new_figure((10.5, 3.1), dpi)
        self.axes = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.03, right=0.99, top=0.8, bottom=0.16, wspace=0.18)
        self.grid = np.linspace(-3.5, 3.5, 1401)
        self.z = np.linspace(-self.ZMAX, self.ZMAX, 801)
        self.lines = []
        for k, (ax, g, ymax) in enumerate(zip(self.axes[:2], (self.grid, self.z), (2.0, 0.45))):
            lp, = ax.plot(g, g * 0, c="C0", label="prior q(x_{t-1} | x_0)")
            ll, = ax.plot(g, g * 0, c="C1", label="likelihood q(x_t | x_{t-1}), normalized")
            lq, = ax.plot(g, g * 0, c="C3", lw=2, label="posterior q(x_{t-1} | x_t, x_0)")
            ax.set_xlim(g[0], g[-1])
            ax.set_ylim(0, ymax)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            self.lines.append((lp, ll, lq))
        self.axes[0].axvline(self.x0, c="k", ls=":", lw=1)
        self.v_xt, = self.axes[0].plot([0, 0], [0, 2.0], c="C2", ls=":", lw=1)
        self.axes[0].set_xlabel("x_{t-1}  (dotted: x_0 black, x_t green)", fontsize=7)
        self.axes[1].set_xlabel("(x_{t-1} - mu~_t) / sd", fontsize=7)
        self.axes[0].legend(fontsize=6, loc="upper left")
        self.axes[0].set_title("over the data range", fontsize=8)
        self.zoom_title = self.axes[1].set_title("", fontsize=8)
        T = schedule.T
        ts = np.arange(1, T + 1)
        a = self.axes[2]
        a.plot(ts, schedule.betas[1:].numpy(), c="C0", label="beta_t")
        pv = schedule.posterior_variance[1:].numpy().copy()
        a.plot(ts[1:], pv[1:], c="C3", label="beta~_t")
        (self.mb,) = a.plot([], [], "o", c="C0", ms=5)
        (self.mp,) = a.plot([], [], "o", c="C3", ms=5)
        a.set_yscale("log")
        a.set_xlabel("t", fontsize=8)
        a.tick_params(labelsize=7)
        a.legend(fontsize=7, loc="lower right")
        a.set_title("beta_t and beta~_t (log scale)", fontsize=8)
        self.suptitle = fig.suptitle("", fontsize=10)
        self.blit = Blitter(fig, [x for ls in self.lines for x in ls]
                             + [self.v_xt, self.zoom_title, self.mb, self.mp, self.suptitle])

    def __call__(self, t):
        s, T = self.s, self.s.T
        t = int(min(max(t, 1), T))
        tt = torch.tensor([t])
        x0 = torch.tensor([[self.x0]], dtype=torch.float64)
        x_t = float(self.d.q_sample(x0, tt, self.eps))
        mean, var, _ = self.d.q_posterior(x0, torch.tensor([[x_t]], dtype=torch.float64), tt)
        mu, bt = float(mean), float(var)
        beta = float(s.betas[t])
        abp = float(s.alpha_bars[t - 1])
        pm, pv = math.sqrt(abp) * self.x0, 1 - abp          # q(x_{t-1}|x_0) (a point mass at t = 1)
        lm, lv = x_t / math.sqrt(1 - beta), beta / (1 - beta)  # q(x_t|x_{t-1}) as a density in x_{t-1}
        sd = math.sqrt(min(w for w in (pv, lv, bt) if w > 0))
        for k, (g, scale) in enumerate(((self.grid, 1.0), (mu + sd * self.z, sd))):
            for line, m, v in zip(self.lines[k], (pm, lm, mu), (pv, lv, bt)):
                x = self.grid if k == 0 else self.z
                if v > 0:
                    line.set_data(x, _gauss_pdf(g, m, v) * scale)
                else:  # a point mass at m: a spike
                    xm = m if k == 0 else (m - mu) / sd
                    line.set_data([xm, xm], [0, 1e3])
        self.v_xt.set_xdata([x_t, x_t])
        self.zoom_title.set_text(f"zoomed: sd = {sd:.3g}")
        self.mb.set_data([t], [beta])
        self.mp.set_data(([t], [bt]) if bt > 0 else ([], []))
        self.suptitle.set_text(f"t = {t}: x_0 = {self.x0:+.2f}, x_t = {x_t:+.3f}, mu~_t = {mu:+.4f}, "
                               f"beta~_t = {bt:.3g}, beta_t = {beta:.3g}")
        html = (f"<code>t = {t} | x_0 = {self.x0:+.3f}, x_t = {x_t:+.4f} | prior N({pm:+.4f}, {pv:.4g}) | "
                f"likelihood in x_(t-1): N({lm:+.4f}, {lv:.4g}) | posterior N(mu~ = {mu:+.4f}, beta~ = {bt:.4g})"
                f" | beta_t = {beta:.4g}</code>")
        return self.blit.frame(), html


def posterior_explorer(schedule=None, *, x0: float = 1.0, t: int | None = None, seed: int = 0, dpi: int = 72,
                       static: bool = False):
    """The forward-process posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t) (DDPM Eqs. 6-7) as the
    product of the prior q(x_{t-1} | x_0) and the likelihood q(x_t | x_{t-1}), for a fixed 1-D x_0
    and x_t = q_sample(x_0, t, eps) with eps fixed; beside it, beta_t and beta~_t over t.

    :param schedule: a ``NoiseSchedule`` (default: linear, T = 1000, 1e-4 to 0.02).
    :param x0: the data point.
    :param t: the slider's initial value (default T // 10).
    :param static: return a matplotlib Figure for a few t instead.
    :return: an ``ExplorerBox`` with ``controls`` {"t": IntSlider}.
    """
    from ...schedules import NoiseSchedule

    schedule = NoiseSchedule.linear(T=1000) if schedule is None else schedule
    T = schedule.T
    drawer = _PosteriorDrawer(schedule, x0, seed, dpi)
    settings = [dict(t=v) for v in sorted({1 if T == 1 else 2, max(1, T // 10), max(1, T // 2), T})]
    if static:
        return _static_only(drawer, settings)
    import ipywidgets as W

    t = max(1, T // 10) if t is None else t
    controls = {"t": W.IntSlider(value=t, min=1, max=T, description="t", continuous_update=True,
                                 layout=W.Layout(width="420px"))}
    return _explorer("posterior_explorer", drawer, controls, static_settings=settings,
                     title="<b>Posterior</b> q(x_{t-1}|x_t, x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0)")


# ----------------------------------------------------------------------------------------------
# The practice track's explorers live in submodules (imported on first use, so that the theory
# explorers above load without a trained network): each builds on ``Explorer`` above.
# ----------------------------------------------------------------------------------------------
_SUBMODULE_OF = {
    "reverse_process_explorer": "sampling",        # chapter 09: scrub t through a stored trajectory
    "reconstruction_explorer": "reconstruction",   # chapter 12: t for reconstruction
    "interpolation_explorer": "reconstruction",    # chapter 12: lambda for interpolation
    "inpainting_explorer": "inpainting",           # chapter 11: the mask and t
    "decoder_explorer": "decoder",                 # chapter 06: the discretized decoder's bins
}


def __getattr__(name):
    if name in _SUBMODULE_OF:
        import importlib

        module = importlib.import_module(f".{_SUBMODULE_OF[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
