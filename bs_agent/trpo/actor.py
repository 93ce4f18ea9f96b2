"""A base station as a Ray actor (:class:`BSActor`): its :class:`~bs_agent.trpo.ops.AgentOps` as typed
actor methods, and its :class:`protocol.RingNode`, over which it passes the round-robin power token to the
next BS (one message per hop carrying the whole batch of slots) and serves the FVP phase (the conjugate
gradient's products, the critic rounds riding on them, the first line-search candidate) for the
coordinator: one ``serve`` Ray call per iteration, then one request and one answer per product on the node.

Each actor's node records what it really sent and received (:class:`protocol.log.RowCapture`); the rows
come back with the ``round_robin`` call, so the coordinator logs them even when the run folder is not
shared between cluster nodes. A BS process imports only ``bs_agent``, ``protocol`` and ``radio``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray
import torch

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.execution import ExecNode, ExecSetup
from bs_agent.trpo.ops import AgentOps, token_payload
from protocol import COORDINATOR, Envelope, Kind, LinkEmulator, LinkModel, RingNode, airport, estimate_clock_offset
from protocol.barrier import ring_barrier
from protocol.log import RECEIVED, ROW_FIELDS, Row, RowCapture
from protocol.security import NodeKeys

COORD_NODE = 1 << 16
"""The coordinator's node id on the ZeroMQ links to the agents (agent ids are 0..B-1; the message log
names it COORDINATOR, as for the messages carried by Ray calls)."""


@ray.remote(num_cpus=0)
class BSActor(AgentOps):
    """A BS (or the central agent) in its own process: every :class:`AgentOps` call as a typed actor
    method, plus its node (the ring and the FVP phase's link to the coordinator)."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        super().__init__(bs_id, spec, sample_seed)
        self.bs_id = bs_id
        self.node: RingNode | None = None
        self.capture = RowCapture()
        self.served = [0, 0]   # frames sent, received by serve() (the node's counters minus these: the ring)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def clock_offset(self, rounds: int = 16) -> tuple[int, int]:
        """(coordinator clock - this clock, round trip) in ns, by ping-pong with the coordinator's node (which
        must be receiving meanwhile)."""
        est = estimate_clock_offset(self.node, COORD_NODE, rounds=rounds)
        return est.offset_ns, est.rtt_ns

    def take_rows(self) -> list[Row]:
        """The rows this node recorded since the last take (e.g. the clock pings of :meth:`clock_offset`)."""
        return self.capture.take()

    def rss_mb(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    # ---- the ring: bind here (127.0.0.1, or this node's address in cluster mode), report the endpoint
    def ring_open(self, cluster: bool = False, curve: NodeKeys | None = None) -> str:
        """Bind the node; with ``curve`` (this BS's keys of the run) it is a CURVE node: only the run's keys
        connect, and each connection's frames must carry the id of its key."""
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        self.node = RingNode(self.bs_id, host, log=self.capture, curve=curve)
        return self.node.endpoint

    def ring_connect(self, endpoints: dict[int, str]) -> None:
        if self.node is None:
            raise RuntimeError(f"BS {self.bs_id}: ring_connect before ring_open")
        self.node.connect(endpoints)

    # ---- the FVP phase over the node (one Ray call per iteration instead of one per product)
    def serve(self, iteration: int, timeout_ms: int = 60_000) -> None:
        """Answer the coordinator over the node until the first line-search candidate: FVP_REQUEST
        {"v"} -> FVP {"fvp"}; PARAMETERS {"theta"} -> METRICS {"surrogate", "kl"}, which ends the
        call. A PARAMETERS {"phi"} just before either is a critic round riding on it: its GRADIENT
        {"c", "loss"} follows the answer. The coordinator logs these messages as it logs the ones Ray
        calls carry (this node's rows of them are dropped, so that none is logged twice)."""
        node, b = self.node, self.bs_id
        if node is None:
            raise RuntimeError(f"agent {b}: node not opened")
        phi, crit = None, False
        deadline = time.monotonic() + timeout_ms / 1e3
        try:
            while True:
                env = node.recv(timeout_ms=max(0, int((deadline - time.monotonic()) * 1e3)))
                if env is None:
                    raise TimeoutError(f"agent {b}: no request from the coordinator within {timeout_ms} ms")
                self.served[1] += 1
                pay = env.payload
                # a frame that is not the coordinator's request of this iteration is counted and dropped
                if env.iteration != iteration:
                    self._drop(env, "WrongIteration")
                elif env.sender != COORD_NODE:
                    self._drop(env, "UnexpectedSender")
                elif env.kind == Kind.PARAMETERS and isinstance(pay.get("phi"), np.ndarray):
                    phi, crit = pay["phi"], True
                elif env.kind == Kind.FVP_REQUEST and isinstance(pay.get("v"), np.ndarray):
                    x, c = self.fvp(pay["v"], crit, phi)
                    self._answer(Kind.FVP, {"fvp": x}, c, iteration)
                    phi, crit = None, False
                    deadline = time.monotonic() + timeout_ms / 1e3
                elif env.kind == Kind.PARAMETERS and isinstance(pay.get("theta"), np.ndarray):
                    (sv, kl), c = self.surrogate_kl(pay["theta"], crit, phi)
                    self._answer(Kind.METRICS, {"surrogate": sv, "kl": kl}, c, iteration)
                    return
                else:
                    self._drop(env, "UnexpectedKind" if env.kind not in (Kind.PARAMETERS, Kind.FVP_REQUEST)
                               else "MalformedPayload")
        finally:
            self.capture.take()

    def _drop(self, env: Envelope, reason: str) -> None:
        """A stray frame (of another iteration, kind or sender than the one awaited): counted in the node's
        ``stats.rejected[reason]`` (``ring_stats``) and dropped, its received row taken out of the log: it is
        not a message of the run. Never fatal."""
        self.node.stats.rejected[reason] += 1
        rows, cap = self.capture.rows, self.capture
        with cap.lock:
            for k in range(len(rows) - 1, -1, -1):
                r = rows[k]
                if r[0] == RECEIVED and r[1] == int(env.kind) and r[2] == env.sender and r[5] == env.seq:
                    del rows[k]
                    break

    def _answer(self, kind: Kind, payload: dict, crit: Any, iteration: int) -> None:
        node, b = self.node, self.bs_id
        node.send(COORD_NODE, Envelope(kind, b, COORD_NODE, iteration, 0, payload))
        self.served[0] += 1
        if crit is not None:
            c, loss = crit
            node.send(COORD_NODE, Envelope(Kind.GRADIENT, b, COORD_NODE, iteration, 0, {"c": c, "loss": loss}))
            self.served[0] += 1

    def round_robin(self, position: np.ndarray, M: int, B: int, L: int, iteration: int, run_id: str = "",
                    timeout_ms: int = 60_000, csi: np.ndarray | None = None, lost: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, list[Row]]:
        """(Load ``csi`` if given, then) B passes of the token around the ring b -> b+1; BS 0 starts
        from zero power; ``lost`` [M]: this BS's slots whose predecessor's vector is lost. Returns (the final
        token's powers at the last BS of the ring, else None; the rows this node recorded)."""
        node, b = self.node, self.bs_id
        if node is None:
            raise RuntimeError(f"BS {b}: ring not opened")
        if csi is not None:
            self.load(csi)
        for n in range(B):
            if b == 0 and n == 0:
                p, decided = np.zeros((M, L)), np.zeros((M, B), dtype=bool)
            else:
                p = decided = None
                deadline = time.monotonic() + timeout_ms / 1e3
                while p is None:      # the predecessor's token; anything else is counted and dropped
                    env = node.recv(timeout_ms=max(0, int((deadline - time.monotonic()) * 1e3)))
                    if env is None:
                        raise TimeoutError(f"BS {b}: no power token for pass {n} within {timeout_ms} ms")
                    tok = env.payload
                    if env.iteration != iteration:
                        self._drop(env, "WrongIteration")
                    elif env.kind != Kind.POWER_VECTOR:
                        self._drop(env, "UnexpectedKind")
                    elif env.sender != (b - 1) % B:
                        self._drop(env, "UnexpectedSender")
                    elif not (isinstance(tok.get("p"), np.ndarray) and tok["p"].shape == (M, L)
                              and isinstance(tok.get("decided"), np.ndarray) and tok["decided"].shape == (M, B)):
                        self._drop(env, "MalformedPayload")
                    else:
                        p, decided = tok["p"].astype(np.float64), tok["decided"].astype(bool)
            self.rr_pass(p, decided, position, n, lost)
            if b == B - 1 and n == B - 1:
                return p, self.capture.take()
            node.send((b + 1) % B, Envelope(Kind.POWER_VECTOR, b, (b + 1) % B, iteration, 0,
                                            token_payload(p, decided), run_id))
        return None, self.capture.take()

    def ring_stats(self) -> dict[str, int]:
        """This node's own counters of the ring (frames sent, messages received, frames rejected; the
        FVP phase's frames to and from the coordinator are not counted)."""
        st = self.node.stats if self.node is not None else None
        return {} if st is None else {"sent": st.sent - self.served[0], "received": st.received - self.served[1],
                                      "rejected": sum(st.rejected.values())}

    def close(self) -> None:
        if self.node is not None:
            self.node.close()
            self.node = None


DRAIN_MS = 200
"""At the end of an execution run, a node keeps reading this long after its last message, so that a vector
that missed the last slots' deadlines is received and logged (late) rather than left unread."""


@ray.remote(num_cpus=0, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
class ExecActor:
    """A BS, or the central unit, in the execution phase (:mod:`bs_agent.trpo.execution`): its
    :class:`protocol.RingNode` for the scheme's messages (with the receiving side of its links' delay and
    loss), and an air port on which the coordinator triggers every slot. One long :meth:`serve` call runs all
    the slots: no Ray call per slot."""

    def __init__(self, setup: ExecSetup, n_slots: int) -> None:
        self.setup, self.n_slots = setup, n_slots
        self.capture = RowCapture()
        self.node: RingNode | None = None
        self.port: airport.LinkPort | None = None
        self.exec: ExecNode | None = None
        self.offset_ns = 0                      # coordinator clock - this process's clock

    def open(self, cluster: bool = False, curve: NodeKeys | None = None) -> tuple[str, str]:
        """Bind the node and the air port (127.0.0.1, or this node's address on a cluster); the node with CURVE
        if given this node's keys of the run (the air port has none: its frames travel in clear)."""
        s = self.setup
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        models = {(snd, s.node_id): m for snd, m in s.inbound.items()}
        emulator = None if all(m == LinkModel() for m in models.values()) else \
            LinkEmulator(models, s.seed, s.clock)
        self.node = RingNode(s.node_id, host, log=self.capture, emulator=emulator, extra_senders=[COORD_NODE],
                             curve=curve)
        self.port = airport.LinkPort(host)
        return self.node.endpoint, self.port.endpoint

    def connect(self, peers: dict[int, str], hub: str) -> None:
        """Connect to the peers this node sends to (and the coordinator's node), then the start barrier."""
        self.node.connect(peers)
        self.port.connect({COORDINATOR: hub})
        ring_barrier(self.node)
        self.exec = ExecNode(self.setup, self.node, self.n_slots)

    def clock_offset(self, rounds: int = 16) -> tuple[int, int]:
        """(coordinator clock - this clock, round trip) in ns, by ping-pong with the coordinator's node."""
        est = estimate_clock_offset(self.node, COORD_NODE, rounds=rounds)
        self.offset_ns = est.offset_ns
        return est.offset_ns, est.rtt_ns

    def serve(self) -> int:
        """Slot triggers until STOP; on the logical clock each slot is acknowledged (lockstep)."""
        port, node, served = self.port, self.exec, 0
        while True:
            op, slot, ids, payload = port.recv()
            if op == airport.STOP:
                node.finish(DRAIN_MS)     # what arrived after its slot: logged and counted late, not lost
                return served
            if op not in (airport.SLOT, airport.SLOT_ACKED):
                continue
            off = self.offset_ns
            node.on_slot(slot, ids[2:], int(ids[0]) - off, int(ids[1]) - off, payload)
            served += 1
            if op == airport.SLOT_ACKED:          # the logical clock's lockstep
                port.reply_rows(np.empty((0, ROW_FIELDS), np.int64))

    def results(self) -> dict[str, Any]:
        """The per-slot records, the node's message rows, its counters and its clock offset."""
        st = self.node.stats
        return {**self.exec.rec.as_dict(), "rows": self.capture.take(), "offset_ns": self.offset_ns,
                "node": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "stats": {"sent": st.sent, "received": st.received, "dropped_injected": st.dropped_injected,
                          "rejected": sum(st.rejected.values()), "gaps": st.gaps}}

    def close(self) -> None:
        for x in (self.node, self.port):
            if x is not None:
                x.close()
        self.node = self.port = None
