"""Point-to-point ZeroMQ node: one inbound PULL socket, one PUSH socket per peer (see :mod:`protocol.node`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from time import monotonic_ns as now_ns  # the clock of protocol.now_ns, without a Python frame

import zmq

from .codec import DEFAULT_LIMITS, Limits, encode_fields
from .envelope import Envelope
from .errors import ConfigError, TransportError
from .links import LinkEmulator
from .log import SENT, MessageLog
from .node import DEFAULT_HWM, _Node
from .security import NodeKeys


class RingNode(_Node):
    """Point-to-point node: one inbound PULL socket, one PUSH socket per peer.

    Args:
        node_id: this BS's id (≥ 0).
        bind_host: interface to bind (127.0.0.1 by default; the node's address in cluster mode).
        advertise_host: host written into :attr:`endpoint` (default ``bind_host``; set it when
            binding ``0.0.0.0``).
        run_id: stamped on every envelope sent.
        log: message log of this node (optional).
        emulator: link emulator applied to received messages (optional).
        curve: this node's CURVE keys (optional; then every peer must use CURVE).
        limits: decoder size limits; ``limits.max_message_bytes`` is also the inbound socket's
            MAXMSGSIZE (a larger frame cuts its connection, counted in ``stats.disconnects``).
        hwm: send high-water mark, messages per pipe (and the most the receive one can be).
        send_timeout_ms: a send blocked this long at the high-water mark raises TransportError.
        extra_senders: sender ids accepted besides the peers (e.g. ``COORDINATOR``).
        context: a ZeroMQ context shared with other nodes of this process (default: its own, with
            its own I/O thread). Shared, co-hosted peers can connect to :meth:`bind_inproc`'s
            endpoint; the node does not terminate it. Not with ``curve``.
        recv_budget_bytes: bytes the inbound socket may hold queued per connection (default
            :data:`~protocol.node.DEFAULT_RECV_BUDGET`, at least 2 × ``max_message_bytes``); sets
            its RCVHWM (:attr:`recv_hwm`, see :func:`~protocol.node.recv_hwm`).
        io_priority: 1..99: its context's I/O threads run SCHED_FIFO at that priority
            (:func:`~protocol.node.make_context`; a real-time node's loop gives its own). Not with ``context``.
    """

    def __init__(
        self,
        node_id: int,
        bind_host: str = "127.0.0.1",
        *,
        advertise_host: str | None = None,
        run_id: str = "",
        log: MessageLog | None = None,
        emulator: LinkEmulator | None = None,
        curve: NodeKeys | None = None,
        limits: Limits = DEFAULT_LIMITS,
        hwm: int = DEFAULT_HWM,
        send_timeout_ms: int = 10_000,
        extra_senders: Iterable[int] = (),
        context: zmq.Context | None = None,
        recv_budget_bytes: int | None = None,
        io_priority: int = 0,
    ) -> None:
        super().__init__(node_id, bind_host, advertise_host, run_id, log, emulator, curve, limits, hwm,
                         send_timeout_ms, extra_senders, context, recv_budget_bytes, io_priority)  # fmt: skip
        try:
            self._in = self._inbound(zmq.PULL)
            self.endpoint = self._bind(self._in)
        except BaseException:
            self.close()
            raise
        self._out: dict[int, zmq.Socket] = {}
        self._seq_out: dict[int, int] = {}

    @property
    def peers(self) -> frozenset[int]:
        """Ids this node can send to."""
        return frozenset(self._out)

    def bind_inproc(self) -> str:
        """Also bind the inbound socket to an ``inproc://`` endpoint and return it: peers created in
        the same (shared) context connect there and skip TCP and the I/O thread; the frames, the
        decoding and the log are the same. Not on a CURVE node (it would bypass the authentication)."""
        self._check_usable()
        if self._keys is not None:
            raise ConfigError("bind_inproc: a CURVE node accepts authenticated TCP peers only")
        endpoint = f"inproc://bsemu-ring-{os.getpid()}-{id(self):x}-{self.node_id}"
        self._in.bind(endpoint)
        return endpoint

    def connect(self, peers: Mapping[int, str]) -> None:
        """Connect a PUSH socket to every peer's endpoint (``{node_id: "tcp://host:port"}``;
        this node's own entry is skipped). May be called again with new peers."""
        self._check_usable()
        for peer, endpoint in peers.items():
            if peer == self.node_id or peer in self._out:
                continue
            sock = self._socket(zmq.PUSH)
            self._connect(sock, peer, endpoint)
            self._out[peer] = sock
            self._seq_out[peer] = 0
        self._known = self._known | (frozenset(peers) - {self.node_id})

    def send(self, to: int, env: Envelope) -> int:
        """Send ``env`` to peer ``to`` (stamping sender, receiver, seq, t_send_ns); return the
        bytes on the wire. Raises TransportError for an unknown peer or a send timeout."""
        sock = self._out.get(to)
        if sock is None:
            raise TransportError(f"node {self.node_id} is not connected to peer {to}")
        seq = self._seq_out[to]
        t = now_ns()
        run_id = self.run_id or env.run_id
        frame = encode_fields(env.version, env.kind, run_id, self.node_id, to, env.iteration, seq, t,
                              env.payload, self._limits)  # fmt: skip
        try:
            sock.send(frame)
        except zmq.Again:
            raise TransportError(f"send to {to} blocked {self._send_timeout_ms} ms at the HWM") from None
        self._seq_out[to] = seq + 1
        self.stats.sent += 1
        if self.log is not None:
            self.log.record(SENT, env.kind, self.node_id, to, env.iteration, seq, len(frame), t)
        return len(frame)

    def _can_answer(self, peer: int) -> bool:
        return peer in self._out


__all__ = ["RingNode"]
