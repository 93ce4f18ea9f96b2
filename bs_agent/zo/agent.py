"""One link running Algorithm 1 of paper 2 as a plain object (:mod:`bs_agent.zo.host` runs it in a Ray actor).

Per iteration k the link:
  1. has theta_i^k in force for its first B1 slots and theta_i^k + mu u_i^k for the next B2
     (:meth:`ZOLinkAgent.schedule`); the air measures its own utility in every slot;
  2. forms d_i^k (:meth:`end_iteration`, eq. (6)) and returns what it sends: its own d_i^k, and in
     graph mode the entries it relays (sender, iteration, d);
  3. receives the others' entries (:meth:`deliver`, with their logical arrival slot);
  4. updates with eq. (7), (8) or (9) (:meth:`update`) using only what had arrived by then.

Transport-free: the caller moves the messages (in memory or over ZeroMQ).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bs_agent.zo.algorithm import (
    Entry,
    RelayBuffer,
    local_difference,
    perturbation,
    step_size,
    update_async,
    update_graph,
    update_sync,
)
from bs_agent.zo.policy import MLPSpec
from radio.seeding import ZoStream, rng_for

UPDATES = ("sync", "async", "graph")   # paper 2 eq. (7), eq. (8), eq. (9)


@dataclass(frozen=True)
class ZOHyper:
    """Hyper-parameters of Algorithm 1 (paper 2, Sec. IV defaults)."""

    mu: float = 1.0
    gamma0: float = 1.0
    gamma_tilde: float = 0.5
    b1: int = 50
    b2: int = 50
    utility: str = "rate"            # U_i = R_i ('rate') or log(R_i + eps) ('log_rate')
    log_eps: float = 1e-3
    layer_scale: tuple[float, ...] = ()   # c_l per layer: Algorithm 1 on theta' with theta = D theta'

    @property
    def batch(self) -> int:
        """B = B1 + B2 slots per iteration."""
        return self.b1 + self.b2


def utility(rates: np.ndarray, hyper: ZOHyper) -> np.ndarray:
    """U_i per slot from the link rates [..] bit/s/Hz."""
    if hyper.utility == "log_rate":
        return np.log(rates + hyper.log_eps)
    return rates


@dataclass
class ZOLinkAgent:
    """Link i's policy parameters, perturbation buffer and d-buffer."""

    index: int
    spec: MLPSpec
    hyper: ZOHyper
    root_seed: int
    mode: str = "sync"
    neighbours: tuple[int, ...] = ()
    d_max: int = 1
    theta: np.ndarray = field(default=None)  # type: ignore[assignment]
    k: int = 0
    buffer: RelayBuffer = field(default=None)  # type: ignore[assignment]
    pending: list[tuple[int, Entry]] = field(default_factory=list)   # (arrival slot, entry)
    stats: dict[str, float] = field(default_factory=dict)
    _u_cache: dict[int, np.ndarray] = field(default_factory=dict)
    _scale: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mode not in UPDATES:
            raise ValueError(f"mode: expected one of {UPDATES}, got {self.mode!r}")
        if self.theta is None:
            self.theta = self.spec.init(rng_for(self.root_seed, self.index, 0, ZoStream.INIT))
        depth = {"sync": 0, "async": 1, "graph": self.d_max}[self.mode]
        if self.buffer is None:
            self.buffer = RelayBuffer(self.index, depth)
        self._scale = self.spec.layer_scale(tuple(self.hyper.layer_scale))
        for key in ("d", "grad_norm", "applied", "stale", "duplicates"):
            self.stats.setdefault(key, 0.0)

    # ---- perturbations (never sent; regenerated from (seed, i, k)) ----
    def u(self, k: int) -> np.ndarray:
        """D u_i^k from the perturbation buffer (depth D_max), regenerated on a miss.

        D = diag(c_l per layer) (``hyper.layer_scale``, identity by default): Algorithm 1 run on theta'
        for the policy phi_i(s, D theta') perturbs theta' by mu u and steps (gamma/mu) alpha u, i.e.
        theta = D theta' by mu D u and (gamma/mu) alpha D u, so eq. (7)-(9) apply unchanged to D u.
        """
        if k < 0:
            return np.zeros(self.spec.n_params)
        if k not in self._u_cache:
            self._u_cache[k] = self._scale * perturbation(self.root_seed, self.index, k, self.spec.n_params)
            for old in [t for t in self._u_cache if t < k - self.buffer.d_max - 1]:
                del self._u_cache[old]
        return self._u_cache[k]

    def gamma(self, k: int) -> float:
        return step_size(k, self.hyper.gamma0, self.hyper.gamma_tilde) if k >= 0 else 0.0

    def schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(theta_i^k, theta_i^k + mu u_i^k) for the B1 and B2 slots of the current iteration."""
        return self.theta, self.theta + self.hyper.mu * self.u(self.k)

    # ---- Algorithm 1 steps 5-6 ----
    def end_iteration(self, u_b1: np.ndarray, u_b2: np.ndarray) -> list[Entry]:
        """Form d_i^k from its own utilities (eq. (6)) and return the entries it sends now:
        its own (i, k, d_i^k) first, then (graph mode) the entries to relay."""
        d = local_difference(u_b1, u_b2)
        own: Entry = (self.index, self.k, d)
        self.buffer.offer(own, self.k, relay=False)
        self.stats["d"] = d
        out = [own]
        if self.mode == "graph":
            out += self.buffer.take_relays(self.k)
        return out

    def deliver(self, entries: list[Entry], arrival_slot: int) -> None:
        """Entries received from a neighbour, usable from logical slot ``arrival_slot`` on."""
        for e in entries:
            if e[0] != self.index:
                self.pending.append((int(arrival_slot), (int(e[0]), int(e[1]), float(e[2]))))

    # ---- Algorithm 1 step 7 ----
    def update(self, t_slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Apply eq. (7)/(8)/(9) at logical slot ``t_slot`` with what has arrived; k <- k + 1.
        Returns the next schedule."""
        arrived = sorted((e for a, e in self.pending if a <= t_slot), key=lambda e: (e[1], e[0]))
        self.pending = [(a, e) for a, e in self.pending if a > t_slot]
        for e in arrived:
            self.buffer.offer(e, self.k, relay=self.mode == "graph")
        entries = self.buffer.take_applicable(self.k)
        k = self.k
        old = self.theta
        if self.mode == "sync":
            # eq. (7): all d_j^k of this iteration (a d_j^k that is late is dropped from alpha^k)
            self.theta = update_sync(self.theta, [d for _j, t, d in entries if t == k], self.u(k),
                                     self.gamma(k), self.hyper.mu)
        elif self.mode == "async":
            # eq. (8): fresh d_j^k of faster users with u^k, stale d_j^{k-1} of slower ones with u^{k-1}
            fresh = [d for _j, t, d in entries if t == k]
            stale = [d for _j, t, d in entries if t == k - 1]
            self.theta = update_async(self.theta, fresh, self.u(k), self.gamma(k),
                                      stale, self.u(k - 1), self.gamma(k - 1), self.hyper.mu)
        else:
            # eq. (9): every buffered d_j^T (T >= k - D_max) with its own u_i^T
            self.theta = update_graph(self.theta, entries, {t: self.u(t) for _j, t, _d in entries},
                                      self.gamma(k), self.hyper.mu)
        self.stats["applied"] = float(len(entries))
        self.stats["stale"] = float(self.buffer.stale)
        self.stats["duplicates"] = float(self.buffer.duplicates)
        self.stats["grad_norm"] = float(np.linalg.norm(self.theta - old)) / max(self.gamma(k), 1e-300)
        self.k += 1
        return self.schedule()

    # ---- checkpoint ----
    def state(self) -> dict[str, Any]:
        return {"theta": self.theta.copy(), "k": self.k,
                "pending": [(a, list(e)) for a, e in self.pending],
                "to_apply": [list(e) for e in self.buffer.to_apply],
                "to_relay": [list(e) for e in self.buffer.to_relay],
                "seen": [list(s) for s in self.buffer.seen],
                "stale": self.buffer.stale, "duplicates": self.buffer.duplicates}

    def load_state(self, st: dict[str, Any]) -> None:
        self.theta = np.asarray(st["theta"], dtype=np.float64).copy()
        self.k = int(st["k"])
        self.pending = [(int(a), (int(e[0]), int(e[1]), float(e[2]))) for a, e in st["pending"]]
        self.buffer.to_apply = [(int(e[0]), int(e[1]), float(e[2])) for e in st["to_apply"]]
        self.buffer.to_relay = [(int(e[0]), int(e[1]), float(e[2])) for e in st["to_relay"]]
        self.buffer.seen = {(int(a), int(b)) for a, b in st["seen"]}
        self.buffer.stale = int(st["stale"])
        self.buffer.duplicates = int(st["duplicates"])
        self._u_cache = {}

