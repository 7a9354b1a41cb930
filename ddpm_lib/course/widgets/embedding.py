"""time_embedding_explorer (chapter 08): scrub t through DDPM's sinusoidal time embedding emb(t) and
see which other timesteps t' the network's input cannot tell from t.

Left, the bars of emb(t) (sines, then cosines); right, the cosine similarity of emb(t) with every
emb(t'), and, when given, of a trained network's learned time embedding ``temb`` (the MLP applied to
emb(t)). The embedding is :func:`ddpm_lib.timestep_embedding`; this module only draws it, on
:mod:`.framework` (one persistent figure, blitted redraws, cached frames).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .framework import FRAME_DPI, Blitter, explorer, new_figure

__all__ = ["time_embedding_explorer"]

#: the similarity above which the readout counts a timestep t' as "like t"
CLOSE = 0.9


def _unit_rows(x: torch.Tensor, name: str) -> np.ndarray:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"{name} must be a tensor (T, width) with one row per t = 1..T (T >= 2), got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    x = x.detach().double()
    return (x / x.norm(dim=1, keepdim=True).clamp(min=1e-300)).numpy()


class _EmbeddingDrawer:
    """One persistent figure: axes, ticks and labels drawn once, then only the bars, the curves and
    the marker redrawn for each t."""

    def __init__(self, emb: torch.Tensor, learned: Optional[torch.Tensor], dpi: int):
        self.emb = emb.detach().double().numpy()
        unit = _unit_rows(emb, "emb")
        self.T, d = self.emb.shape
        self.u, self.lu = unit, None if learned is None else _unit_rows(learned, "learned")
        if self.lu is not None and self.lu.shape[0] != self.T:
            raise ValueError(f"learned must have one row per t like emb ({self.T}), got {self.lu.shape[0]}")
        self.fig = new_figure((9.6, 3.2), dpi)
        ax1, ax2 = self.fig.subplots(1, 2)
        colors = ["tab:blue"] * (d // 2) + ["tab:orange"] * (d - d // 2)
        self.bars = ax1.bar(range(d), self.emb[0], color=colors)
        ax1.set_ylim(-1.05, 1.05)
        ax1.set_xlabel("dimension (blue: sin, orange: cos)", fontsize=10)
        ax1.set_ylabel("value", fontsize=10)
        ax1.set_title(r"$\mathrm{emb}(t)$", fontsize=10)
        ts = np.arange(1, self.T + 1)
        (self.line,) = ax2.plot(ts, self.u @ self.u[0], c="tab:blue")
        self.lline = None
        title = "similarity with $t$: sinusoidal"
        if self.lu is not None:
            (self.lline,) = ax2.plot(ts, self.lu @ self.lu[0], c="tab:orange")
            title += " (blue), learned (orange)"
        self.mark = ax2.axvline(1, color="k", lw=0.8, ls=":")
        # no legend box: the curves, redrawn per frame, would cover it; the title names them
        ax2.set_ylim(-0.7, 1.05)
        ax2.set_xlabel("$t'$", fontsize=10)
        ax2.set_ylabel("cosine similarity", fontsize=10)
        ax2.set_title(title, fontsize=10)
        for ax in (ax1, ax2):
            ax.tick_params(labelsize=10)
        self.fig.tight_layout()
        animated = [*self.bars, self.line, self.mark] + ([self.lline] if self.lline is not None else [])
        self.blit = Blitter(self.fig, animated)

    def similar(self, t: int) -> tuple:
        """How many t' have similarity > CLOSE with t: (sinusoidal, learned or None)."""
        n_sin = int((self.u @ self.u[t - 1] > CLOSE).sum())
        n_learned = None if self.lu is None else int((self.lu @ self.lu[t - 1] > CLOSE).sum())
        return n_sin, n_learned

    def __call__(self, t):
        t = int(t)
        if not 1 <= t <= self.T:
            raise ValueError(f"t must be in 1..{self.T}, got {t}")
        for bar, v in zip(self.bars, self.emb[t - 1]):
            bar.set_height(v)
        self.line.set_ydata(self.u @ self.u[t - 1])
        if self.lline is not None:
            self.lline.set_ydata(self.lu @ self.lu[t - 1])
        self.mark.set_xdata([t, t])
        n_sin, n_learned = self.similar(t)
        text = f"t = {t}: timesteps t' with similarity > {CLOSE}: {n_sin} (sinusoidal)"
        if n_learned is not None:
            text += f", {n_learned} (learned temb)"
        return self.blit.frame(), f"<code>{text}</code>"


def time_embedding_explorer(
    emb: Optional[torch.Tensor] = None,
    learned: Optional[torch.Tensor] = None,
    *,
    T: int = 1000,
    dim: int = 64,
    t: int = 100,
    settings=(1, 100, 900),
    dpi: int = FRAME_DPI,
    static: bool = False,
):
    """DDPM's sinusoidal time embedding (Sec. 4; Vaswani et al. 2017, Sec. 3.5), one t at a time.

    :param emb: (T, d) the embeddings emb(t) of t = 1..T (default: ``timestep_embedding`` of 1..T,
        width ``dim``).
    :param learned: optional (T, k) a trained network's learned time embedding of the same t
        (``model.temb(emb)``); its cosine similarities are drawn beside the sinusoidal ones.
    :param t: the slider's initial value; ``settings``: the t of the still (at most 6).
    :param static: return the still (a pyplot Figure of the frames at ``settings``) instead.
    :return: an ``ExplorerBox`` with ``controls`` {"t": IntSlider}; the readout counts the
        timesteps t' whose embedding has cosine similarity above 0.9 with emb(t).
    """
    if emb is None:
        from ...nets import timestep_embedding

        if not isinstance(T, int) or T < 2:
            raise ValueError(f"T must be an integer >= 2, got {T!r}")
        emb = timestep_embedding(torch.arange(1, T + 1), dim)
    drawer = _EmbeddingDrawer(emb, learned, dpi)
    T = drawer.T
    if not isinstance(t, (int, np.integer)) or not 1 <= t <= T:
        raise ValueError(f"t must be an integer in 1..{T}, got {t!r}")
    chosen = [int(v) for v in settings]
    if not 1 <= len(chosen) <= 6 or any(not 1 <= v <= T for v in chosen):
        raise ValueError(f"settings must be 1 to 6 timesteps in 1..{T}, got {list(settings)}")
    static_settings = [dict(t=v) for v in chosen]
    if static:
        from .framework import static_only

        return static_only(drawer, static_settings)
    import ipywidgets as W

    slider = W.IntSlider(value=int(t), min=1, max=T, step=1, description="t", continuous_update=True)
    box = explorer(
        "time_embedding_explorer",
        drawer,
        {"t": slider},
        title=f"<b>The sinusoidal time embedding</b> emb(t), d = {drawer.emb.shape[1]}",
        static_settings=static_settings,
    )
    box.similar = drawer.similar
    return box
