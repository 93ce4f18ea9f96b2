"""Where the zeroth-order links live, seen from the driver (:class:`LinksBackend`): in this process
(:class:`InprocLinks`: d messages move in memory through the protocol's seeded link emulator and are
logged like socket traffic) or as Ray actors (:class:`coordinator.zo.ray_links.RayLinks`). Also the
running count of what the exchange carried (:class:`Exchange`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bs_agent.zo.agent import ZOHyper, ZOLinkAgent, utility
from bs_agent.zo.algorithm import Entry
from bs_agent.zo.messages import d_envelope, wire_seq
from coordinator.zo.config import ZOConfig, link_model, link_setups
from protocol.codec import frame_size
from protocol.envelope import now_ns
from protocol.links import LinkEmulator
from protocol.log import MEMORY, MessageLog


@dataclass
class Exchange:
    """Cumulative point-to-point traffic: messages, scalars (floats) and bytes on the wire."""

    messages: int = 0
    scalars: int = 0
    bytes: int = 0
    dropped: int = 0

    def add(self, n_msgs: int, n_scalars: int, n_bytes: int) -> None:
        self.messages += n_msgs
        self.scalars += n_scalars
        self.bytes += n_bytes


# ---------------------------------------------------------------- link backends


class LinksBackend(Protocol):
    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]: ...
    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]
             ) -> dict[int, tuple[np.ndarray, np.ndarray]]: ...
    def states(self) -> Any: ...
    def load_states(self, states: Any) -> None: ...
    def stats(self) -> list[dict[str, float]]: ...
    def settle(self, k: list[int]) -> None: ...
    def close(self) -> None: ...


def make_agents(cfg: ZOConfig) -> list[ZOLinkAgent]:
    """Every link's agent in this process, built as each link's own process builds it (:class:`LinkSetup`)."""
    return [s.agent() for s in link_setups(cfg)]


class InprocLinks:
    """All links as plain objects in this process; d messages move in memory through the protocol's
    link emulator (seeded delay / loss) and are logged like socket traffic."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange):
        self.cfg = cfg
        self.agents = make_agents(cfg)
        self.hyper: ZOHyper = self.agents[0].hyper
        self.graph = cfg.algo.update == "graph"
        self.log = log
        log.via = MEMORY        # the d messages of this backend move in memory (the rows a socket would write)
        self.exchange = exchange
        self.emulator = LinkEmulator(link_model(cfg), cfg.run.seed, "logical")

    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [a.schedule() for a in self.agents]

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        b1 = self.hyper.b1
        sent: dict[int, tuple[int, list[Entry]]] = {}
        for i in links:                                        # Algorithm 1 steps 5-6
            ag = self.agents[i]
            u = utility(rates[i], self.hyper)
            sent[i] = (ag.k, ag.end_iteration(u[:b1], u[b1:]))
        for i in links:                                        # the exchange
            k, entries = sent[i]
            env = d_envelope(i, k, entries, t, self.graph, seq=wire_seq(k), t_send_ns=now_ns())
            base = frame_size(env._replace(receiver=0))        # as a RingNode frames it, to receiver r
            for r in self.agents[i].neighbours:
                nbytes = base if r < 128 else frame_size(env._replace(receiver=r))   # msgpack fixint < 128
                self.log.record_sent(env, nbytes, receiver=r)
                self.exchange.add(1, len(entries), nbytes)
                dec = self.emulator.decide(i, r, t)
                if dec.dropped:
                    self.log.record_dropped(env, nbytes, receiver=r, t_ns=now_ns(), delay_slots=dec.delay)
                    self.exchange.dropped += 1
                    continue
                self.log.record_received(env, nbytes, receiver=r, t_recv_ns=now_ns(), delay_slots=dec.delay)
                self.agents[r].deliver(entries, dec.due)
        return {i: self.agents[i].update(t) for i in links}    # Algorithm 1 step 7

    def states(self) -> dict[str, Any]:
        return {"agents": [a.state() for a in self.agents], "emulator": self.emulator.state()}

    def load_states(self, states: dict[str, Any]) -> None:
        for a, s in zip(self.agents, states["agents"], strict=False):
            a.load_state(s)
        self.emulator.load_state(states["emulator"])

    def stats(self) -> list[dict[str, float]]:
        return [dict(a.stats) for a in self.agents]

    def settle(self, k: list[int]) -> None:
        """Nothing in flight: every message's fate was decided when it was sent."""

    def close(self) -> None:
        pass
