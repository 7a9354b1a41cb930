"""Small helpers: device choice, seeding, and writing files (atomically, to a place checked first)."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from safetensors import SafetensorError

__all__ = [
    "device",
    "DeviceUnavailableError",
    "seed_everything",
    "atomic_write",
    "prepare_output",
    "prepare_output_dir",
    "os_error",
]

# errors of writing a file (as opposed to, say, a download failing inside a writer): reported as
# "cannot write PATH: ...", since the operating system's message names no file (a full disk)
_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EROFS,
    errno.EIO,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
}


def os_error(code: Optional[int], message: str) -> OSError:
    """The OSError subclass of ``code`` (PermissionError for EACCES, ...) with ``errno`` set and
    ``message`` as its text: the command lines print it without an "[Errno N]" prefix."""
    cls = type(OSError(code, "")) if code else OSError
    err = cls(message)
    err.errno = code
    return err


def _write_error(exc: BaseException, path: Path) -> Optional[OSError]:
    """``exc`` raised while writing ``path`` as an OSError naming the file, or None when it is not
    an error of writing. safetensors reports an I/O error as a SafetensorError ending in
    "(os error N)"; it becomes the OSError of errno N."""
    code = None
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        code = exc.errno
    elif isinstance(exc, SafetensorError) and (m := re.search(r"os error (\d+)", str(exc))):
        code = int(m.group(1))
    if code is None:
        return None
    return os_error(code, f"cannot write {path}: {os.strerror(code)}")


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see the old file or the new one, never half of one; if ``write`` raises (a failed
    checksum, an interrupted download) the temporary file is removed and ``path`` is untouched.
    The temporary file keeps ``path``'s suffix, for writers that choose a format by it. Missing
    folders above ``path`` are made. A ``path`` that is a symbolic link is written through: its
    target gets the new contents and the link stays. A failure to write (a full disk, no
    permission) raises an OSError whose message names ``path``. Returns ``path``.
    """
    given = Path(path)
    path = Path(os.path.realpath(given))  # a symlink's target, so that the link is not replaced
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped files are for everyone
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if (err := _write_error(e, given)) is not None:
            raise err from e
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return given


def prepare_output(path, what: str = "output", note: Optional[Callable[[str], object]] = None) -> Path:
    """Check, before any work, that the file ``path`` can be written; return it.

    The one rule of every output of the command lines (``--out``, ``--json``, ...): missing
    folders above the file are made now, and ``note`` (if given) is told which; a symbolic link
    is written through to its target (see :func:`atomic_write`). Raises an OSError that names
    ``what`` and ``path`` when ``path`` is a folder, when a file stands where a folder should be,
    or when the folder cannot be written (a probe file is made and removed).
    """
    given = Path(path)
    target = Path(os.path.realpath(given))
    if target.is_dir():
        raise os_error(errno.EISDIR, f"{what} {given} is a folder: name the file to write")
    _prepare_folder(target.parent, f"{what} {given}", note)
    return given


def _prepare_folder(folder: Path, what: str, note) -> None:
    """Make ``folder`` (telling ``note``) and check that a file can be written in it."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise os_error(errno.ENOTDIR, f"cannot write {what}: {existing} is a file, not a folder")
    if existing != folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(
                e.errno, f"cannot write {what}: cannot make the folder {folder}: {e.strerror}"
            ) from None
        if note is not None:
            note(f"made the folder {folder} for {what}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise os_error(
            e.errno, f"cannot write {what}: cannot make a file in {folder} ({e.strerror})"
        ) from None


def prepare_output_dir(path, what: str = "output folder", note=None) -> Path:
    """:func:`prepare_output` for a folder that will hold files (a training run's ``--out-dir``)."""
    given = Path(path)
    _prepare_folder(Path(os.path.realpath(given)), f"{what} {given}", note)
    return given


class DeviceUnavailableError(RuntimeError):
    """A device that this machine does not have (``cuda`` without CUDA, ``mps`` off a Mac)."""


def device(prefer="auto") -> torch.device:
    """The library's one device rule; every function that takes a ``device`` resolves it here.

    ``"auto"`` (the default, ``dl.device()``): cuda if there is one, then mps, then cpu.
    ``None``: the CPU, which is what loading and sampling functions default to, so that a chapter
    computes the same numbers on any machine. A name (``"cpu"``, ``"cuda:1"``) or a torch.device:
    that device, after checking that it exists (a clear error instead of a failure deep in torch).
    """
    if prefer is None:
        return torch.device("cpu")
    if isinstance(prefer, str) and prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        d = torch.device(prefer)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', None, or a torch device such as 'cpu' or 'cuda:0'; got {prefer!r}"
        ) from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {str(d)!r} was asked for but torch.cuda.is_available() is False (use 'auto' or 'cpu')"
        )
    mps = getattr(torch.backends, "mps", None)
    if d.type == "mps" and not (mps is not None and mps.is_available()):
        raise DeviceUnavailableError(
            "device 'mps' was asked for but torch.backends.mps.is_available() is False"
        )
    return d


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g
