"""The practice track's explorers without a browser (chapters 10 and 13): moving a slider changes the
picture, moving it back restores it, the static fallback draws, bad arguments raise clear errors.
(The trajectory files and the stored trajectory of chapter 10 are tested in test_trajectories.py, the
eps recovery in test_sampling.py.)

A cheap stand-in network (a fixed linear map of x_t, different for each t) replaces the U-Net, so
every test samples in milliseconds.
"""

import math
import time

import pytest
import torch

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import ddpm_lib as dl  # noqa: E402
from ddpm_lib.course import widgets as W  # noqa: E402
from ddpm_lib.course.widgets import reconstruction as R  # noqa: E402
from ddpm_lib.viz import style_problems  # noqa: E402

STEP_BUDGET_S = 0.5  # per slider step on a loaded 2-core machine (a cache lookup in these widgets)
PNG = b"\x89PNG\r\n\x1a\n"


def toy_model(x, t):
    """A deterministic stand-in for eps_theta: shrinks x_t by a t-dependent factor."""
    return x * (0.3 + 0.5 * (t.float() / 1000).view(-1, *([1] * (x.ndim - 1))))


@pytest.fixture(scope="module")
def schedule():
    return dl.NoiseSchedule.linear(T=1000)


@pytest.fixture(scope="module")
def diffusion(schedule):
    return dl.GaussianDiffusion(schedule)


@pytest.fixture(scope="module")
def trajectory(diffusion):
    g = torch.Generator().manual_seed(0)
    x, traj = diffusion.respace(100).sample(
        toy_model, (3, 1, 28, 28), generator=g, progress=False, record=list(range(0, 101, 5)) + [1, 2, 3]
    )
    return traj


@pytest.fixture(scope="module")
def images():
    x = torch.linspace(-1, 1, 4 * 28 * 28).reshape(4, 1, 28, 28)
    return torch.cat([x[:2], -x[2:]])


def _move(box, name, values):
    first = box.png
    assert first[:8] == PNG and box.image.value == first
    v0 = box.controls[name].value
    times = []
    for v in values:
        t0 = time.perf_counter()
        box.controls[name].value = v
        times.append(time.perf_counter() - t0)
    assert box.png != first, f"moving {name} did not change the picture"
    box.controls[name].value = v0
    assert box.png == first, f"moving {name} back did not restore the picture"
    assert sorted(times)[len(times) // 2] < STEP_BUDGET_S


# ---- reverse_process_explorer ------------------------------------------------------------------


def test_reverse_process_explorer_slider(trajectory, schedule):
    box = W.reverse_process_explorer(trajectory, schedule)
    assert set(box.controls) == {"t"}
    c = box.controls["t"]
    assert list(c.options) == [(str(t), t) for t in sorted(trajectory.timesteps.tolist())]  # recorded t only
    assert c.value == 1000
    ts = sorted(trajectory.timesteps.tolist())
    _move(box, "t", [ts[len(ts) // 2], ts[2], ts[1], 0])
    box.controls["t"].value = 0
    assert "t = 0" in box.readout.value and "samples" in box.readout.value
    for i in range(1, len(c.options)):  # every step of the slider is a new picture
        c.index = i - 1
        before = box.png
        c.index = i
        assert box.png != before, c.options[i]
    box.set(t=498)  # set() snaps to the nearest recorded t (500)
    assert "t = 500 " in box.readout.value and c.value == 500
    assert W.reverse_process_explorer(trajectory, schedule, t=498).controls["t"].value == 500
    box.controls["t"].value = 1000
    assert "t = 1000 " in box.readout.value
    assert len(box.frames.frames) == len(trajectory.ts)  # every frame drawn up front


def test_reverse_process_explorer_static(trajectory, schedule):
    fig = W.reverse_process_explorer(trajectory, schedule, static=True, index=1)
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == 10 and len(ax.get_yticklabels()) == 3  # ten default t; x_t, eps, x_0
    assert style_problems(fig) == []
    box = W.reverse_process_explorer(trajectory, schedule)
    fig = box.static_figure(ts=[1000, 498, 0])  # snapped to recorded timesteps
    ax = fig.axes[0]
    assert [l.get_text() for l in ax.get_xticklabels()] == ["1000", "500", "0"]
    assert len(ax.get_yticklabels()) == 3 * 3  # three images
    assert len(fig.axes) == 1 and style_problems(fig) == []
    with pytest.raises(ValueError, match="index must be in 0..2"):
        box.static_figure(index=3)


def test_reverse_process_explorer_bad_arguments(trajectory, schedule):
    with pytest.raises(TypeError, match="Trajectory"):
        W.reverse_process_explorer(torch.zeros(3, 1, 28, 28), schedule)
    bad = dl.Trajectory(trajectory.ts, trajectory.x_t, trajectory.pred_x0[:, :2], trajectory.timesteps)
    with pytest.raises(ValueError, match="pred_x0 must have x_t's shape"):
        W.reverse_process_explorer(bad, schedule)
    with pytest.raises(ValueError, match="t must lie in 0..1000"):
        W.reverse_process_explorer(trajectory, schedule, t=2000)
    with pytest.raises(TypeError, match=r"load_trajectory\(\.\.\.\)\[0\]"):
        W.reverse_process_explorer((trajectory, {}), schedule)
    with pytest.raises(ValueError, match="images of shape"):
        W.reverse_process_explorer(
            dl.Trajectory(
                trajectory.ts, trajectory.x_t[:, :, 0], trajectory.pred_x0[:, :, 0], trajectory.timesteps
            ),
            schedule,
        )
    with pytest.raises(FileNotFoundError, match="make_trajectory.sh|ddpm_lib.sample"):
        W.reverse_process_explorer("/nonexistent/trajectory.safetensors", schedule)


def test_reverse_process_explorer_from_a_file(tmp_path, trajectory, schedule):
    from ddpm_lib.trajectories import save_trajectory

    path = save_trajectory(trajectory, tmp_path / "t.safetensors", {"seed": 0})
    a = W.reverse_process_explorer(path, schedule, t=500)
    b = W.reverse_process_explorer(trajectory, schedule, t=500)
    assert a.png == b.png and a.readout.value == b.readout.value


# ---- reconstruction ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgrid(diffusion, images):
    return R.reconstruction_grid(
        toy_model, diffusion, images[:2], ts=[50, 500, 1000], n_draws=2, steps=20, seed=0
    )


def test_reconstruction_grid(rgrid, diffusion, images):
    assert rgrid.ts.tolist() == [50, 500, 1000]
    assert rgrid.samples.shape == (3, 2, 2, 1, 28, 28) and rgrid.x_t.shape == rgrid.samples.shape
    # one network call per image and step from the start index: (1 + 10 + 20) steps x 4 images
    assert rgrid.network_evaluations == 4 * (1 + 10 + 20)
    # the encoder is Eq. 4 with the generator's first draw
    g = torch.Generator().manual_seed(0)
    eps = torch.randn((4, 1, 28, 28), generator=g)
    chain = diffusion.respace(20)
    want = chain.q_sample(images[:2].repeat(2, 1, 1, 1), torch.full((4,), 1), eps)
    assert torch.allclose(rgrid.x_t[0].reshape(4, 1, 28, 28), want, atol=1e-6)
    # deterministic given the seed
    again = R.reconstruction_grid(
        toy_model, diffusion, images[:2], ts=[50, 500, 1000], n_draws=2, steps=20, seed=0
    )
    assert torch.equal(again.samples, rgrid.samples)
    d = rgrid.mean_sq_distance()
    assert d.shape == (3,) and bool((d >= 0).all())


def test_reconstruction_grid_bad_arguments(diffusion, images):
    with pytest.raises(
        ValueError, match="t = 55 is not on the 20-step chain.*nearest timesteps there are \\[50, 100\\]"
    ):
        R.reconstruction_grid(toy_model, diffusion, images, ts=[55], steps=20)
    with pytest.raises(ValueError, match="every t in ts must lie in 1..T"):
        R.reconstruction_grid(toy_model, diffusion, images, ts=[0], steps=None)
    with pytest.raises(ValueError, match="x0 must be a float tensor of images"):
        R.reconstruction_grid(toy_model, diffusion, images[0], ts=[50], steps=20)
    with pytest.raises(ValueError, match="n_draws must be a positive integer"):
        R.reconstruction_grid(toy_model, diffusion, images, ts=[50], n_draws=0, steps=20)
    with pytest.raises(ValueError, match="steps must be an integer in 1..T"):
        R.reconstruction_grid(toy_model, diffusion, images, ts=[50], steps=5000)
    with pytest.raises(TypeError, match="diffusion must be a GaussianDiffusion"):
        R.reconstruction_grid(toy_model, "linear", images, ts=[50])


def test_reconstruction_explorer(rgrid):
    box = W.reconstruction_explorer(rgrid)
    c = box.controls["t"]
    assert [v for _, v in c.options] == [50, 500, 1000]
    assert c.value == 500
    _move(box, "t", [50, 1000])
    box.set(t=60)  # snaps to the grid's t
    assert c.value == 50 and "t = 50 " in box.readout.value and "mean squared distance" in box.readout.value
    fig = box.static_figure(index=1)  # one mosaic: a row per t; x_0, x_t and the 2 draws
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.get_yticklabels()) == 3 and len(ax.get_xticklabels()) == 2 + 2
    assert style_problems(fig) == []
    fig = W.reconstruction_explorer(rgrid, static=True)
    assert len(fig.axes) == 1 and style_problems(fig) == []
    with pytest.raises(ValueError, match="t must lie in 50..1000"):
        W.reconstruction_explorer(rgrid, t=10)
    with pytest.raises(ValueError, match="index must be in 0..1"):
        box.static_figure(index=5)
    with pytest.raises(ValueError, match="diffusion="):
        W.reconstruction_explorer(toy_model)
    with pytest.raises(TypeError, match="grid, a model"):
        W.reconstruction_explorer(42, diffusion=dl.GaussianDiffusion(dl.NoiseSchedule.linear(T=1000)))


# ---- interpolation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def igrid(diffusion, images):
    return R.interpolation_grid(
        toy_model,
        diffusion,
        images[:1],
        images[2:3],
        lambdas=[0, 0.25, 0.5, 0.75, 1],
        ts=[100, 400],
        steps=20,
        seed=0,
    )


def test_interpolation_grid(igrid, images, diffusion):
    assert igrid.samples.shape == (2, 5, 1, 1, 28, 28) and igrid.x_bar.shape == igrid.samples.shape
    assert igrid.network_evaluations == 5 * (2 + 8)
    lam = igrid.lambdas.float().view(1, -1, 1, 1, 1, 1)
    assert torch.allclose(igrid.x_bar, (1 - lam) * igrid.x_bar[:, :1] + lam * igrid.x_bar[:, -1:], atol=1e-6)
    # the ends are encodings of the two images: x_t = sqrt(abar) x_0 + noise, noise ~ N(0, 1 - abar)
    ab = diffusion.schedule.alpha_bars[400].item()
    noise = (igrid.x_bar[1, 0] - math.sqrt(ab) * images[:1]) / math.sqrt(1 - ab)
    assert abs(noise.std().item() - 1) < 0.15


def test_interpolation_grid_bad_arguments(diffusion, images):
    with pytest.raises(ValueError, match="same shape"):
        R.interpolation_grid(toy_model, diffusion, images[:1], images[:2], ts=[100], steps=20)
    with pytest.raises(ValueError, match="lambdas must be a non-empty sequence of numbers in \\[0, 1\\]"):
        R.interpolation_grid(
            toy_model, diffusion, images[:1], images[2:3], lambdas=[0, 1.5], ts=[100], steps=20
        )
    with pytest.raises(ValueError, match="ts must hold at least one timestep"):
        R.interpolation_grid(toy_model, diffusion, images[:1], images[2:3], ts=[], steps=20)


def test_interpolation_explorer(igrid):
    box = W.interpolation_explorer(igrid)
    assert set(box.controls) == {"lam", "t"}
    assert [v for _, v in box.controls["lam"].options] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert box.controls["t"].value in (100, 400)
    _move(box, "lam", [0.0, 1.0, 0.25])
    _move(box, "t", [400, 100])
    box.set(lam=0.7, t=390)  # snapped to the grid's values
    assert "t = 400, lambda = 0.75" in box.readout.value
    fig = box.static_figure()  # one mosaic: a row per t; x_0, the 5 lambdas, x'_0
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.get_yticklabels()) == 2 and len(ax.get_xticklabels()) == 5 + 2
    assert style_problems(fig) == []
    with pytest.raises(ValueError, match="lam must lie in \\[0, 1\\]"):
        W.interpolation_explorer(igrid, lam=2.0)
    with pytest.raises(ValueError, match="pair must be in 0..0"):
        W.interpolation_explorer(igrid, pair=1)
    with pytest.raises(ValueError, match="images must be a pair"):
        W.interpolation_explorer(
            toy_model,
            diffusion=dl.GaussianDiffusion(dl.NoiseSchedule.linear(T=1000)),
            images=torch.zeros(2, 1, 28, 28),
        )
