"""Save and load models as safetensors weights plus a JSON config. Never pickle.

One checkpoint is one ``.safetensors`` file. Its tensors are named by prefix:

    model.<key>    the model's state_dict            ema.<key>    the EMA model's state_dict
    optim.<path>   the optimizer's tensors           extra.<key>  tensors the caller adds
    rng.<name>     random number generator states (uint8)

and its safetensors metadata (strings only) holds

    format          "ddpm_lib.checkpoint"            config     JSON: the run's configuration
    format_version  "1"                              optimizer  JSON: the optimizer state's
    step            the training step, when given               non-tensor parts
    checksum        sha256 over the metadata and every tensor (names, dtypes, shapes, bytes)

``config`` is whatever the caller passed (schedule, objective, data, metrics ...) with
``model_class``, ``model_args``, ``library_version`` and ``step`` filled in by the library.
A sidecar ``<name>.json`` repeats that config for people; the metadata inside the
``.safetensors`` file is what loading reads. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .nets import MLP, FashionClassifier, UNet
from .utils import atomic_write
from .version import __version__

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "MODEL_REGISTRY",
    "register_model",
    "save_checkpoint",
    "load_checkpoint",
    "build_model",
    "build_on_meta",
    "check_model_fits",
    "check_data_shape",
    "MAX_EXAMPLE_NUMEL",
    "load_weights",
    "sha256_file",
    "optimizer_state_to_tensors",
    "optimizer_state_from_tensors",
]

FORMAT = "ddpm_lib.checkpoint"
FORMAT_VERSION = "1"

# The only classes build_model will instantiate: names in a file never reach an import.
MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "UNet": UNet,
    "MLP": MLP,
    "FashionClassifier": FashionClassifier,
}

# Constructor arguments that may differ between a checkpoint and the model it loads into,
# because they do not change the function the weights compute (in eval mode).
_ARGS_FREE_TO_DIFFER = {"dropout"}

# safetensors itself refuses headers above this (its MAX_HEADER_SIZE); reading one is bounded by it.
_MAX_HEADER_BYTES = 100_000_000

# The most numbers one example may hold (a 3 x 2048 x 2048 image is 12.6 M): sampling allocates
# n times this from a stored data shape, so a crafted shape must be refused before it is used.
MAX_EXAMPLE_NUMEL = 2**24


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded as asked; the message names the file."""


def register_model(cls: type[nn.Module], name: str | None = None) -> type[nn.Module]:
    """Add a model class to MODEL_REGISTRY (usable as a decorator). It must take its
    stored arguments as keyword arguments and expose them as a dataclass ``.config``."""
    MODEL_REGISTRY[name or cls.__name__] = cls
    return cls


@dataclass
class Checkpoint:
    config: dict
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None
    optimizer_state: dict | None
    step: int | None
    extra: dict[str, torch.Tensor]
    rng_states: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None

    @property
    def model_class(self) -> str | None:
        return self.config.get("model_class")

    @property
    def model_args(self) -> dict | None:
        return self.config.get("model_args")


# -----------------------------------------------------------------------------
# small helpers


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / AveragedModel / torch.compile wrappers."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel
    from torch.optim.swa_utils import AveragedModel

    while True:
        if isinstance(model, (DataParallel, DistributedDataParallel, AveragedModel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _model_args(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return None
    return json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists, as stored


def _library_version() -> str:
    return __version__


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        if obj.numel() == 1:
            return obj.item()
        raise TypeError(f"a tensor of shape {tuple(obj.shape)} in config: pass tensors as extra_tensors")
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serializable: {obj!r}")


def _tensor_bytes(t: torch.Tensor):
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _checksum(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


_atomic_write = atomic_write  # one implementation, in utils


# -----------------------------------------------------------------------------
# optimizer state <-> tensors + JSON


def optimizer_state_to_tensors(state_dict: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-able skeleton.

    The skeleton is the state dict with each tensor replaced by {"__tensor__": name}; dicts
    are stored as {"__dict__": [[key, value], ...]} (optimizer state is keyed by int) and
    tuples as {"__tuple__": [...]}, so ``optimizer_state_from_tensors`` rebuilds it exactly.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(obj, name):
        if isinstance(obj, torch.Tensor):
            key, n = name, 1
            while key in tensors:
                key, n = f"{name}#{n}", n + 1
            tensors[key] = obj.detach()
            return {"__tensor__": key}
        if isinstance(obj, Mapping):
            for k in obj:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(
                        f"optimizer state key {k!r} under {name or 'the root'!r} is not an int or str"
                    )
            return {"__dict__": [[k, enc(v, f"{name}.{k}" if name else str(k))] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [enc(v, f"{name}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [enc(v, f"{name}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(
            f"optimizer state entry {name!r} has type {type(obj).__name__}, which cannot be stored without pickle"
        )

    skeleton = enc(state_dict, "")
    return tensors, skeleton


def optimizer_state_from_tensors(tensors: Mapping[str, torch.Tensor], skeleton: dict) -> dict:
    """Inverse of optimizer_state_to_tensors: a state dict for ``optimizer.load_state_dict``."""

    def dec(obj):
        if isinstance(obj, dict):
            if "__tensor__" in obj:
                try:
                    return tensors[obj["__tensor__"]]
                except KeyError:
                    raise CheckpointError(f"optimizer tensor {obj['__tensor__']!r} is missing") from None
            if "__dict__" in obj:
                return {k: dec(v) for k, v in obj["__dict__"]}
            if "__tuple__" in obj:
                return tuple(dec(v) for v in obj["__tuple__"])
            raise CheckpointError(f"unexpected entry in the optimizer skeleton: {sorted(obj)}")
        if isinstance(obj, list):
            return [dec(v) for v in obj]
        return obj

    return dec(skeleton)


# -----------------------------------------------------------------------------
# save


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    config: Mapping[str, Any],
    ema_model: nn.Module | Mapping[str, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | Mapping | None = None,
    step: int | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    rng_states: Mapping[str, torch.Tensor | bytes] | None = None,
) -> Path:
    """Write ``path`` (.safetensors) and its sidecar ``path.with_suffix('.json')`` atomically.

    ``config`` is stored as JSON with ``model_class``, ``model_args`` (the model's dataclass
    ``.config``), ``library_version`` and ``step`` set by this function (they overwrite keys
    of the same name). ``optimizer`` is an optimizer or its state_dict; ``rng_states`` maps
    names to uint8 tensors (``torch.get_rng_state()``) or bytes. Returns the path.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model = _unwrap(model)

    full_config = dict(config)
    full_config.update(
        model_class=type(model).__name__,
        model_args=_model_args(model),
        library_version=_library_version(),
        step=None if step is None else int(step),
    )
    try:
        config_json = json.dumps(full_config, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"config cannot be stored as JSON: {e}") from None
    full_config = json.loads(config_json)

    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[tuple[str, int]] = set()

    def add(prefix: str, state: Mapping[str, torch.Tensor]):
        for k, t in state.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{prefix}{k} is a {type(t).__name__}, not a tensor")
            t = t.detach().cpu().contiguous()
            storage = (str(t.device), t.untyped_storage().data_ptr())
            if t.numel() and storage in seen_storage:  # safetensors refuses shared memory
                t = t.clone()
            seen_storage.add((str(t.device), t.untyped_storage().data_ptr()))
            tensors[prefix + k] = t

    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config_json}
    if step is not None:
        metadata["step"] = str(int(step))
    add("model.", model.state_dict())
    if ema_model is not None:
        add("ema.", _unwrap(ema_model).state_dict() if isinstance(ema_model, nn.Module) else ema_model)
    if optimizer is not None:
        state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
        opt_tensors, skeleton = optimizer_state_to_tensors(state)
        add("optim.", opt_tensors)
        metadata["optimizer"] = json.dumps(skeleton)
    if extra_tensors:
        add("extra.", extra_tensors)
    if rng_states:
        rng = {}
        for name, s in rng_states.items():
            if isinstance(s, (bytes, bytearray, memoryview)):
                s = torch.frombuffer(bytearray(s), dtype=torch.uint8)
            if not isinstance(s, torch.Tensor) or s.dtype != torch.uint8:
                raise TypeError(f"rng_states[{name!r}] must be a uint8 tensor or bytes")
            rng[name] = s
        add("rng.", rng)
    metadata["checksum"] = _checksum(tensors, metadata)

    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    sidecar = json.dumps(full_config, indent=2, sort_keys=True) + "\n"
    _atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(sidecar))
    return path


# -----------------------------------------------------------------------------
# load

_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def _read_header(path: Path) -> dict:
    """Parse and check the safetensors header without trusting the file; refuse pickles."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
        if size < 9:
            raise CheckpointError(f"{path} is truncated or corrupt: only {size} bytes, no safetensors header")
        if head[8:9] == b"{":  # a safetensors header is JSON after 8 bytes
            n = int.from_bytes(head[:8], "little")
            if n > _MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path} is corrupt: its header claims {n} bytes, more than the "
                    f"{_MAX_HEADER_BYTES} safetensors allows"
                )
            if 8 + n > size:
                raise CheckpointError(
                    f"{path} is truncated or corrupt: its header claims {n} bytes but the file has {size} bytes"
                )
            f.seek(8)
            raw = f.read(n)
        elif head.startswith(b"PK\x03\x04"):
            raise CheckpointError(
                f"refusing to unpickle {path}: it is a zip archive, as torch.save() writes, not a "
                f"safetensors checkpoint; loading it would run pickle. Convert it once, where you trust "
                f"its origin, with ddpm_lib.save_checkpoint."
            )
        elif head[:1] == b"\x80":
            raise CheckpointError(
                f"refusing to unpickle {path}: it starts with a pickle protocol header, not a safetensors "
                f"header; loading it would run pickle. Convert it once, where you trust its origin, with "
                f"ddpm_lib.save_checkpoint."
            )
        else:
            raise CheckpointError(f"{path} is corrupt or not a safetensors file: no safetensors header")
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt: its safetensors header does not parse ({e})") from None

    data_len, end = size - 8 - len(raw), 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = info["data_offsets"]
            shape, dtype = list(info["shape"]), info["dtype"]
            if not all(type(v) is int and v >= 0 for v in (begin, stop, *shape)) or stop < begin:
                raise ValueError
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path} is corrupt: header entry {name!r} is malformed") from None
        if dtype in _DTYPE_SIZES and stop - begin != math.prod(shape) * _DTYPE_SIZES[dtype]:
            raise CheckpointError(
                f"{path} is corrupt: tensor {name!r} {dtype}{shape} does not fit its {stop - begin} bytes"
            )
        end = max(end, stop)
    if end > data_len:
        raise CheckpointError(
            f"{path} is truncated: its header describes {end} bytes of tensor data, the file holds {data_len}"
        )
    if end < data_len:
        raise CheckpointError(
            f"{path} is corrupt: {data_len - end} bytes after the tensor data the header describes"
        )
    return header


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    expected_sha256: str | None = None,
    use_ema: bool = False,
    verify: bool = True,
) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint; never unpickles.

    With ``model``, its weights (the EMA weights if ``use_ema``) are loaded into it with
    strict=True after checking that class, arguments, keys and shapes agree. ``verify``
    recomputes the checksum stored in the file; ``expected_sha256`` checks the file's bytes.
    RNG states stay on the CPU; every other tensor goes to ``map_location``.
    """
    path = Path(path)
    header = _read_header(path)
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256.strip().lower():
            raise CheckpointError(f"{path}: sha256 mismatch: expected {expected_sha256}, file has {actual}")
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{path} is a safetensors file but not a ddpm_lib checkpoint (or its metadata is corrupt): "
            f"metadata keys {sorted(meta)}, expected format={FORMAT!r} and a config"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {meta.get('format_version')!r}, "
            f"this library reads {FORMAT_VERSION!r}"
        )
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is truncated or corrupt: safetensors could not read it ({e})"
        ) from None
    if verify and _checksum(tensors, meta) != meta.get("checksum"):
        raise CheckpointError(
            f"{path} is corrupt: its tensors or metadata do not match the checksum stored in it "
            f"(a changed byte, or the file was edited by another tool)"
        )
    try:
        config = json.loads(meta["config"])
        skeleton = json.loads(meta["optimizer"]) if "optimizer" in meta else None
        step = int(meta["step"]) if "step" in meta else None
    except ValueError as e:
        raise CheckpointError(f"{path} is corrupt: its metadata does not parse ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} is corrupt: its config must be a JSON object (a dict), got {type(config).__name__} "
            f"{_short(config)}"
        )

    groups: dict[str, dict[str, torch.Tensor]] = {p: {} for p in ("model", "ema", "optim", "extra", "rng")}
    for name, t in tensors.items():
        prefix, _, key = name.partition(".")
        if prefix not in groups:
            raise CheckpointError(f"{path} holds an unexpected tensor {name!r}")
        groups[prefix][key] = t if prefix == "rng" else t.to(map_location)

    ckpt = Checkpoint(
        config=config,
        model_state=groups["model"],
        ema_state=groups["ema"] or None,
        optimizer_state=None if skeleton is None else optimizer_state_from_tensors(groups["optim"], skeleton),
        step=step,
        extra=groups["extra"],
        rng_states=groups["rng"],
        path=path,
    )
    if model is not None:
        if use_ema and ckpt.ema_state is None:
            raise CheckpointError(f"{path} holds no EMA weights (use_ema=True)")
        _load_into(
            model, ckpt.ema_state if use_ema else ckpt.model_state, ckpt, "ema." if use_ema else "model."
        )
    return ckpt


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_weights(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse stored weights that would load without error yet compute garbage: a tensor of an integer
    (or bool) dtype where the model holds floating-point numbers (load_state_dict would cast it), or
    one holding NaN or infinity. ``where`` starts the message ("FILE: tensor ema.")."""
    own = model.state_dict()
    for k in sorted(state):
        t = state[k]
        if k in own and own[k].is_floating_point() and not t.is_floating_point():
            raise CheckpointError(
                f"{where}{k} has dtype {str(t.dtype).removeprefix('torch.')}, not floating point: "
                f"the file holds no usable weights there (edited or written by another tool)"
            )
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(
                f"{where}{k} holds {bad} NaN or infinite value(s) of {t.numel()}: these weights would "
                f"sample NaN (a diverged run, or a damaged file)"
            )


def _describe(cls_name, args) -> str:
    return f"{cls_name}({', '.join(f'{k}={v!r}' for k, v in args.items())})" if args else str(cls_name)


def _listing(keys, limit=8) -> str:
    keys = sorted(keys)
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _fit_problems(own: Mapping[str, tuple], stored: Mapping[str, tuple]) -> list[str]:
    """What differs between a model's state_dict shapes and the stored ones (keys, then shapes)."""
    problems = []
    missing, unexpected = own.keys() - stored.keys(), stored.keys() - own.keys()
    shapes = [k for k in own.keys() & stored.keys() if tuple(own[k]) != tuple(stored[k])]
    if missing:
        problems.append(f"missing from the checkpoint ({len(missing)} keys): {_listing(missing)}")
    if unexpected:
        problems.append(
            f"in the checkpoint but not the model ({len(unexpected)} keys): {_listing(unexpected)}"
        )
    if shapes:
        shown = [f"{k}: checkpoint {tuple(stored[k])} vs model {tuple(own[k])}" for k in sorted(shapes)[:8]]
        more = f"; ... and {len(shapes) - 8} more" if len(shapes) > 8 else ""
        problems.append(f"shape mismatches ({len(shapes)}): " + "; ".join(shown) + more)
    return problems


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def load_weights(model: nn.Module, ckpt: Checkpoint, use_ema: bool = False) -> nn.Module:
    """Load a checkpoint's raw (or EMA) weights into ``model`` after the checks :func:`load_checkpoint`
    makes with ``model=``: the same class and shapes, every tensor finite and floating point where
    the model's is. Returns ``model``; raises CheckpointError naming the file and the tensor."""
    state = ckpt.ema_state if use_ema else ckpt.model_state
    if state is None:
        raise CheckpointError(f"{ckpt.path} holds no EMA weights (use_ema=True)")
    return _load_into(model, state, ckpt, "ema." if use_ema else "model.")


def _load_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], ckpt: Checkpoint, prefix: str = "model."
) -> nn.Module:
    """load_state_dict(strict=True), with a readable error naming what does not match, after
    refusing non-finite or non-floating weights (``prefix``: the stored tensors' group, for the message)."""
    target = _unwrap(model)
    problems = []
    ours_cls, ours_args = type(target).__name__, _model_args(target)
    theirs_cls, theirs_args = ckpt.model_class, ckpt.model_args
    if theirs_cls is not None and theirs_cls != ours_cls:
        problems.append(
            f"class: the checkpoint holds {_describe(theirs_cls, theirs_args)}, "
            f"the model is {_describe(ours_cls, ours_args)}"
        )
    elif theirs_args is not None and ours_args is not None:
        differ = [
            k
            for k in sorted(set(theirs_args) | set(ours_args))
            if k not in _ARGS_FREE_TO_DIFFER and theirs_args.get(k) != ours_args.get(k)
        ]
        if differ:
            problems.append(
                "arguments: "
                + "; ".join(
                    f"{k}={theirs_args.get(k)!r} in the checkpoint, {ours_args.get(k)!r} in the model"
                    for k in differ
                )
            )
    problems += _fit_problems(_shapes(target.state_dict()), _shapes(state))
    if problems:
        raise CheckpointError(f"{ckpt.path} does not fit the model passed:\n  " + "\n  ".join(problems))
    _check_weights(target, state, f"{ckpt.path}: tensor {prefix}")
    target.load_state_dict(state, strict=True)
    return model


class _TooManyParameters(Exception):
    """Raised from inside a module's constructor to stop building it (never reaches a caller)."""


@contextlib.contextmanager
def _parameter_budget(limit: int):
    """Stop any module built inside once more than ``limit`` parameters have been registered.

    On the meta device a parameter costs no memory, but every module is still a Python object:
    MLP(layers=10**7) would take gigabytes of them before anything could be compared.
    """
    from torch.nn.modules.module import register_module_parameter_registration_hook

    count = 0

    def hook(module, name, param):
        nonlocal count
        count += 1
        if count > limit:
            raise _TooManyParameters

    handle = register_module_parameter_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def build_on_meta(
    build: Callable[[], nn.Module], stored_shapes: Mapping[str, tuple], where: str
) -> nn.Module:
    """``build()`` on the meta device (no memory for tensors), stopped with CheckpointError (starting
    with ``where``) once it registers more than twice as many parameters as ``stored_shapes``
    has entries: a model description far larger than the stored weights is refused cheaply."""
    limit = 2 * len(stored_shapes) + 16  # a parameter may be registered twice (tied or replaced)
    try:
        with _parameter_budget(limit), torch.device("meta"):
            return build()
    except _TooManyParameters:
        raise CheckpointError(
            f"{where} describes a network with more than {limit} parameter tensors, but the file stores "
            f"{len(stored_shapes)} tensors for it: its config was edited or belongs to other weights "
            f"(refused before building it)"
        ) from None


def check_model_fits(
    build: Callable[[], nn.Module] | nn.Module, stored_shapes: Mapping[str, tuple], where: str
) -> nn.Module:
    """Refuse a model description that does not match stored tensors, before anything is allocated.

    ``build`` is a function building the model (run by :func:`build_on_meta`) or a model already
    built on the meta device; every name and shape of its state_dict must equal
    ``stored_shapes``, else CheckpointError starting with ``where`` names the first mismatches.
    Returns the meta model. After it returns, building the model for real allocates no more
    than the stored tensors hold.
    """
    model = build if isinstance(build, nn.Module) else build_on_meta(build, stored_shapes, where)
    problems = _fit_problems(_shapes(_unwrap(model).state_dict()), stored_shapes)
    if problems:
        raise CheckpointError(
            f"{where} does not match the tensors stored in the file (refused before "
            f"building it):\n  " + "\n  ".join(problems)
        )
    return model


def check_data_shape(shape, where: str) -> tuple[int, ...]:
    """A stored data shape, (D,) or (C, H, W) of positive ints with at most MAX_EXAMPLE_NUMEL
    numbers, as a tuple; else CheckpointError starting with ``where``."""
    ok = (
        isinstance(shape, (list, tuple))
        and len(shape) in (1, 3)
        and all(type(s) is int and s >= 1 for s in shape)
    )
    if not ok:
        raise CheckpointError(
            f"{where}: data shape must be (D,) or (C, H, W) of positive integers, got {shape!r}"
        )
    if math.prod(shape) > MAX_EXAMPLE_NUMEL:
        raise CheckpointError(
            f"{where}: data shape {list(shape)} holds {math.prod(shape)} numbers per example, "
            f"more than the {MAX_EXAMPLE_NUMEL} (2**24) this library samples"
        )
    return tuple(shape)


def build_model(checkpoint: Checkpoint | str | os.PathLike, use_ema: bool = True) -> nn.Module:
    """Instantiate the checkpoint's model class (from MODEL_REGISTRY only) with its stored
    arguments and load its weights strictly: the EMA weights when ``use_ema`` and the
    checkpoint has them, else the raw weights. Returns the model in eval mode, on the
    device its tensors were loaded to.

    The stored arguments are first checked on the meta device against the stored tensors'
    names and shapes (:func:`check_model_fits`), so an edited config cannot make this allocate
    more than the file holds.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    name, args = ckpt.model_class, ckpt.model_args
    if name not in MODEL_REGISTRY:
        raise CheckpointError(
            f"{ckpt.path}: unknown model class {name!r}; known classes: {', '.join(sorted(MODEL_REGISTRY))} "
            f"(add others with ddpm_lib.checkpoints.register_model)"
        )
    if not isinstance(args, dict):
        raise CheckpointError(f"{ckpt.path}: no model_args stored for {name}, cannot build it")
    ema = use_ema and ckpt.ema_state is not None
    state = ckpt.ema_state if ema else ckpt.model_state
    try:
        check_model_fits(
            lambda: MODEL_REGISTRY[name](**args),
            _shapes(state),
            f"{ckpt.path}: its config's {_describe(name, args)}",
        )
        model = MODEL_REGISTRY[name](**args)
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{ckpt.path}: cannot build {_describe(name, args)}: {e}") from None
    device = next(iter(state.values())).device if state else torch.device("cpu")
    _load_into(model.to(device), state, ckpt, "ema." if ema else "model.")
    return model.eval()
