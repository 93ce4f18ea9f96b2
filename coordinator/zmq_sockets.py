"""The two socket set-ups the ray backends share (one inbound PULL per actor, PUSH to peers).

Linger 0 everywhere so that Context.term() never hangs (DESIGN §9). Sockets are created in the
actor process that uses them. (Next step: replace with protocol.RingNode / BroadcastNode.)
"""

from __future__ import annotations

import zmq


def bind_pull(host: str = "127.0.0.1") -> tuple[zmq.Context, zmq.Socket, str]:
    """A new context and a PULL socket bound to a random port on ``host``; returns its endpoint."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port(f"tcp://{host}")
    return ctx, pull, f"tcp://{host}:{port}"


def connect_push(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A PUSH socket with linger 0 connected to ``endpoint``."""
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(endpoint)
    return push
