"""What every environment of :mod:`bs_agent.envs` shares, in numpy only (no gymnasium, no torch): where a
slot's channels come from, the BS state features of that slot, and its reward.

A slot (paper 1 Sec. II) is one channel realization: the gains ``user_bs`` [L, B] from every BS to every
user (link l = b*K + k), drawn from a scenario's layout (Rayleigh fading, users re-dropped per slot) or
read from a gains file and cycled through. The agents' states are the ones the BSs of training see,
built with the one definition of :mod:`bs_agent.trpo.state`: gains in dB normalised with the scenario's
fixed constants (:class:`~bs_agent.trpo.state.GainNorm`), expressed relative to each BS (own cell first).
The action is a vector of power fractions p / Pmax in [0, 1]; the reward is the sum-rate

    R = sum_l log2(1 + G_ll p_l / (sum_{j != l} G_lj p_j + sigma^2))       [bit/s/Hz]  (paper 1, eq. (1a))

at p = fractions x Pmax, clipped into [0, Pmax] and scaled into the per-BS sum-power limit when the
scenario has one (as the trainer's rewards are).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bs_agent.trpo.state import GainNorm, InterferenceScale, local_csi, obs_dim, round_robin_extra
from radio.channels import Scenario, expand_gains, user_bs_gains_of
from radio.gainsfile import load_gains
from radio.problem import Problem, ProblemError
from radio.rates import sum_rate

CELLULAR = ("3cell", "7cell", "19cell")
"""Scenarios with base stations (paper 2's 'links' model has no BS to be an agent)."""

NETWORK_KEYS = ("users_per_cell", "alpha", "cell_radius_m", "d0_m", "redrop", "drop_seed", "bs_sum_power_dbm")
"""Scenario overrides that shape the network and its gain normalisation (allowed with a gains file too)."""
RADIO_KEYS = ("p_max_dbm", "bandwidth_hz", "noise_psd_dbm_hz", "noise_figure_db")
"""Scenario overrides of the radio constants, which a gains file gives itself (p_max_w, noise_w, bandwidth_hz)."""


@functools.lru_cache(maxsize=16)
def gain_norm(scenario: Scenario) -> GainNorm:
    """The scenario's fixed gain normalisation (as the trainer's), measured once per process (~4 s for 19cell)."""
    return GainNorm.of_scenario(scenario)


@dataclass(frozen=True)
class Slot:
    """One slot: the gains ``user_bs`` [L, B] (linear, BS b -> user of link l), the slot as a radio
    :class:`~radio.problem.Problem` (G [1, L, L], noise, Pmax, bandwidth, per-BS limit), and its row in the
    gains file (None for a drawn slot)."""

    user_bs: np.ndarray
    problem: Problem
    index: int | None = None


class SlotSource:
    """The slots of an environment: fresh draws of ``scenario`` (with its ``overrides``: any
    :class:`~radio.channels.Scenario` field of the cellular model), or the realizations of a gains file
    (:mod:`radio.gainsfile` format) cycled through in order. With a file, the scenario names the network
    (B cells x K users, which the file's ``cells`` and ``users_per_cell`` must match) and so the gain
    normalisation a policy trained on it uses; the radio constants are the file's. Errors are one
    :class:`~radio.problem.ProblemError` line."""

    def __init__(self, scenario: str = "3cell", gains: str | Path | None = None, **overrides: Any) -> None:
        if scenario not in CELLULAR:
            raise ProblemError(f"scenario: expected one of {', '.join(CELLULAR)}, got {scenario!r}")
        allowed = NETWORK_KEYS + (() if gains is not None else RADIO_KEYS)
        for key in overrides:
            if key not in allowed:
                why = f"comes from the gains file {gains}" if key in RADIO_KEYS else "unknown key"
                raise ProblemError(f"scenario override {key}: {why}; allowed: {', '.join(allowed)}")
        self.scenario = Scenario.preset(scenario, **overrides)
        self.norm = gain_norm(self.scenario)
        self.B, self.K, self.L = self.scenario.cells, self.scenario.K, self.scenario.L
        self.file: Problem | None = None
        self._file_user_bs: np.ndarray | None = None
        self._next = 0
        if gains is not None:
            self.file = load_gains(gains, self.scenario.bs_sum_power_w)
            if (self.file.cells, self.file.users_per_cell) != (self.B, self.K):
                raise ProblemError(
                    f"gains file {gains}: {self.file.cells} cells x {self.file.users_per_cell} users (its cells and "
                    f"users_per_cell; without them L x 1), the environment's scenario {scenario!r} has {self.B} x "
                    f"{self.K}; pass the matching scenario and users_per_cell")
            self._file_user_bs = user_bs_gains_of(self.file)              # [n, L, B]

    # ---- where the slots come from
    @property
    def n_file_slots(self) -> int | None:
        """Realizations in the gains file (None when slots are drawn)."""
        return None if self.file is None else self.file.n

    def restart(self, rng: np.random.Generator) -> None:
        """After a seeded reset: a gains file's cycle starts at a slot drawn from ``rng`` (so that copies of an
        environment seeded differently see different slots); drawn slots need nothing."""
        if self.file is not None:
            self._next = int(rng.integers(self.file.n))

    def draw(self, rng: np.random.Generator) -> Slot:
        """The next slot: one draw of the scenario from ``rng``, or the file's next realization."""
        if self.file is None:
            sc = self.scenario
            ub = sc.user_bs_gains(1, rng)                                   # [1, L, B]
            problem = Problem(expand_gains(ub, self.K), sc.noise_w, np.full(self.L, sc.p_max_w), sc.bandwidth_hz,
                              self.B, self.K, sc.bs_sum_power_w)
            return Slot(ub[0], problem, None)
        i = self._next
        self._next = (i + 1) % self.file.n
        return Slot(self._file_user_bs[i], self.file.subset(slice(i, i + 1)), i)

    # ---- the BS state features (bs_agent.trpo.state, one slot)
    def gains_norm(self, slot: Slot) -> np.ndarray:
        """[1, L, B] float32 normalised gains of the slot (what the air hands the agents in training)."""
        return self.norm(slot.user_bs[None])

    def central_obs(self, slot: Slot) -> np.ndarray:
        """[K*B*B] float32 the central agent's state: every BS's normalised gains (its uploaded CSI)."""
        return self.gains_norm(slot).reshape(-1)

    def local_obs(self, slot: Slot, b: int) -> np.ndarray:
        """[B*K] float32 BS b's local CSI: its normalised gains to every user, own cell first."""
        return local_csi(self.gains_norm(slot), b, self.K)[0]

    def round_robin_obs(self, slot: Slot, b: int, p_frac: np.ndarray, decided: np.ndarray,
                        inr: np.ndarray | None = None, scale: InterferenceScale | None = None) -> np.ndarray:
        """BS b's round-robin state (:func:`~bs_agent.trpo.state.round_robin_extra`), float32: its local CSI, then
        the powers decided so far ``p_frac`` [L] (fractions, 0 where undecided), with rr_message='interference'
        the features of the running interference / noise ``inr`` [L] at every user (``scale``), and the decided
        flags ``decided`` [B], all in its order ([2*B*K + B], or [3*B*K + B] with ``inr``)."""
        extra = round_robin_extra(p_frac[None], decided[None], b, self.K, None if inr is None else inr[None], scale)
        return np.concatenate([self.local_obs(slot, b), extra[0]])

    def interference_scale(self) -> InterferenceScale:
        """The constants of rr_message='interference' (:class:`~bs_agent.trpo.state.InterferenceScale`, as the
        trainer's ``agent_spec`` makes them): the gain normalisation, Pmax, the noise and the per-BS sum-power
        limit of the scenario, or of the gains file (which must then give every link the same Pmax)."""
        if self.file is None:
            sc = self.scenario
            return InterferenceScale.of(self.norm, sc.p_max_w, sc.noise_w, sc.bs_sum_power_w)
        p_max = np.unique(self.file.p_max_w)
        if p_max.size != 1:
            raise ProblemError(f"rr_message=interference: the running interference is built from one Pmax for every "
                               f"link; the gains file's p_max_w has {p_max.size} different values; use "
                               f"rr_message=powers")
        return InterferenceScale.of(self.norm, float(p_max[0]), float(self.file.noise_w), self.file.bs_sum_power_w)

    def added_inr(self, slot: Slot, b: int, frac: np.ndarray, scale: InterferenceScale) -> np.ndarray:
        """[L] the interference / noise BS b adds at every user with its power fractions ``frac`` [K], from its
        local CSI (:meth:`InterferenceScale.added`, as training's BSs compute it)."""
        return scale.added(self.local_obs(slot, b)[None], np.asarray(frac, np.float64)[None], b, self.K)[0]

    def obs_dim(self, scheme: str, rr_message: str = "powers") -> int:
        return obs_dim(scheme, self.B, self.K, rr_message)

    def gain_bounds(self) -> tuple[float, float]:
        """(low, high) float32 of a normalised gain: the normalisation of the smallest gain it resolves (1e-300)
        and of the largest float, so every observation lies inside the spaces without infinite bounds."""
        lo, hi = self.norm(np.array([0.0, np.finfo(np.float64).max]))
        return float(lo), float(hi)

    # ---- the reward
    def outcome(self, slot: Slot, frac: np.ndarray) -> tuple[float, dict[str, Any]]:
        """(sum-rate R in bit/s/Hz, info) of the power fractions ``frac`` [L] on the slot; info holds
        ``sum_rate_mbps`` (R x W / 1e6), ``p_w`` [L] the powers applied in W, and ``slot`` (the gains file's
        row, or None)."""
        pr = slot.problem
        p_w = pr.project(np.clip(np.asarray(frac, np.float64).reshape(1, -1), 0.0, 1.0) * pr.p_max_w)  # [1, L] W
        R = float(sum_rate(pr.G, p_w, pr.noise_w)[0])
        return R, {"sum_rate_mbps": R * pr.bandwidth_hz / 1e6, "p_w": p_w[0], "slot": slot.index}


def check_fractions(action: Any, n: int, who: str) -> np.ndarray:
    """An agent's action as [n] float64 fractions (NaN refused with one line; values outside [0, 1] are
    clipped as the policies' are, paper 1 eq. (9))."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != n:
        raise ValueError(f"{who}: expected {n} power fractions, got an action of shape {np.shape(action)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{who}: power fractions must be finite numbers, got {a}")
    return np.clip(a, 0.0, 1.0)

