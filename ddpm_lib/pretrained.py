"""Shipped, trained checkpoints by name: verified by sha256, loaded without pickle.

``registry.json`` of the data folder (:func:`ddpm_lib.data.data_dir`: ``$DDPM_DATA_DIR`` when set,
else the repository's ``data/``, else the copy an installed wheel carries) lists them under its
top-level key ``"pretrained"``::

    "pretrained": {
      "fashion-mnist-classifier": {
        "path": "checkpoints/fashion_mnist_classifier.safetensors",   # relative to the data folder
        "sha256": "...", "size": 123456,
        "command": "python -m ddpm_lib.classifier train ...",        # the exact command that made it
        "description": "...",
        "metrics": {...},            # a ddpm-evaluate --json result (register --evaluation), else the config's
        "model_class": "FashionClassifier", "data": {...}
      }
    }

    >>> p = load_pretrained("fashion-mnist-classifier")   # Pretrained(model, diffusion, config, path)
    >>> list_pretrained()                                 # {name: entry}

Register a new one (atomically rewrites registry.json; the file must lie under the data folder)
with the command line :mod:`ddpm_lib.cli.pretrained` (``python -m ddpm_lib.pretrained`` runs it too):

    ddpm-pretrained register NAME data/checkpoints/FILE.safetensors \\
        --command "python -m ddpm_lib.train ..." --description "..." [--evaluation EVAL.json]
    ddpm-pretrained list
    ddpm-pretrained verify [NAME ...]
"""

from __future__ import annotations

# python -m ddpm_lib.pretrained runs ddpm-pretrained; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.pretrained import main

    raise SystemExit(main())

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from .checkpoints import CheckpointError, build_model, check_data_shape, load_checkpoint, sha256_file
from .data import REGISTRY_NAME, DataIntegrityError, data_dir, data_dir_problem, read_registry
from .diffusion import GaussianDiffusion
from .utils import atomic_write
from .utils import device as device_rule

__all__ = [
    "Pretrained",
    "UnknownPretrainedError",
    "load_pretrained",
    "load_model",
    "list_pretrained",
    "register_pretrained",
    "evaluation_metrics",
    "verify_pretrained",
    "pretrained_path",
    "is_pretrained_name",
    "registry_path",
    "register_file",
    "TrainingRecord",
    "training_record",
]

REGISTRY_KEY = "pretrained"


class UnknownPretrainedError(LookupError):
    """A name that data/registry.json does not list under "pretrained"."""


@dataclass
class Pretrained:
    """A loaded model: the network (eval mode), its diffusion (None for a classifier), its config."""

    model: nn.Module
    diffusion: Optional[GaussianDiffusion]
    config: dict
    path: Path
    name: Optional[str] = None
    sha256: Optional[str] = None
    entry: dict = field(default_factory=dict)

    @property
    def data_shape(self) -> Optional[tuple]:
        """The shape of one example, (C, H, W) or (D,), from the config (or the network's arguments)."""
        return data_shape(self.config, self.model)


def data_shape(config: dict, model: Optional[nn.Module] = None) -> Optional[tuple]:
    """(C, H, W) or (D,) of one example: config["data"]["shape"], else read off the network."""
    data = config.get("data")
    if isinstance(data, dict) and data.get("shape"):
        return tuple(int(s) for s in data["shape"])
    return _network_input_shape(model)


def _network_input_shape(model: Optional[nn.Module]) -> Optional[tuple]:
    """(C, H, W) or (D,) that the network's config says it takes, or None when it does not say."""
    cfg = getattr(model, "config", None)
    if cfg is not None:
        if hasattr(cfg, "resolution") and hasattr(cfg, "in_channels"):
            return (cfg.in_channels, cfg.resolution, cfg.resolution)
        if hasattr(cfg, "data_dim"):
            return (cfg.data_dim,)
    return None


def _check_shapes(config: dict, model: nn.Module, path: Path) -> None:
    """Refuse a stored data shape that is too large or does not fit the network, before sampling
    allocates n examples of it (a U-Net's resolution changes no weight, so the weights cannot
    bound it)."""
    net = _network_input_shape(model)
    if net is not None:
        check_data_shape(list(net), f"{path}: the network's input")
    data = config.get("data")
    stored = data.get("shape") if isinstance(data, dict) else None
    if stored:
        shape = check_data_shape(stored, f"{path}: config['data']['shape']")
        if net is not None and shape != net:
            raise CheckpointError(
                f"{path}: config['data']['shape'] {list(shape)} does not fit the network, "
                f"which takes {list(net)}"
            )


# ----------------------------------------------------------------------------------------------
# the registry


def registry_path() -> Path:
    """data_dir() / "registry.json" (see :func:`ddpm_lib.data.data_dir` for where that is)."""
    return data_dir() / REGISTRY_NAME


def list_pretrained() -> dict:
    """{name: registry entry} of every registered checkpoint, sorted by name (copies)."""
    entries = read_registry().get(REGISTRY_KEY, {})
    return {k: dict(entries[k]) for k in sorted(entries)}


def is_pretrained_name(spec) -> bool:
    """True when ``spec`` is a registered name (and not an existing file)."""
    if not isinstance(spec, str) or Path(spec).is_file():
        return False
    return spec in read_registry().get(REGISTRY_KEY, {})


def _entry(name: str) -> dict:
    entries = list_pretrained()
    if name not in entries:
        problem = data_dir_problem()
        if problem:
            raise UnknownPretrainedError(f"cannot look up pretrained name {name!r}: {problem}")
        known = ", ".join(entries) or "(none)"
        raise UnknownPretrainedError(
            f"unknown pretrained name {name!r}; registered in {registry_path()}: {known}"
        )
    return entries[name]


def _verified(path: Path, entry: dict, name: str) -> str:
    """Check size and sha256 of a registered file; return the sha256."""
    how = f"Remake it with: {entry['command']}" if entry.get("command") else ""
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint {name!r} is registered at {path}, but that file does not exist. "
            f"It ships with a clone of the course and with the wheel built from it (pip install /path/to/clone); "
            f"or set $DDPM_DATA_DIR to a data folder that holds {entry['path']}. {how}".strip()
        )
    size = path.stat().st_size
    if size != entry["size"]:
        kind = "truncated" if size < entry["size"] else "not the registered file (it is longer)"
        raise DataIntegrityError(
            f"{path}: pretrained checkpoint {name!r} is {kind}: {size} bytes, the registry says {entry['size']} "
            f"(sha256 {entry['sha256']}). Delete it and get it again. {how}".strip()
        )
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise DataIntegrityError(
            f"{path}: sha256 mismatch for pretrained checkpoint {name!r}: expected {entry['sha256']}, got {actual}. "
            f"The file is corrupt or not the registered one: refusing to load it. {how}".strip()
        )
    return actual


def pretrained_path(name: str, verify: bool = True) -> Path:
    """The file of a registered checkpoint (checked by size and sha256 when ``verify``)."""
    entry = _entry(name)
    path = data_dir() / entry["path"]
    if verify:
        _verified(path, entry, name)
    return path


def verify_pretrained(names=None) -> dict:
    """Check registered files by sha256; {name: sha256}. Raises listing every problem."""
    entries = list_pretrained()
    names = list(entries) if names is None else list(names)
    done, problems = {}, []
    for n in names:
        try:
            e = _entry(n)
            done[n] = _verified(data_dir() / e["path"], e, n)
        except (OSError, LookupError, DataIntegrityError) as err:
            problems.append(str(err))
    if problems:
        raise DataIntegrityError("pretrained check failed:\n  " + "\n  ".join(problems))
    return done


# ----------------------------------------------------------------------------------------------
# loading


def _assemble(ckpt, path: Path, device: torch.device, use_ema: bool, **extra) -> Pretrained:
    model = build_model(ckpt, use_ema=use_ema)
    cfg = ckpt.config
    _check_shapes(cfg, model, path)
    model = model.to(device).eval()
    diffusion = _diffusion(cfg.get("diffusion"), path)
    return Pretrained(model=model, diffusion=diffusion, config=cfg, path=path, **extra)


def _diffusion(stored, path: Path) -> Optional[GaussianDiffusion]:
    """The GaussianDiffusion of a checkpoint's config["diffusion"] (None when there is none, as for the
    classifier); CheckpointError naming the file and what is wrong with an entry that does not build."""
    if stored is None:
        return None
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{path}: config['diffusion'] must be a JSON object describing the diffusion, got {type(stored).__name__}"
        )
    try:
        return GaussianDiffusion.from_config(stored)
    except KeyError as e:
        raise CheckpointError(f"{path}: config['diffusion'] lacks the entry {e.args[0]!r}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: config['diffusion'] does not describe a diffusion: {e}") from None


def load_pretrained(name: str, device=None, use_ema: bool = True) -> Pretrained:
    """Load a registered checkpoint after checking its sha256 (no pickle, no network).

    Returns a :class:`Pretrained` with the model in eval mode on ``device`` (default cpu; "auto"
    picks cuda/mps/cpu), its :class:`GaussianDiffusion` (None when the config has none, as for the
    classifier), the checkpoint's config and path. ``use_ema``: the EMA weights when the file has them.
    """
    entry = _entry(name)
    path = data_dir() / entry["path"]
    sha = _verified(path, entry, name)
    dev = device_rule(device)
    ckpt = load_checkpoint(path, map_location="cpu")
    return _assemble(ckpt, path, dev, use_ema, name=name, sha256=sha, entry=entry)


def load_model(spec, device=None, use_ema: bool = True) -> Pretrained:
    """A checkpoint file (a path) or a registered pretrained name -> :class:`Pretrained`.

    An existing file wins over a name; a name is verified by sha256 against the registry, a file
    by the checksum stored inside it (its sha256 is recorded in the result for provenance).
    """
    if isinstance(spec, (str, os.PathLike)) and Path(spec).is_file():
        path = Path(spec)
        ckpt = load_checkpoint(path, map_location="cpu")
        return _assemble(ckpt, path, device_rule(device), use_ema, sha256=sha256_file(path))
    if isinstance(spec, str) and spec in list_pretrained():
        return load_pretrained(spec, device=device, use_ema=use_ema)
    known = ", ".join(list_pretrained()) or "(none)"
    problem = data_dir_problem()
    raise FileNotFoundError(
        f"{spec!r} is neither a checkpoint file nor a registered pretrained name "
        + (f"({problem})" if problem else f"(registered in {registry_path()}: {known})")
    )


# ----------------------------------------------------------------------------------------------
# registering


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock for read-modify-write of ``path`` (a lock file in the temp folder)."""
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"ddpm_lib-registry-{key}.lock"
    with open(lock, "a") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def _write_json_atomic(path: Path, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def _registry_for_update():
    """The registry as a dict to change in place, under the lock; written back atomically on exit
    (not when the block raises)."""
    reg_path = registry_path()
    with _locked(reg_path):
        reg = read_registry() if reg_path.is_file() else {"format": 1}
        yield reg
        _write_json_atomic(reg_path, reg)


def register_pretrained(
    name: str,
    path,
    command: Optional[str] = None,
    description: str = "",
    overwrite: bool = True,
    metrics: Optional[dict] = None,
) -> dict:
    """Add (or replace) ``name`` in registry.json's "pretrained" table; return the entry.

    ``path`` must be a ddpm_lib checkpoint under the data folder (it is loaded once to check it
    and to read its config). sha256 and size are computed here; ``metrics`` are what was measured
    of the file (:func:`evaluation_metrics` of a ``ddpm-evaluate --json`` result), by default those
    of the checkpoint's config. ``command`` is the exact command that made the file (default: the
    config's "command"). The registry is rewritten atomically under a lock, keeping its other keys.
    """
    if (
        not name
        or not isinstance(name, str)
        or any(c in name for c in "/\\ ")
        or name.endswith(".safetensors")
    ):
        raise ValueError(
            f"a pretrained name is a short identifier such as 'fashion-mnist-small', got {name!r}"
        )
    path = Path(path).resolve()
    root = data_dir().resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise ValueError(
            f"{path} is not under the data folder {root}: copy it to {root / 'checkpoints'} first "
            f"(registered paths are relative to the data folder)"
        ) from None
    ckpt = load_checkpoint(path)  # checks the header and the checksum stored inside
    cfg = ckpt.config
    command = command or cfg.get("command")
    if not command:
        raise ValueError(f"{path}: give the command that made it (--command); its config has none")
    entry = {
        "path": rel.as_posix(),
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "command": command,
        "description": description,
        "metrics": dict(metrics) if metrics is not None else (cfg.get("metrics") or {}),
        "model_class": cfg.get("model_class"),
        "data": {k: v for k, v in cfg["data"].items() if k in ("dataset", "shape")}
        if isinstance(cfg.get("data"), dict)
        else cfg.get("data"),
        "step": cfg.get("step"),
    }
    with _registry_for_update() as reg:
        table = reg.setdefault(REGISTRY_KEY, {})
        if name in table and not overwrite:
            raise ValueError(f"{name!r} is already registered (overwrite=False)")
        table[name] = entry
        reg[REGISTRY_KEY] = {k: table[k] for k in sorted(table)}
    return entry


def evaluation_metrics(result: dict, path) -> dict:
    """The measurements of a ``ddpm-evaluate --json`` result (:func:`ddpm_lib.evaluate.evaluate_checkpoint`),
    as a registry entry's metrics: its "bpd", "fcd" and "points" tables, and the command that measured
    them ("evaluated_by"). Refuses a result that measured another file than ``path`` (by sha256).
    """
    if not isinstance(result, dict) or "sha256" not in result:
        raise ValueError("not a ddpm-evaluate result: it has no 'sha256' of the file it measured")
    actual = sha256_file(Path(path))
    if result["sha256"] != actual:
        raise ValueError(
            f"the evaluation measured another file (sha256 {result['sha256']}), not {path} (sha256 {actual}): "
            f"evaluate this file and register again"
        )
    tables = {k: result[k] for k in ("bpd", "fcd", "points") if k in result}
    if not tables:
        raise ValueError("the evaluation holds no measurement (bpd, fcd or points)")
    return ({"evaluated_by": result["command"]} if result.get("command") else {}) | tables


def register_file(path, description: str, source: str, licence: str) -> dict:
    """Add (or replace) a shipped file in registry.json's "files" table, with its size and sha256;
    return the entry. :func:`ddpm_lib.data.verify_file` then checks it, and ``ddpm-data verify``
    with the rest.

    ``path`` must lie under the data folder (the key is the path relative to it); ``source`` is
    the command that made it, ``licence`` the terms it is shipped under. The registry is rewritten
    atomically under a lock.
    """
    path = Path(path).resolve()
    root = data_dir().resolve()
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        raise ValueError(
            f"{path} is not under the data folder {root}: only files there are registered"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file to register")
    entry = {
        "shipped": True,
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "description": description,
        "source": source,
        "licence": licence,
    }
    with _registry_for_update() as reg:
        reg.setdefault("files", {})[rel] = entry
    return entry


# ----------------------------------------------------------------------------------------------
# how a shipped model was trained, as its registry entry records it

# training-set sizes of the data sets a registered model can name (for its number of epochs)
TRAIN_SET_SIZES = {"fashion-mnist": 60_000, "fashion-mnist-10k": 10_000, "cifar10": 50_000}
_TRAIN_COMMAND = re.compile(r"python -m ddpm_lib\.train\b[^(),;]*")


@dataclass(frozen=True)
class TrainingRecord:
    """How a registered model was trained, read from data/registry.json (and the checkpoint's JSON
    sidecar for the planned number of steps): the hardware, the training time, the optimizer steps,
    the batch size, the images seen, the epochs, and the command that remakes it.

    ``str(record)`` is a short paragraph; :meth:`cpu_hours` turns a measured CPU throughput (images
    per CPU-second, benchmarks/model_size_cpu.json) into the CPU time the same training would take.
    """

    name: str
    device: Optional[str]
    train_seconds: Optional[float]
    steps: int
    batch_size: Optional[int]
    dataset: Optional[str]
    command: Optional[str]
    planned_steps: Optional[int] = None
    ema_decay: Optional[float] = None
    windows: tuple = ()  # the command of each training session, in order (when the registry records them)

    @property
    def images(self) -> Optional[int]:
        """Training images drawn in all: steps x batch size (None when the batch size is not recorded)."""
        return None if self.batch_size is None else self.steps * self.batch_size

    @property
    def train_set_size(self) -> Optional[int]:
        """The number of training images of the data set (None for a data set not in TRAIN_SET_SIZES)."""
        return TRAIN_SET_SIZES.get(self.dataset or "")

    @property
    def epochs(self) -> Optional[float]:
        """Passes over the training set: images / train_set_size (None when either is unknown)."""
        n = self.train_set_size
        return None if (self.images is None or not n) else self.images / n

    def cpu_hours(self, images_per_cpu_second: float) -> float:
        """CPU-hours the same number of training images takes at a measured throughput."""
        if not images_per_cpu_second or images_per_cpu_second <= 0:
            raise ValueError(f"images_per_cpu_second must be > 0, got {images_per_cpu_second!r}")
        if self.images is None:
            raise ValueError(f"{self.name}: the registry records no batch size, so no image count")
        return self.images / images_per_cpu_second / 3600.0

    def __str__(self) -> str:
        where = f"on one {self.device}" if self.device else "(hardware not recorded)"
        took = f" for {self.train_seconds:.0f} s" if self.train_seconds else ""
        text = f"{self.name}: trained {where}{took}, {self.steps:,} steps"
        if self.batch_size:
            text += f" of batch {self.batch_size} ({self.images:,} examples drawn"
            if self.epochs is not None:
                text += f", {self.epochs:.1f} epochs of the {self.train_set_size:,} training examples of {self.dataset}"
            text += ")"
        if self.ema_decay:
            text += f", EMA decay {self.ema_decay}"
        if self.planned_steps and self.planned_steps > self.steps:
            text += f"; stopped at step {self.steps:,} of the {self.planned_steps:,} its config plans"
        text += "."
        if len(self.windows) > 1:
            text += f"\n  trained in {len(self.windows)} sessions, each warm-started from the one before; to remake it:"
            text += "".join(f"\n    {c}" for c in self.windows)
        elif self.command:
            text += f"\n  the command that remakes it: {self.command}"
        return text


def training_record(name: str) -> TrainingRecord:
    """How the registered model ``name`` was trained, as its registry entry records it (no weights are
    loaded). ``command`` is the ``python -m ddpm_lib.train ...`` command named in the entry; the planned
    number of steps and the EMA decay come from the checkpoint's JSON sidecar when there is one.

        >>> print(training_record("fashion-mnist-unet"))
    """
    entry = _entry(name)
    metrics = entry.get("metrics") or {}
    data = entry.get("data")
    steps = metrics.get("train_steps", entry.get("step"))
    if steps is None:
        raise ValueError(f"{name}: the registry records no training steps (metrics.train_steps or step)")
    sidecar = (data_dir() / entry["path"]).with_suffix(".json")
    train = {}
    if sidecar.is_file():
        with contextlib.suppress(ValueError, OSError):
            train = json.loads(sidecar.read_text(encoding="utf-8")).get("train") or {}
    found = _TRAIN_COMMAND.search(entry.get("command") or "")
    return TrainingRecord(
        name=name,
        device=metrics.get("device"),
        train_seconds=metrics.get("train_seconds"),
        steps=int(steps),
        batch_size=metrics.get("batch_size", train.get("batch_size")),
        dataset=data.get("dataset") if isinstance(data, dict) else data,
        command=found.group(0).strip() if found else entry.get("command"),
        planned_steps=train.get("steps"),
        ema_decay=train.get("ema_decay"),
        windows=tuple(w.get("command", "") for w in metrics.get("windows") or [] if isinstance(w, dict)),
    )
