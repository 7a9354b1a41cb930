# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · From a VAE to a diffusion model
#
# The study notes open with one sentence: *"VAE中的encoder改成固定的添加高斯噪声的过程"*, "replace the
# VAE's encoder by a fixed process that adds Gaussian noise". This chapter takes that sentence apart.
# We derive the evidence lower bound (ELBO) of a variational autoencoder twice, check it on a model
# where every quantity has a closed form, and then swap the learned encoder for $T$ fixed noising
# steps: the result is the diffusion model of Sohl-Dickstein et al. (2015) and Ho et al. (2020, DDPM).
#
# **Learning goals.** After this chapter you can
# - derive the VAE bound $\log p_\theta(x) \ge \mathbb E_{q}[\log p_\theta(x \mid z)] - D_{KL}(q(z \mid x) \,\|\, p(z))$
#   by Jensen's inequality, and again as $\log p_\theta(x)$ minus the gap $D_{KL}(q(z \mid x) \,\|\, p_\theta(z \mid x))$;
# - check the bound and its gap numerically on a 1-D linear-Gaussian model (closed form against Monte Carlo);
# - describe a diffusion model as a VAE with $T$ latent layers $x_1, \dots, x_T$ and a fixed encoder,
#   and say what is learned and what is fixed;
# - write the shape of the hierarchical bound (DDPM Eq. 3), which chapters 02 and 04 take apart;
# - run the forward process on the swiss roll and on Fashion-MNIST and watch it reach $\mathcal N(0, I)$.
#
# **CPU time:** about 15 s on a 2-core CPU, most of it importing PyTorch and drawing (budget: 45 s).

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
# ## 1. The VAE and its bound
#
# A latent-variable model draws a latent $z \sim p(z)$, then data $x \sim p_\theta(x \mid z)$ (the
# *decoder*). Its likelihood is an integral over the latent,
# $$p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz ,$$
# which has no closed form once the decoder is a neural network, so maximum likelihood cannot use
# $\log p_\theta(x)$ directly. A VAE brings in a second density, the *encoder* $q_\phi(z \mid x)$, any
# distribution over $z$ that we can sample and evaluate, and bounds $\log p_\theta(x)$ from below with it.
#
# **Route 1: Jensen's inequality.** Multiply and divide by $q_\phi(z \mid x)$ inside the integral, so that
# it becomes an expectation under $q_\phi$, and use that $\log$ is concave ($\log \mathbb E[w] \ge \mathbb E[\log w]$):
# $$
# \begin{aligned}
# \log p_\theta(x)
# &= \log \int q_\phi(z \mid x)\, \frac{p_\theta(x \mid z)\, p(z)}{q_\phi(z \mid x)}\, dz
#  = \log \mathbb E_{q_\phi(z \mid x)}\!\left[\frac{p_\theta(x, z)}{q_\phi(z \mid x)}\right] \\
# &\ge \mathbb E_{q_\phi(z \mid x)}\!\left[\log \frac{p_\theta(x \mid z)\, p(z)}{q_\phi(z \mid x)}\right]
#  = \underbrace{\mathbb E_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]}_{\text{reconstruction}}
#  - \underbrace{D_{KL}\big(q_\phi(z \mid x) \,\|\, p(z)\big)}_{\text{stay close to the prior}}
#  =: \mathrm{ELBO}(x).
# \end{aligned}
# $$
#
# **Route 2: the gap is a KL divergence.** $\log p_\theta(x)$ does not depend on $z$, so it equals its own
# average under $q_\phi(z \mid x)$; then write $p_\theta(x) = p_\theta(x, z) / p_\theta(z \mid x)$ (Bayes' rule)
# and multiply and divide by $q_\phi(z \mid x)$:
# $$
# \begin{aligned}
# \log p_\theta(x)
# &= \mathbb E_{q_\phi(z \mid x)}\!\left[\log \frac{p_\theta(x, z)}{p_\theta(z \mid x)}\right]
#  = \mathbb E_{q_\phi(z \mid x)}\!\left[\log \frac{p_\theta(x, z)}{q_\phi(z \mid x)}\right]
#  + \mathbb E_{q_\phi(z \mid x)}\!\left[\log \frac{q_\phi(z \mid x)}{p_\theta(z \mid x)}\right] \\
# &= \mathrm{ELBO}(x) + D_{KL}\big(q_\phi(z \mid x) \,\|\, p_\theta(z \mid x)\big) .
# \end{aligned}
# $$
# A KL divergence is never negative, so this is the same bound, and now we know Jensen's gap exactly: it is
# how far the encoder is from the true posterior $p_\theta(z \mid x)$. The bound is tight exactly when
# $q_\phi(z \mid x) = p_\theta(z \mid x)$. Training a VAE maximizes the ELBO over $\theta$ and $\phi$ together:
# each step either raises $\log p_\theta(x)$ or shrinks the gap.
#
# ### A model where everything is known
#
# Take one latent dimension and a linear-Gaussian decoder:
# $$p(z) = \mathcal N(0, 1), \qquad p_\theta(x \mid z) = \mathcal N(w z + b,\ \sigma^2), \qquad
#   q_\phi(z \mid x) = \mathcal N(m,\ s^2).$$
# Then $x = w z + b + \sigma \epsilon$ is a sum of independent Gaussians, so
# $p_\theta(x) = \mathcal N(b,\ w^2 + \sigma^2)$, and Bayes' rule for two Gaussians gives the posterior
# $$p_\theta(z \mid x) = \mathcal N\!\left(\frac{w (x - b)}{w^2 + \sigma^2},\ \frac{\sigma^2}{w^2 + \sigma^2}\right).$$
# Both terms of the ELBO have closed forms. With $z = m + s \epsilon$,
# $\mathbb E_q[(x - w z - b)^2] = (x - w m - b)^2 + w^2 s^2$, so
# $$\mathbb E_q[\log p_\theta(x \mid z)] = \log \mathcal N(x;\ w m + b,\ \sigma^2) - \frac{w^2 s^2}{2 \sigma^2},
#   \qquad D_{KL}(q \,\|\, p(z)) = \tfrac12\big(m^2 + s^2 - 1 - \log s^2\big).$$
#
# In code, `dl.gaussian_log_likelihood(x, mean, log_var)` is $\log \mathcal N(x; \text{mean}, e^{\text{log\_var}})$
# and `dl.normal_kl(m1, logv1, m2, logv2)` is the KL divergence between two Gaussians, the same function
# that later computes every term of DDPM's bound.

# %%
x = torch.tensor(2.0, dtype=torch.float64)  # one observation
w, b, sigma2 = 1.5, 0.3, 0.5  # the decoder p(x | z) = N(w z + b, sigma2)
m, s2 = torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)  # an encoder q(z | x) = N(m, s2)
zero = torch.zeros((), dtype=torch.float64)


def log_evidence(x):
    """log p(x) = log N(x; b, w^2 + sigma2): the integral over z, in closed form."""
    return dl.gaussian_log_likelihood(x, b, math.log(w**2 + sigma2))


def true_posterior(x):
    """p(z | x) = N(w (x - b) / (w^2 + sigma2), sigma2 / (w^2 + sigma2)) (Bayes' rule)."""
    return w * (x - b) / (w**2 + sigma2), torch.as_tensor(sigma2 / (w**2 + sigma2), dtype=torch.float64)


def elbo_closed_form(x, m, s2):
    """E_q[log p(x|z)] - KL(q(z|x) || p(z)) for q = N(m, s2)."""
    recon = dl.gaussian_log_likelihood(x, w * m + b, math.log(sigma2)) - w**2 * s2 / (2 * sigma2)
    return recon - dl.normal_kl(m, s2.log(), zero, zero)


# Monte Carlo: draw z = m + s eps from the encoder (the reparameterization) and average log p(x, z) / q(z | x)
g = torch.Generator().manual_seed(0)
n = 200_000
z = m + s2.sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
log_w = (dl.gaussian_log_likelihood(x, w * z + b, math.log(sigma2))  # log p(x | z)
         + dl.gaussian_log_likelihood(z, 0.0, 0.0)  # + log p(z)
         - dl.gaussian_log_likelihood(z, m, s2.log()))  # - log q(z | x)
elbo_mc, elbo_se = log_w.mean().item(), (log_w.std() / math.sqrt(n)).item()

elbo = elbo_closed_form(x, m, s2).item()
log_px = log_evidence(x).item()
post_mean, post_var = true_posterior(x)
gap_kl = dl.normal_kl(m, s2.log(), post_mean, post_var.log()).item()
print(f"log p(x) = {log_px:.4f}   (closed form, N(x; b, w^2 + sigma^2))")
print(f"ELBO closed form {elbo:.4f} vs Monte Carlo {elbo_mc:.4f}: |diff| {abs(elbo - elbo_mc):.4f} "
      f"(3 sigma of MC error {3 * elbo_se:.4f})")
print(f"gap log p(x) - ELBO = {log_px - elbo:.6f}, KL(q(z|x) || p(z|x)) = {gap_kl:.6f}: "
      f"|diff| {below(log_px - elbo - gap_kl)}")

# with the true posterior as the encoder, the bound is tight and every sample gives the same log-weight
z_post = post_mean + post_var.sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
log_w_post = (dl.gaussian_log_likelihood(x, w * z_post + b, math.log(sigma2))
              + dl.gaussian_log_likelihood(z_post, 0.0, 0.0)
              - dl.gaussian_log_likelihood(z_post, post_mean, post_var.log()))
print(f"encoder = true posterior: ELBO {elbo_closed_form(x, post_mean, post_var).item():.4f} = log p(x); "
      f"every sample's log p(x, z)/q(z|x) equals log p(x): max |diff| {below((log_w_post - log_px).abs().max().item())}")

# Jensen: the average of the weights estimates p(x) itself (importance sampling); the average of their log is the ELBO
log_mean_w = (torch.logsumexp(log_w, 0) - math.log(n)).item()
print(f"log E_q[p(x,z)/q(z|x)] (MC) = {log_mean_w:.4f} ~ log p(x) = {log_px:.4f};  "
      f"E_q[log p(x,z)/q(z|x)] = {elbo_mc:.4f} = ELBO < log p(x)")

# %% [markdown]
# The picture shows both routes at once. On the left, the encoder $q(z \mid x)$ against the true
# posterior $p(z \mid x)$; on the right, the ELBO as we move the encoder's mean $m$ for a few variances $s^2$.
# Every curve stays below $\log p(x)$ and touches it only at $m$ and $s^2$ of the true posterior, where the
# KL gap is zero.

# %%
zs = torch.linspace(-1.5, 3.0, 400, dtype=torch.float64)
ms = torch.linspace(-1.0, 2.5, 200, dtype=torch.float64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), width_ratios=[1, 1.25])
ax1.plot(zs, dl.gaussian_log_likelihood(zs, post_mean, post_var.log()).exp(), label=r"$p(z \mid x)$, true posterior")
ax1.plot(zs, dl.gaussian_log_likelihood(zs, m, s2.log()).exp(), label=r"$q(z \mid x) = \mathcal{N}(0.5, 0.5)$")
ax1.plot(zs, dl.gaussian_log_likelihood(zs, 0.0, 0.0).exp(), c="grey", ls=":", label=r"$p(z)$, prior")
ax1.set(xlabel="z", ylabel="density", ylim=(0, 1.45), title=f"x = {x.item():.1f}")
ax1.legend(loc="upper left")
for v in (0.05, post_var.item(), 0.5, 1.0):
    vv = torch.tensor(v, dtype=torch.float64)
    ax2.plot(ms, elbo_closed_form(x, ms, vv), label=f"$s^2$ = {v:.2f}" + (" (posterior)" if v == post_var.item() else ""))
ax2.axhline(log_px, c="k", lw=1, ls="--", label=r"$\log p(x)$")
ax2.axvline(post_mean.item(), c="grey", lw=0.8, ls=":")
ax2.set(xlabel="encoder mean m", ylabel="ELBO (nats)", ylim=(log_px - 4, log_px + 0.4), title="the bound never crosses log p(x)")
ax2.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. A diffusion model is a VAE with a fixed encoder and $T$ latent layers
#
# Now replace the single latent $z$ by a chain of latents $x_1, x_2, \dots, x_T$, each of the same dimension as
# the data $x_0$, and replace the learned encoder by a **fixed** Markov chain that adds a little Gaussian noise
# at each step (DDPM Eq. 2; Sohl-Dickstein et al. Eq. 2 with a Gaussian kernel):
# $$q(x_{1:T} \mid x_0) = \prod_{t=1}^{T} q(x_t \mid x_{t-1}), \qquad
#   q(x_t \mid x_{t-1}) = \mathcal N\big(x_t;\ \sqrt{1 - \beta_t}\, x_{t-1},\ \beta_t I\big).$$
# The decoder runs the chain backwards, from a fixed prior through learned Gaussian steps (DDPM Eq. 1):
# $$p_\theta(x_{0:T}) = p(x_T) \prod_{t=1}^{T} p_\theta(x_{t-1} \mid x_t), \qquad p(x_T) = \mathcal N(0, I), \qquad
#   p_\theta(x_{t-1} \mid x_t) = \mathcal N\big(x_{t-1};\ \mu_\theta(x_t, t),\ \Sigma_\theta(x_t, t)\big).$$
#
# | | VAE | diffusion model (DDPM) |
# |---|---|---|
# | latent | $z$, usually smaller than $x$ | $x_1, \dots, x_T$, each the size of $x_0$ |
# | encoder | $q_\phi(z \mid x)$, **learned** | $q(x_{1:T} \mid x_0)$, **fixed**: only the schedule $\beta_1, \dots, \beta_T$ (chosen by hand in DDPM; learnable in Sohl-Dickstein et al., except $\beta_1$: chapter 02) |
# | prior | $p(z) = \mathcal N(0, I)$ | $p(x_T) = \mathcal N(0, I)$ |
# | decoder | $p_\theta(x \mid z)$, **learned** | $p_\theta(x_{t-1} \mid x_t)$ for $t = T, \dots, 1$, **learned**: one network $\mu_\theta(x_t, t)$ shared by every $t$ (chapter 08) |
# | bound | $\mathbb E_q[\log p_\theta(x \mid z)] - D_{KL}(q(z \mid x) \,\|\, p(z))$ | $\mathbb E_q\big[\log p(x_T) + \sum_{t \ge 1} \log \frac{p_\theta(x_{t-1} \mid x_t)}{q(x_t \mid x_{t-1})}\big]$ (DDPM Eq. 3) |
#
# **The bound has the same shape.** Route 1 goes through unchanged with $z = x_{1:T}$: the likelihood is an
# integral over all latent trajectories, and the fixed encoder turns it into an expectation,
# $$
# \begin{aligned}
# \log p_\theta(x_0) &= \log \int p_\theta(x_{0:T})\, dx_{1:T}
#  = \log \mathbb E_{q(x_{1:T} \mid x_0)}\!\left[\frac{p_\theta(x_{0:T})}{q(x_{1:T} \mid x_0)}\right]
#  \ge \mathbb E_{q(x_{1:T} \mid x_0)}\!\left[\log \frac{p_\theta(x_{0:T})}{q(x_{1:T} \mid x_0)}\right] \\
# &= \mathbb E_{q}\!\left[\log p(x_T) + \sum_{t=1}^{T} \log \frac{p_\theta(x_{t-1} \mid x_t)}{q(x_t \mid x_{t-1})}\right],
# \end{aligned}
# $$
# where the last line writes out both products. DDPM states it with the sign flipped, as an upper bound
# $L$ on $\mathbb E[-\log p_\theta(x_0)]$ (Eq. 3), and Route 2 gives the gap:
# $D_{KL}\big(q(x_{1:T} \mid x_0) \,\|\, p_\theta(x_{1:T} \mid x_0)\big)$.
# Chapter 02 derives this bound the way Sohl-Dickstein et al. did (their $K$) and measures its Jensen gap;
# chapter 04 regroups it into a "prior" term $D_{KL}(q(x_T \mid x_0) \,\|\, p(x_T))$, a "reconstruction"
# term $-\log p_\theta(x_0 \mid x_1)$ and $T - 1$ KL terms between Gaussians (DDPM Eq. 5): the VAE's two
# terms, with one KL per latent layer in between.
#
# **What fixing the encoder buys.**
# - There is nothing to learn on the encoder side: all parameters sit in the decoder, and the bound is tight
#   only when the learned reverse chain matches the true reverse of $q$.
# - $q(x_t \mid x_0)$ has a closed form (chapter 03), so any layer $x_t$ is one Gaussian draw away from the
#   data: training never has to run the chain.
# - With small $\beta_t$, the true reverse step $q(x_{t-1} \mid x_t)$ is close to Gaussian (chapter 02), so a
#   Gaussian decoder step is the right family.
# - With $\bar\alpha_T = \prod_t (1 - \beta_t) \approx 0$, $q(x_T \mid x_0) \approx \mathcal N(0, I)$ for every
#   $x_0$: the "stay close to the prior" term is tiny and has no parameters (chapter 03 computes it).
#
# **A numerical check with $T$ latent layers.** In 1-D, with $T = 4$ forward steps and a linear-Gaussian
# decoder $p_\theta(x_{t-1} \mid x_t) = \mathcal N(c_t x_t, v_t)$, $p_\theta(x_0)$ is again a Gaussian we can
# write down: starting from variance 1 at $x_T$, each decoder step maps a variance $V$ to $c_t^2 V + v_t$. We
# estimate the bound by sampling trajectories from the fixed encoder with `GaussianDiffusion.q_step` (one
# forward step, DDPM Eq. 2), and the likelihood itself by averaging the weights (importance sampling, the
# subject of chapter 02).

# %%
betas4 = [0.1, 0.2, 0.3, 0.4]  # a short, coarse forward chain (x_4 keeps some signal, which is fine here)
s4 = dl.NoiseSchedule.from_betas(betas4, warn=False)
d4 = dl.GaussianDiffusion(s4, decoder="gaussian")
c = [0.8, 0.8, 0.8, 0.8]  # the decoder's c_t, v_t for t = 1..4 (any values: the bound holds for every decoder)
v = [0.1, 0.2, 0.3, 0.4]

x0 = torch.full((n, 1), 0.8, dtype=torch.float64)  # one data point, n encoder trajectories
gen = torch.Generator().manual_seed(1)
xs = [x0]
for t in range(1, s4.T + 1):  # sample x_1, ..., x_4 from the fixed encoder, one step at a time
    xs.append(d4.q_step(xs[-1], torch.full((n,), t), generator=gen))
log_w4 = dl.gaussian_log_likelihood(xs[-1], 0.0, 0.0)  # log p(x_T)
for t in range(1, s4.T + 1):  # + log p(x_{t-1} | x_t) - log q(x_t | x_{t-1})
    log_w4 = log_w4 + dl.gaussian_log_likelihood(xs[t - 1], c[t - 1] * xs[t], math.log(v[t - 1]))
    log_w4 = log_w4 - dl.gaussian_log_likelihood(xs[t], s4.sqrt_alphas[t] * xs[t - 1], s4.betas[t].log())
var0 = 1.0
for t in range(s4.T, 0, -1):  # the decoder's marginal variance, from x_T down to x_0
    var0 = c[t - 1] ** 2 * var0 + v[t - 1]
log_p_x0 = dl.gaussian_log_likelihood(x0[0, 0], 0.0, math.log(var0)).item()
bound, bound_se = log_w4.mean().item(), (log_w4.std() / math.sqrt(n)).item()
is_est = (torch.logsumexp(log_w4.flatten(), 0) - math.log(n)).item()
w4 = (log_w4 - log_w4.max()).exp()
is_se = (w4.std() / (w4.mean() * math.sqrt(n))).item()  # delta method: the error of log(mean of weights)
print(f"T = 4 latent layers, x_0 = 0.8: log p(x_0) = {log_p_x0:.4f} (closed form), "
      f"bound E_q[log p(x_0:T)/q(x_1:T|x_0)] = {bound:.4f} +- {3 * bound_se:.4f} (3 sigma)")
print(f"gap = KL(q(x_1:T|x_0) || p(x_1:T|x_0)) = {log_p_x0 - bound:.4f} >= 0;  "
      f"importance sampling log E_q[weights] = {is_est:.4f}: |diff| to log p(x_0) {abs(is_est - log_p_x0):.4f} "
      f"(3 sigma of MC error {3 * is_se:.4f})")

# %% [markdown]
# ## 3. A first look at the forward process
#
# The encoder is the same fixed chain for every data set. Here it runs step by step, $T = 1000$ times,
# with DDPM's schedule ($\beta_t$ linear from $\beta_1 = 10^{-4}$ to $\beta_T = 0.02$), on 2,000 points of
# Sohl-Dickstein's swiss roll and on 32 Fashion-MNIST test images scaled to $[-1, 1]$. No shortcut is used:
# each `q_step` multiplies by $\sqrt{1 - \beta_t}$ and adds $\sqrt{\beta_t}\,\epsilon$. Chapter 03 shows
# that $x_t$ can be drawn from $x_0$ in one step.

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's schedule
d = dl.GaussianDiffusion(s)
points0 = dl.swiss_roll(2000, generator=torch.Generator().manual_seed(0)).double()
images, labels = dl.fashion_mnist("test")
images0 = images[:32].double()  # 32 x 784 values: small tensors keep 1000 steps fast

snapshots = [0, 10, 50, 100, 250, 500, 1000]
gen = torch.Generator().manual_seed(2)
pts, imgs = points0.clone(), images0.clone()
traj_pts, traj_imgs = {0: pts}, {0: imgs}
for t in range(1, s.T + 1):
    pts = d.q_step(pts, torch.full((len(pts),), t), generator=gen)
    imgs = d.q_step(imgs, torch.full((len(imgs),), t), generator=gen)
    if t in snapshots:
        traj_pts[t], traj_imgs[t] = pts, imgs

# %% [markdown]
# Does the chain really end in $\mathcal N(0, I)$? For the swiss roll we print the mean and covariance of
# the 2,000 points, and the sliced Wasserstein distance `dl.sliced_wasserstein` to 2,000 fresh draws from
# $\mathcal N(0, I)$ (two samples from the same distribution are not at distance 0: the last line gives that
# floor). For the images we pool all $32 \times 784$ pixel values and print their mean, standard deviation,
# and correlation with the clean pixel values $x_0$: how much of the data is left.

# %%
ref = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
ref2 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
floor = dl.sliced_wasserstein(ref, ref2, n_projections=64, generator=torch.Generator().manual_seed(5))
flat0 = images0.flatten()
print(f"{'t':>5} {'abar_t':>8} | swiss roll: {'mean':>14} {'cov':>22} {'SW1 to N(0,I)':>13} | "
      f"images: {'mean':>6} {'std':>6} {'corr(x_t, x_0)':>14}")
for t in snapshots:
    p = traj_pts[t]
    mu, cov = p.mean(0), torch.cov(p.T)
    sw = dl.sliced_wasserstein(p, ref, n_projections=64, generator=torch.Generator().manual_seed(5))
    f = traj_imgs[t].flatten()
    corr = torch.corrcoef(torch.stack([f, flat0]))[0, 1].item()
    print(f"{t:>5} {s.alpha_bars[t].item():>8.5f} | ({mu[0]:+.3f}, {mu[1]:+.3f}) "
          f"[[{cov[0, 0]:.2f}, {cov[0, 1]:+.2f}], [{cov[1, 0]:+.2f}, {cov[1, 1]:.2f}]] {sw:>13.3f} | "
          f"{f.mean().item():>+14.3f} {f.std().item():>6.3f} {corr:>14.4f}")
print(f"floor: SW1 between two samples of N(0, I) of this size = {floor:.3f}")

pT = traj_pts[s.T]
mu_T, cov_T = pT.mean(0), torch.cov(pT.T)
se_mean, se_var = 1 / math.sqrt(len(pT)), math.sqrt(2 / len(pT))
print(f"swiss roll at t = T: max |mean| {mu_T.abs().max().item():.3f} (3 sigma of MC error {3 * se_mean:.3f}), "
      f"max |cov - I| {(cov_T - torch.eye(2, dtype=torch.float64)).abs().max().item():.3f} "
      f"(3 sigma of MC error {3 * se_var:.3f})")

# %% [markdown]
# The table shows the two things the fixed encoder is built for: the mean goes to 0 and the covariance to
# $I$ whatever the data, and the correlation with $x_0$, the only trace of the data, falls to the Monte
# Carlo noise level (about $1/\sqrt{25{,}088} \approx 0.006$). Here is the same run as pictures.

# %%
show = [0, 50, 100, 250, 500, 1000]
picks = [int((labels[:32] == k).nonzero()[0]) for k in (9, 0, 7)]  # an ankle boot, a T-shirt, a sneaker
fig, axes = plt.subplots(4, len(show), figsize=(11, 7.2))
for j, t in enumerate(show):
    p = traj_pts[t]
    ax = axes[0, j]
    ax.scatter(p[:, 0], p[:, 1], s=1, alpha=0.4)
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", title=f"t = {t}")
    if j == 0:
        ax.set(xlabel="$x[0]$", ylabel="$x[1]$")
    else:
        ax.tick_params(labelleft=False, labelbottom=False)
    for i, k in enumerate(picks):
        axes[i + 1, j].imshow(traj_imgs[t][k, 0].clamp(-1, 1), cmap="gray", vmin=-1, vmax=1)
        axes[i + 1, j].set_axis_off()
fig.suptitle(r"the forward chain, step by step: $x_t = \sqrt{1-\beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon$")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Play: $t$ and $\beta$
#
# The widget shows $x_t$ for four Fashion-MNIST images and the swiss roll, with the noise $\epsilon$ held
# fixed, so only the controls change the picture. Scrub $t$; change $\beta_1$ and $\beta_T$, the ends of the
# linear schedule, and watch how fast the signal fades (the curves below the images are chapter 03's
# subject). With $\beta_T$ too small, $x_T$ keeps visible structure: the encoder no longer ends at the prior.
# The widget jumps to $x_t$ in one step with the closed form of chapter 03, which gives the same
# distribution as the chain above.

# %% tags=["nbval-ignore-output"]
from ddpm_lib.course.widgets import forward_explorer  # noqa: E402

box = forward_explorer(t=100)
box

# %% [markdown]
# Without a running kernel (a static page), the widget cannot move; here are three of its settings: $t = 100$,
# $t = T$, and $t = T$ again with $\beta_T$ ten times smaller, where $\bar\alpha_T$ stays far from 0 and the images
# survive to the end of the chain.

# %%
box.static_figure([dict(t=100), dict(t=1000), dict(t=1000, beta_T=0.002)])
plt.show()

# %% [markdown]
# ## 5. Exercises
#
# **Exercise 1.1 (the Gaussian ELBO by hand).** For the linear-Gaussian model of section 1, write
# `gaussian_elbo(x, m, s2, w, b, sigma2)`: the ELBO of $q(z \mid x) = \mathcal N(m, s^2)$, in closed form, using
# only `torch` (no `ddpm_lib`). It must work elementwise on tensors. You need
# $\mathbb E_q[\log p(x \mid z)] = -\tfrac12 \log(2 \pi \sigma^2) - \frac{(x - w m - b)^2 + w^2 s^2}{2 \sigma^2}$ and
# $D_{KL}(\mathcal N(m, s^2) \,\|\, \mathcal N(0, 1)) = \tfrac12 (m^2 + s^2 - 1 - \log s^2)$.
# The check compares your function with $\log p(x) - D_{KL}(q(z \mid x) \,\|\, p(z \mid x))$ (Route 2), computed
# by `ddpm_lib` on 50 random settings.


# %% tags=["solution"]
def gaussian_elbo(x, m, s2, w, b, sigma2):
    """ELBO = E_q[log N(x; w z + b, sigma2)] - KL(N(m, s2) || N(0, 1)), elementwise."""
    # BEGIN SOLUTION
    recon = -0.5 * torch.log(2 * math.pi * sigma2) - ((x - w * m - b) ** 2 + w**2 * s2) / (2 * sigma2)
    kl = 0.5 * (m**2 + s2 - 1 - torch.log(s2))
    return recon - kl
    # END SOLUTION


# %%
ge = torch.Generator().manual_seed(11)
X, M, W_, B = (torch.randn(50, generator=ge, dtype=torch.float64) for _ in range(4))
S2, SIG2 = (torch.rand(50, generator=ge, dtype=torch.float64) * 2 + 0.05 for _ in range(2))
expected = (dl.gaussian_log_likelihood(X, B, torch.log(W_**2 + SIG2))  # log p(x)
            - dl.normal_kl(M, S2.log(), W_ * (X - B) / (W_**2 + SIG2), torch.log(SIG2 / (W_**2 + SIG2))))  # - gap
checks.check_value("gaussian_elbo", gaussian_elbo(X, M, S2, W_, B, SIG2), expected, rtol=1e-9, atol=1e-9,
                   equation="log p(x) - KL(q(z|x) || p(z|x)) = E_q[log p(x|z)] - KL(q(z|x) || p(z))")

# %% [markdown]
# **Exercise 1.2 (one step of the fixed encoder).** Write `forward_step(x_prev, beta, noise)`, one step of the
# forward chain, $x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon$ (DDPM Eq. 2, reparameterized),
# for a tensor `x_prev` of shape $(B, \dots)$, a tensor `beta` of shape $(B,)$ (one $\beta_t$ per example)
# and `noise` like `x_prev`. The check compares it with `GaussianDiffusion.q_step`.


# %% tags=["solution"]
def forward_step(x_prev, beta, noise):
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, with beta of shape (B,)."""
    # BEGIN SOLUTION
    beta = beta.view(-1, *[1] * (x_prev.ndim - 1))  # (B,) -> (B, 1, ..., 1) to broadcast over the data
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise
    # END SOLUTION


# %%
ge = torch.Generator().manual_seed(12)
x_prev = torch.randn(6, 1, 4, 4, generator=ge, dtype=torch.float64)
eps = torch.randn(6, 1, 4, 4, generator=ge, dtype=torch.float64)
t_ex = torch.tensor([1, 10, 200, 500, 999, 1000])
checks.check_value("forward_step", forward_step(x_prev, s.betas[t_ex], eps), d.q_step(x_prev, t_ex, eps),
                   equation="x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (DDPM Eq. 2)")

# %% [markdown]
# ## Summary
#
# - A VAE maximizes $\mathrm{ELBO}(x) = \mathbb E_q[\log p_\theta(x \mid z)] - D_{KL}(q(z \mid x) \,\|\, p(z))$, a lower
#   bound on $\log p_\theta(x)$ by Jensen's inequality; the gap is exactly $D_{KL}(q(z \mid x) \,\|\, p_\theta(z \mid x))$.
#   On a linear-Gaussian model, closed form, Monte Carlo and the KL gap agree to the printed digits.
# - A diffusion model is a VAE whose encoder is a fixed chain $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)$
#   with $T$ latent layers the size of the data, a fixed prior $p(x_T) = \mathcal N(0, I)$, and a learned
#   Gaussian decoder step $p_\theta(x_{t-1} \mid x_t)$ shared across $t$. Only the decoder is learned (and, in
#   Sohl-Dickstein et al., the $\beta_t$).
# - Its bound has the VAE's shape: $\log p_\theta(x_0) \ge \mathbb E_q[\log p(x_T) + \sum_t \log p_\theta(x_{t-1} \mid x_t) / q(x_t \mid x_{t-1})]$
#   (DDPM Eq. 3), checked above with $T = 4$ latent layers.
# - Run for $T = 1000$ steps of DDPM's schedule, the fixed encoder takes the swiss roll and Fashion-MNIST alike
#   to $\mathcal N(0, I)$: mean 0, covariance $I$, no correlation with the data left.
#
# **Next:** chapter 02 derives the bound the way Sohl-Dickstein et al. did: trajectories, importance
# sampling, Jensen's inequality and the bound $K$, and why the reverse steps may be Gaussian at all.
