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
#   reparameterization: for $x_2$ by hand, then for every $t$ by induction;
# - check it by Monte Carlo against the chain run step by step (`q_step` against `q_sample`);
# - compare the linear, quadratic and cosine schedules and the effect of $T$ through $\bar\alpha_t$,
#   $\bar\alpha_T$ and the signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$;
# - compute the prior term $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))$ in closed form, check it by
#   Monte Carlo, and see why DDPM's schedule makes it about $10^{-5}$ bits per dimension;
# - implement `q_sample` yourself, and decide how many steps $T$ a schedule needs for a given $L_T$.
#
# **Reading time:** about 45 minutes, plus the exercises. **CPU time:** about 15 s on a 2-core CPU, most of it
# importing PyTorch and drawing (budget: 45 s).

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
# ## The idea in one picture
#
# Start the forward chain many times from the same data point $x_0$ and look at where $x_t$ lands. The picture
# does this for $x_0 = +1$ and $x_0 = -1$ with DDPM's schedule ($T = 1000$, $\beta_t$ from $10^{-4}$ to $0.02$): thin
# lines are single runs of the chain, a thousand small steps each, and the shaded bands are where the runs fall
# at each $t$ (mean $\pm$ 1 and 2 standard deviations). Each start opens a *fan*: its centre slides towards 0 and
# its width grows towards that of $\mathcal N(0, 1)$.

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's schedule
d = dl.GaussianDiffusion(s, decoder="gaussian")
ts_all = torch.arange(0, s.T + 1)
g_fan = torch.Generator().manual_seed(7)
fig, ax = plt.subplots(figsize=(9.5, 3.6))
for x0_val, col in ((1.0, "C0"), (-1.0, "C1")):
    mean, std = s.alpha_bars.sqrt() * x0_val, (1 - s.alpha_bars).sqrt()  # the fan: this chapter derives it
    ax.fill_between(ts_all, mean - 2 * std, mean + 2 * std, color=col, alpha=0.12, lw=0)
    ax.fill_between(ts_all, mean - std, mean + std, color=col, alpha=0.22, lw=0)
    ax.plot(ts_all, mean, c=col, lw=1.5, label=f"$x_0 = {x0_val:+.0f}$: mean, $\\pm$1 and 2 std")
    x, path = torch.full((3, 1), x0_val, dtype=torch.float64), []
    for t in range(1, s.T + 1):  # three runs of the chain, step by step
        x = d.q_step(x, torch.full((3,), t), generator=g_fan)
        path.append(x)
    ax.plot(ts_all[1:], torch.cat(path, 1).T, c=col, lw=0.5, alpha=0.7)
ax.set(xlabel="$t$", ylabel="$x_t$", xlim=(0, s.T), ylim=(-3.2, 3.2),
       title=r"$q(x_t \mid x_0)$ over $t$: three runs of the chain from each $x_0$, and the band they fall in")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# Up to about $t = 150$ the two fans are apart: $x_t$ still tells which $x_0$ it came from. Then they overlap more
# and more, and from about $t = 500$ on they nearly coincide: $x_t$ says almost nothing about $x_0$. This chapter
# derives the fan: $q(x_t \mid x_0)$ is a Gaussian whose mean and variance depend on $t$ only through one number,
# $\bar\alpha_t$, so any $x_t$ is one Gaussian draw away from $x_0$ (DDPM Eq. 4), and the same number tells how fast
# a schedule destroys the signal and how close $x_T$ comes to the prior $\mathcal N(0, I)$.

# %% [markdown]
# ## 1. Derivation: from one step to any step
#
# Write $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$ (DDPM's notation, with
# $\bar\alpha_0 = 1$). One forward step, reparameterized (a draw from $\mathcal N(\mu, \sigma^2 I)$ is
# $\mu + \sigma \epsilon$ with $\epsilon \sim \mathcal N(0, I)$), reads
# $$x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1 - \alpha_t}\, \epsilon_t, \qquad \epsilon_1, \epsilon_2, \dots \sim \mathcal N(0, I) \text{ independent},$$
# where $\epsilon_t$ is the noise added by step $t$ (some texts index it $\epsilon_{t-1}$, after the $x_{t-1}$ it
# leaves: the same noise, one index lower).
#
# **Two steps first.** Substitute $x_1 = \sqrt{\alpha_1}\, x_0 + \sqrt{1 - \alpha_1}\, \epsilon_1$ into
# the step from $x_1$ to $x_2$:
# $$x_2 = \sqrt{\alpha_2}\, x_1 + \sqrt{1 - \alpha_2}\, \epsilon_2
#       = \sqrt{\alpha_1 \alpha_2}\, x_0 + \underbrace{\sqrt{\alpha_2 (1 - \alpha_1)}\, \epsilon_1 + \sqrt{1 - \alpha_2}\, \epsilon_2}_{\text{two independent Gaussians}} .$$
# The two noise terms are independent zero-mean Gaussians, so their sum is a zero-mean Gaussian whose
# variance is the sum of theirs. Squaring finds it (the cross term has
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
# noises $\epsilon_1, \epsilon_2$ give the expanded expression above, and `q_sample` with the merged noise
# $\bar\epsilon_2 = (\sqrt{\alpha_2 (1 - \alpha_1)}\, \epsilon_1 + \sqrt{1 - \alpha_2}\, \epsilon_2) / \sqrt{1 - \bar\alpha_2}$ lands on the
# same $x_2$. Then the merged noise's variance by Monte Carlo, and a test that it is Gaussian: its *kurtosis*
# $\mathbb E[z^4]$, where $z$ is the noise divided by its standard deviation. Every Gaussian has kurtosis 3; a sum of
# independent non-Gaussian noises generally would not (heavy tails push it above 3, light ones below). Large
# betas make the numbers visible.

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
x2_expanded = (a1 * a2).sqrt() * x0 + (a2 * (1 - a1)).sqrt() * e1 + (1 - a2).sqrt() * e2  # the expression above
merged = (a2 * (1 - a1)).sqrt() * e1 + (1 - a2).sqrt() * e2
x2_eq4 = d2.q_sample(x0, t2, merged / (1 - s2.alpha_bars[2]).sqrt())  # one jump with the merged noise
var_mc, var_eq = merged.var().item(), 1 - (a1 * a2).item()
k4 = ((merged / merged.std()) ** 4).mean().item()
print(f"beta_1 = 0.1, beta_2 = 0.3: alpha_1 = {a1:.2f}, alpha_2 = {a2:.2f}, alpha_bar_2 = alpha_1 alpha_2 = {s2.alpha_bars[2]:.2f}")
rows = [("two q_steps vs sqrt(a1 a2) x0 + sqrt(a2 (1 - a1)) e1 + sqrt(1 - a2) e2", "", "",
         f"max |diff| {below((x2_chain - x2_expanded).abs().max().item())}"),
        ("two q_steps vs q_sample(x0, 2, merged noise / sqrt(1 - abar_2))", "", "",
         f"max |diff| {below((x2_chain - x2_eq4).abs().max().item())}"),
        ("variance of the merged noise vs 1 - alpha_1 alpha_2", f"{var_mc:.4f}", f"{var_eq:.4f}",
         within_sigma(var_mc, var_eq, var_eq * math.sqrt(2 / n))),
        ("kurtosis E[z^4] of the merged noise vs a Gaussian's", f"{k4:.3f}", "3", within_sigma(k4, 3.0, math.sqrt(96 / n)))]
print(f"{'check':<72} {'Monte Carlo':>11} {'exact':>7}   verdict")
for what, mc, exact, verdict in rows:
    print(f"{what:<72} {mc:>11} {exact:>7}   {verdict}")

# %% [markdown]
# Now the claim for all $t$, with DDPM's schedule ($T = 1000$, $\beta_t$ linear from $10^{-4}$ to $0.02$). We run
# the chain step by step with `q_step` for 6,000 independent copies of five starting values
# $x_0 \in \{-1, -0.5, 0, 0.5, 1\}$, and at a few $t$ compare the sample mean and variance with Eq. 4's
# $\sqrt{\bar\alpha_t}\, x_0$ and $1 - \bar\alpha_t$. Beside it, the same comparison for draws made in one jump by
# `q_sample`. The Monte Carlo errors are known: the mean of $N$ draws has standard error (se)
# $\sqrt{(1 - \bar\alpha_t) / N}$, the variance $(1 - \bar\alpha_t) \sqrt{2 / N}$.
#
# How to read 120 differences at once. If each is Monte Carlo error alone, each divided by its se is close to a
# standard normal $z$, so $|z|$ averages $\sqrt{2 / \pi} \approx 0.80$ and is rarely above 3. But among 120 of them
# a few large ones are expected by chance. The *Bonferroni bound* says how large is suspicious: the probability
# that at least one of 120 events happens is at most the sum of their probabilities, so if each $|z|$ exceeds a
# threshold $c$ with probability $p$, the largest of the 120 exceeds it with probability at most $120\, p$. The
# threshold with $120\, p = 1\%$ is $c \approx 3.9$: a largest $|z|$ below it is what Monte Carlo error alone
# would give, 99% of the time or more.

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
      f"({'below' if z_all.max() < bound else 'ABOVE'} {bound:.1f}, the Bonferroni threshold that the largest of {len(z_all)} "
      f"exceeds by chance at most 1% of the time)")

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
# hence the log scale. A look ahead: since $x_t - \sqrt{\bar\alpha_t}\, x_0 = \sqrt{1 - \bar\alpha_t}\, \epsilon$, the gradient of
# $\log q(x_t \mid x_0)$ with respect to $x_t$ (its *score*) is $-(x_t - \sqrt{\bar\alpha_t}\, x_0) / (1 - \bar\alpha_t)$, so
# $\epsilon = -\sqrt{1 - \bar\alpha_t}\, \nabla_{x_t} \log q(x_t \mid x_0)$: the noise points, up to a factor, against the
# direction in which $x_t$ becomes more likely, a link chapter 06 builds on. Three schedules:
# - **linear** (DDPM, Sec. 4): $\beta_t$ linear from $\beta_1 = 10^{-4}$ to $\beta_T = 0.02$, $T = 1000$;
# - **quadratic** (DDPM's code): $\sqrt{\beta_t}$ linear between the same ends, so the betas stay smaller for longer;
# - **cosine** (Nichol & Dhariwal 2021, Eq. 17): $\bar\alpha_t = f(t) / f(0)$, $f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s} \frac{\pi}{2}\big)$,
#   $s = 0.008$, with $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ clipped at 0.999; it destroys information more evenly
#   over $t$ (its $\log \mathrm{SNR}$ falls almost linearly in the middle).
#
# DDPM (Sec. 4) chose $\beta_t$ from $10^{-4}$ to $0.02$ to keep the signal-to-noise ratio at $x_T$ as small as possible,
# so that $x_T$ is nearly $\mathcal N(0, I)$ and the prior term $L_T$ of the bound is tiny; section 4 measures it. In
# the table, $\bar\alpha_{T/2}$ is $\bar\alpha_t$ at the middle of the chain, $t = T/2 = 500$.

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
print(f"{'schedule':>10} {'beta_1':>8} {'beta_T':>7} {'abar_(T/2)':>10} {'abar_T':>9} {'SNR(1)':>8} {'SNR(T)':>9} "
      f"{'SNR < 1 from t':>15} {'L_T bits/dim':>13}")
for name, sch in schedules.items():
    t_cross = int((sch.snr[1:] < 1).nonzero()[0]) + 1
    print(f"{name:>10} {sch.betas[1]:>8.2e} {sch.betas[T]:>7.3f} {sch.alpha_bars[T // 2]:>10.4f} "
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
# $\mu = \sqrt{\bar\alpha_T}\, x_0$ and $v = 1 - \bar\alpha_T$, the KL from a 1-D Gaussian to $\mathcal N(0, 1)$ (derived in
# chapter 01, section 1; chapter 04 derives the KL between any two Gaussians) is $D_{KL}(\mathcal N(\mu, v) \,\|\, \mathcal N(0, 1)) = \tfrac12 (v + \mu^2 - 1 - \log v)$, so
# $$L_T = \sum_{i} \tfrac12 \Big( \bar\alpha_T\, x_{0,i}^2 - \bar\alpha_T - \log(1 - \bar\alpha_T) \Big)
#   \approx \sum_i \tfrac12\, \bar\alpha_T\, x_{0,i}^2 \quad (\bar\alpha_T \ll 1) .$$
# It is linear in $x_{0,i}^2$, so its average over the data needs only $\mathbb E[x_0^2]$
# (`NoiseSchedule.prior_kl(x0_sq_mean)`, per dimension in nats), and it has no trainable parameter when the
# $\beta_t$ are fixed: DDPM fixes them, so $L_T$ is a constant and training leaves it out.
# Divide by $\ln 2$ for bits. Three computations must agree: `GaussianDiffusion.prior_kl` (the KL of each pixel by
# `dl.normal_kl`, summed per image), `NoiseSchedule.prior_kl` with the data's $\mathbb E[x_0^2]$, and a Monte Carlo
# average of $\log q(x_T \mid x_0) - \log \mathcal N(x_T; 0, 1)$ over draws of $x_T$.

# %%
imgs = images[:1000].double()  # 1000 test images, 784 dimensions each
D = imgs[0].numel()
rows = []
for name, sch in schedules.items():  # Fashion-MNIST, T = 1000, in bits per dimension
    per_image = dl.GaussianDiffusion(sch).prior_kl(imgs)  # (1000,) nats, summed over the 784 pixels (normal_kl per pixel)
    from_lib = per_image.mean().item() / (D * LN2)
    from_sq = sch.prior_kl((imgs**2).mean().item()) / LN2
    rows.append((f"Fashion-MNIST, {name}, T = 1000 (bits/dim)", f"{from_lib:.4e}", f"{from_sq:.4e}",
                 f"|diff| {below(from_lib - from_sq, 1e-15)}"))

# Monte Carlo needs L_T large enough to see: short linear schedules, one x_0 = 1 (per dimension)
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
    rows.append((f"x_0 = 1, linear, T = {T_}, abar_T = {sch.alpha_bars[T_]:.3g} (nats)", f"{sch.prior_kl(1.0):.3e}",
                 f"{kl_mc:.3e}", f"se {kl_se:.1e}, {within_sigma(kl_mc, sch.prior_kl(1.0), kl_se)}"))
print(f"{'L_T, two ways':<52} {'way 1':>10} {'way 2':>10}   verdict")
print("way 1: normal_kl per pixel, or the closed form; way 2: the closed form with E[x_0^2], or Monte Carlo over 200,000 x_T")
for what, a, b_, verdict in rows:
    print(f"{what:<52} {a:>10} {b_:>10}   {verdict}")

# %% [markdown]
# At $T = 1000$ the Monte Carlo error bar (3 standard errors, $4 \cdot 10^{-5}$ nats) is larger than $L_T$ itself
# ($2 \cdot 10^{-5}$): only the closed form can see a number this small (chapter 04 makes the same point for every
# term of the bound). DDPM reports $L_T \approx 10^{-5}$ bits per dimension on CIFAR-10; for Fashion-MNIST the linear
# schedule gives the same order ($2.0 \cdot 10^{-5}$). The picture shows $L_T$ against $T$ for the three schedules:
# the linear one comes down to about $10^{-5}$ bits/dim only near $T = 1000$ (Exercise 3.4 finds the exact $T$), the
# quadratic one between $T = 1000$ and $2000$, while the cosine one, whose $\bar\alpha_T$ is close to 0 by
# construction, is at about $10^{-5}$ already at $T = 10$ and falls from there.

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
# cosine keeps more of the image there); $T = 100$ with the linear ends $10^{-4}$ and $0.02$ (at $x_T$,
# $\bar\alpha_T = 0.36$: a faint trace of each image is left, and $L_T$ jumps from about $2 \cdot 10^{-5}$ to 0.26 bits/dim);
# then raise $\beta_T$ until the trace is gone.

# %% tags=["nbval-ignore-output"]
from ddpm_lib.course.widgets import forward_explorer  # noqa: E402

box = forward_explorer(T=1000, t=500)
box

# %% [markdown]
# The static version: the three schedules at $t = 500$ (row 2, the cosine one, shows the most of each image), and
# the linear one with $T = 100$ at $t = T$ (row 4: the images are faint but not gone).

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
# runs it on nine schedules (linear, quadratic and cosine at $T = 10, 100, 1000$) and three values of $\mathbb E[x_0^2]$
# against `NoiseSchedule.prior_kl`, to a relative $10^{-6}$: the exact value is asked, not the approximation
# $\tfrac12 \bar\alpha_T \mathbb E[x_0^2]$ of section 4, which is off by about $\bar\alpha_T / 2$ relative.


# %% tags=["solution"]
def prior_term_bits(alpha_bar_T, x0_sq_mean):
    """E[KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1))] per dimension, in bits."""
    # BEGIN SOLUTION
    nats = 0.5 * (alpha_bar_T * x0_sq_mean - alpha_bar_T - torch.log1p(-alpha_bar_T))
    return nats / math.log(2.0)
    # END SOLUTION


# %%
checks.check("prior_term_bits", prior_term_bits)


# %% [markdown]
# **Exercise 3.4 (decide: how many steps?).** DDPM aims at $L_T \approx 10^{-5}$ bits per dimension. Keep the linear
# schedule's ends at $\beta_1 = 10^{-4}$ and $\beta_T = 0.02$ and take Fashion-MNIST ($\mathbb E[x_0^2] = 0.68$): what is the
# smallest $T$ with $L_T \le 10^{-5}$ bits/dim, and is DDPM's $T = 1000$ enough? First estimate it by hand from
# section 3's $\bar\alpha_T \approx e^{-T (\beta_1 + \beta_T) / 2}$ and section 4's $L_T \approx \tfrac12 \bar\alpha_T \mathbb E[x_0^2]$ (nats).
# Then write `smallest_T(target_bits, x0_sq_mean, beta_1, beta_T)` that finds the exact answer with
# `dl.NoiseSchedule.linear(T=..., beta_start=beta_1, beta_end=beta_T, warn=False).prior_kl(x0_sq_mean)` (in nats).
# $L_T$ falls as $T$ grows, so a search over $T$ works. The check tries three targets and schedules.


# %% tags=["solution"]
def smallest_T(target_bits, x0_sq_mean, beta_1, beta_T):
    """The smallest T whose linear schedule from beta_1 to beta_T has L_T <= target_bits bits per dimension."""
    # BEGIN SOLUTION
    def lt_bits(T):
        sch = dl.NoiseSchedule.linear(T=T, beta_start=beta_1, beta_end=beta_T, warn=False)
        return sch.prior_kl(x0_sq_mean) / math.log(2.0)

    hi = 2
    while lt_bits(hi) > target_bits:  # double T until the target is met ...
        hi *= 2
    lo = hi // 2 + 1 if hi > 2 else 2
    while lo < hi:  # ... then bisect between the last miss and the first hit
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if lt_bits(mid) <= target_bits else (mid + 1, hi)
    return lo
    # END SOLUTION


# %%
checks.check("smallest_T", smallest_T)

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
#   and is about $10^{-5}$ bits per dimension for DDPM's schedule: a constant the training can ignore. With DDPM's
#   ends and Fashion-MNIST, the linear schedule needs a little more than $T = 1000$ steps to reach $10^{-5}$ (Exercise 3.4).
#
# **Next:** chapter 04 turns the chain around: given $x_t$ and $x_0$, the posterior
# $q(x_{t-1} \mid x_t, x_0)$ is again Gaussian (DDPM Eqs. 6-7), and Eq. 4 is the tool that derives it.
