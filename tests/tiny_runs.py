"""The smallest training run of the tests, shared: an MLP of 16 units on the swiss roll with T = 10
(about a millisecond a step), as a TrainConfig and as ddpm-train flags; and what a test needs to
start data-parallel (gloo) workers."""

import json
import os
import socket

from ddpm_lib.train import TrainConfig

TINY_ROLL = dict(
    dataset="swiss-roll",
    model="mlp",
    model_args={"hidden": 16, "layers": 2},
    T=10,
    beta_start=0.1,
    beta_end=0.7,
    batch_size=8,
)


def tiny_unet(seed: int = 0, jitter: bool = True):
    """The tests' U-Net for (B, 1, 28, 28) images: 8 channels, two levels, attention at 14x14, seeded
    with ``seed``; ``jitter`` adds 0.01 N(0, 1) to every weight, so that the zero-initialised output
    layers do not make it predict eps = 0 everywhere."""
    import torch

    from ddpm_lib.nets import UNet

    torch.manual_seed(seed)
    model = UNet(
        in_channels=1,
        out_channels=1,
        ch=8,
        ch_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(14,),
        resolution=28,
        groups=4,
        dropout=0.0,
    )
    if jitter:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
    return model


def tiny_roll(out_dir="", **kw) -> TrainConfig:
    """TINY_ROLL writing to ``out_dir``, with ``kw`` of other TrainConfig fields."""
    return TrainConfig(**{**TINY_ROLL, "out_dir": str(out_dir), **kw})


def flags(settings: dict) -> list[str]:
    """TrainConfig fields as ddpm-train flags: ``{"beta_end": 0.7}`` -> ``["--beta-end", "0.7"]``."""
    return [
        s
        for k, v in settings.items()
        for s in (f"--{k.replace('_', '-')}", json.dumps(v) if isinstance(v, dict) else str(v))
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as_rank(rank: int, world: int, port: int):
    """The environment torchrun gives rank ``rank`` of ``world`` processes on this machine."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
