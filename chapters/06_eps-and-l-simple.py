# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Predicting $\epsilon$ and the simple loss; Algorithms 1 and 2 on the swiss roll
#
# Chapter 04 split the bound into $L = L_T + \sum_{t>1} L_{t-1} + L_0$ (DDPM Eq. 5), each $L_{t-1}$ a KL divergence
# between the posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ and the reverse step
# $p_\theta(x_{t-1} \mid x_t)$. This chapter follows Ho et al. 2020, Sec. 3.2, from there to the loss everybody
# trains with: fix the reverse variances, and $L_{t-1}$ becomes a squared error between means; write the mean
# through the noise $\epsilon$, and it becomes a weighted squared error between noises; drop the weights, and it
# is DDPM's $L_\text{simple}$. The derivation also tells us how to *sample* with the trained network. Then we train
# a small network with Algorithm 1 and sample with Algorithm 2, on a CPU.
#
# **Learning goals.** After this chapter you can
# - fix the reverse variances to $\sigma_t^2 = \beta_t$ or $\sigma_t^2 = \tilde\beta_t$, and say when each is optimal and why
#   both work;
# - derive $L_{t-1}$ as a squared error on $\tilde\mu_t$ (Eq. 8), then, through $x_t(x_0, \epsilon)$, on $\epsilon$ with the
#   weight $\beta_t^2 / (2\sigma_t^2 \alpha_t (1 - \bar\alpha_t))$ (Eqs. 9-12), and check each step numerically;
# - write $\mu_\theta$ through $\epsilon_\theta$ (Eq. 11) and the sampling step it implies (Algorithm 2, line 4);
# - say what dropping the weight ($L_\text{simple}$, Eq. 14) does to each $t$;
# - run Algorithms 1 and 2 on the swiss roll and measure the samples against the data;
# - see the weight in $x_0$ space as a difference of signal-to-noise ratios, and the noise prediction as a scaled score.
#
# **Reading time:** about an hour. **CPU time:** about 50 s on a 2-core CPU, mostly training and sampling
# (budget: 60 s).

# %%
import copy
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.train import ema_update  # theta_ema <- d theta_ema + (1 - d) theta (chapter 09)
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


# The schedule of this chapter's experiments, as in configs/swiss_roll.toml and the shipped swiss-roll model
s = dl.NoiseSchedule.linear(T=200, beta_start=1e-4, beta_end=0.1)
ddpm = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's, for comparison

# %% [markdown]
# ## The idea in one picture
#
# Training (Algorithm 1) takes a data point $x_0$, adds Gaussian noise $\epsilon$ scaled to the step $t$, and asks a
# network $\epsilon_\theta(x_t, t)$ to tell, from the noisy point $x_t$ alone, which noise was added: a regression onto
# $\epsilon$ with a squared error. Left: swiss-roll points (red), moved by the noise at $t = 20$ (blue; grey lines
# join each pair). A network that does this well knows, everywhere in the plane, which way the data lie. Right: the
# arrows $-\sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)$ of the shipped `swiss-roll-mlp` model (a small trained
# network), at half length on a grid, all point back towards the spiral. Sampling (Algorithm 2) follows such arrows
# from pure noise, step by step. This chapter derives why the bound of chapters 02-04 reduces to this regression,
# and what the simplification loses.

# %%
shipped = dl.load_pretrained("swiss-roll-mlp")  # a trained eps_theta for this schedule (section 7 measures it)
g = torch.Generator().manual_seed(0)
t_pic = 20
x0_pic = dl.swiss_roll(150, generator=g).double()
xt_pic = s.sqrt_alpha_bars[t_pic] * x0_pic + s.sqrt_one_minus_alpha_bars[t_pic] * torch.randn(150, 2, generator=g,
                                                                                                  dtype=torch.float64)
u = torch.linspace(-2, 2, 13)
grid_xy = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
with torch.no_grad():
    arrows = -s.sqrt_one_minus_alpha_bars[t_pic].item() * shipped.model(grid_xy, torch.full((len(grid_xy),), t_pic))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.6))
for a, b in zip(x0_pic, xt_pic):
    ax1.plot([a[0], b[0]], [a[1], b[1]], color="0.75", lw=0.6)
ax1.scatter(x0_pic[:, 0], x0_pic[:, 1], s=6, color="C3", label="data $x_0$")
ax1.scatter(xt_pic[:, 0], xt_pic[:, 1], s=6, color="C0", label=f"noisy $x_t$, t = {t_pic}")
ax1.set(title=r"training: predict the noise $\epsilon$ from $x_t$", xlabel="$x^{(1)}$", ylabel="$x^{(2)}$")
ax1.legend(loc="lower left", bbox_to_anchor=(0, 1.08), ncol=2, frameon=False)
ax2.scatter(x0_pic[:, 0], x0_pic[:, 1], s=6, color="C3", alpha=0.5)
ax2.quiver(grid_xy[:, 0], grid_xy[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", scale_units="xy", scale=2, width=0.004,
           color="0.2")  # drawn at half length
ax2.set(title=r"a trained network: $-\sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x, t)$", xlabel="$x^{(1)}$", ylabel="$x^{(2)}$")
for ax in (ax1, ax2):
    ax.set(xlim=(-2.3, 2.3), ylim=(-2.3, 2.3), aspect="equal")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 1. What is left to learn: fixed $\beta_t$, fixed $\sigma_t^2$
#
# DDPM fixes the forward variances $\beta_t$ to constants (Sohl-Dickstein et al. could learn them; chapter 02). The
# forward process then has no parameters, and $L_T = D_{KL}(q(x_T \mid x_0) \,\|\, \mathcal N(0, I))$ is a constant that
# training can ignore (chapter 03):

# %%
for name, sch in (("swiss-roll schedule (T = 200, beta 1e-4..0.1)", s), ("DDPM's (T = 1000, beta 1e-4..0.02)", ddpm)):
    print(f"{name}: abar_T = {sch.alpha_bars[-1].item():.2e}, "
          f"L_T = {sch.prior_kl(1.0) / math.log(2):.1e} bits per dimension for data with E[x_0^2] = 1")

# %% [markdown]
# The reverse steps are $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \Sigma_\theta(x_t, t))$, and DDPM fixes
# $\Sigma_\theta(x_t, t) = \sigma_t^2 I$ to untrained, time-dependent constants as well. Two choices, with
# similar results in the paper: $\sigma_t^2 = \beta_t$ and $\sigma_t^2 = \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t$. Each
# is exactly right for one extreme kind of data:
#
# - **$x_0 \sim \mathcal N(0, I)$: the best $\sigma_t^2$ is $\beta_t$.** Then every $x_{t-1}$ is $\mathcal N(0, I)$ too (the forward
#   process keeps the variance at $\bar\alpha_{t-1} + (1 - \bar\alpha_{t-1}) = 1$), and $x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{\beta_t}\,\epsilon$
#   is jointly Gaussian with it, with covariance $\sqrt{\alpha_t}$. The Gaussian conditioning formula gives
#   $q(x_{t-1} \mid x_t) = \mathcal N(\sqrt{\alpha_t}\, x_t, (1 - \alpha_t) I) = \mathcal N(\sqrt{\alpha_t}\, x_t, \beta_t I)$.
# - **$x_0$ a single point: the best $\sigma_t^2$ is $\tilde\beta_t$.** Then conditioning on $x_0$ adds nothing, and the true
#   reverse step *is* the posterior of chapter 04: $q(x_{t-1} \mid x_t) = q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$.
#
# (These are Sohl-Dickstein's bounds on the reverse entropy for unit-variance data; chapter 12 computes them.) A
# Monte Carlo check: simulate $x_{t-1}$ and $x_t$ from the forward process and fit $x_{t-1}$ on $x_t$ by least squares;
# the residual variance estimates $\mathbb E[\mathrm{Var}(x_{t-1} \mid x_t)]$, the best fixed $\sigma_t^2$ for a perfect mean.

# %%
g = torch.Generator().manual_seed(0)
d = dl.GaussianDiffusion(s, prediction="eps", variance="fixed_large", decoder="gaussian")
N = 100_000
print(" t   data          slope of x_t (fit / theory)   residual var / beta_t   residual var / beta~_t")
for tt in (5, 20, 100):
    t = torch.full((N,), tt)
    for data_name, x0 in (("x_0 ~ N(0,1)", torch.randn(N, 1, generator=g, dtype=torch.float64)),
                          ("x_0 = 0.7   ", torch.full((N, 1), 0.7, dtype=torch.float64))):
        x_prev = d.q_sample(x0, t - 1, generator=g)  # x_{t-1} ~ q(x_{t-1} | x_0)
        x_t = d.q_step(x_prev, t, generator=g)  # x_t ~ q(x_t | x_{t-1})
        A = torch.cat([torch.ones_like(x_t), x_t], dim=1)  # fit x_{t-1} = a + b x_t
        coef = torch.linalg.lstsq(A, x_prev).solution[:, 0]
        resid = (x_prev[:, 0] - A @ coef).var().item()
        slope = s.sqrt_alphas[tt] if data_name.startswith("x_0 ~") else s.posterior_mean_coef2[tt]
        print(f"{tt:4d} {data_name}  {coef[1].item():.4f} / {slope.item():.4f}               "
              f"{resid / s.betas[tt].item():.3f}                   {resid / s.posterior_variance[tt].item():.3f}")
print(f"(the ratios have a relative Monte Carlo error of about sqrt(2/N) = {math.sqrt(2 / N):.3f})")

# %% [markdown]
# Why the choice matters little: the two differ only over the early part of the chain (below: the first 17% of
# DDPM's steps, the first 40% of the swiss-roll schedule's). $\tilde\beta_t / \beta_t = (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)$
# climbs to 1 over the early steps (chapter 04's picture), where $\beta_t$ itself is smallest, so either way these steps
# add little noise. Real data sit between the two extremes; Section 7 samples with both.

# %%
for name, sch in (("swiss roll, T = 200", s), ("DDPM, T = 1000", ddpm)):
    ratio = sch.posterior_variance[2:] / sch.betas[2:]
    first = int((ratio > 0.99).nonzero()[0]) + 2
    print(f"{name}: beta~_2 / beta_2 = {ratio[0].item():.3f}, beta~_t / beta_t > 0.99 from t = {first} on "
          f"({100 * (first - 1) / sch.T:.0f}% of the steps below that)")

# %% [markdown]
# ## 2. $L_{t-1}$ as a squared error between means (Eq. 8)
#
# With $\sigma_t^2$ fixed, both distributions in $L_{t-1}$ are isotropic Gaussians in $D$ dimensions, and chapter 04's KL
# formula, summed over the $D$ coordinates, reads
# $$D_{KL}\big(\mathcal N(\tilde\mu_t, \tilde\beta_t I) \,\|\, \mathcal N(\mu_\theta, \sigma_t^2 I)\big)
#   = \frac{1}{2\sigma_t^2}\|\tilde\mu_t - \mu_\theta\|^2 + \underbrace{\frac D2\Big(\log\frac{\sigma_t^2}{\tilde\beta_t} + \frac{\tilde\beta_t}{\sigma_t^2} - 1\Big)}_{C_t,\ \text{no } \theta} .$$
# Taking the expectation over $x_0$ and $x_t$ gives **DDPM Eq. 8**:
# $$L_{t-1} = \mathbb E_q\Big[\frac{1}{2\sigma_t^2}\|\tilde\mu_t(x_t, x_0) - \mu_\theta(x_t, t)\|^2\Big] + C .$$
# The most direct parameterization is a network $\mu_\theta$ that predicts $\tilde\mu_t$, the posterior mean. $C_t$ is 0 for
# $\sigma_t^2 = \tilde\beta_t$ and positive otherwise ($\log u + 1/u - 1 \ge 0$ for $u = \sigma_t^2 / \tilde\beta_t$). A check of the
# identity with an arbitrary $\mu_\theta$ (random numbers), $D = 2$:

# %%
B = 512
x0 = dl.swiss_roll(B, generator=g).double()
t = torch.randint(2, s.T + 1, (B,), generator=g)  # t >= 2: L_{t-1} is a KL there (t = 1 is L_0)
x_t = d.q_sample(x0, t, generator=g)
post = d.q_posterior(x0, x_t, t)
mu_theta = post.mean + 0.3 * torch.randn(B, 2, generator=g, dtype=torch.float64)  # any mean at all
for variance in ("fixed_large", "fixed_small"):
    dv = dl.GaussianDiffusion(s, variance=variance, decoder="gaussian")
    var, logvar = dv.model_variance(x_t, t)
    kl = dl.normal_kl(post.mean, post.log_variance, mu_theta, logvar).sum(dim=1)
    C = 0.5 * (logvar - post.log_variance + post.variance / var - 1).sum(dim=1)
    eq8 = ((post.mean - mu_theta) ** 2).sum(dim=1) / (2 * var[:, 0]) + C
    lo, hi = (f"{v:.2e}" if abs(v) >= 1e-12 else "0" for v in (C.min().item(), C.max().item()))
    print(f"sigma_t^2 = {'beta_t ' if variance == 'fixed_large' else 'beta~_t'}: KL vs Eq. 8, max relative diff "
          f"{below(rel_diff(kl, eq8))}; C_t ranges over [{lo}, {hi}] (up to round-off)")

# %% [markdown]
# ## 3. Substituting $x_t(x_0, \epsilon)$ (Eqs. 9-10)
#
# Reparameterize Eq. 4 as $x_t(x_0, \epsilon) = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ with $\epsilon \sim \mathcal N(0, I)$,
# and solve it for $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}$. Put that into Eq. 7's
# $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1 - \bar\alpha_t} x_0 + \frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t$, using
# $\sqrt{\bar\alpha_{t-1}} / \sqrt{\bar\alpha_t} = 1 / \sqrt{\alpha_t}$:
# $$\tilde\mu_t = \frac{\beta_t}{\sqrt{\alpha_t}(1 - \bar\alpha_t)}\big(x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon\big) + \frac{\sqrt{\alpha_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t .$$
# The coefficient of $x_t$ is $\frac{\beta_t + \alpha_t(1 - \bar\alpha_{t-1})}{\sqrt{\alpha_t}(1 - \bar\alpha_t)} = \frac{1 - \bar\alpha_t}{\sqrt{\alpha_t}(1 - \bar\alpha_t)} = \frac{1}{\sqrt{\alpha_t}}$
# (the same identity as in chapter 04), and that of $\epsilon$ is $-\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1 - \bar\alpha_t}}$. So
# $$\tilde\mu_t\big(x_t(x_0, \epsilon), x_0\big) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t(x_0, \epsilon) - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\Big),$$
# and Eq. 8 becomes **DDPM Eq. 10** (Eq. 9 is the intermediate step with $\tilde\mu_t(x_t(x_0, \epsilon), \frac{1}{\sqrt{\bar\alpha_t}}(x_t(x_0, \epsilon) - \sqrt{1 - \bar\alpha_t}\,\epsilon))$ written out):
# $$L_{t-1} - C = \mathbb E_{x_0, \epsilon}\Big[\frac{1}{2\sigma_t^2}\Big\|\frac{1}{\sqrt{\alpha_t}}\Big(x_t(x_0, \epsilon) - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\Big) - \mu_\theta(x_t(x_0, \epsilon), t)\Big\|^2\Big].$$
# In code, `d.mean_from_eps(x_t, t, eps)` is the right-hand form; against `q_posterior` (Eq. 7) at the same $x_0$ and $\epsilon$:

# %%
eps = torch.randn(B, 2, generator=g, dtype=torch.float64)
t = torch.randint(1, s.T + 1, (B,), generator=g)
x_t = d.q_sample(x0, t, eps)  # Eq. 9's x_t(x_0, eps)
mu_tilde = d.q_posterior(x0, x_t, t).mean  # Eq. 7, from x_0 and x_t
mu_eps = d.mean_from_eps(x_t, t, eps)  # Eq. 10's form, from x_t and eps
print(f"Eq. 7 with x_0 vs 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps): max relative diff "
      f"{below(rel_diff(mu_eps, mu_tilde))} over {B} draws, t = 1..{s.T}")

# %% [markdown]
# ## 4. $\mu_\theta$ through $\epsilon_\theta$ (Eq. 11) and the sampling step
#
# Eq. 10 says what $\mu_\theta$ must predict given $x_t$: $\frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon\big)$. The
# network sees $x_t$, so the only unknown is $\epsilon$, and DDPM builds $\mu_\theta$ in exactly that form, with a network
# $\epsilon_\theta$ that predicts the noise from $x_t$ (**DDPM Eq. 11**):
# $$\mu_\theta(x_t, t) = \tilde\mu_t\Big(x_t, \frac{1}{\sqrt{\bar\alpha_t}}\big(x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t)\big)\Big)
#   = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big).$$
# Sampling $x_{t-1} \sim p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)$ is then, reparameterized (**Algorithm 2, line 4**),
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z, \qquad z \sim \mathcal N(0, I),$$
# with $z = 0$ at $t = 1$ (the last step returns the mean).
#
# In `ddpm_lib`, a `GaussianDiffusion(..., prediction="eps")` reads the network's output as $\epsilon_\theta$:
# `p_mean_variance` forms the mean through the predicted $x_0$ and Eq. 7 (the first form above), `mean_from_eps`
# by Eq. 11 (the second), and `p_sample` takes Algorithm 2's step. All three, against the formula:

# %%
eps_theta = torch.randn(B, 2, generator=g, dtype=torch.float64)  # any network output
z = torch.randn(B, 2, generator=g, dtype=torch.float64)
tab = lambda table: table[t].to(x_t.dtype)[:, None]  # noqa: E731  (a table at t, shaped (B, 1) to broadcast)
by_hand = (x_t - (1 - tab(s.alphas)) / tab(s.sqrt_one_minus_alpha_bars) * eps_theta) / tab(s.sqrt_alphas)
sigma = torch.where(t[:, None] > 1, tab(s.betas).sqrt(), torch.zeros(()))  # sigma_t = sqrt(beta_t), z = 0 at t = 1
p = d.p_mean_variance(eps_theta, x_t, t)
print(f"p_mean_variance (through x_0 and Eq. 7) vs Eq. 11: max relative diff {below(rel_diff(p['mean'], by_hand))}")
print(f"mean_from_eps vs Eq. 11:                            max relative diff "
      f"{below(rel_diff(d.mean_from_eps(x_t, t, eps_theta), by_hand))}")
print(f"p_sample vs Algorithm 2, line 4:                    max relative diff "
      f"{below(rel_diff(d.p_sample(eps_theta, x_t, t, z), by_hand + sigma * z))}")

# %% [markdown]
# ### A bridge to the score view
#
# The *score* of a density $p$ is the gradient of its logarithm, $\nabla_x \log p(x)$: a vector field that points
# uphill in probability, towards where the data are likely (the arrows of the opening picture). For the
# forward process it is known in closed form: $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$ has the score
# $-(x_t - \sqrt{\bar\alpha_t}\, x_0) / (1 - \bar\alpha_t) = -\epsilon / \sqrt{1 - \bar\alpha_t}$. So the noise that training asks for is, exactly,
# $$\epsilon = -\sqrt{1 - \bar\alpha_t}\;\nabla_{x_t} \log q(x_t \mid x_0).$$
# The network sees only $x_t$, and the best it can do in mean square is $\mathbb E[\epsilon \mid x_t]$; averaging the identity
# over $x_0$ given $x_t$ turns the score of $q(x_t \mid x_0)$ into that of the marginal $q(x_t)$:
# $\mathbb E[\epsilon \mid x_t] = -\sqrt{1 - \bar\alpha_t}\,\nabla_{x_t} \log q(x_t)$ (Vincent 2011). Predicting the noise is therefore learning
# the score of the noised data at every noise level, up to the factor $-\sqrt{1 - \bar\alpha_t}$: *denoising score
# matching*. And Algorithm 2's step, a move along $-\epsilon_\theta$ (uphill in $\log q$) plus fresh Gaussian noise, has the
# form of *Langevin dynamics*, a sampler that follows the score of a density with added noise; DDPM (Sec. 3.2) notes
# the resemblance, and score-based models (Song & Ermon 2019) start from it. Both identities, checked: the
# first by automatic differentiation on the swiss roll; the second on Gaussian data $x_0 \sim \mathcal N(0.3, 0.5^2)$,
# where both sides are known in closed form (`dl.GaussianData`).

# %%
g_score = torch.Generator().manual_seed(5)
t_s = torch.randint(1, s.T + 1, (B,), generator=g_score)
sab, s1ab = s.sqrt_alpha_bars[t_s][:, None], s.sqrt_one_minus_alpha_bars[t_s][:, None]
x0_s = dl.swiss_roll(B, generator=g_score).double()
eps_s = torch.randn(B, 2, generator=g_score, dtype=torch.float64)
xt_s = (sab * x0_s + s1ab * eps_s).requires_grad_(True)
log_q = dl.gaussian_log_likelihood(xt_s, sab * x0_s, 2 * s1ab.log())  # log q(x_t | x_0), per coordinate
score = torch.autograd.grad(log_q.sum(), xt_s)[0]
print(f"eps vs -sqrt(1 - abar_t) * score of q(x_t | x_0) (swiss roll):  max relative diff "
      f"{below(rel_diff(-s1ab * score, eps_s))}")
gauss = dl.GaussianData(dim=2, mean=0.3, std=0.5)
xt_g = (sab * gauss.sample(B, generator=g_score, dtype=torch.float64) + s1ab * eps_s).requires_grad_(True)
score_g = torch.autograd.grad(gauss.marginal_log_prob(xt_g, s.alpha_bars[t_s]).sum(), xt_g)[0]
print(f"E[eps | x_t] vs -sqrt(1 - abar_t) * score of q(x_t) (Gaussian data): max relative diff "
      f"{below(rel_diff(-s1ab * score_g, gauss.optimal_eps(xt_g.detach(), s.alpha_bars[t_s])))}")

# %% [markdown]
# ## 5. The loss on $\epsilon$ (Eq. 12), and dropping its weight (Eq. 14)
#
# With Eq. 11, $\tilde\mu_t - \mu_\theta = \frac{1}{\sqrt{\alpha_t}}\frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}(\epsilon_\theta - \epsilon)$: the $x_t$ terms cancel. Squared and
# divided by $2\sigma_t^2$, Eq. 10 becomes **DDPM Eq. 12**:
# $$L_{t-1} - C = \mathbb E_{x_0, \epsilon}\Big[\underbrace{\frac{\beta_t^2}{2\sigma_t^2\alpha_t(1 - \bar\alpha_t)}}_{w_t}
#   \big\|\epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon, t\big)\big\|^2\Big].$$
# Training $\mu_\theta$ by the bound is training $\epsilon_\theta$ to predict the noise, weighted by $w_t$ (denoising score
# matching). `d.eps_mse_weight(t)` is $w_t$. The identity is exact for *any* $\epsilon_\theta$; below, an untrained
# network, example by example:

# %%
torch.manual_seed(0)
untrained = dl.MLP(data_dim=2, hidden=64, layers=2).double()
with torch.no_grad():
    out = untrained(x_t, t)
t2 = t > 1  # L_{t-1} is a KL for t >= 2
for variance in ("fixed_large", "fixed_small"):
    dv = dl.GaussianDiffusion(s, prediction="eps", variance=variance, decoder="gaussian")
    post = dv.q_posterior(x0, x_t, t)
    pm = dv.p_mean_variance(out, x_t, t)
    kl = dl.normal_kl(post.mean, post.log_variance, pm["mean"], pm["log_variance"]).sum(dim=1)
    C = 0.5 * (pm["log_variance"] - post.log_variance + post.variance / pm["variance"] - 1).sum(dim=1)
    eq12 = dv.eps_mse_weight(t) * ((eps - out) ** 2).sum(dim=1)
    print(f"sigma_t^2 = {'beta_t ' if variance == 'fixed_large' else 'beta~_t'}: KL - C vs w_t ||eps - eps_theta||^2, "
          f"max relative diff {below(rel_diff((kl - C)[t2], eq12[t2]))} over {int(t2.sum())} draws")

# %% [markdown]
# **The same weight in $x_0$ space: a drop in the signal-to-noise ratio.** A noise prediction is also a prediction of
# the data: solving $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$ for $x_0$ with $\epsilon_\theta$ in place of $\epsilon$ gives
# $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$ (`p_mean_variance` returns it as `pred_x0`). Each term of the
# bound is then also a weighted squared error of the predicted data, $L_{t-1} - C = \lambda_t \|x_0 - \hat x_0\|^2$, and with
# $\sigma_t^2 = \tilde\beta_t$ its weight takes a simple form in the signal-to-noise ratio
# $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$ of chapter 03 (the schedule's table `s.snr`):
# $$\lambda_t = \tfrac12\big(\mathrm{SNR}(t-1) - \mathrm{SNR}(t)\big).$$
# A step weighs in the bound as much as the signal-to-noise ratio drops across it. Summed over $t = 2, \dots, T$ the
# weights telescope to $\tfrac12(\mathrm{SNR}(1) - \mathrm{SNR}(T))$, whatever the schedule does in between (Kingma et al. 2021
# build on this). Exercise 6.3 asks you to derive $\lambda_t$ for any fixed
# $\sigma_t^2$. The check, with the same untrained network and draws as above:

# %%
d_small = dl.GaussianDiffusion(s, prediction="eps", variance="fixed_small", decoder="gaussian")
post = d_small.q_posterior(x0, x_t, t)
pm = d_small.p_mean_variance(out, x_t, t)
kl = dl.normal_kl(post.mean, post.log_variance, pm["mean"], pm["log_variance"]).sum(dim=1)  # C_t = 0 for beta~_t
x0_sq_err = ((x0 - pm["pred_x0"]) ** 2).sum(dim=1)
lam = 0.5 * (s.snr[(t - 1).clamp(min=1)] - s.snr[t])  # t >= 2 only: SNR(0) is infinite
print(f"sigma_t^2 = beta~_t: KL vs 1/2 (SNR(t-1) - SNR(t)) ||x_0 - x0_hat||^2, max relative diff "
      f"{below(rel_diff(kl[t2], (lam * x0_sq_err)[t2]))} over {int(t2.sum())} draws")

# %% [markdown]
# **$L_\text{simple}$ (DDPM Eq. 14).** DDPM then drops $w_t$ and trains on
# $$L_\text{simple}(\theta) = \mathbb E_{t, x_0, \epsilon}\Big[\big\|\epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon, t\big)\big\|^2\Big],
#   \qquad t \sim \mathrm{Uniform}\{1, \dots, T\},$$
# also for $t = 1$ (where it stands in for $L_0$), and without $L_T$ (a constant). The bound gives term $t$ the
# weight $w_t$; $L_\text{simple}$ gives every $t$ the same weight. Below, $w_t$ in log scale for both
# choices of $\sigma_t^2$ (for $\tilde\beta_t$ at $t = 1$ the library uses $\tilde\beta_2$, since $\tilde\beta_1 = 0$), and the share of the total
# weight that the first 10% of the steps get under each objective.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for ax, (name, sch) in zip(axes, (("DDPM's schedule, T = 1000", ddpm), ("swiss-roll schedule, T = 200", s))):
    ts = torch.arange(1, sch.T + 1)
    for variance, label in (("fixed_large", r"$\sigma_t^2 = \beta_t$"), ("fixed_small", r"$\sigma_t^2 = \tilde\beta_t$")):
        w = dl.GaussianDiffusion(sch, variance=variance).eps_mse_weight(ts)
        ax.semilogy(ts, w, label=f"bound: $w_t$, {label}")
        share = (w[: sch.T // 10].sum() / w.sum()).item()
        print(f"{name}, {variance}: w_1 = {w[0].item():.3f}, w_T = {w[-1].item():.2e}, w_1 / w_T = "
              f"{(w[0] / w[-1]).item():.0f}; the first 10% of the steps get {100 * share:.0f}% of the bound's weight "
              f"(10% under L_simple)")
    ax.axhline(1.0, color="k", ls="--", lw=1, label=r"$L_\mathrm{simple}$: 1 for every $t$")
    ax.set(xlabel="t", ylabel="weight of $\\|\\epsilon - \\epsilon_\\theta\\|^2$ in term $t$", title=name)
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The bound's weight $w_t$ is largest at the first steps, falls by one to two orders of magnitude within the first
# third of the chain, and rises again towards $t = T$. $L_\text{simple}$ flattens it: relative to the bound it
# down-weights the small-$t$ terms and up-weights the large-$t$ ones. In the paper's words, the small-$t$ terms "train
# the network to denoise data with very small amounts of noise, so it is beneficial to down-weight them so that the
# network can focus on more difficult denoising tasks at larger $t$". The paper reports better samples, at the price
# of a worse bound in bits (chapter 11 measures both); Section 7 shows the reweighting on a trained network.
#
# ## 6. Algorithm 1, live on the swiss roll
#
# > **Algorithm 1** (Training). **repeat**: $x_0 \sim q(x_0)$; $t \sim \mathrm{Uniform}(\{1, \dots, T\})$; $\epsilon \sim \mathcal N(0, I)$;
# > take a gradient step on $\nabla_\theta \|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon, t)\|^2$; **until** converged.
#
# The data: Sohl-Dickstein's swiss roll (`dl.swiss_roll`, fresh points every step). The network: `dl.MLP`, as in the
# shipped model and `configs/swiss_roll.toml` (3 hidden layers of 128, the sinusoidal time embedding added in each).
# The schedule: linear, $T = 200$, $\beta_t$ from $10^{-4}$ to $0.1$. First, one batch of Algorithm 1 line by line,
# against the library's `training_loss` that the loop below calls:

# %%
torch.manual_seed(0)  # the network's initial weights
model = dl.MLP(data_dim=2, hidden=128, layers=3)
print(f"MLP: {dl.count_parameters(model):,} parameters")

g_train = torch.Generator().manual_seed(1)
x0 = dl.swiss_roll(128, generator=g_train)  # line 2: x_0 ~ q(x_0)
t = d.sample_t(128, generator=g_train)  # line 3: t ~ Uniform{1..T}
eps = torch.randn(x0.shape, generator=g_train)  # line 4: eps ~ N(0, I)
x_t = s.sqrt_alpha_bars[t].float()[:, None] * x0 + s.sqrt_one_minus_alpha_bars[t].float()[:, None] * eps
by_lines = ((eps - model(x_t, t)) ** 2).mean(dim=1)  # line 5's loss (the mean over dimensions: a constant factor)
print(f"Algorithm 1 by lines vs d.training_loss: max |diff| "
      f"{below((by_lines - d.training_loss(model, x0, t, eps)).abs().max().item(), 1e-6)}")

# %% [markdown]
# Now the loop: 2,500 steps of batch 512 with Adam, the learning rate decaying linearly from $10^{-2}$ to 0 (the
# last, small steps average out the noise of the high-rate ones), and an exponential moving average of the weights
# (EMA, decay 0.995: roughly the mean of the last 200 steps' weights; chapter 09), which we sample from. With these
# seeds, 2,000 steps left the spiral smeared and its inner arm missing, and 3,000 scored no better than 2,500. It
# prints the mean loss over windows of 500 steps.

# %%
steps, batch = 2500, 512
threads = torch.get_num_threads()
torch.set_num_threads(1)  # a small MLP: one thread is faster than two that wait for each other (12 vs 70+ ms a step)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
ema = copy.deepcopy(model).requires_grad_(False)
losses = []
for step in range(1, steps + 1):
    x0 = dl.swiss_roll(batch, generator=g_train)
    loss = d.training_loss(model, x0, generator=g_train).mean()  # lines 2-5: L_simple on a fresh batch
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    ema_update(ema, model, 0.995)
    losses.append(loss.item())
    if step % 500 == 0:
        print(f"step {step:5d}: mean L_simple over the last 500 steps {sum(losses[-500:]) / 500:.3f}")
model = ema.eval()  # from here on "our network" is the EMA of the weights, and it is only evaluated
torch.set_num_threads(threads)
print(f"trained {steps} steps, {steps * batch:,} swiss-roll points seen")

# %% [markdown]
# ## 7. Algorithm 2, live, and the samples measured
#
# > **Algorithm 2** (Sampling). $x_T \sim \mathcal N(0, I)$; **for** $t = T, \dots, 1$: $z \sim \mathcal N(0, I)$ if $t > 1$, else $z = 0$;
# > $x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta(x_t, t)\big) + \sigma_t z$; **end for**; **return** $x_0$.
#
# Written out with `p_sample` for the step (it sets $z = 0$ at $t = 1$ itself), and recording a few intermediate $x_t$:


# %%
@torch.no_grad()
def algorithm2(model, diffusion, n, seed, record=()):
    """DDPM Algorithm 2 for n 2-D points; returns x_0 and {t: x_t} for the t in ``record``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen)  # line 1: x_T ~ N(0, I)
    kept = {diffusion.T: x}
    for tt in range(diffusion.T, 0, -1):  # line 2
        t = torch.full((n,), tt)
        z = torch.randn(x.shape, generator=gen)  # line 3 (p_sample uses z = 0 at t = 1)
        x = diffusion.p_sample(model(x, t), x, t, z)  # line 4
        if tt - 1 in record:
            kept[tt - 1] = x
    return x, kept


n = 4000  # as many points as the registry's measurement of the shipped model (below)
samples, kept = algorithm2(model, d, n, seed=2, record=(50, 20, 5, 0))
check_small, _ = algorithm2(model, d, 100, seed=3)
library = d.sample(model, (100, 2), generator=torch.Generator().manual_seed(3), progress=False)
print(f"Algorithm 2 written out vs d.sample with the same seed: max |diff| {below((check_small - library).abs().max().item(), 1e-6)}")

# %% [markdown]
# **How good are the samples?** We measure the sliced Wasserstein distance (`dl.sliced_wasserstein`: the average,
# over random directions, of the 1-D Wasserstein distance between the projected point sets) to fresh swiss-roll
# points. Two finite samples of one distribution differ, so even a perfect sampler scores above 0;
# `dl.sliced_w1_ratios` divides by the distance between two fresh data sets of the same size, the floor (both
# averaged over 8 pairs of data sets): a ratio of 1 is as good as the data. The floor falls like $1/\sqrt{n}$ and a
# model's systematic errors do not, so an imperfect model's ratio grows with $n$; we measure at $n = 4{,}000$, as the
# registry does for the shipped model. For comparison: the starting noise $x_T$, and the shipped `swiss-roll-mlp` as
# the registry measured it. We also sample our network with $\sigma_t^2 = \tilde\beta_t$: $L_\text{simple}$ never used
# $\sigma_t$, so the same network serves both.

# %%
print(f"shipped model: {shipped.entry['description']}")
same_schedule = torch.allclose(shipped.diffusion.schedule.betas, s.betas, rtol=1e-15, atol=0)  # bits differ by CPU
print(f"  its schedule is ours (to float64 round-off): {same_schedule}; made by: {shipped.entry['command']}")
stored = shipped.entry["metrics"]["points"]  # measured by the command printed with it: the same function, same n
print(f"  measured by: {shipped.entry['metrics']['evaluated_by']}")
samples_small, _ = algorithm2(model, d_small, n, seed=2)
rows = [("starting noise x_T", kept[s.T]), ("our network, sigma_t^2 = beta_t", samples),
        ("our network, sigma_t^2 = beta~_t", samples_small)]
print(f"\n{n} points against fresh swiss-roll points     sliced W1   ratio to the floor")
measured = dl.sliced_w1_ratios([x for _, x in rows])  # the same fresh data sets for every row
for (name, _), r in zip(rows, measured):
    print(f"  {name:<44}{r['w1']:.3f}       {r['ratio']:.1f}")
print(f"  {'shipped swiss-roll-mlp (the registry)':<44}{stored['sliced_w1_samples']:.3f}       "
      f"{stored['w1_ratio']:.1f}   ({stored['n']} samples, seed {stored['sampler']['seed']})")
print(f"  {'fresh data (the floor)':<44}{r['w1_floor']:.3f}       1")

# %% [markdown]
# The picture shows the first 1,000 points of each set (all 4,000 make a solid band), beside 1,000 samples of the
# shipped model drawn with our seeds; those with $\sigma_t^2 = \tilde\beta_t$ look the same as with $\beta_t$ and are left out.

# %%
m = 1000
samples_shipped, _ = algorithm2(shipped.model, shipped.diffusion, m, seed=2)
data_again = dl.swiss_roll(m, generator=torch.Generator().manual_seed(11))
fig, axes = plt.subplots(2, 3, figsize=(10, 7), sharex=True, sharey=True)
panels = [(kept[s.T], f"$x_T$ = noise (t = {s.T})"), (kept[20], "$x_{20}$"), (kept[5], "$x_5$"),
          (data_again, "data (fresh points)"), (samples, r"our network: $x_0$ ($\sigma_t^2 = \beta_t$)"),
          (samples_shipped, "shipped model: $x_0$")]
for ax, (x, title) in zip(axes.flat, panels):
    ax.scatter(x[:m, 0], x[:m, 1], s=2, alpha=0.5, color="C3" if "data" in title else "C0")
    ax.set_title(title)
    ax.set(xlim=(-2.2, 2.2), ylim=(-2.2, 2.2), aspect="equal")
for ax in axes[-1]:
    ax.set_xlabel("$x^{(1)}$")
for ax in axes[:, 0]:
    ax.set_ylabel("$x^{(2)}$")
fig.suptitle(f"Algorithm 2, {m} points each: from noise (top) to samples, against the data (bottom)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Our network draws the spiral with both arms, the inner one included, but its arms are wider than the data's and
# some points fall between them: about 1.4 times the floor with $\sigma_t^2 = \beta_t$, and about the same with
# $\tilde\beta_t$, so the choice of variance matters little here, as in the paper. The shipped model is the same
# network trained longer at a lower learning rate (5,120,000 points seen against our 1,280,000, about five minutes of
# one CPU core), and it comes close to the data: thin arms, few stray points, a ratio of about 1.1.

# %% [markdown]
# **Each $t$'s share of the loss, on the trained network.** The per-$t$ error $\mathbb E\|\epsilon - \epsilon_\theta\|^2$ of our network,
# on fresh data at every $t$, times each objective's weight: what $L_\text{simple}$ minimizes per $t$, and what the
# bound ($w_t$, $\sigma_t^2 = \beta_t$) would, each normalized to sum to 1. In units of $\epsilon$ the
# error is *largest* at small $t$: there $x_t$ is almost $x_0$, and the tiny noise along the data cannot be told apart
# from the data itself (in $x_0$ units it is tiny: these are the easy denoising tasks). So even
# $L_\text{simple}$ spends much of its total on small $t$; the bound would spend even more.

# %%
g_eval = torch.Generator().manual_seed(12)
ts = torch.arange(1, s.T + 1)
x0_eval = dl.swiss_roll(200, generator=g_eval)
with torch.no_grad():
    err = torch.stack([d.training_losses(model, x0_eval, torch.full((200,), tt), generator=g_eval)["mse"].mean()
                       for tt in ts.tolist()]).double() * 2  # the sum over the 2 dimensions
simple_share = err / err.sum()
bound_terms = d.eps_mse_weight(ts) * err
bound_share = bound_terms / bound_terms.sum()
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.semilogy(ts, simple_share, label=r"$L_\mathrm{simple}$: $\|\epsilon - \epsilon_\theta\|^2$ per $t$")
ax.semilogy(ts, bound_share, label=r"bound: $w_t \|\epsilon - \epsilon_\theta\|^2$ per $t$ ($\sigma_t^2 = \beta_t$)")
ax.set(xlabel="t", ylabel="share of the total", title="where each objective puts its weight, for the trained network")
ax.legend()
fig.tight_layout()
plt.show()
q = s.T // 4
print(f"E||eps - eps_theta||^2 at t = 1: {err[0].item():.3f}, t = {s.T // 2}: {err[s.T // 2 - 1].item():.3f}, "
      f"t = {s.T}: {err[-1].item():.3f}")
print(f"share of the first quarter of the steps (t <= {q}): L_simple {100 * simple_share[:q].sum().item():.0f}%, "
      f"the bound {100 * bound_share[:q].sum().item():.0f}%")

# %% [markdown]
# ## 8. Exercises
#
# **Exercise 6.1 (the mean through $\epsilon$, Eq. 11).** Write `mean_from_eps(eps_pred, x_t, t, schedule)`: the mean
# $\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta\big)$ of $p_\theta(x_{t-1} \mid x_t)$, for `eps_pred` and `x_t` of shape
# $(B, \dots)$, `t` a LongTensor $(B,)$ in $1..T$, and `schedule` a `NoiseSchedule` (use `schedule.alphas`, `schedule.alpha_bars`,
# `schedule.betas`, indexed by the paper's $t$).


# %% tags=["solution"]
def mean_from_eps(eps_pred, x_t, t, schedule):
    """mu_theta(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_pred) / sqrt(alpha_t)  (DDPM Eq. 11)."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    alpha = schedule.alphas[t].view(shape)
    abar = schedule.alpha_bars[t].view(shape)
    beta = schedule.betas[t].view(shape)
    return (x_t - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    # END SOLUTION


# %%
checks.check("mean_from_eps", mean_from_eps)


# %% [markdown]
# **Exercise 6.2 (one sampling step, Algorithm 2 line 4).** Write `p_sample_step(eps_pred, x_t, t, schedule, noise)`:
# $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$ with the given `noise` as $z$, $\sigma_t^2 = \beta_t$ (or $\tilde\beta_t$; the checker accepts
# both), and no noise where $t = 1$. You may call your `mean_from_eps`.


# %% tags=["solution"]
def p_sample_step(eps_pred, x_t, t, schedule, noise):
    """x_{t-1} = mu_theta(x_t, t) + sigma_t z, sigma_t^2 = beta_t, z = 0 at t = 1  (DDPM Algorithm 2, line 4)."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    sigma = schedule.betas[t].sqrt().view(shape)
    nonzero = (t > 1).to(x_t.dtype).view(shape)  # the last step (t = 1) adds no noise
    return mean_from_eps(eps_pred, x_t, t, schedule) + nonzero * sigma * noise
    # END SOLUTION


# %%
checks.check("p_sample_step", p_sample_step)


# %% [markdown]
# What the checker says when the last step adds noise too:

# %%
def p_sample_step_noisy_end(eps_pred, x_t, t, schedule, noise):
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    alpha, abar, beta = (table[t].view(shape) for table in (schedule.alphas, schedule.alpha_bars, schedule.betas))
    mean = (x_t - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    return mean + beta.sqrt() * noise  # sigma_t z at every t, also at t = 1


checks.check("p_sample_step", p_sample_step_noisy_end)

# %% [markdown]
# **Exercise 6.3 (derive: the weight in $x_0$ space).** Section 5 stated, and checked numerically, that with
# $\sigma_t^2 = \tilde\beta_t$ the bound's term is $L_{t-1} - C = \frac12\big(\mathrm{SNR}(t-1) - \mathrm{SNR}(t)\big)\,\|x_0 - \hat x_0\|^2$, where
# $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$. Derive the weight $\lambda_t$ in
# $L_{t-1} - C = \lambda_t\|x_0 - \hat x_0\|^2$ for *any* fixed variance $\sigma_t^2$, and write `x0_mse_weight(t, schedule, sigma2)`
# returning it for `t` a LongTensor $(B,)$ in $2..T$ and `sigma2` the $(B,)$ variances at those $t$. Two routes work:
# write $\epsilon - \epsilon_\theta$ in terms of $x_0 - \hat x_0$ (both come from the same $x_t$) and use Eq. 12; or write
# $\tilde\mu_t - \mu_\theta$ through Eq. 7, since $\mu_\theta$ is Eq. 7 with $\hat x_0$ in place of $x_0$, and use Eq. 8. Then check that your
# formula gives the SNR form for $\tilde\beta_t$, and decide: at small $t$, which of the two variances of section 1 puts
# more weight on an error in $x_0$, and by what factor at $t = 2$ for the swiss-roll schedule (section 1 printed
# $\tilde\beta_2 / \beta_2$)?


# %% tags=["solution"]
def x0_mse_weight(t, schedule, sigma2):
    """lambda_t with L_(t-1) - C = lambda_t ||x_0 - x0_hat||^2 for a fixed reverse variance sigma2 (t >= 2)."""
    # BEGIN SOLUTION
    # mu~_t - mu_theta = c_t (x_0 - x0_hat) with c_t = sqrt(abar_(t-1)) beta_t / (1 - abar_t), Eq. 7's coefficient
    c = schedule.alpha_bars[t - 1].sqrt() * schedule.betas[t] / (1 - schedule.alpha_bars[t])
    return c**2 / (2 * sigma2)
    # END SOLUTION


# %%
checks.check("x0_mse_weight", x0_mse_weight)

# %% [markdown]
# ## Summary
#
# - With $\beta_t$ fixed, $L_T$ is a constant. DDPM fixes $\sigma_t^2$ too: $\beta_t$ is optimal for $x_0 \sim \mathcal N(0, I)$,
#   $\tilde\beta_t$ for $x_0$ a single point, and the two differ only at small $t$; sampling with either gave similar scores.
# - With fixed variances, $L_{t-1} = \mathbb E\big[\frac{1}{2\sigma_t^2}\|\tilde\mu_t - \mu_\theta\|^2\big] + C$ (Eq. 8). Substituting
#   $x_t(x_0, \epsilon)$ gives $\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon)$ (Eq. 10), hence the parameterization
#   $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta)$ (Eq. 11) and the step
#   $x_{t-1} = \mu_\theta + \sigma_t z$ (Algorithm 2).
# - Then $L_{t-1} - C = w_t\,\mathbb E\|\epsilon - \epsilon_\theta\|^2$ with $w_t = \frac{\beta_t^2}{2\sigma_t^2\alpha_t(1 - \bar\alpha_t)}$ (Eq. 12), exactly, for any
#   $\epsilon_\theta$. $L_\text{simple}$ (Eq. 14) drops $w_t$: it shifts weight from the easy small-$t$ terms to the harder large-$t$ ones.
# - In $x_0$ space, with $\sigma_t^2 = \tilde\beta_t$, the weight is $\frac12(\mathrm{SNR}(t-1) - \mathrm{SNR}(t))$: the drop of the signal-to-noise ratio
#   across the step. The noise is a scaled score, $\epsilon = -\sqrt{1 - \bar\alpha_t}\,\nabla_{x_t}\log q(x_t \mid x_0)$, so predicting it is denoising
#   score matching, and Algorithm 2 resembles Langevin dynamics.
# - Algorithm 1 trained an MLP on the swiss roll in 2,500 CPU steps; Algorithm 2 turned noise into a spiral at about
#   1.4 times the floor in sliced Wasserstein distance at 4,000 points (the shipped model, trained longer: about 1.1).
#
# **Next:** chapter 07 handles the one term left out here, $L_0 = -\log p_\theta(x_0 \mid x_1)$, for 8-bit images: the
# discretized decoder, the noiseless last step, and the whole bound in bits per dimension.
