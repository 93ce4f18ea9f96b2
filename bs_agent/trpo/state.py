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


def obs_dim(scheme: str, B: int, K: int) -> int:
    """Input size of the policy/value networks."""
    if scheme == "centralized":
        return K * B * B
    if scheme == "full":
        return K * B
    if scheme == "partial":
        return 2 * K * B + B
    raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")


def act_dim(scheme: str, B: int, K: int) -> int:
    """Number of powers one agent decides (all L for the centralized agent, its K users otherwise)."""
    return K * B if scheme == "centralized" else K
