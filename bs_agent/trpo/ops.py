"""One agent's part of every phase of a TRPO iteration, numpy in, numpy out (:class:`AgentOps`), around a
:class:`~bs_agent.trpo.base_station.BaseStation`: the same code runs in the coordinator's process
(``inproc`` backend) and inside a BS's Ray actor (:mod:`bs_agent.trpo.actor`), so the two backends'
numbers are equal bit for bit. Also what an agent sees of the air (:func:`agent_csi`) and the round-robin
token as it travels (:func:`token_payload`).
"""

from __future__ import annotations

import numpy as np
import torch

from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.state import local_csi


def agent_ids(spec: AgentSpec) -> list[int]:
    """Agent ids: BS indices 0..B-1, or the single central agent (id 0) for the centralized scheme."""
    return [0] if spec.scheme == "centralized" else list(range(spec.B))


def agent_csi(spec: AgentSpec, gains_norm: np.ndarray, agent: int) -> np.ndarray:
    """What agent ``agent`` observes of the normalised gains [M, L, B]: its local CSI, or the full
    (uploaded) CSI for the central agent."""
    if spec.scheme == "centralized":
        return gains_norm.reshape(gains_norm.shape[0], -1)
    return local_csi(gains_norm, agent, spec.K)


def token_payload(p_frac: np.ndarray, decided: np.ndarray, inr: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The round-robin token on the wire: powers so far [M, L] (float32), decided flags [M, B], and with
    rr_message='interference' the running interference at every user ``inr`` [M, L] (float32, / noise)."""
    out = {"p": p_frac.astype(np.float32), "decided": decided.astype(np.int64)}
    if inr is not None:
        out["inr"] = inr.astype(np.float32)
    return out


Crit = tuple[np.ndarray, float] | None
"""A critic round's share riding on another call: (gradient share c, loss share), or None."""


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


def _t(x: np.ndarray) -> torch.Tensor:
    """A tensor view of ``x`` (a copy if ``x`` is read-only, e.g. an array Ray handed over)."""
    return torch.from_numpy(x if x.flags.writeable else x.copy())


class AgentOps:
    """One agent's part of every phase of an iteration (numpy in, numpy out), around a
    :class:`~bs_agent.trpo.base_station.BaseStation`."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int) -> None:
        self.bs = BaseStation(bs_id, spec, sample_seed)
        self.returns: np.ndarray | None = None  # G of this agent's samples, kept for the critic rounds
        self.critic_round = 0                   # critic rounds taken since start_learning (its minibatch)

    # ---- parameters and state
    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        return _np(self.bs.get_policy_params()), _np(self.bs.get_value_params())

    def set_policy(self, theta: np.ndarray) -> None:
        self.bs.set_policy_params(_t(theta))

    def set_value(self, phi: np.ndarray) -> None:
        self.bs.set_value_params(_t(phi))

    def rng_state(self) -> torch.Tensor:
        return self.bs.get_rng_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.bs.set_rng_state(state)

    # ---- acting
    def load(self, csi: np.ndarray, stochastic: bool = True) -> None:
        self.bs.load_csi(csi, stochastic)

    def act(self) -> np.ndarray:
        return self.bs.act()

    def load_act(self, csi: np.ndarray, stochastic: bool = True) -> np.ndarray:
        self.bs.load_csi(csi, stochastic)
        return self.bs.act()

    def rr_pass(self, p_frac: np.ndarray, decided: np.ndarray, position: np.ndarray, n: int,
                lost: np.ndarray | None = None, inr: np.ndarray | None = None) -> None:
        self.bs.rr_pass(p_frac, decided, position, n, lost, inr)

    # ---- learning shares
    def start_learning(self, returns: np.ndarray, step_w: np.ndarray, critic: bool = False
                       ) -> tuple[np.ndarray, Crit]:
        """Freeze pi_old, advantages A = G - V(s) with this BS's critic, weights gamma^n A, and the
        share of eq. (18) (and a critic round at the current phi if asked). ``returns`` G and
        ``step_w`` gamma^n are [M] float64."""
        V = self.bs.finish_acting()
        self.returns, self.critic_round = returns, 0
        self.bs.set_weights(step_w * (returns - V))
        return _np(self.bs.policy_gradient()), self._critic(critic)

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None) -> tuple[np.ndarray, Crit]:
        return _np(self.bs.fisher_vector_product(_t(v))), self._critic(critic, phi)

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> tuple[tuple[float, float], Crit]:
        return self.bs.surrogate_kl(_t(theta)), self._critic(critic, phi)

    def _critic(self, critic: bool, phi: np.ndarray | None = None) -> Crit:
        return self.value_round(None, phi) if critic else None

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        self.set_policy(theta)
        if phi is not None:
            self.set_value(phi)

    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Take the broadcast parameters (if given), then the critic share at the stored returns."""
        if theta is not None:
            self.set_policy(theta)
        if phi is not None:
            self.set_value(phi)
        if self.returns is None:
            raise RuntimeError(f"agent {self.bs.bs_id}: value_round before start_learning")
        grad, loss = self.bs.value_gradient(self.returns, self.critic_round)
        self.critic_round += 1
        return _np(grad), loss
