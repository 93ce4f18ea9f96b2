"""The ``ProtocolError`` family: every way a frame or a transport can fail.

Decoding never raises anything else (no bare ``KeyError``/``TypeError``/``ValueError``):
a receiving loop catches ``ProtocolError``, counts it by class name and carries on.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error raised by the ``protocol`` package."""


class MalformedMessage(ProtocolError):
    """The frame is not a valid envelope: bad msgpack, wrong field type or range, bad array."""


class UnsupportedVersion(ProtocolError):
    """The envelope's schema version is not one this decoder understands."""


class UnknownKind(ProtocolError):
    """The envelope's kind is not a member of :class:`protocol.Kind`."""


class UnknownSender(ProtocolError):
    """The sender id is not one of the peers this receiver was told about."""


class MessageTooLarge(ProtocolError):
    """The frame, or one of its fields, exceeds a configured size limit (checked before allocation)."""


class ReplayedMessage(ProtocolError):
    """A well-formed envelope whose sequence number is lower than the next one expected from its
    sender: a replay or a duplicate (ZeroMQ's PUSH/PULL and PUB/SUB pipes are FIFO, so an honest
    sender never goes backwards). Counted and dropped by the transports, never delivered."""


class SpoofedSender(ProtocolError):
    """The envelope's ``sender`` is not the node id bound to the connection it came on (the
    CURVE key the peer authenticated with). Counted and dropped by the transports."""


class ConfigError(ProtocolError, ValueError):
    """A protocol setting (link model, limits, keys, graph) is invalid."""


class TransportError(ProtocolError):
    """A socket could not do its job: send timed out at the high-water mark, node used in the
    wrong process, unknown peer, closed node."""


class BarrierTimeout(TransportError):
    """The hello → ready → start barrier did not complete before its deadline."""


__all__ = [
    "ProtocolError",
    "MalformedMessage",
    "UnsupportedVersion",
    "UnknownKind",
    "UnknownSender",
    "MessageTooLarge",
    "ReplayedMessage",
    "SpoofedSender",
    "ConfigError",
    "TransportError",
    "BarrierTimeout",
]
