"""The execution phase at one node (paper 1 Secs. III-C, IV-C/D): what a base station, or the central unit,
does in every slot of a deployed network, on the wall clock, over its :class:`protocol.RingNode`.

Per slot, the air (the coordinator) hands each BS its local CSI (its own downlink gains to every user,
time-stamped) with the slot's round-robin order and deadline; then, by scheme:

* centralized (and the classical solvers): each BS uploads its CSI to the central unit (CSI_UPLOAD,
  K·B values), which decides all L powers (the policy, or WMMSE / FP / the optimum) and sends each BS its K
  powers (POWER_ASSIGNMENT);
* round-robin: in the slot's order each BS decides on its CSI plus the powers decided so far and sends its
  power vector to the next (POWER_VECTOR: L fractions and B flags; B - 1 hops);
* fully decentralized (and ``cell_optimum``): every BS decides on its own CSI; no message.

Deadlines and fallbacks (real clock). A slot ends ``slot_ms`` after it starts; a node waiting for an input
gives up ``decision_margin_us`` before the end and decides on what it has:

* ``fallback = "last"``: a round-robin BS uses the last power vector it received (an earlier slot's), the
  central unit the last CSI it received from a BS whose upload is missing (the mean gain if none ever came);
* ``fallback = "undecided"``: a round-robin BS treats its predecessors as undecided (zero power, flag 0:
  the first BS's state), the central unit a missing BS's gains as the mean gain;
* a BS of the centralized scheme whose assignment does not come keeps its previous powers (either mode;
  full power before its first).

A decision taken after the slot's end misses it (the air then keeps the BS's previous powers, full power
before its first decision: the uncoordinated default). A message of
an earlier slot that arrives is late: counted and dropped. On the logical clock (``clock = "logical"``) there
are no deadlines: every node waits until its input arrives or its link emulator drops it (the coordinator
runs the slots in lockstep).

Warm-up (round-robin). The BS second in a slot's order runs its policy once on its CSI while the first decides, and
encodes a vector (sends nothing), so that its weights and its send path's code are in its core's cache when the
vector comes. The others do not: where there are fewer cores
than BSs their warm-ups at the slot's start took cores from the first BS's decision, and theirs (one hop and one
decision later at least) measured no faster for it. 3 cells on 2 cores, SCHED_FIFO, 2000 slots, four interleaved
pairs: worst per-BS decision p50 49-50 µs and slot p50 376-394 µs warming the second only, against 50-53 and
410-430 µs warming every later BS. Encoding a vector in the warm-up too (three interleaved pairs each): 39-41
against 47-48 µs polling under SCHED_FIFO, 47-57 against 52-61 µs blocking (the second BS's own p50: 38 against
45-46 µs polling).

Every node records per slot: when its inputs were available (CSI received; the predecessor's vector or the
last upload received), when its powers were sent (or, for a centralized BS, received), its decision, and
what fell back. Times are this process's ``time.monotonic_ns()``; the coordinator corrects them by the
measured clock offset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic_ns as now_ns

import numpy as np

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.lean import LeanPolicy, SlotState, central_state
from bs_agent.trpo.state import GainNorm
from protocol import Envelope, Kind, RingNode, encode
from protocol.links import LinkModel
from radio.evaluation import classical_methods
from radio.optimum import own_cell
from radio.problem import Problem
from radio.wmmse import wmmse_one

CU_ID = 1 << 15
"""Node id of the central unit (BS ids are 0..B-1)."""

METHODS = ("wmmse", "fp", "optimum")
"""The classical solvers the central unit runs on the centralized message path."""
OWN_CELL_METHODS = ("cell_optimum",)
"""The rules every BS runs alone on its own CSI, with no message (fully decentralized): ``cell_optimum``, its
cell's certified optimum without inter-cell interference (:func:`radio.optimum.cell_optimum`)."""
FALLBACKS = ("last", "undecided")
WAITS = ("block", "spin")
"""How a node waits for an input (real clock): ``block`` in the socket until the frame wakes it (the core idles
meanwhile), or ``spin``: poll without sleeping, yielding the core to any other runnable thread at every poll
(``os.sched_yield``), as a deployed BS with a core of its own would (its caches stay warm and no wake-up
latency is paid when the input comes). Under a real-time priority (``run.priority``) a yield hands the core only
to the real-time threads of that priority (the other nodes, the sockets' I/O threads, the air), so a real-time node
spins for at most :data:`RT_SPIN_CAP_NS` per wait and then blocks: time-shared processes (Ray's) lose a core to
it for no longer than that in a slot."""

RT_SPIN_CAP_NS = 500_000
"""The longest a real-time node polls for one input before it blocks in its socket (``run.wait=spin`` with
``run.priority``)."""

POLL_SLEEP_S = 50e-6
"""Sleep between polls in the last millisecond before a deadline."""

# fallback flags recorded per slot (bitmask)
MISSING_INPUT = 1       # an awaited message did not come in time (or was lost): fell back
HOLD = 2                # a centralized BS kept its previous powers (no assignment)


@dataclass(frozen=True)
class ExecSetup:
    """What one node of the execution phase needs, built by the coordinator.

    role        'bs' or 'cu' (the central unit)
    node_id     the BS index, or :data:`CU_ID`
    scheme      'centralized' | 'partial' | 'full' (the methods run on the centralized message path)
    spec        the trained policy's :class:`AgentSpec` (None for a classical method)
    theta       the trained policy's flat parameters (None for a method)
    method      None (the policy), one of :data:`METHODS` (central unit only) or :data:`OWN_CELL_METHODS` (a BS
                of the fully decentralized scheme)
    norm        the scenario's gain normalisation (the policy's input)
    B, K        cells and users per cell
    p_max_w, noise_w, bs_sum_power_w   the problem a central solver solves
    inbound     link models of the messages this node receives, by sender id
    clock       'real' (deadlines, fallbacks) | 'logical' (wait for every input or its loss)
    fallback    one of :data:`FALLBACKS`
    wait        one of :data:`WAITS`: block in the socket, or spin (real clock)
    priority    0, or the SCHED_FIFO priority of the node's loop and socket threads (:mod:`bs_agent.realtime`)
    decision_margin_ns   how long before a slot's end a waiting node gives up and decides
    seed        the run's root seed (the link emulator's streams)
    """

    role: str
    node_id: int
    scheme: str
    spec: AgentSpec | None
    theta: np.ndarray | None
    method: str | None
    norm: GainNorm
    B: int
    K: int
    p_max_w: float
    noise_w: float
    bs_sum_power_w: float | None = None
    inbound: dict[int, LinkModel] = field(default_factory=dict)
    clock: str = "real"
    fallback: str = "last"
    wait: str = "block"
    priority: int = 0
    decision_margin_ns: int = 100_000
    seed: int = 0

    @property
    def L(self) -> int:
        return self.B * self.K


class SlotRecords:
    """Per-slot records of one node (preallocated; times in ns of this process's clock)."""

    def __init__(self, n: int, width: int) -> None:
        self.t_csi = np.zeros(n, np.int64)        # CSI (or, at the central unit, the slot trigger) received
        self.t_in = np.zeros(n, np.int64)         # inputs available (or the deadline it gave up at)
        self.t_out = np.zeros(n, np.int64)        # powers sent (a centralized BS: its assignment received)
        self.flags = np.zeros(n, np.int64)        # MISSING_INPUT | HOLD
        self.frac = np.zeros((n, width), np.float32)   # its decision: power fractions (CU: all L)
        self.done = np.zeros(n, bool)
        self.late = 0                             # messages of finished slots that arrived (dropped)
        self.malformed = 0                        # awaited messages whose payload could not be used

    def as_dict(self) -> dict[str, np.ndarray | int]:
        return {"t_csi": self.t_csi, "t_in": self.t_in, "t_out": self.t_out, "flags": self.flags,
                "frac": self.frac, "done": self.done, "late": self.late, "malformed": self.malformed}


class _Inbox:
    """The node's messages of the current slot: awaited ones are taken, those of later slots kept, those of
    finished slots counted late and dropped."""

    def __init__(self, node: RingNode, rec: SlotRecords, logical: bool,
                 shapes: dict[int, dict[str, int]] | None = None, spin: bool = False,
                 checks: dict[int, Callable[[Envelope], bool]] | None = None, spin_cap_ns: int | None = None) -> None:
        self.node, self.rec, self.logical, self.spin = node, rec, logical, spin
        self.spin_cap_ns = spin_cap_ns            # spin: poll at most this long per wait, then block (None: no cap)
        self.shapes = shapes or {}                                    # kind -> {field: length} of a usable payload
        self.checks = checks or {}                # kind -> whether an awaited message is usable (else: by shape)
        self.pending: dict[tuple[int, int, int], Envelope] = {}    # (kind, slot, sender) -> message

    def take(self, kind: int, slot: int, senders: set[int], deadline_ns: int) -> dict[int, tuple[Envelope, int]]:
        """Wait until a ``kind`` message of ``slot`` has come from every sender in ``senders``, or (real clock)
        until ``deadline_ns``, or (logical clock) until the node's emulator dropped as many as are missing.
        Returns {sender: (message, arrival time ns)}."""
        got: dict[int, tuple[Envelope, int]] = {}
        for key in [k for k in self.pending if k[1] < slot]:      # held for a slot now over: late after all
            del self.pending[key]
            self.rec.late += 1
        for s in list(senders):
            env = self.pending.pop((kind, slot, s), None)
            if env is not None:                   # it came early: held, now checked like one arriving now
                t = now_ns()
                if self._usable(kind, env):
                    got[s] = (env, t)
                else:
                    self.rec.malformed += 1
        node = self.node
        dropped0 = node.stats.dropped_injected
        spin_until = deadline_ns if self.spin_cap_ns is None else now_ns() + self.spin_cap_ns
        while len(got) < len(senders):
            if self.logical:
                if len(got) + node.stats.dropped_injected - dropped0 >= len(senders):
                    break
                env = node.recv(timeout_ms=1000)
            else:
                t = now_ns()
                left = deadline_ns - t
                if left <= 0:
                    break
                if self.spin and t < spin_until:  # poll; give the core to anyone runnable, else poll again
                    env = node.recv(timeout_ms=0)
                    if env is None:
                        os.sched_yield()
                        continue
                else:   # whole milliseconds block in the socket (woken by a frame); the last one polls and sleeps
                    env = node.recv(timeout_ms=left // 1_000_000) if left >= 1_000_000 else self._poll(deadline_ns)
            if env is None:
                continue
            t = now_ns()
            if env.kind == kind and env.iteration == slot and env.sender in senders and env.sender not in got:
                if not self._usable(kind, env):
                    self.rec.malformed += 1         # the awaited message, unusable: as if it had not come
                    continue
                got[env.sender] = (env, t)
            elif env.iteration < slot or (env.iteration == slot and env.kind == kind):
                self.rec.late += 1          # a message of a finished slot (or a duplicate): too late
            else:
                self.pending[(int(env.kind), env.iteration, env.sender)] = env
        return got

    def _usable(self, kind: int, env: Envelope) -> bool:
        check = self.checks.get(kind)
        return check(env) if check is not None else _payload_ok(env, self.shapes.get(kind, {}))

    def _poll(self, deadline_ns: int) -> Envelope | None:
        """The last millisecond before a deadline (a socket's timeout is in whole ms): poll, sleeping ~50 µs
        between polls so as not to take a core from the other nodes."""
        while now_ns() < deadline_ns:
            env = self.node.recv(timeout_ms=0)
            if env is not None:
                return env
            time.sleep(POLL_SLEEP_S)
        return None


class ExecNode:
    """One BS or the central unit, deciding slot by slot (see the module docstring)."""

    def __init__(self, setup: ExecSetup, node: RingNode, n_slots: int) -> None:
        self.s = setup
        self.node = node
        self.logical = setup.clock == "logical"
        width = setup.L if setup.role == "cu" else setup.K
        self.rec = SlotRecords(n_slots, width)
        L, B, K = setup.L, setup.B, setup.K
        # rr_message='interference': the round-robin vector carries the running interference "inr" too
        self.inr = np.zeros(L, np.float32) if setup.spec is not None and setup.spec.interference else None
        self.shapes = {
            int(Kind.POWER_VECTOR): {"p": L, "decided": B, **({} if self.inr is None else {"inr": L})},
            int(Kind.CSI_UPLOAD): {"gains": L},
            int(Kind.POWER_ASSIGNMENT): {"p": K}}
        rr = setup.role == "bs" and setup.scheme == "partial"
        self.inbox = _Inbox(node, self.rec, self.logical, self.shapes, spin=setup.wait == "spin",
                            checks={int(Kind.POWER_VECTOR): self._vector_ok} if rr else None,
                            spin_cap_ns=RT_SPIN_CAP_NS if setup.priority > 0 else None)
        self.policy = LeanPolicy(setup.spec, setup.theta) if setup.theta is not None else None
        if setup.role == "bs" and setup.scheme != "centralized" and setup.method is None:
            self.state = SlotState(setup.spec, setup.node_id, setup.norm)
        L, B = setup.L, setup.B
        self.last_token: tuple | None = None   # round-robin: last vector received (p, decided, inr or None)
        self.last_p, self.last_d = np.zeros(L, np.float32), np.zeros(B, np.float32)   # ... as the C path keeps it
        self.taken = False                     # the awaited vector was taken into the state by the compiled path
        self.last_csi: dict[int, np.ndarray] = {}                       # central unit: last upload per BS
        self.mean_gain = float(10.0 ** (setup.norm.mean_db / 10.0))
        self.p = np.zeros(L, np.float32)
        self.decided = np.zeros(B, np.float32)

    def finish(self, wait_ms: int) -> None:
        """End of the run: read what is still coming (until ``wait_ms`` passes without a message), so that every
        message sent is logged as received (late) or dropped."""
        self.rec.late += len(self.inbox.pending)
        self.inbox.pending.clear()
        while self.node.recv(timeout_ms=wait_ms) is not None:
            self.rec.late += 1

    # ---------------------------------------------------------------- one slot
    def on_slot(self, slot: int, order: np.ndarray, t_start_ns: int, t_end_ns: int, csi: np.ndarray) -> None:
        """Handle slot ``slot`` (times on this process's clock): ``order`` [B] the BSs in decision order,
        ``csi`` [L] this BS's linear gains to every user (empty at the central unit)."""
        rec, t = self.rec, now_ns()
        rec.t_csi[slot] = t
        if self.logical:
            self.node.set_tick(slot)          # release this slot's messages held by the emulator
        wait_until = t_end_ns - self.s.decision_margin_ns
        if self.s.role == "cu":
            self._central_unit(slot, wait_until)
        elif self.s.scheme == "centralized":
            self._upload_and_wait(slot, csi, t_end_ns)
        elif self.s.scheme == "partial":
            self._round_robin(slot, order, csi, wait_until)
        else:
            self._decide_alone(slot, csi)
        rec.done[slot] = True

    def _decide_alone(self, slot: int, csi: np.ndarray) -> None:
        """Fully decentralized: decide on the local CSI alone (the policy, or the own-cell rule)."""
        rec = self.rec
        rec.t_in[slot] = rec.t_csi[slot]
        if self.s.method is not None:
            rec.frac[slot] = self._own_cell(csi)
        else:
            self.state.set_csi(csi)
            rec.frac[slot] = self.policy(self.state.state)
        rec.t_out[slot] = now_ns()

    def _own_cell(self, csi: np.ndarray) -> np.ndarray:
        """``cell_optimum`` at BS b: its cell's certified optimum from its gains to its own K users."""
        s, b, K = self.s, self.s.node_id, self.s.K
        own = np.asarray(csi, np.float64)[b * K:(b + 1) * K]
        p, _ = own_cell(np.repeat(own[:, None], K, axis=1), s.noise_w, np.full(K, s.p_max_w), s.bs_sum_power_w)
        return (p / s.p_max_w).astype(np.float32)

    def _round_robin(self, slot: int, order: np.ndarray, csi: np.ndarray, wait_until: int) -> None:
        """Round-robin: wait for the predecessor's vector (unless first), decide, pass the vector on."""
        s, rec, b, K = self.s, self.rec, self.s.node_id, self.s.K
        self.state.set_csi(csi)
        pos = order.tolist().index(b)
        p, decided, inr = self.p, self.decided, self.inr
        taken = self.taken = False
        if pos == 0:
            p[:] = 0.0
            decided[:] = 0.0
            if inr is not None:
                inr[:] = 0.0
            rec.t_in[slot] = rec.t_csi[slot]
        else:
            prev = int(order[pos - 1])
            if pos == 1:                      # while the first decides (see Warm-up in the module docstring)
                self._warm_up(slot, order, pos)
            got = self.inbox.take(Kind.POWER_VECTOR, slot, {prev}, wait_until)
            taken = prev in got and self.taken
            if taken:                         # p, decided and the state already set (SlotState.take_token)
                rec.t_in[slot] = got[prev][1]
                self.last_token = (self.last_p, self.last_d, None)
            elif prev in got:
                env, rec.t_in[slot] = got[prev]
                p[:] = env.payload["p"]
                decided[:] = env.payload["decided"]
                if inr is not None:
                    inr[:] = env.payload["inr"]
                self.last_token = (p.copy(), decided.copy(), None if inr is None else inr.copy())
            else:
                rec.flags[slot] |= MISSING_INPUT
                rec.t_in[slot] = now_ns()
                if s.fallback == "last" and self.last_token is not None:
                    p[:], decided[:] = self.last_token[:2]
                    decided[b] = 0.0
                    if inr is not None:
                        inr[:] = self.last_token[2]
                else:
                    p[:] = 0.0
                    decided[:] = 0.0
                    if inr is not None:
                        inr[:] = 0.0
                p[b * K:(b + 1) * K] = 0.0            # it has not decided in this slot yet
        if not taken:
            self.state.set_powers(p, decided, inr)
        frac = self.policy(self.state.state)
        rec.frac[slot] = frac
        if pos + 1 < len(order):
            p[b * K:(b + 1) * K] = frac
            decided[b] = 1.0
            if inr is not None:
                inr[:] = inr + self.state.added_inr(frac)
            nxt = int(order[pos + 1])
            self.node.send(nxt, self._vector(slot, nxt))
        rec.t_out[slot] = now_ns()

    def _vector(self, slot: int, to: int) -> Envelope:
        """The round-robin message of this slot to ``to``: the powers and flags so far (and the running
        interference with rr_message='interference')."""
        vector = {"p": self.p, "decided": self.decided.astype(np.int64)}
        if self.inr is not None:
            vector["inr"] = self.inr
        return Envelope(Kind.POWER_VECTOR, self.s.node_id, to, slot, 0, vector)

    def _warm_up(self, slot: int, order: np.ndarray, pos: int) -> None:
        """Run the policy on the CSI and encode a vector (of the buffers as they are; nothing is sent), so that the
        weights and the send path's code are in the cache when the predecessor's vector comes."""
        self.policy(self.state.state)
        if pos + 1 < len(order):
            encode(self._vector(slot, int(order[pos + 1])))

    def _vector_ok(self, env: Envelope) -> bool:
        """Whether the awaited round-robin vector is usable; the compiled path (SlotState.take_token) also
        takes it into p, decided and the state in the same pass (``self.taken``)."""
        pay = env.payload
        self.taken = self.state.take_token(pay.get("p"), pay.get("decided"), self.p, self.decided, self.last_p,
                                           self.last_d)
        return self.taken or _payload_ok(env, self.shapes[int(Kind.POWER_VECTOR)])

    def _upload_and_wait(self, slot: int, csi: np.ndarray, t_end_ns: int) -> None:
        """A BS of the centralized scheme: upload the CSI, wait for the assignment (until the slot's end)."""
        rec, b = self.rec, self.s.node_id
        self.node.send(CU_ID, Envelope(Kind.CSI_UPLOAD, b, CU_ID, slot, 0, {"gains": csi.astype(np.float32)}))
        rec.t_in[slot] = now_ns()                        # its part of the decision: the upload is out
        got = self.inbox.take(Kind.POWER_ASSIGNMENT, slot, {CU_ID}, t_end_ns)
        if CU_ID in got:
            env, rec.t_out[slot] = got[CU_ID]
            rec.frac[slot] = env.payload["p"]
        else:
            rec.flags[slot] |= MISSING_INPUT | HOLD
            rec.t_out[slot] = now_ns()
            rec.frac[slot] = rec.frac[slot - 1] if slot > 0 else 1.0     # full power before any assignment

    def _central_unit(self, slot: int, wait_until: int) -> None:
        """Gather every BS's upload (or fall back), decide all L powers, assign each BS its K."""
        s, rec, B, K = self.s, self.rec, self.s.B, self.s.K
        got = self.inbox.take(Kind.CSI_UPLOAD, slot, set(range(B)), wait_until)
        user_bs = np.empty((s.L, B))
        for b in range(B):
            if b in got:
                user_bs[:, b] = got[b][0].payload["gains"]
                self.last_csi[b] = user_bs[:, b].copy()
            else:
                rec.flags[slot] |= MISSING_INPUT
                last = self.last_csi.get(b) if s.fallback == "last" else None
                user_bs[:, b] = last if last is not None else self.mean_gain
        rec.t_in[slot] = max((t for _, t in got.values()), default=now_ns()) if len(got) == B else now_ns()
        frac = self._decide_all(user_bs)
        rec.frac[slot] = frac
        for b in range(B):
            self.node.send(b, Envelope(Kind.POWER_ASSIGNMENT, CU_ID, b, slot, 0,
                                       {"p": frac[b * K:(b + 1) * K]}))
        rec.t_out[slot] = now_ns()

    def _decide_all(self, user_bs: np.ndarray) -> np.ndarray:
        """All L power fractions from the network's gains [L, B]: the centralized policy, or a solver."""
        s = self.s
        if s.method is None:
            return self.policy(central_state(s.norm, user_bs))
        G = user_bs[:, np.repeat(np.arange(s.B), s.K)]            # [L, L], the convention of radio
        if s.method == "wmmse":                                    # one realization: the solver's fast path
            p = wmmse_one(G, s.noise_w, s.p_max_w, users_per_cell=s.K, bs_sum_power_w=s.bs_sum_power_w)
        else:
            p = solve(s.method, Problem(G, s.noise_w, np.full(s.L, s.p_max_w), 1.0, s.B, s.K, s.bs_sum_power_w))[0]
        return (p / s.p_max_w).astype(np.float32)


def _payload_ok(env: Envelope, shape: dict[str, int]) -> bool:
    """Whether ``env`` carries every field of ``shape`` as a finite numeric array of its length."""
    pay = env.payload
    for name, n in shape.items():
        x = pay.get(name)
        if not isinstance(x, np.ndarray) or x.shape != (n,) or x.dtype.kind not in "fiub" or \
                not np.isfinite(x).all():
            return False
    return True


def solve(method: str, problem: Problem) -> np.ndarray:
    """Powers [n, L] W of a classical method (the central unit's solver, or every BS's own-cell rule side by
    side): :func:`radio.evaluation.classical_methods`' own, as `bsemu evaluate` runs them."""
    if method not in METHODS + OWN_CELL_METHODS:
        raise ValueError(f"method: expected one of {METHODS + OWN_CELL_METHODS}, got {method!r}")
    return _CLASSICAL[method](problem)


_CLASSICAL = classical_methods(None)  # type: ignore[arg-type]
"""No generator: 'random', the one method that draws, is not among those solve runs."""


__all__ = ["CU_ID", "METHODS", "OWN_CELL_METHODS", "FALLBACKS", "WAITS", "RT_SPIN_CAP_NS", "MISSING_INPUT", "HOLD",
           "ExecSetup", "ExecNode", "SlotRecords", "solve"]
