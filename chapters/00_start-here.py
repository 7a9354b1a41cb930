# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Start here: how the course works, notation, paper indexing
#
# This course builds denoising diffusion models from first principles, following two papers:
# Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, *Deep Unsupervised Learning using
# Nonequilibrium Thermodynamics*, and Ho, Jain & Abbeel 2020, *Denoising Diffusion Probabilistic
# Models* (DDPM). Every equation is derived, then run with `ddpm_lib` (the small PyTorch library
# beside the chapters), then checked by a number.
#
# **Learning goals.** After this chapter you can
# - find your way through the course: what each chapter teaches, how long it takes to read and to run;
# - run a chapter on a CPU (or a GPU), and know what the stored outputs are;
# - do an exercise and read what `ddpm_lib.course.checks` says about it;
# - translate between the notations of DDPM, Sohl-Dickstein et al. and the `diffusers` library;
# - read the library's *paper indexing*: $t = 1, \dots, T$, tables of length $T + 1$, $\bar\alpha_0 = 1$;
# - look up any term the course uses in the glossary at the end.
#
# **Reading and CPU time:** the course map below gives both for every chapter, this one included; this
# chapter runs in a few seconds on a 2-core CPU, most of them spent importing PyTorch (budget: 20 s).

# %%
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown

import ddpm_lib as dl
from ddpm_lib.course import book, checks, glossary
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data

# %% [markdown]
# ## How every chapter works
#
# Each chapter follows the same spine:
#
# 1. learning goals, and the reading and CPU time it takes;
# 2. one picture and a few sentences of what and why, before any algebra;
# 3. the derivation, in the papers' notation ($x_0$ is data, $t = 1, \dots, T$), using only what earlier
#    chapters defined;
# 4. the same equation as code from `ddpm_lib`, and a numerical check that code and equation agree,
#    printed as a short verdict: an exact integral on a grid, an analytic case, or a *Monte Carlo
#    estimate* (an average over random draws that estimates an expectation; its *standard error*, the
#    typical size of its random error, is $\sigma / \sqrt{n}$ for a mean of $n$ independent draws of
#    standard deviation $\sigma$);
# 5. a picture, and where you would rather play than read, a widget;
# 6. exercises, checked by `ddpm_lib.course.checks`, which name the equation that is wrong; at least one
#    asks you to derive or decide something rather than to type a formula printed above it;
# 7. a summary, and what the next chapter builds on.
#
# ## The course map
#
# The chapters, their order and their CPU budgets live in `book.toml` at the top of the repository;
# `book.list_chapters()` reads them. The reading time is the course's own estimate, computed from each
# chapter's text by `book.chapter_stats` (the command `python -m ddpm_lib.course.book stats` prints the
# details): prose at 150 words a minute, a usual pace for careful reading of technical text, plus one
# minute for each code cell (read it, run it, compare its output), one for each figure and ten for each
# exercise. It is a guess at an average reader, not a measurement; yours may be half or twice as long. The
# CPU time is the chapter's budget: what it may take at most on a 2-core CPU (`book times` shows the
# measured times, which a test holds within the budgets).

# %%
chapters = book.list_chapters()
stats = {c.id: book.chapter_stats(c) for c in chapters}
minutes = {k: 5 * round(v.reading_minutes / 5) for k, v in stats.items()}  # to the nearest 5 minutes
print(f"{'#':>2}  {'track':<9}{'reading':>8}{'CPU':>6}  title")
for c in chapters:
    print(f"{c.number:02d}  {c.track:<9}{minutes[c.id]:>5} min{c.budget_s:>5.0f}s  {c.title}")

manifest = book.load_book()
for track, budget in (("theory", manifest.theory_budget_s), (None, manifest.total_budget_s)):
    sel = [c for c in chapters if track in (None, c.track)]
    hours = sum(minutes[c.id] for c in sel) / 60
    print(f"{'all ' + str(len(sel)) if track is None else track} chapters: about {hours:.1f} h of reading, "
          f"per-chapter CPU budgets adding up to {sum(c.budget_s for c in sel):.0f} s; the measured times must "
          f"total at most {budget} s (book times)")

# %% [markdown]
# ## How to run a chapter
#
# **In JupyterLab.** From the repository, run `jupyter lab chapters/` and open `NN_slug.ipynb`. Each
# chapter is a *pair*: `NN_slug.py` (percent format) is the source that authors edit and review, and
# `NN_slug.ipynb` holds the outputs of a clean execution on a CPU with fixed seeds; jupytext keeps the
# two in step when you save. Use *Kernel → Restart Kernel and Run All Cells*: a chapter must run top
# to bottom, and the numbers you get are the ones printed here.
#
# **On a CPU** (the default path). Every chapter runs within its budget on a 2-core CPU, offline. What
# would take hours on a CPU (training the U-Net fully, sampling many images with 1000 steps) is done
# once on a GPU by the library's commands; the chapter then loads the shipped result (a checkpoint, a
# stored trajectory), says so, and gives the command that remakes it.
#
# **On a GPU.** The same code runs there: `dl.device()` picks `cuda` if there is one, then Apple's `mps`,
# then `cpu`, and nothing in the course calls `.cuda()`. Random numbers are drawn on the CPU with a
# seeded `torch.Generator` and then moved, so a GPU sees the same inputs as a CPU.

# %%
dev = dl.device()  # cuda if there is one, then mps, then cpu: evaluate `dev` to see yours
g = torch.Generator().manual_seed(0)  # seeded, on the CPU: the same numbers on every machine
x = torch.randn(10_000, generator=g).to(dev)
print(f"10,000 draws moved to dl.device(): mean {x.mean().item():+.3f}, std {x.std().item():.3f}")

# %% [markdown]
# **For instructors and authors**, `python -m ddpm_lib.course.book` runs the course tooling:
# `list` (the chapters), `execute NN` (run a chapter in a clean CPU kernel and store its outputs,
# deterministically), `check` (the .py and .ipynb agree and the outputs come from a clean run),
# `times` (measured times against the budgets), `stats` (words, code lines, the longest code cell, figures,
# exercises and the reading time of each chapter), `replay` (the stored outputs against a fresh run, on
# this CPU and as another CPU computes) and `student OUTDIR` (the student edition, below).
# `pytest` runs the library's tests and replays the stored chapters with nbval; `pytest --nbval chapters/`
# replays only the chapters.
#
# **Why a check prints `max |diff| < 1e-12` and not its digits.** Two exact ways of computing one quantity differ
# by round-off, and round-off depends on the computer: another CPU's vector unit, another thread count or another
# torch adds the same numbers in another order, and `3.1e-15` becomes `2.8e-15`. So a residual is printed as a
# verdict against its tolerance (`ddpm_lib.course.replay.below(value, tol)`), an exact equality as `True`, and an
# estimate with the digits its standard error allows: every number you see below is what your computer prints too.
#
# ## How exercises and checks work
#
# An exercise asks you to write a function. You then call `checks.check("name", your_function)`:
# the checker runs your function on random inputs (with a fixed seed, so its message is the same on
# every run), compares the result with `ddpm_lib`'s implementation of the same equation, and prints
# either `✓ ... matches ...` or `✗ ...` with the equation it should be, what your function gives at one
# timestep against what it should give, the relative error against the tolerance the check allows, and,
# when your result matches a common mistake (using $\alpha_t$ for $\bar\alpha_t$, shifting $t$ by one, a
# variance where a standard deviation belongs, a sign, a factor of 2, nats for bits), what that mistake is.
# `checks.available()` lists the checkers. An exercise whose answer is a number goes through
# `checks.check_value("name", lambda: your_function(...), expected, equation=...)`, which says the same.
#
# In this book the reference solution sits in a cell tagged `solution`, between the lines
# `# BEGIN SOLUTION` and `# END SOLUTION`. The **student edition**
# (`python -m ddpm_lib.course.book student OUTDIR`) replaces the code between the markers by
# `raise NotImplementedError("exercise: ...")`, keeping the function's signature and docstring, tags
# the cell `exercise`, and leaves out the cells tagged `solution-only`. It clears the stored outputs of
# exactly these cells: the exercise cells, and every later cell that uses what an exercise defines,
# directly or through a result computed from it (the check cells, and whatever uses your answer). Every
# other cell keeps its reference output, so you can compare your run with it, including the cells below
# that show a checker rejecting a deliberately wrong function.
#
# **Exercise 0.1 (a warm-up in paper indexing).** Write `alpha_bars_from_betas(betas)`: given
# $\beta_1, \dots, \beta_T$ as a tensor of length $T$, return the table $\bar\alpha_0, \dots, \bar\alpha_T$
# of length $T + 1$, where $\bar\alpha_0 = 1$ and
# $$\bar\alpha_t = \prod_{s=1}^{t} \alpha_s, \qquad \alpha_s = 1 - \beta_s .$$


# %% tags=["solution"]
def alpha_bars_from_betas(betas):
    """beta_1..beta_T (length T) -> alpha_bar_0..alpha_bar_T (length T + 1, alpha_bar_0 = 1)."""
    # BEGIN SOLUTION
    alphas = 1 - betas
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(alphas, dim=0)])
    # END SOLUTION


# %%
checks.check("alpha_bars", alpha_bars_from_betas)


# %% [markdown]
# This is what a failure looks like: a version that forgets $\bar\alpha_0$, as a 0-based table would.

# %%
def forgot_alpha_bar_0(betas):
    return torch.cumprod(1 - betas, dim=0)  # alpha_bar_1..alpha_bar_T only


checks.check("alpha_bars", forgot_alpha_bar_0)

# %% [markdown]
# And a value check that is close but not exact: for small $\beta_s$, $\log(1 - \beta_s) \approx -\beta_s$,
# so $\bar\alpha_t \approx \exp(-\sum_{s \le t} \beta_s)$. At $t = 100$ of a linear schedule the
# approximation is off by less than 0.01%, yet far more than round-off: the check reports the relative
# error, the tolerance, and the slip it looks like.

# %%
betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # beta_1..beta_1000, DDPM's linear schedule
checks.check_value("alpha_bar_100", torch.exp(-betas[:100].sum()), torch.prod(1 - betas[:100]),
                   equation="alpha_bar_100 = prod_{s<=100} (1 - beta_s)")

# %% [markdown]
# ## Notation: three sources, one meaning
#
# The table names each object once in every notation. Two of them appear here before their chapters
# derive them, so here is what they are. The **posterior** $q(x_{t-1} \mid x_t, x_0)$ is the forward
# process run backwards when the clean $x_0$ is known: a Gaussian whose mean $\tilde\mu_t$ is a weighted sum
# of $x_0$ and $x_t$ and whose variance is $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\,\beta_t$
# (read "mu tilde", "beta tilde"; chapter 04 derives both). **The bound** is what training optimizes in
# place of the likelihood, which cannot be computed: DDPM's $L$ is an upper bound on the negative
# log-likelihood $-\log p_\theta(x_0)$, Sohl-Dickstein et al.'s $K$ a lower bound on the log-likelihood
# (chapter 02 derives $K$, chapter 04 writes $L$ term by term).
#
# | meaning | DDPM (Ho et al. 2020) | Sohl-Dickstein et al. 2015 | `diffusers` | `ddpm_lib` |
# |---|---|---|---|---|
# | data | $x_0$ | $x^{(0)}$ | `original_samples` | `x0` |
# | time step | $t = 1, \dots, T$ | $t = 1, \dots, T$ | $k = t - 1 = 0, \dots, T - 1$ | `t` in $1..T$, a LongTensor (B,) |
# | noised data | $x_t$ | $x^{(t)}$ | `noisy_samples` at timestep $k$ | `x_t` |
# | noise rate of step $t$ | $\beta_t$ | $\beta_t$, the diffusion rate (learnable, except $\beta_1$) | `betas[k]` $= \beta_{k+1}$ | `s.betas[t]` |
# | one-step factor | $\alpha_t = 1 - \beta_t$ | written out: $\sqrt{1 - \beta_t}$ | `alphas[k]` | `s.alphas[t]` |
# | product of factors | $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$ | not used | `alphas_cumprod[k]` $= \bar\alpha_{k+1}$ | `s.alpha_bars[t]`, with `alpha_bars[0] = 1` |
# | forward step | $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\, x_{t-1}, \beta_t I)$ | $q(x^{(t)} \mid x^{(t-1)}) = T_\pi(x^{(t)} \mid x^{(t-1)}; \beta_t)$, Gaussian: $\mathcal N(x^{(t-1)} \sqrt{1-\beta_t}, I \beta_t)$ | none | `d.q_step(x_prev, t)` |
# | jump to step $t$ | $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\, x_0, (1 - \bar\alpha_t) I)$ (Eq. 4) | none | `add_noise(x0, eps, k)` | `d.q_sample(x0, t, eps)` |
# | the noise in $x_t$ | $\epsilon \sim \mathcal N(0, I)$, $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$ | none | `noise` | `noise`, `eps` |
# | where the forward process ends | $p(x_T) = \mathcal N(0, I)$ | $\pi(x^{(T)})$, the tractable distribution | `randn` | `randn` |
# | reverse step | $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$ | $p(x^{(t-1)} \mid x^{(t)}) = \mathcal N(f_\mu(x^{(t)}, t), f_\Sigma(x^{(t)}, t))$ | `step(eps, k, x)` | `d.p_sample(out, x_t, t, z)` |
# | posterior mean and variance | $\tilde\mu_t(x_t, x_0)$, $\tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t$ (Eqs. 6-7) | the moments of $q(x^{(t-1)} \mid x^{(t)}, x^{(0)})$ | `variance_type="fixed_small"` is $\tilde\beta_t$ | `d.q_posterior(x0, x_t, t)`, `s.posterior_variance[t]` |
# | the bound | $L \ge \mathbb E[-\log p_\theta(x_0)]$, minimized (Eqs. 3, 5) | $K \le \mathbb E[\log p(x^{(0)})]$, maximized | none | `d.vlb_terms`, `d.bits_per_dim` |
# | signal-to-noise ratio | $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$ | none | none | `s.snr[t]` |
# | time the network sees | $t$ | $t$ | $k$ | `t`, the paper's |
#
# Two traps. First, DDPM's $L$ bounds the *negative* log-likelihood from above, while Sohl-Dickstein's
# $K$ bounds the log-likelihood from below, so DDPM's $L$ plays the role of $-K$: a larger $K$ and a
# smaller $L$ both mean a better model. Second, `diffusers` counts timesteps from 0: its $k$ is our
# $t = k + 1$, its `alphas_cumprod[k]` is our $\bar\alpha_{k+1}$, its network is fed $k$, and its
# `DDPMScheduler` adds no noise at $k = 0$ (our last step, $t = 1$). `ddpm_lib` converts in one place
# where it talks to such libraries, and everywhere else speaks the papers' $t$.
#
# ## Paper indexing in code
#
# Every table of a `NoiseSchedule` has length $T + 1$, and index $t$ means the paper's $t$: `betas[1]`
# is $\beta_1$, `alpha_bars[0]` is $\bar\alpha_0 = 1$ (no noise yet: $x_0$ is data), and
# `posterior_variance[1]` is $\tilde\beta_1 = 0$ (the last reverse step is noiseless). Entries that are
# meaningless at $t = 0$, like $\beta_0$, are placeholders, and a function that takes $t$ only accepts
# $1, \dots, T$.

# %%
s = dl.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM's schedule
print(f"T = {s.T}, and every table has length T + 1 = {len(s.alpha_bars)}")
print(f"alpha_bars[0] == 1: {bool(s.alpha_bars[0] == 1)}   (x_0 is data)")
print(f"betas[1] = beta_1 = {s.betas[1].item():.4f}, betas[T] = beta_T = {s.betas[s.T].item():.4f}")
print(f"alpha_bars[T] = {s.alpha_bars[s.T].item():.2e}   (x_T is noise, up to a trace of x_0)")
print(f"posterior_variance[1] = beta~_1 = {s.posterior_variance[1].item():.1f}, "
      f"posterior_variance[2] = beta~_2 = {s.posterior_variance[2].item():.3e}")

# diffusers keeps beta_1..beta_T at 0-based positions k = 0..T-1; rebuild its tables (in float64 here)
betas_k = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # diffusers' betas[k] = beta_{k+1}
alphas_cumprod_k = torch.cumprod(1 - betas_k, dim=0)  # diffusers' alphas_cumprod[k]
k = torch.arange(1000)
print(f"alphas_cumprod[k] == alpha_bars[k + 1] for every k: {torch.equal(alphas_cumprod_k, s.alpha_bars[k + 1])}")
t = torch.tensor([0, 499, 999]) + 1  # diffusers' timesteps k -> the paper's t = k + 1
print(f"diffusers k = 0, 499, 999 are t = {', '.join(str(v) for v in t.tolist())}, "
      f"with sqrt(abar_t) = {', '.join(f'{v:.4f}' for v in s.sqrt_alpha_bars[t].tolist())}")

d = dl.GaussianDiffusion(s)
try:
    d.q_sample(torch.zeros(2, 3), torch.tensor([0, 5]), torch.zeros(2, 3))
except ValueError as e:
    print(f"q_sample at t = 0 -> ValueError: {e}")

# %% [markdown]
# ## A picture: how fast the signal fades
#
# By DDPM Eq. 4, $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$: the signal
# keeps a fraction $\bar\alpha_t$ of its variance and noise fills the rest. Their ratio, the
# signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1 - \bar\alpha_t)$, falls from about $10^4$
# to about $4 \cdot 10^{-5}$ over the linear schedule; chapter 03 studies it and other schedules.

# %%
ts = torch.arange(1, s.T + 1)
t_half = int((s.snr[ts] < 1).nonzero()[0]) + 1
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(ts, s.alpha_bars[ts], label=r"$\bar\alpha_t$ (signal variance)")
ax1.plot(ts, 1 - s.alpha_bars[ts], label=r"$1 - \bar\alpha_t$ (noise variance)")
ax1.axvline(t_half, color="grey", lw=0.8, ls=":")
ax1.set(xlabel="t", ylabel="variance", title="linear schedule, T = 1000")
ax1.legend(loc="center right")
ax2.semilogy(ts, s.snr[ts])
ax2.axhline(1.0, color="grey", lw=0.8, ls=":")
ax2.set(xlabel="t", ylabel=r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$", title="signal-to-noise ratio")
fig.tight_layout()
plt.show()
print(f"SNR(t) falls below 1 at t = {t_half}; SNR(1) = {s.snr[1].item():.3g}, SNR(T) = {s.snr[s.T].item():.2e}")

# %% [markdown]
# **Exercise 0.2 (decide which index).** Someone hands you only `diffusers`' table `alphas_cumprod_k`
# (built above: entry $k$ is $\bar\alpha_{k+1}$). Write `first_k_below_snr_1(alphas_cumprod)` that returns
# the `diffusers` timestep $k$ of the first step whose SNR is below 1: the step the figure marks. Decide
# first which number it must be, given the $t$ printed under the figure; the check compares your function
# with that answer.


# %% tags=["solution"]
def first_k_below_snr_1(alphas_cumprod):
    """diffusers' alphas_cumprod (entry k is alpha_bar_{k+1}) -> the first 0-based timestep k with SNR < 1."""
    # BEGIN SOLUTION
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return int((snr < 1).nonzero()[0])  # already 0-based: no shift, the table starts at k = 0
    # END SOLUTION


# %%
checks.check_value("first_k_below_snr_1", lambda: first_k_below_snr_1(alphas_cumprod_k), t_half - 1,
                   equation="the diffusers timestep k = t - 1 of the first t with SNR(t) < 1")

# %% [markdown]
# ## Glossary
#
# Every term the course uses and explains, with its meaning in one line and the chapter that teaches it
# (where two chapters are listed, the second takes it further). The table is printed from
# `ddpm_lib.course.glossary`, whose chapter numbers come from `book.toml`.

# %%
Markdown(glossary.markdown())

# %% [markdown]
# ## Summary
#
# - The course runs top to bottom on a CPU; heavy training and sampling are done once on a GPU and
#   shipped, with the commands that remake them. `dl.device()` picks the GPU when there is one.
# - The map gives each chapter's reading time (the course's estimate) and its CPU budget.
# - Exercises are checked by `ddpm_lib.course.checks`, which names the equation that is wrong, the relative
#   error against its tolerance and the likely slip; solutions sit in `solution` cells between
#   `# BEGIN SOLUTION` and `# END SOLUTION`, and the student edition clears the outputs of the exercises
#   and of the cells that use them, nothing else.
# - DDPM writes $\beta_t, \alpha_t, \bar\alpha_t$ and the upper bound $L$; Sohl-Dickstein et al. write
#   $x^{(t)}$, $\beta_t$, $\pi$ and the lower bound $K$; `diffusers` counts timesteps from 0.
# - `ddpm_lib` uses paper indexing everywhere: $t = 1, \dots, T$, tables of length $T + 1$,
#   `alpha_bars[0] == 1`, `posterior_variance[1] == 0`, and a diffusers timestep $k$ is $t = k + 1$.
#
# **Next:** chapter 01 starts from a variational autoencoder and turns its encoder into a fixed process
# that adds Gaussian noise, with $T$ latent layers: a diffusion model.
