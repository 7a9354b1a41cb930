# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · The discretized decoder and the bound in bits per dimension
#
# Chapters 04 and 06 turned every middle term $L_{t-1}$ of DDPM's bound into a KL divergence between
# Gaussians. Two ends remain: the last reverse step $p_\theta(x_0 \mid x_1)$, which must put
# probability on *8-bit pixel values*, and the bookkeeping that turns the whole bound
# $L = L_T + \sum_{t=2}^{T} L_{t-1} + L_0$ into *bits per dimension*, the number papers report.
#
# **Learning goals.** After this chapter you can
# - map 8-bit data $\{0, \dots, 255\}$ to $[-1, 1]$ and say which interval each value owns;
# - derive DDPM's discretized decoder (Eq. 13) and show that its 256 probabilities sum to 1;
# - explain why the last sampling step is noiseless;
# - compute the bound term by term in bits per dimension, check it on Gaussian data (known in closed
#   form), and estimate it without bias with far fewer than $T$ network calls;
# - read the bound as a code: a rate plus a distortion.
#
# **Reading time:** about an hour. **CPU time:** about 20 s on a 2-core CPU, mostly 100 passes of the U-Net
# (budget: 55 s).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.course.widgets.decoder import decoder_explorer
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

LN2 = math.log(2.0)

# %% [markdown]
# ## The idea in one picture
#
# The bound of chapters 02-06 is a *code length*: the average number of bits needed to send an image to a receiver
# who holds the same model. The path $x_T, \dots, x_1$, each step coded with the model's reverse step, costs
# $L_T + \dots + L_1$ bits: the **rate**. The receiver then holds $x_1$, the image under about one grey level of
# noise, and $L_0 = -\log p_\theta(x_0 \mid x_1)$ pays for the missing detail: the **distortion** (DDPM Sec. 4.3). For
# $L_0$ to count bits, $p_\theta(x_0 \mid x_1)$ must put *probability* on the 256 pixel values: the *discretized
# decoder* (left) gives each value a Gaussian's mass over its interval. Right: rate and distortion in bits per
# dimension (section 4), for DDPM's CIFAR-10 model (paper) and the course's Fashion-MNIST U-Net (8 test images).

# %%
p = dl.load_pretrained("fashion-mnist-unet")  # the shipped checkpoint; its config holds the diffusion settings
grid = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1  # the 256 values x_k = 2k/255 - 1 (section 1)
mu_pic, sd_pic, k_pic = grid[160] + 0.004, 0.01, torch.arange(156, 165)
P_pic = dl.discretized_gaussian_probs(mu_pic, torch.tensor(math.log(sd_pic), dtype=torch.float64))[k_pic]
xs = torch.linspace(grid[155].item(), grid[165].item(), 400, dtype=torch.float64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.4), width_ratios=(1, 1.3))
ax1.fill_between(xs, torch.exp(-0.5 * ((xs - mu_pic) / sd_pic) ** 2) / (sd_pic * math.sqrt(2 * math.pi)), color="0.85",
                 label=r"density of $x$ under $\mathcal{N}(\mu_\theta, \sigma_1^2)$")
ax1.bar(grid[k_pic], P_pic / (2 / 255), width=2 / 255, fill=False, edgecolor="C0", label=r"$P(k)$ / bin width")
ax1.set(xlabel=r"$x_0$ (neighbouring grey levels)", ylabel="density", title="the decoder: mass on each bin")
ax1.legend(loc="upper left", bbox_to_anchor=(0, -0.28), ncol=2, frameon=False)
stored = (p.entry.get("metrics") or {}).get("bits_per_dim_test") or {}
rows = [("DDPM, CIFAR-10\n(paper)", 1.78, 1.97)]
if stored:
    rows.append(("this U-Net,\nFashion-MNIST", stored["L_T"] + stored["sum_L_t_minus_1"], stored["L_0"]))
for i, (name, rate, dist) in enumerate(rows):
    ax2.barh(i, rate, color="C0", label="rate $L_T + \\dots + L_1$" if i == 0 else None)
    ax2.barh(i, dist, left=rate, color="C3", label="distortion $L_0$" if i == 0 else None)
    ax2.text(rate + dist + 0.05, i, f"{rate:.2f} + {dist:.2f} = {rate + dist:.2f}", va="center")
ax2.set(yticks=range(len(rows)), yticklabels=[r[0] for r in rows], xlim=(0, 5.6), xlabel="bits/dim", ylim=(-0.6, 1.9),
        title="the bound as rate + distortion")
ax2.legend(loc="upper right", ncol=2, frameon=False)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 1. From $\{0, \dots, 255\}$ to $[-1, 1]$
#
# DDPM (Sec. 3.3) assumes image data are integers $k \in \{0, 1, \dots, 255\}$ scaled linearly to
# $[-1, 1]$:
# $$x = \frac{k}{127.5} - 1 = \frac{2k}{255} - 1, \qquad k = 0 \mapsto -1, \quad k = 255 \mapsto +1 .$$
# Neighbouring values lie $2/255$ apart, so each value $x$ owns the interval (its *bin*)
# $[x - 1/255,\; x + 1/255]$, and the bins of neighbours touch: $x_k + 1/255 = x_{k+1} - 1/255$.
# The reverse process works with real numbers; only its last step comes back to this grid.
# `dl.from_uint8` and `dl.to_uint8` convert both ways (the second rounds to the nearest grid value
# and clips to $[0, 255]$).

# %%
x_test, y_test = dl.fashion_mnist("test", download=False)  # (10000, 1, 28, 28) in [-1, 1], the shipped test split
k = dl.to_uint8(x_test)
print(f"test images: {tuple(x_test.shape)}, values in [{x_test.min().item():.0f}, {x_test.max().item():.0f}]")
print(f"round trip uint8 -> [-1, 1] -> uint8 exact: {torch.equal(dl.to_uint8(dl.from_uint8(k)), k)}; "
      f"every value on the grid: {torch.equal(dl.from_uint8(k), x_test)}; from_uint8 (float32) vs 2k/255 - 1: "
      f"max |diff| {below((dl.from_uint8(torch.arange(256, dtype=torch.uint8)).double() - grid).abs().max(), 1e-7)}")
print(f"grid step {(grid[1] - grid[0]).item():.6f} = 2/255 = {2 / 255:.6f}; "
      f"bins touch: max |(x_k + 1/255) - (x_(k+1) - 1/255)| {below((grid[:-1] + 1 / 255 - (grid[1:] - 1 / 255)).abs().max(), 1e-15)}")
print(f"pixels at the edges: {(k == 0).double().mean().item():.1%} are 0 (x = -1, the background), "
      f"{(k == 255).double().mean().item():.2%} are 255 (x = +1)")

# %% [markdown]
# Half of all Fashion-MNIST pixels sit exactly at $x = -1$, the black background, so what the decoder
# does at the edges matters for every image.
#
# ## 2. The discretized decoder (DDPM Eq. 13)
#
# **Derivation.** Like every other step, the last one, $p_\theta(x_0 \mid x_1)$, could be the density
# $\mathcal N(x_0; \mu_\theta(x_1, 1), \sigma_1^2 I)$. But $x_0$ is discrete: a density at grid points is not a
# probability, and it grows without bound as $\sigma_1$ shrinks, so a "likelihood" built from it says nothing
# about 8-bit images. DDPM instead gives each of the $D$ coordinates (channel, row, column) the Gaussian's
# *mass on its bin*:
# $$p_\theta(x_0 \mid x_1) = \prod_{i=1}^{D} \int_{\delta_-(x_0^i)}^{\delta_+(x_0^i)}
#   \mathcal N\!\left(x;\, \mu_\theta^i(x_1, 1),\, \sigma_1^2\right) dx, \qquad
# \delta_+(x) = \begin{cases} +\infty & x = 1 \\ x + \tfrac{1}{255} & x < 1 \end{cases}, \quad
# \delta_-(x) = \begin{cases} -\infty & x = -1 \\ x - \tfrac{1}{255} & x > -1 \end{cases}
# \qquad \text{(DDPM Eq. 13)}.$$
# The coordinates are independent given $x_1$ (diagonal covariance), so the probability is a product
# and its log a sum. With $\Phi$ the standard normal CDF and
# $\mu, \sigma$ one coordinate's mean and standard deviation, the probability of value $x_k$ is
# $$P(k) = \Phi\!\left(\frac{\delta_+(x_k) - \mu}{\sigma}\right) - \Phi\!\left(\frac{\delta_-(x_k) - \mu}{\sigma}\right),
# \qquad \Phi(+\infty) = 1,\ \Phi(-\infty) = 0 .$$
#
# **Why the 256 probabilities sum to 1.** Write $b_k = x_k + 1/255$ for $k = 0, \dots, 254$; then
# $\delta_-(x_k) = b_{k-1}$ for $k \ge 1$ (the bins touch), and the sum telescopes:
# $$\sum_{k=0}^{255} P(k) = \Phi(b_0') + \sum_{k=1}^{254}\big[\Phi(b_k') - \Phi(b_{k-1}')\big] + 1 - \Phi(b_{254}') = 1,
# \qquad b_k' = \frac{b_k - \mu}{\sigma}.$$
# The open edge bins make this work: the first bin collects all the mass below $-1 + 1/255$, the last
# all the mass above $1 - 1/255$. Closed edge bins would lose the mass outside $[-1 - 1/255, 1 + 1/255]$,
# which is large when $\mu$ sits near an edge, as for every background pixel. Sampling from this decoder
# is exactly: draw $x \sim \mathcal N(\mu, \sigma^2)$, round to the nearest grid value, clip to $[-1, 1]$.
#
# **In code.** `dl.discretized_gaussian_log_likelihood(x, mean, log_scale)` is $\log P$ elementwise
# (`log_scale` $= \log \sigma$), computed in log space so that far tails do not underflow;
# `dl.discretized_gaussian_probs(mean, log_scale)` returns all 256 probabilities. The checks: the sum, and
# an integration of the density over each bin by Simpson's rule (parabolas through equally spaced points;
# 256 sub-intervals per bin, the open edge bins out to 14 standard deviations).

# %%
settings = [(0.3, 0.1), (-0.99, 0.01), (1.05, 0.05), (0.0, 1.0), (0.5, 0.001), (-1.3, 0.2), (0.2, 3.0)]
means = torch.tensor([m for m, _ in settings], dtype=torch.float64)
sigmas = torch.tensor([s for _, s in settings], dtype=torch.float64)
P = dl.discretized_gaussian_probs(means, sigmas.log())  # (settings, 256)


def simpson(f, a, b, n):
    """Simpson's rule for f on [a, b] with n (even) sub-intervals, vectorized over a and b."""
    u = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    x = a[..., None] + (b - a)[..., None] * u
    w = torch.ones(n + 1, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return (f(x) * w).sum(-1) * (b - a) / (3 * n)


P_quad = torch.empty_like(P)
for j, (m, s) in enumerate(settings):
    density = lambda x: torch.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))  # noqa: E731
    lo, hi = grid - 1 / 255, grid + 1 / 255
    lo[0], hi[-1] = min(-1.0, m) - 14 * s, max(1.0, m) + 14 * s  # the open edge bins, cut where the mass is < 1e-44
    P_quad[j, 1:-1] = simpson(density, lo[1:-1], hi[1:-1], 256)
    P_quad[j, [0, -1]] = simpson(density, lo[[0, -1]], hi[[0, -1]], 200_000)

print(f"sum of the 256 probabilities, {len(settings)} settings of (mu, sigma): "
      f"max |sum - 1| {below((P.sum(1) - 1).abs().max(), 1e-14)}")
print(f"vs Simpson integration of the density over each bin: max |diff| {below((P - P_quad).abs().max(), 1e-9)} "
      f"(largest probability {P.max().item():.3f})")

# %% [markdown]
# Next: the tanh approximation of $\Phi$ in DDPM's original code, what closed edge bins would lose, and "draw,
# round and clip" by Monte Carlo: frequencies of 200,000 rounded draws against $P(k)$, each difference in units of
# its standard error $\sqrt{P(1 - P)/n}$, a *z-score* that is rarely above 3 when the two agree.

# %%
P_tanh = dl.discretized_gaussian_probs(means, sigmas.log(), exact=False)
print(f"DDPM's original code uses a tanh approximation of Phi: max |diff| to the exact CDF "
      f"{(P - P_tanh).abs().max().item():.1e}")
print(f"the open edge bin at (mu, sigma) = (-0.99, 0.01): P(x=-1) = {P[1, 0].item():.4f}; "
      f"closed edges would keep only Phi((-1 + 1/255 - mu)/sigma) - Phi((-1 - 1/255 - mu)/sigma) = "
      f"{(torch.special.ndtr(torch.tensor((-1 + 1 / 255 + 0.99) / 0.01)) - torch.special.ndtr(torch.tensor((-1 - 1 / 255 + 0.99) / 0.01))).item():.4f}")

# Monte Carlo: draw from N(mu, sigma^2), round to the grid and clip; compare frequencies with P(k)
g = torch.Generator().manual_seed(0)
n_mc = 200_000
mu_mc, sd_mc = -0.95, 0.03
draws = mu_mc + sd_mc * torch.randn(n_mc, generator=g, dtype=torch.float64)
freq = torch.bincount(dl.to_uint8(draws).long(), minlength=256).double() / n_mc
P_mc = dl.discretized_gaussian_probs(torch.tensor(mu_mc, dtype=torch.float64), torch.tensor(math.log(sd_mc), dtype=torch.float64))
z = (freq - P_mc) / (P_mc * (1 - P_mc) / n_mc).sqrt().clamp(min=1e-12)
print(f"draw-round-clip, {n_mc:,} draws at (mu, sigma) = ({mu_mc}, {sd_mc}): max |freq - P| = "
      f"{(freq - P_mc).abs().max().item():.4f}, largest |z| over the bins with mass {z[P_mc > 1e-9].abs().max().item():.1f} "
      f"(P(x=-1) = {P_mc[0].item():.4f}, frequency {freq[0].item():.4f})")

# %% [markdown]
# A density is not a probability: at its own mean, $\log \mathcal N(\mu; \mu, \sigma^2) = -\tfrac12 \log(2\pi\sigma^2)$
# grows without bound as $\sigma \to 0$, while $\log P(k) \le 0$ always. So the discretized decoder gives a code
# length: a model uniform over the 256 values needs exactly $\log_2 256 = 8$ bits per value, a better one fewer.

# %%
for s_ in (0.1, 0.01, 0.001):
    x_ = torch.tensor([0.2], dtype=torch.float64)  # a grid-adjacent value; the mean at x
    dens = dl.gaussian_log_likelihood(x_, x_, torch.tensor(2 * math.log(s_), dtype=torch.float64)).item()
    disc = dl.discretized_gaussian_log_likelihood(x_, x_, torch.tensor(math.log(s_), dtype=torch.float64)).item()
    print(f"sigma = {s_:<6}: log density at the mean {dens:+7.3f} nats   log P(bin) {disc:+.2e} nats")
print(f"uniform over 256 values: -log2 P = {-math.log2(1 / 256):.0f} bits")

# %% [markdown]
# ### A picture: three decoders
#
# The bars are $P(k)$ divided by the bin width $2/255$, on the scale of the density (grey). Middle: the mean
# sits just above $-1$ and about a sixth of the Gaussian lies below $-1$; the first bin, open to $-\infty$, takes
# all of it (27% of the mass in all, the title). Right: the mean lies beyond $+1$ and the last bin collects more
# than half the mass.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, j in zip(axes, (0, 1, 2)):
    m, s = settings[j]
    xs = torch.linspace(-1.15, 1.15, 2001, dtype=torch.float64)
    dens = torch.exp(-0.5 * ((xs - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    ax.fill_between(xs, dens, color="0.85", label=r"density $\mathcal{N}(\mu, \sigma^2)$")
    ax.bar(grid, P[j] / (2 / 255), width=2 / 255, color="C0", label=r"$P(k)$ / bin width")
    ax.bar(grid[[0, -1]], P[j, [0, -1]] / (2 / 255), width=2 / 255, color="C3", label="open edge bins")
    lo_x, hi_x = max(-1.15, m - 5 * s), min(1.15, m + 5 * s)
    if j == 1:
        lo_x, hi_x = -1.06, -0.9
    if j == 2:
        lo_x, hi_x = 0.85, 1.15
    ax.set(xlim=(lo_x, hi_x), xlabel=r"$x_0$", ylabel="density")
    ax.set_title(fr"$\mu$ = {m}, $\sigma$ = {s}" + f"\nP(x = -1) = {P[j, 0]:.3f}, P(x = +1) = {P[j, -1]:.3f}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    ax.axvline(-1, color="k", lw=0.6, ls=":")
    ax.axvline(1, color="k", lw=0.6, ls=":")
axes[0].legend(loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Widget: move the mean and the width
#
# Drag $\mu$ across an edge and watch the edge bin take the mass; shrink $\sigma$ well below the
# bin's half-width $1/255 \approx 0.004$ and one bin takes (almost) everything, so $-\log_2 P$ falls towards 0 bits.
# The right panel zooms on the 25 bins around $\mu$.

# %% tags=["nbval-ignore-output"]
box = decoder_explorer()  # the widget: drag the sliders (its static pictures follow)
box

# %% [markdown]
# Its static pictures: near the lower edge ($\mu = -0.97$, $\sigma = 0.03$); centred on $x_{178} = 2 \cdot 178/255 - 1$
# with $\sigma = 0.01 \approx \sqrt{\beta_1}$ (the shipped $\sigma_1$) and $\sigma = 0.003$; beyond $+1$ ($\mu = 1.1$,
# $\sigma = 0.1$). Titles give the edge probabilities and the mode's code length $-\log_2 P$ (Exercise 7.2).

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 3. $L_0$ and the noiseless last step
#
# The decoder gives the bound's last term, $L_0 = -\log p_\theta(x_0 \mid x_1)
# = -\sum_{i=1}^D \log P_i$, with $x_1 \sim q(x_1 \mid x_0)$ and $\mu_\theta(x_1, 1)$ from the network
# (Eq. 11 at $t = 1$). The shipped Fashion-MNIST U-Net uses $\sigma_1^2 = \beta_1$. For four test images we
# check $L_0$ from its definition against the library's bound term at $t = 1$ (`training_losses`, `loss="vlb"`).
#
# **Why `p_sample` returns the mean at $t = 1$.** Ho et al. write: "At the end of sampling, we display
# $\mu_\theta(x_1, 1)$ noiselessly" (Sec. 3.3). The image to show is the decoder's
# best single guess; a draw adds noise of standard deviation $\sigma_1$ that carries no information about the image.
# Away from the edges the rounded mean *is* the decoder's most likely value (for a symmetric, unimodal density the
# bin holding the mean has the most mass); near an edge the open edge bin can win instead. Below, the rounded mean,
# the decoder's mode and a draw are compared with the true $x_0$.

# %%
model, d = p.model, p.diffusion  # the shipped U-Net, loaded in the opening cell
T, D = d.T, x_test[0].numel()
d_vlb = dl.GaussianDiffusion.from_config({**d.config(), "loss": "vlb"})  # same model, the bound's terms as the loss
print(d)
x0 = x_test[:4]  # four held-out test images
n_img = len(x0)
g = torch.Generator().manual_seed(1)
t1 = torch.ones(n_img, dtype=torch.long)
eps1 = torch.randn(x0.shape, generator=g)
x1 = d.q_sample(x0, t1, eps1)
with torch.no_grad():
    out1 = model(x1, d.model_t(t1))
pm = d.p_mean_variance(out1, x1, t1)
L0_nats = -dl.discretized_gaussian_log_likelihood(x0, pm["mean"], 0.5 * pm["log_variance"]).flatten(1).sum(1)
with torch.no_grad():
    L0_lib = d_vlb.training_losses(model, x0, t=t1, noise=eps1)["vb"]  # bits/dim
print(f"sigma_1 = sqrt(beta_1) = {pm['variance'][0, 0, 0, 0].sqrt().item():.4f} "
      f"= {pm['variance'][0, 0, 0, 0].sqrt().item() * 127.5:.2f} grey levels")
print("L_0 = -sum_i log P_i: " + ", ".join(f"{v:.1f}" for v in L0_nats.tolist()) + f" nats over D = {D} pixels, "
      "i.e. " + ", ".join(f"{v:.4f}" for v in (L0_nats / (D * LN2)).tolist()) + " bits/dim")
print(f"library's bound term at t = 1 (same x_1): max |diff| {below((L0_nats / (D * LN2) - L0_lib.double()).abs().max(), 1e-6)} bits/dim")

z = torch.randn(x0.shape, generator=g)
x0_sampled = d.p_sample(out1, x1, t1, noise=z)
print(f"p_sample at t = 1 ignores its noise: p_sample(z) equals the mean exactly: {torch.equal(x0_sampled, pm['mean'])}")
probs = dl.discretized_gaussian_probs(pm["mean"].double(), 0.5 * pm["log_variance"].double())  # (..., 256)
mode = probs.argmax(-1)
shown = dl.to_uint8(pm["mean"]).long()  # what the sample displays: the mean, rounded and clipped
differ = mode != shown
near_edge = (shown <= 2) | (shown >= 253)
print(f"the decoder's most likely value equals the rounded, clipped mean at {1 - differ.double().mean().item():.1%} of "
      f"pixels; where not, the mean is within 2 grey levels of an edge at {near_edge[differ].double().mean().item():.0%} "
      f"of them, and the mode is the edge bin at {((mode == 0) | (mode == 255))[differ].double().mean().item():.0%}")
noisy = dl.to_uint8(pm["mean"] + pm["variance"].sqrt() * z).long()  # a draw from the decoder: draw, round, clip
k0 = dl.to_uint8(x0).long()
for name, v in (("the rounded mean (what p_sample shows)", shown), ("the decoder's mode", mode),
                ("a draw from the decoder", noisy)):
    print(f"{name:<39} off x_0 by {(v - k0).abs().double().mean().item():.2f} grey levels on average, "
          f"exact at {(v == k0).double().mean().item():.0%} of pixels")

# %% [markdown]
# At $t = 1$ the noise is about one grey level, too little to see: $x_0$, $x_1$, the mean and a draw look alike.
# Their *differences* from the data show more. Below, for the first test image, each 8-bit picture minus $x_0$'s,
# in grey levels (red: brighter, blue: darker, white: exact), on one colour scale.

# %%
k1 = dl.to_uint8(x1).long()  # x_1 as 8-bit values, as shown
maps = [(k1 - k0, r"$x_1 - x_0$: the forward noise"), (shown - k0, r"$\mu_\theta(x_1, 1) - x_0$: shown"),
        (noisy - k0, r"$\mu_\theta + \sigma_1 z - x_0$: a draw")]
lim = max(m[0].abs().max().item() for m, _ in maps)  # one colour scale for the three maps
fig, axes = plt.subplots(1, 4, figsize=(9.8, 3.0), layout="constrained")
axes[0].imshow(k0[0, 0].numpy(), cmap="gray", vmin=0, vmax=255)
axes[0].set_title(r"$x_0$ (data)")
for ax, (m, title) in zip(axes[1:], maps):
    shown_map = ax.imshow(m[0, 0].numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title)
for ax in axes:
    ax.axis("off")
fig.colorbar(shown_map, ax=axes[1:], label="grey levels (8-bit value minus the data's)", shrink=0.85)
plt.show()
background = k0[0, 0] == 0  # the black background of the first image
for m, name in zip((m for m, _ in maps), ("x_1", "the mean", "a draw")):
    d0 = m[0, 0]
    print(f"{name:<9} - x_0 on the first image: |diff| <= 1 grey level at {(d0.abs() <= 1).double().mean().item():.0%} "
          f"of pixels, largest |diff| {d0.abs().max().item()} grey levels; on the black background exact at "
          f"{(d0[background] == 0).double().mean().item():.0%}")

# %% [markdown]
# $x_1$ carries the forward noise everywhere, about a grey level
# ($\sigma = \sqrt{\beta_1}$, the 1.27 grey levels printed above); on the black background only its positive part
# survives, since rounding clips at 0. The mean $\mu_\theta(x_1, 1)$ removes that noise: the background is exact
# again at most pixels, and the error left sits on the garment, mostly within one grey level. A draw puts noise of
# the same size back and lands further from the data than $x_1$ itself: the reason the last step shows the mean.
#
# ## 4. The whole bound in bits per dimension
#
# **The terms.** DDPM Eq. 5 writes the bound on the negative log-likelihood as
# $$L = \mathbb E_q\Big[\underbrace{D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))}_{L_T}
#   + \sum_{t=2}^{T} \underbrace{D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
#   \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0}\Big] \;\ge\; \mathbb E\left[-\log p_\theta(x_0)\right].$$
# $L_T$ has no parameters (chapter 03); each $L_{t-1}$ is a KL between Gaussians, exact given $x_t$
# (chapter 04); $L_0$ is the decoder above. `GaussianDiffusion.vlb_terms(model, x0)` returns all
# $T + 1$ per example, in nats summed over dimensions (column $j$: $L_j$, with one draw
# $x_{j+1} \sim q(x_{j+1} \mid x_0)$).
#
# **Bits per dimension.** A log-likelihood in nats becomes bits by dividing by $\ln 2$, and a per-image
# number becomes per-dimension by dividing by $D$ (here $D = 1 \cdot 28 \cdot 28 = 784$):
# $$\text{bits/dim} = \frac{L \text{ (nats)}}{D \ln 2} .$$
# It is the average code length of one sub-pixel under the model: 8 for the uniform distribution over
# 256 values, and comparable across image sizes. `GaussianDiffusion.bits_per_dim(model, x0)` computes it.
#
# ### 4.1 An analytic check: Gaussian data
#
# For data $x_0 \sim \mathcal N(m, s^2)$ in each of $D$ independent coordinates, everything is Gaussian
# and known in closed form. With $v_t = \bar\alpha_t s^2 + 1 - \bar\alpha_t$,
# $$q(x_t) = \mathcal N(\sqrt{\bar\alpha_t}\, m,\; v_t), \qquad
# \hat x_0(x_t) = \mathbb E[x_0 \mid x_t] = m + \frac{\sqrt{\bar\alpha_t}\, s^2}{v_t}\,(x_t - \sqrt{\bar\alpha_t}\, m), \qquad
# V_t = \mathrm{Var}[x_0 \mid x_t] = \frac{s^2 (1 - \bar\alpha_t)}{v_t}.$$
# The best $\epsilon$-predictor in mean square is $\epsilon^*(x_t) = \mathbb E[\epsilon \mid x_t]$
# (`dl.GaussianData.eps_model`), the minimizer of $L_\text{simple}$ at every $t$. Its mean (Eq. 11) is
# the posterior mean (Eq. 7) with $x_0$ replaced by $\hat x_0(x_t)$, so
# $\tilde\mu_t(x_0, x_t) - \mu_\theta(x_t, t) = c_t\, (x_0 - \hat x_0(x_t))$ with
# $c_t = \sqrt{\bar\alpha_{t-1}}\,\beta_t / (1 - \bar\alpha_t)$, and averaging the Gaussian KL over
# $x_0$ and $x_t$ (with $\mathbb E[(x_0 - \hat x_0(x_t))^2] = V_t$) gives each expected term per
# coordinate, for a fixed variance $\sigma_t^2$:
# $$\mathbb E[L_{t-1}] = \tfrac12\Big(\log\frac{\sigma_t^2}{\tilde\beta_t} + \frac{\tilde\beta_t}{\sigma_t^2}
#     + \frac{c_t^2 V_t}{\sigma_t^2} - 1\Big), \qquad
# \mathbb E[L_0] = \tfrac12\Big(\log 2\pi\sigma_1^2 + \frac{V_1}{\sigma_1^2}\Big), \qquad
# \mathbb E[L_T] = \tfrac12\big(-\log(1 - \bar\alpha_T) + (1 - \bar\alpha_T) + \bar\alpha_T (m^2 + s^2) - 1\big).$$
# ($L_0$ uses a Gaussian *density* decoder here, `decoder="gaussian"`, as these data are
# continuous; at $t = 1$, $c_1 = 1$ since $\bar\alpha_0 = 1$.) The true negative log-likelihood is the
# entropy of the data, $H = \tfrac12 \log(2\pi e s^2)$ per coordinate. And because $\epsilon^*$ is
# affine in $x_t$, each reverse step is $x_{t-1} = A_t x_t + B_t + \sigma_t z$, so the model's own
# marginal $p_\theta(x_0) = \mathcal N(m_p, v_p)$ follows by propagating a mean and a variance from
# $\mathcal N(0, 1)$ at $t = T$; its cross-entropy $\mathbb E_q[-\log p_\theta(x_0)]
# = \tfrac12\big(\log 2\pi v_p + ((m - m_p)^2 + s^2)/v_p\big)$ lies between $H$ and the bound.
#
# A finite sample of $x_0$ moves every term a little. To compare with Monte Carlo without that noise,
# the formulas are also taken *given* each $x_0$, averaging over $x_t$ only: writing $\hat x_0 = m + k_t (x_t - \sqrt{\bar\alpha_t} m)$ with
# $k_t = \sqrt{\bar\alpha_t}\, s^2 / v_t$ and $x_t = \sqrt{\bar\alpha_t} x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$,
# $$\mathbb E\big[(x_0 - \hat x_0)^2 \mid x_0\big] = (1 - k_t \sqrt{\bar\alpha_t})^2 (x_0 - m)^2 + k_t^2 (1 - \bar\alpha_t),$$
# which replaces $V_t$ (its average over $x_0$ is $V_t$ again), and $x_0^2$ replaces $m^2 + s^2$ in $L_T$.
# `dl.GaussianData.bound_terms(schedule, variance, x0=None)` evaluates these expectations (over the data, or given
# each example), `model_cross_entropy` the model's marginal; `vlb_terms` gives the Monte Carlo side (one draw of $x_t$
# per term), each mean with its *standard error* (SE: the standard deviation of the per-example differences from
# the closed form, over $\sqrt{n}$).

# %%
m_data, s_data = 0.3, 0.5
toy = dl.GaussianData(dim=16, mean=m_data, std=s_data)
H_true = 0.5 * math.log(2 * math.pi * math.e * s_data**2)  # nats per coordinate
s_lin = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)
g = torch.Generator().manual_seed(2)
n_toy = 256
x0_toy = toy.sample(n_toy, generator=g, dtype=torch.float64)
eps_star = toy.eps_model(s_lin.alpha_bars)  # the best eps-model, a model(x_t, t) callable
d_large = dl.GaussianDiffusion(s_lin, variance="fixed_large", decoder="gaussian")
terms = d_large.vlb_terms(eps_star, x0_toy, generator=g) / (toy.dim * LN2)  # (256, T + 1), bits/dim
nll_true = -toy.log_prob(x0_toy) / (toy.dim * LN2)  # -log q(x_0) per example, bits/dim
given = toy.bound_terms(s_lin, "fixed_large", x0_toy) / LN2  # (256, T + 1): closed form given each x_0
closed = toy.bound_terms(s_lin, "fixed_large") / LN2  # (T + 1,): closed form over the data


def compare(name, mc, cf_given, cf_data):
    """Monte Carlo mean with the standard error of (MC - closed form given x_0): only x_t's noise is left."""
    se = (mc - cf_given).std().item() / math.sqrt(len(mc))
    if se < 1e-12:  # the term has no noise left (L_T): Monte Carlo and closed form agree to round-off
        apart = f"equal: |diff| {below((mc - cf_given).abs().max())}"
    else:
        apart = f"{abs(mc.mean().item() - cf_given.mean().item()) / se:.1f} SE apart, SE {se:.1e}"
    print(f"{name:<22} Monte Carlo {mc.mean().item():+.5f}  closed form given these x_0 {cf_given.mean().item():+.5f} "
          f"({apart})   over the data {cf_data:+.5f}")
    return se


print(f"Gaussian data: {n_toy} examples of {toy.dim} coordinates, m = {m_data}, s = {s_data}; sigma_t^2 = beta_t; bits/dim")
compare("L_T", terms[:, T], given[:, T], closed[T].item())
compare("sum L_(t-1), t = 2..T", terms[:, 1:T].sum(1), given[:, 1:T].sum(1), closed[1:T].sum().item())
compare("L_0", terms[:, 0], given[:, 0], closed[0].item())
compare("whole bound", terms.sum(1), given.sum(1), closed.sum().item())
se_gap = compare("bound - true NLL", terms.sum(1) - nll_true, given.sum(1) - nll_true, closed.sum().item() - H_true / LN2)
gap = closed.sum().item() - H_true / LN2
print(f"to tell the gap {gap:.4f} from 0 at 2 SE, the SE must fall {se_gap / (gap / 2):.0f}-fold: "
      f"about {round((se_gap / (gap / 2)) ** 2, -2):,.0f} times as many examples (or draws of x_t)")

# %% [markdown]
# The same with $\sigma_t^2 = \tilde\beta_t$ (on 64 of the examples), the cross-entropy of the model's own $p_\theta(x_0)$ for
# both variances, and the true reverse variance. The *law of total variance*, $\mathrm{Var}[a] = \mathbb E\,\mathrm{Var}[a \mid b]
# + \mathrm{Var}\,\mathbb E[a \mid b]$, applied to $x_{t-1}$ given $x_t$ with $x_0$ as the hidden $b$, gives it:
# $\mathrm{Var}[x_{t-1} \mid x_t] = \tilde\beta_t + c_t^2 V_t$.

# %%
d_small = dl.GaussianDiffusion(s_lin, variance="fixed_small", decoder="gaussian")
bpd_small = d_small.bits_per_dim(eps_star, x0_toy[:64], generator=g)  # the whole bound, bits/dim: (64,)
compare("same, sigma^2 = beta~", bpd_small - nll_true[:64],
        toy.bound_terms(s_lin, "fixed_small", x0_toy[:64]).sum(1) / LN2 - nll_true[:64],
        toy.bound_terms(s_lin, "fixed_small").sum().item() / LN2 - H_true / LN2)
print(f"true NLL H = {H_true / LN2:.5f} bits/dim; cross-entropy of the model's own p_theta(x_0): "
      f"{toy.model_cross_entropy(s_lin, 'fixed_large') / LN2:.5f} (sigma_t^2 = beta_t), "
      f"{toy.model_cross_entropy(s_lin, 'fixed_small') / LN2:.5f} (sigma_t^2 = beta~_t)")
# the true reverse variance, by the law of total variance: Var[x_(t-1) | x_t] = beta~_t + c_t^2 Var[x_0 | x_t]
t2 = torch.arange(2, T + 1)
ab2 = s_lin.alpha_bars[t2]
true_var = s_lin.posterior_variance[t2] + s_lin.posterior_mean_coef1[t2] ** 2 * s_data**2 * (1 - ab2) / (ab2 * s_data**2 + 1 - ab2)
ratio = true_var / s_lin.betas[t2]
print(f"true reverse variance / beta_t over t = 2..T: {ratio.min().item():.3f} to {ratio.max().item():.3f}; "
      f"/ beta~_t: {(true_var / s_lin.posterior_variance[t2])[0].item():.2f} at t = 2, "
      f"{(true_var / s_lin.posterior_variance[t2])[8].item():.2f} at t = 10, {(true_var / s_lin.posterior_variance[t2])[98].item():.2f} at t = 100")

# %% [markdown]
# Four lessons. **The code matches the equations**: every Monte Carlo number sits within 1.5 standard errors of its
# closed form. **An estimate of a bound can fall below what it bounds.** The Monte Carlo "bound - true NLL" is
# $-0.033$ bits/dim, but the inequality holds for the *expectation* over $x_t$: this estimate (one draw of $x_t$ per
# term, 256 examples) has a standard error of 0.022 bits/dim, more than ten times the true gap of 0.0016 (closed
# form), and lies 1.5 SE from it. Resolving the gap would take about 800 times
# as many draws. **With $\sigma_t^2 = \beta_t$ the bound is nearly tight**: within 0.002 bits/dim of the true NLL for
# the best $\epsilon$-model. **With $\sigma_t^2 = \tilde\beta_t$ it is not** (0.82 above), although its $p_\theta(x_0)$ has
# almost the same cross-entropy (1.04718 against 1.04710). The bound charges for every reverse step whose variance
# differs from the true one, and here the true reverse variance $\tilde\beta_t + c_t^2 V_t$ stays close to $\beta_t$:
# about twice $\tilde\beta_t$ at the first steps.
#
# **The gap as $T$ grows.** Keeping $\bar\alpha_T$ fixed (both ends of the linear schedule scaled by $1000/T$), more,
# smaller steps make each Gaussian reverse step more nearly exact: the gap of $\sigma_t^2 = \beta_t$ falls like $1/T$
# (the table's last line fits the slope). The gap of $\tilde\beta_t$ falls only slowly, towards a limit above zero.

# %%
Ts = [50, 100, 200, 500, 1000, 2000, 5000]
rows = []
print(f"{'T':>5} {'abar_T':>9} {'bound, beta':>12} {'gap':>9} {'bound, beta~':>13} {'gap':>8}   (true NLL {H_true / LN2:.4f} bits/dim)")
for TT in Ts:
    sch = dl.NoiseSchedule.linear(T=TT, beta_start=1e-4 * 1000 / TT, beta_end=0.02 * 1000 / TT)
    bl, bs = (toy.bound_terms(sch, v).sum().item() / LN2 for v in ("fixed_large", "fixed_small"))
    rows.append((TT, bl - H_true / LN2, bs - H_true / LN2))
    print(f"{TT:>5} {sch.alpha_bars[TT].item():>9.2e} {bl:>12.5f} {bl - H_true / LN2:>9.5f} {bs:>13.4f} {bs - H_true / LN2:>8.4f}")
slope = np.polyfit(np.log([r[0] for r in rows]), np.log([r[1] for r in rows]), 1)[0]
print(f"log-log slope of the beta gap against T: {slope:.3f} (1/T would be -1)")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.3))
tt = np.arange(1, T)
ax1.loglog(tt + 1, terms[:, 1:T].mean(0).numpy(), ".", ms=2, color="C0", alpha=0.5,
           label=r"Monte Carlo $L_{t-1}$ (256 examples)")
ax1.loglog(tt + 1, given[:, 1:T].mean(0).numpy(), color="C3", lw=1.2, label="closed form given these $x_0$")
ax1.set(xlabel="t", ylabel="bits/dim", title=r"Gaussian data, $\sigma_t^2 = \beta_t$: each term")
ax1.legend()
ax2.loglog([r[0] for r in rows], [r[1] for r in rows], "o-", label=r"$\sigma_t^2 = \beta_t$")
ax2.loglog([r[0] for r in rows], [r[2] for r in rows], "s-", label=r"$\sigma_t^2 = \tilde\beta_t$")
ax2.set(xlabel="T", ylabel="bound - true NLL (bits/dim)", title="the gap of the best eps-model")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### 4.2 An unbiased estimate with far fewer network calls
#
# The full bound calls the network $T = 1000$ times per image: about 80 s per image for the U-Net on
# one CPU core (625 s for 8 images, stored with the checkpoint). The sum of the middle terms can be estimated without bias from a sample of $t$. Split
# $\{2, \dots, T\}$ into strata $S_1, \dots, S_H$ of $N_h$ consecutive values (narrow at small $t$, where
# the terms are large and change fast; wide at large $t$), draw $n_h = 2$ values $t_{h1}, t_{h2}$
# uniformly from each stratum (with replacement, each with its own $x_t \sim q(x_t \mid x_0)$), and set
# $$\widehat{\Sigma} = \sum_{h=1}^{H} N_h\, \frac{L_{t_{h1}-1} + L_{t_{h2}-1}}{2}, \qquad
# \mathbb E\big[\widehat\Sigma\big] = \sum_{t=2}^{T} \mathbb E[L_{t-1}], \qquad
# \widehat{\mathrm{Var}}\big[\widehat\Sigma\big] = \sum_{h=1}^{H} N_h^2\, \frac{(L_{t_{h1}-1} - L_{t_{h2}-1})^2}{4} .$$
# Each draw $N_h L_{t-1}$ has mean $\sum_{t \in S_h} \mathbb E[L_{t-1}]$; the variance formula is the
# unbiased sample variance of two draws, divided by 2, summed over the independent strata. The
# bound is then $L_T$ (exact) $+ \widehat\Sigma + L_0$ (one network call). First, a check on the Gaussian data.

# %%
edges = np.unique(np.round(np.geomspace(2, T + 1, 12)).astype(int))  # strata [e_h, e_(h+1)), all of size >= 2
sizes = np.diff(edges)
print(f"{len(sizes)} strata over t = 2..{T}, sizes {', '.join(str(v) for v in sizes)}")


def draw_ts(generator):
    """Two t per stratum, uniform with replacement: (2H,) LongTensor, stratum by stratum."""
    u = torch.randint(0, 1 << 30, (len(sizes), 2), generator=generator)
    return (torch.as_tensor(edges[:-1])[:, None] + u % torch.as_tensor(sizes)[:, None]).flatten()


def stratified_sum(vals):
    """vals (2H, ...) of L_(t-1) in the order of draw_ts -> (estimate, standard error) of sum_(t=2..T)."""
    v = vals.reshape(len(sizes), 2, -1)
    N = torch.as_tensor(sizes, dtype=torch.float64)[:, None]
    est = (N * v.mean(1)).sum(0)
    var = (N**2 * (v[:, 0] - v[:, 1]) ** 2 / 4).sum(0)
    return est, var.sqrt()


# %% [markdown]
# One estimate draws the $2H$ values of $t$ and an $x_t$ for each (example, $t$) pair, and averages over the
# examples; 500 repeats on 16 examples test for bias and the standard-error formula.

# %%
d_large_vlb = dl.GaussianDiffusion(s_lin, variance="fixed_large", loss="vlb", decoder="gaussian")


def one_estimate(x, generator):
    """The stratified estimate of sum L_(t-1) (bits/dim), averaged over the examples x, and its standard
    error, from a fresh draw of the t values and of x_t: one batch of every (t, example) pair."""
    t = draw_ts(generator)
    vals = d_large_vlb.training_losses(eps_star, x.repeat(len(t), 1), t=t.repeat_interleave(len(x)),
                                       generator=generator)["vb"]
    return stratified_sum(vals.reshape(len(t), len(x)).mean(1))


g = torch.Generator().manual_seed(3)
est, se = one_estimate(x0_toy, g)
target = given[:, 1:T].sum(1).mean().item()  # the closed form, given these x_0
print(f"Gaussian data, {2 * len(sizes)} values of t instead of {T - 1}: sum L_(t-1) estimated {est.item():.4f} +- "
      f"{se.item():.4f}, closed form {target:.4f} bits/dim ({abs(est.item() - target) / se.item():.1f} SE apart)")
reps = torch.stack([torch.cat(one_estimate(x0_toy[:16], g)) for _ in range(500)])  # (500, 2): estimate, SE
target16 = given[:16, 1:T].sum(1).mean().item()
se_reps = reps[:, 0].std().item() / math.sqrt(500)
print(f"500 repeats on 16 examples: mean of the estimates {reps[:, 0].mean().item():.4f} +- {se_reps:.4f}, closed form "
      f"{target16:.4f} ({abs(reps[:, 0].mean().item() - target16) / se_reps:.1f} SE apart: no sign of bias); "
      f"their spread {reps[:, 0].std().item():.4f}, their mean SE {reps[:, 1].mean().item():.4f}")

# %% [markdown]
# ### 4.3 The shipped Fashion-MNIST U-Net on held-out images
#
# The same estimator with the U-Net, on the four test images of section 3: the same $2H = 22$ values of $t$ for
# every image, so $4 \cdot 22 = 88$ network calls instead of $4 \cdot 1000$. Below it, the full bound stored with the
# checkpoint (all $T$ terms on the first test images, by `python -m ddpm_lib.evaluate`). Our four images are only
# some of those, so the two means differ by the choice of images as well as by Monte Carlo error.

# %%
g = torch.Generator().manual_seed(4)
ts_u = draw_ts(g)
xb = x0.repeat(len(ts_u), 1, 1, 1)
with torch.no_grad():
    vb_u = d_vlb.training_losses(model, xb, t=ts_u.repeat_interleave(n_img),
                                 generator=g)["vb"].double().reshape(len(ts_u), n_img)  # bits/dim
LT_u = d.prior_kl(x0).double() / (D * LN2)
mid, mid_se = stratified_sum(vb_u)  # per image
L0_u = L0_nats / (D * LN2)
total = LT_u + mid + L0_u
for i in range(n_img):
    print(f"test image {i}: L_T {LT_u[i].item():.1e} + sum L_(t-1) {mid[i].item():.3f} (+- {mid_se[i].item():.3f}) "
          f"+ L_0 {L0_u[i].item():.3f} = {total[i].item():.3f} bits/dim")
mean_mid, mean_se_mid = stratified_sum(vb_u.mean(1))
print(f"mean of the {n_img} images: {total.mean().item():.3f} +- {mean_se_mid.item():.3f} bits/dim "
      f"(Monte Carlo error of the t-sample; spread across the images: std {total.std().item():.3f})")

bpd_meta = (p.entry.get("metrics") or {}).get("bits_per_dim_test") or (p.config.get("metrics") or {}).get("bits_per_dim_test")
if bpd_meta:
    print(f"stored with the checkpoint (all {T} terms, first {bpd_meta['n_images']} test images): "
          f"{bpd_meta['mean']:.3f} +- {bpd_meta['stderr']:.3f} bits/dim = L_T {bpd_meta['L_T']:.1e} "
          f"+ sum L_(t-1) {bpd_meta['sum_L_t_minus_1']:.3f} + L_0 {bpd_meta['L_0']:.3f}")
    print(f"measured by: {bpd_meta.get('evaluated_by', 'python -m ddpm_lib.evaluate fashion-mnist-unet --bpd')}")
else:
    print("this checkpoint's registry entry stores no bits/dim; measure it with "
          "python -m ddpm_lib.evaluate fashion-mnist-unet --bpd --subset 8 --seed 0")
rate_dist = [("these 4 images (sampled t)", (LT_u + mid).mean().item(), L0_u.mean().item())]
if bpd_meta:
    rate_dist.append((f"stored ({bpd_meta['n_images']} images, all t)", bpd_meta["L_T"] + bpd_meta["sum_L_t_minus_1"], bpd_meta["L_0"]))
rate_dist.append(("DDPM, CIFAR-10 (paper, Sec. 4.3)", 1.78, 1.97))
print("\nrate L_T + ... + L_1 and distortion L_0, bits/dim:")
for name, rate, dist in rate_dist:
    print(f"  {name:<34} rate {rate:.2f}  distortion {dist:.2f}  total {rate + dist:.2f}  (distortion {dist / (rate + dist):.0%})")

# %%
# the model these numbers describe: a short GPU run, far from converged (chapter 09 gives its CPU cost)
print(dl.pretrained.training_record("fashion-mnist-unet"))

# %%
fig, ax = plt.subplots(figsize=(7, 3.3))
for i in range(n_img):
    ax.loglog(ts_u.numpy(), vb_u[:, i].clamp(min=1e-7).numpy(), ".", ms=5, alpha=0.6, label=f"image {i}")
ax.loglog(np.ones(n_img), L0_u.numpy(), "k^", ms=6, label=r"$L_0$ (the decoder)")
ax.set(xlabel="t", ylabel=r"$L_{t-1}$ (bits/dim)", title="the bound's terms for the shipped U-Net, sampled t")
ax.legend(ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# Most of the bound sits at small $t$: $L_0$ is a large part of it, and the KL terms fall steeply as $t$ grows.
# This is why $L_\text{simple}$, which weights all $t$ alike, gives good samples but not the best bits/dim
# (chapters 06 and 11).
#
# **Rate and distortion.** For the shipped U-Net the distortion $L_0$ is about 42% of the bound (1.49 of 3.55
# bits/dim with all $T$ terms; 43% of the four-image estimate), against 53% for DDPM's CIFAR-10 model (1.97 of
# 3.75): in both, much of the code length pays for the last grey level of detail, which the eye barely sees. The
# data sets differ (28x28 grey against 32x32 colour images), so only the split compares, not the totals.
#
# ## 5. Exercises
#
# **Exercise 7.1 (the discretized decoder).** Write `discretized_log_likelihood(x, mean, log_scale)`:
# for $x$ on the 8-bit grid in $[-1, 1]$, a mean $\mu$ and `log_scale` $= \log\sigma$ (all of the same
# shape), return $\log P(x)$ elementwise, where (DDPM Eq. 13)
# $$P(x) = \Phi\!\left(\frac{\delta_+(x) - \mu}{\sigma}\right) - \Phi\!\left(\frac{\delta_-(x) - \mu}{\sigma}\right),
# \qquad \delta_\pm(x) = x \pm \tfrac{1}{255}, \text{ except } \delta_+(1) = +\infty,\ \delta_-(-1) = -\infty .$$
# `torch.special.ndtr` is $\Phi$. The checker draws values at both edges and inside, and tells you which
# kind is wrong.


# %% tags=["solution"]
def discretized_log_likelihood(x, mean, log_scale):
    """log P(x) of DDPM Eq. 13, elementwise: the N(mean, exp(log_scale)^2) mass on x's bin."""
    # BEGIN SOLUTION
    sigma = log_scale.exp()
    upper = torch.where(x > 0.999, torch.full_like(x, math.inf), x + 1 / 255)  # the last bin is open above
    lower = torch.where(x < -0.999, torch.full_like(x, -math.inf), x - 1 / 255)  # the first bin is open below
    prob = torch.special.ndtr((upper - mean) / sigma) - torch.special.ndtr((lower - mean) / sigma)
    return prob.clamp(min=1e-12).log()  # DDPM's code clamps too: log 0 would be -inf
    # END SOLUTION


# %%
checks.check("discretized_log_likelihood", discretized_log_likelihood)


# %% [markdown]
# Here the edge bins are closed, as if every value owned only its own interval; the checker names the mistake:

# %%
def closed_edges(x, mean, log_scale):
    sigma = log_scale.exp()
    return (torch.special.ndtr((x + 1 / 255 - mean) / sigma) - torch.special.ndtr((x - 1 / 255 - mean) / sigma)).log()


checks.check("discretized_log_likelihood", closed_edges)

# %% [markdown]
# **Exercise 7.2 (derive and decide: how sharp must the decoder be?).** Take the best case for the decoder: its
# mean sits exactly on an interior grid value $x_k$ (not $\pm 1$). Derive the code length $-\log_2 P(k)$ as a function of
# $\sigma$, invert it, and write `sigma_for_bits(bits)`: the $\sigma$ at which $-\log_2 P(k)$ equals `bits` (a float;
# `torch.special.ndtri` is $\Phi^{-1}$). The widget, the still of section 2 ($\sigma = 0.01$ and $0.003$) and
# `dl.discretized_gaussian_probs` let you test your formula. Then decide: how small must $\sigma_1$ be for a perfectly
# centred decoder to cost under 0.1 bits, against the shipped $\sigma_1 = \sqrt{\beta_1} = 0.01$? What does that say about
# $L_0$ (section 4.3) even for a perfect $\mu_\theta(x_1, 1)$, and why does a smaller $\beta_1$ not help by itself (to
# within what error must the network then predict $x_0$)?

# %% tags=["solution"]
def sigma_for_bits(bits):
    """The decoder's sigma at which a value it is centred on (inside (-1, 1)) costs `bits` bits."""
    # BEGIN SOLUTION
    # P = Phi(u) - Phi(-u) = 2 Phi(u) - 1 with u = (1/255) / sigma; set P = 2^-bits and solve for sigma
    u = torch.special.ndtri(torch.tensor((1 + 2.0**-bits) / 2, dtype=torch.float64))
    return float(1 / (255 * u))
    # END SOLUTION


# %%
checks.check("sigma_for_bits", sigma_for_bits)

# %% [markdown]
# ## 6. Summary
#
# - The discretized decoder (DDPM Eq. 13) gives each 8-bit value, $x = k/127.5 - 1$, the Gaussian's mass on its bin
#   of width $2/255$, the edge bins open to $\pm\infty$; the 256 probabilities sum to 1.
# - The last sampling step is noiseless: `p_sample` returns $\mu_\theta(x_1, 1)$.
# - The bound (Eq. 5) in bits/dim is nats $/ (D \ln 2)$. On Gaussian data it matches its closed form and, with
#   $\sigma_t^2 = \beta_t$, approaches the true NLL as $T$ grows.
# - About 20 sampled values of $t$ estimate it without bias, with a standard error, at 2% of the cost.
# - As a code, the bound is a rate ($L_T + \dots + L_1$) plus a distortion ($L_0$): 1.78 + 1.97 bits/dim for DDPM
#   on CIFAR-10, 2.06 + 1.49 for the shipped Fashion-MNIST U-Net.
#
# **Next:** chapter 08 opens the network that computes $\epsilon_\theta(x_t, t)$: the U-Net, its residual
# blocks, attention and the sinusoidal time embedding.
