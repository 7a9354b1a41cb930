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
from .framework import FRAME_DPI, Blitter, explorer, new_figure

__all__ = ["posterior_explorer"]

_LABELS = (
    r"prior $q(x_{t-1} \mid x_0)$",
    r"likelihood $q(x_t \mid x_{t-1})$, normalized",
    r"posterior $q(x_{t-1} \mid x_t, x_0)$",
)


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
        fig = self.fig = new_figure((9.8, 3.9), dpi)
        self.axes = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.02, right=0.98, top=0.83, bottom=0.3, wspace=0.22)
        self.grid = np.linspace(-3.5, 3.5, 1401)
        self.z = np.linspace(-self.ZMAX, self.ZMAX, 801)
        self.lines = []
        for k, (ax, g, ymax) in enumerate(zip(self.axes[:2], (self.grid, self.z), (2.0, 0.45))):
            (lp,) = ax.plot(g, g * 0, c="C0", label=_LABELS[0])
            (ll,) = ax.plot(g, g * 0, c="C1", label=_LABELS[1])
            (lq,) = ax.plot(g, g * 0, c="C3", lw=2, label=_LABELS[2])
            ax.set_xlim(g[0], g[-1])
            ax.set_ylim(0, ymax)
            ax.set_yticks([])
            ax.tick_params(labelsize=10)
            self.lines.append((lp, ll, lq))
        self.axes[0].axvline(self.x0, c="k", ls=":", lw=1)
        (self.v_xt,) = self.axes[0].plot([0, 0], [0, 2.0], c="C2", ls=":", lw=1)
        self.axes[0].set_xlabel(r"$x_{t-1}$ (dotted: $x_0$ black, $x_t$ green)", fontsize=10)
        self.axes[1].set_xlabel(r"$(x_{t-1} - \tilde\mu_t)$ / sd", fontsize=10)
        fig.legend(
            handles=list(self.lines[0]),
            loc="lower left",
            ncol=3,
            fontsize=10,
            frameon=False,
            borderaxespad=0.2,
        )
        self.axes[0].set_title("over the data range (peaks cut)", fontsize=10)
        self.zoom_title = self.axes[1].set_title("", fontsize=10)
        T = schedule.T
        ts = np.arange(1, T + 1)
        a = self.axes[2]
        a.plot(ts, schedule.betas[1:].numpy(), c="C0", label=r"$\beta_t$")
        pv = schedule.posterior_variance[1:].numpy().copy()
        a.plot(ts[1:], pv[1:], c="C3", label=r"$\tilde\beta_t$")
        (self.mb,) = a.plot([], [], "o", c="C0", ms=5)
        (self.mp,) = a.plot([], [], "o", c="C3", ms=5)
        a.set_yscale("log")
        a.set_xlabel(r"$t$", fontsize=10)
        a.tick_params(labelsize=10)
        a.legend(fontsize=10, loc="lower right")
        a.set_title(r"$\beta_t$ and $\tilde\beta_t$ (log scale)", fontsize=10)
        self.suptitle = fig.suptitle("", fontsize=11)
        self.blit = Blitter(
            fig,
            [x for ls in self.lines for x in ls]
            + [self.v_xt, self.zoom_title, self.mb, self.mp, self.suptitle],
        )

    def numbers(self, t):
        """For t: x_t, beta_t and the (mean, variance) of the prior, the likelihood in x_{t-1} and the
        posterior (a variance of 0 is a point mass)."""
        s = self.s
        tt = torch.tensor([t])
        x0 = torch.tensor([[self.x0]], dtype=torch.float64)
        x_t = float(self.d.q_sample(x0, tt, self.eps))
        mean, var, _ = self.d.q_posterior(x0, torch.tensor([[x_t]], dtype=torch.float64), tt)
        beta = float(s.betas[t])
        abp = float(s.alpha_bars[t - 1])
        prior = (math.sqrt(abp) * self.x0, 1 - abp)  # q(x_{t-1}|x_0) (a point mass at t = 1)
        lik = (x_t / math.sqrt(1 - beta), beta / (1 - beta))  # q(x_t|x_{t-1}) as a density in x_{t-1}
        return x_t, beta, prior, lik, (float(mean), float(var))

    def __call__(self, t):
        T = self.s.T
        t = int(min(max(t, 1), T))
        x_t, beta, (pm, pv), (lm, lv), (mu, bt) = self.numbers(t)
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
            f"t = {t}: x\u2080 = {self.x0:+.2f}, x\u209c = {x_t:+.3f}, \u03bc\u0303\u209c = {mu:+.4f}, "
            f"\u03b2\u0303\u209c = {bt:.3g}, \u03b2\u209c = {beta:.3g}"
        )
        html = (
            f"<code>t = {t} | x_0 = {self.x0:+.3f}, x_t = {x_t:+.4f} | prior N({pm:+.4f}, {pv:.4g}) | "
            f"likelihood in x_(t-1): N({lm:+.4f}, {lv:.4g}) | posterior N(mu~ = {mu:+.4f}, beta~ = {bt:.4g})"
            f" | beta_t = {beta:.4g}</code>"
        )
        return self.blit.frame(), html


def _posterior_still(drawer: _PosteriorDrawer, settings, titles):
    """The still for up to 4 values of t: one panel per t with the prior, the likelihood and the
    posterior over x_{t-1}, on the range where the three live and scaled to the highest peak (so no
    curve is cut), and one panel of beta_t and beta~_t with the chosen t marked."""
    from matplotlib.lines import Line2D

    from ...viz import course_style, still_figure

    ts = [int(min(max(int(s["t"]), 1), drawer.s.T)) for s in settings]
    if not 1 <= len(ts) <= 4:
        raise ValueError(f"the still shows 1 to 4 values of t, got {len(ts)}")
    s = drawer.s
    with course_style():
        fig = still_figure((9.8, 6.6), layout="constrained")
        gs = fig.add_gridspec(2, 3)
        slots = [gs[0, 0], gs[0, 1], gs[0, 2], gs[1, 0]][: len(ts)]
        for k, (slot, t) in enumerate(zip(slots, ts)):
            ax = fig.add_subplot(slot)
            x_t, beta, prior, lik, post = drawer.numbers(t)
            spread = [(m, math.sqrt(v)) for m, v in (prior, lik, post) if v > 0]
            lo = max(min(m - 4.5 * sd for m, sd in spread), -3.5)
            hi = min(max(m + 4.5 * sd for m, sd in spread), 3.5)
            x = np.linspace(lo, hi, 1201)
            peak = 0.0
            for (m, v), c, lw, label in zip((prior, lik, post), ("C0", "C1", "C3"), (1.5, 4.0, 1.6), _LABELS):
                if v > 0:
                    y = gaussian_pdf(x, m, v)
                    peak = max(peak, float(y.max()))
                    ax.plot(x, y, c=c, lw=lw, label=label)
                else:  # a point mass
                    ax.axvline(m, c=c, lw=lw, label=label + " (a point mass)")
            ax.axvline(drawer.x0, c="k", ls=":", lw=1)
            ax.axvline(x_t, c="C2", ls=":", lw=1.2)
            ax.set_xlim(lo, hi)
            ax.set_ylim(0, 1.06 * peak)
            ax.set(xlabel=r"$x_{t-1}$", ylabel="density")
            ax.set_title(
                f"$t$ = {t}: $x_t$ = {x_t:+.3f}\n"
                + r"$\tilde\mu_t$"
                + f" = {post[0]:+.3f}, "
                + r"$\tilde\beta_t$"
                + f" = {post[1]:.3g}"
            )
            ax.xaxis.set_major_locator(_ticks(4))
            if k == 0:
                handles = ax.get_lines()[:3]
        a = fig.add_subplot(gs[1, 1:] if len(ts) == 4 else gs[1, :])
        steps = np.arange(1, s.T + 1)
        a.plot(steps, s.betas[1:].numpy(), c="C0", label=r"$\beta_t$")
        a.plot(steps[1:], s.posterior_variance[2:].numpy(), c="C3", label=r"$\tilde\beta_t$")
        for t in ts:
            a.plot([t], [float(s.betas[t])], "o", c="C0", ms=6)
            if t > 1:
                a.plot([t], [float(s.posterior_variance[t])], "o", c="C3", ms=6, mfc="none")
        a.set_yscale("log")
        a.set(xlabel=r"$t$", ylabel="variance")
        a.set_title(r"$\beta_t$ and $\tilde\beta_t$; dots: the $t$ shown")
        a.legend(loc="lower right")
        fig.legend(
            handles=handles
            + [
                Line2D([], [], c="k", ls=":", lw=1, label=r"$x_0$"),
                Line2D([], [], c="C2", ls=":", lw=1.2, label=r"$x_t$"),
            ],
            loc="outside lower center",
            ncol=3,
            frameon=False,
        )
        fig.suptitle(
            r"Posterior $q(x_{t-1} \mid x_t, x_0) \propto q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)$"
            + f", $x_0$ = {drawer.x0:+.2f}"
        )
    return fig


def _ticks(n):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(n)


def posterior_explorer(
    schedule=None,
    *,
    x0: float = 1.0,
    t: int | None = None,
    seed: int = 0,
    dpi: int = FRAME_DPI,
    static: bool = False,
):
    """The forward-process posterior q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t) (DDPM Eqs. 6-7) as the
    product of the prior q(x_{t-1} | x_0) and the likelihood q(x_t | x_{t-1}), for a fixed 1-D x_0
    and x_t = q_sample(x_0, t, eps) with eps fixed; beside it, beta_t and beta~_t over t.

    :param schedule: a ``NoiseSchedule`` (default: linear, T = 1000, 1e-4 to 0.02).
    :param x0: the data point.
    :param t: the slider's initial value (default T // 10).
    :param static: return the still (a pyplot Figure of a few t) instead.
    :return: an ``ExplorerBox`` with ``controls`` {"t": IntSlider}; its ``static_figure(settings)``
        draws the still of up to 4 values of t: prior, likelihood and posterior over x_{t-1}, each
        panel ranging over the three densities (nothing cut), and beta_t against beta~_t.
    """
    from ...schedules import NoiseSchedule

    schedule = NoiseSchedule.linear(T=1000) if schedule is None else schedule
    T = schedule.T
    drawer = _PosteriorDrawer(schedule, x0, seed, dpi)
    settings = [dict(t=v) for v in sorted({1 if T == 1 else 2, max(1, T // 10), max(1, T // 2), T})]
    if static:
        return _posterior_still(drawer, settings, None)
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
        still=lambda full, titles: _posterior_still(drawer, full, titles),
        title="<b>Posterior</b> q(x_{t-1}|x_t, x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0)",
    )
