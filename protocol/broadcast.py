"""Publish/subscribe ZeroMQ node: a SUB socket bound (the node's inbox), a PUB (no-drop) socket
connected to the inboxes of its graph neighbours (see :mod:`protocol.node`).

The subscriber binds and the publisher connects (the reverse of the usual PUB/SUB picture) so that
a broadcast node is shaped like a ring node: its one bound socket is inbound, which with CURVE makes
it the CURVE server that authenticates each publisher's key and binds it to the publisher's node id
(``User-Id``); and no stray subscriber can attach to a publisher (with ``XPUB_NODROP`` a subscriber
that never reads would block every publish)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from time import monotonic_ns as now_ns  # the clock of protocol.now_ns, without a Python frame

import zmq

from .codec import DEFAULT_LIMITS, Limits, encode_fields
from .envelope import BROADCAST, Envelope
from .errors import TransportError
from .links import LinkEmulator
from .log import SENT, MessageLog
from .node import DEFAULT_HWM, _Node
from .security import NodeKeys


class BroadcastNode(_Node):
    """Publish/subscribe node: a SUB socket bound (its :attr:`endpoint`), a PUB (no-drop) socket
    connected to the SUB sockets of its neighbours.

    Args:
        node_id: this BS's id (≥ 0).
        neighbours: ids this node exchanges with (undirected graph); ``None``: every peer.
        Others as for :class:`RingNode`.
    """

    def __init__(
        self,
        node_id: int,
        neighbours: Iterable[int] | None = None,
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
    ) -> None:
        super().__init__(node_id, bind_host, advertise_host, run_id, log, emulator, curve, limits, hwm,
                         send_timeout_ms, extra_senders, context, recv_budget_bytes)  # fmt: skip
        self.neighbours: frozenset[int] | None = None if neighbours is None else frozenset(neighbours)
        self._subscribers: tuple[int, ...] = ()
        self._seq = 0
        try:
            self._in = self._inbound(zmq.SUB)
            self._in.setsockopt(zmq.SUBSCRIBE, b"")
            self.endpoint = self._bind(self._in)
            self._pub = self._socket(zmq.PUB)  # connects only: nothing from outside can attach to it
            self._pub.setsockopt(zmq.XPUB_NODROP, 1)
        except BaseException:
            self.close()
            raise

    @property
    def peers(self) -> frozenset[int]:
        """Ids this node listens to (and, the graph being undirected, publishes to)."""
        return frozenset(self._subscribers)

    def connect(self, peers: Mapping[int, str]) -> None:
        """Connect the publisher to the inbound sockets of the neighbours among ``peers``
        ({id: endpoint}); the neighbours connect theirs to this node's :attr:`endpoint`."""
        self._check_usable()
        new = [p for p in sorted(peers) if p != self.node_id and p not in self._subscribers]
        if self.neighbours is not None:
            new = [p for p in new if p in self.neighbours]
        for peer in new:
            self._connect(self._pub, peer, peers[peer])
        self._subscribers = tuple(sorted((*self._subscribers, *new)))
        self._known = self._known | frozenset(self._subscribers)

    def publish(self, env: Envelope) -> int:
        """Publish ``env`` to every neighbour (stamping sender, receiver=BROADCAST, seq,
        t_send_ns); return the bytes of the frame. The log gets one sent row per neighbour
        (one copy per subscriber goes on the wire). Raises TransportError on a send timeout."""
        seq = self._seq
        t = now_ns()
        run_id = self.run_id or env.run_id
        frame = encode_fields(env.version, env.kind, run_id, self.node_id, BROADCAST, env.iteration, seq, t,
                              env.payload, self._limits)  # fmt: skip
        try:
            self._pub.send(frame)
        except zmq.Again:
            raise TransportError(f"publish blocked {self._send_timeout_ms} ms at the HWM") from None
        self._seq = seq + 1
        self.stats.sent += 1
        log = self.log
        if log is not None:
            n, kind, it = len(frame), env.kind, env.iteration
            for peer in self._subscribers:
                log.record(SENT, kind, self.node_id, peer, it, seq, n, t)
        return len(frame)


__all__ = ["BroadcastNode"]
