"""Ray backend of Algorithm 1: links as Ray actors, d exchanged between the links over ZeroMQ.

Each link is a :class:`LinkHost` inside a Ray actor (:class:`ZOLinkActor`; one link per actor by
default, ``links_per_actor`` > 1 packs several, each with its own policy and its own node). A host
builds its own :class:`bs_agent.zo_agent.ZOLinkAgent` (from the config and its index: no agent is
pickled) and owns a :class:`protocol.RingNode`: one inbound PULL socket and one PUSH socket per
graph neighbour; it sends d (and, in graph mode, its relays) to each neighbour. Links of one actor
share a ZeroMQ context and reach each other over ``inproc://`` (:meth:`RingNode.bind_inproc`): the
same frames, decoding and log rows, without TCP or waking an I/O thread per link; links of other
actors over TCP.

Why the ring node rather than :class:`protocol.BroadcastNode`: the communication graph is an
arbitrary neighbour list and a broadcast on it is a send to each neighbour anyway (every
neighbour needs its copy; |N_i| = 2 in the paper's graph runs); PUSH never drops and queues until
the peer is up, so the start barrier (:func:`protocol.ring_barrier`) is one HELLO per link, not
repeated HELLO/READY rounds; and sequence numbers are per link (seq 0 is the HELLO, d^k is
seq k + 1), so the bytes of a logical-time run are deterministic and the in-process backend logs
exactly the same bytes as the wire. The price, one encode per neighbour, is a few microseconds.

The air port (:mod:`coordinator.zo_ray_air`). The coordinator holds the air; at the end of link
i's iteration it must hand the link its rates and get (theta, theta + mu u) back. That used to be
one Ray call per link per iteration (~1 ms each on 2 cores: most of the ray backend's cost). Now
each actor runs ONE long Ray call, :meth:`ZOLinkActor.serve`, a loop over its air port: a ZeroMQ
PULL socket on which the coordinator pushes the rates as raw float64 frames; the reply (next
schedule [2, n] float64, the link's message-log rows [rows, 11] int64, its diagnostics) goes back
on a PUSH socket to the coordinator's PULL. No pickling, bit-exact float64, no Ray call per
iteration. The loop stops on a STOP frame (before checkpoints, drains and shutdown, which stay
plain Ray calls). This air traffic is the emulator standing in for the physical channel (a real
link measures its own rate over the air and its transmitter applies its own policy), not a message
of Algorithm 1: it is not put in the message log and not counted in the exchange, exactly as
the in-process backend and the FL / Adam baselines do not log their air, so the d bytes per
iteration still compare like for like. Its frames and bytes are counted apart (``air_stats``).

Clocks:
* logical: on a STEP frame the link forms d, sends it, then receives until it holds every message
  its neighbours sent up to this logical slot (their schedules are known); the seeded
  receiver-side emulator (ZO's own ``LinkEmulator.decide`` on the payload's send slot — the node's
  emulator would key on the envelope iteration) gives each message its delay/drop, and the link
  updates — the same numbers as the in-process backend. Links of one actor that end at the same
  slot all send before any of them receives.
* real: a receiver thread per link owns the node's receiving side and reads the socket all the
  time, so a frame's delay counts from its arrival; the node's real-clock emulator holds it in
  its deadline queue and releases it into an inbox when due; on a STEP_REAL frame the link updates
  at once with whatever is in the inbox (eq. (8) by arrival time); see
  :mod:`coordinator.zo_realtime`. Sends stay on the actor's thread (other sockets; the row log is
  locked).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import ray
import zmq

from bs_agent.zo_agent import utility
from coordinator import zo_config as zc
from coordinator import zo_ray_air as air
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
ROW_FIELDS = air.ROW_FIELDS   # event kind sender receiver iteration seq nbytes t_send t_recv delay_ns delay_slots
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


class LinkHost:
    """Link i inside an actor: its agent, its ring node and (logical clock) its receiver-side
    link emulator. Plain object; the actor calls it."""

    def __init__(self, cfg: ZOConfig, index: int, offsets: list[int], context: zmq.Context | None = None) -> None:
        self.agent = make_agent(cfg, index)
        self.index = index
        self.offsets = offsets
        self.B = cfg.algo.b1 + cfg.algo.b2
        self.graph = cfg.algo.update == "graph"
        self.real = cfg.run.clock == "real"
        self.log = RowLog(hold=not self.real)
        clock = "real" if self.real else "logical"
        emulator = LinkEmulator(link_models(cfg), cfg.run.seed, clock)
        self.emulator = None if self.real else emulator            # logical: decided here, on the send slot
        self.node = RingNode(index, log=self.log, emulator=emulator if self.real else None, context=context)
        self.inproc = self.node.bind_inproc() if context is not None else ""
        self.last_iter = {j: -1 for j in self.agent.neighbours}    # highest iteration received from j
        self.late = 0                                              # real clock: d_j^T arrived after update T
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
            if msg is not None:
                self.inbox.append(msg)

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
        while st.received + st.dropped_injected < expected and time.monotonic() < t_end:
            time.sleep(0.001)
        self.absorb()
        return max(0, expected - st.received - st.dropped_injected)

    def state(self) -> dict[str, Any]:
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

    def stat_vector(self) -> np.ndarray:
        s = self.stats()
        return np.array([s[k] for k in STAT_KEYS], dtype=np.float64)

    def close(self) -> None:
        self.stop.set()
        if self.receiver is not None:
            self.receiver.join(timeout=5.0)
        self.node.close()


@ray.remote(num_cpus=0, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
class ZOLinkActor:
    """One or more links (:class:`LinkHost`, each with its own agent and node) and one air port."""

    def __init__(self, cfg: ZOConfig, indices: list[int], offsets: list[int]) -> None:
        # co-hosted links share one context (one I/O thread, not one per link) and reach each other
        # over inproc: the same frames, log rows and d bytes, without TCP and thread wake-ups
        self.ctx = zmq.Context() if len(indices) > 1 else None
        self.links = {i: LinkHost(cfg, i, offsets, self.ctx) for i in indices}
        self.real = cfg.run.clock == "real"
        self.port = air.LinkPort()

    def endpoints(self) -> tuple[dict[int, str], str]:
        """Each link's ring endpoint, and the actor's air port."""
        return {i: h.node.endpoint for i, h in self.links.items()}, self.port.endpoint

    def connect(self, endpoints: dict[int, str], coordinator: str) -> np.ndarray:
        """Connect every link to its neighbours and pass the start barrier (co-hosted links each in a
        thread: a link's barrier waits for the others' HELLOs); connect the air port's replies to
        the coordinator. Returns the barrier's log rows."""
        hosts = list(self.links.values())
        local = {h.index: h.inproc for h in hosts if h.inproc}
        for h in hosts:
            h.connect(endpoints, local)
        if len(hosts) == 1:
            ring_barrier(hosts[0].node)
        else:
            errors: list[BaseException] = []

            def run(h: LinkHost) -> None:
                try:
                    ring_barrier(h.node)
                except BaseException as exc:   # re-raised below, on the actor's thread
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(h,)) for h in hosts]
            for th in threads:
                th.start()
            for th in threads:
                th.join()                       # the join hands the sockets back to this thread
            if errors:
                raise errors[0]
        self.port.connect(coordinator)
        if self.real:
            for h in hosts:
                h.start_receiver()
        return np.concatenate([h.log.take() for h in hosts])

    def schedules(self) -> dict[int, np.ndarray]:
        return {i: h.schedule() for i, h in self.links.items()}

    def serve(self) -> int:
        """The air port's loop (one Ray call for many iterations): STEP / STEP_REAL frames in,
        one reply per link out; SETTLE; returns on STOP (the frames it served)."""
        port, served = self.port, 0
        while True:
            op, t, idx, payload = port.recv()
            served += 1
            try:
                if op == air.STOP:
                    return served
                if op == air.SETTLE:
                    k = payload.astype(np.int64)
                    rows = []
                    for h in self.links.values():
                        h.receive_until({j: int(k[j]) - 1 for j in h.agent.neighbours})
                        rows.append(h.log.take())
                    port.reply_rows(np.concatenate(rows))
                    continue
                hosts = [self.links[int(i)] for i in idx]
                rates = payload.reshape(len(hosts), -1)
                n_scalars = [h.send_d(t, r) for h, r in zip(hosts, rates, strict=True)]   # every link sends first
                replies = []
                for h, n in zip(hosts, n_scalars, strict=True):
                    if op == air.STEP:
                        h.receive_until(h.expected(t))
                    sched = h.update(t)
                    replies.append((h.index, n, sched, h.log.take(), h.stat_vector()))
                port.reply_step(replies)
                for h in hosts:                 # off the critical path: the coordinator now runs the air
                    h.prefetch()
            except BaseException as exc:
                port.reply_error(exc)
                raise

    def state(self) -> dict[int, dict[str, Any]]:
        return {i: h.state() for i, h in self.links.items()}

    def load_state(self, states: dict[int, dict[str, Any]]) -> None:
        for i, h in self.links.items():
            h.load_state(states[i])

    def stats(self) -> dict[int, dict[str, float]]:
        return {i: h.stats() for i, h in self.links.items()}

    def drain(self, expected: dict[int, int], timeout_ms: int) -> tuple[np.ndarray, int]:
        """End of a real-clock run: each link waits until ``expected[i]`` d messages have been
        received or dropped (so the log adds up); returns the rows and how many are still missing."""
        t_end = time.monotonic() + timeout_ms / 1e3
        missing = sum(h.drain(expected[i], t_end) for i, h in self.links.items())
        return np.concatenate([h.log.take() for h in self.links.values()]), missing

    def close(self) -> None:
        for h in self.links.values():
            h.close()
        if self.ctx is not None:
            self.ctx.term()
        self.port.close()


class RayLinks:
    """:class:`coordinator.zo_train.LinksBackend` with the links as Ray actors (``links_per_actor``
    consecutive links per actor; default ``run.links_per_actor``, 1) and the air over ZeroMQ
    (:mod:`coordinator.zo_ray_air`)."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange, links_per_actor: int | None = None):
        if links_per_actor is None:
            links_per_actor = cfg.run.links_per_actor
        if links_per_actor < 1:
            raise zc.ZOConfigError(f"links_per_actor: expected >= 1, got {links_per_actor}")
        self.cfg = cfg
        self.log = log
        self.exchange = exchange
        N = cfg.scenario.n_links
        offsets = zc.offsets(cfg)
        self.groups = [list(range(a, min(a + links_per_actor, N))) for a in range(0, N, links_per_actor)]
        self.actor_of = {i: a for a, g in enumerate(self.groups) for i in g}
        self.actors = [ZOLinkActor.remote(cfg, g, offsets) for g in self.groups]
        self.hub = air.Hub()
        eps = ray.get([a.endpoints.remote() for a in self.actors])
        ring = {i: e for r, _ in eps for i, e in r.items()}
        self.hub.connect([p for _, p in eps])
        for rows in ray.get([a.connect.remote(ring, self.hub.endpoint) for a in self.actors]):
            self.record(rows, 0)
        self.serving: list[Any] = []               # the actors' serve() calls while the air port runs
        self.last_stats: dict[int, dict[str, float]] = {}

    # ---- the air port ----
    def _serve(self) -> None:
        if not self.serving:
            self.serving = [a.serve.remote() for a in self.actors]

    def _pause(self, timeout_s: float | None = None) -> None:
        """Stop the actors' serve loops (before any other Ray call to them)."""
        if self.serving:
            for a in range(len(self.actors)):
                self.hub.send(a, air.STOP)
            refs, self.serving = self.serving, []
            ray.get(refs, timeout=timeout_s)

    def _check(self) -> None:
        """While waiting on the air port: surface an actor that died or whose loop raised."""
        done, _ = ray.wait(self.serving, num_returns=1, timeout=0) if self.serving else ([], [])
        if done:
            ray.get(done)                          # raises the actor's error
            raise RuntimeError("a link actor left its serve loop unasked")

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
        self._pause()
        out: dict[int, np.ndarray] = {}
        for s in ray.get([a.schedules.remote() for a in self.actors]):
            out.update(s)
        return [(out[i][0], out[i][1]) for i in range(len(out))]

    def submit(self, links: list[int], t: int, rates: dict[int, np.ndarray], real: bool = False) -> None:
        """Hand the links ending their iteration at slot t their rates (one frame per actor)."""
        self._serve()
        by_actor: dict[int, list[int]] = {}
        for i in links:
            by_actor.setdefault(self.actor_of[i], []).append(i)
        for a, ix in by_actor.items():
            self.hub.send(a, air.STEP_REAL if real else air.STEP, t, ix, np.stack([rates[i] for i in ix]))

    def ready(self, timeout_s: float | None, n_min: int = 1) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Wait (up to ``timeout_s``; None: no limit) until ``n_min`` links have replied, take every
        reply that is in; record their rows (in link order) and return their schedules
        (theta, theta + mu u)."""
        got: dict[int, Any] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if len(got) >= n_min:
                wait_ms = 0
            elif deadline is None:
                wait_ms = air.POLL_MS
            else:
                wait_ms = min(air.POLL_MS, max(0, int((deadline - time.monotonic()) * 1e3)))
            reps = self.hub.recv(wait_ms)
            if reps is not None:
                got.update((rep[0], rep) for rep in reps)
                continue
            if len(got) >= n_min or (deadline is not None and time.monotonic() >= deadline):
                break
            self._check()
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in sorted(got):
            _, n_scalars, sched, rows, stats = got[i]
            self.record(rows, n_scalars)
            self.last_stats[i] = dict(zip(STAT_KEYS, stats.tolist(), strict=True))
            out[i] = (sched[0], sched[1])
        return out

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Logical clock: the links ending at slot t exchange d and update; their next schedules."""
        self.submit(links, t, rates)
        return self.ready(None, len(links))

    def settle(self, k: list[int]) -> None:
        """Receive and log every d message still in flight (logical clock), so that sent = received
        + dropped in the log, as in the in-process backend."""
        self._serve()
        for a in range(len(self.actors)):
            self.hub.send(a, air.SETTLE, 0, [], np.asarray(k, dtype=np.float64))
        for rows in self.hub.gather_rows(len(self.actors), self._check):
            self.record(rows, 0)

    def drain(self, expected: list[int], timeout_ms: int) -> int:
        """Real clock, end of a run: link i waits until ``expected[i]`` d messages were received or
        dropped (or ``timeout_ms``); their rows go to the log. Returns how many never came."""
        self._pause()
        missing = 0
        for rows, miss in ray.get([a.drain.remote({i: expected[i] for i in g}, timeout_ms)
                                   for a, g in zip(self.actors, self.groups, strict=True)]):
            self.record(rows, 0)
            missing += miss
        return missing

    def states(self) -> list[dict[str, Any]]:
        self._pause()
        out: dict[int, dict[str, Any]] = {}
        for s in ray.get([a.state.remote() for a in self.actors]):
            out.update(s)
        return [out[i] for i in range(len(out))]

    def load_states(self, states: list[dict[str, Any]]) -> None:
        self._pause()
        ray.get([a.load_state.remote({i: states[i] for i in g}) for a, g in zip(self.actors, self.groups, strict=True)])
        self.last_stats = {}

    def stats(self) -> list[dict[str, float]]:
        """Each link's diagnostics: from its last reply (no Ray call), else asked."""
        N = len(self.actor_of)
        if len(self.last_stats) < N:
            self._pause()
            for s in ray.get([a.stats.remote() for a in self.actors]):
                self.last_stats.update(s)
        return [self.last_stats[i] for i in range(N)]

    def air_stats(self) -> dict[str, int]:
        """Frames and bytes of the air port (coordinator <-> links; not in the message log)."""
        return self.hub.counts()

    def close(self) -> None:
        try:
            self._pause(timeout_s=10.0)      # an interrupted step may leave a link waiting for d: do not hang
            ray.get([a.close.remote() for a in self.actors], timeout=10.0)
        except ray.exceptions.GetTimeoutError:
            pass                             # the actors are killed below
        finally:
            for a in self.actors:
                ray.kill(a)
            self.actors = []
            self.hub.close()


__all__ = ["ZOLinkActor", "LinkHost", "RayLinks", "RowLog", "D_KINDS", "STAT_KEYS"]
