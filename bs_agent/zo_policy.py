"""Per-link policy phi_i(s_i, theta_i) of paper 2, Sec. IV: a small MLP with a sigmoid output times
p_max, on a flat parameter vector (so theta + mu u is a vector sum).

Local measurements of link i at slot t (powers p(t-1) of the previous slot, channel of slot t):

    s_i = ( R_i : received interference plus noise  sum_{j != i} G_ij p_j + sigma^2,
            T_i : interference it causes to each other link j, G_ji p_i          [N-1 values],
            G_i : its direct gain G_ii,
            P_i : its previous power p_i )

fed to the network as ``log10(1 + x / sigma^2)`` for the powers and gains (G_ii scaled by p_max)
and ``p_i / p_max`` for the previous power, so the features are O(1). Links may have different
hidden sizes; links that share an architecture are evaluated together (stacked parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MLPSpec:
    """Layer sizes (m, h_1, ..., h_L, 1); tanh hidden layers, sigmoid output."""

    sizes: tuple[int, ...]

    @classmethod
    def for_links(cls, n_links: int, hidden: tuple[int, ...]) -> MLPSpec:
        return cls((state_dim(n_links), *tuple(int(h) for h in hidden), 1))

    @property
    def n_params(self) -> int:
        return int(sum(o * i + o for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=False)))

    def unflatten(self, flat):
        """[..., n] (numpy or torch) -> list of (W [..., out, in], b [..., out]) views."""
        out, pos = [], 0
        lead = flat.shape[:-1]
        for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=False):
            W = flat[..., pos:pos + o * i].reshape(*lead, o, i)
            pos += o * i
            b = flat[..., pos:pos + o]
            pos += o
            out.append((W, b))
        return out

    def layer_scale(self, scale: tuple[float, ...]) -> np.ndarray:
        """D [n]: c_l on every weight and bias of layer l (``scale`` = (c_1, ..., c_L); empty: all 1).

        The zeroth-order links run Algorithm 1 on theta' with the policy phi_i(s, D theta'): in theta
        that is the perturbation mu D u and the update (gamma / mu) alpha-sum D u (see
        :meth:`bs_agent.zo_agent.ZOLinkAgent.u`).
        """
        if not scale:
            return np.ones(self.n_params)
        if len(scale) != len(self.sizes) - 1:
            raise ValueError(f"layer scale: expected {len(self.sizes) - 1} factors (one per layer), got {len(scale)}")
        return np.concatenate([np.full(o * i + o, float(c))
                               for (i, o), c in zip(zip(self.sizes[:-1], self.sizes[1:], strict=False), scale,
                                                    strict=True)])

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """theta^0 [n]: Glorot-uniform weights, zero biases (output p_max / 2 on average)."""
        parts = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=False):
            lim = np.sqrt(6.0 / (i + o))
            parts.append(rng.uniform(-lim, lim, size=o * i))
            parts.append(np.zeros(o))
        return np.concatenate(parts)


def state_dim(n_links: int) -> int:
    """m_i = 1 + (N - 1) + 1 + 1."""
    return n_links + 2


def local_states(G: np.ndarray, p_prev: np.ndarray, noise_w: float, p_max_w: np.ndarray) -> np.ndarray:
    """[..., L, m] features s_i of every link from G [..., L, L] (slot t) and p_prev [..., L] W."""
    L = G.shape[-1]
    received = np.einsum("...lj,...j->...l", G, p_prev)
    direct = np.einsum("...ll->...l", G)
    rin = received - direct * p_prev + noise_w                       # R_i
    caused = G * p_prev[..., None, :]                                # [.., j, i] = G_ji p_i
    caused = np.swapaxes(caused, -1, -2)                             # [.., i, j]
    off = ~np.eye(L, dtype=bool)
    tx = caused[..., off].reshape(*caused.shape[:-2], L, L - 1)      # T_i, j != i
    feats = np.concatenate([
        np.log10(1.0 + rin / noise_w)[..., None],
        np.log10(1.0 + tx / noise_w),
        np.log10(1.0 + direct * p_max_w / noise_w)[..., None],
        (p_prev / p_max_w)[..., None],
    ], axis=-1)
    return feats


def local_states_torch(G, p_prev, noise_w: float, p_max_w):
    """Torch twin of :func:`local_states` (differentiable in p_prev)."""
    import torch

    L = G.shape[-1]
    received = torch.einsum("...lj,...j->...l", G, p_prev)
    direct = torch.diagonal(G, dim1=-2, dim2=-1)
    rin = received - direct * p_prev + noise_w
    caused = (G * p_prev[..., None, :]).transpose(-1, -2)
    off = ~torch.eye(L, dtype=torch.bool)
    tx = caused[..., off].reshape(*caused.shape[:-2], L, L - 1)
    return torch.cat([
        torch.log10(1.0 + rin / noise_w)[..., None],
        torch.log10(1.0 + tx / noise_w),
        torch.log10(1.0 + direct * p_max_w / noise_w)[..., None],
        (p_prev / p_max_w)[..., None],
    ], dim=-1)


def forward_stacked(spec: MLPSpec, theta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Power fraction in (0, 1) of a group of links sharing ``spec``.

    theta [g, n] (one row per link of the group), s [..., g, m] -> [..., g].
    """
    layers = spec.unflatten(theta)
    x = s
    for li, (W, b) in enumerate(layers):
        x = np.einsum("goi,...gi->...go", W, x) + b
        if li < len(layers) - 1:
            x = np.tanh(x)
    return 1.0 / (1.0 + np.exp(-x[..., 0]))


def forward_stacked_torch(spec: MLPSpec, theta, s):
    """Torch twin of :func:`forward_stacked` (theta [g, n] tensor, s [..., g, m])."""
    import torch

    layers = spec.unflatten(theta)
    x = s
    for li, (W, b) in enumerate(layers):
        x = torch.einsum("goi,...gi->...go", W, x) + b
        if li < len(layers) - 1:
            x = torch.tanh(x)
    return torch.sigmoid(x[..., 0])


@dataclass(frozen=True)
class PolicyGroups:
    """Links grouped by architecture: ``groups[g] = (spec, link indices)``."""

    specs: tuple[MLPSpec, ...]          # per link

    @property
    def groups(self) -> list[tuple[MLPSpec, np.ndarray]]:
        seen: dict[MLPSpec, list[int]] = {}
        for i, sp in enumerate(self.specs):
            seen.setdefault(sp, []).append(i)
        return [(sp, np.asarray(ix)) for sp, ix in seen.items()]

    def powers(self, thetas: list[np.ndarray], s: np.ndarray, p_max_w: np.ndarray) -> np.ndarray:
        """[..., L] powers in W of all links from their parameter vectors and states s [..., L, m]."""
        p = np.empty(s.shape[:-1])
        for spec, ix in self.groups:
            th = np.stack([thetas[i] for i in ix])
            p[..., ix] = forward_stacked(spec, th, s[..., ix, :])
        return p * p_max_w
