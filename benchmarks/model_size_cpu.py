"""Which Fashion-MNIST U-Net preset learns fastest per CPU-second?

Trains each preset with the library's Trainer (the shipped run's objective and optimizer:
configs/fashion_mnist.toml, full training split) for the same CPU time of this process
(time.process_time, which other jobs on the machine do not enter), then scores the raw weights
by L_simple on 512 test images with fixed t and noise (lower is better).

    python benchmarks/model_size_cpu.py [--cpu-seconds 180] [--presets tiny small base] [--threads 2]

Writes benchmarks/model_size_cpu.json and prints a table.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm_lib.data import fashion_mnist  # noqa: E402
from ddpm_lib.nets import count_parameters  # noqa: E402
from ddpm_lib.train import Trainer, load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def held_out_loss(trainer, x, t, noise):
    trainer.model.eval()
    out = torch.stack(
        [
            trainer.diffusion.training_loss(trainer.model, x[i : i + 128], t[i : i + 128], noise[i : i + 128])
            for i in range(0, len(x), 128)
        ]
    ).mean()
    trainer.model.train()
    return float(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-seconds", type=float, default=180)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "model_size_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = fashion_mnist("test")
    g = torch.Generator().manual_seed(0)
    x = x[:512]
    t = torch.randint(1, 1001, (512,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    rows = []
    for preset in args.presets:
        cfg = load_config(ROOT / "configs" / "fashion_mnist.toml")
        cfg.model, cfg.out_dir, cfg.batch_size, cfg.device = (
            f"unet-fmnist-{preset}",
            "",
            args.batch_size,
            "cpu",
        )
        cfg.warmup_steps = 100
        tr = Trainer(cfg)
        c0, w0 = time.process_time(), time.time()
        checkpoints, eval_cpu = [], 0.0  # CPU time spent scoring is not training time
        next_eval = args.cpu_seconds / 3
        while time.process_time() - c0 - eval_cpu < args.cpu_seconds:
            tr.step()
            used = time.process_time() - c0 - eval_cpu
            if used >= next_eval:
                e0 = time.process_time()
                checkpoints.append(
                    {
                        "cpu_s": round(used, 1),
                        "steps": tr.step_count,
                        "held_out_loss": round(held_out_loss(tr, x, t, noise), 4),
                    }
                )
                eval_cpu += time.process_time() - e0
                next_eval += args.cpu_seconds / 3
        row = {
            "preset": preset,
            "parameters": count_parameters(tr.model),
            "steps": tr.step_count,
            "cpu_seconds": round(time.process_time() - c0 - eval_cpu, 1),
            "wall_seconds": round(time.time() - w0, 1),
            "images_per_cpu_second": round(
                tr.step_count * args.batch_size / (time.process_time() - c0 - eval_cpu), 2
            ),
            "held_out_loss": round(held_out_loss(tr, x, t, noise), 4),
            "curve": checkpoints,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    best = min(rows, key=lambda r: r["held_out_loss"])
    result = {
        "command": "python benchmarks/model_size_cpu.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "cpu_seconds_each": args.cpu_seconds,
        "rows": rows,
        "fastest_learner": best["preset"],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'preset':<7}{'params':>11}{'steps':>7}{'img/cpu-s':>11}{'held-out L_simple':>19}")
    for r in rows:
        print(
            f"{r['preset']:<7}{r['parameters']:>11,}{r['steps']:>7}{r['images_per_cpu_second']:>11.2f}{r['held_out_loss']:>19.4f}"
        )
    print(f"fastest learner per CPU-second at {args.cpu_seconds:g} s: {best['preset']}")


if __name__ == "__main__":
    main()
