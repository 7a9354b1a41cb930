# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Measuring the bound: Eq. 14 term by term, the Jensen gap, and DDPM's L
#
# Chapter 02 derived Sohl-Dickstein et al.'s bound $K$ (Eqs. 10-14) and made claims about it: one forward trajectory
# suffices as $\beta_t \to 0$, the Jensen gap is about $\tfrac12 \mathrm{Var}[\log w]$, $\beta_1$ must stay fixed. Chapters
# 03 and 04 supplied the two tools that make every term computable exactly: $q(x_t \mid x_0)$ in closed form and the
# posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t)$ (DDPM Eqs. 6-7; `d.q_posterior` in the library),
# with DDPM's bound $L = L_T + \sum_t L_{t-1} + L_0$ term by term (`d.vlb_terms`). This chapter puts a number on each
# claim, on the same 1-D toys as chapter 02 (a mixture of three Gaussians, and the Gaussian toy of its section 5).
#
# **Learning goals.** After this chapter you can
# - compute every piece of Eq. 14 exactly by Gauss-Hermite quadrature, and check $K$ three ways (trajectories,
#   Eq. 14, DDPM's $-L$);
# - say when the Jensen gap is $\tfrac12 \mathrm{Var}[\log w]$ and why it is smaller when $\log w$ has a long low tail;
# - map Eq. 14 onto DDPM's $L_T$, $L_{t-1}$ and $L_0$ term by term, and derive the edge term of the simplest last step;
# - explain, with numbers, why $\beta_2$ can be learned and $\beta_1$ cannot, and size each approximation of the derivation.
#
# **Reading time:** about 40 minutes, plus the exercise. **CPU time:** about 10 s on a 2-core CPU (budget: 30 s).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib import mixtures as M
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

F64 = torch.float64  # every toy below runs in float64, so that exact checks agree to round-off
MIX = M.DEFAULT_MIXTURE  # the 1-D data: a mixture of three Gaussians (means, stds, weights)


constant_schedule = dl.NoiseSchedule.constant  # beta_t = 1 - alpha_bar_T^(1/T) at every t: the same total noise for any T
sample_data = dl.data.mixture_1d_points  # sample_data(n, seed): n points of MIX, shape (n, 1), float64

# %% [markdown]
# ## The picture first
#
# Chapter 02 wrote $p(x^0)$ as an average of importance weights $w$ over forward trajectories and $K$ as the average
# of $\log w$; Jensen's inequality says $\log \mathbb E[w] \ge \mathbb E[\log w]$, and if $\log w$ were Gaussian the gap would be
# exactly $\tfrac12 \mathrm{Var}[\log w]$. Here are 4,000 values of $\log w$ for one data point of the mixture, with $T = 8$
# steps of the ideal reverse process ($x^0 = -0.96$), beside a Gaussian of the same mean and variance. The long tail to the left is
# what section 2 measures: it inflates the variance but hardly moves $\log \mathbb E[w]$, so the gap (printed below the
# picture) is smaller than $\tfrac12 \mathrm{Var}[\log w]$.

# %%
s8 = constant_schedule(8)
x0_one = sample_data(8, seed=3)[1:2]  # x^0 = -0.96
log_w_one = M.log_importance_weights(s8, M.ideal_reverse(s8), x0_one, 4000, torch.Generator().manual_seed(1))[0]
centred = (log_w_one - log_w_one.mean()).numpy()
sd = float(centred.std())
fig, ax = plt.subplots(figsize=(9, 3.4))
ax.hist(centred, bins=80, density=True, color="C0", alpha=0.7, label=r"$\log w - \mathrm{mean}$, 4,000 trajectories")
u = np.linspace(centred.min(), centred.max(), 400)
ax.plot(u, np.exp(-u**2 / (2 * sd**2)) / (sd * math.sqrt(2 * math.pi)), "C1", label="Gaussian, same variance")
ax.set(xlabel=r"$\log w$ minus its mean (nats)", ylabel="density (log scale)",
       yscale="log", ylim=(1e-4, 3), title=r"$\log w$ at $T = 8$: a long tail towards low values")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # off the data
fig.tight_layout()
plt.show()
jensen = float(torch.logsumexp(log_w_one, 0) - math.log(len(log_w_one)) - log_w_one.mean())
print(f"this point, skewness {round(float((centred**3).mean() / sd**3), 1)}: Var[log w] / 2 = {round(sd**2 / 2, 2)}, log mean(w) - mean(log w) = {round(jensen, 2)} (estimated from the same draws)")

# %% [markdown]
# ## 1. Eq. 14 term by term
#
# **How the pieces are computed** (`M.bound_terms`). Each piece of Eq. 14 is an expectation over $(x^0, x^t)$ for
# one $t$: given $x^0$, a 1-D integral over $x^t = \sqrt{\bar\alpha_t}\, x^0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with
# $\epsilon \sim \mathcal N(0, 1)$. We do each integral by **Gauss-Hermite quadrature**: a weighted sum of the integrand
# at $n$ fixed values of $\epsilon$ (`M.gauss_hermite(n)`), chosen so that the sum equals $\mathbb E[f(\epsilon)]$ exactly
# whenever $f$ is a polynomial of degree below $2n$, and very nearly for smooth $f$. For the Gaussian toy every
# integrand is a polynomial in $\epsilon$, so 16 nodes are exact. Fixed nodes are also "frozen noise" (chapter 02's section 8):
# $K$ becomes a smooth function of the $\beta$'s. `M.bound_from_terms` adds the pieces up with nothing dropped: the
# $t = 1$ term kept and the cross-entropy $-\mathbb E \log \pi(x^T)$ for $H_p(X^T)$.
#
# The toy of chapter 02's section 5 again: data $\mathcal N(0.5, 0.5^2)$, $T = 5$, the best mean and $\sigma_t^2 = \beta_t$. As a DDPM model,
# its "network" outputs that mean (`prediction="mean"`) and `variance="fixed_large"` is the library's name for
# $\sigma_t^2 = \beta_t$. First the edge of chapter 02's section 6 in DDPM's tables, and step (b) of chapter 02's section 7 pointwise:

# %%
GRID = torch.linspace(-6, 6, 241, dtype=F64)  # as in chapter 02's section 3
gdata = dl.GaussianData(dim=1, mean=0.5, std=0.5)
s_toy = constant_schedule(5)
d_toy = dl.GaussianDiffusion(s_toy, prediction="mean", variance="fixed_large", decoder="gaussian")
rev_toy = M.ideal_reverse(s_toy, means=[0.5], stds=[0.5], weights=None, variance="beta")
x0_toy = torch.tensor([[-0.5], [0.0], [0.5], [1.0], [1.5]], dtype=F64)
print(f"posterior variance at t = 1: beta~_1 = {float(s_toy.posterior_variance[1]):.1f} "
      f"(a point mass: the edge), at t = 2: beta~_2 = {float(s_toy.posterior_variance[2]):.3f}")

gen = torch.Generator().manual_seed(6)
B = 10_000
x0b = gdata.sample(B, generator=gen, dtype=F64)
worst = 0.0
for t in range(2, s_toy.T + 1):
    tt = torch.full((B,), t)
    x_prev = d_toy.q_sample(x0b, tt - 1, generator=gen)
    x_t = d_toy.q_step(x_prev, tt, generator=gen)
    lhs = dl.gaussian_log_likelihood(x_t, s_toy.sqrt_alphas[t] * x_prev, s_toy.betas[t].log())  # q(x^t | x^{t-1})
    post = d_toy.q_posterior(x0b, x_t, tt)
    q_t, q_prev = d_toy.q_mean_variance(x0b, tt), d_toy.q_mean_variance(x0b, tt - 1)
    rhs = (dl.gaussian_log_likelihood(x_prev, post.mean, post.log_variance)  # q(x^{t-1} | x^t, x^0)
           + dl.gaussian_log_likelihood(x_t, q_t.mean, q_t.log_variance)  # q(x^t | x^0)
           - dl.gaussian_log_likelihood(x_prev, q_prev.mean, q_prev.log_variance))  # / q(x^{t-1} | x^0)
    worst = max(worst, float((lhs - rhs).abs().max()))
print(f"step (b), Bayes' rule for t = 2..{s_toy.T} at {B:,} sampled points: max |log lhs - log rhs| = {below(worst)}")

# %% [markdown]
# **$K$ three ways** on the toy: the trajectory form (Eq. 12, the mean of $\log w$ over 20,000 sampled trajectories,
# as in chapter 02's section 5), the Eq. 14 form (exact, by quadrature), and minus DDPM's bound from `d_toy.vlb_terms`
# (one sampled $x_t$ per term, KLs in closed form).

# %%
def as_model(reverse):
    """A 'network' for GaussianDiffusion(prediction="mean"): it outputs the mean of reverse(x_t, t)."""
    return lambda x_t, t: reverse(x_t, int(t[0]))[0]


N_TOY = 20_000
log_w_toy = M.log_importance_weights(s_toy, rev_toy, x0_toy, N_TOY, torch.Generator().manual_seed(4))
K_mc, K_se = log_w_toy.mean(1), log_w_toy.std(1) / math.sqrt(N_TOY)
GH16 = M.gauss_hermite(16)
parts = M.bound_terms(d_toy, rev_toy, x0_toy, *GH16)
K_eq14 = M.bound_from_terms(parts)
vlb = d_toy.vlb_terms(as_model(rev_toy), x0_toy.repeat_interleave(N_TOY, 0), generator=gen).sum(1).reshape(len(x0_toy), -1)
print(" x^0    K, trajectories (MC)   K, Eq. 14 (exact)   -L, DDPM vlb_terms (MC)")
for i in range(len(x0_toy)):
    print(f"{float(x0_toy[i]):+4.1f}    {float(K_mc[i]):+.4f} +- {float(K_se[i]):.4f}      {float(K_eq14[i]):+.4f}"
          f"             {float(-vlb[i].mean()):+.4f} +- {float(vlb[i].std()) / math.sqrt(N_TOY):.4f}")
z1 = float(((K_mc - K_eq14) / K_se).abs().max())
z2 = float(((-vlb.mean(1) - K_eq14) / (vlb.std(1) / math.sqrt(N_TOY))).abs().max())
print(f"Eq. 12 vs Eq. 14: largest difference {z1:.1f} standard errors; DDPM's -L vs Eq. 14: {z2:.1f} standard errors")
print("Eq. 14's pieces for x^0 = 0.5: " + ", ".join(
    f"{k} {float(parts[k][2] if parts[k].ndim else parts[k]):+.4f}" for k in ("kl", "H_T", "H_1", "cross_T", "H_pi", "edge")))

# %% [markdown]
# The pieces line reads: $\sum_t \mathbb E\, D_{KL}$ (`kl`), $H_q(X^T \mid X^0)$, $H_q(X^1 \mid X^0)$, the cross-entropy
# $-\mathbb E \log \pi(x^T)$ against the entropy $H(\pi)$ (the paper's $H_p(X^T)$; they differ because here
# $\bar\alpha_T = 10^{-3}$, not 0), and the $t = 1$ term (`edge`) that Eq. 14 drops.
#
# ## 2. The Jensen gap as $T$ grows
#
# Section 4's sweep again (the mixture, the ideal reverse process,
# $\bar\alpha_T = 10^{-3}$), now with the exact gap $\log p(x^0) - K$: $\log p(x^0)$ on the grid, $K$ by Eq. 14. The last
# column compares the gap with $\tfrac12 \mathrm{Var}[\log w]$, its value if $\log w$ were Gaussian (chapter 02's Exercise 2.4).

# %%
x0_sweep = sample_data(32, seed=3)
GH32 = M.gauss_hermite(32)
gaps = {}
for T in (1, 2, 4, 8, 16, 32, 64, 128, 256):
    s = constant_schedule(T)
    rev = M.ideal_reverse(s)
    log_p_x0 = M.grid_log_prob(rev, T, x0_sweep, GRID)
    K = M.bound_from_terms(M.bound_terms(dl.GaussianDiffusion(s, decoder="gaussian"), rev, x0_sweep, *GH32))
    log_w = M.log_importance_weights(s, rev, x0_sweep, 128, torch.Generator().manual_seed(T))  # as in chapter 02's section 4
    c = log_w - log_w.mean(1, keepdim=True)
    gaps[T] = {"var": float(log_w.var(1).mean()), "gap": float((log_p_x0 - K).mean()),
               "skew": float(((c**3).mean(1) / (c**2).mean(1) ** 1.5).median()),  # median over the 32 points
               "min_gap": float((log_p_x0 - K).min()),
               # pooled over the 32 points: sampled K minus exact K, in standard errors
               "mc_vs_exact": float((log_w.mean(1) - K).mean() / (log_w.var(1).sum() / 128).sqrt() * len(K))}
print("   T     Var[log w]   Jensen gap   gap/(Var/2)   skewness of log w")
for T, r in gaps.items():
    print(f"{T:4d}   {r['var']:9.4f}   {r['gap']:9.4f}    {r['gap'] / (r['var'] / 2):8.2f}      {round(r['skew'], 1) + 0.0:+6.1f}")  # + 0.0: no "-0.0"
print(f"smallest gap over all T and x^0: {min(r['min_gap'] for r in gaps.values()):.2e} (Jensen: never negative)")
print(f"K from sampled trajectories vs K from Eq. 14's 1-D integrals (averaged over the 32 points): largest "
      f"difference over T {max(abs(r['mc_vs_exact']) for r in gaps.values()):.1f} standard errors")

# %% [markdown]
# The gap is never negative (Jensen) and follows Var$[\log w]$: it rises from 0.0000 at $T = 1$ to 0.050 at $T = 64$
# and falls to 0.010 at $T = 256$. The ratio gap$/(\mathrm{Var}/2)$ is close to 1 only at the two ends (1.02 at
# $T = 1$ and 2, 1.05 at $T = 256$), where $\log w$ varies little and is nearly Gaussian. For $T = 4$ to 128 it is
# 0.38-0.55, and the skewness column says why: there $\log w$ has a long tail towards low values (a few
# trajectories pass where the model's Gaussian kernels put little mass, and get tiny weights). Such a tail inflates
# Var$[\log w]$ but hardly moves $\log \mathbb E[w]$, which the large weights dominate, so the gap stays well below
# $\tfrac12 \mathrm{Var}[\log w]$. The sampled and the exact $K$ agree within Monte Carlo error.
#
# ## 3. From K to DDPM's L
#
# DDPM (Ho et al. 2020, Eq. 5) writes the same bound with the opposite sign, as a loss $L = -K$ (per data point),
# and keeps every term:
# $$L = \underbrace{D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))}_{L_T} + \sum_{t=2}^{T} \underbrace{D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
# \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0} .$$
# Term by term against Eq. 14: the KL terms are the same; $L_T = -H_q(X^T \mid X^0) + H_p(X^T)$ exactly, when
# $H_p(X^T)$ is the cross-entropy $-\mathbb E \log \pi(x^T)$ (since $D_{KL}(q \| \pi) = \mathbb E_q \log q - \mathbb E_q \log \pi$); and
# $L_0$ takes the place of $H_q(X^1 \mid X^0)$ and of the dropped $t = 1$ term: $L_0 = H_q(X^1 \mid X^0) - (\text{edge term})$,
# so with the slip of chapter 02's section 6, $p(x^0 \mid x^1) = q(x^1 \mid x^0)$, $L_0$ would be exactly $H_q(X^1 \mid X^0)$. The numbers, for the toy at
# $x^0 = 0.5$ and for the same data under DDPM's schedule ($T = 1000$, linear from $10^{-4}$ to $0.02$):

# %%
s_ddpm = dl.NoiseSchedule.linear(T=1000)
d_ddpm = dl.GaussianDiffusion(s_ddpm, prediction="mean", variance="fixed_large", decoder="gaussian")
rev_ddpm = M.ideal_reverse(s_ddpm, means=[0.5], stds=[0.5], weights=None, variance="beta")
x_half = torch.tensor([[0.5]], dtype=F64)
for name, d, rev in (("toy, T = 5", d_toy, rev_toy), ("DDPM schedule, T = 1000", d_ddpm, rev_ddpm)):
    b = M.bound_terms(d, rev, x_half, *GH16)
    L_T = float(d.prior_kl(x_half)[0])
    L_0 = -float(b["edge"][0] - b["H_1"])  # -E log p(x^0 | x^1)
    print(f"{name}: L_T = {L_T:.6f} = H_p(X^T) - H_q(X^T|X^0) = {float(b['cross_T'][0] - b['H_T']):.6f}; "
          f"sum L_(t-1) = sum E KL = {float(b['kl'][0]):.4f}; L_0 = {L_0:+.4f} vs H_q(X^1|X^0) = {float(b['H_1']):+.4f}")
    gap = float(M.affine_chain_log_prob(rev, d.schedule.T, x_half)[0] - M.bound_from_terms(b)[0])
    print(f"  Jensen gap at x^0 = 0.5: {gap:.4f} nats")

# %% [markdown]
# The identities hold to the digits shown: $L_T$ is the cross-entropy minus the entropy, and the KL terms are the
# same numbers in both notations. $L_0$ differs from $H_q(X^1 \mid X^0)$ by the edge term: by 0.49 nats with the toy's
# $\beta_1 = 0.75$, by 0.0004 nats with DDPM's $\beta_1 = 10^{-4}$. Under DDPM's schedule the Jensen gap is about ten
# times smaller than with the toy's five large steps.
#
# ## 4. Learning $\beta$, and why $\beta_1$ stays fixed
#
# **Learning $\beta_2$** (chapter 02's section 8). The mixture with $T = 2$ and $\beta_1 = 0.01$ fixed, and the ideal reverse process
# re-fitted at every $\beta_2$ (as joint training of network and $\beta$ would do):

# %%
x0_fit = sample_data(2000, seed=7)
betas_2 = np.concatenate([np.geomspace(0.01, 0.9, 22), [0.95, 0.98, 0.995]])
K_curve, H_curve = [], []
for b2 in betas_2:
    s = dl.NoiseSchedule.from_betas([0.01, float(b2)], warn=False)
    b = M.bound_terms(dl.GaussianDiffusion(s, decoder="gaussian"), M.ideal_reverse(s), x0_fit, *GH16)
    K_curve.append(float(M.bound_from_terms(b).mean()))
    H_curve.append(float(b["H_T"] - b["H_1"]))
i_best = int(np.argmax(K_curve))
print(f"beta_1 = 0.01 fixed: K = {K_curve[0]:.4f} at beta_2 = {betas_2[0]:.2f}, {K_curve[i_best]:.4f} at "
      f"beta_2 = {betas_2[i_best]:.3f} (the best on this grid), {K_curve[-1]:.4f} at beta_2 = {betas_2[-1]}")
print(f"H_q(X^2|X^0) - H_q(X^1|X^0) moves from {H_curve[0]:.3f} to {H_curve[-1]:.3f} nats over the same range")

fig, ax = plt.subplots(figsize=(6, 3.3))
ax.semilogx(betas_2, K_curve, "o-", ms=3, label="K (per data point)")
ax.axvline(betas_2[i_best], color="grey", ls=":", lw=1)
ax.set(xlabel=r"$\beta_2$ ($\beta_1 = 0.01$ fixed, T = 2)", ylabel="nats", title=r"$K$ as a function of $\beta_2$")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# **Why $\beta_1$ stays fixed** (chapter 02's section 8). The same $T = 2$ model, trained on 8 points (their empirical
# distribution: each point a very narrow Gaussian), $\beta_2 = 0.9$, and a shrinking $\beta_1$:

# %%
train = sample_data(8, seed=8)
heldout = sample_data(500, seed=9)
print("beta_1     K on the 8 training points   K on 500 held-out points")
for b1 in (0.3, 0.1, 0.03, 0.01, 0.003, 0.001):
    s = dl.NoiseSchedule.from_betas([b1, 0.9], warn=False)
    d, rev = dl.GaussianDiffusion(s, decoder="gaussian"), M.ideal_reverse(s, means=train[:, 0], stds=1e-4, weights=None)
    k_train = float(M.bound_from_terms(M.bound_terms(d, rev, train, *GH16)).mean())
    k_held = float(M.bound_from_terms(M.bound_terms(d, rev, heldout, *GH16)).mean())
    print(f"{b1:<8g}   {k_train:+10.3f}                {k_held:+12.4g}")

# %% [markdown]
# ## Exercise
#
# **Exercise 5.1 (derive: the edge term of the simplest last step).** Chapter 02's section 6 considered the simplest
# choice for the last reverse step, the forward kernel read backwards: $p(x^0 \mid x^1) = T_\pi(x^0 \mid x^1) =
# \mathcal N(\sqrt{1 - \beta_1}\, x^1, \beta_1)$. Eq. 14 drops the $t = 1$ term
# $\mathbb E_{x^1 \sim q(x^1 \mid x^0)}\big[\log T_\pi(x^0 \mid x^1) - \log q(x^1 \mid x^0)\big]$. Derive it in closed form as a
# function of $\beta_1$ and $x^0$ (write $x^1 = \sqrt{1 - \beta_1}\, x^0 + \sqrt{\beta_1}\, \epsilon$ and expand both squares;
# $\mathbb E[\epsilon] = 0$, $\mathbb E[\epsilon^2] = 1$), and write `edge_term(beta_1, x0)`. Then decide: is your expression exact,
# or only first order in $\beta_1$? The check compares it with Gauss-Hermite quadrature of the same expectation at a
# small, a medium and a large $\beta_1$.

# %% tags=["solution"]
def edge_term(beta_1, x0):
    """E over x^1 ~ q(x^1|x^0) of log T_pi(x^0|x^1) - log q(x^1|x^0), for x0 of shape (M,)."""
    # BEGIN SOLUTION
    return beta_1 * (1 - x0**2) / 2  # exact: the beta_1^2 terms cancel
    # END SOLUTION


# %%
def edge_by_quadrature(beta_1, x0):
    """The same expectation by 16-node Gauss-Hermite quadrature (exact: the integrand is a polynomial in eps)."""
    nodes, weights = GH16
    x1 = math.sqrt(1 - beta_1) * x0[:, None] + math.sqrt(beta_1) * nodes  # (M, 16)
    log_var = torch.tensor(math.log(beta_1), dtype=F64)
    log_T = dl.gaussian_log_likelihood(x0[:, None], math.sqrt(1 - beta_1) * x1, log_var)
    log_q = dl.gaussian_log_likelihood(x1, math.sqrt(1 - beta_1) * x0[:, None], log_var)
    return ((log_T - log_q) * weights).sum(1)


x0_edge = torch.tensor([-1.5, -0.5, 0.0, 1.0, 2.0], dtype=F64)
for b1 in (1e-4, 0.1, 0.75):
    checks.check_value(f"edge_term at beta_1 = {b1:g}", lambda: edge_term(b1, x0_edge), edge_by_quadrature(b1, x0_edge),
                       equation="E[log T_pi(x^0|x^1) - log q(x^1|x^0)] over x^1 ~ q(x^1|x^0), in closed form")


# %% [markdown]
# ## 5. The approximations, each with a number
#
# The derivation made four approximations on the way.
#
# 1. **Finite $T$: $x^T$ is not exactly $\pi$.** Then $p(x^T) = \pi$ mismatches $q(x^T)$, and the cross-entropy
#    $-\mathbb E \log \pi(x^T)$ is not the entropy $H(\pi)$ that Eq. 14 uses.
# 2. **$\beta_t$ does not go to 0.** (a) The true reverse kernel is not Gaussian (chapter 02's section 2); (b) the one-sample
#    estimate of $p(x^0)$ through trajectories is not exact (chapter 02's section 4); (c) Jensen's inequality is not an equality.
# 3. **The network does not fit the mean and variance exactly.**
# 4. **The special last step** $p(x^0 \mid x^1) = T_\pi(x^0 \mid x^1)$ drops the $t = 1$ term (chapter 02's section 6).

# %%
ab_16 = float(constant_schedule(16).alpha_bars[-1])
means_T, vars_T, w_T = M.noised_components(torch.tensor(ab_16, dtype=F64))  # q(x^T) of the mixture, T = 16
q_T_grid = M.mixture_log_prob(GRID, means_T[:, None], vars_T.sqrt()[:, None], w_T).exp()
pi_grid = dl.gaussian_log_likelihood(GRID, 0.0, 0.0).exp()
kl_T = float(torch.trapezoid(q_T_grid * (q_T_grid.log() - pi_grid.log()), GRID))
print(f"1. x^T is not pi: mixture, abar_T = {ab_16:.0e}: KL(q(x^T) || pi) = {kl_T:.1e} nats; "
      f"DDPM schedule, E[x_0^2] = 1: L_T = {s_ddpm.prior_kl(1.0):.1e} nats/dim; "
      f"toy at x^0 = 0.5: cross-entropy - H(pi) = {float(parts['cross_T'][2] - parts['H_pi']):+.1e} nats")
grid = torch.linspace(-5, 5, 4001, dtype=F64)
kl_002, kl_05 = (max(M.kernel_kl_to_gaussian(grid, M.true_reverse_kernel(grid, v, b)) for v in (-1.0, 0.3, 1.2))
                 for b in (0.02, 0.5))
print(f"2a. reverse kernel not Gaussian: largest KL to its Gaussian at beta = 0.02 (DDPM's beta_T) {kl_002:.1e} nats, "
      f"at beta = 0.5 {kl_05:.2f} nats")
print(f"2b. one forward sample is not exact: Var[log w] = {gaps[16]['var']:.3f} at T = 16, "
      f"{gaps[256]['var']:.3f} at T = 256 (mixture)")
print(f"2c. Jensen gap log p(x^0) - K: {gaps[16]['gap']:.3f} nats at T = 16, {gaps[256]['gap']:.4f} at T = 256")


def off_by_10_percent(x_t, t):
    mean, log_var = rev_toy(x_t, t)
    return 1.1 * mean, log_var  # a network whose mean is 10 % too large


K_off = M.bound_from_terms(M.bound_terms(d_toy, off_by_10_percent, x0_toy, *GH16))
m2 = 0.5**2 + 0.5**2  # E[(x^0)^2] of the toy data
print(f"3. an imperfect network: a mean 10 % too large lowers K on the toy by "
      f"{float((K_eq14 - K_off).mean()):.4f} nats on average (the exact log p(x^0) changes as well)")
print(f"4. the edge: the dropped t = 1 term with p(x^0|x^1) = T_pi is beta_1 (1 - E[x0^2]) / 2 = "
      f"{1e-4 / 2 * (1 - m2):.1e} nats/dim at DDPM's beta_1 = 1e-4, {0.001 / 2 * (1 - m2):.1e} at the reference code's "
      f"beta_1 = 0.001; p(x^0|x^1) = q(x^1|x^0) misses normalization by log(1/sqrt(1 - beta_1)) = {-0.5 * math.log1p(-0.001):.1e}")

# %% [markdown]
# ## Summary
#
# **What this chapter measured.** Eq. 14 and DDPM's $-L$ give the same $K$ as the trajectory average; the Jensen gap is
# never negative and is not $\tfrac12\mathrm{Var}[\log w]$ when $\log w$ is far from Gaussian; $L_T$, the KL terms and $L_0$
# match Eq. 14's entropies term by term; $K$ has a best $\beta_2$; a learned $\beta_1$ would memorize the training set;
# and each approximation has a size. **Next:** chapter 06 turns each $L_{t-1}$ into a squared error.
