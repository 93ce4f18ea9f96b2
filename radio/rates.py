"""SINR and sum-rate, batched, in numpy and (differentiable) torch.  Paper 1 Sec. II, paper 2 eq. (1).

    SINR_l = G_ll p_l / (sum_{j != l} G_lj p_j + sigma^2)
    R_l    = log2(1 + SINR_l)          [bit/s/Hz]
"""

from __future__ import annotations

import numpy as np

LN2 = float(np.log(2.0))


def interference_plus_noise(G: np.ndarray, p: np.ndarray, noise_w: float) -> np.ndarray:
    """[n, L] received interference plus noise: sum_{j != l} G_lj p_j + sigma^2.  G [n,L,L], p [n,L] W."""
    total = np.einsum("nlj,nj->nl", G, p)
    direct = np.einsum("nll->nl", G) * p
    return np.maximum(total - direct, 0.0) + noise_w


def link_rates(G: np.ndarray, p: np.ndarray, noise_w: float) -> np.ndarray:
    """[n, L] per-link rates in bit/s/Hz."""
    G = np.asarray(G, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if G.ndim == 2:
        return link_rates(G[None], p[None], noise_w)[0]
    sinr = np.einsum("nll->nl", G) * p / interference_plus_noise(G, p, noise_w)
    return np.log1p(sinr) / LN2


def sum_rate(G: np.ndarray, p: np.ndarray, noise_w: float) -> np.ndarray:
    """[n] sum-rate in bit/s/Hz (paper 1, eq. 1a)."""
    return link_rates(G, p, noise_w).sum(axis=-1)


def link_rates_torch(G, p, noise_w: float):
    """Differentiable [..., L] per-link rates (torch tensors G [..., L, L], p [..., L] W)."""
    import torch

    total = torch.einsum("...lj,...j->...l", G, p)
    direct = torch.diagonal(G, dim1=-2, dim2=-1) * p
    interf = torch.clamp(total - direct, min=0.0) + noise_w
    return torch.log1p(direct / interf) / LN2


def sum_rate_torch(G, p, noise_w: float):
    """Differentiable [...] sum-rate in bit/s/Hz (torch)."""
    return link_rates_torch(G, p, noise_w).sum(dim=-1)
