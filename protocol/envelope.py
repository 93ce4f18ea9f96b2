"""Message envelope, the fixed enumeration of message kinds, and reserved node ids.

An :class:`Envelope` is an immutable named tuple (cheap to build on the hot path: no
validation here; the codec validates everything that comes from outside).
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import NamedTuple

import numpy as np

SCHEMA_VERSION: int = 1
"""Wire schema version written by :func:`protocol.encode`; the only one :func:`protocol.decode` accepts."""

BROADCAST: int = -1
"""Receiver id of a message addressed to all peers (or all graph neighbours) of the sender."""

COORDINATOR: int = -2
"""Node id of the run's coordinator (the driver) when it sends or receives messages."""


class Kind(IntEnum):
    """Every kind of message that moves in a run (fixed; the wire carries the integer value).

    Values are part of the wire schema: never renumber, only append.
    """

    POWER_VECTOR = 1  # round-robin TRPO: powers chosen so far, passed to the next BS on the ring
    SCALAR_D = 2  # zeroth-order: d_i (measured utility difference) broadcast to neighbours
    RELAY_D = 3  # zeroth-order graph mode: d_j received from others and relayed (with origin, iteration)
    CSI_UPLOAD = 4  # centralized TRPO: a BS's local CSI to the central agent (K·B² values per slot)
    POWER_ASSIGNMENT = 5  # centralized TRPO: the central agent returns each BS its K powers
    GRADIENT = 6  # TRPO: a BS's share of the policy gradient g_i (via Ray, logged with this schema)
    FVP_REQUEST = 7  # TRPO: the vector v whose Fisher-vector product each BS must compute
    FVP = 8  # TRPO: a BS's share of the Fisher-vector product F_i v
    PARAMETERS = 9  # TRPO: accepted (or line-search candidate) policy parameters
    FL_UPLOAD = 10  # federated learning: a BS's local parameters sent for averaging
    FL_AVERAGE = 11  # federated learning: the averaged parameters sent back
    METRICS = 12  # scalar diagnostics to the coordinator (rewards, surrogate, KL, ...)
    HELLO = 13  # barrier phase 1: "I am up" (and, on PUB/SUB, "can you hear me?")
    READY = 14  # barrier phase 2: "I hear every peer I listen to"
    START = 15  # barrier phase 3: "everyone I publish to hears me; go"
    HEARTBEAT = 16  # liveness
    ERROR = 17  # a node reports a failure (payload: "reason" str)


CONTROL_KINDS: frozenset[int] = frozenset({Kind.HELLO, Kind.READY, Kind.START})
"""Barrier kinds; transports consume these and never hand them to the application."""

KIND_NAMES: tuple[str, ...] = tuple(Kind(i).name if i in Kind._value2member_map_ else "" for i in range(max(Kind) + 1))
"""``KIND_NAMES[int(kind)]`` is the kind's name (fast lookup used by the log)."""

PayloadValue = np.ndarray | int | float | str | bytes | bool | list
"""What a payload field may hold. Float arrays travel as float32, integer/bool arrays as int64;
lists hold only scalars (int, float, str, bytes, bool)."""

Payload = dict[str, PayloadValue]


class Envelope(NamedTuple):
    """One message.

    Attributes:
        kind: what the message is (:class:`Kind`).
        sender: node id of the sender (a BS index ≥ 0, or :data:`COORDINATOR`).
        receiver: node id of the receiver, :data:`BROADCAST` or :data:`COORDINATOR`.
        iteration: training iteration / round / slot batch index (≥ 0); the logical clock's tick.
        seq: sequence number (≥ 0); transports stamp it per link (ring) or per publisher
            (broadcast) so that loss and reordering are visible.
        payload: field name → value; arrays decode as read-only numpy arrays.
        run_id: identifier of the run (≤ 128 characters).
        t_send_ns: send time, integer nanoseconds of ``time.monotonic_ns()`` on the sender.
        version: wire schema version.
    """

    kind: Kind
    sender: int
    receiver: int
    iteration: int
    seq: int
    payload: Payload
    run_id: str = ""
    t_send_ns: int = 0
    version: int = SCHEMA_VERSION


def now_ns() -> int:
    """Current time of the monotonic clock, integer nanoseconds (the clock of every timestamp)."""
    return time.monotonic_ns()


__all__ = [
    "SCHEMA_VERSION",
    "BROADCAST",
    "COORDINATOR",
    "Kind",
    "CONTROL_KINDS",
    "KIND_NAMES",
    "Envelope",
    "Payload",
    "PayloadValue",
    "now_ns",
]
