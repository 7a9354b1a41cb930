"""Chapter 12's inpainting explorer without a browser: masks, the precomputed trajectories, the
pictures changing with each control, the static fallback and clear errors for bad arguments.

A stand-in network (eps = 0.3 x_t) keeps this fast; the chapter runs the shipped U-Net."""

import statistics
import time

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import ddpm_lib as dl  # noqa: E402
from ddpm_lib.course.widgets import inpainting as I  # noqa: E402

STEP_BUDGET_S = 0.5  # per slider step on a loaded 2-core machine (about 0.01 s unloaded)


def _model(x, t):
    return 0.3 * x


@pytest.fixture(scope="module")
def setup():
    s = dl.NoiseSchedule.linear(T=40, beta_start=1e-3, beta_end=0.2, warn=False)
    d = dl.GaussianDiffusion(s)
    images = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    run = I.inpainting_trajectories(_model, d, images, sizes=(0.25, 0.5), steps=8, n_t=5)
    return d, images, run


def test_make_mask_regions_and_sizes():
    for region in I.REGIONS:
        for size in (0.1, 0.25, 0.5, 0.9):
            m = I.make_mask(region, size)
            assert m.shape == (1, 28, 28) and set(m.unique().tolist()) <= {0.0, 1.0}
            hidden = float(1 - m.mean())
            assert 0 < hidden < 1 and abs(hidden - size) < 0.08, (region, size, hidden)
    assert bool((I.make_mask("left", 0.5)[0, :, :14] == 0).all())
    assert bool((I.make_mask("top", 0.5)[0, :14] == 0).all())
    assert (
        float(I.make_mask("center", 0.25)[0, 14, 14]) == 0
        and float(I.make_mask("center", 0.25)[0, 0, 0]) == 1
    )
    assert torch.equal(I.make_mask("random", 0.3, seed=1), I.make_mask("random", 0.3, seed=1))
    assert not torch.equal(I.make_mask("random", 0.3, seed=1), I.make_mask("random", 0.3, seed=2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(region="middle", size=0.3), "region must be one of"),
        (dict(region="left", size=0.0), r"size must be .* in \(0, 1\)"),
        (dict(region="left", size=1.5), r"size must be .* in \(0, 1\)"),
        (dict(region="left", size=True), r"size must be"),
        (dict(region="left", size=0.3, shape=(28,)), r"shape must be \(H, W\)"),
    ],
)
def test_make_mask_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.make_mask(**kwargs)


def test_trajectories_shapes_and_known_pixels(setup):
    d, images, run = setup
    M, N = 4 * 2, 2
    assert run.settings[0] == ("center", 0.25) and len(run.settings) == M
    K = run.timesteps.numel()
    assert run.timesteps[0] == d.T and run.timesteps[-1] == 0 and K == 5
    assert run.x_t.shape == (K, M, N, 1, 28, 28) and run.result.shape == (M, N, 1, 28, 28)
    assert bool(torch.isnan(run.pred_x0[-1]).all()) and bool(torch.isfinite(run.pred_x0[0]).all())
    # r is a delta on the known pixels: at t = 0 they are the data, exactly
    for m in range(M):
        known = run.masks[m].bool().expand(N, 1, 28, 28)
        assert torch.equal(run.result[m][known], images[known])
    assert run.index("left", 0.5) == 3
    with pytest.raises(KeyError, match="no mask for region"):
        run.index("left", 0.3)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(model=None), TypeError, "model must be a callable"),
        (dict(diffusion="d"), TypeError, "diffusion must be the GaussianDiffusion"),
        (dict(images=torch.zeros(28, 28)), ValueError, r"shape \(N, C, H, W\)"),
        (dict(images=torch.full((1, 1, 28, 28), 3.0)), ValueError, r"in \[-1, 1\]"),
        (dict(images=[[0.0]]), TypeError, "images must be a tensor"),
        (dict(regions=("center", "middle")), ValueError, "regions must be distinct names"),
        (dict(regions=()), ValueError, "regions must be distinct names"),
        (dict(sizes=(0.25, 1.0)), ValueError, "sizes must be distinct fractions"),
        (dict(sizes=(0.25, 0.25)), ValueError, "sizes must be distinct fractions"),
        (dict(steps=0), ValueError, "steps must be an integer in 1..T"),
        (dict(steps=41), ValueError, "steps must be an integer in 1..T"),
        (dict(n_t=1), ValueError, "n_t must be an integer >= 2"),
    ],
)
def test_trajectories_bad_arguments(setup, change, error, match):
    d, images, _ = setup
    kw = dict(model=_model, diffusion=d, images=images[:1], steps=4)
    kw.update(change)
    with pytest.raises(error, match=match):
        I.inpainting_trajectories(kw.pop("model"), kw.pop("diffusion"), kw.pop("images"), **kw)


@pytest.fixture(scope="module")
def box(setup):
    return I.inpainting_explorer(run=setup[2])


def test_explorer_controls_change_the_picture(box):
    assert set(box.controls) == {"region", "size", "t"}
    assert box.controls["t"].options == (0, 10, 20, 30, 40) and box.controls["t"].value == 0
    first = box.png
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and box.image.value == first
    assert "MSE in the hole" in box.readout.value
    times = []
    for name, values in [
        ("region", ["left", "top", "random", "center"]),
        ("size", [0.25, 0.5]),
        ("t", [40, 30, 20, 10, 0]),
    ]:
        v0 = box.controls[name].value
        seen = set()
        for v in values:
            t0 = time.perf_counter()
            box.controls[name].value = v
            times.append(time.perf_counter() - t0)
            seen.add(box.png)
        assert len(seen) == len(values), f"moving {name} did not change the picture every time"
        box.controls[name].value = v0
        assert box.png == first, f"moving {name} back did not restore the first picture"
    assert statistics.median(times) < STEP_BUDGET_S
    t0 = time.perf_counter()
    box.controls["t"].value = 40  # seen before: from the cache
    assert time.perf_counter() - t0 < STEP_BUDGET_S
    box.set(region="left", size=0.25, t=20)
    assert "left, 25% hidden | t = 20" in box.readout.value
    box.set(region="center", size=0.5, t=0)
    assert box.png == first


def test_explorer_static_fallback(setup, box):
    from matplotlib.figure import Figure

    from ddpm_lib.viz import style_problems

    fig = box.static_figure()
    # one mosaic: a row per setting and image (a mid t, then t = 0 for each region), 5 pictures a row
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].get_yticklabels()) == (1 + 4) * 2 and len(fig.axes[0].get_xticklabels()) == 5
    assert style_problems(fig) == []
    fig2 = I.inpainting_explorer(run=setup[2], static=True)
    assert isinstance(fig2, Figure) and len(fig2.axes) == 1 and style_problems(fig2) == []
    bundle = box._repr_mimebundle_()
    assert "image/png" in bundle and "inpainting_explorer widget" in bundle["text/plain"]


def test_explorer_computes_its_own_run_deterministically(setup):
    d, images, run = setup
    a = I.inpainting_explorer(_model, d, images[:1], regions=("left",), sizes=(0.5,), steps=4, n_t=3)
    b = I.inpainting_explorer(_model, d, images[:1], regions=("left",), sizes=(0.5,), steps=4, n_t=3)
    assert a.png == b.png and a.controls["t"].options == (0, 20, 40)
    assert a.controls["region"].options == ("left",)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(model=_model), ValueError, "model was given without its diffusion"),
        (dict(diffusion="d"), ValueError, "diffusion was given without a model"),
        (dict(run="a run"), TypeError, "run must be an InpaintingRun"),
        (dict(run=None, scale=0), ValueError, r"scale must be an integer in 1..16"),
        (
            dict(
                n_images=0,
                model=_model,
                diffusion=dl.GaussianDiffusion(dl.NoiseSchedule.linear(T=10, warn=False)),
            ),
            ValueError,
            r"n_images must be an integer in 1..10",
        ),
    ],
)
def test_explorer_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        I.inpainting_explorer(**kwargs)


def test_lazy_name_in_the_widgets_package():
    from ddpm_lib.course import widgets

    assert widgets.inpainting_explorer is I.inpainting_explorer
