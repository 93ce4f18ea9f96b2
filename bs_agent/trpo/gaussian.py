"""The diagonal Gaussian policy's log-density and KL (paper 1 eqs. (9), (12), (23)), summed over actions."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(a: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """[...] log N(a; mu, exp(log_std)^2) summed over the last axis (independent actions)."""
    z = (a - mu) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mu0: torch.Tensor, log_std0: torch.Tensor, mu1: torch.Tensor, log_std1: torch.Tensor
                ) -> torch.Tensor:
    """[...] KL(N(mu0, s0^2) || N(mu1, s1^2)) summed over the last axis."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mu0 - mu1) ** 2) / (2 * var1) - 0.5).sum(-1)
