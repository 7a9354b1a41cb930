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
from .framework import FRAME_DPI, Blitter, explorer, new_figure, prefetch_in_background

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
        fig = self.fig = new_figure((2.4 * (k + 1), 3.9), dpi)
        axes = fig.subplots(1, k + 1)
        fig.subplots_adjust(left=0.02, right=0.99, top=0.66, bottom=0.15, wspace=0.12)
        self.ax0 = axes[0]
        g = self.grid
        prior = mixture_pdf(g, means, stds, weights)
        self.ax0.plot(g, prior, c="C0", label=r"$q(x^{t-1})$")
        (self.l_marg,) = self.ax0.plot(g, g * 0, c="C1", label=r"$q(x^t)$")
        for i, x in enumerate(self.x_ts):
            self.ax0.axvline(x, c=f"C{i + 2}", ls=":", lw=1.2)
        pad = 3.5 * float(np.max(stds)) + 1
        lo, hi = float(np.min(means)) - pad, float(np.max(means)) + pad
        self.ax0.set_xlim(max(lo, g[0]), min(hi, g[-1]))
        self.ax0.set_ylim(0, 2.0 * float(prior.max()))  # headroom: the legend sits above the curves
        self.ax0.set_title("data and noised data;\ndotted: the values of $x^t$", fontsize=10)
        self.ax0.set_yticks([])
        self.ax0.set_xlabel(r"$x$", fontsize=10)
        self.ax0.tick_params(labelsize=10)
        self.z = np.linspace(-self.ZMAX, self.ZMAX, 801)
        self.lines, self.titles = [], []
        for i, (ax, x) in enumerate(zip(axes[1:], self.x_ts)):
            ax.plot(self.z, gaussian_pdf(self.z, 0.0, 1.0), c="k", ls="--", lw=1, label="Gaussian")
            (lt,) = ax.plot(self.z, self.z * 0, c=f"C{i + 2}", lw=2, label="true kernel")
            ax.set_xlim(-self.ZMAX, self.ZMAX)
            ax.set_ylim(0, self.YMAX)
            ax.set_yticks([])
            ax.tick_params(labelsize=10)
            ax.set_xlabel("$z$ = (x$^{t-1}$ - mean) / sd", fontsize=10)
            ax.set_title(f"$x^t$ = {x:+.2f}", fontsize=10, pad=30)  # fixed: drawn once, in the background
            self.titles.append(
                ax.text(0.5, 1.015, "", transform=ax.transAxes, ha="center", va="bottom", fontsize=10)
            )  # the numbers, redrawn per frame
            self.lines.append(lt)
        # one legend, over the data panel's headroom, for every panel (none over a redrawn curve)
        from matplotlib.lines import Line2D

        self.ax0.legend(
            handles=self.ax0.get_lines()[:2] + axes[1].get_lines()[:1] + [Line2D([], [], c="0.35", lw=2)],
            labels=[r"$q(x^{t-1})$", r"$q(x^t)$", "Gaussian", "true kernel"],
            fontsize=10,
            loc="upper center",
            ncol=2,
            handlelength=1.2,
            columnspacing=0.8,
        )
        fig.text(
            0.5,
            0.985,
            "true reverse kernel q(x$^{t-1}$ | x$^t$) vs the Gaussian of its mean and variance",
            ha="center",
            va="top",
            fontsize=11,
        )
        self.suptitle = fig.text(0.5, 0.915, "", ha="center", va="top", fontsize=11)
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
            title.set_text(f"KL = {kl:.2g} nats\nmean {m:+.2f}, sd {sd:.2g}")
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


_BETA_COLORS = ("C0", "C1", "C3", "C4")


def _reverse_still(drawer: _ReverseDrawer, settings, titles):
    """The still for up to 4 values of beta: left, the data q(x^{t-1}) and the noised data q(x^t) of
    each beta, with the values of x^t dotted; then one panel per x^t with the standardized true
    kernel of every beta over the standard Gaussian (the moment-matched Gaussian), KL in the title."""
    from ...viz import course_style, still_figure

    betas = [float(s["beta"]) for s in settings]
    if not 1 <= len(betas) <= len(_BETA_COLORS):
        raise ValueError(f"the still shows 1 to {len(_BETA_COLORS)} values of beta, got {len(betas)}")
    labels = list(titles) if titles is not None else [r"$\beta$" + f" = {b:.3g}" for b in betas]
    g, z = drawer.grid, drawer.z
    results = [drawer.compute(b) for b in betas]
    k = len(drawer.x_ts)
    with course_style():
        fig = still_figure((9.8, 3.9), layout="constrained")
        axes = fig.subplots(1, k + 1, sharey=False)
        a0 = axes[0]
        prior = mixture_pdf(g, drawer.means, drawer.stds, drawer.weights)
        a0.plot(g, prior, c="k", lw=2, label=r"data $q(x^{t-1})$")
        for b, c, lab in zip(betas, _BETA_COLORS, labels):
            marg = mixture_pdf(g, drawer.means, drawer.stds, drawer.weights, math.sqrt(1 - b), b)
            a0.plot(g, marg, c=c, lw=1.2, label=lab)
        for x in drawer.x_ts:
            a0.axvline(x, c="0.4", ls=":", lw=1)
        pad = 3.5 * float(np.max(drawer.stds)) + 1
        a0.set_xlim(
            max(float(np.min(drawer.means)) - pad, g[0]), min(float(np.max(drawer.means)) + pad, g[-1])
        )
        a0.set_ylim(0, 1.08 * float(prior.max()))
        a0.set(xlabel=r"$x$", ylabel="density")
        a0.set_title("data, noised data $q(x^t)$\n(dotted: the $x^t$ below)")
        for i, (ax, x) in enumerate(zip(axes[1:], drawer.x_ts)):
            ax.plot(
                z,
                gaussian_pdf(z, 0.0, 1.0),
                c="k",
                ls="--",
                lw=1.2,
                zorder=3,
                label="Gaussian, same mean and variance",
            )
            kls = []
            for res, c in zip(results, _BETA_COLORS):
                _, p, m, v, kl = res[i]
                sd = math.sqrt(v)
                ax.plot(z, np.interp(m + sd * z, g, p, left=0.0, right=0.0) * sd, c=c, lw=1.6)
                kls.append(f"{kl:.2g}")
            ax.set_xlim(-drawer.ZMAX, drawer.ZMAX)
            top = max(float(np.max(line.get_ydata())) for line in ax.get_lines())
            ax.set_ylim(0, max(0.45, 1.05 * top))
            ax.set_xlabel(r"$z = (x^{t-1} - $mean$) / $sd")
            ax.set_ylabel("density of $z$" if i == 0 else "")
            if i > 0:
                ax.tick_params(labelleft=False)
            ax.set_title(f"$x^t$ = {x:+.2f}; KL in nats:\n" + ", ".join(kls))
        handles = a0.get_lines()[: 1 + len(betas)] + [axes[1].get_lines()[0]]
        fig.legend(
            handles=handles,
            labels=[h.get_label() for h in handles],
            loc="outside lower center",
            ncol=len(handles),
            frameon=False,
        )
        fig.suptitle(
            r"True reverse kernel $q(x^{t-1} \mid x^t)$ against the Gaussian of its mean and variance"
            " (KL in the order of the legend)"
        )
    return fig


def reverse_kernel_explorer(
    *,
    means=DEFAULT_MIXTURE["means"],
    stds=DEFAULT_MIXTURE["stds"],
    weights=DEFAULT_MIXTURE["weights"],
    x_ts=(-1.0, 0.3, 1.2),
    beta: float = 0.01,
    grid=None,
    dpi: int = FRAME_DPI,
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
    :param static: return the still (a pyplot Figure) for beta = 0.001, 0.05, 0.5 instead.
    :return: an ``ExplorerBox`` with ``controls`` {"beta": FloatLogSlider}; its ``static_figure(settings)``
        draws the still of up to 4 values of beta: the data and noised data, and for each x^t the
        standardized kernels of every beta over the Gaussian (4 panels).
    """
    grid = np.linspace(-5, 5, 4001) if grid is None else np.asarray(grid, dtype=np.float64)
    lo, hi, step = -3.0, math.log10(0.95), 0.05  # the slider: beta = 10**e, e from lo to hi in steps of step
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    drawer = _ReverseDrawer(x_ts, means, stds, weights, grid, dpi, log_grid=(lo, step, n))
    settings = [dict(beta=b) for b in (0.001, 0.05, 0.5)]
    if static:
        return _reverse_still(drawer, settings, None)
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
        still=lambda full, titles: _reverse_still(drawer, full, titles),
        title="<b>True reverse kernel</b> q(x^{t-1}|x^t) ∝ q(x^t|x^{t-1}) q(x^{t-1}) on a grid",
    )
    prefetch_in_background(
        drawer,
        controls["beta"],
        [10.0 ** (lo + k * step) for k in range(n)] + [10.0**hi],
        name="reverse_kernel_explorer frames",
    )
    return box
