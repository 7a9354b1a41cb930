# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 13 · Reconstruction from $x_t$ and interpolation in $x_t$ space
#
# The study notes end their summary of DDPM with two experiments (the paper's Secs. 4.3 and 4.4): "by sharing the image at
# different steps, one can generate images of different similarity", and "diffusion models are well suited to image
# interpolation". Both read the forward process as an **encoder** and the reverse process as a **decoder**: noise an
# image to $x_t$ with $q(x_t \mid x_0)$, then run Algorithm 2 from $t$ instead of from $T$. This chapter derives what the
# encoder keeps, checks the decoder on data where the answer is known, and then does both experiments with the
# trained U-Net, measuring rather than only looking.
#
# **Learning goals.** After this chapter you can
# - treat $q(x_t \mid x_0)$ as a stochastic encoder and the reverse process from $t$ as a decoder $p_\theta(x_0 \mid x_t)$, and say
#   how much of $x_0$ survives in $x_t$;
# - reconstruct: noise an image to $x_t$ and decode it several times, and measure (squared distance, classifier agreement)
#   how much more the decodings share with the original the smaller $t$ is;
# - interpolate between two images in $x_t$ space as DDPM does, and explain why a *linear* mix of two noisy latents has
#   too little noise, and what a *spherical* mix changes;
# - use `ddpm_lib.sampling.reconstruct` and `interpolate`, and the two explorers built on them.
#
# **CPU time:** about 30 s on a 2-core CPU, nearly all of it in the U-Net (budget: 60 s). Decoding costs one network
# evaluation per image and step (about 40 ms on such a CPU), so every decoding here runs on a 20-step respaced chain
# (chapter 10, section 5), with 3 images and 2 draws for reconstruction and one pair for interpolation; the explorers
# show grids computed once, so moving a slider never samples.

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib import viz
from ddpm_lib.course import checks, widgets
from ddpm_lib.classifier import load_classifier
from ddpm_lib.course.widgets.reconstruction import interpolation_grid, reconstruction_grid
from ddpm_lib.course.replay import below, within_sigma  # verdicts: '< 1e-12', 'within 3 sigma: True'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data



pre = dl.load_pretrained("fashion-mnist-unet")  # verified by sha256, loaded without pickle
net, d = pre.model, pre.diffusion
s = d.schedule
test_x, test_y = dl.fashion_mnist("test", download=False)
print(f"model: {pre.config['model_class']}, {s.name} schedule, T = {s.T}, predicts {d.prediction}, "
      f"variance {d.variance}")

# %% [markdown]
# ## 1. An encoder that forgets, a decoder that invents
#
# **The encoder.** DDPM Eq. 4 reparameterized, $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$, is a *stochastic* encoder with no
# parameters: the same $x_0$ gives a different $x_t$ for every $\epsilon$. For a pixel of variance $v$ across the data, the share
# of $x_t$'s variance that comes from $x_0$ is
# $$\rho_t = \frac{\bar\alpha_t v}{\bar\alpha_t v + 1 - \bar\alpha_t},$$
# the squared correlation between $x_0$ and $x_t$. It falls from 1 to 0 as $t$ grows: that is all the encoder keeps.
#
# **The decoder.** Running Algorithm 2 from $t$ down to 1 draws from
# $p_\theta(x_0 \mid x_t) = \int \prod_{s=1}^{t} p_\theta(x_{s-1} \mid x_s)\, dx_{1:t-1}$, the model's guess of the true posterior
# $q(x_0 \mid x_t) \propto q(x_t \mid x_0)\, q(x_0)$. What survives in $x_t$ is kept; what was lost is *invented*, drawn from what the
# model learned about the data. So a reconstruction $\hat x_0$ and the original $x_0$ are, ideally, two independent draws
# from $q(x_0 \mid x_t)$ given the same $x_t$, and their mean squared distance per coordinate is
# $$\mathbb E\,\|\hat x_0 - x_0\|^2 / D = \operatorname{Var}(x_0 \mid x_t) + \operatorname{Var}(\hat x_0 \mid x_t).$$
# For Gaussian data $x_0 \sim \mathcal N(m, I)$ everything is known: $\operatorname{Var}(x_0 \mid x_t) = 1 - \bar\alpha_t$, and the true reverse kernels are
# Gaussians with variance $\beta_t$ (chapter 10, section 4), so the reverse process with the optimal $\epsilon$-predictor and
# $\sigma_t^2 = \beta_t$ is *exact*, on the full chain and on a respaced one. Only the last step differs: it returns the mean
# $\mathbb E[x_0 \mid x_{\tau_1}]$ with no noise, which removes $\operatorname{Var}(x_0 \mid x_{\tau_1}) = 1 - \bar\alpha_{\tau_1}$ from $\hat x_0$'s spread. Hence
# $$\mathbb E\,\|\hat x_0 - x_0\|^2 / D = 2\,(1 - \bar\alpha_t) - (1 - \bar\alpha_{\tau_1}),$$
# with $\tau_1$ the chain's first timestep. A check of `dl.sampling.reconstruct` with `GaussianData`'s optimal network (no
# training, no U-Net), on the same 20-step chain the U-Net will use:

# %%
STEPS = 20
gauss = dl.GaussianData(dim=16, mean=0.5, std=1.0)
d_gauss = dl.GaussianDiffusion(s, variance="fixed_large", decoder="gaussian").respace(STEPS)
opt_eps = gauss.eps_model(s.alpha_bars)  # E[eps | x_t]: the best eps-network, fed the original t
g = torch.Generator().manual_seed(0)
x0_g = gauss.sample(4000, generator=g, dtype=torch.float64)
grid_t = d_gauss.schedule.timesteps.tolist()  # index k of the 20-step chain -> original t
tau_1 = grid_t[1]
print(f"20-step chain: t = {grid_t[1]}, {grid_t[2]}, ..., {grid_t[-1]}; Gaussian data, 4000 x 16 coordinates")
for t_orig in (50, 200, 600, 1000):
    k = grid_t.index(t_orig)
    x_hat = dl.reconstruct(opt_eps, d_gauss, x0_g, k, generator=g, progress=False)
    msd = ((x_hat - x0_g) ** 2).mean().item()
    exact = 2 * (1 - s.alpha_bars[t_orig].item()) - (1 - s.alpha_bars[tau_1].item())
    se = ((x_hat - x0_g) ** 2).std().item() / math.sqrt(x0_g.numel())
    print(f"  t = {t_orig:4d}: Monte Carlo {msd:.4f} +- {se:.4f}, closed form 2(1 - abar_t) - (1 - abar_tau1) = {exact:.4f} "
          f"({within_sigma(msd, exact, se)})")

# %% [markdown]
# ## 2. Reconstruction with the trained U-Net
#
# Now the images. Three test images of different classes, each encoded twice at every $t$ in $\{50, 200, 400, 600, 1000\}$
# and decoded by the reverse process (`reconstruction_grid` calls `dl.sampling.reconstruct`). At $t = 1000$ nothing of $x_0$ is
# left ($\rho_T \approx 0$) and the "reconstructions" are plain samples: they show how far apart *unrelated* images are. The
# decoder uses $\sigma_t^2 = \tilde\beta_t$: on a 20-step chain the paper's $\beta_t$ adds noise the few remaining steps cannot remove
# (chapter 10, section 5). The network calls: $2 \times 3 \times (1 + 4 + 8 + 12 + 20) = 270$ images, about 11 s.

# %%
dec = dl.GaussianDiffusion(s, prediction=d.prediction, variance="fixed_small")  # sigma_t^2 = beta~_t for short chains
idx = [int((test_y == c).nonzero()[0]) for c in (9, 2, 1)]  # the first test image of 3 classes
x0 = test_x[idx]
TS = [50, 200, 400, 600, 1000]
rg = reconstruction_grid(net, dec, x0, TS, n_draws=2, steps=STEPS, seed=1)
print(f"network evaluations: {rg.network_evaluations} images (= 2 draws x 3 images x the steps below each t)")

# the encoder is DDPM Eq. 4: the first t's x_t is q_sample with the generator's first draw
g_check = torch.Generator().manual_seed(1)
eps_first = torch.randn((2 * 3, 1, 28, 28), generator=g_check)
chain = dec.respace(STEPS)  # the 20-step chain; index k stands for the original t = chain.schedule.timesteps[k]
k_first = chain.schedule.timesteps.tolist().index(TS[0])
x_t_eq4 = chain.q_sample(x0.repeat(2, 1, 1, 1), torch.full((6,), k_first), eps_first)
print(f"stored x_t at t = {TS[0]} vs sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Eq. 4): max |diff| "
      f"{below((rg.x_t[0].reshape(6, 1, 28, 28) - x_t_eq4).abs().max().item(), 1e-5)}")

# %%
clf = load_classifier()  # the course's Fashion-MNIST classifier (ddpm_lib.classifier)


@torch.no_grad()
def classify(x):
    return clf(x.clamp(-1, 1)).argmax(1)


v_pix = test_x.var().item()  # the pixel variance of the data, for rho_t
label_x0 = classify(x0)
msd = rg.mean_sq_distance()
agree = [(classify(rg.samples[m].reshape(-1, 1, 28, 28)) == label_x0.repeat(2)).double().mean().item()
         for m in range(len(TS))]
print(f"pixel variance of the test images v = {v_pix:.3f}; the classifier labels the 3 originals "
      f"{', '.join(dl.FASHION_MNIST_CLASSES[i] for i in label_x0.tolist())}")
print(f"{'t':>5}{'sqrt(abar_t)':>14}{'rho_t':>8}{'mean sq. distance':>19}{'same class as x_0':>19}")
for m, t_ in enumerate(TS):
    ab_t = s.alpha_bars[t_].item()
    rho = ab_t * v_pix / (ab_t * v_pix + 1 - ab_t)
    print(f"{t_:>5}{math.sqrt(ab_t):>14.3f}{rho:>8.3f}{msd[m].item():>19.3f}{agree[m]:>14.2f} (of 6)")

# %%
fig, ax1 = plt.subplots(figsize=(6, 3.2))
ax1.plot(TS, msd, "o-", c="C0", label="mean squared distance to x_0")
ax1.set(xlabel="t (encoding depth)", ylabel="mean squared distance per pixel")
ax2 = ax1.twinx()
ax2.plot(TS, agree, "s--", c="C1", label="same class as x_0")
ax2.set(ylabel="fraction with x_0's class", ylim=(-0.05, 1.05))
fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)  # below the axes, off the data
ax1.set_title("reconstructions share more with x_0 the smaller t is")
plt.tight_layout()
plt.show()

# %% [markdown]
# The widget shows the grid: for each image, the original, one of its $x_t$, and both decodings; the slider picks $t$ (it
# steps through the five computed values). Small $t$ changes only texture; at intermediate $t$ the silhouette, and usually the
# class, survive while the details are new; at large $t$ even the class is re-drawn (the table above says where, for this
# model). The paper's Fig. 7 shows the same on faces: samples decoded from a shared $x_t$ share "high-level attributes".

# %% tags=["nbval-ignore-output"]
box = widgets.reconstruction_explorer(rg)
box

# %%
box.static_figure(index=1)
plt.show()

# %% [markdown]
# ## 3. Interpolation in $x_t$ space
#
# DDPM's method (Sec. 4.4, Fig. 8), as the notes describe it: encode both images with the same $t$, $x_t \sim q(x_t \mid x_0)$ and
# $x'_t \sim q(x_t \mid x'_0)$; mix the latents **linearly**, $\bar x_t = (1 - \lambda)\, x_t + \lambda\, x'_t$; decode $\bar x_t$ by the reverse process,
# with the *same* reverse-process noise for every $\lambda$, so that only $\lambda$ changes between the decodings. The smaller $t$, the
# more the result is a cross-fade of the two images; the larger $t$, the more the decoder re-draws a plausible garment.
#
# **Why not just mix the images?** $(1 - \lambda) x_0 + \lambda x'_0$ is a double exposure, not a garment. Mixing in $x_t$ space and
# decoding lets the model turn the blend into an image it finds likely.
#
# **Linear or spherical?** Write the latents as signal plus noise. The linear mix is
# $$\bar x_t = \sqrt{\bar\alpha_t}\,\big((1 - \lambda) x_0 + \lambda x'_0\big) + \sqrt{1 - \bar\alpha_t}\,\big((1 - \lambda)\epsilon + \lambda \epsilon'\big),$$
# and for independent $\epsilon, \epsilon'$ the mixed noise has variance $(1 - \lambda)^2 + \lambda^2$ per coordinate: $\frac12$ at $\lambda = \frac12$. The
# decoder, told the noise level is $t$'s, receives a latent with too little noise, and removes noise that is not there: the
# midpoints come out smoother and greyer. Spherical interpolation (slerp),
# $\bar x_t = \frac{\sin((1-\lambda)\theta)}{\sin\theta} x_t + \frac{\sin(\lambda\theta)}{\sin\theta} x'_t$ with $\theta$ the angle between the two latents, keeps the norm: in
# high dimension independent noises are nearly orthogonal, $\theta \approx 90°$, and the weights become $\cos(\lambda\pi/2)$ and
# $\sin(\lambda\pi/2)$, whose squares sum to 1. We use the **linear** mix, as DDPM and the notes do (and as
# `dl.sampling.interpolate` implements), and compare slerp at one $t$ below.
#
# The grid: one pair of test images, $\lambda \in \{0, \frac18, \dots, 1\}$, $t \in \{200, 400, 600\}$, 20-step chain:
# $9 \times (4 + 8 + 12) = 216$ network evaluations.

# %%
LAMBDAS = [i / 8 for i in range(9)]
TI = [200, 400, 600]
pair_a, pair_b = test_x[idx[0]:idx[0] + 1], test_x[idx[1]:idx[1] + 1]  # an ankle boot and a pullover
ig = interpolation_grid(net, dec, pair_a, pair_b, lambdas=LAMBDAS, ts=TI, steps=STEPS, seed=2)
print(f"network evaluations: {ig.network_evaluations}")

# the mixed latents: x_bar = (1 - lambda) x_t + lambda x'_t, with x_t, x'_t the lambda = 0 and 1 rows
lin = (1 - ig.lambdas.view(1, -1, 1, 1, 1, 1)).float() * ig.x_bar[:, :1] + ig.lambdas.view(1, -1, 1, 1, 1, 1).float() * ig.x_bar[:, -1:]
print(f"recorded x_bar_t vs (1 - lambda) x_t + lambda x'_t: max |diff| {below((ig.x_bar - lin).abs().max().item(), 1e-5)}")
print("variance of the mixed noise, (x_bar_t - sqrt(abar_t) mixed x_0) / sqrt(1 - abar_t), against (1 - lambda)^2 + lambda^2:")
for m, t_ in enumerate(TI):
    ab_t = s.alpha_bars[t_].item()
    parts = []
    for li in (0, 2, 4):
        lam = LAMBDAS[li]
        signal = math.sqrt(ab_t) * ((1 - lam) * pair_a + lam * pair_b)
        noise = (ig.x_bar[m, li] - signal) / math.sqrt(1 - ab_t)
        parts.append(f"lambda = {lam:.2f}: {noise.var().item():.3f} vs {(1 - lam) ** 2 + lam ** 2:.3f}")
    print(f"  t = {t_}: " + "; ".join(parts) + f" (784 pixels: 3 sigma of MC error about {3 * math.sqrt(2 / 784):.2f} relative)")

# %%
da = ((ig.samples - ig.x0_a) ** 2).flatten(2).mean(2)  # (t, lambda): distance to the first image
db = ((ig.samples - ig.x0_b) ** 2).flatten(2).mean(2)
fig, ax = plt.subplots(figsize=(6, 3.2))
for m, t_ in enumerate(TI):
    ax.plot(LAMBDAS, da[m], "o-", c=f"C{m}", label=f"t = {t_}: to x_0")
    ax.plot(LAMBDAS, db[m], "s--", c=f"C{m}", label=f"t = {t_}: to x'_0")
ax.set(xlabel="lambda", ylabel="mean squared distance", title="decoded interpolations: distance to both ends")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
plt.tight_layout()
plt.show()
pred_mid = [dl.FASHION_MNIST_CLASSES[int(c)] for c in classify(ig.samples[:, 4, 0])]
print("at lambda = 0.5 the classifier sees: " + ", ".join(f"t = {t_}: {c}" for t_, c in zip(TI, pred_mid)))

# %% [markdown]
# The explorer: move $\lambda$ and $t$. The top row shows both sources, the mixed latent and its decoding; the bottom row all
# nine decodings at this $t$, with the current one framed.

# %% tags=["nbval-ignore-output"]
ibox = widgets.interpolation_explorer(ig)
ibox

# %%
ibox.static_figure()
plt.show()

# %% [markdown]
# **Slerp, for comparison**, at $t = 400$: the same two latents $x_t, x'_t$ (the grid's $\lambda = 0$ and $1$), mixed linearly and
# spherically for $\lambda \in \{0, \frac14, \frac12, \frac34, 1\}$ (at the ends both mixes are $x_t$ and $x'_t$ themselves), and decoded
# together with `dec.respace(20).sample(..., noise=x_bar, t_start=...)` with one shared reverse-process noise for all of them,
# so that the mix is the only difference ($8 \times 8 = 64$ network evaluations).

# %%
m_s = TI.index(400)
xa_t, xb_t = ig.x_bar[m_s, 0], ig.x_bar[m_s, -1]  # (1, 1, 28, 28) each
cos = (xa_t.flatten() @ xb_t.flatten() / (xa_t.norm() * xb_t.norm())).item()
theta = math.acos(cos)
LS = [0.0, 0.25, 0.5, 0.75, 1.0]
linear = torch.cat([(1 - lam) * xa_t + lam * xb_t for lam in LS])
slerp = torch.cat([(math.sin((1 - lam) * theta) * xa_t + math.sin(lam * theta) * xb_t) / math.sin(theta)
                   for lam in LS[1:-1]])
latents = torch.cat([linear, slerp])  # 5 linear (ends included) + 3 spherical
k_s = chain.schedule.timesteps.tolist().index(400)
g_dec = torch.Generator().manual_seed(3)
shared = lambda _t, x: torch.randn((1, *x.shape[1:]), generator=g_dec).repeat(x.shape[0], 1, 1, 1)  # noqa: E731
decoded = chain.sample(net, latents.shape, noise=latents, t_start=k_s, step_noise=shared, progress=False)
row_lin = decoded[:5]
row_slerp = torch.cat([decoded[:1], decoded[5:], decoded[4:5]])
print(f"angle between x_t and x'_t at t = 400: {math.degrees(theta):.1f} degrees")
print(f"latent norm / norm of x_t at lambda = 0.5: linear {(linear[2].norm() / xa_t.norm()).item():.3f}, "
      f"slerp {(slerp[1].norm() / xa_t.norm()).item():.3f}")
print(f"pixel std of the decoded images, lambda = 0, 0.25, 0.5, 0.75, 1: linear "
      f"{', '.join(f'{v:.3f}' for v in row_lin.flatten(1).std(1).tolist())}; slerp "
      f"{', '.join(f'{v:.3f}' for v in row_slerp.flatten(1).std(1).tolist())}")
fig, axes = plt.subplots(2, 1, figsize=(5, 2.6))
viz.show_images(row_lin.clamp(-1, 1), ax=axes[0], nrow=5, title="t = 400, linear mix (DDPM)")
viz.show_images(row_slerp.clamp(-1, 1), ax=axes[1], nrow=5, title="t = 400, spherical mix (slerp), same noise")
plt.tight_layout()
plt.show()

# %% [markdown]
# With the same reverse-process noise, the ends agree by construction, and the interior decodings differ only by the mix.
# The linear latents are shorter (their noise part has variance $\frac12$ at $\lambda = \frac12$), and the decoder, which expects
# $t$'s noise level, removes noise that is not there: compare the contrast (pixel standard deviation) of the interior
# decodings printed above. Slerp keeps the latent's norm. That is why later work mixes spherically (e.g. Song et al.
# 2021 interpolate DDIM latents by slerp); DDPM's linear mix works, but pulls its midpoints toward smoother images, the
# more so the larger $t$.

# %% [markdown]
# ## 4. Exercises
#
# **Exercise 13.1 (the encoder).** Write `q_sample(x0, t, noise, alpha_bars)`, the stochastic encoder of this chapter:
# $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$ (DDPM Eq. 4), with `alpha_bars` of length $T + 1$ and `t` a LongTensor $(B,)$.

# %% tags=["solution"]
def q_sample(x0, t, noise, alpha_bars):
    """x_t ~ q(x_t | x_0) by reparameterization (DDPM Eq. 4)."""
    # BEGIN SOLUTION
    ab = alpha_bars[t].view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    # END SOLUTION


# %%
checks.check("q_sample", q_sample)


# %% [markdown]
# **Exercise 13.2 (the mixed latent).** Write `mix_latents(x_t_a, x_t_b, lam)`, DDPM's linear mix
# $\bar x_t = (1 - \lambda)\, x_t + \lambda\, x'_t$. The check compares your mix of the grid's two latents at $t = 400$, $\lambda = 0.375$ with the
# latent `dl.sampling.interpolate` recorded.

# %% tags=["solution"]
def mix_latents(x_t_a, x_t_b, lam):
    """The linear interpolation of two latents (DDPM Sec. 4.4)."""
    # BEGIN SOLUTION
    return (1 - lam) * x_t_a + lam * x_t_b
    # END SOLUTION


# %%
m4, l3 = TI.index(400), LAMBDAS.index(0.375)
checks.check_value("mix_latents", mix_latents(ig.x_bar[m4, 0], ig.x_bar[m4, -1], 0.375), ig.x_bar[m4, l3],
                   equation="x_bar_t = (1 - lambda) x_t + lambda x'_t (DDPM Sec. 4.4)", rtol=1e-5, atol=1e-6)

# %% [markdown]
# ## Summary
#
# - $q(x_t \mid x_0)$ is a stochastic encoder that keeps a share $\rho_t = \bar\alpha_t v / (\bar\alpha_t v + 1 - \bar\alpha_t)$ of $x_t$'s variance from $x_0$;
#   the reverse process from $t$ is a decoder $p_\theta(x_0 \mid x_t)$ that keeps what survived and invents the rest.
# - For Gaussian data the decoder is exact, and a reconstruction lies $2(1 - \bar\alpha_t) - (1 - \bar\alpha_{\tau_1})$ from the original per
#   coordinate; checked by Monte Carlo with `reconstruct`.
# - With the U-Net, reconstructions share more with the original the smaller $t$ is, measured by squared distance and by
#   class agreement; at $t = T$ they are unrelated samples.
# - Interpolation in $x_t$ space (encode both, mix, decode with shared noise) turns a blend into a plausible image; the
#   linear mix has noise variance $(1 - \lambda)^2 + \lambda^2 < 1$ (checked), which spherical interpolation restores to 1.
#
# **Next:** chapter 14's homework re-implements these pieces (the forward process, the posterior, the KL, the decoder and a
# sampling step), each checked against `ddpm_lib`.
