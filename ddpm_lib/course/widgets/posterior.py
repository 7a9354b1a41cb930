"""posterior_explorer (chapter 04): the forward-process posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t)
(DDPM Eqs. 6-7) as the product of the prior q(x_{t-1} | x_0) and the likelihood q(x_t | x_{t-1}).

The numbers are :meth:`ddpm_lib.GaussianDiffusion.q_posterior` and the schedule's tables; this module
only draws them, on :mod:`.framework` (cached frames, blitted redraws).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...mixtures import gaussian_pdf
from .framework import Blitter, explorer, new_figure, static_only

__all__ = ["posterior_explorer"]


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
        fig = self.fig = new_figure((10.5, 3.1), dpi)
        self.axes = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.03, right=0.99, top=0.8, bottom=0.16, wspace=0.18)
        self.grid = np.linspace(-3.5, 3.5, 1401)
        self.z = np.linspace(-self.ZMAX, self.ZMAX, 801)
        self.lines = []
        for k, (ax, g, ymax) in enumerate(zip(self.axes[:2], (self.grid, self.z), (2.0, 0.45))):
            (lp,) = ax.plot(g, g * 0, c="C0", label="prior q(x_{t-1} | x_0)")
            (ll,) = ax.plot(g, g * 0, c="C1", label="likelihood q(x_t | x_{t-1}), normalized")
            (lq,) = ax.plot(g, g * 0, c="C3", lw=2, label="posterior q(x_{t-1} | x_t, x_0)")
            ax.set_xlim(g[0], g[-1])
            ax.set_ylim(0, ymax)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            self.lines.append((lp, ll, lq))
        self.axes[0].axvline(self.x0, c="k", ls=":", lw=1)
        (self.v_xt,) = self.axes[0].plot([0, 0], [0, 2.0], c="C2", ls=":", lw=1)
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
        self.blit = Blitter(
            fig,
            [x for ls in self.lines for x in ls]
            + [self.v_xt, self.zoom_title, self.mb, self.mp, self.suptitle],
        )

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
        pm, pv = math.sqrt(abp) * self.x0, 1 - abp  # q(x_{t-1}|x_0) (a point mass at t = 1)
        lm, lv = x_t / math.sqrt(1 - beta), beta / (1 - beta)  # q(x_t|x_{t-1}) as a density in x_{t-1}
        sd = math.sqrt(min(w for w in (pv, lv, bt) if w > 0))
        for k, (g, scale) in enumerate(((self.grid, 1.0), (mu + sd * self.z, sd))):
            for line, m, v in zip(self.lines[k], (pm, lm, mu), (pv, lv, bt)):
                x = self.grid if k == 0 else self.z
                if v > 0:
                    line.set_data(x, gaussian_pdf(g, m, v) * scale)
                else:  # a point mass at m: a spike
                    xm = m if k == 0 else (m - mu) / sd
                    line.set_data([xm, xm], [0, 1e3])
        self.v_xt.set_xdata([x_t, x_t])
        self.zoom_title.set_text(f"zoomed: sd = {sd:.3g}")
        self.mb.set_data([t], [beta])
        self.mp.set_data(([t], [bt]) if bt > 0 else ([], []))
        self.suptitle.set_text(
            f"t = {t}: x_0 = {self.x0:+.2f}, x_t = {x_t:+.3f}, mu~_t = {mu:+.4f}, "
            f"beta~_t = {bt:.3g}, beta_t = {beta:.3g}"
        )
        html = (
            f"<code>t = {t} | x_0 = {self.x0:+.3f}, x_t = {x_t:+.4f} | prior N({pm:+.4f}, {pv:.4g}) | "
            f"likelihood in x_(t-1): N({lm:+.4f}, {lv:.4g}) | posterior N(mu~ = {mu:+.4f}, beta~ = {bt:.4g})"
            f" | beta_t = {beta:.4g}</code>"
        )
        return self.blit.frame(), html


def posterior_explorer(
    schedule=None,
    *,
    x0: float = 1.0,
    t: int | None = None,
    seed: int = 0,
    dpi: int = 72,
    static: bool = False,
):
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
        return static_only(drawer, settings)
    import ipywidgets as W

    t = max(1, T // 10) if t is None else t
    controls = {
        "t": W.IntSlider(
            value=t, min=1, max=T, description="t", continuous_update=True, layout=W.Layout(width="420px")
        )
    }
    return explorer(
        "posterior_explorer",
        drawer,
        controls,
        static_settings=settings,
        title="<b>Posterior</b> q(x_{t-1}|x_t, x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0)",
    )
