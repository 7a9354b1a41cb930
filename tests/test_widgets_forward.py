"""What chapters 01 and 03 change in the library: the forward explorer draws only what moves with t.

The forward explorer (chapters 01 and 03) keeps its schedule-wide title in the blitted background,
drawn once per schedule, and redraws per step of t only the images, the points, the markers and one
short plain-text title (no mathtext to parse per frame): about half the drawing time of a frame.
"""

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

from ddpm_lib.course import widgets as W  # noqa: E402


@pytest.fixture(scope="module")
def box():
    imgs = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    pts = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    return W.forward_explorer(imgs, pts, T=100, t=10)


def _drawer(box):
    return box.explorer._draw


def test_title_per_schedule_in_background_and_t_in_the_moving_title(box):
    dr = _drawer(box)
    assert dr.suptitle not in dr.blit.animated, "the schedule's title should be drawn once per schedule"
    assert dr.title_pts in dr.blit.animated
    assert "$" not in dr.title_pts.get_text(), "the per-frame title should be plain text (no mathtext)"
    box.set(t=10)
    title10, sup10 = dr.title_pts.get_text(), dr.suptitle.get_text()
    box.set(t=60)
    title60, sup60 = dr.title_pts.get_text(), dr.suptitle.get_text()
    assert "t = 10" in title10 and "t = 60" in title60
    assert sup10 == sup60 and "bits/dim" in sup60 and "linear" in sup60
    box.set(schedule="cosine")
    assert dr.suptitle.get_text() != sup60 and "cosine" in dr.suptitle.get_text()
    box.set(schedule="linear", t=10)


def test_schedule_change_redraws_the_title_in_the_picture(box):
    # the background (with the title) is redrawn when the schedule changes: pictures of the same t
    # under two schedules differ, and coming back gives the first picture again, byte for byte
    box.set(t=50, schedule="linear")
    lin = box.png
    box.set(schedule="quadratic")
    quad = box.png
    assert quad != lin
    box.explorer._cache.clear()  # force a fresh draw, not a cache hit
    box.set(schedule="linear")
    assert box.png == lin


def test_images_are_drawn_with_nearest_interpolation(box):
    assert all(a.get_interpolation() == "nearest" for a in _drawer(box).img_artists)
