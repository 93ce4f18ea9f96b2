"""Where the agents live. Both backends expose the same batched calls (one per agent per phase):

    load(gains_norm, stochastic)      scatter each agent its local CSI for the M slots
    act_all()                         every agent acts on all its slots  -> [M, L] power fractions
    act_round_robin(position)         B passes of the power token over the ring -> [M, L]
    finish()                          freeze pi_old, return V(s) per agent
    set_weights(w), policy_gradient(), fvp(v), surrogate_kl(theta), value_gradient(G)
    set_policy(theta), set_value(phi), rng_states(), set_rng_states()

:class:`InprocBackend` holds the :class:`~bs_agent.base_station.BaseStation` objects in this process;
:class:`coordinator.ray_backend.RayBackend` holds them in Ray actors and passes the round-robin token
over ZeroMQ. The math is the same code in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bs_agent.base_station import AgentSpec, BaseStation


def agent_ids(spec: AgentSpec) -> list[int]:
    """Agent ids: BS indices 0..B-1, or the single central agent (id 0) for the centralized scheme."""
    return [0] if spec.scheme == "centralized" else list(range(spec.B))


class InprocBackend:
    """All agents as plain objects in one process."""

    name = "inproc"

    def __init__(self, spec: AgentSpec, sample_seeds: Sequence[int]) -> None:
        self.spec = spec
        self.agents = [BaseStation(i, spec, s) for i, s in zip(agent_ids(spec), sample_seeds)]

    # ---- parameters
    def set_policy(self, theta: torch.Tensor) -> None:
        for a in self.agents:
            a.set_policy_params(theta)

    def set_value(self, phi: torch.Tensor) -> None:
        for a in self.agents:
            a.set_value_params(phi)

    def initial_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.agents[0].get_policy_params(), self.agents[0].get_value_params()

    def rng_states(self) -> list[torch.Tensor]:
        return [a.gen.get_state() for a in self.agents]

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        for a, s in zip(self.agents, states):
            a.gen.set_state(s)

    # ---- acting
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None:
        for a in self.agents:
            a.load_gains(gains_norm, stochastic)

    def act_all(self) -> np.ndarray:
        if self.spec.scheme == "centralized":
            return self.agents[0].act()
        return np.concatenate([a.act() for a in self.agents], axis=1)

    def act_round_robin(self, position: np.ndarray) -> np.ndarray:
        """position [M, B]: step of BS b in slot m's order. The token (powers so far, flags) goes around
        the ring 0 -> 1 -> ... -> B-1 B times; on pass n each BS fills the slots where it is step n."""
        M, B = position.shape
        p_frac = np.zeros((M, B * self.spec.K))
        decided = np.zeros((M, B), dtype=bool)
        for n in range(B):
            for a in self.agents:
                a.rr_pass(p_frac, decided, position[:, a.bs_id], n)
        return p_frac

    def mean_actions(self, position: np.ndarray | None = None) -> np.ndarray:
        """Deterministic evaluation (stochastic=False load): same flows with zero noise."""
        return self.act_all() if position is None else self.act_round_robin(position)

    def finish(self) -> list[np.ndarray]:
        return [a.finish_acting() for a in self.agents]

    # ---- learning shares
    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        for a, w in zip(self.agents, weights):
            a.set_weights(w)

    def policy_gradient(self) -> list[torch.Tensor]:
        return [a.policy_gradient() for a in self.agents]

    def fvp(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [a.fisher_vector_product(v) for a in self.agents]

    def surrogate_kl(self, theta: torch.Tensor) -> list[tuple[float, float]]:
        return [a.surrogate_kl(theta) for a in self.agents]

    def value_gradient(self, returns: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, float]]:
        return [a.value_gradient(G) for a, G in zip(self.agents, returns)]

    def close(self) -> None:
        pass
