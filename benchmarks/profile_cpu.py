"""Where the CPU time goes: torch.profiler self time by kind of op, ddpm_lib UNet vs diffusers UNet2DModel.

Same pair of networks, weights and workloads as bench_unet_cpu.py (one config); the models are
profiled in turn for several rounds and the self CPU times averaged per step. Prints a table
(milliseconds per step and share of the step) and, with --top, the heaviest individual ops.

    python benchmarks/profile_cpu.py --config cifar-mini --workload sample --threads 1
    python benchmarks/profile_cpu.py --config fmnist-small --workload train --rounds 3 --top 15
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import bench_unet_cpu as B  # noqa: E402

CATEGORIES = [  # (name, substrings of aten op names), first match wins
    ("convolution (fwd)", ["mkldnn_convolution", "slow_conv2d_forward", "thnn_conv2d"]),
    ("convolution (bwd)", ["convolution_backward"]),
    ("attention (SDPA / bmm / softmax)", ["scaled_dot_product", "bmm", "_softmax", "baddbmm"]),
    ("group norm", ["native_group_norm"]),
    ("silu", ["silu"]),
    ("linear (mm / addmm)", ["aten::mm", "aten::addmm"]),
    ("dropout (bernoulli)", ["bernoulli", "native_dropout"]),
    ("copies / cat / layout", ["aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "_to_copy"]),
    ("elementwise add / mul / div", ["aten::add", "aten::mul", "aten::div", "aten::sub"]),
    ("upsample / pad", ["upsample", "constant_pad", "aten::pad"]),
]


def categorize(key: str) -> str:
    for name, pats in CATEGORIES:
        if any(p in key for p in pats):
            return name
    return "other"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="cifar-mini", choices=sorted(B.CONFIGS))
    p.add_argument("--workload", default="sample", choices=["train", "sample"])
    p.add_argument("--variants", nargs="+", default=["ours", "diffusers"], choices=list(B.VARIANTS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--top", type=int, default=0, help="also list the N heaviest ops (self time)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    ours, theirs, n_params, err = B.build_pair(args.config)
    diffusion = B.GaussianDiffusion(B.NoiseSchedule.linear(1000))
    fns = {}
    for v in args.variants:
        train_step, sample_step = B.make_workloads(
            B.make_variant(v, ours, theirs), diffusion, args.batch, ours.config, seed=1234
        )
        fns[v] = train_step if args.workload == "train" else sample_step
        fns[v](), fns[v]()  # warm-up
    cats = {v: collections.Counter() for v in fns}
    ops = {v: collections.Counter() for v in fns}
    for _ in range(args.rounds):
        for v, f in fns.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                f()
            for e in prof.events():
                ms = e.self_cpu_time_total / 1e3 / args.rounds
                a, in_opt = e, False
                while a is not None and not in_opt:
                    in_opt, a = a.name.startswith("Optimizer."), a.cpu_parent
                ops[v][e.name] += ms
                cats[v]["optimizer (Adam step)" if in_opt else categorize(e.name)] += ms
    print(
        f"{args.config} ({n_params:,} parameters), {args.workload}, batch {args.batch}, "
        f"{torch.get_num_threads()} thread(s), ms per step (self CPU time, mean of {args.rounds}):"
    )
    names = [c for c, _ in CATEGORIES] + ["optimizer (Adam step)", "other"]
    print(f"{'':34s}" + "".join(f"{v:>22s}" for v in fns))
    tot = {v: sum(cats[v].values()) for v in fns}
    for c in names:
        print(f"{c:34s}" + "".join(f"{cats[v][c]:12.1f} ({100 * cats[v][c] / tot[v]:4.1f}%)" for v in fns))
    print(f"{'TOTAL':34s}" + "".join(f"{tot[v]:12.1f}        " for v in fns))
    if args.top:
        keys = sorted(set().union(*ops.values()), key=lambda k: -max(ops[v][k] for v in fns))[: args.top]
        print()
        for k in keys:
            print(f"{k[:60]:60s}" + "".join(f"{ops[v][k]:10.1f}" for v in fns))


if __name__ == "__main__":
    main()
