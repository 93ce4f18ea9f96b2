"""Ray backend of Algorithm 1: one actor per link, d exchanged over ZeroMQ between the actors.

Each actor wraps a :class:`bs_agent.zo_agent.ZOLinkAgent`, binds one PULL socket and connects one
PUSH socket per neighbour (a connect-side PUSH queues until the peer is up, so no start barrier is
needed and nothing sent is lost). The coordinator makes ONE Ray call per link per iteration (its
rates for the B slots in; its next (theta, theta + mu u) out, for the air). Inside that call the
link forms d, sends it (and its relays) to its neighbours, then receives until it holds every
message its neighbours sent up to this logical slot (senders' schedules are known), applies the
seeded receiver-side delay/loss emulator and updates — so logical time gives the same numbers as
the in-process backend.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray

from bs_agent.zo_agent import ZOLinkAgent, utility
from coordinator import zo_config as zc
from coordinator.zo_config import ZOConfig
from coordinator.zo_train import Exchange, d_envelope, entries_of, link_models, make_agents
from protocol.codec import decode, encode
from protocol.links import LinkEmulator
from protocol.log import DROPPED, RECEIVED, SENT, MessageLog

RECV_TIMEOUT_MS = 30_000


@ray.remote(num_cpus=0, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
class ZOLinkActor:
    """Link i: its agent, its sockets and its receiver-side link emulator."""

    def __init__(self, agent: ZOLinkAgent, cfg: ZOConfig, offsets: list[int]) -> None:
        self.agent = agent
        self.cfg = cfg
        self.offsets = offsets
        self.B = cfg.algo.b1 + cfg.algo.b2
        self.graph = cfg.algo.update == "graph"
        self.emulator = LinkEmulator(link_models(cfg), cfg.run.seed, "logical")
        self.last_iter = {j: -1 for j in agent.neighbours}     # highest iteration received from j
        self.ctx = None

    def bind(self, host: str = "127.0.0.1") -> str:
        from coordinator.zmq_sockets import bind_pull

        self.ctx, self.pull, endpoint = bind_pull(host)
        return endpoint

    def connect(self, endpoints: dict[int, str]) -> None:
        import zmq

        from coordinator.zmq_sockets import connect_push

        self.push = {j: connect_push(self.ctx, endpoints[j]) for j in self.agent.neighbours}
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)

    def schedule(self) -> tuple[np.ndarray, np.ndarray]:
        return self.agent.schedule()

    def _expected(self, t: int) -> dict[int, int]:
        """Highest iteration each neighbour has sent by logical slot t (its schedule is known)."""
        return {j: (t - self.offsets[j]) // self.B - 1 for j in self.agent.neighbours}

    def step(self, t: int, rates: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple]]:
        """Algorithm 1 steps 5-7 for this link at logical slot t; returns its next schedule and the
        message-log rows of what it sent and received."""
        ag = self.agent
        rows: list[tuple] = []
        u = utility(rates, ag.hyper)
        k = ag.k
        entries = ag.end_iteration(u[: ag.hyper.b1], u[ag.hyper.b1:])
        env = d_envelope(ag.index, k, entries, t, self.graph, seq=k)
        frame = encode(env)
        for j, sock in self.push.items():
            sock.send(frame, copy=False)
            rows.append((SENT, env.kind, ag.index, j, k, k, len(frame), len(entries), 0))
        need = self._expected(t)
        while any(self.last_iter[j] < need[j] for j in need):
            if not self.poller.poll(RECV_TIMEOUT_MS):
                raise TimeoutError(f"link {ag.index}: no d message within {RECV_TIMEOUT_MS} ms "
                                   f"(have {self.last_iter}, need {need})")
            data = self.pull.recv(copy=True)
            msg = decode(data)
            j = int(msg.sender)
            self.last_iter[j] = max(self.last_iter[j], int(msg.iteration))
            dec = self.emulator.decide(j, ag.index, int(msg.payload["slot"]))
            if dec.dropped:
                rows.append((DROPPED, msg.kind, j, ag.index, msg.iteration, msg.seq, len(data), 0, dec.delay))
                continue
            rows.append((RECEIVED, msg.kind, j, ag.index, msg.iteration, msg.seq, len(data), 0, dec.delay))
            ag.deliver(entries_of(msg), dec.due)
        return ag.update(t), rows

    def state(self) -> dict[str, Any]:
        import copy

        return {"agent": self.agent.state(), "emulator": copy.deepcopy(self.emulator),
                "last_iter": dict(self.last_iter)}

    def load_state(self, st: dict[str, Any]) -> None:
        self.agent.load_state(st["agent"])
        self.emulator = st["emulator"]
        self.last_iter = {int(j): int(v) for j, v in st["last_iter"].items()}

    def stats(self) -> dict[str, float]:
        return dict(self.agent.stats)

    def close(self) -> None:
        if self.ctx is not None:
            for s in getattr(self, "push", {}).values():
                s.close(0)
            self.pull.close(0)
            self.ctx.term()
            self.ctx = None


class RayLinks:
    """:class:`coordinator.zo_train.LinksBackend` with one Ray actor per link."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange):
        self.cfg = cfg
        self.log = log
        self.exchange = exchange
        offsets = zc.offsets(cfg)
        self.actors = [ZOLinkActor.remote(a, cfg, offsets) for a in make_agents(cfg)]
        endpoints = ray.get([a.bind.remote() for a in self.actors])
        ray.get([a.connect.remote(dict(enumerate(endpoints))) for a in self.actors])

    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return ray.get([a.schedule.remote() for a in self.actors])

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        out = ray.get([self.actors[i].step.remote(t, rates[i]) for i in links])
        res = {}
        for i, (sched, rows) in zip(links, out, strict=True):
            res[i] = sched
            for ev, kind, s, r, it, seq, nbytes, n_entries, delay in rows:
                self.log.record(ev, kind, s, r, it, seq, nbytes, delay_slots=delay)
                if ev == SENT:
                    self.exchange.add(1, n_entries, nbytes)
                elif ev == DROPPED:
                    self.exchange.dropped += 1
        return res

    def states(self) -> list[dict[str, Any]]:
        return ray.get([a.state.remote() for a in self.actors])

    def load_states(self, states: list[dict[str, Any]]) -> None:
        ray.get([a.load_state.remote(s) for a, s in zip(self.actors, states, strict=True)])

    def stats(self) -> list[dict[str, float]]:
        return ray.get([a.stats.remote() for a in self.actors])

    def close(self) -> None:
        try:
            ray.get([a.close.remote() for a in self.actors])
        finally:
            for a in self.actors:
                ray.kill(a)
            self.actors = []


__all__ = ["ZOLinkActor", "RayLinks", "os"]
