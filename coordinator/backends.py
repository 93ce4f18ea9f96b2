"""Where the agents live. Both backends expose the same batched calls (one per agent per phase):

    load(gains_norm, stochastic)      scatter each agent its local CSI for the M slots
    act_all(gains_norm=None)          (load, then) every agent acts on all its slots -> [M, L] fractions
    act_round_robin(position, it, run_id, gains_norm=None)
                                      (load, then) B passes of the power token over the ring -> ([M, L], rows)
    start_learning(returns, step_w, critic)  freeze pi_old, A = G - V(s), weights gamma^n A, share of eq. (18)
    fvp(v, critic, phi), surrogate_kl(theta, critic, phi)   shares of eq. (19) and of eqs. (22)-(23)
    value_round(theta, phi)           (optionally set theta / phi, then) the critic's gradient share
    set_params(theta, phi), set_policy(theta), set_value(phi), rng_states(), set_rng_states()

A critic round (the critic's share at the stored returns, after setting ``phi`` if given) can ride on
the learning calls (``critic=True``): it needs only the returns and phi, not the policy step, so the
coordinator sends round e with whatever call goes to the agents next and the ray backend saves a
round trip per round. Those calls return ``(share, (c, loss) | None)`` per agent.

Vectors travel as numpy arrays. Every call runs :class:`AgentOps` — the inproc backend in this
process, :class:`coordinator.ray_backend.RayBackend` inside its actors — so the math of the two is
one code path and their numbers are equal bit for bit. Phases are fused so that the ray backend
makes one round trip per phase.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from bs_agent.base_station import AgentSpec, BaseStation
from bs_agent.state import local_csi
from coordinator.run_messages import Row
from protocol import RECEIVED, SENT, Envelope, Kind, frame_size, now_ns


def agent_ids(spec: AgentSpec) -> list[int]:
    """Agent ids: BS indices 0..B-1, or the single central agent (id 0) for the centralized scheme."""
    return [0] if spec.scheme == "centralized" else list(range(spec.B))


def agent_csi(spec: AgentSpec, gains_norm: np.ndarray, agent: int) -> np.ndarray:
    """What agent ``agent`` observes of the normalised gains [M, L, B]: its local CSI, or the full
    (uploaded) CSI for the central agent."""
    if spec.scheme == "centralized":
        return gains_norm.reshape(gains_norm.shape[0], -1)
    return local_csi(gains_norm, agent, spec.K)


def token_payload(p_frac: np.ndarray, decided: np.ndarray) -> dict[str, np.ndarray]:
    """The round-robin token on the wire: powers so far [M, L] (float32), decided flags [M, B]."""
    return {"p": p_frac.astype(np.float32), "decided": decided.astype(np.int64)}


Crit = tuple[np.ndarray, float] | None
"""A critic round's share riding on another call: (gradient share c, loss share), or None."""


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


def _t(x: np.ndarray) -> torch.Tensor:
    """A tensor view of ``x`` (a copy if ``x`` is read-only, e.g. an array Ray handed over)."""
    return torch.from_numpy(x if x.flags.writeable else x.copy())


class AgentOps:
    """One agent's part of every phase of an iteration (numpy in, numpy out), around a
    :class:`~bs_agent.base_station.BaseStation`."""

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

    def rr_pass(self, p_frac: np.ndarray, decided: np.ndarray, position: np.ndarray, n: int) -> None:
        self.bs.rr_pass(p_frac, decided, position, n)

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


def ring_hop(rows: list[Row], seqs: dict[tuple[int, int], int], sender: int, receiver: int, iteration: int,
             payload: dict[str, np.ndarray], run_id: str) -> None:
    """An in-process hop of the token, logged as a socket logs it (sent, received; per-link seq)."""
    seq = seqs.get((sender, receiver), 0)
    seqs[(sender, receiver)] = seq + 1
    t = now_ns()
    n = frame_size(Envelope(Kind.POWER_VECTOR, sender, receiver, iteration, seq, payload, run_id, t))
    rows.append((SENT, int(Kind.POWER_VECTOR), sender, receiver, iteration, seq, n, t, 0, 0, 0))
    rows.append((RECEIVED, int(Kind.POWER_VECTOR), sender, receiver, iteration, seq, n, t, now_ns(), 0, 0))


def _agent_threads(method):  # noqa: ANN001, ANN202
    """Run an inproc backend method (the agents' work) with the agents' torch threads, restoring the
    caller's count after: the same split as ray, where each actor process has ``threads`` and the
    driver 1 (a driver idling with 2 OpenMP threads took CPU from a 2-thread actor: 337 against 265 ms
    per 3cell_centralized iteration)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        prev = torch.get_num_threads()
        if prev == self.threads:          # (also a nested call)
            return method(self, *args, **kwargs)
        torch.set_num_threads(self.threads)
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.set_num_threads(prev)
    return run


COORDINATOR_THREADS = 1
"""torch threads of the coordinator's own arithmetic (CG vectors, Adam, sums of shares) in both backends:
its thread count changes the rounding of its dot products, so it must be the same in both."""


class InprocBackend:
    """All agents as plain objects in one process (computing with ``threads`` torch threads, the
    coordinator's work in between with :data:`COORDINATOR_THREADS`)."""

    name = "inproc"

    def __init__(self, spec: AgentSpec, sample_seeds: Sequence[int], threads: int = 1) -> None:
        self.spec = spec
        self.threads = int(threads)
        self.agents = [AgentOps(i, spec, s) for i, s in zip(agent_ids(spec), sample_seeds, strict=True)]
        self._seqs: dict[tuple[int, int], int] = {}

    # ---- parameters
    def set_policy(self, theta: np.ndarray) -> None:
        for a in self.agents:
            a.set_policy(theta)

    def set_value(self, phi: np.ndarray) -> None:
        for a in self.agents:
            a.set_value(phi)

    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.agents[0].initial_params()

    def rng_states(self) -> list[torch.Tensor]:
        return [a.rng_state() for a in self.agents]

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        for a, s in zip(self.agents, states, strict=True):
            a.set_rng_state(s)

    # ---- acting
    @_agent_threads
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None:
        for i, a in zip(agent_ids(self.spec), self.agents, strict=True):
            a.load(agent_csi(self.spec, gains_norm, i), stochastic)

    @_agent_threads
    def act_all(self, gains_norm: np.ndarray | None = None, stochastic: bool = True) -> np.ndarray:
        """Every agent acts on all its slots (after loading ``gains_norm`` if given)."""
        if gains_norm is None:
            out = [a.act() for a in self.agents]
        else:
            out = [a.load_act(agent_csi(self.spec, gains_norm, i), stochastic)
                   for i, a in zip(agent_ids(self.spec), self.agents, strict=True)]
        return out[0] if self.spec.scheme == "centralized" else np.concatenate(out, axis=1)

    @_agent_threads
    def act_round_robin(self, position: np.ndarray, iteration: int = 0, run_id: str = "",
                        log_hops: bool = True, gains_norm: np.ndarray | None = None) -> tuple[np.ndarray, list[Row]]:
        """position [M, B]: step of BS b in slot m's order. The token (powers so far, flags) goes around
        the ring 0 -> 1 -> ... -> B-1 B times; on pass n each BS fills the slots where it is step n.
        Returns the powers and the B*B - 1 hops as log rows (the last BS keeps the final token)."""
        if gains_norm is not None:
            self.load(gains_norm)
        M, B = position.shape
        p_frac = np.zeros((M, B * self.spec.K))
        decided = np.zeros((M, B), dtype=bool)
        rows: list[Row] = []
        for n in range(B):
            for b, a in enumerate(self.agents):
                a.rr_pass(p_frac, decided, position[:, b], n)
                if log_hops and not (n == B - 1 and b == B - 1):
                    ring_hop(rows, self._seqs, b, (b + 1) % B, iteration, token_payload(p_frac, decided), run_id)
        return p_frac, rows

    # ---- learning shares
    @_agent_threads
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False,
                       iteration: int = 0) -> list[tuple[np.ndarray, Crit]]:
        return [a.start_learning(G, w, critic) for a, G, w in zip(self.agents, returns, step_w, strict=True)]

    @_agent_threads
    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]:
        return [a.fvp(v, critic, phi) for a in self.agents]

    @_agent_threads
    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        return [a.surrogate_kl(theta, critic, phi) for a in self.agents]

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        for a in self.agents:
            a.set_params(theta, phi)

    @_agent_threads
    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, float]]:
        return [a.value_round(theta, phi) for a in self.agents]

    def close(self) -> None:
        pass
