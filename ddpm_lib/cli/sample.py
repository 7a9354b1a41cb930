"""``ddpm-sample`` (``python -m ddpm_lib.sample``): draw samples from a checkpoint or a shipped model
and write a PNG grid (a scatter plot for 2-D data), optionally the trajectory and the raw samples.

The library is :func:`ddpm_lib.sample.sample_from_checkpoint`; this module only parses and reports.
"""

from __future__ import annotations

import sys

from ..sample import DEFAULT_STEPS, METHODS, sample_from_checkpoint
from . import (
    OUTPUT_RULE,
    device_arg,
    int_list,
    make_parser,
    nonnegative_float,
    output_file,
    positive_int,
    run,
)

__all__ = ["build_parser", "main"]

EXAMPLES = (
    "ddpm-sample fashion-mnist-unet --n 16 --method ddim --steps 50 --out runs/ddim.png",
    "ddpm-sample swiss-roll-mlp --n 2000 --out runs/swiss_roll.png",
    "ddpm-sample fashion-mnist-unet --n 4 --method ddim --steps 50 --out runs/four.png "
    "--trajectory runs/four_trajectory.safetensors",
)


def build_parser():
    p = make_parser(
        "ddpm-sample",
        "Sample from a trained checkpoint: ancestral (Algorithm 2, all T steps), "
        "respaced, or DDIM; write a PNG grid (a scatter plot for 2-D data).",
        EXAMPLES,
        module="ddpm_lib.sample",
    )
    p.add_argument(
        "checkpoint",
        help="a checkpoint .safetensors file or a registered pretrained name (ddpm-pretrained list)",
    )
    p.add_argument("--n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument(
        "--out",
        default="runs/samples.png",
        help="PNG to write: an image grid, or a scatter plot for 2-D data (default: runs/samples.png). "
        f"For every output file: {OUTPUT_RULE}",
    )
    p.add_argument("--method", choices=METHODS, default="ancestral")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"sampling steps (ancestral: T; default respaced {DEFAULT_STEPS['respaced']}, "
        f"ddim {DEFAULT_STEPS['ddim']}, at most T)",
    )
    p.add_argument(
        "--eta",
        type=nonnegative_float,
        default=0.0,
        help="DDIM's eta, a finite number >= 0 (0: deterministic, 1: DDPM-like)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", action="store_true", help="clip the predicted x_0 to [-1, 1] at every step")
    p.add_argument(
        "--trajectory", default=None, help="write x_t and predicted x_0 at --record timesteps (safetensors)"
    )
    p.add_argument(
        "--record",
        type=int_list,
        default=None,
        help="original timesteps to record, e.g. 1000,750,500,250,0 (default: T, 3T/4, T/2, T/4, 0)",
    )
    p.add_argument(
        "--save-samples", default=None, help="write the raw samples (safetensors, tensor 'samples')"
    )
    p.add_argument(
        "--device", type=device_arg, default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, ..."
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="sample in batches of this size (default: all at once)",
    )
    p.add_argument("--nrow", type=positive_int, default=None, help="images per row of the grid")
    p.add_argument(
        "--scale",
        type=positive_int,
        default=1,
        help="enlarge the image grid N times (each pixel repeated; 4 makes 28x28 images 112x112)",
    )
    p.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA weights")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        for option, path in (
            ("--out", args.out),
            ("--trajectory", args.trajectory),
            ("--save-samples", args.save_samples),
        ):
            if path is not None:
                output_file(path, option)
        res = sample_from_checkpoint(
            args.checkpoint,
            args.n,
            method=args.method,
            steps=args.steps,
            eta=args.eta,
            seed=args.seed,
            clip=args.clip,
            record=args.record,
            device=args.device,
            batch_size=args.batch_size,
            use_ema=not args.no_ema,
            out=args.out,
            trajectory=args.trajectory,
            save_samples=args.save_samples,
            nrow=args.nrow,
            scale=args.scale,
            progress=not args.no_progress,
        )
        i = res.info
        print(
            f"{i['n']} samples from {i['checkpoint']} ({i['method']}, {i['steps']} steps, seed {i['seed']}, "
            f"{i['device']}) in {i['seconds']:.1f} s"
        )
        for what, path in res.files.items():
            print(f"  {what}: {path}")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
