"""Train the shipped Fashion-MNIST U-Net on a GPU (from scratch, or on from the shipped weights), then sample
and evaluate it, in one run of one device session.

    PYTHONPATH=. python scripts/gpu_fashion_mnist.py --out OUTDIR [--init-from fashion-mnist-unet]
        [--train-seconds S | --steps N] [--data-root DIR] [--bpd-subset 1000] [--fcd-samples 2000]

Training is the Trainer with configs/fashion_mnist_gpu.toml, i.e. ``python -m ddpm_lib.train --config
configs/fashion_mnist_gpu.toml [--init-from SPEC] --steps N``; with --train-seconds it stops at the first
step past S seconds and records the step it reached, so that the window can be remade with --steps. With
``--init-from`` (a warm start, TrainConfig.init_from) the network and its EMA start from that model's
weights and the step count goes on from its step; Adam starts afresh with its warm-up.

Then, with the EMA weights, everything scripts/promote_unet.py needs to decide whether the new model
replaces the shipped one, on this machine: an EMA-only checkpoint (split into parts of --split-mb for the
device tool), a grid of 64 samples with all 1000 ancestral steps (seed 0), --fcd-samples samples of 1000
ancestral steps for the Frechet classifier distance (seed 1, stored as uint8; the FCD itself is computed
where the course's classifier is), and the whole bound in bits/dim (all 1000 terms, float32) on the first
--bpd-subset test images, for the new model and, with --init-from, for the model it started from, with the
same draws of x_t (seed 2), so that their difference is paired. results.json says what was done and when;
it is rewritten after each part, so a window cut short still returns what it finished.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm_lib import viz  # noqa: E402
from ddpm_lib.checkpoints import save_checkpoint, sha256_file  # noqa: E402
from ddpm_lib.data import to_uint8  # noqa: E402
from ddpm_lib.evaluate import bits_per_dim_on, load_test_split  # noqa: E402
from ddpm_lib.pretrained import is_pretrained_name, load_model, pretrained_path  # noqa: E402
from ddpm_lib.train import Trainer, load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRID_SEED, FCD_SEED, BPD_SEED = 0, 1, 2


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_gpu.toml"))
    ap.add_argument("--init-from", default="", help="a warm start: a checkpoint file or a registered name")
    ap.add_argument(
        "--train-seconds", type=float, default=0, help="stop at the first step past this many seconds"
    )
    ap.add_argument("--steps", type=int, default=0, help="the total step to train to (default: the config's)")
    ap.add_argument("--data-root", default="")
    ap.add_argument("--device", default="", help="default: the config's (auto: cuda when there is one)")
    ap.add_argument("--bpd-subset", type=int, default=1000, help="test images for bits/dim (0: none)")
    ap.add_argument(
        "--fcd-samples", type=int, default=2000, help="samples of 1000 steps for the FCD (0: none)"
    )
    ap.add_argument("--grid-n", type=int, default=64, help="samples in the grid (0: none)")
    ap.add_argument(
        "--eval-batch", type=int, default=1000, help="images per batch when sampling and for bits/dim"
    )
    ap.add_argument("--no-compile", action="store_true", help="train without torch.compile")
    ap.add_argument("--split-mb", type=float, default=0, help="split the checkpoint into parts of this size")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config)
    cfg.out_dir = ""
    for field, value in (
        ("data_root", args.data_root),
        ("device", args.device),
        ("init_from", args.init_from),
    ):
        if value:
            setattr(cfg, field, value)
    if args.steps:
        cfg.steps = args.steps
    if args.no_compile:
        cfg.compile = False
    config_path = Path(args.config).resolve()
    shown = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
    command = f"python -m ddpm_lib.train --config {shown}"
    command += f" --init-from {args.init_from}" if args.init_from else ""
    trainer = Trainer(cfg, command=command)
    dev = trainer.device
    results = {
        "argv": sys.argv if argv is None else ["scripts/gpu_fashion_mnist.py", *argv],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
        "init_from": args.init_from or None,
        "start_step": trainer.step_count,
        "seconds": {},
    }
    if args.init_from:  # which file the window started from: promote_unet.py checks it is the one shipped now
        init = pretrained_path(args.init_from) if is_pretrained_name(args.init_from) else Path(args.init_from)
        results["init_sha256"] = sha256_file(init)

    def dump():
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    t_start = time.time()
    stop = (lambda tr: time.time() - t_start > args.train_seconds) if args.train_seconds else None
    hist = trainer.run(callback=stop, progress=False)
    train_s = time.time() - t_start
    steps = trainer.step_count - results["start_step"]
    results.update(
        steps=trainer.step_count,
        steps_this_run=steps,
        train_seconds=round(train_s, 1),
        images_per_second=round(steps * cfg.batch_size / train_s, 1),
        final_loss_window=[round(x, 5) for x in hist.loss[-5:]],
    )
    results["seconds"]["train"] = round(train_s, 1)
    print(json.dumps(results), flush=True)
    dump()

    ema = trainer.ema.eval()
    conf = trainer.checkpoint_config()
    remake = f"{command} --steps {trainer.step_count}"
    conf["command"] = (
        f"{remake}  (made by: python scripts/gpu_fashion_mnist.py"
        + (f" --init-from {args.init_from}" if args.init_from else "")
        + (f" --train-seconds {args.train_seconds:g}" if args.train_seconds else "")
        + f" on {results['device']}, which reached step {trainer.step_count})"
    )
    conf["metrics"] = {"train_seconds": results["train_seconds"], "device": results["device"]}
    ckpt = save_checkpoint(out / "unet.safetensors", ema, config=conf, step=trainer.step_count)
    results["checkpoint"] = {"sha256": sha256_file(ckpt), "size": ckpt.stat().st_size, "remake": remake}
    if args.split_mb:  # the device tool returns files of at most 16 MiB: cat unet.part.* > unet.safetensors
        blob, chunk = ckpt.read_bytes(), max(1, int(args.split_mb * 2**20))
        parts = []
        for i in range(0, len(blob), chunk):
            part = out / f"unet.part.{i // chunk:02d}"
            part.write_bytes(blob[i : i + chunk])
            parts.append(part.name)
        ckpt.unlink()
        results["checkpoint"]["parts"] = parts
    dump()

    d = trainer.diffusion
    shape = tuple(trainer.data_shape)
    autocast = dev.type == "cuda" and cfg.bf16

    def samples(n: int, seed: int) -> torch.Tensor:
        """n samples of Algorithm 2 with all T steps (x_0 clipped to [-1, 1] in each step's mean), in batches."""
        g = torch.Generator().manual_seed(seed)
        xs = []
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            for i in range(0, n, args.eval_batch):
                b = min(args.eval_batch, n - i)
                xs.append(d.sample(ema, (b, *shape), generator=g, progress=False, clip_x0=True, device=dev))
        return torch.cat([x.float().cpu() for x in xs])

    if args.grid_n:
        t1 = time.time()
        grid = samples(args.grid_n, GRID_SEED)
        viz.save_image_grid(grid, out / "samples_1000steps.png", nrow=8)
        results["seconds"]["grid"] = round(time.time() - t1, 1)
        dump()
    if args.fcd_samples:
        t1 = time.time()
        xs = samples(args.fcd_samples, FCD_SEED)
        save_file(
            {"samples_uint8": to_uint8(xs.clamp(-1, 1))},
            out / "fcd_samples.safetensors",
            metadata={
                "n": str(args.fcd_samples),
                "seed": str(FCD_SEED),
                "steps": str(d.T),
                "clip_x0": "true",
            },
        )
        results["fcd_samples"] = {"n": args.fcd_samples, "seed": FCD_SEED, "steps": d.T}
        results["seconds"]["fcd_samples"] = round(time.time() - t1, 1)
        dump()
    if args.bpd_subset:
        x_test = load_test_split("fashion-mnist", args.bpd_subset)
        models = {"after": ema}
        if args.init_from:
            models["before"] = load_model(args.init_from, device=dev).model.eval()
        per_image, results["bpd"] = {}, {"n": len(x_test), "seed": BPD_SEED, "terms": d.T + 1}
        for which, model in models.items():
            t1 = time.time()
            with torch.no_grad():
                r = bits_per_dim_on(model, d, x_test, batch_size=args.eval_batch, seed=BPD_SEED, device=dev)
            per_image[which] = r["bpd"]
            results["bpd"][which] = {
                "mean": round(r["mean"], 4),
                "stderr": round(r["stderr"], 4),
                "L_T": round(r["L_T"], 6),
                "L_t_minus_1": round(r["L_t_minus_1"], 4),
                "L_0": round(r["L_0"], 4),
            }
            results["seconds"][f"bpd_{which}"] = round(time.time() - t1, 1)
            dump()
        if "before" in per_image:  # the same images and the same x_t draws: a paired difference
            diff = per_image["after"] - per_image["before"]
            results["bpd"]["after_minus_before"] = {
                "mean": round(float(diff.mean()), 4),
                "stderr": round(float(diff.std() / math.sqrt(len(diff))), 4) if len(diff) > 1 else None,
            }
        save_file({k: v.contiguous() for k, v in per_image.items()}, out / "bpd_per_image.safetensors")
    results["seconds"]["total"] = round(time.time() - t_start, 1)
    dump()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
