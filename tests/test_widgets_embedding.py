"""Chapter 08's time-embedding explorer without a browser: the slider changes the picture and the
readout, moving it back restores both, the still keeps the course style, bad input raises."""

import statistics
import time

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import ddpm_lib as dl  # noqa: E402
from ddpm_lib.course import widgets as W  # noqa: E402
from ddpm_lib.viz import style_problems  # noqa: E402

STEP_BUDGET_S = 0.5  # per slider step on a loaded 2-core machine (the widget aims at about 0.05 s)


@pytest.fixture(scope="module")
def emb():
    return dl.timestep_embedding(torch.arange(1, 1001), 64)


def _learned(emb):
    g = torch.Generator().manual_seed(0)
    return torch.tanh(emb @ torch.randn(64, 32, generator=g))  # a stand-in for a trained MLP


def test_slider_changes_picture_and_readout_and_back(emb):
    box = W.time_embedding_explorer(emb, _learned(emb), t=100)
    assert set(box.controls) == {"t"} and box.controls["t"].max == 1000
    first, readout = box.png, box.readout.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert "learned temb" in readout and "t = 100" in readout
    times = []
    for t in (1, 2, 500, 999, 1000):
        t0 = time.perf_counter()
        box.controls["t"].value = t
        times.append(time.perf_counter() - t0)
        assert box.png != first and f"t = {t}:" in box.readout.value
    assert statistics.median(times) < STEP_BUDGET_S
    box.controls["t"].value = 100
    assert box.png == first and box.readout.value == readout


def test_readout_counts_the_similar_timesteps(emb):
    box = W.time_embedding_explorer(emb)
    unit = emb.double() / emb.double().norm(dim=1, keepdim=True)
    for t in (1, 300, 1000):
        expected = int((unit @ unit[t - 1] > 0.9).sum())
        assert box.similar(t) == (expected, None)
    # a timestep is always like itself, and the fast frequencies keep the count small
    assert 1 <= box.similar(500)[0] < 200
    assert "learned" not in box.readout.value


def test_default_embedding_is_the_library_one(emb):
    a = W.time_embedding_explorer(t=7)
    b = W.time_embedding_explorer(emb, t=7)
    assert a.png == b.png


def test_still_keeps_the_course_style(emb):
    import matplotlib.pyplot as plt

    fig = W.time_embedding_explorer(emb, _learned(emb), static=True)
    assert style_problems(fig) == []
    assert [t.get_text() for t in fig.texts] == ["t = 1", "t = 100", "t = 900"]
    plt.close(fig)
    box = W.time_embedding_explorer(emb, settings=(5, 50))
    fig = box.static_figure()
    assert style_problems(fig) == [] and len(fig.texts) == 2
    plt.close(fig)


def test_bad_input_names_the_argument(emb):
    with pytest.raises(ValueError, match="emb must be a tensor"):
        W.time_embedding_explorer(emb[0])
    with pytest.raises(ValueError, match="learned must have one row per t"):
        W.time_embedding_explorer(emb, emb[:10])
    with pytest.raises(ValueError, match="t must be an integer in 1..1000"):
        W.time_embedding_explorer(emb, t=0)
    with pytest.raises(ValueError, match="settings must be 1 to 6"):
        W.time_embedding_explorer(emb, settings=range(1, 9))
    with pytest.raises(ValueError, match="t must be in 1..1000"):
        W.time_embedding_explorer(emb, static=False).explorer._draw(t=1001)
