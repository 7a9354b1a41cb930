"""ddpm_lib.viz: image grids (shape, values, padding), PNG files, plots, and errors for bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ddpm_lib as dl  # noqa: E402
from ddpm_lib import viz  # noqa: E402
from ddpm_lib.data import to_uint8  # noqa: E402
from ddpm_lib.diffusion import Trajectory  # noqa: E402

torch.set_num_threads(1)


def ramp(n, c, h, w):
    """Images whose pixel values are distinct 8-bit levels, mapped to [-1, 1]."""
    u8 = (torch.arange(n * c * h * w) * 7 % 256).to(torch.uint8).reshape(n, c, h, w)
    return u8, u8.float() / 127.5 - 1


def test_grid_shape_and_layout_grayscale():
    u8, x = ramp(5, 1, 4, 3)
    g = viz.image_grid(x, nrow=3, padding=2, pad_value=1.0)
    assert g.dtype == np.uint8 and g.shape == (2 * (4 + 2) + 2, 3 * (3 + 2) + 2)
    for i in range(5):
        r, k = divmod(i, 3)
        top, left = 2 + r * 6, 2 + k * 5
        np.testing.assert_array_equal(g[top : top + 4, left : left + 3], u8[i, 0].numpy())
    # the border, the gaps and the empty sixth cell hold the pad value (white)
    assert (g[:2] == 255).all() and (g[:, :2] == 255).all()
    assert (g[8:12, 12:15] == 255).all()


def test_grid_rgb_values_and_default_nrow():
    u8, x = ramp(4, 3, 2, 2)
    g = viz.image_grid(x, padding=0)
    assert g.shape == (4, 4, 3)  # nrow = ceil(sqrt(4)) = 2
    np.testing.assert_array_equal(g[2:4, 2:4], u8[3].permute(1, 2, 0).numpy())


def test_grid_maps_like_data_to_uint8_and_clamps():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 1, 7)
    g = viz.image_grid(x, padding=0, pad_value=-1.0)
    np.testing.assert_array_equal(g[0], to_uint8(x)[0, 0, 0].numpy())
    assert g[0].tolist() == [0, 0, 0, 128, 191, 255, 255]
    assert viz.image_grid(x.numpy(), padding=0).tolist() == g.tolist()  # numpy input too


@pytest.mark.parametrize(
    "shape, msg",
    [
        ((4, 28, 28), "images\\[:, None\\]"),
        ((2, 28, 28, 1), "channels last"),
        ((2, 2, 8, 8), "C = 1 or 3"),
        ((0, 1, 8, 8), "empty"),
        ((8,), "N, C, H, W"),
    ],
)
def test_bad_shapes_give_clear_errors(shape, msg):
    with pytest.raises(ValueError, match=msg):
        viz.image_grid(torch.zeros(shape))


def test_bad_values_and_types():
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        viz.image_grid(x)
    with pytest.raises(TypeError, match="torch.Tensor or a numpy array"):
        viz.image_grid([[0.0]])
    with pytest.raises(ValueError, match="nrow"):
        viz.image_grid(torch.zeros(2, 1, 4, 4), nrow=0)


def test_save_image_grid_writes_a_readable_png_atomically(tmp_path):
    u8, x = ramp(6, 1, 5, 5)
    path = viz.save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=3)
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o644"
    img = mpimg.imread(path)
    want = viz.image_grid(x, nrow=3)
    assert img.shape[:2] == want.shape
    np.testing.assert_array_equal(np.round(img[..., 0] * 255).astype(np.uint8), want)
    np.testing.assert_array_equal(img[..., 0], img[..., 1])
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind

    _, rgb = ramp(2, 3, 4, 4)
    p2 = viz.save_image_grid(rgb, tmp_path / "rgb.png")
    np.testing.assert_array_equal(
        np.round(mpimg.imread(p2)[..., :3] * 255).astype(np.uint8), viz.image_grid(rgb)
    )


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        viz.save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


def test_show_images_and_plot_2d():
    _, x = ramp(4, 1, 6, 6)
    ax = viz.show_images(x, title="four")
    assert ax.get_title() == "four" and len(ax.images) == 1
    assert ax.images[0].get_array().shape == viz.image_grid(x).shape
    pts = dl.swiss_roll(100, generator=torch.Generator().manual_seed(0))
    ax = viz.plot_2d(pts, ref=pts + 0.1, lim=2)
    assert len(ax.collections) == 2 and ax.get_xlim() == (-2, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.plot_2d(torch.zeros(10, 3))
    plt.close("all")


def test_save_plot_2d(tmp_path):
    pts = dl.swiss_roll(200, generator=torch.Generator().manual_seed(0))
    path = viz.save_plot_2d(pts, tmp_path / "pts.png", ref=pts, title="roll")
    assert mpimg.imread(path).ndim == 3


def test_trajectory_strip_images_and_points():
    K, B = 3, 2
    x_t = torch.rand(K, B, 1, 8, 8) * 2 - 1
    pred = x_t.clone()
    pred[-1] = float("nan")  # t = 0 has no prediction
    traj = Trajectory(torch.tensor([10, 5, 0]), x_t, pred, torch.tensor([1000, 500, 0]))
    fig = viz.trajectory_strip(traj, index=1, title="chain")
    axes = fig.axes
    assert len(axes) == 2 * K
    assert [a.get_title() for a in axes[:K]] == ["t = 1000", "t = 500", "t = 0"]
    assert all(len(a.images) == 1 for a in axes[: K + 2]) and len(axes[-1].images) == 0
    np.testing.assert_array_equal(axes[1].images[0].get_array(), viz.image_grid(x_t[1, 1:2], padding=0))
    pts = Trajectory(torch.tensor([2, 0]), torch.randn(2, 50, 2), torch.randn(2, 50, 2))
    assert len(viz.trajectory_strip(pts, show_x0=False).axes) == 2
    with pytest.raises(ValueError, match="index"):
        viz.trajectory_strip(traj, index=5)
    with pytest.raises(TypeError, match="Trajectory"):
        viz.trajectory_strip(x_t)
    # load_trajectory returns (Trajectory, metadata): the pair is refused with the fix in the message
    with pytest.raises(TypeError, match=r"pass load_trajectory\(\.\.\.\)\[0\]"):
        viz.trajectory_strip((traj, {"seed": 0}))
    plt.close("all")


def test_trajectory_strip_from_a_real_sampler():
    s = dl.NoiseSchedule.linear(20, beta_end=0.5)
    d = dl.GaussianDiffusion(s)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    _, traj = d.sample(
        model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0), progress=False, record=[20, 10, 0]
    )
    fig = viz.trajectory_strip(traj)
    assert len(fig.axes) == 6
    plt.close("all")


def test_save_image_grid_scale_repeats_pixels_exactly(tmp_path):
    x = torch.linspace(-1, 1, 2 * 1 * 3 * 3).reshape(2, 1, 3, 3)
    one = mpimg.imread(viz.save_image_grid(x, tmp_path / "a.png"))
    four = mpimg.imread(viz.save_image_grid(x, tmp_path / "b.png", scale=4))
    assert four.shape[:2] == (4 * one.shape[0], 4 * one.shape[1])
    assert np.array_equal(four[::4, ::4], one)
    with pytest.raises(ValueError, match="scale must be an integer in 1..16"):
        viz.save_image_grid(x, tmp_path / "c.png", scale=0)


# ---- the course's figure style ---------------------------------------------------------------


def test_course_style_applies_now_and_a_with_block_restores():
    import matplotlib as mpl

    old = {k: mpl.rcParams[k] for k in viz.COURSE_RC}
    try:
        mpl.rcParams["font.size"] = 7.0
        with viz.course_style():
            assert (
                mpl.rcParams["font.size"] == viz.MIN_FONT_PT and mpl.rcParams["figure.dpi"] == viz.STILL_DPI
            )
        assert mpl.rcParams["font.size"] == 7.0
        viz.course_style()  # called, not entered: the style stays (a chapter's first cell)
        assert mpl.rcParams["font.size"] == viz.MIN_FONT_PT
    finally:
        mpl.rcParams.update(old)


def _good_still():
    with viz.course_style():
        fig = viz.still_figure((6, 3))
        ax = fig.add_subplot(1, 1, 1)
        x = np.linspace(0, 1, 50)
        ax.plot(x, x**2, label="x^2")
        ax.set(xlabel="x", ylabel="y", ylim=(0, 1.5))
        ax.legend(loc="upper left")
    return fig


def test_style_problems_accepts_a_figure_that_keeps_the_style():
    fig = _good_still()
    assert viz.style_problems(fig) == []
    plt.close(fig)


def test_style_problems_names_each_breach():
    from matplotlib.figure import Figure

    # not pyplot's: plt.show() would store nothing (chapter 07's missing still)
    fig = Figure(figsize=(4, 3), dpi=100)
    fig.add_subplot(1, 1, 1).set_axis_off()
    assert any("not a pyplot figure" in p for p in viz.style_problems(fig))
    # dpi below 100, and text below 10 pt
    fig = _good_still()
    fig.set_dpi(72)
    fig.axes[0].set_title("small", fontsize=7)
    problems = viz.style_problems(fig)
    assert any("dpi 72 < 100" in p for p in problems) and any("below 10 pt" in p for p in problems)
    plt.close(fig)
    # more than six panels
    fig, axes = plt.subplots(2, 4)
    for ax in axes.ravel():
        ax.set_axis_off()
    assert any("8 panels > 6" in p for p in viz.style_problems(fig))
    plt.close(fig)
    # a numeric axis without a label
    fig = _good_still()
    fig.axes[0].set_xlabel("")
    assert any("numeric x axis without a label" in p for p in viz.style_problems(fig))
    plt.close(fig)
    # a legend over the data: the curve passes through the upper left corner
    fig = _good_still()
    ax = fig.axes[0]
    ax.plot([0, 1], [1.5, 0], label="through the corner")
    ax.legend(loc="upper left")
    assert any("legend covers" in p for p in viz.style_problems(fig))
    plt.close(fig)
    # a curve cut off at the top of its axes (chapter 04's posterior was)
    fig = _good_still()
    fig.axes[0].set_ylim(0, 0.5)
    fig.axes[0].get_legend().remove()
    assert any("run off the axes" in p for p in viz.style_problems(fig))
    plt.close(fig)


def test_trajectory_strip_labels_keep_the_minimum_size():
    s = dl.NoiseSchedule.linear(20, beta_end=0.5)
    _, traj = dl.GaussianDiffusion(s).sample(
        lambda x, t: torch.zeros_like(x),
        (1, 1, 8, 8),
        generator=torch.Generator().manual_seed(0),
        progress=False,
        record=[20, 0],
    )
    fig = viz.trajectory_strip(traj)
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert min(sizes) >= viz.MIN_FONT_PT
    plt.close("all")
