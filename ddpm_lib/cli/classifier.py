"""``ddpm-classifier`` (``python -m ddpm_lib.classifier``): train the Fashion-MNIST classifier whose
features the Fréchet classifier distance uses, or measure a classifier's test accuracy.

The library is :mod:`ddpm_lib.classifier`; this module only parses and reports. The command a
checkpoint records is written as ``python -m ddpm_lib.classifier ...``, which works wherever the
library is importable.
"""

from __future__ import annotations

import shlex
import sys

import torch

from ..classifier import (
    AUGMENTATIONS,
    DEFAULT_CLASSIFIER,
    accuracy,
    load_classifier,
    make_classifier_checkpoint,
)
from ..data import fashion_mnist
from . import OUTPUT_RULE, UsageError, add_command, add_commands, make_parser, output_file, positive_int, run

__all__ = ["build_parser", "main"]

EXAMPLES = (
    "ddpm-classifier eval --n 2000",
    "ddpm-classifier train --out runs/classifier.safetensors --epochs 1 --train-limit 5000  # needs the full "
    "training split (downloaded when missing)",
)


def build_parser():
    p = make_parser(
        "ddpm-classifier",
        "Train or evaluate the Fashion-MNIST classifier whose features the Frechet "
        "classifier distance (FCD) uses.",
        EXAMPLES,
        module="ddpm_lib.classifier",
    )
    sub = add_commands(p)
    tr = add_command(
        sub, "train", "train on the full Fashion-MNIST training split and save a checkpoint", EXAMPLES[1:]
    )
    tr.add_argument(
        "--out",
        default="runs/classifier.safetensors",
        help=f"the .safetensors checkpoint to write (default: runs/classifier.safetensors; {OUTPUT_RULE})",
    )
    tr.add_argument("--epochs", type=positive_int, default=6)
    tr.add_argument("--batch-size", type=positive_int, default=256)
    tr.add_argument("--lr", type=float, default=4e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument(
        "--threads", type=positive_int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    tr.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="flip",
        help="flip: random horizontal flips (default); flip-shift: and shifts by up to 2 px; none",
    )
    tr.add_argument(
        "--train-limit",
        type=positive_int,
        default=None,
        help="train on the first N images only (for quick tries)",
    )
    ev = add_command(
        sub,
        "eval",
        "accuracy of a classifier on the Fashion-MNIST test split",
        [EXAMPLES[0], "ddpm-classifier eval runs/classifier.safetensors"],
    )
    ev.add_argument(
        "model", nargs="?", default=DEFAULT_CLASSIFIER, help="a pretrained name or a checkpoint path"
    )
    ev.add_argument(
        "--n", type=positive_int, default=None, help="the first N test images (default: all 10,000)"
    )
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def evaluate():
        try:
            model = load_classifier(args.model)
        except TypeError as e:  # a checkpoint of another model
            raise UsageError(str(e)) from None
        x, y = fashion_mnist("test")
        if args.n:
            x, y = x[: args.n], y[: args.n]
        print(f"test accuracy on {len(y)} images: {accuracy(model, x, y):.4f}")

    def train():
        output_file(args.out, "--out")  # now, not after the training
        if args.threads:
            torch.set_num_threads(args.threads)
        path, config = make_classifier_checkpoint(
            args.out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            augment=args.augment,
            train_limit=args.train_limit,
            command="python -m ddpm_lib.classifier " + shlex.join(argv),
        )
        m = config["metrics"]
        print(
            f"test accuracy {m['test_accuracy']:.4f} on {m['test_examples']} test images; trained in "
            f"{m['train_seconds']:.0f} s ({m['train_cpu_seconds']:.0f} s of CPU); {m['parameters']} parameters; "
            f"wrote {path} ({path.stat().st_size} bytes)"
        )

    return run(evaluate if args.cmd == "eval" else train)


if __name__ == "__main__":
    sys.exit(main())
