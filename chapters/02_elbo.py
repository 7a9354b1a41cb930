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
# Diffusion models were introduced by Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli (2015),
# *Deep Unsupervised Learning using Nonequilibrium Thermodynamics*. This chapter follows their Section 2
# and Appendix B step by step, as the study notes do (notes 1-11 of their loss derivation): a forward
# Markov chain that turns data into noise, a learned reverse chain that turns noise into data, the
# model's probability as an integral over trajectories, and a lower bound $K$ on the log-likelihood that
# can be computed and trained. Every step is checked on toys where every quantity is known exactly.
#
# We write $x^t$ for the paper's $x^{(t)}$ (as the notes do); $x^0$ is data, $t = 1, \dots, T$.
# Equation numbers are the paper's (Sohl-Dickstein Eq. N) unless a line says DDPM.
#
# **Learning goals.** After this chapter you can
# - write the forward trajectory $q(x^{0:T})$ and the reverse trajectory $p(x^{0:T})$ (Eqs. 1-5), and say
#   why the reverse kernel may be taken Gaussian when $\beta_t$ is small (and see it fail when it is not);
# - write $p(x^0)$ as an importance-sampling integral over forward trajectories (Eqs. 6-9), and measure
#   why a single forward sample becomes enough as $\beta_t \to 0$;
# - derive the bound $L \ge K$ by Jensen's inequality (Eqs. 10-13), measure its gap, and rewrite $K$ with the
#   posterior $q(x^{t-1} \mid x^t, x^0)$ into KL divergences plus entropies (Eq. 14), every step of it;
# - explain the edge effect $p(x^0 \mid x^1)$, why $\beta_t$ may be learned but $\beta_1$ is fixed, and
#   how $K$ becomes DDPM's $L = L_T + \sum_t L_{t-1} + L_0$;
# - list the approximations the framework makes, each with a number that measures it.
#
# **CPU time:** about 20 s on a 2-core CPU: everything is 1-D, exact integrals on grids and a few
# hundred thousand sampled steps (budget: 45 s).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks, widgets
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

F64 = torch.float64  # every toy below runs in float64, so that exact checks agree to round-off



def constant_schedule(T: int, alpha_bar_T: float = 1e-3) -> dl.NoiseSchedule:
    """beta_t = beta for every t, chosen so that alpha_bar_T = (1 - beta)^T: the same total noise for any T."""
    beta = 1.0 - alpha_bar_T ** (1.0 / T)
    return dl.NoiseSchedule.from_betas([beta] * T, name="constant")


# %% [markdown]
# ## 1. The forward trajectory (Eqs. 1-3)
#
# The notes start with the cast: $x^0$ is a data point (an image), $q$ the forward process that
# destroys it, $p$ the reverse (generative) process that we learn, and $\pi(y)$ a simple, tractable
# distribution that the forward process ends in.
#
# **A kernel that leaves $\pi$ alone.** The forward process is built from a Markov diffusion kernel
# $T_\pi(y \mid y'; \beta)$ whose stationary distribution is $\pi$:
# $$\pi(y) = \int T_\pi(y \mid y'; \beta)\, \pi(y')\, dy' \qquad \text{(Eq. 1)}$$
# and each step $t$ applies it with its own *diffusion rate* $\beta_t$:
# $$q(x^t \mid x^{t-1}) = T_\pi(x^t \mid x^{t-1}; \beta_t) \qquad \text{(Eq. 2)}.$$
# For Gaussian diffusion, $T_\pi(x^t \mid x^{t-1}; \beta_t) = \mathcal N(x^t; \sqrt{1 - \beta_t}\, x^{t-1}, \beta_t I)$
# and $\pi = \mathcal N(0, I)$. Eq. 1 holds: if $y' \sim \mathcal N(0, 1)$ and $y = \sqrt{1-\beta}\, y' + \sqrt{\beta}\,\epsilon$
# with $\epsilon \sim \mathcal N(0, 1)$ independent, then $y$ is Gaussian with mean $0$ and variance
# $(1 - \beta) + \beta = 1$. Repeated steps shrink whatever $x^0$ was by $\sqrt{1 - \beta_t}$ each time and
# refill the variance with noise, so $q(x^T)$ approaches $\pi$ (chapter 03 gives $q(x^t \mid x^0)$ in closed form).
#
# **The trajectory.** Because each step looks only at the previous state, the joint density of a whole
# path $x^{0:T} = (x^0, \dots, x^T)$ is the product
# $$q(x^{0:T}) = q(x^0) \prod_{t=1}^{T} q(x^t \mid x^{t-1}) \qquad \text{(Eq. 3)},$$
# where $q(x^0)$ is the data distribution. (The notes write the product index as $i$ but mean $t$.) In the
# paper $\beta_t$ is a model parameter like the network's weights (section 9 below); for now it is fixed.
#
# Our first toy is 1-D: a mixture of three Gaussians (the one the reverse-kernel widget below uses), so
# that $q(x^t)$ stays a mixture of three Gaussians with known means and variances at every $t$.

# %%
MIX = widgets.DEFAULT_MIXTURE  # means, stds and weights of the 1-D mixture (shared with the widget)
COMPONENTS = [dl.GaussianData(dim=1, mean=m, std=sd) for m, sd in zip(MIX["means"], MIX["stds"])]
LOG_WEIGHTS = torch.tensor(MIX["weights"], dtype=F64).log()


def sample_data(n: int, seed: int) -> torch.Tensor:
    """n points of the mixture, shape (n, 1), float64."""
    g = torch.Generator().manual_seed(seed)
    return dl.gaussian_mixture_1d(n, MIX["means"], MIX["stds"], MIX["weights"], generator=g).to(F64)[:, None]


def data_log_prob(x: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
    """log q(x^t) of the mixture noised to alpha_bar_t: each component stays Gaussian (GaussianData.marginal)."""
    per_component = torch.stack([c.marginal_log_prob(x, alpha_bar) for c in COMPONENTS], -1)
    return torch.logsumexp(per_component + LOG_WEIGHTS, -1)


def component_moments(alpha_bars, components=COMPONENTS):
    """Means and variances, each of shape alpha_bars.shape + (K,), of the K Gaussian components of q(x^t)
    at the given alpha_bar_t: sqrt(abar) m_k and abar s_k^2 + 1 - abar (GaussianData.marginal)."""
    moments = [c.marginal(alpha_bars) for c in components]
    return torch.cat([m for m, _ in moments], -1), torch.cat([v for _, v in moments], -1)


def data_moments(alpha_bar) -> tuple[float, float]:
    """Mean and variance of the whole mixture q(x^t)."""
    w = LOG_WEIGHTS.exp()
    m, v = component_moments(torch.as_tensor(alpha_bar, dtype=F64))
    mean = (w * m).sum()
    return float(mean), float((w * (v + (m - mean) ** 2)).sum())


s50 = constant_schedule(50)
d50 = dl.GaussianDiffusion(s50, decoder="gaussian")
print(s50)

# Eq. 1 on a grid: one step of T_pi applied to pi gives pi back
y = torch.linspace(-8, 8, 1601, dtype=F64)
beta = float(s50.betas[1])
pi_y = dl.gaussian_log_likelihood(y, 0.0, 0.0).exp()
T_pi = dl.gaussian_log_likelihood(y[:, None], math.sqrt(1 - beta) * y[None, :], math.log(beta)).exp()  # [y, y']
after = torch.trapezoid(T_pi * pi_y[None, :], y, dim=1)
print(f"Eq. 1 on a grid: max |int T_pi(y|y') pi(y') dy' - pi(y)| = {below(float((after - pi_y).abs().max()), 1e-10)}")

# Eq. 2 iterated: 20,000 trajectories x^0 -> x^1 -> ... -> x^T with d.q_step
g = torch.Generator().manual_seed(1)
x = sample_data(20_000, seed=0)
path = [x]
for t in range(1, s50.T + 1):
    path.append(d50.q_step(path[-1], torch.full((len(x),), t), generator=g))
traj = torch.cat(path, 1)  # (N, T + 1): column t is x^t

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

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1.4, 1]})
ts = np.arange(s50.T + 1)
for i in range(60):
    ax1.plot(ts, traj[i].numpy(), lw=0.6, alpha=0.6)
ax1.set(xlabel="t", ylabel="$x^t$", title="60 forward trajectories (Eqs. 2-3), T = 50")
xx = torch.linspace(-4, 4, 401, dtype=F64)[:, None]
for k, t in enumerate((0, 3, 10, 50)):
    ax2.hist(traj[:, t].numpy(), bins=80, range=(-4, 4), density=True, alpha=0.3, color=f"C{k}")
    ax2.plot(xx[:, 0], data_log_prob(xx, s50.alpha_bars[t]).exp(), color=f"C{k}", label=f"t = {t}")
ax2.plot(xx[:, 0], dl.gaussian_log_likelihood(xx[:, 0], 0.0, 0.0).exp(), "k--", lw=1, label=r"$\pi = N(0, 1)$")
ax2.set(xlabel="x", ylabel="density", title="$q(x^t)$: histogram and closed form")
ax2.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The reverse trajectory and the true reverse kernel (Eqs. 4-5)
#
# The generative model runs the chain backwards. It starts where the forward process ends,
# $$p(x^T) = \pi(x^T) \qquad \text{(Eq. 4)},$$
# and takes $T$ learned steps back to data:
# $$p(x^{0:T}) = p(x^T) \prod_{t=1}^{T} p(x^{t-1} \mid x^t) \qquad \text{(Eq. 5)}.$$
# Which kernels $p(x^{t-1} \mid x^t)$ should it learn? The ideal one is the forward process's own reverse,
# by Bayes' rule
# $$q(x^{t-1} \mid x^t) = \frac{q(x^t \mid x^{t-1})\, q(x^{t-1})}{q(x^t)},$$
# which needs the noised data density $q(x^{t-1})$ and is intractable for real data. The paper's key
# observation (citing Feller 1949): **in the limit of small steps, $\beta_t \to 0$, the reverse of a Gaussian
# diffusion step is again Gaussian** (for binomial diffusion, again binomial). Heuristically: as a function of
# $x^{t-1}$, $q(x^t \mid x^{t-1})$ is a Gaussian of width about $\sqrt{\beta_t}$; over so short a range the
# smooth factor $q(x^{t-1})$ is close to $e^{\text{linear}}$, and a Gaussian times $e^{\text{linear}}$ is a
# Gaussian with a shifted mean. So the notes' step 1 takes
# $$p(x^{t-1} \mid x^t) = \mathcal N\big(x^{t-1};\, \mu_\theta(x^t, t),\, \Sigma_\theta(x^t, t)\big),$$
# a Gaussian whose mean and covariance a network (an MLP in the paper) computes, and learning means
# learning $\mu_\theta$ and $\Sigma_\theta$. When $\beta_t$ is large the window is wide, the data's
# structure shows through, and no Gaussian fits.
#
# **The best Gaussian.** Among Gaussians $p = \mathcal N(\mu, \sigma^2)$, the one closest to the true kernel in
# $D_{KL}(q(x^{t-1} \mid x^t)\, \|\, p)$ matches its mean and variance: $\mathbb E_q[-\log p] = \tfrac12 \log 2\pi\sigma^2 +
# \big(\mathrm{Var}_q + (\mathbb E_q - \mu)^2\big) / 2\sigma^2$ is smallest at $\mu = \mathbb E_q$, $\sigma^2 = \mathrm{Var}_q$.
# This moment-matched kernel is what a perfectly trained network with free mean and variance would give,
# and we use it below as the *ideal reverse process*.
#
# For mixture data the true kernel is known in closed form: each component $k$ of $q(x^{t-1})$ is Gaussian,
# so its reverse kernel is Gaussian (`widgets.gaussian_reverse_kernel`), and the true kernel is their mixture
# weighted by each component's responsibility for $x^t$, $r_k(x^t) \propto w_k\, q_k(x^t)$. We check that against
# Bayes' rule on a grid (`widgets.true_reverse_kernel`) and `widgets.moment_match`.

# %%
def reverse_kernel_mixture(x_t, beta, prior_means, prior_vars, log_weights=LOG_WEIGHTS):
    """The true reverse kernel q(x^{t-1} | x^t) when q(x^{t-1}) = sum_k w_k N(prior_means_k, prior_vars_k).

    Returns (responsibilities r_k(x^t), shape x_t.shape + (K,); the K Gaussians' means, same shape; their
    variances, shape (K,)): q(x^{t-1} | x^t) = sum_k r_k(x^t) N(x^{t-1}; means_k, variances_k).
    """
    beta = float(beta)
    x = x_t.unsqueeze(-1)  # broadcast against the K components
    # each component's exact (Gaussian) reverse kernel, all K at once
    means, variances = widgets.gaussian_reverse_kernel(x, beta, prior_means, prior_vars.sqrt())
    # r_k(x^t) ∝ w_k q_k(x^t), with q_k(x^t) = N(sqrt(1 - beta) m_k, (1 - beta) v_k + beta)
    log_r = log_weights + dl.gaussian_log_likelihood(x, math.sqrt(1 - beta) * prior_means,
                                                     torch.log((1 - beta) * prior_vars + beta))
    return torch.softmax(log_r, -1), means, variances


def best_gaussian_kernel(x_t, beta, prior_means, prior_vars, log_weights=LOG_WEIGHTS):
    """Mean and variance of q(x^{t-1} | x^t): the Gaussian p(x^{t-1} | x^t) closest to it in KL(q || p)."""
    r, m, v = reverse_kernel_mixture(x_t, beta, prior_means, prior_vars, log_weights)
    mean = (r * m).sum(-1)
    return mean, (r * (v + (m - mean.unsqueeze(-1)) ** 2)).sum(-1)


data_means, data_vars = component_moments(torch.tensor(1.0, dtype=F64))  # q(x^0): the data's components


grid = torch.linspace(-5, 5, 4001, dtype=F64)
x_ts = (-1.0, 0.3, 1.2)  # the widget's values of x^t
worst_density, worst_moment = 0.0, 0.0
for beta in (0.01, 0.5):
    for xt in x_ts:
        bayes = widgets.true_reverse_kernel(grid, xt, beta)  # Bayes' rule evaluated on the grid
        r, m, v = reverse_kernel_mixture(torch.tensor([xt], dtype=F64), beta, data_means, data_vars)
        closed = (r * dl.gaussian_log_likelihood(grid[:, None], m, v.log()).exp()).sum(-1)
        worst_density = max(worst_density, float((closed - bayes).abs().max()))
        mm, vv = widgets.moment_match(grid, bayes)
        bm, bv = best_gaussian_kernel(torch.tensor([xt], dtype=F64), beta, data_means, data_vars)
        worst_moment = max(worst_moment, abs(mm - float(bm)), abs(vv - float(bv)))
print(f"true reverse kernel, closed form vs Bayes' rule on a grid: max |diff| in density "
      f"{below(worst_density, 1e-10)}, in mean and variance {below(worst_moment, 1e-10)}")

betas_scan = [1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 0.9]
kl_scan = np.array([[widgets.kernel_kl_to_gaussian(grid, widgets.true_reverse_kernel(grid, xt, b)) for xt in x_ts]
                    for b in betas_scan])
print("KL(true kernel || its moment-matched Gaussian) in nats, for x^t = " + ", ".join(f"{v:+.1f}" for v in x_ts))
for b, row in zip(betas_scan, kl_scan):
    # below 1e-11 a KL on this grid is round-off (its digits differ from CPU to CPU): printed as a verdict
    print(f"  beta = {b:<6g} " + "  ".join(f"{v:9.1e}" if v >= 1e-11 else f"{'< 1e-11':>9}" for v in row))
one = widgets.true_reverse_kernel(grid, 0.3, 0.5, means=[0.2], stds=[0.5], weights=[1.0])
print(f"for Gaussian data the reverse kernel is Gaussian at any beta: KL at beta = 0.5 is "
      f"{below(widgets.kernel_kl_to_gaussian(grid, one), 1e-9)}")

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
# Move $\beta$ in the widget: the left panel shows the data $q(x^{t-1})$ and the noised $q(x^t)$ with three
# values of $x^t$ (dotted); each other panel shows the true kernel $q(x^{t-1} \mid x^t)$ (coloured) against
# the Gaussian with its mean and variance (dashed), both standardized so the axes stay put. For small
# $\beta$ the two coincide; near $\beta = 0.1$ the kernel at $x^t = 0.3$, between two components, turns
# skewed, and for large $\beta$ it shows all three modes of the data.

# %% tags=["nbval-ignore-output"]
box = widgets.reverse_kernel_explorer()  # widget: slider beta; frames are cached as you move it
box

# %% [markdown]
# The same widget at $\beta = 0.001$, $0.05$ and $0.5$, as a static picture (for a page without a kernel): left, the
# data and its noised version for each $\beta$; then, for each $x^t$, the three standardized kernels over the Gaussian,
# with their KL in the title.

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 3. The model's probability as an integral over trajectories (Eqs. 6-9)
#
# **Notes 2-3.** The model gives a data point the probability of all reverse trajectories that end in it:
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
# **Note 4.** Eq. 9 is an expectation over forward trajectories started at $x^0$: sample
# $x^{1:T} \sim q(x^{1:T} \mid x^0)$ by running the forward chain, compute the *importance weight*
# $$w(x^{0:T}) = p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})},$$
# and average: $p(x^0) \approx \frac1N \sum_n w(x^{0:T}_{(n)})$, an unbiased Monte Carlo estimate. Every
# factor is computable: $p$ from the network, $q$ from the fixed Gaussian steps. This is importance sampling
# with the forward process as the proposal (the paper relates it to annealed importance sampling and the
# Jarzynski equality).
#
# **The check.** For the 1-D mixture and the ideal reverse process (the best Gaussian kernel at every
# step), $p(x^0)$ can also be computed exactly: Eq. 6 is $T$ nested 1-D integrals,
# $p(x^{t-1}) = \int p(x^{t-1} \mid x^t)\, p(x^t)\, dx^t$ from $p(x^T) = \pi$ down to $t = 1$, each a matrix-vector
# product on a grid. We compare the Monte Carlo average of $w$ with it.

# %%
def ideal_reverse(schedule, components=COMPONENTS, log_weights=LOG_WEIGHTS):
    """The ideal reverse process for mixture data: p(x^{t-1} | x^t) is the best Gaussian kernel at every t.
    Returns reverse(x_t, t) -> (mean, log_variance) of p(x^{t-1} | x^t), shaped like x_t."""
    means, variances = component_moments(schedule.alpha_bars, components)  # row t: the components of q(x^t)

    def reverse(x_t, t):
        mean, var = best_gaussian_kernel(x_t, schedule.betas[t], means[t - 1], variances[t - 1], log_weights)
        return mean, var.log()
    return reverse


def model_log_prob(reverse, T, x0, grid):
    """log p(x^0) = log int p(x^{0:T}) dx^{1:T} (Eq. 6) as T nested 1-D integrals on a uniform grid.

    p(x^T) = pi on the grid (Eq. 4); then p(x^{t-1}) = int p(x^{t-1} | x^t) p(x^t) dx^t for t = T..2, each a
    matrix-vector product (a Riemann sum, exact to round-off for such smooth integrands); the last step is
    evaluated at the points x0 (M, 1). Returns (M,)."""
    dx = grid[1] - grid[0]
    col = grid[:, None]
    p = dl.gaussian_log_likelihood(grid, 0.0, 0.0).exp()  # p(x^T) = pi(x^T) = N(0, 1)
    for t in range(T, 1, -1):
        mean, log_var = reverse(col, t)
        kernel = dl.gaussian_log_likelihood(col, mean.T, log_var.T).exp()  # [x^{t-1}, x^t]
        p = kernel @ p * dx
    mean, log_var = reverse(col, 1)
    return (dl.gaussian_log_likelihood(x0.reshape(-1, 1), mean.T, log_var.T).exp() @ p * dx).log()


def log_importance_weights(d, reverse, x0, n, generator):
    """log w(x^{0:T}) (Eq. 9's integrand) for n forward trajectories from each x0 (M, 1): shape (M, n)."""
    s = d.schedule
    x = x0.repeat_interleave(n, 0)
    log_w = torch.zeros(len(x), dtype=F64)
    for t in range(1, s.T + 1):
        x_next = d.q_step(x, torch.full((len(x),), t), generator=generator)  # x^t ~ q(x^t | x^{t-1})
        mean, log_var = reverse(x_next, t)
        log_w += dl.gaussian_log_likelihood(x, mean, log_var)[:, 0]  # + log p(x^{t-1} | x^t)
        log_w -= dl.gaussian_log_likelihood(x_next, s.sqrt_alphas[t] * x, s.betas[t].log())[:, 0]  # - log q(x^t | x^{t-1})
        x = x_next
    log_w += dl.gaussian_log_likelihood(x, 0.0, 0.0)[:, 0]  # + log p(x^T) = log pi(x^T)
    return log_w.reshape(len(x0), n)


GRID = torch.linspace(-6, 6, 241, dtype=F64)  # for p(x^0); a 4x finer grid gives the same log p (below)
s16 = constant_schedule(16)
d16 = dl.GaussianDiffusion(s16, decoder="gaussian")
rev16 = ideal_reverse(s16)
x0_eval = torch.tensor([[-1.5], [-0.6], [0.2], [0.9], [1.4], [2.2]], dtype=F64)
log_p16 = model_log_prob(rev16, s16.T, x0_eval, GRID)
fine = model_log_prob(rev16, s16.T, x0_eval, torch.linspace(-6, 6, 961, dtype=F64))
total = float(model_log_prob(rev16, s16.T, GRID, GRID).exp().sum() * (GRID[1] - GRID[0]))
print(f"T = 16, beta = {float(s16.betas[1]):.3f}: exact p(x^0) on the grid integrates to {total:.6f}; "
      f"4x finer grid: max |diff in log p| {below(float((fine - log_p16).abs().max()), 1e-8)}")

log_w16 = log_importance_weights(d16, rev16, x0_eval, 20_000, torch.Generator().manual_seed(2))
ratio = (log_w16 - log_p16[:, None]).exp()  # w / p(x^0): its mean should be 1 (Eq. 9)
se = ratio.std(1) / math.sqrt(ratio.shape[1])
print("x^0      exact log p(x^0)   mean of w / exact p(x^0)")
for i in range(len(x0_eval)):
    print(f"{float(x0_eval[i]):+5.1f}    {float(log_p16[i]):+8.4f}          {float(ratio[i].mean()):.4f} +- {float(se[i]):.4f}")
z = ((ratio.mean(1) - 1) / se).abs().max()
print(f"importance sampling (Eq. 9) vs exact integral (Eq. 6): largest deviation {float(z):.1f} standard errors")

# %% [markdown]
# ## 4. Why one forward sample suffices in the limit (note 5)
#
# The notes say that in practice a single forward run is used, "because in the limit the forward and reverse
# trajectories can be made the same, so one forward sample is an exact estimate of the integral", and admit
# they did not fully understand it. Here is the argument. Divide the weight by $p(x^0)$:
# $$\frac{w(x^{0:T})}{p(x^0)} = \frac{p(x^{0:T})}{p(x^0)\, q(x^{1:T} \mid x^0)} = \frac{p(x^{1:T} \mid x^0)}{q(x^{1:T} \mid x^0)} .$$
# The weight compares two distributions over the path $x^{1:T}$ given its end $x^0$: the model's (the reverse
# chain, conditioned on landing at $x^0$) and the forward chain's. If they are the same, every trajectory has
# the same weight $w = p(x^0)$: the variance of $w$ is zero and **one** sample gives the integral exactly. In
# physics this is a quasi-static process. They are the same when the reverse kernels are the true reverse of the
# forward ones and $q(x^T) = \pi$; and by section 2, a Gaussian $p(x^{t-1} \mid x^t)$ can be the true reverse only
# as $\beta_t \to 0$, that is, as $T \to \infty$ for a fixed total amount of noise.
#
# **Measured.** Keep $\bar\alpha_T = \prod_t (1 - \beta_t) = 10^{-3}$ fixed, use the ideal (best Gaussian)
# reverse process, and grow $T$. For each $T$ the table gives the variance of $\log w$ over forward trajectories
# (averaged over 32 data points), the Jensen gap $\log p(x^0) - K$ of section 5 below (exact: $\log p(x^0)$ on the
# grid, $K$ by the 1-D integrals of section 7), and how far the model's $p(x^0)$ is from the data,
# $D_{KL}(q(x^0) \,\|\, p(x^0))$.

# %%
def bound_terms(d, reverse, x0, eps, weights):
    """The pieces of K for each x0 (M, 1), Eq. 14 plus its t = 1 term, all in nats.

    Each piece is an expectation over q(x^0, x^t) for a single t, so it is a 1-D integral over
    x^t = sqrt(abar_t) x^0 + sqrt(1 - abar_t) eps given x^0 (d.q_sample): ``eps`` are nodes with ``weights``
    summing to 1 (Gauss-Hermite nodes for an exact rule, or Monte Carlo draws with weights 1/n).
    Returns a dict of (M,) tensors: kl = sum_{t>=2} E KL(q(x^{t-1}|x^t, x^0) || p(x^{t-1}|x^t)),
    H_T = H_q(X^T|X^0), H_1 = H_q(X^1|X^0), cross_T = -E log pi(x^T), H_pi = H(pi),
    edge = E[log p(x^0|x^1) - log q(x^1|x^0)] (the t = 1 term of K).
    """
    s = d.schedule
    M, Q = len(x0), len(eps)
    X0 = x0.repeat_interleave(Q, 0)
    E = eps.repeat(M)[:, None]

    def average(v):  # E over eps for each x0
        return (v.reshape(M, Q) * weights).sum(1)

    def at(t):
        return torch.full((M * Q,), t)

    kl = torch.zeros(M, dtype=F64)
    for t in range(2, s.T + 1):
        x_t = d.q_sample(X0, at(t), E)  # x^t ~ q(x^t | x^0)
        post = d.q_posterior(X0, x_t, at(t))  # q(x^{t-1} | x^t, x^0) = N(mu~_t, beta~_t)
        mean, log_var = reverse(x_t, t)  # p(x^{t-1} | x^t)
        kl += average(dl.normal_kl(post.mean, post.log_variance, mean, log_var)[:, 0])
    x_1 = d.q_sample(X0, at(1), E)
    mean, log_var = reverse(x_1, 1)
    H_1 = dl.gaussian_entropy(s.betas[1].log())  # q(x^1 | x^0) has variance beta_1
    H_T = dl.gaussian_entropy(s.log_one_minus_alpha_bars[s.T])  # q(x^T | x^0) has variance 1 - abar_T
    cross_T = -average(dl.gaussian_log_likelihood(d.q_sample(X0, at(s.T), E), 0.0, 0.0)[:, 0])
    return {"kl": kl, "H_T": H_T, "H_1": H_1, "cross_T": cross_T,
            "H_pi": dl.gaussian_entropy(torch.tensor(0.0, dtype=F64)),
            "edge": average(dl.gaussian_log_likelihood(X0, mean, log_var)[:, 0]) + H_1}


def K_exact(b):
    """K = E_q[log w] from the pieces: Eq. 14 with the cross-entropy for H_p(X^T) and the t = 1 term kept."""
    return -b["kl"] + b["H_T"] - b["H_1"] - b["cross_T"] + b["edge"]


def gauss_hermite(n):
    """Nodes and weights (summing to 1) that integrate against N(0, 1): exact for polynomials of degree < 2n."""
    nodes, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(nodes, dtype=F64), torch.tensor(w / w.sum(), dtype=F64)


GH32 = gauss_hermite(32)
x0_sweep = sample_data(32, seed=3)
q_grid = data_log_prob(GRID[:, None]).exp()
sweep = {}
for T in (1, 2, 4, 8, 16, 32, 64, 128, 256):
    s = constant_schedule(T)
    d = dl.GaussianDiffusion(s, decoder="gaussian")
    rev = ideal_reverse(s)
    log_p = model_log_prob(rev, T, torch.cat([x0_sweep, GRID[:, None]]), GRID)
    log_p_x0, p_grid = log_p[:len(x0_sweep)], log_p[len(x0_sweep):].exp()
    K = K_exact(bound_terms(d, rev, x0_sweep, *GH32))
    log_w = log_importance_weights(d, rev, x0_sweep, 128, torch.Generator().manual_seed(T))
    kl_model = float(torch.trapezoid(q_grid * (q_grid.log() - p_grid.log()), GRID))
    sweep[T] = {"beta": float(s.betas[1]), "var": float(log_w.var(1).mean()), "gap": float((log_p_x0 - K).mean()),
                "min_gap": float((log_p_x0 - K).min()), "kl": kl_model, "p_grid": p_grid,
                # pooled over the 32 points: sampled K minus exact K, in standard errors
                "mc_vs_exact": float((log_w.mean(1) - K).mean() / (log_w.var(1).sum() / 128).sqrt() * len(K))}

print("   T   beta     Var[log w]   Jensen gap   gap/(Var/2)   KL(q(x0) || p(x0))")
for T, r in sweep.items():
    print(f"{T:4d}   {r['beta']:.4f}   {r['var']:9.4f}   {r['gap']:9.4f}    {r['gap'] / (r['var'] / 2):8.2f}"
          f"       {r['kl']:.4f}")
print(f"smallest gap over all T and x^0: {min(r['min_gap'] for r in sweep.values()):.2e} (Jensen: never negative)")
print(f"K from sampled trajectories vs K from Eq. 14's 1-D integrals (averaged over the 32 points): largest "
      f"difference over T {max(abs(r['mc_vs_exact']) for r in sweep.values()):.1f} standard errors")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 3.6))
ax1.plot(GRID, q_grid, "k", lw=2, label="data $q(x^0)$")
for T, c in ((2, "C0"), (16, "C1"), (256, "C2")):
    ax1.plot(GRID, sweep[T]["p_grid"], color=c, label=f"model $p(x^0)$, T = {T}")
ax1.set(xlim=(-3.5, 3.5), ylim=(0, 0.95), xlabel="$x^0$", ylabel="density", title="The ideal Gaussian reverse process")
ax1.legend(loc="upper left", ncol=2)
Ts = list(sweep)
for key, label, c in (("var", r"Var[$\log w$]", "C3"), ("gap", r"Jensen gap $\log p(x^0) - K$", "C4"),
                      ("kl", r"$D_{KL}(q(x^0) \| p(x^0))$", "C5")):
    ax2.loglog(Ts, [sweep[T][key] for T in Ts], "o-", color=c, label=label)
ax2.set(xlabel=r"T (with $\bar\alpha_T = 10^{-3}$ fixed)", ylabel="nats", title="All three vanish at large T")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the table from the bottom up. For large $T$ (small $\beta$) all three numbers fall steeply towards 0:
# the reverse kernels become Gaussian, the ideal reverse process reproduces the data, and the weight stops
# depending on the trajectory, so one sample is nearly exact. The top of the table is the other, trivial
# way to make forward and reverse trajectories agree: with $\beta$ near 1 every step forgets its input, so
# both chains wander independently of $x^0$ and agree, with small variance, but the model of $x^0$ is then
# only the best Gaussian fit of the data (the last column at $T = 1$). Only the limit $\beta_t \to 0$
# gives both: a perfect model and a zero-variance, one-sample estimate. The column gap$/(\mathrm{Var}/2)$
# tends to 1: when $\log w$ is nearly Gaussian, $\log \mathbb E[w] - \mathbb E[\log w] \approx \tfrac12 \mathrm{Var}[\log w]$.
#
# ## 5. The training objective and Jensen's inequality (notes 6-8, Eqs. 10-13)
#
# **Note 6.** Training maximizes the model log-likelihood of the data,
# $$L = \int q(x^0) \log p(x^0)\, dx^0 \qquad \text{(Eq. 10)},$$
# the average of $\log p$ over data points. The notes use the negative of this, the cross-entropy
# $\int -\log p(x^0)\, q(x^0)\, dx^0$, to be minimized, and flip the sign of $K$ to match; we keep the paper's
# signs, so both $L$ and $K$ are to be maximized.
#
# **Note 7: Jensen.** Insert Eq. 9:
# $$L = \int q(x^0)\, \log\left[\int q(x^{1:T} \mid x^0)\; p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\, dx^{1:T}\right] dx^0
# \qquad \text{(Eq. 11)}.$$
# The logarithm of an integral does not split into a sum; the logarithm of a product does. Jensen's
# inequality moves the log inside: $\log$ is concave, so for any positive random variable $w$,
# $$\log \mathbb E[w] \;\ge\; \mathbb E[\log w], \qquad \text{with equality exactly when } w \text{ is constant}.$$
# (The chord of a concave function lies below it: for two values, $\log(\tfrac{a+b}2) \ge \tfrac{\log a + \log b}{2}$.)
# Applied to the inner expectation for each $x^0$, and combining $q(x^0)\, q(x^{1:T} \mid x^0) = q(x^{0:T})$:
# $$L \;\ge\; \int q(x^{0:T})\, \log\left[p(x^T) \prod_{t=1}^{T} \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\right] dx^{0:T}
# \;=\; K \qquad \text{(Eqs. 12-13)}.$$
# $K$ is an average of a log of a product: a sum of simple terms, each estimated from forward samples.
# In the notes' signs this reads $-L \le -K$: the cross-entropy is bounded from **above**. (The notes call it a
# lower bound, write "$\ge$" and say "the log of an integral is at most the integral of the log": after their
# sign flip all three are reversed; the paper's $L \ge K$, and the numbers below, have it the right way round.) The bound is tight exactly when
# $w$ does not vary over trajectories, the situation of section 4: "as $\beta \to 0$ the inequality becomes an
# equality", as the notes' list of approximations says.
#
# **Note 8.** Split the log of the product. The $p(x^T)$ factor depends on $x^T$ only:
# $$K = \sum_{t=1}^{T} \int q(x^{0:T})\, \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}\, dx^{0:T} \;-\; H_p(X^T),
# \qquad H_p(X^T) = -\int q(x^T) \log \pi(x^T)\, dx^T .$$
# $H_p(X^T)$ is the cross-entropy of the forward process's end with $\pi$; the paper (Appendix B.1) identifies it
# with the entropy of $\pi$, which it is when $q(x^T) = \pi$. It is a constant for a fixed $\pi$ and fixed $\beta$'s.
#
# **Measured on a Gaussian toy.** Data $x^0 \sim \mathcal N(0.5, 0.5^2)$ in 1-D (`dl.GaussianData`), $T = 5$ steps,
# and the reverse process of DDPM: $p(x^{t-1} \mid x^t) = \mathcal N(\mu_\theta(x^t, t), \beta_t)$ with the best
# possible noise predictor $\epsilon_\theta$ (`GaussianData.eps_model`, closed form). Its mean is affine in $x^t$,
# so $p(x^0)$ is Gaussian and exact: push $\mathcal N(0, 1)$ through the $T$ affine-Gaussian steps.

# %%
gdata = dl.GaussianData(dim=1, mean=0.5, std=0.5)
s_toy = constant_schedule(5)
d_toy = dl.GaussianDiffusion(s_toy, prediction="eps", variance="fixed_large", decoder="gaussian")
eps_model = gdata.eps_model(s_toy.alpha_bars)  # E[eps | x_t]: the best noise predictor, in closed form


def ddpm_reverse(d, model):
    """p(x^{t-1} | x^t) of a GaussianDiffusion and a model: reverse(x_t, t) -> (mean, log_variance)."""
    def reverse(x_t, t):
        tt = torch.full((len(x_t),), t)
        out = d.p_mean_variance(model(x_t, tt), x_t, tt)
        return out["mean"], out["log_variance"]
    return reverse


def affine_chain_log_prob(reverse, T, x0):
    """log p(x^0) when every p(x^{t-1}|x^t) = N(a_t x^t + b_t, v_t): N(0, 1) pushed through T affine-Gaussian steps."""
    m, v = 0.0, 1.0
    probe = torch.tensor([[0.0], [1.0]], dtype=F64)
    for t in range(T, 0, -1):
        mean, log_var = reverse(probe, t)
        b, a = float(mean[0]), float(mean[1] - mean[0])  # the mean is affine in x^t: read off a_t and b_t
        m, v = a * m + b, a * a * v + float(log_var[0].exp())
    return dl.gaussian_log_likelihood(x0[:, 0], m, math.log(v))


rev_toy = ddpm_reverse(d_toy, eps_model)
x0_toy = torch.tensor([[-0.5], [0.0], [0.5], [1.0], [1.5]], dtype=F64)
log_p_toy = affine_chain_log_prob(rev_toy, s_toy.T, x0_toy)
grid_toy = model_log_prob(rev_toy, s_toy.T, x0_toy, GRID)
print(f"{s_toy}; exact log p(x^0): closed form vs grid, max |diff| "
      f"{below(float((grid_toy - log_p_toy).abs().max()), 1e-8)}")

N_TOY = 20_000
log_w_toy = log_importance_weights(d_toy, rev_toy, x0_toy, N_TOY, torch.Generator().manual_seed(4))
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
# The column "log mean w" is the importance-sampling estimate of $\log p(x^0)$ from 20,000 trajectories (it
# agrees with the exact value); $K$ is the average of $\log w$, lower by the Jensen gap. The gap is larger for
# $x^0$ far from the data mean, where the model's trajectories and the forward ones differ more.
#
# ## 6. The edge effect: $p(x^0 \mid x^1)$ (note 9)
#
# The $t = 1$ term of $K$ is $\mathbb E_q\big[\log p(x^0 \mid x^1) - \log q(x^1 \mid x^0)\big]$. In the rewriting of
# section 7 every other term becomes a KL divergence against the posterior $q(x^{t-1} \mid x^t, x^0)$; for
# $t = 1$ that posterior is $q(x^0 \mid x^1, x^0)$, a point mass at $x^0$ (DDPM's $\tilde\beta_1 = 0$), and the KL
# of a point mass from any density is infinite. There is no step before $x^0$ to smooth it: the first step is
# an *edge* of the chain and behaves unlike the others, which is what the paper's "to avoid edge effects" refers
# to (and what the notes' own later question about edge effects concludes).
#
# **The paper's choice** (Appendix B.2): fix the last reverse step to the reversal of the first forward step
# under $\pi$, $p(x^0 \mid x^1) = T_\pi(x^0 \mid x^1; \beta_1) = q(x^1 \mid x^0)\, \pi(x^0) / \pi(x^1)$, a proper density
# by Eq. 1 (for Gaussian diffusion, $\mathcal N(x^0; \sqrt{1 - \beta_1}\, x^1, \beta_1)$, since this kernel is reversible
# with respect to $\mathcal N(0, 1)$). Then the $t = 1$ term is
# $$\mathbb E_q\left[\log \frac{p(x^0 \mid x^1)}{q(x^1 \mid x^0)}\right] = \mathbb E_q\big[\log \pi(x^0) - \log \pi(x^1)\big]
# = \tfrac12 \big(\mathbb E[(x^1)^2] - \mathbb E[(x^0)^2]\big) = \tfrac{\beta_1}2 \big(1 - \mathbb E[(x^0)^2]\big)$$
# per dimension, using $\mathbb E[(x^1)^2] = (1 - \beta_1) \mathbb E[(x^0)^2] + \beta_1$. It is of order $\beta_1$, and the
# paper drops it; the sum over $t$ then starts at $t = 2$:
# $K = \sum_{t=2}^{T} \int q \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})} - H_p(X^T)$.
# **The notes' version**, $p(x^0 \mid x^1) = q(x^1 \mid x^0)$ read as a function of $x^0$, makes the term exactly 0,
# but that function integrates to $1 / \sqrt{1 - \beta_1}$ rather than 1 (it is not quite a density); the
# difference is again of order $\beta_1$. The notes' guess that the step is special "so as not to generate
# training images" is not the reason; the degenerate posterior is. (And the notes' other guess is right: with
# the $t = 1$ term gone, every remaining posterior has $t \ge 2$ and is easy to compute.) DDPM instead keeps the
# term as a learned decoder, $L_0 = -\log p(x_0 \mid x_1)$ (chapter 07).

# %%
print(f"posterior variance at t = 1: beta~_1 = {float(s_toy.posterior_variance[1]):.1f} "
      f"(a point mass), at t = 2: beta~_2 = {float(s_toy.posterior_variance[2]):.3f}")
gen = torch.Generator().manual_seed(5)
x0s = gdata.sample(200_000, generator=gen, dtype=F64)
m2 = 0.5**2 + 0.5**2  # E[(x^0)^2] = mean^2 + std^2
for name, b1 in (("toy (T = 5)", float(s_toy.betas[1])), ("DDPM", 1e-4)):
    s1 = dl.NoiseSchedule.from_betas([b1], warn=False)
    x1 = dl.GaussianDiffusion(s1, decoder="gaussian").q_step(x0s, torch.ones(len(x0s), dtype=torch.long), generator=gen)
    log_T_pi = dl.gaussian_log_likelihood(x0s, math.sqrt(1 - b1) * x1, math.log(b1))  # p(x^0 | x^1) = T_pi
    log_q = dl.gaussian_log_likelihood(x1, math.sqrt(1 - b1) * x0s, math.log(b1))  # q(x^1 | x^0)
    balance = (log_T_pi - log_q) - (dl.gaussian_log_likelihood(x0s, 0.0, 0.0) - dl.gaussian_log_likelihood(x1, 0.0, 0.0))
    term = log_T_pi - log_q
    line = torch.linspace(-30, 30, 60001, dtype=F64)  # values of x^0; q(x^1 = 0.7 | x^0) as a function of x^0
    mass = float(torch.trapezoid(dl.gaussian_log_likelihood(torch.tensor(0.7, dtype=F64), math.sqrt(1 - b1) * line,
                                                            math.log(b1)).exp(), line))
    print(f"{name}, beta_1 = {b1:.4g}:\n"
          f"  reversibility T_pi(x^0|x^1) / q(x^1|x^0) = pi(x^0) / pi(x^1): max |log diff| "
          f"{below(float(balance.abs().max()), 1e-10)}\n"
          f"  t = 1 term with p(x^0|x^1) = T_pi: {float(term.mean()):+.5f} +- {float(term.std()) / math.sqrt(len(term)):.5f}"
          f" (Monte Carlo), {b1 / 2 * (1 - m2):+.5f} (closed form beta_1 (1 - E[x0^2]) / 2)\n"
          f"  the notes' p(x^0|x^1) = q(x^1|x^0): int dx^0 = {mass:.6f}, 1/sqrt(1 - beta_1) = {1 / math.sqrt(1 - b1):.6f}")

# %% [markdown]
# ## 7. Rewriting K with the posterior: Eq. 14 (note 10)
#
# Each remaining term $\int q(x^{0:T}) \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}$ would have to be estimated by
# sampling whole trajectories. The paper rewrites it so that each term is a KL divergence between two
# Gaussians, known in closed form. Every step, for one $t \ge 2$:
#
# **(a) Condition on $x^0$ for free.** The forward process is Markov: given $x^{t-1}$, the step to $x^t$ ignores
# everything earlier, so $q(x^t \mid x^{t-1}) = q(x^t \mid x^{t-1}, x^0)$.
#
# **(b) Bayes' rule, with $x^0$ held fixed**, turns the step around:
# $$q(x^t \mid x^{t-1}, x^0) = \frac{q(x^{t-1} \mid x^t, x^0)\; q(x^t \mid x^0)}{q(x^{t-1} \mid x^0)} .$$
# This is where $x^0$ pays off: $q(x^{t-1} \mid x^t)$ alone is the intractable true reverse kernel of section 2,
# but $q(x^{t-1} \mid x^t, x^0)$ is a Gaussian with a closed form, $\mathcal N(\tilde\mu_t(x^t, x^0), \tilde\beta_t)$
# (DDPM Eqs. 6-7, derived in chapter 04), because $q(x^{t-1} \mid x^0)$ and $q(x^t \mid x^{t-1})$ are both Gaussian.
#
# **(c) Substitute and split the log** into a posterior part and a ratio of marginals:
# $$\int q(x^{0:T}) \log \frac{p(x^{t-1} \mid x^t)}{q(x^t \mid x^{t-1})}
# = \int q(x^{0:T}) \log \frac{p(x^{t-1} \mid x^t)}{q(x^{t-1} \mid x^t, x^0)}
# + \int q(x^{0:T}) \log q(x^{t-1} \mid x^0) - \int q(x^{0:T}) \log q(x^t \mid x^0) .$$
#
# **(d) The ratio terms are conditional entropies.** The integrand of $\int q(x^{0:T}) \log q(x^t \mid x^0)$ depends on
# $(x^0, x^t)$ only, so the other variables integrate out: it equals $\int q(x^0, x^t) \log q(x^t \mid x^0) = -H_q(X^t \mid X^0)$.
# The second line of (c) is therefore $H_q(X^t \mid X^0) - H_q(X^{t-1} \mid X^0)$.
#
# **(e) The posterior part is a KL divergence.** Its integrand depends on $(x^0, x^{t-1}, x^t)$; factor
# $q(x^0, x^{t-1}, x^t) = q(x^0, x^t)\, q(x^{t-1} \mid x^t, x^0)$ and do the $x^{t-1}$ integral first:
# $$\int q(x^0, x^t) \int q(x^{t-1} \mid x^t, x^0) \log \frac{p(x^{t-1} \mid x^t)}{q(x^{t-1} \mid x^t, x^0)}\, dx^{t-1}\, dx^0\, dx^t
# = -\int q(x^0, x^t)\; D_{KL}\big(q(x^{t-1} \mid x^t, x^0)\, \|\, p(x^{t-1} \mid x^t)\big)\, dx^0\, dx^t .$$
#
# **(f) Sum over $t = 2, \dots, T$: the entropies telescope**,
# $\sum_{t=2}^{T} \big(H_q(X^t \mid X^0) - H_q(X^{t-1} \mid X^0)\big) = H_q(X^T \mid X^0) - H_q(X^1 \mid X^0)$, and with the
# $-H_p(X^T)$ of note 8:
# $$\boxed{K = -\sum_{t=2}^{T} \int q(x^0, x^t)\, D_{KL}\big(q(x^{t-1} \mid x^t, x^0)\, \|\, p(x^{t-1} \mid x^t)\big)\, dx^0\, dx^t
# \;+\; H_q(X^T \mid X^0) - H_q(X^1 \mid X^0) - H_p(X^T)} \qquad \text{(Eq. 14)}.$$
# In the notes' signs (their $K$ is minus this): $\sum \mathbb E\, D_{KL} + H_q(X^1 \mid X^0) - H_q(X^T \mid X^0) + H_p(X^T)$,
# the last line of note 10. For Gaussian diffusion the entropies are closed-form: $q(x^t \mid x^0)$ has variance
# $1 - \bar\alpha_t$, so $H_q(X^t \mid X^0) = \tfrac12 \log\big(2\pi e (1 - \bar\alpha_t)\big)$ per dimension, whatever the data.
# And each KL term is an integral over $(x^0, x^t)$ only: the expectation over $x^{t-1}$ is done exactly, in
# closed form (Rao-Blackwellization). The paper's reference implementation computes exactly these pieces: a
# Gaussian KL plus three Gaussian entropies, $\tfrac12(1 + \log 2\pi) + \tfrac12 \log \beta_1$ for $H_q(X^1 \mid X^0)$,
# $\tfrac12(1 + \log 2\pi) + \tfrac12 \log(1 - \bar\alpha_T)$ for $H_q(X^T \mid X^0)$ and $\tfrac12(1 + \log 2\pi)$ for $H_p(X^T)$.
#
# **Checked.** Step (b) pointwise; the entropies by Monte Carlo; and $K$ three ways on the Gaussian toy: the
# trajectory form (Eq. 12, sampled), the Eq. 14 form (with the $t = 1$ term and the cross-entropy for $H_p(X^T)$
# kept, so that nothing is approximated; KLs by `dl.normal_kl`, 1-D integrals by Gauss-Hermite quadrature, exact
# here because every integrand is a polynomial in $\epsilon$), and minus DDPM's bound from `d_toy.vlb_terms`.

# %%
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
    q_t = d_toy.q_mean_variance(x0b, tt)
    q_prev = d_toy.q_mean_variance(x0b, tt - 1)
    rhs = (dl.gaussian_log_likelihood(x_prev, post.mean, post.log_variance)  # q(x^{t-1} | x^t, x^0)
           + dl.gaussian_log_likelihood(x_t, q_t.mean, q_t.log_variance)  # q(x^t | x^0)
           - dl.gaussian_log_likelihood(x_prev, q_prev.mean, q_prev.log_variance))  # / q(x^{t-1} | x^0)
    worst = max(worst, float((lhs - rhs).abs().max()))
print(f"step (b), Bayes' rule for t = 2..{s_toy.T} at {B:,} sampled points: max |log lhs - log rhs| = {below(worst)}")

tT = torch.full((B,), s_toy.T)
q_T = d_toy.q_mean_variance(x0b, tT)
mc_H = -dl.gaussian_log_likelihood(d_toy.q_sample(x0b, tT, generator=gen), q_T.mean, q_T.log_variance)
H_T = float(dl.gaussian_entropy(s_toy.log_one_minus_alpha_bars[s_toy.T]))
print(f"H_q(X^T|X^0) = 1/2 log(2 pi e (1 - abar_T)) = {H_T:.4f}; Monte Carlo -E log q(x^T|x^0) = "
      f"{float(mc_H.mean()):.4f} +- {float(mc_H.std()) / math.sqrt(B):.4f}")

GH16 = gauss_hermite(16)
parts = bound_terms(d_toy, rev_toy, x0_toy, *GH16)
K_eq14 = K_exact(parts)
vlb = d_toy.vlb_terms(eps_model, x0_toy.repeat_interleave(N_TOY, 0), generator=gen).sum(1).reshape(len(x0_toy), -1)
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
# ## 8. From K to DDPM's L
#
# DDPM (Ho et al. 2020, Eq. 5) writes the same bound with the opposite sign, as a loss $L = -K$ (per data point),
# and keeps every term:
# $$L = \underbrace{D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))}_{L_T} + \sum_{t=2}^{T} \underbrace{D_{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
# \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0} .$$
# Term by term against Eq. 14: the KL terms are the same; $L_T = -H_q(X^T \mid X^0) + H_p(X^T)$ exactly, when
# $H_p(X^T)$ is the cross-entropy $-\mathbb E \log \pi(x^T)$ (since $D_{KL}(q \| \pi) = \mathbb E_q \log q - \mathbb E_q \log \pi$); and
# $L_0$ takes the place of $H_q(X^1 \mid X^0)$ and of the dropped $t = 1$ term: $L_0 = H_q(X^1 \mid X^0) - (\text{edge term})$,
# so with the notes' choice $p(x^0 \mid x^1) = q(x^1 \mid x^0)$, $L_0$ would be exactly $H_q(X^1 \mid X^0)$. Chapter 04 derives
# the posterior and these KL terms in DDPM's notation. The numbers, for the toy ($x^0 = 0.5$) and for the same
# Gaussian data under DDPM's own schedule ($T = 1000$, linear from $10^{-4}$ to $0.02$):

# %%
s_ddpm = dl.NoiseSchedule.linear(T=1000)
d_ddpm = dl.GaussianDiffusion(s_ddpm, prediction="eps", variance="fixed_large", decoder="gaussian")
rev_ddpm = ddpm_reverse(d_ddpm, gdata.eps_model(s_ddpm.alpha_bars))
x_half = torch.tensor([[0.5]], dtype=F64)
bounds_at_half = {}
for name, d, rev in (("toy, T = 5", d_toy, rev_toy), ("DDPM schedule, T = 1000", d_ddpm, rev_ddpm)):
    b = bounds_at_half[name] = bound_terms(d, rev, x_half, *GH16)
    L_T = float(d.prior_kl(x_half)[0])
    L_0 = -float(b["edge"][0] - b["H_1"])  # -E log p(x^0 | x^1)
    print(f"{name}: L_T = {L_T:.6f} = H_p(X^T) - H_q(X^T|X^0) = {float(b['cross_T'][0] - b['H_T']):.6f}; "
          f"sum L_(t-1) = sum E KL = {float(b['kl'][0]):.4f}; L_0 = {L_0:+.4f} vs H_q(X^1|X^0) = {float(b['H_1']):+.4f}")
    if d is d_ddpm:
        gap = float(affine_chain_log_prob(rev, s_ddpm.T, x_half)[0] - K_exact(b)[0])
        print(f"  Jensen gap at x^0 = 0.5 under DDPM's schedule: {gap:.4f} nats (toy, T = 5: "
              f"{float(log_p_toy[2] - K_eq14[2]):.4f})")

# %% [markdown]
# ## 9. $\beta_t$ is learnable, $\beta_1$ is fixed (note 11)
#
# In the paper the diffusion rates are parameters too: $\beta_{2..T}$ are learned by gradient ascent on $K$, and
# $\beta_1$ is fixed to a small constant "to prevent overfitting". So the entropy terms of Eq. 14 are not constants:
# $H_q(X^T \mid X^0) = \tfrac12 \log 2\pi e (1 - \bar\alpha_T)$ moves with every $\beta_t$, and so do the KL terms
# (only $H_q(X^1 \mid X^0)$, which depends on $\beta_1$ alone, and $H(\pi)$ stay put). To differentiate a sampled $K$
# with respect to $\beta$, the paper holds the noise fixed ("frozen noise", as in the reparameterization of
# Kingma & Welling): $x^t = \sqrt{\bar\alpha_t}\, x^0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with $\epsilon$ drawn once, so $K$ is a
# smooth function of $\beta$. Our 1-D integrals use fixed Gauss-Hermite nodes for $\epsilon$, the same idea.
#
# **Learning $\beta_2$.** The mixture with $T = 2$ and $\beta_1 = 0.01$ fixed, and the ideal reverse process re-fitted
# at every $\beta_2$ (as joint training of network and $\beta$ would do): a small $\beta_2$ leaves $q(x^2)$ far from
# $\pi$; a large one asks a single Gaussian step to undo almost all the noise. $K$ has a maximum in between.

# %%
x0_fit = sample_data(2000, seed=7)
betas_2 = np.concatenate([np.geomspace(0.01, 0.9, 22), [0.95, 0.98, 0.995]])
K_curve, H_curve = [], []
for b2 in betas_2:
    s = dl.NoiseSchedule.from_betas([0.01, float(b2)], warn=False)
    b = bound_terms(dl.GaussianDiffusion(s, decoder="gaussian"), ideal_reverse(s), x0_fit, *GH16)
    K_curve.append(float(K_exact(b).mean()))
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
# **Why not learn $\beta_1$ too?** The data a model is trained on are a finite set of points. Give the same
# $T = 2$ model a training set of 8 points (their empirical distribution; each point a very narrow Gaussian),
# keep $\beta_2 = 0.9$, and shrink $\beta_1$: the best last step $p(x^0 \mid x^1)$ learns to snap $x^1$ to the nearest
# training point, $K$ on the training points grows without bound, and $K$ on new points from the same mixture
# collapses. A $\beta_1$ fixed at a small but finite value keeps the last step from memorizing the training set.

# %%
train = sample_data(8, seed=8)
heldout = sample_data(500, seed=9)
empirical = {"components": [dl.GaussianData(dim=1, mean=float(v), std=1e-4) for v in train[:, 0]],
             "log_weights": torch.full((len(train),), -math.log(len(train)), dtype=F64)}
print("beta_1     K on the 8 training points   K on 500 held-out points")
for b1 in (0.3, 0.1, 0.03, 0.01, 0.003, 0.001):
    s = dl.NoiseSchedule.from_betas([b1, 0.9], warn=False)
    d, rev = dl.GaussianDiffusion(s, decoder="gaussian"), ideal_reverse(s, **empirical)
    k_train = float(K_exact(bound_terms(d, rev, train, *GH16)).mean())
    k_held = float(K_exact(bound_terms(d, rev, heldout, *GH16)).mean())
    print(f"{b1:<8g}   {k_train:+10.3f}                {k_held:+12.4g}")

# %% [markdown]
# ## 10. The approximations, each with a number
#
# The notes end the derivation with a list of the approximations made on the way. Each is measured here.
#
# 1. **Finite $T$: $x^T$ is not exactly $\pi$.** Then $p(x^T) = \pi$ mismatches $q(x^T)$, and the cross-entropy
#    $-\mathbb E \log \pi(x^T)$ is not the entropy $H(\pi)$ that Eq. 14 uses.
# 2. **$\beta_t$ does not go to 0.** (a) The true reverse kernel is not Gaussian; (b) the one-sample estimate of
#    $p(x^0)$ through trajectories is not exact; (c) Jensen's inequality is not an equality.
# 3. **The network does not fit the mean and variance exactly** (an MLP may not be the right architecture).
# 4. **The special last step** $p(x^0 \mid x^1) = q(x^1 \mid x^0)$ drops the $t = 1$ term.

# %%
gen = torch.Generator().manual_seed(10)
ab_T = float(constant_schedule(16).alpha_bars[-1])
q_T_grid = data_log_prob(GRID[:, None], ab_T).exp()
pi_grid = dl.gaussian_log_likelihood(GRID, 0.0, 0.0).exp()
kl_T = float(torch.trapezoid(q_T_grid * (q_T_grid.log() - pi_grid.log()), GRID))
print(f"1. x^T is not pi: mixture, abar_T = {ab_T:.0e}: KL(q(x^T) || pi) = {kl_T:.1e} nats; "
      f"DDPM schedule, E[x_0^2] = 1: L_T = {s_ddpm.prior_kl(1.0):.1e} nats/dim; "
      f"toy at x^0 = 0.5: cross-entropy - H(pi) = {float(parts['cross_T'][2] - parts['H_pi']):+.1e} nats")
kl_002 = max(widgets.kernel_kl_to_gaussian(grid, widgets.true_reverse_kernel(grid, v, 0.02)) for v in x_ts)
kl_05 = max(widgets.kernel_kl_to_gaussian(grid, widgets.true_reverse_kernel(grid, v, 0.5)) for v in x_ts)
print(f"2a. reverse kernel not Gaussian: largest KL to its Gaussian at beta = 0.02 (DDPM's beta_T) {kl_002:.1e} nats, "
      f"at beta = 0.5 {kl_05:.2f} nats")
print(f"2b. one forward sample is not exact: Var[log w] = {sweep[16]['var']:.3f} at T = 16, "
      f"{sweep[256]['var']:.3f} at T = 256 (mixture, section 4)")
print(f"2c. Jensen gap log p(x^0) - K: {sweep[16]['gap']:.3f} nats at T = 16, {sweep[256]['gap']:.4f} at T = 256; "
      f"model error KL(q(x^0) || p(x^0)) {sweep[16]['kl']:.3f} and {sweep[256]['kl']:.4f}")


def off_by_10_percent(x_t, t):
    return 1.1 * eps_model(x_t, t)  # a network whose eps prediction is 10 % too large


K_off = K_exact(bound_terms(d_toy, ddpm_reverse(d_toy, off_by_10_percent), x0_toy, *GH16))
print(f"3. an imperfect network: eps_theta 10 % too large lowers K on the toy by "
      f"{float((K_eq14 - K_off).mean()):.4f} nats on average (the exact log p(x^0) changes as well)")
print(f"4. the edge: the dropped t = 1 term with p(x^0|x^1) = T_pi is beta_1 (1 - E[x0^2]) / 2 = "
      f"{1e-4 / 2 * (1 - m2):.1e} nats/dim at DDPM's beta_1 = 1e-4, {0.001 / 2 * (1 - m2):.1e} at the reference code's "
      f"beta_1 = 0.001; the notes' version misses normalization by log(1/sqrt(1 - beta_1)) = {-0.5 * math.log1p(-0.001):.1e}")

# %% [markdown]
# ## 11. Exercises
#
# **Exercise 2.1 (the KL of Eq. 14).** Write `my_normal_kl(mean1, logvar1, mean2, logvar2)`, the KL divergence
# $D_{KL}(\mathcal N(\mu_1, \sigma_1^2) \,\|\, \mathcal N(\mu_2, \sigma_2^2))$ elementwise, from variances given as logs:
# $$D_{KL} = \tfrac12\left(\log \sigma_2^2 - \log \sigma_1^2 + \frac{\sigma_1^2 + (\mu_1 - \mu_2)^2}{\sigma_2^2} - 1\right).$$
# (Derive it: $\mathbb E_{\mathcal N(\mu_1, \sigma_1^2)}[\log \mathcal N(x; \mu_1, \sigma_1^2) - \log \mathcal N(x; \mu_2, \sigma_2^2)]$, using
# $\mathbb E[(x - \mu_2)^2] = \sigma_1^2 + (\mu_1 - \mu_2)^2$.)

# %% tags=["solution"]
def my_normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    # BEGIN SOLUTION
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)
    # END SOLUTION


# %%
checks.check("normal_kl", my_normal_kl)


# %% [markdown]
# **Exercise 2.2 (the entropy terms of Eq. 14).** For 1-D Gaussian diffusion with $\pi = \mathcal N(0, 1)$, write
# `entropy_terms(schedule)` that returns $H_q(X^T \mid X^0) - H_q(X^1 \mid X^0) - H_p(X^T)$ in nats, with $H_p(X^T)$ the
# entropy of $\pi$ as in the paper. Use only the schedule's tables (`schedule.betas`, `schedule.alpha_bars`, paper
# indexing) and $H(\mathcal N(\mu, \sigma^2)) = \tfrac12 \log(2\pi e \sigma^2)$.

# %% tags=["solution"]
def entropy_terms(schedule):
    """H_q(X^T|X^0) - H_q(X^1|X^0) - H(pi) per dimension, in nats, for pi = N(0, 1)."""
    # BEGIN SOLUTION
    def entropy(var):
        return 0.5 * math.log(2 * math.pi * math.e * var)

    return entropy(1 - float(schedule.alpha_bars[schedule.T])) - entropy(float(schedule.betas[1])) - entropy(1.0)
    # END SOLUTION


# %%
expected = [float(b["H_T"] - b["H_1"] - b["H_pi"]) for b in bounds_at_half.values()]  # from section 8
checks.check_value("entropy terms of Eq. 14", [entropy_terms(s_toy), entropy_terms(s_ddpm)], expected,
                   equation="H_q(X^T|X^0) - H_q(X^1|X^0) - H_p(X^T) with H = 1/2 log(2 pi e var): "
                            "var 1 - abar_T, beta_1 and 1 (Sohl-Dickstein Eq. 14)")


# %% [markdown]
# **Exercise 2.3 (two estimates from the same trajectories).** Given log importance weights `log_w` of shape
# `(M, n)` ($n$ forward trajectories for each of $M$ data points), return the pair
# `(log_p_estimate, K_estimate)`, each of shape `(M,)`: the importance-sampling estimate $\log \frac1n \sum_n w$ of
# $\log p(x^0)$ (Eq. 9) and the Monte Carlo estimate $\frac1n \sum_n \log w$ of $K$ (Eq. 12). The weights span many
# orders of magnitude: compute the first without forming $w = e^{\log w}$ (subtract the largest $\log w$ first).

# %% tags=["solution"]
def two_estimates(log_w):
    """(log mean exp(log_w), mean log_w) over the last axis: estimates of log p(x^0) and of K."""
    # BEGIN SOLUTION
    top = log_w.max(dim=1, keepdim=True).values
    log_p = top[:, 0] + torch.log(torch.exp(log_w - top).mean(dim=1))
    return log_p, log_w.mean(dim=1)
    # END SOLUTION


# %%
log_p_hat, K_hat = two_estimates(log_w_toy - 800.0)  # shifted: exp(-800) underflows to 0 in float64
checks.check_value("two estimates (Eqs. 9 and 12)", torch.stack([log_p_hat, K_hat]) + 800.0,
                   torch.stack([log_mean_w, K_mc]), rtol=1e-9, atol=1e-9,
                   equation="log p ~ log (1/n) sum_n exp(log w_n) (Eq. 9) and K ~ (1/n) sum_n log w_n (Eq. 12)")

# %% [markdown]
# ## Summary
#
# - The forward trajectory $q(x^{0:T}) = q(x^0) \prod_t \mathcal N(x^t; \sqrt{1-\beta_t}\, x^{t-1}, \beta_t)$ turns data into
#   $\pi = \mathcal N(0, I)$; the reverse trajectory $p(x^{0:T}) = \pi(x^T) \prod_t p(x^{t-1} \mid x^t)$ turns it back. Its
#   kernels may be Gaussian because the true reverse kernel is nearly Gaussian for small $\beta_t$ (and visibly not for
#   large $\beta_t$: the widget).
# - $p(x^0)$ is an integral over trajectories, and with the forward process as proposal an average of importance
#   weights $w$ (Eq. 9). As $\beta_t \to 0$ the forward and reverse trajectory distributions can coincide, $w$ stops
#   varying, and one sample suffices: measured, Var$[\log w]$ and the Jensen gap fall towards 0 as $T$ grows.
# - Jensen's inequality gives $L \ge K = \mathbb E_q[\log w]$ (Eqs. 10-13); the gap is about $\tfrac12 \mathrm{Var}[\log w]$ when
#   $\log w$ is nearly Gaussian. The notes' sign convention turns it into an upper bound on the cross-entropy.
# - With the edge step fixed and the posterior $q(x^{t-1} \mid x^t, x^0)$ brought in (Markov, Bayes, telescoping),
#   $K = -\sum_{t \ge 2} \mathbb E\, D_{KL}(q(x^{t-1} \mid x^t, x^0) \| p(x^{t-1} \mid x^t)) + H_q(X^T \mid X^0) - H_q(X^1 \mid X^0) - H_p(X^T)$
#   (Eq. 14): Gaussian KLs and entropies in closed form, checked equal to the trajectory form and to DDPM's $-L$.
# - $\beta_{2..T}$ can be learned by gradient ascent on $K$ with frozen noise; $\beta_1$ stays fixed, or the last step
#   memorizes the training set.
#
# **Next:** chapter 03 computes $q(x_t \mid x_0)$ in closed form (DDPM's $\bar\alpha_t$), the shortcut that makes each
# term of the bound cheap to sample; chapter 04 derives the posterior $q(x_{t-1} \mid x_t, x_0)$ used in Eq. 14 and
# DDPM's $L = L_T + \sum_t L_{t-1} + L_0$ in detail.
