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
# or on an unweighted squared error; a fixed isotropic variance or a learned diagonal one. The study
# notes sum it up in two lines: predicting $\mu$ instead of $\epsilon$ only works with the original,
# weighted bound, and a learned (diagonal) variance makes training unstable. This chapter derives why
# the six rows differ, runs them on the swiss roll with the same network, data, seeds and steps,
# and puts our numbers beside the paper's.
#
# **Learning goals.** After this chapter you can
# - write each of Table 2's objectives as the same regression on $\epsilon$ with a different weight
#   over $t$ (DDPM Eqs. 8, 10-12, 14), and say which $t$ each one neglects;
# - say what a learned diagonal $\Sigma_\theta$ adds to the bound, find the best variance for a given
#   mean error, and explain why it couples the two and can destabilize training;
# - read an ablation table honestly: the bound in bits/dim, a sample-quality score, the spread over
#   seeds, and instability *measured* (divergence, gradient spikes, samples out of range);
# - regenerate the table with one command, and check that a rerun reproduces it.
#
# **CPU time:** about 25 s on an uncontended 2-core CPU, most of it one short training run that
# reproduces the start of a stored one (budget: 55 s). The full table takes 10-15 minutes of one
# core and is stored; its command is below.

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
# and `configs/swiss_roll.toml`:
# the same MLP (3 hidden layers of 128; its output doubles to $2D$ for a learned variance), the same
# linear schedule ($T = 200$, $\beta$ from $10^{-4}$ to $0.1$), Adam at $2\cdot10^{-3}$, batch 256,
# gradient clipping at 1 (as DDPM), EMA 0.995, the same seeds and the same number of steps; only
# `prediction`, `loss` and `variance` change. A seventh row scores the $L_\text{simple}$ networks with
# $\sigma_t^2 = \tilde\beta_t$ instead of $\beta_t$ (the variance never enters $L_\text{simple}$, so no new
# training is needed). Each trained network (EMA weights) is scored by
#
# - **the bound** $L_T + \sum_t L_{t-1} + L_0$ in bits per dimension on 2,000 held-out points
#   (`evaluate.bits_per_dim_on`). The swiss roll is continuous, so this bounds $-\log_2$ of a *density*
#   divided by 2 dimensions: it can be negative, and it is not comparable with the bits/dim of images;
# - **sample quality**: the sliced Wasserstein-1 distance (`dl.sliced_wasserstein`) and the RBF
#   $\text{MMD}^2$ (`dl.mmd_rbf`) between 2,000 samples (Algorithm 2, all $T$ steps) and 2,000 held-out
#   points, lower is better; a few exploded samples dominate a Wasserstein distance, so the same score on
#   the samples within range, and the share of samples out of range ($|x_i| > 3$; the data lie within
#   $[-1.2, 1.5]$), are reported too;
# - **instability, measured**: whether the loss became non-finite (the `Trainer` stops; the step is
#   recorded), loss and gradient-norm spikes (a step above 10 times the median of the 100 steps before),
#   the share of steps whose gradient norm exceeded the clipping threshold, the gradient norms, and the
#   bound during training.
#
# The table is stored in `data/ablations/swiss_roll_table2.json` (and `.md`), registered with its sha256 in
# `data/registry.json`, so `ablations.load_table` refuses a copy edited by hand; the JSON schema is in the
# docstring of `ddpm_lib/ablations.py`. It is remade by `ddpm-ablations` (10-15 minutes of one CPU core;
# `python scripts/ablations.py`, the name the stored file records, is the same command;
# `--workers N` runs N of the 18 trainings at once, and since every run is seeded and single-threaded the
# numbers do not depend on N). The command that made the stored file:

# %%
table = ablations.load_table("swiss_roll")  # checked against its sha256 in data/registry.json
rows = {r["id"]: r for r in table["rows"]}
print(f"command:  {table['command']}")
print(f"made with ddpm_lib {table['library_version']}, torch {table['torch']}, on {table['device']} "
      f"({table['threads']} thread); seeds {table['seeds']}, {table['steps']} steps per run; complete: {table['complete']}")
tc = table["train_config"]
print(f"shared settings: {tc['model']} {tc['model_args'] or '(hidden 128, 3 layers)'}, T = {tc['T']}, "
      f"betas {tc['beta_start']:g}..{tc['beta_end']:g}, lr {tc['lr']:g}, batch {tc['batch_size']}, "
      f"grad_clip {tc['grad_clip']:g}, ema {tc['ema_decay']:g}")


# %% [markdown]
# ### The table, beside the paper's
#
# The paper's Table 2 reports Inception Score (IS, higher is better) and FID (lower is better) on
# CIFAR-10; a dash marks rows that "were unstable to train and generated poor samples with out-of-range
# scores". Its bits/dim appear only in Table 1, for two of the rows: $\le 3.70$ for $\epsilon$
# prediction with $L$ and fixed isotropic $\Sigma$, $\le 3.75$ for $L_\text{simple}$. Our columns:
# the bound (mean ± standard deviation over seeds), the sliced W1 distance of all samples and of those
# in range, the share of samples out of range, and the runs that diverged.

# %%
def pm(m, sd, d=3):
    if m is None:
        return "–"
    if abs(m) >= 100:
        return f"{m:.2g}" + (f" ± {sd:.1g}" if sd else "")
    return f"{m:.{d}f}" + (f" ± {sd:.{d}f}" if sd else "")


hdr = (f"{'row':<46s} {'paper IS':>11s} {'FID':>6s} | {'bound, bits/dim':>15s} {'sliced W1':>16s} "
       f"{'W1 in range':>14s} {'out of range':>12s} {'diverged':>8s}")
print(hdr)
print("-" * len(hdr))
for rid in ablations.ROWS:
    r = rows[rid]
    sm = r["summary"]
    print(f"{r['label']:<46.46s} {r['paper']['IS'] or '':>11s} {r['paper']['FID'] or '':>6s} | "
          f"{pm(sm['bpd_mean'], sm['bpd_std'], 2):>15s} {pm(sm['score_mean'], sm['score_std']):>16s} "
          f"{pm(sm['score_in_range_mean'], sm['score_in_range_std']):>14s} "
          f"{sm['out_of_range_mean']:>12.2%} {sm['n_diverged']:>4d}/{sm['n_runs']}")
ref = dl.swiss_roll(2000, generator=torch.Generator().manual_seed(1002))
other = dl.swiss_roll(2000, generator=torch.Generator().manual_seed(2002))
print(f"\nfor scale: sliced W1 between two independent sets of 2,000 data points "
      f"{dl.sliced_wasserstein(other, ref, generator=torch.Generator().manual_seed(7)):.3f}; "
      f"between N(0, I) noise and the data "
      f"{dl.sliced_wasserstein(torch.randn(2000, 2, generator=torch.Generator().manual_seed(3)), ref, generator=torch.Generator().manual_seed(7)):.3f}")

# %% [markdown]
# ### Pictures: samples, scores per seed
#
# Samples of the first seed of every row (grey: held-out data; samples outside the frame are counted
# in the title), and each seed's bound and sample score as a dot. At this budget (2,000 steps of a small
# MLP, as `configs/swiss_roll.toml` trains it) every row's samples are still a blurred spiral; the
# differences between rows are consistent over seeds, but small next to the distance that remains to the
# data (compare the "for scale" line above).

# %%
ids = list(ablations.ROWS)
seed0 = str(table["seeds"][0])
fig, axes = plt.subplots(2, 4, figsize=(12, 6.2), sharex=True, sharey=True)
for ax, rid in zip(axes.flat, ids + ["data"]):
    ax.scatter(ref[:400, 0], ref[:400, 1], s=2, c="0.75")
    if rid == "data":
        ax.set_title("held-out data")
    else:
        pts = np.asarray(table["samples"][rid][seed0], dtype=float)
        out = (~np.isfinite(pts).all(1)) | (np.abs(pts) > 1.8).any(1)
        ax.scatter(pts[~out, 0], pts[~out, 1], s=2, c="C3")
        ax.set_title(f"{rows[rid]['label'][:44]}\n({out.sum()} of {len(pts)} outside the frame)")
    ax.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), aspect="equal")
for ax in axes[-1]:
    ax.set_xlabel("$x_1$")
for ax in axes[:, 0]:
    ax.set_ylabel("$x_2$")
fig.suptitle(f"samples after {table['steps']} steps (seed {seed0}, all T = {tc['T']} ancestral steps)", fontsize=10)
fig.tight_layout()
plt.show()

fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4))
for i, rid in enumerate(ids):
    runs = rows[rid]["runs"]
    b = [r["bpd"] for r in runs if r["bpd"] is not None]
    sw = [r["score_in_range"] for r in runs if r["score_in_range"] is not None]
    a1.scatter([i] * len(b), b, c="C0", s=18)
    a2.scatter([i] * len(sw), sw, c="C1", s=18)
for a, lab in ((a1, "bound (bits/dim of a density)"), (a2, "sliced W1, samples in range")):
    a.set_xticks(range(len(ids)), ids, rotation=35, ha="right")
    a.set_ylabel(lab)
a2.set_yscale("log")
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
trained = [rid for rid in ids if rows[rid]["trained_as"] == rid]
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
       yscale="log" if min(all_b) > 0 else "symlog")
a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
fig.tight_layout()
plt.show()

print(f"{'row':<18s} {'diverged':>8s} {'loss spikes':>11s} {'grad spikes':>11s} {'clipped':>8s} "
      f"{'grad norm median':>16s} {'max/median':>10s} {'worst rise of the bound':>24s}")
for rid in trained:
    runs = rows[rid]["runs"]
    sm = rows[rid]["summary"]
    med = np.median([r["grad_norm"]["median"] for r in runs])
    ratio = max(r["grad_norm"]["max"] / r["grad_norm"]["median"] for r in runs)
    rises = []
    for r in runs:
        vals = [p[1] for p in r["bpd_curve"] if p[1] is not None]
        rises += [b - a for a, b in zip(vals[:-1], vals[1:])]
    print(f"{rid:<18s} {sm['n_diverged']:>4d}/{sm['n_runs']:<3d} {sm['loss_spikes_mean']:>11.1f} "
          f"{sm['grad_spikes_mean']:>11.1f} {sm['clipped_frac_mean']:>8.1%} {med:>16.3g} {ratio:>10.1f} "
          f"{max(rises + [0.0]):>+24.3f}")

# %% [markdown]
# ### What the table says, and what it does not
#
# The comparisons the paper makes, one line each, from the stored table (means over seeds; the spread
# is in the table above):

# %%
def mean_of(rid, key):
    return rows[rid]["summary"][f"{key}_mean"]


def compare(a, b, what):
    ka, kb = (mean_of(a, "bpd"), mean_of(a, "score_in_range")), (mean_of(b, "bpd"), mean_of(b, "score_in_range"))
    print(f"{what:<52s} bound {ka[0]:7.3f} vs {kb[0]:7.3f} bits/dim | W1 in range {ka[1]:.4f} vs {kb[1]:.4f} | "
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
# bound with fixed variances, and much better with $L_\text{simple}$):
#
# - **What carries over.** Trained on the bound, $\epsilon$ prediction beats $\tilde\mu$ prediction on both
#   scores, and the $\tilde\mu$-network's chain sends a few samples far out of range, which is what makes
#   its Wasserstein distance over all samples explode (the samples figure shows the rest are reasonable).
#   $L_\text{simple}$ gives a worse bound than training on the bound itself, the same direction as the
#   paper's Table 1 (3.75 against 3.70 bits/dim). A learned diagonal $\Sigma_\theta$ gives a worse bound
#   than a fixed one with either prediction, and worse samples with $\epsilon$ prediction. With $\epsilon$
#   prediction, learning the variance makes the gradient norms larger and far more heavy-tailed than with
#   the fixed variance (compare the two rows' median and max/median), as Section 1.2 predicts; with
#   $\tilde\mu$ prediction both bound-trained rows have gradients thousands of times $L_\text{simple}$'s.
#   Every step of every bound-trained run was clipped.
# - **What does not, at this scale.** No run diverged: with gradient clipping at 1, a small MLP and 2,000
#   steps, the learned variance trains, just worse. $L_\text{simple}$'s large sample-quality advantage
#   (FID 3.17 against 13.51) does not appear on a 2-D toy: here the bound-trained $\epsilon$-network also
#   has the better samples. And the unweighted $\tilde\mu$ loss, a dash in the paper, trains stably here,
#   with scores close to the bound-trained $\tilde\mu$-network; it is the small-$t$ steps it neglects (2%
#   of its weight on the last tenth of the chain, above), and a 2-D swiss roll has little fine detail to
#   lose there. The Fashion-MNIST table below is the place to look for it on images.
# - **The variance alone.** Scoring the same $L_\text{simple}$ networks with $\sigma_t^2 = \tilde\beta_t$ instead
#   of $\beta_t$ leaves the samples as good and makes the bound much worse: the KL terms divide the
#   network's mean error by the smaller variance, while the sampler barely notices.
# - **Spikes.** The most loss spikes belong to $\epsilon$ prediction trained on the bound with a fixed
#   variance, the best row: they come from the per-batch estimate of the bound itself, whose terms near
#   $t = 1$ are large and are drawn only a few times per batch, not from instability. Gradient norms and
#   samples out of range are the better gauges here.
#
# Small scale is the caveat for all of it: one data set of two dimensions, an MLP instead of a U-Net,
# 2,000 steps instead of 800,000, and three seeds.

# %% [markdown]
# ### The command works: a live rerun of one row
#
# Rerunning the whole table takes 10-15 minutes of a core, more than this chapter's budget. Instead we
# run the same command, `ddpm-ablations` called from Python, for the cheapest row (the paper's recipe,
# $L_\text{simple}$, first seed) with fewer steps. The `Trainer` draws every step's data, $t$ and
# $\epsilon$ from generators seeded by the run's seed, so the first 500 steps of the stored 2,000-step
# run must come out again: the loss curve and the bound on the same 500 held-out points at steps 250 and
# 500. On the machine that made the table they agree to the last digit; on another CPU or build of
# PyTorch, floating-point sums may round differently and they agree roughly.

# %%
live_steps = 500
live_path = Path(tempfile.mkdtemp()) / "live.json"
argv = ["--rows", "eps-simple-fixed", "--seeds", seed0, "--steps", str(live_steps),
        "--bpd-n", "500", "--sample-n", "500", "--out", str(live_path)]
with contextlib.redirect_stdout(io.StringIO()):  # its progress line carries a wall time
    rc = ddpm_ablations(argv)
live = json.loads(live_path.read_text())["rows"][0]["runs"][0]
stored = rows["eps-simple-fixed"]["runs"][0]
n_win = len(live["curve"]["loss_mean"])
d_loss = max(abs(a - b) for a, b in zip(live["curve"]["loss_mean"], stored["curve"]["loss_mean"][:n_win]))
print(f"ddpm-ablations {' '.join(argv[:-2])} --out ...  ->  exit code {rc}")
print(f"loss, mean of each of the first {n_win} windows of 50 steps: max |live - stored| {below(d_loss, 1e-4)}")
for step, b_live in live["bpd_curve"]:
    b_stored = dict((p[0], p[1]) for p in stored["bpd_curve"]).get(step)
    print(f"bound on 500 held-out points at step {step}: stored {b_stored:.4f}, live {b_live:.4f} bits/dim")
print(f"after {live_steps} steps (live): bound {live['bpd']:.3f} bits/dim, sliced W1 {live['score']:.3f}; "
      f"the stored row after {table['steps']} steps: bound {stored['bpd']:.3f}, sliced W1 {stored['score']:.3f}")

# %% [markdown]
# ### Small images: the same table on Fashion-MNIST
#
# The same command trains the rows with the library's Fashion-MNIST U-Net on a GPU (a learned variance
# doubles the U-Net's output channels, `UNet.fashion_mnist(..., learn_sigma=True)`), scores the bound in
# bits/dim of 8-bit pixels with the discretized decoder, and replaces the sliced Wasserstein distance by
# the Fréchet classifier distance (FCD: features of the course's small Fashion-MNIST classifier, *not*
# Inception FID). When that table has been made, it is shown here:
#
#     ddpm-ablations --dataset fashion_mnist --preset tiny --steps 3000 --device cuda \
#         --out data/ablations/fashion_mnist_table2.json

# %%
if ablations.default_out("fashion_mnist").is_file():
    fm = ablations.load_table("fashion_mnist")
    print(f"command: {fm['command']}\n{fm['device']}, seeds {fm['seeds']}, {fm['steps']} steps per run, "
          f"complete: {fm['complete']}")
    print(f"{'row':<46s} {'paper IS':>11s} {'FID':>6s} | {'bound, bits/dim':>15s} {'FCD':>10s} {'diverged':>8s}")
    for r in fm["rows"]:
        sm = r["summary"]
        if sm is None:
            print(f"{r['label']:<46.46s}  (not run)")
            continue
        print(f"{r['label']:<46.46s} {r['paper']['IS'] or '':>11s} {r['paper']['FID'] or '':>6s} | "
              f"{pm(sm['bpd_mean'], sm['bpd_std']):>15s} {pm(sm['score_mean'], sm['score_std'], 1):>10s} "
              f"{sm['n_diverged']:>4d}/{sm['n_runs']}")
    fm_ids = [r["id"] for r in fm["rows"] if r["id"] in fm["samples"]]
    if fm_ids:
        fig, axes = plt.subplots(1, len(fm_ids), figsize=(2.1 * len(fm_ids), 2.5), squeeze=False)
        for ax, rid in zip(axes[0], fm_ids):
            imgs = torch.tensor(next(iter(fm["samples"][rid].values())), dtype=torch.uint8).reshape(-1, 28, 28)[:16]
            grid = imgs.reshape(4, 4, 28, 28).permute(0, 2, 1, 3).reshape(112, 112)
            ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
            ax.set_title(rid)
            ax.axis("off")
        fig.tight_layout()
        plt.show()
    fm_rows = {r["id"]: r["summary"] for r in fm["rows"] if r["summary"]}
    if {"mean-mse-fixed", "eps-simple-fixed"} <= set(fm_rows):
        a, b = fm_rows["mean-mse-fixed"], fm_rows["eps-simple-fixed"]
        print(f"unweighted mu~ MSE vs L_simple on images: bound {a['bpd_mean']:.2f} vs {b['bpd_mean']:.2f} bits/dim, "
              f"FCD {a['score_mean']:.1f} vs {b['score_mean']:.1f}")
    if "not_measured" in fm:  # rows the GPU run could not measure, and why (written by whoever ran it)
        print(f"not measured: {', '.join(fm['not_measured']['rows'])}: {fm['not_measured']['why']}")
else:
    print("data/ablations/fashion_mnist_table2.json has not been made yet (it needs a GPU); the command is above.")

# %% [markdown]
# ### Play: every run of the table
#
# Pick a row and a seed: its samples against the data, its bound during training, and its gradient
# norms. Everything comes from the stored JSON, and every run's picture is drawn when the widget is made,
# so a choice in the widget is a lookup.

# %%
from ddpm_lib.course.widgets import Explorer  # noqa: E402
import ipywidgets as W  # noqa: E402

_fig, (_ax_s, _ax_b, _ax_g) = plt.subplots(1, 3, figsize=(9.8, 3.6))
plt.close(_fig)  # drawn into PNGs, not shown by the notebook


def draw_run(row, seed):
    r = rows[row]
    run = next(x for x in r["runs"] if x["seed"] == seed)
    for a in (_ax_s, _ax_b, _ax_g):
        a.clear()
    _ax_s.scatter(ref[:400, 0], ref[:400, 1], s=2, c="0.75")
    pts = np.asarray(table["samples"][row][str(seed)], dtype=float)
    _ax_s.scatter(pts[:, 0], pts[:, 1], s=2, c="C3")
    _ax_s.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), aspect="equal", xlabel="$x_1$", ylabel="$x_2$",
              title="samples (red), data (grey)")
    bc = np.array([[p[0], np.nan if p[1] is None else p[1]] for p in run["bpd_curve"]])
    _ax_b.plot(bc[:, 0], bc[:, 1], marker=".")
    _ax_b.set(xlabel="step", ylabel="bits/dim", title="bound (500 held-out points)",
              yscale="log" if np.nanmin(bc[:, 1]) > 0 else "symlog")  # symlog only if the bound goes below 0
    c = run["curve"]
    _ax_g.semilogy(c["step"], [np.nan if v is None else v for v in c["grad_norm_max"]], label="max")
    _ax_g.semilogy(c["step"], [np.nan if v is None else v for v in c["grad_norm_median"]], label="median")
    _ax_g.axhline(tc["grad_clip"], color="k", lw=0.6, ls=":")
    _ax_g.set(xlabel="step", ylabel="gradient norm", title="per 50 steps; dotted: the clip")
    _ax_g.legend(loc="upper right")
    _fig.suptitle(f"{r['label']}, seed {seed}", fontsize=11)
    _fig.subplots_adjust(left=0.07, right=0.99, bottom=0.15, top=0.8, wspace=0.45)  # fixed: tight_layout per frame is slow
    buf = io.BytesIO()
    _fig.savefig(buf, format="png", dpi=100)
    html = (f"bound {pm(run['bpd'], 0)} bits/dim, sliced W1 {pm(run['score'], 0)} "
            f"(in range {pm(run['score_in_range'], 0)}), out of range {run['out_of_range'] or 0:.1%}, "
            f"diverged at step {run['diverged_at']}" if run["diverged_at"] else
            f"bound {pm(run['bpd'], 0)} bits/dim, sliced W1 {pm(run['score'], 0)} "
            f"(in range {pm(run['score_in_range'], 0)}), out of range {run['out_of_range']:.1%}")
    return buf.getvalue(), html


def still_runs(settings, titles=None):
    """The still: the samples of each setting's run (one panel each, at most 3), then their bounds and their
    largest gradient norms during training, one panel each with a curve per run (5 panels)."""
    n = len(settings)
    fig, axes = plt.subplot_mosaic([[f"s{i}" for i in range(n) for _ in (0, 1)], ["b"] * n + ["g"] * n],
                                   figsize=(9.8, 6.6), layout="constrained")
    lowest = np.inf
    for i, st in enumerate(settings):
        run = next(x for x in rows[st["row"]]["runs"] if x["seed"] == st["seed"])
        ax = axes[f"s{i}"]
        ax.scatter(ref[:400, 0], ref[:400, 1], s=2, c="0.75")
        pts = np.asarray(table["samples"][st["row"]][str(st["seed"])], dtype=float)
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c=f"C{i}")
        ax.set(xlim=(-1.8, 1.8), ylim=(-1.8, 1.8), aspect="equal", xlabel="$x_1$", ylabel="$x_2$",
               title=f"{st['row']}, seed {st['seed']}")
        bc = np.array([[p[0], np.nan if p[1] is None else p[1]] for p in run["bpd_curve"]])
        axes["b"].plot(bc[:, 0], bc[:, 1], marker=".", c=f"C{i}", label=st["row"])
        lowest = min(lowest, np.nanmin(bc[:, 1]))
        c = run["curve"]
        axes["g"].semilogy(c["step"], [np.nan if v is None else v for v in c["grad_norm_max"]], c=f"C{i}")
    axes["b"].set(xlabel="step", ylabel="bits/dim", yscale="log" if lowest > 0 else "symlog",
                  title="bound (500 held-out points)")
    axes["g"].axhline(tc["grad_clip"], color="k", lw=0.6, ls=":")
    axes["g"].set(xlabel="step", ylabel="largest gradient norm", title="per 50 steps; dotted: the clip")
    fig.legend(*axes["b"].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(f"Table 2 on the swiss roll: samples (data in grey), bound and gradients of {n} runs")
    return fig


explorer = Explorer(draw_run, {"row": W.Dropdown(options=ids, value="eps-simple-fixed", description="row"),
                               "seed": W.Dropdown(options=table["seeds"], value=table["seeds"][0], description="seed")},
                    title="<b>Table 2 on the swiss roll: one run</b>",
                    static_settings=[{"row": "eps-simple-fixed", "seed": table["seeds"][0]},
                                     {"row": "mean-vlb-fixed", "seed": table["seeds"][0]},
                                     {"row": "eps-vlb-learned", "seed": table["seeds"][0]}],
                    still=still_runs)
explorer.name = "ablation_explorer"
for _row in ids:  # draw every (row, seed) now, so that a choice in the widget is a lookup, not a redraw
    for _seed in table["seeds"]:
        explorer.render(row=_row, seed=_seed)

# %% tags=["nbval-ignore-output"]
explorer.box  # the widget (its picture and readout change with the controls)

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
# **Exercise 11.3 (open, no checker).** Rerun one row with different settings, e.g. without gradient
# clipping, `ddpm-ablations --rows eps-vlb-learned,eps-simple-fixed --grad-clip 0
# --out /tmp/noclip.json`, or with a larger learning rate (`--lr`), and compare the instability counts
# with the stored table. Which rows are sensitive to clipping, and why does Section 1.2 predict it?
#
# ## 5. Summary
#
# - With a fixed variance, all of Table 2's objectives are one regression of $\epsilon$ weighted over $t$:
#   the bound by $\lambda_t = \beta_t^2 / (2\sigma_t^2\alpha_t(1-\bar\alpha_t))$ (Eq. 12), the unweighted
#   mean loss by $w_t = \beta_t^2/(\alpha_t(1-\bar\alpha_t))$, and $L_\text{simple}$ by 1 (Eq. 14). The
#   unweighted mean loss neglects the small $t$ that decide a sample's detail; $L_\text{simple}$ gives
#   the hard, noisy $t$ more weight than the bound does.
# - Which quantity the network outputs does not change the bound's value for the same $\mu_\theta$ (checked
#   above to rounding), but it changes what is easy to learn, and the samples of the resulting chain.
# - A learned diagonal variance should equal $\tilde\beta_t + e^2$ for a mean error $e$; it divides the
#   mean's gradient, couples the two, and makes the bound's gradients large and uneven.
# - The table is one command, `ddpm-ablations`, stored with its settings, seeds and the library version,
#   and registered with its sha256; a short rerun reproduces the start of a stored run.
#
# **Next:** chapter 12 leaves training behind and uses a trained model for something new: multiplying
# each intermediate distribution by a function $r(x^t)$ to condition the reverse process (inpainting),
# as in Sohl-Dickstein et al. 2015, Section 2.5.
