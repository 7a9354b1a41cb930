"""The course's ipywidgets, reusable in homework: one module per explorer, on a small framework.

Each explorer is a function that returns an ipywidgets container (an ``ExplorerBox``, a ``VBox``),
or with ``static=True`` a matplotlib Figure of a few representative settings:

    forward_explorer(images, points)   # .forward, chapters 01, 03: x_t = q_sample(x_0, t, eps), schedules
    reverse_kernel_explorer()          # .reverse_kernel, chapter 02: the true reverse kernel q(x^{t-1}|x^t), 1-D
    posterior_explorer()               # .posterior, chapter 04: q(x_{t-1}|x_t, x_0) = N(mu~_t, beta~_t)
    decoder_explorer()                 # .decoder, chapter 07: the discretized decoder's bins
    reverse_process_explorer(traj, s)  # .sampling, chapter 10: scrub t through a stored trajectory
    ablation_explorer(table, data)     # .ablations, chapter 11: every run of a stored Table 2 table
    inpainting_explorer()              # .inpainting, chapter 12: the mask and t
    reconstruction_explorer()          # .reconstruction, chapter 13: t for reconstruction
    interpolation_explorer()           # .reconstruction, chapter 13: lambda and t for interpolation
    time_embedding_explorer(emb)       # .embedding, chapter 08: scrub t through the sinusoidal embedding

The framework (:mod:`.framework`: :class:`Explorer`, :class:`Blitter`, :func:`~.framework.explorer`,
:func:`~.framework.static_only` ...) describes the box they return (``box.controls``, ``box.png``,
``box.set(...)``, ``box.static_figure()``) and how frames are cached. A widget only draws: the
mathematics it shows lives in the library, tested there (:mod:`ddpm_lib.mixtures` for the reverse
kernel, :mod:`ddpm_lib.trajectories` and :func:`ddpm_lib.sampling.predicted_eps` for chapter 10);
the reverse-kernel functions and :data:`DEFAULT_MIXTURE` are re-exported here, where chapter 02 uses them.

ipywidgets is imported only inside the explorers: ``import ddpm_lib.course.widgets`` works without
it. The practice track's explorers (chapters 07-13) are imported on first use.
"""

from __future__ import annotations

from ...mixtures import (
    DEFAULT_MIXTURE,
    gaussian_reverse_kernel,
    kernel_kl_to_gaussian,
    moment_match,
    true_reverse_kernel,
)
from .forward import forward_explorer
from .framework import Blitter, Explorer
from .posterior import posterior_explorer
from .reverse_kernel import reverse_kernel_explorer

__all__ = [
    "forward_explorer",
    "reverse_kernel_explorer",
    "posterior_explorer",
    "decoder_explorer",
    "reverse_process_explorer",
    "inpainting_explorer",
    "reconstruction_explorer",
    "interpolation_explorer",
    "Explorer",
    "Blitter",
    "DEFAULT_MIXTURE",
    "true_reverse_kernel",
    "gaussian_reverse_kernel",
    "moment_match",
    "kernel_kl_to_gaussian",
    "ablation_explorer",
    "time_embedding_explorer",
]

# The practice track's explorers live in modules imported on first use, so that the theory
# explorers above load without them (and without a trained network).
_MODULE_OF = {
    "reverse_process_explorer": "sampling",  # chapter 10: scrub t through a stored trajectory
    "reconstruction_explorer": "reconstruction",  # chapter 13: t for reconstruction
    "interpolation_explorer": "reconstruction",  # chapter 13: lambda for interpolation
    "inpainting_explorer": "inpainting",  # chapter 12: the mask and t
    "decoder_explorer": "decoder",  # chapter 07: the discretized decoder's bins
    "ablation_explorer": "ablations",  # chapter 11: every run of a stored Table 2 table
    "time_embedding_explorer": "embedding",  # chapter 08: the sinusoidal time embedding
}


def __getattr__(name):
    if name in _MODULE_OF:
        import importlib

        module = importlib.import_module(f".{_MODULE_OF[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
