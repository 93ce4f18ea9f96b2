"""The live targets of the ``frames`` section: a ``RingNode`` in its own (spawned) process that reads all the time,
a real peer beside it in this process, and the attacker's PUSH sockets."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

# A RingNode in its own process reads all the time (as a BS's node does) and reports its counters and RSS; this
# process plays the attacker on 127.0.0.1 and a real peer beside it. Then the same against the coordinator's air
# port (Hub), with a link actor's port answering in a thread.

LIMIT = 64 * 1024                       # the target's max_message_bytes in most rows (small: rows run fast)
BUDGET = 8 * LIMIT                      # its receive budget per connection: RCVHWM 7
MiB = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _target(conn: Any, curve: Any, limit: int | None, budget: int | None, extra: list[int]) -> None:
    """The live node: RingNode 0, reading in a loop; commands over ``conn``: report, pause <s>, stop."""
    from protocol import DEFAULT_LIMITS, Limits, RingNode

    limits = DEFAULT_LIMITS if limit is None else Limits(max_message_bytes=limit)
    node = RingNode(0, limits=limits, curve=curve, recv_budget_bytes=budget, extra_senders=extra)
    conn.send((node.endpoint, node.recv_hwm))
    node.connect(conn.recv())
    delivered: list[tuple[int, int, int, int]] = []
    try:
        while True:
            if conn.poll(0):
                cmd, arg = conn.recv()
                if cmd == "report":
                    st = node.stats
                    conn.send({"rejected": dict(st.rejected), "received": st.received, "gaps": st.gaps,
                               "connections": st.connections, "disconnects": st.disconnects,
                               "handshake_failures": st.handshake_failures, "auth_refused": node.auth_refused,
                               "delivered": delivered, "rss": _rss()})
                    delivered = []
                elif cmd == "pause":  # do not read for ``arg`` seconds; report the peak RSS growth
                    rss0 = peak = _rss()
                    t_end = time.monotonic() + arg
                    while time.monotonic() < t_end:
                        peak = max(peak, _rss())
                        time.sleep(0.02)
                    conn.send(peak - rss0)
                else:
                    return
            env = node.recv(timeout_ms=5)
            if env is not None:
                delivered.append((env.sender, int(env.kind), env.seq, env.iteration))
    finally:
        node.close()


class Live:
    """A target process and a real peer (RingNode 1, in this process) connected to it."""

    def __init__(self, curve: dict[int, Any] | None = None, limit: int | None = LIMIT, budget: int | None = BUDGET,
                 extra: tuple[int, ...] = (5,)) -> None:
        import multiprocessing as mp

        from protocol import Limits, RingNode

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_target, args=(child, curve and curve[0], limit, budget, list(extra)),
                                daemon=True)
        self.proc.start()
        self.endpoint, self.rcvhwm = self.conn.recv()
        limits = Limits(max_message_bytes=limit) if limit else Limits()
        self.peer = RingNode(1, limits=limits, curve=curve and curve[1])
        self.peer.connect({0: self.endpoint})
        self.conn.send({1: self.peer.endpoint})
        self.totals: dict[str, Any] = {"rejected": Counter(), "received": 0, "disconnects": 0,
                                       "handshake_failures": 0, "auth_refused": 0, "connections": 0}
        self.it = 0

    def report(self) -> dict[str, Any]:
        self.conn.send(("report", None))
        return self.conn.recv()

    def settle(self, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
        """Reports until ``done(delta)`` holds (or ``timeout_s``, or nothing changed for 2 s): the change in
        the target's counters since the last settle, and the envelopes it delivered meanwhile."""
        delta: dict[str, Any] = {"rejected": Counter(), "delivered": []}
        t_end, last, quiet = time.monotonic() + timeout_s, None, time.monotonic()
        while True:
            r = self.report()
            delta["delivered"] += r["delivered"]
            delta["rejected"] = Counter(r["rejected"]) - self.totals["rejected"]
            for k in ("received", "disconnects", "handshake_failures", "auth_refused", "connections"):
                delta[k] = r[k] - self.totals[k]
            delta["rss"] = r["rss"]
            state = (sum(delta["rejected"].values()), delta["received"], delta["disconnects"])
            if state != last:
                last, quiet = state, time.monotonic()
            if done(delta) or time.monotonic() > t_end or time.monotonic() - quiet > 2.0:
                break
            time.sleep(0.05)
        self.totals = {"rejected": Counter(r["rejected"]), **{k: r[k] for k in ("received", "disconnects",
                       "handshake_failures", "auth_refused", "connections")}}  # fmt: skip
        return delta

    def good_after(self) -> bool:
        """The real peer sends one message: is it delivered (within 10 s)?"""
        from protocol import Envelope, Kind

        self.it += 1
        it = 1000 + self.it
        self.peer.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, it, 0, {"p": [0.5, 0.25]}))
        got = self.settle(lambda d: any(e[0] == 1 and e[3] == it for e in d["delivered"]), timeout_s=10.0)
        return any(e[0] == 1 and e[3] == it for e in got["delivered"])

    def pause(self, seconds: float) -> None:
        self.conn.send(("pause", seconds))

    def paused_growth(self) -> int:
        return int(self.conn.recv())

    def close(self) -> None:
        self.conn.send(("stop", None))
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
        self.peer.close()


def push_socket(ctx: Any, endpoint: str, keys: Any = None, hwm: int = 0) -> Any:
    import zmq

    from protocol.security import make_client

    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.setsockopt(zmq.SNDTIMEO, 20_000)
    if keys is not None:
        make_client(s, keys, 0)
    s.connect(endpoint)
    return s
