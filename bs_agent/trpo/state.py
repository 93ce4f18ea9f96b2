"""A BS's local state, expressed relative to itself (DESIGN §3).

BS b sees its own downlink gains to every user of the network, h_{b->k,b'} for all b', k
(paper 1 Sec. III-C: K*B values per slot), ordered own cell first, then the other cells in the fixed
cyclic order b+1, b+2, ... (mod B). Gains travel in dB, normalised with fixed constants of the
scenario; powers as fractions of Pmax. With this, one shared policy serves every BS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radio.seeding import GAIN_NORM_SEED

SCHEMES = ("centralized", "partial", "full")
"""Paper 1's three schemes: Algorithm 1 (centralized), 2 (round-robin), 3 (fully decentralized)."""

RR_MESSAGES = ("powers", "interference")
"""What the round-robin message carries (``trpo.rr_message``): 'powers' (paper 1's state: the power fractions
decided so far and the flags), 'interference' (the same, plus the running interference at every user)."""


def relative_order(b: int, B: int) -> np.ndarray:
    """[B] absolute cell indices in the order BS ``b`` sees them: b, b+1, ..., b-1 (mod B)."""
    return (b + np.arange(B)) % B


@dataclass(frozen=True)
class GainNorm:
    """Fixed affine normalisation of gains in dB: (10 log10 g - mean_db) / std_db."""

    mean_db: float
    std_db: float

    def __call__(self, gains: np.ndarray) -> np.ndarray:
        db = 10.0 * np.log10(np.maximum(gains, 1e-300))
        return ((db - self.mean_db) / self.std_db).astype(np.float32)

    @classmethod
    def of_scenario(cls, scenario, n: int = 4096, seed: int = GAIN_NORM_SEED) -> GainNorm:
        """Constants measured once on a fixed-seed sample of the scenario (independent of the run seed)."""
        g = scenario.user_bs_gains(n, np.random.default_rng(seed))
        db = 10.0 * np.log10(np.maximum(g, 1e-300))
        return cls(float(db.mean()), float(db.std()))


def local_csi(gains_norm: np.ndarray, b: int, K: int) -> np.ndarray:
    """[n, B*K] BS b's own downlink gains (normalised) to all users, own cell first.
    ``gains_norm`` is [n, L, B] (user-by-BS, link l = cell*K + k)."""
    n, L, B = gains_norm.shape
    own = gains_norm[:, :, b].reshape(n, B, K)          # [n, cell, k]: BS b -> user k of cell
    return own[:, relative_order(b, B)].reshape(n, B * K)


def relative_powers(p_frac: np.ndarray, decided: np.ndarray, b: int, K: int) -> np.ndarray:
    """[n, B*K + B] powers decided so far (fractions of Pmax, 0 where undecided) in BS b's relative
    order, followed by the B 'has decided' flags in the same order. ``p_frac`` [n, L], ``decided`` [n, B]."""
    n, B = decided.shape
    order = relative_order(b, B)
    p = p_frac.reshape(n, B, K)[:, order].reshape(n, B * K)
    return np.concatenate([p, decided[:, order].astype(p.dtype)], axis=1).astype(np.float32)


@dataclass(frozen=True)
class InterferenceScale:
    """The constants with which a BS of the 'interference' round-robin variant turns its normalised CSI into what
    it adds to the running interference, and that interference into state features. Interference travels as
    INR_u = I_u / sigma^2 (linear, relative to the noise) at every user u of the network, in link order:

        I_u = sum over the BSs b' that decided of g_{b'->u} (P_{b'} - [u in cell b'] p_u)

    (radio's convention, :func:`radio.rates.interference_plus_noise`: G[l, j] = gain of the BS of link j to user l;
    BS b' transmits P_{b'} = sum of its K powers, and its own user's signal is not interference to it). BS b adds
    its term from its own gains to every user (its local CSI) and its own powers. The feature is
    10 log10(1 + INR_u) / std_db: 0 with no interference, in units of the gain normalisation's std."""

    mean_db: float          # the gain normalisation (GainNorm): g in dB = x * std_db + mean_db
    std_db: float
    snr_db: float           # 10 log10(Pmax / sigma^2)
    sum_frac: float | None = None   # per-BS sum-power limit / Pmax (None: no limit)

    @classmethod
    def of(cls, norm: GainNorm, p_max_w: float, noise_w: float, bs_sum_power_w: float | None) -> InterferenceScale:
        return cls(norm.mean_db, norm.std_db, float(10.0 * np.log10(p_max_w / noise_w)),
                   None if bs_sum_power_w is None else float(bs_sum_power_w / p_max_w))

    def added(self, csi: np.ndarray, frac: np.ndarray, b: int, K: int) -> np.ndarray:
        """[n, L] INR BS ``b`` adds at every user (link order), from its relative normalised CSI ``csi`` [n, L]
        (:func:`local_csi`) and its power fractions ``frac`` [n, K] (clipped, scaled into a sum limit)."""
        n, L = csi.shape
        g = 10.0 ** ((csi.astype(np.float64) * self.std_db + (self.mean_db + self.snr_db)) / 10.0)  # g Pmax/sigma^2
        p = np.clip(np.asarray(frac, np.float64), 0.0, 1.0)
        if self.sum_frac is not None:
            p = p * np.minimum(1.0, self.sum_frac / np.maximum(p.sum(axis=1, keepdims=True), 1e-300))
        P = p.sum(axis=1, keepdims=True)
        rel = g * P
        rel[:, :K] = g[:, :K] * (P - p)       # own cell first: its own users hear the BS's other users only
        out = np.empty((n, L))
        out[:, (relative_order(b, L // K)[:, None] * K + np.arange(K)).ravel()] = rel
        return out

    def features(self, inr: np.ndarray) -> np.ndarray:
        """10 log10(1 + INR) / std_db, float32."""
        return (10.0 * np.log10(1.0 + np.asarray(inr, np.float64)) / self.std_db).astype(np.float32)


def round_robin_extra(p_frac: np.ndarray, decided: np.ndarray, b: int, K: int, inr: np.ndarray | None = None,
                      scale: InterferenceScale | None = None) -> np.ndarray:
    """What BS b appends to its CSI in the round-robin: :func:`relative_powers` ('powers', [n, L + B]) or, given
    the running INR ``inr`` [n, L] and its ``scale`` ('interference'), the powers, the interference features in
    b's relative order, then the flags ([n, 2L + B])."""
    pf = relative_powers(p_frac, decided, b, K)
    if inr is None:
        return pf
    n, L = p_frac.shape
    rel = inr.reshape(n, L // K, K)[:, relative_order(b, L // K)].reshape(n, L)
    return np.concatenate([pf[:, :L], scale.features(rel), pf[:, L:]], axis=1)


def obs_dim(scheme: str, B: int, K: int, rr_message: str = "powers") -> int:
    """Input size of the policy/value networks."""
    if scheme == "centralized":
        return K * B * B
    if scheme == "full":
        return K * B
    if scheme == "partial":
        return (3 if rr_message == "interference" else 2) * K * B + B
    raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")


def act_dim(scheme: str, B: int, K: int) -> int:
    """Number of powers one agent decides (all L for the centralized agent, its K users otherwise)."""
    return K * B if scheme == "centralized" else K
