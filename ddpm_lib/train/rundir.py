"""A training run's directory: one writing process at a time, no leftovers of interrupted writes.

Two ``python -m ddpm_lib.train --out-dir X`` started together would both write ``X/ckpt_*``,
``latest.*`` and ``log.jsonl`` and overwrite each other. :func:`open_run_dir` takes an exclusive
``fcntl.flock`` on ``X/.lock`` (the holder's pid written inside, for the message a second
process gets) and keeps it until the returned release function is called. The kernel drops a
flock when its process dies, however it dies, so the ``.lock`` a killed run leaves behind blocks
nothing: the next run takes the lock and overwrites the pid. Within one process the lock is
shared (counted), so a notebook may make a Trainer, then resume it, on the same directory.

Every file in a run directory is written atomically (``ddpm_lib.utils.atomic_write``: a
temporary file beside the target, renamed over it). A process killed mid-write leaves the
temporary file; once the lock is held no other process can be writing, so :func:`open_run_dir`
removes the files that match the library's own temporary names (:data:`INTERRUPTED_WRITE`),
and nothing else.

Disk needed at the peak of a save: ``keep_last`` step checkpoints, plus the one being written
(it exists once while safetensors writes it, then is renamed), plus one more when the file
system has no hard links and ``latest.safetensors`` is a copy (and, during that copy, its
temporary): ``(keep_last + 1)`` checkpoint sizes with hard links, ``(keep_last + 3)`` without.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import weakref
from pathlib import Path
from typing import Callable

from ..checkpoints import Checkpoint, CheckpointError, load_checkpoint

__all__ = [
    "LOCK_NAME",
    "INTERRUPTED_WRITE",
    "RunDirInUseError",
    "open_run_dir",
    "hold_run_dir",
    "remove_interrupted_writes",
    "find_checkpoint",
    "load_resumable",
    "checkpoint_step",
    "link_or_copy",
    "prune",
    "append_log",
]

LOCK_NAME = ".lock"

# The temporary names the library's writers give files in a run directory:
#   .ckpt_300.safetensors.k2j4_x9a.safetensors   atomic_write's mkstemp: "." + name + "." + 8 of [a-z0-9_] + suffix
#   .tmpA1b2C3                                     safetensors' own temporary (Rust tempfile: 6 letters/digits),
#                                                  renamed onto the above
#   .latest.safetensors.tmp4242                    train's hard link or copy for latest.*, ".tmp" + pid
_TARGET = r"(?:ckpt_\d+|latest|samples_\d+)\.(?P<ext>safetensors|json|png)"
INTERRUPTED_WRITE = (
    re.compile(rf"\.{_TARGET}\.[a-z0-9_]{{8}}\.(?P=ext)"),
    re.compile(r"\.tmp[A-Za-z0-9]{6}"),
    re.compile(r"\.latest\.(?:safetensors|json)\.tmp\d+"),
)


class RunDirInUseError(RuntimeError):
    """Another process holds the run directory's lock."""


# this process's locks: real path of the directory -> [the open lock file, how many holders]
_HELD: dict[str, list] = {}


def remove_interrupted_writes(path) -> list[Path]:
    """Delete the temporary files of interrupted writes in run directory ``path`` (only names
    matching :data:`INTERRUPTED_WRITE`); return what was removed. Call it holding the lock."""
    removed = []
    for p in sorted(Path(path).iterdir()):
        if p.is_file() and not p.is_symlink() and any(r.fullmatch(p.name) for r in INTERRUPTED_WRITE):
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed


def _holder(lock_file) -> str:
    lock_file.seek(0)
    pid = lock_file.read(32).strip()
    return f"pid {pid}" if pid.isdigit() else "a process that has not written its pid yet"


def open_run_dir(path) -> Callable[[], None]:
    """Create ``path`` if needed, lock it for this process and remove leftovers of interrupted
    writes; return a function that releases the lock (calling it again does nothing).

    Raises :class:`RunDirInUseError`, naming the directory and the holder's pid, when another
    process holds it. Without ``fcntl`` (not POSIX) there is no lock and nothing is removed.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no advisory locks to take
        return lambda: None
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return _releaser(key)
    f = open(path / LOCK_NAME, "a+")  # not "w": truncating before the lock would erase the holder's pid
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(f)
        f.close()
        raise RunDirInUseError(
            f"{path} is in use by another training process ({holder}, holding {path / LOCK_NAME}): wait for it "
            f"to finish or stop it, or write to another --out-dir"
        ) from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    _HELD[key] = [f, 1]
    remove_interrupted_writes(path)
    return _releaser(key)


def hold_run_dir(owner, path) -> Callable[[], None]:
    """:func:`open_run_dir` for as long as ``owner`` lives: the lock is released when the returned
    function is called or when ``owner`` is collected (a notebook that drops its Trainer), and the
    kernel drops it when the process dies."""
    release = open_run_dir(path)
    weakref.finalize(owner, release)
    return release


def _releaser(key: str) -> Callable[[], None]:
    done = False

    def release():
        nonlocal done
        if done:
            return
        done = True
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            entry[0].close()  # closing the last descriptor releases the flock

    return release


def checkpoint_step(p: Path) -> int | None:
    """N for a file named ``ckpt_<N>.safetensors``, else None."""
    stem = p.name[len("ckpt_") : -len(".safetensors")]
    return (
        int(stem)
        if p.name.startswith("ckpt_") and p.name.endswith(".safetensors") and stem.isdigit()
        else None
    )


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
    ckpts = sorted((s, p) for p in path.glob("ckpt_*.safetensors") if (s := checkpoint_step(p)) is not None)
    if not ckpts:
        raise FileNotFoundError(
            f"cannot resume: no checkpoint (latest.safetensors or ckpt_<step>.safetensors) in {path}"
        )
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
    ckpts = sorted(
        ((s, p) for p in path.glob("ckpt_*.safetensors") if (s := checkpoint_step(p)) is not None),
        reverse=True,
    )
    # latest is usually a hard link to the newest ckpt_N: the same bytes, not worth a second try
    candidates = [first] + [p for _, p in ckpts if p != first and not same_file(p, first)]
    passed_over = []
    for candidate in candidates:
        try:
            ckpt = load_checkpoint(candidate)
        except CheckpointError as e:
            note(f"cannot resume from {candidate.name}: {e}")
            passed_over.append(candidate.name)
            continue
        if passed_over:
            note(
                f"resuming from {candidate}, the newest intact checkpoint (step {ckpt.step}); "
                f"passed over: {', '.join(passed_over)}"
            )
        return ckpt
    raise CheckpointError(
        f"cannot resume: no checkpoint in {path} can be loaded (tried {', '.join(passed_over)}; "
        f"the reasons are above)"
    )


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_or_copy(src: Path, dst: Path):
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        try:
            shutil.copyfile(src, tmp)
        except OSError as e:  # a full disk: name the file it was writing
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise OSError(e.errno, f"cannot write {dst}: {e.strerror}") from None
    os.replace(tmp, dst)


def prune(out: Path, step: int, keep_last: int):
    """Delete the step checkpoints (and sidecars) of ``out`` up to ``step`` but the newest ``keep_last``."""
    ckpts = sorted(
        (s, p) for p in out.glob("ckpt_*.safetensors") if (s := checkpoint_step(p)) is not None and s <= step
    )
    for _, p in ckpts[:-keep_last]:
        for q in (p, p.with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError):
                q.unlink()


def append_log(out: Path, line: dict):
    """Append one JSON line to ``out/log.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
