# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · The U-Net: residual blocks, attention and the time embedding
#
# Chapters 02-07 derived what the network has to predict: the noise $\epsilon$ in
# $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$, for every $t = 1, \dots, T$, trained with
# $L_\text{simple}$ (DDPM Eq. 14). This chapter opens the network itself, $\epsilon_\theta(x_t, t)$: the U-Net of
# DDPM (Ho et al. 2020, Sec. 4 and Appendix B), as `ddpm_lib.UNet` builds it block for block from the paper's code.
#
# **Learning goals.** After this chapter you can
# - say why DDPM uses *one* network for all $t$ (parameters shared across time) and how it is told $t$: the
#   Transformer's sinusoidal position embedding, written out and checked against `dl.timestep_embedding`;
# - write each building block as an equation (residual block with the time embedding added, GroupNorm,
#   dropout, self-attention, down- and upsampling) and check the library's block against it;
# - walk a 28×28 image through the network, block by block, and read off every shape and skip connection;
# - count the parameters of the paper's CIFAR-10 network (35.7 million), part by part, and of the
#   Fashion-MNIST presets the course trains.
#
# **CPU time:** about 10 s on a 2-core CPU (budget: 40 s): the network runs on a handful of images.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.course.widgets import time_embedding_explorer
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

# %% [markdown]
# ## 1. One network for every $t$
#
# The reverse process has one Gaussian kernel per step,
# $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$ for $t = 1, \dots, T$, and with the
# $\epsilon$-parameterization (DDPM Eq. 11) every mean is computed from one function,
# $$\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big).$$
# $T = 1000$ separate networks would be wasteful and would each see a thousandth of the training signal.
# DDPM instead shares the parameters across time (Sec. 4: "Parameters are shared across time, which is
# specified to the network using the Transformer sinusoidal position embedding"): one network
# $\epsilon_\theta$ takes $t$ as a second input, and Algorithm 1 trains it on a fresh uniform
# $t \sim \mathrm{Uniform}\{1, \dots, T\}$ at every example.
#
# Why give $t$ when $x_t$ carries traces of its own noise level? Because those traces are ambiguous (a grainy
# texture of fabric and a little noise look alike), while $t$ states exactly how much of $x_t$ is noise,
# $1 - \bar\alpha_t$ of its variance. In `ddpm_lib` every network is called as `model(x_t, t)` with `t` a
# LongTensor of the paper's $t \in \{1, \dots, T\}$, fed as is.

# %% [markdown]
# ## 2. The sinusoidal time embedding
#
# Vaswani et al. (2017, *Attention is all you need*, Sec. 3.5) encode a position $pos$ in a vector of width
# $d$ as
# $$PE(pos, 2i) = \sin\big(pos / 10000^{2i/d}\big), \qquad PE(pos, 2i + 1) = \cos\big(pos / 10000^{2i/d}\big).$$
# DDPM encodes the timestep $t$ the same way, in the form of its code (`get_timestep_embedding` in
# `diffusion_tf/nn.py`): with $h = d/2$ frequencies
# $$\omega_i = 10000^{-i/(h-1)} = \exp\!\Big(-\frac{\ln 10000}{h - 1}\, i\Big), \qquad i = 0, \dots, h - 1,$$
# $$\mathrm{emb}(t) = \big[\sin(t\omega_0), \dots, \sin(t\omega_{h-1}),\ \cos(t\omega_0), \dots, \cos(t\omega_{h-1})\big] \in \mathbb R^{d}.$$
# Two small differences from the Transformer: all sines come first and all cosines second (a fixed
# permutation of the coordinates, which the dense layer after it cannot tell from the interleaved order), and the
# exponent is $i/(h-1)$ rather than $2i/d = i/h$, so the slowest frequency is exactly $\omega_{h-1} = 1/10000$.
# The frequencies fall geometrically from $1$ (a period of $2\pi \approx 6$ steps) to $10^{-4}$ (a period of
# $2\pi \cdot 10^4$ steps, far longer than $T$): the fast pairs tell neighbouring $t$ apart, the slow ones say
# roughly where in $1..T$ we are.
#
# Each pair $(\sin t\omega_i, \cos t\omega_i)$ is a point on the unit circle, turned by the angle $k\omega_i$ when
# $t$ grows by $k$:
# $$\begin{pmatrix}\sin (t+k)\omega_i \\ \cos (t+k)\omega_i\end{pmatrix} =
# \begin{pmatrix}\cos k\omega_i & \sin k\omega_i \\ -\sin k\omega_i & \cos k\omega_i\end{pmatrix}
# \begin{pmatrix}\sin t\omega_i \\ \cos t\omega_i\end{pmatrix},$$
# so $\mathrm{emb}(t + k)$ is a fixed linear map of $\mathrm{emb}(t)$, the same for every $t$ (Vaswani et al.'s reason
# for sinusoids), and $\|\mathrm{emb}(t)\|^2 = h$ for every $t$. By $\sin a \sin b + \cos a \cos b = \cos(a - b)$,
# the dot product of two embeddings depends on $t - t'$ only:
# $\mathrm{emb}(t) \cdot \mathrm{emb}(t') = \sum_i \cos\big((t - t')\,\omega_i\big)$.
#
# The code: `dl.timestep_embedding(t, dim)`, in float32. We check it against the formula above written out in
# float64, for every $t = 1, \dots, 1000$ and the width $d = 64$ of the shipped network.

# %%
T, dim = 1000, 64
ts = torch.arange(1, T + 1)
emb = dl.timestep_embedding(ts, dim)  # (1000, 64), float32

h = dim // 2
i = torch.arange(h, dtype=torch.float64)
omega = 10000.0 ** (-i / (h - 1))  # w_i = 10000^(-i/(h-1))
angle = ts.double()[:, None] * omega[None]  # t w_i
formula = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)

diff = (emb.double() - formula).abs()
# float32 stores t w_i with a relative error of up to 2^-24, an absolute error of up to t * 2^-24 in the angle
resolution = (ts.double()[:, None] * 2.0**-24).expand(-1, h).repeat(1, 2)
print(f"dl.timestep_embedding vs the formula (float64), t = 1..{T}, d = {dim}: max |diff| {below(diff.max(), 1e-4)}; "
      f"for t <= 10: {below(diff[:10].max(), 1e-6)}")
ratio = (diff / resolution).max()
print(f"largest |diff| / (t 2^-24), in units of float32's rounding of the angle t w_i: {below(ratio, 2)} "
      f"(the only difference is float32 rounding)")

k = 7  # emb(t + k) as a rotation of emb(t), pair by pair
c, s = torch.cos(k * omega), torch.sin(k * omega)
sin_t, cos_t = formula[:-k, :h], formula[:-k, h:]
rotated = torch.cat([sin_t * c + cos_t * s, cos_t * c - sin_t * s], dim=1)
print(f"emb(t + {k}) = rotation of emb(t), pair by pair: max |diff| {below((rotated - formula[k:]).abs().max())}; "
      f"||emb(t)||^2 = {(emb.double() ** 2).sum(1).min():.4f} .. {(emb.double() ** 2).sum(1).max():.4f} (h = {h})")

# %% [markdown]
# The embedding as an image (left: one row per dimension, one column per $t$): the first rows (fast
# frequencies) flicker, the last ones hardly move over $1..T$. In the middle, the cosine similarity
# $\mathrm{emb}(t)\cdot\mathrm{emb}(t') / h$ between every pair of timesteps: high near the diagonal, falling with
# $|t - t'|$, and the same along every diagonal (a function of $t - t'$). Nearby timesteps look alike to the
# network, distant ones do not.
#
# The network does not use $\mathrm{emb}(t)$ directly: a two-layer MLP (`net.temb`, trained with everything
# else) turns it into the vector `temb` that the blocks read. On the right, the cosine similarity of the *learned*
# `temb` of the shipped Fashion-MNIST network (`dl.load_pretrained("fashion-mnist-unet")`, loaded here and used
# for the rest of the chapter): what training made of the sinusoids. It need not depend on $t - t'$ alone.
#
# **What the shipped network is.** `UNet.fashion_mnist("base")` (6.5M parameters) trained by Algorithm 1 for
# 240 s on one H200 GPU: 2,324 steps of batch 256, about 10 passes (epochs) over the 60,000 training images, as
# its checkpoint records (printed below). That is a short run, far from converged: good enough for the course's
# pictures, not a finished model. `python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --steps 2324`
# remakes it on a GPU (a larger `--steps` trains it further). On a CPU, add `--device cpu --no-compile`: the same
# 594,944 images take about 55 CPU-hours at the 3.0 images per CPU-second measured for this network
# (`benchmarks/model_size_cpu.json`), and `--resume` continues an interrupted run from its last checkpoint.

# %%
pre = dl.load_pretrained("fashion-mnist-unet")  # verified by sha256; the network in eval mode, on the CPU
net = pre.model
steps, batch = pre.config["step"], pre.config["train"]["batch_size"]
print(f"shipped checkpoint: {steps:,} steps of batch {batch} = {steps * batch:,} images "
      f"({steps * batch / 60_000:.1f} epochs), {pre.config['metrics']['train_seconds']:.0f} s on one "
      f"{pre.config['metrics']['device']}")


def temb_of(model, t):
    """The time embedding every residual block of ``model`` reads: MLP(emb(t))."""
    return model.temb(dl.timestep_embedding(t, model.config.ch))


with torch.no_grad():
    learned = temb_of(net, ts)  # (1000, 256)
learned_unit = learned / learned.norm(dim=1, keepdim=True)
learned_sim = learned_unit @ learned_unit.T
similarity = (emb @ emb.T) / h  # cosine similarity, since ||emb(t)||^2 = h
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
im = ax1.imshow(emb.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=(0.5, T + 0.5, dim - 0.5, -0.5),
                interpolation="nearest")
ax1.axhline(h - 0.5, color="k", lw=0.8)
ax1.set(xlabel="t", ylabel="dimension (sines 0-31, cosines 32-63)", title="emb(t), d = 64")
fig.colorbar(im, ax=ax1, fraction=0.04)
im2 = ax2.imshow(similarity, cmap="viridis", extent=(0.5, T + 0.5, T + 0.5, 0.5), vmin=-0.2, vmax=1)
ax2.set(xlabel="t'", ylabel="t", title="emb(t) . emb(t') / h")
fig.colorbar(im2, ax=ax2, fraction=0.04)
im3 = ax3.imshow(learned_sim, cmap="viridis", extent=(0.5, T + 0.5, T + 0.5, 0.5), vmin=-0.2, vmax=1)
ax3.set(xlabel="t'", ylabel="t", title="learned temb: cosine similarity")
fig.colorbar(im3, ax=ax3, fraction=0.04)
fig.tight_layout()
plt.show()
near = torch.tensor([similarity[t - 1, t].item() for t in (1, 500, 999)])
print(f"sinusoidal: similarity of t and t + 1: {', '.join(f'{v:.3f}' for v in near.tolist())} (at t = 1, 500, 999); "
      f"of t = 100 and t' = 900: {similarity[99, 899]:.3f}")
near_l = [learned_sim[t - 1, t].item() for t in (1, 500, 999)]
print(f"learned temb: similarity of t and t + 1: {', '.join(f'{v:.3f}' for v in near_l)} (at t = 1, 500, 999); "
      f"of t = 100 and t' = 900: {learned_sim[99, 899]:.3f}")

# %% [markdown]
# **Play with it.** Move $t$: the bars are $\mathrm{emb}(t)$ (sines left, cosines right); the curves are its
# similarity with every other $t'$, for the sinusoidal embedding and for the shipped network's learned `temb`.
# The fast frequencies change from one $t$ to the next; the slow ones move only over hundreds of steps. (The
# explorer is `ddpm_lib.course.widgets.time_embedding_explorer`; it takes any table of embeddings, one row per $t$.)

# %% tags=["nbval-ignore-output"]
# the widget only draws: emb (1000, 64) and the learned temb (1000, 256) are the tensors computed above
box = time_embedding_explorer(emb, learned, t=100, settings=(1, 100, 900))
box

# %% [markdown]
# Without a running kernel the widget cannot move; here are three of its settings, $t = 1$, $100$ and $900$.

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 3. The building blocks, as equations and as code
#
# DDPM's network "follows the backbone of PixelCNN++, which is a U-Net based on a Wide ResNet", with weight
# normalization replaced by group normalization; "diffusion time $t$ is specified by adding the Transformer
# sinusoidal position embedding into each residual block", with self-attention at the 16×16 resolution and
# dropout 0.1 on CIFAR-10 (Appendix B). `ddpm_lib.UNet` transcribes the paper's TensorFlow code
# (`diffusion_tf/models/unet.py`) module for module. We take the blocks out of the shipped Fashion-MNIST
# network (`dl.load_pretrained("fashion-mnist-unet")`, trained weights) and recompute each one from its equation
# with plain `torch.nn.functional` calls.
#
# **The time embedding enters once, at the top.** $\mathrm{temb} = W_2\,\mathrm{SiLU}(W_1\,\mathrm{emb}(t) + b_1) + b_2$,
# a two-layer MLP from width $d = $ `ch` to $4\,$`ch` ($\mathrm{SiLU}(z) = z\,\sigma(z)$, DDPM's "swish"). Every
# residual block then reads it.
#
# **GroupNorm** splits the $C$ channels of one example into $G$ groups and normalizes each group over its channels
# and all $H \times W$ positions: $\mathrm{GN}(x)_c = \gamma_c \frac{x_c - m_g}{\sqrt{v_g + 10^{-6}}} + b_c$ with $m_g, v_g$
# the mean and variance of group $g \ni c$. Unlike BatchNorm it uses no statistics of the batch, so a network
# trained on batches of 128 samples one image at a time with the same function.
#
# **The residual block** (`ResnetBlock`), with the time embedding added as a per-channel bias in the middle:
# $$h = \mathrm{Conv}_{3\times3}\big(\mathrm{SiLU}(\mathrm{GN}(x))\big) + W_t\,\mathrm{SiLU}(\mathrm{temb}),
# \qquad \mathrm{out} = \mathrm{skip}(x) + \mathrm{Conv}_{3\times3}\big(\mathrm{Dropout}(\mathrm{SiLU}(\mathrm{GN}(h)))\big),$$
# where $\mathrm{skip}$ is the identity, or a 1×1 convolution when the block changes the number of channels.

# %%
cfg = net.config
arch = dict(ch=cfg.ch, ch_mult=cfg.ch_mult, num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions,
            groups=cfg.groups, dropout=cfg.dropout)
print(f"shipped network: UNet {arch}, {dl.count_parameters(net):,} parameters")

g = torch.Generator().manual_seed(0)


def resblock_by_hand(block, x, temb, groups):
    h = F.conv2d(F.silu(F.group_norm(x, groups, block.norm1.weight, block.norm1.bias, eps=1e-6)),
                 block.conv1.weight, block.conv1.bias, padding=1)
    h = h + F.linear(F.silu(temb), block.temb_proj.weight, block.temb_proj.bias)[:, :, None, None]
    h = F.silu(F.group_norm(h, groups, block.norm2.weight, block.norm2.bias, eps=1e-6))  # dropout: off in eval
    h = F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=1)
    skip = x if isinstance(block.nin_shortcut, torch.nn.Identity) else F.conv2d(
        x, block.nin_shortcut.weight, block.nin_shortcut.bias)
    return skip + h


block = net.down[1].block[0]  # 64 -> 128 channels at 14x14: it has a 1x1 skip convolution
x = torch.randn(2, 64, 14, 14, generator=g)
t_pair = torch.tensor([10, 900])
with torch.no_grad():
    temb = temb_of(net, t_pair)
    ours, by_hand = block(x, temb), resblock_by_hand(block, x, temb, cfg.groups)
    print(f"ResnetBlock vs its equation (GroupNorm written out): max |diff| {below((ours - by_hand).abs().max(), 1e-5)} "
          f"(output size {ours.abs().max():.1f})")
    # the same x at two timesteps: the block's output depends on t through W_t SiLU(temb)
    same_x = x[:1].expand(2, -1, -1, -1)
    out_t = block(same_x, temb)
    change = (out_t[0] - out_t[1]).norm() / out_t[0].norm()
    print(f"trained block, same input at t = 10 and t = 900: outputs differ by {change:.1%} (relative norm)")

# %% [markdown]
# **Every block starts as the identity.** DDPM initializes the last convolution of every residual block, the
# output projection of every attention block and the network's final convolution to zero (`init_scale=0.` in its
# code; `UNet._init_weights` here). A fresh residual block is then $\mathrm{out} = \mathrm{skip}(x)$, whatever $t$,
# and a fresh network outputs $\epsilon_\theta = 0$ everywhere, so training starts from the loss
# $\mathbb E\|\epsilon\|^2 / D = 1$ and grows the blocks' contributions from there. The time dependence, too, is
# learned: it is not there at initialization.

# %%
torch.manual_seed(0)  # the initialization draws from the global generator
fresh = dl.UNet.fashion_mnist("base")
with torch.no_grad():
    fb = fresh.down[1].block[0]
    fresh_temb = temb_of(fresh, t_pair)
    out_fresh = fb(same_x, fresh_temb)
    skip_only = fb.nin_shortcut(same_x)
    x_t = torch.randn(3, 1, 28, 28, generator=g)
    eps_fresh = fresh(x_t, torch.tensor([1, 500, 1000]))
print(f"fresh block: output == skip(x): {torch.equal(out_fresh, skip_only)}; t = 10 vs t = 900 differ by "
      f"{(out_fresh[0] - out_fresh[1]).norm() / out_fresh[0].norm():.1%}")
print(f"fresh UNet.fashion_mnist('base'): max |eps_theta(x_t, t)| = {eps_fresh.abs().max():.1f} "
      f"for t = 1, 500, 1000")

# %% [markdown]
# **Dropout** (rate $p = 0.1$ in the shipped network and on CIFAR-10) zeroes each activation with probability $p$
# during training and scales the survivors by $1/(1-p)$, so that the expected activation is unchanged; at sampling
# (`model.eval()`) it is off and the network is deterministic. A check of both statements:

# %%
ones = torch.ones(200_000)
torch.manual_seed(1)
dropped = F.dropout(ones, p=0.1, training=True)
frac = (dropped == 0).float().mean().item()
se = math.sqrt(0.1 * 0.9 / ones.numel())
print(f"dropout p = 0.1: fraction zeroed {frac:.4f} (expected 0.1, 3 sigma {3 * se:.4f}); survivors = "
      f"{dropped[dropped > 0].unique().item():.4f} (1 / 0.9 = {1 / 0.9:.4f}); mean {dropped.mean():.4f}")
with torch.no_grad():
    x_t = torch.randn(2, 1, 28, 28, generator=g)
    t2 = torch.tensor([300, 300])
    a, b = net(x_t, t2), net(x_t, t2)  # eval mode: dropout off
    net.train()
    c_ = net(x_t, t2)
    net.eval()
print(f"eval mode twice: identical {torch.equal(a, b)}; train mode (dropout on) differs from eval by "
      f"{(c_ - a).norm() / a.norm():.1%}")

# %% [markdown]
# **Self-attention** (`AttnBlock`, one head). The $H \times W$ positions become $N = HW$ tokens of width $C$;
# after a GroupNorm, 1×1 convolutions give queries, keys and values $Q, K, V \in \mathbb R^{N\times C}$, and
# $$\mathrm{out} = x + W_o\, \mathrm{softmax}\!\Big(\frac{QK^\top}{\sqrt C}\Big) V ,$$
# the softmax over the keys (each row sums to 1). Every position sees every other one, which a stack of 3×3
# convolutions only achieves after many layers. The library computes it with
# `torch.nn.functional.scaled_dot_product_attention` (whose default scale is $1/\sqrt C$) on the fused $Q, K, V$
# projections; written out with an explicit softmax:

# %%
attn = net.down[1].attn[0]  # attention at 14x14 in the shipped network (128 channels)
x = torch.randn(2, 128, 14, 14, generator=g)
with torch.no_grad():
    hn = F.group_norm(x, cfg.groups, attn.norm.weight, attn.norm.bias, eps=1e-6)
    q, k_, v = (F.conv2d(hn, conv.weight, conv.bias).flatten(2).transpose(1, 2) for conv in (attn.q, attn.k, attn.v))
    weights = torch.softmax(q @ k_.transpose(1, 2) / math.sqrt(128), dim=-1)  # (B, N, N), rows sum to 1
    mixed = (weights @ v).transpose(1, 2).reshape(2, 128, 14, 14)
    by_hand = x + F.conv2d(mixed, attn.proj_out.weight, attn.proj_out.bias)
    ours = attn(x)
print(f"AttnBlock vs softmax(Q K^T / sqrt(C)) V written out: max |diff| {below((ours - by_hand).abs().max(), 1e-5)} "
      f"(output size {ours.abs().max():.1f}); {weights.shape[1]} tokens, rows of the attention sum to "
      f"{weights.sum(-1).min():.4f} .. {weights.sum(-1).max():.4f}")

# %% [markdown]
# **Down- and upsampling.** `Downsample` is a 3×3 convolution with stride 2 (padded one pixel at the right and
# bottom, as TensorFlow's "SAME" padding does); `Upsample` repeats every pixel 2×2 (nearest neighbour) and then
# applies a 3×3 convolution. The library computes the latter without building the upsampled tensor (four 2×2
# "phase" convolutions whose kernels are sums of the 3×3 taps), the same function up to rounding:

# %%
up = net.up[1].upsample
with torch.no_grad():
    z = torch.randn(2, 128, 7, 7, generator=g)
    ours = up(z)
    by_hand = F.conv2d(F.interpolate(z, scale_factor=2, mode="nearest"), up.conv.weight, up.conv.bias, padding=1)
    down = net.down[0].downsample
    y = torch.randn(2, 64, 28, 28, generator=g)
    d_ours, d_hand = down(y), F.conv2d(F.pad(y, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
print(f"Upsample vs conv3x3(nearest 2x): max |diff| {below((ours - by_hand).abs().max(), 1e-4)} (output size "
      f"{ours.abs().max():.1f}); Downsample vs stride-2 conv: {below((d_ours - d_hand).abs().max(), 1e-5)}; "
      f"shapes {tuple(z.shape[2:])} -> {tuple(ours.shape[2:])}, {tuple(y.shape[2:])} -> {tuple(d_ours.shape[2:])}")

# %% [markdown]
# ## 4. A shape walk through the network
#
# The U-Net has a *down* path (resolution halved after each level but the last), a *middle* (residual block,
# attention, residual block at the lowest resolution) and an *up* path that mirrors the down path. Every
# activation of the down path is kept and handed to the up path, which concatenates it with its own input
# before each residual block: that is the "U" and its skip connections. Each up level has one residual block more
# than a down level (`num_res_blocks + 1`), one for every saved activation.
#
# Forward hooks print each block's input and output shapes for one 28×28 image through the shipped Fashion-MNIST
# network (`UNet.fashion_mnist("base")`: `ch` = 64, channel multipliers (1, 2, 2), two residual blocks per level,
# attention at 14×14). Watch the input channels of the up blocks: their own channels plus a skip's.

# %%
KINDS = {"ResnetBlock", "AttnBlock", "Downsample", "Upsample"}
walk = []


def record(name):
    def hook(module, inputs, output):
        walk.append((name, type(module).__name__, tuple(inputs[0].shape), tuple(output.shape)))
    return hook


handles = [m.register_forward_hook(record(name)) for name, m in net.named_modules()
           if type(m).__name__ in KINDS or name in ("temb", "conv_in", "norm_out", "conv_out")]
with torch.no_grad():
    out = net(torch.randn(1, 1, 28, 28, generator=g), torch.tensor([500]))
for hd in handles:
    hd.remove()

print(f"{'module':<19}{'kind':<13}{'input':<18}output")
for name, kind, shape_in, shape_out in walk:
    note = "   <- concatenated with a skip" if name.startswith("up.") and kind == "ResnetBlock" else ""
    print(f"{name:<19}{kind:<13}{str(shape_in):<18}{str(shape_out)}{note}")
n_res = sum(k == "ResnetBlock" for _, k, _, _ in walk)
n_attn = sum(k == "AttnBlock" for _, k, _, _ in walk)
print(f"\n{n_res} residual blocks (each reads temb), {n_attn} attention blocks; output {tuple(out.shape)} = input shape")

# %% [markdown]
# Three things to read off the walk: the time embedding (width 256) is computed once and every residual block
# reads it; the resolution goes 28 → 14 → 7 and back, so a pixel of the 7×7 maps sees the whole image; and the
# output has the input's shape, one predicted noise value per pixel.
#
# ## 5. How many parameters: the paper's CIFAR-10 network and the Fashion-MNIST presets
#
# The paper's CIFAR-10 network (Appendix B: "Our CIFAR10 model has 35.7 million parameters") has `ch` = 128,
# multipliers (1, 2, 2, 2) over the resolutions 32, 16, 8, 4, two residual blocks per level, attention at 16×16,
# dropout 0.1 and GroupNorm with 32 groups. `dl.UNet.ddpm_cifar10()` builds it; we build it on PyTorch's "meta"
# device (shapes only, no memory, no time) and count, part by part.

# %%
with torch.device("meta"):
    cifar = dl.UNet.ddpm_cifar10()
cc = cifar.config
parts = [("time embedding MLP", [cifar.temb]), ("conv_in", [cifar.conv_in])]
parts += [(f"down level {i} ({r}x{r})", [cifar.down[i]]) for i, r in enumerate(cc.level_resolutions)]
parts += [("middle (res, attn, res)", [cifar.mid])]
parts += [(f"up level {i} ({r}x{r})", [cifar.up[i]]) for i, r in enumerate(cc.level_resolutions)]
parts += [("norm_out + conv_out", [cifar.norm_out, cifar.conv_out])]
total = dl.count_parameters(cifar)
print(f"UNet.ddpm_cifar10(): ch = {cc.ch}, ch_mult = {cc.ch_mult}, num_res_blocks = {cc.num_res_blocks}, "
      f"attention at {cc.attn_resolutions}, dropout {cc.dropout}, {cc.groups} groups")
print(f"{'part':<28}{'parameters':>12}{'share':>8}")
summed = 0
for label, mods in parts:
    n = sum(dl.count_parameters(m) for m in mods)
    summed += n
    print(f"{label:<28}{n:>12,}{n / total:>8.1%}")
print(f"{'total':<28}{total:>12,}")
by_kind = {}
for m in cifar.modules():
    kind = type(m).__name__
    if kind in KINDS:
        by_kind[kind] = by_kind.get(kind, 0) + dl.count_parameters(m)
print("by kind: " + ", ".join(f"{k} {v:,} ({v / total:.1%})" for k, v in by_kind.items()))
print(f"parts add up to the total: {summed == total}; equals 35,746,307: {total == 35_746_307}; "
      f"in millions {total / 1e6:.1f} (the paper: 35.7)")

# %% [markdown]
# The up path holds about twice the down path's parameters: it has three residual blocks per level instead of two,
# and each of them reads its input concatenated with a skip (more input channels for its first convolution).
# Most parameters sit in the 3×3 convolutions of the residual blocks; attention is a small share.
#
# The course trains smaller networks for 28×28×1 Fashion-MNIST: three levels (28, 14, 7) and one of three
# widths, `dl.UNet.fashion_mnist(size)`. Their counts, and which one the shipped checkpoint holds (read from it):

# %%
print(f"{'preset':<8}{'ch':>4}  {'ch_mult':<11}{'res blocks':>10}  {'attention':<11}{'groups':>6}{'parameters':>12}")
shipped_args = {k: v for k, v in pre.config["model_args"].items()}
for size in ("tiny", "small", "base"):
    with torch.device("meta"):
        m = dl.UNet.fashion_mnist(size)
    c = m.config
    is_shipped = all(shipped_args.get(k) == (list(v) if isinstance(v, tuple) else v)
                     for k, v in dl.UNet.FASHION_MNIST_SIZES[size].items())
    print(f"{size:<8}{c.ch:>4}  {str(c.ch_mult):<11}{c.num_res_blocks:>10}  {str(c.attn_resolutions):<11}"
          f"{c.groups:>6}{dl.count_parameters(m):>12,}{'   <- the shipped network' if is_shipped else ''}")

# %% [markdown]
# ## 6. Is the network translation-equivariant?
#
# A convolution commutes with shifts: shifting the input shifts the output, away from the borders. One might hope
# the whole U-Net does too. It does not, and the reasons are in its design: zero padding at the borders tells
# every layer where the edge is; at the 7×7 resolution every position is within three pixels of an edge; the
# stride-2 convolutions commute only with shifts by multiples of their stride; and Fashion-MNIST's objects are
# centred, so the network has every reason to use absolute position. We measure it on the shipped network: shift a
# noisy test image $x_t$ (circularly, by $s$ pixels down and right) and compare the prediction for the shifted input
# with the shifted prediction, on the central 16×16 pixels. A single 3×3 convolution (the network's first layer)
# is the control.

# %%
x_test, _ = dl.fashion_mnist("test")
x0 = x_test[:4]
t4 = torch.full((4,), 100)
x_t = pre.diffusion.q_sample(x0, t4, torch.randn(x0.shape, generator=g))
inner = (Ellipsis, slice(6, 22), slice(6, 22))


def shift(z, s):
    return torch.roll(z, shifts=(s, s), dims=(2, 3))


def rel_err(a, b):
    return ((a - b)[inner].norm() / b[inner].norm()).item()


with torch.no_grad():
    eps_pred = net(x_t, t4)
    conv0 = net.conv_in(x_t)
    for s_ in (1, 4):
        net_err = rel_err(net(shift(x_t, s_), t4), shift(eps_pred, s_))
        conv_err = rel_err(net.conv_in(shift(x_t, s_)), shift(conv0, s_))
        print(f"shift by {s_}: conv_in alone {below(conv_err, 1e-6)}, the whole U-Net {net_err:.1e} "
              f"(relative difference on the central 16x16, t = 100); equivariant to 1e-3: {net_err < 1e-3}")

# %% [markdown]
# The first convolution is equivariant up to float rounding; the U-Net's prediction changes by orders of magnitude
# more when the image moves, whether by one pixel or by four (a multiple of both strides). It is not
# translation-equivariant, and nothing in its training asks it to be.
#
# ## 7. Exercises
#
# **Exercise 8.1 (the sinusoidal time embedding).** Write `timestep_embedding(t, dim)`: for a LongTensor `t` of
# shape (B,) holding the paper's timesteps and an even width `dim`, return the (B, dim) float tensor
# $$\mathrm{emb}(t) = \big[\sin(t\omega_0), \dots, \sin(t\omega_{h-1}), \cos(t\omega_0), \dots, \cos(t\omega_{h-1})\big],
# \qquad \omega_i = 10000^{-i/(h-1)},\ h = \mathrm{dim}/2 .$$
# `checks.check("timestep_embedding", fn)` compares it with the formula at several $t$ and two widths, and names
# the usual slips (swapped halves, the Transformer's interleaved layout or its exponent $i/h$, growing
# frequencies, a wrong base, $t - 1$).


# %% tags=["solution"]
def timestep_embedding(t, dim):
    """DDPM's sinusoidal embedding: t (B,) -> (B, dim), sines then cosines, w_i = 10000^(-i/(h-1))."""
    # BEGIN SOLUTION
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    # END SOLUTION


# %%
checks.check("timestep_embedding", timestep_embedding)


# %% [markdown]
# What a failure looks like: the Transformer paper's layout, sine and cosine interleaved.

# %%
def interleaved(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1))
    angles = t.float()[:, None] * freqs[None]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=2).reshape(len(t), dim)


checks.check("timestep_embedding", interleaved)

# %% [markdown]
# **Exercise 8.2 (derive: the size of a residual block).** Section 5 counted parameters by asking PyTorch. Derive
# the count yourself, from the residual block's equation in section 3: write `resnet_block_parameters(in_ch,
# out_ch, temb_ch)`, the number of trainable parameters of one `ResnetBlock` from `in_ch` to `out_ch` channels
# that reads a time embedding of width `temb_ch`. Count every weight and bias of each piece the equation names: the
# two GroupNorms (a scale and a shift per channel), the two 3×3 convolutions, the dense layer $W_t$ applied to
# $\mathrm{SiLU}(\mathrm{temb})$, and $\mathrm{skip}$. `checks.check("resnet_block_parameters", fn)` compares your count
# with `dl.count_parameters` of the library's block at five shapes and names the piece you missed.


# %% tags=["solution"]
def resnet_block_parameters(in_ch, out_ch, temb_ch):
    """Trainable parameters of DDPM's residual block in_ch -> out_ch reading a temb of width temb_ch."""
    # BEGIN SOLUTION
    norms = 2 * in_ch + 2 * out_ch  # GroupNorm: a scale and a shift per channel, twice
    convs = (9 * in_ch * out_ch + out_ch) + (9 * out_ch * out_ch + out_ch)  # conv1, conv2 (weights + biases)
    temb_proj = temb_ch * out_ch + out_ch  # W_t and its bias
    skip = in_ch * out_ch + out_ch if in_ch != out_ch else 0  # 1x1 convolution, or the identity
    return norms + convs + temb_proj + skip
    # END SOLUTION


# %%
checks.check("resnet_block_parameters", resnet_block_parameters)

# %% [markdown]
# ## Summary
#
# - DDPM trains **one** network $\epsilon_\theta(x_t, t)$ for all $T$ steps (parameters shared across time) and
#   tells it $t$ through the Transformer's **sinusoidal embedding**: $h$ sine/cosine pairs with frequencies from
#   $1$ down to $10^{-4}$, sines first, exponent $i/(h-1)$ (checked against `dl.timestep_embedding` to float32
#   rounding). A two-layer MLP turns it into `temb`, which every residual block adds as a per-channel bias.
# - The blocks, each checked against its equation: **residual blocks** (GroupNorm, SiLU, 3×3 convolutions,
#   dropout, the time embedding added in the middle, a skip connection), **GroupNorm** (statistics per example,
#   not per batch), **single-head self-attention** $\mathrm{softmax}(QK^\top/\sqrt C)V$ at one resolution,
#   stride-2 **downsampling** and nearest-neighbour **upsampling** followed by a convolution. Zero-initialized
#   output layers make every fresh block an identity and the fresh network predict $\epsilon_\theta = 0$.
# - The U-Net's down path saves every activation and its up path concatenates them back (one more residual block
#   per level); the output has the input's shape.
# - The paper's CIFAR-10 network has 35,746,307 parameters (35.7M), about twice as many in the up path as in the
#   down path; the Fashion-MNIST presets tiny, small and base are 0.28M, 1.6M and 6.5M.
# - Measured, not assumed: the network is not translation-equivariant.
#
# **Next:** chapter 09 trains this network with Algorithm 1 on Fashion-MNIST, live on the CPU with the tiny
# preset, and loads the shipped one: trained for 240 s on one H200 (2,324 steps of batch 256, about 10 epochs), far
# from converged.
