"""Frames at the coordinator's air port: a live ``Hub`` whose link actor's ``LinkPort`` answers in a thread."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.reliability.live import LIMIT, push_socket


def hub_rows(rng: Any) -> list[tuple[str, int, dict[str, Any], bool, bool, str]]:
    """The same for the coordinator's air port: frames at a live Hub whose link actor answers in a thread."""
    import threading

    import numpy as np
    import zmq

    from protocol import COORDINATOR, airport

    hub, port = airport.Hub(max_frame_bytes=LIMIT), airport.LinkPort(max_frame_bytes=LIMIT)
    hub.connect({0: port.endpoint})
    port.connect({COORDINATOR: hub.endpoint})
    empty = np.zeros((0, airport.ROW_FIELDS), dtype=np.int64)

    def actor() -> None:
        while True:
            op, _, ids, _ = port.recv()
            if op == airport.STOP:
                return
            if op == airport.SETTLE:
                port.reply_rows(empty)
            else:
                port.reply_step([(int(i), 1, np.ones((2, 3)), empty, np.zeros(4)) for i in ids])

    thread = threading.Thread(target=actor, daemon=True)
    thread.start()
    ctx = zmq.Context()
    push = push_socket(ctx, hub.endpoint)
    t = [0]

    def step_ok() -> bool:
        t[0] += 1
        hub.send(0, airport.STEP, t[0], [0, 1], np.ones((2, 5)))
        try:
            reps = hub.recv(timeout_ms=10_000)
        except RuntimeError:
            return False
        return reps is not None and [r[0] for r in reps] == [0, 1]

    rep, link = airport._REP, airport._LINK
    reply = [rep.pack(airport.REPLY, 2, 0)]
    for i in (0, 1):
        reply += [link.pack(i, 1), np.ones((2, 3)).tobytes(), b"", np.zeros(4).tobytes()]
    rows: list[tuple[str, int, dict[str, Any], bool, bool, str]] = []

    def row(name: str, messages: list[list[bytes]], note: str = "", raises: bool = False) -> None:
        r0 = Counter(hub.rejected)
        for m in messages:
            push.send_multipart(m)
        d: dict[str, Any] = {"rejected": Counter(), "delivered": [], "raised": ""}
        t_end = time.monotonic() + 10
        while sum(d["rejected"].values()) < len(messages) and time.monotonic() < t_end and not d["raised"]:
            try:
                got = hub.recv(timeout_ms=50)
                if got is not None:
                    d["delivered"].append(got)
            except RuntimeError as exc:
                d["raised"] = type(exc).__name__
            d["rejected"] = Counter(hub.rejected) - r0
        ok = bool(d["raised"]) if raises else (not d["delivered"] and not d["raised"]
                                               and sum(d["rejected"].values()) == len(messages))  # fmt: skip
        rows.append((name, len(messages), d, step_ok(), ok, note))

    try:
        assert step_ok(), "the hub does not work before any attack"
        row("the 5-byte frame of the report", [[b"\x01\x02\x03\x04\x05"]])
        row("random frames (1-3 parts)", [[rng.bytes(int(rng.integers(0, 60))) for _ in range(int(rng.integers(1, 4)))]
                                         for _ in range(500)])  # fmt: skip
        bad = [[rep.pack(airport.REPLY, 1, 0)], [rep.pack(airport.REPLY, 1, 0), b"\x00" * 3, b"", b"", b""],
               [rep.pack(airport.REPLY, 1, 0), link.pack(0, 1), b"\x00" * 8, b"", b""],
               [rep.pack(airport.REPLY, 1, 0), link.pack(0, 1), b"", b"\x00" * 16, b""],
               [rep.pack(airport.REPLY, 1, 0), link.pack(-1, 1), b"", b"", b""], [rep.pack(99, 0, 0)],
               [rep.pack(airport.ROWS, -1, 0), b"\x00" * 88]]  # fmt: skip
        row("malformed replies (shapes, ops, sizes)", bad * 20)
        row("well-formed replies nobody asked for", [[rep.pack(airport.REPLY, 1, 0), link.pack(int(i), 1), b"", b"",
                                                      b""] for i in rng.integers(2, 1000, 100)])  # fmt: skip
        row("a real reply, replayed", [reply] * 50, "no command outstanding for its links")
        row("ERROR frames that are not an actor's", [[rep.pack(airport.ERROR, -1, 0), b"\xff\xfe" + rng.bytes(20)],
                                                     [rep.pack(airport.ERROR, 3, 0), b"x"]] * 25)  # fmt: skip
        r0 = Counter(hub.rejected)
        for _ in range(5):
            big = push_socket(ctx, hub.endpoint)
            big.send(b"x" * (LIMIT + 1))
            time.sleep(0.05)
            big.close()
        ok = hub.recv(timeout_ms=300) is None
        rows.append(("oversize frames (> max_frame_bytes)", 5, {"rejected": Counter(hub.rejected) - r0,
                     "delivered": []}, step_ok(), ok, "cut by ZeroMQ, never seen by the hub"))  # fmt: skip
        row("a forged ERROR reply, well-formed", [[rep.pack(airport.ERROR, -1, 0), b"Traceback: forged"]],
            "raises like an actor's failure (known limit: no authentication on the air port)", raises=True)
        hub.send(0, airport.STOP)
        thread.join(timeout=10)
    finally:
        push.close()
        ctx.term()
        hub.close()
        port.close()
    return rows
