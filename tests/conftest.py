import pytest
import torch

# One thread: the tests use small tensors, where a second OpenMP thread costs more than it
# gives (and a loaded 2-core machine makes 2 threads up to 10x slower).
torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fresh CPU generator with a fixed seed, for reproducible draws."""
    return torch.Generator().manual_seed(1234)


def _tiny_unet(jitter: bool = True):
    """The tests' U-Net for (B, 1, 28, 28) images: 8 channels, two levels, attention at 14x14.

    Seeded with 0; ``jitter`` adds 0.01 N(0, 1) to every weight, so that the zero-initialised
    output layers do not make it predict eps = 0 everywhere."""
    from ddpm_lib.nets import UNet

    torch.manual_seed(0)
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


@pytest.fixture
def make_tiny_unet():
    """A function ``(jitter=True) -> UNet``: the tests' tiny U-Net for 28x28 one-channel images."""
    return _tiny_unet


@pytest.fixture(scope="session")
def tiny_unet_checkpoint(tmp_path_factory):
    """``(path, model, diffusion)``: the jittered tiny U-Net saved (also as its EMA) with a T = 10
    linear schedule (beta 0.1 .. 0.7), eps prediction, sigma_t^2 = beta_t, the discretized decoder,
    and Fashion-MNIST's data shape (1, 28, 28)."""
    from ddpm_lib import GaussianDiffusion, NoiseSchedule
    from ddpm_lib.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    model = _tiny_unet()
    diffusion = GaussianDiffusion(
        NoiseSchedule.linear(T=10, beta_start=0.1, beta_end=0.7),
        prediction="eps",
        variance="fixed_large",
        decoder="discretized",
    )
    config = {
        "diffusion": diffusion.config(),
        "data": {"dataset": "fashion-mnist", "shape": [1, 28, 28]},
        "train": {},
        "metrics": {},
        "command": "test",
    }
    save_checkpoint(path, model, config=config, ema_model=model, step=1)
    return path, model.eval(), diffusion
