import pytest
import torch
from tiny_runs import tiny_unet

# One thread: the tests use small tensors, where a second OpenMP thread costs more than it
# gives (and a loaded 2-core machine makes 2 threads up to 10x slower).
torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fresh CPU generator with a fixed seed, for reproducible draws."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def make_tiny_unet():
    """A function ``(jitter=True) -> UNet``: the tests' tiny U-Net for 28x28 one-channel images."""
    return lambda jitter=True: tiny_unet(jitter=jitter)


@pytest.fixture(scope="session")
def tiny_unet_checkpoint(tmp_path_factory):
    """``(path, model, diffusion)``: the jittered tiny U-Net saved (also as its EMA) with a T = 10
    linear schedule (beta 0.1 .. 0.7), eps prediction, sigma_t^2 = beta_t, the discretized decoder,
    and Fashion-MNIST's data shape (1, 28, 28)."""
    from ddpm_lib import GaussianDiffusion, NoiseSchedule
    from ddpm_lib.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    model = tiny_unet()
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
