"""What a run measured: the History of its steps, and the running statistics that fill it.

Taught in chapter 09 (the loss by t of section 3). Per step: the loss, gradient norm and learning
rate; per window of ``log_every`` steps: the loss summed by ranges of t, and images per second,
which the progress bar of the steps (:class:`StepBar`) shows as each window closes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["History", "RunningStats", "StepBar", "t_edges", "T_BUCKETS"]

T_BUCKETS = 20  # the loss by timestep is kept as means over this many ranges of t


@dataclass
class History:
    """What a run measured. Per step: ``step``, ``loss`` (the mean over the global batch),
    ``grad_norm`` (before clipping) and ``lr``. Per window of ``log_every`` steps ending at
    ``window_step``: the sum and count of the per-example loss for t in each range
    [t_edges[j], t_edges[j + 1]) (``window_sum``, ``window_count``) and ``window_images_per_s``.
    """

    t_edges: list
    step: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    window_step: list = field(default_factory=list)
    window_sum: list = field(default_factory=list)
    window_count: list = field(default_factory=list)
    window_images_per_s: list = field(default_factory=list)

    def loss_by_t(self, since_step: int = 0):
        """(t_mid, mean loss) over the windows ending after ``since_step``: two numpy arrays of
        length len(t_edges) - 1 (NaN where no t of the range was drawn)."""

        edges = np.asarray(self.t_edges, dtype=np.float64)
        nb = len(edges) - 1
        s, c = np.zeros(nb), np.zeros(nb)
        for st, ws, wc in zip(self.window_step, self.window_sum, self.window_count):
            if st > since_step:
                s += np.asarray(ws)
                c += np.asarray(wc)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (edges[:-1] + edges[1:] - 1) / 2, np.where(c > 0, s / np.maximum(c, 1), np.nan)

    def to_tensors(self) -> dict:
        nb = len(self.t_edges) - 1
        f64 = dict(dtype=torch.float64)
        return {
            "history.t_edges": torch.tensor(self.t_edges, dtype=torch.long),
            "history.step": torch.tensor(self.step, dtype=torch.long),
            "history.loss": torch.tensor(self.loss, **f64),
            "history.grad_norm": torch.tensor(self.grad_norm, **f64),
            "history.lr": torch.tensor(self.lr, **f64),
            "history.window_step": torch.tensor(self.window_step, dtype=torch.long),
            "history.window_sum": torch.tensor(self.window_sum, **f64).reshape(-1, nb),
            "history.window_count": torch.tensor(self.window_count, **f64).reshape(-1, nb),
            "history.window_images_per_s": torch.tensor(self.window_images_per_s, **f64),
        }

    @classmethod
    def from_tensors(cls, d: dict) -> "History | None":
        if "history.t_edges" not in d:
            return None
        g = lambda k: d[f"history.{k}"].tolist()  # noqa: E731
        return cls(
            g("t_edges"),
            g("step"),
            g("loss"),
            g("grad_norm"),
            g("lr"),
            g("window_step"),
            g("window_sum"),
            g("window_count"),
            g("window_images_per_s"),
        )


def t_edges(T: int, nb: int) -> list:
    # bucket j holds the t with (t - 1) * nb // T == j, i.e. t in [1 + ceil(j T / nb), ...)
    return [1 + (j * T + nb - 1) // nb for j in range(nb)] + [T + 1]


class RunningStats:
    """A run's statistics as it trains: per-step values kept on the device until ``flush`` (no
    synchronisation per step), and the loss by t summed over the open window of ``log_every``
    steps until ``close_window``. Under DDP (``world_size`` > 1) both are collectives.
    """

    def __init__(self, T: int, batch_size: int, device, world_size: int = 1):
        nb = min(T_BUCKETS, T)
        self.history = History(t_edges(T, nb))
        self.T, self.batch_size, self.world_size = T, batch_size, world_size
        self.pending: list = []
        self.bucket_sum = torch.zeros(nb, device=device)
        self.bucket_count = torch.zeros(nb, device=device)
        self.window_start = 0  # the step after which the open window began
        self.restart_timer(0)

    def restart_timer(self, step: int):
        """Count images per second from ``step``, now."""
        self.timer_step, self.timer_t0 = step, time.perf_counter()

    def record(
        self, step: int, per_example: torch.Tensor, t: torch.Tensor, grad_norm: torch.Tensor, lr: float
    ):
        """The statistics of one step: per-example losses (B,) at timesteps t (B,)."""
        self.pending.append((step, per_example.detach().sum(), grad_norm.detach().float(), lr))
        bucket = ((t - 1) * self.bucket_sum.numel()) // self.T
        self.bucket_sum.index_add_(0, bucket, per_example.detach())
        self.bucket_count.index_add_(0, bucket, torch.ones_like(per_example))

    def flush(self):
        """Move the pending per-step statistics into the history; raise if the loss is not finite."""
        if not self.pending:
            return
        vals = torch.stack([torch.stack([s, g.to(s.device)]) for _, s, g, _ in self.pending])
        if self.world_size > 1:
            dist.all_reduce(vals)
            vals[:, 1] /= self.world_size
        vals = vals.double().cpu()
        h = self.history
        for (step, _, _, lr), (s, g) in zip(self.pending, vals.tolist()):
            h.step.append(step)
            h.loss.append(s / self.batch_size)
            h.grad_norm.append(g)
            h.lr.append(lr)
        self.pending.clear()
        if not math.isfinite(h.loss[-1]):
            raise FloatingPointError(
                f"the loss is {h.loss[-1]} at step {h.step[-1]}: training diverged "
                f"(try a smaller lr, a warm-up, or grad_clip)"
            )

    def close_window(self, step: int) -> dict | None:
        """End the window at ``step``; return its line for ``log.jsonl`` (None if it held no step)."""
        self.flush()
        if step <= self.window_start:
            return None
        v = torch.stack([self.bucket_sum, self.bucket_count])
        if self.world_size > 1:
            dist.all_reduce(v)
        v = v.double().cpu()
        now = time.perf_counter()
        n_steps = step - self.window_start
        ips = (step - self.timer_step) * self.batch_size / max(now - self.timer_t0, 1e-9)
        h = self.history
        h.window_step.append(step)
        h.window_sum.append(v[0].tolist())
        h.window_count.append(v[1].tolist())
        h.window_images_per_s.append(ips)
        self.bucket_sum.zero_()
        self.bucket_count.zero_()
        self.window_start = step
        self.restart_timer(step)
        recent = h.loss[-n_steps:]
        return {
            "step": step,
            "loss": sum(recent) / len(recent),
            "lr": h.lr[-1],
            "grad_norm": h.grad_norm[-1],
            "images_per_s": round(ips, 2),
            "time": time.time(),
        }

    def window_state(self) -> dict:
        """The open window as tensors, for a checkpoint (the history has ``History.to_tensors``)."""
        return {
            "window.sum": self.bucket_sum.cpu(),
            "window.count": self.bucket_count.cpu(),
            "window.start": torch.tensor([self.window_start], dtype=torch.long),
        }

    def load_state(self, extra: dict):
        """Continue from a checkpoint's tensors: the history and the open window."""
        self.history = History.from_tensors(extra) or self.history
        if "window.sum" in extra:
            self.bucket_sum.copy_(extra["window.sum"])
            self.bucket_count.copy_(extra["window.count"])
            self.window_start = int(extra["window.start"][0])


class StepBar:
    """The progress bar of a run (tqdm): steps done out of ``target``, and the loss and images per
    second of the last closed window of ``history``; nothing when not ``enabled``."""

    def __init__(self, target: int, initial: int, history: History, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=target, initial=initial, desc="train", unit="step", dynamic_ncols=True, disable=not enabled
        )
        self.windows = len(history.window_step)

    def update(self, history: History):
        """One step more; the new window's numbers if one closed."""
        self.bar.update(1)
        if len(history.window_step) > self.windows:
            self.windows = len(history.window_step)
            self.bar.set_postfix(
                loss=f"{history.loss[-1]:.4f}", img_s=f"{history.window_images_per_s[-1]:.1f}"
            )

    def close(self):
        self.bar.close()
