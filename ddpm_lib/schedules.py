"""Noise schedules and every table derived from them, in float64, in the papers' indexing.

Every table has shape (T + 1,) and index t is the paper's t (Ho et al. 2020, DDPM):
``alpha_bars[0] == 1`` (x_0 is data), ``betas[1]`` is beta_1, ``posterior_variance[t]`` is
beta~_t (so ``posterior_variance[1] == 0``). Quantities that are undefined at t = 0 (a
division by 1 - alpha_bar_0 = 0) are stored as NaN there, so that using them by mistake shows.

Equations:
    alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s        (the notation of DDPM Eq. 4)
    beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t    (DDPM Eq. 7)
    mu~_t(x_t, x_0) = c0_t x_0 + ct_t x_t with
        c0_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
        ct_t = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)    (DDPM Eq. 7)
    SNR(t) = alpha_bar_t / (1 - alpha_bar_t)                       (Kingma et al. 2021)

Taught in chapters 00 and 03.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch

__all__ = ["NoiseSchedule", "NOISE_BOUND", "MAX_T"]

# alpha_bar_T above this means x_T still carries visible signal: L_T = KL(q(x_T|x_0) || N(0, I))
# is then far from 0 and sampling from N(0, I) starts from the wrong distribution.
NOISE_BOUND = 1e-2

# The most timesteps a stored or configured schedule may have (DDPM uses 1000, improved DDPM
# 4000): every table is T + 1 float64s and a sampler loops T times, so a T from a file is bounded.
MAX_T = 100_000


def _as_float64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).clone()


class NoiseSchedule:
    """A variance schedule beta_1..beta_T and its derived tables, float64, each of shape (T + 1,).

    Build one with :meth:`linear`, :meth:`cosine`, :meth:`quadratic` or :meth:`from_betas`.
    ``timesteps[t]`` is the original timestep that index t stands for: ``arange(T + 1)`` for a
    fresh schedule, a subsequence for a :meth:`respace`-d one (the network still receives the
    original timestep).

    :param betas: beta_1..beta_T, shape (T,), each in the open interval (0, 1).
    :param name: a label, shown by ``repr`` and kept by :meth:`to_dict`.
    :param timesteps: the original timestep of each index, shape (T + 1,); default ``arange(T + 1)``.
    :param warn: warn when alpha_bar_T > :data:`NOISE_BOUND`, i.e. when x_T still carries signal.

    Taught in chapters 00 and 03.
    """

    def __init__(self, betas: torch.Tensor, *, name: str = "custom", timesteps=None, warn: bool = True):
        betas = _as_float64(betas)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(
                f"betas must be a 1-D sequence beta_1..beta_T with T >= 1, got shape {tuple(betas.shape)}"
            )
        if not torch.isfinite(betas).all():
            raise ValueError("betas must be finite")
        bad = (betas <= 0) | (betas >= 1)
        if bad.any():
            i = int(bad.nonzero()[0]) + 1
            raise ValueError(
                f"betas must lie in the open interval (0, 1); beta_{i} = {float(betas[i - 1])!r} does not"
            )
        self.name = name
        self.T = int(betas.numel())
        T = self.T
        one = torch.ones(1, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        self.alpha_bars_prev = torch.cat([one, self.alpha_bars[:-1]])  # alpha_bar_{t-1}; [0] is a placeholder
        self.alpha_bars_prev[0] = float("nan")
        self.sqrt_alphas = self.alphas.sqrt()
        self.sqrt_betas = self.betas.sqrt()
        self.one_minus_alpha_bars = 1.0 - self.alpha_bars
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.sqrt_one_minus_alpha_bars = (1.0 - self.alpha_bars).sqrt()
        self.log_one_minus_alpha_bars = torch.log1p(-self.alpha_bars)  # -inf at t = 0
        self.sqrt_recip_alpha_bars = self.alpha_bars.rsqrt()
        self.sqrt_recipm1_alpha_bars = (1.0 / self.alpha_bars - 1.0).sqrt()
        # Eq. 11's coefficient of eps: beta_t / sqrt(1 - alpha_bar_t) (NaN at t = 0)
        self.eps_coef = self.betas / self.sqrt_one_minus_alpha_bars

        nan = torch.full((1,), float("nan"), dtype=torch.float64)
        b, ab, abp = self.betas[1:], self.alpha_bars[1:], self.alpha_bars_prev[1:].clone()
        abp[0] = 1.0
        # Eq. 7: beta~_t; beta~_1 = 0 exactly because alpha_bar_0 = 1.
        post_var = b * (1.0 - abp) / (1.0 - ab)
        self.posterior_variance = torch.cat([nan, post_var])
        # log beta~_t with beta~_1 replaced by beta~_2 (beta~_1 = 0 has no log); for T = 1, by beta_1.
        clipped = post_var.clone()
        clipped[0] = post_var[1] if T > 1 else b[0]
        self.posterior_log_variance_clipped = torch.cat([nan, clipped.log()])
        self.posterior_mean_coef1 = torch.cat([nan, abp.sqrt() * b / (1.0 - ab)])
        self.posterior_mean_coef2 = torch.cat([nan, self.alphas[1:].sqrt() * (1.0 - abp) / (1.0 - ab)])
        self.snr = self.alpha_bars / (1.0 - self.alpha_bars)  # inf at t = 0
        self.log_snr = self.alpha_bars.log() - self.log_one_minus_alpha_bars

        self.timesteps = (
            torch.arange(T + 1) if timesteps is None else torch.as_tensor(timesteps, dtype=torch.long)
        )
        if self.timesteps.shape != (T + 1,):
            raise ValueError(f"timesteps must have length T + 1 = {T + 1}, got {tuple(self.timesteps.shape)}")

        if warn and float(self.alpha_bars[-1]) > NOISE_BOUND:
            warnings.warn(
                f"schedule {name!r} does not reach noise: alpha_bar_T = {float(self.alpha_bars[-1]):.4g} "
                f"> {NOISE_BOUND} (T = {T}), so x_T keeps signal and the prior term L_T is large; "
                "use a larger T or larger betas",
                stacklevel=3,
            )

    # ---- constructors ---------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, **kw) -> "NoiseSchedule":
        """DDPM's schedule: beta_t linear from beta_1 = ``beta_start`` to beta_T = ``beta_end`` (DDPM Sec. 4).

        With T = 1 the one beta is ``beta_end``. ``beta_start > beta_end`` (decreasing noise) is
        allowed, with a warning (unless ``warn=False``). Other keyword arguments go to the constructor.

        Taught in chapter 03.
        """
        T = _check_T(T)
        _check_betas(beta_start, beta_end, kw.get("warn", True))
        if T == 1:
            return cls(torch.tensor([beta_end], dtype=torch.float64), name="linear", **kw)
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), name="linear", **kw)

    @classmethod
    def quadratic(
        cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, **kw
    ) -> "NoiseSchedule":
        """sqrt(beta_t) linear from sqrt(``beta_start``) to sqrt(``beta_end``).

        The 'quad' schedule of DDPM's code.

        Taught in chapter 03.
        """
        T = _check_T(T)
        _check_betas(beta_start, beta_end, kw.get("warn", True))
        sq = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64)
        return cls(sq**2, name="quadratic", **kw)

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999, **kw) -> "NoiseSchedule":
        """The cosine schedule of Nichol & Dhariwal 2021, Eq. 17: alpha_bar_t = f(t) / f(0).

        f(t) = cos^2((t/T + s) / (1 + s) * pi/2), and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} is
        clipped at ``max_beta`` (0.999, as in the paper) so that beta_T < 1.

        Taught in chapters 03 and 14.
        """
        T = _check_T(T)
        if not 0 < max_beta < 1:
            raise ValueError(f"max_beta must lie in (0, 1), got {max_beta!r}")
        if s < 0:
            raise ValueError(f"s must be >= 0, got {s!r}")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
        return cls(betas, name="cosine", **kw)

    @classmethod
    def constant(cls, T: int, alpha_bar_T: float = 1e-3, **kw) -> "NoiseSchedule":
        """beta_t = beta for every t, chosen so that prod_t (1 - beta_t) = ``alpha_bar_T``: the same total
        noise for any T, so that T alone varies (beta = 1 - alpha_bar_T^(1/T)). DDPM's code has a
        'const' schedule too; Sohl-Dickstein et al. 2015 fix beta_1 and learn the rest.

        Taught in chapters 02 and 05.
        """
        T = _check_T(T)
        if not 0 < alpha_bar_T < 1:
            raise ValueError(f"alpha_bar_T must lie in the open interval (0, 1), got {alpha_bar_T!r}")
        beta = 1.0 - alpha_bar_T ** (1.0 / T)
        return cls(torch.full((T,), beta, dtype=torch.float64), name=kw.pop("name", "constant"), **kw)

    @classmethod
    def from_betas(cls, betas: Sequence[float] | torch.Tensor, **kw) -> "NoiseSchedule":
        """A schedule from beta_1..beta_T: a sequence of length T, each in (0, 1).

        Betas that decrease somewhere are allowed (an experiment may want them), with a warning
        (unless ``warn=False``).

        Taught in chapter 03.
        """
        warn = kw.get("warn", True)
        schedule = cls(_as_float64(betas), name=kw.pop("name", "custom"), **kw)  # checks the betas first
        b = schedule.betas[1:]
        if warn and bool((b[1:] < b[:-1]).any()):
            t = int((b[1:] < b[:-1]).nonzero()[0]) + 2
            warnings.warn(
                f"the betas decrease at t = {t} (beta_{t} = {float(b[t - 1]):.4g} < beta_{t - 1} = "
                f"{float(b[t - 2]):.4g}): a diffusion schedule usually adds more noise at each step",
                stacklevel=2,
            )
        return schedule

    @classmethod
    def from_alpha_bars(cls, alpha_bars: Sequence[float] | torch.Tensor, **kw) -> "NoiseSchedule":
        """A schedule from alpha_bar_1..alpha_bar_T, strictly decreasing, in (0, 1).

        Its betas are beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} with alpha_bar_0 = 1: how :meth:`respace`
        builds a schedule with given alpha_bars.

        Taught in chapter 10.
        """
        ab = _as_float64(alpha_bars)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        return cls(1 - ab / prev, **kw)

    @classmethod
    def named(cls, name: str, T: int = 1000, **kw) -> "NoiseSchedule":
        """The ``linear``, ``cosine`` or ``quadratic`` schedule by name.

        For configuration files and the forward-process widget.

        Taught in chapter 03.
        """
        makers = {"linear": cls.linear, "cosine": cls.cosine, "quadratic": cls.quadratic}
        if name not in makers:
            raise ValueError(f"schedule must be one of {sorted(makers)}, got {name!r}")
        return makers[name](T=T, **kw)

    # ---- derived schedules ------------------------------------------------------------
    def respace(self, steps: int | Sequence[int]) -> "NoiseSchedule":
        """The schedule on a subsequence of timesteps, with the same alpha_bars there.

        ``steps`` is a count K (timesteps spread evenly over 1..T, T always included) or an
        increasing sequence of K original timesteps in 1..T. The result has T' = K, its
        ``alpha_bars[k]`` equals this schedule's ``alpha_bars[timesteps[k]]``, and its betas are
        beta'_k = 1 - alpha_bar'_k / alpha_bar'_{k-1} (Nichol & Dhariwal 2021, Sec. 4).

        Taught in chapter 10.
        """
        if isinstance(steps, int):
            if not 1 <= steps <= self.T:
                raise ValueError(f"steps must be in 1..T = 1..{self.T}, got {steps}")
            # evenly spaced from T down, rounded; always contains T (the start of sampling)
            ts = torch.linspace(self.T, self.T / steps, steps, dtype=torch.float64).round().long().flip(0)
            ts = torch.unique(ts)
        else:
            ts = torch.as_tensor(list(steps), dtype=torch.long)
            if ts.ndim != 1 or ts.numel() == 0:
                raise ValueError("steps must be a count or a non-empty sequence of timesteps")
            if (ts < 1).any() or (ts > self.T).any():
                raise ValueError(f"every timestep in steps must be in 1..T = 1..{self.T}")
            if (ts[1:] <= ts[:-1]).any():
                raise ValueError("timesteps in steps must be strictly increasing")
        ab = self.alpha_bars[ts]
        orig = self.timesteps[torch.cat([torch.zeros(1, dtype=torch.long), ts])]
        new = NoiseSchedule.from_alpha_bars(
            ab, name=f"{self.name}[respaced {len(ts)}]", timesteps=orig, warn=False
        )
        return new

    # ---- helpers -----------------------------------------------------------------------
    def check_t(self, t: torch.Tensor, name: str = "t", allow_zero: bool = False) -> torch.Tensor:
        """Check that ``t`` holds integer timesteps in paper indexing, and return it as a LongTensor.

        Valid values are 1..T (0..T with ``allow_zero``). A non-integer tensor raises TypeError, a value out
        of range ValueError; the range is checked for CPU tensors only (reading a GPU tensor's values would
        stall its stream; an out-of-range index fails in the table lookup there).

        Taught in chapter 00.
        """
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a LongTensor of shape (B,), got {type(t).__name__}")
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{name} must be an integer tensor (paper indexing 1..T), got dtype {t.dtype}")
        lo = 0 if allow_zero else 1
        # the range check reads t's values: on an accelerator that would stall the stream every
        # step, so it runs for CPU tensors (out-of-range indices on a GPU fail in the lookup)
        if t.numel() and t.device.type == "cpu" and (int(t.min()) < lo or int(t.max()) > self.T):
            raise ValueError(
                f"{name} must lie in {lo}..T = {lo}..{self.T} (paper indexing, t = 1 is the first noising step); "
                f"got values in {int(t.min())}..{int(t.max())}"
            )
        return t.long()

    def to_dict(self) -> dict:
        """A JSON-able description from which :meth:`from_dict` rebuilds the same schedule.

        Checkpoints keep it.

        Taught in chapter 09.
        """
        return {
            "name": self.name,
            "T": self.T,
            "betas": self.betas[1:].tolist(),
            "timesteps": self.timesteps.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSchedule":
        """The schedule that :meth:`to_dict` described; a stored T above :data:`MAX_T` is refused.

        Taught in chapter 09.
        """
        betas = d.get("betas") if isinstance(d, dict) else None
        if not isinstance(betas, list):
            raise ValueError(f"a stored schedule needs a list 'betas', got {type(betas).__name__}")
        if len(betas) > MAX_T:
            raise ValueError(f"a stored schedule has T = {len(betas)} betas, more than MAX_T = {MAX_T}")
        return cls(
            torch.tensor(d["betas"], dtype=torch.float64),
            name=d.get("name", "custom"),
            timesteps=d.get("timesteps"),
            warn=False,
        )

    def prior_kl(self, x0_sq_mean: float = 1.0) -> float:
        """L_T of DDPM Eq. 5 per dimension, in nats, for data with E[x_0^2] = ``x0_sq_mean``.

        KL(N(sqrt(abar_T) x_0, 1 - abar_T) || N(0, 1)) averaged over x_0, which depends on the data only
        through E[x_0^2].

        Taught in chapter 03.
        """
        ab = float(self.alpha_bars[-1])
        return 0.5 * (-math.log1p(-ab) - ab + ab * x0_sq_mean)

    def reverse_entropy_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds on the entropy of each reverse step, H_q(X_{t-1}|X_t), per dimension in nats.

        Sohl-Dickstein et al. 2015, Eq. 24, derived in their App. A:

            lower_t = H_q(X_t|X_{t-1}) + H_q(X_{t-1}|X_0) - H_q(X_t|X_0),   upper_t = H_q(X_t|X_{t-1}),

        with the Gaussian forward process's H_q(X_t|X_{t-1}) = 1/2 log(2 pi e beta_t) and
        H_q(X_t|X_0) = 1/2 log(2 pi e (1 - abar_t)), so that lower_t = 1/2 log(2 pi e beta~_t). The upper
        bound needs data of variance at most 1 per dimension (then H_q(X_t) >= H_q(X_{t-1})); the lower
        one holds for any data. Returns (lower, upper), each of shape (T + 1,): NaN at t = 0, and
        lower[1] = -inf (beta~_1 = 0: given x_0, x_0 is known exactly).

        Taught in chapter 12.
        """
        from .gaussians import gaussian_entropy

        h_step = gaussian_entropy(self.betas.log())  # H(X_t | X_{t-1})
        h_from_x0 = gaussian_entropy(torch.log1p(-self.alpha_bars))  # H(X_t | X_0); -inf at t = 0
        upper = h_step.clone()
        lower = torch.full_like(upper, float("nan"))
        lower[1:] = h_step[1:] + h_from_x0[:-1] - h_from_x0[1:]
        upper[0] = float("nan")
        return lower, upper

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule({self.name}, T={self.T}, beta_1={float(self.betas[1]):.3g}, "
            f"beta_T={float(self.betas[-1]):.3g}, alpha_bar_T={float(self.alpha_bars[-1]):.3g})"
        )

    def __len__(self) -> int:
        return self.T


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer (the number of diffusion steps), got {T!r}")
    return T


def _check_beta(name: str, v) -> None:
    if not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {v!r}")


def _check_betas(beta_start, beta_end, warn: bool = True) -> None:
    _check_beta("beta_start", beta_start)
    _check_beta("beta_end", beta_end)
    if warn and beta_start > beta_end:
        warnings.warn(
            f"beta_start {beta_start} > beta_end {beta_end}: the betas decrease, while a diffusion schedule "
            "usually adds more noise at each step (DDPM: 1e-4 to 0.02)",
            stacklevel=3,
        )
