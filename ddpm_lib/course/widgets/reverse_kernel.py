"""reverse_kernel_explorer (chapter 02): the true reverse kernel q(x^{t-1} | x^t) of one forward step
on a 1-D mixture against its moment-matched Gaussian, as beta grows (Sohl-Dickstein et al. 2015,
Sec. 2.2).

The mathematics is :mod:`ddpm_lib.mixtures` (:func:`~ddpm_lib.mixtures.true_reverse_kernel`,
:func:`~ddpm_lib.mixtures.moment_match`, :func:`~ddpm_lib.mixtures.kernel_kl_to_gaussian`); this
module only draws it, on :mod:`.framework` (cached frames, blitted redraws, a background prefetch).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ...mixtures import (
    DEFAULT_MIXTURE,
    gaussian_pdf,
    kernel_kl_to_gaussian,
    mixture_pdf,
    moment_match,
    true_reverse_kernel,
)
from .framework import Blitter, explorer, new_figure, prefetch_in_background, static_only

__all__ = ["reverse_kernel_explorer"]


class _ReverseDrawer:
    """Kernels are drawn standardized, z = (x^{t-1} - m) / s with m, s^2 the kernel's mean and
    variance, so the moment-matched Gaussian is always N(0, 1) and the axes never move.

    Speed: text is most of a frame's cost, so every fixed word (titles, x^t) is drawn once into the
    blitted background and only the numbers are redrawn. Frames for the slider's own values
    10**(lo + k step) (``log_grid = (lo, step, n)``) are drawn at exactly those values and kept by k,
    so a frame is the same whichever thread drew it; a lock serializes drawing on the one figure,
    which lets :func:`.framework.prefetch_in_background` fill the cache while the user reads."""

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
        fig = self.fig = new_figure((2.5 * (k + 1), 3.2), dpi)
        axes = fig.subplots(1, k + 1)
        fig.subplots_adjust(left=0.03, right=0.99, top=0.74, bottom=0.16, wspace=0.2)
        self.ax0 = axes[0]
        g = self.grid
        prior = mixture_pdf(g, means, stds, weights)
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
            ax.plot(
                self.z, gaussian_pdf(self.z, 0.0, 1.0), c="k", ls="--", lw=1, label="Gaussian, same mean/var"
            )
            (lt,) = ax.plot(self.z, self.z * 0, c=f"C{i + 2}", lw=2, label="true kernel")
            ax.set_xlim(-self.ZMAX, self.ZMAX)
            ax.set_ylim(0, self.YMAX)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            ax.set_xlabel("(x^{t-1} - mean) / sd", fontsize=7)
            ax.set_title(f"x^t = {x:+.2f}", fontsize=8, pad=13)  # fixed: drawn once, in the background
            self.titles.append(
                ax.text(0.5, 1.015, "", transform=ax.transAxes, ha="center", va="bottom", fontsize=7)
            )  # the numbers, redrawn per frame
            self.lines.append(lt)
        axes[1].legend(fontsize=6, loc="upper right", framealpha=0.6)
        fig.text(
            0.5,
            0.985,
            "true reverse kernel q(x^(t-1) | x^t) vs its moment-matched Gaussian:",
            ha="right",
            va="top",
            fontsize=10,
        )
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
        self.l_marg.set_ydata(mixture_pdf(g, self.means, self.stds, self.weights, math.sqrt(1 - beta), beta))
        res = self.compute(beta)
        for lt, title, (x, p, m, v, kl) in zip(self.lines, self.titles, res):
            sd = math.sqrt(v)
            lt.set_ydata(np.interp(m + sd * self.z, g, p, left=0.0, right=0.0) * sd)
            title.set_text(f"KL = {kl:.2g} nats, mean {m:+.2f}, sd {sd:.2g}")
        worst = max(r[4] for r in res)
        self.suptitle.set_text(f"beta = {beta:.3g}, largest KL = {worst:.2g} nats")
        html = (
            "<code>beta = {:.3g} | ".format(beta)
            + " | ".join(
                f"x^t = {x:+.2f}: mean {m:+.3f}, var {v:.3g}, KL(true || Gaussian) = {kl:.3g} nats"
                for x, _, m, v, kl in res
            )
            + "</code>"
        )
        return self.blit.frame(), html


def reverse_kernel_explorer(
    *,
    means=DEFAULT_MIXTURE["means"],
    stds=DEFAULT_MIXTURE["stds"],
    weights=DEFAULT_MIXTURE["weights"],
    x_ts=(-1.0, 0.3, 1.2),
    beta: float = 0.01,
    grid=None,
    dpi: int = 72,
    static: bool = False,
):
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
        return static_only(drawer, settings)
    import ipywidgets as W

    controls = {
        "beta": W.FloatLogSlider(
            value=beta,
            base=10,
            min=lo,
            max=hi,
            step=step,
            description="beta",
            readout_format=".3g",
            continuous_update=True,
            layout=W.Layout(width="420px"),
        )
    }
    box = explorer(
        "reverse_kernel_explorer",
        drawer,
        controls,
        static_settings=settings,
        title="<b>True reverse kernel</b> q(x^{t-1}|x^t) ∝ q(x^t|x^{t-1}) q(x^{t-1}) on a grid",
    )
    prefetch_in_background(
        drawer,
        controls["beta"],
        [10.0 ** (lo + k * step) for k in range(n)] + [10.0**hi],
        name="reverse_kernel_explorer frames",
    )
    return box
