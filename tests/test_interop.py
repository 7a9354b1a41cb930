"""ddpm_lib.interop: diffusers' timestep index and UNet2DModel weights in this library's terms."""

import pytest
import torch

from ddpm_lib.interop import (
    diffusers_timestep,
    diffusers_unet_kwargs,
    paper_t,
    unet_from_diffusers,
    unet_state_from_diffusers,
)
from ddpm_lib.nets import UNet, UNetConfig


def test_timestep_maps_are_inverse_and_shift_by_one():
    ks = torch.arange(1000)
    assert torch.equal(diffusers_timestep(paper_t(ks)), ks)
    assert paper_t(0) == 1 and paper_t(999) == 1000 and diffusers_timestep(1) == 0


def test_kwargs_of_the_ddpm_cifar10_net_are_googles_config():
    # google/ddpm-cifar10-32's config.json, the DDPM authors' CIFAR-10 weights as diffusers ships them
    google = dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None,
        norm_num_groups=32,
        norm_eps=1e-6,
        time_embedding_type="positional",
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        add_attention=True,
        act_fn="silu",
        dropout=0.1,
    )
    assert diffusers_unet_kwargs(UNet.ddpm_cifar10().config) == google


def test_kwargs_refuse_a_net_diffusers_cannot_express():
    with pytest.raises(ValueError, match=r"ch_mult\[0\] == 1"):
        diffusers_unet_kwargs(UNetConfig(ch=16, ch_mult=(2, 2), groups=8, resolution=8, attn_resolutions=()))


def test_renaming_reverses_the_up_blocks():
    state = {
        "up_blocks.0.resnets.1.conv1.weight": 0,
        "up_blocks.2.attentions.0.to_q.weight": 1,
        "mid_block.attentions.0.group_norm.bias": 2,
        "time_embedding.linear_1.weight": 3,
    }
    assert unet_state_from_diffusers(state, levels=3) == {
        "up.2.block.1.conv1.weight": 0,
        "up.0.attn.0.q.weight": 1,
        "mid.attn_1.norm.bias": 2,
        "temb.0.weight": 3,
    }
    with pytest.raises(ValueError, match="levels"):
        unet_state_from_diffusers(state, levels=0)


def test_a_diffusers_unet_becomes_ours_with_the_same_function():
    diffusers = pytest.importorskip("diffusers")
    config = UNetConfig(ch=16, ch_mult=(1, 2), groups=8, resolution=8, attn_resolutions=(4,), dropout=0.0)
    torch.manual_seed(0)
    theirs = diffusers.UNet2DModel(**diffusers_unet_kwargs(config)).eval()
    with torch.no_grad():
        for p in theirs.parameters():  # the DDPM init zeroes some layers: make every weight count
            p.add_(0.05 * torch.randn_like(p))
    ours = unet_from_diffusers(theirs, config).eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1, 700])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t), theirs(x, t).sample, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        unet_from_diffusers(
            theirs, UNetConfig(ch=16, ch_mult=(1, 2, 2), groups=8, resolution=8, attn_resolutions=(4,))
        )
