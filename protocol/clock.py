"""Clock offsets between nodes, estimated by NTP-style ping-pong (DESIGN §4).

Each node stamps with its own ``time.monotonic_ns()``; to put two nodes' timestamps on one axis, a
node measures the offset of a peer's clock relative to its own. One round, over the node's ring
sockets (HEARTBEAT envelopes, answered by the peer's transport inside whatever ``recv``/``drain``
it is running — the peer's application does nothing)::

    t0  ping sent       (local clock: the ping's t_send_ns)
    t1  ping received   (peer clock: when its socket handed the frame over)
    t2  pong sent       (peer clock: the pong's t_send_ns)
    t3  pong received   (local clock: when our socket handed the frame over)

    offset θ = ((t1 − t0) + (t2 − t3)) / 2      peer clock − local clock
    delay  δ = (t3 − t0) − (t2 − t1)            round trip, minus the peer's turnaround

If the clocks differ by θ* and the two one-way delays are d→ and d←, then t1 − t0 = d→ + θ* and
t3 − t2 = d← − θ*, so θ = θ* + (d→ − d←)/2 and δ = d→ + d←: the error |θ − θ*| ≤ δ/2 whatever the
asymmetry. Of ``rounds`` samples the one with the smallest δ is kept (the tightest bound; NTP's
clock filter). On one host CLOCK_MONOTONIC is shared, θ* = 0, so |θ| ≤ δ/2 must hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .envelope import Envelope, Kind, now_ns
from .errors import ConfigError, MalformedMessage, TransportError
from .ring import RingNode


class ClockSample(NamedTuple):
    """One ping-pong round: t0, t3 on the local clock, t1, t2 on the peer's (integer ns)."""

    t0_ns: int
    t1_ns: int
    t2_ns: int
    t3_ns: int

    @property
    def offset_ns(self) -> int:
        """θ = ((t1 − t0) + (t2 − t3)) / 2, floored to an integer ns: peer clock − local clock."""
        return ((self.t1_ns - self.t0_ns) + (self.t2_ns - self.t3_ns)) // 2

    @property
    def rtt_ns(self) -> int:
        """δ = (t3 − t0) − (t2 − t1): time on the wire both ways (the peer's turnaround removed)."""
        return (self.t3_ns - self.t0_ns) - (self.t2_ns - self.t1_ns)


@dataclass(frozen=True)
class ClockOffset:
    """Estimate of a peer's clock relative to this node's.

    Attributes:
        peer: the peer's node id.
        offset_ns: θ of the minimum-δ sample: ``t_peer ≈ t_local + offset_ns``.
        rtt_ns: δ of that sample; the true offset lies within ``offset_ns ± rtt_ns / 2``.
        samples: every round that completed, in order.
        lost: rounds whose pong did not come back in time.
    """

    peer: int
    offset_ns: int
    rtt_ns: int
    samples: tuple[ClockSample, ...]
    lost: int = 0

    def to_local(self, t_peer_ns: int) -> int:
        """A timestamp of the peer's clock expressed on the local clock."""
        return t_peer_ns - self.offset_ns


def offset_from_samples(samples: Iterable[ClockSample], peer: int = -1, lost: int = 0) -> ClockOffset:
    """Pick the sample of smallest δ (ties: the earliest) and return its θ and δ.

    Raises:
        ConfigError: no sample.
        MalformedMessage: a sample whose stamps cannot come from monotonic clocks
            (t3 < t0, t2 < t1 or δ < 0).
    """
    got = tuple(ClockSample(*s) for s in samples)
    if not got:
        raise ConfigError("no clock sample to estimate an offset from")
    for s in got:
        if s.t3_ns < s.t0_ns or s.t2_ns < s.t1_ns or s.rtt_ns < 0:
            raise MalformedMessage(f"inconsistent clock stamps {s}")
    best = min(got, key=lambda s: s.rtt_ns)
    return ClockOffset(peer, best.offset_ns, best.rtt_ns, got, lost)


def estimate_clock_offset(
    node: RingNode, peer: int, rounds: int = 16, timeout_s: float = 1.0, iteration: int = 0
) -> ClockOffset:
    """Ping ``peer`` ``rounds`` times over ``node``'s sockets and estimate its clock offset.

    The peer must be a connected :class:`RingNode` that is inside a ``recv``/``drain``/barrier
    (its transport answers pings itself). Application messages that arrive meanwhile are kept for
    ``node.recv()`` in their order; pings and pongs are logged as HEARTBEAT messages.

    Args:
        node: this node.
        peer: the peer's id (must be one of ``node.peers``).
        rounds: ping-pong rounds (≥ 1).
        timeout_s: how long to wait for each pong; a round without one counts as lost.
        iteration: stamped on the heartbeats.

    Raises:
        ConfigError: bad ``rounds`` / ``timeout_s``.
        TransportError: ``peer`` not connected, or not a single pong came back.
    """
    if not isinstance(node, RingNode):
        raise ConfigError("clock offsets are estimated over a RingNode (point-to-point replies)")
    if type(rounds) is not int or rounds < 1 or not timeout_s > 0:
        raise ConfigError(f"rounds={rounds!r} must be an int ≥ 1 and timeout_s={timeout_s!r} > 0")
    node._check_usable()
    if peer not in node.peers:
        raise TransportError(f"node {node.node_id} is not connected to peer {peer}")
    pongs = node._clock_pongs = {}
    samples: list[ClockSample] = []
    try:
        for _ in range(rounds):
            node._ping_token = token = node._ping_token + 1
            node.send(peer, Envelope(Kind.HEARTBEAT, node.node_id, peer, iteration, 0, {"clock_ping": token}))
            deadline = now_ns() + int(timeout_s * 1e9)
            while token not in pongs and (left := deadline - now_ns()) > 0:
                node._pump(max(1, left // 1_000_000))
            if token in pongs:
                samples.append(ClockSample(*pongs.pop(token)))
    finally:
        node._clock_pongs = None
    if not samples:
        raise TransportError(f"node {node.node_id}: no clock pong from peer {peer} in {rounds} rounds")
    return offset_from_samples(samples, peer, rounds - len(samples))


__all__ = ["ClockSample", "ClockOffset", "offset_from_samples", "estimate_clock_offset"]
