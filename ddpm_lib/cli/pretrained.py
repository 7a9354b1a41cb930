"""``ddpm-pretrained`` (``python -m ddpm_lib.pretrained``): list, verify and register the trained
checkpoints of ``data/registry.json``.

The library is :mod:`ddpm_lib.pretrained`; this module only parses and reports.
"""

from __future__ import annotations

import json
import sys

from ..data import data_dir_problem
from ..pretrained import (
    evaluation_metrics,
    list_pretrained,
    pretrained_path,
    register_pretrained,
    registry_path,
    verify_pretrained,
)
from . import add_command, add_commands, make_parser, run

__all__ = ["build_parser", "main"]

EXAMPLES = (
    "ddpm-pretrained list",
    "ddpm-pretrained verify fashion-mnist-unet swiss-roll-mlp",
)


def build_parser():
    p = make_parser(
        "ddpm-pretrained",
        "List, verify (sha256) and register the trained checkpoints that data/registry.json lists by name.",
        EXAMPLES,
        module="ddpm_lib.pretrained",
    )
    sub = add_commands(p)
    add_command(
        sub, "list", "the registered names, files, metrics and the commands that made them", EXAMPLES[:1]
    )
    v = add_command(
        sub,
        "verify",
        "check registered files by size and sha256 (default: all)",
        ["ddpm-pretrained verify", EXAMPLES[1]],
    )
    v.add_argument("names", nargs="*")
    r = add_command(
        sub,
        "register",
        "add a checkpoint under the data folder to registry.json",
        [
            "ddpm-train --config configs/swiss_roll.toml --out-dir runs/swiss-roll",
            "cp runs/swiss-roll/latest.safetensors data/checkpoints/my_roll.safetensors",
            "ddpm-pretrained register my-roll data/checkpoints/my_roll.safetensors --description 'my swiss roll'",
        ],
    )
    r.add_argument("name", help="a short identifier, e.g. fashion-mnist-small")
    r.add_argument("path", help="the checkpoint, under the data folder (data/checkpoints/...)")
    r.add_argument(
        "--command",
        default=None,
        help="the exact command that made the checkpoint (default: the one its config records)",
    )
    r.add_argument("--description", default="")
    r.add_argument(
        "--evaluation",
        default=None,
        metavar="EVAL.json",
        help="a ddpm-evaluate --json result of this very file (checked by sha256): its measurements "
        "become the entry's metrics (default: the metrics in the checkpoint's config)",
    )
    return p


def format_metrics(metrics: dict) -> str:
    """A registry entry's metrics as one readable line: ``name value`` pairs, numbers to 4 digits,
    nested tables as ``table.name``."""

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (list, type(None), bool)) else str(v)

    return "; ".join(f"{k} {fmt(v)}" for k, v in flat(metrics)) or "(none recorded)"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.cmd in ("list", "verify") and (problem := data_dir_problem()):
            # no registry anywhere: say where it was looked for (exit 1), rather than list nothing
            raise OSError(f"cannot {args.cmd} the pretrained checkpoints: {problem}")
        if args.cmd == "list":
            if not list_pretrained():
                print(f"no pretrained checkpoints registered in {registry_path()}")
            for n, e in list_pretrained().items():
                print(
                    f"{n}: {e['path']} ({e['size'] / 2**20:.1f} MiB, sha256 {e['sha256'][:16]}...)\n"
                    f"    {e.get('description', '')}\n    measured: {format_metrics(e.get('metrics', {}))}\n"
                    f"    made by: {e.get('command')}"
                )
        elif args.cmd == "verify":
            for n in args.names:  # an unknown name is a usage error; a bad file, a failed check
                pretrained_path(n, verify=False)
            for n, sha in verify_pretrained(args.names or None).items():
                print(f"ok  {sha}  {n}")
        else:
            metrics = None
            if args.evaluation:
                with open(args.evaluation, encoding="utf-8") as f:
                    metrics = evaluation_metrics(json.load(f), args.path)
            e = register_pretrained(args.name, args.path, args.command, args.description, metrics=metrics)
            print(f"registered {args.name!r} in {registry_path()}: {json.dumps(e, indent=2)}")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
