# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Sampling (Algorithm 2): variances, progressive generation, fewer steps
#
# Chapter 09 trained U-Nets with Algorithm 1: the whole loss is the squared error between the noise that was
# added and the noise the network predicts. Training is only half of the story: everything derived so far serves
# the generation step, the computation of $x_{t-1}$ from $x_t$. This chapter runs that step, DDPM's Algorithm 2,
# with the shipped network: first derived from the reverse process, then checked, then run on a stored 1000-step
# chain that you can scrub through, then with the two variances the paper allows, and finally with far fewer steps
# (respacing and DDIM), counting what that saves and measuring what it costs.
#
# **Learning goals.** After this chapter you can
# - derive Algorithm 2 from $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$ with $\mu_\theta$ written
#   through $\epsilon_\theta$ (DDPM Eqs. 7, 10, 11) and check it against `ddpm_lib`;
# - say when $\sigma_t^2 = \beta_t$ and when $\sigma_t^2 = \tilde\beta_t$ is the right reverse variance, and see how much the
#   choice changes samples drawn with the same noise;
# - read *progressive generation*: $x_t$, the predicted noise and the predicted $x_0$ as $t$ falls, large-scale
#   structure first and details last;
# - sample with fewer steps (a respaced chain, DDIM), count the network evaluations saved and measure the quality
#   lost, honestly, on the few samples a CPU can afford;
# - say what clipping the predicted $x_0$ (`clip_x0`) does to a step, and derive the clipped step's mean (exercise).
#
# **CPU time:** about 35 s on an otherwise idle 2-core CPU, nearly all of it in the U-Net (budget: 80 s). The base U-Net costs about
# 40 ms per image and step on such a CPU, so live sampling here uses 6 images and at most 20 steps; the full
# 1000-step chain was sampled once by the library's command line and is loaded from `data/trajectories/`.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import ddpm_lib as dl
from ddpm_lib.course import checks, widgets
from ddpm_lib.classifier import load_classifier
from ddpm_lib.evaluate import FCD_NOTE
from ddpm_lib.sampling import predicted_eps
from ddpm_lib.trajectories import MAKE_TRAJECTORY, load_trajectory
from ddpm_lib.course.replay import below, within_sigma  # verdicts: '< 1e-12', 'within 3 sigma: True'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

pre = dl.load_pretrained("fashion-mnist-unet")  # verified by sha256, loaded without pickle
net, d = pre.model, pre.diffusion
s = d.schedule
print(f"model: {pre.config['model_class']} with {dl.count_parameters(net):,} parameters, one network for every t")
print(f"diffusion: {s.name} schedule, T = {s.T}, beta_1 = {s.betas[1].item():.1e}, beta_T = {s.betas[s.T].item():.2f}, "
      f"predicts {d.prediction}, sigma_t^2 = {'beta_t' if d.variance == 'fixed_large' else d.variance}")
print(dl.pretrained.training_record("fashion-mnist-unet"))  # how it was trained, as data/registry.json records it

# %% [markdown]
# The network is the shipped one that chapter 09 loaded, not the tiny network it trained live: one H200 GPU for
# 240 s, 2,324 steps of 256 images (about 10 epochs), far from converged; chapter 09 gives the commands that remake
# it on a GPU or a CPU. Its diffusion is DDPM's: $\beta_t$ rises linearly from $10^{-4}$ to $0.02$ over $T = 1000$
# steps, so that $x_T$ is nearly pure noise ($L_T \approx 0$, chapter 03); the U-Net's parameters are **shared across
# all $t$**, and $t$ enters through the sinusoidal embedding (chapter 08). One network call $\epsilon_\theta(x_t, t)$ is
# one step of sampling.
#
# **Where this chapter is going.** Here is the best this network does: 64 samples, each drawn with all 1000 steps of
# Algorithm 2 ($\sigma_t^2 = \beta_t$, the predicted $x_0$ clipped to $[-1, 1]$ at each step, section 5 explains why),
# made on a GPU by the command registered with the picture (a CPU would need about 40 s per image). The file is
# checked against the sha256 that `data/registry.json` lists for it before it is shown.

# %%
grid_key = "checkpoints/fashion_mnist_unet_samples_1000steps.png"
grid_path = dl.data.data_dir() / grid_key
sha = dl.data.verify_file(grid_path, grid_key)  # raises, naming both sha256, if the file is not the registered one
fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.imshow(plt.imread(grid_path), cmap="gray", interpolation="nearest")
ax.set_axis_off()
ax.set_title("64 samples, Algorithm 2 with all 1000 steps")
plt.show()
print(f"{grid_key}: sha256 {sha[:16]}... verified; made by: {dl.data.read_registry()['files'][grid_key]['source']}")

# %% [markdown]
# ## 1. Algorithm 2, derived
#
# The reverse process is a Markov chain of Gaussians (DDPM Eq. 1),
# $$p_\theta(x_{t-1} \mid x_t) = \mathcal N\big(x_{t-1};\ \mu_\theta(x_t, t),\ \sigma_t^2 I\big), \qquad p(x_T) = \mathcal N(0, I),$$
# with a **fixed** variance $\sigma_t^2$ (here $\sigma_t^2 = \beta_t$, not learned;
# section 3 discusses the alternative $\tilde\beta_t$). Chapter 06 showed that the bound's term $L_{t-1}$ is, up to a
# constant, a weighted squared distance between $\mu_\theta(x_t, t)$ and the posterior mean
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t
# \qquad \text{(DDPM Eq. 7)}.$$
# At sampling time $x_0$ is unknown, but $x_t$ is, and Eq. 4 reparameterized, $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$,
# gives $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}$. Put it into Eq. 7 and collect terms.
#
# *The coefficient of $x_t$.* From the first term, $\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{(1 - \bar\alpha_t)\sqrt{\bar\alpha_t}} = \frac{\beta_t}{(1 - \bar\alpha_t)\sqrt{\alpha_t}}$,
# since $\bar\alpha_t = \alpha_t \bar\alpha_{t-1}$. The second term's coefficient is $\frac{\alpha_t (1 - \bar\alpha_{t-1})}{(1 - \bar\alpha_t)\sqrt{\alpha_t}} = \frac{\alpha_t - \bar\alpha_t}{(1 - \bar\alpha_t)\sqrt{\alpha_t}}$.
# Their sum is $\frac{\beta_t + \alpha_t - \bar\alpha_t}{(1 - \bar\alpha_t)\sqrt{\alpha_t}} = \frac{1 - \bar\alpha_t}{(1 - \bar\alpha_t)\sqrt{\alpha_t}} = \frac{1}{\sqrt{\alpha_t}}$, because $\beta_t + \alpha_t = 1$.
#
# *The coefficient of $\epsilon$.* Only the first term has one:
# $-\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t \sqrt{1 - \bar\alpha_t}}{(1 - \bar\alpha_t)\sqrt{\bar\alpha_t}} = -\frac{\beta_t}{\sqrt{\alpha_t}\,\sqrt{1 - \bar\alpha_t}}$.
#
# So $\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\big)$ (DDPM Eq. 10), and the model mean takes the
# same form with the network's guess of the noise (Eq. 11):
# $$\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big).$$
# Sampling $x_{t-1} \sim p_\theta(x_{t-1} \mid x_t)$ by reparameterization is then **Algorithm 2**, with the paper's line
# numbers (the course cites them):
#
# 1. $x_T \sim \mathcal N(0, I)$
# 2. **for** $t = T, \dots, 1$ **do**
# 3. $\quad z \sim \mathcal N(0, I)$ if $t > 1$, else $z = 0$
# 4. $\quad x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\big) + \sigma_t z$
# 5. **end for**
# 6. **return** $x_0$
#
# The last step adds no noise: $x_0 = \mu_\theta(x_1, 1)$ is the mean of the decoder $p_\theta(x_0 \mid x_1)$, the noiseless
# last step of chapter 07. In `ddpm_lib` one step is `d.p_sample(model_output, x_t, t, z)`, and the loop is
# `d.sample(model, shape)`. Here is one step from $x_T$ by hand against the library. The network is called with
# `d.model_t(t)`, the timestep the network was *trained* with for the schedule's index `t`: on this full schedule it is
# `t` itself; on a respaced chain of $K$ steps (section 5), index $k$ stands for an original timestep $\tau_k$, and
# `model_t` returns $\tau_k$. The schedule's tables are float64; `.item()` turns an entry into a Python float, which
# mixes with float32 tensors without changing their dtype.

# %%
g = torch.Generator().manual_seed(0)
x_T = torch.randn(4, 1, 28, 28, generator=g)  # four starting points x_T ~ N(0, I)
z = torch.randn(4, 1, 28, 28, generator=g)
t = torch.full((4,), s.T, dtype=torch.long)
with torch.no_grad():
    eps_theta = net(x_T, d.model_t(t))  # one network evaluation per image

a, ab, b = s.alphas[s.T].item(), s.alpha_bars[s.T].item(), s.betas[s.T].item()
by_hand = (x_T - b / math.sqrt(1 - ab) * eps_theta) / math.sqrt(a) + math.sqrt(b) * z  # Algorithm 2, line 4
library = d.p_sample(eps_theta, x_T, t, z)
print(f"d.model_t(t) = {d.model_t(t)[0].item()} for t = {t[0].item()}; Algorithm 2 line 4 by hand vs d.p_sample at t = {s.T}: max |diff| {below((by_hand - library).abs().max().item(), 1e-5)}")
last = d.p_sample(eps_theta, x_T, torch.ones(4, dtype=torch.long), z)  # at t = 1 the noise is ignored
mean_1 = d.p_mean_variance(eps_theta, x_T, torch.ones(4, dtype=torch.long))["mean"]
print(f"at t = 1 the step returns the mean mu_theta (z = 0): max |diff| {below((last - mean_1).abs().max().item(), 1e-12)}")

# %% [markdown]
# ## 2. The full chain, stored
#
# Algorithm 2 with all $T = 1000$ steps calls the network 1000 times per image: about 40 s per image on a
# 2-core CPU. So the full chain was run once, by the library's command line, for 4 images, and stored:
# `bash scripts/make_trajectory.sh` runs `python -m ddpm_lib.sample fashion-mnist-unet --method ancestral --n 4
# --seed 0 --record ... --trajectory data/trajectories/...safetensors`, which keeps $x_t$ and the predicted $x_0$ at
# every 10th step, at each of the last 19 steps, and at $t = 0$, and registers the file's sha256 in
# `data/registry.json`. `load_trajectory()` checks that sha256 before it loads. The predicted noise is not stored: for
# a network that predicts $\epsilon$, $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$, so
# $$\epsilon_\theta(x_t, t) = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0}{\sqrt{1 - \bar\alpha_t}} \qquad \text{(DDPM Eq. 4 solved for } \epsilon\text{)}$$
# recovers it exactly, up to float32 rounding (`predicted_eps`).
#
# Three checks that the stored chain is what Algorithm 2 makes with *this* network: (a) the recovered noise equals a
# fresh network evaluation on a stored $x_t$; (b) between consecutive stored states,
# $\hat z = (x_{t-1} - \mu_\theta(x_t, t)) / \sigma_t$ must look like $\mathcal N(0, I)$ draws, with $\sigma_t^2 = \beta_t$; (c) the last
# step is the mean, with no noise.

# %%
traj, meta = load_trajectory()  # data/trajectories/..., verified against data/registry.json
ts = traj.timesteps.tolist()
K, B = traj.x_t.shape[:2]
same_model = meta.get("sha256") == pre.sha256
print(f"stored: {meta['method']} sampling, {meta['steps']} steps, {B} images, seed {meta['seed']}; {K} recorded states "
      f"(t = {max(ts)}, {sorted(ts, reverse=True)[1]}, ..., 1, 0)")
print(f"made by the model loaded above (same sha256): {same_model}"
      + ("" if same_model else f"  <- remake it: {MAKE_TRAJECTORY}"))
eps_stored = predicted_eps(traj, s)
k500 = ts.index(500)
with torch.no_grad():
    eps_fresh = net(traj.x_t[k500], torch.full((B,), 500, dtype=torch.long))
print(f"(a) eps from Eq. 4 solved for eps vs a fresh network call at t = 500: max |diff| "
      f"{below((eps_stored[k500] - eps_fresh).abs().max().item(), 1e-3)}")

# (b) consecutive states t -> t - 1 for t = 19..2: z_hat = (x_{t-1} - mu_theta) / sigma_t, with the model's
# sigma_t and, for contrast, with the other fixed choice
other = "fixed_small" if d.variance == "fixed_large" else "fixed_large"
d_other = dl.GaussianDiffusion(s, prediction=d.prediction, variance=other)
zs, zs_other = [], []
for tt in range(2, 20):
    k, k_prev = ts.index(tt), ts.index(tt - 1)
    t_b = torch.full((B,), tt, dtype=torch.long)
    p_t = d.p_mean_variance(eps_stored[k], traj.x_t[k], t_b)
    zs.append((traj.x_t[k_prev] - p_t["mean"]) / p_t["variance"].sqrt())
    zs_other.append((traj.x_t[k_prev] - p_t["mean"]) / d_other.model_variance(traj.x_t[k], t_b)[0].sqrt())
zs, zs_other = torch.cat(zs).flatten(), torch.cat(zs_other).flatten()
n = zs.numel()
name_var = {"fixed_large": "beta_t", "fixed_small": "beta~_t"}
print(f"(b) z_hat over t = 19..2 ({n:,} values), sigma_t^2 = {name_var.get(d.variance, d.variance)}: mean "
      f"{zs.mean().item():+.3f}, std {zs.std().item():.3f} (expected 0 and 1; 3 sigma of MC error in the std "
      f"{3 / math.sqrt(2 * n):.3f}); with sigma_t^2 = {name_var[other]} instead it would be {zs_other.std().item():.3f}")
k1, k0 = ts.index(1), ts.index(0)
mean_1 = d.p_mean_variance(eps_stored[k1], traj.x_t[k1], torch.ones(B, dtype=torch.long))["mean"]
print(f"(c) x_0 vs mu_theta(x_1, 1): max |diff| {below((traj.x_t[k0] - mean_1).abs().max().item(), 1e-4)}")

# %%
samples_1000 = traj.x_t[k0]
fig, ax = plt.subplots(figsize=(4.5, 1.6))
dl.viz.show_images(samples_1000, ax=ax, nrow=B, title=f"Algorithm 2, all {s.T} steps (stored)")
plt.show()

# %% [markdown]
# ## 3. Progressive generation
#
# At every step the network's $\epsilon_\theta(x_t, t)$ also says what it believes $x_0$ is, $\hat x_0$ above. Ho et al. (Sec. 4.3)
# show $\hat x_0$ as $t$ falls: "large scale image features appear first and details appear last".
#
# **The reverse process, step by step.** Move $t$ from $T$ down to 0: for each stored image the widget shows $x_t$, the
# predicted noise $\epsilon_\theta(x_t, t)$ (grey is 0, black and white are $\mp 3$) and the predicted $x_0$. The slider steps
# through the stored states (every 10th step, and every step below $t = 20$); every frame was drawn
# when the widget was made, so a step costs a lookup. The readout prints $\bar\alpha_t$, the spread of $x_t$ and of
# $\hat\epsilon$, and how far $\hat x_0$ and $x_t$ still are from the final sample. Below it, the same for a few $t$ as a picture.

# %% tags=["nbval-ignore-output"]
box = widgets.reverse_process_explorer(traj, s)
box

# %%
box.static_figure()
plt.show()

# %% [markdown]
# At $t = T$ the predicted $x_0$ is mostly amplified error: $\hat x_0 = (x_T - \sqrt{1 - \bar\alpha_T}\,\epsilon_\theta) / \sqrt{\bar\alpha_T}$ divides by
# $\sqrt{\bar\alpha_T} \approx 0.006$, so every small error of $\epsilon_\theta$ is multiplied by about 160. A few hundred steps later $\hat x_0$
# is a blurred garment; as $t$ falls further it commits to a silhouette, then to inner structure and texture, while
# $\hat\epsilon$ stays noise-like: most of $x_t$ *is* noise until the very end. "Large scale first" can be measured. Split each image into a coarse part (the
# average over 4 x 4 blocks, a 7 x 7 picture) and a fine part (what remains), and follow the correlation between each part
# of $\hat x_0$ at step $t$ (clipped to $[-1, 1]$, as displayed) and the same part of the final sample.

# %%
def coarse(x):
    return F.avg_pool2d(x, 4)


def fine(x):
    return x - F.interpolate(coarse(x), scale_factor=4, mode="nearest")


def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return (a @ b / (a.norm() * b.norm())).item()


rec = [k for k in sorted(range(K), key=lambda k: -ts[k]) if ts[k] > 0]
t_rec = [ts[k] for k in rec]
final = samples_1000
c_coarse = [corr(coarse(traj.pred_x0[k].clamp(-1, 1)), coarse(final)) for k in rec]
c_fine = [corr(fine(traj.pred_x0[k].clamp(-1, 1)), fine(final)) for k in rec]


def first_above(curve, level):
    return next(t for t, v in zip(t_rec, curve) if v > level)


fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(t_rec, c_coarse, label="coarse part (4 x 4 block means)")
ax.plot(t_rec, c_fine, label="fine part (the rest)")
ax.axhline(0.9, color="grey", lw=0.8, ls=":")
ax.invert_xaxis()
ax.set(xlabel="t (sampling runs from T, left, to 0, right)", ylabel="correlation with the final sample",
       title="predicted x_0 at step t vs the final sample")
ax.legend()
plt.show()
print(f"correlation of the predicted x_0 with the final sample first exceeds 0.9: coarse part at "
      f"t = {first_above(c_coarse, 0.9)}, fine part at t = {first_above(c_fine, 0.9)}")

# %% [markdown]
# ## 4. Which variance: $\sigma_t^2 = \beta_t$ or $\tilde\beta_t$?
#
# DDPM (Sec. 3.2) fixes $\sigma_t^2$ to one of two values and reports similar results for both: $\beta_t$, and the posterior
# variance $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t$ (Eq. 7). They are the right answers for two extreme data
# sets. Take one coordinate with $x_0 \sim \mathcal N(0, v)$. Then $x_{t-1}$ and $x_t$ are jointly Gaussian, with
# $\operatorname{Var}(x_{t-1}) = V_{t-1} := \bar\alpha_{t-1} v + 1 - \bar\alpha_{t-1}$, $\operatorname{Cov}(x_{t-1}, x_t) = \sqrt{\alpha_t}\, V_{t-1}$ and
# $V_t = \alpha_t V_{t-1} + \beta_t$. Conditioning a Gaussian,
# $$\operatorname{Var}(x_{t-1} \mid x_t) = V_{t-1} - \frac{\alpha_t V_{t-1}^2}{V_t} = \frac{V_{t-1}\,(V_t - \alpha_t V_{t-1})}{V_t} = \beta_t\,\frac{V_{t-1}}{V_t}.$$
# For $v = 1$ every $V_t = 1$ and the true reverse variance is $\beta_t$; for $v = 0$ ($x_0$ a single point) $V_t = 1 - \bar\alpha_t$ and it is
# $\tilde\beta_t$. These are the upper and lower ends for data of at most unit variance, and the paper's two choices. A Monte Carlo
# check: simulate $x_{t-1}, x_t$ and regress one on the other; the residual variance is $\operatorname{Var}(x_{t-1} \mid x_t)$.

# %%
gm = torch.Generator().manual_seed(1)
n_mc, t_mc = 400_000, 10
tt = torch.full((n_mc,), t_mc - 1, dtype=torch.long)
d64 = dl.GaussianDiffusion(s)
print(f"t = {t_mc}: beta_t = {s.betas[t_mc].item():.3e}, beta~_t = {s.posterior_variance[t_mc].item():.3e}")
for v in (1.0, 0.25, 0.0):
    x0 = math.sqrt(v) * torch.randn(n_mc, 1, generator=gm, dtype=torch.float64)
    x_prev = d64.q_sample(x0, tt, generator=gm)  # x_{t-1} ~ q(x_{t-1} | x_0)
    x_t = d64.q_step(x_prev, tt + 1, generator=gm)  # x_t ~ q(x_t | x_{t-1})
    c = torch.cov(torch.cat([x_prev, x_t], 1).T)
    resid = (c[0, 0] - c[0, 1] ** 2 / c[1, 1]).item()  # Var(x_{t-1} | x_t) for jointly Gaussian variables
    V = lambda tq: s.alpha_bars[tq].item() * v + 1 - s.alpha_bars[tq].item()  # noqa: E731
    exact = s.betas[t_mc].item() * V(t_mc - 1) / V(t_mc)
    se = resid * math.sqrt(2 / n_mc)
    print(f"  data variance v = {v:4.2f}: Monte Carlo Var(x_(t-1) | x_t) = {resid:.4e} +- {se:.1e}, "
          f"closed form beta_t V_(t-1)/V_t = {exact:.4e} ({within_sigma(resid, exact, se)})")

# %% [markdown]
# The two choices differ only where $\bar\alpha_{t-1}$ is close to 1, i.e. for the first steps of the forward process. For
# $T = 1000$ that is a small corner of the chain; on a chain with fewer, larger steps (section 5) the ratio
# $\tilde\beta_t / \beta_t$ is far from 1 at every step, and the choice starts to matter.

# %%
K20 = 20
s20 = s.respace(K20)
fig, ax = plt.subplots(figsize=(6, 3))
t_all = torch.arange(2, s.T + 1)
ax.plot(t_all, s.posterior_variance[t_all] / s.betas[t_all], label=f"T = {s.T}, every step")
k20 = torch.arange(2, K20 + 1)
ax.plot(s20.timesteps[k20], s20.posterior_variance[k20] / s20.betas[k20], "o-", label=f"respaced chain, {K20} steps")
ax.set(xscale="log", xlabel="t (original timesteps)", ylabel=r"$\tilde\beta_t / \beta_t$", ylim=(0, 1.05))
ax.legend()
plt.show()
print(f"beta~_t / beta_t at t = 2, 10, 100: {', '.join(f'{(s.posterior_variance[q] / s.betas[q]).item():.3f}' for q in (2, 10, 100))}; "
      f"on the {K20}-step chain at its steps 2, 5, 20 (t = {', '.join(str(int(s20.timesteps[q])) for q in (2, 5, 20))}): "
      f"{', '.join(f'{(s20.posterior_variance[q] / s20.betas[q]).item():.3f}' for q in (2, 5, 20))}")

# %% [markdown]
# Now both, live, with the trained network: 6 images on the 20-step chain (section 5 explains the respacing), once with
# $\sigma_t^2 = \beta_t$ (the model's setting) and once with $\tilde\beta_t$, **with the same noise**: the same
# $x_T$ and the same $z$ at every step, so the only difference is the size of $\sigma_t$. (Both clip the predicted $x_0$ to
# $[-1, 1]$ at each step, `clip_x0=True`, as every live run of this chapter; section 5 explains it.) That is 2 x 6 x 20 = 240 network
# evaluations, about 10 s on a 2-core CPU.

# %%
CountingNet = dl.CountingModel  # the network, counting the images it sees: the cost in network evaluations

N = 6
d_small = dl.GaussianDiffusion(s, prediction=d.prediction, variance="fixed_small")
runs = {}  # (sampler, steps) -> (samples, network evaluations)
for name, dd in (("ancestral, beta_t", d), ("ancestral, beta~_t", d_small)):
    cnet = CountingNet(net)
    x = dl.sample_respaced(cnet, dd, K20, (N, 1, 28, 28), generator=torch.Generator().manual_seed(2), progress=False,
                           clip_x0=True)
    runs[(name, K20)] = (x, cnet.images)

fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
for ax, name in zip(axes, ("ancestral, beta_t", "ancestral, beta~_t")):
    dl.viz.show_images(runs[(name, K20)][0].clamp(-1, 1), ax=ax, nrow=N, title=f"{K20} steps, sigma_t^2 = {name.split(', ')[1]}")
plt.tight_layout()
plt.show()
xa, xb = runs[("ancestral, beta_t", K20)][0], runs[("ancestral, beta~_t", K20)][0]
print(f"same noise, sigma_t^2 = beta_t vs beta~_t: mean |difference| per pixel {(xa - xb).abs().mean().item():.3f}; "
      f"pixel std within the samples {xa.std().item():.3f} vs {xb.std().item():.3f}")

# %% [markdown]
# ## 5. Fewer steps: respacing and DDIM
#
# Sampling costs one network evaluation per image per step. Two ways to take fewer steps with the *same* trained network:
#
# **Respacing** (Nichol & Dhariwal 2021, Sec. 4). Keep a subsequence of timesteps $\tau_1 < \dots < \tau_K = T$ and build the
# forward process that jumps between them with the *same* $\bar\alpha$ there: $\bar\alpha'_k = \bar\alpha_{\tau_k}$. Its one-step factors
# follow from $\bar\alpha'_k = \prod_{j \le k} \alpha'_j$: $\alpha'_k = \bar\alpha_{\tau_k} / \bar\alpha_{\tau_{k-1}}$ and
# $$\beta'_k = 1 - \frac{\bar\alpha_{\tau_k}}{\bar\alpha_{\tau_{k-1}}}, \qquad \tau_0 = 0,\ \bar\alpha_0 = 1.$$
# Since $q(x_{\tau_k} \mid x_0)$ is unchanged (Eq. 4 depends only on $\bar\alpha$), the network trained at $t = \tau_k$ still sees the inputs
# it was trained on; it is fed the original $\tau_k$. Algorithm 2 then runs unchanged on the $K$-step chain, with $\beta'_k$ and
# $\tilde\beta'_k$.
#
# **DDIM** (Song et al. 2021, Eq. 12 with $\eta = 0$). Predict $\hat x_0$ from $x_{\tau_k}$ and move to the point of the same "noise
# direction" at $\tau_{k-1}$: $x_{\tau_{k-1}} = \sqrt{\bar\alpha_{\tau_{k-1}}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{\tau_{k-1}}}\,\epsilon_\theta(x_{\tau_k}, \tau_k)$. No noise
# is added: the same $x_T$ always gives the same $x_0$. It is a different sampler for the same trained network (its
# marginals $q(x_t \mid x_0)$ are DDPM's), not Algorithm 2.

# %%
ab20 = s.alpha_bars[s20.timesteps[1:]]
prev = torch.cat([torch.ones(1, dtype=torch.float64), ab20[:-1]])
print(f"respaced chain, {K20} steps: tau = {s20.timesteps[1:4].tolist()} ... {s20.timesteps[-2:].tolist()}; "
      f"alpha_bar'_k vs alpha_bar_(tau_k): max |diff| {below((s20.alpha_bars[1:] - ab20).abs().max().item(), 1e-15)}; "
      f"beta'_k vs 1 - alpha_bar_(tau_k)/alpha_bar_(tau_(k-1)): max |diff| "
      f"{below((s20.betas[1:] - (1 - ab20 / prev)).abs().max().item(), 1e-15)}")
print(f"beta'_k ranges from {s20.betas[1].item():.4f} to {s20.betas[K20].item():.3f} (one original step: "
      f"{s.betas[1].item():.0e} to {s.betas[s.T].item():.2f})")

# one DDIM step by hand vs the library, from the x_T of section 1 (tau = T -> tau_prev = T - 50)
t_prev = s.T - 50
ab_p = s.alpha_bars[t_prev].item()
x0_hat = (x_T - math.sqrt(1 - ab) * eps_theta) / math.sqrt(ab)
ddim_hand = math.sqrt(ab_p) * x0_hat + math.sqrt(1 - ab_p) * eps_theta
ddim_lib = d.ddim_step(eps_theta, x_T, t, t_prev, eta=0.0)
print(f"DDIM step (Song et al. Eq. 12, eta = 0) by hand vs d.ddim_step: max |diff| "
      f"{below((ddim_hand - ddim_lib).abs().max().item(), 1e-4)}")
x_T1 = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
twice = [dl.ddim_sample(net, d, (1, 1, 28, 28), steps=5, noise=x_T1.clone(), progress=False) for _ in range(2)]
print(f"DDIM (eta = 0), 5 steps, run twice from the same x_T: identical: {torch.equal(twice[0], twice[1])}")

# %% [markdown]
# **Clipping the predicted $x_0$** (`clip_x0=True`, in every live run of this chapter). Every step above starts from the network's
# guess $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$. With `clip_x0=True` the sampler clips that guess to
# $[-1, 1]$, the range of the data, before it builds the step from it: the ancestral step's mean becomes Eq. 7's
# posterior mean at the clipped $\hat x_0$ (exercise 9.4 derives it), DDIM's step uses the clipped $\hat x_0$ in both of its
# terms. At large $t$, dividing by $\sqrt{\bar\alpha_t}$ (0.006 at $t = T$) turns small errors of $\epsilon_\theta$ into values no image has.
# An ancestral step adds fresh noise and the following steps can correct an overshoot; DDIM adds none, so the
# overshoot is carried into every later state. On a well-trained network the difference is small; on a weak one
# (a few hundred training steps) DDIM without clipping can end in saturated garbage. We measure both on this network.

# %%
x0_hat_T = d.p_mean_variance(eps_theta, x_T, t)["pred_x0"]  # from section 1: t = T, no clipping
print(f"predicted x_0 at t = T from the 4 x_T of section 1: range [{x0_hat_T.min().item():.0f}, "
      f"{x0_hat_T.max().item():.0f}], {(x0_hat_T.abs() > 1).float().mean().item():.0%} of the pixels outside [-1, 1]")
for K_ in (5, 10):
    for name, dd in (("ancestral, beta_t", d), ("ancestral, beta~_t", d_small)):
        cnet = CountingNet(net)
        x = dl.sample_respaced(cnet, dd, K_, (N, 1, 28, 28), generator=torch.Generator().manual_seed(2),
                               progress=False, clip_x0=True)
        runs[(name, K_)] = (x, cnet.images)
for K_ in (5, 10, 20):
    cnet = CountingNet(net)
    # record a few of the visited timesteps (and the result, t = 0); the 20-step run's are drawn below
    x, ddim_traj = dl.ddim_sample(cnet, d, (N, 1, 28, 28), steps=K_, generator=torch.Generator().manual_seed(2),
                                  progress=False, clip_x0=True, record=[1000, 750, 500, 250, 100, 50, 0])
    runs[("DDIM, eta = 0", K_)] = (x, cnet.images)
ddim_raw = dl.ddim_sample(net, d, (N, 1, 28, 28), steps=20, generator=torch.Generator().manual_seed(2), progress=False)
ddim_clip = runs[("DDIM, eta = 0", 20)][0]
print(f"DDIM, 20 steps, the same x_T, without vs with clip_x0: mean |difference| per pixel "
      f"{(ddim_raw - ddim_clip).abs().mean().item():.3f}; pixels of the unclipped samples outside [-1, 1]: "
      f"{(ddim_raw.abs() > 1).float().mean().item():.1%}")

# %% [markdown]
# **What fewer steps save** is counted, not timed: the network evaluations per image equal the number of steps, on any
# machine. **What they cost** needs a quality score. FID, and the course's Fréchet classifier distance (FCD,
# `ddpm_lib.evaluate`, on the 128-d features of its small Fashion-MNIST classifier), fit a Gaussian to the features
# of thousands of samples; on the few a CPU can draw here they would measure mostly their own small-sample bias, so
# FCD is not computed live: its stored measurement on 2,000 samples is printed below with its *floor*, the FCD between
# two halves of the real test images. Two scores that average per-sample numbers work on a handful of samples, each
# with a standard error:
#
# - the **classifier confidence**: the mean, over samples, of the classifier's largest class probability. A sample that
#   looks like a clear garment scores near 1, an ambiguous one lower. It ignores diversity;
# - the **detail ratio**: the energy of each image's finest detail, the mean of $(x - \text{3 x 3 local mean of } x)^2$, over the
#   same for real images. Noise left in a sample raises it above 1, over-smoothing lowers it below 1.
#
# The samplers: ancestral (Algorithm 2 on the respaced chain) with $\sigma_t^2 = \beta_t$ and with $\tilde\beta_t$, and DDIM, each with
# 5, 10 and 20 steps, all from the same 6 starting points $x_T$ and with `clip_x0` (the runs of the cell above).

# %%
clf = load_classifier()  # the shipped Fashion-MNIST classifier (ddpm_lib.classifier)


@torch.no_grad()
def confidence(x):
    """Per-image largest class probability of the shipped classifier."""
    return F.softmax(clf(x.clamp(-1, 1)), dim=1).max(1).values


def detail(x):
    """Per-image energy of the finest detail: mean of (x - its 3 x 3 local mean)^2."""
    x = x.clamp(-1, 1)
    local = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return ((x - local) ** 2).flatten(1).mean(1)


real, _ = dl.fashion_mnist("train-10k", download=False)  # real images, for the scale of each score
real_conf, real_detail = confidence(real[:20 * N]), detail(real[:20 * N]).mean().item()
print(f"scale: {20 * N} real training images: classifier confidence {real_conf.mean().item():.3f}; "
      f"detail ratio 1 by definition")


def scores(x):
    c, r = confidence(x), detail(x) / real_detail
    n = len(x)
    return c.mean().item(), c.std().item() / math.sqrt(n), r.mean().item(), r.std().item() / math.sqrt(n)

# %%
print(f"{'sampler':<20}{'steps':>6}{'net evals/image':>16}{'confidence':>16}{'detail ratio':>16}")
table = {}
for (name, K_), (x, evals) in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    table[(name, K_)] = (*scores(x), evals // N)
    cm, cse, rm, rse, ev = table[(name, K_)]
    print(f"{name:<20}{K_:>6}{ev:>16}{cm:>10.3f} +- {cse:.3f}{rm:>10.2f} +- {rse:.2f}")
cm, cse, rm, rse = scores(samples_1000)
print(f"{'ancestral, beta_t':<20}{s.T:>6}{s.T:>16}{cm:>10.3f} +- {cse:.3f}{rm:>10.2f} +- {rse:.2f}  (stored, 4 only)")
above = [f"{nm} ({K_})" for (nm, K_), v in table.items() if v[2] - 2 * v[3] > 1]
below_1 = [f"{nm} ({K_})" for (nm, K_), v in table.items() if v[2] + 2 * v[3] < 1]
print(f"detail ratio more than 2 standard errors above 1 (noise left in the samples): {'; '.join(above) or 'none'}")
print(f"detail ratio more than 2 standard errors below 1 (smoother than real images): {'; '.join(below_1) or 'none'}")
f = pre.entry["metrics"]["fcd"]  # measured once on a GPU, stored in data/registry.json
print(f"\nFCD of this model, from data/registry.json: {f['value']} with {f['n_generated']:,} samples ({f['sampler']}), "
      f"against {f['reference']}; its floor, two halves of the test split of 2,000 images each: "
      f"{f['test_split_halves_2000']}; the first 128 of the same samples alone: {f['first_128_samples']}")
print(FCD_NOTE)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
tex = {"ancestral, beta_t": r"ancestral, $\sigma_t^2 = \beta_t$", "ancestral, beta~_t": r"ancestral, $\sigma_t^2 = \tilde\beta_t$",
       "DDIM, eta = 0": r"DDIM, $\eta = 0$"}
for name, mk in (("ancestral, beta_t", "o-"), ("ancestral, beta~_t", "s-"), ("DDIM, eta = 0", "^-")):
    Ks = [K_ for (nm, K_) in table if nm == name]
    for ax, j in ((axes[0], 0), (axes[1], 2)):
        ax.errorbar(Ks, [table[(name, K_)][j] for K_ in Ks], yerr=[table[(name, K_)][j + 1] for K_ in Ks], fmt=mk,
                    label=tex[name], capsize=3)
axes[0].axhline(real_conf.mean().item(), color="grey", ls=":", label="real images")
axes[1].axhline(1.0, color="grey", ls=":", label="real images")
for ax, lab in zip(axes, ("classifier confidence", "detail ratio (1 = real)")):
    ax.set(xlabel="network evaluations per image (= steps)", ylabel=lab, xscale="log")
    ax.set_xticks([5, 10, 20], minor=False)
    ax.set_xticks([], minor=True)
    ax.set_xticklabels(["5", "10", "20"])
axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1))
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 3.8))
for ax, name in zip(axes, ("ancestral, beta_t", "ancestral, beta~_t", "DDIM, eta = 0")):
    dl.viz.show_images(runs[(name, 5)][0].clamp(-1, 1), ax=ax, nrow=N, title=f"{name}, 5 steps")
plt.tight_layout()
plt.show()
fig = dl.viz.trajectory_strip(ddim_traj, index=0, title="DDIM, 20 steps: x_t and the predicted x_0 (original t)")
plt.show()

# %% [markdown]
# How to read the table. The counts in the third column are exact: 20 steps cost 50 times less than 1000. The detail ratio separates the samplers (the two lines under the table say
# which differ from real images by more than two standard errors), and section 4 predicts the direction. On a short
# chain each ancestral step adds noise of variance $\sigma_k^2$ that the remaining steps must turn into detail or remove.
# $\sigma_k^2 = \beta'_k$ is the right amount only for unit-variance data; for images, whose pixels vary less, it adds more
# than the few remaining steps can absorb, and the samples keep a grain real images do not have (ratio above 1).
# $\tilde\beta'_k$ is the right amount only for a single point; it adds too little, and the samples come out smoother than
# real ones (ratio below 1). DDIM adds no noise at all and lands in between, closer to 1 with more steps; with all 1000
# steps (the stored row) the grain is gone. The confidence column moves by about two standard errors at most: with 6
# samples, read the large trends only.
#
# Clipping mattered at the first step (most of the pixels of $\hat x_0$ at $t = T$ lie outside $[-1, 1]$), yet it changed
# DDIM's 20-step samples by only about 0.06 per pixel on average: this network's guesses come back into range
# as $t$ falls. Without clipping, though, about a quarter of the final pixels lie outside $[-1, 1]$ (they are clamped
# when displayed).
#
# To rank samplers by FCD, draw thousands of samples on a GPU:
# `python -m ddpm_lib.evaluate fashion-mnist-unet --fid-samples 2000 --sample-method ddim --sample-steps K`. The stored
# measurement puts the 1000-step sampler at 7.49 against a floor of 1.28, and at 24.24 on only 128 of the same samples:
# with too few samples FCD measures its own bias.
#
# ## 6. Exercises
#
# **Exercise 10.1 (one step of Algorithm 2).** Write `p_sample_step(eps_pred, x_t, t, schedule, noise)` that returns
# $x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta\big) + \sigma_t z$ with $\sigma_t^2 = \beta_t$, and no noise at $t = 1$.
# `schedule` is a `NoiseSchedule` (tables `betas`, `alphas`, `alpha_bars` of length $T + 1$), `t` a LongTensor $(B,)$.

# %% tags=["solution"]
def p_sample_step(eps_pred, x_t, t, schedule, noise):
    """x_{t-1} by Algorithm 2, line 4 (DDPM Eq. 11 for the mean), sigma_t^2 = beta_t, z = 0 at t = 1."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    alpha = schedule.alphas[t].view(shape).to(x_t.dtype)
    alpha_bar = schedule.alpha_bars[t].view(shape).to(x_t.dtype)
    beta = schedule.betas[t].view(shape).to(x_t.dtype)
    mean = (x_t - beta / (1 - alpha_bar).sqrt() * eps_pred) / alpha.sqrt()
    nonzero = (t > 1).view(shape).to(x_t.dtype)
    return mean + nonzero * beta.sqrt() * noise
    # END SOLUTION


# %%
checks.check("p_sample_step", p_sample_step)


# %% [markdown]
# **Exercise 10.2 (a respaced chain).** Write `respaced_betas(alpha_bars, timesteps)`: given the table $\bar\alpha_0, \dots, \bar\alpha_T$
# (length $T + 1$) and the kept timesteps $\tau_1 < \dots < \tau_K$, return $\beta'_1, \dots, \beta'_K$ (length $K$).

# %% tags=["solution"]
def respaced_betas(alpha_bars, timesteps):
    """beta'_k = 1 - abar_{tau_k} / abar_{tau_{k-1}}, tau_0 = 0 (Nichol & Dhariwal 2021, Sec. 4)."""
    # BEGIN SOLUTION
    kept = alpha_bars[timesteps]
    previous = torch.cat([alpha_bars[:1], kept[:-1]])  # alpha_bars[0] = 1 before the first kept step
    return 1 - kept / previous
    # END SOLUTION


# %%
checks.check("respaced_betas", respaced_betas)


# %% [markdown]
# **Exercise 10.3 (one DDIM step).** Write `ddim_step(eps_pred, x_t, t, t_prev, alpha_bars)` for $\eta = 0$:
# $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$, then $x_{t_{prev}} = \sqrt{\bar\alpha_{t_{prev}}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t_{prev}}}\,\epsilon_\theta$.
# `t` and `t_prev` are LongTensors $(B,)$ with $0 \le t_{prev} < t$.

# %% tags=["solution"]
def ddim_step(eps_pred, x_t, t, t_prev, alpha_bars):
    """One deterministic DDIM step from t to t_prev (Song et al. 2021, Eq. 12, eta = 0)."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    ab_t = alpha_bars[t].view(shape).to(x_t.dtype)
    ab_prev = alpha_bars[t_prev].view(shape).to(x_t.dtype)
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps_pred) / ab_t.sqrt()
    return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps_pred
    # END SOLUTION


# %%
checks.check("ddim_step", ddim_step)

# %% [markdown]
# **Exercise 10.4 (derive: the mean of a clipped step).** With `clip_x0=True` the library does not use Eq. 11 for the
# mean of $p_\theta(x_{t-1} \mid x_t)$. Work out what it must use instead, from what this course has derived: the
# predicted $\hat x_0$ (Eq. 4 solved for $x_0$), clipped to $[-1, 1]$, and the posterior $q(x_{t-1} \mid x_t, x_0)$ of chapter 04
# with $\hat x_0$ in place of $x_0$. Then write `clipped_mean(eps_pred, x_t, t, schedule)` returning that mean (shaped like
# `x_t`; `schedule` is a `NoiseSchedule`, `t` a LongTensor $(B,)$ with $t \ge 2$). Before you run the check, decide: for
# which $x_t$ does your mean equal Eq. 11's exactly, and why?


# %% tags=["solution"]
def clipped_mean(eps_pred, x_t, t, schedule):
    """The mean of p(x_{t-1} | x_t) with x0_hat clipped to [-1, 1]: Eq. 7's posterior mean at the clipped x0_hat."""
    # BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    ab = schedule.alpha_bars[t].view(shape).to(x_t.dtype)
    ab_prev = schedule.alpha_bars[t - 1].view(shape).to(x_t.dtype)
    alpha = schedule.alphas[t].view(shape).to(x_t.dtype)
    beta = schedule.betas[t].view(shape).to(x_t.dtype)
    x0_hat = ((x_t - (1 - ab).sqrt() * eps_pred) / ab.sqrt()).clamp(-1, 1)
    return ab_prev.sqrt() * beta / (1 - ab) * x0_hat + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    # END SOLUTION


# %%
checks.check("clipped_mean", clipped_mean)

# %% [markdown]
# (The answer to the question: exactly when $\hat x_0$ already lies in $[-1, 1]$, since Eq. 11 *is* Eq. 7's mean at the
# unclipped $\hat x_0$, chapter 06; clipping changes only the steps whose guess leaves the data's range.)

# %% [markdown]
# ## Summary
#
# - Algorithm 2 is the reparameterized draw from $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)$, with
#   $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta)$ obtained by putting $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}$
#   into the posterior mean (Eqs. 7, 10, 11); the last step adds no noise. Training (Algorithm 1) needs only the noise;
#   the derivation is what turns a noise predictor into a sampler.
# - $\sigma_t^2 = \beta_t$ is the exact reverse variance for unit-variance Gaussian data, $\tilde\beta_t$ for a single point; with
#   $T = 1000$ they differ only at the first steps, on a short respaced chain everywhere.
# - Each step's $\hat x_0$ shows the sample forming: coarse structure is settled long before the details.
# - A respaced chain keeps $\bar\alpha$ at the kept steps ($\beta'_k = 1 - \bar\alpha_{\tau_k}/\bar\alpha_{\tau_{k-1}}$), so the same network samples
#   with $K$ network evaluations instead of $T$; DDIM makes the map $x_T \mapsto x_0$ deterministic. On a short chain
#   $\sigma_t^2 = \beta_t$ leaves grain, $\tilde\beta_t$ over-smooths, DDIM lies between. Quality scores on a handful of samples show
#   large trends only; FCD needs thousands (7.49 for the 1000-step sampler on 2,000 samples, floor 1.28).
# - `clip_x0` clips each step's guess $\hat x_0$ to $[-1, 1]$ and forms the mean from it (Eq. 7); it matters most for DDIM,
#   which adds no noise to wash out an overshoot, and on weak networks.
#
# **Next:** chapter 11 reproduces the paper's ablations (Table 2) at small scale: predicting $\epsilon$ or $\tilde\mu$, $L_\text{simple}$ or the
# true bound, fixed or learned variances. Chapter 13 reuses the reverse process from an intermediate $x_t$ to reconstruct
# and interpolate images.
