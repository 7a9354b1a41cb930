"""Sampling trajectories on disk: x_t and the predicted x_0 at recorded timesteps, as safetensors.

    save_trajectory(traj, "traj.safetensors", {"seed": 0, "method": "ancestral"})
    traj, meta = load_trajectory("traj.safetensors")   # (Trajectory, metadata)
    traj, meta = load_trajectory()                     # the shipped one of chapter 10, sha256-checked

The file holds the tensors of :meth:`Trajectory.to_tensors`: ``ts`` and ``timesteps`` (K,) (indices
of the schedule that sampled, and the original timesteps they stand for), ``x_t`` and ``pred_x0``
(K, B, ...), with ``pred_x0`` NaN at t = 0, where no prediction is made. Its safetensors metadata
has ``format = "ddpm_lib.trajectory"`` and whatever the writer adds (``python -m ddpm_lib.sample
--trajectory`` adds the checkpoint's sha256, the sampler, the seed ...), each value JSON-encoded
unless it is a string.
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import data_dir, verify_if_registered
from .diffusion import Trajectory
from .sampling import check_trajectory
from .utils import atomic_write

__all__ = [
    "DEFAULT_TRAJECTORY",
    "MAKE_TRAJECTORY",
    "TRAJECTORY_FORMAT",
    "SAMPLES_FORMAT",
    "load_trajectory",
    "save_trajectory",
    "save_samples",
    "save_tensors",
]

DEFAULT_TRAJECTORY = "trajectories/fashion_mnist_unet_ancestral1000_seed0.safetensors"
MAKE_TRAJECTORY = "bash scripts/make_trajectory.sh"
TRAJECTORY_FORMAT = "ddpm_lib.trajectory"
SAMPLES_FORMAT = "ddpm_lib.samples"


def save_tensors(tensors: dict, path, metadata: dict) -> Path:
    """Write named tensors as safetensors, atomically; metadata values that are not strings are
    JSON-encoded (the one writer behind :func:`save_trajectory` and :func:`save_samples`)."""
    from safetensors.torch import save_file

    return atomic_write(
        path,
        lambda tmp: save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            tmp,
            metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()},
        ),
    )


def save_samples(samples, path, metadata: dict | None = None) -> Path:
    """Write samples (N, ...) as safetensors under the key ``"samples"``, with ``format =
    "ddpm_lib.samples"`` and ``metadata`` beside them (``ddpm-sample --save-samples`` writes these)."""
    return save_tensors({"samples": samples}, path, {"format": SAMPLES_FORMAT, **(metadata or {})})


def save_trajectory(trajectory: Trajectory, path, metadata: dict | None = None) -> Path:
    """Write a trajectory as safetensors (atomically), in the format :func:`load_trajectory` reads.

    :param trajectory: a :class:`Trajectory` (``sample(..., record=[...])`` returns one).
    :param path: the ``.safetensors`` file to write (its folder is made if missing).
    :param metadata: what to store beside the tensors (the sampler, the seed, the checkpoint ...);
        strings are stored as they are, other values JSON-encoded. ``format`` defaults to
        ``"ddpm_lib.trajectory"``.
    :return: the path written.
    """
    check_trajectory(trajectory)
    return save_tensors(trajectory.to_tensors(), path, {"format": TRAJECTORY_FORMAT, **(metadata or {})})


def load_trajectory(path=None, verify: bool = True):
    """Load a trajectory written by :func:`save_trajectory` (or ``python -m ddpm_lib.sample --trajectory``).

    :param path: a ``.safetensors`` file, or a path relative to the data folder (default
        :data:`DEFAULT_TRAJECTORY`, the one chapter 10 uses).
    :param verify: check the file's size and sha256 against ``data/registry.json`` when the
        registry lists it (files the registry does not list are loaded unchecked).
    :return: ``(Trajectory, metadata)``: a pair, so take ``load_trajectory(...)[0]`` (or unpack it) where
        a Trajectory is wanted; metadata is the file's safetensors metadata with JSON values
        decoded (the checkpoint's sha256, the sampler, the seed ...).
    """
    from safetensors import safe_open

    rel = DEFAULT_TRAJECTORY if path is None else path
    p = Path(rel)
    if not p.is_absolute() and not p.is_file():
        p = data_dir() / rel
    if not p.is_file():
        raise FileNotFoundError(
            f"no trajectory file at {p}. Make the shipped one with `{MAKE_TRAJECTORY}` "
            "(python -m ddpm_lib.sample ... --trajectory FILE writes others)"
        )
    if verify:
        verify_if_registered(p)
    with safe_open(str(p), framework="pt") as f:
        meta = dict(f.metadata() or {})
        names = set(f.keys())
        missing = {"ts", "x_t", "pred_x0"} - names
        if missing:
            raise ValueError(f"{p} is not a ddpm_lib trajectory: it lacks the tensors {sorted(missing)}")
        tensors = {k: f.get_tensor(k) for k in names}
    decoded = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except (TypeError, ValueError):
            decoded[k] = v
    traj = Trajectory(
        ts=tensors["ts"], x_t=tensors["x_t"], pred_x0=tensors["pred_x0"], timesteps=tensors.get("timesteps")
    )
    return traj, decoded
