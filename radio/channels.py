"""Channel draws for the scenarios (paper 1 Sec. II / Table I; paper 2 Sec. IV).

Cellular ('3cell', '7cell', '19cell'; layouts in :mod:`radio.layouts`): user of link l at distance d from
BS b sees the power gain
    |h|^2 = beta * |g|^2,   beta = (1 + d/d0)^-alpha,   |g|^2 ~ Exp(1)   (g ~ CN(0, 1), Rayleigh)
independently per (user, BS, slot). 'links' (paper 2): G_lj = c_l * h_lj^2 with h_lj ~ N(0, 1) i.i.d.
and optional per-receiver path-loss factors c_l (``link_channel='complex'``: h_lj ~ CN(0, 1), so
|h_lj|^2 ~ Exp(1), the Rayleigh gain of a complex H as paper 2 Sec. II writes it; default real, as
its Sec. IV states h_ij ~ N(0, 1)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from radio.layouts import LAYOUT_CELLS, WRAPAROUND_RINGS, bs_positions, distances, drop_users, wraparound_shifts
from radio.problem import Problem, ProblemError
from radio.units import dbm_to_w, noise_power_w

SCENARIOS = ("3cell", "7cell", "19cell", "links")
LINK_CHANNELS = ("real", "complex")


@dataclass(frozen=True)
class Scenario:
    """A network scenario. Defaults are paper 1's Table I (3 cells, K = 2) and paper 2's Sec. IV."""

    kind: str = "3cell"                 # '3cell' | '7cell' | '19cell' | 'links'
    users_per_cell: int = 2             # K (cellular only)
    cell_radius_m: float = 1000.0
    alpha: float = 3.76                 # path-loss exponent (3.76 for 3 cells, 4.0 for 7 and 19 cells)
    d0_m: float = 0.392                 # reference distance
    bandwidth_hz: float = 20e6          # W
    p_max_dbm: float = 43.0             # per-user power limit
    noise_psd_dbm_hz: float = -150.0    # N0
    noise_figure_db: float = 9.0        # NF
    redrop: bool = True                 # re-drop users every slot (else fixed drop, fading only)
    drop_seed: int = 0                  # seed of the fixed drop when redrop is False
    bs_sum_power_dbm: float | None = None   # per-BS sum-power limit (Fig. 15 variant) or None
    n_links: int = 5                    # N (links only)
    link_noise_w: float = 0.5           # sigma_n^2 (links only)
    link_p_max_w: float = 10.0          # p_max (links only)
    link_path_loss: tuple[float, ...] = field(default_factory=tuple)  # per-receiver factors c_l, or ()
    link_channel: str = "real"          # h_lj ~ N(0, 1) 'real' | CN(0, 1) 'complex' (links only)

    def __post_init__(self) -> None:
        if self.kind not in SCENARIOS:
            raise ProblemError(f"scenario.kind: expected one of {SCENARIOS}, got {self.kind!r}")
        checks = {
            "users_per_cell": (self.users_per_cell, 1, 64), "cell_radius_m": (self.cell_radius_m, 1e-3, 1e6),
            "alpha": (self.alpha, 1.0, 10.0), "d0_m": (self.d0_m, 1e-6, 1e4),
            "bandwidth_hz": (self.bandwidth_hz, 1.0, 1e12), "n_links": (self.n_links, 1, 1024),
            "link_noise_w": (self.link_noise_w, 1e-30, 1e30), "link_p_max_w": (self.link_p_max_w, 1e-30, 1e30),
        }
        for name, (val, lo, hi) in checks.items():
            if not (lo <= val <= hi):
                raise ProblemError(f"scenario.{name}: expected a value in [{lo}, {hi}], got {val}")
        if self.link_path_loss and len(self.link_path_loss) != self.n_links:
            raise ProblemError(f"scenario.link_path_loss: expected {self.n_links} factors or none, "
                               f"got {len(self.link_path_loss)}")
        if any(not c > 0 for c in self.link_path_loss):
            raise ProblemError("scenario.link_path_loss: expected factors > 0")
        if self.link_channel not in LINK_CHANNELS:
            raise ProblemError(f"scenario.link_channel: expected one of {LINK_CHANNELS}, got {self.link_channel!r}")

    @classmethod
    def preset(cls, kind: str, **overrides: Any) -> Scenario:
        """Paper settings: '3cell' (K=2, alpha 3.76), '7cell' (K=8, alpha 4.0), 'links' (N=5); '19cell' (K=8,
        alpha 4.0) is the 7-cell setting on the two-ring cluster (beyond the paper: a scale setting)."""
        seven = {"users_per_cell": 8, "alpha": 4.0}
        base = {"3cell": {}, "7cell": seven, "19cell": seven, "links": {}}
        if kind not in base:
            raise ProblemError(f"scenario: expected one of {SCENARIOS}, got {kind!r}")
        return cls(kind=kind, **{**base[kind], **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["link_path_loss"] = list(self.link_path_loss)
        return d

    # ---- derived sizes (functions, not mutable fields) ----
    @property
    def cells(self) -> int:
        """B (the number of BSs; N for the links model)."""
        return LAYOUT_CELLS.get(self.kind, self.n_links)

    @property
    def K(self) -> int:
        return 1 if self.kind == "links" else self.users_per_cell

    @property
    def L(self) -> int:
        return self.cells * self.K

    @property
    def noise_w(self) -> float:
        if self.kind == "links":
            return self.link_noise_w
        return noise_power_w(self.noise_psd_dbm_hz, self.bandwidth_hz, self.noise_figure_db)

    @property
    def p_max_w(self) -> float:
        return self.link_p_max_w if self.kind == "links" else float(dbm_to_w(self.p_max_dbm))

    @property
    def bs_sum_power_w(self) -> float | None:
        return None if self.bs_sum_power_dbm is None else float(dbm_to_w(self.bs_sum_power_dbm))

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    # ---- sampling ----
    def user_bs_gains(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, L, B] power gain from each BS to each user (the physical CSI, K*B^2 values per slot)."""
        if self.kind == "links":
            raise ProblemError("scenario.kind: user_bs_gains is defined for cellular layouts only")
        bs = bs_positions(self.kind, self.cell_radius_m)
        shifts = wraparound_shifts(self.cell_radius_m, self.kind) if self.kind in WRAPAROUND_RINGS else None
        if self.redrop:
            users = drop_users(bs, self.cell_radius_m, n, self.K, rng)
        else:
            fixed = drop_users(bs, self.cell_radius_m, 1, self.K, np.random.default_rng(self.drop_seed))
            users = np.broadcast_to(fixed, (n,) + fixed.shape[1:])
        d = distances(users, bs, shifts)
        beta = (1.0 + d / self.d0_m) ** (-self.alpha)
        return beta * rng.exponential(1.0, size=beta.shape)

    def _link_gains(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, L, L] |h_lj|^2 of the links model: h real N(0, 1) or complex CN(0, 1) (Exp(1) gains)."""
        h = rng.standard_normal((n, self.L, self.L))
        if self.link_channel == "real":
            return h**2
        im = rng.standard_normal((n, self.L, self.L))
        return 0.5 * (h**2 + im**2)

    def sample(self, n: int, rng: np.random.Generator) -> Problem:
        """A batch of n channel realizations as a :class:`Problem`."""
        if self.kind == "links":
            c = np.asarray(self.link_path_loss or np.ones(self.L))
            G = c[None, :, None] * self._link_gains(n, rng)
        else:
            G = expand_gains(self.user_bs_gains(n, rng), self.K)
        return Problem(G, self.noise_w, np.full(self.L, self.p_max_w), self.bandwidth_hz,
                       self.cells, self.K, self.bs_sum_power_w)


def expand_gains(user_bs: np.ndarray, K: int) -> np.ndarray:
    """[n, L, B] user-to-BS gains -> [n, L, L] link gains G[l, j] = gain(BS of j -> user l)."""
    B = user_bs.shape[-1]
    return user_bs[..., np.repeat(np.arange(B), K)]


def user_bs_gains_of(problem: Problem) -> np.ndarray:
    """Inverse of :func:`expand_gains`: [n, L, B] taken from the first link of every cell."""
    return problem.G[:, :, :: problem.users_per_cell]
