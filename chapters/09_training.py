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
# moving average (EMA) of the weights, checkpoints that can be resumed exactly, and then the shipped network (a
# short GPU run, far from converged: section 5 says exactly how it was trained), its samples and its loss as a
# function of $t$.
#
# **Learning goals.** After this chapter you can
# - read Algorithm 1 line by line as the trainer's step, and write its loss for a batch (exercise);
# - run a short training on the CPU and see the loss fall;
# - explain the EMA of the weights, why a short run's EMA is biased toward the initial network, and the two fixes
#   (debiasing, an EMA warm-up), with the arithmetic;
# - stop and resume a run and get bit-identical weights; run the same command on one or several GPUs;
# - load the shipped model, state how it was trained and what remaking it costs on a GPU and on a CPU, sample from it;
# - measure its loss at each $t$, say why it is largest at small $t$, and why that size says nothing about how hard
#   or how important a $t$ is (exercise: the error of the predicted $x_0$).
#
# **CPU time:** about 45 s on an otherwise idle 2-core CPU (budget: 90 s).

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
from ddpm_lib.viz import course_style

course_style()  # the course's figure style: 100 dpi, 10 pt text, mathtext, legends off the data
ROOT = book.load_book().root  # the repository: configs/ and data/ live here

# %% [markdown]
# ## 1. Algorithm 1, and what the trainer adds
#
# DDPM's training procedure (Ho et al. 2020, Algorithm 1) has six numbered lines; the course cites them by the
# paper's numbers:
#
# > 1. **repeat**
# > 2. $x_0 \sim q(x_0)$ (a training image, scaled to $[-1, 1]$)
# > 3. $t \sim \mathrm{Uniform}(\{1, \dots, T\})$
# > 4. $\epsilon \sim \mathcal N(0, I)$
# > 5. take a gradient descent step on $\nabla_\theta \big\| \epsilon - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,\ t\big) \big\|^2$
# > 6. **until** converged
#
# Averaged over a minibatch, the quantity in line 5 is a Monte Carlo estimate of
# $$L_\text{simple}(\theta) = \mathbb E_{t, x_0, \epsilon}\Big[\big\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t)\big\|^2\Big]
# \qquad \text{(DDPM Eq. 14)},$$
# the variational bound with the weights of its terms dropped (chapter 06); the input to $\epsilon_\theta$ is
# $x_t$ drawn from $q(x_t \mid x_0)$ in one jump (Eq. 4, chapter 03). Like DDPM's code, the library averages the
# squared error over the $D = 28 \cdot 28$ pixels instead of summing it (a constant factor).
#
# What the paper's experiments add to these lines (Sec. 4 and Appendix B), and `Trainer` implements: Adam with
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
      f"alpha_bar_T = {s.alpha_bars[s.T]:.2e}; tables of {len(s.alpha_bars)} entries (index = the paper's t), "
      f"dtype {s.alpha_bars.dtype}")

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
# fix gives back a network that scores close to the raw trained weights (in a run this short the debiased EMA
# weighs all $\theta_k$ almost equally, the poor early ones included). On a long run ($N \gg 1/(1-d)$) none of this
# matters; the shipped model's run was short, and its record (section 5) says which fix it used.
#
# Samples from the live network, 8 images with 25 respaced steps (chapter 10 explains respacing; Algorithm 2 would
# take 1000): after 100 steps, noisy blobs. `clip_x0=True`: at every step the sampler forms the network's guess of
# the clean image, $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)) / \sqrt{\bar\alpha_t}$ (Eq. 4 solved for $x_0$), clips it to
# $[-1, 1]$, the range of the data, and takes the step's mean from it with Eq. 7's posterior mean (chapter 04);
# unclipped, that mean is exactly Eq. 11's. Clipping acts at large $t$, where dividing by $\sqrt{\bar\alpha_t}$ (0.006 at
# $t = T$) turns a small error of $\epsilon_\theta$ into values no image has. DDPM's sampling code clips the same way.

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
# Bit-identical, dropout included, because the random generators' states travel in the checkpoint (on one device
# with the same software).
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
# batch from the seeded generators and keeps its own slice; the gradients are averaged, so one step on $W$ GPUs is
# the step one process would take on the whole batch.
#
# **The shipped network.** `dl.load_pretrained("fashion-mnist-unet")` checks the file's sha256 against
# `data/registry.json` and loads the EMA weights. `dl.pretrained.training_record(name)` prints how it was trained, as
# its registry entry records it. Beside it, the CPU cost of the same training, from the throughputs that
# `benchmarks/model_size_cpu.py` measured for the three U-Net presets on a 2-core CPU.

# %%
pre = dl.load_pretrained("fashion-mnist-unet")
net, diffusion, conf = pre.model, pre.diffusion, pre.config
record = dl.pretrained.training_record("fashion-mnist-unet")
print(record)
print(f"model: {conf['model_class']} (preset {conf['train']['model']}), {dl.count_parameters(net):,} parameters")
tc = conf["train"]
print(f"EMA: decay {tc['ema_decay']}, warm-up {tc.get('ema_warmup', 0)}; share of theta_0 with a constant decay "
      f"would be {tc['ema_decay'] ** conf['step']:.3f}")

bench = json.loads((ROOT / "benchmarks" / "model_size_cpu.json").read_text())
print(f"\nthe same {record.images:,} training images on a CPU (throughput measured by `{bench['command']}`):")
for row in bench["rows"]:
    rate = row["images_per_cpu_second"]
    print(f"  preset {row['preset']:<5}{row['parameters']:>11,} parameters {rate:>7.2f} images per CPU-second "
          f"-> {record.cpu_hours(rate):5.1f} CPU-hours")

# %% [markdown]
# In words: one H200 GPU, 240 s, 2,324 steps of 256 images, about 10 epochs, stopped at 6% of the 40,000 steps its
# configuration plans: **far from converged**, good enough for the course's demonstrations, not the best this
# network can do.
#
# - **On a GPU**, the printed command remakes it in minutes; a larger `--steps` with an `--out-dir` trains further, and
#   `--resume` continues that run after a stop. The shipped file holds only the EMA weights, not Adam's state, so it
#   cannot itself be resumed, but it can be trained on: `--init-from fashion-mnist-unet` (a *warm start*) starts the
#   network and its EMA from those weights at step 2,324, with Adam afresh and its warm-up run again from there.
# - **On a CPU**, the same command with `--device cpu --no-compile --threads 2 --out-dir runs/fmnist-base-cpu` (and
#   `--resume` after any stop) takes about 55 CPU-hours. The tiny preset draws the same 594,944 images in about 4:
#   `python -m ddpm_lib.train --config configs/fashion_mnist.toml --steps 9296 --out-dir runs/fashion-mnist-cpu`
#   (9,296 steps of 64), for a network of 280,177 parameters instead of 6.5 million.
#
# Does the printed command still remake this exact file? We resolve it with the library's own command line
# (`--print-config`, which only prints) and compare the result with the configuration stored in the checkpoint.

# %%
argv = shlex.split(record.command)
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
    print(f"`{record.command} --print-config` exits {rc}; steps {resolved['steps']} (checkpoint step "
          f"{conf['step']}); fields that shape training and differ from the checkpoint's: {'; '.join(differ) or 'none'}")
else:
    print("the checkpoint's command is not a `python -m ddpm_lib.train` command line; not resolved here")

# %% [markdown]
# Had that line listed differences (a configuration file changed after the run), the checkpoint's stored
# configuration would be the authority: `Trainer(dt.config_from_dict(conf["train"]))` rebuilds the run.
#
# **Samples from the shipped network**, 8 images with 25 respaced steps, from the same noise as the live samples and
# with the same noise at every step in both rows: first with $\sigma_t^2 = \tilde\beta_t$, then with the model's setting
# $\sigma_t^2 = \beta_t$ (chapter 06). A *roughness* score, the mean squared difference of neighbouring pixels, says how
# grainy each set is.

# %%
d_small = dl.GaussianDiffusion(diffusion.schedule, prediction=diffusion.prediction, variance="fixed_small")
titles = {"beta~_t": r"$\sigma_t^2 = \tilde\beta_t$", "beta_t": r"$\sigma_t^2 = \beta_t$ (the model's setting)"}
shipped = {}
for key, dd in (("beta~_t", d_small), ("beta_t", diffusion)):
    shipped[key] = dl.sample_respaced(net, dd, 25, (8, 1, 28, 28), generator=torch.Generator().manual_seed(0),
                                      progress=False, clip_x0=True)
fig, axes = plt.subplots(2, 1, figsize=(10, 3.4))
for ax, (key, x) in zip(axes, shipped.items()):
    dl.viz.show_images(x, ax=ax, nrow=8, title=f"shipped U-Net, 25 respaced steps, seed 0, {titles[key]}")
plt.show()


def roughness(x):
    """Mean squared difference between horizontally neighbouring pixels."""
    return ((x[..., 1:] - x[..., :-1]) ** 2).mean().item()


print("roughness: " + ", ".join(f"sigma_t^2 = {k}: {roughness(x):.3f}" for k, x in shipped.items())
      + f"; 1,000 test images: {roughness(x_test[:1000]):.3f}")

# %% [markdown]
# The first row: clean garments, a little smoother than real images by the roughness score. The second, from the same
# noise: grainy, salt-and-pepper on the background, rougher than real images. Why: each of the 25 steps jumps 40
# original steps and adds fresh noise of variance $\sigma^2$. $\beta_t$ is the right amount for data of unit variance,
# $\tilde\beta_t$ for a single point (chapter 10 derives both); Fashion-MNIST's pixels vary much less than 1, so $\beta_t$
# adds more noise than the few remaining steps can remove. With all 1000 steps the two choices hardly differ
# (chapter 10 shows 64 such samples). The course shows samples with the sampler that shows them best, and says which.
#
# ## 6. The loss as a function of $t$
#
# $L_\text{simple}$ averages over $t$; split by $t$ it is very uneven. We measure it on the shipped network for one
# test image of each of the 10 classes, at 16 values of $t$, with the same $\epsilon$ at every $t$, and split the
# squared error between *background* pixels (exactly $-1$: pixel value 0, more than half of a Fashion-MNIST image)
# and the *object*'s pixels. We also measure the error of the network's guess of the clean image, $\hat x_0$.
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
        x_t = diffusion.q_sample(x0, t, eps)
        eps_pred = net(x_t, t)
        err = (eps_pred - eps) ** 2
        a = ab[tv].item()
        x0_pred = (x_t - math.sqrt(1 - a) * eps_pred) / math.sqrt(a)  # the network's guess of x_0 (Eq. 4 solved)
        rows.append((tv, err.mean().item(), err[background].mean().item(), err[~background].mean().item(),
                     pixel_baseline(tv), ((x0_pred - x0) ** 2).mean().item()))
print(f"background: {background.float().mean():.1%} of the pixels of these 10 images")
print(f"{'t':>5}{'L_simple':>10}{'backgr.':>9}{'object':>9}{'pixel-wise':>12}{'ratio':>7}{'x_0 error':>11}")
for tv, l_all, l_bg, l_obj, l_pix, l_x0 in rows:
    print(f"{tv:>5}{l_all:>10.4f}{l_bg:>9.4f}{l_obj:>9.4f}{l_pix:>12.4f}{l_all / l_pix:>7.2f}{l_x0:>11.2e}")

# %%
tt = [r[0] for r in rows]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.plot(tt, [r[1] for r in rows], "o-", label="all pixels")
ax1.plot(tt, [r[3] for r in rows], "^--", label="object pixels")
ax1.plot(tt, [r[2] for r in rows], "v--", label="background pixels")
ax1.plot(tt, [r[4] for r in rows], "k:", label="best per-pixel linear predictor")
ax1.set(xscale="log", yscale="log", xlabel="$t$", ylabel=r"$\|\epsilon - \epsilon_\theta(x_t, t)\|^2 / D$",
        title=r"the $\epsilon$ error ($L_\mathrm{simple}$) by $t$")
ax1.legend(loc="lower left", fontsize=10)
ax2.plot(tt, [r[5] for r in rows], "o-", color="C3")
ax2.set(xscale="log", yscale="log", xlabel="$t$", ylabel=r"$\|x_0 - \hat x_0(x_t, t)\|^2 / D$",
        title=r"the error of the predicted $x_0$ by $t$")
fig.suptitle("shipped U-Net, 10 test images (one per class), the same $\\epsilon$ at every $t$")
fig.tight_layout()
plt.show()
peak = max(rows, key=lambda r: r[1])
best = min(rows, key=lambda r: r[1] / r[4])
print(f"eps error largest at t = {peak[0]} ({peak[1]:.3f}); at t = 1000: {rows[-1][1]:.1e}; falls monotonically "
      f"over these t: {all(a[1] >= b[1] for a, b in zip(rows, rows[1:]))}")
print(f"x_0 error at t = 1: {rows[0][5]:.1e}, at t = 1000: {rows[-1][5]:.2f}; rises monotonically over these t: "
      f"{all(a[5] <= b[5] for a, b in zip(rows, rows[1:]))}; the pixels' own variance (training set): "
      f"{v_pix.mean().item():.2f}")
print(f"object pixels at t = 1: {rows[0][3]:.3f} vs the pixel-wise predictor's {rows[0][4]:.3f}; the network gains "
      f"most over it at t = {best[0]} (ratio {best[1] / best[4]:.2f}); t where the pixel-wise predictor is lower: "
      f"{[r[0] for r in rows if r[4] < r[1]] or 'none'}")

# %% [markdown]
# What the measurement says:
#
# - **Why the $\epsilon$ error is largest at small $t$.** There $\epsilon$ is a tiny part of $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$
#   ($\sqrt{1-\bar\alpha_1} = 0.01$), and predicting it means telling it apart from the image's own fine detail. On the
#   object's pixels that is nearly impossible: their error stays close to the structure-blind predictor's. On the
#   background the network knows the clean value ($-1$), so there the noise *can* be read off $x_t$, and the error is far
#   smaller. At large $t$, $x_t$ is almost all noise, $\epsilon \approx x_t / \sqrt{1 - \bar\alpha_t}$, and the error falls by orders of
#   magnitude, like the structure-blind predictor's. In between, the ratio column shows where knowing what clothes look
#   like pays most.
# - **The size of the $\epsilon$ error at a $t$ is not how hard, nor how important, that $t$ is.** The same network's guess of
#   the clean image, $\hat x_0$, is almost exact at $t = 1$ (last column) and gets worse as $t$ grows: at $t = 1000$ its error
#   is larger than the pixels' own variance printed above, so the average image would be a better guess. A large
#   $\epsilon$ error at small $t$ is a small error in the image, because $\epsilon$ enters $x_t$ with the factor 0.01; a tiny
#   $\epsilon$ error at large $t$ is a large error in the image (exercise 8.2 derives the exchange rate). How much each
#   $t$ *counts* in training is a third, separate question: the bound weights the $\epsilon$ error at $t$ by
#   $\beta_t^2 / (2\sigma_t^2\alpha_t(1 - \bar\alpha_t))$ (chapter 06), and $L_\text{simple}$ sets every weight to 1, with $t$ drawn uniformly
#   (Algorithm 1, line 3). That is a choice of objective, not a measurement of difficulty.
#
# ## 7. Exercises
#
# **Exercise 9.1 (Algorithm 1's loss for a batch).** Write `l_simple(model, x0, t, noise, alpha_bars)`: given a
# network `model(x_t, t)` that predicts $\epsilon$, a batch `x0` of shape (B, ...), its timesteps `t` (a LongTensor
# (B,) in $1..T$), the noise `noise` (shaped like `x0`) and the table `alpha_bars` (length $T + 1$, paper indexing),
# return the per-example loss of shape (B,):
# $$\ell_b = \frac{1}{D}\big\|\epsilon_b - \epsilon_\theta\big(\sqrt{\bar\alpha_{t_b}}\,x_{0,b} + \sqrt{1-\bar\alpha_{t_b}}\,\epsilon_b,\ t_b\big)\big\|^2 .$$
# Two practical points. `alpha_bars[t]` has shape (B,): reshape it to (B, 1, 1, 1) to multiply images of shape
# (B, 1, 28, 28). And a `NoiseSchedule`'s tables are **float64** (section 1's output): exact, so that the small
# differences the bound adds up survive, while images and the U-Net's weights are float32. float64 times float32 is
# float64, which the network's float32 layers refuse ("mat1 and mat2 must have the same dtype"): cast what you read
# from a table to the data's dtype, `alpha_bars[t].to(x0.dtype)`. The check runs your function on float64 inputs
# with a stand-in network, naming the likely mistake when it is off, and then on float32 images with a float32
# network, as the trainer would.


# %% tags=["solution"]
def l_simple(model, x0, t, noise, alpha_bars):
    """Per-example L_simple (DDPM Eq. 14): mean over dimensions of (eps - eps_theta(x_t, t))^2."""
    # BEGIN SOLUTION
    ab = alpha_bars[t].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(x_t, t)) ** 2).flatten(1).mean(1)
    # END SOLUTION


# %%
checks.check("l_simple_float32", l_simple)

# %% [markdown]
# **Exercise 9.2 (derive: from the $\epsilon$ error to the $x_0$ error).** Section 6 measured two errors of the same
# network on the same $x_t$: the $\epsilon$ error that $L_\text{simple}$ averages, and the error of the predicted clean
# image $\hat x_0$. Derive how one determines the other, then write `x0_mse_from_eps_mse(eps_mse, t, alpha_bars)`:
# given the mean squared error `eps_mse` (shape (B,)) of $\epsilon_\theta$ at timesteps `t` (B,), return the mean
# squared error of $\hat x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta) / \sqrt{\bar\alpha_t}$, shape (B,). (Hint: write $x_0$
# itself with the true $\epsilon$ in the same way, and subtract.) Your factor should turn the table's $L_\text{simple}$ column
# into its last column, and say at which $t$ a small $\epsilon$ error is still a large error in the image.


# %% tags=["solution"]
def x0_mse_from_eps_mse(eps_mse, t, alpha_bars):
    """The mean squared error of x0_hat implied by that of eps_theta at t."""
    # BEGIN SOLUTION
    ab = alpha_bars[t].to(eps_mse.dtype)
    return (1 - ab) / ab * eps_mse
    # END SOLUTION


# %%
checks.check("x0_mse_from_eps_mse", x0_mse_from_eps_mse)

# %% [markdown]
# ## Summary
#
# - Algorithm 1 is the trainer's step: a batch of images, a uniform $t$ and fresh $\epsilon$ per image, $x_t$ in one
#   jump (Eq. 4), and a gradient step on $L_\text{simple}$ (Eq. 14). `Trainer` adds the paper's Adam, warm-up,
#   clipping, dropout and EMA; `TrainConfig` and the TOML files in `configs/` hold every setting.
# - A 100-step live run of the tiny U-Net on the CPU takes the loss from 1 to a fraction of it.
# - The EMA $\bar\theta_N = d^N\theta_0 + (1-d)\sum_k d^{N-k}\theta_k$ keeps the share $d^N$ of the untrained network:
#   a short run's EMA is mostly $\theta_0$. Debiasing, $(\bar\theta_N - d^N\theta_0)/(1 - d^N)$, or an EMA warm-up
#   removes it.
# - Checkpoints are atomic and carry every random generator's state: $N$ steps plus a resume to $2N$ equal $2N$ steps
#   bit for bit. The same command runs on a CPU, a GPU, and under `torchrun` on several GPUs.
# - The shipped network was trained on one H200 for 240 s: 2,324 steps of 256 images, about 10 epochs, far from
#   converged. `dl.pretrained.training_record` prints that record and the command that remakes it; on a CPU the same
#   training costs about 55 CPU-hours (base preset), or about 4 with the tiny preset.
# - On a short chain, $\sigma_t^2 = \tilde\beta_t$ gives clean samples and $\beta_t$ grainy ones; `clip_x0` keeps each step's guess of
#   $x_0$ inside the data's range.
# - The $\epsilon$ error is largest at small $t$, where the noise is hard to tell from the image's detail, and tiny at
#   large $t$; the error of the predicted $x_0$ runs the other way (exercise 8.2 gives the exchange rate). Neither is the
#   weight a $t$ gets in training, which is the objective's choice.
#
# **Next:** chapter 10 samples with the trained network (Algorithm 2): the two choices of $\sigma_t^2$, the
# reverse process step by step, and faster sampling with fewer steps.
