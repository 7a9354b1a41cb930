"""Working with Hugging Face diffusers: its timestep index and its UNet2DModel's weights.

Taught in chapter 08 (the U-Net) and used by the tests that compare this library with diffusers
(tests/test_vs_diffusers.py, tests/test_nets.py) and by benchmarks/bench_unet_cpu.py. Nothing
here imports diffusers: the functions map indices, build keyword arguments and rename tensors.

Indexing. This library counts time as the papers do, t = 1..T (x_0 is data). diffusers' schedulers
count k = 0..T-1 for the same steps, so diffusers' timestep k is our t = k + 1, and its
``alphas_cumprod[k]`` is our ``alpha_bars[k + 1]``. This module is the one place that converts.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from .nets import UNet, UNetConfig

__all__ = [
    "paper_t",
    "diffusers_timestep",
    "diffusers_unet_kwargs",
    "unet_state_from_diffusers",
    "unet_from_diffusers",
]


def paper_t(k):
    """diffusers' timestep k (0..T-1) -> this library's t = k + 1 (1..T). Works on ints and tensors."""
    return k + 1


def diffusers_timestep(t):
    """This library's t (1..T) -> diffusers' timestep k = t - 1 (0..T-1). Works on ints and tensors."""
    return t - 1


def diffusers_unet_kwargs(config: UNetConfig) -> dict:
    """``diffusers.UNet2DModel(**kwargs)`` with the DDPM layout of ``config``: the same blocks,
    parameter count and function once the weights are renamed (:func:`unet_state_from_diffusers`).
    For ``UNet.ddpm_cifar10().config`` this is google/ddpm-cifar10-32's config, the DDPM authors'
    CIFAR-10 network as diffusers ships it."""
    c = config
    if c.ch_mult[0] != 1:
        raise ValueError(
            f"diffusers' time embedding is block_out_channels[0] wide, which needs ch_mult[0] == 1; "
            f"got ch_mult {tuple(c.ch_mult)}"
        )
    res = c.level_resolutions
    return dict(
        sample_size=c.resolution,
        in_channels=c.in_channels,
        out_channels=c.out_channels,
        block_out_channels=tuple(c.ch * m for m in c.ch_mult),
        layers_per_block=c.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if r in c.attn_resolutions else "DownBlock2D" for r in res),
        up_block_types=tuple(
            "AttnUpBlock2D" if r in c.attn_resolutions else "UpBlock2D" for r in reversed(res)
        ),
        attention_head_dim=None,
        norm_num_groups=c.groups,
        norm_eps=1e-6,
        time_embedding_type="positional",
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        add_attention=True,
        act_fn="silu",
        dropout=c.dropout,
    )


def unet_state_from_diffusers(state: Mapping[str, torch.Tensor], levels: int) -> dict:
    """A diffusers UNet2DModel state dict (DDPM layout, ``levels`` resolutions) renamed to this
    library's :class:`UNet` names. diffusers numbers its up blocks from the lowest resolution, this
    UNet from the highest, so up block i becomes level ``levels - 1 - i``."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    out = {}
    for k, v in state.items():
        k = k.replace("time_embedding.linear_1", "temb.0").replace("time_embedding.linear_2", "temb.2")
        k = k.replace("conv_norm_out", "norm_out")
        k = re.sub(r"^down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", k)
        k = re.sub(r"^down_blocks\.(\d+)\.attentions\.", r"down.\1.attn.", k)
        k = re.sub(r"^down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", k)
        k = re.sub(r"^up_blocks\.(\d+)\.", lambda m: f"up_blocks.{levels - 1 - int(m.group(1))}.", k)
        k = re.sub(r"^up_blocks\.(\d+)\.resnets\.", r"up.\1.block.", k)
        k = re.sub(r"^up_blocks\.(\d+)\.attentions\.", r"up.\1.attn.", k)
        k = re.sub(r"^up_blocks\.(\d+)\.upsamplers\.0\.", r"up.\1.upsample.", k)
        k = k.replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2")
        k = k.replace("mid_block.attentions.0", "mid.attn_1")
        k = k.replace("time_emb_proj", "temb_proj").replace("conv_shortcut", "nin_shortcut")
        k = k.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k").replace("to_v", "v")
        k = k.replace("to_out.0", "proj_out")
        out[k] = v
    return out


def unet_from_diffusers(model, config: UNetConfig) -> UNet:
    """This library's :class:`UNet` with ``config`` holding the weights of a diffusers UNet2DModel
    built with ``diffusers_unet_kwargs(config)`` (e.g. google/ddpm-cifar10-32 with
    ``UNet.ddpm_cifar10().config``). Raises when a tensor is missing, extra or of another shape."""
    state = unet_state_from_diffusers(model.state_dict(), levels=len(config.ch_mult))
    ours = UNet(config)
    mine = ours.state_dict()
    missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    # diffusers' attention projections are Linear (C, C); ours are 1x1 convolutions (C, C, 1, 1)
    wrong = sorted(k for k in set(mine) & set(state) if mine[k].numel() != state[k].numel())
    if missing or extra or wrong:
        raise ValueError(
            f"the diffusers model does not fit UNet({config}): missing {missing[:5]}, "
            f"extra {extra[:5]}, other sizes {wrong[:5]}"
        )
    ours.load_state_dict({k: v.reshape(mine[k].shape) for k, v in state.items()})
    return ours
