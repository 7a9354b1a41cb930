"""Pictures of data and samples: image grids, 2-D scatter plots, sampling trajectories.

matplotlib only. Images are tensors (or arrays) of shape (N, C, H, W) with C = 1 or 3 and
values in [-1, 1] (the DDPM scaling x / 127.5 - 1); they are shown as 8-bit pixels,
round((x + 1) * 127.5) clamped to 0..255, as :func:`ddpm_lib.data.to_uint8` does.

    grid = image_grid(x)                    # (H, W) or (H, W, 3) uint8
    save_image_grid(x, "samples.png")       # a PNG, written atomically
    show_images(x, title="samples")         # in a notebook
    plot_2d(samples, ref=data)              # 2-D points over the data
    trajectory_strip(traj)                  # x_t and predicted x_0 along a sampling chain

The course's figure style (:func:`course_style`): one set of rcParams for every figure of the course,
readable at the width JupyterLab shows it (about 900 px): stills at 100 dpi or more, text of 10 pt or
more, mathtext labels, labelled axes, legends off the data and at most 6 panels in a still.
:func:`style_problems` lists what a figure breaks of it (the tests call it on every widget still).

    course_style()                          # once, at the top of a chapter: the rcParams for the session
    with course_style(): fig = ...          # or only for what is drawn inside the block
    style_problems(fig)                     # [] when the figure keeps the style
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .utils import atomic_write

__all__ = [
    "to_uint8_array",
    "image_grid",
    "save_image_grid",
    "show_images",
    "plot_2d",
    "save_plot_2d",
    "trajectory_strip",
    "save_figure",
    "COURSE_RC",
    "STILL_DPI",
    "MIN_FONT_PT",
    "MAX_PANELS",
    "course_style",
    "still_figure",
    "style_problems",
]


def _as_numpy(x, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", torch.float32).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(x, (np.ndarray, np.generic, float, int)) and not isinstance(x, bool):
        return np.asarray(x, dtype=np.float32)
    raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


def _check_images(images) -> np.ndarray:
    x = _as_numpy(images, "images")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        hint = ""
        if x.ndim == 3:
            hint = (
                " (for a batch of grayscale images (N, H, W) pass images[:, None]; "
                "for one image (C, H, W) pass image[None])"
            )
        elif x.ndim == 4 and x.shape[-1] in (1, 3):
            hint = " (channels last? pass images.permute(0, 3, 1, 2))"
        raise ValueError(f"images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError("images is empty (N = 0)")
    if not np.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values (a diverged model?)")
    return x


def to_uint8_array(x) -> np.ndarray:
    """Values in [-1, 1] to uint8 pixels: round((x + 1) * 127.5), clamped to 0..255."""
    a = _as_numpy(x, "x")
    return np.clip(np.round((a + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one picture.

    Args:
        images: (N, C, H, W), C in {1, 3}, values in [-1, 1] (a tensor or an array).
        nrow: images per row (default ceil(sqrt(N))).
        padding: pixels between images and around the border.
        pad_value: the border's value on the images' [-1, 1] scale (1.0 is white).

    Returns:
        uint8 array (H', W') for C = 1, (H', W', 3) for C = 3, with
        H' = rows * (H + padding) + padding and W' = nrow * (W + padding) + padding.
    """
    x = _check_images(images)
    n, c, h, w = x.shape
    nrow = int(math.ceil(math.sqrt(n))) if nrow is None else int(nrow)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    ncol = min(nrow, n)
    rows = int(math.ceil(n / nrow))
    pix = to_uint8_array(x)
    pad = to_uint8_array(np.float32(pad_value))
    grid = np.full((rows * (h + padding) + padding, ncol * (w + padding) + padding, c), pad, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[top : top + h, left : left + w] = pix[i].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


_atomic = atomic_write  # one implementation, in utils


def save_image_grid(
    images, path, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0, scale: int = 1
) -> Path:
    """Write :func:`image_grid` of ``images`` as a PNG at ``path`` (atomically: temp file + os.replace).

    Grayscale grids are stored as RGB with equal channels, so every pixel keeps its exact value.
    ``scale`` > 1 enlarges the grid by repeating each pixel ``scale`` times in each direction (no
    interpolation: the 8-bit values stay exact), for a grid of 28x28 images readable on a screen.
    Returns the path.
    """
    from matplotlib import image as mpimg

    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer in 1..16, got {scale!r}")
    grid = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    if grid.ndim == 2:
        grid = np.repeat(grid[..., None], 3, axis=2)
    return _atomic(path, lambda tmp: mpimg.imsave(tmp, grid, format="png"))


def save_figure(fig, path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as a PNG atomically."""
    return _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


def _new_axes(figsize):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def show_images(images, ax=None, title: str | None = None, nrow: int | None = None, padding: int = 2):
    """Draw an image grid on ``ax`` (a new figure if None), without axes. Returns the axes."""
    grid = image_grid(images, nrow=nrow, padding=padding)
    if ax is None:
        h, w = grid.shape[:2]
        scale = 6.0 / max(h, w)
        ax = _new_axes((max(2.0, w * scale), max(2.0, h * scale)))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _check_points(x, name: str) -> np.ndarray:
    a = _as_numpy(x, name)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {tuple(a.shape)}")
    return a


def plot_2d(
    samples,
    ax=None,
    ref=None,
    title: str | None = None,
    s: float = 3.0,
    alpha: float = 0.5,
    lim: float | tuple | None = None,
    color: str = "C0",
    label: str | None = None,
):
    """Scatter 2-D points (N, 2), over the reference points ``ref`` in grey if given. Returns the axes.

    ``lim``: a number L for [-L, L] on both axes, or (xmin, xmax, ymin, ymax); default: fit the data.
    """
    pts = _check_points(samples, "samples")
    if ax is None:
        ax = _new_axes((4.0, 4.0))
    if ref is not None:
        r = _check_points(ref, "ref")
        ax.scatter(r[:, 0], r[:, 1], s=s, alpha=0.3, color="0.6", linewidths=0, label="data")
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, color=color, linewidths=0, label=label)
    if lim is not None:
        box = (-lim, lim, -lim, lim) if np.isscalar(lim) else tuple(lim)
        ax.set_xlim(box[0], box[1])
        ax.set_ylim(box[2], box[3])
    ax.set_aspect("equal")
    if title is not None:
        ax.set_title(title)
    return ax


def save_plot_2d(samples, path, ref=None, title: str | None = None, lim=None) -> Path:
    """:func:`plot_2d` into a PNG at ``path`` (no pyplot state touched; written atomically)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0, 4.0))
    plot_2d(samples, ax=fig.add_subplot(1, 1, 1), ref=ref, title=title, lim=lim)
    return save_figure(fig, path)


def trajectory_strip(
    traj, index: int = 0, fig=None, show_x0: bool = True, title: str | None = None, lim=None
):
    """Two rows of a sampling chain: x_t (top) and the predicted x_0 (bottom), one column per recorded t.

    ``traj`` is a :class:`ddpm_lib.diffusion.Trajectory` (``x_t`` and ``pred_x0`` of shape (K, B, ...)).
    For images (K, B, C, H, W) the column shows example ``index``; for 2-D data (K, B, 2) it
    scatters all B points. Columns are labelled with the original timesteps. x_t is clipped to
    [-1, 1] for display. A column without a prediction (t = 0) stays empty in the bottom row.
    Returns the matplotlib Figure (a new pyplot figure if ``fig`` is None).

    ``load_trajectory`` returns a pair (Trajectory, metadata): pass its first element,
    ``load_trajectory(...)[0]``; the pair itself is refused with a TypeError that says so.
    """
    if isinstance(traj, tuple) and traj and hasattr(traj[0], "x_t"):
        raise TypeError(
            "traj is a pair (Trajectory, metadata), as load_trajectory returns: pass load_trajectory(...)[0]"
        )
    for attr in ("x_t", "pred_x0", "ts"):
        if not hasattr(traj, attr):
            raise TypeError(
                f"traj must be a ddpm_lib Trajectory (with ts, x_t, pred_x0), got {type(traj).__name__}"
            )
    xs = _as_numpy(traj.x_t, "traj.x_t")
    x0s = _as_numpy(traj.pred_x0, "traj.pred_x0")
    if xs.ndim not in (3, 5) or xs.shape[0] == 0:
        raise ValueError(
            f"traj.x_t must have shape (K, B, C, H, W) or (K, B, 2) with K >= 1, got {tuple(xs.shape)}"
        )
    K, B = xs.shape[:2]
    images = xs.ndim == 5
    if images and xs.shape[2] not in (1, 3):
        raise ValueError(f"trajectory images must have 1 or 3 channels, got {xs.shape[2]}")
    if not images and xs.shape[2] != 2:
        raise ValueError(f"trajectory points must be 2-D, got shape {tuple(xs.shape)}")
    if images and not 0 <= index < B:
        raise ValueError(f"index must be in 0..{B - 1}, got {index}")
    ts = traj.timesteps if getattr(traj, "timesteps", None) is not None else traj.ts
    ts = [int(t) for t in (ts.tolist() if hasattr(ts, "tolist") else ts)]
    rows = 2 if show_x0 else 1
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(1.6 * K, 1.7 * rows))
    axes = np.asarray(fig.subplots(rows, K, squeeze=False))
    for k in range(K):
        for r in range(rows):
            ax = axes[r, k]
            a = (xs if r == 0 else x0s)[k]
            ok = np.isfinite(a).all()
            if images:
                ax.set_axis_off()
                if ok:
                    show_images(np.clip(a[index : index + 1], -1, 1), ax=ax, padding=0)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                if ok:
                    plot_2d(a, ax=ax, s=1.5, lim=lim if lim is not None else 3.0)
            if r == 0:
                ax.set_title(f"t = {ts[k]}", fontsize=MIN_FONT_PT)
    axes[0, 0].text(
        -0.08, 0.5, r"$x_t$", transform=axes[0, 0].transAxes, ha="right", va="center", fontsize=MIN_FONT_PT
    )
    if show_x0:
        axes[1, 0].text(
            -0.08,
            0.5,
            r"pred. $x_0$",
            transform=axes[1, 0].transAxes,
            ha="right",
            va="center",
            fontsize=MIN_FONT_PT,
        )
    if title is not None:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------
# The course's figure style
# ----------------------------------------------------------------------------------------------

#: The smallest resolution of a still (a figure stored in a chapter), in dots per inch.
STILL_DPI = 100
#: The smallest text in a course figure, in points (at 100 dpi, 14 pixels: readable in JupyterLab).
MIN_FONT_PT = 10
#: The most panels (axes) a still may hold; a colorbar is part of its panel.
MAX_PANELS = 6

#: The course's rcParams. ``course_style()`` applies them.
COURSE_RC = {
    "figure.dpi": STILL_DPI,
    "savefig.dpi": "figure",
    "font.size": MIN_FONT_PT,
    "axes.titlesize": 11,
    "axes.labelsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 12,
    "legend.framealpha": 0.9,
    "mathtext.fontset": "dejavusans",
    "axes.formatter.use_mathtext": True,
    "image.interpolation": "nearest",
}


class course_style:
    """Apply the course's figure style (:data:`COURSE_RC`) now; used in a ``with`` block, undo it at the
    end of the block.

    ``course_style()`` at the top of a chapter styles every figure after it; ``with course_style():``
    styles what is drawn inside the block (the widgets' stills do this) and leaves the reader's
    rcParams as they were. Returns the context object.
    """

    def __init__(self):
        import matplotlib as mpl

        self._saved = {k: mpl.rcParams[k] for k in COURSE_RC}
        mpl.rcParams.update(COURSE_RC)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import matplotlib as mpl

        mpl.rcParams.update(self._saved)
        return False

    def __repr__(self):
        return "course_style()"

    def _ipython_display_(self):
        """Nothing to show: ``course_style()`` as a cell's last line leaves no output."""


def still_figure(figsize, **kwargs):
    """A new pyplot figure in the course style, at :data:`STILL_DPI` (``plt.show()`` stores it in a
    notebook; a Figure made outside pyplot would be left out). ``kwargs`` go to ``plt.figure``; call it
    inside ``with course_style():`` so that the text made next takes the style's sizes."""
    import matplotlib.pyplot as plt

    kwargs.setdefault("dpi", STILL_DPI)
    return plt.figure(figsize=figsize, **kwargs)


_NUMBER = re.compile(r"^[\s\d.,eE+\-\u2212^{}()]*\d[\s\d.,eE+\-\u2212^{}()]*$")


def _plain(label: str) -> str:
    for token in ("$", "\\mathdefault", "\\times", "\\cdot"):
        label = label.replace(token, "")
    return label.strip()


def _numeric(labels) -> bool:
    texts = [_plain(t.get_text()) for t in labels if t.get_visible() and t.get_text()]
    return bool(texts) and all(_NUMBER.match(t) for t in texts)


def _is_panel(ax) -> bool:
    return ax.get_visible() and getattr(ax, "_colorbar", None) is None


def _data_points(ax):
    """Display coordinates of the lines' and scatter points' data of ``ax`` (segments densified)."""
    from matplotlib.collections import PathCollection

    pts = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() != ax.transData:
            continue
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 0:
            continue
        d = ax.transData.transform(xy)
        if len(d) > 1:  # points along each segment, a few pixels apart
            steps = np.linspace(0.0, 1.0, 9)[:-1, None]
            d = np.concatenate([(a + steps * (b - a)) for a, b in zip(d[:-1], d[1:])] + [d[-1:]])
        pts.append(d)
    for c in ax.collections:
        if isinstance(c, PathCollection) and c.get_visible() and c.get_offset_transform() == ax.transData:
            off = np.asarray(c.get_offsets(), float)
            off = off[np.isfinite(off).all(axis=1)] if off.ndim == 2 else off[:0]
            if len(off):
                pts.append(ax.transData.transform(off))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _off_the_axes(ax) -> list:
    """Lines whose data leave the axes' y range where their x lies in the x range (a curve cut off)."""
    out = []
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    log = ax.get_yscale() == "log"
    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() != ax.transData:
            continue
        x = np.asarray(line.get_xdata(), float)
        y = np.asarray(line.get_ydata(), float)
        keep = np.isfinite(x) & np.isfinite(y) & (x >= x0) & (x <= x1)
        if log:
            keep &= y > 0
            y, lo, hi = np.log10(np.where(keep, y, 1.0)), np.log10(y0), np.log10(y1)
        else:
            lo, hi = y0, y1
        slack = 1e-3 * (hi - lo)
        if keep.any() and ((y[keep] > hi + slack).any() or (y[keep] < lo - slack).any()):
            out.append(line.get_label())
    return out


def style_problems(fig, min_dpi: int = STILL_DPI, max_panels: int = MAX_PANELS) -> list:
    """What ``fig`` breaks of the course's figure style, one line each ([] when nothing).

    Checked: the figure is pyplot's (so ``plt.show()`` stores it in a notebook); its dpi is at least
    ``min_dpi``; every visible text (titles, labels, tick labels, legends) is at least
    :data:`MIN_FONT_PT`; at most ``max_panels`` panels (colorbars excluded); an axis with numeric tick
    labels has a label; no legend covers a line's or a scatter's data; no curve runs off its axes'
    y range. A still that pastes widget frames (:func:`ddpm_lib.course.widgets.framework.static_only`)
    carries ``fig.frame_style`` (the frames' dpi, smallest font and panels), checked the same way.
    """
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    problems = []
    if getattr(fig.canvas, "manager", None) is None or not plt.fignum_exists(getattr(fig, "number", -1)):
        problems.append("not a pyplot figure: plt.show() would store nothing (make it with plt.figure)")
    if fig.dpi < min_dpi:
        problems.append(f"dpi {fig.dpi:g} < {min_dpi}")
    fig.canvas.draw()  # ticks and their labels exist after a draw
    small = sorted(
        {
            (round(t.get_fontsize(), 1), t.get_text()[:30])
            for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 1e-9
        }
    )
    if small:
        problems.append(f"text below {MIN_FONT_PT} pt: {small[:5]}{' ...' if len(small) > 5 else ''}")
    panels = [ax for ax in fig.axes if _is_panel(ax)]
    frames = getattr(fig, "frame_style", None)
    n_panels = frames["panels"] if frames else len(panels)
    if n_panels > max_panels:
        problems.append(f"{n_panels} panels > {max_panels}")
    if frames:
        if frames["dpi"] < min_dpi:
            problems.append(f"frames drawn at {frames['dpi']:g} dpi < {min_dpi}")
        if frames["min_font_pt"] < MIN_FONT_PT - 1e-9:
            problems.append(f"frames hold text of {frames['min_font_pt']:g} pt < {MIN_FONT_PT}")
    for i, ax in enumerate(panels):
        name = f"panel {i} ({ax.get_title()[:30]!r})"
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            if axis.get_visible() and ax.axison and _numeric(axis.get_ticklabels()) and not label.strip():
                problems.append(f"{name}: a numeric {axis.axis_name} axis without a label")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent()
            pts = _data_points(ax)
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            if inside.any():
                problems.append(f"{name}: the legend covers {int(inside.sum())} points of data")
        cut = _off_the_axes(ax)
        if cut:
            problems.append(f"{name}: curves run off the axes: {cut}")
    return problems
