"""GPU throughput of the DDPM CIFAR-10 network (UNet.ddpm_cifar10(), 35,746,307 parameters) against
the paper's TPU v3-8 figures.

Ho et al. 2020 (arXiv:2006.11239), Appendix B: "Our CIFAR10 model trains at 21 steps per second at
batch size 128 (10.6 hours to train to completion at 800k steps), and sampling a batch of 256
images takes 17 seconds" (TPU v3-8; also in shared/TOOLING-NOTES.md). So the references are
21 steps/s = 2,688 images/s for training at batch 128, and 1000 steps x 256 images / 17 s =
15,059 images/s for sampling steps at batch 256.

Measured here (median over several timed windows, each bracketed by torch.cuda.synchronize(),
after untimed warm-up steps that include any torch.compile compilation):

* train: one full DDPM training step at batch 128, 32x32x3: GaussianDiffusion(linear, T=1000)
  L_simple loss via ``training_loss`` (t ~ U{1..T}, eps ~ N(0, I) drawn on the GPU each step),
  backward, gradient clipping at norm 1, Adam lr 2e-4, EMA update (decay 0.9999) of a copy of the
  weights; bf16 autocast (default) or float32. Data are random tensors in [-1, 1] already on the
  GPU: this measures the model, not a data loader.
* Trainer.step: the same step as the library ships it, ``ddpm_lib.train.Trainer`` built from
  configs/cifar10.toml (``make_trainer_step``): the figure a user of ``ddpm-train`` gets. Random
  8-bit images stand in for CIFAR-10, so no archive is needed. Timed first, eager, and compiled
  with ``--compile``.
* sample: one step of ancestral sampling (Algorithm 2): the network's forward pass under
  torch.no_grad() in eval mode (bf16 autocast) + ``GaussianDiffusion.p_sample``, at batch 128 and 256.

Variants: eager in channels_last and in NCHW memory format (``UNet.channels_last``), and with
``--compile`` torch.compile(model) (default mode, static shapes). ``--inline-loss`` also times the
same L_simple computed inline without the library's input checks (which read t.min()/x0.min() on
the host each step, i.e. synchronize), to show what those syncs cost.

Needs ddpm_lib installed (``pip install -e .``) or on the path. Run from the repository root:

    PYTHONPATH=. python benchmarks/bench_cifar10_gpu.py --compile --inline-loss --max-seconds 240
    PYTHONPATH=. python benchmarks/bench_cifar10_gpu.py --device cpu --quick        # smoke test, no GPU
    python benchmarks/bench_cifar10_gpu.py --write-results path/to/results_gpu.json # -> RESULTS.md

Prints one JSON line (prefixed "RESULT_JSON ") and writes $OUT/results_gpu.json when OUT is set,
else benchmarks/results_gpu.json (--out overrides).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

PAPER = dict(
    source="Ho, Jain & Abbeel 2020, Denoising Diffusion Probabilistic Models (arXiv:2006.11239), Appendix B; "
    "shared/TOOLING-NOTES.md",
    hardware="TPU v3-8",
    train_steps_per_s=21.0,
    train_batch=128,
    train_images_per_s=21.0 * 128,
    sample_batch=256,
    sample_seconds_for_1000_steps=17.0,
    sample_images_per_s=1000 * 256 / 17.0,
)
TARGET_FACTOR = 2.0  # the project's target: twice the paper's training rate
# dense bf16 peaks (NVIDIA's data sheets, without sparsity), for the model FLOPs utilisation (MFU)
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "A100": 312.0}


def peak_tflops(gpu_name: str | None) -> float | None:
    """The data-sheet dense bf16 peak of a GPU by name (None when not in PEAK_BF16_TFLOPS)."""
    name = gpu_name or ""
    if "H100" in name:
        return PEAK_BF16_TFLOPS["H100 PCIe" if "PCIe" in name else "H100 SXM"]
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def train_flops_per_image(build, shape=(3, 32, 32)) -> float:
    """FLOPs of one image's forward and backward pass through the network (matrix products and
    convolutions, as torch.utils.flop_counter counts them; elementwise work is not counted, as usual
    for MFU), measured on the meta device: no memory, no arithmetic, the same count on any machine."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build()
        x = torch.randn((2, *shape))
        t = torch.randint(1, 1001, (2,))
    counter = FlopCounterMode(display=False)
    with counter:
        net(x, t).float().square().mean().backward()
    return counter.get_total_flops() / 2


# ---------------------------------------------------------------------------------------------
# imports


def import_ddpm_lib():
    """(UNet, UNetConfig, count_parameters, GaussianDiffusion, NoiseSchedule, version, how)."""
    from ddpm_lib.diffusion import GaussianDiffusion
    from ddpm_lib.nets import UNet, UNetConfig, count_parameters
    from ddpm_lib.schedules import NoiseSchedule
    from ddpm_lib.version import __version__

    return UNet, UNetConfig, count_parameters, GaussianDiffusion, NoiseSchedule, __version__, "package import"


# ---------------------------------------------------------------------------------------------
# timing


class Clock:
    def __init__(self, device, max_seconds):
        self.device, self.t0, self.max_seconds = device, time.perf_counter(), max_seconds

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def left(self):
        return self.max_seconds - (time.perf_counter() - self.t0)

    def measure(self, step, warmup, windows, window_steps):
        """Warm up (untimed), then time ``windows`` windows of ``window_steps`` steps; steps/s each.
        Stops taking windows once the time budget is spent (keeping at least one)."""
        t = time.perf_counter()
        for _ in range(warmup):
            step()
        self.sync()
        warm_s = time.perf_counter() - t
        rates = []
        for _ in range(windows):
            if rates and self.left() < 0:
                break
            self.sync()
            t = time.perf_counter()
            for _ in range(window_steps):
                step()
            self.sync()
            rates.append(window_steps / (time.perf_counter() - t))
        return dict(
            steps_per_s=statistics.median(rates),
            windows=[round(r, 3) for r in rates],
            min=min(rates),
            max=max(rates),
            warmup_s=round(warm_s, 2),
            warmup_steps=warmup,
            window_steps=window_steps,
        )


def add_work(run: dict, flops_per_image: float | None, peak: float | None) -> None:
    """A training run's achieved TFLOP/s and, where the GPU's peak is known, its MFU (in place)."""
    if run["workload"].startswith("train") and "images_per_s" in run and flops_per_image:
        run["tflops_per_s"] = round(run["images_per_s"] * flops_per_image / 1e12, 1)
        if peak:
            run["mfu"] = round(run["tflops_per_s"] / peak, 4)


def profile_step(step, n: int, device, path: Path) -> dict:
    """Where a step's time goes: ``n`` steps under torch.profiler (after 3 untimed ones). Writes the
    table of operators and kernels, by their own device (or CPU) time, to ``path``; returns the wall
    and GPU-kernel milliseconds per step, their ratio (the share of the step the GPU computes: far below
    1 means it waits for the host to launch work), the kernels launched per step and the top five."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    for _ in range(3):
        step()
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        sync()
    wall_ms = (time.perf_counter() - t) * 1e3 / n
    averages = prof.key_averages()

    def own(e):  # self time on the device (or the CPU), microseconds
        if not cuda:
            return e.self_cpu_time_total
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    table = averages.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    path.write_text(table + "\n")
    kernels = [e for e in prof.events() if cuda and str(getattr(e, "device_type", "")).endswith("CUDA")]
    top = sorted(averages, key=own, reverse=True)[:5]
    result = dict(
        steps=n,
        wall_ms_per_step=round(wall_ms, 2),
        top=[dict(name=e.key[:80], ms_per_step=round(own(e) / 1e3 / n, 3)) for e in top],
        table=path.name,
    )
    if cuda:
        gpu_ms = sum(own(e) for e in kernels) / 1e3 / n
        result.update(
            gpu_ms_per_step=round(gpu_ms, 2),
            gpu_busy_fraction=round(gpu_ms / wall_ms, 3),
            kernels_per_step=round(len(kernels) / n),
        )
    return result


def ema_update(ema_params, params, decay):
    with torch.no_grad():
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)  # ema = decay * ema + (1 - decay) * p


def make_train_step(
    model, net, diffusion, batch, shape, device, amp_dtype, inline_loss, clip=1.0, lr=2e-4, decay=0.9999
):
    """The DDPM training step; returns step() (closure over model, EMA copy, optimizer, data).
    ``model`` is what is called (``net`` or torch.compile(net)); ``net`` holds the parameters."""
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    params = [p for p in net.parameters()]
    ema_params = [p for p in ema.parameters()]
    opt = torch.optim.Adam(params, lr=lr, fused=device.type == "cuda")
    data = [torch.rand((batch, *shape), device=device) * 2 - 1 for _ in range(4)]
    sqrt_ab = diffusion.schedule.alpha_bars.sqrt().float().to(device)
    sqrt_1mab = (1 - diffusion.schedule.alpha_bars).sqrt().float().to(device)
    i = [0]

    def loss_fn(x0):
        if not inline_loss:
            return diffusion.training_loss(model, x0).mean()  # L_simple (Eq. 14), the library's
        t = torch.randint(1, diffusion.T + 1, (x0.shape[0],), device=device)
        eps = torch.randn_like(x0)
        x_t = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1mab[t].view(-1, 1, 1, 1) * eps
        return (model(x_t, t).float() - eps).square().mean()

    def step():
        x0 = data[i[0] % len(data)]
        i[0] += 1
        model.train()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        ema_update(ema_params, params, decay)

    return step


def make_sample_step(model, diffusion, batch, shape, device, amp_dtype):
    """One ancestral sampling step at t = T/2 on a fixed state: forward (eval, no_grad) + p_sample."""
    x = torch.randn((batch, *shape), device=device)
    t = torch.full((batch,), diffusion.T // 2, dtype=torch.long, device=device)
    mt = diffusion.model_t(t)

    def step():
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x, mt)
        with torch.no_grad():
            return diffusion.p_sample(out.float(), x, t)

    return step


def make_trainer_step(device, batch, amp, compiled, quick):
    """The shipped training step, ``ddpm_lib.train.Trainer.step()``, configured by configs/cifar10.toml.

    Everything the library does in a step is timed: drawing the batch (with random flips), t and
    eps from the run's generators, the loss, backward, clipping, Adam with warm-up, the EMA update
    and the history (whose loss is read on the host each step). Only the data differ: random 8-bit
    images stand in for CIFAR-10 (through ``ddpm_lib.data.cifar10``, which the trainer's loader
    looks for first), so no archive is needed and no data loader is measured.
    """
    import dataclasses

    import ddpm_lib.data as D
    from ddpm_lib.train import Trainer, load_config

    def random_cifar10(split="train", root=None):
        g = torch.Generator().manual_seed(0)
        n = max(8 * batch, 1024)
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        return images.float() / 127.5 - 1, torch.zeros(n, dtype=torch.long)

    cfg = dataclasses.replace(
        load_config(ROOT / "configs" / "cifar10.toml"),
        device=str(device),
        batch_size=batch,
        out_dir="",
        ckpt_every=0,
        sample_every=0,
        n_samples=0,
        bf16=amp == "bf16",
        compile=compiled,
        model_args=dict(ch=16, num_res_blocks=1, groups=8) if quick else {},
        dropout=0.1,
    )
    D.cifar10 = random_cifar10
    try:
        trainer = Trainer(cfg)
    finally:
        del D.cifar10
    return trainer.step


# ---------------------------------------------------------------------------------------------
# RESULTS.md


def _vs_paper(r: dict, p: dict) -> float:
    return r["images_per_s"] / (
        p["train_images_per_s"] if r["workload"].startswith("train") else p["sample_images_per_s"]
    )


def gpu_markdown(res: dict, extra_notes=()) -> str:
    m, s, p = res["machine"], res["settings"], res["paper"]
    flops = res.get("train_flops_per_image")
    if flops is None and not s.get(
        "quick"
    ):  # a JSON from before FLOPs were counted: the same network's count
        from ddpm_lib.nets import UNet

        flops = res["train_flops_per_image"] = train_flops_per_image(UNet.ddpm_cifar10)
    peak = res.get("peak_bf16_tflops") or peak_tflops(m.get("gpu"))
    for r in res["runs"]:  # recomputed, so that a JSON from an older version of this script renders right
        if "images_per_s" in r:
            r["vs_paper"] = _vs_paper(r, p)
            add_work(r, flops, peak)
    trains = [r for r in res["runs"] if r["workload"].startswith("train") and "images_per_s" in r]
    if trains:
        b = max(trains, key=lambda r: r["steps_per_s"])
        res["best_train"] = dict(
            variant=f"{b['variant']}, {b['workload']}",
            steps_per_s=b["steps_per_s"],
            batch=b["batch"],
            vs_paper=b["vs_paper"],
            target_met=b["vs_paper"] >= TARGET_FACTOR,
        )
    lines = [
        "## GPU: the DDPM CIFAR-10 network against the paper's TPU v3-8",
        "",
        f"Run {res['date']} with `{res['command']}`.",
        "",
        f"* Machine: {m.get('gpu', '?')} ({m.get('gpu_memory_gib', '?')} GiB), CPU {m.get('cpu', '?')} "
        f"({m.get('logical_cpus', '?')} logical); Python {m['python']}, torch {m['torch']} "
        f"(CUDA {m.get('cuda', '-')}, cuDNN {m.get('cudnn', '-')}), ddpm_lib {m['ddpm_lib']} ({m['ddpm_lib_import']}).",
        f"* Network: `{res.get('network', 'UNet.ddpm_cifar10()')}`, {res['parameters']:,} parameters; "
        f"input {s['shape']}; "
        f"autocast {s['amp']}; train batch {s['batch']}.",
        "* train step = `GaussianDiffusion(linear T=1000).training_loss` (L_simple) + backward + clip_grad_norm 1 + "
        "Adam 2e-4 (fused) + EMA 0.9999 update; sample step = forward (eval, no_grad) + `p_sample`. "
        "Synthetic data already on the GPU. Median over timed windows (min - max), each window bracketed by "
        "`torch.cuda.synchronize()`, after untimed warm-up (which includes compilation).",
        f"* Paper ({p['hardware']}, {p['source']}): training {p['train_steps_per_s']:g} steps/s at batch "
        f"{p['train_batch']} = {p['train_images_per_s']:,.0f} images/s; sampling a batch of {p['sample_batch']} "
        f"in {p['sample_seconds_for_1000_steps']:g} s (1000 steps) = {p['sample_images_per_s']:,.0f} images/s of "
        f"sampling steps. Target: {TARGET_FACTOR:g}x the paper's training rate = "
        f"{TARGET_FACTOR * p['train_steps_per_s']:g} steps/s.",
        "",
    ]
    if flops:
        lines[-1:-1] = [
            f"* Work: {flops / 1e9:.2f} GFLOP per image for a training step's forward and backward pass (matrix "
            f"products and convolutions, counted by torch.utils.flop_counter on the meta device), "
            f"{flops * s['batch'] / 1e12:.2f} TFLOP a step at batch {s['batch']}; MFU = achieved FLOP/s over the "
            f"GPU's dense bf16 peak{f' ({peak:g} TFLOP/s, data sheet)' if peak else ' (not known for this GPU)'}. "
            f"The paper's rate is {p['train_images_per_s'] * flops / 1e12:.0f} TFLOP/s on the TPU v3-8 "
            f"(420 TFLOP/s peak: {p['train_images_per_s'] * flops / 1e12 / 420:.0%} MFU).",
        ]
    lines += [
        "| variant | workload | batch | steps/s | images/s | vs paper | TFLOP/s | MFU | warm-up s | peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        if "error" in r or "skipped" in r:
            lines.append(
                f"| {r['variant']} | {r['workload']} | {r.get('batch', '')} | "
                f"{'error: ' + r['error'] if 'error' in r else 'skipped: ' + r['skipped']} | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['variant']} | {r['workload']} | {r['batch']} | {r['steps_per_s']:.2f} "
            f"({r['min']:.2f} - {r['max']:.2f}) | {r['images_per_s']:,.0f} | "
            f"**{r['vs_paper']:.2f}x** | {r.get('tflops_per_s', '-')} | "
            f"{format(r['mfu'], '.1%') if 'mfu' in r else '-'} | {r['warmup_s']} | {r.get('peak_memory_gib', '-')} |"
        )
    best = res.get("best_train")
    if best:
        lines += [
            "",
            f"Best training rate: {best['steps_per_s']:.2f} steps/s at batch {best.get('batch', '?')} "
            f"({best['variant']}), {best['vs_paper']:.2f}x the paper's rate (21 steps/s at batch 128): "
            f"target of {TARGET_FACTOR:g}x {'met' if best['target_met'] else 'NOT met'}.",
        ]
    for variant, pr in (res.get("profiles") or {}).items():
        where = ", ".join(f"{t['name']} {t['ms_per_step']} ms" for t in pr["top"][:3])
        busy = (
            f"the GPU computes {pr['gpu_ms_per_step']} ms of each {pr['wall_ms_per_step']} ms step "
            f"({pr['gpu_busy_fraction']:.0%}; {pr['kernels_per_step']} kernels a step)"
            if "gpu_ms_per_step" in pr
            else f"{pr['wall_ms_per_step']} ms a step"
        )
        lines += [
            "",
            f"Profile of {variant} ({pr['steps']} steps, `{pr['table']}`): {busy}; the most time: {where}.",
        ]
    notes = [*res.get("notes", []), *extra_notes]
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    return "\n".join(lines)


def write_results(json_path: Path, results_dir: Path = HERE, notes=()) -> None:
    from _results import update_section

    res = json.loads(Path(json_path).read_text())
    dest = results_dir / "results_gpu.json"
    if Path(json_path).resolve() != dest.resolve():
        dest.write_text(json.dumps(res, indent=1) + "\n")
    update_section("gpu", gpu_markdown(res, notes), results_dir / "RESULTS.md")
    print(f"merged {json_path} into {results_dir / 'RESULTS.md'} (and {dest})")


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--sample-batches", type=int, nargs="+", default=[128, 256])
    p.add_argument(
        "--amp", choices=["bf16", "fp32"], default="bf16", help="autocast dtype (fp32: no autocast)"
    )
    p.add_argument(
        "--formats",
        nargs="+",
        choices=["channels_last", "contiguous"],
        default=["channels_last", "contiguous"],
        help="memory formats to time eagerly",
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile(model) (first format)")
    p.add_argument(
        "--compile-modes",
        nargs="+",
        default=["default"],
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile modes to time with --compile (reduce-overhead: CUDA graphs)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile N steps of the Trainer's step (eager, and compiled with --compile): where the time goes",
    )
    p.add_argument("--inline-loss", action="store_true", help="also time the same loss without host syncs")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed windows (eager)")
    p.add_argument("--compile-warmup", type=int, default=5, help="untimed steps for compiled variants")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--window-steps", type=int, default=20)
    p.add_argument(
        "--max-seconds",
        type=float,
        default=240.0,
        help="time budget: later variants are skipped and windows cut once it is spent",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: a small CIFAR-shaped net, tiny batches")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--write-results",
        type=Path,
        metavar="JSON",
        default=None,
        help="merge a results_gpu.json into RESULTS.md and exit (no benchmarking)",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=HERE,
        help="where --write-results puts RESULTS.md and results_gpu.json (default: benchmarks/)",
    )
    p.add_argument(
        "--note", action="append", default=[], help="with --write-results: a line to add under the table"
    )
    args = p.parse_args(argv)

    if args.write_results:
        write_results(args.write_results, args.results_dir, args.note)
        return None

    UNet, UNetConfig, count_parameters, GaussianDiffusion, NoiseSchedule, version, how = import_ddpm_lib()
    heavy = sorted(m for m in ("matplotlib", "ipywidgets", "diffusers", "IPython") if m in sys.modules)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype = torch.bfloat16 if args.amp == "bf16" else None

    if args.quick:
        args.batch, args.sample_batches = 4, [4]
        args.warmup, args.compile_warmup, args.windows, args.window_steps = 1, 1, 2, 2
        if device.type == "cpu":
            amp_dtype, args.amp = None, "fp32"  # bf16 autocast on a CPU without bf16 units is very slow
            torch.set_num_threads(1)  # a smoke test; one thread is steadier on a shared machine
        build = lambda: UNet(
            UNetConfig(
                ch=16,
                ch_mult=(1, 2, 2, 2),
                num_res_blocks=1,
                attn_resolutions=(16,),  # noqa: E731
                groups=8,
            )
        )
    else:
        build = UNet.ddpm_cifar10
    shape = (3, 32, 32)
    diffusion = GaussianDiffusion(NoiseSchedule.linear(1000))
    clock = Clock(device, args.max_seconds)

    machine = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        ddpm_lib=version,
        ddpm_lib_import=how,
        heavy_modules_imported=heavy,
        platform=platform.platform(),
        logical_cpus=os.cpu_count(),
    )
    try:
        from _results import cpu_model

        machine["cpu"] = cpu_model()
    except Exception:  # noqa: BLE001
        pass
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        machine.update(
            gpu=prop.name,
            gpu_memory_gib=round(prop.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    n_params = count_parameters(build())
    flops_per_image = train_flops_per_image(build, (3, 32, 32))
    peak = peak_tflops(machine.get("gpu"))
    res = dict(
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        command="PYTHONPATH=. python "
        + " ".join(["benchmarks/bench_cifar10_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
        machine=machine,
        paper=PAPER,
        parameters=n_params,
        train_flops_per_image=flops_per_image,
        peak_bf16_tflops=peak,
        network="UNet.ddpm_cifar10()" if not args.quick else f"(--quick) UNet({build().config})",
        settings=dict(
            device=str(device),
            batch=args.batch,
            sample_batches=args.sample_batches,
            amp=args.amp,
            shape=list(shape),
            warmup=args.warmup,
            compile_warmup=args.compile_warmup,
            windows=args.windows,
            window_steps=args.window_steps,
            max_seconds=args.max_seconds,
            quick=args.quick,
            compile=args.compile,
            formats=args.formats,
            tf32=device.type == "cuda",
            cudnn_benchmark=device.type == "cuda",
        ),
        runs=[],
        notes=[],
    )
    print(
        f"device {device}, {n_params:,} parameters, ddpm_lib {version} via {how}; heavy modules: {heavy or 'none'}",
        flush=True,
    )

    if args.out:
        out = args.out
    elif os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "results_gpu.json"
    elif device.type == "cuda" and not args.quick:
        out = HERE / "results_gpu.json"
    else:  # a smoke run must not overwrite real results
        import tempfile

        out = Path(tempfile.gettempdir()) / "results_gpu_smoke.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every measurement, so that a run cut short still leaves its numbers
        res["total_seconds"] = round(time.perf_counter() - clock.t0, 1)
        out.write_text(json.dumps(res, indent=1) + "\n")

    def record(variant, workload, batch, fn):
        """Run fn() -> measurement dict; record it (or the error / skip) in res['runs']."""
        entry = dict(variant=variant, workload=workload, batch=batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            m = fn()
        except Exception as e:  # noqa: BLE001 - report and go on with the other variants
            entry["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"[{variant} {workload} b{batch}] ERROR {entry['error']}", flush=True)
        else:
            entry.update(m)
            entry["images_per_s"] = m["steps_per_s"] * batch
            add_work(entry, flops_per_image, peak)
            # images/s against the paper's: train 21 steps/s x 128 = 2,688 (at batch 128, the same as the
            # ratio of steps/s); sample 1000 x 256 / 17 s = 15,059 (at batch 256)
            entry["vs_paper"] = _vs_paper(entry, PAPER)
            print(
                f"[{variant} {workload} b{batch}] {m['steps_per_s']:.2f} steps/s, {entry['images_per_s']:,.0f} img/s, "
                f"{entry['vs_paper']:.2f}x paper (warm-up {m['warmup_s']} s, windows {m['windows']})",
                flush=True,
            )
        if device.type == "cuda":
            entry["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        res["runs"].append(entry)
        save()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def skip(variant, workload, batch, why):
        res["runs"].append(dict(variant=variant, workload=workload, batch=batch, skipped=why))
        print(f"[{variant} {workload} b{batch}] skipped: {why}", flush=True)
        save()

    def phase(variant, fmt, compiled, inline=False, sample=True, min_left=10.0, mode="default"):
        warm = args.compile_warmup if compiled else args.warmup
        wl = "train (inline loss)" if inline else "train"
        if clock.left() < min_left:
            skip(variant, wl, args.batch, f"time budget (--max-seconds {args.max_seconds:g}) spent")
            return
        torch.manual_seed(0)
        net = build().to(device)
        net.channels_last = fmt == "channels_last"
        model = (
            torch.compile(net, dynamic=False, mode=None if mode == "default" else mode) if compiled else net
        )
        record(
            variant,
            wl,
            args.batch,
            lambda: clock.measure(
                make_train_step(model, net, diffusion, args.batch, shape, device, amp_dtype, inline),
                warm,
                args.windows,
                args.window_steps,
            ),
        )
        for sb in args.sample_batches if sample else []:
            if clock.left() < min_left:
                skip(variant, "sample", sb, f"time budget (--max-seconds {args.max_seconds:g}) spent")
                continue
            record(
                variant,
                "sample",
                sb,
                lambda: clock.measure(
                    make_sample_step(model, diffusion, sb, shape, device, amp_dtype),
                    warm,
                    args.windows,
                    args.window_steps,
                ),
            )
        net = model = None  # free the GPU memory before the next variant

    def trainer_phase(compiled, min_left=10.0):
        """The shipped Trainer's step (make_trainer_step), eager or compiled as the config says."""
        variant = f"Trainer.step {'compiled' if compiled else 'eager'} {args.amp}"
        if clock.left() < min_left:
            skip(variant, "train", args.batch, f"time budget (--max-seconds {args.max_seconds:g}) spent")
            return
        torch.manual_seed(0)
        step = make_trainer_step(device, args.batch, args.amp, compiled, args.quick)
        warm = args.compile_warmup if compiled else args.warmup
        record(
            variant, "train", args.batch, lambda: clock.measure(step, warm, args.windows, args.window_steps)
        )
        if args.profile and clock.left() > min_left:
            name = f"profile_trainer_{'compiled' if compiled else 'eager'}.txt"
            res.setdefault("profiles", {})[variant] = summary = profile_step(
                step, args.profile, device, out.parent / name
            )
            print(f"[{variant}] profile: {json.dumps(summary)}", flush=True)
            save()

    amp_name = args.amp
    trainer_phase(compiled=False)
    for fmt in args.formats:
        phase(f"eager {amp_name} {fmt}", fmt, compiled=False)
    if args.inline_loss:
        phase(
            f"eager {amp_name} {args.formats[0]}", args.formats[0], compiled=False, inline=True, sample=False
        )
    if args.compile:
        trainer_phase(compiled=True, min_left=10.0 if args.quick else 60.0)
        # compiling the training graph takes about a minute on a big GPU: ask for that much time left
        for mode in args.compile_modes:
            phase(
                f"compiled{'' if mode == 'default' else ' ' + mode} {amp_name} {args.formats[0]}",
                args.formats[0],
                compiled=True,
                min_left=10.0 if args.quick else 60.0,
                mode=mode,
            )
        if args.inline_loss:
            phase(
                f"compiled {amp_name} {args.formats[0]}",
                args.formats[0],
                compiled=True,
                inline=True,
                sample=False,
                min_left=10.0 if args.quick else 45.0,
            )

    trains = [r for r in res["runs"] if r["workload"].startswith("train") and "steps_per_s" in r]
    if trains:
        b = max(trains, key=lambda r: r["steps_per_s"])
        res["best_train"] = dict(
            variant=f"{b['variant']}, {b['workload']}",
            steps_per_s=b["steps_per_s"],
            images_per_s=b["images_per_s"],
            batch=b["batch"],
            vs_paper=b["vs_paper"],
            target_met=b["vs_paper"] >= TARGET_FACTOR,
        )
    if heavy:
        res["notes"].append(f"importing ddpm_lib pulled in {heavy}")
    if device.type != "cuda":
        res["notes"].append("not a GPU run (smoke test of the script's code path)")
    res["total_seconds"] = round(time.perf_counter() - clock.t0, 1)

    save()
    print("RESULT_JSON " + json.dumps(res), flush=True)
    print(f"wrote {out} ({res['total_seconds']} s)", flush=True)
    return res


if __name__ == "__main__":
    main()
