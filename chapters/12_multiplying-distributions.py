# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12 · Multiplying distributions: conditioning, inpainting and the entropy of the reverse process
#
# A trained diffusion model gives samples of $p(x^{(0)})$. Many tasks want something else: restore the
# missing part of an image, denoise a signal, keep only samples in some region. Each asks for the model's
# distribution multiplied by a second function, $\tilde p(x^{(0)}) \propto p(x^{(0)})\, r(x^{(0)})$, where $r$ is a
# likelihood, a window or an indicator. Sohl-Dickstein et al. 2015 (Sec. 2.5, "Multiplying distributions")
# show that a diffusion model makes this easy: multiply *each intermediate distribution* by a function
# $r(x^{(t)})$, and each reverse step changes in a simple way. In one sentence: to control generation,
# multiply the distribution of every intermediate state by $r(x^t)$; for inpainting, multiply the known pixels
# by a delta function at every step and the unknown ones by a constant. The same paper (Sec. 2.6) bounds the
# entropy of each reverse step from both sides using the forward process alone: at most the entropy of the
# forward step, at least that minus the increase of entropy over the first steps.
#
# **Learning goals.** After this chapter you can
# - derive why conditioning a diffusion model means multiplying every intermediate distribution by
#   $r(x^{(t)})$, and the modified reverse kernel $\tilde p(x^{(t-1)} \mid x^{(t)}) \propto p(x^{(t-1)} \mid x^{(t)})\, r(x^{(t-1)})$
#   (Sohl-Dickstein Eqs. 16-22), and check it on a grid;
# - derive the first-order rule for a Gaussian kernel, a mean shifted by $\Sigma\, \nabla \log r$ (App. C),
#   and measure how its error shrinks with $\beta$;
# - measure, against exact answers, that an $r$ kept fixed along the chain (the paper's choice, Eq. 23)
#   samples the wrong distribution, and which $r_t$ samples the right one;
# - inpaint real Fashion-MNIST test images with the trained U-Net, see where replacement fails, and measure
#   whether RePaint's resampling (Lugmayr et al. 2022) fixes it at the same cost;
# - derive the bounds on the entropy of a reverse step (Eq. 24), compute them for the Gaussian forward
#   process (they are DDPM's two variance choices, $\beta_t$ and $\tilde\beta_t$) and for a toy where the true
#   value lies between them.
#
# **CPU time:** the budget is 60 s on a 2-core CPU (`chapters/timings.json` has the last measured time); nearly all
# of it is about 900 calls of the U-Net on single images: inpainting 4 images with 50 respaced steps, 3 completions of
# one image with three samplers of 20 to 80 calls, and the widget's 8 masks with 20 steps.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks
from ddpm_lib.classifier import predict
from ddpm_lib.data import gaussian_mixture_log_prob
from ddpm_lib.sampling import perturbed_mean, sample_perturbed
from ddpm_lib.mixtures import DEFAULT_MIXTURE
from ddpm_lib.course.widgets import inpainting_explorer
from ddpm_lib.course.widgets.inpainting import make_mask
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.viz import course_style, image_grid

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data



def trapz(y, x):
    """The trapezoid rule along the last axis (numpy; float64)."""
    return np.trapezoid(y, x, axis=-1)


# %% [markdown]
# ## 1. Multiplying each intermediate distribution (Sohl-Dickstein Sec. 2.5)
#
# **Notation.** Sohl-Dickstein et al. write the reverse kernel as $p(x^{(t)} \mid x^{(t+1)})$; we shift the
# index by one and write $p(x^{(t-1)} \mid x^{(t)})$, the same kernel in the course's indexing ($t = 1, \dots, T$,
# $x^{(0)}$ is data). $p(x^{(t)})$ is the marginal of the reverse chain at step $t$; for a perfect model it is
# the forward marginal $q(x^{(t)})$, and some texts write $q$ for these intermediate distributions.
#
# **The modified marginals (Eq. 16).** We want $\tilde p(x^{(0)}) \propto p(x^{(0)})\, r(x^{(0)})$. The idea is to
# modify the whole reverse trajectory so that *every* intermediate distribution is multiplied by a function
# $r(x^{(t)})$:
# $$\tilde p(x^{(t)}) = \frac{1}{\tilde Z_t}\, p(x^{(t)})\, r(x^{(t)}), \qquad \tilde Z_t = \int p(x^{(t)})\, r(x^{(t)})\, dx^{(t)} . \tag{16}$$
# At $t = 0$ this is the distribution we want; at $t = T$ it says where the modified chain starts,
# $\tilde p(x^{(T)}) \propto \pi(x^{(T)})\, r(x^{(T)})$. This is the first of three relations to remember.
#
# **The modified reverse step (Eqs. 17-21).** The unmodified kernel carries each marginal to the next one,
# the *equilibrium condition*
# $$p(x^{(t-1)}) = \int p(x^{(t-1)} \mid x^{(t)})\, p(x^{(t)})\, dx^{(t)} . \tag{17}$$
# We want a kernel $\tilde p(x^{(t-1)} \mid x^{(t)})$ that does the same for the modified marginals:
# $$\tilde p(x^{(t-1)}) = \int \tilde p(x^{(t-1)} \mid x^{(t)})\, \tilde p(x^{(t)})\, dx^{(t)} . \tag{18}$$
# Substitute Eq. 16 on both sides,
# $$\frac{p(x^{(t-1)})\, r(x^{(t-1)})}{\tilde Z_{t-1}} = \int \tilde p(x^{(t-1)} \mid x^{(t)})\, \frac{p(x^{(t)})\, r(x^{(t)})}{\tilde Z_t}\, dx^{(t)}, \tag{19}$$
# and move the factors that do not depend on $x^{(t)}$ to the right:
# $$p(x^{(t-1)}) = \int \tilde p(x^{(t-1)} \mid x^{(t)})\, \frac{\tilde Z_{t-1}\, r(x^{(t)})}{\tilde Z_t\, r(x^{(t-1)})}\, p(x^{(t)})\, dx^{(t)} . \tag{20}$$
# Comparing with Eq. 17, Eq. 20 holds if the integrands agree:
# $$\tilde p(x^{(t-1)} \mid x^{(t)}) = p(x^{(t-1)} \mid x^{(t)})\, \frac{\tilde Z_t\, r(x^{(t-1)})}{\tilde Z_{t-1}\, r(x^{(t)})} . \tag{21}$$
#
# **Normalizing (Eq. 22).** Eq. 21 need not integrate to 1 over $x^{(t-1)}$: its integral is
# $\mathbb E_p[r(x^{(t-1)}) \mid x^{(t)}]\, \tilde Z_t / (\tilde Z_{t-1}\, r(x^{(t)}))$. So the paper takes the normalized kernel,
# $$\tilde p(x^{(t-1)} \mid x^{(t)}) = \frac{1}{\tilde Z_{t-1}(x^{(t)})}\, p(x^{(t-1)} \mid x^{(t)})\, r(x^{(t-1)}), \qquad \tilde Z_{t-1}(x^{(t)}) = \mathbb E_p\big[r(x^{(t-1)}) \mid x^{(t)}\big], \tag{22}$$
# "the reverse kernel times $r$", the third relation (written with $q$), $\tilde q(x^t \mid x^{t+1}) \propto q(x^t \mid x^{t+1})\, r(x^t)$.
# (The second relation, $\tilde q(x^{t+1} \mid x^t) \propto q(x^{t+1} \mid x^t)\, r(x^{t+1})$, is the same argument applied to
# the forward chain's equilibrium $q(x^{t+1}) = \int q(x^{t+1} \mid x^t)\, q(x^t)\, dx^t$.) Eq. 22 differs from Eq. 21 by
# the factor $c(x^{(t)}) = \tilde Z_{t-1}\, r(x^{(t)}) / \big(\tilde Z_t\, \mathbb E_p[r(x^{(t-1)}) \mid x^{(t)}]\big)$. The paper argues that a narrow
# Gaussian kernel sees $r(x^{(t-1)}) / r(x^{(t)})$ as a small perturbation, so that $c \approx 1$ and Eqs. 21 and 22 agree.
#
# **When Eq. 22 is exact.** Nothing forces us to use the same function $r$ at every $t$. Choose
# $$r_t(x^{(t)}) = \mathbb E_p\big[r(x^{(0)}) \mid x^{(t)}\big],$$
# the expected final weight given the current state. The chain is Markov, so by the tower rule
# $\mathbb E_p[r_{t-1}(x^{(t-1)}) \mid x^{(t)}] = \mathbb E_p\big[\mathbb E_p[r(x^{(0)}) \mid x^{(t-1)}] \mid x^{(t)}\big] = r_t(x^{(t)})$, and every
# $\tilde Z_t = \mathbb E_p[r(x^{(0)})]$ is the same number. Then $c \equiv 1$: Eq. 22, with $r_{t-1}$ in place of $r$, *is*
# Eq. 21, normalized and exact (this is Doob's h-transform; classifier guidance, Dhariwal & Nichol 2021,
# uses the same $r_t(x^{(t)}) = p(y \mid x^{(t)})$). The paper instead chose $r(x^{(t)}) = r(x^{(0)})$, the same function at
# every step (its Eq. 23), for which $c \ne 1$. Sections 3 and 4 measure what that costs over a whole chain.
#
# **Check on a grid.** One step of a 1-D chain, computed exactly: $q(x^{(t-1)})$ is chapter 02's Gaussian
# mixture, $x^{(t)} = \sqrt{1-\beta}\, x^{(t-1)} + \sqrt\beta\, \epsilon$, the true reverse kernel by Bayes' rule on a grid, and
# $r$ a Gaussian window. We push $\tilde p(x^{(t)})$ through each kernel (Eq. 18) and compare with the target
# $\tilde p(x^{(t-1)}) \propto q(x^{(t-1)})\, r(x^{(t-1)})$ by total variation, $\mathrm{TV} = \tfrac12 \int |\cdot|$.

# %%
g = np.linspace(-5.0, 5.0, 1601)  # both x^{t-1} (columns) and x^t (rows)
mix = {k: torch.tensor(v, dtype=torch.float64) for k, v in DEFAULT_MIXTURE.items()}
q_prev = gaussian_mixture_log_prob(torch.from_numpy(g), means=mix["means"], stds=mix["stds"],
                                   weights=mix["weights"]).exp().numpy()
c_win, w_win = 0.9, 0.6
r = np.exp(-0.5 * (g - c_win) ** 2 / w_win ** 2)  # a Gaussian window


def normalize(p):
    return p / trapz(p, g)


target = normalize(q_prev * r)  # p~(x^{t-1}) of Eq. 16
print(f"{'beta':>6} | {'Eq. 21: mass of the kernel':>27} | TV after one step: {'Eq. 21':>8} "
      f"{'Eq. 22, r fixed':>16} {'Eq. 22, r_t':>12}")
for beta in (0.1, 0.01, 0.001, 0.0001):
    lik = np.exp(-0.5 * (g[:, None] - math.sqrt(1 - beta) * g[None, :]) ** 2 / beta) / math.sqrt(2 * math.pi * beta)
    joint = lik * q_prev[None, :]            # q(x^t | x^{t-1}) q(x^{t-1}), rows x^t
    q_t = trapz(joint, g)                    # q(x^t)
    rev = joint / np.maximum(q_t, 1e-300)[:, None]  # q(x^{t-1} | x^t), Bayes' rule
    Z_prev, Z_t = trapz(q_prev * r, g), trapz(q_t * r, g)
    k21 = rev * r[None, :] * Z_t / (Z_prev * r[:, None])          # Eq. 21
    mass21 = trapz(k21, g)                   # its integral over x^{t-1}, for each x^t
    h_t = trapz(rev * r[None, :], g)         # E[r(x^{t-1}) | x^t]: Eq. 22's normalizer, and r_t
    k22 = rev * r[None, :] / h_t[:, None]    # Eq. 22
    tv = lambda p_t, k: 0.5 * trapz(np.abs(trapz(k.T * p_t[None, :], g) - target), g)  # noqa: E731
    weight = normalize(q_t * r)              # where x^t lies under p~(x^t)
    lo, hi = mass21[weight > 1e-3].min(), mass21[weight > 1e-3].max()
    print(f"{beta:>6} | {lo:>12.4f} .. {hi:<12.4f} | {'':>18} {below(tv(weight, k21)):>8} "
          f"{tv(weight, k22):>16.2e} {below(tv(normalize(q_t * h_t), k22)):>12}")
print("Eq. 21 carries p~(x^t) to p~(x^(t-1)) exactly but is no distribution (its mass is not 1); Eq. 22 with the "
      "same r at both steps is off, less so the smaller beta; Eq. 22 with r_t = E[r(x^(t-1)) | x^t] is exact.")

# %% [markdown]
# The error of the fixed-$r$ kernel falls with $\beta$, roughly in proportion for small $\beta$: small for one step, but a
# chain has $T \propto 1/\beta$ steps, so the errors need not vanish as $\beta \to 0$. Section 3 computes where they add up to.
#
# ## 2. The first-order rule for a Gaussian kernel (Sohl-Dickstein App. C)
#
# A reverse step of a Gaussian diffusion model is $p(x^{(t-1)} \mid x^{(t)}) = \mathcal N(x^{(t-1)}; \mu, \Sigma)$ with
# $\mu = f_\mu(x^{(t)}, t)$ and $\Sigma = f_\Sigma(x^{(t)}, t)$ (in DDPM, $\mu_\theta(x_t, t)$ and $\sigma_t^2 I$). Write $y = x^{(t-1)}$ and the
# product of Eq. 22 with an energy $E_r(y) = -\log r(y)$:
# $$\tilde p(y \mid x^{(t)}) \propto \mathcal N(y; \mu, \Sigma)\, r(y) \propto \exp[-E(y)], \qquad E(y) = \tfrac12 (y - \mu)^T \Sigma^{-1} (y - \mu) + E_r(y) . \tag{52-55}$$
# If $E_r$ changes slowly where the Gaussian has its mass (the eigenvalues of its Hessian are much smaller
# than those of $\Sigma^{-1}$), expand it to first order around $\mu$:
# $$E_r(y) \approx E_r(\mu) + (y - \mu)^T g, \qquad g = \nabla E_r(\mu) = -\nabla \log r(\mu) . \tag{56}$$
# Then, completing the square (constants do not depend on $y$),
# $$E(y) \approx \tfrac12 (y - \mu)^T \Sigma^{-1} (y - \mu) + (y - \mu)^T \Sigma^{-1} \Sigma g + \text{const} = \tfrac12 (y - \mu + \Sigma g)^T \Sigma^{-1} (y - \mu + \Sigma g) + \text{const}, \tag{57-59}$$
# a Gaussian with the same covariance and a shifted mean:
# $$\tilde p(x^{(t-1)} \mid x^{(t)}) \approx \mathcal N\Big(x^{(t-1)};\ \mu + \Sigma\, \nabla \log r(x^{(t-1)})\big|_{x^{(t-1)} = \mu},\ \Sigma\Big) . \tag{60-61}$$
# With DDPM's $\Sigma = \sigma_t^2 I$ ($\sigma_t^2 = \beta_t$ or $\tilde\beta_t$) the mean moves by $\sigma_t^2 \nabla \log r(\mu)$: a $\beta$-sized step
# up the gradient of $\log r$. `ddpm_lib.sampling.perturbed_mean(mean, variance, grad_log_r)` implements Eq. 61.
#
# **Check.** For a non-Gaussian $r$, a soft half-line $r(y) = \mathrm{sigmoid}((y - 0.3)/0.2)$, the exact mean of
# $\mathcal N(\mu, \sigma^2)\, r$ on a fine grid against Eq. 61. The error of a first-order expansion should fall like $\sigma^4$.

# %%
def grad_log_sigmoid(y, a=0.3, tau=0.2):
    return torch.sigmoid(-(y - a) / tau) / tau  # d/dy log sigmoid((y - a) / tau)


mu = torch.tensor([0.1], dtype=torch.float64)
errs = []
print(f"{'sigma^2':>8} {'exact mean':>11} {'Eq. 61':>9} {'|error|':>9} {'shift / sigma':>14} {'exact var / sigma^2':>20}")
for var in (1e-1, 1e-2, 1e-3, 1e-4):
    y = torch.linspace(float(mu) - 12 * math.sqrt(var), float(mu) + 12 * math.sqrt(var), 20001, dtype=torch.float64)
    dens = torch.exp(-0.5 * (y - mu) ** 2 / var) * torch.sigmoid((y - 0.3) / 0.2)
    z = torch.trapezoid(dens, y)
    m_exact = float(torch.trapezoid(dens * y, y) / z)
    v_exact = float(torch.trapezoid(dens * (y - m_exact) ** 2, y) / z)
    m_first = float(perturbed_mean(mu, var, grad_log_sigmoid))
    errs.append(abs(m_first - m_exact))
    print(f"{var:>8.0e} {m_exact:>11.6f} {m_first:>9.6f} {errs[-1]:>9.1e} {(m_first - float(mu)) / math.sqrt(var):>14.4f} "
          f"{v_exact / var:>20.4f}")
slopes = [math.log10(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
print(f"log10 of the error per decade of sigma^2: {', '.join(f'{s:.2f}' for s in slopes)} "
      f"(2 = second order: the first-order rule is exact up to O(sigma^4))")

# %% [markdown]
# For $\sigma^2 = 0.1$ (the size of $\beta_T$ in a short chain) the rule is visibly off and the variance shrinks
# too; for DDPM-sized steps it is accurate. Two special cases need no approximation at all: a Gaussian $r$
# (the product of two Gaussians is Gaussian) and a delta on some coordinates (section 5).
#
# ## 3. A fixed $r$ against $r_t$: an exact analysis
#
# Take data $x^{(0)} \sim \mathcal N(0, 1)$ in one dimension. The forward process keeps it there, $q(x^{(t)}) = \mathcal N(0, 1)$
# for every $t$, and the true reverse kernel is $q(x^{(t-1)} \mid x^{(t)}) = \mathcal N(\sqrt{1 - \beta_t}\, x^{(t)}, \beta_t)$ (the chain is
# reversible). Let $r(x) = \exp(-x^2 / 2w^2)$; the target is $p\, r = \mathcal N\big(0, \tfrac{w^2}{1 + w^2}\big)$.
#
# **Fixed $r$ (Eq. 23).** Multiply each kernel by $r$ exactly: $\mathcal N(a x, \beta)\, r$ with $a = \sqrt{1-\beta}$ is
# $\mathcal N\big(\tfrac{v}{\beta}\, a x,\ v\big)$, $v = \tfrac{\beta w^2}{w^2 + \beta}$. If $x^{(t)}$ has variance $V_t$, then
# $V_{t-1} = \big(\tfrac{v a}{\beta}\big)^2 V_t + v$. For small $\beta$, $\tfrac{v a}{\beta} \approx 1 - \beta(\tfrac12 + \tfrac1{w^2})$ and $v \approx \beta$, so
# $V_{t-1} - V_t \approx \beta\,[1 - (1 + 2/w^2) V_t]$: the variance relaxes towards $V^* = \tfrac{w^2}{w^2 + 2}$, which is the
# variance of $p\, r^2$, not of $p\, r$. A long chain applies $r$ "twice".
#
# **$r_t = \mathbb E[r(x^{(0)}) \mid x^{(t)}]$.** Given $x^{(t)} = x$, $x^{(0)} \sim \mathcal N(\sqrt{\bar\alpha_t}\, x, 1 - \bar\alpha_t)$, so
# $r_t(x) \propto \exp\big(-\tfrac{\bar\alpha_t x^2}{2 (w^2 + 1 - \bar\alpha_t)}\big)$ and $\nabla \log r_t(x) = -\tfrac{\bar\alpha_t\, x}{w^2 + 1 - \bar\alpha_t}$: weak when $x^{(t)}$ says
# little about $x^{(0)}$, the full $r$ at $t = 0$. Below, both run through `sample_perturbed` with the best
# possible network (`GaussianData.eps_model`, the exact $\mathbb E[\epsilon \mid x_t]$) and the first-order rule.

# %%
s_toy = dl.NoiseSchedule.linear(T=200, beta_start=1e-4, beta_end=0.1)  # the swiss-roll model's schedule
d_toy = dl.GaussianDiffusion(s_toy, variance="fixed_large", decoder="gaussian")
eps_1d = dl.GaussianData(dim=1, std=1.0).eps_model(s_toy.alpha_bars)
w = 0.5
n1 = 10_000


def grad_log_h_1d(y, t):
    ab = s_toy.alpha_bars[t]
    return -ab * y / (w ** 2 + 1 - ab)


g1 = torch.Generator().manual_seed(0)
x_T = torch.randn(n1, 1, generator=g1, dtype=torch.float64) * math.sqrt(w ** 2 / (1 + w ** 2))  # pi r
fixed_1d = sample_perturbed(eps_1d, d_toy, (n1, 1), lambda m, v, t: (perturbed_mean(m, v, lambda y: -y / w ** 2), v),
                            generator=g1, noise=x_T, progress=False)
x_T = torch.randn(n1, 1, generator=g1, dtype=torch.float64)  # r_T is constant: start at pi
h_1d = sample_perturbed(eps_1d, d_toy, (n1, 1),
                        lambda m, v, t: (perturbed_mean(m, v, lambda y: grad_log_h_1d(y, t - 1)), v),
                        generator=g1, noise=x_T, progress=False)

V = w ** 2 / (1 + w ** 2)  # the recursion of the fixed-r chain, with the first-order kernel N(a x (1 - beta / w^2), beta)
for t in range(s_toy.T, 0, -1):
    b = float(s_toy.betas[t])
    V = (math.sqrt(1 - b) * (1 - b / w ** 2)) ** 2 * V + (b if t > 1 else 0.0)
se = lambda v: v * math.sqrt(2 / (n1 - 1))  # noqa: E731  (standard error of a sample variance)
print(f"target p r:        variance {w**2 / (1 + w**2):.4f}")
print(f"p r^2:             variance {w**2 / (2 + w**2):.4f}")
print(f"fixed r (Eq. 23):  variance {float(fixed_1d.var()):.4f} +- {se(float(fixed_1d.var())):.4f} (Monte Carlo), "
      f"{V:.4f} from the recursion")
print(f"r_t = E[r | x_t]:  variance {float(h_1d.var()):.4f} +- {se(float(h_1d.var())):.4f} (Monte Carlo)")

# %% [markdown]
# ## 4. A 2-D example: eight Gaussians seen through a window
#
# Now a 2-D distribution with some structure: `dl.gaussian_mixture`'s eight Gaussians on the unit circle
# (standard deviation 0.1). Its noised marginals are mixtures too, $q(x_t) = \sum_k w_k\, \mathcal N(\sqrt{\bar\alpha_t}\, m_k, (\bar\alpha_t s^2 + 1 - \bar\alpha_t) I)$,
# so the best possible network is known in closed form, $\epsilon^*(x_t) = -\sqrt{1 - \bar\alpha_t}\, \nabla \log q(x_t)$ (chapter 06),
# which isolates the conditioning from any training error. We condition on a Gaussian window
# $r(x) = \exp(-|x - c|^2 / 2w^2)$. The exact answer $p\, r$ is again a mixture: component $k$ becomes
# $\mathcal N\big(v (m_k / s^2 + c / w^2), v I\big)$ with $v = (1/s^2 + 1/w^2)^{-1}$ and weight $\propto w_k\, \mathcal N(m_k; c, (s^2 + w^2) I)$, so we can sample it
# exactly. The consistent $r_t$ is also closed form: $p\, r$ noised to step $t$ is $\tilde q_t(x) = q_t(x)\, \mathbb E[r(x^{(0)}) \mid x^{(t)} = x] / \tilde Z$,
# so $\nabla \log r_t = \nabla \log \tilde q_t - \nabla \log q_t$, a difference of two mixture scores.

# %%
angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
means8 = torch.stack([torch.cos(angles), torch.sin(angles)], 1)  # dl.gaussian_mixture's default means
s8, K8 = 0.1, means8.shape[0]
w8 = torch.full((K8,), 1.0 / K8, dtype=torch.float64)
c2, w2 = torch.tensor([0.6, 0.6], dtype=torch.float64), 0.35
v_prod = 1 / (1 / s8 ** 2 + 1 / w2 ** 2)
means_prod = v_prod * (means8 / s8 ** 2 + c2 / w2 ** 2)
w_prod = torch.softmax(-((means8 - c2) ** 2).sum(1) / (2 * (s8 ** 2 + w2 ** 2)), 0)


def mixture_score(x, alpha_bar, means, std, weights):
    """grad log q_t(x) for mixture data noised to alpha_bar (autograd of the library's exact log-density)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        lp = gaussian_mixture_log_prob(x, means=alpha_bar.sqrt() * means,
                                       stds=(alpha_bar * std ** 2 + 1 - alpha_bar).sqrt(), weights=weights)
        return torch.autograd.grad(lp.sum(), x)[0]


def eps_star(x, t):  # the best eps-network for the mixture (every row of t is the same timestep)
    ab = s_toy.alpha_bars[t[0]]
    return -(1 - ab).sqrt() * mixture_score(x, ab, means8, s8, w8)


def grad_log_r_t(y, t):  # r_t = E[r(x^0) | x^t]: the difference of two mixture scores
    ab = s_toy.alpha_bars[t]
    return mixture_score(y, ab, means_prod, math.sqrt(v_prod), w_prod) - mixture_score(y, ab, means8, s8, w8)


# %% [markdown]
# Now 2,000 samples of each: the exact product (twice: the second set is the floor of the sampling noise), the
# fixed-$r$ chain started at $\pi\, r$, and the $r_t$ chain started at $\pi$ (its $r_T$ is constant), both with the
# best network and the first-order rule.

# %%
n2 = 2000
exact_a = dl.gaussian_mixture(n2, means=means_prod, stds=math.sqrt(v_prod), weights=w_prod,
                              generator=torch.Generator().manual_seed(1)).double()
exact_b = dl.gaussian_mixture(n2, means=means_prod, stds=math.sqrt(v_prod), weights=w_prod,
                              generator=torch.Generator().manual_seed(2)).double()
g2 = torch.Generator().manual_seed(3)
x_T = c2 / (1 + w2 ** 2) + math.sqrt(w2 ** 2 / (1 + w2 ** 2)) * torch.randn(n2, 2, generator=g2, dtype=torch.float64)
fixed_2d = sample_perturbed(eps_star, d_toy, (n2, 2), lambda m, v, t: (perturbed_mean(m, v, lambda y: -(y - c2) / w2 ** 2), v),
                            generator=g2, noise=x_T, progress=False)
x_T = torch.randn(n2, 2, generator=g2, dtype=torch.float64)
h_2d = sample_perturbed(eps_star, d_toy, (n2, 2), lambda m, v, t: (perturbed_mean(m, v, lambda y: grad_log_r_t(y, t - 1)), v),
                        generator=g2, noise=x_T, progress=False)
data_2d = dl.gaussian_mixture(n2, generator=torch.Generator().manual_seed(4)).double()


def sw(a, b):
    return dl.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))


def in_window(x):
    return float((((x - c2) ** 2).sum(1) < w2 ** 2).double().mean())


print(f"{'samples':<34} {'sliced W1 to exact p r':>22} {'fraction within w of c':>24}")
print(f"{'exact p r (a second set: floor)':<34} {sw(exact_b, exact_a):>22.4f} {in_window(exact_b):>24.3f}")
print(f"{'p itself (no r)':<34} {sw(data_2d, exact_a):>22.4f} {in_window(data_2d):>24.3f}")
print(f"{'fixed r at every step (Eq. 23)':<34} {sw(fixed_2d, exact_a):>22.4f} {in_window(fixed_2d):>24.3f}")
print(f"{'r_t = E[r(x^0) | x^t]':<34} {sw(h_2d, exact_a):>22.4f} {in_window(h_2d):>24.3f}")
print(f"(exact p r has {in_window(exact_a):.3f} of its mass within w of c; sliced W1 with 256 seeded directions)")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), sharex=True, sharey=True)
for ax, pts, title in zip(axes, (exact_a, fixed_2d, h_2d),
                          ("exact p(x) r(x)", "fixed r at every step (Eq. 23)", "r_t = E[r(x^0) | x^t]")):
    ax.scatter(data_2d[:, 0], data_2d[:, 1], s=1, c="lightgrey", label="p(x)")
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, c="C0", label="samples")
    ax.add_patch(plt.Circle(tuple(c2.tolist()), w2, fill=False, ls="--", color="C3", label="|x - c| = w"))
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=4)
fig.suptitle("Eight Gaussians times a Gaussian window: 2000 samples each", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# The fixed-$r$ sampler concentrates too much mass near $c$ (the 1-D analysis says why: $r$ acts more than
# once), while $r_t = \mathbb E[r(x^{(0)}) \mid x^{(t)}]$ matches the exact answer to within sampling noise. For a real model
# $r_t$ is rarely known exactly; practical methods approximate it (classifier guidance trains a classifier on
# noisy $x_t$; for inpainting, section 5 uses the noised known pixels). Applying $r$ only at the *last* step
# would do almost nothing: $\sigma_1^2 = \beta_1 = 10^{-4}$ moves a point by $10^{-4}\, \nabla \log r$. This is why $r$ must enter
# every intermediate distribution.
#
# ## 5. Inpainting Fashion-MNIST
#
# **Which $r$.** Split the pixels into known ones $K$, with values $y$, and unknown ones $U$. Restoring $U$ means
# sampling $p(x^{(0)}_U \mid x^{(0)}_K = y)$, that is $r(x^{(0)}) = \delta(x^{(0)}_K - y)$ times a constant on $U$: a delta
# function on the known pixels, a constant on the unknown ones. A delta multiplies a Gaussian kernel in
# closed form (Sec. 2.5.3): with a diagonal covariance the coordinates are independent, so
# $\mathcal N(x^{(t-1)}; \mu, \sigma_t^2 I)\, \delta(x^{(t-1)}_K - y_{t-1})$ sets the known coordinates to $y_{t-1}$ and leaves the unknown ones
# Gaussian, $\mathcal N(\mu_U, \sigma_t^2 I)$. No first-order rule is needed.
#
# **Which $r_t$.** Sohl-Dickstein et al. (their Fig. 5) keep the same delta at every step, $x^{(t)}_K = y$ (Eq. 23).
# Section 1 suggests the known coordinates should instead follow their distribution under the conditioned
# forward process, $x^{(t)}_K \sim q(x^{(t)}_K \mid x^{(0)}_K = y) = \mathcal N(\sqrt{\bar\alpha_t}\, y, (1 - \bar\alpha_t) I)$; that is what `dl.inpaint` does, drawing a
# fresh forward sample for the known pixels at every step (the replacement used by Song et al. 2021 and by
# RePaint, Lugmayr et al. 2022),
# which also feeds the network inputs at the noise level it was trained on. What it leaves out is the other
# half of $r_t$: the exact $r_t$ would also reweight the unknown pixels by how well they fit the known ones.
#
# **On a CPU.** The U-Net is the cost here, one call per image per step, so we inpaint 4 test images with 50
# respaced steps (`d.respace(50)`, chapter 10), 200 network calls. On a GPU, use more images and all 1000 steps
# (`dl.inpaint(model, d, ...)`).

# %%
unet = dl.load_pretrained("fashion-mnist-unet")
model, d = unet.model, unet.diffusion
print(f"{unet.name}: {dl.count_parameters(model):,} parameters, sha256 {unet.sha256[:12]}..., {d.schedule!r}")
print(dl.pretrained.training_record("fashion-mnist-unet"))  # a short run, far from converged (chapter 09)
test_images, test_labels = dl.fashion_mnist("test", download=False)
classes = (9, 2, 1, 8)  # the first test image of each of these classes: ankle boot, pullover, trouser, bag
idx = [int((test_labels == c).nonzero()[0]) for c in classes]
x_known, y_true = test_images[idx], test_labels[idx]
mask = make_mask("center", 0.25)  # 1 = known; the central 14 x 14 square (25% of the pixels) is to be filled
hole = (mask == 0).expand_as(x_known)
restored = dl.inpaint(model, d.respace(50), x_known, mask, generator=torch.Generator().manual_seed(0), progress=False)
print(f"{int((mask == 0).sum())} of {mask.numel()} pixels unknown; known pixels of the result equal the data: "
      f"{torch.equal(restored[~hole], x_known[~hole])}")

# %% [markdown]
# **Measures.** A sample from $p(x_U \mid x_K)$ need not match the hidden pixels: many completions are
# plausible. We report two numbers and two baselines. The mean squared error in the hole compares with
# filling it by the per-pixel mean of the 10,000 test images (an average is the best guess in mean square,
# so a sharp sample can lose on this score while looking right); the shipped Fashion-MNIST classifier (the
# one behind the library's Fréchet classifier distance) says whether the restored image still shows the
# original class.

# %%
clf = dl.load_pretrained("fashion-mnist-classifier")
classifier = clf.model
print(f"classifier: test accuracy {clf.entry['metrics']['test_accuracy']:.1%} on the 10,000 test images")
mean_fill = torch.where(hole, test_images.mean(0, keepdim=True).expand_as(x_known), x_known)
restored_c = restored.clamp(-1, 1)
names = dl.FASHION_MNIST_CLASSES
preds = {k: predict(classifier, v) for k, v in
         (("original", x_known), ("mean-filled", mean_fill), ("restored", restored_c))}
mse = {k: float(((v - x_known)[hole] ** 2).mean()) for k, v in (("mean-filled", mean_fill), ("restored", restored_c))}
print("true labels:       ", ", ".join(names[int(c)] for c in y_true))
for k, p in preds.items():
    print(f"classifier, {k + ':':<13}", ", ".join(names[int(c)] for c in p),
          f"({int((p == y_true).sum())}/{len(y_true)} correct)")
print(f"MSE in the hole (values in [-1, 1]): restored {mse['restored']:.3f}, mean-filled {mse['mean-filled']:.3f}")

# %%
def image_row(images, hidden=None):
    """Images side by side as one RGB picture; the hidden pixels (a bool tensor like images) in red."""
    grid = np.stack([image_grid(images, nrow=len(images))] * 3, -1)
    if hidden is not None:
        grid[image_grid(hidden.double() * 2 - 1, nrow=len(images), pad_value=-1) > 127] = (214, 39, 40)
    return grid


restored_labels = ", ".join(names[int(c)] for c in preds["restored"])
rows_shown = {"original": image_row(x_known), "masked (red: unknown)": image_row(x_known, hole),
              f"restored (classifier: {restored_labels})": image_row(restored_c)}
fig, axes = plt.subplots(3, 1, figsize=(6.4, 5.6))
for ax, (title, picture) in zip(axes, rows_shown.items()):
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
fig.suptitle("Inpainting with the trained U-Net (50 steps): known pixels set by r at every step, the hole sampled")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The bag's hole.** Three of the four restorations look right. The bag does not: in the middle of its plain grey
# surface sits a dark shape with a bright lower edge, like a shoe seen from the side, and no bag looks like that. (The
# classifier still answers "bag": the known frame, a quarter of the image hidden, is enough for it.) Why does
# replacement allow it? The hole sees the known pixels only through $x_t$, and at large $t$ the known pixels of $x_t$
# are a fresh draw that is mostly noise. The network's prediction of $x_0$ at large $t$, which fixes the coarse
# layout first, sees a dim outline whose strap on the left and flat bottom fit a shoe about as well as a bag. Once
# the hole has taken that shape, the later steps add little noise and only sharpen it. The exact $r_t$ would
# weight each completion of the hole by how well it fits the known pixels; replacement leaves that out.
#
# **Resampling (RePaint, Lugmayr et al. 2022).** After the step from $x_t$ to $x_{t-1}$, add the noise back with one
# forward step, $x_t \sim q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1 - \beta_t}\, x_{t-1}, \beta_t I)$ (DDPM Eq. 2), and take the step again,
# $U$ times in all; only then go on to $t - 1$. Each pass lets the network see the hole together with a fresh draw of
# the known pixels and pull the two towards agreement before the layout is fixed. `dl.inpaint(..., resample=U)` does
# this. It costs $U$ network calls per step, so a fair comparison gives the plain sampler as many calls: below, 3
# completions of the bag's hole each with 20 plain steps (20 calls), 80 plain steps (80 calls), and 20 steps with
# $U = 4$ (80 calls). The bag's hidden centre is a plain grey surface, so here the error in the hole against the
# original does measure fit (for a detailed region it would not: many completions are plausible), and the
# classifier gives the probability of "bag" and of any shoe (sandal, sneaker, ankle boot).

# %%
bag, bag_hole = x_known[3:4].expand(3, -1, -1, -1), hole[3:4].expand(3, -1, -1, -1)
bag_runs = {"20 steps": (20, 1), "80 steps": (80, 1), "20 steps, U = 4": (20, 4)}
SHOES = [names.index(c) for c in ("Sandal", "Sneaker", "Ankle boot")]
bag_out = {}
print(f"{'':<16} {'network calls':>13} {'MSE in the hole':>16} {'P(bag)':>7} {'P(shoe)':>8}   (mean of 3 completions)")
for label, (steps, U) in bag_runs.items():
    x = dl.inpaint(model, d.respace(steps), bag, mask, generator=torch.Generator().manual_seed(1), progress=False,
                   resample=U).clamp(-1, 1)
    bag_out[label] = x
    with torch.no_grad():
        prob = torch.softmax(classifier(x), 1)
    err = float(((x - bag)[bag_hole] ** 2).mean())
    print(f"{label:<16} {steps * U:>13} {err:>16.2f} {float(prob[:, names.index('Bag')].mean()):>7.2f} "
          f"{float(prob[:, SHOES].sum(1).mean()):>8.2f}")

# %%
fig, axes = plt.subplots(3, 1, figsize=(6.4, 5.6))
for ax, (label, x) in zip(axes, bag_out.items()):
    ax.imshow(image_row(x), interpolation="nearest")
    ax.set_title(f"{label} ({bag_runs[label][0] * bag_runs[label][1]} network calls per image)")
    ax.set_axis_off()
fig.suptitle("The bag's hidden centre, 3 completions each: plain replacement and resampling")
fig.tight_layout()
plt.show()

# %% [markdown]
# With 20 plain steps two of the three completions have a dark, shoe-like shape in the hole (error 0.46). Both
# remedies help at the same 80 calls per image. 80 plain steps bring the error to 0.20, with a dark patch left in one
# completion: part of the failure is the coarse chain itself (20, or the 50 steps above). Resampling, 20 steps with
# $U = 4$, brings it to 0.11: every completion has the bag's grey over most of the hole, textured where the original is
# smooth. So here resampling does fix the bag, and does better with its calls than more plain steps; with 3
# completions that is a measurement of this image, not a general ranking (RePaint's own setting is 250 steps with
# jumps back of 10 steps, on a GPU). The classifier's probability of "bag" is near 1 in every case: it sees the
# frame and cannot tell these fills apart, which is why the error in the hole is the measure here.

# %% [markdown]
# **Widget.** Choose the hidden region (a centred square, the left columns, the top rows, or random
# pixels), how much of the image it covers, and $t$: the picture shows $x_t$ of the inpainting trajectory
# (known pixels: a fresh $q(x_t \mid x_0)$ sample; the hole: the reverse process), the network's prediction of
# $x_0$ from it, and the result. Everything is computed when the widget is built (one test image, 8 masks,
# 20 respaced steps: about 160 network calls), so moving a slider only draws a cached frame.

# %% tags=["nbval-ignore-output"]
box = inpainting_explorer(model, d, x_known[:1], steps=20, n_t=11, seed=0)  # the widget (needs a front end)
box

# %% [markdown]
# The same widget as a static picture (for a page without a widget front end): the centre square at an
# intermediate $t$, then the result for each region.

# %%
box.static_figure()
plt.show()

# %% [markdown]
# ## 6. The entropy of the reverse process (Sohl-Dickstein Sec. 2.6)
#
# How uncertain is one reverse step? Its conditional entropy $H_q(X^{(t-1)} \mid X^{(t)})$ depends on the data, but
# the forward process alone bounds it from both sides (Eq. 24, derived in the paper's App. A):
# $$H_q(X^{(t)} \mid X^{(t-1)}) + H_q(X^{(t-1)} \mid X^{(0)}) - H_q(X^{(t)} \mid X^{(0)}) \;\le\; H_q(X^{(t-1)} \mid X^{(t)}) \;\le\; H_q(X^{(t)} \mid X^{(t-1)}) . \tag{24}$$
#
# **The identity (Eqs. 25-27).** The joint entropy of two consecutive states can be split either way,
# $H_q(X^{(t-1)}, X^{(t)}) = H_q(X^{(t-1)} \mid X^{(t)}) + H_q(X^{(t)}) = H_q(X^{(t)} \mid X^{(t-1)}) + H_q(X^{(t-1)})$, so
# $$H_q(X^{(t-1)} \mid X^{(t)}) = H_q(X^{(t)} \mid X^{(t-1)}) + H_q(X^{(t-1)}) - H_q(X^{(t)}) . \tag{27}$$
#
# **Upper bound (Eqs. 28-30).** If each forward step does not lower the entropy, $H_q(X^{(t)}) \ge H_q(X^{(t-1)})$, then
# Eq. 27 gives $H_q(X^{(t-1)} \mid X^{(t)}) \le H_q(X^{(t)} \mid X^{(t-1)})$. For the Gaussian step $X^{(t)} = a X^{(t-1)} + b E$, $a^2 + b^2 = 1$, this
# needs data of variance at most 1 per dimension (the paper scales its data to variance 1). Why: with the
# entropy power $N(X) = e^{2H(X)/n} / (2\pi e)$, the entropy power inequality gives
# $N(X^{(t)}) \ge a^2 N(X^{(t-1)}) + b^2 N(E) = a^2 N(X^{(t-1)}) + b^2$; a Gaussian has the largest entropy for its covariance, so
# $N(X^{(t-1)}) \le 1$ when the variances are at most 1, hence $b^2 \ge b^2 N(X^{(t-1)})$ and $N(X^{(t)}) \ge N(X^{(t-1)})$.
#
# **Lower bound (Eqs. 31-35).** A later state of a Markov chain knows no more about the start than an earlier
# one: $H_q(X^{(0)} \mid X^{(t)}) \ge H_q(X^{(0)} \mid X^{(t-1)})$. Write both sides with Bayes' rule,
# $H_q(X^{(0)} \mid X^{(s)}) = H_q(X^{(s)} \mid X^{(0)}) + H_q(X^{(0)}) - H_q(X^{(s)})$, cancel $H_q(X^{(0)})$, and rearrange:
# $H_q(X^{(t-1)}) - H_q(X^{(t)}) \ge H_q(X^{(t-1)} \mid X^{(0)}) - H_q(X^{(t)} \mid X^{(0)})$. Put this into Eq. 27: the left side of Eq. 24. This one
# holds for any data.
#
# **The Gaussian forward process.** Per dimension, $H_q(X^{(t)} \mid X^{(t-1)}) = \tfrac12 \log(2\pi e \beta_t)$ and
# $H_q(X^{(t)} \mid X^{(0)}) = \tfrac12 \log(2\pi e (1 - \bar\alpha_t))$, so
# $$\text{upper}_t = \tfrac12 \log(2\pi e\, \beta_t), \qquad \text{lower}_t = \tfrac12 \log\Big(2\pi e\, \frac{(1 - \bar\alpha_{t-1})\, \beta_t}{1 - \bar\alpha_t}\Big) = \tfrac12 \log(2\pi e\, \tilde\beta_t) .$$
# These are the entropies of $\mathcal N(\cdot, \beta_t)$ and $\mathcal N(\cdot, \tilde\beta_t)$: DDPM's two choices of $\sigma_t^2$ (its Sec. 3.2: "the first choice is
# optimal for $x_0 \sim \mathcal N(0, I)$, and the second is optimal for $x_0$ deterministically set to one point ... the two
# extreme choices correspond to upper and lower bounds on reverse process entropy for data with coordinatewise
# unit variance"). Indeed Gaussian data $\mathcal N(0, s^2)$ gives $H_q(X^{(t-1)} \mid X^{(t)}) = \tfrac12 \log(2\pi e\, \beta_t V_{t-1} / V_t)$ with
# $V_t = \bar\alpha_t s^2 + 1 - \bar\alpha_t$: the upper bound for $s = 1$, the lower bound as $s \to 0$.
# `NoiseSchedule.reverse_entropy_bounds()` computes Eq. 24's two sides.

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)
lower, upper = s.reverse_entropy_bounds()
ts = torch.arange(2, s.T + 1)
h = lambda v: 0.5 * torch.log(2 * math.pi * math.e * v)  # noqa: E731  entropy of N(., v), nats
print(f"lower_t - 1/2 log(2 pi e beta~_t): max |diff| over t = 2..T {below(float((lower[ts] - h(s.posterior_variance[ts])).abs().max()))}")
print(f"upper_t - 1/2 log(2 pi e beta_t):  max |diff| over t = 1..T {below(float((upper[1:] - h(s.betas[1:])).abs().max()))}")
true_gauss = {}
for std in (1.0, 1e-6, 0.5):
    _, Vs = dl.GaussianData(dim=1, std=std).marginal(s.alpha_bars)
    Vs = Vs[:, 0]
    true_gauss[std] = 0.5 * torch.log(2 * math.pi * math.e * s.betas[ts] * Vs[ts - 1] / Vs[ts])
print(f"Gaussian data, s = 1:    max |H - upper| over t = 2..T {below(float((true_gauss[1.0] - upper[ts]).abs().max()))} nats")
print(f"Gaussian data, s = 1e-6: max |H - lower| over t = 2..T {below(float((true_gauss[1e-6] - lower[ts]).abs().max()), 1e-6)} nats")
gap_lo, gap_up = true_gauss[0.5] - lower[ts], upper[ts] - true_gauss[0.5]
print(f"Gaussian data, s = 0.5:  strictly between the bounds at every t: {bool((gap_lo > 0).all() and (gap_up > 0).all())} "
      f"(smallest margins {float(gap_lo.min()):.1e} and {float(gap_up.min()):.1e} nats)")

# %% [markdown]
# **Toys where the true value lies strictly between.** Chapter 02's 1-D mixture, shifted and scaled to mean 0
# and variance 1. Its marginals are mixtures in closed form,
# $q(x^{(t)}) = \sum_k w_k\, \mathcal N\big(\sqrt{\bar\alpha_t}\, m_k, \bar\alpha_t s_k^2 + 1 - \bar\alpha_t\big)$, so $H_q(X^{(t)})$ is an integral on a fine grid and
# $H_q(X^{(t-1)} \mid X^{(t)})$ follows from Eq. 27. First, a check of Eq. 27 itself at one coarse step, against the
# conditional entropy computed directly from the reverse kernel on a 2-D grid,
# $H_q(X^{(t-1)} \mid X^{(t)}) = -\iint q(x^{(t-1)}, x^{(t)}) \log q(x^{(t-1)} \mid x^{(t)})\, dx^{(t-1)} dx^{(t)}$.

# %%
m0 = float((mix["weights"] * mix["means"]).sum())
sd0 = math.sqrt(float((mix["weights"] * (mix["stds"] ** 2 + mix["means"] ** 2)).sum()) - m0 ** 2)
toy = dict(means=(mix["means"] - m0) / sd0, stds=mix["stds"] / sd0, weights=mix["weights"])
xg = torch.linspace(-9, 9, 4001, dtype=torch.float64)


def marginal_entropies(alpha_bars, means, stds, weights):
    """H_q(X^(t)) in nats for mixture data noised to each alpha_bar: -int q log q by the trapezoid rule on xg
    (the mixture density written out, to do many alpha_bars at once; checked against the library below)."""
    out = []
    for ab in alpha_bars.split(250):
        var = ab[:, None] * stds[None, :] ** 2 + 1 - ab[:, None]                       # (n, K)
        z = xg[None, :, None] - ab.sqrt()[:, None, None] * means[None, None, :]     # (n, grid, K)
        lp = torch.logsumexp(weights.log() - 0.5 * z ** 2 / var[:, None] - 0.5 * torch.log(2 * math.pi * var[:, None]), -1)
        out.append(-torch.trapezoid(lp.exp() * lp, xg, dim=-1))
    return torch.cat(out)


ab_check = torch.tensor([0.9], dtype=torch.float64)
lp_lib = gaussian_mixture_log_prob(xg, means=(ab_check.sqrt() * toy["means"]).reshape(-1, 1),
                                   stds=(ab_check * toy["stds"] ** 2 + 1 - ab_check).sqrt(), weights=toy["weights"])
H_lib = float(-torch.trapezoid(lp_lib.exp() * lp_lib, xg))
print(f"H(X^t) at alpha_bar = 0.9 with the library's mixture density: |diff| {below(H_lib - float(marginal_entropies(ab_check, **toy)[0]))}")

# one step x^{t-1} -> x^t with alpha_bar_{t-1} = 0.9 and beta = 0.05, on a 2-D grid
ab_prev, beta = 0.9, 0.05
gg = np.linspace(-7, 7, 1401)
lp_prev = gaussian_mixture_log_prob(torch.from_numpy(gg), means=(math.sqrt(ab_prev) * toy["means"]).reshape(-1, 1),
                                    stds=(ab_prev * toy["stds"] ** 2 + 1 - ab_prev).sqrt(), weights=toy["weights"]).numpy()
lik = np.exp(-0.5 * (gg[:, None] - math.sqrt(1 - beta) * gg[None, :]) ** 2 / beta) / math.sqrt(2 * math.pi * beta)
joint = lik * np.exp(lp_prev)[None, :]       # q(x^t | x^{t-1}) q(x^{t-1}), rows x^t, columns x^{t-1}
q_t = trapz(joint, gg)
cond = joint / np.maximum(q_t, 1e-300)[:, None]  # q(x^{t-1} | x^t)
safe = np.where(cond > 0, cond, 1.0)
H_direct = float(-trapz(trapz(joint * np.log(safe), gg), gg))
H_pair = marginal_entropies(torch.tensor([ab_prev, ab_prev * (1 - beta)], dtype=torch.float64), **toy)
H_eq27 = 0.5 * math.log(2 * math.pi * math.e * beta) + float(H_pair[0] - H_pair[1])
print(f"H(X^(t-1) | X^t) at alpha_bar_(t-1) = 0.9, beta = 0.05: directly {H_direct:.6f}, by Eq. 27 {H_eq27:.6f} nats "
      f"(|diff| {below(H_direct - H_eq27, 1e-9)})")

# %% [markdown]
# Now every step of DDPM's schedule ($T = 1000$), for three versions of the toy: the unit-variance one; a
# sharp one (each component 10 times narrower, variance just below 1); and the unit-variance one scaled by 2
# (variance 4), where the premise of the upper bound fails. We plot where the true value lies,
# $(H - \text{lower}) / (\text{upper} - \text{lower})$: 0 at the lower bound, 1 at the upper one.

# %%
toys = {"unit-variance toy": toy,
        "sharp toy (widths / 10)": dict(toy, stds=toy["stds"] / 10),
        "toy x 2 (variance 4)": dict(toy, means=2 * toy["means"], stds=2 * toy["stds"])}
pos = {}
for name, tt in toys.items():
    H_marg = marginal_entropies(s.alpha_bars, **tt)              # H_q(X^(t)), t = 0..T
    true_H = upper[ts] + H_marg[ts - 1] - H_marg[ts]             # Eq. 27
    pos[name] = (true_H - lower[ts]) / (upper[ts] - lower[ts])
    var = float((tt["weights"] * (tt["stds"] ** 2 + tt["means"] ** 2)).sum() - (tt["weights"] * tt["means"]).sum() ** 2)
    n_up, n_lo = int((true_H > upper[ts] + 1e-9).sum()), int((true_H < lower[ts] - 1e-9).sum())
    print(f"{name:<24} (variance {var:.3f}): above the upper bound at {n_up:>3} of {len(ts)} steps, below the lower "
          f"at {n_lo}; position {float(pos[name].min()):.3f} (t = {int(ts[pos[name].argmin()])}) .. {float(pos[name].max()):.3f}")

# the bounds against beta for one step from alpha_bar_(t-1) = 0.99
betas_grid = torch.logspace(-4, math.log10(0.5), 25, dtype=torch.float64)
ab_step = 0.99
up_b = h(betas_grid)
lo_b = h(betas_grid * (1 - ab_step) / (1 - ab_step * (1 - betas_grid)))
ab_pair = torch.cat([torch.tensor([ab_step], dtype=torch.float64), ab_step * (1 - betas_grid)])
tr_b = {}
for name in ("unit-variance toy", "sharp toy (widths / 10)"):
    H_step = marginal_entropies(ab_pair, **toys[name])
    tr_b[name] = up_b + H_step[0] - H_step[1:]                   # Eq. 27
    inside = bool(((tr_b[name] >= lo_b - 1e-9) & (tr_b[name] <= up_b + 1e-9)).all())
    print(f"one step from alpha_bar = {ab_step}, {name}: between the bounds at all {len(betas_grid)} betas: {inside}")
print(f"upper - lower = {float(up_b[0] - lo_b[0]):.2e} nats at beta = 1e-4, {float(up_b[-1] - lo_b[-1]):.3f} at beta = 0.5")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, p_ in pos.items():
    ax1.plot(ts, p_, label=name)
ax1.axhline(0, c="k", lw=0.8)
ax1.axhline(1, c="k", lw=0.8)
ax1.set(xscale="log", xlabel="t", ylabel="(H - lower) / (upper - lower)", ylim=(-0.2, 4.3),
        title="where H(X^(t-1) | X^t) lies between the bounds (Eq. 24)")
ax1.text(2.2, 1.05, "upper: 1/2 log 2 pi e beta_t", va="bottom")
ax1.text(2.2, -0.05, "lower: 1/2 log 2 pi e beta~_t", va="top")
ax1.legend(loc="upper left", bbox_to_anchor=(0.0, 0.85))
ax2.plot(betas_grid, up_b - lo_b, c="k", label="upper bound")
for k, (name, v) in enumerate(tr_b.items()):
    ax2.plot(betas_grid, v - lo_b, ".", c=f"C{k}", ms=5, label=name)
ax2.set(xscale="log", yscale="log", xlabel="beta of the step", ylabel="H - lower bound (nats)",
        title=f"one step from alpha_bar_(t-1) = {ab_step}")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Both toys of variance at most 1 stay between the bounds at every step. Where they lie depends on how the
# data look at the scale of the noise added so far, $\sqrt{1 - \bar\alpha_{t-1}}$. Where the data look smooth on that scale
# (the unit-variance toy in its first steps), $x^{(t)}$ tells little more about $x^{(t-1)}$ than the forward kernel does,
# and the true value sits at the upper bound. Where they look like a few sharp points (the sharp toy once the
# noise is about as wide as its components, near $t = 40$), $x^{(t)}$ nearly pins down $x^{(0)}$ and the true value comes
# close to the lower bound, the entropy for a single data point. Near the end everything is noise and the
# position tends to the data's variance (1 for the unit toy). The toy scaled to
# variance 4 loses entropy in most forward steps (each shrinks the data by $\sqrt{1 - \beta_t}$ faster than the noise
# fills it in), and its true value is above the upper bound there, as the premise of Eqs. 28-30 predicts.
# On the right, as $\beta \to 0$ the bounds meet: their gap $\tfrac12 \log\big((1 - \bar\alpha_t)/(1 - \bar\alpha_{t-1})\big)$ vanishes, which is
# why for small steps the choice between $\sigma_t^2 = \beta_t$ and $\tilde\beta_t$ matters little (DDPM found similar
# sample quality with both).
#
# ## Exercises
#
# **Exercise 12.1 (the first-order rule, App. C).** Write `my_perturbed_mean(mean, variance, grad_log_r)`: given a
# Gaussian kernel's mean $\mu$ (a tensor), its diagonal covariance (a tensor broadcastable to $\mu$) and a function
# `grad_log_r(y)` returning $\nabla \log r(y)$, return the mean of $\tilde p(x^{(t-1)} \mid x^{(t)})$ to first order, Eq. 61.

# %% tags=["solution"]
def my_perturbed_mean(mean, variance, grad_log_r):
    """mu + Sigma grad log r(mu) (Sohl-Dickstein et al. 2015, App. C, Eq. 61)."""
    # BEGIN SOLUTION
    return mean + variance * grad_log_r(mean)
    # END SOLUTION


# %%
checks.check("perturbed_mean", my_perturbed_mean)


# %% [markdown]
# **Exercise 12.2 (Eq. 24 for the Gaussian forward process).** Write `my_entropy_bounds(schedule)` returning
# `(lower, upper)`: tables of length $T + 1$ (paper indexing; any value at $t = 0$ and, for `lower`, at $t = 1$), the
# two sides of Eq. 24 per dimension in nats, using $H_q(X^{(t)} \mid X^{(t-1)}) = \tfrac12 \log(2\pi e \beta_t)$ and
# $H_q(X^{(t)} \mid X^{(0)}) = \tfrac12 \log(2\pi e (1 - \bar\alpha_t))$. Use `schedule.betas` and `schedule.alpha_bars`.

# %% tags=["solution"]
def my_entropy_bounds(schedule):
    """(lower, upper) of Sohl-Dickstein et al. 2015 Eq. 24 for the Gaussian forward process, nats per dimension."""
    # BEGIN SOLUTION
    H = lambda v: 0.5 * torch.log(2 * math.pi * math.e * v)  # noqa: E731
    upper = H(schedule.betas)                      # H(X_t | X_{t-1}); index 0 is a placeholder
    cond0 = H(1 - schedule.alpha_bars)             # H(X_t | X_0); -inf at t = 0
    lower = upper.clone()
    lower[1:] = upper[1:] + cond0[:-1] - cond0[1:]
    return lower, upper
    # END SOLUTION


# %%
checks.check("entropy_bounds", my_entropy_bounds)

# %% [markdown]
# **Exercise 12.3 (derive $r_t$ for a window off the centre).** Section 3 used the window $r(x) = \exp(-x^2 / 2w^2)$
# centred on the data's mean. Move it to $c$: $r(x^{(0)}) = \exp\big(-(x^{(0)} - c)^2 / 2w^2\big)$, data $\mathcal N(0, 1)$ in one
# dimension. Derive $\nabla \log r_t(x)$ for the consistent factor $r_t(x) = \mathbb E[r(x^{(0)}) \mid x^{(t)} = x]$ at a step with $\bar\alpha$, and
# write it as `window_r_t_grad(x, alpha_bar, c, w)` (`x` a tensor, the rest numbers). Before you check: what should it
# become as $\bar\alpha \to 1$, and as $\bar\alpha \to 0$?

# %% tags=["solution"]
def window_r_t_grad(x, alpha_bar, c, w):
    """grad log E[r(x_0) | x_t = x] for r(x_0) = exp(-(x_0 - c)^2 / (2 w^2)) and data N(0, 1)."""
    # BEGIN SOLUTION
    return -math.sqrt(alpha_bar) * (math.sqrt(alpha_bar) * x - c) / (w ** 2 + 1 - alpha_bar)
    # END SOLUTION


# %%
checks.check("window_r_t_grad", window_r_t_grad)

# %% [markdown]
# ## Summary
#
# - To sample $\tilde p(x^{(0)}) \propto p(x^{(0)})\, r(x^{(0)})$, multiply every intermediate distribution by a factor (Eq. 16); the
#   reverse kernel then becomes the kernel times $r(x^{(t-1)})$, normalized (Eq. 22). It is exact when the factor
#   at step $t$ is $r_t(x^{(t)}) = \mathbb E[r(x^{(0)}) \mid x^{(t)}]$; the paper's fixed $r$ (Eq. 23) is only approximate, and over a
#   long chain it over-weights $r$ (toward $p\, r^2$ for Gaussian data), as the 1-D and 2-D checks measured.
# - For a Gaussian kernel and a smooth $r$, the product is a Gaussian with the mean moved by
#   $\Sigma\, \nabla \log r(\mu)$ (App. C), accurate to $O(\Sigma^2)$; a Gaussian $r$ or a delta multiply exactly.
# - Inpainting is $r = \delta$ on the known pixels: the known coordinates are set, the unknown ones follow the
#   model. `dl.inpaint` sets them to fresh samples of $q(x_t \mid x_0)$ at every step; the trained U-Net restores the
#   hidden centre of real test images (numbers above). Replacement leaves out the half of $r_t$ that makes the hole
#   fit the known pixels (the bag's shoe); resampling, `resample=U`, is one way to put it back (measured above).
# - The entropy of a reverse step lies between $\tfrac12 \log(2\pi e\, \tilde\beta_t)$ and $\tfrac12 \log(2\pi e\, \beta_t)$ per dimension (Eq. 24):
#   DDPM's two fixed variances; the upper bound needs data of variance at most 1.
#
# **Next:** chapter 13 uses the same trained model to reconstruct an image from a noised $x_t$ and to
# interpolate between two images in $x_t$ space.
