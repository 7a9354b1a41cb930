# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · The posterior $q(x_{t-1} \mid x_t, x_0)$ and the KL terms of the bound
#
# Chapter 02 built the bound on the negative log-likelihood (Sohl-Dickstein's $K$, DDPM's $L$), and chapter
# 03 gave the forward process in closed form, $q(x_t \mid x_0)$. This chapter puts the two together, as
# Ho et al. 2020 do in their Sec. 2: conditioning the forward process on $x_0$ makes its *reverse* step a
# Gaussian we can write down, the posterior $q(x_{t-1} \mid x_t, x_0)$; the bound then splits into KL
# divergences between Gaussians, each computable in closed form, with no Monte Carlo over $x_{t-1}$.
# That is what the study notes mean by "all the KL divergences above are between Gaussians, so no Monte
# Carlo is needed, only the Rao-Blackwellized closed form".
#
# **Learning goals.** After this chapter you can
# - rewrite the bound as $L = L_T + \sum_{t>1} L_{t-1} + L_0$ (DDPM Eq. 5), step by step from DDPM Eq. 3;
# - derive the posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ (DDPM Eqs. 6-7) by
#   Bayes' rule and completing the square, and check it on a grid and by Monte Carlo;
# - derive the KL divergence between two Gaussians, check it by Monte Carlo, and say why the closed form
#   (Rao-Blackwellization) beats sampling;
# - check numerically that Eq. 5 and Eq. 3 are the same bound;
# - implement the posterior and the Gaussian KL yourself.
#
# **CPU time:** about 10 s on a 2-core CPU, most of it importing PyTorch and drawing (budget: 30 s).

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data



# %% [markdown]
# ## 1. From the bound (Eq. 3) to its KL form (Eq. 5)
#
# Notation as in DDPM: $\alpha_t = 1 - \beta_t$, $\bar\alpha_t = \prod_{s \le t} \alpha_s$, $\bar\alpha_0 = 1$; the
# forward process $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\, x_{t-1}, \beta_t I)$ for $t = 1, \dots, T$; the
# reverse process $p_\theta(x_{0:T}) = p(x_T) \prod_{t=1}^{T} p_\theta(x_{t-1} \mid x_t)$ with $p(x_T) = \mathcal N(0, I)$.
# Chapter 02 derived the bound (DDPM Eq. 3, Sohl-Dickstein's $-K$), an expectation over forward trajectories
# $x_{0:T} \sim q(x_0) \prod_t q(x_t \mid x_{t-1})$:
# $$\mathbb E[-\log p_\theta(x_0)] \le L = \mathbb E_q\Big[-\log p(x_T) - \sum_{t \ge 1} \log \frac{p_\theta(x_{t-1} \mid x_t)}{q(x_t \mid x_{t-1})}\Big].$$
# Each term compares a reverse step with a *forward* step, which runs the other way. Four steps turn it
# into terms that compare like with like.
#
# **Step 1: reverse the forward step with Bayes' rule.** The forward process is Markov, so
# $q(x_t \mid x_{t-1}) = q(x_t \mid x_{t-1}, x_0)$: knowing $x_0$ adds nothing once $x_{t-1}$ is known. Bayes' rule
# in the world where $x_0$ is fixed turns it around:
# $$q(x_t \mid x_{t-1}, x_0) = \frac{q(x_{t-1} \mid x_t, x_0)\, q(x_t \mid x_0)}{q(x_{t-1} \mid x_0)} .$$
# For $t = 1$ this is useless: $q(x_0 \mid x_1, x_0)$ is a point mass at $x_0$. So we keep $t = 1$ apart (the
# notes point out that this form, unlike Sohl-Dickstein's, does not drop the $t = 1$ term at this stage:
# it becomes $L_0$).
#
# **Step 2: substitute for $t \ge 2$.**
# $$L = \mathbb E_q\Big[-\log p(x_T) - \sum_{t \ge 2} \log \frac{p_\theta(x_{t-1} \mid x_t)}{q(x_{t-1} \mid x_t, x_0)}
#       - \sum_{t \ge 2} \log \frac{q(x_{t-1} \mid x_0)}{q(x_t \mid x_0)} - \log \frac{p_\theta(x_0 \mid x_1)}{q(x_1 \mid x_0)}\Big].$$
#
# **Step 3: the third sum telescopes.** $\sum_{t=2}^{T} [\log q(x_{t-1} \mid x_0) - \log q(x_t \mid x_0)]
# = \log q(x_1 \mid x_0) - \log q(x_T \mid x_0)$. With its minus sign it gives
# $\log q(x_T \mid x_0) - \log q(x_1 \mid x_0)$, and the $-\log q(x_1 \mid x_0)$ cancels the $+\log q(x_1 \mid x_0)$
# of the $t = 1$ term:
# $$L = \mathbb E_q\Big[\log \frac{q(x_T \mid x_0)}{p(x_T)} + \sum_{t \ge 2} \log \frac{q(x_{t-1} \mid x_t, x_0)}{p_\theta(x_{t-1} \mid x_t)}
#       - \log p_\theta(x_0 \mid x_1)\Big].$$
#
# **Step 4: take the inner expectations.** The trajectory's distribution factorizes as
# $q(x_0)\, q(x_t \mid x_0)\, q(x_{t-1} \mid x_t, x_0)\, q(\text{rest} \mid x_{t-1}, x_t, x_0)$, and the $t$-th log-ratio depends on
# $x_0, x_t, x_{t-1}$ only. Its expectation over $x_{t-1}$ given $(x_t, x_0)$ is, by definition, a KL divergence;
# likewise the first term's over $x_T$ given $x_0$. This is **DDPM Eq. 5**:
# $$L = \mathbb E_q\Big[\underbrace{D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))}_{L_T}
#   + \sum_{t > 1} \underbrace{D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
#   \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0}\Big].$$
#
# - $L_T$ compares where the forward process ends with the prior; it has no learnable parameter when the
#   $\beta_t$ are fixed (chapter 03 computed it: about $10^{-5}$ bits per dimension for DDPM's schedule).
# - $L_{t-1}$ compares each reverse step $p_\theta$ with the forward process's own reverse step, the
#   **posterior** $q(x_{t-1} \mid x_t, x_0)$: like with like, both distributions over $x_{t-1}$.
# - $L_0$ is the decoder's negative log-likelihood (chapter 07 discretizes it for 8-bit images).
#
# The posterior conditions on $x_0$: without it, $q(x_{t-1} \mid x_t)$ would need the data distribution and is
# intractable (chapter 02 computed it numerically for a 1-D mixture). With it, it is a Gaussian, as we now show.
#
# ## 2. The posterior $q(x_{t-1} \mid x_t, x_0)$, derived (Eqs. 6-7)
#
# Take one dimension (every dimension is independent and the same). By Step 1's Bayes' rule, as a function of
# $x_{t-1}$,
# $$q(x_{t-1} \mid x_t, x_0) = \frac{q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)}{q(x_t \mid x_0)}
#   \propto \exp\Big(-\frac12\Big[\frac{(x_t - \sqrt{\alpha_t}\, x_{t-1})^2}{\beta_t} + \frac{(x_{t-1} - \sqrt{\bar\alpha_{t-1}}\, x_0)^2}{1 - \bar\alpha_{t-1}}\Big]\Big),$$
# using the forward step and Eq. 4 for $q(x_{t-1} \mid x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}\, x_0, (1 - \bar\alpha_{t-1}))$;
# the denominator does not depend on $x_{t-1}$. **Complete the square**: expand and collect powers of $x_{t-1}$,
# $$[\dots] = \underbrace{\Big(\frac{\alpha_t}{\beta_t} + \frac{1}{1 - \bar\alpha_{t-1}}\Big)}_{1/\tilde\beta_t} x_{t-1}^2
#   - 2 \underbrace{\Big(\frac{\sqrt{\alpha_t}}{\beta_t} x_t + \frac{\sqrt{\bar\alpha_{t-1}}}{1 - \bar\alpha_{t-1}} x_0\Big)}_{\tilde\mu_t / \tilde\beta_t} x_{t-1}
#   + (\text{terms without } x_{t-1}),$$
# and a quadratic $a x^2 - 2 b x$ in the exponent is, up to a constant, $a (x - b/a)^2$: a Gaussian with
# variance $1/a$ and mean $b/a$. The precision simplifies, since $\alpha_t (1 - \bar\alpha_{t-1}) + \beta_t = \alpha_t - \bar\alpha_t + 1 - \alpha_t = 1 - \bar\alpha_t$:
# $$\frac{1}{\tilde\beta_t} = \frac{\alpha_t (1 - \bar\alpha_{t-1}) + \beta_t}{\beta_t (1 - \bar\alpha_{t-1})} = \frac{1 - \bar\alpha_t}{\beta_t (1 - \bar\alpha_{t-1})}
#   \quad\Longrightarrow\quad \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t ,$$
# and the mean is $\tilde\beta_t$ times the linear coefficient:
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\, \beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\, (1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t .$$
# Together, **DDPM Eqs. 6-7**: $q(x_{t-1} \mid x_t, x_0) = \mathcal N(x_{t-1}; \tilde\mu_t(x_t, x_0), \tilde\beta_t I)$.
#
# Three things to notice.
# - $\tilde\beta_t < \beta_t$ for $t \ge 2$ (the ratio $(1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)$ is below 1), and
#   $\tilde\beta_t \to \beta_t$ once $\bar\alpha_t \approx 0$: knowing $x_0$ helps less and less as the signal fades.
# - At $t = 1$, $\bar\alpha_0 = 1$ gives $\tilde\beta_1 = 0$ and $\tilde\mu_1 = x_0$: the point mass of Step 1.
# - $\tilde\beta_t$ does not depend on $x_0$ or $x_t$, and $\tilde\mu_t$ is linear in both.
#
# ## 3. The posterior in code, checked
#
# `GaussianDiffusion.q_posterior(x0, x_t, t)` returns `(mean, variance, log_variance)`; the schedule holds the two
# coefficients of $\tilde\mu_t$ as `posterior_mean_coef1` (of $x_0$) and `posterior_mean_coef2` (of $x_t$), and
# $\tilde\beta_t$ as `posterior_variance` (`posterior_variance[1] == 0`). First, the coefficients against the
# formulas above, written out from $\beta_t$ and $\bar\alpha_t$:

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's schedule
d = dl.GaussianDiffusion(s)
t_all = torch.arange(2, s.T + 1)
ab, abp, a, b = s.alpha_bars[t_all], s.alpha_bars[t_all - 1], s.alphas[t_all], s.betas[t_all]
diffs = {
    "beta~_t": (s.posterior_variance[t_all] - (1 - abp) / (1 - ab) * b).abs().max().item(),
    "coef of x_0": (s.posterior_mean_coef1[t_all] - abp.sqrt() * b / (1 - ab)).abs().max().item(),
    "coef of x_t": (s.posterior_mean_coef2[t_all] - a.sqrt() * (1 - abp) / (1 - ab)).abs().max().item(),
    "1/beta~_t (Eq. 6's precision)": ((1 / s.posterior_variance[t_all]) - (a / b + 1 / (1 - abp))).abs().max().item()
    / (1 / s.posterior_variance[t_all]).max().item(),
}
for name, v in diffs.items():
    print(f"{name:>30}: library vs the formula, max |diff| over t = 2..T {below(v)}")
print(f"t = 1: beta~_1 = {s.posterior_variance[1].item():.1f}, coef of x_0 = {s.posterior_mean_coef1[1].item():.1f}, "
      f"coef of x_t = {s.posterior_mean_coef2[1].item():.1f}   (the point mass at x_0)")

# %% [markdown]
# **Check 1: Bayes' rule on a grid.** That only compares the code with our algebra. To check the algebra
# itself, evaluate Bayes' rule pointwise, without completing any square: on a fine grid of $x_{t-1}$ values,
# $q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0) / q(x_t \mid x_0)$ with each factor a Gaussian density, for a data point
# $x_0 = 0.8$ and an $x_t$ drawn from $q(x_t \mid x_0)$. If Eqs. 6-7 are right, this curve integrates to 1 (the
# denominator is the right normalizer) and equals the density of $\mathcal N(\tilde\mu_t, \tilde\beta_t)$ at every
# grid point.

# %%
grid = torch.linspace(-4, 4, 40_001, dtype=torch.float64)  # x_{t-1} values; spacing 2e-4, finer than any sd below
g = torch.Generator().manual_seed(0)
x0 = torch.tensor([[0.8]], dtype=torch.float64)
print(" t   x_t      integral of Bayes' rule   max |Bayes - N(mu~, beta~)| / max density   beta~_t")
for tt in (2, 10, 100, 500, 1000):
    t = torch.tensor([tt])
    x_t = d.q_sample(x0, t, generator=g)  # one draw from q(x_t | x_0)
    alpha, abar, abar_prev, beta = s.alphas[tt], s.alpha_bars[tt], s.alpha_bars[tt - 1], s.betas[tt]
    log_lik = dl.gaussian_log_likelihood(x_t[0, 0], alpha.sqrt() * grid, beta.log())  # q(x_t | x_{t-1}) at each x_{t-1}
    log_prior = dl.gaussian_log_likelihood(grid, abar_prev.sqrt() * x0[0, 0], (1 - abar_prev).log())  # q(x_{t-1} | x_0)
    log_evidence = dl.gaussian_log_likelihood(x_t[0, 0], abar.sqrt() * x0[0, 0], (1 - abar).log())  # q(x_t | x_0), Eq. 4
    bayes = (log_lik + log_prior - log_evidence).exp()
    mean, var, _ = d.q_posterior(x0, x_t, t)
    closed = dl.gaussian_log_likelihood(grid, mean[0, 0], var[0, 0].log()).exp()
    rel = ((bayes - closed).abs().max() / closed.max()).item()
    print(f"{tt:4d}  {x_t.item():+.3f}   {torch.trapezoid(bayes, grid).item():.6f}                  "
          f"{below(rel, 1e-9):<12}                               {var.item():.3e}")

# %% [markdown]
# **Check 2: Monte Carlo.** Now without any density at all: simulate the forward process itself, on data that
# are not Gaussian (the swiss roll's coordinates). Draw $x_0$ from the data, $x_{t-1} \sim q(x_{t-1} \mid x_0)$
# (`q_sample`, Eq. 4), then one forward step $x_t \sim q(x_t \mid x_{t-1})$ (`q_step`). If Eq. 7 is right,
# $\mathbb E[x_{t-1} \mid x_t, x_0]$ is the linear function $c_0 x_0 + c_t x_t$ with Eq. 7's coefficients, whatever the
# data, and the scatter around it has variance $\tilde\beta_t$. A least-squares fit of $x_{t-1}$ on $(x_0, x_t)$
# estimates exactly these: its coefficients, with their standard errors, and its residual variance.

# %%
N = 100_000
x0_data = dl.swiss_roll(N // 2, generator=g).double().reshape(-1, 1)  # both coordinates, pooled: N values
print(" t   coef of x_0: fit vs Eq. 7      coef of x_t: fit vs Eq. 7      |diff| / SE   resid. var / beta~_t")
for tt in (2, 50, 200, 1000):
    t = torch.full((N,), tt)
    x_prev = d.q_sample(x0_data, t - 1, generator=g)  # x_{t-1} ~ q(x_{t-1} | x_0)
    x_t = d.q_step(x_prev, t, generator=g)  # x_t ~ q(x_t | x_{t-1})
    A = torch.cat([x0_data, x_t], dim=1)
    coef = torch.linalg.lstsq(A, x_prev).solution[:, 0]
    resid_var = (x_prev[:, 0] - A @ coef).var().item()
    se = (torch.linalg.inv(A.T @ A).diag() * resid_var).sqrt()
    exact = torch.stack([s.posterior_mean_coef1[tt], s.posterior_mean_coef2[tt]])
    z = ((coef - exact).abs() / se).max().item()
    print(f"{tt:4d}  {coef[0].item():.4f} vs {exact[0].item():.4f}            {coef[1].item():.4f} vs {exact[1].item():.4f}"
          f"            {z:.1f}          {resid_var / s.posterior_variance[tt].item():.3f}")
print(f"(|diff| / SE below 3 means agreement within Monte Carlo error; the residual variance ratio has "
      f"relative SE sqrt(2/N) = {math.sqrt(2 / N):.3f})")

# %% [markdown]
# **A picture.** How much the posterior leans on $x_0$ and on $x_t$, and how much narrower it is than a forward
# step. At $t = 1$ the posterior *is* $x_0$; for large $t$ it is almost a forward step run backwards ($c_t \approx
# 1$, $\tilde\beta_t \approx \beta_t$), because $x_t$ then carries so little of $x_0$ that knowing $x_0$ barely helps.

# %%
ts = torch.arange(1, s.T + 1)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.2))
ax1.semilogy(ts, s.posterior_mean_coef1[ts], label=r"$c_0 = \sqrt{\bar\alpha_{t-1}}\,\beta_t / (1 - \bar\alpha_t)$, of $x_0$")
ax1.semilogy(ts[1:], s.posterior_mean_coef2[ts[1:]], label=r"$c_t = \sqrt{\alpha_t}(1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)$, of $x_t$")
ax1.set(xlabel="t", ylabel="weight", title=r"the weights of $\tilde\mu_t = c_0 x_0 + c_t x_t$ ($t = 1$: $c_0 = 1$, $c_t = 0$)", ylim=(1e-5, 2))
ax1.legend()
ax2.plot(ts[1:], (s.posterior_variance[ts[1:]] / s.betas[ts[1:]]))
ax2.set(xlabel="t", ylabel=r"$\tilde\beta_t / \beta_t = (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)$",
        title=r"posterior variance relative to $\beta_t$", ylim=(0, 1.05))
fig.tight_layout()
plt.show()
half = int((s.posterior_variance[ts[1:]] / s.betas[ts[1:]] > 0.99).nonzero()[0]) + 2
print(f"beta~_2 / beta_2 = {(s.posterior_variance[2] / s.betas[2]).item():.3f}; beta~_t / beta_t > 0.99 from t = {half} on")

# %% [markdown]
# ## 4. The KL divergence between two Gaussians
#
# Every $L_{t-1}$ with $t \ge 2$ is now a KL divergence between two Gaussians: the posterior
# $\mathcal N(\tilde\mu_t, \tilde\beta_t I)$ and the reverse step $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)$; so is
# $L_T$. For one dimension, with $q = \mathcal N(m_1, v_1)$, $p = \mathcal N(m_2, v_2)$ and
# $\log \mathcal N(x; m, v) = -\frac12 \log(2\pi v) - \frac{(x - m)^2}{2 v}$,
# $$D_{KL}(q \,\|\, p) = \mathbb E_{x \sim q}[\log q(x) - \log p(x)]
#   = \frac12 \log \frac{v_2}{v_1} - \frac{\mathbb E_q[(x - m_1)^2]}{2 v_1} + \frac{\mathbb E_q[(x - m_2)^2]}{2 v_2}.$$
# Under $q$, $\mathbb E_q[(x - m_1)^2] = v_1$ and $\mathbb E_q[(x - m_2)^2] = \mathbb E_q[(x - m_1 + m_1 - m_2)^2] = v_1 + (m_1 - m_2)^2$
# (the cross term has mean 0). So
# $$D_{KL}(\mathcal N(m_1, v_1) \,\|\, \mathcal N(m_2, v_2)) = \frac12\Big(\log \frac{v_2}{v_1} + \frac{v_1}{v_2} + \frac{(m_1 - m_2)^2}{v_2} - 1\Big),$$
# zero exactly when $m_1 = m_2$ and $v_1 = v_2$. For diagonal Gaussians in $D$ dimensions the KL is the sum of
# the $D$ one-dimensional ones. `dl.normal_kl(mean1, logvar1, mean2, logvar2)` computes it elementwise, from log
# variances (as networks output them). Against a Monte Carlo estimate, the average of $\log q(x) - \log p(x)$ over
# a million draws $x \sim q$:

# %%
m1, v1 = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
m2, v2 = torch.tensor(-0.2, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
kl = dl.normal_kl(m1, v1.log(), m2, v2.log()).item()
gk = torch.Generator().manual_seed(1)
x = m1 + v1.sqrt() * torch.randn(1_000_000, generator=gk, dtype=torch.float64)
log_ratio = dl.gaussian_log_likelihood(x, m1, v1.log()) - dl.gaussian_log_likelihood(x, m2, v2.log())
mc, mc_se = log_ratio.mean().item(), log_ratio.std().item() / math.sqrt(x.numel())
print(f"KL(N(0.3, 0.5) || N(-0.2, 0.8)): closed form {kl:.5f}, Monte Carlo (10^6 draws) {mc:.5f}; "
      f"|diff| {abs(mc - kl):.5f} (3 sigma of MC error {3 * mc_se:.5f})")

# %% [markdown]
# **Why no sampling: Rao-Blackwellization.** The Monte Carlo estimate is right on average but random; how random
# depends on how many draws it uses. Below, 2,000 independent estimates each with $n = 10$, $100$ and $1000$ draws:
# their spread falls like $1/\sqrt n$ and never reaches zero. The closed form is the estimate with $n = \infty$:
# it is the *conditional expectation* of the sampled log-ratio, and replacing a random quantity by its
# conditional expectation (here: over $x_{t-1}$ given $x_t$ and $x_0$) keeps the mean and removes that part of the
# variance (the law of total variance). This replacement is Rao-Blackwellization, and it is why DDPM's Eq. 5
# is cheap: one draw of $x_t$ per term, and the expectation over $x_{t-1}$ done exactly.

# %%
print("   n   mean of 2000 MC estimates   spread (sd) of the estimates   closed form (sd 0)")
est = {}
for n in (10, 100, 1000):
    draws = m1 + v1.sqrt() * torch.randn(2000, n, generator=gk, dtype=torch.float64)
    lr_n = dl.gaussian_log_likelihood(draws, m1, v1.log()) - dl.gaussian_log_likelihood(draws, m2, v2.log())
    est[n] = lr_n.mean(dim=1)
    print(f"{n:5d}   {est[n].mean().item():.4f}                      {est[n].std().item():.4f}"
          f"                         {kl:.4f}")
fig, ax = plt.subplots(figsize=(6.5, 3))
for n in (10, 100, 1000):
    ax.hist(est[n].numpy(), bins=60, range=(-0.3, 0.8), histtype="step", density=True, label=f"MC, n = {n}")
ax.axvline(kl, color="k", lw=1.5, label="closed form")
ax.set(xlabel="estimate of KL(q || p)", ylabel="density", title="2000 Monte Carlo estimates of one KL, and the closed form")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Eq. 5 and Eq. 3 are the same bound: a numerical check
#
# Now everything together, on a 1-D toy where both forms can be computed: data $x_0 \sim \mathcal N(0.5, 0.3^2)$,
# a short schedule ($T = 20$, $\beta_t$ from 0.01 to 0.5) and, as a stand-in for a trained network, a fixed
# reverse process: the mean from Eq. 11 (chapter 06) with the noise predictor $\epsilon_\theta(x_t, t) = \sqrt{1 - \bar\alpha_t}\, x_t$
# (the best one for data $\mathcal N(0, 1)$, so a little wrong for ours), variances $\sigma_t^2 = \beta_t$, and a Gaussian
# decoder $p_\theta(x_0 \mid x_1)$ for this continuous data.
#
# - **Eq. 3, by brute force**: sample whole forward trajectories $x_0 \to x_1 \to \dots \to x_T$ with `q_step`, and
#   average $-\log p(x_T) - \sum_t [\log p_\theta(x_{t-1} \mid x_t) - \log q(x_t \mid x_{t-1})]$.
# - **Eq. 5, as the library computes it**: `d.vlb_terms(model, x0)` draws one $x_t \sim q(x_t \mid x_0)$ per term and
#   evaluates every KL in closed form (column $j$ holds $L_j$: $L_0$, then $L_1, \dots, L_{T-1}$, then $L_T$).

# %%
toy = dl.NoiseSchedule.linear(T=20, beta_start=0.01, beta_end=0.5)
toy_d = dl.GaussianDiffusion(toy, prediction="eps", variance="fixed_large", decoder="gaussian")


def model(x_t, t):
    """A stand-in network: the best noise prediction for N(0, 1) data, E[eps | x_t] = sqrt(1 - abar_t) x_t."""
    return toy.sqrt_one_minus_alpha_bars[t].to(x_t.dtype)[:, None] * x_t


g5 = torch.Generator().manual_seed(5)
N = 100_000
x0_toy = 0.5 + 0.3 * torch.randn(N, 1, generator=g5, dtype=torch.float64)

# Eq. 3 along sampled trajectories
eq3 = torch.zeros(N, dtype=torch.float64)
x_prev = x0_toy
for tt in range(1, toy.T + 1):
    t = torch.full((N,), tt)
    x_t = toy_d.q_step(x_prev, t, generator=g5)  # x_t ~ q(x_t | x_{t-1})
    p = toy_d.p_mean_variance(model(x_t, t), x_t, t)  # p_theta(x_{t-1} | x_t)
    log_p = dl.gaussian_log_likelihood(x_prev, p["mean"], p["log_variance"])[:, 0]
    log_q = dl.gaussian_log_likelihood(x_t, toy.sqrt_alphas[tt] * x_prev, toy.betas[tt].log())[:, 0]
    eq3 += log_q - log_p
    x_prev = x_t
eq3 -= dl.gaussian_log_likelihood(x_prev, torch.zeros(()), torch.zeros(()))[:, 0]  # -log p(x_T), p = N(0, 1)

# Eq. 5 with closed-form KLs
terms = toy_d.vlb_terms(model, x0_toy, generator=g5)  # (N, T + 1) in nats
eq5 = terms.sum(dim=1)

se3, se5 = eq3.std().item() / math.sqrt(N), eq5.std().item() / math.sqrt(N)
diff = abs(eq3.mean().item() - eq5.mean().item())
print(f"Eq. 3 (trajectories): {eq3.mean().item():.4f} +- {se3:.4f} nats   Eq. 5 (closed-form KLs): "
      f"{eq5.mean().item():.4f} +- {se5:.4f} nats")
print(f"|diff| {diff:.4f} (3 sigma of MC error {3 * math.hypot(se3, se5):.4f})")
print(f"L_T = {terms[:, toy.T].mean().item():.5f}, closed form for this data (schedule.prior_kl): "
      f"{toy.prior_kl(x0_sq_mean=0.5**2 + 0.3**2):.5f} nats")

# %% [markdown]
# The two agree within Monte Carlo error: Eq. 5 is the same number as Eq. 3, reorganized. $L_T$ is the
# same for every $\theta$ (it matches the closed form of chapter 03 for data with $\mathbb E[x_0^2] = 0.34$); with fixed
# $\beta_t$, training ignores it. Rao-Blackwellization is a statement about each term: given $(x_0, x_t)$ the
# closed-form KL has no randomness left, where a sampled log-ratio has. For the term $L_{t-1}$ at $t = 10$, over
# the same draws of $(x_0, x_t)$:

# %%
tt = 10
t = torch.full((N,), tt)
x_t = toy_d.q_sample(x0_toy, t, generator=g5)
post = toy_d.q_posterior(x0_toy, x_t, t)
p = toy_d.p_mean_variance(model(x_t, t), x_t, t)
x_prev = post.mean + post.variance.sqrt() * torch.randn(N, 1, generator=g5, dtype=torch.float64)  # x_{t-1} ~ posterior
sampled = (dl.gaussian_log_likelihood(x_prev, post.mean, post.log_variance)
           - dl.gaussian_log_likelihood(x_prev, p["mean"], p["log_variance"]))[:, 0]
closed = dl.normal_kl(post.mean, post.log_variance, p["mean"], p["log_variance"])[:, 0]
print(f"L_{tt - 1} at t = {tt}: sampled log-ratio {sampled.mean().item():.4f} (sd {sampled.std().item():.3f} per draw), "
      f"closed-form KL {closed.mean().item():.4f} (sd {closed.std().item():.3f} per draw)")
print(f"|diff| of the means {abs(sampled.mean().item() - closed.mean().item()):.4f} "
      f"(3 sigma of MC error {3 * sampled.std().item() / math.sqrt(N):.4f}); "
      f"the closed form needs {(sampled.var() / closed.var()).item():.0f}x fewer draws for the same precision")

# %% [markdown]
# (One caveat, for honesty: summed over all terms, the brute-force Eq. 3 estimate above has the *smaller* spread
# per example, because its terms share one trajectory and partly cancel, while `vlb_terms` draws a fresh $x_t$
# for every term and $L_0$, a density, varies a lot. What Eq. 5 buys is that each term stands alone, exact given
# $(x_0, x_t)$: training can pick one $t$ at random per example (Algorithm 1), which Eq. 3 cannot.)
#
# The terms over $t$ for this toy: most of the bound sits at small $t$, where the reverse steps must be precise.

# %%
mean_terms = terms.mean(dim=0)
fig, ax = plt.subplots(figsize=(7, 3))
ax.bar(torch.arange(1, toy.T).numpy(), mean_terms[1:toy.T].numpy(), color="C0", label=r"$L_{t-1}$, $t = 2..T$ (KL)")
ax.bar([0], mean_terms[:1].numpy(), color="C1", label=r"$L_0 = -\log p_\theta(x_0 \mid x_1)$ (a density: can be < 0)")
ax.bar([toy.T], mean_terms[toy.T:].numpy(), color="C2", label=r"$L_T$ (prior)")
ax.axhline(0, color="k", lw=0.6)
ax.set(xlabel="term index j in L_j", ylabel="nats", title="the terms of Eq. 5 for the 1-D toy, averaged over data")
ax.legend()
fig.tight_layout()
plt.show()
print(f"sum of the terms {mean_terms.sum().item():.4f} nats: L_0 {mean_terms[0].item():+.4f}, "
      f"sum of L_1..L_(T-1) {mean_terms[1:toy.T].sum().item():.4f}, L_T {mean_terms[toy.T].item():.5f}")

# %% [markdown]
# ## 6. Widget: prior, likelihood and posterior as $t$ moves
#
# The posterior is the product of a *prior* over $x_{t-1}$, $q(x_{t-1} \mid x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}\, x_0, 1 - \bar\alpha_{t-1})$,
# and a *likelihood*, $q(x_t \mid x_{t-1})$ read as a function of $x_{t-1}$ (normalized: $\mathcal N(x_t / \sqrt{\alpha_t}, \beta_t / \alpha_t)$),
# so its precision is the sum of theirs, $1/\tilde\beta_t = (1 - \bar\alpha_{t-1})^{-1} + \alpha_t / \beta_t$: Eq. 6's
# algebra as a picture. Scrub $t$ (DDPM's schedule, $x_0 = 1$, $x_t$ drawn once with a fixed $\epsilon$): for small
# $t$ the prior is the narrow one and the posterior sits near $x_0$; for large $t$ the prior is wide and the
# likelihood decides. The middle panel zooms onto the posterior; the right one marks $\beta_t$ and $\tilde\beta_t$.

# %% tags=["nbval-ignore-output"]
from ddpm_lib.course.widgets import posterior_explorer  # noqa: E402

box = posterior_explorer(s, x0=1.0, t=100)
box

# %% [markdown]
# Without a running kernel the widget cannot move; these are four of its settings, $t = 2, 100, 500, 1000$, each panel
# spanning its three densities (at $t = 2$ all three are narrow; from $t = 100$ on the likelihood, drawn wide under the
# posterior, all but coincides with it):

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 7. Exercises
#
# **Exercise 4.1 (the posterior, DDPM Eqs. 6-7).** Write `posterior(x0, x_t, t, schedule)` returning the pair
# `(mean, variance)` of $q(x_{t-1} \mid x_t, x_0)$: $x_0$ and $x_t$ have shape $(B, \dots)$, `t` is a LongTensor $(B,)$ in
# $1..T$, and `schedule` is a `NoiseSchedule` (use `schedule.betas`, `schedule.alphas`, `schedule.alpha_bars`, tables of
# length $T + 1$ indexed by the paper's $t$; not the ready-made `posterior_*` tables). At $t = 1$ your formula
# should give variance $0$ and mean $x_0$ by itself. Tables indexed by `t` have shape $(B,)$: reshape them to
# $(B, 1, \dots, 1)$ to broadcast.


# %% tags=["solution"]
def posterior(x0, x_t, t, schedule):
    """(mean, variance) of q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I), DDPM Eqs. 6-7."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x0.ndim - 1)
    beta = schedule.betas[t].view(shape)
    alpha = schedule.alphas[t].view(shape)
    abar = schedule.alpha_bars[t].view(shape)
    abar_prev = schedule.alpha_bars[t - 1].view(shape)  # paper indexing: alpha_bars[0] = 1 at t = 1
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    variance = (1 - abar_prev) / (1 - abar) * beta
    return mean, variance.expand_as(x0)
    # END SOLUTION


# %%
checks.check("posterior", posterior)


# %% [markdown]
# A common slip, for comparison: using $\bar\alpha_t$ where Eq. 7 has $\bar\alpha_{t-1}$ in the coefficient of $x_0$.

# %%
def posterior_slip(x0, x_t, t, schedule):
    shape = (-1,) + (1,) * (x0.ndim - 1)
    beta, alpha = schedule.betas[t].view(shape), schedule.alphas[t].view(shape)
    abar, abar_prev = schedule.alpha_bars[t].view(shape), schedule.alpha_bars[t - 1].view(shape)
    wrong_c0 = abar.sqrt() * beta / (1 - abar)  # should be sqrt(abar_{t-1}) beta_t / (1 - abar_t)
    mean = wrong_c0 * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    return mean, ((1 - abar_prev) / (1 - abar) * beta).expand_as(x0)


checks.check("posterior", posterior_slip)


# %% [markdown]
# **Exercise 4.2 (the Gaussian KL).** Write `gaussian_kl(mean1, logvar1, mean2, logvar2)`: the KL divergence
# $D_{KL}(\mathcal N(m_1, e^{\ell_1}) \,\|\, \mathcal N(m_2, e^{\ell_2}))$ elementwise, from log variances, as derived in Section 4.


# %% tags=["solution"]
def gaussian_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    # BEGIN SOLUTION
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)
    # END SOLUTION


# %%
checks.check("normal_kl", gaussian_kl)

# %% [markdown]
# ## Summary
#
# - DDPM Eq. 3 becomes Eq. 5, $L = L_T + \sum_{t>1} L_{t-1} + L_0$, by Bayes' rule on each forward step
#   (conditioned on $x_0$), a telescoping sum, and an expectation over $x_{t-1}$ that turns each log-ratio into a
#   KL divergence. We checked that both forms give the same number.
# - The posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$, with
#   $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1 - \bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t$ and
#   $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t} \beta_t$ (Eqs. 6-7), comes from completing the square; Bayes'
#   rule on a grid and a Monte Carlo regression on swiss-roll data confirm it. $\tilde\beta_1 = 0$, and
#   $\tilde\beta_t \to \beta_t$ as the signal fades.
# - $D_{KL}(\mathcal N(m_1, v_1) \| \mathcal N(m_2, v_2)) = \frac12(\log\frac{v_2}{v_1} + \frac{v_1}{v_2} + \frac{(m_1 - m_2)^2}{v_2} - 1)$, so every
#   $L_{t-1}$ and $L_T$ is exact given $(x_0, x_t)$: Rao-Blackwellization removes the sampling of $x_{t-1}$ and its variance.
# - $L_T$ has no parameters when the $\beta_t$ are fixed.
#
# **Next:** chapter 06 fixes the reverse variances $\sigma_t^2$, turns $L_{t-1}$ into a squared error between
# means, reparameterizes the mean through the noise $\epsilon$, and arrives at DDPM's simple loss; then it trains
# a network on the swiss roll with Algorithm 1 and samples with Algorithm 2.
