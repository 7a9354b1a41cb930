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
# DDPM's experiments end (Secs. 4.3 and 4.4) with two things a trained model can do besides sampling: reconstruct an image
# from a noised copy of it, and interpolate between two images. Both read the forward process as an **encoder** and the
# reverse process as a **decoder**: noise an image to $x_t$ with $q(x_t \mid x_0)$, then run Algorithm 2 from $t$ instead of from
# $T$. This chapter derives what the encoder keeps, checks the decoder on data where the answer is known, and then does both
# experiments with the trained U-Net, measuring rather than only looking.
#
# The U-Net is the shipped one of chapters 08-10, `UNet.fashion_mnist("base")`: trained for 240 s on one H200 GPU, 2,324
# steps of batch 256 (about 10 epochs), far from converged. `python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml
# --steps 2324` remakes it on a GPU; on a CPU (`--device cpu --no-compile`) it takes about 55 CPU-hours at the measured 3.0
# images per CPU-second.
#
# **Learning goals.** After this chapter you can
# - treat $q(x_t \mid x_0)$ as a stochastic encoder and the reverse process from $t$ as a decoder $p_\theta(x_0 \mid x_t)$, and say
#   how much of $x_0$ survives in $x_t$;
# - reconstruct: noise an image to $x_t$ and decode it several times, and measure (squared distance, classifier agreement)
#   how much more the decodings share with the original the smaller $t$ is;
# - interpolate between two images of one class in $x_t$ space as DDPM does, explain why a *linear* mix of two noisy latents
#   has too little noise, and measure, over 30 pairs, what a *spherical* mix changes;
# - use `ddpm_lib.sampling.reconstruct`, `interpolate` and `slerp`, and the two explorers built on them.
#
# **CPU time:** about 35 s on a 2-core CPU, nearly all of it in the U-Net (budget: 60 s). Decoding costs one network
# evaluation per image and step (about 30 ms on such a CPU), so every decoding here runs on a 20-step respaced chain
# (chapter 10, section 5), with 3 images and 2 draws for reconstruction, one pair for the interpolation grid and 30 pairs
# for the comparison of two mixes; the explorers show grids computed once, so moving a slider never samples.

# %%
import math

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib.course import checks, widgets
from ddpm_lib.classifier import load_classifier
from ddpm_lib.course.widgets.framework import mosaic_still, to_pixels
from ddpm_lib.course.widgets.reconstruction import interpolation_grid, reconstruction_grid
from ddpm_lib.evaluate import classifier_features, frechet_distance
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
# DDPM's method (Sec. 4.4, Fig. 8): encode both images with the same $t$, $x_t \sim q(x_t \mid x_0)$ and
# $x'_t \sim q(x_t \mid x'_0)$; mix the latents **linearly**, $\bar x_t = (1 - \lambda)\, x_t + \lambda\, x'_t$; decode $\bar x_t$ by the reverse
# process. What the paper holds fixed is the *encoding* noise: "We fixed the noise for different values of $\lambda$ so
# $x_t$ and $x'_t$ remain the same", that is, each image is encoded once and every $\lambda$ mixes the same two latents; the
# decoding is the ordinary, stochastic reverse process. `dl.sampling.interpolate` does the same and one thing more, a
# choice of this chapter: it also uses one reverse-process noise for every $\lambda$, so that $\lambda$ is the only
# difference between two decodings. The paper interpolates between two faces, two images of one kind; here, two images
# of one class, two ankle boots (the first of 30 pairs chosen by a rule below). The smaller $t$, the more the result is a
# cross-fade of the two images; the larger $t$, the more the decoder re-draws a plausible garment. We stop at $t = 400$:
# from $t = 600$ this model kept the class in only 2 of 6 reconstructions of single images (section 2's table), and a row
# there would show re-drawn garments rather than a path between the two boots.
#
# **Why not just mix the images?** $(1 - \lambda) x_0 + \lambda x'_0$ is a double exposure, not a garment. Mixing in $x_t$ space and
# decoding lets the model turn the blend into an image it finds likely.
#
# **Linear or spherical?** Write the latents as signal plus noise. The linear mix is
# $$\bar x_t = \sqrt{\bar\alpha_t}\,\big((1 - \lambda) x_0 + \lambda x'_0\big) + \sqrt{1 - \bar\alpha_t}\,\big((1 - \lambda)\epsilon + \lambda \epsilon'\big),$$
# and for independent $\epsilon, \epsilon'$ the mixed noise has variance $(1 - \lambda)^2 + \lambda^2$ per coordinate: $\frac12$ at $\lambda = \frac12$. The
# decoder, told the noise level is $t$'s, receives a latent with too little noise, and removes noise that is not there.
# Spherical interpolation (slerp, `dl.sampling.slerp`),
# $\bar x_t = \frac{\sin((1-\lambda)\theta)}{\sin\theta} x_t + \frac{\sin(\lambda\theta)}{\sin\theta} x'_t$ with $\theta$ the angle between the two latents, keeps the norm: in
# high dimension independent noises are nearly orthogonal, $\theta \approx 90°$, and the weights become $\cos(\lambda\pi/2)$ and
# $\sin(\lambda\pi/2)$, whose squares sum to 1. We use the **linear** mix, as DDPM does, and measure slerp against it below.
#
# The grid: $\lambda \in \{0, \frac18, \dots, 1\}$, $t \in \{200, 300, 400\}$, 20-step chain: $9 \times (4 + 6 + 8) = 162$ network evaluations.

# %%
pred = classify(test_x[:300])  # the classifier's labels of the first 300 test images
A, B = [], []
for c in range(10):  # 30 pairs: the first six correctly classified test images of each class, paired in order
    ok = ((test_y[:300] == c) & (pred == c)).nonzero().flatten()[:6].tolist()
    A, B = A + ok[0::2], B + ok[1::2]
LAMBDAS = [i / 8 for i in range(9)]
TI = [200, 300, 400]
pair_a, pair_b = test_x[A[27]:A[27] + 1], test_x[B[27]:B[27] + 1]  # the first pair of ankle boots (class 9)
ig = interpolation_grid(net, dec, pair_a, pair_b, lambdas=LAMBDAS, ts=TI, steps=STEPS, seed=2)
print(f"test images {A[27]} and {B[27]}, network evaluations: {ig.network_evaluations}")

# the mixed latents: x_bar = (1 - lambda) x_t + lambda x'_t, with x_t, x'_t the lambda = 0 and 1 rows
lam6 = ig.lambdas.view(1, -1, 1, 1, 1, 1).float()
lin = (1 - lam6) * ig.x_bar[:, :1] + lam6 * ig.x_bar[:, -1:]
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
labels = [dl.FASHION_MNIST_CLASSES[int(c)] for c in classify(ig.samples.reshape(-1, 1, 28, 28))]
for m, t_ in enumerate(TI):
    print(f"t = {t_}: the classifier labels the 9 decodings: {', '.join(labels[9 * m:9 * m + 9])}")

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
# To the classifier all 27 decodings are ankle boots. Along each row the shape moves gradually from the low boot $x_0$ to the
# higher one $x'_0$, with no jump from one garment to another. The decoder keeps the silhouette and re-draws the details:
# even at $\lambda = 1$ the decodings lose $x'_0$'s laces and eyelets, the more so the larger $t$. The mixed noise's variance
# follows $(1 - \lambda)^2 + \lambda^2$ within its Monte Carlo error (above).
#
# ### Linear or spherical, measured
#
# Does the mix matter? A fair comparison keeps everything else fixed: the same pairs, the same $x_t$ and $x'_t$, the same
# reverse-process noise, only the mix differs. Thirty pairs, three per class: in each class the first six test images the
# shipped classifier labels correctly (among the first 300), paired (1st, 2nd), (3rd, 4th), (5th, 6th). Both mixes at $\lambda = \frac12$, where the
# linear one lacks the most noise, at $t = 300$, decoded by two calls of `interpolate` with equally seeded generators
# (`mix="linear"` and `mix="slerp"`): $2 \times 30 \times 6 = 360$ network evaluations. Two measures of how close the decodings are to
# the data: the classifier's **confidence in the pair's class** (its softmax probability), and the **FCD** (chapter 10) of
# the 30 decodings to 2,000 other test images, beside the FCD of 30 originals, the floor at this sample size.
# The spread: the standard error of the paired difference over the 30 pairs, and a bootstrap interval for the
# difference of FCDs (the pairs resampled 100 times).

# %%
y_pair = test_y[A]  # the 30 pairs chosen above, three per class
k300 = chain.schedule.timesteps.tolist().index(300)
mid = {mix: dl.interpolate(net, chain, test_x[A], test_x[B], [0.5], k300, progress=False, mix=mix,
                           generator=torch.Generator().manual_seed(4))[0]  # same seed: same x_t, x'_t and noise
       for mix in ("linear", "slerp")}
print(f"{len(A)} pairs; decoded: {', '.join(f'{k} {tuple(v.shape)}' for k, v in mid.items())}")


# %%
@torch.no_grad()
def confidence(x, y):
    """The classifier's probability of class y for each image."""
    return torch.softmax(clf(x.clamp(-1, 1)), dim=1)[torch.arange(len(y)), y]


ref = classifier_features(test_x[300:2300])  # the reference: 2,000 test images, none of them in a pair
mu_r, cov_r = ref.mean(0), ref.T.cov()


def fcd_of(f):  # Frechet distance of features f (N, 128) to the reference
    return frechet_distance(mu_r, cov_r, f.mean(0), f.T.cov())


sets = {"originals x_0": test_x[A], "linear mix": mid["linear"], "slerp": mid["slerp"]}
feats = {name: classifier_features(x.clamp(-1, 1)) for name, x in sets.items()}
conf = {name: confidence(x, y_pair) for name, x in sets.items()}
print(f"{'30 images':<15}{'confidence in the class':>25}{'classified as it':>18}{'pixel std':>11}{'FCD':>7}")
for name, x in sets.items():
    c = conf[name]
    print(f"{name:<15}{c.mean():>17.2f} +- {c.std() / math.sqrt(30):.2f}{(classify(x) == y_pair).float().mean():>18.2f}"
          f"{x.flatten(1).std(1).mean():>11.3f}{fcd_of(feats[name]):>7.1f}")
diff = conf["slerp"] - conf["linear mix"]
gb = torch.Generator().manual_seed(0)
boot = torch.tensor([fcd_of(feats["slerp"][i]) - fcd_of(feats["linear mix"][i])
                     for i in (torch.randint(0, 30, (30,), generator=gb) for _ in range(100))])
print(f"slerp - linear, paired over the 30 pairs: confidence {diff.mean():+.2f} +- {diff.std() / math.sqrt(30):.2f} "
      f"(by more than 0.01, slerp higher in {int((diff > 0.01).sum())}, linear in {int((diff < -0.01).sum())} of 30); FCD {fcd_of(feats['slerp']) - fcd_of(feats['linear mix']):+.0f}, "
      f"95% bootstrap interval {boot.quantile(0.025):+.0f} .. {boot.quantile(0.975):+.0f}")

# %%
cols = list(range(10))  # the first pair of each class
cells = [[to_pixels(x[3 * c].float().numpy()) for c in cols]
         for x in (test_x[A], mid["linear"], mid["slerp"], test_x[B])]
mosaic_still(cells, ["$x_0$", "linear", "slerp", "$x'_0$"], [dl.FASHION_MNIST_CLASSES[c].split("/")[0] for c in cols],
             title=r"$\lambda = \frac{1}{2}$ at $t = 300$: the same $x_t$, $x'_t$ and noise, two mixes", cell_inches=0.8)
plt.show()

# %% [markdown]
# Slerp decodes closer to the data, by a modest margin: the classifier's confidence in the pair's class is higher by
# $0.07 \pm 0.03$; the two mixes differ by more than 0.01 in 14 of 30 pairs, slerp ahead in 12 of them, and tie in the rest; the
# FCD is lower by 13, but its 95% interval, $-19$ to $+3$, includes 0, so 30 pairs do not settle the FCD (30 originals
# score 43.5, the floor at this size). The clearest difference is the mechanism, the pixel standard deviation: the linear
# midpoints have less contrast (0.554) than the originals (0.616), slerp's keep most of it (0.600). Given a latent with
# half the noise variance its $t$ implies, the decoder removes noise that is not there and smooths away detail; in the
# picture, compare the pullovers and the dresses. Both mixes lose the class in some pairs (73% and 83% keep it, against
# 100% of the originals), where the two garments differ most: both sandals decode to a sneaker-like shoe. Later work
# mixes spherically for this reason (Song et al. 2021 interpolate DDIM latents by slerp).

# %% [markdown]
# ## 4. Exercises
#
# **Exercise 13.1 (derive: the noise of a linear mix).** Section 3 assumed $\epsilon$ and $\epsilon'$ independent. Suppose instead that each
# coordinate of $\epsilon$ and of $\epsilon'$ has variance 1 and the two have correlation $\rho$. Derive the variance per coordinate of the
# noise part $(1 - \lambda)\,\epsilon + \lambda\,\epsilon'$ of the linear mix, and write it as `mixed_noise_variance(lam, rho)` (tensors of one
# shape, elementwise). `checks.check("mixed_noise_variance", fn)` tries several $\lambda$ and $\rho$ and names the usual slips.


# %% tags=["solution"]
def mixed_noise_variance(lam, rho):
    """Var((1 - lam) eps + lam eps') for unit-variance eps, eps' with correlation rho."""
    # BEGIN SOLUTION
    return (1 - lam) ** 2 + lam**2 + 2 * lam * (1 - lam) * rho
    # END SOLUTION


# %%
checks.check("mixed_noise_variance", mixed_noise_variance)

# %% [markdown]
# Then decide, from your formula: for which $\rho$ does the linear mix keep the variance 1 that the decoder expects, at every
# $\lambda$? Only for $\rho = 1$, that is, when $x_t$ and $x'_t$ share one $\epsilon$. Then
# $\bar x_t = \sqrt{\bar\alpha_t}\,\big((1-\lambda)x_0 + \lambda x'_0\big) + \sqrt{1-\bar\alpha_t}\,\epsilon$ is exactly an encoding of the double exposure, and decoding it is
# section 2's reconstruction of the blended image. (The paper's "fixed the noise" does not say whether its $x_t$ and $x'_t$ share
# one $\epsilon$; `interpolate` draws two independent ones, $\rho \approx 0$.)
#
# **Exercise 13.2 (the encoder).** Write `q_sample(x0, t, noise, alpha_bars)`, the stochastic encoder of this chapter:
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
# ## Summary
#
# - $q(x_t \mid x_0)$ is a stochastic encoder that keeps a share $\rho_t = \bar\alpha_t v / (\bar\alpha_t v + 1 - \bar\alpha_t)$ of $x_t$'s variance from $x_0$;
#   the reverse process from $t$ is a decoder $p_\theta(x_0 \mid x_t)$ that keeps what survived and invents the rest.
# - For Gaussian data the decoder is exact, and a reconstruction lies $2(1 - \bar\alpha_t) - (1 - \bar\alpha_{\tau_1})$ from the original per
#   coordinate; checked by Monte Carlo with `reconstruct`.
# - With the U-Net, reconstructions share more with the original the smaller $t$ is, measured by squared distance and by
#   class agreement; at $t = T$ they are unrelated samples.
# - Interpolation in $x_t$ space (DDPM Sec. 4.4): encode both images once (the paper fixes the encoding noise across
#   $\lambda$), mix, decode; this chapter also shares the reverse-process noise across $\lambda$. The linear mix has noise
#   variance $(1 - \lambda)^2 + \lambda^2 < 1$ for independent noises (checked), which slerp restores to 1.
# - Measured over 30 same-class pairs at $t = 300$, $\lambda = \frac12$, with the same latents and noise for both mixes: slerp
#   decodes modestly closer to the data than the linear mix (classifier confidence $+0.07 \pm 0.03$; FCD $-13$, but with a
#   95% interval of $-19$ to $+3$); the linear midpoints are smoother (pixel std 0.554 against 0.600, originals 0.616).
#
# **Next:** chapter 14's homework re-implements these pieces (the forward process, the posterior, the KL, the decoder and a
# sampling step), each checked against `ddpm_lib`.
