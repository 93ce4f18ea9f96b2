"""Start barriers (hello → ready → start), so that no message is lost to ZeroMQ's slow joiner.

:func:`broadcast_barrier` runs in every :class:`~protocol.transport.BroadcastNode` of a graph,
after ``connect``; each node, with neighbour set N (undirected graph):

1. publishes HELLO every ``interval_ms`` until it has heard any message from every j ∈ N
   (then its subscription to every neighbour is live);
2. then publishes READY every ``interval_ms`` until it has received READY (or START, or an
   application message — each implies the sender hears it) from every j ∈ N
   (then every neighbour's subscription to *it* is live: nothing it publishes can be lost);
3. publishes START once (delivered: all its subscribers are connected) and returns.

A node that returns has live links both ways with every neighbour, so application messages
published afterwards all arrive. Barrier messages are logged like any other message; those
published before a subscriber joined are logged as sent but never received (that is the slow
joiner effect, measured rather than hidden).

:func:`ring_barrier` for :class:`~protocol.transport.RingNode`: PUSH queues messages until the
connection is up, so nothing is lost anyway; the barrier only proves that every peer is up and
reachable (and, with CURVE, admitted): send HELLO to every peer, wait for HELLO from every peer.
"""

from __future__ import annotations

from .broadcast import BroadcastNode
from .envelope import Envelope, Kind, now_ns
from .errors import BarrierTimeout
from .ring import RingNode


def broadcast_barrier(node: BroadcastNode, timeout_s: float = 30.0, interval_ms: int = 5, iteration: int = 0) -> None:
    """Block until every neighbour of ``node`` hears it and is heard by it (see module doc).

    Raises:
        BarrierTimeout: not complete after ``timeout_s`` seconds.
    """
    node._check_usable()
    peers = node.peers
    deadline = now_ns() + int(timeout_s * 1e9)
    node._barrier_heard = heard = set()
    node._barrier_ready = ready = set()
    try:
        while True:
            phase = Kind.READY if heard >= peers else Kind.HELLO
            if phase == Kind.READY and ready >= peers:
                node.publish(Envelope(Kind.START, node.node_id, -1, iteration, 0, {}))
                return
            node.publish(Envelope(phase, node.node_id, -1, iteration, 0, {}))
            until = now_ns() + interval_ms * 1_000_000
            while (left := until - now_ns()) > 0:
                node._pump(max(1, left // 1_000_000))
            if now_ns() > deadline:
                raise BarrierTimeout(
                    f"node {node.node_id}: heard {sorted(heard)}, ready {sorted(ready)} of {sorted(peers)}"
                )
    finally:
        node._barrier_heard = None


def ring_barrier(node: RingNode, timeout_s: float = 30.0, iteration: int = 0) -> None:
    """Send HELLO to every peer and block until HELLO has come from every peer.

    Raises:
        BarrierTimeout: not complete after ``timeout_s`` seconds.
    """
    node._check_usable()
    peers = node.peers
    deadline = now_ns() + int(timeout_s * 1e9)
    node._barrier_heard = heard = set()
    try:
        for peer in sorted(peers):
            node.send(peer, Envelope(Kind.HELLO, node.node_id, peer, iteration, 0, {}))
        while not heard >= peers:
            left = deadline - now_ns()
            if left <= 0:
                raise BarrierTimeout(f"node {node.node_id}: heard {sorted(heard)} of {sorted(peers)}")
            node._pump(max(1, left // 1_000_000))
    finally:
        node._barrier_heard = None


__all__ = ["broadcast_barrier", "ring_barrier"]
