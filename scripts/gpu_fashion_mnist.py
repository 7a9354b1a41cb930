"""Train the shipped Fashion-MNIST U-Net on a GPU, then sample and evaluate it, in one run.

    PYTHONPATH=. python scripts/gpu_fashion_mnist.py --out OUTDIR [--train-seconds S | --steps N]
        [--data-root DIR] [--bpd-subset 1000] [--fcd-samples 2000]

Training is exactly `python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --steps N`
(the Trainer with that config); with --train-seconds it stops at the first step past S seconds
and records the step it reached, so the run can be remade with --steps. Then, with the EMA
weights: an EMA-only checkpoint, a grid of 64 samples with all 1000 ancestral steps, a stored
trajectory (x_t and predicted x_0 every 100 steps for 16 samples), N samples (uint8) for the
Fréchet classifier distance, and the whole bound in bits/dim on the first images of the test split.
"""

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
from ddpm_lib.checkpoints import save_checkpoint  # noqa: E402
from ddpm_lib.data import fashion_mnist, to_uint8  # noqa: E402
from ddpm_lib.train import Trainer, load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_gpu.toml"))
    ap.add_argument("--train-seconds", type=float, default=0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--data-root", default="")
    ap.add_argument("--bpd-subset", type=int, default=1000)
    ap.add_argument("--fcd-samples", type=int, default=2000)
    ap.add_argument("--no-compile", action="store_true", help="train without torch.compile")
    ap.add_argument("--split-mb", type=float, default=0, help="split the checkpoint into parts of this size")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "argv": sys.argv,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }

    def dump():
        (out / "results.json").write_text(json.dumps(results, indent=2))

    cfg = load_config(args.config)
    cfg.out_dir = ""
    if args.data_root:
        cfg.data_root = args.data_root
    if args.steps:
        cfg.steps = args.steps
    if args.no_compile:
        cfg.compile = False
    trainer = Trainer(cfg, command="python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml")
    t0 = time.time()
    stop = (lambda tr: time.time() - t0 > args.train_seconds) if args.train_seconds else None
    hist = trainer.run(callback=stop, progress=False)
    train_s = time.time() - t0
    results.update(
        steps=trainer.step_count,
        train_seconds=round(train_s, 1),
        images_per_second=round(trainer.step_count * cfg.batch_size / train_s, 1),
        final_loss_window=[round(x, 5) for x in hist.loss[-5:]],
    )
    print(json.dumps(results), flush=True)
    dump()

    ema = trainer.ema.eval()
    conf = trainer.checkpoint_config()
    conf["command"] = (
        f"python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --steps {trainer.step_count}"
        f"  (made by: python scripts/gpu_fashion_mnist.py --train-seconds {args.train_seconds:g} on "
        f"{results['device']}, which reached step {trainer.step_count})"
    )
    conf["metrics"] = {"train_seconds": results["train_seconds"], "device": results["device"]}
    ckpt = save_checkpoint(out / "unet.safetensors", ema, config=conf, step=trainer.step_count)
    if args.split_mb:  # the device tool returns files of at most 16 MiB: cat unet.part.* > unet.safetensors
        blob, chunk = ckpt.read_bytes(), int(args.split_mb * 2**20)
        for i in range(0, len(blob), chunk):
            (out / f"unet.part.{i // chunk:02d}").write_bytes(blob[i : i + chunk])
        ckpt.unlink()

    d = trainer.diffusion
    dev = trainer.device
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        t1 = time.time()
        g = torch.Generator().manual_seed(0)
        x, traj = d.sample(
            ema,
            (64, 1, 28, 28),
            generator=g,
            progress=False,
            clip_x0=True,
            device=dev,
            record=list(range(cfg.T, -1, -max(1, cfg.T // 10))),
        )
        results["sample64_seconds"] = round(time.time() - t1, 1)
        viz.save_image_grid(x.float().cpu(), out / "samples_1000steps.png", nrow=8)
        tt = traj.to_tensors()
        save_file(
            {
                "ts": tt["ts"],
                "timesteps": tt["timesteps"],
                "x_t": tt["x_t"][:, :16].float().contiguous(),
                "pred_x0": tt["pred_x0"][:, :16].float().contiguous(),
                "samples": x.float().cpu(),
            },
            out / "trajectory.safetensors",
            metadata={"command": "scripts/gpu_fashion_mnist.py", "seed": "0"},
        )
        dump()
        if args.fcd_samples:
            t1 = time.time()
            g = torch.Generator().manual_seed(1)
            xs = d.sample(
                ema, (args.fcd_samples, 1, 28, 28), generator=g, progress=False, clip_x0=True, device=dev
            )
            results["fcd_sample_seconds"] = round(time.time() - t1, 1)
            save_file(
                {"samples_uint8": to_uint8(xs.float().clamp(-1, 1).cpu())},
                out / "fcd_samples.safetensors",
                metadata={"n": str(args.fcd_samples), "seed": "1", "steps": "1000"},
            )
            dump()
    if args.bpd_subset:
        t1 = time.time()
        x_test, _ = fashion_mnist("test")
        x_test = x_test[: args.bpd_subset].to(dev)
        with torch.no_grad():
            terms = d.vlb_terms(
                ema,
                x_test,
                generator=torch.Generator(device=dev).manual_seed(2)
                if dev.type == "cuda"
                else torch.Generator().manual_seed(2),
            )
        D = 28 * 28 * math.log(2)
        bpd = terms.sum(1) / D
        results["bpd"] = {
            "n": int(x_test.shape[0]),
            "mean": round(float(bpd.mean()), 4),
            "sem": round(float(bpd.std() / math.sqrt(len(bpd))), 4),
            "L_T": round(float(terms[:, -1].mean() / D), 5),
            "L_t_minus_1": round(float(terms[:, 1:-1].sum(1).mean() / D), 4),
            "L_0": round(float(terms[:, 0].mean() / D), 4),
            "seconds": round(time.time() - t1, 1),
        }
        save_file({"vlb_terms_nats": terms.cpu()}, out / "bpd_terms.safetensors")
    results["total_seconds"] = round(time.time() - t0, 1)
    dump()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
