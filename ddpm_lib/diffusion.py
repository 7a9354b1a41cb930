"""The Gaussian diffusion model of Ho et al. 2020 (DDPM), in the paper's indexing.

Forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), t = 1..T, x_0 data
(DDPM Eq. 2). Reverse process p(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) (DDPM Eq. 1),
with mu_theta given through the network's prediction of eps, x_0 or the mean itself.

A *model* is any callable ``model(x_t, t) -> output`` with x_t of shape (B, ...) and t a
LongTensor of shape (B,) holding the paper's timesteps (for a respaced schedule, the original
timesteps). For learned variances the output has twice the channels of x (dim 1): prediction,
then v.

Equations are cited by each paper's own numbering: "DDPM Eq. N" is Ho, Jain & Abbeel 2020,
"DDIM Eq. N" is Song, Meng & Ermon 2021, and Nichol & Dhariwal 2021 is improved DDPM.

Taught in chapters 03, 04, 06, 07 and 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Optional

import torch

from .gaussians import (
    discretized_gaussian_log_likelihood,
    gaussian_log_likelihood,
    mean_flat,
    normal_kl,
    sum_flat,
)
from .schedules import NoiseSchedule

__all__ = [
    "GaussianDiffusion",
    "GaussianParams",
    "Trajectory",
    "PREDICTIONS",
    "VARIANCES",
    "LOSSES",
    "DECODERS",
]

PREDICTIONS = ("eps", "x0", "mean")
VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")
LOSSES = ("simple", "vlb", "hybrid")
DECODERS = ("discretized", "gaussian")


class GaussianParams(NamedTuple):
    """A diagonal Gaussian: mean, variance and log variance, each broadcastable to x.

    What :meth:`GaussianDiffusion.q_mean_variance` (DDPM Eq. 4) and :meth:`GaussianDiffusion.q_posterior`
    (DDPM Eqs. 6-7) return.

    Taught in chapters 03 and 04.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor


@dataclass
class Trajectory:
    """States recorded while sampling: ``ts`` (K,) and, for each, x_t and the predicted x_0.

    ``ts`` are indices of the schedule that sampled (for a respaced one, ``timesteps`` holds the
    original timesteps they stand for; otherwise the two agree). ``x_t[k]`` is the state *at*
    ``ts[k]`` (before the step from it), so ``x_t`` has shape (K, B, ...); ``pred_x0[k]`` is the
    model's x_0 prediction from that state (NaN where none was made, at t = 0).

    Taught in chapter 10.
    """

    ts: torch.Tensor
    x_t: torch.Tensor
    pred_x0: torch.Tensor
    timesteps: Optional[torch.Tensor] = None

    def to_tensors(self) -> dict:
        """A dict of tensors for ``safetensors.save_file``: ``ts``, ``timesteps``, ``x_t`` and ``pred_x0``.

        Taught in chapter 10.
        """
        return {
            "ts": self.ts,
            "timesteps": self.ts if self.timesteps is None else self.timesteps,
            "x_t": self.x_t.contiguous(),
            "pred_x0": self.pred_x0.contiguous(),
        }


def noise_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """eps ~ N(0, I) shaped like x, returned on x's device.

    Drawn on the generator's device, so that a CPU generator gives the same numbers whatever x's device.

    Taught in chapter 03.
    """
    dev = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)


def initial_noise(
    shape, generator: Optional[torch.Generator] = None, device=None, noise: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """x_T ~ N(0, I) of ``shape`` (B, ...), the start of every sampling loop (DDPM Algorithm 2, line 1).

    Drawn on the generator's device (else ``device``, else the CPU), so a seeded CPU generator gives
    the same x_T on any device; then moved to ``device``. A given ``noise`` is used instead (moved
    to ``device``), after checking it has ``shape`` (unless ``shape`` is None).

    Taught in chapters 06 and 10.
    """
    if noise is None:
        dev = generator.device if generator is not None else (device or "cpu")
        x = torch.randn(tuple(shape), generator=generator, device=dev)
        return x.to(device) if device is not None else x
    if shape is not None and tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise must have shape {tuple(shape)}, got {tuple(noise.shape)}")
    return noise if device is None else noise.to(device)


def progress_bar(iterable, desc: str, enabled: bool = True):
    """``iterable`` with a progress bar (tqdm) that disappears when done; as is when not ``enabled``.

    Plumbing of the sampling loops and of the bound: no chapter teaches it.
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


class GaussianDiffusion:
    """DDPM's forward process, posterior, reverse parameterizations, losses and bound.

    :param schedule: a :class:`NoiseSchedule` (its tables are float64; results come in x's dtype).
    :param prediction: what the network predicts: ``"eps"`` (DDPM Eq. 11), ``"x0"``, or ``"mean"`` (mu~).
    :param variance: sigma_t^2 of p(x_{t-1}|x_t): ``"fixed_large"`` = beta_t, ``"fixed_small"`` = beta~_t
        (at t = 1, beta~_2, since beta~_1 = 0), ``"learned"`` (the network outputs log sigma^2), or
        ``"learned_range"`` (Nichol & Dhariwal 2021 Eq. 15: log sigma^2 = v log beta_t + (1 - v) log beta~_t
        with v = (output + 1) / 2).
    :param loss: ``"simple"`` (the MSE on the predicted quantity: DDPM Eq. 14 for eps), ``"vlb"`` (the
        true bound term L_{t-1}, T times, in bits/dim: its expectation over t is (bound - L_T) in
        bits/dim), or ``"hybrid"`` (simple + ``hybrid_lambda`` * vlb with the mean's gradient stopped,
        Nichol & Dhariwal 2021 Sec. 3.1; requires a learned variance).
    :param decoder: L_0's decoder: ``"discretized"`` (DDPM Eq. 13, 8-bit data in [-1, 1]) or ``"gaussian"``
        (a density, for continuous data such as the swiss roll).
    :param hybrid_lambda: the weight of the bound in the hybrid loss (0.001, as Nichol & Dhariwal 2021).

    Taught in chapters 03, 04, 06, 07 and 11.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        prediction: str = "eps",
        variance: str = "fixed_large",
        loss: str = "simple",
        decoder: str = "discretized",
        hybrid_lambda: float = 1e-3,
    ):
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        for name, value, allowed in (
            ("prediction", prediction, PREDICTIONS),
            ("variance", variance, VARIANCES),
            ("loss", loss, LOSSES),
            ("decoder", decoder, DECODERS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if loss == "hybrid" and not variance.startswith("learned"):
            raise ValueError(
                "loss='hybrid' trains the variance by the bound: it needs variance='learned' "
                f"or 'learned_range', got variance={variance!r}"
            )
        self.schedule = schedule
        self.T = schedule.T
        self.prediction = prediction
        self.variance = variance
        self.loss = loss
        self.decoder = decoder
        self.hybrid_lambda = float(hybrid_lambda)
        s = schedule
        # sigma_t^2 for the fixed choices (index t, float64); [0] unused
        self._fixed_large_var = s.betas.clone()
        self._fixed_large_logvar = s.betas.log()
        self._fixed_small_var = s.posterior_log_variance_clipped.exp()
        self._fixed_small_logvar = s.posterior_log_variance_clipped.clone()
        self._eps_mse_weight = {
            name: s.betas**2 / (2 * var * s.alphas * (1 - s.alpha_bars))
            for name, var in (("fixed_large", self._fixed_large_var), ("fixed_small", self._fixed_small_var))
        }
        self._device_tables: dict = {}

    # ---- configuration ----------------------------------------------------------------
    @property
    def learned_variance(self) -> bool:
        """True for ``"learned"`` and ``"learned_range"``: the network outputs a variance too.

        Taught in chapter 11.
        """
        return self.variance.startswith("learned")

    def config(self) -> dict:
        """A JSON-able description, stored with checkpoints; :meth:`from_config` rebuilds the diffusion.

        Taught in chapter 09.
        """
        return {
            "schedule": self.schedule.to_dict(),
            "prediction": self.prediction,
            "variance": self.variance,
            "loss": self.loss,
            "decoder": self.decoder,
            "hybrid_lambda": self.hybrid_lambda,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> "GaussianDiffusion":
        """The diffusion that :meth:`config` described (defaults for the fields older files lack).

        Taught in chapter 09.
        """
        return cls(
            NoiseSchedule.from_dict(cfg["schedule"]),
            prediction=cfg["prediction"],
            variance=cfg["variance"],
            loss=cfg.get("loss", "simple"),
            decoder=cfg.get("decoder", "discretized"),
            hybrid_lambda=cfg.get("hybrid_lambda", 1e-3),
        )

    def respace(self, steps) -> "GaussianDiffusion":
        """The same model on a subsequence of timesteps (see :meth:`NoiseSchedule.respace`).

        Taught in chapter 10.
        """
        return GaussianDiffusion(
            self.schedule.respace(steps),
            prediction=self.prediction,
            variance=self.variance,
            loss=self.loss,
            decoder=self.decoder,
            hybrid_lambda=self.hybrid_lambda,
        )

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion({self.schedule!r}, prediction={self.prediction!r}, variance={self.variance!r}, "
            f"loss={self.loss!r}, decoder={self.decoder!r})"
        )

    # ---- helpers -------------------------------------------------------------------------
    def _on(self, table: torch.Tensor, device) -> torch.Tensor:
        """``table`` on ``device``, copied once (a copy per call would stall a GPU stream)."""
        device = torch.device(device)
        if device.type == "cpu":
            return table
        key = id(table)
        held, copies = self._device_tables.setdefault(key, (table, {}))  # holding table keeps its id unique
        if device not in copies:
            copies[device] = table.to(device)
        return copies[device]

    def _extract(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table[t] in x's dtype and device, shaped (B, 1, ..., 1) to broadcast against x.

        ``table`` must be a table kept by the schedule or this object (copies are cached by identity).
        """
        out = self._on(table, t.device)[t].to(device=x.device, dtype=x.dtype)
        return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))

    def _check(
        self, x: torch.Tensor, t: torch.Tensor, name: str = "x_t", allow_zero: bool = False
    ) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor of shape (B, ...), got "
                f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}"
            )
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have shape (B, ...) with at least 2 dimensions, got {tuple(x.shape)}"
            )
        t = self.schedule.check_t(t, allow_zero=allow_zero)
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},) to match {name}, got {tuple(t.shape)}"
            )
        return t

    def _check_data(self, x0: torch.Tensor) -> None:
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
            raise TypeError("x0 must be a floating-point tensor of shape (B, ...)")
        if x0.ndim < 2:
            raise ValueError(f"x0 must have shape (B, ...) with at least 2 dimensions, got {tuple(x0.shape)}")
        # a range check reads values, which stalls a GPU stream: data are checked where they are on the CPU
        if (
            self.decoder == "discretized"
            and x0.device.type == "cpu"
            and (x0.min() < -1 - 1e-5 or x0.max() > 1 + 1e-5)
        ):
            raise ValueError(
                f"x0 must lie in [-1, 1] for the discretized decoder (images scaled by x/127.5 - 1); got values in "
                f"[{float(x0.min()):.4g}, {float(x0.max()):.4g}]. For continuous data use decoder='gaussian'."
            )

    def model_t(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep the network receives for index t: the original t for a respaced schedule.

        Taught in chapter 10.
        """
        return self._on(self.schedule.timesteps, t.device)[t]

    def sample_t(self, batch: int, device=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """t ~ Uniform{1..T}, shape (batch,) (DDPM Algorithm 1, line 3).

        Taught in chapter 06.
        """
        dev = generator.device if generator is not None else device
        return torch.randint(1, self.T + 1, (batch,), generator=generator, device=dev).to(device)

    def _split_output(self, model_output: torch.Tensor, x_t: torch.Tensor):
        C = x_t.shape[1]
        want = 2 * C if self.learned_variance else C
        if (
            model_output.shape[0] != x_t.shape[0]
            or model_output.shape[1] != want
            or model_output.shape[2:] != x_t.shape[2:]
        ):
            raise ValueError(
                f"model_output must have shape {(x_t.shape[0], want, *x_t.shape[2:])} for prediction="
                f"{self.prediction!r} and variance={self.variance!r}, got {tuple(model_output.shape)}"
            )
        if self.learned_variance:
            return model_output[:, :C], model_output[:, C:]
        return model_output, None

    # ---- forward process ----------------------------------------------------------------
    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> GaussianParams:
        """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (DDPM Eq. 4).

        x0 has shape (B, ...) and t shape (B,), in 1..T. Returns :class:`GaussianParams`, each shaped
        like x0 (the log variance is log(1 - abar_t)).

        Taught in chapter 03.
        """
        t = self._check(x0, t, "x0")
        s = self.schedule
        mean = self._extract(s.sqrt_alpha_bars, t, x0) * x0
        var = self._extract(s.one_minus_alpha_bars, t, x0).expand_as(x0)
        return GaussianParams(mean, var, self._extract(s.log_one_minus_alpha_bars, t, x0).expand_as(x0))

    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I) (DDPM Eq. 4, reparameterized).

        :param x0: the data, (B, ...).
        :param t: the timesteps, (B,), in 1..T.
        :param noise: eps, shaped like x0; drawn from ``generator`` if None.
        :return: x_t, shaped like x0.

        Taught in chapter 03.
        """
        t = self._check(x0, t, "x0")
        if noise is None:
            noise = noise_like(x0, generator)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        s = self.schedule
        return (
            self._extract(s.sqrt_alpha_bars, t, x0) * x0
            + self._extract(s.sqrt_one_minus_alpha_bars, t, x0) * noise
        )

    def q_step(
        self,
        x_prev: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """One forward step x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (DDPM Eq. 2).

        x_prev is x_{t-1}, of shape (B, ...), and t has shape (B,), in 1..T; ``noise`` (eps, shaped like
        x_prev) is drawn from ``generator`` if None. Returns x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps.

        Taught in chapters 01 and 02.
        """
        t = self._check(x_prev, t, "x_prev")
        if noise is None:
            noise = noise_like(x_prev, generator)
        s = self.schedule
        return (
            self._extract(s.sqrt_alphas, t, x_prev) * x_prev + self._extract(s.sqrt_betas, t, x_prev) * noise
        )

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> GaussianParams:
        """q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) (DDPM Eqs. 6-7).

        x0 and x_t have one shape (B, ...), t has shape (B,). Returns :class:`GaussianParams`; the
        variance is beta~_t (0 at t = 1) and the log variance is clipped at t = 1 to log beta~_2, as
        beta~_1 = 0 has no log.

        Taught in chapter 04.
        """
        t = self._check(x_t, t)
        if x0.shape != x_t.shape:
            raise ValueError(
                f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}"
            )
        s = self.schedule
        mean = (
            self._extract(s.posterior_mean_coef1, t, x_t) * x0
            + self._extract(s.posterior_mean_coef2, t, x_t) * x_t
        )
        var = self._extract(s.posterior_variance, t, x_t).expand_as(x_t)
        logvar = self._extract(s.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        return GaussianParams(mean, var, logvar)

    # ---- conversions between parameterizations -------------------------------------------
    def pred_x0_from_eps(self, x_t, t, eps):
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t): DDPM Eq. 4 solved for x_0.

        Taught in chapters 06 and 10.
        """
        s = self.schedule
        return (
            self._extract(s.sqrt_recip_alpha_bars, t, x_t) * x_t
            - self._extract(s.sqrt_recipm1_alpha_bars, t, x_t) * eps
        )

    def pred_eps_from_x0(self, x_t, t, x0):
        """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t): DDPM Eq. 4 solved for eps.

        Taught in chapter 10.
        """
        s = self.schedule
        return (self._extract(s.sqrt_recip_alpha_bars, t, x_t) * x_t - x0) / self._extract(
            s.sqrt_recipm1_alpha_bars, t, x_t
        )

    def pred_x0_from_mean(self, x_t, t, mean):
        """x_0 = (mu~ - ct_t x_t) / c0_t: the posterior mean of DDPM Eq. 7 solved for x_0.

        Used when the network predicts the mean (``prediction="mean"``).

        Taught in chapter 11.
        """
        s = self.schedule
        return (mean - self._extract(s.posterior_mean_coef2, t, x_t) * x_t) / self._extract(
            s.posterior_mean_coef1, t, x_t
        )

    def mean_from_eps(self, x_t, t, eps):
        """mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) (DDPM Eq. 11).

        Taught in chapter 06.
        """
        s = self.schedule
        return (x_t - self._extract(s.eps_coef, t, x_t) * eps) / self._extract(s.sqrt_alphas, t, x_t)

    def eps_mse_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The weight of DDPM Eq. 12, beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)).

        L_{t-1} = weight * ||eps - eps_theta||^2 + C for a fixed variance sigma_t^2 (``fixed_small`` or
        ``fixed_large``); L_simple (DDPM Eq. 14) drops the weight. t of shape (B,) gives float64 weights
        of shape (B,).

        Taught in chapter 06.
        """
        if self.learned_variance:
            raise ValueError("eps_mse_weight needs a fixed variance (fixed_small or fixed_large)")
        t = self.schedule.check_t(t)
        return self._on(self._eps_mse_weight[self.variance], t.device)[t]

    # ---- the reverse process ------------------------------------------------------------
    def model_variance(self, x_t: torch.Tensor, t: torch.Tensor, var_output: Optional[torch.Tensor] = None):
        """(variance, log_variance) of p(x_{t-1} | x_t), each shaped like x_t.

        Fixed: beta_t (``fixed_large``) or beta~_t (``fixed_small``, beta~_2 at t = 1). Learned: log sigma^2
        is ``var_output`` itself, or v log beta_t + (1 - v) log beta~_t with v = (``var_output`` + 1) / 2
        (Nichol & Dhariwal 2021 Eq. 15).

        Taught in chapters 06, 10 and 11.
        """
        if self.variance == "fixed_large":
            return (
                self._extract(self._fixed_large_var, t, x_t).expand_as(x_t),
                self._extract(self._fixed_large_logvar, t, x_t).expand_as(x_t),
            )
        if self.variance == "fixed_small":
            return (
                self._extract(self._fixed_small_var, t, x_t).expand_as(x_t),
                self._extract(self._fixed_small_logvar, t, x_t).expand_as(x_t),
            )
        if self.variance == "learned":
            logvar = var_output
        else:  # learned_range
            frac = (var_output + 1) / 2
            logvar = frac * self._extract(self._fixed_large_logvar, t, x_t) + (1 - frac) * self._extract(
                self._fixed_small_logvar, t, x_t
            )
        return logvar.exp(), logvar

    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_x0: bool = False
    ) -> dict:
        """p(x_{t-1} | x_t) from the network's output: its mean, variance and the predicted x_0 and eps.

        Returns a dict with ``mean``, ``variance``, ``log_variance``, ``pred_x0`` and ``pred_eps``,
        each shaped like x_t. The mean is mu~(x_t, x0_hat) of DDPM Eq. 7, which for eps prediction
        without clipping is DDPM Eq. 11. With ``clip_x0`` the predicted x_0 is clipped to [-1, 1]
        before the mean is formed (for prediction="mean" the mean is the network's and only pred_x0 is
        clipped).

        Taught in chapters 06 and 10.
        """
        t = self._check(x_t, t)
        out, var_out = self._split_output(model_output, x_t)
        variance, log_variance = self.model_variance(x_t, t, var_out)
        if self.prediction == "mean":
            mean = out
            pred_x0 = self.pred_x0_from_mean(x_t, t, mean)
            if clip_x0:
                pred_x0 = pred_x0.clamp(-1, 1)
        else:
            pred_x0 = self.pred_x0_from_eps(x_t, t, out) if self.prediction == "eps" else out
            if clip_x0:
                pred_x0 = pred_x0.clamp(-1, 1)
            # mu~(x_t, x0_hat): for eps prediction without clipping this equals Eq. 11 exactly
            s = self.schedule
            mean = (
                self._extract(s.posterior_mean_coef1, t, x_t) * pred_x0
                + self._extract(s.posterior_mean_coef2, t, x_t) * x_t
            )
        pred_eps = (
            out if (self.prediction == "eps" and not clip_x0) else self.pred_eps_from_x0(x_t, t, pred_x0)
        )
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_x0": pred_x0,
            "pred_eps": pred_eps,
        }

    def p_sample(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        clip_x0: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """One reverse step, DDPM Algorithm 2, line 4: x_{t-1} = mu_theta + sigma_t z.

        z ~ N(0, I) for t > 1 and z = 0 at t = 1 (line 3); ``noise`` gives z instead of drawing it.
        x_t has shape (B, ...), t shape (B,); the result is shaped like x_t.

        Taught in chapters 06 and 10.
        """
        return self._p_sample(model_output, x_t, t, noise, clip_x0, generator)[0]

    def _p_sample(self, model_output, x_t, t, noise, clip_x0, generator):
        p = self.p_mean_variance(model_output, x_t, t, clip_x0=clip_x0)
        if noise is None:
            noise = noise_like(x_t, generator)
        nonzero = (t > 1).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        return p["mean"] + nonzero * torch.exp(0.5 * p["log_variance"]) * noise, p

    def ddim_step(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        t_prev,
        eta: float = 0.0,
        noise: Optional[torch.Tensor] = None,
        clip_x0: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """One DDIM step from t to t_prev < t (DDIM Eq. 12), t_prev = 0 giving x_0.

        x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z, with
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev). eta = 1 gives
        the DDPM posterior variance for the step; eta = 0 is deterministic. With ``clip_x0`` eps_hat
        is recomputed from the clipped x0_hat.

        Taught in chapter 10.
        """
        t = self._check(x_t, t)
        if not isinstance(t_prev, torch.Tensor):
            t_prev = torch.full_like(t, int(t_prev))
        t_prev = self.schedule.check_t(t_prev, "t_prev", allow_zero=True)
        if (t_prev >= t).any():
            raise ValueError("t_prev must be smaller than t in every position")
        if not (math.isfinite(eta) and eta >= 0):  # NaN would make every later x NaN, without an error
            raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
        p = self.p_mean_variance(model_output, x_t, t, clip_x0=clip_x0)
        x0_hat, eps_hat = p["pred_x0"], p["pred_eps"]
        s = self.schedule
        ab = self._extract(s.alpha_bars, t, x_t)
        ab_prev = self._extract(s.alpha_bars, t_prev, x_t)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        x_prev = ab_prev.sqrt() * x0_hat + torch.sqrt((1 - ab_prev - sigma**2).clamp(min=0)) * eps_hat
        if eta > 0:
            if noise is None:
                noise = noise_like(x_t, generator)
            x_prev = x_prev + sigma * noise
        return x_prev

    def ddim_reverse_step(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, t_next, clip_x0: bool = False
    ) -> torch.Tensor:
        """Deterministic DDIM encoding from t to t_next > t.

        sqrt(abar_next) x0_hat + sqrt(1 - abar_next) eps_hat: DDIM Eq. 12 with eta = 0, run upwards in t,
        as :func:`ddim_encode` uses it. Chapter 10 teaches the step downwards.

        Taught in chapter 10.
        """
        t = self._check(x_t, t)
        if not isinstance(t_next, torch.Tensor):
            t_next = torch.full_like(t, int(t_next))
        t_next = self.schedule.check_t(t_next, "t_next")
        if (t_next <= t).any():
            raise ValueError("t_next must be larger than t in every position")
        p = self.p_mean_variance(model_output, x_t, t, clip_x0=clip_x0)
        ab_next = self._extract(self.schedule.alpha_bars, t_next, x_t)
        return ab_next.sqrt() * p["pred_x0"] + (1 - ab_next).sqrt() * p["pred_eps"]

    # ---- losses and the bound -------------------------------------------------------------
    def _vb_term(self, out_mean: dict, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """L_{t-1} per example in nats, summed over dimensions: KL for t > 1, -log p(x_0|x_1) at t = 1."""
        true = self.q_posterior(x0, x_t, t)
        kl = sum_flat(normal_kl(true.mean, true.log_variance, out_mean["mean"], out_mean["log_variance"]))
        if self.decoder == "discretized":
            nll = -sum_flat(
                discretized_gaussian_log_likelihood(x0, out_mean["mean"], 0.5 * out_mean["log_variance"])
            )
        else:
            nll = -sum_flat(gaussian_log_likelihood(x0, out_mean["mean"], out_mean["log_variance"]))
        return torch.where(t == 1, nll, kl)

    def training_losses(
        self,
        model: Callable,
        x0: torch.Tensor,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict:
        """DDPM Algorithm 1's loss for a batch, with its parts.

        Returns a dict of (B,) tensors: ``loss`` (the configured objective), ``mse`` (mean over
        dimensions of the squared error of the predicted quantity), ``vb`` (L_{t-1} in bits/dim; present
        when the objective uses it) and ``t``.

        Taught in chapters 06, 09 and 11.
        """
        self._check_data(x0)
        B = x0.shape[0]
        if t is None:
            t = self.sample_t(B, x0.device, generator)
        t = self._check(x0, t, "x0")
        if noise is None:
            noise = noise_like(x0, generator)
        x_t = self.q_sample(x0, t, noise)
        model_output = model(x_t, self.model_t(t))
        out, var_out = self._split_output(model_output, x_t)
        terms = {"t": t}
        target = {"eps": noise, "x0": x0}.get(self.prediction)
        if target is None:
            target = self.q_posterior(x0, x_t, t).mean
        terms["mse"] = mean_flat((target - out) ** 2)
        if self.loss == "simple":
            terms["loss"] = terms["mse"]
            return terms
        D = x0[0].numel()
        if self.loss == "hybrid":
            # the bound trains only the variance: stop the gradient through the mean (N&D 2021 Sec. 3.1)
            frozen = torch.cat([out.detach(), var_out], dim=1)
            p = self.p_mean_variance(frozen, x_t, t)
        else:
            p = self.p_mean_variance(model_output, x_t, t)
        terms["vb"] = self._vb_term(p, x0, x_t, t) / (D * math.log(2.0))
        if self.loss == "vlb":
            terms["loss"] = self.T * terms["vb"]
        else:
            terms["loss"] = terms["mse"] + self.hybrid_lambda * self.T * terms["vb"]
        return terms

    def training_loss(
        self,
        model: Callable,
        x0: torch.Tensor,
        t: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """The per-example loss, shape (B,), of the configured objective (DDPM Algorithm 1).

        With ``loss="simple"`` and eps prediction it is L_simple, DDPM Eq. 14.

        Taught in chapter 06.
        """
        return self.training_losses(model, x0, t, noise, generator)["loss"]

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) of DDPM Eq. 5 per example, in nats summed over dimensions: (B,).

        Taught in chapter 03.
        """
        t = torch.full((x0.shape[0],), self.T, dtype=torch.long, device=x0.device)
        q = self.q_mean_variance(x0, t)
        return sum_flat(normal_kl(q.mean, q.log_variance, torch.zeros_like(x0), torch.zeros_like(x0)))

    @torch.no_grad()
    def vlb_terms(
        self,
        model: Callable,
        x0: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
        clip_x0: bool = False,
    ) -> torch.Tensor:
        """Every term of the bound (DDPM Eq. 5) for each example: (B, T + 1) in nats, summed over dimensions.

        Column 0 is L_0 = -log p(x_0 | x_1); column j, 1 <= j < T, is
        L_j = KL(q(x_j | x_{j+1}, x_0) || p(x_j | x_{j+1})); column T is L_T. Each term uses one
        sample x_{j+1} ~ q(x_{j+1} | x_0) (the KLs themselves are exact).

        Taught in chapters 04 and 07.
        """
        self._check_data(x0)
        B = x0.shape[0]
        terms = torch.zeros(B, self.T + 1, dtype=torch.float64, device=x0.device)
        steps = progress_bar(range(self.T, 0, -1), "bound terms", progress)
        for tt in steps:
            t = torch.full((B,), tt, dtype=torch.long, device=x0.device)
            x_t = self.q_sample(x0, t, generator=generator)
            p = self.p_mean_variance(model(x_t, self.model_t(t)), x_t, t, clip_x0=clip_x0)
            terms[:, tt - 1] = self._vb_term(p, x0, x_t, t).double()
        terms[:, self.T] = self.prior_kl(x0).double()
        return terms

    def bits_per_dim(
        self,
        model: Callable,
        x0: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """The whole bound L_T + sum_t L_{t-1} + L_0 (DDPM Eq. 5) per example, in bits per dimension: (B,).

        Taught in chapter 07.
        """
        D = x0[0].numel()
        return self.vlb_terms(model, x0, generator=generator, progress=progress).sum(1) / (D * math.log(2.0))

    # ---- sampling (Algorithm 2) -------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        model: Callable,
        shape,
        generator: Optional[torch.Generator] = None,
        progress: bool = True,
        noise: Optional[torch.Tensor] = None,
        clip_x0: bool = False,
        device=None,
        record: Optional[Iterable[int]] = None,
        t_start: Optional[int] = None,
        condition: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None,
        step_noise: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None,
    ):
        """DDPM Algorithm 2: x_T ~ N(0, I); for t = T..1, x_{t-1} = p_sample(model(x_t, t), x_t, t).

        ``shape`` is (B, ...), the samples' shape. ``noise`` gives x_T (or x_{t_start}) instead of
        drawing it; ``t_start`` starts the chain below T. With ``record`` (timesteps in 0..T) returns
        ``(x_0, Trajectory)``; else x_0 of the given shape.
        Hooks for :mod:`ddpm_lib.sampling`: ``condition(x, t)`` replaces the state at each t
        (conditioning by replacement), ``step_noise(t, x)`` supplies the z of the step from t.

        Taught in chapters 06 and 10.
        """
        t_start = self.T if t_start is None else int(t_start)
        if not 1 <= t_start <= self.T:
            raise ValueError(f"t_start must be in 1..T = 1..{self.T}, got {t_start}")
        x = initial_noise(shape, generator, device, noise)
        if condition is not None:
            x = condition(x, t_start)
        rec = Recorder(record, self.schedule)
        steps = progress_bar(range(t_start, 0, -1), "sampling", progress)
        B = x.shape[0]
        for tt in steps:
            t = torch.full((B,), tt, dtype=torch.long, device=x.device)
            z = step_noise(tt, x) if step_noise is not None else None
            x_new, p = self._p_sample(model(x, self.model_t(t)), x, t, z, clip_x0, generator)
            rec.add(tt, x, p["pred_x0"])
            x = condition(x_new, tt - 1) if condition is not None else x_new
        rec.add(0, x, None)
        return (x, rec.result()) if record is not None else x


class Recorder:
    """Collects x_t and pred_x0 at chosen timesteps of a sampling loop into a :class:`Trajectory`.

    Timesteps lie in 0..T (0 is the result); ``want`` is None when nothing is recorded.

    Taught in chapter 10.
    """

    def __init__(self, record, schedule: NoiseSchedule):
        self.schedule = schedule
        T = schedule.T
        self.want = None if record is None else sorted({int(r) for r in record}, reverse=True)
        if self.want is not None and any(not 0 <= r <= T for r in self.want):
            raise ValueError(f"record timesteps must lie in 0..T = 0..{T}")
        self.ts, self.xs, self.x0s = [], [], []

    def add(self, t, x, pred_x0):
        """Keep the state x (B, ...) and pred_x0 if t is a timestep wanted.

        A pred_x0 of None (at t = 0) is stored as NaN.

        Taught in chapter 10.
        """
        if self.want is not None and t in self.want:
            self.ts.append(t)
            self.xs.append(x.detach().cpu())
            self.x0s.append(
                pred_x0.detach().cpu() if pred_x0 is not None else torch.full_like(x.cpu(), float("nan"))
            )

    def result(self) -> Trajectory:
        """The recorded states as a :class:`Trajectory`, in the order recorded (t falling); empty if none.

        Taught in chapter 10.
        """
        if not self.ts:
            return Trajectory(torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0))
        ts = torch.tensor(self.ts)
        return Trajectory(ts, torch.stack(self.xs), torch.stack(self.x0s), self.schedule.timesteps[ts])
