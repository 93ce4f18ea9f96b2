"""The power-allocation problem instance shared by every solver.

    maximise_p  sum_l log2(1 + G_ll p_l / (sum_{j != l} G_lj p_j + sigma^2))      (paper 1, eq. 1a)
    s.t.        0 <= p_l <= p_max_l                                              (eq. 1b)
    optionally  sum_{k} p_{b,k} <= P_bs  for every BS b                          (Fig. 15 variant)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ProblemError(ValueError):
    """An invalid problem instance; the message names the field and what was expected."""


@dataclass(frozen=True)
class Problem:
    """A batch of power-allocation problems.

    G            [n, L, L] linear power gains, convention of :mod:`radio`.
    noise_w      receiver noise power in W (same at every receiver).
    p_max_w      [L] per-link power limit in W.
    bandwidth_hz total bandwidth W in Hz (only used to report Mbps).
    cells, users_per_cell   B and K with L = B*K (K = 1 for the N-link model).
    bs_sum_power_w          if set, the per-BS sum-power limit sum_k p_{b,k} <= bs_sum_power_w.
    """

    G: np.ndarray
    noise_w: float
    p_max_w: np.ndarray
    bandwidth_hz: float = 1.0
    cells: int | None = None
    users_per_cell: int | None = None
    bs_sum_power_w: float | None = None

    def __post_init__(self) -> None:
        G = np.asarray(self.G, dtype=np.float64)
        if G.ndim == 2:
            G = G[None]
        if G.ndim != 3 or G.shape[1] != G.shape[2] or G.shape[1] == 0:
            raise ProblemError(f"G: expected a float array of shape [n, L, L], got shape {np.shape(self.G)}")
        if not np.all(np.isfinite(G)) or np.any(G < 0):
            raise ProblemError("G: expected finite, non-negative linear power gains (found NaN/inf or < 0)")
        L = G.shape[1]
        p_max = np.broadcast_to(np.asarray(self.p_max_w, dtype=np.float64), (L,)).copy() \
            if np.ndim(self.p_max_w) in (0, 1) and np.size(self.p_max_w) in (1, L) else None
        if p_max is None:
            raise ProblemError(f"p_max_w: expected a scalar or an array of shape [{L}], "
                               f"got shape {np.shape(self.p_max_w)}")
        if not np.all(np.isfinite(p_max)) or np.any(p_max <= 0):
            raise ProblemError("p_max_w: expected finite values > 0 W")
        if not (np.isfinite(self.noise_w) and float(self.noise_w) > 0):
            raise ProblemError(f"noise_w: expected a finite value > 0 W, got {self.noise_w}")
        if not (np.isfinite(self.bandwidth_hz) and float(self.bandwidth_hz) > 0):
            raise ProblemError(f"bandwidth_hz: expected a finite value > 0 Hz, got {self.bandwidth_hz}")
        cells, K = self.cells, self.users_per_cell
        if cells is None and K is None:
            cells, K = L, 1
        elif cells is None or K is None or int(cells) * int(K) != L or int(cells) < 1:
            raise ProblemError(f"cells, users_per_cell: expected positive integers with cells*users_per_cell "
                               f"= L = {L}, got {self.cells} and {self.users_per_cell}")
        if self.bs_sum_power_w is not None and not float(self.bs_sum_power_w) > 0:
            raise ProblemError(f"bs_sum_power_w: expected > 0 W, got {self.bs_sum_power_w}")
        object.__setattr__(self, "G", G)
        object.__setattr__(self, "p_max_w", p_max)
        object.__setattr__(self, "noise_w", float(self.noise_w))
        object.__setattr__(self, "bandwidth_hz", float(self.bandwidth_hz))
        object.__setattr__(self, "cells", int(cells))
        object.__setattr__(self, "users_per_cell", int(K))

    @property
    def n(self) -> int:
        """Number of realizations (slots) in the batch."""
        return self.G.shape[0]

    @property
    def L(self) -> int:
        """Number of links L = B*K."""
        return self.G.shape[1]

    def cell_of_link(self) -> np.ndarray:
        """[L] index b of the BS serving each link (l = b*K + k)."""
        return np.arange(self.L) // self.users_per_cell

    def subset(self, idx: slice | np.ndarray) -> Problem:
        """The same problem restricted to some realizations."""
        G = self.G[idx]
        return Problem(G if G.ndim == 3 else G[None], self.noise_w, self.p_max_w, self.bandwidth_hz,
                       self.cells, self.users_per_cell, self.bs_sum_power_w)

    def with_bs_sum_power(self, bs_sum_power_w: float | None) -> Problem:
        """The same channels with (or without) the per-BS sum-power constraint."""
        return Problem(self.G, self.noise_w, self.p_max_w, self.bandwidth_hz,
                       self.cells, self.users_per_cell, bs_sum_power_w)

    def project(self, p: np.ndarray) -> np.ndarray:
        """Clip powers into the feasible set: [0, p_max] per link, then scale each BS down to its
        sum-power limit if one is set. ``p`` is [n, L] W."""
        p = np.clip(p, 0.0, self.p_max_w)
        if self.bs_sum_power_w is None:
            return p
        pb = p.reshape(p.shape[0], self.cells, self.users_per_cell)
        tot = pb.sum(axis=2, keepdims=True)
        scale = np.minimum(1.0, self.bs_sum_power_w / np.maximum(tot, 1e-300))
        return (pb * scale).reshape(p.shape)

    def p_full(self) -> np.ndarray:
        """[n, L] the 'max power' point of the feasible set (per-BS share if a sum limit is set)."""
        p = np.broadcast_to(self.p_max_w, (self.n, self.L)).copy()
        return self.project(p)
