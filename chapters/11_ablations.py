# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 · The paper's ablations at small scale (Table 2)
#
# DDPM did not arrive at "predict the noise, train on $L_\text{simple}$, keep the variance fixed" by
# derivation alone. Section 4.2 of Ho et al. 2020 tests the alternatives, and Table 2 reports them:
# predicting the posterior mean $\tilde\mu$ or the noise $\epsilon$; training on the true bound $L$
# or on an unweighted squared error; a fixed isotropic variance or a learned diagonal one. The usual
# summary fits in two lines: predicting $\mu$ instead of $\epsilon$ only works with the original,
# weighted bound, and a learned (diagonal) variance makes training unstable. This chapter derives why
# the six rows differ, runs them on the swiss roll with the same network, data, seeds and steps,
# and puts our numbers beside the paper's.
#
# **Learning goals.** After this chapter you can
# - write each of Table 2's objectives as the same regression on $\epsilon$ with a different weight
#   over $t$ (DDPM Eqs. 8, 10-12, 14), and say which $t$ each one neglects;
# - say what a learned diagonal $\Sigma_\theta$ adds to the bound, find the best variance for a given
#   mean error, and explain why it couples the two and can destabilize training;
# - read an ablation table honestly: the bound in bits/dim, a sample-quality score against the data's own
#   distance, whether the models have converged, and instability *measured* (divergence, gradient spikes,
#   samples out of range), not read off how often the gradient was clipped;
# - regenerate the table with one command, and check that a rerun reproduces it.
#
# **CPU time:** the budget is 55 s on a 2-core CPU (`chapters/timings.json` has the last measured time), most of
# it one short training run that reproduces the start of a stored one. The full table is stored; its command and the minutes it took are printed below.

# %%
import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_lib as dl
from ddpm_lib import ablations  # DDPM Table 2 at small scale: the code of the ddpm-ablations command
from ddpm_lib.cli.ablations import main as ddpm_ablations  # that command, callable
from ddpm_lib.course import checks
from ddpm_lib.evaluate import fcd  # the Frechet classifier distance (NOT Inception FID)
from ddpm_lib.metrics import sliced_w1_ratio  # sliced W1 / the data's own distance at the same N
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

LN2 = math.log(2.0)


# %% [markdown]
# ## 1. The choices Table 2 compares
#
# The reverse process is a chain of Gaussians (DDPM Eq. 1),
# $$p_\theta(x_{t-1} \mid x_t) = \mathcal N\big(x_{t-1};\ \mu_\theta(x_t, t),\ \Sigma_\theta(x_t, t)\big),$$
# trained on the bound (Eq. 5)
# $$L = \mathbb E_q\Big[\underbrace{D_\text{KL}(q(x_T \mid x_0)\,\|\,p(x_T))}_{L_T}
#   + \sum_{t>1} \underbrace{D_\text{KL}(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
#   \underbrace{- \log p_\theta(x_0 \mid x_1)}_{L_0}\Big],$$
# where the posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\beta_t I)$ has
# (Eqs. 6-7)
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
#   + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \qquad
#   \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\,\beta_t .$$
# Three choices are left open, and Table 2 crosses them:
#
# | choice | options | in `ddpm_lib` |
# |---|---|---|
# | what the network outputs | $\tilde\mu$ itself ("$\tilde\mu$ prediction", the baseline), or $\epsilon$ with $\mu_\theta$ from Eq. 11 | `prediction="mean"` / `"eps"` |
# | the variance $\Sigma_\theta$ | fixed isotropic $\sigma_t^2 I$ ($\sigma_t^2 = \beta_t$ or $\tilde\beta_t$), or learned diagonal | `variance="fixed_large"` / `"fixed_small"` / `"learned"` |
# | the objective | the true bound $L$, or an unweighted squared error of what the network outputs | `loss="vlb"` / `loss="simple"` |
#
# ### 1.1 Fixed variance: three weightings of one regression
#
# With $\Sigma_\theta = \sigma_t^2 I$ fixed, the KL between two Gaussians of the same shape is a squared
# distance between their means plus a constant (Eq. 8):
# $$L_{t-1} = \mathbb E_q\Big[\frac{1}{2\sigma_t^2}\,\big\|\tilde\mu_t(x_t, x_0) - \mu_\theta(x_t, t)\big\|^2\Big] + C_t,
# \qquad C_t = \tfrac{D}{2}\Big(\log\frac{\sigma_t^2}{\tilde\beta_t} + \frac{\tilde\beta_t}{\sigma_t^2} - 1\Big),$$
# with $D$ the data's dimension; $C_t$ does not depend on $\theta$. Write $x_t = \sqrt{\bar\alpha_t}\,x_0 +
# \sqrt{1-\bar\alpha_t}\,\epsilon$ (Eq. 4) and solve for $x_0$; substituted into Eq. 7 the posterior mean
# becomes (Eq. 10)
# $$\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\Big).$$
# The $\epsilon$ parameterization gives the network's mean the same form (Eq. 11),
# $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\big)$,
# so the $x_t$ terms cancel and
# $$\tilde\mu_t - \mu_\theta = \frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1 - \bar\alpha_t}}\,\big(\epsilon_\theta - \epsilon\big),
# \qquad \big\|\tilde\mu_t - \mu_\theta\big\|^2 = \underbrace{\frac{\beta_t^2}{\alpha_t (1 - \bar\alpha_t)}}_{w_t}\,\big\|\epsilon - \epsilon_\theta\big\|^2 .$$
# Every objective in the fixed-variance rows is therefore the same regression of $\epsilon$, weighted
# differently over $t$:
#
# | Table 2's row | objective | weight on $\|\epsilon - \epsilon_\theta\|^2$ at step $t$ |
# |---|---|---|
# | $L$, fixed isotropic $\Sigma$ (either prediction) | the true bound, Eq. 12 | $\lambda_t = \dfrac{\beta_t^2}{2\sigma_t^2\,\alpha_t(1 - \bar\alpha_t)} = \dfrac{w_t}{2\sigma_t^2}$ |
# | $\|\tilde\mu - \tilde\mu_\theta\|^2$ | unweighted MSE on the mean | $w_t = \dfrac{\beta_t^2}{\alpha_t(1 - \bar\alpha_t)}$ |
# | $\|\tilde\epsilon - \epsilon_\theta\|^2$ ($L_\text{simple}$) | Eq. 14 | $1$ |
#
# Two things follow. First, for the bound it does not matter *which* quantity the network outputs:
# the affine map of Eq. 11 turns an $\epsilon$-network into a $\tilde\mu$-network with the same loss,
# so the two "$L$, fixed" rows differ only in how easy the function is to learn (a $\tilde\mu$-network must
# reproduce $x_t / \sqrt{\alpha_t}$ almost exactly and add a small correction; an $\epsilon$-network
# outputs something of unit scale at every $t$). Second, the unweighted mean loss is the bound without
# its $1 / (2\sigma_t^2)$: with $\sigma_t^2 = \beta_t$ that removes a factor that is largest at small $t$.
# Near $t = 1$, $1 - \bar\alpha_1 = \beta_1$, so $w_1 = \beta_1 / \alpha_1$: the last denoising steps,
# which decide the fine detail of a sample, cost the unweighted mean loss almost nothing.
#
# At $t = 1$ the bound's term is the decoder's $L_0 = -\log p_\theta(x_0 \mid x_1)$, a Gaussian density
# here (continuous 2-D data) and the discretized decoder of Eq. 13 for 8-bit images (chapter 07).
#
# ### 1.2 A learned diagonal variance
#
# With $\Sigma_\theta = \operatorname{diag}(\sigma^2_{\theta,1}, \dots, \sigma^2_{\theta,D})$ the network
# outputs $2D$ numbers: the mean's $D$ and $v_{\theta,i} = \log \sigma^2_{\theta,i}$. The KL of two diagonal
# Gaussians is a sum over dimensions,
# $$L_{t-1} = \sum_{i=1}^{D} \frac12\Big(\log\frac{\sigma^2_{\theta,i}}{\tilde\beta_t}
#   + \frac{\tilde\beta_t + (\tilde\mu_{t,i} - \mu_{\theta,i})^2}{\sigma^2_{\theta,i}} - 1\Big).$$
# Setting its derivative in $\sigma^2_{\theta,i}$ to zero, $\frac{1}{\sigma^2} - \frac{\tilde\beta_t + e_i^2}{\sigma^4} = 0$ with
# $e_i = \tilde\mu_{t,i} - \mu_{\theta,i}$, gives the best variance for the mean the network predicts:
# $$\sigma^{2\,*}_{\theta,i} = \tilde\beta_t + e_i^2 .$$
# The variance thus has to track the mean's *error*, which changes as the mean learns; and the mean's
# gradient, $\partial L_{t-1} / \partial \mu_{\theta,i} = -e_i / \sigma^2_{\theta,i}$, is divided by the
# learned variance, so wherever the variance is (or becomes) small a mean error is amplified. For our
# swiss-roll schedule $\tilde\beta_t$ spans three orders of magnitude, and $\sigma^2_\theta = e^{v_\theta}$ turns an
# error in the network's output into a multiplicative one. This coupling is what Nichol & Dhariwal
# (2021) later tamed by learning only an interpolation between $\beta_t$ and $\tilde\beta_t$
# (`variance="learned_range"`) and by a hybrid loss; DDPM's Table 2 learns $\log\sigma^2$ directly, as
# `variance="learned"` does here.
#
# ## 2. The same equations in `ddpm_lib`, checked
#
# `GaussianDiffusion.training_losses` implements every row: `loss="simple"` is the unweighted MSE of
# whatever the network predicts (Eq. 14 for $\epsilon$, $\|\tilde\mu - \mu_\theta\|^2$ per dimension for
# `prediction="mean"`), and `loss="vlb"` is $T \cdot L_{t-1}$ in bits per dimension, whose expectation
# over $t \sim \text{Uniform}\{1..T\}$ is the bound without $L_T$. We check the identities of Section 1.1
# on the swiss-roll schedule with an untrained MLP (any network will do for an identity) in float64: an
# $\epsilon$-network, and the $\tilde\mu$-network that Eq. 11 makes of it.

# %%
cfg = ablations.base_config(ablations.AblationSettings())  # the table's settings: configs/swiss_roll.toml
s = dl.NoiseSchedule.linear(T=cfg.T, beta_start=cfg.beta_start, beta_end=cfg.beta_end)
T, D = s.T, 2
diff = {(p, l): dl.GaussianDiffusion(s, prediction=p, variance="fixed_large", loss=l, decoder="gaussian")
        for p in ("eps", "mean") for l in ("simple", "vlb")}

torch.manual_seed(0)
eps_net = dl.MLP(2, hidden=64, layers=2).double()  # untrained


def mean_net(x_t, t):
    """The mu~-network Eq. 11 makes of eps_net."""
    return diff["eps", "simple"].mean_from_eps(x_t, t, eps_net(x_t, t))


g = torch.Generator().manual_seed(0)
x0 = dl.swiss_roll(4096, generator=g).double()
t = torch.randint(2, T + 1, (4096,), generator=g)  # t >= 2: the KL terms (t = 1 is the decoder)
noise = torch.randn(4096, 2, generator=g, dtype=torch.float64)
with torch.no_grad():
    l_simple = diff["eps", "simple"].training_losses(eps_net, x0, t, noise)["loss"] * D  # ||eps - eps_theta||^2
    l_mu = diff["mean", "simple"].training_losses(mean_net, x0, t, noise)["loss"] * D  # ||mu~ - mu_theta||^2
    vlb_eps = diff["eps", "vlb"].training_losses(eps_net, x0, t, noise)["loss"]  # T L_{t-1} in bits/dim
    vlb_mu = diff["mean", "vlb"].training_losses(mean_net, x0, t, noise)["loss"]

w = s.eps_coef[t] ** 2 / s.alphas[t]  # w_t = beta_t^2 / (alpha_t (1 - abar_t)), eps_coef = beta_t / sqrt(1 - abar_t)
lam = diff["eps", "vlb"].eps_mse_weight(t)  # the library's lambda_t of Eq. 12, sigma_t^2 = beta_t
C = dl.normal_kl(torch.zeros(()), s.posterior_log_variance_clipped[t], torch.zeros(()), s.betas[t].log()) * D
eq12 = T * (lam * l_simple + C) / (D * LN2)  # Eq. 12 (+ Eq. 8's C), times T, in bits per dimension

rel = lambda a, b: ((a - b).abs() / b.abs()).max().item()  # noqa: E731
print(f"||mu~ - mu_theta||^2 = w_t ||eps - eps_theta||^2 (Eqs. 10-11):   max relative difference {below(rel(l_mu, w * l_simple), 1e-9)}")
print(f"bound term = lambda_t ||eps - eps_theta||^2 + C_t (Eqs. 8, 12): max relative difference {below(rel(vlb_eps, eq12), 1e-9)}")
print(f"bound term, mu~-network vs eps-network (same mu_theta):         max relative difference {below(rel(vlb_mu, vlb_eps), 1e-9)}")
print(f"lambda_t = w_t / (2 sigma_t^2): max relative difference {below(rel(lam, w / (2 * s.betas[t])))}")

# %% [markdown]
# ### A picture: where each objective puts its weight
#
# The three weights as functions of $t$, each divided by its mean over $t$ (an overall scale only
# changes the effective learning rate, and Adam removes most of that). $L_\text{simple}$ is flat; the
# bound leans towards small $t$; the unweighted mean loss is the bound times $2\sigma_t^2 = 2\beta_t$, so
# compared with the bound it moves weight from $t = 1$ to $t = T$ by a factor $\beta_T / \beta_1$.

# %%
ts = torch.arange(1, T + 1)
weights = {
    r"bound $\lambda_t$ (Eq. 12, $\sigma_t^2=\beta_t$)": diff["eps", "vlb"].eps_mse_weight(ts),
    r"$\|\tilde\mu-\mu_\theta\|^2$: $w_t$": s.eps_coef[ts] ** 2 / s.alphas[ts],
    r"$L_\mathrm{simple}$: 1": torch.ones(T, dtype=torch.float64),
}
fig, ax = plt.subplots(figsize=(6.4, 3.4))
for name, wt in weights.items():
    ax.semilogy(ts, wt / wt.mean(), label=name)
ax.set(xlabel="t", ylabel="weight / its mean over t", title=f"weights on $\\|\\epsilon-\\epsilon_\\theta\\|^2$, "
       f"linear schedule {cfg.beta_start:g}..{cfg.beta_end:g}, T = {T}")
ax.legend()
fig.tight_layout()
plt.show()
small = ts <= T // 10
print(f"beta_T / beta_1 = {(s.betas[T] / s.betas[1]).item():.0f}")
for name, wt in weights.items():
    share = (wt[small].sum() / wt.sum()).item()
    print(f"{name.split(':')[0].replace('$', ''):<42s} weight(t=1)/weight(t=T) = {(wt[0] / wt[-1]).item():9.3g}; "
          f"share of the total on t <= {T // 10}: {share:6.1%}")

# %% [markdown]
# ### The best variance for a given mean, checked against the library's KL
#
# We minimize `dl.normal_kl` (the Gaussian KL in the bound) over $\log\sigma^2$ on a fine grid for a few
# steps $t$ and mean errors $e$, and compare with $\tilde\beta_t + e^2$. Then the amplification: the
# gradient of $L_{t-1}$ with respect to the mean, per unit of mean error, is $1/\sigma^2$.

# %%
logv = torch.linspace(-14, 2, 160001, dtype=torch.float64)
worst = 0.0
for tt in (2, 20, T):
    bt = s.posterior_variance[tt]
    for e in (0.0, 0.01, 0.1):
        kl = dl.normal_kl(torch.tensor(e, dtype=torch.float64), bt.log(), torch.zeros(()), logv)  # KL(q || p_theta)
        v_grid = logv[kl.argmin()].exp()
        worst = max(worst, abs((v_grid / (bt + e**2)).item() - 1))
print(f"argmin of normal_kl over log sigma^2 vs beta~_t + e^2 (t = 2, 20, {T}; e = 0, 0.01, 0.1): "
      f"max relative difference {below(worst, 1e-4)} (grid step {(logv[1] - logv[0]).item():.0e} in log sigma^2)")
print(f"beta~_t ranges from {s.posterior_variance[2].item():.2e} (t = 2) to {s.posterior_variance[T].item():.3f} "
      f"(t = T): the gradient on the mean per unit error, 1/sigma^2 at sigma^2 = beta~_t, is "
      f"{(s.posterior_variance[T] / s.posterior_variance[2]).item():.0f} times larger at t = 2 than at t = T")
e = 0.01
for tt in (2, T):
    bt = s.posterior_variance[tt]
    at_fixed = dl.normal_kl(torch.tensor(e, dtype=torch.float64), bt.log(), torch.zeros(()), bt.log()).item()
    at_best = dl.normal_kl(torch.tensor(e, dtype=torch.float64), bt.log(), torch.zeros(()), (bt + e**2).log()).item()
    print(f"t = {tt:3d}, mean error {e}: KL with sigma^2 = beta~_t {at_fixed:8.3f} nats, with the best sigma^2 "
          f"{at_best:.3f} nats")

# %% [markdown]
# ## 3. The experiment: Table 2 on the swiss roll
#
# `ddpm-ablations` (the library's `ddpm_lib.ablations`) trains all six rows with the library's `Trainer`
# and `configs/swiss_roll.toml`: the same MLP (3 hidden layers of 128; its output doubles to $2D$ for a learned
# variance), the same linear schedule ($T = 200$, $\beta$ from $10^{-4}$ to $0.1$), Adam, batch 256, gradient
# clipping at 1 (as DDPM), an EMA of the weights, the same seed and the same number of steps; only
# `prediction`, `loss` and `variance` change. The learning rate, the EMA decay and the number of steps are
# those that bring the paper's recipe to samples at the data's own distance (below); the stored table
# prints them. A seventh row scores the $L_\text{simple}$ networks with $\sigma_t^2 = \tilde\beta_t$ instead
# of $\beta_t$ (the variance never enters $L_\text{simple}$, so no new training is needed). Each trained
# network (EMA weights) is scored by
#
# - **the bound** $L_T + \sum_t L_{t-1} + L_0$ in bits per dimension on 2,000 held-out points
#   (`evaluate.bits_per_dim_on`). The swiss roll is continuous, so this bounds $-\log_2$ of a *density*
#   divided by 2 dimensions: it can be negative, and it is not comparable with the bits/dim of images;
# - **sample quality**: the sliced Wasserstein-1 distance (`dl.sliced_wasserstein`) between 2,000 samples
#   (Algorithm 2, all $T$ steps) and 2,000 held-out points, lower is better, and the same distance divided by
#   that between two fresh sets of 2,000 data points (`dl.metrics.sliced_w1_ratio`, averaged over 8 pairs):
#   1 is as close as the data itself come; a few exploded samples dominate a Wasserstein distance, so the
#   distance of the samples within range and the share out of range ($|x_i| > 3$; the data lie within
#   $[-1.2, 1.5]$) are reported too;
# - **instability, measured**: whether the loss became non-finite (the `Trainer` stops; the step is
#   recorded), loss and gradient-norm spikes (a step above 10 times the median of the 100 steps before),
#   the share of steps whose gradient norm exceeded the clipping threshold, the gradient norms, and the
#   bound during training.
#
# **How long to train.** A row is worth ranking only once it has stopped improving. Each run takes 60,000 steps of
# batch 256 with Adam at a learning rate of $10^{-3}$, lowered to 0 along half a cosine over the run
# (`TrainConfig.lr_decay = "cosine"`): at a constant rate a network keeps jittering around its optimum by an amount
# the rate sets, and the bound, which rests on fine detail at the smallest $t$, keeps falling for a long time. An
# earlier edition of this table trained 10,000 steps at a constant rate: every row was still improving, and it
# ranked the learned variance *below* the fixed one for $\epsilon$ prediction, the other way round from the converged
# table below. The instability table prints how much each bound moved over its last 10,000 steps.
#
# The table is stored in `data/ablations/swiss_roll_table2.json` (and `.md`), registered with its sha256 in
# `data/registry.json`, so `ablations.load_table` refuses a copy edited by hand; the JSON schema is in the
# docstring of `ddpm_lib/ablations.py`. The command that made it, which remakes it (it rewrites the file after
# every run; `--resume` continues a stopped one), its settings, and the time each run took:

# %%
table = ablations.load_table("swiss_roll")  # checked against its sha256 in data/registry.json
rows = {r["id"]: r for r in table["rows"]}
print(f"command:  {table['command']}")
print(f"made with ddpm_lib {table['library_version']}, torch {table['torch']}, on {table['device']} "
      f"({table['threads']} thread); seeds {table['seeds']}, {table['steps']} steps per run; complete: {table['complete']}")
tc = table["train_config"]
print(f"shared settings: {tc['model']} {tc['model_args'] or '(hidden 128, 3 layers)'}, T = {tc['T']}, "
      f"betas {tc['beta_start']:g}..{tc['beta_end']:g}, lr {tc['lr']:g} (decay: {tc['lr_decay']}), "
      f"batch {tc['batch_size']}, "
      f"grad_clip {tc['grad_clip']:g}, ema {tc['ema_decay']:g}")
minutes = sum(r["runs"][0]["seconds"] for r in table["rows"] if r["trained_as"] == r["id"]) / 60
print(f"the six trainings, each with its scoring, took {minutes:.0f} minutes of one core in all (one thread a run; "
      f"--workers 2 ran two side by side; the seconds of each run are in the JSON)")


# %% [markdown]
# ### The table, beside the paper's
#
# The paper's Table 2 reports Inception Score (IS, higher is better) and FID (lower is better) on
# CIFAR-10; a dash marks rows that "were unstable to train and generated poor samples with out-of-range
# scores". Its bits/dim appear only in Table 1, for two of the rows: $\le 3.70$ for $\epsilon$
# prediction with $L$ and fixed isotropic $\Sigma$, $\le 3.75$ for $L_\text{simple}$. Our columns:
# the bound, the sliced W1 distance of all samples, that distance divided by the data floor, the share of
# samples out of range, and the runs that diverged (with several seeds, each is a mean ± standard deviation).

# %%
def pm(m, sd, d=3):
    if m is None:
        return "–"
    if abs(m) >= 100:
        return f"{m:.2g}" + (f" ± {sd:.1g}" if sd else "")
    return f"{m:.{d}f}" + (f" ± {sd:.{d}f}" if sd else "")


hdr = (f"{'row':<46s} {'paper IS':>11s} {'FID':>6s} | {'bound, bits/dim':>15s} {'sliced W1':>10s} "
       f"{'W1 / floor':>10s} {'W1 in range':>11s} {'out of range':>12s} {'diverged':>8s}")
print(hdr)
print("-" * len(hdr))
for rid in ablations.ROWS:
    r = rows[rid]
    sm = r["summary"]
    print(f"{r['label']:<46.46s} {r['paper']['IS'] or '':>11s} {r['paper']['FID'] or '':>6s} | "
          f"{pm(sm['bpd_mean'], sm['bpd_std']):>15s} {pm(sm['score_mean'], sm['score_std']):>10s} "
          f"{pm(sm['w1_ratio_mean'], sm['w1_ratio_std'], 2):>10s} {pm(sm['score_in_range_mean'], 0):>11s} "
          f"{sm['out_of_range_mean']:>12.2%} {sm['n_diverged']:>4d}/{sm['n_runs']}")
ref = dl.swiss_roll(2000, generator=torch.Generator().manual_seed(1002))
floor = sliced_w1_ratio(dl.swiss_roll(2000, generator=torch.Generator().manual_seed(5)))["w1_floor"]
noise = dl.sliced_wasserstein(torch.randn(2000, 2, generator=torch.Generator().manual_seed(3)), ref,
                              generator=torch.Generator().manual_seed(7))
print(f"\nfor scale: the data floor (sliced W1 between two sets of 2,000 data points, mean of 8 pairs) {floor:.3f}; "
      f"N(0, I) noise against the data {noise:.3f}")

# %% [markdown]
# ### Pictures: the samples of every trained row
#
# 400 of each trained row's samples (red) on held-out data (grey); samples outside the frame are counted in
# the title. The three $\epsilon$ rows trace the spiral. Of the $\tilde\mu$ rows, trained for as many steps, the one with a
# learned variance traces it too, with points strewn off its outer arm; the one with a fixed variance blurs it, many
# points falling between the arms; the unweighted one is a diffuse cloud with only a hint of the spiral.

# %%
ids = list(ablations.ROWS)
trained = [rid for rid in ids if rows[rid]["trained_as"] == rid]
seed0 = str(table["seeds"][0])
fig, axes = plt.subplots(2, 3, figsize=(10, 7), sharex=True, sharey=True)
for ax, rid in zip(axes.flat, trained):
    ax.scatter(ref[:400, 0], ref[:400, 1], s=2, c="0.75")
    pts = np.asarray(table["samples"][rid][seed0], dtype=float)
    out = (~np.isfinite(pts).all(1)) | (np.abs(pts) > 1.8).any(1)
    ax.scatter(pts[~out, 0], pts[~out, 1], s=2, c="C3")
    ax.set_title(f"{rid}: W1 / floor {rows[rid]['summary']['w1_ratio_mean']:.3g}\n"
                 f"({out.sum()} of {len(pts)} outside the frame)")
    ax.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), aspect="equal")
for ax in axes[-1]:
    ax.set_xlabel("$x_1$")
for ax in axes[:, 0]:
    ax.set_ylabel("$x_2$")
fig.suptitle(f"samples after {table['steps']:,} steps (seed {seed0}, all T = {tc['T']} ancestral steps)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Instability, measured
#
# The per-step loss of each row is in its own units (MSE, or $T \cdot L_{t-1}$ in bits/dim), so we
# compare what is comparable: the gradient norm before clipping (the window maximum over 50 steps), the
# bound during training on 500 held-out points, and the counts defined above.

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 3.6))
for i, rid in enumerate(trained):
    for k, run in enumerate(rows[rid]["runs"]):
        c = run["curve"]
        gmax = [v if v is not None else np.nan for v in c["grad_norm_max"]]
        a1.semilogy(c["step"], gmax, color=f"C{i}", lw=0.8, alpha=0.8, label=rid if k == 0 else None)
        bc = np.array([[p[0], np.nan if p[1] is None else p[1]] for p in run["bpd_curve"]])
        a2.plot(bc[:, 0], bc[:, 1], color=f"C{i}", marker=".", lw=0.8, alpha=0.8, label=rid if k == 0 else None)
a1.axhline(tc["grad_clip"], color="k", lw=0.6, ls=":")
a1.set(xlabel="step", ylabel="gradient norm (max over 50 steps)", title="gradient norm before clipping (dotted: clip)")
all_b = [p[1] for rid in trained for r in rows[rid]["runs"] for p in r["bpd_curve"] if p[1] is not None]
a2.set(xlabel="step", ylabel="bound, bits/dim", title="the bound during training (EMA weights)",
       yscale="log" if min(all_b) > 0 else "symlog", xlim=(0, table["steps"] * 1.02))
a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
fig.tight_layout()
plt.show()

print(f"{'row':<18s} {'diverged':>8s} {'loss spikes':>11s} {'grad spikes':>11s} {'clipped':>8s} "
      f"{'grad norm median':>16s} {'max/median':>10s} {'worst rise of the bound':>24s} {'bound, last 10,000 steps':>24s}")
for rid in trained:
    runs = rows[rid]["runs"]
    sm = rows[rid]["summary"]
    med = np.median([r["grad_norm"]["median"] for r in runs])
    ratio = max(r["grad_norm"]["max"] / r["grad_norm"]["median"] for r in runs)
    rises, last = [], []
    for r in runs:
        pts = [p for p in r["bpd_curve"] if p[1] is not None]
        rises += [b[1] - a[1] for a, b in zip(pts[:-1], pts[1:])]
        tail = [p[1] for p in pts if p[0] >= table["steps"] - 10_000]  # has it stopped improving?
        last.append(tail[-1] - tail[0])
    print(f"{rid:<18s} {sm['n_diverged']:>4d}/{sm['n_runs']:<3d} {sm['loss_spikes_mean']:>11.1f} "
          f"{sm['grad_spikes_mean']:>11.1f} {sm['clipped_frac_mean']:>8.1%} {med:>16.3g} {ratio:>10.1f} "
          f"{max(rises + [0.0]):>+24.3f} {np.mean(last):>+24.3f}")

# %% [markdown]
# **"Clipped" is not "unstable".** Clipping rescales the gradient to norm 1 whenever its norm is larger. The rows
# trained on the bound report their loss as $T \cdot L_{t-1}$ in bits/dim, a number in the hundreds to thousands
# where $L_\text{simple}$'s is below 1, so their gradient norms sit far above 1 and every step is clipped; that
# says how the loss is scaled, not that training is unstable. Adam divides each parameter's step by a running
# root-mean-square of its gradients, so multiplying every gradient by the same constant changes nothing; clipping at
# every step multiplies each step's gradient by $1 / \|g_k\|$, which changes the updates only in so far as
# $\|g_k\|$ varies from step to step (a step with a large gradient then counts as much as one with a small one).
# That is why the table's `max/median` of the gradient norm, and the bound during training, are the gauges of
# instability here, and the clipped share is not. A check on a toy least-squares problem:

# %%
def adam_path(scale, clip=None, steps=300):
    """Adam (lr 1e-2) on scale * ||w - target_k||^2 with a fresh noisy target each step; the path of w."""
    w = torch.zeros(5, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-2)
    g, path = torch.Generator().manual_seed(0), []
    for _ in range(steps):
        loss = scale * ((w - (0.5 + torch.randn(5, generator=g))) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_([w], clip)
        opt.step()
        path.append(w.detach().clone())
    return torch.stack(path)


base = adam_path(1.0)
print(f"every gradient x 1000:           max |difference| of the path from the unscaled one "
      f"{below((adam_path(1000.0) - base).abs().max().item(), 1e-4)}")
clipped = adam_path(1000.0, clip=1.0)
print(f"x 1000 and clipped at every step: distance of the last w from the optimum 0.5: "
      f"{(clipped[-1] - 0.5).norm():.2f} (unclipped: {(base[-1] - 0.5).norm():.2f})")

# %% [markdown]
# ### What the table says, and what it does not
#
# The comparisons the paper makes, one line each, from the stored table:

# %%
def mean_of(rid, key):
    return rows[rid]["summary"][f"{key}_mean"]


def compare(a, b, what):
    ka, kb = (mean_of(a, "bpd"), mean_of(a, "w1_ratio")), (mean_of(b, "bpd"), mean_of(b, "w1_ratio"))
    print(f"{what:<52s} bound {ka[0]:7.3f} vs {kb[0]:7.3f} bits/dim | W1 / floor {ka[1]:5.3g} vs {kb[1]:5.3g} | "
          f"out of range {mean_of(a, 'out_of_range'):.2%} vs {mean_of(b, 'out_of_range'):.2%}")


compare("eps-simple-fixed", "eps-vlb-fixed", "eps: L_simple vs the bound L (fixed Sigma)")
compare("mean-vlb-fixed", "eps-vlb-fixed", "bound L, fixed Sigma: mu~ vs eps prediction")
compare("mean-mse-fixed", "mean-vlb-fixed", "mu~ prediction: unweighted MSE vs the bound L")
compare("eps-vlb-learned", "eps-vlb-fixed", "eps, bound L: learned diagonal vs fixed Sigma")
compare("mean-vlb-learned", "mean-vlb-fixed", "mu~, bound L: learned diagonal vs fixed Sigma")
compare("eps-simple-small", "eps-simple-fixed", "L_simple nets: sigma^2 = beta~_t vs beta_t")
g = {rid: np.median([r["grad_norm"]["median"] for r in rows[rid]["runs"]]) for rid in trained}
print("median gradient norm (before clipping) relative to eps-simple-fixed: "
      + ", ".join(f"{rid} {g[rid] / g['eps-simple-fixed']:.3g}x" for rid in trained if rid != "eps-simple-fixed"))
for rid in trained:
    terms = [r["bpd_terms"] for r in rows[rid]["runs"] if r["bpd_terms"]]
    parts = {k: np.mean([t_[k] for t_ in terms]) for k in ("L_T", "L_t_minus_1", "L_0")}
    print(f"{rid:<18s} the bound's parts (bits/dim): L_T {parts['L_T']:.1e}, sum of L_t-1 {parts['L_t_minus_1']:9.3f}, "
          f"L_0 {parts['L_0']:8.3f}")

# %% [markdown]
# Reading these lines against the paper (Section 4.2: learned variances lead "to unstable training and
# poorer sample quality compared to fixed variances"; predicting $\tilde\mu$ "works well only when
# trained on the true variational bound"; predicting $\epsilon$ is about as good as $\tilde\mu$ on the
# bound with fixed variances, FID 13.51 against 13.22, and much better with $L_\text{simple}$):
#
# - **Have the models converged?** Yes, in the sense that matters here: over its last 10,000 steps (the learning rate
#   below 7% of its peak) no row's bound moved by more than 0.04 bits/dim (the instability table's last column),
#   against differences of 0.3 bits/dim or more between the rows ranked below. The three $\epsilon$ rows sample as
#   close to the data as another set of 2,000 data points (1.03 to 1.07 times the floor). The $\tilde\mu$ rows
#   converged to *worse* models: bounds of $-0.04$, 0.92 and 1.20 bits/dim, and samples within range at a sliced
#   W1 of 0.039 to 0.058, against the floor's 0.024. Differences in the bound of 0.05 bits/dim or less are not a ranking:
#   each bound has a standard error of 0.02-0.04 on 2,000 held-out points.
# - **What carries over.** With $\epsilon$ prediction, $L_\text{simple}$ gives a slightly worse bound than training on
#   the bound itself ($-0.32$ against $-0.37$ bits/dim, a difference at the edge of the noise) and samples as good
#   (1.07 against 1.03 times the floor): the paper's Table 1 has the same direction and size (3.75 against 3.70
#   bits/dim). With $\epsilon$ prediction, learning the variance makes the gradient norms larger and far more
#   heavy-tailed (median 30.0 against 16.3, max/median 108 against 5.1, and the only gradient spikes of the table),
#   as Section 1.2 predicts: the paper's "unstable training", measured, though no run diverged.
# - **What does not, at this scale.** A learned diagonal $\Sigma_\theta$ gives a much *better* bound than a fixed one
#   with either prediction ($-0.90$ against $-0.37$ for $\epsilon$, $-0.04$ against 0.92 for $\tilde\mu$) and samples as
#   good within range: the bound is a likelihood, and Section 1.2's best variance $\tilde\beta_t + e^2$ absorbs the mean's error,
#   which a fixed $\sigma_t^2$ cannot (Nichol & Dhariwal 2021 found the same for images, once they had tamed the
#   training). The paper finds $\tilde\mu$ and $\epsilon$ prediction about equal on the bound with a fixed variance; here
#   the $\tilde\mu$-network converges to a bound of 0.92 bits/dim against $-0.37$, its samples within range are at 0.039
#   against the floor's 0.024, and 2 of its 2,000 samples (0.1%) left the frame by far, which is what
#   makes its Wasserstein distance over all samples explode. A $\tilde\mu$-network must output $x_t / \sqrt{\alpha_t}$ plus a
#   small correction, nearly exactly at small $t$, where the bound divides its error by $2\sigma_t^2 = 2\beta_t$; this
#   MLP does not get there, and the paper's U-Net on CIFAR-10 apparently does. $L_\text{simple}$'s large
#   sample-quality advantage (FID 3.17 against 13.51) does not appear on a 2-D toy either: all three $\epsilon$ rows
#   sample at the floor. The unweighted $\tilde\mu$ loss, a dash in the paper, trains stably here and gives the worst
#   converged model of the table (bound 1.20, samples 2.6 times the floor): the small $t$ it neglects decide fine
#   detail; the Fashion-MNIST rows below show the failure more starkly. No run diverged.
# - **The variance alone.** Scoring the same $L_\text{simple}$ networks with $\sigma_t^2 = \tilde\beta_t$ instead of
#   $\beta_t$ leaves the samples about as good (1.14 against 1.07 times the floor) and makes the bound much worse (1.03
#   against $-0.32$): the KL terms divide the network's mean error by the smaller variance, while the sampler barely
#   notices.
# - **Spikes.** The most loss spikes belong to $\epsilon$ prediction trained on the bound, with a learned variance and
#   with a fixed one: they come from the per-batch estimate of the bound itself, whose terms near $t = 1$ are large
#   and are drawn only a few times per batch, not from instability. Gradient norms, the bound during training and
#   samples out of range are the better gauges here.
#
# Small scale is the caveat for all of it: one data set of two dimensions, an MLP instead of a U-Net,
# 60,000 steps instead of 800,000, and one seed.

# %% [markdown]
# ### The command works: a live rerun of one row
#
# Rerunning the whole table takes far longer than this chapter's budget (the minutes are printed above).
# Instead we run the same command, `ddpm-ablations` called from Python, for the paper's recipe ($L_\text{simple}$,
# the stored seed) with the stored settings, stopped after the first 500 steps (`--stop-at 500`: the learning rate
# follows the stored run's decay). The `Trainer` draws every step's
# data, $t$ and $\epsilon$ from generators seeded by the run's seed, so the first 500 steps of the stored run
# must come out again: its loss, window by window. On the machine that made the table they agree to the last
# digit; on another CPU or build of PyTorch, floating-point sums may round differently and they agree roughly.
# (After 500 steps the EMA weights, decay 0.999, are still 0.999^500, about 61%, the initial ones: hence the live
# run's poor samples.)

# %%
live_steps = 500
live_path = Path(tempfile.mkdtemp()) / "live.json"
argv = ["--rows", "eps-simple-fixed", "--seeds", seed0, "--steps", str(table["steps"]), "--stop-at", str(live_steps),
        "--lr", f"{tc['lr']:g}", "--lr-decay", tc["lr_decay"], "--ema-decay", f"{tc['ema_decay']:g}",
        "--curve-every", "0", "--bpd-n", "500", "--sample-n", "500", "--out", str(live_path)]
with contextlib.redirect_stdout(io.StringIO()):  # its progress line carries a wall time
    rc = ddpm_ablations(argv)
live = json.loads(live_path.read_text())["rows"][0]["runs"][0]
stored = rows["eps-simple-fixed"]["runs"][0]
n_win = len(live["curve"]["loss_mean"])
d_loss = max(abs(a - b) for a, b in zip(live["curve"]["loss_mean"], stored["curve"]["loss_mean"][:n_win]))
print(f"ddpm-ablations {' '.join(argv[:-2])} --out ...  ->  exit code {rc}")
print(f"loss, mean of each of the first {n_win} windows of 50 steps: max |live - stored| {below(d_loss, 1e-4)}")
print(f"after {live_steps} steps (live): bound {live['bpd']:.1f} bits/dim, W1 / floor {live['w1_ratio']:.0f}; "
      f"the stored run after {table['steps']:,} steps: bound {stored['bpd']:.2f}, W1 / floor {stored['w1_ratio']:.2f}")

# %% [markdown]
# ### Small images: three rows on Fashion-MNIST
#
# The same command trains the rows with the library's Fashion-MNIST U-Net on a GPU (a learned variance
# doubles the U-Net's output channels, `UNet.fashion_mnist(..., learn_sigma=True)`), scores the bound in
# bits/dim of 8-bit pixels with the discretized decoder, and replaces the sliced Wasserstein distance by
# the Fréchet classifier distance (FCD: features of the course's small Fashion-MNIST classifier, *not*
# Inception FID). The stored table has three of the seven rows; it says what was measured, at what scale, and
# the one command that completes it:

# %%
fm = ablations.load_table("fashion_mnist")  # checked against its sha256 in data/registry.json
print(f"{'row':<46s} {'paper IS':>11s} {'FID':>6s} | {'bound, bits/dim':>15s} {'FCD':>6s} {'clipped':>8s}")
for r in fm["rows"]:
    sm = r["summary"]
    if sm is None:
        print(f"{r['label']:<46.46s} {r['paper']['IS'] or '':>11s} {r['paper']['FID'] or '':>6s} | (not measured)")
        continue
    print(f"{r['label']:<46.46s} {r['paper']['IS'] or '':>11s} {r['paper']['FID'] or '':>6s} | "
          f"{sm['bpd_mean']:>15.2f} {sm['score_mean']:>6.1f} {sm['clipped_frac_mean']:>8.1%}")
print(f"\n{fm['not_measured']['why']}")
terms = {r["id"]: r["runs"][0]["bpd_terms"] for r in fm["rows"] if r["summary"]}
for rid in ("mean-mse-fixed", "eps-simple-fixed"):
    print(f"{rid:<16s} the bound's parts (bits/dim): sum of L_t-1 {terms[rid]['L_t_minus_1']:6.2f}, "
          f"L_0 {terms[rid]['L_0']:.2f}")

# %% [markdown]
# FCD needs a scale too: the distance of 1,000 real training images to the test set (what a perfect sampler of
# 1,000 images would score) and of 1,000 images of clipped Gaussian noise.

# %%
train_images, _ = dl.fashion_mnist("train", download=False)
fcd_floor = fcd(train_images[:1000])
fcd_noise = fcd(torch.randn(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)).clamp(-1, 1))
print(f"FCD of 1,000 real training images {fcd_floor:.1f}; of 1,000 noise images {fcd_noise:.0f}")
s_img = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # the images' schedule
print(f"images' schedule: the unweighted mu~ loss is the bound's weight times 2 sigma_t^2 = 2 beta_t: "
      f"{2 * s_img.betas[1]:.0e} at t = 1, {2 * s_img.betas[-1]:.2f} at t = T")

# %% [markdown]
# **The unweighted $\tilde\mu$ loss on images: the paper's dash, reproduced.** This is the row the paper could
# not train to good samples, and on Fashion-MNIST it fails plainly: its bound is 29.0 bits/dim against 4.0 for
# $L_\text{simple}$, nearly all of the difference in the KL terms (26.7 against 2.4 bits/dim), and its FCD is 244
# against 45: much nearer to noise (306) than to the $L_\text{simple}$ network, with real images at 1.6. The weights
# of Section 1.1 say why. This loss is the bound multiplied by $2\sigma_t^2 = 2\beta_t$, so compared with the bound it
# counts an error of the mean at $t = 1$ two hundred times less than one at $t = T$ (the line above); the network
# spends its capacity on the noisy end and learns the last steps' means poorly. Those are the steps that decide a
# sample's fine detail, which is what the classifier's features see, and they are the steps where the bound
# divides the mean's error by the smallest variance, which is where its 26.7 bits/dim come from. The swiss roll,
# with little fine detail to lose, hides this. The table stores 16 samples of the $L_\text{simple}$ network only,
# none of this row. Its samples need the row retrained, on a GPU (about 4 minutes on an H200):
#
#     ddpm-ablations --dataset fashion_mnist --preset tiny --steps 3000 --device cuda --data-root DIR \
#         --bpd-n 500 --sample-n 1000 --curve-every 1000 --curve-n 64 --rows mean-mse-fixed --out PART.json
#
# The clipped share is 9% for both image rows, so under Adam it says nothing about either (see above).
#
# ### Play: every run of the table
#
# Pick a row (and a seed, where the table has several): its samples against the data, its bound during
# training, and its gradient norms. Everything comes from the stored JSON, and every run's picture is drawn
# when the widget is made, so a choice in the widget is a lookup.

# %%
from ddpm_lib.course.widgets import ablation_explorer  # noqa: E402  (chapter 11's explorer: a lookup per choice)

explorer = ablation_explorer(table, ref)

# %% tags=["nbval-ignore-output"]
explorer  # the widget (its picture and readout change with the controls)

# %% [markdown]
# Without a widget front end, three rows at once: their samples, and their bounds and gradient norms side by side:

# %%
explorer.static_figure()
plt.show()

# %% [markdown]
# ## 4. Exercises
#
# **Exercise 11.1 (the weight of the unweighted mean loss).** Write `mu_mse_weight(t, schedule)` that
# returns, for a LongTensor `t` of shape (B,), the factor $w_t$ with
# $\|\tilde\mu_t - \mu_\theta\|^2 = w_t\,\|\epsilon - \epsilon_\theta\|^2$ when $\mu_\theta$ comes from
# $\epsilon_\theta$ by Eq. 11. Use the schedule's tables (`schedule.betas`, `.alphas`, `.alpha_bars`, each
# of length $T + 1$ and indexed by $t$).

# %% tags=["solution"]
def mu_mse_weight(t, schedule):
    """w_t = beta_t^2 / (alpha_t (1 - abar_t)), shape (B,)."""
    # BEGIN SOLUTION
    return schedule.betas[t] ** 2 / (schedule.alphas[t] * (1 - schedule.alpha_bars[t]))
    # END SOLUTION


# %%
checks.check("mu_mse_weight", mu_mse_weight)


# %% [markdown]
# A common slip, for comparison: the bound's weight $\lambda_t$ instead of $w_t$.

# %%
checks.check("mu_mse_weight", lambda t, sch: sch.betas[t] / (2 * sch.alphas[t] * (1 - sch.alpha_bars[t])))


# %% [markdown]
# **Exercise 11.2 (the best learned variance).** Write `optimal_variance(mean_q, var_q, mean_theta)`:
# elementwise, the variance $v$ that minimizes $D_\text{KL}(\mathcal N(\text{mean\_q}, \text{var\_q})\,\|\,
# \mathcal N(\text{mean\_theta}, v))$, the term a learned diagonal $\Sigma_\theta$ contributes to the bound.
# The checker also reports the KL your $v$ gives, computed by `dl.normal_kl`.

# %% tags=["solution"]
def optimal_variance(mean_q, var_q, mean_theta):
    """argmin_v KL(N(mean_q, var_q) || N(mean_theta, v)), elementwise."""
    # BEGIN SOLUTION
    return var_q + (mean_q - mean_theta) ** 2
    # END SOLUTION


# %%
checks.check("optimal_variance", optimal_variance)

# %% [markdown]
# **Exercise 11.3 (derive: how large is the best possible $\epsilon$-loss at a step?).** A weight on
# $\|\epsilon - \epsilon_\theta\|^2$ is easy to read as "how much this $t$ matters" or "how hard this $t$ is". Find out what
# the size of the loss itself says. Take data $x_0 \sim \mathcal N(0, s^2 I)$, so that $x_t = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\epsilon$ and
# $\epsilon$ are jointly Gaussian. Derive the smallest $\mathbb E\|\epsilon - \epsilon_\theta(x_t)\|^2$ per dimension that any network can
# reach at a step with $\bar\alpha$ (hint: the best predictor is $\mathbb E[\epsilon \mid x_t]$, a linear function of $x_t$ here), and
# write it as `min_eps_loss(alpha_bar, s2)`. Then decide: at which end of the chain is this irreducible loss
# largest, and is denoising hard there?

# %% tags=["solution"]
def min_eps_loss(alpha_bar, s2):
    """The smallest E||eps - eps_theta(x_t)||^2 per dimension for data N(0, s2 I), elementwise in alpha_bar."""
    # BEGIN SOLUTION
    return alpha_bar * s2 / (alpha_bar * s2 + 1 - alpha_bar)
    # END SOLUTION


# %%
checks.check("min_eps_loss", min_eps_loss)

# %% [markdown]
# The loss is largest where $\bar\alpha \to 1$, at small $t$: there $x_t$ is almost $x_0$, so denoising it is *easy* (the
# image is already there), but the little noise in it is almost impossible to pick out from the data, and the best
# $\epsilon$-prediction leaves nearly all of $\epsilon$'s variance. At large $t$, $x_t$ is almost pure noise: $\epsilon$ is easy to
# read off while $x_0$ is lost. So the size of the $\epsilon$-loss at a step measures how well $\epsilon$ can be told apart from the
# data there, not how hard the step is for the sampler; and a weight over $t$ says how much each step's error
# counts in the objective, not how difficult that step is. (Chapter 09 plots the trained U-Net's loss against $t$:
# largest at small $t$, for this reason.)
#
# **Exercise 11.4 (open, no checker).** Rerun one row with different settings, e.g. without gradient
# clipping, `ddpm-ablations --rows eps-vlb-learned,eps-simple-fixed --grad-clip 0 --steps 2000
# --out /tmp/noclip.json`, or with a larger learning rate (`--lr`), and compare the instability counts and the
# gradient norms' max/median with the stored table. Which rows are sensitive to clipping, and why does Section 1.2
# predict it?
#
# ## 5. Summary
#
# - With a fixed variance, all of Table 2's objectives are one regression of $\epsilon$ weighted over $t$:
#   the bound by $\lambda_t = \beta_t^2 / (2\sigma_t^2\alpha_t(1-\bar\alpha_t))$ (Eq. 12), the unweighted
#   mean loss by $w_t = \beta_t^2/(\alpha_t(1-\bar\alpha_t))$, and $L_\text{simple}$ by 1 (Eq. 14). The
#   unweighted mean loss neglects the small $t$ that decide a sample's detail; $L_\text{simple}$ gives the
#   large $t$ (the noisy end of the chain) more weight, relative to the small $t$, than the bound does. A weight
#   says how much a step's error counts, not how hard the step is: the $\epsilon$-loss of even the best network is
#   largest at small $t$, where denoising is easiest (Exercise 11.3).
# - Which quantity the network outputs does not change the bound's value for the same $\mu_\theta$ (checked
#   above to rounding), but it changes what is easy to learn, and the samples of the resulting chain.
# - A learned diagonal variance should equal $\tilde\beta_t + e^2$ for a mean error $e$; it divides the
#   mean's gradient, couples the two, and makes the bound's gradients large and uneven.
# - Rank converged models only: trained until their bounds stopped moving, the rows order differently than after
#   a sixth of the training (a learned variance then looked worse; converged, it gives the best bound). At this
#   scale $\epsilon$ prediction beats $\tilde\mu$ prediction on every measure, and all three $\epsilon$ rows sample at the floor.
# - The table is one command, `ddpm-ablations`, stored with its settings, seeds and the library version,
#   and registered with its sha256; a short rerun (`--stop-at`) reproduces the start of a stored run.
#
# **Next:** chapter 12 leaves training behind and uses a trained model for something new: multiplying
# each intermediate distribution by a function $r(x^t)$ to condition the reverse process (inpainting),
# as in Sohl-Dickstein et al. 2015, Section 2.5.
