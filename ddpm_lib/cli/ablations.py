"""``ddpm-ablations`` (``python -m ddpm_lib.ablations``, ``python scripts/ablations.py``): DDPM's
Table 2 at small scale, the table of chapter 11.

The library is :mod:`ddpm_lib.ablations` (rows, training, scoring, the table's schema); this module
only parses the flags into an :class:`~ddpm_lib.ablations.AblationSettings` and reports.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from ..ablations import DATASETS, ROWS, AblationSettings, merge_tables, run_table, write_table
from ..nets import UNet
from ..train.config import ConfigError
from . import UsageError, device_arg, make_parser, run

__all__ = ["build_parser", "parse_args", "main", "merge_main"]

EXAMPLES = (
    "ddpm-ablations --steps 60000 --seeds 0 --lr 1e-3 --lr-decay cosine --ema-decay 0.999 --curve-every 2000 "
    "--workers 2   # chapter 11's table",
    "ddpm-ablations --steps 60000 --seeds 0 --lr 1e-3 --lr-decay cosine --ema-decay 0.999 --curve-every 2000 "
    "--workers 2 --resume",
    "ddpm-ablations --merge runs/table2.json runs/part.json",
)


def build_parser(prog: str = "ddpm-ablations") -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "DDPM Table 2 at small scale: train every row (prediction x loss x variance) with the same "
        "settings and seeds, score each, and write the table (JSON and Markdown). "
        "--merge TABLE.json PART.json ... folds rows run apart into one table.",
        EXAMPLES,
        module="ddpm_lib.ablations",
    )
    p.add_argument("--dataset", default="swiss_roll", choices=DATASETS)
    p.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(UNet.FASHION_MNIST_SIZES),
        help="Fashion-MNIST U-Net preset (UNet.fashion_mnist)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="training steps per run (default: swiss roll 2000, Fashion-MNIST 3000)",
    )
    p.add_argument(
        "--seeds", default="", help="comma-separated seeds (default: swiss roll 0,1,2; Fashion-MNIST 0)"
    )
    p.add_argument("--rows", default="", help=f"comma-separated row ids (default: all): {', '.join(ROWS)}")
    p.add_argument("--device", default="cpu", type=device_arg, help="cpu, cuda, mps or auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (1: one core per run)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs in parallel processes (each with --threads threads); the numbers do not depend on it",
    )
    p.add_argument(
        "--T", type=int, default=0, help="override the config's number of diffusion steps T (for tests)"
    )
    p.add_argument(
        "--reference-n",
        type=int,
        default=10000,
        help="Fashion-MNIST: the first N test images as the FCD reference (default: all 10,000)",
    )
    p.add_argument(
        "--grad-clip",
        type=float,
        default=None,
        help="override the config's gradient clipping (global norm; 0: none). Default: the config's 1.0",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        default=0,
        metavar="N",
        help="train only the first N steps of each run of --steps steps (the learning rate follows the whole "
        "run's decay), then score: replays the start of a stored table's runs quickly",
    )
    p.add_argument("--lr", type=float, default=0.0, help="override the config's learning rate")
    p.add_argument(
        "--lr-decay",
        choices=("none", "cosine"),
        default="",
        help="override the config's learning-rate decay: cosine lowers it to 0 at the last step (default: none)",
    )
    p.add_argument(
        "--ema-decay", type=float, default=0.0, help="override the config's EMA decay (swiss roll: 0.995)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished runs of the table at --out (written by this same command before it stopped) "
        "and train only the rest",
    )
    p.add_argument("--batch-size", type=int, default=0, help="Fashion-MNIST batch (default 128)")
    p.add_argument("--data-root", default="", help="a folder with the Fashion-MNIST files")
    p.add_argument(
        "--fmnist-split",
        default="train",
        choices=("train", "train-10k"),
        help="Fashion-MNIST training split: the full 60,000 images, or the shipped first 10,000",
    )
    p.add_argument(
        "--bpd-n", type=int, default=0, help="held-out examples for the bound (swiss roll 2000, images 256)"
    )
    p.add_argument(
        "--bpd-batch", type=int, default=0, help="batch for the bound (default: all at once, images 256)"
    )
    p.add_argument("--sample-n", type=int, default=0, help="samples scored (swiss roll 2000, images 500)")
    p.add_argument(
        "--sample-batch", type=int, default=0, help="batch for sampling (default: all at once, images 500)"
    )
    p.add_argument(
        "--sample-steps", type=int, default=0, help="respaced sampling steps (0: all T, Algorithm 2)"
    )
    p.add_argument(
        "--curve-every",
        type=int,
        default=-1,
        help="bound every N steps during training (0: off; default swiss roll 250, images steps // 2)",
    )
    p.add_argument(
        "--curve-n", type=int, default=0, help="held-out examples for that curve (swiss roll 500, images 32)"
    )
    p.add_argument(
        "--keep-samples", type=int, default=400, help="samples stored per run (swiss roll; images: 16)"
    )
    p.add_argument(
        "--window", type=int, default=50, help="steps per window of the stored loss/gradient curves"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="FILE.json",
        help="TABLE.json PART.json [PART.json ...]: fold the rows of finished tables made alike into TABLE.json "
        "(and its .md); no training",
    )
    p.add_argument(
        "--out",
        default="",
        help="the JSON file, or a folder for <dataset>_table2.json "
        "(default: data/ablations/<dataset>_table2.json in the data folder)",
    )
    return p


def parse_args(argv, prog: str = "ddpm-ablations") -> AblationSettings:
    """The settings of a command line, defaults filled in (a bad value exits 2 with its flag named)."""
    p = build_parser(prog)
    return settings_from(p, p.parse_args(argv))


def settings_from(p: argparse.ArgumentParser, a: argparse.Namespace) -> AblationSettings:
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {a.seeds!r}")
    fields = {k: v for k, v in vars(a).items() if k not in ("seeds", "rows", "merge")}
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    try:
        return AblationSettings(**fields, seeds=seeds, rows=rows).resolved()
    except ConfigError as e:
        p.error(str(e))


def merge_main(argv, prog: str = "ddpm-ablations") -> int:
    """``--merge TABLE.json PART.json [PART.json ...]``: rewrites TABLE.json and its .md."""

    def work():
        if len(argv) < 2:
            raise UsageError(f"usage: {prog} --merge TABLE.json PART.json [PART.json ...]")
        paths = [Path(a) for a in argv]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise UsageError(f"no such file: {', '.join(missing)}")
        try:
            table = merge_tables(
                json.loads(paths[0].read_text()), [json.loads(p.read_text()) for p in paths[1:]]
            )
        except (ValueError, KeyError) as e:
            raise UsageError(str(e)) from None
        write_table(table, paths[0])
        print(
            f"wrote {paths[0]} and {paths[0].with_suffix('.md')}: {len(table['rows'])} rows, "
            f"complete={table['complete']}"
        )

    return run(work)


def main(argv=None, prog: str = "ddpm-ablations") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser(prog)
    a = p.parse_args(argv)
    if a.merge:
        return merge_main(a.merge, prog)
    settings = settings_from(p, a)
    recorded = [x for x in argv if x != "--resume"]  # the table is what the command without it makes
    command = prog + ("" if not recorded else " " + shlex.join(recorded))

    def work():
        old_threads = torch.get_num_threads()
        if settings.device in ("cpu", "auto"):
            torch.set_num_threads(settings.threads)
        try:
            run_table(settings, command)
        finally:
            torch.set_num_threads(old_threads)
        print(f"wrote {settings.out_path} and {settings.out_path.with_suffix('.md')}")

    return run(work)
