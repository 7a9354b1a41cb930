"""After a GPU window: decide whether the U-Net it trained replaces the shipped one, and if so install it.

    python scripts/promote_unet.py DIR [--name fashion-mnist-unet] [--dry-run]

DIR holds what scripts/gpu_fashion_mnist.py --init-from NAME wrote (unpacked from the device's bundle.tgz, with
the checkpoint's parts beside it): results.json, unet.part.* (or unet.safetensors), fcd_samples.safetensors,
samples_1000steps.png. The checks, in order, each refusing with what is wrong:

1. the parts put together are the file the GPU wrote (its sha256 in results.json), a checkpoint whose own
   checksum holds, of the registered model's class, diffusion and data;
2. the window started from the model registered under NAME now (init_sha256), so its "before" is this model;
3. the figures, each compared at equal settings: bits/dim (the whole bound, all 1000 terms) on the same test
   images with the same draws of x_t, before and after (a paired difference, measured on the GPU), and the
   Frechet classifier distance of the new samples (1000 ancestral steps, seed 1, computed here) against the
   registered model's FCD at the same number of samples, with the floor of two halves of the test split.

The new model replaces the shipped one only if both figures improve. Then the checkpoint, its sidecar and the
64-sample grid are installed, and the registry entry records the windows (steps, GPU seconds, device, the
command of each), the cumulative GPU time, steps and epochs, and the new figures. promotion.json in DIR
says what was decided and why, whatever was decided. Afterwards: bash scripts/make_trajectory.sh, and
re-execute the chapters that load the model (printed at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddpm_lib.checkpoints import CheckpointError, load_checkpoint, sha256_file  # noqa: E402
from ddpm_lib.data import data_dir, read_registry  # noqa: E402
from ddpm_lib.evaluate import FCD_NOTE, fcd, fcd_floor  # noqa: E402
from ddpm_lib.pretrained import REGISTRY_KEY, TRAIN_SET_SIZES, register_file, register_pretrained  # noqa: E402
from ddpm_lib.utils import atomic_write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRID_NAME = "fashion_mnist_unet_samples_1000steps.png"
TRAIN_COMMAND = "python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml"


class PromotionError(ValueError):
    """The window's output cannot be judged or installed; the message says what is wrong."""


def assemble(d: Path, results: dict) -> Path:
    """The checkpoint the GPU wrote, put together from its parts, checked against its sha256."""
    info = results.get("checkpoint")
    if not isinstance(info, dict) or "sha256" not in info:
        raise PromotionError(
            f"{d}/results.json records no checkpoint: the window stopped before it saved one"
        )
    path = d / "unet.safetensors"
    parts = info.get("parts") or []
    if parts:
        missing = [p for p in parts if not (d / p).is_file()]
        if missing:
            raise PromotionError(f"{d} lacks the checkpoint's parts {', '.join(missing)}")
        h, tmp = hashlib.sha256(), path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for p in parts:
                blob = (d / p).read_bytes()
                h.update(blob)
                f.write(blob)
        if h.hexdigest() != info["sha256"]:
            tmp.unlink()
            raise PromotionError(
                f"the parts {', '.join(parts)} put together have sha256 {h.hexdigest()}, not the {info['sha256']} "
                f"the GPU wrote: a part is corrupt or truncated"
            )
        tmp.replace(path)
    elif not path.is_file() or sha256_file(path) != info["sha256"]:
        raise PromotionError(f"{path} is missing or is not the file the GPU wrote (sha256 {info['sha256']})")
    return path


def decide(bpd: dict, fcd_new: float, fcd_old: float) -> dict:
    """Both figures must improve: bits/dim after < before (paired), FCD new < old (equal n). Returns the verdict."""
    bpd_better = bpd["after"]["mean"] < bpd["before"]["mean"]
    fcd_better = fcd_new < fcd_old
    reasons = [
        f"bits/dim {bpd['before']['mean']:.4f} -> {bpd['after']['mean']:.4f} "
        f"({'better' if bpd_better else 'not better'})",
        f"FCD {fcd_old:.2f} -> {fcd_new:.2f} ({'better' if fcd_better else 'not better'})",
    ]
    return {
        "promote": bpd_better and fcd_better,
        "bpd_better": bpd_better,
        "fcd_better": fcd_better,
        "why": reasons,
    }


def judge(d: Path, name: str) -> tuple[dict, Path, dict]:
    """(verdict with every figure, the assembled checkpoint, the registry entry now)."""
    try:
        results = json.loads((d / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PromotionError(f"{d}/results.json cannot be read: {e}") from None
    entry = read_registry().get(REGISTRY_KEY, {}).get(name)
    if entry is None:
        raise PromotionError(f"{name!r} is not a registered model")
    ckpt_path = assemble(d, results)
    try:
        ckpt = load_checkpoint(ckpt_path)  # checks the header and the checksum stored inside
    except CheckpointError as e:
        raise PromotionError(f"the new checkpoint does not load: {e}") from None
    shipped = load_checkpoint(data_dir() / entry["path"])
    for key in ("model_class", "model_args", "diffusion", "data"):
        if ckpt.config.get(key) != shipped.config.get(key):
            raise PromotionError(
                f"the new checkpoint's {key} differs from {name}'s: it is not the same model"
            )
    if results.get("init_sha256") != entry["sha256"]:
        raise PromotionError(
            f"the window started from the file with sha256 {results.get('init_sha256')}, but {name} is now "
            f"{entry['sha256']}: its 'before' figures are not this model's (run the window again from {name})"
        )
    bpd = results.get("bpd") or {}
    if "before" not in bpd or "after" not in bpd:
        raise PromotionError(
            "results.json holds no bits/dim before and after: the window stopped before them"
        )
    old_fcd = (entry.get("metrics") or {}).get("fcd") or {}
    samples_path = d / "fcd_samples.safetensors"
    if not samples_path.is_file():
        raise PromotionError(f"{samples_path} is missing: the window stopped before its FCD samples")
    x = load_file(samples_path)["samples_uint8"]
    n = len(x)
    if old_fcd.get("n_generated") != n:
        raise PromotionError(
            f"{name}'s FCD was measured on {old_fcd.get('n_generated')} samples, these are {n}: FCD depends on n, so "
            f"run the window with --fcd-samples {old_fcd.get('n_generated')}"
        )
    images = x.float() / 127.5 - 1.0
    figures = {"value": round(fcd(images), 2), "first_128_samples": round(fcd(images[:128]), 2)}
    if n <= 5000:
        figures[f"test_split_halves_{n}"] = round(fcd_floor(n), 2)
    verdict = decide(bpd, figures["value"], float(old_fcd["value"]))
    verdict.update(
        name=name,
        old_sha256=entry["sha256"],
        new_sha256=results["checkpoint"]["sha256"],
        step=results.get("steps"),
        bpd=bpd,
        fcd={"new": figures, "old": old_fcd.get("value"), "n": n},
        results=results,
    )
    return verdict, ckpt_path, entry


def window_command(k: int, steps: int) -> str:
    """The plain command that remakes training window ``k`` (1, 2, ...), which ended at ``steps``: the
    first from random weights, each later one warm-started from the run directory of the one before."""
    init = f" --init-from runs/fashion-mnist-gpu-w{k - 1}/latest.safetensors" if k > 1 else ""
    return f"{TRAIN_COMMAND}{init} --steps {steps} --out-dir runs/fashion-mnist-gpu-w{k}"


def install(d: Path, name: str, verdict: dict, ckpt_path: Path, entry: dict) -> dict:
    """Put the new checkpoint, its sidecar and grid in place, and record it in the registry."""
    results = verdict["results"]
    metrics = dict(entry.get("metrics") or {})
    windows = list(metrics.get("windows") or [])
    if not windows:  # the first window, as the entry records it
        windows.append(
            {
                "steps": [0, int(entry["step"])],
                "train_seconds": metrics.get("train_seconds"),
                "device": metrics.get("device"),
                "command": window_command(1, int(entry["step"])),
            }
        )
    windows.append(
        {
            "steps": [results["start_step"], results["steps"]],
            "train_seconds": results["train_seconds"],
            "device": results["device"],
            "command": window_command(len(windows) + 1, int(results["steps"])),
            "started_from_sha256": results["init_sha256"],
        }
    )
    gpu_seconds = round(sum(w["train_seconds"] or 0 for w in windows), 1)
    steps = int(results["steps"])
    batch = int(metrics.get("batch_size") or 256)
    bpd_after = verdict["bpd"]["after"]
    metrics.update(
        train_seconds=gpu_seconds,
        train_seconds_gpu=gpu_seconds,
        train_steps=steps,
        epochs=round(steps * batch / TRAIN_SET_SIZES["fashion-mnist"], 2),
        windows=windows,
        fcd={
            "value": verdict["fcd"]["new"]["value"],
            "n_generated": verdict["fcd"]["n"],
            "sampler": "ancestral, all 1000 steps, seed 1, clip_x0 (scripts/gpu_fashion_mnist.py)",
            "reference": "the 10,000 test images",
            **{k: v for k, v in verdict["fcd"]["new"].items() if k != "value"},
            "previous_model": verdict["fcd"]["old"],
            "computed_by": "scripts/promote_unet.py: ddpm_lib.evaluate.fcd on the stored uint8 samples",
            "note": FCD_NOTE,
        },
        bits_per_dim_test={
            "mean": bpd_after["mean"],
            "stderr": bpd_after["stderr"],
            "n_images": verdict["bpd"]["n"],
            "L_T": bpd_after["L_T"],
            "sum_L_t_minus_1": bpd_after["L_t_minus_1"],
            "L_0": bpd_after["L_0"],
            "split": f"test (the first {verdict['bpd']['n']} images)",
            "seed": verdict["bpd"]["seed"],
            "terms": "all 1000 (the whole bound, one draw of x_t per term)",
            "previous_model": verdict["bpd"]["before"]["mean"],
            "change_paired": verdict["bpd"].get("after_minus_before"),
            "evaluated_by": f"scripts/gpu_fashion_mnist.py on {results['device']} (float32)",
        },
    )
    metrics["sample_grid"] = (
        f"data/checkpoints/{GRID_NAME} (64 samples, all 1000 ancestral steps, seed 0; scripts/gpu_fashion_mnist.py)"
    )
    target = data_dir() / entry["path"]
    atomic_write(target, lambda tmp: shutil.copyfile(ckpt_path, tmp))
    ckpt = load_checkpoint(target)
    sidecar = json.dumps(ckpt.config, indent=2, sort_keys=True) + "\n"
    atomic_write(target.with_suffix(".json"), lambda tmp: Path(tmp).write_text(sidecar, encoding="utf-8"))
    command = (
        f"{len(windows)} GPU windows of scripts/gpu_fashion_mnist.py (scripts/gpu_session.sh), each the Trainer with "
        f"configs/fashion_mnist_gpu.toml, each later one warm-started from the EMA weights of the one before "
        f"(metrics.windows holds the command of each, e.g. {windows[-1]['command']}); then "
        f"python scripts/promote_unet.py OUT"
    )
    description = (
        f"DDPM U-Net UNet.fashion_mnist('base') (6,469,889 parameters) on the full Fashion-MNIST training split: "
        f"linear schedule 1e-4..0.02, T = 1000, eps prediction, L_simple, sigma_t^2 = beta_t, Adam 2e-4 with 1000 "
        f"warm-up steps (again at each warm start), batch 256, bf16 and torch.compile on CUDA; {steps} steps "
        f"({metrics['epochs']} epochs) in {len(windows)} windows, {gpu_seconds:.0f} s on GPUs. EMA weights "
        f"(decay 0.9995). Not converged."
    )
    new = register_pretrained(name, target, command=command, description=description, metrics=metrics)
    grid = d / "samples_1000steps.png"
    if grid.is_file():
        dest = data_dir() / "checkpoints" / GRID_NAME
        atomic_write(dest, lambda tmp: shutil.copyfile(grid, tmp))
        register_file(
            dest,
            description=f"64 samples of the shipped {name} as an 8 x 8 PNG grid: Algorithm 2 with all 1000 "
            f"steps, seed 0, x_0 clipped",
            source="python scripts/gpu_fashion_mnist.py --init-from ... (after training), installed by "
            "scripts/promote_unet.py",
            licence="MIT, Zalando Research (made from a model trained on Fashion-MNIST)",
        )
    return new


def chapters_that_load(name: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "chapters").glob("*.py") if name in p.read_text(encoding="utf-8"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="the unpacked output of scripts/gpu_fashion_mnist.py")
    ap.add_argument("--name", default="fashion-mnist-unet", help="the registered model it may replace")
    ap.add_argument("--dry-run", action="store_true", help="judge and write promotion.json; install nothing")
    args = ap.parse_args(argv)
    d = Path(args.dir)
    try:
        verdict, ckpt_path, entry = judge(d, args.name)
    except PromotionError as e:
        print(f"promote_unet: {e}", file=sys.stderr)
        return 2
    report = {k: v for k, v in verdict.items() if k != "results"}
    (d / "promotion.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("; ".join(verdict["why"]))
    if not verdict["promote"]:
        print(f"kept the shipped {args.name}: both figures must improve")
        return 0
    if args.dry_run:
        print(f"would replace {args.name} (--dry-run: nothing installed)")
        return 0
    new = install(d, args.name, verdict, ckpt_path, entry)
    print(f"replaced {args.name}: step {new['step']}, sha256 {new['sha256']}")
    print("next: bash scripts/make_trajectory.sh; re-execute " + " ".join(chapters_that_load(args.name)))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    raise SystemExit(main())
