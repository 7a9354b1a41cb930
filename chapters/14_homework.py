# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14 · Homework: implement the pieces, checked against ddpm_lib
#
# Every piece of a denoising diffusion model fits in a few lines once its equation is clear. In this
# homework you write those lines yourself: the forward jump $q(x_t \mid x_0)$, the posterior
# $q(x_{t-1} \mid x_t, x_0)$, the Gaussian KL, the discretized decoder and one sampling step; then a
# schedule from the literature and one of your own design. Each exercise gives the statement, the
# equation, the signature, and a check call: `ddpm_lib.course.checks` runs your function on fixed random
# inputs, compares it with the library, and names the equation (and, often, the mistake) when they differ.
#
# **Learning goals.** After this homework you can
# - implement DDPM Eq. 4, Eqs. 6-7, the KL of Eq. 5, Eq. 13 and Algorithm 2's step with paper indexing
#   and correct broadcasting;
# - read a checker's message and go from it to the wrong term of an equation;
# - run a sampler built from your own step with a trained network and see it agree with the library;
# - implement the cosine schedule, and design a schedule to a specification.
#
# **CPU time:** a few seconds on a 2-core CPU (budget: 30 s); nothing here trains a network.
#
# **How to work.** In the student edition (`python -m ddpm_lib.course.book student OUTDIR` writes it), each
# cell tagged `exercise` holds the function's signature and docstring and a
# `raise NotImplementedError(...)`: replace that line with your code and run the check cell below it.
# Until you do, the check prints `✗ ... not implemented yet`, and the sections that use your functions
# say which exercise they wait for. In this book the reference solutions are filled in.
#
# **Three rules that prevent most mistakes.**
# 1. *Paper indexing*: tables such as `alpha_bars`, `betas`, `alphas` have length $T + 1$ and index $t$
#    means the paper's $t$ (`alpha_bars[0]` $= \bar\alpha_0 = 1$). Index them with `t` itself, never `t - 1`.
# 2. *Broadcasting*: `t` is a LongTensor of shape `(B,)` and data have shape `(B, ...)`, so `alpha_bars[t]`
#    has shape `(B,)` and must be reshaped to `(B, 1, ..., 1)`:
#    `alpha_bars[t].view(-1, *[1] * (x.ndim - 1))` (the helper `per_example` below does this, and casts
#    the float64 table to the data's dtype).
# 3. *Use the noise you are given*: the checkers pass `noise` so that results are reproducible; a
#    function that draws its own random numbers cannot be checked.

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'


def per_example(v, x):
    """A table entry per example, shape (B,), reshaped to broadcast against x of shape (B, ...), in x's dtype
    (the tables are float64; float32 data should stay float32)."""
    return v.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)


print("checkers used here:", ", ".join(n for n in checks.available() if n in {
    "q_sample", "posterior", "normal_kl", "discretized_log_likelihood", "p_sample_step", "cosine_schedule",
    "schedule_design"}))

# %% [markdown]
# ## Exercise 14.1: the forward jump $q(x_t \mid x_0)$ (DDPM Eq. 4)
#
# Because each forward step adds independent Gaussian noise, $x_t$ given $x_0$ is Gaussian,
# $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$, and a draw from it is
# $$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I),
# \qquad \bar\alpha_t = \prod_{s=1}^{t} (1 - \beta_s) .$$
# Write `q_sample(x0, t, noise, alpha_bars)`: `x0` of shape `(B, ...)`, `t` a LongTensor `(B,)` in
# $1..T$, `noise` like `x0` (it is $\epsilon$), `alpha_bars` the table $\bar\alpha_0, \dots, \bar\alpha_T$.
# Return $x_t$, shaped like `x0`. (Chapter 03 derives the equation.)


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
# And this is what you see before you start, in the student edition:

# %%
def q_sample_not_started(x0, t, noise, alpha_bars):
    raise NotImplementedError("exercise: implement q_sample")


_ = checks.check("q_sample", q_sample_not_started)

# %% [markdown]
# ## Exercise 14.2: the posterior $q(x_{t-1} \mid x_t, x_0)$ (DDPM Eqs. 6-7)
#
# Given both ends, the forward step can be inverted by Bayes' rule (chapter 04 derives it):
# $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\beta_t I)$ with
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
#   + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \qquad
# \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t .$$
# Write `posterior(x0, x_t, t, schedule)` returning the pair `(mean, variance)`: the mean shaped like
# `x_t`, the variance of shape `(B,)`, `(B, 1, ..., 1)` or like `x_t`. Use `schedule.alpha_bars`,
# `schedule.alphas` and `schedule.betas` (all of length $T + 1$); the schedule's `posterior_*` tables
# hold the answer, so leave them alone. Note $\tilde\beta_1 = 0$: at $t = 1$ the posterior is a point
# mass at $x_0$, since $\bar\alpha_0 = 1$.


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
# ## Exercise 14.3: the KL between two Gaussians (the terms of DDPM Eq. 5)
#
# Every middle term of the bound, $L_{t-1} = D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))$,
# is a KL between diagonal Gaussians, so it has a closed form and needs no sampling. Per coordinate,
# with variances $v_1 = e^{\ell_1}$, $v_2 = e^{\ell_2}$,
# $$D_{KL}\big(\mathcal N(m_1, v_1) \,\|\, \mathcal N(m_2, v_2)\big)
#   = \tfrac12\Big(\ell_2 - \ell_1 + \frac{v_1}{v_2} + \frac{(m_1 - m_2)^2}{v_2} - 1\Big).$$
# (It is $\mathbb E_{x \sim \mathcal N(m_1, v_1)}[\log \mathcal N(x; m_1, v_1) - \log \mathcal N(x; m_2, v_2)]$,
# with $\mathbb E[(x - m_2)^2] = v_1 + (m_1 - m_2)^2$.) Write `normal_kl(mean1, logvar1, mean2, logvar2)`,
# elementwise: return a tensor of the inputs' shape, not a sum.


# %% tags=["solution"]
def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats."""
    # BEGIN SOLUTION
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)
    # END SOLUTION


# %%
result_kl = checks.check("normal_kl", normal_kl)

# %% [markdown]
# ## Exercise 14.4: the discretized decoder (DDPM Eq. 13)
#
# Images are 8-bit values $k \in \{0, \dots, 255\}$ scaled to $x = 2k/255 - 1$; each value owns the bin
# $[x - 1/255, x + 1/255]$, except that the first bin extends to $-\infty$ and the last to $+\infty$
# (chapter 07). The decoder's probability of $x$ under $\mathcal N(\mu, \sigma^2)$ is the Gaussian's mass
# on that bin:
# $$P(x) = \Phi\!\left(\frac{\delta_+(x) - \mu}{\sigma}\right) - \Phi\!\left(\frac{\delta_-(x) - \mu}{\sigma}\right),
# \qquad \delta_+(x) = \begin{cases} \infty & x = 1 \\ x + \tfrac1{255} & \text{else} \end{cases}, \quad
# \delta_-(x) = \begin{cases} -\infty & x = -1 \\ x - \tfrac1{255} & \text{else} \end{cases}.$$
# Write `discretized_log_likelihood(x, mean, log_scale)`, returning $\log P(x)$ elementwise, with
# `log_scale` $= \log\sigma$. `torch.special.ndtr` is $\Phi$ and `torch.special.log_ndtr` is $\log\Phi$;
# the edges are easiest with `torch.where(x < -0.999, ..., ...)`.


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
# ## Exercise 14.5: one step of Algorithm 2
#
# With the network predicting the noise, DDPM's reverse step (Algorithm 2, line 4, with the mean of
# Eq. 11) is
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big)
#   + \sigma_t z, \qquad z \sim \mathcal N(0, I) \text{ for } t > 1, \quad z = 0 \text{ for } t = 1,$$
# with $\sigma_t^2 = \beta_t$ (the checker also accepts $\tilde\beta_t$). The last step is noiseless
# (chapter 07 says why). Write `p_sample_step(eps_pred, x_t, t, schedule, noise)`: `eps_pred` is
# $\epsilon_\theta(x_t, t)$, `noise` is $z$ (ignore it where $t = 1$); return $x_{t-1}$.


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
# With your step, Algorithm 2 runs as written: $x_T \sim \mathcal N(0, I)$, then $T$ steps down to
# $x_0$. Below it runs with the shipped swiss-roll network (an MLP trained with $T = 200$;
# `dl.load_pretrained("swiss-roll-mlp")`), and at every step your $x_{t-1}$ is compared with the
# library's `GaussianDiffusion.p_sample` from the same $x_t$, $\epsilon_\theta$ and $z$. Then your
# posterior and KL compute a term of the bound, $L_{t-1}$, which must equal the library's.

# %%
mlp = dl.load_pretrained("swiss-roll-mlp")
d_roll = mlp.diffusion
s_roll = d_roll.schedule
g = torch.Generator().manual_seed(0)
n_points = 1000
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
    data = dl.swiss_roll(n_points, generator=torch.Generator().manual_seed(1)).float()
    print(f"{s_roll.T} steps of your p_sample_step vs the library's p_sample (sigma_t^2 = beta_t): "
          f"max |diff| at any step {below(worst, 1e-5)} (float32 round-off: the library forms the mean through x0_hat)")
    print(f"sliced Wasserstein distance to the swiss roll: your samples "
          f"{dl.sliced_wasserstein(x, data, generator=torch.Generator().manual_seed(2)):.3f}, pure noise "
          f"{dl.sliced_wasserstein(torch.randn(n_points, 2, generator=g), data, generator=torch.Generator().manual_seed(2)):.3f}")
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.3), sharex=True, sharey=True)
    axes[0].scatter(*data.T, s=2, alpha=0.5)
    axes[0].set_title("the swiss roll (data)")
    axes[1].scatter(*x.T, s=2, alpha=0.5, color="C1")
    axes[1].set_title("Algorithm 2 with your step")
    fig.tight_layout()
    plt.show()
else:
    print("finish exercise 13.5 (p_sample_step) to sample with your own step")

if result_post.passed and result_kl.passed and result_q.passed:
    x0 = dl.swiss_roll(256, generator=torch.Generator().manual_seed(3))
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
    print("finish exercises 13.1-13.3 to compute a term of the bound with your own functions")

# %% [markdown]
# ## Exercise 14.6: the cosine schedule (Nichol & Dhariwal 2021, Eq. 17)
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
    print("finish exercise 13.6 to compare your cosine schedule with the linear one")

# %% [markdown]
# ## Exercise 14.7 (open): design a schedule to a specification
#
# A schedule is a design choice. Suppose you must keep $\beta_1$ (the noise of the first step, which sets
# how fine the last denoising step is) and want a given $\bar\alpha_T = \prod_{t=1}^T (1 - \beta_t)$ (how
# much of the data survives to $x_T$; $L_T$ grows with it). Write `design_betas(T, beta_1, alpha_bar_T)`
# returning $\beta_1, \dots, \beta_T$ (length $T$) with
# - the given $\beta_1$, each $\beta_t$ in $(0, 1)$, and $\beta_t$ never decreasing;
# - $\prod_t (1 - \beta_t)$ equal to the target (to 0.1%).
#
# Any design that meets the specification passes: linear, geometric, or your own. The reference
# solution keeps DDPM's linear shape and finds $\beta_T$ by bisection ($\bar\alpha_T$ falls as $\beta_T$
# grows). The open part: which $\bar\alpha_T$ would you choose, and does the shape matter? Below, the
# reference design is measured on Gaussian data two ways: $L_T$ exactly (`NoiseSchedule.prior_kl`), and
# the whole bound of the best possible model (`dl.GaussianData.eps_model`, as in chapter 07) by Monte
# Carlo with `GaussianDiffusion.bits_per_dim`. Try your own designs and targets.


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
    print("finish exercise 13.7 to measure your schedule")

# %% [markdown]
# Questions to explore (no checker). $L_T$ falls as $\bar\alpha_T$ falls, but with $T$ and $\beta_1$
# fixed a smaller $\bar\alpha_T$ needs larger steps, and each reverse step of the model becomes less
# exact: the middle terms grow. The Monte Carlo bound above cannot resolve these differences (they are
# thousandths of a bit). Chapter 07 (section 4.1) gives every expected term of this bound in closed form:
# use it to find the $\bar\alpha_T$ that makes the bound smallest for $T = 200$ and for $T = 1000$, and
# split the answer into $L_T$ and $\sum_t L_{t-1}$. Then keep $\bar\alpha_T$ and change the shape
# (geometric, or the cosine of 13.6 rescaled): does the shape matter for this bound, and why might a
# shape that is better for the bound still give worse samples of images?
#
# ## Summary
#
# - Each piece of DDPM is a short function of the schedule's tables: Eq. 4 (`q_sample`), Eqs. 6-7
#   (`posterior`), the Gaussian KL of Eq. 5, Eq. 13 (the decoder) and Algorithm 2's step; with paper
#   indexing, the tables are indexed by $t$ itself and reshaped to broadcast.
# - `ddpm_lib.course.checks` compares your function with the library on fixed inputs and, when they differ,
#   names the equation, the timestep and often the mistake (as for $\alpha_t$ in place of $\bar\alpha_t$).
# - Built from your step, Algorithm 2 with the trained swiss-roll network reproduces the library's
#   sampler step for step; your posterior and KL reproduce a term of the bound.
# - Schedules are designs: the cosine schedule keeps information longer, and any nondecreasing schedule
#   with the right $\beta_1$ and $\bar\alpha_T$ meets the specification of 13.7, with different bounds.
#
# This is the last chapter. To go further: chapter 11's ablations (`python scripts/ablations.py`) train
# the variants of DDPM's Table 2; `python -m ddpm_lib.train --help` trains your own model with the
# library's trainer.
