"""A training run's configuration: the TrainConfig dataclass, read from TOML and flags, checked.

Taught in chapter 09. Settings come from the defaults, then a TOML file (``load_config``), then
overrides (``config_from_dict``); ``TrainConfig.validate`` names the allowed values of a field
that is wrong. ``stream_seed`` derives the seed of each stream of a run's randomness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from ..diffusion import DECODERS, LOSSES, PREDICTIONS, VARIANCES
from ..nets import UNet
from ..schedules import MAX_T

__all__ = [
    "TrainConfig",
    "ConfigError",
    "config_from_dict",
    "load_config",
    "to_toml",
    "stream_seed",
    "api_command",
    "FREE_ON_RESUME",
    "FIELDS",
    "FIELD_TYPES",
    "DATASETS",
    "IMAGE_DATASETS",
    "POINT_DATASETS",
    "MODELS",
    "SCHEDULES",
    "LR_DECAYS",
    "suggest",
]

IMAGE_DATASETS = ("fashion-mnist", "fashion-mnist-10k", "cifar10", "images")
POINT_DATASETS = ("swiss-roll", "gaussian-mixture")
DATASETS = IMAGE_DATASETS + POINT_DATASETS
MODELS = ("mlp", *(f"unet-fmnist-{k}" for k in UNet.FASHION_MNIST_SIZES), "unet-cifar10", "unet")
SCHEDULES = ("linear", "cosine", "quadratic")
LR_DECAYS = ("none", "cosine")


class ConfigError(ValueError):
    """A training configuration that cannot be run; the message says what is allowed."""


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults: the paper's objective and optimizer, a small image run."""

    # data
    dataset: str = "fashion-mnist-10k"  # one of DATASETS; "images": your own, from data_root
    # a folder with the data set's files (searched first); "" = the usual lookup. For "images": a
    # folder of image files or an .npz/.npy of uint8 images (ddpm_lib.data.load_image_files)
    data_root: str = ""
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
    # after the warm-up: "none" keeps lr (DDPM); "cosine" lowers it to 0 at `steps` along half a cosine, so a run
    # ends on its optimum rather than in Adam's noise around it (resuming with other `steps` moves that end)
    lr_decay: str = "none"
    grad_clip: float = 1.0  # clip the global gradient norm; 0 = no clipping
    ema_decay: float = 0.9999
    # > 0: the EMA's decay at update k (k = 0, 1, ...) is min(ema_decay, (1 + k) / (ema_warmup + k)), so a
    # short run's average is not dominated by the initial weights (0 = the constant decay, as in DDPM)
    ema_warmup: int = 0
    steps: int = 10000  # total optimizer steps of the run
    seed: int = 0
    # a warm start: a checkpoint file or a registered name ("fashion-mnist-unet") whose EMA weights (or weights,
    # in a model-only file) the network and its EMA both start from, the step count continuing from its step.
    # Adam starts afresh, so the warm-up runs again from there (warmup_start); "" = random initial weights
    init_from: str = ""
    warmup_start: int = 0  # the step the linear warm-up starts at (with init_from: that checkpoint's step)
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
                raise ConfigError(
                    f"{name} must be one of {', '.join(map(repr, allowed))}; got {v!r}" + suggest(v, allowed)
                )

        one_of("dataset", DATASETS)
        one_of("model", MODELS)
        one_of("prediction", PREDICTIONS)
        one_of("variance", VARIANCES)
        one_of("loss", LOSSES)
        one_of("decoder", ("auto",) + DECODERS)
        one_of("schedule", SCHEDULES)
        one_of("lr_decay", LR_DECAYS)
        for name in ("T", "batch_size", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.T > MAX_T:
            raise ConfigError(f"T must be <= {MAX_T} (MAX_T), got {self.T}")
        for name in (
            "n_examples",
            "warmup_steps",
            "ema_warmup",
            "warmup_start",
            "steps",
            "ckpt_every",
            "sample_every",
            "sample_steps",
            "n_samples",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.schedule in ("linear", "quadratic"):  # the schedules that use beta_start and beta_end
            for name in ("beta_start", "beta_end"):
                if not 0 < getattr(self, name) < 1:
                    raise ConfigError(
                        f"{name} must lie in the open interval (0, 1), got {getattr(self, name)}"
                    )
            if self.beta_start > self.beta_end:
                raise ConfigError(
                    f"betas must increase: beta_start {self.beta_start} > beta_end {self.beta_end} would make "
                    f"the {self.schedule} schedule add less noise at each step than the one before (DDPM: "
                    f"beta_start 1e-4, beta_end 0.02); swap them"
                )
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
            raise ConfigError(
                f"decoder 'discretized' is for 8-bit images; dataset {self.dataset!r} is continuous "
                f"2-D data: use decoder 'gaussian' (or 'auto')"
            )
        if points and self.data_root:
            raise ConfigError(
                f"data_root names a folder of image files; dataset {self.dataset!r} is generated 2-D data: "
                f"leave data_root empty"
            )
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


def suggest(value, allowed) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


FIELDS = {f.name: f for f in fields(TrainConfig)}
FIELD_TYPES = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value):
    """A value from TOML, JSON or the command line, checked against the field's type."""
    typ = FIELD_TYPES[name]
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
    unknown = [k for k in d if k not in FIELDS]
    if unknown and strict:
        hints = "".join(suggest(k, FIELDS) for k in unknown)
        raise ConfigError(
            f"unknown configuration field(s) {', '.join(map(repr, unknown))}{hints}; "
            f"the fields are: {', '.join(FIELDS)}"
        )
    values = {k: _coerce(k, v) for k, v in d.items() if k in FIELDS}
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
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"configuration file {path} is not valid TOML (UTF-8 text): {e}") from None
    try:
        return config_from_dict(d, base)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def to_toml(cfg: TrainConfig) -> str:
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


# fields that may change on resume without changing the training trajectory
FREE_ON_RESUME = {
    "steps",
    "out_dir",
    "data_root",
    "ckpt_every",
    "keep_last",
    "sample_every",
    "sample_steps",
    "n_samples",
    "log_every",
    "device",
    "compile",
}


def stream_seed(seed: int, *keys) -> int:
    """A 63-bit seed for one stream of randomness ("data", "noise", ...) of a run with ``seed``."""
    h = hashlib.sha256(repr((int(seed),) + keys).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def api_command(cfg: TrainConfig) -> str:
    """The Python call that makes this run, stored in its checkpoints as the command."""
    default = TrainConfig()
    args = ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items() if getattr(default, k) != v)
    return f"ddpm_lib.train.Trainer(TrainConfig({args}))"
