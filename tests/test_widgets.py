"""The course's widgets without a browser: pictures change with the controls, come back from
the cache, update fast enough, fall back to a static figure; the package's names. (The reverse
kernel's mathematics is tested in test_mixtures.py.)"""

import statistics
import time

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from ddpm_lib import viz  # noqa: E402
from ddpm_lib.course import widgets as W  # noqa: E402

# per-step budget on a loaded 2-core machine (the widgets aim at about 0.1 s unloaded)
STEP_BUDGET_S = 0.5


def _scrub(box, name, values):
    """Set control `name` to each value; return the seconds each update took."""
    times = []
    for v in values:
        t0 = time.perf_counter()
        box.controls[name].value = v
        times.append(time.perf_counter() - t0)
    return times


def _check_widget(box, name, values, capsys=None):
    first = box.png
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert box.image.value == first
    v0 = box.controls[name].value
    times = _scrub(box, name, values)
    assert box.png != first, f"moving {name} did not change the picture"
    box.controls[name].value = v0
    assert box.png == first, f"moving {name} back did not restore the first picture"
    med = statistics.median(times)
    print(f"{box.explorer.name}: median {med * 1000:.0f} ms per {name} step over {len(times)} new values")
    assert med < STEP_BUDGET_S
    # a value seen before comes from the cache
    t0 = time.perf_counter()
    box.controls[name].value = values[0]
    assert time.perf_counter() - t0 < STEP_BUDGET_S
    return med


@pytest.fixture(scope="module")
def forward():
    return W.forward_explorer()


def test_forward_explorer_t(forward):
    assert set(forward.controls) == {"t", "schedule", "beta_1", "beta_T", "T"}
    _check_widget(forward, "t", [5, 50, 100, 400, 700, 1000, 3])
    assert "bits/dim" in forward.readout.value


def test_forward_explorer_schedule_and_T(forward):
    forward.set(t=250, schedule="linear", T=1000)
    lin = forward.png
    forward.controls["schedule"].value = "cosine"
    assert forward.png != lin
    assert forward.controls["beta_1"].disabled
    forward.controls["schedule"].value = "linear"
    assert forward.png == lin
    forward.controls["beta_T"].value = 0.1
    assert forward.png != lin
    forward.controls["beta_T"].value = 0.02
    forward.controls["T"].value = 100  # t keeps its place along the chain
    assert forward.controls["t"].max == 100 and forward.controls["t"].value == 25
    forward.set(T=1000, t=250)
    assert forward.png == lin


def test_forward_explorer_custom_data_deterministic():
    imgs = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    pts = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    a = W.forward_explorer(imgs, pts, T=100)
    b = W.forward_explorer(imgs, pts, T=100)
    assert a.png == b.png
    assert a.render(t=60) == b.render(t=60) != a.png


def test_reverse_kernel_explorer():
    box = W.reverse_kernel_explorer()
    assert set(box.controls) == {"beta"}
    _check_widget(box, "beta", [0.002, 0.02, 0.1, 0.3, 0.6, 0.9])
    assert "KL" in box.readout.value


def test_posterior_explorer():
    box = W.posterior_explorer()
    assert set(box.controls) == {"t"}
    _check_widget(box, "t", [1, 2, 10, 300, 600, 1000])
    assert "beta~" in box.readout.value


@pytest.mark.parametrize(
    "make, panels",
    [(W.forward_explorer, 2), (W.reverse_kernel_explorer, 4), (W.posterior_explorer, 5)],
)
def test_static_fallback_is_a_still_in_the_course_style(make, panels):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = make(static=True)
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == panels
    assert viz.style_problems(fig) == []
    plt.close(fig)


def test_stills_of_the_chapters_settings_keep_the_style():
    # the settings chapters 01, 03 and 04 pass, partial (the other controls keep their values)
    import matplotlib.pyplot as plt

    box = W.forward_explorer(t=100)
    for settings in (
        [dict(t=100), dict(t=1000), dict(t=1000, beta_T=0.002)],
        [dict(t=500, schedule=s) for s in ("linear", "cosine", "quadratic")] + [dict(T=100, t=100)],
    ):
        fig = box.static_figure(settings)
        assert viz.style_problems(fig) == []
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert len(labels) == len(settings) and all("alpha" in lab for lab in labels)
        plt.close(fig)
    with pytest.raises(ValueError, match="1 to 6 settings"):
        box.static_figure([dict(t=v) for v in range(1, 8)])
    fig = W.posterior_explorer().static_figure([dict(t=1), dict(t=2)])  # t = 1: the prior is a point mass
    assert viz.style_problems(fig) == []
    plt.close(fig)


def test_box_display_bundle_has_png():
    box = W.posterior_explorer()
    data = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "image/png" in data
    assert "posterior_explorer" in data["text/plain"]
    from matplotlib.figure import Figure

    fig = box.static_figure()
    assert isinstance(fig, Figure) and viz.style_problems(fig) == []


@pytest.mark.slow
def test_import_without_ipywidgets_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, ddpm_lib, ddpm_lib.course.widgets; "
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- the package ---------------------------------------------------------------------------------


def test_every_public_name_resolves_and_explorers_live_one_per_module():
    import importlib

    for name in W.__all__:
        obj = getattr(W, name)
        if name.endswith("_explorer"):
            module = obj.__module__.rsplit(".", 1)[-1]
            assert module not in ("widgets", "framework"), f"{name} lives in {obj.__module__}"
    fw = importlib.import_module("ddpm_lib.course.widgets.framework")
    assert W.Explorer is fw.Explorer and W.Blitter is fw.Blitter
    with pytest.raises(AttributeError, match="no attribute"):
        W.no_such_explorer


class _FramesOn:
    """A drawer on one figure (as chapter 08's): a marker moved along a line per frame."""

    def __init__(self, dpi, fontsize):
        from ddpm_lib.course.widgets.framework import new_figure

        self.fig = new_figure((4, 2.5), dpi)
        ax = self.fig.add_subplot(1, 1, 1)
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("x", fontsize=fontsize)
        ax.set_ylabel("y", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize)
        (self.mark,) = ax.plot([0], [0], "o")
        self.blit = W.Blitter(self.fig, [self.mark])

    def __call__(self, v):
        self.mark.set_data([v], [v])
        return self.blit.frame(), f"v = {v}"


def test_a_still_of_pasted_frames_is_checked_by_the_frames_it_pastes():
    import ipywidgets as ipw
    import matplotlib.pyplot as plt

    def still_of(dpi, fontsize, n):
        ex = W.Explorer(
            _FramesOn(dpi, fontsize),
            {"v": ipw.FloatSlider(value=0.5, min=0, max=1)},
            static_settings=[dict(v=v) for v in (0.1, 0.5, 0.9)[:n]],
        )
        return ex.static_figure()

    fig = still_of(100, 10, 3)
    assert fig.frame_style["panels"] == 3 and viz.style_problems(fig) == []
    assert [t.get_text() for t in fig.texts] == ["v = 0.1", "v = 0.5", "v = 0.9"]
    plt.close(fig)
    problems = viz.style_problems(still_of(72, 7, 3))
    assert any("frames drawn at 72 dpi" in p for p in problems)
    assert any("frames hold text of 7 pt" in p for p in problems)
    plt.close("all")
