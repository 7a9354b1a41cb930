"""The exponential moving average (EMA) of the weights that DDPM samples with.

Taught in chapter 09: ``ema_update`` is one update, theta_bar <- d theta_bar + (1 - d) theta;
``ema_decay_at`` the decay at update k (constant as in DDPM, or warmed up); ``debias_ema`` removes
the initial weights' share from a short run's average.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ema_decay_at", "ema_update", "debias_ema"]


def ema_decay_at(k: int, decay: float, warmup: int = 0) -> float:
    """The EMA decay used at update k = 0, 1, ...: ``decay``, or with ``warmup`` > 0
    min(decay, (1 + k) / (warmup + k)), which starts near 1 / warmup and rises to ``decay``."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return decay if warmup == 0 else min(decay, (1 + k) / (warmup + k))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * param for every parameter; buffers are copied."""
    ep, mp = list(ema.parameters()), list(model.parameters())
    if len(ep) != len(mp):
        raise ValueError("ema and model have different parameters")
    torch._foreach_mul_(ep, decay)
    torch._foreach_add_(ep, mp, alpha=1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)


def debias_ema(ema_state: dict, initial_state: dict, decay: float, steps: int) -> dict:
    """Remove the initial weights' share from an EMA that started at them.

    After N updates ema_N = d^N w_0 + (1 - d) sum_k d^(N-k) w_k; returns
    (ema_N - d^N w_0) / (1 - d^N), the normalized exponential average of the trained weights
    (Adam's zero-debiasing). Matters for runs not much longer than 1 / (1 - d) steps.
    Buffers (non-float entries and those equal in both) pass through unchanged.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    share = decay**steps
    out = {}
    for k, v in ema_state.items():
        if k not in initial_state:
            raise KeyError(f"initial_state has no entry {k!r}")
        out[k] = (v - share * initial_state[k]) / (1 - share) if v.is_floating_point() else v
    return out
