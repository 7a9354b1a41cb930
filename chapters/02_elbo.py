# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Sohl-Dickstein's framework: trajectories, Jensen and the bound K
#
# This chapter follows Sohl-Dickstein et al. (2015), Section 2 and Appendix B, checking each step on 1-D toys where
# every quantity is known exactly. We write $x^t$ for their $x^{(t)}$ ($x^0$ is data) and use their equation numbers.
#
# **Learning goals.** After this chapter you can
# - write the forward and reverse trajectories (Eqs. 1-5), and say why the reverse kernel may be Gaussian when
#   $\beta_t$ is small (and see it fail when it is not);
# - write $p(x^0)$ as an importance-sampling integral over forward trajectories (Eqs. 6-9), and say when one
#   forward sample is enough;
# - derive the bound $L \ge K$ by Jensen's inequality (Eqs. 10-13) and rewrite $K$ into KL divergences plus
#   entropies (Eq. 14);
# - explain the edge effect $p(x^0 \mid x^1)$ and why $\beta_1$ is fixed while $\beta_{2..T}$ may be learned.
#
# The derivation uses nothing from later chapters. Chapter 05, **Measuring the bound**, computes every term of
# Eq. 14 with the posterior of chapter 04 and gives each claim of this chapter its number.
#
# **Reading time:** about an hour.
# **CPU time:** about 15 s on a 2-core CPU (budget: 45 s).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib import mixtures as M
from ddpm_lib.course import checks, widgets
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
# Take data in one dimension, a mixture of three bumps, and apply many small random steps, each of which
# shrinks $x$ a little towards 0 and adds a little Gaussian noise. Below, left: 60 such paths
# (*trajectories*) over $T = 50$ steps; right: where 20,000 of them are at four times. The bumps blur into
# one standard Gaussian. A diffusion model learns to run these steps *backwards*, from noise to data. This
# chapter asks one question: how probable does the backward chain make a data point, and how can that
# probability, an integral over all paths, be bounded by something we can compute and train?

# %%
s50 = constant_schedule(50)
d50 = dl.GaussianDiffusion(s50, decoder="gaussian")
g = torch.Generator().manual_seed(1)
path = [sample_data(20_000, seed=0)]
for t in range(1, s50.T + 1):
    path.append(d50.q_step(path[-1], torch.full((len(path[0]),), t), generator=g))  # one forward step
traj = torch.cat(path, 1)  # (N, T + 1): column t is x^t

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
for i in range(60):
    ax1.plot(np.arange(s50.T + 1), traj[i].numpy(), lw=0.6, alpha=0.6)
ax1.set(xlabel="step t", ylabel="$x^t$", title="60 forward trajectories, T = 50")
xx = np.linspace(-4, 4, 401)
for k, t in enumerate((0, 3, 10, 50)):
    ax2.hist(traj[:, t].numpy(), bins=80, range=(-4, 4), density=True, alpha=0.4, color=f"C{k}", label=f"t = {t}")
ax2.plot(xx, np.exp(-xx**2 / 2) / math.sqrt(2 * math.pi), "k--", lw=1, label=r"$N(0, 1)$")
ax2.set(xlabel="$x^t$", ylabel="density", title="where the trajectories are at time t")
ax2.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 1. The forward trajectory (Eqs. 1-3)
#
# The forward process $q$ is built from a Markov diffusion kernel $T_\pi(y \mid y'; \beta)$ whose *stationary
# distribution* is a simple $\pi$ (start from $\pi$, take a step, and you are still distributed as $\pi$):
# $$\pi(y) = \int T_\pi(y \mid y'; \beta)\, \pi(y')\, dy' \qquad \text{(Eq. 1)}$$
# and each step $t$ applies it with its own *diffusion rate* $\beta_t$:
# $$q(x^t \mid x^{t-1}) = T_\pi(x^t \mid x^{t-1}; \beta_t) \qquad \text{(Eq. 2)}.$$
# For Gaussian diffusion, $T_\pi(x^t \mid x^{t-1}; \beta_t) = \mathcal N(x^t; \sqrt{1 - \beta_t}\, x^{t-1}, \beta_t I)$
# and $\pi = \mathcal N(0, I)$. Eq. 1 holds: if $y' \sim \mathcal N(0, 1)$ and $y = \sqrt{1-\beta}\, y' + \sqrt{\beta}\,\epsilon$
# with $\epsilon \sim \mathcal N(0, 1)$ independent, then $y$ is Gaussian with mean $0$ and variance $(1 - \beta) + \beta = 1$.
#
# **After $t$ steps** the signal is multiplied by $\sqrt{\bar\alpha_t}$, $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$, and the noise variance
# $v_t = (1 - \beta_t) v_{t-1} + \beta_t$, i.e. $1 - v_t = (1 - \beta_t)(1 - v_{t-1})$, is $1 - \bar\alpha_t$ (chapter 03 derives this
# properly). A data component $\mathcal N(\mu_k, s_k^2)$ becomes $\mathcal N(\sqrt{\bar\alpha_t}\, \mu_k, \bar\alpha_t s_k^2 + 1 - \bar\alpha_t)$
# (`M.noised_components`); as $\bar\alpha_t \to 0$, $q(x^T) \approx \pi$.
#
# **The trajectory.** Each step looks only at the previous state, so a whole path has density
# $$q(x^{0:T}) = q(x^0) \prod_{t=1}^{T} q(x^t \mid x^{t-1}) \qquad \text{(Eq. 3)},$$
# where $q(x^0)$ is the data distribution. Checked: Eq. 1 on a grid, and the trajectories of the picture against
# the closed-form mean and variance of $q(x^t)$.

# %%
def data_log_prob(x: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
    """log q(x^t) of the mixture noised to alpha_bar_t (each component stays Gaussian)."""
    means, variances, w = M.noised_components(torch.tensor(alpha_bar, dtype=F64))
    return M.mixture_log_prob(x, means[:, None], variances.sqrt()[:, None], w)


def data_moments(alpha_bar) -> tuple[float, float]:
    """Mean and variance of the whole mixture q(x^t)."""
    m, v, w = M.noised_components(torch.as_tensor(alpha_bar, dtype=F64))
    mean = (w * m).sum()
    return float(mean), float((w * (v + (m - mean) ** 2)).sum())


print(s50)
y = torch.linspace(-8, 8, 1601, dtype=F64)  # Eq. 1 on a grid: one step of T_pi applied to pi gives pi back
beta = float(s50.betas[1])
pi_y = dl.gaussian_log_likelihood(y, 0.0, 0.0).exp()
T_pi = dl.gaussian_log_likelihood(y[:, None], math.sqrt(1 - beta) * y[None, :], math.log(beta)).exp()  # [y, y']
after = torch.trapezoid(T_pi * pi_y[None, :], y, dim=1)
print(f"Eq. 1 on a grid: max |int T_pi(y|y') pi(y') dy' - pi(y)| = {below(float((after - pi_y).abs().max()), 1e-10)}")

worst = 0.0
for t in (1, 10, 50):
    mean, var = data_moments(s50.alpha_bars[t])
    xt = traj[:, t]
    se_mean = float(xt.std()) / math.sqrt(len(xt))
    se_var = float(((xt - xt.mean()) ** 2).std()) / math.sqrt(len(xt))
    worst = max(worst, abs(float(xt.mean()) - mean) / se_mean, abs(float(xt.var()) - var) / se_var)
    print(f"t = {t:2d}: mean of x^t {float(xt.mean()):+.3f} (closed form {mean:+.3f}), "
          f"variance {float(xt.var()):.3f} (closed form {var:.3f})")
print(f"sampled chain vs closed form: largest difference {worst:.1f} standard errors (under 3 expected)")

# %% [markdown]
# ## 2. The reverse trajectory and the true reverse kernel (Eqs. 4-5)
#
# The generative model starts where the forward process ends, $p(x^T) = \pi(x^T)$ (Eq. 4), and takes $T$ learned
# steps back to data:
# $$p(x^{0:T}) = p(x^T) \prod_{t=1}^{T} p(x^{t-1} \mid x^t) \qquad \text{(Eq. 5)}.$$
# The ideal kernel is the forward process's own reverse, by Bayes' rule
# $$q(x^{t-1} \mid x^t) = \frac{q(x^t \mid x^{t-1})\, q(x^{t-1})}{q(x^t)},$$
# which needs the noised data density $q(x^{t-1})$ and is intractable for real data. The paper's key
# observation (citing Feller 1949): **as $\beta_t \to 0$, the reverse of a Gaussian diffusion step is again
# Gaussian**. Heuristically: as a function of
# $x^{t-1}$, $q(x^t \mid x^{t-1})$ is a Gaussian of width about $\sqrt{\beta_t}$; over so short a range the
# smooth $q(x^{t-1})$ is close to $e^{\text{linear}}$, and a Gaussian times that is a shifted Gaussian. So the model takes
# $$p(x^{t-1} \mid x^t) = \mathcal N\big(x^{t-1};\, \mu_\theta(x^t, t),\, \Sigma_\theta(x^t, t)\big),$$
# whose mean and covariance a neural network computes (in the paper a multilayer perceptron for its 2-D toys, a
# convolutional network for images). When $\beta_t$ is large the window is wide and no Gaussian fits.
#
# **The best Gaussian.** Among Gaussians $p = \mathcal N(\mu, \sigma^2)$, the one closest to the true kernel in
# $D_{KL}(q(x^{t-1} \mid x^t)\, \|\, p)$ matches its mean and variance: $\mathbb E_q[-\log p] = \tfrac12 \log 2\pi\sigma^2 +
# \big(\mathrm{Var}_q + (\mathbb E_q - \mu)^2\big) / 2\sigma^2$ is smallest at $\mu = \mathbb E_q$, $\sigma^2 = \mathrm{Var}_q$.
# We call this moment-matched kernel the *ideal reverse process* (`M.ideal_reverse`). For mixture data the true
# kernel is a mixture of the components' Gaussian kernels, weighted by each component's responsibility for $x^t$
# (`M.mixture_reverse_kernel`). We check it against Bayes' rule on a grid, then measure how far it is from its
# best Gaussian as $\beta$ grows.

# %%
data_means, data_vars, data_w = M.noised_components(torch.tensor(1.0, dtype=F64))  # q(x^0): the data's components
grid = torch.linspace(-5, 5, 4001, dtype=F64)
x_ts = (-1.0, 0.3, 1.2)  # the widget's values of x^t
worst_density, worst_moment = 0.0, 0.0
for beta in (0.01, 0.5):
    one_step = dl.NoiseSchedule.from_betas([beta], warn=False)
    for xt in x_ts:
        bayes = M.true_reverse_kernel(grid, xt, beta)  # Bayes' rule evaluated on the grid
        r, m, v = M.mixture_reverse_kernel(torch.tensor([xt], dtype=F64), beta, data_means, data_vars, data_w)
        closed = (r * dl.gaussian_log_likelihood(grid[:, None], m, v.log()).exp()).sum(-1)
        worst_density = max(worst_density, float((closed - bayes).abs().max()))
        mm, vv = M.moment_match(grid, bayes)
        bm, log_bv = M.ideal_reverse(one_step)(torch.tensor([xt], dtype=F64), 1)
        worst_moment = max(worst_moment, abs(mm - float(bm)), abs(vv - float(log_bv.exp())))
print(f"true reverse kernel, closed form vs Bayes' rule on a grid: max |diff| in density "
      f"{below(worst_density, 1e-10)}, in mean and variance {below(worst_moment, 1e-10)}")

betas_scan = [1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 0.9]
kl_scan = np.array([[M.kernel_kl_to_gaussian(grid, M.true_reverse_kernel(grid, xt, b)) for xt in x_ts]
                    for b in betas_scan])
print("KL(true kernel || its moment-matched Gaussian) in nats, for x^t = " + ", ".join(f"{v:+.1f}" for v in x_ts))
for b, row in zip(betas_scan, kl_scan):
    # below 1e-11 a KL on this grid is round-off (its digits differ from CPU to CPU): printed as a verdict
    print(f"  beta = {b:<6g} " + "  ".join(f"{v:9.1e}" if v >= 1e-11 else f"{'< 1e-11':>9}" for v in row))
one = M.true_reverse_kernel(grid, 0.3, 0.5, means=[0.2], stds=[0.5], weights=[1.0])
print(f"for Gaussian data the reverse kernel is Gaussian at any beta: KL at beta = 0.5 is "
      f"{below(M.kernel_kl_to_gaussian(grid, one), 1e-9)}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
for i, xt in enumerate(x_ts):
    ax.loglog(betas_scan, np.maximum(kl_scan[:, i], 1e-17), "o-", color=f"C{i + 2}", label=f"$x^t$ = {xt:+.1f}")
ax.axvspan(1e-4, 0.02, color="grey", alpha=0.15, label=r"DDPM's $\beta_t$ (1e-4 to 0.02)")
ax.set(xlabel=r"$\beta$", ylabel="KL(true || Gaussian), nats", ylim=(1e-17, 3),
       title="How far the true reverse kernel is from a Gaussian")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Move $\beta$ in the widget: left, the data $q(x^{t-1})$ and the noised $q(x^t)$ with three values of $x^t$ (dotted);
# each other panel, the true kernel $q(x^{t-1} \mid x^t)$ against its moment-matched Gaussian (dashed), standardized.
# For small $\beta$ they coincide; near $\beta = 0.1$ the kernel at $x^t = 0.3$ turns skewed; for large $\beta$ it
# shows all three modes of the data.

# %% tags=["nbval-ignore-output"]
box = widgets.reverse_kernel_explorer()  # widget: slider beta; frames are cached as you move it
box

# %% [markdown]
# The same widget at $\beta = 0.001$, $0.05$ and $0.5$, as a static picture (KL in each title):

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 3. The model's probability as an integral over trajectories (Eqs. 6-9)
#
# The model gives a data point the probability of all reverse trajectories that end in it:
# $$p(x^0) = \int p(x^{0:T})\, dx^{1:T} \qquad \text{(Eq. 6)}.$$
# This integral over $T$ variables is intractable as it stands. Multiply and divide by the forward
# trajectory's density given $x^0$, $q(x^{1:T} \mid x^0) = \prod_{t=1}^{T} q(x^t \mid x^{t-1})$ (Eq. 3 divided
# by $q(x^0)$):
# $$
# \begin{aligned}
# p(x^0) &= \int p(x^{0:T})\, \frac{q(x^{1:T} \mid x^0)}{q(x^{1:T} \mid x^0)}\, dx^{1:T} && \text{(Eq. 7)}\\
#        &= \int q(x^{1:T} \mid x^0)\, \frac{p(x^{0:T})}{q(x^{1:T} \mid x^0)}\, dx^{1:T} && \text{(Eq. 8)}\\
#        &= \int q(x^{1:T} \mid x^0)\; p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\, dx^{1:T}
#        && \text{(Eq. 9)},
# \end{aligned}
# $$
# where the last line writes out Eq. 5 over the product of forward steps, factor by factor.
#
# Eq. 9 is an expectation over forward trajectories started at $x^0$: sample $x^{1:T} \sim q(x^{1:T} \mid x^0)$ by
# running the forward chain, compute the *importance weight*
# $$w(x^{0:T}) = p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})},$$
# and average: $p(x^0) \approx \frac1N \sum_n w(x^{0:T}_{(n)})$, an unbiased Monte Carlo estimate
# (`M.log_importance_weights`): importance sampling with the forward process as the proposal.
#
# **The check.** In 1-D, Eq. 6 is also $T$ nested integrals, $p(x^{t-1}) = \int p(x^{t-1} \mid x^t)\, p(x^t)\, dx^t$, each a
# matrix-vector product on a grid (`M.grid_log_prob`): the exact $p(x^0)$ to compare the average of $w$ with.

# %%
GRID = torch.linspace(-6, 6, 241, dtype=F64)  # for p(x^0); a 4x finer grid gives the same log p (below)
s16 = constant_schedule(16)
rev16 = M.ideal_reverse(s16)  # reverse(x_t, t) -> (mean, log variance) of the best Gaussian kernel
x0_eval = torch.tensor([[-1.5], [-0.6], [0.2], [0.9], [1.4], [2.2]], dtype=F64)
log_p16 = M.grid_log_prob(rev16, s16.T, x0_eval, GRID)
fine = M.grid_log_prob(rev16, s16.T, x0_eval, torch.linspace(-6, 6, 961, dtype=F64))
total = float(M.grid_log_prob(rev16, s16.T, GRID, GRID).exp().sum() * (GRID[1] - GRID[0]))
print(f"T = 16, beta = {float(s16.betas[1]):.3f}: exact p(x^0) on the grid integrates to {total:.6f}; "
      f"4x finer grid: max |diff in log p| {below(float((fine - log_p16).abs().max()), 1e-8)}")

log_w16 = M.log_importance_weights(s16, rev16, x0_eval, 20_000, torch.Generator().manual_seed(2))
ratio = (log_w16 - log_p16[:, None]).exp()  # w / p(x^0): its mean should be 1 (Eq. 9)
se = ratio.std(1) / math.sqrt(ratio.shape[1])
print("x^0      exact log p(x^0)   mean of w / exact p(x^0)")
for i in range(len(x0_eval)):
    print(f"{float(x0_eval[i]):+5.1f}    {float(log_p16[i]):+8.4f}          {float(ratio[i].mean()):.4f} +- {float(se[i]):.4f}")
z = ((ratio.mean(1) - 1) / se).abs().max()
print(f"importance sampling (Eq. 9) vs exact integral (Eq. 6): largest deviation {float(z):.1f} standard errors")

# %% [markdown]
# ## 4. Why one forward sample suffices in the limit
#
# In practice one forward trajectory per data point is used. Why can one sample be enough? Divide $w$ by $p(x^0)$:
# $$\frac{w(x^{0:T})}{p(x^0)} = \frac{p(x^{0:T})}{p(x^0)\, q(x^{1:T} \mid x^0)} = \frac{p(x^{1:T} \mid x^0)}{q(x^{1:T} \mid x^0)} .$$
# The weight compares the model's distribution of paths ending at $x^0$ with the forward chain's. If they are the
# same, every trajectory has weight $w = p(x^0)$ and **one** sample gives the integral exactly. That needs reverse
# kernels that are the true reverse of the forward ones (and $q(x^T) = \pi$), which a Gaussian can be only as $\beta_t \to 0$ (section 2):
# $T \to \infty$ for a fixed total amount of noise. The paper calls this a *quasi-static* process, a term from
# thermodynamics: driven so slowly that the system is in equilibrium at every moment, so that running it
# backwards retraces the same states.
#
# **Measured.** Keep $\bar\alpha_T = 10^{-3}$, use the ideal reverse process, and grow $T$: the variance of $\log w$ over
# 128 trajectories (averaged over 32 data points), and the model error $D_{KL}(q(x^0) \,\|\, p(x^0))$ on the grid.

# %%
x0_sweep = sample_data(32, seed=3)
q_grid = data_log_prob(GRID[:, None]).exp()
sweep = {}
for T in (1, 2, 4, 8, 16, 32, 64, 128, 256):
    s, rev = constant_schedule(T), M.ideal_reverse(constant_schedule(T))
    p_grid = M.grid_log_prob(rev, T, GRID, GRID).exp()
    log_w = M.log_importance_weights(s, rev, x0_sweep, 128, torch.Generator().manual_seed(T))
    sweep[T] = {"beta": float(s.betas[1]), "var": float(log_w.var(1).mean()), "p_grid": p_grid,
                "kl": float(torch.trapezoid(q_grid * (q_grid.log() - p_grid.log()), GRID))}
print("   T   beta     Var[log w]   KL(q(x0) || p(x0))")
for T, r in sweep.items():
    print(f"{T:4d}   {r['beta']:.4f}   {r['var']:9.4f}       {r['kl']:.4f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.6))
ax1.plot(GRID, q_grid, "k", lw=2, label="data $q(x^0)$")
for T, c in ((2, "C0"), (16, "C1"), (256, "C2")):
    ax1.plot(GRID, sweep[T]["p_grid"], color=c, label=f"model $p(x^0)$, T = {T}")
ax1.set(xlim=(-3.5, 3.5), ylim=(0, 0.95), xlabel="$x^0$", ylabel="density", title="The ideal Gaussian reverse process")
ax1.legend(loc="upper left", ncol=2)
Ts = list(sweep)
ax2.loglog(Ts, [sweep[T]["var"] for T in Ts], "o-", color="C3", label=r"Var[$\log w$]")
ax2.loglog(Ts, [sweep[T]["kl"] for T in Ts], "o-", color="C5", label=r"$D_{KL}(q(x^0) \| p(x^0))$")
ax2.set(xlabel=r"T (with $\bar\alpha_T = 10^{-3}$ fixed)", ylabel="nats", title="Model error falls; Var[log w] rises, then falls")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The two columns do not move together. The model error falls steadily, from 0.41 nats at $T = 1$ to 0.003 at
# $T = 256$. Var$[\log w]$ instead *rises*, from 0.0001 at $T = 1$ to 0.15-0.20 for $T = 8$ to 64, and falls only after
# that: 0.12 at $T = 128$, 0.02 at $T = 256$. With $\beta$ near 1 a step forgets its input, so the weight barely
# depends on the path (but the model is only the best single Gaussian). In between, the steps remember $x^0$ while
# the reverse kernels are still far from Gaussian (section 2's table), so the path matters. Only $\beta_t \to 0$ gives
# both a perfect model and a one-sample estimate; here it sets in between $T = 128$ and $256$.
#
# ## 5. The training objective and Jensen's inequality (Eqs. 10-13)
#
# Training maximizes the model log-likelihood of the data,
# $$L = \int q(x^0) \log p(x^0)\, dx^0 \qquad \text{(Eq. 10)},$$
# to be maximized (DDPM minimizes the cross-entropy $-L$ instead). Insert Eq. 9:
# $$L = \int q(x^0)\, \log\left[\int q(x^{1:T} \mid x^0)\; p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\, dx^{1:T}\right] dx^0
# \qquad \text{(Eq. 11)}.$$
# The log of an integral does not split into a sum; the log of a product does. **Jensen's inequality** moves the
# log inside: $\log$ is concave, so for any positive random variable $w$,
# $$\log \mathbb E[w] \;\ge\; \mathbb E[\log w], \qquad \text{with equality exactly when } w \text{ is constant}.$$
# (A chord of a concave function lies below it.) Applied to the inner expectation, with $q(x^0)\, q(x^{1:T} \mid x^0) = q(x^{0:T})$:
# $$L \;\ge\; \int q(x^{0:T})\, \log\left[p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\right] dx^{0:T}
# \;=\; K \qquad \text{(Eqs. 12-13)}.$$
# $K$ is an average of a log of a product: a sum of simple terms. The *Jensen gap* $L - K$ is zero exactly when $w$
# does not vary over trajectories, the limit of section 4. A common slip: for the cross-entropy the inequality
# flips, $-L \le -K$, so $-K$ is an **upper** bound on it.
#
# Split the log of the product. The $p(x^T)$ factor depends on $x^T$ only:
# $$K = \sum_{t=1}^{T} \int q(x^{0:T})\, \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\, dx^{0:T} \;-\; H_p(X^T),
# \qquad H_p(X^T) = -\int q(x^T) \log \pi(x^T)\, dx^T .$$
# The paper (Appendix B.1) takes $H_p(X^T)$ to be the entropy of $\pi$, which it is when $q(x^T) = \pi$.
#
# **Measured on a Gaussian toy.** Data $\mathcal N(0.5, 0.5^2)$, $T = 5$, and a reverse process with the best mean,
# $\mathbb E[x^{t-1} \mid x^t]$, and variance $\beta_t$ (DDPM's fixed choice; wider than the true kernel's, so $w$ varies).
# Why is this mean *affine* in $x^t$? For Gaussian data, $x^t = \sqrt{1 - \beta_t}\, x^{t-1} + \sqrt{\beta_t}\,\epsilon$ makes the pair
# $(x^{t-1}, x^t)$ jointly Gaussian, and for jointly Gaussian variables the best prediction of one from the other is
# the least-squares line, $\mathbb E[x^{t-1} \mid x^t] = \mathbb E[x^{t-1}] + \frac{\mathrm{Cov}(x^{t-1}, x^t)}{\mathrm{Var}(x^t)} (x^t - \mathbb E[x^t])$. With every
# step affine-Gaussian, $p(x^0)$ is Gaussian and exact (`M.affine_chain_log_prob`).

# %%
s_toy = constant_schedule(5)
rev_toy = M.ideal_reverse(s_toy, means=[0.5], stds=[0.5], weights=None, variance="beta")  # best mean, sigma^2 = beta_t
x0_toy = torch.tensor([[-0.5], [0.0], [0.5], [1.0], [1.5]], dtype=F64)
log_p_toy = M.affine_chain_log_prob(rev_toy, s_toy.T, x0_toy)
grid_toy = M.grid_log_prob(rev_toy, s_toy.T, x0_toy, GRID)
print(f"{s_toy}; exact log p(x^0): closed form vs grid, max |diff| "
      f"{below(float((grid_toy - log_p_toy).abs().max()), 1e-8)}")

N_TOY = 20_000
log_w_toy = M.log_importance_weights(s_toy, rev_toy, x0_toy, N_TOY, torch.Generator().manual_seed(4))
K_mc = log_w_toy.mean(1)
K_se = log_w_toy.std(1) / math.sqrt(N_TOY)
log_mean_w = torch.logsumexp(log_w_toy, 1) - math.log(N_TOY)
print(" x^0    log p(x^0)   log mean w     K = mean log w      gap       Var[log w]/2")
for i in range(len(x0_toy)):
    print(f"{float(x0_toy[i]):+4.1f}    {float(log_p_toy[i]):+.4f}     {float(log_mean_w[i]):+.4f}     "
          f"{float(K_mc[i]):+.4f} +- {float(K_se[i]):.4f}    {float(log_p_toy[i] - K_mc[i]):.4f}    "
          f"{float(log_w_toy[i].var() / 2):.4f}")
print(f"Jensen, log E[w] >= E[log w]: the gap is positive for every x^0 (smallest "
      f"{float((log_p_toy - K_mc - 3 * K_se).min()):.3f} nats even 3 standard errors down)")

# %% [markdown]
# "log mean w", the importance-sampling estimate, agrees with the exact $\log p(x^0)$; $K$, the mean of $\log w$, is
# lower by the Jensen gap. The gap is larger far from the data mean, and about 1.2 times $\tfrac12 \mathrm{Var}[\log w]$
# (Exercise 2.4: they are equal when $\log w$ is Gaussian).
#
# ## 6. The edge effect: $p(x^0 \mid x^1)$
#
# The $t = 1$ term of $K$ is $\mathbb E_q\big[\log p(x^0 \mid x^1) - \log q(x^1 \mid x^0)\big]$. Section 7 turns every other term
# into a KL divergence against $q(x^{t-1} \mid x^t, x^0)$; for $t = 1$ that is a point mass at $x^0$, and its KL from any
# density is infinite. The first step is an *edge* of the chain (the paper's "to avoid edge effects").
#
# **The paper's choice** (Appendix B.2): $p(x^0 \mid x^1) = q(x^1 \mid x^0)\, \pi(x^0) / \pi(x^1)$, the reversal of the first step
# under $\pi$. For Gaussian diffusion this is the forward kernel itself, $\mathcal N(x^0; \sqrt{1 - \beta_1}\, x^1, \beta_1)$, because
# the kernel is *reversible* with respect to $\pi$ (it satisfies *detailed balance*):
# $\pi(x^1)\, T_\pi(x^0 \mid x^1) = \pi(x^0)\, T_\pi(x^1 \mid x^0)$. In words: started from $\pi$, a step from $x^0$ to $x^1$ is as
# likely as the step back, so the chain run backwards is the same chain (both sides are the density of two
# standard Gaussians with correlation $\sqrt{1 - \beta_1}$). Then the $t = 1$ term is
# $$\mathbb E_q\left[\log \frac{p(x^0 \mid x^1)}{q(x^1 \mid x^0)}\right] = \mathbb E_q\big[\log \pi(x^0) - \log \pi(x^1)\big]
# = \tfrac12 \big(\mathbb E[(x^1)^2] - \mathbb E[(x^0)^2]\big) = \tfrac{\beta_1}2 \big(1 - \mathbb E[(x^0)^2]\big)$$
# per dimension, using $\mathbb E[(x^1)^2] = (1 - \beta_1) \mathbb E[(x^0)^2] + \beta_1$. It is of order $\beta_1$; the paper drops
# it, and the sum over $t$ starts at $t = 2$. A common slip is to take $p(x^0 \mid x^1) = q(x^1 \mid x^0)$ as a function of
# $x^0$: the term is then 0, but that function integrates to $1 / \sqrt{1 - \beta_1}$, not 1 (checked below). DDPM
# keeps the term as a learned decoder, $L_0 = -\log p(x_0 \mid x_1)$ (chapter 07).

# %%
gdata = dl.GaussianData(dim=1, mean=0.5, std=0.5)
gen = torch.Generator().manual_seed(5)
x0s = gdata.sample(200_000, generator=gen, dtype=F64)
m2 = 0.5**2 + 0.5**2  # E[(x^0)^2] = mean^2 + std^2
for name, b1 in (("toy (T = 5)", float(s_toy.betas[1])), ("DDPM", 1e-4)):
    x1 = math.sqrt(1 - b1) * x0s + math.sqrt(b1) * torch.randn(x0s.shape, generator=gen, dtype=F64)  # x^1 ~ q(x^1|x^0)
    log_T_pi = dl.gaussian_log_likelihood(x0s, math.sqrt(1 - b1) * x1, math.log(b1))  # p(x^0 | x^1) = T_pi
    log_q = dl.gaussian_log_likelihood(x1, math.sqrt(1 - b1) * x0s, math.log(b1))  # q(x^1 | x^0)
    balance = (log_T_pi - log_q) - (dl.gaussian_log_likelihood(x0s, 0.0, 0.0) - dl.gaussian_log_likelihood(x1, 0.0, 0.0))
    term = log_T_pi - log_q
    line = torch.linspace(-30, 30, 60001, dtype=F64)  # values of x^0; q(x^1 = 0.7 | x^0) as a function of x^0
    mass = float(torch.trapezoid(dl.gaussian_log_likelihood(torch.tensor(0.7, dtype=F64), math.sqrt(1 - b1) * line,
                                                            math.log(b1)).exp(), line))
    print(f"{name}, beta_1 = {b1:.4g}:\n"
          f"  detailed balance T_pi(x^0|x^1) / q(x^1|x^0) = pi(x^0) / pi(x^1): max |log diff| "
          f"{below(float(balance.abs().max()), 1e-10)}\n"
          f"  t = 1 term with p(x^0|x^1) = T_pi: {float(term.mean()):+.5f} +- {float(term.std()) / math.sqrt(len(term)):.5f}"
          f" (Monte Carlo), {b1 / 2 * (1 - m2):+.5f} (closed form beta_1 (1 - E[x0^2]) / 2)\n"
          f"  q(x^1|x^0) read as a density in x^0: int dx^0 = {mass:.6f}, 1/sqrt(1 - beta_1) = {1 / math.sqrt(1 - b1):.6f}")

# %% [markdown]
# ## 7. Rewriting K with the posterior: Eq. 14
#
# Each remaining term would have to be estimated by sampling whole trajectories. The paper rewrites it as a KL
# divergence between two Gaussians, known in closed form. Every step, for one $t \ge 2$:
#
# **(a) Condition on $x^0$ for free.** The forward process is Markov: given $x^{t-1}$, the step to $x^t$ ignores
# everything earlier, so $q(x^t \mid x^{t-1}) = q(x^t \mid x^{t-1}, x^0)$.
#
# **(b) Bayes' rule, with $x^0$ held fixed**, turns the step around:
# $$q(x^t \mid x^{t-1}, x^0) = \frac{q(x^{t-1} \mid x^t, x^0)\; q(x^t \mid x^0)}{q(x^{t-1} \mid x^0)} .$$
# The new factor $q(x^{t-1} \mid x^t, x^0)$ is the **posterior**: the earlier state given the later one and the data
# point. (Some texts call the forward process $q$ the "prior" and the model $p$ the "posterior"; in this course, as in
# DDPM, "posterior" always means $q(x^{t-1} \mid x^t, x^0)$.) Unlike the intractable $q(x^{t-1} \mid x^t)$ of section 2, it is a
# Gaussian, $\mathcal N(\tilde\mu_t(x^t, x^0), \tilde\beta_t)$, since $q(x^{t-1} \mid x^0)$ and $q(x^t \mid x^{t-1})$ are Gaussian (chapter 04
# derives $\tilde\mu_t$ and $\tilde\beta_t$).
#
# **(c) Substitute and split the log** into a posterior part and a ratio of marginals:
# $$\int q(x^{0:T}) \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}
# = \int q(x^{0:T}) \log \frac{p(x^{t-1} \mid x^t)}{q(x^{t-1} \mid x^t, x^0)}
# + \int q(x^{0:T}) \log q(x^{t-1} \mid x^0) - \int q(x^{0:T}) \log q(x^t \mid x^0) .$$
#
# **(d) The ratio terms are conditional entropies.** $\int q(x^{0:T}) \log q(x^t \mid x^0)$ depends on $(x^0, x^t)$ only, so it
# equals $\int q(x^0, x^t) \log q(x^t \mid x^0) = -H_q(X^t \mid X^0)$: the last two terms of (c) are $H_q(X^t \mid X^0) - H_q(X^{t-1} \mid X^0)$.
#
# **(e) The posterior part is a KL divergence.** Factor $q(x^0, x^{t-1}, x^t) = q(x^0, x^t)\, q(x^{t-1} \mid x^t, x^0)$ and do the
# $x^{t-1}$ integral first:
# $$\int q(x^0, x^t) \int q(x^{t-1} \mid x^t, x^0) \log \frac{p(x^{t-1} \mid x^t)}{q(x^{t-1} \mid x^t, x^0)}\, dx^{t-1}\, dx^0\, dx^t
# = -\int q(x^0, x^t)\; D_{KL}\big(q(x^{t-1} \mid x^t, x^0)\, \|\, p(x^{t-1} \mid x^t)\big)\, dx^0\, dx^t .$$
#
# **(f) Sum over $t = 2, \dots, T$: the entropies telescope**,
# $\sum_{t=2}^{T} \big(H_q(X^t \mid X^0) - H_q(X^{t-1} \mid X^0)\big) = H_q(X^T \mid X^0) - H_q(X^1 \mid X^0)$, and with the
# $-H_p(X^T)$ of section 5:
# $$\boxed{K = -\sum_{t=2}^{T} \int q(x^0, x^t)\, D_{KL}\big(q(x^{t-1} \mid x^t, x^0)\, \|\, p(x^{t-1} \mid x^t)\big)\, dx^0\, dx^t
# \;+\; H_q(X^T \mid X^0) - H_q(X^1 \mid X^0) - H_p(X^T)} \qquad \text{(Eq. 14)}.$$
# The entropies are closed-form: $q(x^t \mid x^0)$ has variance $1 - \bar\alpha_t$ (section 1), so
# $H_q(X^t \mid X^0) = \tfrac12 \log\big(2\pi e (1 - \bar\alpha_t)\big)$ per dimension, whatever the data. Each KL term is an integral
# over $(x^0, x^t)$ only: the expectation over $x^{t-1}$ is done exactly. Replacing a sampled quantity by its
# conditional expectation, computed exactly, keeps its mean and removes part of its variance: this is
# **Rao-Blackwellization** (chapter 04 measures the gain). The entropy of $q(x^T \mid x^0)$, checked by Monte Carlo on
# the toy (chapter 05 measures the KL terms):

# %%
B = 10_000
x0b = gdata.sample(B, generator=torch.Generator().manual_seed(6), dtype=F64)
ab_T = s_toy.alpha_bars[s_toy.T]
x_T = ab_T.sqrt() * x0b + (1 - ab_T).sqrt() * torch.randn(B, 1, generator=torch.Generator().manual_seed(7), dtype=F64)
mc_H = -dl.gaussian_log_likelihood(x_T, ab_T.sqrt() * x0b, (1 - ab_T).log())  # -log q(x^T | x^0)
H_T = float(dl.gaussian_entropy((1 - ab_T).log()))
print(f"H_q(X^T|X^0) = 1/2 log(2 pi e (1 - abar_T)) = {H_T:.4f}; Monte Carlo -E log q(x^T|x^0) = "
      f"{float(mc_H.mean()):.4f} +- {float(mc_H.std()) / math.sqrt(B):.4f}")

# %% [markdown]
# ## 8. $\beta_t$ is learnable, $\beta_1$ is fixed
#
# In the paper $\beta_{2..T}$ are learned by gradient ascent on $K$, and $\beta_1$ is fixed "to prevent overfitting". So
# $H_q(X^T \mid X^0)$ and the KL terms of Eq. 14 move with the $\beta$'s. To differentiate a sampled $K$, the paper freezes
# the noise (as in Kingma & Welling's reparameterization): $x^t = \sqrt{\bar\alpha_t}\, x^0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with $\epsilon$
# drawn once, so $K$ is a smooth function of $\beta$. With $T = 2$, a small $\beta_2$ leaves $q(x^2)$ far from $\pi$ and a
# large one asks one Gaussian step to undo all the noise: $K$ has a maximum in between. Why not learn $\beta_1$?
# Training data are a finite set of points; with a tiny $\beta_1$ the last step learns to snap $x^1$ to the nearest
# training point, $K$ on them grows without bound and $K$ on new points collapses. Chapter 05 measures both.
#
# ## 9. Exercises
#
# **Exercise 2.1 (derive the KL of Eq. 14).** Write `my_normal_kl(mean1, logvar1, mean2, logvar2)`, the KL divergence
# $D_{KL}(\mathcal N(\mu_1, \sigma_1^2) \,\|\, \mathcal N(\mu_2, \sigma_2^2))$ elementwise, from variances given as logs. Derive it as
# $\mathbb E_{\mathcal N(\mu_1, \sigma_1^2)}[\log \mathcal N(x; \mu_1, \sigma_1^2) - \log \mathcal N(x; \mu_2, \sigma_2^2)]$, using
# $\mathbb E[(x - \mu_2)^2] = \sigma_1^2 + (\mu_1 - \mu_2)^2$ (chapter 04 gives the result).

# %% tags=["solution"]
def my_normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    # BEGIN SOLUTION
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)
    # END SOLUTION


# %%
checks.check("normal_kl", my_normal_kl)


# %% [markdown]
# **Exercise 2.2 (the entropy terms of Eq. 14).** Write `entropy_terms(schedule)` returning
# $H_q(X^T \mid X^0) - H_q(X^1 \mid X^0) - H_p(X^T)$ in nats for 1-D Gaussian diffusion, with $H_p(X^T)$ the entropy of
# $\pi = \mathcal N(0, 1)$, from `schedule.betas` and `schedule.alpha_bars` (paper indexing).

# %% tags=["solution"]
def entropy_terms(schedule):
    """H_q(X^T|X^0) - H_q(X^1|X^0) - H(pi) per dimension, in nats, for pi = N(0, 1)."""
    # BEGIN SOLUTION
    def entropy(var):
        return 0.5 * math.log(2 * math.pi * math.e * var)

    return entropy(1 - float(schedule.alpha_bars[schedule.T])) - entropy(float(schedule.betas[1])) - entropy(1.0)
    # END SOLUTION


# %%
checks.check("entropy_terms", entropy_terms)


# %% [markdown]
# **Exercise 2.3 (two estimates from the same trajectories).** Given log weights `log_w` of shape `(M, n)` ($n$
# trajectories for each of $M$ data points), return `(log_p_estimate, K_estimate)`, each `(M,)`: $\log \frac1n \sum_n w$
# (Eq. 9) and $\frac1n \sum_n \log w$ (Eq. 12). The checker uses weights near $e^{-800}$, which underflow to 0 in float64:
# subtract the largest $\log w$ before exponentiating.

# %% tags=["solution"]
def two_estimates(log_w):
    """(log mean exp(log_w), mean log_w) over the last axis: estimates of log p(x^0) and of K."""
    # BEGIN SOLUTION
    top = log_w.max(dim=1, keepdim=True).values
    log_p = top[:, 0] + torch.log(torch.exp(log_w - top).mean(dim=1))
    return log_p, log_w.mean(dim=1)
    # END SOLUTION


# %%
checks.check("two_estimates", two_estimates)


# %% [markdown]
# **Exercise 2.4 (derive: the Jensen gap of a log-normal weight).** Suppose $\log w \sim \mathcal N(\mu, \sigma^2)$ over
# trajectories. Derive the Jensen gap $\log \mathbb E[w] - \mathbb E[\log w]$ as a function of $\mu$ and $\sigma^2$ (complete
# the square in $\mathbb E[e^{X}] = \int e^x\, \mathcal N(x; \mu, \sigma^2)\, dx$), and write `lognormal_gap(mu, var)` that returns it.
# Then compare with the last two columns of section 5's table: is $\log w$ there close to Gaussian?

# %% tags=["solution"]
def lognormal_gap(mu, var):
    """log E[w] - E[log w] when log w ~ N(mu, var)."""
    # BEGIN SOLUTION
    return var / 2  # E[w] = exp(mu + var / 2), E[log w] = mu
    # END SOLUTION


# %%
checks.check("lognormal_gap", lognormal_gap)

# %% [markdown]
# ## Summary
#
# - The reverse trajectory may use Gaussian kernels because the true reverse kernel is nearly Gaussian for small $\beta_t$.
# - $p(x^0)$ is an average of importance weights over forward trajectories (Eq. 9); one sample suffices only as
#   $\beta_t \to 0$ (measured: the model error falls with $T$, while Var$[\log w]$ first rises).
# - Jensen gives $L \ge K = \mathbb E_q[\log w]$ (Eqs. 10-13), with gap $\tfrac12 \mathrm{Var}[\log w]$ when $\log w$ is Gaussian.
# - With the edge step fixed (detailed balance) and the posterior brought in (Markov, Bayes, telescoping), $K$ is
#   minus a sum of Gaussian KLs plus entropies (Eq. 14). $\beta_{2..T}$ can be learned; $\beta_1$ stays fixed.
#
# **Next:** chapter 03 computes $q(x_t \mid x_0)$ in closed form (DDPM's $\bar\alpha_t$), the shortcut that makes each
# term of the bound cheap to sample; chapter 04 derives the posterior $q(x_{t-1} \mid x_t, x_0)$ used in Eq. 14 and
# DDPM's $L = L_T + \sum_t L_{t-1} + L_0$; chapter 05 then measures every term of Eq. 14.
