"""Base stations as Ray actors (:class:`BSActor`): one or more BSs per actor (``run.bs_per_actor``), their
:class:`~bs_agent.trpo.ops.AgentOps` as typed actor methods over all of them, and the actor's
:class:`protocol.RingNode`, over which the round-robin power token reaches the actor and leaves it for the next
one (one message per hop carrying the whole batch of slots; between BSs of one actor it moves in memory) and
over which the actor serves the FVP phase (the conjugate gradient's products, the critic rounds riding on them,
the first line-search candidate) for the coordinator: one ``serve`` Ray call per iteration, then one request
and one answer per product on the node, with every hosted BS's share in it.

Each actor's nodes record what they really sent and received (:class:`protocol.log.RowCapture`); the rows
come back with the ``round_robin`` call, with the in-memory hops beside them, so the coordinator logs them
even when the run folder is not shared between cluster nodes. A BS process imports only ``bs_agent``,
``protocol`` and ``radio``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from bs_agent.realtime import current_policy, enter_realtime, io_policy
from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.execution import ExecNode, ExecSetup
from bs_agent.trpo.ops import AgentOps, Crit, token_payload
from protocol import (
    COORDINATOR,
    Envelope,
    Kind,
    LinkEmulator,
    LinkModel,
    RingNode,
    airport,
    estimate_clock_offset,
    frame_size,
    now_ns,
)
from protocol.barrier import ring_barrier
from protocol.log import RECEIVED, ROW_FIELDS, SENT, Row, RowCapture
from protocol.security import NodeKeys

COORD_NODE = 1 << 16
"""The coordinator's node id on the ZeroMQ links to the agents (agent ids are 0..B-1; the message log
names it COORDINATOR, as for the messages carried by Ray calls)."""


def node_ids(bs_ids: Sequence[int], spec: AgentSpec) -> list[int]:
    """The ids of the ZeroMQ nodes of an actor hosting ``bs_ids`` (consecutive BSs, or the central agent): its
    first BS's node (the round-robin token from the previous actor, the FVP phase with the coordinator), and in
    the round-robin scheme, when it hosts several BSs but not all, its last BS's node, which sends the token on to
    the next actor (a node stamps its own id as the sender: each frame names the BS that really sent it)."""
    first, last = int(bs_ids[0]), int(bs_ids[-1])
    return [first, last] if spec.scheme == "partial" and 1 < len(bs_ids) < spec.B else [first]


def memory_hop(rows: list[Row], seqs: dict[tuple[int, int], int], sender: int, receiver: int, iteration: int,
               payload: dict[str, np.ndarray], run_id: str) -> None:
    """A hop of the token between two BSs of one process, logged as a socket logs it (sent, received; per-link
    seq, the bytes the frame would have), as the in-process backend logs its hops."""
    seq = seqs.get((sender, receiver), 0)
    seqs[(sender, receiver)] = seq + 1
    t = now_ns()
    n = frame_size(Envelope(Kind.POWER_VECTOR, sender, receiver, iteration, seq, payload, run_id, t))
    rows.append((SENT, int(Kind.POWER_VECTOR), sender, receiver, iteration, seq, n, t, 0, 0, 0))
    rows.append((RECEIVED, int(Kind.POWER_VECTOR), sender, receiver, iteration, seq, n, t, now_ns(), 0, 0))


@ray.remote(num_cpus=0)
class BSActor:
    """One or more BSs (``run.bs_per_actor`` consecutive ones, or the central agent) in one process: every
    :class:`AgentOps` call as one actor method over all of them (lists in and out, in ``bs_ids`` order; each BS
    keeps its own share, so the coordinator sums the same numbers as in-process), plus the actor's nodes
    (:func:`node_ids`): :attr:`node` for the ring's inbound token and the FVP phase's link to the coordinator,
    :attr:`out` (None with one BS) for the token to the next actor. Between the BSs of one actor the token moves
    in memory."""

    def __init__(self, bs_ids: Sequence[int], spec: AgentSpec, sample_seeds: Sequence[int], threads: int = 1
                 ) -> None:
        torch.set_num_threads(threads)
        self.ids = [int(b) for b in bs_ids]
        self.spec = spec
        self.agents = [AgentOps(b, spec, s) for b, s in zip(self.ids, sample_seeds, strict=True)]
        self.bs_id = self.ids[0]
        self.node: RingNode | None = None
        self.out: RingNode | None = None
        self.capture = RowCapture()
        self.served = [0, 0]   # frames sent, received by serve() (the node's counters minus these: the ring)
        self.next_seq: dict[tuple[int, int], int] = {}   # the in-memory ring links' sequence numbers

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def clock_offset(self, rounds: int = 16) -> tuple[int, int]:
        """(coordinator clock - this clock, round trip) in ns, by ping-pong with the coordinator's node (which
        must be receiving meanwhile)."""
        est = estimate_clock_offset(self.node, COORD_NODE, rounds=rounds)
        return est.offset_ns, est.rtt_ns

    def take_rows(self) -> list[Row]:
        """The rows this actor's nodes recorded since the last take (e.g. the clock pings of :meth:`clock_offset`)."""
        return self.capture.take()

    def rss_mb(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    # ---- every hosted agent's AgentOps (lists in bs_ids order)
    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.agents[0].initial_params()

    def set_policy(self, theta: np.ndarray) -> None:
        for a in self.agents:
            a.set_policy(theta)

    def set_value(self, phi: np.ndarray) -> None:
        for a in self.agents:
            a.set_value(phi)

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        for a in self.agents:
            a.set_params(theta, phi)

    def rng_state(self) -> list[torch.Tensor]:
        return [a.rng_state() for a in self.agents]

    def set_rng_state(self, states: Sequence[torch.Tensor]) -> None:
        for a, s in zip(self.agents, states, strict=True):
            a.set_rng_state(s)

    def load(self, csi: Sequence[np.ndarray], stochastic: bool = True) -> None:
        for a, c in zip(self.agents, csi, strict=True):
            a.load(c, stochastic)

    def act(self) -> list[np.ndarray]:
        return [a.act() for a in self.agents]

    def load_act(self, csi: Sequence[np.ndarray], stochastic: bool = True) -> list[np.ndarray]:
        return [a.load_act(c, stochastic) for a, c in zip(self.agents, csi, strict=True)]

    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False
                       ) -> list[tuple[np.ndarray, Crit]]:
        return [a.start_learning(G, w, critic) for a, G, w in zip(self.agents, returns, step_w, strict=True)]

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None) -> list[tuple[np.ndarray, Crit]]:
        return [a.fvp(v, critic, phi) for a in self.agents]

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        return [a.surrogate_kl(theta, critic, phi) for a in self.agents]

    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, float]]:
        return [a.value_round(theta, phi) for a in self.agents]

    # ---- the nodes: bind here (127.0.0.1, or this node's address in cluster mode), report the endpoints
    def ring_open(self, cluster: bool = False, curve: dict[int, NodeKeys] | None = None) -> dict[int, str]:
        """Bind the actor's nodes (:func:`node_ids`); with ``curve`` (their keys of the run, by node id) they are
        CURVE nodes: only the run's keys connect, and each connection's frames must carry the id of its key.
        Returns ``{node id: endpoint}``."""
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        curve = curve or {}
        ids = node_ids(self.ids, self.spec)
        self.node = RingNode(ids[0], host, log=self.capture, curve=curve.get(ids[0]))
        if len(ids) > 1:
            self.out = RingNode(ids[1], host, log=self.capture, curve=curve.get(ids[1]))
        return {n.node_id: n.endpoint for n in self._nodes()}

    def _nodes(self) -> list[RingNode]:
        return [n for n in (self.node, self.out) if n is not None]

    def ring_connect(self, endpoints: dict[int, str]) -> None:
        if self.node is None:
            raise RuntimeError(f"BS {self.bs_id}: ring_connect before ring_open")
        for n in self._nodes():
            n.connect(endpoints)

    # ---- the FVP phase over the node (one Ray call per iteration instead of one per product)
    def serve(self, iteration: int, timeout_ms: int = 60_000) -> None:
        """Answer the coordinator over the node until the first line-search candidate: FVP_REQUEST
        {"v"} -> FVP {"fvp": [k, n] one share per hosted BS}; PARAMETERS {"theta"} -> METRICS {"surrogate",
        "kl": k values}, which ends the call. A PARAMETERS {"phi"} just before either is a critic round riding on
        it: its GRADIENT {"c": [k, n_phi], "loss": k values} follows the answer. The coordinator logs these
        messages per BS as it logs the ones Ray calls carry (this node's rows of them are dropped, so that none
        is logged twice)."""
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
                    out = self.fvp(pay["v"], crit, phi)
                    self._answer(Kind.FVP, {"fvp": np.stack([x for x, _ in out])}, [c for _, c in out], iteration)
                    phi, crit = None, False
                    deadline = time.monotonic() + timeout_ms / 1e3
                elif env.kind == Kind.PARAMETERS and isinstance(pay.get("theta"), np.ndarray):
                    out = self.surrogate_kl(pay["theta"], crit, phi)
                    self._answer(Kind.METRICS, {"surrogate": [float(s) for (s, _), _ in out],
                                                "kl": [float(k) for (_, k), _ in out]}, [c for _, c in out], iteration)
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

    def _answer(self, kind: Kind, payload: dict, crits: list[Crit], iteration: int) -> None:
        """The answer to the coordinator, and (if a critic round rode on the request) every hosted BS's critic
        share in one GRADIENT."""
        node, b = self.node, self.bs_id
        node.send(COORD_NODE, Envelope(kind, b, COORD_NODE, iteration, 0, payload))
        self.served[0] += 1
        if crits and crits[0] is not None:
            c = {"c": np.stack([c for c, _ in crits]), "loss": [float(lv) for _, lv in crits]}
            node.send(COORD_NODE, Envelope(Kind.GRADIENT, b, COORD_NODE, iteration, 0, c))
            self.served[0] += 1

    def round_robin(self, position: np.ndarray, M: int, B: int, L: int, iteration: int, run_id: str = "",
                    timeout_ms: int = 60_000, csi: Sequence[np.ndarray] | None = None, lost: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, list[Row]]:
        """(Load ``csi`` if given, one per hosted BS, then) B passes of the token around the ring b -> b+1; BS 0
        starts from zero power. ``position`` [M, k]: each hosted BS's step in every slot's order; ``lost`` [M, k]:
        its slots whose predecessor's vector is lost. The token comes from the previous actor over :attr:`node`,
        moves in memory from each hosted BS to the next, and leaves for the next actor over :attr:`out` (with
        every BS in this actor, it never leaves). Returns (the final token's powers if the last BS of the ring is
        here, else None; the rows of what this actor sent and received)."""
        if self.node is None:
            raise RuntimeError(f"BS {self.bs_id}: ring not opened")
        if csi is not None:
            self.load(csi)
        ids, alone, rows = self.ids, len(self.ids) == B, []
        last = len(ids) - 1
        p = decided = inr = None    # inr: the running interference (trpo.rr_message=interference), else None
        for n in range(B):
            for j, (b, agent) in enumerate(zip(ids, self.agents, strict=True)):
                if b == 0 and n == 0:
                    p, decided = np.zeros((M, L)), np.zeros((M, B), dtype=bool)
                    inr = np.zeros((M, L)) if self.spec.interference else None
                elif j == 0 and not alone:
                    p, decided, inr = self._token(n, M, B, L, iteration, timeout_ms)
                # else: the token as the previous BS of this actor (with every BS here: BS B-1) left it
                agent.rr_pass(p, decided, position[:, j], n, None if lost is None else lost[:, j], inr)
                if b == B - 1 and n == B - 1:
                    return p, self.capture.take() + rows
                to = (b + 1) % B
                if j == last and not alone:
                    (self.out or self.node).send(to, Envelope(Kind.POWER_VECTOR, b, to, iteration, 0,
                                                              token_payload(p, decided, inr), run_id))
                else:
                    memory_hop(rows, self.next_seq, b, to, iteration, token_payload(p, decided, inr), run_id)
        return None, self.capture.take() + rows

    def _token(self, n: int, M: int, B: int, L: int, iteration: int, timeout_ms: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The predecessor's token of pass ``n`` on :attr:`node` (powers [M, L] float64, flags [M, B], and with
        trpo.rr_message=interference the running interference [M, L] float64, else None); anything else is
        counted and dropped."""
        node, b = self.node, self.bs_id
        deadline = time.monotonic() + timeout_ms / 1e3
        while True:
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
                      and isinstance(tok.get("decided"), np.ndarray) and tok["decided"].shape == (M, B)
                      and (not self.spec.interference
                           or isinstance(tok.get("inr"), np.ndarray) and tok["inr"].shape == (M, L))):
                self._drop(env, "MalformedPayload")
            else:
                inr = tok["inr"].astype(np.float64) if self.spec.interference else None
                return tok["p"].astype(np.float64), tok["decided"].astype(bool), inr

    def ring_stats(self) -> dict[str, int]:
        """This actor's nodes' own counters of the ring (frames sent, messages received, frames rejected; the
        FVP phase's frames to and from the coordinator are not counted, nor the hops in memory)."""
        nodes = self._nodes()
        if not nodes:
            return {}
        return {"sent": sum(n.stats.sent for n in nodes) - self.served[0],
                "received": sum(n.stats.received for n in nodes) - self.served[1],
                "rejected": sum(sum(n.stats.rejected.values()) for n in nodes)}

    def rejected(self) -> dict[str, int]:
        """The frames this actor's nodes counted and dropped, by class."""
        out: dict[str, int] = {}
        for n in self._nodes():
            for k, v in n.stats.rejected.items():
                out[k] = out.get(k, 0) + v
        return out

    def close(self) -> None:
        for n in self._nodes():
            n.close()
        self.node = self.out = None


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
        self._realtime()        # before the sockets
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        models = {(snd, s.node_id): m for snd, m in s.inbound.items()}
        emulator = None if all(m == LinkModel() for m in models.values()) else \
            LinkEmulator(models, s.seed, s.clock)
        self.node = RingNode(s.node_id, host, log=self.capture, emulator=emulator, extra_senders=[COORD_NODE],
                             curve=curve, io_priority=s.priority)   # its I/O threads at the loop's priority
        self.port = airport.LinkPort(host, io_priority=s.priority)
        return self.node.endpoint, self.port.endpoint

    def _realtime(self) -> None:
        """This thread under SCHED_FIFO at the setup's priority (run.priority; nothing at 0)."""
        try:
            enter_realtime(self.setup.priority)
        except PermissionError as exc:
            raise RuntimeError(f"run.priority={self.setup.priority}: node {self.setup.node_id} on "
                               f"{ray.util.get_node_ip_address()} may not use SCHED_FIFO ({exc.strerror}); it needs "
                               "root or CAP_SYS_NICE there; expected run.priority=0") from None

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
        self._realtime()        # (the same thread as open's in a Ray actor; set again in case it is not)
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
                "sched": current_policy(), "io_sched": io_policy(),
                "stats": {"sent": st.sent, "received": st.received, "dropped_injected": st.dropped_injected,
                          "rejected": sum(st.rejected.values()), "gaps": st.gaps}}

    def close(self) -> None:
        for x in (self.node, self.port):
            if x is not None:
                x.close()
        self.node = self.port = None
