"""Closed-form reverse kernels for Gaussian data, used as an oracle "model" in tests.

For x_0 ~ N(m, s^2 I), every q(x_{t-1} | x_t) is Gaussian and known exactly, so a model that
outputs its mean and log variance makes the bound tight up to the prior mismatch at T.
"""

import torch


class OptimalGaussianReverse:
    """model(x_t, t) -> [mean of q(x_{t-1}|x_t), log Var(x_{t-1}|x_t)] (variance='learned', prediction='mean')."""

    def __init__(self, schedule, m=0.3, s=0.7):
        self.sch, self.m, self.s = schedule, m, s

    def __call__(self, x_t, t):
        sch = self.sch
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        ab_prev = sch.alpha_bars[t - 1].view(shape).to(x_t.dtype)
        a = sch.alphas[t].view(shape).to(x_t.dtype)
        b = sch.betas[t].view(shape).to(x_t.dtype)
        mu1 = ab_prev.sqrt() * self.m
        v1 = ab_prev * self.s**2 + 1 - ab_prev
        mu2 = a.sqrt() * mu1
        v2 = a * v1 + b
        cov = a.sqrt() * v1
        mean = mu1 + cov / v2 * (x_t - mu2)
        var = (v1 - cov**2 / v2).expand_as(x_t)
        return torch.cat([mean, var.log()], dim=1)


class OptimalGaussianEps:
    """model(x_t, t) -> E[eps | x_t] for x_0 ~ N(m, s^2) (prediction='eps')."""

    def __init__(self, schedule, m=0.3, s=0.7):
        self.sch, self.m, self.s = schedule, m, s

    def __call__(self, x_t, t):
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        ab = self.sch.alpha_bars[t].view(shape).to(x_t.dtype)
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * self.m) / (ab * self.s**2 + 1 - ab)
