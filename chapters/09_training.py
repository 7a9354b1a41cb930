# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Training the U-Net on Fashion-MNIST (Algorithm 1)
#
# Chapter 06 ran Algorithm 1 on the swiss roll with a small MLP; chapter 08 built the U-Net. This chapter trains
# the U-Net on images with the library's trainer, `ddpm_lib.train.Trainer`, the same code the command line
# `python -m ddpm_lib.train` runs on a laptop, a GPU or several GPUs: a short live run on the CPU, the exponential
# moving average (EMA) of the weights, checkpoints that can be resumed exactly, and then the shipped, fully
# trained network, its samples and its loss as a function of $t$.
#
# **Learning goals.** After this chapter you can
# - read Algorithm 1 line by line as the trainer's step, and write its loss for a batch (exercise);
# - run a short training on the CPU and see the loss fall;
# - explain the EMA of the weights, why a short run's EMA is biased toward the initial network, and the two fixes
#   (debiasing, an EMA warm-up), with the arithmetic;
# - stop and resume a run and get bit-identical weights; run the same command on one or several GPUs;
# - load the shipped model, sample from it, and measure its loss at each $t$, and say why it is largest at small $t$.
#
# **CPU time:** about 55 s on a 2-core CPU (budget: 90 s), about half of it the live training run.

# %%
import contextlib
import copy
import dataclasses
import io
import json
import math
import os
import shlex
import tempfile
import tomllib

import matplotlib.pyplot as plt
import torch

import ddpm_lib as dl
from ddpm_lib import train as dt
from ddpm_lib.cli import train as train_cli  # the command line: ddpm-train, or python -m ddpm_lib.train
from ddpm_lib.course import book, checks
from ddpm_lib.course.replay import below  # a residual as a verdict against its tolerance: '< 1e-12'

ROOT = book.load_book().root  # the repository: configs/ and data/ live here

# %% [markdown]
# ## 1. Algorithm 1, and what the trainer adds
#
# DDPM's training procedure (Ho et al. 2020, Algorithm 1) is four lines:
#
# > **repeat**
# > 1. $x_0 \sim q(x_0)$ (a training image, scaled to $[-1, 1]$)
# > 2. $t \sim \mathrm{Uniform}(\{1, \dots, T\})$
# > 3. $\epsilon \sim \mathcal N(0, I)$
# > 4. take a gradient descent step on $\nabla_\theta \big\| \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,\ t\big) \big\|^2$
# >
# > **until** converged
#
# Averaged over a minibatch, the quantity in line 4 is a Monte Carlo estimate of
# $$L_\text{simple}(\theta) = \mathbb E_{t, x_0, \epsilon}\Big[\big\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t)\big\|^2\Big]
# \qquad \text{(DDPM Eq. 14)},$$
# the variational bound with the weights of its terms dropped (chapter 06); the input to $\epsilon_\theta$ is
# $x_t$ drawn from $q(x_t \mid x_0)$ in one jump (Eq. 4, chapter 03). Like DDPM's code, the library averages the
# squared error over the $D = 28 \cdot 28$ pixels instead of summing it (a constant factor).
#
# What the paper's experiments add to the four lines (Sec. 4 and Appendix B), and `Trainer` implements: Adam with
# learning rate $2\cdot10^{-4}$, a linear learning-rate warm-up, gradient clipping at global norm 1, dropout, an
# EMA of the weights with decay 0.9999 used for sampling, and (on CIFAR-10) random horizontal flips. The schedule
# is DDPM's: linear $\beta_1 = 10^{-4}$ to $\beta_T = 0.02$, $T = 1000$.
#
# The course's Fashion-MNIST settings live in two files: `configs/fashion_mnist.toml` (for a CPU: the *tiny*
# preset) and `configs/fashion_mnist_gpu.toml` (the shipped network: the *base* preset). A `TrainConfig` holds
# every field; `load_config` reads a file into one.

# %%
cpu_cfg = dt.load_config(ROOT / "configs" / "fashion_mnist.toml")
show = ["dataset", "model", "schedule", "T", "beta_start", "beta_end", "prediction", "loss", "batch_size", "lr",
        "warmup_steps", "grad_clip", "dropout", "ema_decay", "ema_warmup", "steps"]
print("configs/fashion_mnist.toml:\n  " + ", ".join(f"{k} = {getattr(cpu_cfg, k)!r}" for k in show))
s = dt.make_diffusion(cpu_cfg).schedule
print(f"its schedule: beta_1 = {s.betas[1]:.4f}, beta_T = {s.betas[s.T]:.4f}, T = {s.T}, "
      f"alpha_bar_T = {s.alpha_bars[s.T]:.2e}")

# %% [markdown]
# ## 2. A live run on the CPU
#
# The file's settings are for a run of hours (40,000 steps). Here we change what a one-minute demonstration needs,
# and say so: the shipped 10,000-image training subset (`fashion-mnist-10k`, so that this runs offline anywhere),
# 100 steps of batch 12, a learning rate of $2\cdot10^{-3}$ without warm-up (ten times the paper's: a short run
# of a small network can afford it), the EMA with a *constant* decay (`ema_warmup = 0`, as in DDPM) so that
# section 3 can show what that does, and no files written (`out_dir = ""`). Everything else (the tiny U-Net of
# chapter 08 with dropout 0.1, the linear schedule with $T = 1000$, $L_\text{simple}$, clipping, Adam) is the file's.
#
# `Trainer.run` calls a `callback(trainer)` after every step; we use it to keep a few numbers for section 3: a
# slice of one weight tensor at every step, and a second EMA of the weights with the warm-up. The loss of every
# step is in `trainer.history.loss`.

# %%
live_cfg = dataclasses.replace(
    cpu_cfg, dataset="fashion-mnist-10k", steps=100, batch_size=12, lr=2e-3, warmup_steps=0, ema_warmup=0,
    out_dir="", device="cpu", bf16=False, log_every=10, ckpt_every=0, sample_every=0)
trainer = dt.Trainer(live_cfg)
print(f"{live_cfg.model}: {dl.count_parameters(trainer.model):,} parameters; data {trainer.data.shape[0]:,} images "
      f"of shape {trainer.data_shape}; device {trainer.device}")

w0 = copy.deepcopy(trainer.model.state_dict())  # the initial weights, for section 3
tracked = [trainer.model.conv_in.weight.detach().flatten()[:64].double().clone()]  # w_0 of a slice of conv_in
ema_warm = copy.deepcopy(trainer.model).eval().requires_grad_(False)  # a second EMA, with the warm-up
WARMUP = cpu_cfg.ema_warmup


def after_step(tr):
    tracked.append(tr.model.conv_in.weight.detach().flatten()[:64].double().clone())
    k = tr.step_count - 1  # the update just made was number k = 0, 1, ...
    dt.ema_update(ema_warm, tr.model, dt.ema_decay_at(k, live_cfg.ema_decay, WARMUP))


history = trainer.run(progress=False, callback=after_step)
loss = torch.tensor(history.loss)
print(f"{trainer.step_count} steps; mean loss of the first 50 steps {loss[:50].mean():.3f}, "
      f"of the last 50 steps {loss[-50:].mean():.3f} (a fresh network predicts eps = 0: loss E[eps^2] = 1)")

# %%
window = 10
moving = torch.tensor([loss[max(0, i - window + 1):i + 1].mean().item() for i in range(len(loss))])
half = trainer.step_count // 2
t_mid, loss_t = history.loss_by_t(since_step=half)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
ax1.plot(range(1, len(loss) + 1), loss, lw=0.8, alpha=0.6, label=f"loss of each step (batch of {live_cfg.batch_size})")
ax1.plot(range(1, len(loss) + 1), moving, lw=2, label=f"moving average of {window} steps")
ax1.set(xlabel="step", ylabel=r"$L_\mathrm{simple}$ (mean over pixels)", yscale="log",
        title="the live run: tiny U-Net, CPU")
ax1.legend()
ax2.bar(t_mid, loss_t, width=40)
ax2.set(xlabel="t", ylabel="mean loss", title=f"loss by t, steps {half + 1}-{trainer.step_count} (history.loss_by_t)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss falls fast from 1 (the zero-initialized network of chapter 08 predicts $\epsilon_\theta = 0$) and keeps
# falling slowly; single steps are noisy because each batch draws 12 fresh $t$'s. The trainer also keeps the loss
# by ranges of $t$: it is largest at small $t$. Section 6 measures why, on the shipped network.

# %% [markdown]
# ## 3. The exponential moving average of the weights
#
# After every optimizer step the trainer updates a second copy of the network,
# $$\bar\theta_k = d\,\bar\theta_{k-1} + (1 - d)\,\theta_k, \qquad \bar\theta_0 = \theta_0,$$
# with decay $d$ (DDPM: $0.9999$ on CIFAR-10; the course's configs: $0.9995$). The raw weights $\theta_k$ jitter with
# every noisy minibatch; their average over the last $\approx 1/(1-d)$ steps (2,000 for $d = 0.9995$) is smoother
# and gives better samples, so sampling uses $\bar\theta$ (`trainer.ema`; `Trainer.sample` uses it by default).
#
# **The bias of a short run.** Unrolling the recursion,
# $$\bar\theta_N = d^N \theta_0 + (1 - d) \sum_{k=1}^{N} d^{\,N-k}\, \theta_k ,$$
# weights that sum to $d^N + (1 - d)\frac{1 - d^N}{1 - d} = 1$. The initial, untrained network keeps the share
# $d^N$, which is small only once $N \gg 1/(1-d)$. Our live run has $N = 100$ and $d = 0.9995$, so its EMA is still
# mostly $\theta_0$. We check the unrolled formula against the trainer's EMA on the slice of weights tracked above.

# %%
d_ema, N = live_cfg.ema_decay, trainer.step_count
share = d_ema**N
w = torch.stack(tracked)  # (N + 1, 64): theta_0 .. theta_N on the slice
coef = torch.tensor([d_ema**N] + [(1 - d_ema) * d_ema ** (N - k) for k in range(1, N + 1)], dtype=torch.float64)
unrolled = coef @ w
ema_slice = trainer.ema.conv_in.weight.detach().flatten()[:64].double()
print(f"d = {d_ema}, N = {N}: share of theta_0 = d^N = {share:.4f}; weights of theta_1..theta_N sum to "
      f"1 - d^N = {coef[1:].sum():.4f}; all weights sum to {coef.sum():.6f}")
print(f"unrolled formula vs the trainer's EMA (64 weights of conv_in): max |diff| "
      f"{below((unrolled - ema_slice).abs().max(), 1e-5)} (weights of size {w.abs().max():.2f}; float32 updates)")

# %% [markdown]
# **Fix 1: debiasing** (`ddpm_lib.train.debias_ema`, the zero-debiasing Adam applies to its moments). Subtract
# the initial weights' share and renormalize:
# $$\hat\theta_N = \frac{\bar\theta_N - d^N\theta_0}{1 - d^N} = \frac{(1 - d)}{1 - d^N}\sum_{k=1}^N d^{\,N-k}\,\theta_k ,$$
# an exponential average of the *trained* weights only. $\theta_0$ can always be rebuilt from the run's seed
# (`scripts/debias_ema.py` does that for a finished checkpoint).
#
# **Fix 2: an EMA warm-up** (`ema_warmup` in `TrainConfig`, `dt.ema_decay_at`): use the decay
# $d_k = \min\big(d, \frac{1 + k}{w + k}\big)$ at update $k = 0, 1, \dots$, small at first and rising to $d$, so that the
# first updates forget $\theta_0$ quickly. With $w = 10$ (the config files' value) the share of $\theta_0$ after $N$
# updates is $\prod_k d_k$:

# %%
share_warm = math.prod(dt.ema_decay_at(k, d_ema, WARMUP) for k in range(N))
# a product of Python floats (no vector unit involved): its three digits are the same on every CPU
print(f"share of theta_0 after {N} updates: constant decay {share:.4f}, warm-up w = {WARMUP}: {share_warm:.2e}")

# held-out images, with t and eps fixed, so that every network is scored on exactly the same examples
x_test, y_test = dl.fashion_mnist("test")
g = torch.Generator().manual_seed(1)
x_eval = x_test[:64]
t_eval = torch.randint(1, live_cfg.T + 1, (64,), generator=g)
eps_eval = torch.randn(x_eval.shape, generator=g)


def held_out_loss(model):
    model.eval()
    with torch.no_grad():
        return trainer.diffusion.training_losses(model, x_eval, t=t_eval, noise=eps_eval)["loss"].mean().item()


initial = copy.deepcopy(trainer.model)
initial.load_state_dict(w0)
debiased = copy.deepcopy(trainer.ema)
debiased.load_state_dict(dt.debias_ema(trainer.ema.state_dict(), w0, d_ema, N))
raw = copy.deepcopy(trainer.model)
scores = {"initial weights theta_0": held_out_loss(initial), "raw weights theta_N": held_out_loss(raw),
          "EMA, constant decay": held_out_loss(trainer.ema), "EMA, debiased": held_out_loss(debiased),
          f"EMA with warm-up w = {WARMUP}": held_out_loss(ema_warm)}
print("held-out L_simple (64 test images, the same t and eps for each network):")
for name, v in scores.items():
    print(f"  {name:<28}{v:.4f}")

# %% [markdown]
# The EMA with a constant decay scores like the untrained network: it *is* mostly the untrained network. Either
# fix gives back a network that scores close to the raw trained weights. In a run this short ($N \ll 1/(1-d)$)
# the debiased EMA weighs $\theta_1, \dots, \theta_N$ almost equally, the poor early weights included, so it cannot
# do much better than the raw weights; the warm-up's window starts short and grows with $k$. On a long run
# ($N \gg 1/(1-d)$) none of this matters; on the short GPU runs that make the shipped model it does, and its
# checkpoint records which fix was used (section 5).
#
# Samples from the live network, 8 images with 25 respaced steps (chapter 10 explains respacing; Algorithm 2 would
# take 1000), next to 8 real test images. After 100 steps they are noisy blobs in the middle of the frame;
# section 5 shows what a longer run on a GPU gives.

# %%
gen = torch.Generator().manual_seed(0)
live_samples = dl.sample_respaced(ema_warm, trainer.diffusion, 25, (8, 1, 28, 28), generator=gen,
                                  progress=False, clip_x0=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 1.8))
dl.viz.show_images(x_test[:8], ax=ax1, nrow=8, title="real test images")
dl.viz.show_images(live_samples, ax=ax2, nrow=8, title=f"live tiny U-Net, {trainer.step_count} steps (EMA with warm-up), 25 steps")
plt.show()

# %% [markdown]
# ## 4. Checkpoints: atomic and resumable
#
# With an `out_dir`, the trainer writes `ckpt_<step>.safetensors` every `ckpt_every` steps and at the end (keeping
# the last `keep_last`), points `latest.safetensors` at the newest, and appends one line per `log_every` steps to
# `log.jsonl`. Each checkpoint holds the weights, the EMA, Adam's state, the step, the loss history, the data order
# and the state of every random generator (data order, $t$ and $\epsilon$, dropout); its `.json` sidecar holds the
# configuration and the command. No pickle: safetensors and JSON only. The hidden `.lock` is how a second process
# learns that a run is still writing this directory: it is refused, instead of overwriting the first run's files.
#
# *Atomic* means a reader never sees half a file: each file is written to a temporary name beside its
# destination, flushed to disk (`fsync`) and then renamed over it (`os.replace`, atomic on POSIX), so a run killed
# mid-save leaves the previous checkpoint intact. *Resumable* means that `Trainer.resume(out_dir)` (or the command
# line's `--resume`) continues the run as if it had never stopped. We test exactly that, in a temporary directory:
# train $N$ steps, resume to $2N$, and compare with an uninterrupted run of $2N$ steps.

# %%
demo = dataclasses.replace(live_cfg, steps=3, batch_size=8, log_every=1, ckpt_every=0, sample_every=0, n_samples=0)
with tempfile.TemporaryDirectory() as tmp:
    first = dt.Trainer(dataclasses.replace(demo, out_dir=os.path.join(tmp, "interrupted")))
    first.run(progress=False)  # steps 1..N, then a checkpoint
    files = sorted(os.listdir(os.path.join(tmp, "interrupted")))
    sidecar = json.loads(open(os.path.join(tmp, "interrupted", "latest.json")).read())
    resumed = dt.Trainer.resume(os.path.join(tmp, "interrupted"), steps=2 * demo.steps)  # a new process could do this
    resumed.run(progress=False)  # steps N+1..2N
    straight = dt.Trainer(dataclasses.replace(demo, steps=2 * demo.steps, out_dir=os.path.join(tmp, "straight")))
    straight.run(progress=False)  # steps 1..2N in one go
    files_after = sorted(os.listdir(os.path.join(tmp, "interrupted")))

print(f"after {demo.steps} steps the run directory holds: {', '.join(files)}")
print(f"the sidecar latest.json: step {sidecar['step']}, model {sidecar['model_class']}, keys: "
      f"{', '.join(sorted(sidecar))}")
print(f"after resuming to {resumed.step_count}: {', '.join(files_after)}")
same_w = all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()))
same_ema = all(torch.equal(a, b) for a, b in zip(resumed.ema.state_dict().values(), straight.ema.state_dict().values()))
print(f"{demo.steps} steps + resume to {2 * demo.steps} vs {2 * demo.steps} steps in one go: weights identical "
      f"{same_w}, EMA identical {same_ema}, per-step losses identical {resumed.history.loss == straight.history.loss}")

# %% [markdown]
# Bit-identical, dropout included, because the random generators' states travel in the checkpoint. (That holds on
# one device with the same software; a GPU's kernels or a different number of processes give a different, equally
# valid, run.)
#
# ## 5. The same command on a GPU, and on several
#
# The command line reads the same TOML files and runs the same `Trainer`:
#
# ```bash
# # the CPU (the tiny preset; stop it any time, then add --resume to continue)
# python -m ddpm_lib.train --config configs/fashion_mnist.toml --out-dir runs/fashion-mnist-cpu
# python -m ddpm_lib.train --config configs/fashion_mnist.toml --out-dir runs/fashion-mnist-cpu --resume
#
# # one GPU: the same command (device "auto" picks cuda; bf16 autocast is on for CUDA in these files)
# python -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --out-dir runs/fashion-mnist-gpu
#
# # several GPUs on one machine: the same command under torchrun, one process per GPU
# torchrun --nproc_per_node=4 -m ddpm_lib.train --config configs/fashion_mnist_gpu.toml --out-dir runs/fashion-mnist-gpu
# ```
#
# Under `torchrun` the trainer wraps the network in `DistributedDataParallel`: every process draws the same global
# batch of `batch_size` indices, $t$'s and $\epsilon$'s from the seeded generators and keeps its own contiguous
# slice of it; the gradients are averaged across processes, so one step on $W$ GPUs is the step one process would
# take on the whole batch. Only process 0 logs, saves and samples. (Tested on the CPU with two processes and the
# gloo backend.)
#
# **The shipped network.** `dl.load_pretrained("fashion-mnist-unet")` checks the file's sha256 against
# `data/registry.json` and loads the EMA weights, without pickle and without a network. Its JSON config says how it
# was made; we print it, and then resolve the command it names with the library's own command line
# (`--print-config`, which only prints) and compare the result with the configuration stored in the checkpoint.

# %%
pre = dl.load_pretrained("fashion-mnist-unet")
net, diffusion, conf = pre.model, pre.diffusion, pre.config
tc = conf["train"]
print(f"model: {conf['model_class']} {pre.data_shape}, {dl.count_parameters(net):,} parameters, "
      f"trained {conf['step']:,} steps of batch {tc['batch_size']} on {tc['dataset']} "
      f"({conf.get('metrics', {}).get('device', 'device not recorded')})")
print(f"command (checkpoint): {conf['command']}")
print(f"command (registry):   {pre.entry.get('command')}")
ema_w = tc.get("ema_warmup", 0)
print(f"EMA: decay {tc['ema_decay']}, warm-up {ema_w}; share of theta_0 with a constant decay would be "
      f"{tc['ema_decay'] ** conf['step']:.3f}")
if "ema_debiased" in conf:
    print(f"  debiased afterwards: initial share {conf['ema_debiased']['initial_share']:.3f} removed by "
          f"`{conf['ema_debiased']['command']}`")

command = conf["command"].split("  (")[0]  # the command itself, without the note on how it was run
argv = shlex.split(command)
if argv[:3] == ["python", "-m", "ddpm_lib.train"]:
    out = io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out):
        rc = train_cli.main(argv[3:] + ["--print-config"])
    resolved = tomllib.loads(out.getvalue())
    # fields that do not change the training trajectory (those a resumed run may change, Trainer.load_state)
    free = {"steps", "out_dir", "data_root", "ckpt_every", "keep_last", "sample_every", "sample_steps", "n_samples",
            "log_every", "device", "compile"}
    differ = [f"{k}: checkpoint {tc.get(k, getattr(dt.TrainConfig(), k))!r}, command {v!r}"
              for k, v in resolved.items() if k not in free and tc.get(k, getattr(dt.TrainConfig(), k)) != v]
    print(f"`{command} --print-config` exits {rc}; steps {resolved['steps']} (checkpoint step {conf['step']}); "
          f"fields that shape training and differ from the checkpoint's: {'; '.join(differ) or 'none'}")
else:
    print("the checkpoint's command is not a `python -m ddpm_lib.train` command line; not resolved here")

# %% [markdown]
# If that last line lists differences, the named command no longer remakes this exact file (a configuration file
# changed after the run); the checkpoint's stored configuration is then the authority, and
# `Trainer(dt.config_from_dict(conf["train"]))` rebuilds the run.
#
# Samples from the shipped network: 8 images, **25 respaced steps** on the CPU (a few seconds; Algorithm 2's full
# 1000 steps and the quality they add are chapter 10's subject), from the same initial noise as the live network's
# samples above.

# %%
gen = torch.Generator().manual_seed(0)
shipped_samples = dl.sample_respaced(net, diffusion, 25, (8, 1, 28, 28), generator=gen, progress=False,
                                     clip_x0=True)
fig, ax = plt.subplots(figsize=(10, 1.8))
dl.viz.show_images(shipped_samples, ax=ax, nrow=8, title="shipped U-Net (base), 25 respaced steps, seed 0")
plt.show()
print(f"samples in [{shipped_samples.min():.2f}, {shipped_samples.max():.2f}]; mean brightness "
      f"{shipped_samples.mean():+.3f} (test images: {x_test[:1000].mean():+.3f})")

# %% [markdown]
# ## 6. The loss as a function of $t$
#
# $L_\text{simple}$ averages over $t$; split by $t$ it is very uneven. We measure it on the shipped network for one
# test image of each of the 10 classes, at 16 values of $t$, with the same $\epsilon$ at every $t$, and split the
# squared error between *background* pixels (exactly $-1$: pixel value 0, more than half of a Fashion-MNIST image)
# and the *object*'s pixels.
#
# For comparison, the best predictor that sees no image structure at all: knowing only each pixel's mean $m_j$
# and variance $v_j$ over the training set, the best linear guess of the noise is
# $\hat\epsilon_j = \sqrt{1 - \bar\alpha_t}\,(x_{t,j} - \sqrt{\bar\alpha_t} m_j) / (\bar\alpha_t v_j + 1 - \bar\alpha_t)$
# (the covariance $\mathrm{Cov}(\epsilon_j, x_{t,j}) = \sqrt{1 - \bar\alpha_t}$ over the variance
# $\mathrm{Var}(x_{t,j}) = \bar\alpha_t v_j + 1 - \bar\alpha_t$), whose expected squared error is
# $1 - \mathrm{Cov}^2/\mathrm{Var}$, averaged over the pixels:
# $$\ell_\text{pixel}(t) = \frac{1}{D}\sum_j \frac{\bar\alpha_t v_j}{\bar\alpha_t v_j + 1 - \bar\alpha_t}.$$
# It is near 1 for every pixel that varies
# when $1 - \bar\alpha_t \ll v_j$ (little noise: the noise cannot be told from the image), and falls to 0 as
# $\bar\alpha_t \to 0$ (almost all of $x_t$ is noise, so $\epsilon \approx x_t / \sqrt{1 - \bar\alpha_t}$).

# %%
x_train, _ = dl.fashion_mnist("train-10k")
m_pix, v_pix = x_train.mean(0).double(), x_train.var(0).double()  # (1, 28, 28) each
ab = diffusion.schedule.alpha_bars


def pixel_baseline(t):
    a = ab[t]
    return (a * v_pix / (a * v_pix + 1 - a)).mean().item()


# check the closed form on 10,000 test images at one t, with the predictor itself
t_chk = 50
a = ab[t_chk]
noise_chk = torch.randn(x_test.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
x_t_chk = a.sqrt() * x_test.double() + (1 - a).sqrt() * noise_chk
eps_hat = (1 - a).sqrt() * (x_t_chk - a.sqrt() * m_pix) / (a * v_pix + 1 - a)
per_image = ((eps_hat - noise_chk) ** 2).flatten(1).mean(1)
print(f"per-pixel linear predictor at t = {t_chk}: closed form {pixel_baseline(t_chk):.4f}, measured on "
      f"{len(x_test):,} test images {per_image.mean():.4f} +- {per_image.std() / math.sqrt(len(per_image)):.4f}")

idx = torch.stack([(y_test == c).nonzero()[0, 0] for c in range(10)])  # the first test image of each class
x0 = x_test[idx]
background = x0 == -1
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
t_values = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 400, 500, 700, 1000]
rows = []
with torch.no_grad():
    for tv in t_values:
        t = torch.full((10,), tv)
        err = (net(diffusion.q_sample(x0, t, eps), t) - eps) ** 2
        rows.append((tv, err.mean().item(), err[background].mean().item(), err[~background].mean().item(),
                     pixel_baseline(tv)))
print(f"background: {background.float().mean():.1%} of the pixels of these 10 images")
print(f"{'t':>5}{'L_simple':>10}{'backgr.':>9}{'object':>9}{'pixel-wise':>12}{'L_simple / pixel-wise':>23}")
for tv, l_all, l_bg, l_obj, l_pix in rows:
    print(f"{tv:>5}{l_all:>10.4f}{l_bg:>9.4f}{l_obj:>9.4f}{l_pix:>12.4f}{l_all / l_pix:>23.3g}")

# %%
tt = [r[0] for r in rows]
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.plot(tt, [r[1] for r in rows], "o-", label="shipped U-Net: all pixels")
ax.plot(tt, [r[3] for r in rows], "^--", label="shipped U-Net: object pixels")
ax.plot(tt, [r[2] for r in rows], "v--", label="shipped U-Net: background pixels")
ax.plot(tt, [r[4] for r in rows], "k:", label="best per-pixel linear predictor")
ax.set(xscale="log", yscale="log", xlabel="t", ylabel=r"$\|\epsilon - \epsilon_\theta(x_t, t)\|^2 / D$",
       title="L_simple by t (10 test images, one per class)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
peak = max(rows, key=lambda r: r[1])
best = min(rows, key=lambda r: r[1] / r[4])
print(f"largest at t = {peak[0]} ({peak[1]:.3f}); at t = 1000: {rows[-1][1]:.1e}; falls monotonically over these t: "
      f"{all(a[1] >= b[1] for a, b in zip(rows, rows[1:]))}")
print(f"object pixels at t = 1: {rows[0][3]:.3f} vs the pixel-wise predictor's {rows[0][4]:.3f}; the network gains "
      f"most over it at t = {best[0]} (ratio {best[1] / best[4]:.2f}); t where the pixel-wise predictor is lower: "
      f"{[r[0] for r in rows if r[4] < r[1]] or 'none'}")

# %% [markdown]
# What the measurement says about why the loss is largest at small $t$:
#
# - At small $t$ the noise is tiny ($\sqrt{1-\bar\alpha_1} = 0.01$) and predicting it means telling it apart from
#   the image's own fine detail. On the object's pixels that is nearly impossible: their error stays high, not far
#   below the structure-blind predictor's. On the background the network knows the clean value ($-1$), so there the
#   noise *can* be read off $x_t$, and the error is far smaller. The total is in between, weighted by how much of
#   the image is background.
# - At large $t$, $x_t$ is almost all noise, $\epsilon \approx x_t / \sqrt{1 - \bar\alpha_t}$, and predicting it is
#   easy: the loss falls by orders of magnitude, like the structure-blind predictor's. There both errors are tiny,
#   and the last line above says whether the network even matches the pixel-wise predictor.
# - In between, the ratio column shows where the network gains most over the pixel-wise predictor: where knowing
#   what clothes look like (the structure it learned) pays.
#
# The uniform $t$ of Algorithm 1 and the dropped weights of $L_\text{simple}$ (chapter 06) mean that all these $t$
# count equally in training, whereas the true bound weights small $t$ more heavily.
#
# ## 7. Exercise
#
# **Exercise 9.1 (Algorithm 1's loss for a batch).** Write `l_simple(model, x0, t, noise, alpha_bars)`: given a
# network `model(x_t, t)` that predicts $\epsilon$, a batch `x0` of shape (B, ...), its timesteps `t` (a LongTensor
# (B,) in $1..T$), the noise `noise` (shaped like `x0`) and the table `alpha_bars` (length $T + 1$, paper indexing),
# return the per-example loss of shape (B,):
# $$\ell_b = \frac{1}{D}\big\|\epsilon_b - \epsilon_\theta\big(\sqrt{\bar\alpha_{t_b}}\,x_{0,b} + \sqrt{1-\bar\alpha_{t_b}}\,\epsilon_b,\ t_b\big)\big\|^2 .$$
# `checks.check("l_simple", fn)` compares it with `GaussianDiffusion.training_losses` on a stand-in network; then we
# run it on the live U-Net and a real batch.


# %% tags=["solution"]
def l_simple(model, x0, t, noise, alpha_bars):
    """Per-example L_simple (DDPM Eq. 14): mean over dimensions of (eps - eps_theta(x_t, t))^2."""
    # BEGIN SOLUTION
    ab = alpha_bars[t].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(x_t, t)) ** 2).flatten(1).mean(1)
    # END SOLUTION


# %%
checks.check("l_simple", l_simple)
with torch.no_grad():
    raw.eval()
    mine = l_simple(raw, x_eval, t_eval, eps_eval, trainer.diffusion.schedule.alpha_bars)
    ref = trainer.diffusion.training_losses(raw, x_eval, t=t_eval, noise=eps_eval)["loss"]
checks.check_value("l_simple on the live U-Net and 64 test images", mine, ref, rtol=1e-4, atol=1e-6,
                   equation="GaussianDiffusion.training_losses with the same t and eps")

# %% [markdown]
# ## Summary
#
# - Algorithm 1 is the trainer's step: a batch of images, a uniform $t$ and fresh $\epsilon$ per image, $x_t$ in one
#   jump (Eq. 4), and a gradient step on $L_\text{simple}$ (Eq. 14). `Trainer` adds the paper's Adam, warm-up,
#   clipping, dropout and EMA; `TrainConfig` and the TOML files in `configs/` hold every setting.
# - A 100-step live run of the tiny U-Net on the CPU takes the loss from 1 (the zero-initialized network) to a
#   fraction of it; the samples need hours more.
# - The EMA $\bar\theta_N = d^N\theta_0 + (1-d)\sum_k d^{N-k}\theta_k$ keeps the share $d^N$ of the untrained network:
#   a short run's EMA is mostly $\theta_0$. Debiasing, $(\bar\theta_N - d^N\theta_0)/(1 - d^N)$, or an EMA warm-up
#   removes it.
# - Checkpoints are written atomically (temporary file, fsync, rename) and carry every random generator's state:
#   $N$ steps plus a resume to $2N$ equal $2N$ steps bit for bit. The same command runs on a CPU, a GPU, and under
#   `torchrun` on several GPUs.
# - The shipped network's loss is largest at small $t$, where the noise is hard to tell from the image's detail
#   (on object pixels it is close to a structure-blind predictor's), and tiny at large $t$, where $x_t$ is almost
#   all noise.
#
# **Next:** chapter 10 samples with the trained network (Algorithm 2): the two choices of $\sigma_t^2$, the
# reverse process step by step, and faster sampling with fewer steps.
