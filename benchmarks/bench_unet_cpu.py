"""CPU throughput of ddpm_lib's UNet against diffusers' UNet2DModel, same architecture and weights.

For each config, both networks are built with the same architecture, the same parameter count
(asserted) and the same weights (diffusers' state dict renamed onto ours; the outputs are asserted
to agree), then timed *interleaved*: each round runs every model in turn (the order reversed on
odd rounds) for a fixed number of steps, after untimed warm-up steps, so that the load of a
shared machine falls on all alike. Reported: median (min, max) over rounds of

* train: images/s of one training step = forward + L_simple loss (GaussianDiffusion.training_loss,
  the same t and noise for both) + backward + Adam step, model in train mode (dropout on);
* sample: images/s of one step of ancestral sampling = a forward pass under torch.no_grad() in
  eval mode + the p_sample update (the same for both, and cheap);

and the ratio ours / diffusers of the medians, in wall-clock time and in process CPU time (which
other jobs on the machine do not enter). Same torch.set_num_threads for all (--threads, default 2),
float32. OMP_WAIT_POLICY defaults to PASSIVE (see benchmarks/README.md).

Usage (from the repository root):

    python benchmarks/bench_unet_cpu.py                  # the default configs, 2 threads, 7 rounds
    python benchmarks/bench_unet_cpu.py --threads 1      # a second table, for 1 thread
    python benchmarks/bench_unet_cpu.py --quick          # smoke run: tiny sizes, 2 rounds
    python benchmarks/bench_unet_cpu.py --configs fmnist-small cifar-mini --rounds 9 --batch 32

Writes benchmarks/results_cpu.json (one entry per thread count, merged) and the CPU section of
benchmarks/RESULTS.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from anywhere without installing
sys.path.insert(0, str(HERE))

# OpenMP threads that spin while waiting make a shared (oversubscribed) machine several times
# slower and erratic; sleeping waits cost little. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import ddpm_lib  # noqa: E402
from ddpm_lib.diffusion import GaussianDiffusion  # noqa: E402
from ddpm_lib.interop import diffusers_unet_kwargs, unet_state_from_diffusers  # noqa: E402
from ddpm_lib.nets import UNet, UNetConfig, count_parameters  # noqa: E402
from ddpm_lib.schedules import NoiseSchedule  # noqa: E402

from _results import cpu_model, load_average, update_section  # noqa: E402

# ---------------------------------------------------------------------------------------------
# the configs

# Fashion-MNIST presets at 28x28x1 (28 -> 14 -> 7; diffusers handles the odd 7x7 level and 7x7
# attention: its stride-2 downsampler pads one pixel right/bottom as DDPM does, and the outputs
# are checked to agree below), and a CIFAR-10-shaped net (4 levels, attention at 16, 32x32x3)
# at a quarter of the paper's width so that it can be timed on a 2-core CPU.
CIFAR_SHAPED = dict(
    ch_mult=(1, 2, 2, 2),
    attn_resolutions=(16,),
    dropout=0.1,
    resolution=32,
    groups=8,
    in_channels=3,
    out_channels=3,
)
CONFIGS = {
    "fmnist-tiny": dict(preset="tiny"),
    "fmnist-small": dict(preset="small"),
    "fmnist-base": dict(preset="base"),
    "cifar-mini": dict(config=dict(CIFAR_SHAPED, ch=32, num_res_blocks=2)),
    "cifar-micro": dict(config=dict(CIFAR_SHAPED, ch=16, num_res_blocks=1)),  # only for --quick
}
DEFAULT_CONFIGS = ["fmnist-tiny", "fmnist-small", "cifar-mini"]


def build_ours(name: str) -> UNet:
    spec = CONFIGS[name]
    if "preset" in spec:
        return UNet.fashion_mnist(spec["preset"])
    return UNet(UNetConfig(**spec["config"]))


# ---------------------------------------------------------------------------------------------
# diffusers' equivalent: ddpm_lib.interop builds its kwargs and renames its weights


def randomize_(model, seed=0, std=0.05):
    """Nonzero values everywhere (the DDPM init zeroes the last layer of each block)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(noise + 1.0 if "norm" in name and name.endswith("weight") else noise)
    return model


def build_pair(name: str):
    """(ours, theirs): same architecture, parameter count and weights; outputs checked to agree."""
    import diffusers

    torch.manual_seed(0)
    ours = build_ours(name)
    c = ours.config
    theirs = diffusers.UNet2DModel(**diffusers_unet_kwargs(c))
    n_ours, n_theirs = count_parameters(ours), count_parameters(theirs)
    assert n_ours == n_theirs, f"{name}: parameter counts differ: ours {n_ours:,} vs diffusers {n_theirs:,}"
    state = unet_state_from_diffusers(randomize_(theirs).state_dict(), levels=len(c.ch_mult))
    own = ours.state_dict()
    assert state.keys() == own.keys(), f"{name}: state dict names differ: {set(state) ^ set(own)}"
    ours.load_state_dict({k: v.reshape(own[k].shape) for k, v in state.items()})  # Linear -> 1x1 conv
    x = torch.randn(3, c.in_channels, c.resolution, c.resolution, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 500, 1000])
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(x, t), theirs(x, t, return_dict=False)[0]
    err = (a - b).abs().max().item()
    assert a.abs().mean() > 1e-2 and torch.allclose(a, b, rtol=1e-4, atol=1e-4), (
        f"{name}: outputs differ by {err}"
    )
    return ours, theirs, n_ours, err


# ---------------------------------------------------------------------------------------------
# the timed work


class DiffusersAsModel(torch.nn.Module):
    """model(x, t) -> tensor, as GaussianDiffusion calls it (optionally feeding channels_last input)."""

    def __init__(self, net, channels_last=False):
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x, t):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x, t, return_dict=False)[0]


VARIANTS = {
    "ours": "ddpm_lib UNet as shipped (on CPU: NCHW activations)",
    "diffusers": "diffusers UNet2DModel as shipped (NCHW)",
    "ours-cl": "ddpm_lib UNet with net.channels_last = True",
    "diffusers-cl": "UNet2DModel with .to(memory_format=torch.channels_last) and channels_last input",
    "ours-head": "ddpm_lib UNet from the last commit's ddpm_lib/nets.py (git HEAD), to show what the working "
    "tree's changes to nets.py gain",
}


def _head_nets():
    """ddpm_lib/nets.py as committed at git HEAD, loaded as a separate module."""
    import subprocess
    import types

    name = "_ddpm_lib_nets_at_head"
    if name not in sys.modules:
        src = subprocess.run(
            ["git", "-C", str(HERE.parent), "show", "HEAD:ddpm_lib/nets.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        mod = types.ModuleType(name)
        sys.modules[name] = mod  # dataclasses look their module up
        exec(compile(src, "HEAD:ddpm_lib/nets.py", "exec"), mod.__dict__)
    return sys.modules[name]


def make_variant(name, ours, theirs):
    if name == "ours":
        return ours
    if name == "diffusers":
        return DiffusersAsModel(theirs)
    if name == "ours-cl":
        m = UNet(ours.config)
        m.load_state_dict(ours.state_dict())
        m.channels_last = True
        return m
    if name == "ours-head":
        from dataclasses import asdict

        m = _head_nets().UNet(**asdict(ours.config))
        m.load_state_dict(ours.state_dict())
        return m
    if name == "diffusers-cl":
        import copy

        return DiffusersAsModel(
            copy.deepcopy(theirs).to(memory_format=torch.channels_last), channels_last=True
        )
    raise ValueError(name)


def make_workloads(
    model: torch.nn.Module, diffusion: GaussianDiffusion, batch: int, c: UNetConfig, seed: int
):
    """(train_step, sample_step) closures on fixed inputs, the same for both models (same seed)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, c.in_channels, c.resolution, c.resolution)
    x0 = torch.rand(shape, generator=g) * 2 - 1
    t_train = torch.randint(1, diffusion.T + 1, (batch,), generator=g)
    noise = torch.randn(shape, generator=g)
    x_t = torch.randn(shape, generator=g)
    t_sample = torch.full((batch,), diffusion.T // 2, dtype=torch.long)
    z = torch.randn(shape, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    def train_step():
        model.train()
        loss = diffusion.training_loss(model, x0, t=t_train, noise=noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sample_step():
        model.eval()
        with torch.no_grad():
            return diffusion.p_sample(model(x_t, diffusion.model_t(t_sample)), x_t, t_sample, noise=z)

    return train_step, sample_step


def time_it(fn, iters: int):
    """(wall seconds, process CPU seconds) of ``iters`` calls. The CPU time counts only this
    process's threads while they run, so other jobs on a shared machine disturb it much less."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t0, time.process_time() - c0


def bench_interleaved(fns: dict, batch: int, iters: int, warmup: int, rounds: int):
    """fns: {label: fn}. Returns ({label: [images/s per round]}, {label: [images per CPU-second]}),
    running the labels in turn each round, the order reversed every other round."""
    labels = list(fns)
    for lab in labels:  # warm-up, untimed (allocator, oneDNN primitive caches, Adam state)
        time_it(fns[lab], warmup)
    wall, cpu = {lab: [] for lab in labels}, {lab: [] for lab in labels}
    for r in range(rounds):
        for lab in labels if r % 2 == 0 else labels[::-1]:
            w, c = time_it(fns[lab], iters)
            wall[lab].append(batch * iters / w)
            cpu[lab].append(batch * iters / c)
    return wall, cpu


def summarize(xs):
    return dict(median=statistics.median(xs), min=min(xs), max=max(xs), runs=[round(x, 3) for x in xs])


# ---------------------------------------------------------------------------------------------
# machine and versions


def machine_info() -> dict:
    import diffusers

    return dict(
        cpu=cpu_model(),
        logical_cpus=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        ddpm_lib=ddpm_lib.__version__,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
    )


# ---------------------------------------------------------------------------------------------
# RESULTS.md


def run_markdown(res: dict) -> list:
    s = res["settings"]
    variants = s["variants"]
    lines = [
        f"### {s['threads']} thread{'s' if s['threads'] > 1 else ''} (`torch.set_num_threads({s['threads']})`)",
        "",
        f"Run {res['date']} with `{res['command']}`: batch {s['batch']}, float32, {s['rounds']} rounds; per round "
        f"and model {s['train_iters']} timed training steps / {s['sample_iters']} timed sampling steps after "
        f"{s['warmup']} untimed warm-up steps (per workload). Load average (1, 5, 15 min) at start "
        f"{res['load_average_at_start']}, at end {res.get('load_average_at_end')}.",
        "",
        "| config | input | parameters (both) | workload | "
        + " | ".join(f"{v} img/s" for v in variants)
        + " | **ours / diffusers** | ours / diffusers per round | ours / diffusers by CPU time |",
        "|---|---|---:|---|" + "---:|" * len(variants) + "---:|---|---:|",
    ]
    for name, r in res["configs"].items():
        first = True
        for wl in ("train", "sample"):
            if wl not in r:
                continue
            head = f"| {name} | {r['input']} | {r['parameters']:,} " if first else "| | | "
            first = False
            cells = " | ".join(
                f"{r[wl][v]['median']:.2f} ({r[wl][v]['min']:.2f} - {r[wl][v]['max']:.2f})" for v in variants
            )
            lines.append(
                f"{head}| {wl} | {cells} | **{r[wl]['ratio_of_medians']:.3f}** | "
                f"{', '.join(f'{x:.2f}' for x in r[wl]['ratios_per_round'])} | "
                f"{r[wl]['cpu_time_ratio_of_medians']:.3f} |"
            )
    return lines


def cpu_markdown(all_runs: dict) -> str:
    runs = [all_runs[k] for k in sorted(all_runs, key=lambda k: -all_runs[k]["settings"]["threads"])]
    m = runs[0]["machine"]
    variants = sorted({v for r in runs for v in r["settings"]["variants"]}, key=list(VARIANTS).index)
    lines = [
        "## CPU: ddpm_lib `UNet` vs diffusers `UNet2DModel` (same architecture, parameter count and weights)",
        "",
        f"* Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['platform']}; shared with other jobs, so the "
        "models are timed interleaved (round r runs each model in turn, the order reversed every other round) "
        f"and medians over rounds are reported, with min - max in brackets. OMP_WAIT_POLICY={m['omp_wait_policy']}.",
        f"* Versions: Python {m['python']}, torch {m['torch']}, diffusers {m['diffusers']}, ddpm_lib {m['ddpm_lib']}.",
        "* Both networks are built from the same `UNetConfig` (diffusers: DDPM layout, as google/ddpm-cifar10-32), "
        "their parameter counts are asserted equal, diffusers' randomized weights are loaded into ours and the "
        "outputs asserted to agree (max |difference| below) before timing.",
        "* train = images/s of forward + L_simple loss (`GaussianDiffusion.training_loss`, linear T=1000, the same "
        "t and noise for both) + backward + Adam step (lr 2e-4); train mode, dropout 0.1 on. "
        "sample = images/s of one ancestral sampling step: forward under `torch.no_grad()` in eval mode + "
        "`GaussianDiffusion.p_sample`.",
        "* Variants: " + "; ".join(f"`{v}`: {VARIANTS[v]}" for v in variants) + ".",
        "* img/s is wall-clock throughput (median over rounds, min - max in brackets). The last column is the "
        "ratio of medians of images per CPU-second of this process (`time.process_time`), which time taken by "
        "other jobs on the machine does not enter: a steadier estimate of the same ratio on a busy machine.",
        "",
    ]
    for r in runs:
        lines += run_markdown(r) + [""]
    cfgs = {}
    for r in runs:
        for name, c in r["configs"].items():
            cfgs[name] = c
    lines += [
        "Configs (ddpm_lib `UNetConfig`; max |ours - diffusers| of the eval-mode outputs on 3 inputs):",
        "",
    ]
    for name, c in cfgs.items():
        lines.append(
            f"* {name} ({c['input']}, {c['parameters']:,} parameters, max diff "
            f"{c['max_abs_output_diff']:.1e}): `{c['config']}`"
        )
    notes = [n for r in runs for n in r.get("notes", [])]
    if notes:
        lines += ["", *sorted(set(notes))]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--configs",
        nargs="+",
        default=None,
        choices=sorted(CONFIGS),
        help=f"configs to run (default: {' '.join(DEFAULT_CONFIGS)})",
    )
    p.add_argument("--workloads", nargs="+", default=["train", "sample"], choices=["train", "sample"])
    p.add_argument(
        "--variants",
        nargs="+",
        default=["ours", "diffusers"],
        choices=list(VARIANTS),
        help="models to time; the ratio is always ours / diffusers",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per model (medians over these)")
    p.add_argument("--train-iters", type=int, default=1, help="timed training steps per model per round")
    p.add_argument("--sample-iters", type=int, default=3, help="timed sampling steps per model per round")
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per model and workload before the rounds"
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the same for both)")
    p.add_argument("--quick", action="store_true", help="smoke run: small configs, batch 8, 2 rounds")
    p.add_argument(
        "--no-write", action="store_true", help="print only; do not write results_cpu.json / RESULTS.md"
    )
    p.add_argument("--out-dir", type=Path, default=HERE)
    args = p.parse_args(argv)

    if args.quick:
        args.configs = args.configs or ["fmnist-tiny", "cifar-micro"]
        args.batch, args.rounds, args.warmup, args.train_iters, args.sample_iters = 8, 2, 1, 1, 1
    configs = args.configs or DEFAULT_CONFIGS
    variants = list(dict.fromkeys(["ours", "diffusers", *args.variants]))

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    diffusion = GaussianDiffusion(NoiseSchedule.linear(1000))
    res = dict(
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        command="python "
        + " ".join(["benchmarks/bench_unet_cpu.py", *(argv if argv is not None else sys.argv[1:])]),
        machine=machine_info(),
        load_average_at_start=load_average(),
        settings=dict(
            threads=torch.get_num_threads(),
            dtype="float32",
            batch=args.batch,
            rounds=args.rounds,
            warmup=args.warmup,
            train_iters=args.train_iters,
            sample_iters=args.sample_iters,
            variants=variants,
            quick=args.quick,
        ),
        configs={},
    )
    print(json.dumps(res["machine"]), "threads", torch.get_num_threads(), flush=True)
    for name in configs:
        ours, theirs, n_params, err = build_pair(name)
        c = ours.config
        print(f"[{name}] {n_params:,} parameters in both; outputs agree (max |diff| {err:.2e})", flush=True)
        models = {v: make_variant(v, ours, theirs) for v in variants}
        rec = dict(
            parameters=n_params,
            max_abs_output_diff=err,
            input=f"{c.resolution}x{c.resolution}x{c.in_channels}",
            config=str(c),
        )
        for wl in args.workloads:
            fns = {}
            for v, m in models.items():
                train_step, sample_step = make_workloads(m, diffusion, args.batch, c, seed=1234)
                fns[v] = train_step if wl == "train" else sample_step
            iters = args.train_iters if wl == "train" else args.sample_iters
            runs, cpu = bench_interleaved(fns, args.batch, iters, args.warmup, args.rounds)
            rec[wl] = {v: summarize(runs[v]) for v in variants}
            rec[wl]["ratio_of_medians"] = rec[wl]["ours"]["median"] / rec[wl]["diffusers"]["median"]
            rec[wl]["ratios_per_round"] = [round(x / y, 3) for x, y in zip(runs["ours"], runs["diffusers"])]
            rec[wl]["cpu_time"] = {v: summarize(cpu[v]) for v in variants}
            rec[wl]["cpu_time_ratio_of_medians"] = (
                rec[wl]["cpu_time"]["ours"]["median"] / rec[wl]["cpu_time"]["diffusers"]["median"]
            )
            print(
                f"[{name}] {wl:6s} "
                + "  ".join(f"{v} {rec[wl][v]['median']:8.2f}" for v in variants)
                + f" img/s; ours/diffusers {rec[wl]['ratio_of_medians']:.3f} "
                + f"(per round {rec[wl]['ratios_per_round']}); "
                f"by CPU time {rec[wl]['cpu_time_ratio_of_medians']:.3f}",
                flush=True,
            )
        res["configs"][name] = rec
        del ours, theirs, models
    res["load_average_at_end"] = load_average()
    if args.quick:
        res.setdefault("notes", []).append("(--quick: a smoke run, not a measurement.)")
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / "results_cpu.json"
        all_runs = {}
        if path.exists():
            try:
                all_runs = json.loads(path.read_text()).get("runs", {})
            except (ValueError, AttributeError):
                all_runs = {}
        all_runs[f"threads={res['settings']['threads']}"] = res
        path.write_text(json.dumps({"runs": all_runs}, indent=1) + "\n")
        update_section("cpu", cpu_markdown(all_runs), args.out_dir / "RESULTS.md")
        print(f"wrote {path} and {args.out_dir / 'RESULTS.md'}")
    return res


if __name__ == "__main__":
    main()
