"""Training a DDPM: Algorithm 1 of Ho et al. 2020 as a Trainer, and its command line.

    repeat
        x_0 ~ q(x_0);  t ~ Uniform{1..T};  eps ~ N(0, I)
        take a gradient step on ||eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t)||^2
    until converged

with the paper's engineering: Adam, a linear learning-rate warm-up, gradient clipping by the
global norm, an exponential moving average (EMA) of the weights for sampling, and random
horizontal flips on CIFAR-10.

From Python (a chapter)::

    from ddpm_lib.train import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(dataset="swiss-roll", model="mlp", T=200, beta_end=0.1, steps=3000,
                                  batch_size=256, lr=2e-3, decoder="gaussian"))
    trainer.run()                      # or trainer.step() in your own loop
    trainer.history.loss               # the loss of every step; history.loss_by_t() by timestep
    x = trainer.sample(1000)           # with the EMA weights

From the shell::

    python -m ddpm_lib.train --config configs/fashion_mnist.toml --out-dir runs/fmnist
    python -m ddpm_lib.train --config configs/fashion_mnist.toml --out-dir runs/fmnist --resume --steps 60000
    torchrun --nproc_per_node 8 -m ddpm_lib.train --config configs/cifar10.toml --out-dir runs/cifar10

A run directory holds ``ckpt_<step>.safetensors`` (the last ``keep_last``), ``latest.safetensors``
(a hard link to, or copy of, the newest), each with its ``.json`` sidecar, ``samples_<step>.png``
and ``log.jsonl`` (one line of statistics every ``log_every`` steps), and ``.lock``: the
Trainer that writes the directory holds a flock on it, so a second process is refused (see
``ddpm_lib.rundir``, which also removes temporary files that killed saves left).

Reproducibility. All randomness comes from seeded generators whose states are saved in every
checkpoint: the data order and flips (a CPU generator), t and eps (a generator on the training
device), dropout (the global torch RNG of each process, and CUDA's on a GPU). On one device,
training N steps in one go and training k steps, then resuming to N, give bit-identical weights.

Data parallel. Under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK set) every process draws the
same *global* batch of ``batch_size`` example indices from the seeded permutation, and the same
global t and eps, and keeps the slice ``[rank * b, (rank + 1) * b)`` with b = batch_size //
world_size (a contiguous split of each global batch, not torch's DistributedSampler, which
interleaves). The model is wrapped in DistributedDataParallel, which averages the gradients, so
a step on W processes is the step one process takes on the whole batch. Only rank 0 logs, saves
and samples.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import difflib
import hashlib
import json
import math
import os
import pickle
import shlex
import shutil
import sys
import time
import typing
import weakref
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from . import viz
from .checkpoints import (Checkpoint, CheckpointError, build_on_meta, check_data_shape, check_model_fits,
                          load_checkpoint, save_checkpoint)
from .diffusion import DECODERS, LOSSES, PREDICTIONS, VARIANCES, GaussianDiffusion
from .nets import MLP, MLPConfig, UNet, UNetConfig
from .sampling import sample_respaced
from .rundir import RunDirInUseError, open_run_dir
from .schedules import MAX_T, NoiseSchedule
from .utils import device as pick_device

__all__ = [
    "TrainConfig",
    "Trainer",
    "History",
    "ConfigError",
    "ema_update",
    "ema_decay_at",
    "make_model",
    "make_diffusion",
    "load_config",
    "config_from_dict",
    "find_checkpoint",
    "load_resumable",
    "DATASETS",
    "MODELS",
    "SCHEDULES",
    "main",
]

IMAGE_DATASETS = ("fashion-mnist", "fashion-mnist-10k", "cifar10")
POINT_DATASETS = ("swiss-roll", "gaussian-mixture")
DATASETS = IMAGE_DATASETS + POINT_DATASETS
MODELS = ("mlp", *(f"unet-fmnist-{k}" for k in UNet.FASHION_MNIST_SIZES), "unet-cifar10", "unet")
SCHEDULES = ("linear", "cosine", "quadratic")
T_BUCKETS = 20  # the loss by timestep is kept as means over this many ranges of t


class ConfigError(ValueError):
    """A training configuration that cannot be run; the message says what is allowed."""


# -----------------------------------------------------------------------------
# configuration


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults: the paper's objective and optimizer, a small image run."""

    # data
    dataset: str = "fashion-mnist-10k"  # one of DATASETS
    data_root: str = ""  # a folder with the data set's files (searched first); "" = the usual lookup
    n_examples: int = 0  # train on the first n examples only (2-D data: a fixed set of n points); 0 = all
    random_flip: bool = False  # horizontal flips, p = 1/2 (DDPM on CIFAR-10)
    # model
    model: str = "unet-fmnist-small"  # one of MODELS
    model_args: dict = field(default_factory=dict)  # overrides of UNetConfig / MLPConfig fields
    dropout: Optional[float] = None  # overrides the model's dropout (U-Nets only)
    # diffusion
    prediction: str = "eps"
    variance: str = "fixed_large"
    loss: str = "simple"
    decoder: str = "auto"  # "auto": discretized for images, gaussian for 2-D data
    schedule: str = "linear"  # one of SCHEDULES
    T: int = 1000
    beta_start: float = 1e-4  # linear and quadratic schedules
    beta_end: float = 0.02
    # optimization
    batch_size: int = 64  # the global batch (split across processes under torchrun)
    lr: float = 2e-4  # Adam
    warmup_steps: int = 0  # linear warm-up of the learning rate (DDPM: 5000)
    grad_clip: float = 1.0  # clip the global gradient norm; 0 = no clipping
    ema_decay: float = 0.9999
    # > 0: the EMA's decay at update k (k = 0, 1, ...) is min(ema_decay, (1 + k) / (ema_warmup + k)), so a
    # short run's average is not dominated by the initial weights (0 = the constant decay, as in DDPM)
    ema_warmup: int = 0
    steps: int = 10000  # total optimizer steps of the run
    seed: int = 0
    # output
    out_dir: str = ""  # "" = write nothing (the command line uses runs/<dataset>)
    ckpt_every: int = 5000  # 0 = only at the end
    keep_last: int = 2  # step checkpoints kept in out_dir
    sample_every: int = 5000  # 0 = never
    sample_steps: int = 100  # respaced sampling steps for the grids; 0 = all T
    n_samples: int = 64
    log_every: int = 100
    # hardware
    device: str = "auto"  # "auto" = ddpm_lib.utils.device(): cuda, then mps, then cpu
    bf16: bool = False  # bfloat16 autocast, on CUDA only
    compile: bool = False  # torch.compile the network

    def validate(self) -> "TrainConfig":
        """Check every field; raise ConfigError naming the allowed values. Returns self."""
        def one_of(name, allowed):
            v = getattr(self, name)
            if v not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {v!r}"
                                  + _suggest(v, allowed))

        one_of("dataset", DATASETS)
        one_of("model", MODELS)
        one_of("prediction", PREDICTIONS)
        one_of("variance", VARIANCES)
        one_of("loss", LOSSES)
        one_of("decoder", ("auto",) + DECODERS)
        one_of("schedule", SCHEDULES)
        for name in ("T", "batch_size", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.T > MAX_T:
            raise ConfigError(f"T must be <= {MAX_T} (MAX_T), got {self.T}")
        for name in ("n_examples", "warmup_steps", "ema_warmup", "steps", "ckpt_every", "sample_every", "sample_steps",
                     "n_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not self.grad_clip >= 0:
            raise ConfigError(f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not isinstance(self.model_args, dict):
            raise ConfigError(f"model_args must be a dict, got {type(self.model_args).__name__}")
        if self.loss == "hybrid" and not self.variance.startswith("learned"):
            raise ConfigError("loss 'hybrid' needs a learned variance: variance 'learned' or 'learned_range'")
        points = self.dataset in POINT_DATASETS
        if points and self.decoder == "discretized":
            raise ConfigError(f"decoder 'discretized' is for 8-bit images; dataset {self.dataset!r} is continuous "
                              f"2-D data: use decoder 'gaussian' (or 'auto')")
        if points and self.random_flip:
            raise ConfigError(f"random_flip flips images; dataset {self.dataset!r} holds 2-D points")
        if points != (self.model == "mlp"):
            fit = "'mlp'" if points else ", ".join(repr(m) for m in MODELS if m != "mlp")
            raise ConfigError(f"model {self.model!r} does not fit dataset {self.dataset!r}: use {fit}")
        if self.model == "mlp" and self.dropout is not None:
            raise ConfigError("the MLP has no dropout: leave dropout unset")
        return self

    @property
    def image_data(self) -> bool:
        return self.dataset in IMAGE_DATASETS

    @property
    def resolved_decoder(self) -> str:
        if self.decoder != "auto":
            return self.decoder
        return "discretized" if self.image_data else "gaussian"


def _suggest(value, allowed) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value):
    """A value from TOML, JSON or the command line, checked against the field's type."""
    typ = _TYPES[name]
    optional = typing.get_origin(typ) is typing.Union and type(None) in typing.get_args(typ)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    bad = ConfigError(f"{name} must be {typ.__name__ if isinstance(typ, type) else typ}, got {value!r}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    if typ is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.replace("_", ""))
        raise bad
    if typ is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        raise bad
    if typ is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{name} must be a JSON object such as '{{\"ch\": 32}}': {e}") from None
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if typ is str:
        if not isinstance(value, str):
            raise bad
        return value
    return value  # pragma: no cover


def config_from_dict(d: dict, base: TrainConfig | None = None, strict: bool = True) -> TrainConfig:
    """A TrainConfig from ``base`` (defaults if None) with the fields in ``d`` replaced.

    Unknown keys raise ConfigError listing the fields (or are skipped when not ``strict``).
    """
    base = base if base is not None else TrainConfig()
    unknown = [k for k in d if k not in _FIELDS]
    if unknown and strict:
        hints = "".join(_suggest(k, _FIELDS) for k in unknown)
        raise ConfigError(f"unknown configuration field(s) {', '.join(map(repr, unknown))}{hints}; "
                          f"the fields are: {', '.join(_FIELDS)}")
    values = {k: _coerce(k, v) for k, v in d.items() if k in _FIELDS}
    return dataclasses.replace(base, **values).validate()


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML file of TrainConfig fields (flat; ``model_args`` may be a table)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    try:
        return config_from_dict(d, base)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _to_toml(cfg: TrainConfig) -> str:
    lines = []
    for k, v in asdict(cfg).items():
        if v is None:
            lines.append(f"# {k} = (unset)")
        elif isinstance(v, dict):
            inner = ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items())
            lines.append(f"{k} = {{{inner}}}" if v else f"{k} = {{}}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------
# building blocks: data, model, diffusion


def _seed(seed: int, *keys) -> int:
    """A 63-bit seed for one stream of randomness ("data", "noise", ...) of a run with ``seed``."""
    h = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def _read_dataset(cfg: TrainConfig):
    """The training split as its loader returns it (a tensor, or a tuple whose first item is one)."""
    from . import data as D

    root = cfg.data_root or None
    if cfg.dataset == "cifar10":
        loader = getattr(D, "cifar10", None)
        if loader is None:
            try:
                from .cifar import cifar10 as loader
            except ImportError:
                raise ConfigError("dataset 'cifar10' needs ddpm_lib.data.cifar10() or ddpm_lib.cifar.cifar10(), "
                                  "which this installation of ddpm_lib does not have") from None
        return loader(split="train", root=root)
    split = "train" if cfg.dataset == "fashion-mnist" else "train-10k"
    return D.fashion_mnist(split, root=root)


def _load_images(cfg: TrainConfig) -> torch.Tensor:
    from . import data as D

    try:
        images = _read_dataset(cfg)
    except (ValueError, OSError, pickle.UnpicklingError) as e:
        # a corrupt, crafted or unreadable data file: one line for the command line (the loader's
        # message names the file), not a traceback; a missing file keeps its own type and message
        if isinstance(e, (FileNotFoundError, ConfigError)):
            raise
        raise ConfigError(f"cannot load dataset {cfg.dataset!r}: {e}") from None
    if isinstance(images, (tuple, list)):
        images = images[0]
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        images = D.from_uint8(images)
    if images.ndim != 4 or not images.is_floating_point():
        raise ConfigError(f"dataset {cfg.dataset!r} gave {tuple(images.shape)} {images.dtype}, not float (N, C, H, W)")
    return images.float().contiguous()


def _point_sampler(name: str) -> Callable[[int, torch.Generator], torch.Tensor]:
    from . import data as D

    if name == "swiss-roll":
        return lambda n, g: D.swiss_roll(n, generator=g)
    return lambda n, g: D.gaussian_mixture(n, generator=g)


def make_diffusion(cfg: TrainConfig) -> GaussianDiffusion:
    """The GaussianDiffusion a config describes."""
    kw = {} if cfg.schedule == "cosine" else dict(beta_start=cfg.beta_start, beta_end=cfg.beta_end)
    try:
        schedule = NoiseSchedule.named(cfg.schedule, T=cfg.T, **kw)
        return GaussianDiffusion(schedule, prediction=cfg.prediction, variance=cfg.variance, loss=cfg.loss,
                                 decoder=cfg.resolved_decoder)
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
        model = MLP(**args)
        want_in, want_out = model.config.data_dim, model.config.out_dim or model.config.data_dim
        if want_in != data_shape[0] or want_out != (2 if learned else 1) * data_shape[0]:
            raise ConfigError(f"MLP(data_dim={want_in}, out_dim={want_out}) does not fit {data_shape[0]}-D data "
                              f"with variance {cfg.variance!r}")
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
            f"channels and resolution from the data)")
    return model


def _check_args(args: dict, allowed, what: str):
    bad = [k for k in args if k not in allowed]
    if bad:
        raise ConfigError(f"model_args has unknown key(s) {', '.join(map(repr, bad))} for {what}; "
                          f"allowed: {', '.join(allowed)}")


class _Batches:
    """The global batch of every step, drawn from one seeded CPU generator (order, flips, points).

    Image (or fixed) data: a random permutation per pass, global batches taken in order from it,
    a new permutation when fewer than batch_size examples are left (drop-last). Fresh 2-D data:
    batch_size new points every step. ``state()`` / ``load_state()`` give exact continuation.
    """

    def __init__(self, data: torch.Tensor | None, sampler, batch_size: int, generator: torch.Generator,
                 flip: bool):
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
        idx = self.perm[self.pos + lo:self.pos + hi]
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


# -----------------------------------------------------------------------------
# EMA and history


def ema_decay_at(k: int, decay: float, warmup: int = 0) -> float:
    """The EMA decay used at update k = 0, 1, ...: ``decay``, or with ``warmup`` > 0
    min(decay, (1 + k) / (warmup + k)), which starts near 1 / warmup and rises to ``decay``."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return decay if warmup == 0 else min(decay, (1 + k) / (warmup + k))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * param for every parameter; buffers are copied."""
    ep, mp = list(ema.parameters()), list(model.parameters())
    if len(ep) != len(mp):
        raise ValueError("ema and model have different parameters")
    torch._foreach_mul_(ep, decay)
    torch._foreach_add_(ep, mp, alpha=1.0 - decay)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)


def debias_ema(ema_state: dict, initial_state: dict, decay: float, steps: int) -> dict:
    """Remove the initial weights' share from an EMA that started at them.

    After N updates ema_N = d^N w_0 + (1 - d) sum_k d^(N-k) w_k; returns
    (ema_N - d^N w_0) / (1 - d^N), the normalized exponential average of the trained weights
    (Adam's zero-debiasing). Matters for runs not much longer than 1 / (1 - d) steps.
    Buffers (non-float entries and those equal in both) pass through unchanged.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    share = decay**steps
    out = {}
    for k, v in ema_state.items():
        if k not in initial_state:
            raise KeyError(f"initial_state has no entry {k!r}")
        out[k] = (v - share * initial_state[k]) / (1 - share) if v.is_floating_point() else v
    return out


@dataclass
class History:
    """What a run measured. Per step: ``step``, ``loss`` (the mean over the global batch),
    ``grad_norm`` (before clipping) and ``lr``. Per window of ``log_every`` steps ending at
    ``window_step``: the sum and count of the per-example loss for t in each range
    [t_edges[j], t_edges[j + 1]) (``window_sum``, ``window_count``) and ``window_images_per_s``.
    """

    t_edges: list
    step: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    window_step: list = field(default_factory=list)
    window_sum: list = field(default_factory=list)
    window_count: list = field(default_factory=list)
    window_images_per_s: list = field(default_factory=list)

    def loss_by_t(self, since_step: int = 0):
        """(t_mid, mean loss) over the windows ending after ``since_step``: two numpy arrays of
        length len(t_edges) - 1 (NaN where no t of the range was drawn)."""
        import numpy as np

        edges = np.asarray(self.t_edges, dtype=np.float64)
        nb = len(edges) - 1
        s, c = np.zeros(nb), np.zeros(nb)
        for st, ws, wc in zip(self.window_step, self.window_sum, self.window_count):
            if st > since_step:
                s += np.asarray(ws)
                c += np.asarray(wc)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (edges[:-1] + edges[1:] - 1) / 2, np.where(c > 0, s / np.maximum(c, 1), np.nan)

    def to_tensors(self) -> dict:
        nb = len(self.t_edges) - 1
        f64 = dict(dtype=torch.float64)
        return {
            "history.t_edges": torch.tensor(self.t_edges, dtype=torch.long),
            "history.step": torch.tensor(self.step, dtype=torch.long),
            "history.loss": torch.tensor(self.loss, **f64),
            "history.grad_norm": torch.tensor(self.grad_norm, **f64),
            "history.lr": torch.tensor(self.lr, **f64),
            "history.window_step": torch.tensor(self.window_step, dtype=torch.long),
            "history.window_sum": torch.tensor(self.window_sum, **f64).reshape(-1, nb),
            "history.window_count": torch.tensor(self.window_count, **f64).reshape(-1, nb),
            "history.window_images_per_s": torch.tensor(self.window_images_per_s, **f64),
        }

    @classmethod
    def from_tensors(cls, d: dict) -> "History | None":
        if "history.t_edges" not in d:
            return None
        g = lambda k: d[f"history.{k}"].tolist()  # noqa: E731
        return cls(g("t_edges"), g("step"), g("loss"), g("grad_norm"), g("lr"), g("window_step"),
                   g("window_sum"), g("window_count"), g("window_images_per_s"))


def _t_edges(T: int, nb: int) -> list:
    # bucket j holds the t with (t - 1) * nb // T == j, i.e. t in [1 + ceil(j T / nb), ...)
    return [1 + (j * T + nb - 1) // nb for j in range(nb)] + [T + 1]


# -----------------------------------------------------------------------------
# the trainer


def _dist_env() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")) and int(os.environ["WORLD_SIZE"]) > 1


def _ckpt_step(p: Path) -> int | None:
    stem = p.name[len("ckpt_"):-len(".safetensors")]
    return int(stem) if p.name.startswith("ckpt_") and p.name.endswith(".safetensors") and stem.isdigit() else None


def find_checkpoint(path) -> Path:
    """The checkpoint to resume from: ``path`` itself if a file, else ``latest.safetensors`` in
    the directory, else its ``ckpt_<step>.safetensors`` with the largest step."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"cannot resume: {path} does not exist")
    latest = path / "latest.safetensors"
    if latest.is_file():
        return latest
    ckpts = sorted((s, p) for p in path.glob("ckpt_*.safetensors") if (s := _ckpt_step(p)) is not None)
    if not ckpts:
        raise FileNotFoundError(f"cannot resume: no checkpoint (latest.safetensors or ckpt_<step>.safetensors) in {path}")
    return ckpts[-1][1]


def load_resumable(path, note: Callable[[str], object] | None = None) -> Checkpoint:
    """The checkpoint to resume from, loaded and verified: ``path`` itself if a file; in a run
    directory ``latest.safetensors``, and when that cannot be loaded (a corrupt or truncated file)
    the newest ``ckpt_<step>.safetensors`` that can. Each file passed over is reported by
    ``note`` (default: a "note:" line on stderr) with the reason, and so is the fallback."""
    note = note or (lambda msg: print(f"note: {msg}", file=sys.stderr, flush=True))
    path = Path(path)
    if path.is_file():
        return load_checkpoint(path)
    first = find_checkpoint(path)
    ckpts = sorted(((s, p) for p in path.glob("ckpt_*.safetensors") if (s := _ckpt_step(p)) is not None),
                   reverse=True)
    # latest is usually a hard link to the newest ckpt_N: the same bytes, not worth a second try
    candidates = [first] + [p for _, p in ckpts if p != first and not _same_file(p, first)]
    passed_over = []
    for candidate in candidates:
        try:
            ckpt = load_checkpoint(candidate)
        except CheckpointError as e:
            note(f"cannot resume from {candidate.name}: {e}")
            passed_over.append(candidate.name)
            continue
        if passed_over:
            note(f"resuming from {candidate}, the newest intact checkpoint (step {ckpt.step}); "
                 f"passed over: {', '.join(passed_over)}")
        return ckpt
    raise CheckpointError(f"cannot resume: no checkpoint in {path} can be loaded (tried {', '.join(passed_over)}; "
                          f"the reasons are above)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _link_or_copy(src: Path, dst: Path):
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class Trainer:
    """Algorithm 1 for one TrainConfig: data, model, EMA copy, Adam, diffusion, and the loop.

    ``step()`` one optimizer step (returns its loss); ``run(steps=None)`` to ``config.steps`` (or
    ``steps`` more); ``sample(n)`` with the EMA weights; ``save()``; ``Trainer.resume(out_dir)``.
    Attributes: ``model`` (the raw network), ``ema``, ``optimizer``, ``diffusion``, ``device``,
    ``step_count``, ``history``, ``data_shape``.
    """

    def __init__(self, config: TrainConfig, *, command: str | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = cfg = copy.deepcopy(config).validate()
        self.command = command if command is not None else _api_command(cfg)

        # processes and device
        self.rank, self.world_size, self._owns_group = 0, 1, False
        dev = pick_device() if cfg.device == "auto" else torch.device(cfg.device)
        distributed = dist.is_available() and (dist.is_initialized() or _dist_env())
        if distributed:
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            if dev.type == "cuda":
                dev = torch.device("cuda", local_rank)
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
                self._owns_group = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.distributed = self.world_size > 1
        self.is_main = self.rank == 0
        self.device = dev
        if dev.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.bf16 and dev.type != "cuda":
            self._note(f"bf16 autocast is used on CUDA only; training in float32 on {dev.type}")
        if cfg.batch_size % self.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                              f"{self.world_size} processes")
        # rank 0 writes out_dir: hold its lock (and clear leftovers of killed saves) until close(),
        # or until this object is collected; the kernel drops it if the process dies
        self._release_out_dir = lambda: None
        if self.is_main and cfg.out_dir:
            self._release_out_dir = open_run_dir(cfg.out_dir)
            weakref.finalize(self, self._release_out_dir)

        # data
        if cfg.image_data:
            images = _load_images(cfg)
            if cfg.n_examples:
                if cfg.n_examples > len(images):
                    raise ConfigError(f"n_examples {cfg.n_examples} exceeds the {len(images)} examples of {cfg.dataset!r}")
                images = images[:cfg.n_examples].clone()
            self.data_shape = tuple(images.shape[1:])
            self._sampler = None
            data = images.to(dev)
        else:
            self._sampler = _point_sampler(cfg.dataset)
            data = None
            if cfg.n_examples:
                data = self._sampler(cfg.n_examples, torch.Generator().manual_seed(_seed(cfg.seed, "dataset"))).to(dev)
            self.data_shape = (2,)
        self.data = data
        self.diffusion = make_diffusion(cfg)

        # model, EMA, optimizer: the same initial weights in every process
        torch.manual_seed(_seed(cfg.seed, "init"))
        self.model = make_model(cfg, self.data_shape).to(dev)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        torch.manual_seed(_seed(cfg.seed, "dropout", self.rank))  # dropout differs between processes
        if dev.type == "cuda":
            torch.cuda.manual_seed(_seed(cfg.seed, "dropout-cuda", self.rank))
        net = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        if cfg.compile:
            net = torch.compile(net)
        self._net = net

        # randomness of the steps
        self._data_gen = torch.Generator().manual_seed(_seed(cfg.seed, "data"))
        noise_dev = dev if dev.type == "cuda" else torch.device("cpu")
        self._noise_gen = torch.Generator(device=noise_dev).manual_seed(_seed(cfg.seed, "noise"))
        self._batches = _Batches(data, self._sampler, cfg.batch_size, self._data_gen, cfg.random_flip)

        # bookkeeping
        self.step_count = 0
        nb = min(T_BUCKETS, cfg.T)
        self._history = History(_t_edges(cfg.T, nb))
        self._pending: list = []
        self._bsum = torch.zeros(nb, device=dev)
        self._bcount = torch.zeros(nb, device=dev)
        self._window_start = 0  # the step after which the open window of loss-by-t statistics began
        self._timer_step, self._timer_t0 = 0, time.perf_counter()  # for images/s
        self._saved_step = self._sampled_step = None

    # ---- small helpers -------------------------------------------------------------------
    def _note(self, msg: str):
        if self.is_main:
            print(f"note: {msg}", file=sys.stderr, flush=True)

    def _autocast(self):
        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def lr_at(self, step: int) -> float:
        """The learning rate of the update from ``step`` to step + 1 (linear warm-up, then constant).

        DDPM's code uses lr * min(step / warmup, 1), whose first update has lr 0; here it is
        (step + 1) / warmup, one step earlier.
        """
        w = self.config.warmup_steps
        return self.config.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    @property
    def history(self) -> History:
        if not self.distributed:
            self._flush()
        return self._history

    @property
    def image_data(self) -> bool:
        return self.config.image_data

    # ---- one step of Algorithm 1 ----------------------------------------------------------
    def _draw_t_noise(self):
        B, g = self.config.batch_size, self._noise_gen
        t = torch.randint(1, self.config.T + 1, (B,), generator=g, device=g.device)
        noise = torch.randn((B, *self.data_shape), generator=g, device=g.device)
        b = B // self.world_size
        sl = slice(self.rank * b, (self.rank + 1) * b)
        return t[sl].to(self.device), noise[sl].to(self.device)

    def _train_step(self):
        cfg = self.config
        x0 = self._batches.next(self.rank, self.world_size).to(self.device)
        t, noise = self._draw_t_noise()
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._net.train()
        with self._autocast():
            terms = self.diffusion.training_losses(self._net, x0, t=t, noise=noise)
        per_example = terms["loss"].float()
        loss = per_example.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        ema_update(self.ema, self.model, ema_decay_at(self.step_count, cfg.ema_decay, cfg.ema_warmup))
        self.step_count += 1
        # statistics, kept on the device until the next flush (no synchronization per step)
        self._pending.append((self.step_count, per_example.detach().sum(), grad_norm.detach().float(), lr))
        nb = self._bsum.numel()
        bucket = ((terms["t"] - 1) * nb) // cfg.T
        self._bsum.index_add_(0, bucket, per_example.detach())
        self._bcount.index_add_(0, bucket, torch.ones_like(per_example))

    def _flush(self):
        """Move the pending per-step statistics into the history (a collective under DDP)."""
        if not self._pending:
            return
        vals = torch.stack([torch.stack([s, g.to(s.device)]) for _, s, g, _ in self._pending])
        if self.distributed:
            dist.all_reduce(vals)
            vals[:, 1] /= self.world_size
        vals = vals.double().cpu()
        h = self._history
        for (step, _, _, lr), (s, g) in zip(self._pending, vals.tolist()):
            h.step.append(step)
            h.loss.append(s / self.config.batch_size)
            h.grad_norm.append(g)
            h.lr.append(lr)
        self._pending.clear()
        if not math.isfinite(h.loss[-1]):
            raise FloatingPointError(f"the loss is {h.loss[-1]} at step {h.step[-1]}: training diverged "
                                     f"(try a smaller lr, a warm-up, or grad_clip)")

    def _close_window(self):
        self._flush()
        if self.step_count <= self._window_start:
            return
        v = torch.stack([self._bsum, self._bcount])
        if self.distributed:
            dist.all_reduce(v)
        v = v.double().cpu()
        now = time.perf_counter()
        n_steps = self.step_count - self._window_start
        ips = (self.step_count - self._timer_step) * self.config.batch_size / max(now - self._timer_t0, 1e-9)
        h = self._history
        h.window_step.append(self.step_count)
        h.window_sum.append(v[0].tolist())
        h.window_count.append(v[1].tolist())
        h.window_images_per_s.append(ips)
        self._bsum.zero_()
        self._bcount.zero_()
        self._window_start = self._timer_step = self.step_count
        self._timer_t0 = now
        if self.is_main and self.config.out_dir:
            recent = h.loss[-n_steps:]
            line = {"step": self.step_count, "loss": sum(recent) / len(recent), "lr": h.lr[-1],
                    "grad_norm": h.grad_norm[-1], "images_per_s": round(ips, 2), "time": time.time()}
            out = Path(self.config.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")

    def _iteration(self):
        cfg = self.config
        self._train_step()
        s = self.step_count
        if s % cfg.log_every == 0:
            self._close_window()
        if cfg.out_dir and cfg.ckpt_every and s % cfg.ckpt_every == 0:
            self.save()
        if cfg.out_dir and cfg.sample_every and s % cfg.sample_every == 0:
            self.save_samples()

    def step(self) -> float:
        """One optimizer step (with the logging, checkpoints and samples due at it); returns its loss."""
        self._iteration()
        self._flush()
        return self._history.loss[-1]

    def run(self, steps: int | None = None, callback: Callable[["Trainer"], object] | None = None,
            progress: bool = True) -> History:
        """Train to ``config.steps`` (or ``steps`` more), then save and sample (when out_dir is set).

        ``callback(trainer)`` runs after every step; returning True stops the run (under DDP it
        must return the same in every process). Returns the history.
        """
        cfg = self.config
        target = cfg.steps if steps is None else self.step_count + int(steps)
        if self.step_count >= target:
            self._note(f"already at step {self.step_count} >= {target}: nothing to train")
            return self.history
        from tqdm.auto import tqdm

        bar = tqdm(total=target, initial=self.step_count, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (progress and self.is_main))
        self._timer_step, self._timer_t0 = self.step_count, time.perf_counter()
        try:
            while self.step_count < target:
                n_windows = len(self._history.window_step)
                self._iteration()
                bar.update(1)
                if len(self._history.window_step) > n_windows:
                    h = self._history
                    bar.set_postfix(loss=f"{h.loss[-1]:.4f}", img_s=f"{h.window_images_per_s[-1]:.1f}")
                if callback is not None and callback(self) is True:
                    break
        finally:
            bar.close()
        self._close_window()
        if cfg.out_dir and self._saved_step != self.step_count:
            self.save()
        if cfg.out_dir and cfg.sample_every and self._sampled_step != self.step_count:
            self.save_samples()
        return self.history

    # ---- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, seed: int | None = None,
               generator: torch.Generator | None = None, use_ema: bool = True, progress: bool = False,
               clip_x0: bool | None = None, **kwargs) -> torch.Tensor:
        """n samples (on the CPU) with the EMA weights (or the raw ones).

        ``steps``: respaced sampling steps (None: ``config.sample_steps``; 0 or >= T: all T, Algorithm 2).
        Noise comes from ``generator``, else a CPU generator seeded with ``seed`` (else a fixed seed
        of the run). ``clip_x0`` defaults to True for images (as DDPM's sampler), False for 2-D data.
        Other keyword arguments go to :meth:`GaussianDiffusion.sample` (e.g. ``record``).
        """
        steps = self.config.sample_steps if steps is None else int(steps)
        if generator is None:
            generator = torch.Generator().manual_seed(_seed(self.config.seed, "samples") if seed is None else seed)
        model = self.ema if use_ema else self.model
        was_training = model.training
        model.eval()
        clip = self.image_data if clip_x0 is None else clip_x0
        shape = (int(n), *self.data_shape)
        try:
            if steps == 0 or steps >= self.config.T:
                out = self.diffusion.sample(model, shape, generator=generator, progress=progress, clip_x0=clip,
                                            device=self.device, **kwargs)
            else:
                out = sample_respaced(model, self.diffusion, steps, shape, generator=generator, progress=progress,
                                      clip_x0=clip, device=self.device, **kwargs)
        finally:
            model.train(was_training)
        if isinstance(out, tuple):
            return out[0].cpu(), out[1]
        return out.cpu()

    def save_samples(self, path=None) -> Path | None:
        """A grid of config.n_samples EMA samples (a scatter plot for 2-D data) as a PNG (rank 0)."""
        self._sampled_step = self.step_count
        cfg = self.config
        if not self.is_main or cfg.n_samples == 0:
            return None
        path = Path(path) if path is not None else Path(cfg.out_dir) / f"samples_{self.step_count}.png"
        x = self.sample(cfg.n_samples)
        if self.image_data:
            return viz.save_image_grid(x, path)
        ref = self._sampler(cfg.n_samples, torch.Generator().manual_seed(_seed(cfg.seed, "reference")))
        return viz.save_plot_2d(x, path, ref=ref, title=f"{cfg.dataset}, step {self.step_count}")

    # ---- checkpoints ------------------------------------------------------------------------
    def checkpoint_config(self) -> dict:
        """The config stored in checkpoints (model_class, model_args, step are added by save_checkpoint)."""
        return {
            "diffusion": self.diffusion.config(),
            "data": {"dataset": self.config.dataset, "shape": list(self.data_shape)},
            "train": asdict(self.config),
            "metrics": {},
            "command": self.command,
        }

    def _rng_states(self) -> dict:
        own = {"torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            own["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        everyone = [own]
        if self.distributed:
            everyone = [None] * self.world_size
            dist.all_gather_object(everyone, own)
        states = {"data": self._data_gen.get_state(), f"noise_{self._noise_gen.device.type}": self._noise_gen.get_state()}
        for r, st in enumerate(everyone):
            for k, v in st.items():
                states[f"{k}.rank{r}"] = v
        return states

    def save(self, path=None) -> Path | None:
        """Write a checkpoint (every process must call this under DDP; rank 0 writes).

        Without ``path``: ``out_dir/ckpt_<step>.safetensors``, ``latest.safetensors`` pointed at
        it, and older step checkpoints pruned to ``keep_last``. Returns the path (None off rank 0).
        """
        cfg = self.config
        self._flush()
        rng = self._rng_states()
        self._saved_step = self.step_count
        if not self.is_main:
            return None
        if path is None and not cfg.out_dir:
            raise ConfigError("save() needs a path or config.out_dir")
        extra = {**self._history.to_tensors(), **self._batches.state(),
                 "window.sum": self._bsum.cpu(), "window.count": self._bcount.cpu(),
                 "window.start": torch.tensor([self._window_start], dtype=torch.long)}
        auto = path is None
        out = Path(cfg.out_dir) if auto else Path(path).parent
        path = out / f"ckpt_{self.step_count}.safetensors" if auto else Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, self.model, config=self.checkpoint_config(), ema_model=self.ema,
                        optimizer=self.optimizer, step=self.step_count, extra_tensors=extra, rng_states=rng)
        if auto:
            _link_or_copy(path, out / "latest.safetensors")
            _link_or_copy(path.with_suffix(".json"), out / "latest.json")
            self._prune(out)
        return path

    def _prune(self, out: Path):
        ckpts = sorted((s, p) for p in out.glob("ckpt_*.safetensors")
                       if (s := _ckpt_step(p)) is not None and s <= self.step_count)
        for _, p in ckpts[:-self.config.keep_last]:
            for q in (p, p.with_suffix(".json")):
                with contextlib.suppress(FileNotFoundError):
                    q.unlink()

    def check_compatible(self, ckpt: Checkpoint) -> None:
        """Raise CheckpointError when ``ckpt`` holds another model, diffusion or data set than this run."""
        problems = _model_problems(self.model, ckpt)
        theirs_d = ckpt.config.get("diffusion") or {}
        ours_d = json.loads(json.dumps(self.diffusion.config()))
        diff = [k for k in sorted(set(theirs_d) | set(ours_d)) if theirs_d.get(k) != ours_d.get(k)]
        for k in diff:
            if k == "schedule":
                a, b = theirs_d.get(k) or {}, ours_d[k]
                problems.append(f"schedule: {a.get('name')} with T = {a.get('T')} in the checkpoint, {b['name']} "
                                f"with T = {b['T']} here" + (" (different betas)" if a.get("T") == b["T"] and a.get("name") == b["name"] else ""))
            else:
                problems.append(f"diffusion {k}: {theirs_d.get(k)!r} in the checkpoint, {ours_d.get(k)!r} here")
        data = ckpt.config.get("data") or {}
        if data.get("dataset") != self.config.dataset or list(data.get("shape") or []) != list(self.data_shape):
            problems.append(f"data: {data.get('dataset')!r} {data.get('shape')} in the checkpoint, "
                            f"{self.config.dataset!r} {list(self.data_shape)} here")
        if problems:
            raise _another_configuration(ckpt, problems)

    def load_state(self, checkpoint) -> "Trainer":
        """Continue from a checkpoint (a path or Checkpoint): weights, EMA, optimizer, step, history,
        data order and every RNG state. Raises CheckpointError for a checkpoint of another run."""
        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        self.check_compatible(ckpt)
        if ckpt.ema_state is None or ckpt.optimizer_state is None or ckpt.step is None:
            raise CheckpointError(f"{ckpt.path} lacks the EMA weights, optimizer state or step needed to resume "
                                  f"(it is a model-only checkpoint)")
        self.model.load_state_dict(ckpt.model_state)
        self.ema.load_state_dict(ckpt.ema_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.step_count = self._saved_step = int(ckpt.step)
        extra = ckpt.extra
        self._history = History.from_tensors(extra) or self._history
        self._batches.load_state(extra)
        if "window.sum" in extra:
            self._bsum.copy_(extra["window.sum"])
            self._bcount.copy_(extra["window.count"])
            self._window_start = int(extra["window.start"][0])
        old = ckpt.config.get("train") or {}
        changed = [f"{k} {old[k]!r} -> {v!r}" for k, v in asdict(self.config).items()
                   if k in old and old[k] != v and k not in _FREE_ON_RESUME]
        if changed:
            self._note("resuming with changed settings (the run will not continue bit-identically): "
                       + ", ".join(changed))
        rng = ckpt.rng_states
        if "data" in rng:
            self._data_gen.set_state(rng["data"])
        key = f"noise_{self._noise_gen.device.type}"
        if key in rng:
            self._noise_gen.set_state(rng[key])
        else:
            self._noise_gen.manual_seed(_seed(self.config.seed, "noise", self.step_count))
            self._note(f"the checkpoint holds no {key} state (saved on another device type): t and eps are "
                       f"drawn from a fresh seed")
        mine = f"torch_cpu.rank{self.rank}"
        if mine in rng:
            torch.set_rng_state(rng[mine])
        else:
            torch.manual_seed(_seed(self.config.seed, "dropout", self.rank, self.step_count))
            self._note(f"the checkpoint holds no RNG state for rank {self.rank} (another number of processes): "
                       f"dropout continues from a fresh seed")
        if self.device.type == "cuda":
            cuda = f"torch_cuda.rank{self.rank}"
            if cuda in rng:
                torch.cuda.set_rng_state(rng[cuda], self.device)
            else:
                torch.cuda.manual_seed(_seed(self.config.seed, "dropout-cuda", self.rank, self.step_count))
        return self

    @classmethod
    def resume(cls, path, config: TrainConfig | None = None, command: str | None = None, **overrides) -> "Trainer":
        """A Trainer continuing the run in ``path`` (a run directory or a checkpoint file).

        The configuration is the checkpoint's (or ``config``), with ``overrides`` of TrainConfig
        fields applied, e.g. ``Trainer.resume("runs/x", steps=20000)``.
        """
        ckpt = load_resumable(path)
        ckpt_path = ckpt.path
        if config is None:
            stored = ckpt.config.get("train")
            if not isinstance(stored, dict):
                raise CheckpointError(f"{ckpt_path} holds no training configuration to resume from")
            config = config_from_dict(stored, strict=False)
        cfg = config_from_dict(overrides, base=config)
        if not cfg.out_dir:
            cfg = dataclasses.replace(cfg, out_dir=str(ckpt_path.parent))
        _check_model_before_building(cfg, ckpt)
        return cls(cfg, command=command).load_state(ckpt)

    def close(self):
        """Release out_dir's lock and leave the process group this trainer created (if any)."""
        self._release_out_dir()
        if self._owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            self._owns_group = False


def _model_problems(model: nn.Module, ckpt: Checkpoint) -> list[str]:
    """How ``model``'s class and arguments differ from those stored in ``ckpt`` (dropout may differ)."""
    if ckpt.model_class != type(model).__name__:
        return [f"model class: {ckpt.model_class} in the checkpoint, {type(model).__name__} here"]
    ours = json.loads(json.dumps(asdict(model.config)))
    theirs = ckpt.model_args or {}
    diff = [k for k in sorted(set(theirs) | set(ours)) if k != "dropout" and theirs.get(k) != ours.get(k)]
    if not diff:
        return []
    return ["model arguments: " + "; ".join(f"{k} = {theirs.get(k)!r} in the checkpoint, {ours.get(k)!r} here"
                                            for k in diff)]


def _another_configuration(ckpt: Checkpoint, problems: list[str]) -> CheckpointError:
    return CheckpointError(
        f"cannot resume from {ckpt.path}: it was trained with another configuration:\n  " + "\n  ".join(problems)
        + "\nresume with the checkpoint's own settings (no --config), or start a new run in another out_dir")


def _check_model_before_building(cfg: TrainConfig, ckpt: Checkpoint) -> None:
    """Refuse a configuration whose network does not match the checkpoint, on the meta device,
    before a Trainer allocates it: the stored config may have been edited (model_args with
    layers = 10**7 would otherwise take gigabytes before any comparison)."""
    data = ckpt.config.get("data") if isinstance(ckpt.config.get("data"), dict) else {}
    shape = check_data_shape(data.get("shape"), f"cannot resume from {ckpt.path}: config['data']['shape']")
    stored = {k: tuple(v.shape) for k, v in ckpt.model_state.items()}
    where = f"cannot resume from {ckpt.path}: model {cfg.model!r} with model_args {cfg.model_args}"
    meta = build_on_meta(lambda: make_model(cfg, shape), stored, where)
    if problems := _model_problems(meta, ckpt):
        raise _another_configuration(ckpt, problems)
    check_model_fits(meta, stored, where)


# fields that may change on resume without changing the training trajectory
_FREE_ON_RESUME = {"steps", "out_dir", "data_root", "ckpt_every", "keep_last", "sample_every", "sample_steps",
                   "n_samples", "log_every", "device", "compile"}


def _api_command(cfg: TrainConfig) -> str:
    default = TrainConfig()
    args = ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items() if getattr(default, k) != v)
    return f"ddpm_lib.train.Trainer(TrainConfig({args}))"


# -----------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ddpm_lib.train",
        description="Train a DDPM (Algorithm 1 of Ho et al. 2020). Settings come from the defaults, then "
                    "--config FILE.toml, then the flags below; with --resume, from the checkpoint (unless "
                    "--config is given), then the flags. Under torchrun the same command trains data-parallel.",
    )
    p.add_argument("--config", metavar="FILE.toml", help="a TOML file of the fields below (see configs/)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue from the latest checkpoint in out_dir (or in PATH, a run directory or a "
                        "checkpoint file); --steps is the new total")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for CPU training")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log.jsonl still written)")
    g = p.add_argument_group("training configuration (TrainConfig fields)")
    default = TrainConfig()
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}"]
        typ = _TYPES[f.name]
        shown = getattr(default, f.name)
        help_ = f"default: {json.dumps(shown)}"
        if f.name in ("dataset", "model", "schedule"):
            help_ += f"; one of {', '.join({'dataset': DATASETS, 'model': MODELS, 'schedule': SCHEDULES}[f.name])}"
        if typ is bool:
            g.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_)
        else:
            meta = "JSON" if typ is dict else f.name.upper()
            g.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS, metavar=meta, help=help_)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in _FIELDS}
    command = "python -m ddpm_lib.train " + shlex.join(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = None
    release_out_dir = lambda: None  # noqa: E731
    try:
        base = load_config(args.config) if args.config else None
        if args.resume is not None:
            where = args.resume or given.get("out_dir") or (base.out_dir if base else "")
            if not where:
                raise ConfigError("--resume needs a run directory: --resume PATH or --out-dir DIR")
            if args.print_config:
                ckpt = load_resumable(where)
                base = base or config_from_dict(ckpt.config.get("train") or {}, strict=False)
                print(_to_toml(config_from_dict(given, base)), end="")
                return 0
            trainer = Trainer.resume(where, config=base, command=command, **given)
        else:
            cfg = config_from_dict(given, base)
            if not cfg.out_dir:
                cfg = dataclasses.replace(cfg, out_dir=f"runs/{cfg.dataset}")
            if args.print_config:
                print(_to_toml(cfg), end="")
                return 0
            out = Path(cfg.out_dir)
            if not _dist_env() or int(os.environ["RANK"]) == 0:  # locked before looking, so no run starts in between
                release_out_dir = open_run_dir(out)
            if out.is_dir() and (any(out.glob("ckpt_*.safetensors")) or (out / "latest.safetensors").exists()):
                raise ConfigError(f"{out} already holds a run's checkpoints: pass --resume to continue it, or "
                                  f"choose another --out-dir")
            trainer = Trainer(cfg, command=command)
        if trainer.is_main:
            c = trainer.config
            print(f"training {c.model} on {c.dataset} {list(trainer.data_shape)}: step {trainer.step_count} -> "
                  f"{c.steps}, global batch {c.batch_size} on {trainer.world_size} x {trainer.device}, "
                  f"writing to {c.out_dir}", file=sys.stderr, flush=True)
        trainer.run(progress=not args.no_progress)
        if trainer.is_main:
            h = trainer.history
            if h.loss:
                print(f"done: step {trainer.step_count}, loss {h.loss[-1]:.4f}; checkpoint "
                      f"{Path(trainer.config.out_dir) / 'latest.safetensors'}", file=sys.stderr)
        return 0
    except (ConfigError, CheckpointError, FileNotFoundError, RunDirInUseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if trainer is not None:
            trainer.close()
        release_out_dir()


if __name__ == "__main__":
    sys.exit(main())
