"""ddpm_lib: denoising diffusion probabilistic models, exact and small.

The library of the ddpm-course. Paper indexing everywhere: t = 1..T, x_0 is data, and every
schedule table has length T + 1 with ``alpha_bars[0] == 1``.
"""

from .version import __version__  # noqa: E402
from .schedules import NoiseSchedule  # noqa: E402
from .gaussians import (  # noqa: E402
    normal_kl,
    gaussian_log_likelihood,
    discretized_gaussian_log_likelihood,
    discretized_gaussian_probs,
    gaussian_entropy,
    mean_flat,
    sum_flat,
)
from .diffusion import GaussianDiffusion, GaussianParams, Trajectory  # noqa: E402
from .sampling import (  # noqa: E402
    generate,
    CountingModel,
    sample_respaced,
    ddim_sample,
    ddim_encode,
    inpaint,
    reconstruct,
    interpolate,
)
from .utils import device, seed_everything  # noqa: E402

__all__ = [
    "__version__",
    "NoiseSchedule",
    "normal_kl",
    "gaussian_log_likelihood",
    "discretized_gaussian_log_likelihood",
    "discretized_gaussian_probs",
    "gaussian_entropy",
    "mean_flat",
    "sum_flat",
    "GaussianDiffusion",
    "GaussianParams",
    "Trajectory",
    "generate",
    "CountingModel",
    "sample_respaced",
    "ddim_sample",
    "ddim_encode",
    "inpaint",
    "reconstruct",
    "interpolate",
    "device",
    "seed_everything",
]


from .nets import MLP, UNet, UNetConfig, count_parameters, timestep_embedding  # noqa: E402
from .checkpoints import (  # noqa: E402
    Checkpoint,
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from .metrics import mmd_rbf, sliced_w1_ratio, sliced_w1_ratios, sliced_wasserstein  # noqa: E402

__all__ += [
    "MLP",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "timestep_embedding",
    "Checkpoint",
    "CheckpointError",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
    "mmd_rbf",
    "sliced_w1_ratio",
    "sliced_w1_ratios",
    "sliced_wasserstein",
]

# Modules with a command line (python -m ddpm_lib.<module>) are imported on first use, so that
# running one as __main__ does not import it twice.
_LAZY = {
    "swiss_roll": "data",
    "gaussian_mixture": "data",
    "gaussian_mixture_1d": "data",
    "GaussianData": "data",
    "fashion_mnist": "data",
    "read_idx": "data",
    "to_uint8": "data",
    "from_uint8": "data",
    "FASHION_MNIST_CLASSES": "data",
    "iterate_minibatches": "data",
    "infinite_minibatches": "data",
    "load_pretrained": "pretrained",
    "list_pretrained": "pretrained",
    "Trainer": "train",
    "TrainConfig": "train",
}
__all__ += list(_LAZY)
# Every public submodule up to the engine is reachable as dl.<name> after `import ddpm_lib as dl`
# (dl.viz.show_images, dl.data.fashion_mnist, ...), imported on first use for the same reason.
SUBMODULES = (
    "ablations",
    "checkpoints",
    "cifar",
    "classifier",
    "data",
    "diffusion",
    "evaluate",
    "gaussians",
    "interop",
    "metrics",
    "mixtures",
    "nets",
    "pretrained",
    "sample",
    "sampling",
    "schedules",
    "train",
    "trajectories",
    "utils",
    "viz",
)


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ddpm_lib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(SUBMODULES))
