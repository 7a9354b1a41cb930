"""The explorers' small framework: controls -> cached PNG frames in a ``widgets.Image``.

Every explorer of the course (one module each in this package) is a drawing function
``draw(**values) -> (png_bytes, readout_html)`` handed to :func:`explorer`, which returns an
ipywidgets container (an ``ExplorerBox``, a ``VBox``). With ``static=True`` each explorer returns
a matplotlib Figure instead, its *still*: a few representative settings in one picture (for a static
page, or a machine with no front end).

Stills keep the course's figure style (:func:`ddpm_lib.viz.course_style`, checked by
:func:`ddpm_lib.viz.style_problems`): pyplot figures (so ``plt.show()`` stores them in a notebook) at
100 dpi, text of 10 pt or more, labelled axes, legends off the data, at most 6 panels. Each explorer
draws its own still (``still=`` of :class:`Explorer`; :func:`mosaic_still` for pictures of images);
:func:`static_only` pastes whole frames one under another for an explorer without one. Frames are
drawn at :data:`FRAME_DPI` with the same text sizes.

How they stay fast: every picture is a PNG drawn by one persistent matplotlib figure whose
artists are updated in place (:class:`Blitter`), or pasted together with Pillow
(:class:`ImageGrid`), then cached by the controls' values, and shown in a ``widgets.Image``;
moving a slider back to a value seen before costs a dictionary lookup. The content is
deterministic: noise and samples come from seeded generators and stay fixed, so only the
controls change the picture.

The returned box has, for tests and homework:

    box.controls      dict name -> control widget (set ``.value`` to move it)
    box.image         the ``widgets.Image`` showing the current picture (``.value`` is PNG bytes)
    box.readout       a ``widgets.HTML`` line with the numbers for the current setting
    box.png           the current picture, PNG bytes (same as ``box.image.value``)
    box.set(**values) set several controls at once (one redraw)
    box.render(**values) the PNG for a setting, without touching the controls (cached)
    box.static_figure() the still: a pyplot Figure of a few settings (end the cell with ``plt.show()``)

Shown where no widget front end runs (nbconvert, GitHub), the box falls back to its current
picture: its display bundle carries an ``image/png`` beside the widget view.

ipywidgets, matplotlib and Pillow are imported only inside these functions: importing the
package works without them.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = [
    "Blitter",
    "Explorer",
    "explorer",
    "new_figure",
    "static_only",
    "mosaic_still",
    "vary_titles",
    "FRAME_DPI",
    "prefetch_in_background",
    "default_images",
    "ImageGrid",
    "to_pixels",
    "pil_font",
    "FRAME_FONT_PX",
    "nearest",
    "steps_slider",
]


#: The resolution of the explorers' frames (the pictures in the widget and in its fallback PNG).
FRAME_DPI = 100

# ----------------------------------------------------------------------------------------------
# The explorer: controls -> cached PNG frames in a widgets.Image
# ----------------------------------------------------------------------------------------------


def _canvas_png(fig) -> bytes:
    """The Agg canvas as it stands (no redraw), as an RGB PNG with fast compression."""
    from PIL import Image

    w, h = fig.canvas.get_width_height()
    im = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format="png", compress_level=1)
    return buf.getvalue()


class Blitter:
    """Draws a figure's static part once per layout (axes, ticks, labels, fixed curves) and
    then only its animated artists per frame: about 50 ms a frame instead of 250 ms."""

    def __init__(self, fig, animated):
        self.fig = fig
        self.animated = list(animated)
        for a in self.animated:
            a.set_animated(True)
        self._layout = object()
        self._bg = None

    def frame(self, layout_key=None) -> bytes:
        canvas = self.fig.canvas
        if self._bg is None or layout_key != self._layout:
            canvas.draw()  # animated artists are left out of a full draw
            self._bg = canvas.copy_from_bbox(self.fig.bbox)
            self._layout = layout_key
        canvas.restore_region(self._bg)
        for a in self.animated:
            self.fig.draw_artist(a)
        return _canvas_png(self.fig)


def new_figure(figsize, dpi):
    """A matplotlib Figure on its own Agg canvas, outside pyplot (pyplot neither shows nor keeps it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _key(values: dict) -> tuple:
    return tuple((k, round(v, 12) if isinstance(v, float) else v) for k, v in sorted(values.items()))


class Explorer:
    """Turns a drawing function into a cached widget.

    :param draw: ``draw(**values) -> (png_bytes, readout_html)`` for one setting of the controls.
    :param controls: an ordered dict name -> ipywidgets control (its ``.value`` is passed to draw).
    :param title: an HTML line above the controls.
    :param cache_size: how many frames to keep (least recently used are dropped).
    :param on_change: optional ``on_change(explorer, name, value)`` called before a redraw
        (to adjust other controls, e.g. a slider's range).
    :param static_settings: the settings the still shows by default (default: the current one).
    :param still: optional ``still(settings, titles) -> Figure`` drawing the still of complete
        settings (every control named) in the course style, titled by ``titles`` (None: its own, e.g.
        :func:`vary_titles`); without it, :func:`static_only` pastes the frames one under another.
    """

    def __init__(
        self,
        draw: Callable,
        controls: dict,
        title: str = "",
        cache_size: int = 512,
        on_change: Callable | None = None,
        static_settings: Sequence[dict] = (),
        still: Callable | None = None,
    ):
        import ipywidgets as W

        self._draw = draw
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = int(cache_size)
        self.controls = dict(controls)
        self.on_change = on_change
        self.static_settings = list(static_settings)
        self.still = still
        self._hold = False
        png, html = self.render_full(**self.values())
        self.image = W.Image(value=png, format="png", layout=W.Layout(max_width="100%"))
        self.readout = W.HTML(value=html)
        rows = [W.HTML(value=title)] if title else []
        rows += [W.HBox(list(self.controls.values())[i : i + 3]) for i in range(0, len(self.controls), 3)]
        rows += [self.readout, self.image]
        self.box = _box_class()(children=rows)
        self.box.explorer = self
        self.box.controls = self.controls
        self.box.image = self.image
        self.box.readout = self.readout
        self.box.set = self.set
        self.box.render = self.render
        self.box.static_figure = self.static_figure
        for name, c in self.controls.items():
            c.observe(self._observer(name), names="value")

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def render_full(self, **values) -> tuple[bytes, str]:
        key = _key(values)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._draw(**values)
            self._cache[key] = hit
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return hit

    def render(self, **values) -> bytes:
        """The PNG for a setting (missing names take the controls' current values)."""
        return self.render_full(**{**self.values(), **values})[0]

    @property
    def png(self) -> bytes:
        return self.image.value

    def refresh(self) -> None:
        png, html = self.render_full(**self.values())
        if self.image.value != png:
            self.image.value = png
        if self.readout.value != html:
            self.readout.value = html

    def set(self, **values) -> None:
        """Set several controls, then redraw once. A number given to a selection control whose
        options are numbers (a slider over recorded t) snaps to the nearest option."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise KeyError(f"unknown controls {sorted(unknown)}; known: {sorted(self.controls)}")
        self._hold = True
        try:
            for k, v in values.items():
                self.controls[k].value = _snap_to_option(self.controls[k], v)
        finally:
            self._hold = False
        self.refresh()

    def _observer(self, name):
        def cb(change):
            if self.on_change is not None:
                held, self._hold = self._hold, True
                try:
                    self.on_change(self, name, change["new"])
                finally:
                    self._hold = held
            if not self._hold:
                self.refresh()

        return cb

    def static_figure(self, settings: Sequence[dict] | None = None, titles: Sequence[str] | None = None):
        """The still: a pyplot Figure of a few settings (default: the widget's representative ones).
        A setting may name only some controls; the others take their current values. The titles
        default to the controls that differ between the settings (:func:`vary_titles`)."""
        given = list(settings if settings is not None else self.static_settings) or [self.values()]
        full = [{**self.values(), **s} for s in given]
        if self.still is not None:
            return self.still(full, None if titles is None else list(titles))
        return static_only(self._draw, full, list(titles) if titles is not None else vary_titles(given))


def _snap_to_option(control, v):
    """v, or the nearest of a selection control's numeric option values (ties go to the larger)."""
    options = getattr(control, "options", None)
    if not options or isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    vals = [o[1] if isinstance(o, tuple) else o for o in options]
    if v in vals or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in vals):
        return v
    return nearest(vals, v)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


_BOX = None


def _box_class():
    """``ExplorerBox``: a VBox whose display bundle also carries its current picture as PNG,
    shown where no widget front end runs."""
    global _BOX
    if _BOX is None:
        import ipywidgets as W

        class ExplorerBox(W.VBox):
            @property
            def png(self) -> bytes:
                return self.image.value

            def __repr__(self):
                return f"<{self.explorer.name} widget; controls: {', '.join(self.controls)}>"

            def _repr_mimebundle_(self, **kwargs):
                from .export import export_if_requested

                export_if_requested(self.explorer)  # frames for the static edition, when asked
                data = super()._repr_mimebundle_(**kwargs)
                data["text/plain"] = repr(self)
                data["image/png"] = base64.b64encode(self.image.value).decode("ascii")
                return data

            def _repr_png_(self):
                return self.image.value

        _BOX = ExplorerBox
    return _BOX


def explorer(name, draw, controls, **kw):
    """An :class:`Explorer` of ``draw`` named ``name`` (its repr and display say it), as its
    ``ExplorerBox`` (the widget to display); keyword arguments go to :class:`Explorer`."""
    ex = Explorer(draw, controls, **kw)
    ex.name = name
    return ex.box


def vary_titles(settings: Sequence[dict], names: dict | None = None) -> list:
    """A title per setting naming the values that differ between the settings (all of them when
    none differ): ``[{t: 1, T: 100}, {t: 50, T: 100}]`` -> ``["t = 1", "t = 50"]``. ``names`` maps a
    control to the name shown (mathtext welcome), or to None to show its value alone."""
    names = names or {}
    settings = list(settings)
    keys = list(dict.fromkeys(k for s in settings for k in s))
    vary = [k for k in keys if len({_fmt(s.get(k)) for s in settings}) > 1] or keys

    def part(k, v):
        name = names.get(k, k)
        return _fmt(v) if name is None else f"{name} = {_fmt(v)}"

    return [", ".join(part(k, s[k]) for k in vary if k in s) for s in settings]


def static_only(drawer, settings, titles=None):
    """The still of an explorer without its own: the frames ``drawer(**s)[0]`` for ``settings``, one
    under another at one image pixel per screen pixel, in a pyplot figure at :data:`FRAME_DPI`.

    Draw the frames at :data:`FRAME_DPI` with text of 10 pt or more. When ``drawer`` has the figure
    it draws frames on (``drawer.fig``), the still carries ``frame_style`` (the frames' dpi, smallest
    text and panels in all) for :func:`ddpm_lib.viz.style_problems`.
    """
    import matplotlib.image as mpimg
    from matplotlib.text import Text

    from ...viz import MIN_FONT_PT, course_style, still_figure

    frames, fonts, panels = [], [], 0
    frame_fig = getattr(drawer, "fig", None)
    for s in settings:
        frames.append(mpimg.imread(io.BytesIO(drawer(**s)[0]), format="png"))
        if frame_fig is not None:
            panels += sum(1 for ax in frame_fig.axes if ax.get_visible())
            fonts += [t.get_fontsize() for t in frame_fig.findobj(Text) if t.get_visible() and t.get_text()]
    titles = list(titles) if titles is not None else vary_titles(settings)
    dpi = FRAME_DPI
    title_in = 0.3
    h = sum(f.shape[0] for f in frames) / dpi + title_in * len(frames)
    w = max(f.shape[1] for f in frames) / dpi
    with course_style():
        fig = still_figure((w, h), dpi=dpi)
        y = 1.0
        for f, title in zip(frames, titles):
            fh = f.shape[0] / dpi / h
            y -= title_in / h
            fig.text(0.5, y + 0.25 * title_in / h, title, ha="center", va="bottom", fontsize=MIN_FONT_PT + 1)
            y -= fh
            ax = fig.add_axes((0.0, y, f.shape[1] / dpi / w, fh))
            ax.imshow(f, interpolation="nearest")
            ax.set_axis_off()
    if frame_fig is not None:
        fig.frame_style = {
            "dpi": float(frame_fig.dpi),
            "min_font_pt": min(fonts, default=MIN_FONT_PT),
            "panels": panels,
        }
    return fig


def mosaic_still(
    cells,
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    title: str = "",
    cell_inches: float = 0.72,
    pad: int = 2,
    note: str = "",
):
    """A still of one panel: a mosaic of images, ``cells[r][c]`` an (H, W, 3) uint8 array or None
    (left white), rows and columns named by ``row_labels`` and ``col_labels`` (tick labels, 10 pt),
    a ``title`` above and a ``note`` below. Each image is ``cell_inches`` wide at 100 dpi. Returns a
    pyplot Figure in the course style."""
    from ...viz import course_style, still_figure

    shapes = [a.shape for row in cells for a in row if a is not None]
    if not shapes:
        raise ValueError("mosaic_still needs at least one image")
    H, W = shapes[0][:2]
    R, C = len(cells), max(len(row) for row in cells)
    mosaic = np.full((R * (H + pad) + pad, C * (W + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, a in enumerate(row):
            if a is not None:
                y, x = pad + r * (H + pad), pad + c * (W + pad)
                mosaic[y : y + H, x : x + W] = a
    longest = max((len(s.split("\n")[0]) for s in row_labels), default=0)
    label_in = 0.09 * longest + 0.3
    width = C * cell_inches + label_in + 0.3
    height = R * cell_inches + (0.45 if col_labels else 0.1) + (0.45 if title else 0) + (0.4 if note else 0)
    with course_style():
        fig = still_figure((width, height), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_xticks([pad + c * (W + pad) + W / 2 for c in range(len(col_labels))])
        ax.set_xticklabels(list(col_labels))
        ax.xaxis.tick_top()
        ax.set_yticks([pad + r * (H + pad) + H / 2 for r in range(len(row_labels))])
        ax.set_yticklabels(list(row_labels))
        ax.tick_params(length=0)
        for sp in ax.spines.values():
            sp.set_visible(False)
        if title:
            fig.suptitle(title)
        if note:
            ax.set_xlabel(note)
    return fig


def prefetch_in_background(drawer, control, values, pause: float = 0.02, name: str = "explorer frames"):
    """On the first change of ``control``, draw the frames for ``values`` in a daemon thread, nearest to
    that first value (in log scale) first, so that the following slider steps find their frame ready.

    Nothing runs until a person (or a test) moves the control, so executing a notebook pays nothing.
    ``drawer.prefetch`` waits for any slider step being answered and serializes drawing with the
    drawer's lock; the short ``pause`` between frames lets the kernel's main thread in. At interpreter
    exit the thread is stopped and joined (a daemon thread killed inside a torch call can abort the
    process). ``name`` names the thread. Returns the ``threading.Event`` that stops it.
    """
    import atexit
    import threading

    stop = threading.Event()
    started = []

    def run(start):
        for v in sorted(values, key=lambda v: abs(math.log(v / start))):
            if stop.is_set():
                return
            drawer.prefetch(v)
            stop.wait(pause)

    def on_change(change):
        if not started and change["new"] > 0:
            thread = threading.Thread(target=run, args=(float(change["new"]),), daemon=True, name=name)
            started.append(thread)
            atexit.register(_stop_thread, stop, thread)
            thread.start()

    control.observe(on_change, names="value")
    return stop


def _stop_thread(stop, thread, timeout: float = 30.0) -> None:
    stop.set()
    if thread.is_alive():
        thread.join(timeout)


# ----------------------------------------------------------------------------------------------
# Default images (the forward and inpainting explorers)
# ----------------------------------------------------------------------------------------------


def _synthetic_images(n: int) -> torch.Tensor:
    """Four simple 28 x 28 shapes in [-1, 1], used only when Fashion-MNIST is not found."""
    y, x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    shapes = [
        ((x - 13.5) ** 2 + (y - 13.5) ** 2 < 90),
        ((x > 6) & (x < 21) & (y > 6) & (y < 21)),
        ((x.long() // 4) % 2 == 0),
        ((x - y).abs() < 3) | ((x + y - 27).abs() < 3),
    ]
    imgs = torch.stack([shapes[i % 4].float() * 2 - 1 for i in range(n)])
    return imgs[:, None]


def default_images(n: int = 4) -> torch.Tensor:
    """n (1..10) Fashion-MNIST test images of different classes, the first of each class in the test
    set (deterministic), as (n, 1, 28, 28) in [-1, 1]; four simple shapes, with a warning, when the
    images are not found (no download)."""
    from ...data import fashion_mnist_examples

    try:
        return fashion_mnist_examples((9, 2, 1, 8, 0, 3, 4, 5, 6, 7)[:n], "test", download=False)
    except (FileNotFoundError, OSError, ValueError) as e:
        warnings.warn(
            f"Fashion-MNIST test images not found ({e}); forward_explorer shows simple shapes instead",
            stacklevel=3,
        )
        return _synthetic_images(n)


# ----------------------------------------------------------------------------------------------
# Pictures without matplotlib: numpy mosaics with Pillow labels (a few milliseconds a frame)
# ----------------------------------------------------------------------------------------------


#: Text in frames drawn with Pillow, in pixels: 10 pt at :data:`FRAME_DPI`.
FRAME_FONT_PX = 14


def pil_font(size: int):
    """Pillow's default font at ``size`` pixels (a fixed bitmap font before Pillow 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def to_pixels(x: np.ndarray, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """(C, H, W) values -> (H, W, 3) uint8, [lo, hi] mapped to 0..255 and clipped; NaN -> mid grey."""
    a = np.nan_to_num(x, nan=(lo + hi) / 2)
    a = np.clip(np.round((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    a = a.transpose(1, 2, 0)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


class ImageGrid:
    """A fixed layout of image cells with column and row titles, drawn once; :meth:`png` pastes
    images into a copy and writes a header line, so a frame costs a few milliseconds.

    :param nrows, ncols: cells; :param shape: (C, H, W) of every image; :param scale: pixel repeat.
    """

    def __init__(
        self,
        nrows: int,
        ncols: int,
        shape,
        col_titles: Sequence[str] = (),
        row_titles: Sequence[str] = (),
        scale: int = 3,
        gap: int = 4,
        header: bool = True,
    ):
        from PIL import Image, ImageDraw

        self.scale, self.gap = int(scale), int(gap)
        self.h, self.w = int(shape[1]) * self.scale, int(shape[2]) * self.scale
        self.top = (22 if header else 0) + (19 if col_titles else 0)
        self.left = 90 if row_titles else 0
        self.nrows, self.ncols = int(nrows), int(ncols)
        H = self.top + self.nrows * (self.h + self.gap) + self.gap
        W = self.left + self.ncols * (self.w + self.gap) + self.gap
        self.template = Image.new("RGB", (W, H), (255, 255, 255))
        draw = ImageDraw.Draw(self.template)
        font = pil_font(FRAME_FONT_PX)
        for c, title in enumerate(col_titles):
            draw.text(
                (self.left + self.gap + c * (self.w + self.gap), self.top - 18),
                title,
                fill=(40, 40, 40),
                font=font,
            )
        for r, title in enumerate(row_titles):
            draw.text(
                (2, self.top + r * (self.h + self.gap) + self.h // 2 - 7), title, fill=(40, 40, 40), font=font
            )
        self.header_font = pil_font(FRAME_FONT_PX)

    def cell_origin(self, r: int, c: int) -> tuple:
        return self.left + self.gap + c * (self.w + self.gap), self.top + r * (self.h + self.gap)

    def png(self, rows, header: str = "", ranges: Sequence = (), highlight=None) -> bytes:
        """``rows[r][c]``: (C, H, W) values or None (blank); ``ranges[c]`` = (lo, hi) for column c
        (default (-1, 1)); ``highlight`` = (r, c) frames one cell in red."""
        from PIL import Image, ImageDraw

        canvas = self.template.copy()
        draw = ImageDraw.Draw(canvas)
        if header:
            draw.text((self.gap, 2), header, fill=(0, 0, 0), font=self.header_font)
        for r, row in enumerate(rows):
            for c, a in enumerate(row):
                if a is None:
                    continue
                lo, hi = ranges[c] if c < len(ranges) and ranges[c] is not None else (-1.0, 1.0)
                pix = to_pixels(a, lo, hi)
                pix = np.repeat(np.repeat(pix, self.scale, axis=0), self.scale, axis=1)
                x, y = self.cell_origin(r, c)
                canvas.paste(Image.fromarray(pix), (x, y))
                if highlight is not None and tuple(highlight) == (r, c):
                    draw.rectangle(
                        [x - 2, y - 2, x + self.w + 1, y + self.h + 1], outline=(220, 30, 30), width=2
                    )
        buf = io.BytesIO()
        canvas.save(buf, format="png", compress_level=1)
        return buf.getvalue()


def nearest(values: Sequence[int], v) -> int:
    """The element of ``values`` nearest to v (ties go to the larger one)."""
    return min(values, key=lambda a: (abs(a - v), -a))


def steps_slider(W, values: Sequence, value, description: str, width: str = "520px", fmt=str):
    """A slider over the given values only (sorted), starting at the one nearest ``value``: each
    step, a key press or a drag notch, lands on a value that has its own frame."""
    values = sorted(values)
    return W.SelectionSlider(
        options=[(fmt(v), v) for v in values],
        value=nearest(values, value),
        description=description,
        continuous_update=True,
        layout=W.Layout(width=width),
    )
