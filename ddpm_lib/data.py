"""Data sets: 2-D toys, Gaussian data with a closed-form optimal denoiser, and Fashion-MNIST.

The toys are generated (no files). Fashion-MNIST is read from IDX files that are looked up in
a fixed order and verified by sha256 against ``data/registry.json`` before they are parsed:

1. ``root=`` if given (a folder holding the ``*.gz`` files);
2. ``fashion-mnist/`` of the course's data folder (:func:`data_dir`: ``$DDPM_DATA_DIR``, else the
   repository's ``data/``, else the copy an installed wheel carries), which ships the test split
   and the 10k training subset;
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``);
4. a download from the official URL, checked by sha256 (``download=True``).

Command line (:mod:`ddpm_lib.cli.data`): ``ddpm-data verify`` (or ``python -m ddpm_lib.data
verify``) checks every shipped file; ``ddpm-data make-subset`` remakes the 10k training subset.
"""

from __future__ import annotations

# python -m ddpm_lib.data runs ddpm-data; up here, so that this module's body never runs as __main__
if __name__ == "__main__":
    from ddpm_lib.cli.data import main

    raise SystemExit(main())

import gzip
import hashlib
import http.client
import json
import math
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch

from .mixtures import DEFAULT_MIXTURE, mixture_log_prob, mixture_params
from .utils import atomic_write

__all__ = [
    "swiss_roll",
    "gaussian_mixture",
    "gaussian_mixture_1d",
    "mixture_1d_points",
    "gaussian_mixture_log_prob",
    "GaussianData",
    "read_idx",
    "write_idx",
    "fashion_mnist",
    "fashion_mnist_examples",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SPLITS",
    "to_uint8",
    "from_uint8",
    "load_image_files",
    "IMAGE_SUFFIXES",
    "data_dir",
    "data_dir_problem",
    "registry_entry",
    "read_registry",
    "verify_file",
    "verify_if_registered",
    "registry_key",
    "verify_registry",
    "make_fashion_mnist_subset",
    "DataIntegrityError",
    "ImageLayoutError",
    "DownloadError",
    "iterate_minibatches",
    "infinite_minibatches",
]

Batch = Union[torch.Tensor, Sequence[torch.Tensor]]


def _check_n(n, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


# ----------------------------------------------------------------------------------------------
# 2-D toy data
# ----------------------------------------------------------------------------------------------


def swiss_roll(n: int, *, generator: torch.Generator | None = None, noise: float = 0.0) -> torch.Tensor:
    """
    Sample the 2-D swiss roll, the toy data of Sohl-Dickstein et al. (2015).

    With u ~ U(0, 1) and e ~ N(0, I_2):
        t = 1.5 pi (1 + 2 u),    x = (t cos t + noise * e_1,  t sin t + noise * e_2) / 10,
    i.e. sklearn's ``make_swiss_roll(n, noise=noise)[:, [0, 2]] / 10`` (``noise`` in sklearn's
    units, before the division by 10). Without noise x[:, 0] lies in [-0.95, 1.27] and
    x[:, 1] in [-1.11, 1.42]. Computed in float64, so a generator gives the same points anywhere.

    :param n: the number of points.
    :param generator: a CPU torch.Generator for reproducible draws (global RNG if None).
    :param noise: the standard deviation of the Gaussian noise, before scaling.
    :return: an [n x 2] float32 tensor.
    """
    n = _check_n(n)
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    t = 1.5 * math.pi * (1 + 2 * u)
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    if noise > 0:
        x = x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return (x / 10).float()


def _eight_gaussians():
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def gaussian_mixture(
    n: int,
    *,
    means=None,
    stds=0.1,
    weights=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """
    Sample a mixture of Gaussians with diagonal covariances.

    The default is 8 Gaussians with std 0.1 and equal weights, centred on the unit circle
    at angles 2 pi k / 8, k = 0..7. A component index k ~ Categorical(weights) is drawn for each
    point, then x = means[k] + stds[k] * e with e ~ N(0, I).

    :param n: the number of points.
    :param means: a [K x D] array of component means (None: the 8 Gaussians above).
    :param stds: a number, a [K] array, or a [K x D] array of standard deviations.
    :param weights: K non-negative weights (normalized here); None for equal weights.
    :param generator: a CPU torch.Generator for reproducible draws.
    :return: an [n x D] float32 tensor.
    """
    n = _check_n(n)
    means, stds, weights = mixture_params(_eight_gaussians() if means is None else means, stds, weights)
    k = torch.multinomial(weights, n, replacement=True, generator=generator)
    e = torch.randn(n, means.shape[1], generator=generator, dtype=torch.float64)
    return (means[k] + stds[k] * e).float()


def gaussian_mixture_1d(
    n: int, means, stds, weights=None, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """
    Sample a 1-D mixture of Gaussians (see :func:`gaussian_mixture`).

    :param means: K component means.
    :param stds: a number or K standard deviations.
    :return: an [n] float32 tensor.
    """
    means = torch.as_tensor(means, dtype=torch.float64).reshape(-1, 1)
    return gaussian_mixture(n, means=means, stds=stds, weights=weights, generator=generator)[:, 0]


def mixture_1d_points(n: int, seed: int, mixture: dict | None = None) -> torch.Tensor:
    """n points of a 1-D mixture as a column, shape (n, 1), float64: the data of chapters 02 and 05.

    :param mixture: ``{"means", "stds", "weights"}``; None: :data:`ddpm_lib.mixtures.DEFAULT_MIXTURE`.
    The points are drawn by :func:`gaussian_mixture_1d` from ``torch.Generator().manual_seed(seed)``
    (float32, then widened), so a seed gives the same points as that function.
    """
    m = DEFAULT_MIXTURE if mixture is None else mixture
    missing = [k for k in ("means", "stds", "weights") if k not in m]
    if missing:
        raise ValueError(
            f"mixture must be a dict with keys means, stds, weights; missing {', '.join(missing)}"
        )
    g = torch.Generator().manual_seed(seed)
    return gaussian_mixture_1d(n, m["means"], m["stds"], m["weights"], generator=g).to(torch.float64)[:, None]


def gaussian_mixture_log_prob(x, means=None, stds=0.1, weights=None) -> torch.Tensor:
    """
    The exact log-density of a Gaussian mixture (arguments as in :func:`gaussian_mixture`; the
    density itself is :func:`ddpm_lib.mixtures.mixture_log_prob`).

    :param x: an [N x D] tensor, or an [N] tensor for a 1-D mixture.
    :return: an [N] float64 tensor of log p(x) in nats.
    """
    return mixture_log_prob(x, _eight_gaussians() if means is None else means, stds, weights)


# ----------------------------------------------------------------------------------------------
# Gaussian data: everything in closed form
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class GaussianData:
    """
    Data x_0 ~ N(m, s^2 I) in ``dim`` dimensions, where the diffusion is known in closed form.

    With x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps, eps ~ N(0, I), and v = abar s^2 + 1 - abar:
        q(x_t)        = N(sqrt(abar) m, v I)
        E[eps | x_t]  = sqrt(1 - abar) (x_t - sqrt(abar) m) / v
        E[x_0 | x_t]  = m + sqrt(abar) s^2 (x_t - sqrt(abar) m) / v
    E[eps | x_t] is the minimizer of L_simple at that noise level, so ``eps_model`` is the best
    possible eps-prediction network. Inputs are [N x ...] with dim values per example;
    alpha_bar is a number or an [N] tensor (broadcast over the other dimensions).

    :param dim: the number of dimensions of one example.
    :param mean: m, a number or a [dim] tensor.
    :param std: s > 0.
    """

    dim: int
    mean: Union[float, torch.Tensor] = 0.0
    std: float = 1.0

    def __post_init__(self):
        self.dim = _check_n(self.dim, "dim")
        self.std = float(self.std)
        if not (self.std > 0 and math.isfinite(self.std)):
            raise ValueError(f"std must be a finite number > 0, got {self.std!r}")
        m = torch.as_tensor(self.mean, dtype=torch.float64)
        if m.ndim == 0:
            m = m.expand(self.dim)
        if tuple(m.shape) != (self.dim,):
            raise ValueError(f"mean must be a number or a [{self.dim}] tensor, got shape {tuple(m.shape)}")
        self._m = m.clone()

    def _event(self, x: torch.Tensor) -> torch.Tensor:
        """The mean reshaped to one example of x: [N x ...] -> [...]."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(
                f"expected [N x ...] with {self.dim} values per example, got shape {tuple(x.shape)}"
            )
        return self._m.to(x.device).reshape(x.shape[1:])

    def _alpha_bar(self, alpha_bar, x: torch.Tensor) -> torch.Tensor:
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x.device)
        if ab.ndim == 1 and ab.shape[0] == x.shape[0]:
            ab = ab.reshape(-1, *([1] * (x.ndim - 1)))
        elif ab.ndim != 0:
            raise ValueError(
                f"alpha_bar must be a number or an [N] tensor with N = {x.shape[0]}, got {tuple(ab.shape)}"
            )
        if not bool(((ab >= 0) & (ab <= 1)).all()):
            raise ValueError("alpha_bar must lie in [0, 1]")
        return ab

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
        """
        Draw x_0 ~ N(m, s^2 I).

        :return: an [n x dim] tensor of the given dtype.
        """
        n = _check_n(n)
        e = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self._m + self.std * e).to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """
        The exact log-density of the data.

        :param x: an [N x ...] tensor.
        :return: an [N] float64 tensor: log q(x_0) in nats, summed over dimensions.
        """
        return self.marginal_log_prob(x, 1.0)

    def marginal(self, alpha_bar):
        """
        The moments of q(x_t) = N(sqrt(abar) m, (abar s^2 + 1 - abar) I).

        :param alpha_bar: a number or a tensor of shape S.
        :return: a tuple (mean, var) of float64 tensors of shape S + [dim].
        """
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64)[..., None]
        if not bool(((ab >= 0) & (ab <= 1)).all()):
            raise ValueError("alpha_bar must lie in [0, 1]")
        mean = ab.sqrt() * self._m
        var = (ab * self.std**2 + 1 - ab).expand(mean.shape)
        return mean, var

    def marginal_log_prob(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """
        The exact log q(x_t), summed over dimensions.

        :param x_t: an [N x ...] tensor.
        :param alpha_bar: a number or an [N] tensor.
        :return: an [N] float64 tensor in nats.
        """
        x = torch.as_tensor(x_t).to(torch.float64)
        m = self._event(x)
        ab = self._alpha_bar(alpha_bar, x)
        v = ab * self.std**2 + 1 - ab
        ll = -0.5 * ((x - ab.sqrt() * m) ** 2 / v + torch.log(v) + math.log(2 * math.pi))
        return ll.reshape(x.shape[0], -1).sum(1)

    def optimal_eps(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """
        E[eps | x_t], the best eps-prediction in mean square.

        :param x_t: an [N x ...] tensor.
        :param alpha_bar: a number or an [N] tensor.
        :return: a tensor shaped and typed like x_t.
        """
        x = x_t.to(torch.float64)
        m = self._event(x)
        ab = self._alpha_bar(alpha_bar, x)
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * self.std**2 + 1 - ab)
        return eps.to(x_t.dtype)

    def optimal_x0(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """
        E[x_0 | x_t], the best x_0-prediction in mean square.

        :param x_t: an [N x ...] tensor.
        :param alpha_bar: a number or an [N] tensor.
        :return: a tensor shaped and typed like x_t.
        """
        x = x_t.to(torch.float64)
        m = self._event(x)
        ab = self._alpha_bar(alpha_bar, x)
        x0 = m + ab.sqrt() * self.std**2 * (x - ab.sqrt() * m) / (ab * self.std**2 + 1 - ab)
        return x0.to(x_t.dtype)

    def eps_model(self, alpha_bars: torch.Tensor):
        """
        The optimal eps-prediction network for a schedule, as a model(x_t, t) callable.

        :param alpha_bars: the schedule's [T + 1] table (``NoiseSchedule.alpha_bars``).
        :return: a callable (x_t [N x ...], t [N] in 1..T) -> E[eps | x_t].
        """
        table = torch.as_tensor(alpha_bars, dtype=torch.float64)

        def model(x_t, t):
            return self.optimal_eps(x_t, table.to(x_t.device)[torch.as_tensor(t, device=x_t.device).long()])

        return model

    def bound_terms(self, schedule, variance: str = "fixed_large", x0: torch.Tensor | None = None):
        """
        The expected terms E[L_j], j = 0..T, of DDPM's bound (Eq. 5) for the best eps-model
        (:meth:`eps_model`) and a fixed reverse variance, in closed form, in nats per dimension.

        With c_t = sqrt(abar_(t-1)) beta_t / (1 - abar_t), mu~_t - mu_theta = c_t (x_0 - E[x_0 | x_t]), so
        E[L_(t-1)] = 1/2 (log(sigma_t^2 / beta~_t) + beta~_t / sigma_t^2 + c_t^2 e_t / sigma_t^2 - 1), where
        e_t = E[(x_0 - E[x_0 | x_t])^2]; L_0 = 1/2 (log(2 pi sigma_1^2) + e_1 / sigma_1^2) (a Gaussian density
        decoder, ``decoder="gaussian"``); L_T = KL(q(x_T | x_0) || N(0, I)). The variances and tables come from
        :class:`~ddpm_lib.diffusion.GaussianDiffusion`.

        :param schedule: a :class:`~ddpm_lib.schedules.NoiseSchedule`.
        :param variance: ``"fixed_large"`` (sigma_t^2 = beta_t) or ``"fixed_small"`` (beta~_t).
        :param x0: None to average over the data as well (a [T + 1] tensor), or [N x ...] examples to
            average over x_t only, given each example (an [N x (T + 1)] tensor).
        :return: float64 nats per dimension (averaged over the ``dim`` coordinates); column j is L_j.

        Taught in chapter 07.
        """
        from .diffusion import GaussianDiffusion

        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"variance must be 'fixed_large' or 'fixed_small', got {variance!r}")
        dd = GaussianDiffusion(schedule, variance=variance, decoder="gaussian")
        T, s2 = schedule.T, self.std**2
        t = torch.arange(1, T + 1)
        ab = schedule.alpha_bars[t]
        k = ab.sqrt() * s2 / (ab * s2 + 1 - ab)  # E[x_0 | x_t] = m + k_t (x_t - sqrt(abar_t) m)
        if x0 is None:  # over the data: E (x_0 - m)^2 = s^2, E x_0^2 = m^2 + s^2 (per coordinate)
            dev2 = torch.tensor([[s2]], dtype=torch.float64)
            sq = (self._m**2).mean().reshape(1) + s2
        else:
            x = torch.as_tensor(x0).to(torch.float64)
            x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x
            m = self._event(x.reshape(x.shape[0], -1)).reshape(-1)
            dev2, sq = ((x - m) ** 2).mean(1, keepdim=True), (x**2).mean(1)
        err = (1 - k * ab.sqrt()) ** 2 * dev2 + k**2 * (1 - ab)  # E[(x_0 - E[x_0 | x_t])^2 | x_0], [N x T]
        var, logvar = (v[:, 0] for v in dd.model_variance(torch.zeros(T, 1, dtype=torch.float64), t))
        c, bt = schedule.posterior_mean_coef1[t], schedule.posterior_variance[t]
        L = torch.empty(err.shape[0], T + 1, dtype=torch.float64)
        L[:, 0] = 0.5 * (math.log(2 * math.pi) + logvar[0] + err[:, 0] / var[0])
        L[:, 1:T] = 0.5 * (
            logvar[1:] - bt[1:].log() + bt[1:] / var[1:] + c[1:] ** 2 * err[:, 1:] / var[1:] - 1
        )
        abT = schedule.alpha_bars[T]
        L[:, T] = 0.5 * (-torch.log1p(-abT) + (1 - abT) + abT * sq - 1)
        return L[0] if x0 is None else L

    def model_cross_entropy(self, schedule, variance: str = "fixed_large") -> float:
        """
        E_q[-log p_theta(x_0)] in nats per dimension for the best eps-model and a fixed reverse variance:
        each reverse step is affine, x_(t-1) = A_t x_t + B_t + sigma_t z, so the model's own p_theta(x_0) is
        Gaussian, found by propagating a mean and a variance from N(0, 1) at t = T, the decoder
        p_theta(x_0 | x_1) = N(mu_theta(x_1, 1), sigma_1^2) included. It lies between the data's entropy and
        the bound.

        :param schedule: a :class:`~ddpm_lib.schedules.NoiseSchedule`.
        :param variance: ``"fixed_large"`` or ``"fixed_small"``.
        :return: a float, nats per dimension (averaged over the ``dim`` coordinates).

        Taught in chapter 07.
        """
        from .diffusion import GaussianDiffusion

        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"variance must be 'fixed_large' or 'fixed_small', got {variance!r}")
        dd = GaussianDiffusion(schedule, variance=variance, decoder="gaussian")
        model = self.eps_model(schedule.alpha_bars)
        T = schedule.T
        t = torch.arange(1, T + 1)
        at0 = torch.zeros(T, self.dim, dtype=torch.float64)
        at1 = at0 + 1
        p0, p1 = dd.p_mean_variance(model(at0, t), at0, t), dd.p_mean_variance(model(at1, t), at1, t)
        B, A, var = p0["mean"], p1["mean"] - p0["mean"], p0["variance"][:, 0]
        mp, vp = torch.zeros(self.dim, dtype=torch.float64), torch.ones(self.dim, dtype=torch.float64)
        for j in range(T - 1, -1, -1):  # t = T, ..., 1
            mp, vp = A[j] * mp + B[j], A[j] ** 2 * vp + var[j]
        ce = 0.5 * (torch.log(2 * math.pi * vp) + ((self._m - mp) ** 2 + self.std**2) / vp)
        return float(ce.mean())


# ----------------------------------------------------------------------------------------------
# IDX files
# ----------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str[1:]: k for k, v in _IDX_TYPES.items()}


def read_idx(path) -> np.ndarray:
    """
    Read an IDX file (the MNIST format), gzip-compressed or plain.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian
    uint32, then the values in C order, big-endian.

    :param path: the file; gzip is recognized by its content, not its name.
    :return: a writable numpy array in native byte order.
    :raises ValueError: naming the file, on a bad magic number, an unsupported type code, a
        broken gzip stream, or a size that does not match the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: broken gzip stream ({e})") from None
    if len(raw) < 4:
        raise ValueError(
            f"{path}: truncated IDX file: {len(raw)} bytes, shorter than the 4-byte magic number"
        )
    if raw[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: bad magic number 0x{raw[:4].hex()}: an IDX file starts with two zero bytes, "
            "a type code and the number of dimensions"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
        raise ValueError(f"{path}: unsupported IDX type code 0x{code:02X} (supported: {known})")
    if ndim == 0:
        raise ValueError(f"{path}: bad IDX header: 0 dimensions")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(
            f"{path}: truncated IDX file: {len(raw)} bytes, shorter than its {start}-byte header"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(_IDX_TYPES[code])
    want = math.prod(dims) * dtype.itemsize
    have = len(raw) - start
    if have != want:
        what = "truncated IDX file" if have < want else "IDX file longer than its header says"
        raise ValueError(
            f"{path}: {what}: the header promises shape {dims} of {dtype.name} = {want} bytes of data, "
            f"the file holds {have}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=start).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array) -> Path:
    """
    Write an array as an IDX file; gzip-compressed when the name ends in ``.gz``.

    The gzip header holds no file name and mtime 0, so the same array gives the same bytes
    (with the same zlib).

    :param array: a numpy array or tensor of uint8, int8, int16, int32, float32 or float64.
    :return: the path written.
    """
    path = Path(path)
    arr = np.asarray(array.cpu().numpy() if isinstance(array, torch.Tensor) else array)
    key = arr.dtype.newbyteorder("=").str[1:]
    if key not in _IDX_CODES or arr.ndim < 1 or arr.ndim > 255:
        raise ValueError(f"cannot write {arr.dtype} with {arr.ndim} dimensions as IDX")
    code = _IDX_CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + np.ascontiguousarray(arr, dtype=np.dtype(_IDX_TYPES[code])).tobytes()
    with open(path, "wb") as f:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as g:
                g.write(payload)
        else:
            f.write(payload)
    return path


# ----------------------------------------------------------------------------------------------
# The registry and sha256 verification
# ----------------------------------------------------------------------------------------------

# Where data_dir() looks (module-level, so tests can patch): the repository's data folder, and the
# copy that a wheel carries inside the package (setup.py's build_course_data puts it there).
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "_data"
DATA_DIR_ENV = "DDPM_DATA_DIR"
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT = 10.0
REGISTRY_NAME = "registry.json"


class DataIntegrityError(ValueError):
    """A data file whose size or sha256 is not the one the registry lists."""


class ImageLayoutError(ValueError):
    """A user's own images that do not fit together or are not 8-bit (sizes, dtype, shape, the
    arrays of an .npz): the files are readable, the request is wrong, so the command line reports a
    usage error (exit 2), not a damaged file (exit 1). Taught in chapter 14."""


class DownloadError(FileNotFoundError):
    """Files that were not found, and whose download failed (the network, a server): the message
    says where they were looked for and what failed."""


def _v(size, sha256, what):
    return {"size": size, "sha256": sha256, "what": what}


# The Fashion-MNIST hashes, the same as in data/registry.json (a test checks), so that a file
# from Debian or a download can be verified where the repository's data folder is absent.
# Debian's copies hold the official gzip streams under a header with no file name.
_BUILTIN_REGISTRY = {
    "fashion-mnist/t10k-images-idx3-ubyte.gz": [
        _v(4422079, "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", "Debian's copy"),
        _v(4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", "official download"),
    ],
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": [
        _v(5125, "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", "Debian's copy"),
        _v(5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", "official download"),
    ],
    "fashion-mnist/train-images-idx3-ubyte.gz": [
        _v(26421856, "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", "Debian's copy"),
        _v(26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", "official download"),
    ],
    "fashion-mnist/train-labels-idx1-ubyte.gz": [
        _v(29491, "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", "Debian's copy"),
        _v(29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", "official download"),
    ],
    "fashion-mnist/train-10k-images-idx3-ubyte.gz": [
        _v(4347397, "1be733b5e3563a3e09249eaf2860ab906050f4ad092514fd69643a971f092eef", "shipped subset"),
    ],
    "fashion-mnist/train-10k-labels-idx1-ubyte.gz": [
        _v(5112, "61a6840eba903a1624db1cd180742787f58a96a5d569dcbab532ea0bbd943a75", "shipped subset"),
    ],
}


def data_dir() -> Path:
    """
    The course's data folder, by one rule: the first of

    1. ``$DDPM_DATA_DIR``, when set (it wins even if it holds no registry.json);
    2. ``data/`` of the clone this package runs from (a checkout, or an editable install),
       when it holds ``registry.json``;
    3. ``ddpm_lib/_data/``, the copy inside an installed wheel (``pip install <clone or wheel>``),
       when it holds ``registry.json``;
    4. none found: ``data/`` of the clone, where a checkout keeps it; :func:`data_dir_problem`
       then says where it looked and how to fix it.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    for d in (REPO_DATA_DIR, PACKAGE_DATA_DIR):
        if (d / REGISTRY_NAME).is_file():
            return d
    return REPO_DATA_DIR


def data_dir_problem() -> str | None:
    """
    None when data_dir() holds ``registry.json``; else why not: where it looked, and the fix
    (set ``$DDPM_DATA_DIR``, or install from a clone so that the wheel carries the data).
    """
    d = data_dir()
    if (d / REGISTRY_NAME).is_file():
        return None
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return (
            f"${DATA_DIR_ENV}={env} holds no {REGISTRY_NAME}: point {DATA_DIR_ENV} at the data/ folder of a "
            f"clone of the course, or unset it to use the data that the installed package carries"
        )
    return (
        f"no course data folder: ${DATA_DIR_ENV} is not set, and neither {REPO_DATA_DIR} (a clone's data/) "
        f"nor {PACKAGE_DATA_DIR} (the copy a wheel carries) holds {REGISTRY_NAME}. Fix: set "
        f"{DATA_DIR_ENV}=/path/to/ddpm-course/data (the data/ folder of a clone), or install the library from "
        f"a clone with `pip install /path/to/ddpm-course`, whose wheel carries the data"
    )


# what each table's entries must hold: key -> the JSON types allowed
_ENTRY_FIELDS = {
    "files": {"sha256": (str,), "size": (int,)},
    "pretrained": {"path": (str,), "sha256": (str,), "size": (int,)},
}


def read_registry() -> dict:
    """
    The whole ``registry.json`` of :func:`data_dir`, checked; {} when there is none.

    :return: the registry: a JSON object whose ``files`` and ``pretrained`` tables (each optional)
        map names to entries with ``sha256`` and ``size`` (and, in ``pretrained``, ``path``).
    :raises DataIntegrityError: naming the file and what is wrong, for a registry that does not
        parse or has not that shape (a merge conflict, a hand edit gone wrong).
    """
    path = data_dir() / REGISTRY_NAME
    if not path.is_file():
        return {}

    def bad(why):
        return DataIntegrityError(
            f"{path} is not a valid registry: {why}. Restore it (git checkout) or fix it"
        )

    try:
        reg = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise bad(f"not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise bad(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(reg, dict):
        raise bad(f"it holds a JSON {type(reg).__name__}, not an object")
    for table, fields in _ENTRY_FIELDS.items():
        entries = reg.get(table, {})
        if not isinstance(entries, dict):
            raise bad(f"its {table!r} table is a {type(entries).__name__}, not an object")
        for key, entry in entries.items():
            if not isinstance(entry, dict):
                raise bad(f"entry {key!r} of {table!r} is a {type(entry).__name__}, not an object")
            for name, types in fields.items():
                v = entry.get(name)
                if not isinstance(v, types) or isinstance(v, bool):
                    raise bad(f"entry {key!r} of {table!r} needs {name!r} ({types[0].__name__}), got {v!r}")
    return reg


def _load_registry() -> dict:
    """The registry's ``files`` table from data_dir(), or {} when there is none."""
    return read_registry().get("files", {})


def registry_entry(key: str) -> dict | None:
    """
    The entry of ``data/registry.json`` (in :func:`data_dir`) for a file, or None when the registry
    does not list it (or there is no registry).

    :param key: the file's path relative to the data folder, e.g. ``"trajectories/....safetensors"``.
    :return: a copy of the entry (``sha256``, ``size``, ``shipped``, ``source``, ...).
    """
    entry = _load_registry().get(key)
    return None if entry is None else json.loads(json.dumps(entry))


def _accepted(key: str) -> list[dict]:
    """Every (size, sha256) a file registered under ``key`` may have."""
    entry = _load_registry().get(key)
    if entry is None:
        return list(_BUILTIN_REGISTRY.get(key, []))
    out = [_v(entry["size"], entry["sha256"], "shipped" if entry.get("shipped") else "registered")]
    for name, var in entry.get("variants", {}).items():
        if var["sha256"] != entry["sha256"]:
            out.append(_v(var["size"], var["sha256"], name))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_VERIFIED: dict = {}  # (path, size, mtime_ns, key) -> sha256, for this process


def verify_file(path, key: str) -> str:
    """
    Check a file against its registry entry (cached per process by path, size and mtime).

    :param path: the file.
    :param key: its registry key, e.g. ``"fashion-mnist/t10k-images-idx3-ubyte.gz"``.
    :return: its sha256.
    :raises DataIntegrityError: naming the file, the expected and the actual sha256.
    """
    path = Path(path)
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, key)
    if cache_key in _VERIFIED:
        return _VERIFIED[cache_key]
    accepted = _accepted(key)
    if not accepted:
        raise DataIntegrityError(f"{path}: no registry entry '{key}' to verify it against")
    actual = _sha256(path)
    if not any(a["sha256"] == actual and a["size"] == st.st_size for a in accepted):
        expected = "; ".join(f"{a['sha256']} ({a['what']}, {a['size']} bytes)" for a in accepted)
        raise DataIntegrityError(
            f"{path}: sha256 mismatch for '{key}': expected {expected}; got {actual} ({st.st_size} bytes). "
            "The file is corrupt or not the registered one: delete it and get it again."
        )
    _VERIFIED[cache_key] = actual
    return actual


def registry_key(path) -> str | None:
    """The registry key of a file inside the data folder (its path relative to it), else None."""
    try:
        return Path(path).resolve().relative_to(data_dir().resolve()).as_posix()
    except ValueError:
        return None


def verify_if_registered(path) -> str | None:
    """Check ``path`` by :func:`verify_file` when it lies in the data folder and the registry lists
    it; return its sha256 then, None for a file the registry does not list (loaded unchecked)."""
    key = registry_key(path)
    if key is None or registry_entry(key) is None:
        return None
    return verify_file(path, key)


def verify_registry() -> dict:
    """
    Check every shipped file in the registry (size and sha256).

    :return: a dict {relative path: sha256} of the files checked.
    :raises DataIntegrityError: listing every file that is missing or wrong.
    """
    root = data_dir()
    files = _load_registry()
    if not files:
        if (root / REGISTRY_NAME).is_file():
            raise DataIntegrityError(
                f"{root / REGISTRY_NAME} lists no files (its 'files' table is missing or empty)"
            )
        raise DataIntegrityError(f"no registry at {root / REGISTRY_NAME}. {data_dir_problem() or ''}".strip())
    done, problems = {}, []
    for rel, entry in sorted(files.items()):
        if not entry.get("shipped"):
            continue
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            done[rel] = verify_file(path, rel)
        except DataIntegrityError as e:
            problems.append(str(e))
    if problems:
        raise DataIntegrityError("registry check failed:\n  " + "\n  ".join(problems))
    return done


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------------

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train-10k": ("train-10k-images-idx3-ubyte.gz", "train-10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_SPLITS = tuple(_SPLITS)
SUBSET_SIZE = 10_000


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """
    Map images in [-1, 1] to {0..255}: round((x + 1) * 127.5), clamped.

    :param images: a float tensor of any shape.
    :return: a uint8 tensor of the same shape.
    """
    return ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(images) -> torch.Tensor:
    """
    Map {0..255} to [-1, 1]: x / 127.5 - 1 (the DDPM paper's scaling).

    :param images: a uint8 tensor or numpy array of any shape.
    :return: a float32 tensor of the same shape.
    """
    return torch.as_tensor(images).to(torch.float32) / 127.5 - 1


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _as_nchw(a: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} -> (N, C, H, W)."""
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[1] in (1, 3):
        return a
    if a.ndim == 4 and a.shape[3] in (1, 3):
        return a.transpose(0, 3, 1, 2)
    raise ImageLayoutError(
        f"{where}: images of shape {a.shape}; give (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
    )


def load_image_files(path) -> torch.Tensor:
    """
    Your own images as a uint8 tensor (N, C, H, W): what ``ddpm-train --dataset images --data-root
    PATH`` trains on (chapter 14 shows it).

    :param path: a folder of image files (PNG, JPEG, ...; all the same size, read in sorted name
        order; grey images give C = 1, colour ones C = 3, an alpha channel is dropped), or an
        ``.npz`` / ``.npy`` file holding a uint8 array (N, H, W), (N, H, W, C) or (N, C, H, W)
        (an ``.npz`` under the key ``images``, or its only array). Never unpickled.
    :raises FileNotFoundError: when ``path`` does not exist or holds no image files.
    :raises ImageLayoutError: naming the file, for images of another size, dtype or layout (a
        ValueError).
    :raises ValueError: for a numpy file that cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such folder or file of images")
    if p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise FileNotFoundError(f"{p} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        arrays, size, mode = [], None, None
        for f in files:
            with Image.open(f) as im:
                m = "L" if im.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
                if size is None:
                    size, mode = im.size, m
                if im.size != size:
                    raise ImageLayoutError(
                        f"{f}: {im.size[0]}x{im.size[1]} pixels, the first image has {size[0]}x{size[1]}"
                    )
                arrays.append(np.asarray(im.convert(mode)))
        return torch.from_numpy(_as_nchw(np.stack(arrays), str(p)).copy())
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if "images" not in keys and len(keys) != 1:
                    raise ImageLayoutError(f"{p}: holds {keys}; name the array 'images' (or store only one)")
                a = z["images" if "images" in keys else keys[0]]
        elif p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        else:
            raise ImageLayoutError(f"{p}: give a folder of image files or an .npz / .npy file")
    except (OSError, EOFError) as e:
        raise ValueError(f"{p}: cannot read it as a numpy file ({e})") from None
    if a.dtype != np.uint8:
        raise ImageLayoutError(f"{p}: images of dtype {a.dtype}; store 8-bit images (uint8, 0..255)")
    if len(a) == 0:
        raise ImageLayoutError(f"{p}: holds no images")
    return torch.from_numpy(np.ascontiguousarray(_as_nchw(a, str(p))))


def _search_dirs(root) -> list[tuple[Path, str]]:
    dirs = []
    if root is not None:
        dirs.append((Path(root), "root="))
    dirs.append(
        (data_dir() / "fashion-mnist", f"the course's data folder (${DATA_DIR_ENV} overrides; see data_dir)")
    )
    dirs.append((Path(SYSTEM_FASHION_MNIST_DIR), "Debian's dataset-fashion-mnist"))
    return dirs


def _locate(name: str, dirs) -> Path | None:
    for d, _ in dirs:
        if (d / name).is_file():
            return d / name
    return None


def _missing_message(names, dirs) -> str:
    looked = "\n".join(f"    {d}  ({why})" for d, why in dirs)
    # with $DDPM_DATA_DIR unset and no data folder found, say so (a folder set by hand may hold fashion-mnist/ only)
    problem = None if os.environ.get(DATA_DIR_ENV) else data_dir_problem()
    return (
        f"Fashion-MNIST file(s) {', '.join(names)} not found. Looked in:\n{looked}\n"
        "Three ways to get them:\n"
        f"  1. the data folder: a clone of the course, and the wheel built from it, ship the test split and the "
        f"10k training subset in fashion-mnist/; set ${DATA_DIR_ENV} to the data/ folder of a clone (or to any "
        f"folder holding fashion-mnist/<file>)\n"
        "  2. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist  (all four files, in "
        f"{SYSTEM_FASHION_MNIST_DIR})\n"
        f"  3. download: call with download=True to fetch them from {FASHION_MNIST_URL} (checked by sha256)"
        + (f"\n({problem})" if problem else "")
    )


def _download(name: str, dest_dir: Path) -> Path:
    """Fetch an official file into dest_dir: to a temporary file, verified, then renamed."""
    key = f"fashion-mnist/{name}"
    accepted = _accepted(key)
    url = FASHION_MNIST_URL + name

    def fetch(tmp):
        h, size = hashlib.sha256(), 0
        with open(tmp, "wb") as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
        actual = h.hexdigest()
        if not any(a["sha256"] == actual and a["size"] == size for a in accepted):
            expected = "; ".join(f"{a['sha256']} ({a['what']})" for a in accepted)
            raise DataIntegrityError(
                f"{url}: sha256 mismatch: expected {expected}; got {actual} ({size} bytes)"
            )

    return atomic_write(dest_dir / name, fetch)


def _fetch(names, dirs, download: bool, dest_dir: Path) -> list[Path]:
    """Locate each file (downloading the missing ones if allowed) and verify it."""
    paths = {n: _locate(n, dirs) for n in names}
    missing = [n for n, p in paths.items() if p is None]
    if missing and not download:
        raise FileNotFoundError(_missing_message(missing, dirs))
    for n in missing:
        try:
            paths[n] = _download(n, dest_dir)
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeouts: OSError
            if isinstance(e, DataIntegrityError):
                raise
            raise DownloadError(_missing_message(missing, dirs) + f"\n  (the download failed: {e})") from e
    for n, p in paths.items():
        verify_file(p, f"fashion-mnist/{n}")
    return [paths[n] for n in names]


def _read_pair(image_path: Path, label_path: Path):
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"{image_path}: expected uint8 images of shape [N x 28 x 28], got {images.dtype} {images.shape}"
        )
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images in {image_path}"
        )
    return images, labels


def _fashion_mnist_uint8(split: str, root=None, download: bool = True):
    if split not in _SPLITS:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; allowed: {', '.join(map(repr, _SPLITS))}")
    dirs = _search_dirs(root)
    dest = Path(root) if root is not None else data_dir() / "fashion-mnist"
    names = _SPLITS[split]
    if split == "train-10k":
        if all(_locate(n, dirs) is not None for n in names):
            return _read_pair(*_fetch(names, dirs, False, dest))
        if not download and not all(_locate(n, dirs) is not None for n in _SPLITS["train"]):
            raise FileNotFoundError(
                _missing_message(names, dirs)
                + f"\n(train-10k is also taken from the first {SUBSET_SIZE} of {', '.join(_SPLITS['train'])})"
            )
        images, labels = _read_pair(*_fetch(_SPLITS["train"], dirs, download, dest))
        return images[:SUBSET_SIZE].copy(), labels[:SUBSET_SIZE].copy()
    return _read_pair(*_fetch(names, dirs, download, dest))


def fashion_mnist(split: str = "test", *, root=None, download: bool = True):
    """
    Load a Fashion-MNIST split, verified by sha256, scaled to [-1, 1].

    Files are looked up in ``root`` (if given), the course's data folder, Debian's
    /usr/share/datasets/fashion-mnist, and finally downloaded (if ``download``) into
    ``root`` or the data folder. "train-10k" (the first 10,000 training images, shipped) is
    also cut from the full training files when those are found instead.

    :param split: "test" (10,000), "train" (60,000) or "train-10k" (10,000).
    :param root: a folder holding the ``*-ubyte.gz`` files, searched first.
    :param download: allow a download when no folder has the files.
    :return: a tuple (images, labels): an [N x 1 x 28 x 28] float32 tensor in [-1, 1]
             (x / 127.5 - 1) and an [N] int64 tensor of class indices (FASHION_MNIST_CLASSES).
    """
    images, labels = _fashion_mnist_uint8(split, root, download)
    return from_uint8(torch.from_numpy(images)).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def fashion_mnist_examples(
    classes: Sequence[int], split: str = "test", *, root=None, download: bool = True
) -> torch.Tensor:
    """
    One image of each class asked for: the first of that class in the split (deterministic).

    :param classes: class indices 0..9 (FASHION_MNIST_CLASSES), in the order wanted.
    :param split, root, download: as in :func:`fashion_mnist`.
    :return: a [len(classes) x 1 x 28 x 28] float32 tensor in [-1, 1].
    """
    images, labels = fashion_mnist(split, root=root, download=download)
    idx = [int((labels == c).nonzero()[0]) for c in classes]
    return images[idx]


def make_fashion_mnist_subset(source=None, out_dir=None) -> list[Path]:
    """
    Write the first 10,000 training images and labels as new IDX .gz files.

    Byte-identical on every run (gzip mtime 0, no file name; same zlib).

    :param source: a folder holding the full training files (else the usual lookup, no download).
    :param out_dir: where to write (default: the data folder's fashion-mnist/).
    :return: the two paths written.
    """
    dirs = _search_dirs(source)
    out = Path(out_dir) if out_dir is not None else data_dir() / "fashion-mnist"
    images, labels = _read_pair(*_fetch(_SPLITS["train"], dirs, False, out))
    out.mkdir(parents=True, exist_ok=True)
    names = _SPLITS["train-10k"]
    return [
        write_idx(out / names[0], images[:SUBSET_SIZE]),
        write_idx(out / names[1], labels[:SUBSET_SIZE]),
    ]


# ----------------------------------------------------------------------------------------------
# Minibatches
# ----------------------------------------------------------------------------------------------


def _as_tuple(data: Batch):
    if isinstance(data, torch.Tensor):
        return (data,), True
    data = tuple(data)
    if not data or any(len(d) != len(data[0]) for d in data):
        raise ValueError("data must be a tensor or tensors with the same first dimension")
    return data, False


def iterate_minibatches(
    data: Batch,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[Batch]:
    """
    One pass over the data in minibatches.

    :param data: an [N x ...] tensor, or a tuple of tensors with the same N (e.g. images, labels).
    :param batch_size: the number of examples per batch.
    :param generator: a CPU torch.Generator for the shuffling order.
    :param shuffle: visit the examples in a random order.
    :param drop_last: skip the last, smaller batch.
    :return: an iterator of [batch_size x ...] tensors (or tuples of them, like ``data``).
    """
    batch_size = _check_n(batch_size, "batch_size")
    tensors, single = _as_tuple(data)
    n = len(tensors[0])
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size ({batch_size}) exceeds the number of examples ({n}) with drop_last=True"
        )
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        batch = tuple(t[idx.to(t.device)] for t in tensors)
        yield batch[0] if single else batch


def infinite_minibatches(
    data: Batch, batch_size: int, *, generator: torch.Generator | None = None
) -> Iterator[Batch]:
    """
    Shuffled minibatches forever, reshuffling at each pass (for step-counted training loops).

    :return: an endless iterator of [batch_size x ...] tensors (or tuples, like ``data``).
    """
    while True:
        yield from iterate_minibatches(data, batch_size, generator=generator, shuffle=True, drop_last=True)
