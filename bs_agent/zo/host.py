"""Link i of the zeroth-order ray backend inside its process (:class:`LinkHost`): its agent, its
:class:`protocol.RingNode` (one inbound PULL socket, one PUSH per graph neighbour: it sends d, and in graph
mode its relays, to each neighbour) and, on the logical clock, its receiver-side link emulator.

Why the ring node rather than :class:`protocol.BroadcastNode`: the communication graph is an arbitrary
neighbour list and a broadcast on it is a send to each neighbour anyway (every neighbour needs its copy;
|N_i| = 2 in the paper's graph runs); PUSH never drops and queues until the peer is up, so the start
barrier (:func:`protocol.ring_barrier`) is one HELLO per link, not repeated HELLO/READY rounds; and
sequence numbers are per link (seq 0 is the HELLO, d^k is seq k + 1), so the bytes of a logical-time run
are deterministic and the in-process backend logs exactly the same bytes as the wire. The price, one
encode per neighbour, is a few microseconds.

Clocks:
* logical: the link forms d, sends it, then receives until it holds every message its neighbours sent
  up to this logical slot (their schedules are known); the seeded receiver-side emulator (decided on the
  payload's send slot — the node's emulator would key on the envelope iteration) gives each message its
  delay/drop, and the link updates — the same numbers as the in-process backend.
* real: a receiver thread owns the node's receiving side and reads the socket all the time, so a frame's
  delay counts from its arrival; the node's real-clock emulator holds it in its deadline queue and
  releases it into an inbox when due; at its update the link takes whatever is in the inbox (eq. (8) by
  arrival time; see :mod:`coordinator.zo.realtime`). Sends stay on the actor's thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from bs_agent.zo.agent import ZOHyper, ZOLinkAgent, utility
from bs_agent.zo.messages import d_envelope, entries_of
from bs_agent.zo.policy import MLPSpec
from protocol import airport
from protocol.envelope import Kind
from protocol.links import LinkDecision, LinkEmulator, LinkModel
from protocol.log import DROPPED, RECEIVED, RowCapture
from protocol.ring import RingNode
from protocol.security import NodeKeys

RECV_TIMEOUT_MS = 30_000
RECV_POLL_MS = 20          # real clock: the receiver thread checks for stop this often
D_KINDS = (int(Kind.SCALAR_D), int(Kind.RELAY_D))
ROW_FIELDS = airport.ROW_FIELDS   # event kind sender receiver iteration seq nbytes t_send t_recv delay_ns delay_slots
STAT_KEYS = ("d", "grad_norm", "applied", "stale", "duplicates", "late", "gaps", "rejected")


class RowLog(RowCapture):
    """A node's message log whose rows travel back to the coordinator with each reply (no file).

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


@dataclass(frozen=True)
class LinkSetup:
    """Everything link i's process needs, built by the coordinator from the run's config
    (:func:`coordinator.zo.config.link_setups`): no run configuration crosses into a link's process."""

    index: int
    spec: MLPSpec
    hyper: ZOHyper
    root_seed: int
    mode: str                          # eq. (7) 'sync' | eq. (8) 'async' | eq. (9) 'graph'
    neighbours: tuple[int, ...]
    d_max: int
    offsets: tuple[int, ...]           # every link's start offset in slots (its neighbours' schedules are known)
    link_model: LinkModel              # delay / jitter / loss of the d messages it receives
    clock: str = "logical"             # 'logical' (slots) | 'real' (wall clock)

    def agent(self) -> ZOLinkAgent:
        """Link i's agent, as :func:`coordinator.zo.links.make_agents` builds it in process."""
        return ZOLinkAgent(self.index, self.spec, self.hyper, self.root_seed, self.mode, self.neighbours, self.d_max)


class LinkHost:
    """Link i inside an actor: its agent, its ring node and (logical clock) its receiver-side
    link emulator. Plain object; the actor calls it."""

    def __init__(self, setup: LinkSetup, context: Any = None, host: str = "127.0.0.1",
                 curve: NodeKeys | None = None) -> None:
        self.agent = setup.agent()
        self.index = setup.index
        self.offsets = setup.offsets
        self.B = setup.hyper.batch
        self.graph = setup.mode == "graph"
        self.real = setup.clock == "real"
        self.log = RowLog(hold=not self.real)
        emulator = LinkEmulator(setup.link_model, setup.root_seed, setup.clock)
        self.emulator = None if self.real else emulator            # logical: decided here, on the send slot
        self.node = RingNode(self.index, host, log=self.log, emulator=emulator if self.real else None, context=context,
                             curve=curve)   # CURVE: own context (not shared), no inproc
        self.inproc = self.node.bind_inproc() if context is not None else ""
        self.last_iter = {j: -1 for j in self.agent.neighbours}    # highest iteration received from j
        self.late = 0                                              # real clock: d_j^T arrived after update T
        self.strays = 0                                            # stray frames dropped (stray_reason)
        self.inbox: deque = deque()                                # real clock: released by the receiver thread
        self.stop = threading.Event()
        self.receiver: threading.Thread | None = None

    def connect(self, endpoints: dict[int, str], local: dict[int, str] | None = None) -> None:
        """Connect to every neighbour: over ``local`` (inproc, same actor) where it has one, else TCP."""
        local = local or {}
        self.node.connect({j: local.get(j, endpoints[j]) for j in self.agent.neighbours})

    def start_receiver(self) -> None:
        """Real clock: a thread reads the node's socket continuously; its emulator releases each
        message into the inbox when due."""
        self.receiver = threading.Thread(target=self._receive_loop, name=f"zo-receiver-{self.index}", daemon=True)
        self.receiver.start()

    def _receive_loop(self) -> None:
        while not self.stop.is_set():
            msg = self.node.recv(timeout_ms=RECV_POLL_MS)
            if msg is None:
                continue
            reason = self.stray_reason(msg)
            if reason is None:
                self.inbox.append(msg)
            else:
                self._drop(msg, reason)

    def stray_reason(self, msg: Any, expect_iteration: bool = False) -> str | None:
        """Why a frame is not a d message this link takes (None: it is): not from a neighbour, of another kind
        than the run's d (SCALAR_D, or RELAY_D on a graph), (logical clock, ``expect_iteration``) not the next
        iteration of its sender (a link's d messages come in order, one per iteration), or a payload that is not
        a d message's. Such a frame is counted and dropped (:meth:`_drop`), never fatal."""
        j = int(msg.sender)
        if j not in self.last_iter:
            return "UnexpectedSender"
        if int(msg.kind) != (Kind.RELAY_D if self.graph else Kind.SCALAR_D):
            return "UnexpectedKind"
        if expect_iteration and int(msg.iteration) != self.last_iter[j] + 1:
            return "WrongIteration"
        try:
            if type(msg.payload.get("slot")) is not int:
                raise TypeError("slot")
            entries_of(msg)
        except (KeyError, TypeError, ValueError):
            return "MalformedPayload"
        return None

    def _drop(self, msg: Any, reason: str) -> None:
        """Count a stray frame in the node's ``stats.rejected[reason]`` (the ``rejected`` diagnostic) and take
        its received row out of the log (held on the logical clock, recorded on the real one)."""
        self.node.stats.rejected[reason] += 1
        self.strays += 1
        log = self.log
        if log.held.pop((int(msg.sender), int(msg.seq)), None) is not None:
            return
        with log.lock:
            rows = log.rows
            for k in range(len(rows) - 1, -1, -1):
                r = rows[k]
                if r[0] == RECEIVED and r[1] == int(msg.kind) and r[2] == msg.sender and r[5] == msg.seq:
                    del rows[k]
                    break

    def schedule(self) -> np.ndarray:
        return np.stack(self.agent.schedule())

    def send_d(self, t: int, rates: np.ndarray) -> int:
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

    def expected(self, t: int) -> dict[int, int]:
        """Highest iteration each neighbour has sent by logical slot t (its schedule is known)."""
        return {j: (t - self.offsets[j]) // self.B - 1 for j in self.agent.neighbours}

    def receive_until(self, need: dict[int, int]) -> None:
        """Logical clock: receive until every neighbour j's messages up to iteration need[j] are
        in; each gets its seeded delay/drop from the emulator, keyed on its send slot."""
        ag = self.agent
        while any(self.last_iter[j] < need[j] for j in need):
            msg = self.node.recv(timeout_ms=RECV_TIMEOUT_MS)
            if msg is None:
                raise TimeoutError(f"link {ag.index}: no d message within {RECV_TIMEOUT_MS} ms "
                                   f"(have {self.last_iter}, need {need})")
            reason = self.stray_reason(msg, expect_iteration=True)
            if reason is not None:
                self._drop(msg, reason)
                continue
            j = int(msg.sender)
            self.last_iter[j] = max(self.last_iter[j], int(msg.iteration))
            dec = self.emulator.decide(j, ag.index, int(msg.payload["slot"]))
            self.log.resolve(j, msg.seq, dec)
            if not dec.dropped:
                ag.deliver(entries_of(msg), dec.due)

    def update(self, t: int) -> np.ndarray:
        """Algorithm 1 step 7 at logical slot t (real clock: with whatever was released); [2, n]."""
        if self.real:
            self.absorb()
            return np.stack(self.agent.update(0))
        return np.stack(self.agent.update(t))

    def prefetch(self) -> None:
        """Regenerate u_i^{k+1} (the perturbation of the next schedule) ahead of the next update,
        while the coordinator runs the air: same vector, (seed, i, k + 1) alone decides it."""
        self.agent.u(self.agent.k + 1)

    def absorb(self) -> None:
        """Real clock: deliver every message released so far; count the late ones (d_j^T that
        came after this link's update T)."""
        ag = self.agent
        while self.inbox:
            msg = self.inbox.popleft()
            entries = entries_of(msg)
            self.late += sum(1 for e in entries if e[0] != ag.index and e[1] < ag.k)
            ag.deliver(entries, 0)

    def drain(self, expected: int, t_end: float) -> int:
        """Real clock, end of a run: wait until ``expected`` d messages were received or dropped
        (or the monotonic time ``t_end``); returns how many are still missing."""
        st = self.node.stats
        while st.received - self.strays + st.dropped_injected < expected and time.monotonic() < t_end:
            time.sleep(0.001)
        self.absorb()
        return max(0, expected - (st.received - self.strays) - st.dropped_injected)

    def state(self) -> dict[str, Any]:
        return {"agent": self.agent.state(), "emulator": None if self.emulator is None else self.emulator.state(),
                "last_iter": dict(self.last_iter)}

    def load_state(self, st: dict[str, Any]) -> None:
        self.agent.load_state(st["agent"])
        if self.emulator is not None:
            self.emulator.load_state(st["emulator"])
        self.last_iter = {int(j): int(v) for j, v in st["last_iter"].items()}

    def stats(self) -> dict[str, float]:
        return {**self.agent.stats, "late": float(self.late), "gaps": float(self.node.stats.gaps),
                "rejected": float(sum(self.node.stats.rejected.values()))}

    def stat_vector(self) -> np.ndarray:
        s = self.stats()
        return np.array([s[k] for k in STAT_KEYS], dtype=np.float64)

    def close(self) -> None:
        self.stop.set()
        if self.receiver is not None:
            self.receiver.join(timeout=5.0)
        self.node.close()


__all__ = ["LinkHost", "LinkSetup", "RowLog", "D_KINDS", "STAT_KEYS"]
