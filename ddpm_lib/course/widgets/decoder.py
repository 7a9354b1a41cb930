"""decoder_explorer (chapter 07): DDPM's discretized decoder (Eq. 13) for one coordinate.

Sliders move the Gaussian's mean mu and its standard deviation sigma; the picture shows the 256
bin probabilities P(k) of the values x_k = 2k/255 - 1 (divided by the bin width 2/255, so that
they sit on the density's scale), the two open edge bins in red, and the density itself. The
readout gives the edge probabilities, the most likely value, its code length -log2 P and the
decoder's entropy. Built on :class:`ddpm_lib.course.widgets.framework.Explorer` (cached frames, blitted redraws).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .framework import FRAME_DPI, Blitter, explorer, new_figure

__all__ = ["decoder_explorer"]

_XLIM = 1.25


class _DecoderDrawer:
    """Left: the whole range [-1.25, 1.25], log scale. Right: the 25 bins around the mean's nearest
    grid value k_mu, probabilities on a linear scale (fixed axes, so frames are blitted)."""

    HALF = 12  # bins on each side of k_mu in the zoom

    def __init__(self, dpi: int):
        from ...gaussians import discretized_gaussian_probs

        self.probs = discretized_gaussian_probs
        self.grid = torch.arange(256, dtype=torch.float64) * (2.0 / 255.0) - 1.0
        edges = np.concatenate([self.grid.numpy() - 1 / 255, [1 + 1 / 255]])  # the 257 bin boundaries
        self.edges = edges
        self.xs = np.linspace(-_XLIM, _XLIM, 1001)
        fig = self.fig = new_figure((9.8, 3.5), dpi)
        ax, az = self.ax, self.az = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[2.0, 1]))
        fig.subplots_adjust(left=0.08, right=0.99, bottom=0.16, top=0.78, wspace=0.22)
        self.bins = ax.stairs(np.ones(256), edges, fill=True, color="C0", label="P(k) / bin width")
        # the open edge bins, drawn out to the plot's edge with their mass spread over the drawn width
        self.lo_w, self.hi_w = edges[1] + _XLIM, _XLIM - edges[-2]
        self.ends = [
            ax.stairs([1.0], [-_XLIM, edges[1]], fill=True, color="C3", label="open edge bins"),
            ax.stairs([1.0], [edges[-2], _XLIM], fill=True, color="C3"),
        ]
        (self.curve,) = ax.plot(self.xs, np.ones_like(self.xs), color="0.25", lw=1, label="Gaussian density")
        for e in (-1, 1):
            ax.axvline(e, color="k", lw=0.6, ls=":")
        ax.set_xlim(-_XLIM, _XLIM)
        ax.set_yscale("log")
        ax.set_ylim(
            1e-3, 3e4
        )  # headroom for the legend above the highest bar (2/255 wide: 127.5 / bin width)
        ax.set_xlabel(r"$x_0$", fontsize=10)
        ax.set_ylabel("P(k) / bin width", fontsize=10)
        ax.tick_params(labelsize=10)
        ax.legend(fontsize=10, loc="upper center", ncol=3, borderaxespad=0.2)
        h = self.HALF
        self.j = np.arange(-h, h + 1)
        self.zbars = az.stairs(np.zeros(2 * h + 1), np.arange(-h - 0.5, h + 1.5), fill=True, color="C0")
        self.zedge = az.stairs(np.zeros(2 * h + 1), np.arange(-h - 0.5, h + 1.5), fill=True, color="C3")
        self.zj = np.linspace(-h - 0.5, h + 0.5, 501)
        (self.zcurve,) = az.plot(self.zj, 0 * self.zj, color="0.25", lw=1)
        az.set_xlim(-h - 0.5, h + 0.5)
        az.set_ylim(0, 1.05)
        az.set_xlabel(r"$k - k_\mu$ (bins from the mean's)", fontsize=10)
        az.set_ylabel("P(k)", fontsize=10)
        az.tick_params(labelsize=10)
        self.ztitle = az.set_title("", fontsize=10)
        self.title = fig.suptitle("", fontsize=11)
        self.blit = Blitter(
            fig,
            [self.bins, *self.ends, self.curve, self.zbars, self.zedge, self.zcurve, self.ztitle, self.title],
        )

    def __call__(self, mu, sigma):
        mu, sigma = float(mu), float(sigma)
        p = self.probs(
            torch.tensor(mu, dtype=torch.float64), torch.tensor(math.log(sigma), dtype=torch.float64)
        )
        pn = p.numpy()
        floor = 1e-9  # log axes: keep empty bins drawable
        inner = np.maximum(pn / (2 / 255), floor)
        inner[[0, -1]] = floor  # the edge bins are drawn in red, spread over their drawn width
        self.bins.set_data(inner)
        self.ends[0].set_data([max(pn[0] / self.lo_w, floor)])
        self.ends[1].set_data([max(pn[-1] / self.hi_w, floor)])
        dens = np.exp(-0.5 * ((self.xs - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        self.curve.set_ydata(np.maximum(dens, floor))
        # zoom: bins k_mu - 12 .. k_mu + 12, outside 0..255 empty
        k_mu = int(min(max(round((mu + 1) * 127.5), 0), 255))
        ks = k_mu + self.j
        valid = (ks >= 0) & (ks <= 255)
        zp = np.where(valid, pn[np.clip(ks, 0, 255)], 0.0)
        edge = valid & ((ks == 0) | (ks == 255))
        self.zbars.set_data(np.where(edge, 0.0, zp))
        self.zedge.set_data(np.where(edge, zp, 0.0))
        x_of_j = (k_mu + self.zj) * (2 / 255) - 1  # the zoom's axis in x
        self.zcurve.set_ydata(
            np.exp(-0.5 * ((x_of_j - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)) * (2 / 255)
        )
        self.ztitle.set_text(f"bins near k = {k_mu}, the nearest to \u03bc\n(curve: density \u00d7 2/255)")
        k = int(p.argmax())
        pk = float(p[k])
        entropy = float(-(p * p.clamp(min=1e-300).log2()).sum())
        self.title.set_text(
            f"\u03bc = {mu:+.2f}, \u03c3 = {sigma:.3g}: sum of P = {float(p.sum()):.6f}, "
            f"P(x = -1) = {pn[0]:.3f}, P(x = +1) = {pn[-1]:.3f}"
        )
        html = (
            f"<code>mu = {mu:+.3f}, sigma = {sigma:.3g} | P(x = -1) = {pn[0]:.4f}, "
            f"P(x = +1) = {pn[-1]:.4f} | most likely value k = {k} (x = {float(self.grid[k]):+.4f}), "
            f"P = {pk:.4f}, -log2 P = {max(0.0, -math.log2(max(pk, 1e-300))):.3f} bits | "
            f"entropy of the decoder {max(0.0, entropy):.3f} bits (uniform: 8)</code>"
        )
        return self.blit.frame(), html


def _decoder_still(drawer: _DecoderDrawer, settings, titles):
    """The still: one panel per setting (at most 6): the probabilities P(k) of the bins around the
    mean's nearest value k_mu (the open edge bins in red), the density times the bin width, and in
    the title P(x = -1), P(x = +1) and the most likely value's code length -log2 P."""
    from matplotlib.patches import Patch

    from ...viz import course_style, still_figure

    settings = list(settings)
    if not 1 <= len(settings) <= 6:
        raise ValueError(f"the still shows 1 to 6 settings, got {len(settings)}")
    n = len(settings)
    cols = 2 if n in (2, 4) else min(n, 3)
    rows = math.ceil(n / cols)
    h = drawer.HALF
    with course_style():
        fig = still_figure((9.8 if cols > 1 else 5.0, 3.0 * rows + 0.9), layout="constrained")
        axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax in axes[n:]:
            ax.set_visible(False)
        for ax, st in zip(axes, settings):
            mu, sigma = float(st["mu"]), float(st["sigma"])
            p = drawer.probs(
                torch.tensor(mu, dtype=torch.float64), torch.tensor(math.log(sigma), dtype=torch.float64)
            ).numpy()
            k_mu = int(min(max(round((mu + 1) * 127.5), 0), 255))
            lo, hi = max(k_mu - h, 0), min(k_mu + h, 255)
            ks = np.arange(lo, hi + 1)
            edge = (ks == 0) | (ks == 255)
            ax.bar(ks[~edge], p[ks[~edge]], width=1.0, color="C0")
            ax.bar(ks[edge], p[ks[edge]], width=1.0, color="C3")
            kk = np.linspace(lo - 0.5, hi + 0.5, 801)
            dens = np.exp(-0.5 * (((kk * 2 / 255 - 1) - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
            ax.plot(kk, dens * 2 / 255, c="0.25", lw=1.2)
            k = int(p.argmax())
            bits = max(0.0, -math.log2(max(float(p[k]), 1e-300)))
            top = max(float(p[lo : hi + 1].max()), float((dens * 2 / 255).max()))
            ax.set(xlim=(lo - 0.5, hi + 0.5), ylim=(0, 1.08 * top), xlabel="grey level $k$", ylabel="$P(k)$")
            ax.set_title(
                r"$\mu$" + f" = {mu:+.3f}, " + r"$\sigma$" + f" = {sigma:.3g}: P(x = -1) = {p[0]:.3f}, "
                f"P(x = +1) = {p[-1]:.3f}\nmost likely k = {k}: P = {float(p[k]):.3f}, "
                r"$-\log_2 P$" + f" = {bits:.2f} bits"
            )
        handles = [
            Patch(color="C0", label="$P(k)$"),
            Patch(color="C3", label="open edge bin ($k$ = 0 or 255)"),
            axes[0].get_lines()[0],
        ]
        axes[0].get_lines()[0].set_label(r"density of $\mathcal{N}(\mu, \sigma^2)$ $\times$ bin width 2/255")
        fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
        fig.suptitle(r"The discretized decoder (DDPM Eq. 13): the Gaussian's mass on each bin")
    return fig


def decoder_explorer(*, mu: float = -0.97, sigma: float = 0.03, dpi: int = FRAME_DPI, static: bool = False):
    """DDPM's discretized decoder (Eq. 13) for one coordinate: the 256 bin probabilities of
    N(mu, sigma^2), the open edge bins, and the density.

    :param mu: the slider's initial mean (the slider spans [-1.2, 1.2]).
    :param sigma: the slider's initial standard deviation (log slider, 1e-3 to about 3).
    :param static: return the still (a pyplot Figure of four settings) instead.
    :return: an ``ExplorerBox`` with ``controls`` {"mu": FloatSlider, "sigma": FloatLogSlider}; its
        ``static_figure(settings)`` draws the still of up to 6 settings, one panel each: the bins
        around the mean, the edge bins, and the most likely value's code length.
    """
    if not (isinstance(sigma, (int, float)) and 1e-3 <= sigma <= 10**0.5):
        raise ValueError(f"sigma must be a number in [0.001, 3.16], got {sigma!r}")
    if not (isinstance(mu, (int, float)) and -1.2 <= mu <= 1.2):
        raise ValueError(f"mu must be a number in [-1.2, 1.2], got {mu!r}")
    drawer = _DecoderDrawer(dpi)
    on_grid = 2 * 178 / 255 - 1  # the grid value x_178 = 0.396..., the centre of its bin
    settings = [
        dict(mu=-0.97, sigma=0.03),
        dict(mu=on_grid, sigma=0.01),
        dict(mu=on_grid, sigma=0.003),
        dict(mu=1.1, sigma=0.1),
    ]
    if static:
        return _decoder_still(drawer, settings, None)
    import ipywidgets as W

    controls = {
        "mu": W.FloatSlider(
            value=mu,
            min=-1.2,
            max=1.2,
            step=0.01,
            description="mu",
            continuous_update=True,
            readout_format=".2f",
            layout=W.Layout(width="360px"),
        ),
        "sigma": W.FloatLogSlider(
            value=sigma,
            base=10,
            min=-3,
            max=0.5,
            step=0.05,
            description="sigma",
            readout_format=".3g",
            continuous_update=True,
            layout=W.Layout(width="360px"),
        ),
    }
    return explorer(
        "decoder_explorer",
        drawer,
        controls,
        static_settings=settings,
        still=lambda full, titles: _decoder_still(drawer, full, titles),
        title="<b>The discretized decoder</b> p(x_0|x_1) (DDPM Eq. 13): the Gaussian's mass on "
        "each of the 256 bins, the edge bins open to ±∞",
    )
