"""The command lines: argparse front ends over the library, one module per console script::

    console script    module                     the same command
    ddpm-train        ddpm_lib.cli.train         python -m ddpm_lib.train
    ddpm-sample       ddpm_lib.cli.sample        python -m ddpm_lib.sample
    ddpm-evaluate     ddpm_lib.cli.evaluate      python -m ddpm_lib.evaluate
    ddpm-pretrained   ddpm_lib.cli.pretrained    python -m ddpm_lib.pretrained
    ddpm-data         ddpm_lib.cli.data          python -m ddpm_lib.data
    ddpm-data cifar10 ddpm_lib.cli.data          python -m ddpm_lib.cifar
    ddpm-classifier   ddpm_lib.cli.classifier    python -m ddpm_lib.classifier

(``ddpm-book`` is the course's tool, ``ddpm_lib.course.book``, in the layer above this one.)
A module here parses its arguments, calls the library, prints, and leaves the exit code to
:func:`run`; what a command does lives in the library (``sample_from_checkpoint``,
``evaluate_checkpoint``, ``verify_registry``, ...). ``python -m ddpm_lib.<module>`` runs the
same ``main`` from an ``if __name__ == "__main__":`` block at the top of the library module,
before its body: run as ``__main__``, the body would otherwise execute twice, once more when the
command line imports the module (and ``FashionClassifier``, say, would be registered twice);
``python -m ddpm_lib.train`` runs ``ddpm_lib/train/__main__.py``. Such an entry point imports a
command line and nothing else of the library (``tests/test_layers.py``).

Exit codes, the same in every command:

- **0**: success.
- **1**: a failure while working: an I/O error, a data file whose size or sha256 is wrong or
  that turns out corrupt, a download that fails, a check that fails (``ddpm-data verify`` or
  ``ddpm-pretrained verify`` finding a bad file).
- **2**: a usage error, where the command itself must change: a bad flag (argparse), a bad
  configuration or value (``--steps`` beyond T, an unknown data set), an unknown pretrained
  name, a file that does not exist or cannot be used as given (a checkpoint file that does not
  load, while a registered one found truncated is a failure, 1).
- **130**: interrupted (Ctrl-C, SIGINT); **143**: terminated (SIGTERM) while ``ddpm-train``
  trains, which then stops after the current step and saves it (one line says where and how to
  resume; see :mod:`ddpm_lib.train.interrupt`). A SIGTERM anywhere else ends a command at once.

Outputs, the same in every command (:func:`output_file`, :func:`output_folder`, before any work):
a file or folder to write is checked at the start, so that a full evaluation or sampling run
does not end in an error. Missing folders above it are made then, with a ``note:`` line saying
so; a path that is a symbolic link is written through to its target (the link stays); a folder
that cannot be written, or a file standing where a folder should be, is a failure (exit 1)
naming the option. A write that fails later (a full disk) names the file.

An error is reported as one line ``error: MESSAGE`` on stderr (a message of several lines goes
on in indented lines below it), without a traceback. :data:`EXIT_CODES` maps exception classes
to codes, and the most specific class of an exception that it lists decides: a
``DataIntegrityError`` is a ``ValueError`` but exits 1, a ``DownloadError`` is a
``FileNotFoundError`` but exits 1. An exception that it does not list is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from typing import Callable, Mapping, Optional

import torch

from ..checkpoints import CheckpointError
from ..data import DataIntegrityError, DownloadError
from ..pretrained import UnknownPretrainedError
from ..train.config import ConfigError
from ..train.rundir import RunDirInUseError
from ..utils import DeviceUnavailableError, prepare_output, prepare_output_dir

__all__ = [
    "UsageError",
    "EXIT_CODES",
    "exit_code",
    "run",
    "report",
    "make_parser",
    "add_commands",
    "add_command",
    "examples",
    "device_arg",
    "int_list",
    "positive_int",
    "nonnegative_float",
    "note",
    "output_file",
    "output_folder",
    "OUTPUT_RULE",
]


class UsageError(Exception):
    """A command line that cannot work as given (exit 2)."""


USAGE, FAILURE, INTERRUPTED, TERMINATED = 2, 1, 130, 143

EXIT_CODES: dict[type, int] = {
    UsageError: USAGE,
    ConfigError: USAGE,  # a bad training configuration (ddpm_lib.train.config)
    UnknownPretrainedError: USAGE,  # a name data/registry.json does not list
    CheckpointError: USAGE,  # a checkpoint that cannot be used as given (corrupt, crafted, another model)
    RunDirInUseError: USAGE,  # another process trains in that run directory
    DeviceUnavailableError: USAGE,  # --device cuda on a machine without CUDA
    FileNotFoundError: USAGE,  # a file or folder named in the command does not exist
    ValueError: USAGE,  # a value the library refuses (--steps beyond T, --n 0, ...)
    OSError: FAILURE,  # an I/O error: disk, permissions, the network
    DownloadError: FAILURE,  # files were missing and their download failed
    DataIntegrityError: FAILURE,  # a data file of the wrong size or sha256, or corrupt
    pickle.UnpicklingError: FAILURE,  # an archive whose pickle is unsafe or broken
    MemoryError: FAILURE,
    torch.cuda.OutOfMemoryError: FAILURE,
    KeyboardInterrupt: INTERRUPTED,
}


def exit_code(exc: BaseException, codes: Optional[Mapping[type, int]] = None) -> Optional[int]:
    """The exit code of an exception: that of the most specific of its classes listed in
    ``codes`` (checked first) or :data:`EXIT_CODES`; None when none is (a bug)."""
    for cls in type(exc).__mro__:
        for table in (codes or {}, EXIT_CODES):
            if cls in table:
                return table[cls]
    return None


def report(exc: BaseException) -> None:
    """``error: MESSAGE`` on stderr; the further lines of a long message indented below it."""
    text = "interrupted" if isinstance(exc, KeyboardInterrupt) else (str(exc).strip() or type(exc).__name__)
    first, *rest = text.splitlines()
    sys.stdout.flush()
    print(
        "\n".join([f"error: {first}", *(s if s[:1].isspace() or not s else "  " + s for s in rest)]),
        file=sys.stderr,
        flush=True,
    )


def run(command: Callable[[], Optional[int]], codes: Optional[Mapping[type, int]] = None) -> int:
    """Call ``command()`` (a command's work, after its arguments are parsed) and return its exit code:
    what it returns (None is 0), or the code of what it raises (:func:`exit_code`), reported by
    :func:`report`. ``codes`` adds exception classes of a layer above this one (the course's book)."""
    try:
        rc = command()
    except BaseException as e:  # noqa: B036 - KeyboardInterrupt too; unknown exceptions are re-raised
        code = exit_code(e, codes)
        if code is None:
            raise
        report(e)
        return code
    return 0 if rc is None else int(rc)


def examples(*lines: str) -> str:
    """An ``epilog`` of example commands (for :func:`make_parser`)."""
    return "examples:\n" + "\n".join(f"  {s}" for s in lines)


def make_parser(
    prog: str, description: str, example_lines, module: Optional[str] = None, **kwargs
) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help ends with ``example_lines``; ``module``: the ``python -m`` form."""
    if module:
        description += f" (The same command: python -m {module} ...)"
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=examples(*example_lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def add_commands(parser: argparse.ArgumentParser, dest: str = "cmd"):
    """The subcommands of ``parser`` (one is required); add each with :func:`add_command`."""
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def add_command(subparsers, name: str, help_: str, example_lines=(), **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with ``example_lines`` too."""
    return subparsers.add_parser(
        name,
        help=help_,
        description=help_[:1].upper() + help_[1:] + ".",
        epilog=examples(*example_lines) if example_lines else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def device_arg(value: str) -> str:
    """argparse type of --device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps, ...;
    a device this machine lacks is a usage error, not a traceback later."""
    if value == "auto":
        return value
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"not a device: {value!r} (auto, cpu, cuda, cuda:1, mps, ...)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{value!r}: this machine has no CUDA device (use auto or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise argparse.ArgumentTypeError(f"{value!r}: this machine has no MPS device (use auto or cpu)")
    return value


def int_list(value: str) -> list[int]:
    """argparse type of a comma-separated list of integers (``1000,750,500``)."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def positive_int(value: str) -> int:
    """argparse type of a count that must be at least 1 (--batch-size, --threads, --nrow, ...)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...), got {n}")
    return n


def nonnegative_float(value: str) -> float:
    """argparse type of a finite number >= 0 (DDIM's --eta): NaN and infinity are refused."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value!r}")
    return x


def note(message: str) -> None:
    """A ``note: MESSAGE`` line on stderr (something the user should know, not an error)."""
    print(f"note: {message}", file=sys.stderr, flush=True)


# said in the --help of every output option
OUTPUT_RULE = "missing folders are made (with a note); a symlink is written through to its target"


def output_file(path, option: str):
    """Check at the start that ``option``'s file ``path`` can be written (see the module's rule)."""
    return prepare_output(path, option, note)


def output_folder(path, option: str):
    """Check at the start that files can be written in the folder ``path`` of ``option`` (made if
    missing, without a note: the folder is itself the output, as a training run's --out-dir)."""
    return prepare_output_dir(path, option)
