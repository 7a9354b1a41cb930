# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14 · Homework: a warm-up and three projects
#
# The warm-up has you write the pieces of DDPM that chapters 03-10 derived, each in a few lines and
# checked against `ddpm_lib`; 14.6 and 14.7 ask for schedules. The three projects then build what the
# course has not: a DDIM sampler with noise ($\eta > 0$) and its trade-off between steps and quality,
# classifier guidance with a classifier you train, and RePaint's resampling for inpainting. Each project
# is checked by `ddpm_lib.course.checks`, or measured against a target that the checker reports.
#
# **Learning goals.** After this homework you can
# - implement DDPM Eq. 4, Eqs. 6-7, the KL of Eq. 5, Eq. 13 and Algorithm 2's step with paper indexing
#   and correct broadcasting, and read a checker's message back to the wrong term;
# - implement the cosine schedule, and design a schedule to a specification;
# - write DDIM's step for any $\eta$ and measure what $\eta$ and the number of steps cost in sample quality;
# - explain why a classifier of clean data cannot guide a diffusion model, train one that can, and guide with it;
# - write RePaint's resampling loop and measure what it fixes in inpainting;
# - train the library's U-Net on your own images, stop, resume, and check what it learned.
#
# **CPU time:** about a minute and a half on a 2-core CPU (budget: 150 s): one small classifier trained for 500 steps,
# a few thousand steps of a 2-D network, and at the end 400 steps of the tiny U-Net on your own images.
#
# **How to work.** In the student edition (`python -m ddpm_lib.course.book student OUTDIR`), each cell
# tagged `exercise` holds a signature, a docstring and a `raise NotImplementedError(...)`: replace that line
# with your code and run the check below it. In this book the reference solutions are filled in.
#
# **Three rules that prevent most mistakes.**
# 1. *Paper indexing*: tables such as `alpha_bars`, `betas`, `alphas` have length $T + 1$ and index $t$
#    means the paper's $t$ (`alpha_bars[0]` $= \bar\alpha_0 = 1$). Index them with `t` itself, never `t - 1`.
# 2. *Broadcasting and dtype*: `t` is a LongTensor of shape `(B,)` and data have shape `(B, ...)`, so
#    `alpha_bars[t]` has shape `(B,)` and must be reshaped to `(B, 1, ..., 1)`; the tables are float64 and a
#    float32 network wants float32. The helper `per_example` below does both.
# 3. *Use the noise you are given*: the checkers pass `noise` (or a `generator`); a function that draws
#    its own random numbers cannot be checked.

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks, projects
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.sampling import ddim_timesteps  # S evenly spaced timesteps of 1..T, ending at T (chapter 10)
from ddpm_lib.viz import course_style

course_style()


def per_example(v, x):
    """A table entry per example, shape (B,), reshaped to broadcast against x of shape (B, ...), in x's dtype
    (the tables are float64; float32 data should stay float32)."""
    return v.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)


mlp = dl.load_pretrained("swiss-roll-mlp")  # the 2-D network of the projects: an MLP trained with T = 200
d_roll, s_roll = mlp.diffusion, mlp.diffusion.schedule

# %% [markdown]
# ## Part 1: warm-up
#
# Five exercises that repeat, in one place, the equations of chapters 03-07 and 10; each says where it
# was derived. Then two schedules.
#
# ### Exercise 14.1: the forward jump $q(x_t \mid x_0)$ (DDPM Eq. 4, chapter 03)
#
# $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with $\bar\alpha_t = \prod_{s=1}^{t} (1 - \beta_s)$.
# Write `q_sample(x0, t, noise, alpha_bars)`: `x0` of shape `(B, ...)`, `t` a LongTensor `(B,)` in
# $1..T$, `noise` $= \epsilon$ shaped like `x0`, `alpha_bars` the table $\bar\alpha_0, \dots, \bar\alpha_T$.


# %% tags=["solution"]
def q_sample(x0, t, noise, alpha_bars):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (DDPM Eq. 4); t in 1..T, shape (B,)."""
    # BEGIN SOLUTION
    abar = per_example(alpha_bars[t], x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    # END SOLUTION


# %%
result_q = checks.check("q_sample", q_sample)


# %% [markdown]
# **What a wrong answer looks like.** A classic slip is to use $\alpha_t = 1 - \beta_t$, the factor of
# *one* step, where the jump needs the product $\bar\alpha_t$. The checker recognizes it, says at which
# $t$ the numbers differ, and names the equation:

# %%
def q_sample_with_alpha(x0, t, noise, alpha_bars):
    alphas = torch.cat([torch.ones(1, dtype=alpha_bars.dtype), alpha_bars[1:] / alpha_bars[:-1]])  # alpha_t
    a = per_example(alphas[t], x0)  # the mistake: alpha_t where alpha_bar_t belongs
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


_ = checks.check("q_sample", q_sample_with_alpha)

# %% [markdown]
# ### Exercise 14.2: the posterior $q(x_{t-1} \mid x_t, x_0)$ (DDPM Eqs. 6-7, chapter 04)
#
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
#   + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \qquad
# \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t .$$
# Write `posterior(x0, x_t, t, schedule)` returning `(mean, variance)`, the variance of shape `(B,)`,
# `(B, 1, ..., 1)` or like `x_t`, from `schedule.alpha_bars`, `.alphas` and `.betas` (not the schedule's
# `posterior_*` tables, which hold the answer).


# %% tags=["solution"]
def posterior(x0, x_t, t, schedule):
    """(mean, variance) of q(x_{t-1} | x_t, x_0) (DDPM Eqs. 6-7); t in 1..T, shape (B,)."""
    # BEGIN SOLUTION
    abar, abar_prev = schedule.alpha_bars[t], schedule.alpha_bars[t - 1]
    beta, alpha = schedule.betas[t], schedule.alphas[t]
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar)
    coef_xt = alpha.sqrt() * (1 - abar_prev) / (1 - abar)
    mean = per_example(coef_x0, x0) * x0 + per_example(coef_xt, x_t) * x_t
    variance = (1 - abar_prev) / (1 - abar) * beta
    return mean, variance
    # END SOLUTION


# %%
result_post = checks.check("posterior", posterior)

# %% [markdown]
# ### Exercise 14.3: the KL between two Gaussians (the terms of DDPM Eq. 5, chapter 04)
#
# Per coordinate, with variances $v_i = e^{\ell_i}$:
# $D_{KL}\big(\mathcal N(m_1, v_1) \,\|\, \mathcal N(m_2, v_2)\big)
#   = \tfrac12\big(\ell_2 - \ell_1 + v_1/v_2 + (m_1 - m_2)^2/v_2 - 1\big)$.
# Write `normal_kl(mean1, logvar1, mean2, logvar2)` elementwise (a tensor of the inputs' shape, not a sum).


# %% tags=["solution"]
def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats."""
    # BEGIN SOLUTION
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)
    # END SOLUTION


# %%
result_kl = checks.check("normal_kl", normal_kl)

# %% [markdown]
# ### Exercise 14.4: the discretized decoder (DDPM Eq. 13, chapter 07)
#
# $P(x) = \Phi\big((\delta_+(x) - \mu)/\sigma\big) - \Phi\big((\delta_-(x) - \mu)/\sigma\big)$, with
# $\delta_\pm(x) = x \pm \tfrac1{255}$ except $\delta_+(1) = \infty$ and $\delta_-(-1) = -\infty$ (the open
# edge bins). Write `discretized_log_likelihood(x, mean, log_scale)`, returning $\log P(x)$ elementwise,
# `log_scale` $= \log\sigma$. `torch.special.log_ndtr` is $\log\Phi$; `torch.where(x < -0.999, ..., ...)`
# handles the edges.


# %% tags=["solution"]
def discretized_log_likelihood(x, mean, log_scale):
    """log P(x) of DDPM Eq. 13 elementwise: the mass of N(mean, exp(log_scale)^2) on x's bin."""
    # BEGIN SOLUTION
    inv_sigma = torch.exp(-log_scale)
    upper = (x + 1 / 255 - mean) * inv_sigma
    lower = (x - 1 / 255 - mean) * inv_sigma
    # log of a difference of CDFs, taken on the side of the mean where it does not cancel to 0
    below = torch.special.log_ndtr(upper) + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - torch.special.log_ndtr(upper)))
    above = torch.special.log_ndtr(-lower) + torch.log1p(-torch.exp(torch.special.log_ndtr(-upper) - torch.special.log_ndtr(-lower)))
    inner = torch.where(lower > 0, above, below)
    return torch.where(x < -0.999, torch.special.log_ndtr(upper),  # first bin: (-inf, x + 1/255]
                       torch.where(x > 0.999, torch.special.log_ndtr(-lower), inner))  # last bin: (x - 1/255, inf)
    # END SOLUTION


# %%
result_dec = checks.check("discretized_log_likelihood", discretized_log_likelihood)

# %% [markdown]
# ### Exercise 14.5: one step of Algorithm 2 (line 4, chapters 06 and 10)
#
# $x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\big)
#   + \sigma_t z$, with $\sigma_t^2 = \beta_t$ (the checker also accepts $\tilde\beta_t$) and $z = 0$ at $t = 1$.
# Write `p_sample_step(eps_pred, x_t, t, schedule, noise)`, `noise` being $z$.


# %% tags=["solution"]
def p_sample_step(eps_pred, x_t, t, schedule, noise):
    """x_{t-1} from x_t and the predicted noise (DDPM Algorithm 2, line 4), sigma_t^2 = beta_t."""
    # BEGIN SOLUTION
    alpha, abar, beta = (per_example(v[t], x_t) for v in (schedule.alphas, schedule.alpha_bars, schedule.betas))
    mean = (x_t - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    not_last = per_example((t > 1).to(x_t.dtype), x_t)  # z = 0 at t = 1
    return mean + not_last * beta.sqrt() * noise
    # END SOLUTION


# %%
result_step = checks.check("p_sample_step", p_sample_step)

# %% [markdown]
# ### Your pieces at work
#
# With your step, Algorithm 2 runs as written: $x_T \sim \mathcal N(0, I)$, then $T = 200$ steps down to
# $x_0$, with the shipped swiss-roll network (`dl.load_pretrained("swiss-roll-mlp")`, loaded above; the
# network is called with `d_roll.model_t(t)`, which for an unrespaced schedule is $t$ itself). At every step
# your $x_{t-1}$ is compared with the library's `p_sample` from the same $x_t$, $\epsilon_\theta$ and $z$.
# The samples are scored by the *sliced W1 ratio* (`dl.sliced_w1_ratio`): their sliced Wasserstein-1
# distance to fresh swiss-roll points, divided by that between two fresh data sets of the same size, so
# 1 is as close as the data itself. Fresh data sets are scored too, to show how much the ratio varies at
# this size. Then your posterior and KL compute a term of the bound, $L_{t-1}$.

# %%
g = torch.Generator().manual_seed(0)
n_points = 2000
if result_step.passed:
    x = torch.randn(n_points, 2, generator=g)
    worst = 0.0
    with torch.no_grad():
        for step in range(s_roll.T, 0, -1):
            t = torch.full((n_points,), step, dtype=torch.long)
            eps = mlp.model(x, d_roll.model_t(t))
            z = torch.randn(n_points, 2, generator=g)
            mine = p_sample_step(eps, x, t, s_roll, z)
            worst = max(worst, (mine - d_roll.p_sample(eps, x, t, z)).abs().max().item())
            x = mine
    data = dl.swiss_roll(n_points, generator=torch.Generator().manual_seed(1))
    w1 = dl.sliced_w1_ratio(x)
    fresh = [r["ratio"] for r in dl.sliced_w1_ratios(
        [dl.swiss_roll(n_points, generator=torch.Generator().manual_seed(100 + i)) for i in range(8)])]
    print(f"{s_roll.T} steps of your p_sample_step vs the library's p_sample (sigma_t^2 = beta_t): "
          f"max |diff| at any step {below(worst, 1e-5)} (float32 round-off: the library forms the mean through x0_hat)")
    print(f"sliced W1 ratio of your {n_points} samples: {w1['ratio']:.1f}; eight fresh data sets of the same size "
          f"score {min(fresh):.1f} to {max(fresh):.1f}")
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), sharex=True, sharey=True)
    axes[0].scatter(*data.T, s=2, alpha=0.5)
    axes[0].set_title("the swiss roll (data)")
    axes[1].scatter(*x.T, s=2, alpha=0.5, color="C1")
    axes[1].set_title("Algorithm 2 with your step")
    for ax in axes:
        ax.set(xlabel="$x_1$", aspect="equal")
    axes[0].set_ylabel("$x_2$")
    fig.tight_layout()
    plt.show()
else:
    print("finish exercise 14.5 (p_sample_step) to sample with your own step")

# %%
if result_post.passed and result_kl.passed and result_q.passed:
    x0 = dl.swiss_roll(256, generator=torch.Generator().manual_seed(3)).double()
    t = torch.full((256,), 20, dtype=torch.long)
    noise = torch.randn(256, 2, generator=g, dtype=torch.float64)
    x_t = q_sample(x0, t, noise, s_roll.alpha_bars)
    with torch.no_grad():
        eps = mlp.model(x_t.float(), d_roll.model_t(t)).double()
    p_out = d_roll.p_mean_variance(eps, x_t, t)  # the model's p(x_{t-1} | x_t)
    q_mean, q_var = posterior(x0, x_t, t, s_roll)
    q_logvar = torch.as_tensor(q_var, dtype=torch.float64).log()
    yours = normal_kl(q_mean, per_example(q_logvar, x0) if q_logvar.ndim == 1 else q_logvar,
                      p_out["mean"], p_out["log_variance"]).sum(1)
    d_vlb = dl.GaussianDiffusion(s_roll, prediction="eps", variance="fixed_large", loss="vlb", decoder="gaussian")
    with torch.no_grad():
        lib = d_vlb.training_losses(lambda x, tt: mlp.model(x.float(), tt).double(), x0, t=t, noise=noise)["vb"]
    lib_nats = lib * 2 * math.log(2)  # bits/dim -> nats summed over the 2 dimensions
    print(f"L_(t-1) at t = 20 from your q_sample, posterior and normal_kl: mean {yours.mean().item():.4f} nats; "
          f"the library's bound term {lib_nats.mean().item():.4f}; max |diff| {below((yours - lib_nats).abs().max(), 1e-6)}")
else:
    print("finish exercises 14.1-14.3 to compute a term of the bound with your own functions")

# %% [markdown]
# ### Exercise 14.6: the cosine schedule (Nichol & Dhariwal 2021, Eq. 17)
#
# DDPM's linear schedule destroys information fast: $\bar\alpha_t$ is already small halfway through.
# Nichol & Dhariwal define the schedule through $\bar\alpha_t$ instead,
# $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s} \cdot \frac{\pi}{2}\Big),
# \qquad s = 0.008,$$
# and clip $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ at `max_beta` $= 0.999$ (near $t = T$ the ratio
# tends to 0 and $\beta_T$ would be 1, $\bar\alpha_T = 0$). After clipping, $\bar\alpha_t$ is the product
# $\prod_{s \le t} (1 - \beta_s)$ again. Write `cosine_alpha_bars(T, s=0.008, max_beta=0.999)` returning
# the table $\bar\alpha_0, \dots, \bar\alpha_T$ (length $T + 1$, $\bar\alpha_0 = 1$), in float64.


# %% tags=["solution"]
def cosine_alpha_bars(T, s=0.008, max_beta=0.999):
    """alpha_bar_0..alpha_bar_T of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17), betas clipped."""
    # BEGIN SOLUTION
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    # END SOLUTION


# %%
result_cos = checks.check("cosine_schedule", cosine_alpha_bars)
if result_cos.passed:
    lin = dl.NoiseSchedule.linear(T=1000)
    ab_cos = cosine_alpha_bars(1000)
    half = lambda ab: int((ab < 0.5).nonzero()[0])  # noqa: E731 - the first t with abar_t < 1/2
    print(f"abar_t falls below 1/2 at t = {half(lin.alpha_bars)} (linear) and t = {half(ab_cos)} (cosine); "
          f"abar_T = {lin.alpha_bars[-1].item():.2e} and {ab_cos[-1].item():.2e}")
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(lin.alpha_bars, label="linear 1e-4 .. 0.02")
    ax.plot(ab_cos, label="cosine (yours)")
    ax.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title="T = 1000")
    ax.legend()
    fig.tight_layout()
    plt.show()
else:
    print("finish exercise 14.6 to compare your cosine schedule with the linear one")

# %% [markdown]
# ### Exercise 14.7 (open): design a schedule to a specification
#
# A schedule is a design choice. Suppose you must keep $\beta_1$ (the noise of the first step, which sets
# how fine the last denoising step is) and want a given $\bar\alpha_T = \prod_{t=1}^T (1 - \beta_t)$ (how
# much of the data survives to $x_T$; $L_T$ grows with it). Write `design_betas(T, beta_1, alpha_bar_T)`
# returning $\beta_1, \dots, \beta_T$ (length $T$) with
# - the given $\beta_1$, each $\beta_t$ in $(0, 1)$, and $\beta_t$ never decreasing;
# - $\prod_t (1 - \beta_t)$ equal to the target (to 0.1%).
#
# Any design that meets the specification passes. The reference solution keeps DDPM's linear shape and
# finds $\beta_T$ by bisection. Below, it is measured on Gaussian data: $L_T$ exactly
# (`NoiseSchedule.prior_kl`), and the whole bound of the best possible model (`dl.GaussianData.eps_model`,
# chapter 07) by Monte Carlo.


# %% tags=["solution"]
def design_betas(T, beta_1, alpha_bar_T):
    """beta_1..beta_T (length T): nondecreasing, the given beta_1, prod(1 - beta_t) = alpha_bar_T."""
    # BEGIN SOLUTION
    def abar_T(beta_T):  # the linear schedule beta_1 .. beta_T
        return torch.log1p(-torch.linspace(beta_1, beta_T, T, dtype=torch.float64)).sum().exp().item()

    lo, hi = beta_1, 0.999  # abar_T(lo) > target > abar_T(hi) for every target this can reach
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if abar_T(mid) > alpha_bar_T else (lo, mid)
    return torch.linspace(beta_1, 0.5 * (lo + hi), T, dtype=torch.float64)
    # END SOLUTION


# %%
result_design = checks.check("schedule_design", design_betas)
if result_design.passed:
    T_design, toy = 200, dl.GaussianData(dim=16, mean=0.0, std=0.5)
    print(f"T = {T_design}, beta_1 = 1e-4; Gaussian data N(0, 0.5^2): L_T = KL(q(x_T | x_0) || N(0, I)), exact")
    designs = {}
    for target in (1e-1, 1e-2, 1e-4):
        sch = designs[target] = dl.NoiseSchedule.from_betas(design_betas(T_design, 1e-4, target), warn=False)
        print(f"  abar_T = {target:.0e}: beta_T = {sch.betas[-1].item():.4f}, "
              f"L_T = {sch.prior_kl(toy.std**2) / math.log(2):.2e} bits/dim")
    x0_toy = toy.sample(256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    nll = -toy.log_prob(x0_toy) / (toy.dim * math.log(2))
    sch = designs[1e-2]
    d_toy = dl.GaussianDiffusion(sch, variance="fixed_large", decoder="gaussian")
    bpd = d_toy.bits_per_dim(toy.eps_model(sch.alpha_bars), x0_toy, generator=torch.Generator().manual_seed(5))
    gap = bpd - nll
    print(f"the whole bound of the best eps-model (sigma_t^2 = beta_t) at abar_T = 1e-2, Monte Carlo over "
          f"{len(bpd)} examples: {bpd.mean().item():.3f} bits/dim; bound - true NLL {gap.mean().item():+.3f} +- "
          f"{gap.std().item() / math.sqrt(len(gap)):.3f}")
else:
    print("finish exercise 14.7 to measure your schedule")

# %% [markdown]
# Questions to explore (no checker). A smaller $\bar\alpha_T$ shrinks $L_T$ but needs larger steps, which
# make the middle terms grow; the Monte Carlo bound above cannot resolve that (thousandths of a bit).
# With chapter 07's closed-form terms (section 4.1), find the $\bar\alpha_T$ that makes the bound smallest
# for $T = 200$ and $T = 1000$; then change the shape at fixed $\bar\alpha_T$: does it matter for the bound?

# %% [markdown]
# ## Part 2: projects
#
# Each project has you build one piece, checks it, and uses it where the result can be measured: with the
# shipped swiss-roll network, and with mixtures of two Gaussians whose every quantity is known exactly.
#
# ### Project 14.8: DDIM with noise, and the trade-off between steps and quality
#
# Chapter 10's DDIM step is deterministic. Song et al. (2021) define a whole family of samplers on any
# subsequence of timesteps, indexed by a noise level $\sigma$ (their Eq. 12, written here from $t$ to an
# earlier $t'$):
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\, \hat x_0 + \sqrt{1 - \bar\alpha_{t'} - \sigma^2}\; \epsilon_\theta(x_t, t)
#   + \sigma z, \qquad \hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}},$$
# with $z \sim \mathcal N(0, I)$, and they set the noise through one number $\eta$ (their Eq. 16):
# $$\sigma = \eta \sqrt{\frac{1 - \bar\alpha_{t'}}{1 - \bar\alpha_t}} \sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{t'}}} .$$
# $\eta = 0$ is chapter 10's deterministic step; at $\eta = 1$, $\sigma^2$ is the variance of the posterior
# $q(x_{t'} \mid x_t, x_0)$ of the jump, so on all $T$ steps it is DDPM's sampler with
# $\sigma_t^2 = \tilde\beta_t$. The coefficient of $\epsilon_\theta$ shrinks so that the total variance
# stays $1 - \bar\alpha_{t'}$.
#
# Write `ddim_eta_step(eps_pred, x_t, t, t_prev, alpha_bars, eta, noise)`: `t` and `t_prev` are
# LongTensors `(B,)` with `t_prev < t` (`t_prev` $= 0$ gives $x_0$, with $\bar\alpha_0 = 1$), `noise` is $z$.


# %% tags=["solution"]
def ddim_eta_step(eps_pred, x_t, t, t_prev, alpha_bars, eta, noise):
    """x_(t_prev) by DDIM's step with noise level eta (Song et al. 2021, Eqs. 12 and 16)."""
    # BEGIN SOLUTION
    ab, ab_prev = per_example(alpha_bars[t], x_t), per_example(alpha_bars[t_prev], x_t)
    x0_hat = (x_t - (1 - ab).sqrt() * eps_pred) / ab.sqrt()
    sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps_pred + sigma * noise
    # END SOLUTION


# %%
result_ddim = checks.check("ddim_eta_step", ddim_eta_step)


# %% [markdown]
# **The trade-off.** Below, your step runs on `ddim_timesteps(200, S)` (from `ddpm_lib.sampling`), an evenly spaced subsequence of
# $S$ timesteps ending at $T$, with the swiss-roll network, for several $S$ and $\eta$; each sampler draws
# 2,000 points from the same seed and is scored by the sliced W1 ratio. The network is called $S$ times,
# so $S$ is the cost.

# %%
def my_ddim(steps, eta, n=2000, seed=0):
    """Sample n points with ddim_eta_step on `steps` timesteps of the swiss-roll model."""
    g = torch.Generator().manual_seed(seed)
    ts = ddim_timesteps(s_roll.T, steps).flip(0).tolist()  # T, ..., then 0 for x_0
    x = torch.randn(n, 2, generator=g)
    with torch.no_grad():
        for tt, tp in zip(ts, [*ts[1:], 0]):
            t, t_prev = torch.full((n,), tt), torch.full((n,), tp)
            eps = mlp.model(x, d_roll.model_t(t))
            x = ddim_eta_step(eps, x, t, t_prev, s_roll.alpha_bars, eta, torch.randn(n, 2, generator=g)).float()
    return x


steps_grid, etas = (10, 20, 50, 200), (0.0, 0.5, 1.0)
if result_ddim.passed:
    ddim_runs = {(S, eta): my_ddim(S, eta) for eta in etas for S in steps_grid}
    ratios = dict(zip(ddim_runs, (r["ratio"] for r in dl.sliced_w1_ratios(ddim_runs.values()))))
    print("sliced W1 ratio (1 = as close as fresh data), 2,000 samples each")
    print("  eta  | " + " | ".join(f"S = {S:>3}" for S in steps_grid))
    for eta in etas:
        print(f"  {eta:.1f}  | " + " | ".join(f"{ratios[S, eta]:7.1f}" for S in steps_grid))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
    for eta in etas:
        axes[0].plot(steps_grid, [ratios[S, eta] for S in steps_grid], "o-", label=rf"$\eta$ = {eta}")
    axes[0].axhline(1, color="0.5", lw=0.8)
    axes[0].set(xscale="log", xlabel="steps $S$ (network calls)", ylabel="sliced W1 ratio")
    axes[0].legend(loc="upper right")
    for ax, (S, eta) in zip(axes[1:], ((10, 0.0), (50, 0.5))):
        ax.scatter(*ddim_runs[S, eta].T, s=2, alpha=0.5, color="C1")
        ax.set(title=rf"$S$ = {S}, $\eta$ = {eta}", xlabel="$x_1$", ylabel="$x_2$", aspect="equal",
               xlim=(-1.6, 1.8), ylim=(-1.6, 1.8))
    fig.tight_layout()
    plt.show()
else:
    print("finish project 14.8's ddim_eta_step to measure the trade-off")

# %% [markdown]
# With few steps the deterministic sampler is best: at $S = 10$ the ratio grows from 3.9 at $\eta = 0$ to
# 5.3 at $\eta = 1$, and at $S = 20$ from 1.8 to 2.3. With many steps the order turns: at $S = 200$,
# $\eta = 1$ scores 0.7 and $\eta = 0.5$ 0.8, within the spread of fresh data sets above (0.7 to 0.9),
# while $\eta = 0$ stays at 1.1. The pictures show the best 10-step sampler, a blurred spiral, and the best
# 50-step one. Each noisy step adds variance that later steps must remove; with few steps left they cannot,
# while with many the fresh noise lets later steps correct the errors of earlier ones.
#
# *Decide* (no checker): with a budget of 20 network calls, which $\eta$ would you use, and with 200? Try
# $\eta = 0.2$ and other $S$, and a different seed: which differences in the table are larger than the
# spread of the fresh data sets?

# %% [markdown]
# ### Project 14.9: classifier guidance, and why the classifier must see noise
#
# Chapter 12 multiplied each distribution of the reverse process by a function $r(x_t)$. Classifier
# guidance (Dhariwal & Nichol 2021, Sec. 4) takes $r = p(y \mid x_t)^s$: to sample class $y$, add
# $s\, \nabla_{x_t} \log p(y \mid x_t)$ to the score $\nabla_{x_t} \log p(x_t)$. Since
# $\epsilon_\theta(x_t, t) \approx -\sqrt{1 - \bar\alpha_t}\, \nabla_{x_t} \log p(x_t)$, this is a change of the
# predicted noise:
# $$\hat\epsilon = \epsilon_\theta(x_t, t) - s \sqrt{1 - \bar\alpha_t}\; \nabla_{x_t} \log p(y \mid x_t),$$
# which any sampler can use in place of $\epsilon_\theta$. With $s = 1$ and the exact $p(y \mid x_t)$, the
# samples follow $p(x_0 \mid y)$. The classifier must answer for *noisy* $x_t$.
#
# **A problem with exact answers.** The data are two classes in 2-D, a narrow Gaussian ($y = 0$, at
# $(-1, 0)$, standard deviation 0.15) and a wide one ($y = 1$, at $(1, 0)$, standard deviation 0.5), noised
# with the swiss-roll model's schedule. A Gaussian noised by Eq. 4 stays Gaussian, so
# `projects.guidance_mixture()` knows in closed form the best noise prediction $\mathbb E[\epsilon \mid x_t]$
# (`mix.eps_model`, used here as the diffusion model) and the exact classifier $p(y \mid x_t)$
# (`mix.class_log_probs(x, t)`). The best any classifier trained on clean data can do is the exact
# $p(y \mid x_0)$, applied to $x_t$ as if it were clean. The checker `noisy_classifier` measures a classifier's
# cross-entropy on labelled noisy draws against the exact $p(y \mid x_t)$'s, at five $t$, and asks for an
# excess below 0.05 nats at each:

# %%
mix = projects.guidance_mixture()
d_mix = dl.GaussianDiffusion(mix.schedule, variance="fixed_large", decoder="gaussian")
exact_clf = lambda x, t: mix.class_log_probs(x, t)  # noqa: E731 - p(y | x_t), exact
clean_clf = lambda x, t: mix.class_log_probs(x, 0)  # noqa: E731 - the best classifier of clean x_0, whatever t
_ = checks.check("noisy_classifier", clean_clf)


# %% [markdown]
# The clean classifier is exact at $t = 0$ and worse than useless by $t = 50$: it is confident where it
# should not be. Its boundary is a small circle around the narrow class, while the noised classes are both
# wide and overlap, so a noisy point that belongs to the narrow class almost never falls inside its circle.
#
# **Train one that sees noise.** A noise-conditioned classifier is trained exactly like the diffusion
# model in Algorithm 1: for each clean example draw $t \sim \mathrm{Uniform}\{1..T\}$ and
# $x_t \sim q(x_t \mid x_0)$, and feed the classifier both $x_t$ and $t$. Write
# `noisy_batch(x0, diffusion, generator)` returning `(x_t, t)`, drawing from `generator`
# (`diffusion.sample_t` and `diffusion.q_sample` help). `projects.train_classifier` then trains a small MLP
# (the network of chapter 06, with 2 outputs) on your batches: 500 Adam steps of 256 points.


# %% tags=["solution"]
def noisy_batch(x0, diffusion, generator):
    """(x_t, t): t ~ Uniform{1..T} per example and x_t ~ q(x_t | x_0) (Algorithm 1, lines 3-4)."""
    # BEGIN SOLUTION
    t = diffusion.sample_t(x0.shape[0], generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return diffusion.q_sample(x0, t, noise), t
    # END SOLUTION


# %%
result_batch = checks.check("noisy_batch", noisy_batch)
learned_clf = None
if result_batch.passed:
    learned_clf = projects.train_classifier(mix, lambda x0, g: noisy_batch(x0, d_mix, g), steps=500, seed=0)
    result_learned = checks.check("noisy_classifier", learned_clf)
else:
    print("finish noisy_batch to train a noise-conditioned classifier")


# %% [markdown]
# **Guide with it.** Write `guided_eps(eps_pred, x_t, t, y, classifier, alpha_bars, scale)` returning
# $\hat\epsilon$; `classifier(x_t, t)` returns logits `(B, K)`, `y` is a LongTensor `(B,)`. The gradient
# comes from autograd: make a leaf copy `x = x_t.detach().requires_grad_(True)`, take
# `torch.log_softmax(classifier(x, t), 1)` at the classes `y`, sum, and call `torch.autograd.grad`.


# %% tags=["solution"]
def guided_eps(eps_pred, x_t, t, y, classifier, alpha_bars, scale):
    """eps_hat = eps - scale sqrt(1 - abar_t) grad log p(y | x_t) (Dhariwal & Nichol 2021, Sec. 4.2)."""
    # BEGIN SOLUTION
    x = x_t.detach().requires_grad_(True)
    log_p = torch.log_softmax(classifier(x, t), dim=1)[torch.arange(x.shape[0]), y]
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    return eps_pred - scale * per_example((1 - alpha_bars[t]).sqrt(), x_t) * grad
    # END SOLUTION


# %%
result_guided = checks.check("guided_eps", guided_eps)


# %% [markdown]
# Below, Algorithm 2 runs with $\hat\epsilon$ in place of $\epsilon_\theta$ (scale $s = 1$, 2,000 points) to
# sample the wide class $y = 1$, once with each classifier. A sample counts as class 1 when the exact
# $p(y = 1 \mid x_0) > 1/2$; the sliced W1 ratio compares the samples with fresh points of class 1.

# %%
def guided_sample(classifier, y, scale=1.0, n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, labels = torch.randn(n, 2, generator=g), torch.full((n,), y)
    for tt in range(mix.schedule.T, 0, -1):
        t = torch.full((n,), tt)
        eps = guided_eps(mix.eps_model(x, t), x, t, labels, classifier, mix.schedule.alpha_bars, scale)
        x = d_mix.p_sample(eps.float(), x, t, generator=g).float()
    return x


if result_guided.passed:
    clfs = {"clean p(y | x_0)": clean_clf, "yours, noise-conditioned": learned_clf, "exact p(y | x_t)": exact_clf}
    clfs = {k: c for k, c in clfs.items() if c is not None}
    guided = {k: guided_sample(c, 1) for k, c in clfs.items()}
    class_1 = lambda n, generator: mix.sample(n, generator, y=1)[0]  # noqa: E731
    w1 = dl.sliced_w1_ratios(guided.values(), class_1)
    print("guided towards class 1 (scale 1): fraction of class 1 | sliced W1 ratio to class-1 data")
    for (k, x), r in zip(guided.items(), w1):
        print(f"  {k:<25} {(mix.class_log_probs(x, 0).argmax(1) == 1).float().mean().item():.2f} | {r['ratio']:.1f}")
    fig, axes = plt.subplots(1, len(guided), figsize=(3.3 * len(guided), 3.3), sharex=True, sharey=True)
    ref = class_1(2000, torch.Generator().manual_seed(9))
    for ax, (k, x) in zip(axes, guided.items()):
        ax.scatter(*ref.T, s=2, alpha=0.3, color="0.6", label="class-1 data")
        ax.scatter(*x.T, s=2, alpha=0.4, color="C1", label="guided samples")
        title = k.replace("p(y | x_0)", r"$p(y \mid x_0)$").replace("p(y | x_t)", r"$p(y \mid x_t)$")
        ax.set(title=title, xlabel="$x_1$", aspect="equal", xlim=(-2.2, 3), ylim=(-2.6, 2.6))
    axes[0].set_ylabel("$x_2$")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, markerscale=4)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    plt.show()
else:
    print("finish guided_eps to sample with guidance")

# %% [markdown]
# Guided by the clean classifier, the samples do not follow class 1: their W1 ratio to class-1 data is
# 15.6, and part of them end on a ring around the narrow class, at the edge of the region the clean
# classifier gives to class 0 (13% of the samples are still inside it). Guided by your noise-conditioned
# classifier, the fraction in class 1 is 1.00 and the ratio 1.0, beside 0.8 for the exact
# $p(y \mid x_t)$. The classifier that passes the `noisy_classifier` target guides about as well as the
# exact one, after 500 steps of training.
#
# *Decide* (no checker): guide towards the narrow class $y = 0$ with each classifier, and raise the scale
# $s$ to 3 with yours. What does a scale above 1 do to the samples of class 1, and why is that what the
# product $p(x_t)\, p(y \mid x_t)^s$ asks for?

# %% [markdown]
# ### Project 14.10: RePaint's resampling for inpainting
#
# Chapter 12 inpainted by replacement: at every step the known part of $x_{t-1}$ is overwritten by a
# fresh draw of $q(x_{t-1} \mid x_{\text{known}})$ and the unknown part follows the reverse process. The
# unknown part then sees the known one only through one noisy draw per step, and lags behind it.
# RePaint (Lugmayr et al. 2022, Algorithm 1) repeats each step $U$ times: after the step to $x_{t-1}$, one
# forward step $x_t \sim q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\, x_{t-1}, \beta_t I)$ (DDPM Eq. 2)
# takes it back, and the step is taken again, so that the two parts can agree before going on.
#
# Write `repaint(model, diffusion, x_known, mask, U, generator)`: `mask` is 1 where a coordinate is
# known; start from $x_T \sim \mathcal N(0, I)$ with the known part replaced; for $t = T, \dots, 1$ make
# $U$ passes (one at $t = 1$), each `diffusion.p_sample(model(x, diffusion.model_t(t)), x, t,
# generator=generator)` followed by the replacement of the known part (by `diffusion.q_sample(x_known, ...)`
# at $t - 1 \ge 1$, by `x_known` itself at $t - 1 = 0$), and between passes go back with
# `diffusion.q_step(x_prev, t, generator=generator)`. Draw every random number from `generator`.
#
# The checker runs your loop with $U = 3$ on two Gaussian blobs at $(-1, -1)$ and $(1, 1)$ (exact
# $\epsilon$, $T = 50$), $x_1$ known, and counts the *incoherent* fills, $x_2$ on the other side of 0 from
# $x_1$: yours must be within 2 percentage points of the library's `inpaint(..., resample=3)`.


# %% tags=["solution"]
def repaint(model, diffusion, x_known, mask, U, generator):
    """Inpaint x_known where mask == 0 by replacement with U resampling passes per step (RePaint)."""
    # BEGIN SOLUTION
    def replace(x, tt):
        if tt == 0:
            known = x_known
        else:
            t = torch.full((x.shape[0],), tt)
            known = diffusion.q_sample(x_known, t, torch.randn(x.shape, generator=generator, dtype=x.dtype))
        return mask * known + (1 - mask) * x

    x = replace(torch.randn(x_known.shape, generator=generator, dtype=x_known.dtype), diffusion.T)
    for tt in range(diffusion.T, 0, -1):
        t = torch.full((x.shape[0],), tt)
        passes = U if tt > 1 else 1
        for u in range(passes):
            x_prev = replace(diffusion.p_sample(model(x, diffusion.model_t(t)), x, t, generator=generator), tt - 1)
            if u < passes - 1:  # back one step, x_t ~ q(x_t | x_(t-1)), and take the step again
                x = diffusion.q_step(x_prev, t, generator=generator)
        x = x_prev
    return x
    # END SOLUTION


# %%
result_repaint = checks.check("repaint", repaint)


# %% [markdown]
# **On the swiss roll.** Now your loop fills in $x_2$ of 300 swiss-roll points from their $x_1$, with the
# shipped network, without resampling ($U = 1$) and with $U = 5$. A vertical line $x_1 = c$ crosses the
# roll at several heights, so a coherent fill lands on one of the arms: the table gives the mean distance
# of the filled points to the roll and the fraction within 0.03 of it, beside unconditional samples.

# %%
if result_repaint.passed:
    x_known = dl.swiss_roll(300, generator=torch.Generator().manual_seed(7))
    roll = dl.swiss_roll(20_000, generator=torch.Generator().manual_seed(8))
    to_roll = lambda x: torch.cdist(x.double(), roll.double()).min(1).values  # noqa: E731
    filled = {}
    for U in (1, 5):
        counted = dl.CountingModel(mlp.model)
        with torch.no_grad():
            filled[U] = repaint(counted, d_roll, x_known, torch.tensor([1.0, 0.0]), U, torch.Generator().manual_seed(0))
        dist = to_roll(filled[U])
        print(f"U = {U}: {counted.images // 300:>4} network calls per point; distance to the roll: mean "
              f"{dist.mean().item():.3f}, within 0.03: {(dist < 0.03).float().mean().item():.0%}")
    with torch.no_grad():
        free = d_roll.sample(mlp.model, (300, 2), generator=torch.Generator().manual_seed(0), progress=False)
    print(f"unconditional samples: mean {to_roll(free).mean().item():.3f}, within 0.03: "
          f"{(to_roll(free) < 0.03).float().mean().item():.0%}")
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), sharex=True, sharey=True)
    for ax, U in zip(axes, (1, 5)):
        ax.scatter(*roll[:3000].T, s=1, color="0.7")
        ax.scatter(*filled[U].T, s=4, color="C1")
        ax.set(title=f"$x_2$ filled in, U = {U}", xlabel="$x_1$ (known)", aspect="equal")
    axes[0].set_ylabel("$x_2$")
    fig.tight_layout()
    plt.show()
else:
    print("finish project 14.10's repaint to inpaint the swiss roll")

# %% [markdown]
# Without resampling, 44% of the filled points lie within 0.03 of the roll (mean distance 0.060); with
# $U = 5$, 62% (0.035), for five times the network calls; unconditional samples reach 75% (0.026).
# Resampling closes about three quarters of the gap in mean distance between replacement alone and the
# model's own samples. In the left picture many fills sit between the arms: the filled coordinate has
# not caught up with the known one.
#
# *Decide* (no checker): measure $U = 2$ and $U = 10$. Is it better to spend $U$ network calls per step
# on resampling, or on a model with $U$ times more steps? (Chapter 12 inpaints images the same way with
# `dl.inpaint(..., resample=U)`.)

# %% [markdown]
# ### Going further: train on your own images, with checkpoints and resume
#
# Everything above reuses shipped networks. To train your own, give the library's trainer your images: a tensor
# of shape `(N, C, H, W)`, uint8 or in $[-1, 1]$, with `dl.Trainer(config, images=tensor)`, or on the command line
# a folder of image files of one size, or an `.npz`/`.npy` of uint8 images:
# ```bash
# ddpm-train --config configs/fashion_mnist.toml --dataset images --data-root my_images/ --steps 2000 --out-dir runs/mine
# ddpm-train --config configs/fashion_mnist.toml --dataset images --data-root my_images/ --out-dir runs/mine --resume --steps 4000
# ddpm-sample runs/mine --n 16 --method ddim --steps 50 --out runs/mine.png
# ```
# Here "your images" are the 1,022 sneakers of the shipped training subset. We train chapter 08's tiny U-Net
# as `configs/fashion_mnist.toml` does (dropout 0.1, the EMA with a warm-up of chapter 09), but briefly: 200 steps
# of batch 16 at a learning rate of $2\cdot10^{-3}$, writing a checkpoint every 100 steps into a run directory. (Ctrl-C in a notebook, or a killed
# process, leaves the last checkpoint; the command line saves one on Ctrl-C first.)

# %%
import dataclasses
import os
import shutil
import tempfile

from ddpm_lib import train as dt
from ddpm_lib.classifier import load_classifier, predict

images, labels = dl.data.fashion_mnist("train-10k")  # the shipped 10,000 training images, in [-1, 1]
mine = images[labels == 7]  # "your images": the sneakers, (1022, 1, 28, 28)
own_cfg = dt.TrainConfig(  # DDPM's objective (the defaults: T = 1000, linear betas, L_simple) and a short run
    dataset="images", model="unet-fmnist-tiny", dropout=0.1, steps=200, batch_size=16, lr=2e-3, ema_decay=0.9995,
    ema_warmup=10, ckpt_every=100, sample_every=0, n_samples=0, log_every=50, device="cpu")
run_dir = tempfile.mkdtemp(prefix="sneakers-")
first = dt.Trainer(dataclasses.replace(own_cfg, out_dir=run_dir), images=mine)
first.run(progress=False)  # steps 1-200, a checkpoint at 100 and at 200
print(f"{len(mine):,} images of shape {tuple(mine.shape[1:])}; after {first.step_count} steps the run directory "
      f"holds: {', '.join(sorted(f for f in os.listdir(run_dir) if not f.startswith('.')))}")

# %% [markdown]
# A new session (or a new process) continues the run from its directory: `Trainer.resume` reads the last
# checkpoint, its configuration and its random generators' states; the images are passed again, since the
# checkpoint holds the network, not the data. We continue to 400 steps.

# %%
again = dt.Trainer.resume(run_dir, steps=400, images=mine)  # continues at step 200
again.run(progress=False)
loss = again.history.loss  # all 400 steps: the checkpoint carried the first 200
print(f"resumed at step {first.step_count}, now at step {again.step_count}, with the loss of all {len(loss)} steps; "
      f"the mean of the last 50 is below a third of the first 50's: {sum(loss[-50:]) < sum(loss[:50]) / 3}")

# %% [markdown]
# Sixteen samples with the EMA weights (50 respaced steps, chapter 10), and what the course's Fashion-MNIST
# classifier (chapter 10) calls them: a measured check that the model learned *your* data.

# %%
x_mine = again.sample(16, steps=50, seed=0)
called = predict(load_classifier(), x_mine)
n_sneakers = int((called == 7).sum())
dl.viz.show_images(x_mine, nrow=8, title=f"after {again.step_count} steps on 1,022 sneakers: {n_sneakers} of 16 "
                   "classified as sneakers")
plt.show()
print(f"at least half of the 16 samples classified as sneakers: {n_sneakers >= 8} (the count is in the picture's "
      "title: a borderline sample may change class with a computer's rounding)")
shutil.rmtree(run_dir)

# %% [markdown]
# Most samples are sneaker shapes and the classifier agrees for most of them, after about a minute of CPU; the
# backgrounds are speckled and one or two samples are shapeless blobs, as for any model this short of training
# (chapter 09's shipped U-Net had 2,324 steps of batch 256). Longer runs are the same two calls with more `steps`.
#
# ## Summary
#
# - Each piece of DDPM is a short function of the schedule's tables: Eq. 4, Eqs. 6-7, the Gaussian KL of
#   Eq. 5, Eq. 13 and Algorithm 2's step; built from your step, Algorithm 2 with the trained swiss-roll
#   network reproduces the library's sampler and draws the spiral.
# - Schedules are designs: the cosine schedule keeps information longer, and any nondecreasing schedule
#   with the right $\beta_1$ and $\bar\alpha_T$ meets 14.7's specification, with different bounds.
# - DDIM's $\eta$ trades noise for steps: on the swiss roll the deterministic sampler is best at 10 and 20
#   steps, and $\eta = 1$ at 200 steps, where it reaches the spread of fresh data sets and $\eta = 0$ does not.
# - A classifier must be trained on noisy $x_t$ and told $t$ to guide: the exact clean classifier misses
#   the shape of its class (W1 ratio 15.6), while a small noise-conditioned one matches the exact guidance.
# - RePaint's resampling makes inpainted points coherent with the known ones: on the swiss roll, $U = 5$
#   brings the mean distance to the roll from 0.060 to 0.035, near the 0.026 of free samples.
#
# This is the last chapter. To go further: chapter 11's ablations (`ddpm-ablations`) train the variants of
# DDPM's Table 2, and the commands above train a model on your own data.
