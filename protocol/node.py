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
* :class:`BroadcastNode`: one inbound SUB socket (bound) and one PUB socket with ``XPUB_NODROP``
  (a full subscriber queue blocks the publisher instead of dropping silently) connected to the
  inbound sockets of its graph neighbours (all peers if ``neighbours`` is ``None``; the graph is
  undirected). Sequence numbers are per publisher. A subscriber misses what was published
  before its subscription reached the publisher: run :func:`protocol.broadcast_barrier` first.

Either way a node binds exactly one socket, its inbound one (``endpoint``), and its peers connect
to it; its outbound sockets only connect. So nothing from outside can attach to a publisher, and
with CURVE the inbound socket is the CURVE server whose ZAP handler binds each peer's key to its
node id (see below).

The transport stamps ``sender``, ``receiver``, ``seq``, ``t_send_ns`` (and ``run_id`` if the node
has one) on every envelope it sends. Every frame received is decoded and validated; a bad frame is
counted in ``stats.rejected`` (by error class) and skipped — the receiving loop never crashes:

* the codec's checks: ``MalformedMessage``, ``MessageTooLarge``, ``UnsupportedVersion``,
  ``UnknownKind``, ``UnknownSender`` (a sender id not in the roster: peers and ``extra_senders``;
  not the node's own id, since no node sends to itself);
* ``SpoofedSender`` (CURVE only): the envelope's ``sender`` is not the node id bound to the key of
  the connection that delivered it (ZAP ``User-Id``, :mod:`protocol.security`). Without CURVE a
  PULL/SUB frame carries no per-connection identity, so only the roster check applies: on one
  machine (loopback binds) any local process can claim a known id. Use CURVE as soon as anything
  untrusted can reach the ports;
* ``ReplayedMessage``: a sequence number lower than the next one expected from that sender (a
  replay or a duplicate; ZeroMQ pipes are FIFO, so an honest sender never goes backwards). It is
  checked after the sender is authenticated, so with CURVE a forged frame cannot move another
  sender's expectation; without CURVE a forged *higher* seq would make the real sender's next
  frames look replayed (no identity to tell them apart). A sender that restarts with a fresh node
  starts over at seq 0: its receivers must be rebuilt too.

Forward jumps of sequence numbers (transport loss) are counted in ``stats.gaps``.

Receive queues are bounded in bytes. ZeroMQ bounds a connection's queue in *messages* (RCVHWM)
and holds, besides, the one message it is reading (allocated at its announced size), so a node
sets ``RCVHWM = recv_budget_bytes // max_message_bytes - 1`` (at least 1) and ``MAXMSGSIZE =
max_message_bytes``: at most ``recv_budget_bytes`` queued per inbound connection, whatever the
frame sizes. A frame over ``MAXMSGSIZE`` never reaches the node: ZeroMQ cuts that connection (a
PUSH peer reconnects by itself; what it had already handed to the connection is lost, what it
queued afterwards continues). libzmq reports such a cut exactly as a peer going away
(``ZMQ_EVENT_DISCONNECTED``), so it is counted in ``stats.disconnects``, beside
``stats.connections`` and ``stats.handshake_failures`` (a socket monitor read by a small thread per
node, so that its events never pile up). Without CURVE, libzmq takes a TCP stream that does not
open with a ZMTP 3 greeting for a ZMTP 1.0 peer, so raw garbage written to the port may come out
as frames: they are refused like any other. Limits of what ZeroMQ lets a node bound: the budget
is per connection (without CURVE a local process can open many); and the high-water mark counts
a multipart message as one message while its parts arrive, so a peer streaming one endless
multipart message is bounded by nothing but MAXMSGSIZE per part — with CURVE only run members
can connect at all. (With CURVE the socket's RCVHWM is one more than :attr:`recv_hwm`: libzmq
4.3 keeps the ZAP credential message in each connection's queue for good, counted at the HWM.)

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
from time import sleep
from typing import Any, Protocol

import zmq

from .codec import Limits, decode
from .contexts import io_thread_ids, make_context
from .envelope import CONTROL_KINDS, Envelope, Kind
from .errors import ConfigError, ProtocolError, ReplayedMessage, SpoofedSender, TransportError
from .links import LinkEmulator
from .log import DROPPED, RECEIVED, MessageLog
from .monitor import ConnectionWatch
from .security import CurveServer, NodeKeys, make_client

_FIRST_CONTROL, _LAST_CONTROL = min(CONTROL_KINDS), max(CONTROL_KINDS)  # int compares: Enum hashing is slow
_HEARTBEAT = int(Kind.HEARTBEAT)
assert CONTROL_KINDS == frozenset(range(_FIRST_CONTROL, _LAST_CONTROL + 1)) and _HEARTBEAT == _LAST_CONTROL + 1

_NAP_NS = 50_000
"""Real-clock emulation: in the last millisecond before a held message is due, the receiver polls its socket
and sleeps this long between polls (a socket's timeout is in whole ms), so a delay below 1 ms is honoured
to ~0.1 ms instead of being rounded up to the next millisecond."""

DEFAULT_HWM: int = 100_000
"""Default send high-water mark, messages per socket pipe (and the most RCVHWM can be)."""

DEFAULT_RECV_BUDGET: int = 128 * 1024 * 1024
"""Default receive budget, bytes per inbound connection: 2 × the default ``Limits.max_message_bytes``
(one whole frame queued and one being read). A larger ``max_message_bytes`` raises the default
budget to twice it."""


def recv_hwm(limits: Limits, recv_budget_bytes: int | None = None, hwm: int = DEFAULT_HWM) -> int:
    """RCVHWM (messages) that keeps a connection's receive queue within ``recv_budget_bytes``.

    ZeroMQ holds up to RCVHWM whole messages in the queue plus the one it is reading, each at most
    ``limits.max_message_bytes`` (MAXMSGSIZE), so RCVHWM = budget // max_message_bytes − 1, capped
    at ``hwm`` (if > 0). ``None``: :data:`DEFAULT_RECV_BUDGET`, or 2 × max_message_bytes if larger.
    With the default limits (64 MiB frames) that is 1: the bound is kept whatever the frame sizes,
    and a burst of small messages waits in the sender's queue and the kernel's socket buffers
    instead (each read lets ZeroMQ's I/O thread take in the next one). A run whose messages are
    small gets deeper queues for the same bytes by lowering ``max_message_bytes``.

    Raises:
        ConfigError: a budget below two frames of ``max_message_bytes`` (it cannot be kept).
    """
    per = limits.max_message_bytes
    budget = max(DEFAULT_RECV_BUDGET, 2 * per) if recv_budget_bytes is None else recv_budget_bytes
    if type(budget) is not int or budget < 2 * per:
        raise ConfigError(f"recv_budget_bytes={budget!r} must be an int ≥ 2 × max_message_bytes = {2 * per}")
    derived = budget // per - 1
    return min(hwm, derived) if hwm > 0 else derived


@dataclass
class NodeStats:
    """Counters of one node.

    Attributes:
        sent: frames sent (a broadcast counts once).
        received: messages handed to the application.
        rejected: frames refused, by error class name: the decoder's (``MalformedMessage``,
            ``MessageTooLarge``, ``UnsupportedVersion``, ``UnknownKind``, ``UnknownSender``), then
            ``SpoofedSender`` (CURVE: sender ≠ the connection's authenticated id) and
            ``ReplayedMessage`` (seq lower than expected from that sender). None is delivered.
        gaps: messages missing according to sequence numbers (transport loss).
        reordered: kept for compatibility; always 0 since a backward sequence number is refused
            (``rejected["ReplayedMessage"]``).
        dropped_injected: messages dropped by the link emulator.
        control: barrier messages (hello/ready/start) consumed.
        clock: clock pings answered and pongs consumed (see :mod:`protocol.clock`).
        connections: connections accepted by the inbound socket (peers, and anyone else).
        disconnects: inbound connections that ended while the node was open: a peer that closed or
            died, or one that ZeroMQ cut for a frame over MAXMSGSIZE or a ZMTP error (libzmq
            reports these alike). Counted by the node's monitor thread, shortly after the fact.
        handshake_failures: inbound connections refused during the handshake (not ZMTP, wrong
            socket type, CURVE key not in the run); such a connection also counts a disconnect.
    """

    sent: int = 0
    received: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    reordered: int = 0
    dropped_injected: int = 0
    control: int = 0
    clock: int = 0
    connections: int = 0
    disconnects: int = 0
    handshake_failures: int = 0


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
    """MAXMSGSIZE of an inbound socket: the codec's frame limit (ZeroMQ cuts the connection of a peer
    that announces a larger frame, before allocating it)."""
    cap = limits.max_message_bytes
    return cap if cap < 2**62 else -1


class Node(Protocol):
    """What every transport of a run offers (typing only): an endpoint its peers connect to, a way to
    connect to theirs (``{node id: endpoint}``), counters, and close. Built inside the process that uses
    it; not picklable."""

    endpoint: str

    def connect(self, peers: Mapping[int, str]) -> None: ...

    def close(self) -> None: ...


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
        recv_budget_bytes: int | None = None,
        io_priority: int = 0,
    ) -> None:
        if not isinstance(node_id, int) or node_id < 0:
            raise ConfigError(f"node id {node_id!r} must be an int ≥ 0")
        if curve is not None and curve.node_id != node_id:
            raise ConfigError(f"CURVE keys of node {curve.node_id} given to node {node_id}")
        if curve is not None and context is not None:
            raise ConfigError("a CURVE node needs its own context (its authenticator serves the whole context)")
        if io_priority and context is not None:
            raise ConfigError("io_priority sets the node's own context: give it to whoever makes a shared one")
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
        self.recv_hwm = recv_hwm(limits, recv_budget_bytes, hwm)
        """RCVHWM of the inbound socket (messages per connection), from the byte budget."""
        self._send_timeout_ms = send_timeout_ms
        self._keys = curve
        self._extra = frozenset(extra_senders)
        self._known: frozenset[int] = self._extra  # not node_id: no node sends to itself
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
        self._ctx = make_context(io_priority) if context is None else context
        self._sockets: list[zmq.Socket] = []
        self._watch: ConnectionWatch | None = None
        self._uid: str | None = None  # CURVE: the authenticated User-Id of the last frame read
        self._curve_server = CurveServer(self._ctx, curve) if curve is not None else None
        if curve is not None:
            self._recv_frame = self._recv_frame_uid  # type: ignore[method-assign]
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

    def _inbound(self, kind: int) -> zmq.Socket:
        """The node's one bound socket: queue bounded in bytes (RCVHWM from the budget, MAXMSGSIZE
        the frame limit), its connections counted by a monitor thread."""
        sock = self._socket(kind)
        # With ZAP, libzmq puts a credential message (the User-Id) first in each connection's pipe and
        # counts it against RCVHWM, but never as read: it holds one slot for good (at RCVHWM 1 nothing
        # else ever gets in). Measured with libzmq 4.3.5; the slot holds a few bytes, not a frame.
        sock.setsockopt(zmq.RCVHWM, self.recv_hwm + (self._keys is not None))
        sock.setsockopt(zmq.MAXMSGSIZE, _max_msg_size(self._limits))
        self._watch = ConnectionWatch(sock, self.stats, f"bsemu-node-{self.node_id}-watch")
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
        """Sender ids accepted by the decoder: peers and ``extra_senders``. Not the node's own id
        (no node sends to itself), so a frame claiming to come from this node is refused
        (``UnknownSender``) unless ``extra_senders`` names it."""
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

    def _recv_frame_uid(self, wait_ms: int) -> bytes | None:
        """:meth:`_recv_frame` of a CURVE node: also keep the frame's authenticated User-Id."""
        sock = self._in
        if wait_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, wait_ms)
            self._rcvtimeo = wait_ms
        try:
            frame = sock.recv(copy=False)
        except zmq.Again:
            return None
        try:
            self._uid = frame.get("User-Id")
        except zmq.ZMQError:  # no ZAP identity on this frame: it cannot be any sender's
            self._uid = ""
        return frame.bytes

    def _reject(self, exc: ProtocolError) -> None:
        self.stats.rejected[type(exc).__name__] += 1
        self.last_error = exc

    def _accept(self, frame: bytes, t_arr: int) -> Envelope | None:
        """Decode, validate, account for and route one frame; return it if it is for the app now."""
        try:
            env = decode(frame, self._known, self._limits)
        except ProtocolError as exc:
            self.stats.rejected[type(exc).__name__] += 1
            self.last_error = exc
            return None
        sender, seq = env.sender, env.seq
        uid = self._uid  # None without CURVE
        if uid is not None and uid != str(sender):
            self._reject(SpoofedSender(f"sender {sender} on the connection of {uid or 'nobody'}"))
            return None
        exp = self._expect.get(sender)
        if exp is None or seq == exp:
            self._expect[sender] = seq + 1
        elif seq > exp:
            self.stats.gaps += seq - exp
            self._expect[sender] = seq + 1
        else:  # FIFO pipes: an honest sender never goes backwards
            self._reject(ReplayedMessage(f"seq {seq} from {sender}, expected ≥ {exp}"))
            return None
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
            nap = 0
            if self._real and emu is not None:
                due = emu.next_due()
                if due is not None:       # block whole ms (woken by a frame); the last one: poll and nap
                    left = due - now_ns()
                    nap = left if 0 < left < 1_000_000 else 0
                    until_due = max(0, left // 1_000_000)
                    wait = until_due if wait < 0 else min(wait, until_due)
            frame = self._recv_frame(wait)
            if frame is not None:
                env = self._accept(frame, now_ns())
                if env is not None:
                    return env
            elif deadline >= 0 and now_ns() >= deadline:
                return self._release() if emu is not None and len(emu) else None
            elif nap:
                sleep(min(nap, _NAP_NS) / 1e9)

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
        if self._watch is not None:
            self._watch.stop()
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


__all__ = ["Node", "NodeStats", "DEFAULT_HWM", "DEFAULT_RECV_BUDGET", "recv_hwm", "bind_host", "node_address",
           "make_context", "io_thread_ids"]   # the last two re-exported from .contexts
