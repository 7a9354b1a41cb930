"""decoder_explorer (chapter 06): DDPM's discretized decoder (Eq. 13) for one coordinate.

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

from .framework import Blitter, explorer, new_figure, static_only

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
        fig = self.fig = new_figure((10.0, 2.9), dpi)
        ax, az = self.ax, self.az = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[2.2, 1]))
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.19, top=0.84, wspace=0.18)
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
        ax.set_ylim(1e-3, 3e3)
        ax.set_xlabel("x_0", fontsize=8)
        ax.set_ylabel("P(k) / bin width", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper center", ncol=3)
        h = self.HALF
        self.j = np.arange(-h, h + 1)
        self.zbars = az.stairs(np.zeros(2 * h + 1), np.arange(-h - 0.5, h + 1.5), fill=True, color="C0")
        self.zedge = az.stairs(np.zeros(2 * h + 1), np.arange(-h - 0.5, h + 1.5), fill=True, color="C3")
        self.zj = np.linspace(-h - 0.5, h + 0.5, 501)
        (self.zcurve,) = az.plot(self.zj, 0 * self.zj, color="0.25", lw=1)
        az.set_xlim(-h - 0.5, h + 0.5)
        az.set_ylim(0, 1.05)
        az.set_xlabel("k - k_mu (bins from the mean's nearest value)", fontsize=8)
        az.set_ylabel("P(k)", fontsize=8)
        az.tick_params(labelsize=7)
        self.ztitle = az.set_title("", fontsize=8)
        self.title = ax.set_title("", fontsize=9)
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
        self.ztitle.set_text(f"the bins near k_mu = {k_mu} (curve: density x 2/255)")
        k = int(p.argmax())
        pk = float(p[k])
        entropy = float(-(p * p.clamp(min=1e-300).log2()).sum())
        self.title.set_text(
            f"mu = {mu:+.2f}, sigma = {sigma:.3g}: sum of P = {float(p.sum()):.6f}, "
            f"P(x = -1) = {pn[0]:.3f}, P(x = +1) = {pn[-1]:.3f}"
        )
        html = (
            f"<code>mu = {mu:+.3f}, sigma = {sigma:.3g} | P(x = -1) = {pn[0]:.4f}, "
            f"P(x = +1) = {pn[-1]:.4f} | most likely value k = {k} (x = {float(self.grid[k]):+.4f}), "
            f"P = {pk:.4f}, -log2 P = {max(0.0, -math.log2(max(pk, 1e-300))):.3f} bits | "
            f"entropy of the decoder {max(0.0, entropy):.3f} bits (uniform: 8)</code>"
        )
        return self.blit.frame(), html


def decoder_explorer(*, mu: float = -0.97, sigma: float = 0.03, dpi: int = 72, static: bool = False):
    """DDPM's discretized decoder (Eq. 13) for one coordinate: the 256 bin probabilities of
    N(mu, sigma^2), the open edge bins, and the density.

    :param mu: the slider's initial mean (the slider spans [-1.2, 1.2]).
    :param sigma: the slider's initial standard deviation (log slider, 1e-3 to about 3).
    :param static: return a matplotlib Figure for three settings instead.
    :return: an ``ExplorerBox`` with ``controls`` {"mu": FloatSlider, "sigma": FloatLogSlider}.
    """
    if not (isinstance(sigma, (int, float)) and 1e-3 <= sigma <= 10**0.5):
        raise ValueError(f"sigma must be a number in [0.001, 3.16], got {sigma!r}")
    if not (isinstance(mu, (int, float)) and -1.2 <= mu <= 1.2):
        raise ValueError(f"mu must be a number in [-1.2, 1.2], got {mu!r}")
    drawer = _DecoderDrawer(dpi)
    settings = [dict(mu=-0.97, sigma=0.03), dict(mu=0.4, sigma=0.003), dict(mu=1.1, sigma=0.1)]
    if static:
        return static_only(drawer, settings)
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
        title="<b>The discretized decoder</b> p(x_0|x_1) (DDPM Eq. 13): the Gaussian's mass on "
        "each of the 256 bins, the edge bins open to ±∞",
    )
