"""Chapter 11's explorer: every run of a stored Table 2 ablation table (:mod:`ddpm_lib.ablations`).

Pick a row and a seed: the run's samples against the data, its bound during training and its gradient
norms, all read from the table's JSON (nothing is trained or sampled here). Every frame is drawn when
the explorer is made, so a choice in the widget is a lookup.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .framework import Explorer

__all__ = ["ablation_explorer"]

LIM = 1.8  # the frame of the sample panels (the swiss roll lies in [-1.2, 1.5])


def _run(table: dict, row: str, seed: int) -> dict:
    r = next(x for x in table["rows"] if x["id"] == row)
    return next(x for x in r["runs"] if x["seed"] == seed)


def _samples(table: dict, row: str, seed: int) -> np.ndarray:
    return np.asarray(table["samples"][row][str(seed)], dtype=float)


def _bound_curve(run: dict) -> np.ndarray:
    return np.array([[p[0], np.nan if p[1] is None else p[1]] for p in run["bpd_curve"]])


def _bound_scale(values) -> str:
    """log for a positive bound (it falls by orders of magnitude early on), symlog when it reaches 0 or below."""
    v = np.asarray(values, dtype=float)
    return "log" if np.nanmin(v) > 0 else "symlog"


def _nan(values) -> list:
    return [np.nan if v is None else v for v in values]


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _readout(run: dict) -> str:
    text = (
        f"bound {_fmt(run['bpd'])} bits/dim, sliced W1 {_fmt(run['score'])} "
        f"(in range {_fmt(run['score_in_range'])}), out of range {run['out_of_range'] or 0:.1%}"
    )
    if run.get("w1_ratio") is not None:
        text += f", W1 / data floor {run['w1_ratio']:.2f}"
    return text + (f", diverged at step {run['diverged_at']}" if run["diverged_at"] else "")


def ablation_explorer(table: dict, reference: torch.Tensor, *, static: bool = False):
    """The runs of a swiss-roll ablation table (:func:`ddpm_lib.ablations.load_table`).

    :param table: the table (its ``rows``, ``samples``, ``seeds`` and ``train_config``).
    :param reference: (N, 2) data points drawn in grey behind the samples (the first 400 are used).
    :param static: return the still (a pyplot Figure of three rows' first seeds) instead of the widget.
    :return: an ``ExplorerBox`` with ``controls`` row and seed (Dropdowns); every frame already drawn.

    Taught in chapter 11.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    if table.get("dataset") != "swiss_roll" or not table.get("samples"):
        raise ValueError(
            "table must be a swiss-roll ablation table with stored samples (ablations.load_table)"
        )
    ref = np.asarray(reference, dtype=float)[:400]
    if ref.ndim != 2 or ref.shape[1] != 2:
        raise ValueError(f"reference must be (N, 2) points, got shape {tuple(ref.shape)}")
    ids = [r["id"] for r in table["rows"] if r["id"] in table["samples"]]
    clip = table["train_config"]["grad_clip"]
    fig, (ax_s, ax_b, ax_g) = plt.subplots(1, 3, figsize=(9.8, 3.6))
    plt.close(fig)  # drawn into PNGs, not shown by the notebook

    def draw(row, seed):
        run = _run(table, row, seed)
        for a in (ax_s, ax_b, ax_g):
            a.clear()
        ax_s.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75")
        pts = _samples(table, row, seed)
        ax_s.scatter(pts[:, 0], pts[:, 1], s=2, c="C3")
        ax_s.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
        ax_s.set_title("samples (red), data (grey)")
        bc = _bound_curve(run)
        ax_b.plot(bc[:, 0], bc[:, 1], marker=".")
        ax_b.set(
            xlabel="step",
            ylabel="bits/dim",
            title="bound (500 held-out points)",
            yscale=_bound_scale(bc[:, 1]),
        )
        c = run["curve"]
        ax_g.semilogy(c["step"], _nan(c["grad_norm_max"]), label="max")
        ax_g.semilogy(c["step"], _nan(c["grad_norm_median"]), label="median")
        ax_g.axhline(clip, color="k", lw=0.6, ls=":")
        ax_g.set(xlabel="step", ylabel="gradient norm", title="per 50 steps; dotted: the clip")
        ax_g.legend(loc="upper right")
        fig.suptitle(f"{row}, seed {seed}", fontsize=11)
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.15, top=0.8, wspace=0.45)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue(), _readout(run)

    def still(settings, titles=None):
        n = len(settings)
        f, axes = plt.subplot_mosaic(
            [[f"s{i}" for i in range(n) for _ in (0, 1)], ["b"] * n + ["g"] * n],
            figsize=(9.8, 6.6),
            layout="constrained",
        )
        lows = []
        for i, st in enumerate(settings):
            run = _run(table, st["row"], st["seed"])
            ax = axes[f"s{i}"]
            ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75")
            pts = _samples(table, st["row"], st["seed"])
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c=f"C{i}")
            ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
            ax.set_title(f"{st['row']}, seed {st['seed']}" if titles is None else titles[i])
            bc = _bound_curve(run)
            axes["b"].plot(bc[:, 0], bc[:, 1], marker=".", c=f"C{i}", label=st["row"])
            lows.append(np.nanmin(bc[:, 1]))
            axes["g"].semilogy(run["curve"]["step"], _nan(run["curve"]["grad_norm_max"]), c=f"C{i}")
        axes["b"].set(
            xlabel="step", ylabel="bits/dim", title="bound (500 held-out points)", yscale=_bound_scale(lows)
        )
        axes["g"].axhline(clip, color="k", lw=0.6, ls=":")
        axes["g"].set(xlabel="step", ylabel="largest gradient norm", title="per 50 steps; dotted: the clip")
        f.legend(*axes["b"].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
        f.suptitle(f"Table 2 on the swiss roll: samples (data in grey), bound and gradients of {n} runs")
        return f

    seeds = list(table["seeds"])
    first = "eps-simple-fixed" if "eps-simple-fixed" in ids else ids[0]
    shown = [r for r in ("eps-simple-fixed", "mean-vlb-fixed", "eps-vlb-learned") if r in ids] or ids[:3]
    ex = Explorer(
        draw,
        {
            "row": W.Dropdown(options=ids, value=first, description="row"),
            "seed": W.Dropdown(options=seeds, value=seeds[0], description="seed"),
        },
        title="<b>Table 2 on the swiss roll: one run</b>",
        static_settings=[{"row": r, "seed": seeds[0]} for r in shown],
        still=still,
    )
    ex.name = "ablation_explorer"
    for row in ids:  # every frame now, so that a choice in the widget is a lookup, not a redraw
        for seed in seeds:
            ex.render(row=row, seed=seed)
    return ex.static_figure() if static else ex.box
