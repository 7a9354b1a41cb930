# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · The forward process in closed form: $q(x_t \mid x_0)$, schedules and SNR
#
# Chapter 01 ran the forward chain $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\, x_{t-1}, \beta_t I)$ one step at
# a time, a thousand times. DDPM's first shortcut (Ho et al. 2020, Eq. 4) jumps from the data $x_0$ to any
# $x_t$ in a single Gaussian draw. This is what makes training cheap: Algorithm 1 picks a random $t$ and
# needs $x_t$ at once, without running the chain. The same formula tells us how fast a schedule destroys
# the signal, and how far $x_T$ is from the prior $\mathcal N(0, I)$.
#
# **Learning goals.** After this chapter you can
# - derive $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$ (DDPM Eq. 4) by
#   reparameterization: for $x_2$ by hand, as in the study notes, then for every $t$ by induction;
# - check it by Monte Carlo against the chain run step by step (`q_step` against `q_sample`);
# - compare the linear, quadratic and cosine schedules and the effect of $T$ through $\bar\alpha_t$,
#   $\bar\alpha_T$ and the signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$;
# - compute the prior term $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))$ in closed form, check it by
#   Monte Carlo, and see why DDPM's schedule makes it about $10^{-5}$ bits per dimension;
# - implement `q_sample` yourself.
#
# **CPU time:** about 15 s on a 2-core CPU, most of it importing PyTorch and drawing (budget: 45 s).

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below, within_sigma  # verdicts: '< 1e-12', 'within 3 sigma: True'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

LN2 = math.log(2.0)



# %% [markdown]
# ## 1. Derivation: from one step to any step
#
# Write $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$ (DDPM's notation, with
# $\bar\alpha_0 = 1$). One forward step, reparameterized (a draw from $\mathcal N(\mu, \sigma^2 I)$ is
# $\mu + \sigma \epsilon$ with $\epsilon \sim \mathcal N(0, I)$), reads
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1 - \alpha_t}\, \epsilon_t, \qquad \epsilon_1, \epsilon_2, \dots \sim \mathcal N(0, I) \text{ independent},$$
# where $\epsilon_t$ is the noise added by step $t$ (the study notes call it $\epsilon_{t-1}$, the noise that
# leaves $x_{t-1}$: the same thing, one index lower).
#
# **Two steps, as in the notes.** Substitute $x_1 = \sqrt{\alpha_1}\, x_0 + \sqrt{1 - \alpha_1}\, \epsilon_1$ into
# the step from $x_1$ to $x_2$:
# $$x_2 = \sqrt{\alpha_2}\, x_1 + \sqrt{1 - \alpha_2}\, \epsilon_2
#       = \sqrt{\alpha_1 \alpha_2}\, x_0 + \underbrace{\sqrt{\alpha_2 (1 - \alpha_1)}\, \epsilon_1 + \sqrt{1 - \alpha_2}\, \epsilon_2}_{\text{two independent Gaussians}} .$$
# The two noise terms are independent zero-mean Gaussians, so their sum is a zero-mean Gaussian whose
# variance is the sum of theirs. The notes find it by squaring (the cross term has
# $\mathbb E[\epsilon_1 \epsilon_2] = 0$):
# $$\mathbb E\Big[\big(\sqrt{\alpha_2 (1 - \alpha_1)}\, \epsilon_1 + \sqrt{1 - \alpha_2}\, \epsilon_2\big)^2\Big]
#   = \alpha_2 (1 - \alpha_1) + (1 - \alpha_2) = 1 - \alpha_1 \alpha_2 .$$
# So the two noises merge into one: $x_2 = \sqrt{\bar\alpha_2}\, x_0 + \sqrt{1 - \bar\alpha_2}\, \bar\epsilon_2$ with
# $\bar\epsilon_2 \sim \mathcal N(0, I)$.
#
# **Every step, by induction.** Suppose $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, x_0 + \sqrt{1 - \bar\alpha_{t-1}}\, \bar\epsilon_{t-1}$
# with $\bar\epsilon_{t-1} \sim \mathcal N(0, I)$ built from $\epsilon_1, \dots, \epsilon_{t-1}$ only, hence independent of
# $\epsilon_t$ (true for $t - 1 = 1$, where $\bar\alpha_1 = \alpha_1$). Then
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1 - \alpha_t}\, \epsilon_t
#       = \sqrt{\alpha_t \bar\alpha_{t-1}}\, x_0 + \sqrt{\alpha_t (1 - \bar\alpha_{t-1})}\, \bar\epsilon_{t-1} + \sqrt{1 - \alpha_t}\, \epsilon_t ,$$
# and the merged noise has variance $\alpha_t - \alpha_t \bar\alpha_{t-1} + 1 - \alpha_t = 1 - \bar\alpha_t$. Since
# $\alpha_t \bar\alpha_{t-1} = \bar\alpha_t$, for every $t = 1, \dots, T$:
# $$\boxed{\ q(x_t \mid x_0) = \mathcal N\big(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big), \qquad
#   x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \quad \epsilon \sim \mathcal N(0, I)\ }
#   \quad \text{(DDPM Eq. 4).}$$
#
# Two readings of the formula. The data keep a fraction $\bar\alpha_t$ of their variance and noise fills the
# rest, $1 - \bar\alpha_t$: for data with unit variance, $x_t$ has unit variance at every $t$ (the reason for the
# factor $\sqrt{1 - \beta_t}$ in each step; the process is *variance preserving*). And $q(x_t \mid x_0)$ depends on
# the schedule only through the single number $\bar\alpha_t$.
#
# ## 2. The same equations in `ddpm_lib`, checked
#
# `NoiseSchedule` keeps every table in float64 with paper indexing (`alpha_bars[t]` is $\bar\alpha_t$,
# `alpha_bars[0] = 1`); `GaussianDiffusion.q_step(x_prev, t, noise)` is one step (DDPM Eq. 2) and
# `GaussianDiffusion.q_sample(x0, t, noise)` is Eq. 4. First the two-step algebra, exactly: two `q_step`s with
# noises $\epsilon_1, \epsilon_2$ give the notes' expression, and `q_sample` with the merged noise
# $\bar\epsilon_2 = (\sqrt{\alpha_2 (1 - \alpha_1)}\, \epsilon_1 + \sqrt{1 - \alpha_2}\, \epsilon_2) / \sqrt{1 - \bar\alpha_2}$ lands on the
# same $x_2$. Then the merged noise's variance by Monte Carlo. Large betas make the numbers visible.

# %%
s2 = dl.NoiseSchedule.from_betas([0.1, 0.3], warn=False)  # beta_1 = 0.1, beta_2 = 0.3: two coarse steps
d2 = dl.GaussianDiffusion(s2, decoder="gaussian")
a1, a2 = s2.alphas[1], s2.alphas[2]
g = torch.Generator().manual_seed(0)
n = 200_000
x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
e1, e2 = (torch.randn(n, 1, generator=g, dtype=torch.float64) for _ in range(2))
t1, t2 = torch.full((n,), 1), torch.full((n,), 2)

x2_chain = d2.q_step(d2.q_step(x0, t1, e1), t2, e2)  # two steps of the chain
x2_notes = (a1 * a2).sqrt() * x0 + (a2 * (1 - a1)).sqrt() * e1 + (1 - a2).sqrt() * e2  # the notes' expression
merged = (a2 * (1 - a1)).sqrt() * e1 + (1 - a2).sqrt() * e2
x2_eq4 = d2.q_sample(x0, t2, merged / (1 - s2.alpha_bars[2]).sqrt())  # one jump with the merged noise
print(f"alpha_1 = {a1:.2f}, alpha_2 = {a2:.2f}, alpha_bar_2 = alpha_1 alpha_2 = {s2.alpha_bars[2]:.2f}")
print(f"two q_steps vs sqrt(a2 a1) x0 + sqrt(a2 (1 - a1)) e1 + sqrt(1 - a2) e2: max |diff| "
      f"{below((x2_chain - x2_notes).abs().max().item())}")
print(f"two q_steps vs q_sample(x0, 2, merged noise / sqrt(1 - abar_2)): max |diff| "
      f"{below((x2_chain - x2_eq4).abs().max().item())}")
var_mc, var_eq = merged.var().item(), 1 - (a1 * a2).item()
print(f"variance of the merged noise: Monte Carlo {var_mc:.4f} vs 1 - alpha_1 alpha_2 = {var_eq:.4f}: "
      f"|diff| {abs(var_mc - var_eq):.4f} (3 sigma of MC error {3 * var_eq * math.sqrt(2 / n):.4f})")
k4 = ((merged / merged.std()) ** 4).mean().item()
print(f"and it is Gaussian: its kurtosis E[z^4] = {k4:.3f} (a Gaussian has 3; 3 sigma of MC error "
      f"{3 * math.sqrt(96 / n):.3f})")

# %% [markdown]
# Now the claim for all $t$, with DDPM's schedule ($T = 1000$, $\beta_t$ linear from $10^{-4}$ to $0.02$). We run
# the chain step by step with `q_step` for 6,000 independent copies of five starting values
# $x_0 \in \{-1, -0.5, 0, 0.5, 1\}$, and at a few $t$ compare the sample mean and variance with Eq. 4's
# $\sqrt{\bar\alpha_t}\, x_0$ and $1 - \bar\alpha_t$. Beside it, the same comparison for draws made in one jump by
# `q_sample`. The Monte Carlo errors are known: the mean of $N$ draws has standard error
# $\sqrt{(1 - \bar\alpha_t) / N}$, the variance $(1 - \bar\alpha_t) \sqrt{2 / N}$.

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's schedule
d = dl.GaussianDiffusion(s, decoder="gaussian")
N = 6000  # copies of each start
x0s = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
X0 = x0s[:, None].repeat(1, N)  # (5, N): row j holds N copies of x0s[j], a batch of 5 with N dimensions each
check_ts = [1, 10, 100, 250, 500, 1000]
g_chain, g_jump = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
x = X0.clone()
chain_at, jump_at = {}, {}
for t in range(1, s.T + 1):
    x = d.q_step(x, torch.full((5,), t), generator=g_chain)
    if t in check_ts:
        chain_at[t] = x
        jump_at[t] = d.q_sample(X0, torch.full((5,), t), generator=g_jump)

print("largest difference over the 5 starting values, in units of its Monte Carlo standard error (se)")
print(f"{'t':>5} {'abar_t':>8} |{'chain (q_step, t times)':^37}|{'one jump (q_sample)':^37}|")
print(f"{'':>5} {'':>8} |" + f" {'|mean diff|':>17} {'|var diff|':>17} |" * 2)
z_all = []  # every difference in units of its standard error
for t in check_ts:
    ab = s.alpha_bars[t].item()
    mean_eq, var_eq = math.sqrt(ab) * x0s, 1 - ab
    se_mean, se_var = math.sqrt(var_eq / N), var_eq * math.sqrt(2 / N)
    row = f"{t:>5} {ab:>8.5f} |"
    for xs in (chain_at[t], jump_at[t]):
        dm, dv = (xs.mean(1) - mean_eq).abs(), (xs.var(1) - var_eq).abs()  # one per starting value
        z_all += [dm / se_mean, dv / se_var]
        row += f" {dm.max():>8.2e} ({dm.max() / se_mean:.1f} se) {dv.max():>8.2e} ({dv.max() / se_var:.1f} se) |"
    print(row)
z_all = torch.cat(z_all)
bound = torch.special.ndtri(torch.tensor(1 - 0.01 / (2 * len(z_all)), dtype=torch.float64)).item()
print(f"all {len(z_all)} differences (5 starts x 6 t x mean, variance x chain, jump): mean {z_all.mean():.2f} se "
      f"(Monte Carlo error alone gives {math.sqrt(2 / math.pi):.2f}), largest {z_all.max():.1f} se "
      f"({'below' if z_all.max() < bound else 'ABOVE'} {bound:.1f}, the Bonferroni bound that {len(z_all)} comparisons exceed by chance 1% of the time)")

# %% [markdown]
# The picture compares the two ways of drawing $x_{100}$ from $x_0 = 1$ with the density of Eq. 4.

# %%
t_show = 100
ab = s.alpha_bars[t_show]
grid = torch.linspace(-0.5, 2.5, 300, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.hist(chain_at[t_show][4], bins=60, density=True, alpha=0.5, label=f"chain: {t_show} q_steps")
ax.hist(jump_at[t_show][4], bins=60, density=True, alpha=0.5, label="one q_sample")
ax.plot(grid, dl.gaussian_log_likelihood(grid, ab.sqrt(), (1 - ab).log()).exp(), c="k",
        label=rf"Eq. 4: $\mathcal{{N}}(\sqrt{{\bar\alpha_t}}, 1 - \bar\alpha_t)$, $\bar\alpha_{{{t_show}}}$ = {ab:.3f}")
ax.axvline(1.0, c="grey", ls=":", lw=1)
ax.set(xlabel=r"$x_{100}$", ylabel="density", ylim=(0, 2.0), title=r"$q(x_{100} \mid x_0 = 1)$, three ways")
ax.legend(loc="upper left")  # above the histograms: they stay below 1.4
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Schedules, $\bar\alpha_t$ and the signal-to-noise ratio
#
# Eq. 4 says everything about $q(x_t \mid x_0)$ is in $\bar\alpha_t$. A convenient single number per $t$ is the
# **signal-to-noise ratio**: in $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ the signal has variance
# $\bar\alpha_t$ (for unit-variance data) and the noise $1 - \bar\alpha_t$, so
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1 - \bar\alpha_t}$$
# (Kingma et al. 2021). It falls from very large at $t = 1$ to nearly 0 at $t = T$, over many orders of magnitude,
# hence the log scale. Three schedules:
# - **linear** (DDPM, Sec. 4): $\beta_t$ linear from $\beta_1 = 10^{-4}$ to $\beta_T = 0.02$, $T = 1000$;
# - **quadratic** (DDPM's code): $\sqrt{\beta_t}$ linear between the same ends, so the betas stay smaller for longer;
# - **cosine** (Nichol & Dhariwal 2021, Eq. 17): $\bar\alpha_t = f(t) / f(0)$, $f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s} \frac{\pi}{2}\big)$,
#   $s = 0.008$, with $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ clipped at 0.999; it destroys information more evenly
#   over $t$ (its $\log \mathrm{SNR}$ falls almost linearly in the middle).
#
# In the study notes, DDPM's choice of $\beta_t$ from $10^{-4}$ to $0.02$ is made *to keep $L_T$ as small as
# possible*, the consistency of the forward result with the normal distribution. Section 4 measures that.

# %%
images, _ = dl.fashion_mnist("test")
x0_sq = (images.double() ** 2).mean().item()  # E[x_0^2] over all 10,000 x 784 pixel values: L_T needs only this

T = 1000
schedules = {
    "linear": dl.NoiseSchedule.linear(T=T, beta_start=1e-4, beta_end=0.02),
    "quadratic": dl.NoiseSchedule.quadratic(T=T, beta_start=1e-4, beta_end=0.02),
    "cosine": dl.NoiseSchedule.cosine(T=T),
}
ts = torch.arange(1, T + 1)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for name, sch in schedules.items():
    axes[0].semilogy(ts, sch.betas[1:], label=name)
    axes[1].plot(ts, sch.alpha_bars[1:], label=name)
    axes[2].semilogy(ts, sch.snr[1:], label=name)
axes[0].set(xlabel="t", ylabel=r"$\beta_t$", title=r"$\beta_t$")
axes[1].set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"$\bar\alpha_t$ (the signal's share of the variance)")
axes[2].axhline(1.0, c="grey", lw=0.8, ls=":")
axes[2].set(xlabel="t", ylabel="SNR", title=r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$, log scale")
for a in axes:
    a.legend()
fig.tight_layout()
plt.show()

print(f"T = {T}; L_T for Fashion-MNIST (E[x_0^2] = {x0_sq:.3f}), in bits per dimension")
print(f"{'schedule':>10} {'beta_1':>8} {'beta_T':>7} {'abar_T/2':>9} {'abar_T':>9} {'SNR(1)':>8} {'SNR(T)':>9} "
      f"{'SNR < 1 from t':>15} {'L_T bits/dim':>13}")
for name, sch in schedules.items():
    t_cross = int((sch.snr[1:] < 1).nonzero()[0]) + 1
    print(f"{name:>10} {sch.betas[1]:>8.2e} {sch.betas[T]:>7.3f} {sch.alpha_bars[T // 2]:>9.4f} "
          f"{sch.alpha_bars[T]:>9.2e} {sch.snr[1]:>8.3g} {sch.snr[T]:>9.2e} {t_cross:>15} "
          f"{sch.prior_kl(x0_sq) / LN2:>13.2e}")

# %% [markdown]
# **The effect of $T$.** Keep the linear schedule's ends, $\beta_1 = 10^{-4}$ and $\beta_T = 0.02$, and change the
# number of steps. Taking logs of the product,
# $$\log \bar\alpha_T = \sum_{t=1}^{T} \log(1 - \beta_t) = -\sum_t \beta_t - \tfrac12 \sum_t \beta_t^2 - \dots, \qquad
#   \sum_{t=1}^{T} \beta_t = T\, \frac{\beta_1 + \beta_T}{2} \ \text{(linear)},$$
# so $\bar\alpha_T \approx e^{-T (\beta_1 + \beta_T)/2}$ falls *exponentially* in $T$: with too few steps $x_T$ keeps
# signal, and $T = 1000$ leaves $\bar\alpha_T \approx 4 \cdot 10^{-5}$. (improved-diffusion scales both ends by
# $1000 / T$ instead, which keeps $\sum_t \beta_t$ fixed, and with it $\bar\alpha_T$ within an order of magnitude of
# $4 \cdot 10^{-5}$ for every $T$: last column.)

# %%
print(f"{'T':>5} {'abar_T':>10} {'exp(-sum beta)':>15} {'exp(-sum beta - sum beta^2 / 2)':>32} "
      f"{'L_T bits/dim':>13} | {'scaled by 1000/T: abar_T':>25}")
for T_ in (10, 50, 100, 250, 500, 1000, 2000, 4000):
    sch = dl.NoiseSchedule.linear(T=T_, beta_start=1e-4, beta_end=0.02, warn=False)
    b = sch.betas[1:]
    approx1, approx2 = torch.exp(-b.sum()).item(), torch.exp(-b.sum() - (b**2).sum() / 2).item()
    scaled = (f"{dl.NoiseSchedule.linear(T=T_, beta_start=0.1 / T_, beta_end=20 / T_, warn=False).alpha_bars[T_]:.2e}"
              if 20 / T_ < 1 else "(beta_T >= 1)")
    print(f"{T_:>5} {sch.alpha_bars[T_]:>10.3e} {approx1:>15.3e} {approx2:>32.3e} "
          f"{sch.prior_kl(x0_sq) / LN2:>13.2e} | {scaled:>25}")

# %% [markdown]
# ## 4. The prior term $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))$
#
# DDPM's bound (Eq. 5, chapter 04) begins with $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))$, the VAE's "stay close to the
# prior" term of chapter 01. With $p(x_T) = \mathcal N(0, I)$ and Eq. 4 it has a closed form. Per dimension, with
# $\mu = \sqrt{\bar\alpha_T}\, x_0$ and $v = 1 - \bar\alpha_T$, the KL between two 1-D Gaussians (chapter 04 derives it)
# is $D_{KL}(\mathcal N(\mu, v) \,\|\, \mathcal N(0, 1)) = \tfrac12 (v + \mu^2 - 1 - \log v)$, so
# $$L_T = \sum_{i} \tfrac12 \Big( \bar\alpha_T\, x_{0,i}^2 - \bar\alpha_T - \log(1 - \bar\alpha_T) \Big)
#   \approx \sum_i \tfrac12\, \bar\alpha_T\, x_{0,i}^2 \quad (\bar\alpha_T \ll 1) .$$
# It is linear in $x_{0,i}^2$, so its average over the data needs only $\mathbb E[x_0^2]$
# (`NoiseSchedule.prior_kl(x0_sq_mean)`, per dimension in nats), and it has no trainable parameter when the
# $\beta_t$ are fixed: DDPM drops it from training (the notes: "本文固定 $\beta_t$，因此 $L_T$ 变成一个常数", "this paper fixes $\beta_t$, so $L_T$ becomes a constant").
# Divide by $\ln 2$ for bits. Three computations must agree: `GaussianDiffusion.prior_kl` (the KL of each pixel by
# `dl.normal_kl`, summed per image), `NoiseSchedule.prior_kl` with the data's $\mathbb E[x_0^2]$, and a Monte Carlo
# average of $\log q(x_T \mid x_0) - \log \mathcal N(x_T; 0, 1)$ over draws of $x_T$.

# %%
imgs = images[:1000].double()  # 1000 test images, 784 dimensions each
D = imgs[0].numel()
for name, sch in schedules.items():
    dd = dl.GaussianDiffusion(sch)
    per_image = dd.prior_kl(imgs)  # (1000,) nats, summed over the 784 pixels (normal_kl per pixel)
    from_lib = per_image.mean().item() / (D * LN2)
    from_sq = sch.prior_kl((imgs**2).mean().item()) / LN2
    print(f"{name:>9}: L_T = {from_lib:.4e} bits/dim (normal_kl per pixel) vs {from_sq:.4e} "
          f"(closed form with E[x_0^2]): |diff| {below(from_lib - from_sq, 1e-15)}")

# Monte Carlo needs L_T large enough to see: short linear schedules, one x_0 = 1 (per dimension)
print("\nMonte Carlo, x_0 = 1, 200,000 draws of x_T ~ q(x_T | x_0):")
gm = torch.Generator().manual_seed(3)
nm = 200_000
x0_one = torch.ones(nm, 1, dtype=torch.float64)
for T_ in (5, 20, 100, 1000):
    sch = dl.NoiseSchedule.linear(T=T_, beta_start=1e-4, beta_end=0.02, warn=False)
    dd = dl.GaussianDiffusion(sch, decoder="gaussian")
    xT = dd.q_sample(x0_one, torch.full((nm,), T_), generator=gm)
    q = dd.q_mean_variance(x0_one, torch.full((nm,), T_))
    log_ratio = dl.gaussian_log_likelihood(xT, q.mean, q.log_variance) - dl.gaussian_log_likelihood(xT, 0.0, 0.0)
    kl_mc, kl_se = log_ratio.mean().item(), (log_ratio.std() / math.sqrt(nm)).item()
    kl_cf = sch.prior_kl(1.0)
    print(f"  T = {T_:>4} (abar_T = {sch.alpha_bars[T_]:.3g}): closed form {kl_cf:.3e} nats, Monte Carlo {kl_mc:.3e} "
          f"+- {kl_se:.1e} (one standard error): {within_sigma(kl_mc, kl_cf, kl_se)}")

# %% [markdown]
# At $T = 1000$ the Monte Carlo error bar (3 sigma) is larger than $L_T$ itself: only the closed form can see a number this
# small (chapter 04 makes the same point for every term of the bound). DDPM reports $L_T \approx 10^{-5}$ bits per
# dimension on CIFAR-10; for Fashion-MNIST the table above gives the same order. The picture shows $L_T$ against $T$
# for the three schedules: the linear and quadratic ones need $T$ in the hundreds before $x_T$ is noise, while
# the cosine one reaches $\bar\alpha_T \approx 0$ by construction at every $T$.

# %%
Ts = [10, 20, 50, 100, 200, 500, 1000, 2000]
makers = {
    "linear": lambda T_: dl.NoiseSchedule.linear(T=T_, beta_start=1e-4, beta_end=0.02, warn=False),
    "quadratic": lambda T_: dl.NoiseSchedule.quadratic(T=T_, beta_start=1e-4, beta_end=0.02, warn=False),
    "cosine": lambda T_: dl.NoiseSchedule.cosine(T=T_, warn=False),
}
fig, ax = plt.subplots(figsize=(8.5, 3.4))
for name, make in makers.items():
    ax.loglog(Ts, [make(T_).prior_kl(x0_sq) / LN2 for T_ in Ts], "o-", ms=3, label=name)
ax.axhline(1e-5, c="grey", ls=":", lw=1, label=r"$10^{-5}$ bits/dim (DDPM, CIFAR-10)")
ax.set(xlabel="T", ylabel="$L_T$ (bits/dim)", title=r"$L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal{N}(0, I))$, Fashion-MNIST")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Play: schedule, $\beta_1$, $\beta_T$, $T$ and $t$
#
# The widget draws $x_t$ with `q_sample` (Eq. 4, one jump, the noise held fixed) for four Fashion-MNIST images
# and the swiss roll, beside $\bar\alpha_t$ and $\mathrm{SNR}(t)$ with a marker at $t$; its title and readout give
# $L_T$ in bits per dimension (with $\mathbb E[x_0^2]$ of its four images, so it differs a little from the tables
# above, which use the whole test set). Things to try: the cosine schedule at $t = T/2$ against the linear one (the
# cosine keeps more of the image there); $T = 100$ with the linear ends $10^{-4}$ and $0.02$ (the images survive
# to $x_T$ and $L_T$ jumps); then raise $\beta_T$ until they do not.

# %% tags=["nbval-ignore-output"]
from ddpm_lib.course.widgets import forward_explorer  # noqa: E402

box = forward_explorer(T=1000, t=500)
box

# %% [markdown]
# The static version: the three schedules at $t = 500$, and the linear one with $T = 100$ at $t = T$.

# %%
box.static_figure([dict(t=500, schedule="linear"), dict(t=500, schedule="cosine"), dict(t=500, schedule="quadratic"),
                   dict(T=100, t=100, schedule="linear")])
plt.show()

# %% [markdown]
# ## 6. Exercises
#
# **Exercise 3.1 (`q_sample`, DDPM Eq. 4).** Write `q_sample(x0, t, noise, alpha_bars)`: $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$
# for data `x0` of shape $(B, \dots)$, timesteps `t` (a LongTensor of shape $(B,)$, paper indexing $1..T$), `noise`
# like `x0`, and the table `alpha_bars` of length $T + 1$ (`alpha_bars[0] = 1`). Each example has its own $t$,
# so reshape the looked-up values to $(B, 1, \dots, 1)$.


# %% tags=["solution"]
def q_sample(x0, t, noise, alpha_bars):
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (DDPM Eq. 4), t in 1..T."""
    # BEGIN SOLUTION
    ab = alpha_bars[t].view(-1, *[1] * (x0.ndim - 1))  # (B,) -> (B, 1, ..., 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    # END SOLUTION


# %%
checks.check("q_sample", q_sample)


# %% [markdown]
# A common slip, and what the checker says about it: the one-step factor $\alpha_t$ in place of $\bar\alpha_t$.

# %%
def q_sample_one_step_factor(x0, t, noise, alpha_bars):
    alphas = alpha_bars[1:] / alpha_bars[:-1]  # alpha_t = abar_t / abar_{t-1}
    a = torch.cat([alpha_bars[:1], alphas])[t].view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


checks.check("q_sample", q_sample_one_step_factor)


# %% [markdown]
# **Exercise 3.2 ($\bar\alpha_t$ in log space).** Section 3 wrote $\log \bar\alpha_t = \sum_{s \le t} \log(1 - \beta_s)$. Write
# `alpha_bars_logspace(betas)` that computes the table $\bar\alpha_0, \dots, \bar\alpha_T$ (length $T + 1$, $\bar\alpha_0 = 1$)
# this way, from $\beta_1, \dots, \beta_T$ (length $T$): a cumulative sum of `torch.log1p(-betas)`, then `exp`.
# (Summing logs instead of multiplying many numbers close to 1 is how one keeps such products accurate.)


# %% tags=["solution"]
def alpha_bars_logspace(betas):
    """beta_1..beta_T -> alpha_bar_0..alpha_bar_T via log alpha_bar_t = sum_{s<=t} log(1 - beta_s)."""
    # BEGIN SOLUTION
    log_ab = torch.cumsum(torch.log1p(-betas), dim=0)
    return torch.cat([torch.ones(1, dtype=betas.dtype), log_ab.exp()])
    # END SOLUTION


# %%
checks.check("alpha_bars", alpha_bars_logspace)


# %% [markdown]
# **Exercise 3.3 ($L_T$ in bits per dimension).** Write `prior_term_bits(alpha_bar_T, x0_sq_mean)`: the average of
# $L_T$ per dimension, in bits, for data with $\mathbb E[x_0^2] = $ `x0_sq_mean`, elementwise on tensors. The check
# runs it on every schedule of section 3 and the $T$ table, with the Fashion-MNIST value and two others, against
# `NoiseSchedule.prior_kl`.


# %% tags=["solution"]
def prior_term_bits(alpha_bar_T, x0_sq_mean):
    """E[KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1))] per dimension, in bits."""
    # BEGIN SOLUTION
    nats = 0.5 * (alpha_bar_T * x0_sq_mean - alpha_bar_T - torch.log1p(-alpha_bar_T))
    return nats / math.log(2.0)
    # END SOLUTION


# %%
ex_schedules = list(schedules.values()) + [makers[k](T_) for k in makers for T_ in (10, 100, 1000)]
sq = torch.tensor([x0_sq, 0.25, 1.0], dtype=torch.float64)
abT = torch.tensor([sch.alpha_bars[-1].item() for sch in ex_schedules], dtype=torch.float64)
expected = torch.tensor([[sch.prior_kl(v.item()) / LN2 for v in sq] for sch in ex_schedules], dtype=torch.float64)
checks.check_value("prior_term_bits", prior_term_bits(abT[:, None], sq[None, :]), expected, rtol=1e-9, atol=1e-15,
                   equation="L_T = 1/2 (abar_T E[x_0^2] - abar_T - log(1 - abar_T)) / ln 2 bits per dimension")

# %% [markdown]
# ## Summary
#
# - Reparameterizing each step and merging independent Gaussian noises gives DDPM Eq. 4,
#   $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$: by hand for $x_2$
#   ($1 - \alpha_1 \alpha_2$ is the merged variance), by induction for every $t$. `q_sample` implements it; running
#   the chain with `q_step` gives the same means and variances within Monte Carlo error.
# - A schedule enters $q(x_t \mid x_0)$ only through $\bar\alpha_t$; $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$ falls by
#   many orders of magnitude over $t$, and the cosine schedule spreads that fall more evenly than the linear one.
# - $\bar\alpha_T \approx e^{-\sum_t \beta_t}$ decays exponentially in $T$: DDPM's $T = 1000$, $\beta_t$ from $10^{-4}$ to
#   $0.02$ leaves $\bar\alpha_T \approx 4 \cdot 10^{-5}$.
# - The prior term $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))$ has a closed form, needs only $\mathbb E[x_0^2]$ on average,
#   and is about $10^{-5}$ bits per dimension for DDPM's schedule: a constant the training can ignore.
#
# **Next:** chapter 04 turns the chain around: given $x_t$ and $x_0$, the posterior
# $q(x_{t-1} \mid x_t, x_0)$ is again Gaussian (DDPM Eqs. 6-7), and Eq. 4 is the tool that derives it.
