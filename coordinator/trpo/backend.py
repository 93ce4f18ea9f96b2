"""Where the agents live: one typed interface (:class:`AgentBackend`), two implementations that run the
same :class:`~bs_agent.trpo.ops.AgentOps` code — :class:`InprocBackend` (every agent a plain object in
this process) and :class:`coordinator.trpo.ray_backend.RayBackend` (every agent a Ray actor) — so their
numbers are equal bit for bit. Calls are batched (one per agent per phase, never per slot):

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

These backends only carry; :class:`coordinator.trpo.logged.LoggedBackend` logs what they carry.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from bs_agent.trpo.base_station import AgentSpec, native_bfloat16
from bs_agent.trpo.ops import AgentOps, Crit, agent_csi, agent_ids, token_payload
from coordinator.trpo.config import TrainConfig, agent_seeds, agent_spec
from protocol import RECEIVED, SENT, Envelope, Kind, frame_size, now_ns
from protocol.log import Row


class AgentBackend(Protocol):
    """The agents of a run, wherever they live (see the module docstring)."""

    name: str
    spec: AgentSpec

    def initial_params(self) -> tuple[np.ndarray, np.ndarray]: ...
    def set_policy(self, theta: np.ndarray) -> None: ...
    def set_value(self, phi: np.ndarray) -> None: ...
    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None: ...
    def rng_states(self) -> list[torch.Tensor]: ...
    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None: ...
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None: ...
    def act_all(self, gains_norm: np.ndarray | None = None, stochastic: bool = True) -> np.ndarray: ...
    def act_round_robin(self, position: np.ndarray, iteration: int = 0, run_id: str = "", log_hops: bool = True,
                        gains_norm: np.ndarray | None = None, lost: np.ndarray | None = None
                        ) -> tuple[np.ndarray, list[Row]]: ...
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False,
                       iteration: int = 0) -> list[tuple[np.ndarray, Crit]]: ...
    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]: ...
    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]: ...
    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, float]]: ...
    def close(self) -> None: ...


def make_backend(cfg: TrainConfig, address: str | None = None) -> AgentBackend:
    """The configured backend: the agents compute with ``run.threads`` torch threads (in their actor
    processes, or switched on around each inproc agent call), the coordinator's own arithmetic in this
    process with 1 (:data:`COORDINATOR_THREADS`), so that inproc and ray do the same arithmetic."""
    torch.set_num_threads(COORDINATOR_THREADS)
    if cfg.trpo.value_precision == "bfloat16" and not native_bfloat16():
        warnings.warn("trpo.value_precision=bfloat16 on a CPU without native bfloat16 (AVX512-BF16/AMX): the "
                      "critic's matmuls are emulated, ~10x slower than float32; set trpo.value_precision=float32 "
                      "or auto",
                      RuntimeWarning, stacklevel=2)
    spec, seeds = agent_spec(cfg), agent_seeds(cfg)
    if cfg.run.backend == "inproc":
        return InprocBackend(spec, seeds, cfg.run.threads)
    from coordinator.trpo.ray_backend import RayBackend

    return RayBackend(spec, seeds, address=address, threads=cfg.run.threads, placement=cfg.run.placement,
                      secure=cfg.run.secure, bs_per_actor=cfg.run.bs_per_actor)


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
        self.next_seq: dict[tuple[int, int], int] = {}   # ring link (sender, receiver) -> next sequence number

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
                        log_hops: bool = True, gains_norm: np.ndarray | None = None, lost: np.ndarray | None = None
                        ) -> tuple[np.ndarray, list[Row]]:
        """position [M, B]: step of BS b in slot m's order. The token (powers so far, flags) goes around
        the ring 0 -> 1 -> ... -> B-1 B times; on pass n each BS fills the slots where it is step n;
        ``lost`` [M, B]: BS b's vector from its predecessor in slot m is lost (it sees them undecided).
        Returns the powers and the B*B - 1 hops as log rows (the last BS keeps the final token)."""
        if gains_norm is not None:
            self.load(gains_norm)
        M, B = position.shape
        p_frac = np.zeros((M, B * self.spec.K))
        decided = np.zeros((M, B), dtype=bool)
        inr = np.zeros_like(p_frac) if self.spec.interference else None   # trpo.rr_message=interference
        rows: list[Row] = []
        for n in range(B):
            for b, a in enumerate(self.agents):
                a.rr_pass(p_frac, decided, position[:, b], n, None if lost is None else lost[:, b], inr)
                if log_hops and not (n == B - 1 and b == B - 1):
                    ring_hop(rows, self.next_seq, b, (b + 1) % B, iteration, token_payload(p_frac, decided, inr),
                             run_id)
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

    def meta(self) -> dict[str, str]:
        """For meta.json: where the agents ran."""
        return {"placement": "inproc (every agent in the coordinator's process)"}

    def close(self) -> None:
        pass
