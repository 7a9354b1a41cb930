"""What chapter 14's projects build on: a labelled Gaussian mixture under the forward process, exact.

A mixture of Gaussians noised by DDPM's forward process stays a mixture of Gaussians: component k with
mean m_k and standard deviation s_k becomes, at step t, N(sqrt(abar_t) m_k, (abar_t s_k^2 + 1 - abar_t) I)
(DDPM Eq. 4 applied to each component). So everything a diffusion model and a classifier learn on it
is known in closed form: the density of x_t, the best noise prediction E[eps | x_t] (the minimizer of
L_simple, Tweedie's formula), and the exact noise-aware classifier p(y = k | x_t), the posterior
probability of the component. Chapter 14's classifier-guidance project measures learned and
clean-data classifiers against these exact answers.

- :class:`NoisedMixture`: sample labelled points, ``log_prob(x, t)``, ``class_log_probs(x, t)``,
  ``eps_model(x, t)``, ``excess_cross_entropy(classifier, ...)``;
- :data:`GUIDANCE_MIXTURE`, :func:`guidance_mixture`: the guidance project's two classes, a narrow and a wide
  Gaussian; :data:`INPAINTING_MIXTURE`: the two blobs of the ``repaint`` checker;
- :func:`toy_schedule`: the shipped swiss-roll model's schedule (T = 200, linear 1e-4 to 0.1);
- :func:`train_classifier`: a small time-conditioned MLP classifier trained on batches that a function makes.

This module is part of the course layer (``ddpm_lib.course``); the core never imports it.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..mixtures import mixture_params
from ..schedules import NoiseSchedule

__all__ = [
    "NoisedMixture",
    "GUIDANCE_MIXTURE",
    "INPAINTING_MIXTURE",
    "toy_schedule",
    "guidance_mixture",
    "train_classifier",
]


class NoisedMixture:
    """A labelled mixture of isotropic Gaussians and its exact noised versions under a schedule.

    :param means: the component means, (K, D).
    :param stds: K standard deviations (isotropic components), or one number.
    :param weights: K weights (normalized), None for equal weights.
    :param schedule: the :class:`NoiseSchedule` whose alpha_bars noise the data.
    """

    def __init__(self, means, stds, weights, schedule: NoiseSchedule):
        means, stds, weights = mixture_params(means, stds, weights)
        if not bool((stds == stds[:, :1]).all()):
            raise ValueError("stds must be isotropic: one standard deviation per component")
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        self.means, self.stds, self.weights, self.schedule = means, stds[:, 0], weights, schedule
        self.K, self.D = means.shape

    def sample(self, n: int, generator: Optional[torch.Generator] = None, y=None):
        """(x, labels): n clean points (n, D) float32 and their components (n,) long; ``y`` given
        (an int), every point is drawn from component y (the class-conditional data)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if y is None:
            labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            if not isinstance(y, int) or not 0 <= y < self.K:
                raise ValueError(f"y must be a component index in 0..{self.K - 1}, got {y!r}")
            labels = torch.full((n,), y, dtype=torch.long)
        e = torch.randn(n, self.D, generator=generator, dtype=torch.float64)
        return (self.means[labels] + self.stds[labels, None] * e).float(), labels

    def _t(self, t, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        t = t.expand(n) if t.ndim == 0 else t
        if t.shape != (n,):
            raise ValueError(f"t must be an int or a LongTensor of shape ({n},), got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t > self.schedule.T).any()):
            raise ValueError(f"t must lie in 0..T = 0..{self.schedule.T}")
        return t

    def _components(self, x: torch.Tensor, t):
        """log w_k + log N(x; sqrt(abar_t) m_k, v_k I) as (N, K), with the scaled means and v_k (N, K)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.D:
            raise ValueError(f"x must have shape (N, {self.D}), got {tuple(x.shape)}")
        ab = self.schedule.alpha_bars[self._t(t, x.shape[0])][:, None]  # (N, 1)
        mu = ab.sqrt()[:, :, None] * self.means[None]  # (N, K, D)
        var = ab * self.stds[None] ** 2 + 1 - ab  # (N, K)
        sq = ((x[:, None, :] - mu) ** 2).sum(-1)
        logp = -0.5 * sq / var - 0.5 * self.D * torch.log(2 * math.pi * var) + torch.log(self.weights)
        return logp, mu, var

    def class_log_probs(self, x: torch.Tensor, t) -> torch.Tensor:
        """log p(y = k | x_t), (N, K) float64: the exact noise-aware classifier (t = 0: the clean one)."""
        logp, _, _ = self._components(x, t)
        return torch.log_softmax(logp, dim=1)

    def log_prob(self, x: torch.Tensor, t) -> torch.Tensor:
        """log q(x_t) (N,), float64: the noised mixture's density at step t (0: the data's)."""
        logp, _, _ = self._components(x, t)
        return torch.logsumexp(logp, dim=1)

    def eps_model(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """E[eps | x_t] = -sqrt(1 - abar_t) grad log q(x_t), the best eps-prediction; a model for the
        samplers (``model(x_t, t)``, t in 1..T), returned in x's dtype."""
        logp, mu, var = self._components(x, t)
        r = torch.softmax(logp, dim=1)  # (N, K)
        score = (r[:, :, None] * (mu - x.double()[:, None, :]) / var[:, :, None]).sum(1)
        ab = self.schedule.alpha_bars[self._t(t, x.shape[0])][:, None]
        return (-(1 - ab).sqrt() * score).to(x.dtype)

    def excess_cross_entropy(
        self, classifier: Callable, ts=(0, 10, 25, 50, 100), n: int = 4000, seed: int = 0
    ) -> dict:
        """How far a classifier ``classifier(x_t, t) -> logits (N, K)`` is from the exact p(y | x_t):
        its cross-entropy on labelled noisy draws minus the exact classifier's, in nats, per t
        (the expected KL from the exact posterior to the classifier's; 0 is perfect).

        :return: ``{t: excess}`` for each t in ``ts``, on n draws of x_0 and noise with the given seed.
        """
        g = torch.Generator().manual_seed(seed)
        out = {}
        for tt in ts:
            x0, y = self.sample(n, g)
            ab = self.schedule.alpha_bars[tt]
            x = (
                ab.sqrt() * x0.double()
                + (1 - ab).sqrt() * torch.randn(n, self.D, generator=g, dtype=torch.float64)
            ).float()
            t = torch.full((n,), tt, dtype=torch.long)
            with torch.no_grad():
                logits = torch.as_tensor(classifier(x, t)).double()
            if logits.shape != (n, self.K):
                raise ValueError(
                    f"the classifier returned shape {tuple(logits.shape)}, expected ({n}, {self.K})"
                )
            ce = -torch.log_softmax(logits, 1)[torch.arange(n), y].mean()
            exact = -self.class_log_probs(x, t)[torch.arange(n), y].mean()
            out[tt] = float(ce - exact)
        return out


# the two-class problem of chapter 14's guidance project: a narrow class and a wide one, so that the
# clean classifier's boundary (a circle around the narrow class) is far from the noisy one's
GUIDANCE_MIXTURE = {"means": ((-1.0, 0.0), (1.0, 0.0)), "stds": (0.15, 0.5), "weights": (0.5, 0.5)}
# the inpainting project's check: two blobs on the diagonal; a filled x_2 on the wrong side of 0 from the
# known x_1 is incoherent (the exact conditional almost never puts it there)
INPAINTING_MIXTURE = {"means": ((-1.0, -1.0), (1.0, 1.0)), "stds": (0.3, 0.3), "weights": (0.5, 0.5)}


def toy_schedule(T: int = 200) -> NoiseSchedule:
    """The shipped swiss-roll model's schedule, linear from 1e-4 to 0.1 over T = 200 steps, rescaled
    by 200 / T for another T (so that alpha_bar_T stays about the same)."""
    return NoiseSchedule.linear(T=T, beta_start=1e-4 * 200 / T, beta_end=0.1 * 200 / T)


def guidance_mixture(schedule: Optional[NoiseSchedule] = None) -> NoisedMixture:
    """:data:`GUIDANCE_MIXTURE` under ``schedule`` (default :func:`toy_schedule`)."""
    return NoisedMixture(**GUIDANCE_MIXTURE, schedule=schedule or toy_schedule())


def train_classifier(
    mixture: NoisedMixture,
    batch_fn: Callable,
    steps: int = 500,
    batch_size: int = 256,
    lr: float = 3e-3,
    hidden: int = 32,
    seed: int = 0,
):
    """Train a small classifier ``clf(x_t, t) -> logits`` (an :class:`~ddpm_lib.nets.MLP` with the time
    embedding) on the mixture's labelled points by cross-entropy with Adam.

    ``batch_fn(x0, generator) -> (x, t)`` turns each clean batch into the classifier's input: x_t and t
    for a noise-conditioned classifier (chapter 14's ``noisy_batch``), or x_0 and zeros for a clean one.
    Deterministic for a seed. Returns the classifier in eval mode.
    """
    from ..nets import MLP  # the course layer may import the core; kept local to keep this module light

    for name, v in (("steps", steps), ("batch_size", batch_size), ("hidden", hidden)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = MLP(data_dim=mixture.D, hidden=hidden, layers=2, out_dim=mixture.K)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(steps):
        x0, y = mixture.sample(batch_size, g)
        x, t = batch_fn(x0, g)
        loss = torch.nn.functional.cross_entropy(clf(x.float(), t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()
