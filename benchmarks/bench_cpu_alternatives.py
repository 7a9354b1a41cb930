"""Ways to make the U-Net faster on this CPU than diffusers, each measured: what the 1.2x target would need.

bench_unet_cpu.py measures ddpm_lib's UNet at 1.02-1.10x diffusers' UNet2DModel. Both spend about
70 % of a step in oneDNN's 3x3 convolutions (profile_cpu.py). This script measures whether any of
the routes left can buy the rest, in one run:

1. the ceiling: single-precision GEMM (MKL, 2048^3) against oneDNN's 3x3 convolutions, in GFLOP/s;
   a convolution that already runs at the GEMM rate can only get faster by doing fewer
   multiply-adds;
2. per layer (batch 32, the shapes of the benchmarked nets), forward ms of a 3x3 convolution:
   oneDNN on NCHW and on channels_last (NHWC) input; NNPACK (`torch._nnpack_spatial_convolution`,
   a Winograd / FFT convolution in PyTorch's CPU build); and Winograd F(2x2, 3x3) written with
   PyTorch ops (Lavin & Gray 2016: 16 multiply-adds per 2x2 output tile and channel pair instead of
   36), with its GEMM alone as a column;
3. per layer, GroupNorm + SiLU forward: PyTorch's kernel on NCHW and on NHWC, and a NHWC group
   norm of our own (per-channel sums as a batched matrix-vector product, no strided reduction);
4. the whole network, interleaved with diffusers as in bench_unet_cpu.py, training and sampling:
   `ours`, `diffusers`, `ours-cl` (channels_last), `ours-cl-gn` (channels_last with the group norm
   of 3., forward and backward), `ours-nnpack` (NNPACK for every 3x3 stride-1 convolution's forward
   and input gradient; oneDNN for the weight gradient), and `ours-compiled` / `diffusers-compiled`
   (torch.compile, inductor's CPU backend: fused elementwise kernels around oneDNN's convolutions;
   needs a C++ compiler; compilation is in the untimed warm-up; only with --compile: compiling the
   train and eval graphs takes minutes each on a 2-core CPU, a --quick run with them 12.5 minutes).

None of these is in ddpm_lib: this script is where they were tried. It writes
results_cpu_alternatives.json and the "cpu-alternatives" section of RESULTS.md.

    python benchmarks/bench_cpu_alternatives.py                 # 1 thread, 5 rounds, about 10 minutes
    python benchmarks/bench_cpu_alternatives.py --quick --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bench_unet_cpu as B  # noqa: E402
from _results import load_average, update_section  # noqa: E402
from ddpm_lib.diffusion import GaussianDiffusion  # noqa: E402
from ddpm_lib.nets import AttnBlock, ResnetBlock  # noqa: E402
from ddpm_lib.schedules import NoiseSchedule  # noqa: E402

CL = torch.channels_last
# (channels, size, groups): the 3x3 convolutions and norms of fmnist-tiny/small (28, 14, 7) and cifar-mini (32, 16, 8)
LAYERS = [(16, 28, 8), (32, 28, 8), (32, 14, 8), (64, 14, 8), (64, 7, 8), (32, 32, 8), (64, 16, 8), (64, 8, 8),
          (128, 16, 32)]


def ms(fn, iters=15, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


# ---------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) with PyTorch ops, on NHWC activations (every transform contiguous in C)

_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def winograd_kernel(w):
    """(O, I, 3, 3) -> (16, I, O): G w G^T for every (o, i)."""
    return torch.einsum("ak,oikl,bl->abio", _G.to(w), w, _G.to(w)).reshape(16, w.shape[1], w.shape[0])


def winograd_input(x):
    """x (B, C, H, W), channels_last, H and W even -> (16, B*H/2*W/2, C): B^T d B of the 4x4 tiles
    (stride 2) of x padded by 1, with B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]."""
    b, c, h, w = x.shape
    nh, nw = h // 2, w // 2
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
    d = [xp[:, j:j + 2 * nh:2] for j in range(4)]
    r = torch.empty(4, b, nh, w + 2, c, dtype=x.dtype)
    torch.sub(d[0], d[2], out=r[0]), torch.add(d[1], d[2], out=r[1])
    torch.sub(d[2], d[1], out=r[2]), torch.sub(d[1], d[3], out=r[3])
    e = [r[:, :, :, k:k + 2 * nw:2] for k in range(4)]
    v = torch.empty(4, 4, b, nh, nw, c, dtype=x.dtype)
    torch.sub(e[0], e[2], out=v[:, 0]), torch.add(e[1], e[2], out=v[:, 1])
    torch.sub(e[2], e[1], out=v[:, 2]), torch.sub(e[1], e[3], out=v[:, 3])
    return v.view(16, -1, c)


def winograd_output(m, bias, b, h, w):
    """(16, B*H/2*W/2, O) -> y (B, O, H, W) channels_last: A^T m A + bias, A^T = [[1,1,1,0],[0,1,-1,-1]]."""
    o = m.shape[-1]
    nh, nw = h // 2, w // 2
    m = m.view(4, 4, b, nh, nw, o)
    s = torch.empty(2, 4, b, nh, nw, o, dtype=m.dtype)
    torch.add(m[0], m[1], out=s[0]), s[0].add_(m[2])
    torch.sub(m[1], m[2], out=s[1]), s[1].sub_(m[3])
    y = torch.empty(b, nh, 2, nw, 2, o, dtype=m.dtype)
    yp = y.permute(2, 4, 0, 1, 3, 5)
    torch.add(s[:, 0], bias, out=yp[:, 0]), yp[:, 0].add_(s[:, 1]), yp[:, 0].add_(s[:, 2])
    torch.sub(s[:, 1], s[:, 3], out=yp[:, 1]), yp[:, 1].sub_(s[:, 2]), yp[:, 1].add_(bias)
    return y.view(b, h, w, o).permute(0, 3, 1, 2)


def winograd_conv3x3(x, weight, bias):
    b, _, h, w = x.shape
    return winograd_output(torch.bmm(winograd_input(x), winograd_kernel(weight)), bias, b, h, w)


# ---------------------------------------------------------------------------------------------
# NNPACK convolution with a backward (PyTorch's own falls back to oneDNN for both gradients)


class NNPackConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return torch._nnpack_spatial_convolution(x, weight, bias, [padding] * 2, [1, 1])

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        k, p = w.shape[-1], ctx.padding
        # input gradient = the full correlation of gy with the flipped, transposed kernel
        gx = torch._nnpack_spatial_convolution(gy.contiguous(), w.flip(2, 3).transpose(0, 1).contiguous(), None,
                                               [k - 1 - p] * 2, [1, 1])
        _, gw, gb = torch.ops.aten.convolution_backward(gy, x, w, [w.shape[0]], [1, 1], [p] * 2, [1, 1], False,
                                                        [0, 0], 1, [False, True, True])
        return gx, gw, gb, None


def _nnpack_conv_forward(self, x):
    if self.kernel_size == (3, 3) and self.stride == (1, 1) and self.padding == (1, 1):
        return NNPackConv.apply(x.contiguous(), self.weight, self.bias, 1)
    return self._conv_forward(x, self.weight, self.bias)


# ---------------------------------------------------------------------------------------------
# group norm (+ SiLU) on NHWC activations


def _group_stats(x, groups, eps):
    b, c, h, w = x.shape
    xv = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for channels_last x
    ones = torch.ones(b, 1, h * w, dtype=x.dtype)
    n = c // groups * h * w
    mean = torch.bmm(ones, xv).view(b, groups, -1).sum(-1, keepdim=True) / n
    sq = torch.bmm(ones, xv * xv).view(b, groups, -1).sum(-1, keepdim=True) / n
    return mean, (sq - mean * mean).clamp_min(0).add(eps).rsqrt()  # (B, G, 1) each


def _scale_shift(mean, rstd, weight, bias, groups):
    b = mean.shape[0]
    a = (weight.view(groups, -1) * rstd).view(b, -1)
    return a, bias.view(1, -1) - (mean * weight.view(groups, -1) * rstd).view(b, -1)


class GroupNormSiLUNHWC(torch.autograd.Function):
    """silu(group_norm(x)) (or group_norm(x) with act=False) for channels_last x."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps, act):
        mean, rstd = _group_stats(x, groups, eps)
        a, s = _scale_shift(mean, rstd, weight, bias, groups)
        z = torch.addcmul(s[:, :, None, None], x, a[:, :, None, None])
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.groups, ctx.act = groups, act
        return F.silu(z, inplace=True) if act else z

    @staticmethod
    def backward(ctx, gy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        g = ctx.groups
        b, c, h, w = x.shape
        a, s = _scale_shift(mean, rstd, weight, bias, g)
        dz = torch.ops.aten.silu_backward(gy, torch.addcmul(s[:, :, None, None], x, a[:, :, None, None])) \
            if ctx.act else gy
        dzv, xv = dz.permute(0, 2, 3, 1).reshape(b, h * w, c), x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        ones = torch.ones(b, 1, h * w, dtype=x.dtype)
        sdz = torch.bmm(ones, dzv).view(b, g, -1)
        sdzx = torch.bmm(ones, dzv * xv).view(b, g, -1)
        n = c // g * h * w
        wg = weight.view(1, g, -1)
        dxhat_xhat = (sdzx - mean * sdz) * rstd  # per channel: sum over pixels of dz * xhat
        m1 = (wg * sdz).sum(-1, keepdim=True) / n
        m2 = (wg * dxhat_xhat).sum(-1, keepdim=True) / n
        k_dz = (wg * rstd).reshape(b, c)
        k_x = (-rstd * rstd * m2).expand(b, g, c // g).reshape(b, c)
        k_1 = (-rstd * m1 + mean * rstd * rstd * m2).expand(b, g, c // g).reshape(b, c)
        dx = torch.addcmul(k_1[:, :, None, None], x, k_x[:, :, None, None])
        dx.addcmul_(dz, k_dz[:, :, None, None])
        return dx, dxhat_xhat.sum(0).reshape(c), sdz.sum(0).reshape(c), None, None, None


def norm_act(gn, x, act=True):
    if x.is_contiguous(memory_format=CL) and not x.is_contiguous():
        return GroupNormSiLUNHWC.apply(x, gn.weight, gn.bias, gn.num_groups, gn.eps, act)
    y = gn(x)
    return F.silu(y, inplace=True) if act else y


class NormNHWC(torch.nn.Module):
    def __init__(self, gn):
        super().__init__()
        self.gn = gn

    def forward(self, x):
        return norm_act(self.gn, x, act=False)


def _resblock_forward_nhwc_norm(self, x, temb):  # ResnetBlock.forward with the norms above
    h = self.conv1(norm_act(self.norm1, x))
    h += self.temb_proj(F.silu(temb))[:, :, None, None]
    h = self.conv2(self.dropout(norm_act(self.norm2, h)))
    h += self.nin_shortcut(x)
    return h


def make_variant(name, ours, theirs):
    if name in ("ours", "diffusers", "ours-cl"):
        return B.make_variant(name, ours, theirs)
    if name == "ours-compiled":
        return torch.compile(copy.deepcopy(ours))
    if name == "diffusers-compiled":
        return torch.compile(B.DiffusersAsModel(copy.deepcopy(theirs)))
    m = copy.deepcopy(ours)
    if name == "ours-cl-gn":
        m.channels_last = True
        for mod in list(m.modules()):
            if isinstance(mod, ResnetBlock):
                mod.forward = types.MethodType(_resblock_forward_nhwc_norm, mod)
            elif isinstance(mod, AttnBlock):
                mod.norm = NormNHWC(mod.norm)
        m.norm_out = NormNHWC(m.norm_out)  # UNet.forward applies the SiLU after it
    elif name == "ours-nnpack":
        m.channels_last = False
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.forward = types.MethodType(_nnpack_conv_forward, mod)
    else:
        raise ValueError(name)
    return m


VARIANTS = ["ours", "diffusers", "ours-cl", "ours-cl-gn", "ours-nnpack", "ours-compiled", "diffusers-compiled"]


# ---------------------------------------------------------------------------------------------


def ceiling(iters):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    out = {"sgemm_2048": 2 * 2048**3 / ms(lambda: a @ b, iters) / 1e6}
    for c, s in [(128, 32), (64, 16), (32, 32)]:
        x, w = torch.randn(32, c, s, s), torch.randn(c, c, 3, 3)
        xc = x.contiguous(memory_format=CL)
        flop = 2 * 32 * s * s * c * c * 9
        out[f"conv_{c}ch_{s}px_nchw"] = flop / ms(lambda: F.conv2d(x, w, padding=1), iters) / 1e6
        out[f"conv_{c}ch_{s}px_nhwc"] = flop / ms(lambda: F.conv2d(xc, w, padding=1), iters) / 1e6
    return out  # GFLOP/s


def per_layer(iters, layers):
    rows = []
    g = torch.Generator().manual_seed(0)
    for c, s, groups in layers:
        x = torch.randn(32, c, s, s, generator=g)
        w, bias = torch.randn(c, c, 3, 3, generator=g) * 0.1, torch.randn(c, generator=g)
        xc = x.contiguous(memory_format=CL)
        ref = F.conv2d(x, w, bias, padding=1)
        row = dict(channels=c, size=s, groups=groups)
        row["conv_nchw"] = ms(lambda: F.conv2d(x, w, bias, padding=1), iters)
        row["conv_nhwc"] = ms(lambda: F.conv2d(xc, w, bias, padding=1), iters)
        row["nnpack"] = ms(lambda: torch._nnpack_spatial_convolution(x, w, bias, [1, 1], [1, 1]), iters)
        row["nnpack_err"] = (torch._nnpack_spatial_convolution(x, w, bias, [1, 1], [1, 1]) - ref).abs().max().item()
        if s % 2 == 0:
            v, u = winograd_input(xc), winograd_kernel(w)
            row["winograd"] = ms(lambda: winograd_conv3x3(xc, w, bias), iters)
            row["winograd_gemm"] = ms(lambda: torch.bmm(v, u), iters)
            row["winograd_err"] = (winograd_conv3x3(xc, w, bias) - ref).abs().max().item()
        gn = torch.nn.GroupNorm(groups, c, eps=1e-6)
        with torch.no_grad():
            row["gn_silu_nchw"] = ms(lambda: F.silu(gn(x), inplace=True), iters)
            row["gn_silu_nhwc"] = ms(lambda: F.silu(gn(xc), inplace=True), iters)
            row["gn_silu_nhwc_own"] = ms(lambda: norm_act(gn, xc), iters)
            row["gn_own_err"] = (norm_act(gn, xc) - F.silu(gn(x))).abs().max().item()
        rows.append(row)
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def whole_net(configs, rounds, batch, warmup, variants=VARIANTS):
    diffusion = GaussianDiffusion(NoiseSchedule.linear(1000))
    out = {}
    for name in configs:
        ours, theirs, n_params, _ = B.build_pair(name)
        c = ours.config
        models = {v: make_variant(v, ours, theirs) for v in variants}
        x = torch.randn(3, c.in_channels, c.resolution, c.resolution, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([1, 500, 1000])
        rec = dict(parameters=n_params, max_abs_diff_vs_ours={})
        with torch.no_grad():
            ref = ours.eval()(x, t)
            for v in (v for v in variants if v not in ("ours", "diffusers")):
                rec["max_abs_diff_vs_ours"][v] = (models[v].eval()(x, t) - ref).abs().max().item()
        for wl in ("train", "sample"):
            fns = {}
            for v, m in models.items():
                train_step, sample_step = B.make_workloads(m, diffusion, batch, c, seed=1234)
                fns[v] = train_step if wl == "train" else sample_step
            runs, _ = B.bench_interleaved(fns, batch, 1 if wl == "train" else 3, warmup, rounds)
            med = {v: statistics.median(r) for v, r in runs.items()}
            rec[wl] = {v: dict(images_per_s=med[v], vs_diffusers=med[v] / med["diffusers"]) for v in variants}
            if "diffusers-compiled" in med:
                rec[wl]["ours-compiled"]["vs_diffusers_compiled"] = med["ours-compiled"] / med["diffusers-compiled"]
            print(f"[{name}] {wl}: " + ", ".join(f"{v} {rec[wl][v]['vs_diffusers']:.3f}x" for v in variants), flush=True)
        out[name] = rec
    return out


def _tag(command: str) -> str:
    words = command.split()
    return words[words.index("--tag") + 1] if "--tag" in words[:-1] else ""


def markdown(res):
    res = dict(res, variants=res.get("variants") or [v for v in VARIANTS if v in next(iter(res["nets"].values()))["train"]])
    tag = _tag(res["command"])
    L = [
        "## CPU: what else was tried (`bench_cpu_alternatives.py`" + (f", run `{tag}`" if tag else "") + ")",
        "",
        f"Run {res['date']} with `{res['command']}`; {res['threads']} thread(s), batch 32, float32; "
        f"load average at start {res['load_average_at_start']}, at end {res['load_average_at_end']}. "
        "None of these variants is in ddpm_lib; the script holds them.",
        "",
        "**The ceiling** (GFLOP/s): MKL's single-precision GEMM at 2048^3 runs at "
        f"{res['ceiling']['sgemm_2048']:.1f}; oneDNN's 3x3 convolutions at "
        + ", ".join(f"{k.replace('conv_', '').replace('_', ' ')} {v:.1f}" for k, v in res["ceiling"].items()
                    if k.startswith("conv")) + ". "
        "The convolutions that take 70 % of a step already run at this CPU's matrix-multiply rate, "
        "so a faster convolution has to do fewer multiply-adds.",
        "",
        "**Per layer**, forward ms at batch 32 (3x3 convolution C -> C at S x S; GroupNorm with G groups + SiLU):",
        "",
        "| C | S | G | oneDNN NCHW | oneDNN NHWC | NNPACK | Winograd F(2x2,3x3), eager | its GEMM alone | "
        "GN+SiLU NCHW | GN+SiLU NHWC (PyTorch) | GN+SiLU NHWC (own) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["layers"]:
        f = lambda k: f"{r[k]:.2f}" if k in r else "-"  # noqa: E731
        L.append(f"| {r['channels']} | {r['size']} | {r['groups']} | {f('conv_nchw')} | {f('conv_nhwc')} | {f('nnpack')} | "
                 f"{f('winograd')} | {f('winograd_gemm')} | {f('gn_silu_nchw')} | {f('gn_silu_nhwc')} | "
                 f"{f('gn_silu_nhwc_own')} |")
    errs = [r.get("winograd_err", 0) for r in res["layers"]]
    L += ["", f"Largest |difference| from oneDNN: NNPACK {max(r['nnpack_err'] for r in res['layers']):.1e}, "
              f"Winograd {max(errs):.1e}, own group norm {max(r['gn_own_err'] for r in res['layers']):.1e} "
              "(outputs of size about 1-10).", "",
          "**Whole network**, images/s relative to diffusers (median of interleaved rounds; train = forward + loss + "
          "backward + Adam, sample = one ancestral step):", "",
          "| config | workload | " + " | ".join(res["variants"]) + " |", "|---|---|" + "---:|" * len(res["variants"])]
    for name, rec in res["nets"].items():
        for wl in ("train", "sample"):
            L.append(f"| {name} | {wl} | " + " | ".join(f"{rec[wl][v]['vs_diffusers']:.3f}" for v in res["variants"]) + " |")
    if "diffusers-compiled" in res["variants"]:
        L += ["", "Both compiled: ours-compiled / diffusers-compiled = " + ", ".join(
            f"{name} {wl} {rec[wl]['ours-compiled']['vs_diffusers_compiled']:.3f}"
            for name, rec in res["nets"].items() for wl in ("train", "sample")) + "."]
    return "\n".join(L)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=B.DEFAULT_CONFIGS, choices=sorted(B.CONFIGS))
    p.add_argument("--quick", action="store_true", help="smoke run: fewer layers, cifar-micro, 2 rounds, batch 8")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--compile", action="store_true", help="also the torch.compile variants (slow to compile)")
    p.add_argument("--tag", default="", help="write results_cpu_alternatives_TAG.json and its own RESULTS.md "
                   "section instead (a run of other settings beside the main one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not torch._nnpack_available():  # also initializes NNPACK, which its convolution needs first
        raise SystemExit("this PyTorch build has no NNPACK")
    iters = 3 if args.quick else 15
    res = dict(date=time.strftime("%Y-%m-%d %H:%M %Z"), threads=torch.get_num_threads(),
               command="python " + " ".join(["benchmarks/bench_cpu_alternatives.py", *(argv if argv is not None else sys.argv[1:])]),
               machine=B.machine_info(), load_average_at_start=load_average())
    res["ceiling"] = ceiling(iters)
    print("GFLOP/s", {k: round(v, 1) for k, v in res["ceiling"].items()}, flush=True)
    res["layers"] = per_layer(iters, LAYERS[:2] if args.quick else LAYERS)
    res["variants"] = [v for v in VARIANTS if args.compile or not v.endswith("-compiled")]
    res["nets"] = whole_net(["cifar-micro"] if args.quick else args.configs, 2 if args.quick else args.rounds,
                            8 if args.quick else 32, 1 if args.quick else 2, res["variants"])
    res["load_average_at_end"] = load_average()
    print(markdown(res))
    if not args.no_write:
        suffix = f"_{args.tag}" if args.tag else ""
        (HERE / f"results_cpu_alternatives{suffix}.json").write_text(json.dumps(res, indent=1) + "\n")
        update_section("cpu-alternatives" + suffix.replace("_", "-"), markdown(res))
        print(f"wrote benchmarks/results_cpu_alternatives{suffix}.json and RESULTS.md")
    return res


if __name__ == "__main__":
    main()
