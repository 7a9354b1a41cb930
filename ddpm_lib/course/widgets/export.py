"""An explorer's frames for a page with no kernel: every setting of its controls (or a documented
subset), drawn once and written as WebP images with a table that the static edition's scrubber
reads (``ddpm-book html``, :mod:`ddpm_lib.course.site`).

The controls are described once, by the ipywidgets controls the live widget shows: a slider over a
few values or a dropdown becomes a range input or a select over the same values and labels; a long
numeric slider is thinned to at most ``max_values`` values, evenly spaced, ends and current value
kept. A setting is drawn by moving the live controls (``Explorer.set``), so whatever a control's
``on_change`` does (a slider's range following T, say) happens as it does for a reader; a
combination the controls do not keep as given (t beyond a smaller T) is drawn as the live widget
shows it, and its entry lists the values shown, which the scrubber prints beside its inputs.

When the product of the value counts exceeds ``max_frames``, the controls are taken in order, each
in full while the grid stays within ``max_frames``; each remaining control gets its values one at
a time, the others at the widget's starting values. The table says which (``subset``).

While ``$DDPM_SITE_FRAMES`` names a folder, every explorer displayed in the kernel writes its frames
there (``explorer-<k>/``, k counting the explorers displayed, from 1): how ``ddpm-book html`` gets
them from a chapter.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["FRAMES_ENV", "control_values", "export_frames", "export_if_requested"]

#: The environment variable that makes displayed explorers write their frames (a folder).
FRAMES_ENV = "DDPM_SITE_FRAMES"
MAX_VALUES = 25
MAX_FRAMES = 160


def _thin(values: list, current, max_values: int) -> list:
    """At most ``max_values`` of ``values``, evenly spaced, the ends and ``current`` (one of them) kept:
    ``current`` takes the place of the pick nearest to it."""
    if len(values) <= max_values:
        return values
    picks = sorted({round(i * (len(values) - 1) / (max_values - 1)) for i in range(max_values)})
    at = values.index(current)
    if at not in picks:
        inner = picks[1:-1] or picks
        nearest_pick = min(inner, key=lambda k: abs(k - at))
        picks = sorted(set(picks) - {nearest_pick} | {at})
    return [values[k] for k in picks]


def _label(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def control_values(control, max_values: int = MAX_VALUES) -> dict:
    """One control as the scrubber shows it: ``{"name", "description", "kind"}`` ("range" or
    "select"), ``values`` (what ``Explorer.set`` takes), ``labels`` (what a reader sees) and
    ``index`` (the starting value's position).

    :param control: an ipywidgets control (a selection control, an int, float or log slider, or a
        checkbox).
    :raises TypeError: for a control of another kind.
    """
    import ipywidgets as W

    options = getattr(control, "options", None)
    if options is not None:  # Dropdown, SelectionSlider, ToggleButtons ...
        pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
        labels, values = [str(a) for a, _ in pairs], [b for _, b in pairs]
        kind = "range" if isinstance(control, W.SelectionSlider) else "select"
    elif isinstance(control, W.Checkbox):
        values, labels, kind = [False, True], ["off", "on"], "select"
    elif isinstance(control, W.FloatLogSlider):
        n = int(round((control.max - control.min) / control.step)) + 1
        values = [float(control.base ** (control.min + i * control.step)) for i in range(n)]
        labels, kind = [_label(v) for v in values], "range"
    elif isinstance(control, (W.IntSlider, W.FloatSlider)):
        n = int(math.floor((control.max - control.min) / control.step + 1e-9)) + 1
        values = [control.min + i * control.step for i in range(n)]
        if isinstance(control, W.FloatSlider):
            values = [float(round(v, 12)) for v in values]
        labels, kind = [_label(v) for v in values], "range"
    else:
        raise TypeError(
            f"control {control.description!r}: a {type(control).__name__} has no frames to export"
        )
    current = control.value
    if current not in values:  # a slider's value between its steps (a log slider's 0.02): kept as is
        at = next((i for i, v in enumerate(values) if v > current), len(values))
        values.insert(at, current)
        labels.insert(at, _label(current))
    keep = _thin(values, current, max_values)
    return {
        "description": control.description or "",
        "kind": kind,
        "values": keep,
        "labels": [labels[values.index(v)] for v in keep],
        "index": keep.index(current),
    }


def _grid(counts: list, start: list, max_frames: int) -> tuple[list, str]:
    """The index tuples to draw and a sentence saying which."""
    full, size = [], 1
    for i, n in enumerate(counts):
        if size * n > max_frames:
            break
        full.append(i)
        size *= n
    rest = [i for i in range(len(counts)) if i not in full]
    combos = set()
    for flat in range(size):
        idx, r = list(start), flat
        for i in reversed(full):
            idx[i], r = r % counts[i], r // counts[i]
        combos.add(tuple(idx))
    for i in rest:
        for j in range(counts[i]):
            idx = list(start)
            idx[i] = j
            combos.add(tuple(idx))
    subset = "" if not rest else "every combination of the first controls; the others one at a time"
    return sorted(combos), subset


def _webp(data: bytes) -> bytes:
    """A frame for the web: lossy WebP at quality 85 (about half the size of the widget's PNG, and
    every browser of the last years shows it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="webp", quality=85, method=2)
    return buf.getvalue()


def export_frames(explorer, folder, *, max_values: int = MAX_VALUES, max_frames: int = MAX_FRAMES) -> dict:
    """Draw ``explorer``'s frames into ``folder`` (``<key>.webp`` and ``frames.json``); returns the table.

    :param explorer: an :class:`~ddpm_lib.course.widgets.framework.Explorer` (or its box).
    :param folder: created if missing; files of an earlier export there are replaced.
    :return: ``{"name", "controls": [control_values(...) + {"name"}], "frames": {key: [file,
        readout_html] or [file, readout_html, labels shown]}, "subset"}``, key the values' indices
        joined by "_"; the labels are there when the controls showed other values than the key's.
    """
    ex = getattr(explorer, "explorer", explorer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(ex.controls)
    controls = []
    for name in names:
        spec = control_values(ex.controls[name], max_values)
        controls.append({"name": name, **spec})
    start_values = ex.values()
    combos, subset = _grid([len(c["values"]) for c in controls], [c["index"] for c in controls], max_frames)
    frames = {}
    try:
        # the first control (t, mostly) varies fastest: a Blitter redraws only its animated artists
        for idx in sorted(combos, key=lambda c: c[::-1]):
            want = {c["name"]: c["values"][i] for c, i in zip(controls, idx)}
            ex.set(**want)
            got = ex.values()
            if not _all_same(got, want):  # an on_change moved a control set before: once more
                ex.set(**want)
                got = ex.values()
            png, readout = ex.render_full(**got)
            key = "_".join(map(str, idx))
            (folder / f"{key}.webp").write_bytes(_webp(png))
            frames[key] = [f"{key}.webp", readout]
            if not _all_same(
                got, want
            ):  # the controls do not keep it (t beyond a smaller T): say what is shown
                frames[key].append([_shown(c, got[c["name"]]) for c in controls])
    finally:
        ex.set(**start_values)
    table = {
        "name": getattr(ex, "name", "explorer"),
        "controls": [
            {k: v for k, v in c.items() if k != "values"} | {"values": [_jsonable(v) for v in c["values"]]}
            for c in controls
        ],
        "frames": frames,
        "subset": subset,
    }
    (folder / "frames.json").write_text(json.dumps(table, indent=1), encoding="utf-8")
    return table


def _all_same(got: dict, want: dict) -> bool:
    return all(_same(got[k], v) for k, v in want.items())


def _shown(control: dict, value) -> str:
    """The label of ``value`` for a control: its own label when it is one of the control's values."""
    for v, label in zip(control["values"], control["labels"]):
        if _same(v, value):
            return label
    return _label(value)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def _jsonable(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)


_COUNT = 0


def export_if_requested(explorer) -> None:
    """Called when an explorer is displayed: with ``$DDPM_SITE_FRAMES`` set, write its frames to
    ``$DDPM_SITE_FRAMES/explorer-<k>``."""
    global _COUNT
    root = os.environ.get(FRAMES_ENV)
    if not root:
        return
    ex = getattr(explorer, "explorer", explorer)
    if getattr(ex, "_exported", False):  # displayed twice: one export
        return
    _COUNT += 1
    ex._exported = True
    export_frames(ex, Path(root) / f"explorer-{_COUNT}")
