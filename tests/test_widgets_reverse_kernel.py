"""Tests for what chapter 02 (elbo) adds to or relies on in ddpm_lib.course.widgets: the reverse-kernel
explorer's snapped frame cache and background prefetch, and the names the chapter takes from the
package. (The reverse kernel's mathematics, ddpm_lib.mixtures, is tested in test_mixtures.py.)"""

import atexit
import math
import threading
import time

import numpy as np
import pytest

from ddpm_lib import mixtures
from ddpm_lib.course import widgets as W
from ddpm_lib.course.widgets.framework import prefetch_in_background
from ddpm_lib.course.widgets.reverse_kernel import _ReverseDrawer
from ddpm_lib.mixtures import DEFAULT_MIXTURE

LOG_GRID = (-3.0, 0.05, 60)  # the explorer's slider: beta = 10**(-3 + 0.05 k), k = 0..59


def _drawer(log_grid=LOG_GRID):
    m = DEFAULT_MIXTURE
    return _ReverseDrawer(
        (-1.0, 0.3, 1.2), m["means"], m["stds"], m["weights"], np.linspace(-5, 5, 801), 40, log_grid=log_grid
    )


def _on_grid(k):
    lo, step, _ = LOG_GRID
    return 10.0 ** (lo + k * step)


def test_slider_values_are_snapped_and_cached():
    d = _drawer()
    a = d(_on_grid(20))
    # the same slider position as a front end might round it: the same frame object, from the cache
    assert d(_on_grid(20) * (1 + 1e-13)) is a
    # a fresh drawer that first sees the rounded value draws exactly the grid value: the same bytes
    assert _drawer()(_on_grid(20) * (1 + 1e-13))[0] == a[0]
    # off the grid: drawn as given, and different
    off = d(0.02)
    assert off[0] != a[0] and "beta = 0.02" in off[1]
    assert d._snap(0.02)[1] == ("beta", 0.02)
    assert d._snap(_on_grid(59))[1] == ("k", 59)
    assert d._snap(_on_grid(60))[1][0] == "beta"  # past the slider's last step


def test_frame_does_not_depend_on_drawing_order_or_thread():
    d1, d2 = _drawer(), _drawer()
    d1(_on_grid(50))  # another frame first
    t = threading.Thread(target=d1.prefetch, args=(_on_grid(10),))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    assert d1(_on_grid(10))[0] == d2(_on_grid(10))[0]


def test_prefetch_waits_for_the_first_change_then_goes_nearest_first():
    W_ = pytest.importorskip("ipywidgets")

    class Recorder:
        def __init__(self):
            self.calls, self.done = [], threading.Event()

        def prefetch(self, v):
            self.calls.append(v)
            if len(self.calls) == len(values):
                self.done.set()

    values = [_on_grid(k) for k in range(0, 60, 6)]
    rec = Recorder()
    control = W_.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.05)
    prefetch_in_background(rec, control, values, pause=0.0)
    time.sleep(0.05)
    assert rec.calls == []  # nothing runs before a person moves the slider
    start = _on_grid(30)
    control.value = start
    assert rec.done.wait(10)
    assert rec.calls == sorted(values, key=lambda v: abs(math.log(v / start)))
    control.value = _on_grid(40)  # a second change starts nothing new
    time.sleep(0.05)
    assert len(rec.calls) == len(values)


def test_prefetch_stops_at_exit(monkeypatch):
    W_ = pytest.importorskip("ipywidgets")
    hooks = []
    monkeypatch.setattr(atexit, "register", lambda f, *args: hooks.append((f, args)))

    class Slow:
        calls = []

        def prefetch(self, v):
            self.calls.append(v)
            time.sleep(0.02)

    values = [_on_grid(k) for k in range(60)]
    control = W_.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.05)
    prefetch_in_background(Slow(), control, values, pause=0.0)
    control.value = _on_grid(30)
    time.sleep(0.1)
    assert len(hooks) == 1
    hook, args = hooks[0]
    hook(*args)  # what the interpreter runs at exit: stop the thread and wait for it
    thread = args[1]
    assert not thread.is_alive()
    n = len(Slow.calls)
    time.sleep(0.1)
    assert 0 < n == len(Slow.calls) < len(values)


def test_explorer_prefetches_neighbours_of_the_first_step():
    pytest.importorskip("ipywidgets")
    box = W.reverse_kernel_explorer(dpi=40)
    drawer = box.explorer._draw
    box.controls["beta"].value = _on_grid(30)
    deadline = time.monotonic() + 60
    while not all(("k", k) in drawer._frames for k in (29, 31)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("k", 29) in drawer._frames and ("k", 31) in drawer._frames
    frame = drawer._frames[("k", 31)]
    box.controls["beta"].value = _on_grid(31)
    assert box.png == frame[0]


def test_the_chapter_finds_the_reverse_kernel_where_it_looks():
    # chapter 02 calls widgets.true_reverse_kernel, ... and reads widgets.DEFAULT_MIXTURE: the library's own
    for name in (
        "true_reverse_kernel",
        "gaussian_reverse_kernel",
        "moment_match",
        "kernel_kl_to_gaussian",
        "DEFAULT_MIXTURE",
    ):
        assert getattr(W, name) is getattr(mixtures, name), name
