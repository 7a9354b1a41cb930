"""The parts of a run a TrainConfig describes: its data, network and diffusion, and the batches.

Taught in chapter 09. ``load_images`` and ``point_sampler`` give the training data,
``make_model`` the network (checked against the data's shape), ``make_diffusion`` the
GaussianDiffusion, and ``Batches`` the global batch of every step from one seeded generator.
"""

from __future__ import annotations

import pickle
from dataclasses import fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..diffusion import GaussianDiffusion
from ..nets import MLP, MLPConfig, UNet, UNetConfig
from ..schedules import NoiseSchedule
from ..utils import os_error
from .config import ConfigError, TrainConfig, stream_seed

__all__ = [
    "load_images",
    "own_images",
    "point_sampler",
    "load_data",
    "make_diffusion",
    "make_model",
    "Batches",
]


def _read_dataset(cfg: TrainConfig):
    """The training split as its loader returns it (a tensor, or a tuple whose first item is one)."""
    from .. import data as D

    root = cfg.data_root or None
    if cfg.dataset == "images":
        if root is None:
            raise ConfigError(
                "dataset 'images' trains on your own images: give data_root, a folder of image files "
                "or an .npz/.npy file of uint8 images (or pass images= to Trainer)"
            )
        return D.load_image_files(root)
    if cfg.dataset == "cifar10":
        loader = getattr(D, "cifar10", None)
        if loader is None:
            try:
                from ..cifar import cifar10 as loader
            except ImportError:
                raise ConfigError(
                    "dataset 'cifar10' needs ddpm_lib.data.cifar10() or ddpm_lib.cifar.cifar10(), "
                    "which this installation of ddpm_lib does not have"
                ) from None
        return loader(split="train", root=root)
    split = "train" if cfg.dataset == "fashion-mnist" else "train-10k"
    if root is not None and not Path(root).is_dir():  # else the lookup would go on to the data folder
        raise FileNotFoundError(
            "no such folder (give the folder that holds the *-ubyte.gz files, or leave data_root empty)"
        )
    return D.fashion_mnist(split, root=root)


def load_images(cfg: TrainConfig) -> torch.Tensor:
    from .. import data as D

    try:
        images = _read_dataset(cfg)
    except FileNotFoundError as e:  # a missing file or folder keeps its type (a usage error: exit 2)
        if cfg.data_root:
            raise FileNotFoundError(
                f"dataset {cfg.dataset!r} with data_root {cfg.data_root!r}: {e}"
            ) from None
        raise
    except ConfigError:
        raise
    except (ValueError, OSError, pickle.UnpicklingError) as e:
        # a corrupt, crafted or unreadable data file: one line for the command line (the loader's
        # message names the file), not a traceback, and a failure (exit 1), as ddpm-data verify
        # reports it: an I/O error stays an OSError, anything else is the data's integrity
        msg = f"cannot load dataset {cfg.dataset!r}: {e}"
        if isinstance(e, OSError):
            raise os_error(e.errno, msg) from None
        raise D.DataIntegrityError(msg) from None
    if isinstance(images, (tuple, list)):
        images = images[0]
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        images = D.from_uint8(images)
    if images.ndim != 4 or not images.is_floating_point():
        raise ConfigError(
            f"dataset {cfg.dataset!r} gave {tuple(images.shape)} {images.dtype}, not float (N, C, H, W)"
        )
    return images.float().contiguous()


def point_sampler(name: str) -> Callable[[int, torch.Generator], torch.Tensor]:
    from .. import data as D

    if name == "swiss-roll":
        return lambda n, g: D.swiss_roll(n, generator=g)
    return lambda n, g: D.gaussian_mixture(n, generator=g)


def own_images(images) -> torch.Tensor:
    """A caller's images for dataset "images": uint8 (N, C, H, W), or float in [-1, 1], as float32."""
    from .. import data as D

    t = torch.as_tensor(images)
    if t.ndim != 4 or t.shape[0] == 0 or t.shape[1] not in (1, 3):
        raise ConfigError(f"images must be a tensor (N, C, H, W) with C = 1 or 3, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return D.from_uint8(t).contiguous()
    if not t.is_floating_point():
        raise ConfigError(f"images must be uint8 (0..255) or float in [-1, 1], got dtype {t.dtype}")
    t = t.float()
    if not bool(torch.isfinite(t).all()) or float(t.min()) < -1 or float(t.max()) > 1:
        raise ConfigError("float images must lie in [-1, 1] (x / 127.5 - 1 of 8-bit values), and be finite")
    return t.contiguous()


def load_data(cfg: TrainConfig, device, images=None) -> tuple:
    """(point sampler or None, training data on ``device`` or None, data shape) of a run.

    Images: the data set (the first ``n_examples`` if set), shape (C, H, W); ``images``: the
    caller's own (dataset "images" only). 2-D points: a sampler that draws fresh points each step,
    or, with ``n_examples``, a fixed set drawn once; shape (2,).
    """
    if images is not None and (cfg.dataset != "images" or cfg.data_root):
        raise ConfigError(
            "images= goes with dataset 'images' and an empty data_root (the run trains on the tensor given)"
        )
    if cfg.image_data:
        images = own_images(images) if images is not None else load_images(cfg)
        if cfg.n_examples:
            if cfg.n_examples > len(images):
                raise ConfigError(
                    f"n_examples {cfg.n_examples} exceeds the {len(images)} examples of {cfg.dataset!r}"
                )
            images = images[: cfg.n_examples].clone()
        return None, images.to(device), tuple(images.shape[1:])
    sampler, data = point_sampler(cfg.dataset), None
    if cfg.n_examples:
        data = sampler(cfg.n_examples, torch.Generator().manual_seed(stream_seed(cfg.seed, "dataset"))).to(
            device
        )
    return sampler, data, (2,)


def make_diffusion(cfg: TrainConfig) -> GaussianDiffusion:
    """The GaussianDiffusion a config describes."""
    kw = {} if cfg.schedule == "cosine" else dict(beta_start=cfg.beta_start, beta_end=cfg.beta_end)
    try:
        schedule = NoiseSchedule.named(cfg.schedule, T=cfg.T, **kw)
        return GaussianDiffusion(
            schedule,
            prediction=cfg.prediction,
            variance=cfg.variance,
            loss=cfg.loss,
            decoder=cfg.resolved_decoder,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


def make_model(cfg: TrainConfig, data_shape) -> nn.Module:
    """The network a config describes, checked against the data's shape: (C, H, W) or (D,)."""
    data_shape = tuple(int(s) for s in data_shape)
    learned = cfg.variance.startswith("learned")
    args = dict(cfg.model_args)
    if cfg.model == "mlp":
        allowed = [f.name for f in fields(MLPConfig)]
        _check_args(args, allowed, "MLPConfig")
        if len(data_shape) != 1:
            raise ConfigError(f"the MLP takes vectors; the data have shape {data_shape}")
        args.setdefault("data_dim", data_shape[0])
        args.setdefault("out_dim", 2 * data_shape[0] if learned else None)
        try:
            model = MLP(**args)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"cannot build model 'mlp' with model_args {cfg.model_args}: {e}") from None
        want_in, want_out = model.config.data_dim, model.config.out_dim or model.config.data_dim
        if want_in != data_shape[0] or want_out != (2 if learned else 1) * data_shape[0]:
            raise ConfigError(
                f"MLP(data_dim={want_in}, out_dim={want_out}) does not fit {data_shape[0]}-D data "
                f"with variance {cfg.variance!r}"
            )
        return model
    _check_args(args, [f.name for f in fields(UNetConfig)], "UNetConfig")
    if cfg.dropout is not None:
        args["dropout"] = cfg.dropout
    if len(data_shape) != 3:
        raise ConfigError(f"a U-Net takes images (C, H, W); the data have shape {data_shape}")
    C, H, W = data_shape
    try:
        if cfg.model == "unet":
            base = dict(in_channels=C, out_channels=(2 if learned else 1) * C, resolution=H)
            model = UNet(UNetConfig(**{**base, **args}))
        elif cfg.model == "unet-cifar10":
            model = UNet.ddpm_cifar10(learn_sigma=learned, **args)
        else:
            model = UNet.fashion_mnist(cfg.model.removeprefix("unet-fmnist-"), learn_sigma=learned, **args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot build model {cfg.model!r} with model_args {cfg.model_args}: {e}") from None
    c = model.config
    want = (c.in_channels, c.resolution, c.resolution)
    if want != (C, H, W) or c.out_channels != (2 if learned else 1) * C:
        raise ConfigError(
            f"model {cfg.model!r} is built for {c.in_channels}x{c.resolution}x{c.resolution} images with "
            f"{c.out_channels} output channels; dataset {cfg.dataset!r} has {C}x{H}x{W} images and variance "
            f"{cfg.variance!r} needs {(2 if learned else 1) * C} (try model 'unet' with model_args, which takes "
            f"channels and resolution from the data)"
        )
    return model


def _check_args(args: dict, allowed, what: str):
    bad = [k for k in args if k not in allowed]
    if bad:
        raise ConfigError(
            f"model_args has unknown key(s) {', '.join(map(repr, bad))} for {what}; "
            f"allowed: {', '.join(allowed)}"
        )


class Batches:
    """The global batch of every step, drawn from one seeded CPU generator (order, flips, points).

    Image (or fixed) data: a random permutation per pass, global batches taken in order from it,
    a new permutation when fewer than batch_size examples are left (drop-last). Fresh 2-D data:
    batch_size new points every step. ``state()`` / ``load_state()`` give exact continuation.
    """

    def __init__(
        self, data: torch.Tensor | None, sampler, batch_size: int, generator: torch.Generator, flip: bool
    ):
        self.data, self.sampler, self.B, self.g, self.flip = data, sampler, batch_size, generator, flip
        self.perm = torch.zeros(0, dtype=torch.long)
        self.pos = 0
        if data is not None and batch_size > len(data):
            raise ConfigError(f"batch_size {batch_size} exceeds the {len(data)} training examples")

    def next(self, rank: int = 0, world: int = 1) -> torch.Tensor:
        b = self.B // world
        lo, hi = rank * b, (rank + 1) * b
        if self.data is None:
            return self.sampler(self.B, self.g)[lo:hi]
        if self.pos + self.B > len(self.perm):
            self.perm = torch.randperm(len(self.data), generator=self.g)
            self.pos = 0
        idx = self.perm[self.pos + lo : self.pos + hi]
        self.pos += self.B
        x = self.data[idx.to(self.data.device)]
        if self.flip:
            mask = (torch.rand(self.B, generator=self.g) < 0.5)[lo:hi].to(x.device)
            x = torch.where(mask.reshape(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)
        return x

    def state(self) -> dict:
        return {"data.perm": self.perm.clone(), "data.pos": torch.tensor([self.pos], dtype=torch.long)}

    def load_state(self, extra: dict):
        if "data.perm" in extra:
            self.perm = extra["data.perm"].to("cpu", torch.long).clone()
            self.pos = int(extra["data.pos"][0])
