"""ZeroMQ nodes: what every transport shares (receive machinery, counters, binding, the ``Node`` protocol).

The transports are :class:`protocol.ring.RingNode` (point-to-point), :class:`protocol.broadcast.BroadcastNode`
(PUB/SUB) and :class:`protocol.airport.Hub` / :class:`protocol.airport.LinkPort` (the zeroth-order air
port: raw frames between the coordinator and the link actors). All implement :class:`Node`.

Both node types follow the same life cycle, inside the process that uses them (sockets are
neither thread-safe nor picklable: build the node inside the Ray actor)::

    node = RingNode(i)                      # binds 127.0.0.1:<random port>
    endpoints[i] = node.endpoint            # report "tcp://host:port" to the coordinator
    node.connect(endpoints)                 # learn every peer's endpoint from the coordinator
    ring_barrier(node)                      # optional for the ring; required for broadcast
    node.send(j, Envelope(Kind.POWER_VECTOR, i, j, it, 0, {"p": p}))
    env = node.recv(timeout_ms=1000)        # Envelope, or None on timeout
    node.close()

* :class:`RingNode`: one inbound PULL socket (bound), one PUSH socket per peer (connected), so any
  BS can send to any other (the round-robin order may change every batch). PUSH blocks, never
  drops, at the high-water mark; a send blocked for ``send_timeout_ms`` raises
  :class:`TransportError`. Sequence numbers are per link (sender → receiver).
* :class:`BroadcastNode`: one XPUB socket (bound) with ``XPUB_NODROP`` (a full subscriber queue
  blocks the publisher instead of dropping silently) and one SUB socket connected to the
  publishers of its graph neighbours (all peers if ``neighbours`` is ``None``; the graph is
  undirected). Sequence numbers are per publisher. A subscriber misses what was published
  before its connection completed: run :func:`protocol.broadcast_barrier` first.

The transport stamps ``sender``, ``receiver``, ``seq``, ``t_send_ns`` (and ``run_id`` if the node
has one) on every envelope it sends. Every frame received is decoded and validated; a bad frame is
counted in ``stats.rejected`` (by error class) and skipped — the receiving loop never crashes.
Gaps and inversions of sequence numbers are counted in ``stats.gaps`` / ``stats.reordered``.
A :class:`RingNode` answers clock pings (HEARTBEAT ``{"clock_ping": token}``) inside any
``recv``/``drain``/barrier, before link emulation; see :func:`protocol.estimate_clock_offset`.

With a :class:`~protocol.links.LinkEmulator`, received messages are held per link and released
when due: on the real clock by a deadline heap (release granularity ~1 ms, zmq's poll resolution),
on the logical clock when ``set_tick(t)`` has reached their due slot (a message is stamped at the
sender's ``iteration``). Every message sent, received or dropped goes to the node's
:class:`~protocol.log.MessageLog`, with the injected delay.
"""

from __future__ import annotations

import os
import socket
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from time import monotonic_ns as now_ns  # the clock of protocol.now_ns, without a Python frame
from typing import Any, Protocol

import zmq

from .codec import Limits, decode
from .envelope import CONTROL_KINDS, Envelope, Kind
from .errors import ConfigError, ProtocolError, TransportError
from .links import LinkEmulator
from .log import DROPPED, RECEIVED, MessageLog
from .security import CurveServer, NodeKeys, make_client

_FIRST_CONTROL, _LAST_CONTROL = min(CONTROL_KINDS), max(CONTROL_KINDS)  # int compares: Enum hashing is slow
_HEARTBEAT = int(Kind.HEARTBEAT)
assert CONTROL_KINDS == frozenset(range(_FIRST_CONTROL, _LAST_CONTROL + 1)) and _HEARTBEAT == _LAST_CONTROL + 1

DEFAULT_HWM: int = 100_000
"""Default send/receive high-water mark, messages per socket pipe."""


@dataclass
class NodeStats:
    """Counters of one node.

    Attributes:
        sent: frames sent (a broadcast counts once).
        received: messages handed to the application.
        rejected: frames refused by the decoder, by error class name.
        gaps: messages missing according to sequence numbers (transport loss).
        reordered: messages that arrived with a sequence number lower than expected.
        dropped_injected: messages dropped by the link emulator.
        control: barrier messages (hello/ready/start) consumed.
        clock: clock pings answered and pongs consumed (see :mod:`protocol.clock`).
    """

    sent: int = 0
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    reordered: int = 0
    dropped_injected: int = 0
    control: int = 0
    clock: int = 0


def node_address() -> str:
    """This machine's outward IPv4 address (the interface of its default route), or 127.0.0.1.

    For cluster mode (bind there and advertise it); no packet is sent. On Ray, the actor may pass
    ``ray.util.get_node_ip_address()`` instead (``protocol`` does not import Ray)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect only picks a route
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def bind_host(cluster: bool = False) -> str:
    """Where a node binds: 127.0.0.1 by default, :func:`node_address` in cluster mode."""
    return node_address() if cluster else "127.0.0.1"


def _max_msg_size(limits: Limits) -> int:
    cap = 2 * limits.max_message_bytes
    return cap if cap < 2**62 else -1


class Node(Protocol):
    """What every transport of a run offers (typing only): an endpoint its peers connect to, a way to
    connect to theirs (``{node id: endpoint}``), counters, and close. Built inside the process that uses
    it; not picklable."""

    endpoint: str

    def connect(self, peers: Mapping[int, str]) -> None: ...

    def close(self) -> None: ...


def make_context() -> zmq.Context:
    """A ZeroMQ context to share between several nodes of one process (one I/O thread for all of them,
    and ``inproc://`` between them: :meth:`protocol.ring.RingNode.bind_inproc`). The caller terminates it
    (``ctx.term()``) after closing its nodes. Callers outside ``protocol`` never import zmq."""
    return zmq.Context()


class _Node:
    """Receive machinery shared by :class:`RingNode` and :class:`BroadcastNode`."""

    _in: zmq.Socket

    def __init__(
        self,
        node_id: int,
        bind_host: str,
        advertise_host: str | None,
        run_id: str,
        log: MessageLog | None,
        emulator: LinkEmulator | None,
        curve: NodeKeys | None,
        limits: Limits,
        hwm: int,
        send_timeout_ms: int,
        extra_senders: Iterable[int],
        context: zmq.Context | None = None,
    ) -> None:
        if not isinstance(node_id, int) or node_id < 0:
            raise ConfigError(f"node id {node_id!r} must be an int ≥ 0")
        if curve is not None and curve.node_id != node_id:
            raise ConfigError(f"CURVE keys of node {curve.node_id} given to node {node_id}")
        if curve is not None and context is not None:
            raise ConfigError("a CURVE node needs its own context (its authenticator serves the whole context)")
        self.node_id = node_id
        self.run_id = run_id
        self.log = log
        self.stats = NodeStats()
        self.last_error: ProtocolError | None = None
        self._emu = emulator
        self._real = emulator is not None and emulator.clock == "real"
        self._tick = 0
        self._limits = limits
        self._hwm = hwm
        self._send_timeout_ms = send_timeout_ms
        self._keys = curve
        self._extra = frozenset(extra_senders)
        self._known: frozenset[int] = self._extra | {node_id}
        self._expect: dict[int, int] = {}
        self._pending: deque[Envelope] = deque()
        self._rcvtimeo = -2
        self._barrier_heard: set[int] | None = None  # set during a barrier
        self._barrier_ready: set[int] = set()
        self._clock_pongs: dict[int, tuple[int, int, int, int]] | None = None  # set while estimating offsets
        self._ping_token = 0
        self._pid = os.getpid()
        self._closed = False
        self._own_ctx = context is None
        self._ctx = zmq.Context() if context is None else context
        self._sockets: list[zmq.Socket] = []
        self._curve_server = CurveServer(self._ctx, curve) if curve is not None else None
        self._bind_host = bind_host
        self._advertise_host = advertise_host or bind_host
        self.endpoint = ""

    # -- sockets --------------------------------------------------------------------------------
    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self._hwm)
        sock.setsockopt(zmq.RCVHWM, self._hwm)
        sock.setsockopt(zmq.SNDTIMEO, self._send_timeout_ms)
        self._sockets.append(sock)
        return sock

    def _bind(self, sock: zmq.Socket) -> str:
        if self._curve_server is not None:
            self._curve_server.make_server(sock)
        try:
            port = sock.bind_to_random_port(f"tcp://{self._bind_host}")
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot bind on {self._bind_host}: {exc}") from exc
        return f"tcp://{self._advertise_host}:{port}"

    def _connect(self, sock: zmq.Socket, peer: int, endpoint: str) -> None:
        if self._keys is not None:
            make_client(sock, self._keys, peer)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot connect to peer {peer} at {endpoint!r}: {exc}") from exc

    def _check_usable(self) -> None:
        if self._closed:
            raise TransportError("node is closed")
        if os.getpid() != self._pid:
            raise TransportError("a node must be used in the process that created it")

    @property
    def auth_refused(self) -> int:
        """CURVE handshakes refused by this node (client key not in the run)."""
        return self._curve_server.refused if self._curve_server is not None else 0

    @property
    def known_senders(self) -> frozenset[int]:
        """Sender ids accepted by the decoder (peers, self, ``extra_senders``)."""
        return self._known

    def set_tick(self, tick: int) -> None:
        """Logical clock: release held messages whose due slot is ≤ ``tick``."""
        self._tick = tick

    # -- receiving ------------------------------------------------------------------------------
    def _recv_frame(self, wait_ms: int) -> bytes | None:
        """One frame, waiting at most ``wait_ms`` (−1: forever); None on timeout."""
        sock = self._in
        if wait_ms != self._rcvtimeo:  # RCVTIMEO 0 is a non-blocking recv
            sock.setsockopt(zmq.RCVTIMEO, wait_ms)
            self._rcvtimeo = wait_ms
        try:
            return sock.recv()
        except zmq.Again:
            return None

    def _accept(self, frame: bytes, t_arr: int) -> Envelope | None:
        """Decode, validate, account for and route one frame; return it if it is for the app now."""
        try:
            env = decode(frame, self._known, self._limits)
        except ProtocolError as exc:
            self.stats.rejected[type(exc).__name__] += 1
            self.last_error = exc
            return None
        sender, seq = env.sender, env.seq
        exp = self._expect.get(sender)
        if exp is None or seq == exp:
            self._expect[sender] = seq + 1
        elif seq > exp:
            self.stats.gaps += seq - exp
            self._expect[sender] = seq + 1
        else:
            self.stats.reordered += 1
        log = self.log
        if _FIRST_CONTROL <= env.kind <= _HEARTBEAT or self._barrier_heard is not None:
            if self._on_control(env, len(frame), t_arr):
                return None
        emu = self._emu
        if emu is None:
            if log is not None:
                log.record(RECEIVED, env.kind, sender, self.node_id, env.iteration, seq, len(frame),
                           env.t_send_ns, t_arr)  # fmt: skip
            self.stats.received += 1
            return env
        dec = emu.submit((env, len(frame)), sender, self.node_id, t_arr if self._real else env.iteration)
        if dec.dropped:
            self.stats.dropped_injected += 1
            if log is not None:
                dns, dsl = (dec.delay, 0) if self._real else (0, dec.delay)
                log.record(DROPPED, env.kind, sender, self.node_id, env.iteration, seq, len(frame),
                           env.t_send_ns, t_arr, dns, dsl)  # fmt: skip
        return None

    def _on_control(self, env: Envelope, nbytes: int, t_arr: int) -> bool:
        """Track barrier progress, answer clock pings; True if the message was consumed here
        (a barrier message, a clock ping or pong), False if it goes on to the application."""
        heard = self._barrier_heard
        if heard is not None:
            heard.add(env.sender)
            if env.kind != Kind.HELLO:  # READY, START or an application message
                self._barrier_ready.add(env.sender)
        if _FIRST_CONTROL <= env.kind <= _LAST_CONTROL:
            self.stats.control += 1
        elif env.kind != _HEARTBEAT or not self._on_clock(env, t_arr):
            return False
        if self.log is not None:
            self.log.record(RECEIVED, env.kind, env.sender, self.node_id, env.iteration, env.seq, nbytes,
                            env.t_send_ns, t_arr)  # fmt: skip
        return True

    def _on_clock(self, env: Envelope, t_arr: int) -> bool:
        """HEARTBEAT ``{"clock_ping": token}``: reply at once with ``{"clock_pong": token, "t0": its
        t_send_ns, "t1": t_arr}`` (the reply's own t_send_ns is t2). ``{"clock_pong": ...}``: keep
        (t0, t1, t2, t3 = t_arr) while an estimate runs. True if consumed; other heartbeats go on."""
        pay = env.payload
        token = pay.get("clock_ping")
        if type(token) is int and self._can_answer(env.sender):
            self.stats.clock += 1
            self.send(env.sender, Envelope(Kind.HEARTBEAT, self.node_id, env.sender, env.iteration, 0,
                                           {"clock_pong": token, "t0": env.t_send_ns, "t1": t_arr}))  # fmt: skip
            return True
        token = pay.get("clock_pong")
        if token is None:
            return False
        t0, t1 = pay.get("t0"), pay.get("t1")
        if type(token) is not int or type(t0) is not int or type(t1) is not int:
            self.stats.rejected["MalformedMessage"] += 1
            return True
        self.stats.clock += 1
        if self._clock_pongs is not None:
            self._clock_pongs[token] = (t0, t1, env.t_send_ns, t_arr)
        return True

    def _can_answer(self, peer: int) -> bool:
        """Whether this node can send a clock pong back to ``peer`` (a ring node with a socket to it)."""
        return False

    def _release(self) -> Envelope | None:
        emu = self._emu
        assert emu is not None
        now = now_ns() if self._real else self._tick
        got = emu.pop_one(now)
        if got is None:
            return None
        (env, nbytes), dec = got
        if self.log is not None:
            dns, dsl = (dec.delay, 0) if self._real else (0, dec.delay)
            self.log.record(RECEIVED, env.kind, env.sender, self.node_id, env.iteration, env.seq, nbytes,
                            env.t_send_ns, now_ns(), dns, dsl)  # fmt: skip
        self.stats.received += 1
        return env

    def recv(self, timeout_ms: int | None = None) -> Envelope | None:
        """Next message for the application, or ``None`` after ``timeout_ms`` (None: wait forever).

        Never raises on a bad frame (it is counted in ``stats.rejected`` and skipped). With a
        logical-clock emulator a held message is released only once ``set_tick`` reached its due
        slot: after a round, ``drain()``, ``set_tick(t)``, then ``recv(timeout_ms=0)`` until None."""
        if self._pending:
            return self._pending.popleft()
        emu = self._emu
        if emu is None and timeout_ms is None:  # fast path: block until a good frame arrives
            while True:
                frame = self._recv_frame(-1)
                if frame is not None:
                    env = self._accept(frame, now_ns())
                    if env is not None:
                        return env
        deadline = -1 if timeout_ms is None else now_ns() + int(timeout_ms) * 1_000_000
        while True:
            if emu is not None and len(emu):
                env = self._release()
                if env is not None:
                    return env
            wait = -1 if deadline < 0 else max(0, -(-(deadline - now_ns()) // 1_000_000))
            if self._real and emu is not None:
                due = emu.next_due()
                if due is not None:
                    until_due = max(0, -(-(due - now_ns()) // 1_000_000))
                    wait = until_due if wait < 0 else min(wait, until_due)
            frame = self._recv_frame(wait)
            if frame is not None:
                env = self._accept(frame, now_ns())
                if env is not None:
                    return env
            elif deadline >= 0 and now_ns() >= deadline:
                return self._release() if emu is not None and len(emu) else None

    def drain(self) -> int:
        """Accept every frame already waiting, without blocking (logical clock: call before
        ``set_tick`` so that everything sent for this tick is held). Returns frames read."""
        n = 0
        while True:
            frame = self._recv_frame(0)
            if frame is None:
                return n
            n += 1
            env = self._accept(frame, now_ns())
            if env is not None:
                self._pending.append(env)

    def _pump(self, wait_ms: int) -> None:
        """Barrier helper: accept one frame if any arrives within ``wait_ms``."""
        frame = self._recv_frame(wait_ms)
        if frame is not None:
            env = self._accept(frame, now_ns())
            if env is not None:
                self._pending.append(env)

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close every socket (linger 0), stop the CURVE authenticator, terminate the context."""
        if self._closed:
            return
        self._closed = True
        for sock in self._sockets:
            sock.close(linger=0)
        if self._curve_server is not None:
            self._curve_server.stop()
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TransportError("nodes own sockets and cannot be pickled; create them inside the actor")


__all__ = ["Node", "NodeStats", "DEFAULT_HWM", "bind_host", "node_address", "make_context"]
