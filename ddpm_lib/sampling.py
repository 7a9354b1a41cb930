"""What a trained model can do: faster sampling, conditioning, reconstruction, interpolation.

Every function takes a model (``model(x_t, t) -> output``) and a :class:`GaussianDiffusion`, and
can return the trajectory (x_t and the predicted x_0 at chosen t) with ``record=[...]``.
Equations are cited by each paper's own numbering: DDPM is Ho, Jain & Abbeel 2020, DDIM is Song,
Meng & Ermon 2021.

Taught in chapters 10, 12 and 13.
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Callable, Iterable, Optional, Sequence

import torch

from .diffusion import GaussianDiffusion, Recorder, Trajectory, initial_noise, noise_like, progress_bar
from .schedules import NoiseSchedule

__all__ = [
    "METHODS",
    "DEFAULT_STEPS",
    "generate",
    "check_sampler_args",
    "sampler_timesteps",
    "snap_record",
    "CountingModel",
    "sample_respaced",
    "ddim_timesteps",
    "ddim_sample",
    "ddim_encode",
    "inpaint",
    "reconstruct",
    "interpolate",
    "slerp",
    "perturbed_mean",
    "sample_perturbed",
    "schedule_of",
    "check_trajectory",
    "predicted_eps",
]


class CountingModel:
    """Wraps ``model(x_t, t)`` and counts the images it sees in ``.images``.

    The cost of a sampler in network evaluations, which (unlike seconds) does not depend on the machine.

    Taught in chapter 10.
    """

    def __init__(self, model: Callable):
        self.model, self.images = model, 0

    def __call__(self, x, t):
        self.images += x.shape[0]
        return self.model(x, t)


def sample_respaced(
    model: Callable, diffusion: GaussianDiffusion, steps: int | Sequence[int], shape, **kwargs
):
    """Ancestral sampling (DDPM Algorithm 2) on ``steps`` timesteps, with the same alpha_bars there.

    The model still receives the original timesteps (Nichol & Dhariwal 2021, Sec. 4). Keyword
    arguments are those of :meth:`GaussianDiffusion.sample`; recorded ``ts`` are respaced indices,
    the trajectory's ``timesteps`` the original ones.

    Taught in chapter 10.
    """
    return diffusion.respace(steps).sample(model, shape, **kwargs)


def ddim_timesteps(T: int, steps: int) -> torch.Tensor:
    """An increasing subsequence of 1..T of length ``steps``, ending at T: a LongTensor of shape (steps,).

    The timesteps :meth:`NoiseSchedule.respace` picks for a count.

    Taught in chapter 10.
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..T = 1..{T}, got {steps}")
    ts = torch.linspace(T, T / steps, steps, dtype=torch.float64).round().long().flip(0)
    return torch.unique(ts)


def _resolve_timesteps(diffusion: GaussianDiffusion, steps, timesteps) -> torch.Tensor:
    if timesteps is not None:
        ts = torch.as_tensor(list(timesteps), dtype=torch.long)
        if ts.ndim != 1 or ts.numel() == 0 or (ts[1:] <= ts[:-1]).any():
            raise ValueError("timesteps must be a non-empty, strictly increasing sequence")
        diffusion.schedule.check_t(ts, "timesteps")
        return ts
    return ddim_timesteps(diffusion.T, int(steps))


def _check_eta(eta) -> None:
    # NaN compares False with everything: without this, eta = nan gives all-NaN samples and no error
    try:
        ok = not isinstance(eta, bool) and math.isfinite(float(eta)) and float(eta) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta!r}"
        )


@torch.no_grad()
def ddim_sample(
    model: Callable,
    diffusion: GaussianDiffusion,
    shape,
    steps: int = 50,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
    clip_x0: bool = False,
    progress: bool = True,
    device=None,
    record: Optional[Iterable[int]] = None,
    timesteps: Optional[Sequence[int]] = None,
):
    """DDIM sampling (DDIM Eq. 12) on ``steps`` timesteps of ``diffusion``, or on the given ``timesteps``.

    eta = 0 is deterministic; eta = 1 gives every step the DDPM posterior variance of that step, as
    ancestral sampling with beta~. ``shape`` is (B, ...). ``record`` picks timesteps (original t, 0
    for the result) to return in a :class:`Trajectory`.

    Taught in chapter 10.
    """
    _check_eta(eta)
    ts = _resolve_timesteps(diffusion, steps, timesteps)
    x = initial_noise(shape, generator, device, noise)
    rec = Recorder(record, diffusion.schedule)
    pairs = list(zip(ts.flip(0).tolist(), [*ts.flip(0).tolist()[1:], 0]))
    it = progress_bar(pairs, f"DDIM {len(pairs)} steps", progress)
    B = x.shape[0]
    for tt, tp in it:
        t = torch.full((B,), tt, dtype=torch.long, device=x.device)
        out = model(x, diffusion.model_t(t))
        if rec.want is not None and tt in rec.want:
            rec.add(tt, x, diffusion.p_mean_variance(out, x, t, clip_x0=clip_x0)["pred_x0"])
        x = diffusion.ddim_step(out, x, t, tp, eta=eta, clip_x0=clip_x0, generator=generator)
    rec.add(0, x, None)
    return (x, rec.result()) if record is not None else x


@torch.no_grad()
def ddim_encode(
    model: Callable,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    steps: int = 50,
    t_end: Optional[int] = None,
    timesteps: Optional[Sequence[int]] = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run DDIM (eta = 0) backwards: x_0 -> x_{t_end}, deterministically.

    On the same timesteps :func:`ddim_sample` uses, so that decoding the result with those
    timesteps returns about x_0; x0 and the result have shape (B, ...). Chapter 10 teaches the
    DDIM step (DDIM Eq. 12) that this inverts.

    Taught in chapter 10.
    """
    ts = _resolve_timesteps(diffusion, steps, timesteps)
    if t_end is not None:
        ts = ts[ts <= t_end]
    x = x0
    B = x.shape[0]
    prev = [0, *ts.tolist()[:-1]]
    it = progress_bar(list(zip(prev, ts.tolist())), "DDIM encode", progress)
    for tp, tt in it:
        if tp == 0:
            # the network is not defined at t = 0: x_0 is known, and eps is read at the first grid point
            t1 = torch.full((B,), tt, dtype=torch.long, device=x.device)
            eps = diffusion.p_mean_variance(model(x, diffusion.model_t(t1)), x, t1)["pred_eps"]
            ab = diffusion._extract(diffusion.schedule.alpha_bars, t1, x)
            x = ab.sqrt() * x + (1 - ab).sqrt() * eps
        else:
            t_from = torch.full((B,), tp, dtype=torch.long, device=x.device)
            x = diffusion.ddim_reverse_step(model(x, diffusion.model_t(t_from)), x, t_from, tt)
    return x


def _check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError("mask must be a tensor (1 where pixels are known, 0 where they are to be filled)")
    try:
        mask = torch.broadcast_to(mask.to(device=x.device, dtype=x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to x_known's shape {tuple(x.shape)}"
        )
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("mask must hold only 0 (unknown) and 1 (known)")
    return mask


@torch.no_grad()
def inpaint(
    model: Callable,
    diffusion: GaussianDiffusion,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    clip_x0: bool = False,
    progress: bool = True,
    record: Optional[Iterable[int]] = None,
    resample: int = 1,
):
    """Conditioning by replacement: sample x_0 with the known pixels fixed.

    At every t the known region (mask == 1) of x_t is replaced by a fresh sample of
    q(x_t | x_known), and the unknown region follows the reverse process: r(x_t) of Sohl-Dickstein
    et al. 2015 Sec. 2.5 taken as a delta on the known pixels' noised values. At t = 0 the known
    pixels equal x_known exactly.

    Replacement alone lets the filled region lag behind the known one: each step sees the known
    pixels only through one noisy draw. ``resample`` = U > 1 repeats each step U times (RePaint,
    Lugmayr et al. 2022, Algorithm 1): after the step to x_{t-1}, one forward step takes it back to
    x_t ~ q(x_t | x_{t-1}) (DDPM Eq. 2) and the step is taken again, so the two regions can agree
    before going on; it costs U network calls per t.

    :param x_known: the images whose known pixels are kept, (B, ...).
    :param mask: 1 where a pixel is known, 0 where it is to be filled; broadcastable to x_known.
    :param resample: U, the passes per timestep (1: replacement only); ``record`` needs U = 1.

    Taught in chapter 12.
    """
    mask = _check_mask(mask, x_known)
    if not isinstance(resample, int) or isinstance(resample, bool) or resample < 1:
        raise ValueError(f"resample must be a positive integer (1: no resampling), got {resample!r}")
    if resample > 1 and record is not None:
        raise ValueError("record is not available with resample > 1")

    def condition(x, t):
        if t == 0:
            known = x_known
        else:
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            known = diffusion.q_sample(x_known, tt, generator=generator)
        return mask * known + (1 - mask) * x

    if resample > 1:
        return _resampled(model, diffusion, condition, x_known, generator, clip_x0, progress, resample)
    return diffusion.sample(
        model,
        x_known.shape,
        generator=generator,
        progress=progress,
        clip_x0=clip_x0,
        device=x_known.device,
        record=record,
        condition=condition,
    )


def _resampled(model, diffusion, condition, x_known, generator, clip_x0, progress, U) -> torch.Tensor:
    """RePaint's loop (Lugmayr et al. 2022, Algorithm 1) over the reverse steps of DDPM Algorithm 2."""
    x = condition(initial_noise(x_known.shape, generator, x_known.device), diffusion.T)
    for tt in progress_bar(range(diffusion.T, 0, -1), "inpainting", progress):
        t = torch.full((x.shape[0],), tt, dtype=torch.long, device=x.device)
        x_prev = x
        for u in range(U if tt > 1 else 1):
            if u > 0:  # back one step: x_t ~ q(x_t | x_{t-1}) (DDPM Eq. 2)
                x = diffusion.q_step(x_prev, t, generator=generator)
            out = model(x, diffusion.model_t(t))
            x_prev = condition(diffusion.p_sample(out, x, t, clip_x0=clip_x0, generator=generator), tt - 1)
        x = x_prev
    return x


@torch.no_grad()
def reconstruct(
    model: Callable,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    t: int,
    generator: Optional[torch.Generator] = None,
    clip_x0: bool = False,
    progress: bool = True,
    record: Optional[Iterable[int]] = None,
):
    """Noise x_0 to x_t ~ q(x_t | x_0), then run the reverse process from t to 0 (DDPM Sec. 4.3, Fig. 7).

    The smaller t, the more the result shares with x_0. x0 has shape (B, ...); t is an int in 1..T.

    Taught in chapter 13.
    """
    if not 1 <= int(t) <= diffusion.T:
        raise ValueError(f"t must be in 1..T = 1..{diffusion.T}, got {t}")
    tt = torch.full((x0.shape[0],), int(t), dtype=torch.long, device=x0.device)
    x_t = diffusion.q_sample(x0, tt, generator=generator)
    return diffusion.sample(
        model,
        x0.shape,
        generator=generator,
        progress=progress,
        noise=x_t,
        t_start=int(t),
        clip_x0=clip_x0,
        record=record,
    )


@torch.no_grad()
def interpolate(
    model: Callable,
    diffusion: GaussianDiffusion,
    x0_a: torch.Tensor,
    x0_b: torch.Tensor,
    lambdas: Sequence[float],
    t: int,
    generator: Optional[torch.Generator] = None,
    clip_x0: bool = False,
    progress: bool = True,
    record: Optional[Iterable[int]] = None,
    mix: str = "linear",
):
    """Interpolation in x_t space (DDPM Sec. 4.4, Figs. 8-9).

    x_t ~ q(x_t | x0_a) and x'_t ~ q(x_t | x0_b) (the stochastic encoder), each drawn once so that
    every lambda mixes the same two latents (as the paper fixes them), then each
    x̄_t = (1 - lambda) x_t + lambda x'_t is decoded by the reverse process from t, with the same
    reverse-process noise for every lambda so that only lambda changes. ``mix="slerp"`` mixes
    spherically instead (:func:`slerp`). The generator's draws are the same for both mixes, so
    two calls with equally seeded generators decode the same x_t, x'_t with the same noise.
    x0_a and x0_b have shape (B, ...); returns (L, B, ...) for L lambdas (and the trajectory with
    the batch as L * B if ``record``).

    Taught in chapter 13.
    """
    if mix not in ("linear", "slerp"):
        raise ValueError(f"mix must be 'linear' or 'slerp', got {mix!r}")
    if x0_a.shape != x0_b.shape:
        raise ValueError(
            f"x0_a and x0_b must have the same shape, got {tuple(x0_a.shape)} and {tuple(x0_b.shape)}"
        )
    if not 1 <= int(t) <= diffusion.T:
        raise ValueError(f"t must be in 1..T = 1..{diffusion.T}, got {t}")
    lam = torch.as_tensor(list(lambdas), dtype=x0_a.dtype, device=x0_a.device)
    if lam.ndim != 1 or lam.numel() == 0 or (lam < 0).any() or (lam > 1).any():
        raise ValueError("lambdas must be a non-empty sequence of numbers in [0, 1]")
    B = x0_a.shape[0]
    tt = torch.full((B,), int(t), dtype=torch.long, device=x0_a.device)
    xa = diffusion.q_sample(x0_a, tt, generator=generator)
    xb = diffusion.q_sample(x0_b, tt, generator=generator)
    shape_l = (-1, *([1] * x0_a.ndim))
    if mix == "slerp":
        x_bar = torch.cat([slerp(xa, xb, float(v)) for v in lam])
    else:
        x_bar = ((1 - lam.view(shape_l)) * xa.unsqueeze(0) + lam.view(shape_l) * xb.unsqueeze(0)).reshape(
            -1, *x0_a.shape[1:]
        )
    L = lam.numel()

    def shared_noise(_t, x):
        z = noise_like(x[:B], generator)
        return z.repeat(L, *([1] * (x.ndim - 1)))

    res = diffusion.sample(
        model,
        x_bar.shape,
        generator=generator,
        progress=progress,
        noise=x_bar,
        t_start=int(t),
        clip_x0=clip_x0,
        record=record,
        step_noise=shared_noise,
    )
    if record is not None:
        x, traj = res
        return x.reshape(L, B, *x0_a.shape[1:]), traj
    return res.reshape(L, B, *x0_a.shape[1:])


def slerp(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """Spherical interpolation of a and b, example by example (Shoemake 1985):

        slerp(a, b, lam) = sin((1 - lam) theta) / sin(theta) a + sin(lam theta) / sin(theta) b,

    with theta the angle between a[i] and b[i] (flattened). For independent Gaussian noises in high
    dimension theta is close to 90 degrees and the weights cos(lam pi/2), sin(lam pi/2) have squares
    summing to 1: the mix keeps the noise's variance, where the linear mix's (1 - lam)^2 + lam^2
    falls to 1/2 at lam = 1/2. Parallel pairs (theta = 0) fall back to the linear mix.
    ``a``, ``b``: (B, ...) of the same shape; ``lam`` in [0, 1]. Returns (B, ...).

    Taught in chapter 13.
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape or a.ndim < 1:
        raise ValueError(
            "a and b must be tensors (B, ...) of the same shape, got "
            f"{tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__} and "
            f"{tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}"
        )
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp(min=1e-300)
    theta = torch.acos(cos.clamp(-1.0, 1.0))
    small = theta < 1e-6
    s = torch.where(small, torch.ones_like(theta), torch.sin(theta))
    wa = torch.where(small, torch.full_like(theta, 1 - lam), torch.sin((1 - lam) * theta) / s)
    wb = torch.where(small, torch.full_like(theta, lam), torch.sin(lam * theta) / s)
    shape = (-1, *([1] * (a.ndim - 1)))
    return (wa.view(shape) * a.double() + wb.view(shape) * b.double()).to(a.dtype)


def perturbed_mean(
    mean: torch.Tensor, variance, grad_log_r: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The mean of a Gaussian reverse kernel multiplied by r, to first order.

    Sohl-Dickstein et al. 2015, App. C, Eqs. 52-61:

        p~(x^{t-1} | x^t) ∝ N(x^{t-1}; mu, Sigma) r(x^{t-1})  ≈  N(x^{t-1}; mu + Sigma grad log r(mu), Sigma),

    from log r(y) ≈ log r(mu) + (y - mu)^T grad log r(mu) (their Eq. 56) and completing the square
    (their Eqs. 57-60). Valid when log r curves slowly on the kernel's scale (its Hessian small
    against Sigma^{-1}).

    :param mean: mu, a tensor (B, ...).
    :param variance: the diagonal of Sigma: a number or a tensor broadcastable to ``mean``.
    :param grad_log_r: a callable y -> grad log r(y), same shape as y; it is evaluated at ``mean``.
    :return: mu + Sigma * grad log r(mu), shaped like ``mean``.

    Taught in chapter 12.
    """
    if not isinstance(mean, torch.Tensor):
        raise TypeError(f"mean must be a tensor, got {type(mean).__name__}")
    if not callable(grad_log_r):
        raise TypeError(
            "grad_log_r must be a callable y -> grad log r(y) (it is evaluated at the kernel's mean)"
        )
    g = grad_log_r(mean)
    if not isinstance(g, torch.Tensor) or g.shape != mean.shape:
        got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(
            f"grad_log_r(mean) must return a tensor shaped like mean {tuple(mean.shape)}, got {got}"
        )
    if isinstance(variance, torch.Tensor):
        if (variance < 0).any():
            raise ValueError("variance must be >= 0")
    elif not variance >= 0:
        raise ValueError(f"variance must be >= 0, got {variance!r}")
    return mean + variance * g


@torch.no_grad()
def sample_perturbed(
    model: Callable,
    diffusion: GaussianDiffusion,
    shape,
    perturb: Callable[[torch.Tensor, torch.Tensor, int], tuple],
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
    clip_x0: bool = False,
    progress: bool = True,
    device=None,
    record: Optional[Iterable[int]] = None,
):
    """DDPM Algorithm 2 with every reverse kernel multiplied by r.

    Sohl-Dickstein et al. 2015, Sec. 2.5, Eq. 22: at each t = T..1 the model's kernel
    p(x_{t-1} | x_t) = N(mu, sigma_t^2 I) is replaced by the Gaussian N(mu', v') =
    ``perturb(mu, sigma_t^2, t)``, the normalized product p(x_{t-1} | x_t) r_{t-1}(x_{t-1})
    (exactly, when r is Gaussian, or to first order with :func:`perturbed_mean`), and
    x_{t-1} = mu' + sqrt(v') z, with z = 0 at t = 1 (DDPM's noiseless last step).

    :param perturb: ``(mean, variance, t) -> (mean', variance')``, tensors shaped like x; t is the int
        timestep of the kernel (an index of ``diffusion``'s schedule), whose output is x_{t-1}, so the
        factor it applies is r_{t-1}. E.g. the first-order rule with a fixed r:
        ``lambda m, v, t: (perturbed_mean(m, v, grad_log_r), v)``.
    :param noise: x_T. The modified chain starts at p~(x_T) ∝ pi(x_T) r_T(x_T) (their Eq. 16 at t = T):
        draw x_T from it yourself when r_T is not constant (default: x_T ~ N(0, I), right for constant r_T).
    :param record: timesteps (0..T) at which to keep x_t and the predicted x_0 (unperturbed), as in
        :meth:`GaussianDiffusion.sample`; returns ``(x_0, Trajectory)`` then.
    :return: x_0, of shape ``shape`` (B, ...).

    Taught in chapter 12.
    """
    if not callable(perturb):
        raise TypeError("perturb must be a callable (mean, variance, t) -> (mean, variance)")
    x = initial_noise(shape, generator, device, noise)
    rec = Recorder(record, diffusion.schedule)
    steps = progress_bar(range(diffusion.T, 0, -1), "sampling with r", progress)
    B = x.shape[0]
    for tt in steps:
        t = torch.full((B,), tt, dtype=torch.long, device=x.device)
        p = diffusion.p_mean_variance(model(x, diffusion.model_t(t)), x, t, clip_x0=clip_x0)
        out = perturb(p["mean"], p["variance"], tt)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("perturb must return a tuple (mean, variance)")
        mean, var = out
        if not isinstance(mean, torch.Tensor) or mean.shape != x.shape:
            raise ValueError(f"perturb's mean must be a tensor of shape {tuple(x.shape)}")
        var = torch.as_tensor(var, dtype=x.dtype, device=x.device)
        if bool((var < 0).any()):
            raise ValueError(f"perturb returned a negative variance at t = {tt}")
        rec.add(tt, x, p["pred_x0"])
        x = mean if tt == 1 else mean + var.sqrt() * noise_like(x, generator)
    rec.add(0, x, None)
    return (x, rec.result()) if record is not None else x


# ----------------------------------------------------------------------------------------------
# a recorded trajectory: checks, and the network's eps recovered from it
# ----------------------------------------------------------------------------------------------


def schedule_of(schedule=None) -> NoiseSchedule:
    """The :class:`NoiseSchedule` meant by ``schedule``.

    A NoiseSchedule as it is, a GaussianDiffusion's own, or DDPM's linear schedule with T = 1000 for None.

    Taught in chapter 10.
    """
    if schedule is None:
        return NoiseSchedule.linear(T=1000)
    if isinstance(schedule, GaussianDiffusion):
        return schedule.schedule
    if isinstance(schedule, NoiseSchedule):
        return schedule
    raise TypeError(
        f"schedule must be a NoiseSchedule or a GaussianDiffusion (the one that sampled), "
        f"got {type(schedule).__name__}"
    )


def check_trajectory(trajectory, name: str = "trajectory") -> torch.Tensor:
    """Check that ``trajectory`` is a recorded sampling trajectory and return its original timesteps.

    A :class:`Trajectory` (or anything with ``ts``, ``x_t`` and ``pred_x0``) whose ``x_t`` holds K >= 1
    states, shape (K, B, ...), ``pred_x0`` the same shape, and one distinct timestep per state.

    :return: the original timesteps (``timesteps``, else ``ts``), a LongTensor (K,).

    Taught in chapter 10.
    """
    if isinstance(trajectory, tuple) and trajectory and hasattr(trajectory[0], "x_t"):
        raise TypeError(
            f"{name} is a pair (Trajectory, metadata), as load_trajectory returns: pass "
            f"load_trajectory(...)[0]"
        )
    for attr in ("x_t", "pred_x0", "ts"):
        if not hasattr(trajectory, attr):
            raise TypeError(
                f"{name} must be a ddpm_lib Trajectory (ts, x_t, pred_x0), e.g. from load_trajectory() "
                f"or sample(..., record=[...]); got {type(trajectory).__name__}"
            )
    xs, x0s = trajectory.x_t, trajectory.pred_x0
    if not isinstance(xs, torch.Tensor) or xs.ndim < 2 or xs.shape[0] == 0:
        raise ValueError(
            f"{name}.x_t must be states of shape (K, B, ...) with K >= 1, got "
            f"{tuple(xs.shape) if isinstance(xs, torch.Tensor) else type(xs).__name__}"
        )
    if not isinstance(x0s, torch.Tensor) or tuple(x0s.shape) != tuple(xs.shape):
        raise ValueError(
            f"{name}.pred_x0 must have x_t's shape {tuple(xs.shape)}, got "
            f"{tuple(x0s.shape) if isinstance(x0s, torch.Tensor) else type(x0s).__name__}"
        )
    ts = trajectory.timesteps if getattr(trajectory, "timesteps", None) is not None else trajectory.ts
    ts = torch.as_tensor(ts).long()
    if ts.shape != (xs.shape[0],):
        raise ValueError(f"{name} has {xs.shape[0]} states but {ts.numel()} timesteps")
    if len(set(ts.tolist())) != ts.numel():
        raise ValueError(f"{name}'s timesteps must be distinct, got {ts.tolist()}")
    return ts


def predicted_eps(trajectory, schedule=None) -> torch.Tensor:
    """The network's eps prediction at every recorded state, from x_t and the predicted x_0.

    eps_theta = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t): DDPM Eq. 4 (x_t = sqrt(abar_t) x_0 +
    sqrt(1 - abar_t) eps) solved for eps, exact for a network that predicts eps (x0_hat was made from
    eps_theta by the same equation). Computed in float64 with :meth:`GaussianDiffusion.pred_eps_from_x0`;
    NaN at t = 0, where no prediction is made. A stored trajectory keeps x_t and x0_hat, not eps.

    :param trajectory: a :class:`Trajectory` with original timesteps in ``timesteps`` (or ``ts``).
    :param schedule: the sampler's original :class:`NoiseSchedule` (or its GaussianDiffusion);
        default: DDPM's linear schedule, T = 1000.
    :return: a float32 tensor shaped like ``trajectory.x_t``, (K, B, ...).

    Taught in chapter 10.
    """
    ts = check_trajectory(trajectory)
    s = schedule_of(schedule)
    if int(ts.max()) > s.T or int(ts.min()) < 0:
        raise ValueError(
            f"the trajectory's timesteps lie in {int(ts.min())}..{int(ts.max())}, outside 0..T = "
            f"0..{s.T} of the schedule given"
        )
    d = GaussianDiffusion(s)
    out = torch.full(trajectory.x_t.shape, float("nan"), dtype=torch.float32)
    for k, t in enumerate(ts.tolist()):
        if t == 0:
            continue
        x = trajectory.x_t[k].double()
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        out[k] = d.pred_eps_from_x0(x, tt, trajectory.pred_x0[k].double()).float()
    return out


# ---- the one sampling entry point ----------------------------------------------------------
METHODS = ("ancestral", "respaced", "ddim")
DEFAULT_STEPS = {"respaced": 100, "ddim": 50}


def sampler_timesteps(diffusion: GaussianDiffusion, method: str, steps: Optional[int]) -> list[int]:
    """The original timesteps at which a sampler of :func:`generate` has a state (0 is the result).

    Taught in chapter 10.
    """
    if method == "ancestral":
        return list(range(diffusion.T + 1))
    if method == "respaced":
        return diffusion.schedule.respace(steps).timesteps.tolist()
    return [0, *ddim_timesteps(diffusion.T, steps).tolist()]


def snap_record(record: Sequence[int], available: list[int], T: int) -> list[int]:
    """Each timestep of ``record`` (0..T) moved to the nearest one in ``available``, with a warning.

    Returns them distinct, in decreasing order.

    Taught in chapter 10.
    """
    out = []
    for r in record:
        r = int(r)
        if not 0 <= r <= T:
            raise ValueError(f"--record timesteps must lie in 0..T = 0..{T}, got {r}")
        near = min(available, key=lambda a: (abs(a - r), -a))
        if near != r:
            warnings.warn(
                f"timestep {r} is not on this sampler's grid; recording t = {near} instead", stacklevel=4
            )
        out.append(near)
    return sorted(set(out), reverse=True)


def check_sampler_args(n, method: str = "ancestral", eta: float = 0.0, batch_size=None) -> None:
    """Refuse arguments of :func:`generate` that need no model to be found wrong (so that a command
    line can check them before loading anything): ``n`` and ``batch_size`` positive integers
    (``batch_size`` None: all at once), ``method`` one of :data:`METHODS`, DDIM's ``eta`` finite and >= 0.

    Taught in chapter 10.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, v in (("n", n), ("batch_size", batch_size)):
        if v is None and name == "batch_size":
            continue
        try:
            ok = not isinstance(v, bool) and operator.index(v) >= 1
        except TypeError:
            ok = False
        if not ok:
            what = "a positive integer" + (" or None (all at once)" if name == "batch_size" else "")
            raise ValueError(f"{name} must be {what}, got {v!r}")
    if method == "ddim":
        _check_eta(eta)


@torch.no_grad()
def generate(
    model,
    diffusion: GaussianDiffusion,
    shape,
    n: int,
    *,
    method: str = "ancestral",
    steps: Optional[int] = None,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    clip: bool = False,
    record: Optional[Sequence[int]] = None,
    device=None,
    batch_size: Optional[int] = None,
    progress: bool = True,
):
    """The one sampling entry point: ``n`` samples of one example's ``shape``, (C, H, W) or (D,), in batches.

    Returns (samples, trajectory): the samples (n, *shape), float32 on the CPU, and a
    :class:`Trajectory` or None. Used by ``ddpm-sample`` (:func:`ddpm_lib.sample.sample_from_checkpoint`),
    ``Trainer.sample`` and the FCD of :mod:`ddpm_lib.evaluate`. ``method``: "ancestral" (DDPM
    Algorithm 2, all T steps; ``steps`` must be None or T), "respaced" (DDPM Algorithm 2 on ``steps``
    evenly spaced timesteps, Nichol & Dhariwal 2021) or "ddim" (``steps`` timesteps, ``eta``; DDIM
    Eq. 12). Noise comes from ``generator`` (default: a CPU generator seeded 0), drawn batch after
    batch, so a seed and a batch size give the same samples on any device. ``record`` holds original
    timesteps (0 = the result); each is moved to the nearest one the sampler visits. ``device``: where
    to sample (default: the model's).

    Taught in chapter 10.
    """
    check_sampler_args(n, method, eta, batch_size)
    if method == "ancestral":
        if steps not in (None, diffusion.T):
            raise ValueError(
                f"ancestral sampling runs all T = {diffusion.T} steps; for {steps} steps use "
                f"method='respaced' (or 'ddim')"
            )
        steps = diffusion.T
    else:
        steps = min(DEFAULT_STEPS[method], diffusion.T) if steps is None else int(steps)
        if not 1 <= steps <= diffusion.T:
            raise ValueError(f"steps must be in 1..T = 1..{diffusion.T}, got {steps}")
    if record is not None:
        ts = sampler_timesteps(diffusion, method, steps)
        record = snap_record(record, ts, diffusion.T)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if device is None:  # where the model is (a plain function: the CPU)
        device = next((p.device for p in getattr(model, "parameters", lambda: [])()), torch.device("cpu"))
    bs = n if batch_size is None else operator.index(batch_size)
    chunks, trajs = [], []
    done = 0
    while done < n:
        b = min(bs, n - done)
        shp = (b, *shape)
        if method == "ancestral":
            out = diffusion.sample(
                model, shp, generator=gen, progress=progress, clip_x0=clip, device=device, record=record
            )
        elif method == "respaced":
            sp = diffusion.respace(steps)
            rec = None
            if record is not None:  # original timesteps -> indices of the respaced schedule
                idx = {t: k for k, t in enumerate(sp.schedule.timesteps.tolist())}
                rec = [idx[t] for t in record]
            out = sp.sample(
                model, shp, generator=gen, progress=progress, clip_x0=clip, device=device, record=rec
            )
        else:
            out = ddim_sample(
                model,
                diffusion,
                shp,
                steps=steps,
                eta=eta,
                generator=gen,
                clip_x0=clip,
                progress=progress,
                device=device,
                record=record,
            )
        x, traj = out if record is not None else (out, None)
        chunks.append(x.float().cpu())
        if traj is not None:
            trajs.append(traj)
        done += b
    samples = torch.cat(chunks)
    traj = None
    if trajs:
        t0 = trajs[0]
        traj = Trajectory(
            ts=t0.ts.clone(),
            x_t=torch.cat([t.x_t for t in trajs], dim=1),
            pred_x0=torch.cat([t.pred_x0 for t in trajs], dim=1),
            timesteps=t0.timesteps.clone() if t0.timesteps is not None else t0.ts.clone(),
        )
    return samples, traj
