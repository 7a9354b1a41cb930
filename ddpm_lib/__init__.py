"""ddpm_lib: denoising diffusion probabilistic models, exact and small.

The library of the ddpm-course. Paper indexing everywhere: t = 1..T, x_0 is data, and every
schedule table has length T + 1 with ``alpha_bars[0] == 1``.
"""

__version__ = "0.1.0"

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
    "sample_respaced",
    "ddim_sample",
    "ddim_encode",
    "inpaint",
    "reconstruct",
    "interpolate",
    "device",
    "seed_everything",
]


def _optional(names, module):
    """Re-export names from a module once it exists (lets the library grow module by module)."""
    import importlib

    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ModuleNotFoundError as e:  # pragma: no cover - only while a module is being written
        if e.name != f"{__name__}.{module}":
            raise
        return
    for n in names:
        globals()[n] = getattr(mod, n)
        __all__.append(n)


_optional(["timestep_embedding", "MLP", "UNet", "UNetConfig", "count_parameters"], "nets")
_optional(["swiss_roll", "gaussian_mixture", "GaussianData", "fashion_mnist", "read_idx"], "data")
_optional(["save_checkpoint", "load_checkpoint", "build_model"], "checkpoints")
