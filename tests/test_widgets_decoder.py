"""The decoder explorer of chapter 07 (ddpm_lib.course.widgets.decoder) without a browser."""

import math

import pytest
import torch


@pytest.mark.slow
def test_decoder_explorer():
    pytest.importorskip("ipywidgets")
    from ddpm_lib.gaussians import discretized_gaussian_probs
    from ddpm_lib.course.widgets.decoder import decoder_explorer

    box = decoder_explorer(mu=-0.97, sigma=0.03)
    assert set(box.controls) == {"mu", "sigma"}
    png0, html0 = box.png, box.readout.value
    p = discretized_gaussian_probs(torch.tensor(-0.97, dtype=torch.float64), torch.tensor(math.log(0.03)))
    assert f"P(x = -1) = {float(p[0]):.4f}" in html0
    box.controls["mu"].value = 1.1  # the observer redraws
    assert box.png != png0 and "P(x = +1) = 0.9" in box.readout.value
    box.controls["mu"].value = -0.97
    assert box.png == png0  # cached, and deterministic
    box.set(mu=0.4, sigma=0.001)
    assert (
        "most likely value k = 178" in box.readout.value or "most likely value k = 179" in box.readout.value
    )
    from ddpm_lib.viz import style_problems

    fig = (
        box.static_figure()
    )  # a panel per setting: near -1, on a grid value at sigma 0.01 and 0.003, beyond +1
    assert len(fig.axes) == 4 and style_problems(fig) == []
    assert "-\\log_2 P$ = 0.31 bits" in fig.axes[2].get_title()  # on a grid value, sigma = 0.003: P = 0.809
    fig2 = decoder_explorer(static=True)
    assert len(fig2.axes) == 4 and style_problems(fig2) == []
    with pytest.raises(ValueError, match="sigma must be"):
        decoder_explorer(sigma=0.0)
    with pytest.raises(ValueError, match="mu must be"):
        decoder_explorer(mu=3.0)
