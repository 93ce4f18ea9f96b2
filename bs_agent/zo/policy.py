"""Per-link policy phi_i(s_i, theta_i) of paper 2, Sec. IV: a small MLP with a sigmoid output times
p_max, on a flat parameter vector (so theta + mu u is a vector sum).

Local measurements of link i at slot t (powers p(t-1) of the previous slot, channel of slot t):

    s_i = ( R_i : received interference plus noise  sum_{j != i} G_ij p_j + sigma^2,
            T_i : interference it causes to each other link j, G_ji p_i          [N-1 values],
            G_i : its direct gain G_ii,
            P_i : its previous power p_i )

fed to the network as ``log10(1 + x / sigma^2)`` for the powers and gains (G_ii scaled by p_max)
and ``p_i / p_max`` for the previous power, so the features are O(1). With ``caused='sum'`` the
caused-interference block holds the pooled log10(1 + sum_{j != i} T_ij / sigma^2) in its first entry
and 0 (masked) in the others, so a policy has one weight on how much interference it causes in all.
Links may have different hidden sizes; links that share an architecture are evaluated together (stacked parameters).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

INPUTS = ("paper", "memoryless")
CAUSED = ("each", "sum")      # T_i per other link (paper) | pooled over the other links
FEATURES = ("rx", "caused", "direct", "prev")   # R_i, T_i [N - 1], G_ii, p_i(t-1)


def feature_mask(n_links: int, features: tuple[str, ...], caused: str = "each") -> tuple[float, ...]:
    """[m] 1 on the features of the named groups, 0 elsewhere; () when all are used (paper). With
    ``caused='sum'`` only the first entry of the caused block (the pooled value) is used."""
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise ValueError(f"features: expected a non-empty subset of {FEATURES}, got {features!r}")
    if caused not in CAUSED:
        raise ValueError(f"caused: expected one of {CAUSED}, got {caused!r}")
    if set(features) == set(FEATURES) and caused == "each":
        return ()
    L = n_links
    sizes = {"rx": 1, "caused": L - 1, "direct": 1, "prev": 1}
    return tuple(float(f in features and (f != "caused" or caused == "each" or k == 0))
                 for f in FEATURES for k in range(sizes[f]))


@dataclass(frozen=True)
class MLPSpec:
    """Layer sizes (m, h_1, ..., h_L, 1); tanh hidden layers, sigmoid output.

    inputs       'paper': s_i as in Sec. IV (see the module docstring); 'memoryless': T_i is the
                 interference link i would cause at full power, G_ji p_max, and the previous-power
                 feature is 0 -- none of the inputs then depends on the link's own past power, so
                 "off" is not a fixed point of its own feedback (the others' powers still enter R_i).
    logit_bound  c > 0: the output pre-activation q is bounded to c tanh(q / c) before the sigmoid
                 (power fraction in [sigmoid(-c), sigmoid(c)]); 0: unbounded (paper).
    norm         () or (mean [m], std [m]): the network sees (s - mean) / std, fixed constants (see
                 :func:`feature_norm`); a fixed affine map of the inputs, not learned.
    mask         () or [m] 0/1 factors on the inputs (:func:`feature_mask`): a link that leaves a feature
                 group out sees 0 there (the weights on it then have no effect on its power).
    out_bias     initial bias of the output unit (0: power fraction 1/2 on average; -3: about 0.05).
    caused       'each': T_i as N - 1 inputs (paper); 'sum': pooled into one (see the module docstring).
    param_bound  c > 0: the policy uses the bounded parameters c tanh(theta / c) (every weight and bias
                 in (-c, c), equal to theta to first order near 0), so a logit cannot run off to -100
                 while the weights stay moderate; Algorithm 1 runs unchanged on theta. 0: theta itself.
    """

    sizes: tuple[int, ...]
    inputs: str = "paper"
    logit_bound: float = 0.0
    norm: tuple[tuple[float, ...], ...] = ()
    out_bias: float = 0.0
    mask: tuple[float, ...] = ()
    caused: str = "each"
    param_bound: float = 0.0

    @classmethod
    def for_links(cls, n_links: int, hidden: tuple[int, ...], inputs: str = "paper",
                  logit_bound: float = 0.0, norm: tuple[tuple[float, ...], ...] = (),
                  out_bias: float = 0.0, features: tuple[str, ...] = FEATURES, caused: str = "each",
                  param_bound: float = 0.0) -> MLPSpec:
        if inputs not in INPUTS:
            raise ValueError(f"inputs: expected one of {INPUTS}, got {inputs!r}")
        if not param_bound >= 0:
            raise ValueError(f"param_bound: expected >= 0, got {param_bound!r}")
        return cls((state_dim(n_links), *tuple(int(h) for h in hidden), 1), inputs, float(logit_bound), norm,
                   float(out_bias), feature_mask(n_links, features, caused), caused, float(param_bound))

    def effective(self, flat):
        """The parameters the policy uses: c tanh(theta / c) with ``param_bound`` c > 0, else theta itself
        (the same object); numpy or torch."""
        c = self.param_bound
        if c <= 0:
            return flat
        return c * (np.tanh(flat / c) if isinstance(flat, np.ndarray) else (flat / c).tanh())

    def squash(self, q):
        """The output pre-activation as the sigmoid sees it: c tanh(q / c) with ``logit_bound`` c > 0,
        else q itself; numpy or torch."""
        c = self.logit_bound
        if c <= 0:
            return q
        return c * (np.tanh(q / c) if isinstance(q, (np.ndarray, np.generic)) else (q / c).tanh())

    def normalise(self, s):
        """The network's input: (s - mean) / std with ``norm``, times ``mask`` (numpy or torch)."""
        if isinstance(s, np.ndarray):
            if self.norm:
                mean, std, _ = self._arrays
                s = (s - mean) / std
            if self.mask:
                s = s * self._arrays[2]
            return s
        if self.norm:
            s = (s - s.new_tensor(self.norm[0])) / s.new_tensor(self.norm[1])
        if self.mask:
            s = s * s.new_tensor(self.mask)
        return s

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``norm`` and ``mask`` as arrays, built once (the air calls :meth:`normalise` every slot)."""
        mean, std = (np.asarray(self.norm[0]), np.asarray(self.norm[1])) if self.norm else (None, None)
        return mean, std, np.asarray(self.mask) if self.mask else None

    @property
    def n_params(self) -> int:
        return int(sum(o * i + o for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=False)))

    def unflatten(self, flat):
        """[..., n] (numpy or torch) -> list of (W [..., out, in], b [..., out]) views of the effective
        parameters (:meth:`effective`)."""
        flat = self.effective(flat)
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
        :meth:`bs_agent.zo.agent.ZOLinkAgent.u`).
        """
        if not scale:
            return np.ones(self.n_params)
        if len(scale) != len(self.sizes) - 1:
            raise ValueError(f"layer scale: expected {len(self.sizes) - 1} factors (one per layer), got {len(scale)}")
        return np.concatenate([np.full(o * i + o, float(c))
                               for (i, o), c in zip(zip(self.sizes[:-1], self.sizes[1:], strict=False), scale,
                                                    strict=True)])

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """theta^0 [n]: Glorot-uniform weights, zero biases but the output's (``out_bias``; 0: output
        p_max / 2 on average)."""
        parts = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:], strict=False):
            lim = np.sqrt(6.0 / (i + o))
            parts.append(rng.uniform(-lim, lim, size=o * i))
            parts.append(np.zeros(o))
        parts[-1][:] = self.out_bias
        return np.concatenate(parts)


def feature_norm(G: np.ndarray, noise_w: float, p_max_w: float, inputs: str = "paper", caused: str = "each"
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean [m], std [m]) of the features at full power over channel samples G [S, L, L]: R_i, the
    N - 1 caused-interference features (pooled: one mean and std for all of them) and G_ii pooled
    over links and slots; the previous-power feature gets mean 0.5, std 0.5 ('paper', a fraction in
    [0, 1]) or 0, 1 ('memoryless', where it is 0). ``caused='sum'``: the pooled entry gets its own
    mean and std, the unused entries mean 0, std 1."""
    L = G.shape[-1]
    s = local_states(G, np.full(G.shape[:-1], p_max_w), noise_w, np.full(L, p_max_w), inputs, caused)
    mean, std = np.zeros(L + 2), np.ones(L + 2)
    for sl in (slice(0, 1), slice(1, L) if caused == "each" else slice(1, 2), slice(L, L + 1)):
        mean[sl] = s[..., sl].mean()
        std[sl] = max(float(s[..., sl].std()), 1e-6)
    if inputs == "paper":
        mean[L + 1], std[L + 1] = 0.5, 0.5
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def state_dim(n_links: int) -> int:
    """m_i = 1 + (N - 1) + 1 + 1."""
    return n_links + 2


def local_states(G: np.ndarray, p_prev: np.ndarray, noise_w: float, p_max_w: np.ndarray,
                 inputs: str = "paper", caused: str = "each") -> np.ndarray:
    """[..., L, m] features s_i of every link from G [..., L, L] (slot t) and p_prev [..., L] W
    (``inputs``, ``caused``: see :class:`MLPSpec`)."""
    L = G.shape[-1]
    received = np.einsum("...lj,...j->...l", G, p_prev)
    direct = np.einsum("...ll->...l", G)
    rin = received - direct * p_prev + noise_w                       # R_i
    own = p_prev if inputs == "paper" else np.broadcast_to(p_max_w, p_prev.shape)
    cg = np.swapaxes(G * own[..., None, :], -1, -2)                  # [.., i, j] = G_ji p_i
    off = ~np.eye(L, dtype=bool)
    tx = cg[..., off].reshape(*cg.shape[:-2], L, L - 1)              # T_i, j != i
    feats = np.concatenate([
        np.log10(1.0 + rin / noise_w)[..., None],
        pool_caused(np.log10(1.0 + tx / noise_w), np.log10(1.0 + tx.sum(-1) / noise_w), caused),
        np.log10(1.0 + direct * p_max_w / noise_w)[..., None],
        (p_prev / p_max_w if inputs == "paper" else np.zeros_like(p_prev))[..., None],
    ], axis=-1)
    return feats


def pool_caused(each, pooled, caused: str):
    """The caused-interference block [..., L, L - 1]: ``each`` ('each') or ``pooled`` [..., L] in the
    first entry and 0 in the others ('sum'); numpy or torch."""
    if caused == "each":
        return each
    out = each * 0.0
    out[..., 0] = pooled
    return out


def local_states_torch(G, p_prev, noise_w: float, p_max_w, inputs: str = "paper", caused: str = "each"):
    """Torch twin of :func:`local_states` (differentiable in p_prev)."""
    import torch

    L = G.shape[-1]
    received = torch.einsum("...lj,...j->...l", G, p_prev)
    direct = torch.diagonal(G, dim1=-2, dim2=-1)
    rin = received - direct * p_prev + noise_w
    own = p_prev if inputs == "paper" else torch.full_like(p_prev, float(p_max_w))
    cg = (G * own[..., None, :]).transpose(-1, -2)
    off = ~torch.eye(L, dtype=torch.bool)
    tx = cg[..., off].reshape(*cg.shape[:-2], L, L - 1)
    return torch.cat([
        torch.log10(1.0 + rin / noise_w)[..., None],
        pool_caused(torch.log10(1.0 + tx / noise_w), torch.log10(1.0 + tx.sum(-1) / noise_w), caused),
        torch.log10(1.0 + direct * p_max_w / noise_w)[..., None],
        (p_prev / p_max_w if inputs == "paper" else torch.zeros_like(p_prev))[..., None],
    ], dim=-1)


def forward_stacked(spec: MLPSpec, theta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Power fraction in (0, 1) of a group of links sharing ``spec``.

    theta [g, n] (one row per link of the group), s [..., g, m] -> [..., g].
    """
    layers = spec.unflatten(theta)
    x = spec.normalise(s)
    for li, (W, b) in enumerate(layers):
        x = np.einsum("goi,...gi->...go", W, x) + b
        if li < len(layers) - 1:
            x = np.tanh(x)
    return 1.0 / (1.0 + np.exp(-spec.squash(x[..., 0])))


def forward_stacked_torch(spec: MLPSpec, theta, s):
    """Torch twin of :func:`forward_stacked` (theta [g, n] tensor, s [..., g, m])."""
    import torch

    layers = spec.unflatten(theta)
    x = spec.normalise(s)
    for li, (W, b) in enumerate(layers):
        x = torch.einsum("goi,...gi->...go", W, x) + b
        if li < len(layers) - 1:
            x = torch.tanh(x)
    return torch.sigmoid(spec.squash(x[..., 0]))


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
