"""``ddpm-evaluate`` (``python -m ddpm_lib.evaluate``): bits/dim on the test split (the whole
variational bound) and the Fréchet classifier distance (FCD, NOT Inception FID) of a checkpoint, or,
for a model of 2-D points, the sliced Wasserstein distance of its samples to the data.

The library is :mod:`ddpm_lib.evaluate` (:func:`~ddpm_lib.evaluate.evaluate_checkpoint`, whose
module docstring says what each number is); this module only parses and reports.
"""

from __future__ import annotations

import shlex
import sys

from ..evaluate import FCD_NOTE, evaluate_checkpoint, write_json
from ..sample import METHODS
from . import OUTPUT_RULE, device_arg, make_parser, output_file, positive_int, run

__all__ = ["build_parser", "main"]

EXAMPLES = (
    "ddpm-evaluate fashion-mnist-unet --bpd --subset 8 --json runs/bpd.json",
    "ddpm-evaluate fashion-mnist-unet --fid-samples 128 --sample-method ddim --sample-steps 20",
    "ddpm-evaluate swiss-roll-mlp --points 4000",
)


def build_parser():
    ap = make_parser(
        "ddpm-evaluate",
        "Evaluate a trained diffusion model: bits/dim on the test split, and the "
        "Frechet classifier distance (FCD, NOT Inception FID) of generated samples; "
        "for 2-D points, the sliced Wasserstein distance of samples to the data.",
        EXAMPLES,
        module="ddpm_lib.evaluate",
    )
    ap.add_argument("checkpoint", help="a checkpoint .safetensors file or a registered pretrained name")
    ap.add_argument("--bpd", action="store_true", help="bits/dim on the test split (the whole bound)")
    ap.add_argument(
        "--subset",
        type=positive_int,
        default=None,
        help="the first N test images only (for speed; 1 <= N <= the split's size)",
    )
    ap.add_argument(
        "--fid-samples",
        type=int,
        default=0,
        help="generate N images and report the Frechet classifier distance (NOT Inception FID)",
    )
    ap.add_argument(
        "--points",
        type=positive_int,
        default=0,
        help="a model of 2-D points: generate N samples and report their sliced Wasserstein distance "
        "to fresh data, also as a ratio to that of fresh data (1 = as good as the data)",
    )
    ap.add_argument(
        "--sample-steps",
        type=positive_int,
        default=None,
        help="sampling steps for FCD and --points (default: all T)",
    )
    ap.add_argument(
        "--sample-method",
        choices=METHODS,
        default=None,
        help="sampler for FCD and --points (default: respaced with --sample-steps, else ancestral)",
    )
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", type=device_arg, default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ...")
    ap.add_argument("--no-ema", action="store_true", help="use the raw weights, not the EMA weights")
    ap.add_argument(
        "--json",
        default=None,
        help=f"write the results here (JSON; checked before evaluating: {OUTPUT_RULE})",
    )
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)

    def body():
        if args.json:
            output_file(args.json, "--json")  # now, not after the whole evaluation
        res = evaluate_checkpoint(
            args.checkpoint,
            bpd=args.bpd,
            subset=args.subset,
            fid_samples=args.fid_samples,
            points=args.points,
            sample_steps=args.sample_steps,
            sample_method=args.sample_method,
            seed=args.seed,
            device=args.device,
            batch_size=args.batch_size,
            use_ema=not args.no_ema,
            progress=not args.no_progress,
        )
        res["command"] = "python -m ddpm_lib.evaluate " + shlex.join(argv)  # what measured it
        print(f"{res['checkpoint']} (T = {res['T']}, data {res['dataset']})")
        if "bpd" in res:
            b = res["bpd"]
            print(f"bits/dim on {b['n']} test images: {b['mean']:.4f} +- {b['stderr']:.4f} (standard error)")
            print(f"  L_T {b['L_T']:.4f} + sum L_(t-1) {b['L_t_minus_1']:.4f} + L_0 {b['L_0']:.4f}")
        if "fcd" in res:
            f = res["fcd"]
            print(
                f"FCD ({f['n_generated']} samples, {f['sampler']['method']} {f['sampler']['steps']} steps, "
                f"vs {f['n_reference']} test images): {f['value']:.4f}"
            )
            print(f"  NOTE: {FCD_NOTE}")
        if "points" in res:
            q = res["points"]
            print(
                f"{q['n']} samples ({q['sampler']['method']}, {q['sampler']['steps']} steps): sliced W1 to the data "
                f"{q['sliced_w1_samples']:.4f}, {q['w1_ratio']:.2f}x that of {q['n']} fresh data points "
                f"({q['sliced_w1_data']:.4f}); N(0, I) noise {q['sliced_w1_noise']:.4f}"
            )
            print(f"  MMD^2: samples {q['mmd2_samples']:.4f}, noise {q['mmd2_noise']:.4f}")
        if args.json:
            print(f"wrote {write_json(res, args.json)}")

    return run(body)


if __name__ == "__main__":
    sys.exit(main())
