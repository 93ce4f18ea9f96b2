"""Ray backend of Algorithm 1: one actor per link, d exchanged between the actors over ZeroMQ.

Each actor builds its own :class:`bs_agent.zo_agent.ZOLinkAgent` (from the config and its index:
no agent is pickled) and owns a :class:`protocol.RingNode`: one inbound PULL socket and one PUSH
socket per graph neighbour; it sends d (and, in graph mode, its relays) to each neighbour.

Why the ring node rather than :class:`protocol.BroadcastNode`: the communication graph is an
arbitrary neighbour list and a broadcast on it is a send to each neighbour anyway (every
neighbour needs its copy; |N_i| = 2 in the paper's graph runs); PUSH never drops and queues until
the peer is up, so the start barrier (:func:`protocol.ring_barrier`) is one HELLO per link, not
repeated HELLO/READY rounds; and sequence numbers are per link (seq 0 is the HELLO, d^k is
seq k + 1), so the bytes of a logical-time run are deterministic and the in-process backend logs
exactly the same bytes as the wire. The price, one encode per neighbour, is a few microseconds.

The coordinator makes ONE Ray call per link per iteration: the link's rates for its B slots in;
its next (theta, theta + mu u) as one [2, n] array, its message-log rows as one int64 array
[rows, 11] (:data:`protocol.log.COLUMNS` without ``dropped``) and the scalars per message out.

Clocks:
* logical: inside the call the link forms d, sends it, then receives until it holds every message
  its neighbours sent up to this logical slot (their schedules are known); the seeded
  receiver-side emulator (ZO's own ``LinkEmulator.decide`` on the payload's send slot — the node's
  emulator would key on the envelope iteration) gives each message its delay/drop, and the link
  updates — the same numbers as the in-process backend.
* real: a receiver thread of the actor owns the node's receiving side and reads the socket all
  the time, so a frame's delay counts from its arrival; the node's real-clock emulator holds it in
  its deadline queue and releases it into an inbox when due; the link updates at once with
  whatever is in the inbox (eq. (8) by arrival time); see :mod:`coordinator.zo_realtime`. Sends
  stay on the actor's thread (other sockets; the row log is locked).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
import ray

from bs_agent.zo_agent import utility
from coordinator import zo_config as zc
from coordinator.run_messages import RowCapture
from coordinator.zo_config import ZOConfig
from coordinator.zo_train import Exchange, d_envelope, entries_of, link_models, make_agent
from protocol.barrier import ring_barrier
from protocol.envelope import Kind
from protocol.links import LinkDecision, LinkEmulator
from protocol.log import DROPPED, RECEIVED, SENT, MessageLog
from protocol.transport import RingNode

RECV_TIMEOUT_MS = 30_000
RECV_POLL_MS = 20          # real clock: the receiver thread checks for stop this often
D_KINDS = (int(Kind.SCALAR_D), int(Kind.RELAY_D))
ROW_FIELDS = 11   # event, kind, sender, receiver, iteration, seq, nbytes, t_send, t_recv, delay_ns, delay_slots


class RowLog(RowCapture):
    """A node's message log whose rows travel back to the coordinator with each call (no file).

    With ``hold`` (logical clock), the row of a received d message waits for the ZO emulator's
    verdict (:meth:`resolve`): it becomes a received row with its delay in slots, or a dropped row."""

    def __init__(self, hold: bool) -> None:
        super().__init__()
        self.hold = hold
        self.held: dict[tuple[int, int], tuple[int, ...]] = {}

    def record(self, event: int, kind: int, sender: int, receiver: int, iteration: int, seq: int, nbytes: int,
               t_send_ns: int = 0, t_recv_ns: int = 0, delay_ns: int = 0, delay_slots: int = 0) -> None:
        if self.hold and event == RECEIVED and kind in D_KINDS:
            self.held[(sender, seq)] = (int(event), int(kind), sender, receiver, iteration, seq, nbytes, t_send_ns,
                                        t_recv_ns, delay_ns, delay_slots)
        else:
            super().record(event, kind, sender, receiver, iteration, seq, nbytes, t_send_ns, t_recv_ns, delay_ns,
                           delay_slots)

    def resolve(self, sender: int, seq: int, dec: LinkDecision) -> None:
        """The held row of (sender, seq) with the emulator's decision (delay in slots, dropped)."""
        row = self.held.pop((sender, seq))
        super().record(DROPPED if dec.dropped else RECEIVED, *row[1:10], dec.delay)

    def take(self) -> np.ndarray:  # type: ignore[override]
        """[rows, 11] int64 of everything recorded since the last call."""
        return np.asarray(super().take(), dtype=np.int64).reshape(-1, ROW_FIELDS)


@ray.remote(num_cpus=0, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
class ZOLinkActor:
    """Link i: its agent, its ring node and (logical clock) its receiver-side link emulator."""

    def __init__(self, cfg: ZOConfig, index: int, offsets: list[int]) -> None:
        self.agent = make_agent(cfg, index)
        self.offsets = offsets
        self.B = cfg.algo.b1 + cfg.algo.b2
        self.graph = cfg.algo.update == "graph"
        self.real = cfg.run.clock == "real"
        self.log = RowLog(hold=not self.real)
        clock = "real" if self.real else "logical"
        emulator = LinkEmulator(link_models(cfg), cfg.run.seed, clock)
        self.emulator = None if self.real else emulator            # logical: decided here, on the send slot
        self.node = RingNode(index, log=self.log, emulator=emulator if self.real else None)
        self.last_iter = {j: -1 for j in self.agent.neighbours}    # highest iteration received from j
        self.late = 0                                              # real clock: d_j^T arrived after update T
        self.inbox: deque = deque()                                # real clock: released by the receiver thread
        self.stop = threading.Event()
        self.receiver: threading.Thread | None = None

    def endpoint(self) -> str:
        return self.node.endpoint

    def connect(self, endpoints: dict[int, str]) -> np.ndarray:
        """Connect to the neighbours and pass the start barrier; returns the barrier's log rows."""
        self.node.connect({j: endpoints[j] for j in self.agent.neighbours})
        ring_barrier(self.node)
        if self.real:
            self.receiver = threading.Thread(target=self._receive_loop, name="zo-receiver", daemon=True)
            self.receiver.start()
        return self.log.take()

    def _receive_loop(self) -> None:
        """Real clock: read the socket continuously; the emulator releases each message when due."""
        while not self.stop.is_set():
            msg = self.node.recv(timeout_ms=RECV_POLL_MS)
            if msg is not None:
                self.inbox.append(msg)

    def schedule(self) -> np.ndarray:
        return np.stack(self.agent.schedule())

    def _send_d(self, t: int, rates: np.ndarray) -> int:
        """Algorithm 1 steps 5-6: form d_i^k from its own utilities, send it (and relays) to every
        neighbour; returns the scalars per message."""
        ag = self.agent
        u = utility(rates, ag.hyper)
        k = ag.k
        entries = ag.end_iteration(u[: ag.hyper.b1], u[ag.hyper.b1:])
        env = d_envelope(ag.index, k, entries, t, self.graph)
        for j in ag.neighbours:
            self.node.send(j, env)
        return len(entries)

    def _expected(self, t: int) -> dict[int, int]:
        """Highest iteration each neighbour has sent by logical slot t (its schedule is known)."""
        return {j: (t - self.offsets[j]) // self.B - 1 for j in self.agent.neighbours}

    def step(self, t: int, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Logical clock, slot t: send d, receive every message due by t, update (Algorithm 1 step 7).
        Returns the next schedule [2, n], the log rows and the scalars per message sent."""
        n_scalars = self._send_d(t, rates)
        self._receive_until(self._expected(t))
        return np.stack(self.agent.update(t)), self.log.take(), n_scalars

    def settle(self, k: list[int]) -> np.ndarray:
        """Logical clock, end of training: receive (and log) every d still in flight, given the
        iterations ``k`` every link has completed; returns the log rows."""
        self._receive_until({j: k[j] - 1 for j in self.agent.neighbours})
        return self.log.take()

    def _receive_until(self, need: dict[int, int]) -> None:
        """Receive until every neighbour j's messages up to iteration need[j] are in; each gets its
        seeded delay/drop from the emulator, keyed on its send slot."""
        ag = self.agent
        while any(self.last_iter[j] < need[j] for j in need):
            msg = self.node.recv(timeout_ms=RECV_TIMEOUT_MS)
            if msg is None:
                raise TimeoutError(f"link {ag.index}: no d message within {RECV_TIMEOUT_MS} ms "
                                   f"(have {self.last_iter}, need {need})")
            j = int(msg.sender)
            self.last_iter[j] = max(self.last_iter[j], int(msg.iteration))
            dec = self.emulator.decide(j, ag.index, int(msg.payload["slot"]))
            self.log.resolve(j, msg.seq, dec)
            if not dec.dropped:
                ag.deliver(entries_of(msg), dec.due)

    def step_real(self, t: int, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Real clock: send d, take whatever the deadline queue has released by now, update
        (eq. (8) with fresh/stale decided by arrival time). Same return as :meth:`step`."""
        n_scalars = self._send_d(t, rates)
        self._absorb()
        return np.stack(self.agent.update(0)), self.log.take(), n_scalars

    def _absorb(self) -> None:
        """Deliver every message released so far; count the late ones (d_j^T that came after this
        link's update T)."""
        ag = self.agent
        while self.inbox:
            msg = self.inbox.popleft()
            entries = entries_of(msg)
            self.late += sum(1 for e in entries if e[0] != ag.index and e[1] < ag.k)
            ag.deliver(entries, 0)

    def drain(self, expected: int, timeout_ms: int) -> tuple[np.ndarray, int]:
        """End of a real-clock run: wait until ``expected`` d messages have been received or dropped
        (so the log adds up); returns the rows and how many are still missing."""
        st = self.node.stats
        t_end = time.monotonic() + timeout_ms / 1e3
        while st.received + st.dropped_injected < expected and time.monotonic() < t_end:
            time.sleep(0.001)
        self._absorb()
        return self.log.take(), max(0, expected - st.received - st.dropped_injected)

    def state(self) -> dict[str, Any]:
        import copy

        return {"agent": self.agent.state(), "emulator": copy.deepcopy(self.emulator),
                "last_iter": dict(self.last_iter)}

    def load_state(self, st: dict[str, Any]) -> None:
        self.agent.load_state(st["agent"])
        if not self.real:
            self.emulator = st["emulator"]
        self.last_iter = {int(j): int(v) for j, v in st["last_iter"].items()}

    def stats(self) -> dict[str, float]:
        return {**self.agent.stats, "late": float(self.late), "gaps": float(self.node.stats.gaps),
                "rejected": float(sum(self.node.stats.rejected.values()))}

    def close(self) -> None:
        self.stop.set()
        if self.receiver is not None:
            self.receiver.join(timeout=5.0)
        self.node.close()


class RayLinks:
    """:class:`coordinator.zo_train.LinksBackend` with one Ray actor per link."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange):
        self.cfg = cfg
        self.log = log
        self.exchange = exchange
        offsets = zc.offsets(cfg)
        self.actors = [ZOLinkActor.remote(cfg, i, offsets) for i in range(cfg.scenario.n_links)]
        endpoints = ray.get([a.endpoint.remote() for a in self.actors])
        for rows in ray.get([a.connect.remote(dict(enumerate(endpoints))) for a in self.actors]):
            self.record(rows, 0)

    def record(self, rows: np.ndarray, n_scalars: int) -> None:
        """Put an actor's log rows into the run's log; count its d traffic in the exchange."""
        log, ex = self.log, self.exchange
        for row in rows.tolist():
            log.record(*row)
            if row[1] in D_KINDS:
                if row[0] == SENT:
                    ex.add(1, n_scalars, row[6])
                elif row[0] == DROPPED:
                    ex.dropped += 1

    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(s[0], s[1]) for s in ray.get([a.schedule.remote() for a in self.actors])]

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        out = ray.get([self.actors[i].step.remote(t, rates[i]) for i in links])
        return {i: self.collect(res) for i, res in zip(links, out, strict=True)}

    def collect(self, res: tuple[np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, np.ndarray]:
        """Record one step's rows; return its schedule (theta, theta + mu u)."""
        sched, rows, n_scalars = res
        self.record(rows, n_scalars)
        return sched[0], sched[1]

    def settle(self, k: list[int]) -> None:
        """Receive and log every d message still in flight (logical clock), so that sent = received
        + dropped in the log, as in the in-process backend."""
        for rows in ray.get([a.settle.remote(k) for a in self.actors]):
            self.record(rows, 0)

    def drain(self, expected: list[int], timeout_ms: int) -> int:
        """Real clock, end of a run: link i waits until ``expected[i]`` d messages were received or
        dropped (or ``timeout_ms``); their rows go to the log. Returns how many never came."""
        missing = 0
        for rows, miss in ray.get([a.drain.remote(e, timeout_ms) for a, e in zip(self.actors, expected, strict=True)]):
            self.record(rows, 0)
            missing += miss
        return missing

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


__all__ = ["ZOLinkActor", "RayLinks", "RowLog", "D_KINDS"]
