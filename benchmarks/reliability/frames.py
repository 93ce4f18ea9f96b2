"""Frames at a live node: hostile frames at a ``RingNode`` (no CURVE, then CURVE, then 60 MB frames at the
defaults), and at the air port's ``Hub`` (``hub.py``); the table of how each attack ended."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.reliability.common import load_average
from benchmarks.reliability.hub import hub_rows
from benchmarks.reliability.live import BUDGET, LIMIT, Live, MiB, push_socket


def _mutants(rng: Any, n: int) -> list[bytes]:
    """msgpack arrays shaped like an envelope of the real peer with one field made invalid (version, kind,
    sender, receiver, iteration, seq, t_send_ns, payload): each must be refused, none is a valid envelope."""
    import msgpack

    from protocol import Envelope, Kind, encode

    wire = msgpack.unpackb(encode(Envelope(Kind.POWER_VECTOR, 1, 0, 3, 0, {"p": [1.0]}, "", 10**9)))
    bad: dict[int, list[Any]] = {0: [0, 2, 99, "1", 1.5, None], 1: [0, 18, 99, 1000, "x", -3], 3: ["x", -5, 1.5, None],
                                 4: ["x", -5, 2.5], 5: [-1, "x", 1.5], 6: [-1, "x", None], 7: [-1, "x", 0.5],
                                 8: ["x", 1, [1], {"a": [[1]]}, {"b": None}]}  # fmt: skip
    fields = sorted(bad)
    out = []
    for i in range(n):
        field = fields[i % len(fields)]
        w = list(wire)
        w[field] = bad[field][int(rng.integers(len(bad[field])))]
        out.append(msgpack.packb(w))
    return out


def _node_rows(rng: Any) -> list[tuple[str, int, dict[str, Any], bool, bool, str]]:
    """(category, frames sent, outcome delta, good message after, as it must end, note) per attack."""
    import socket as pysocket

    import zmq

    from protocol import Envelope, Kind, encode, generate_run_keys

    rows: list[tuple[str, int, dict[str, Any], bool, bool, str]] = []
    ctx = zmq.Context()
    live = Live()
    try:
        assert live.good_after(), "the target does not deliver before any attack"
        push = push_socket(ctx, live.endpoint)
        real = encode(Envelope(Kind.POWER_VECTOR, 1, 0, 7, 0, {"p": [0.5, 0.25]}))

        def frames_row(name: str, frames: list[bytes], note: str = "") -> None:
            for f in frames:
                push.send(f)
            d = live.settle(lambda d: sum(d["rejected"].values()) + d["received"] >= len(frames))
            ok = not d["delivered"] and sum(d["rejected"].values()) == len(frames)
            rows.append((name, len(frames), d, live.good_after(), ok, note))

        frames_row("random bytes", [rng.bytes(int(rng.integers(0, 300))) for _ in range(2000)])
        frames_row("truncated frames", [real[: int(rng.integers(0, len(real)))] for _ in range(2000)])
        frames_row("wrong version / kind / field", _mutants(rng, 1000))
        frames_row("spoofed sender, unknown id", [encode(Envelope(Kind.SCALAR_D, int(s), 0, 0, 0, {"d": 1.0}))
                                                  for s in rng.integers(100, 10**6, 1000)])  # fmt: skip
        frames_row("replayed (peer's id, a seq it used)", [real] * 1000)
        # frames over MAXMSGSIZE: one at a time, each cuts the attacker's connection, which reconnects
        big = push_socket(ctx, live.endpoint, hwm=1)
        n_big = 10
        tot: dict[str, Any] = {"rejected": Counter(), "delivered": [], "disconnects": 0, "handshake_failures": 0}
        for _ in range(n_big):
            big.send(b"\x95" + rng.bytes(LIMIT + int(rng.integers(1, 3 * LIMIT))))
            d = live.settle(lambda d: d["disconnects"] >= 1 and d["connections"] >= 1, timeout_s=10.0)
            tot["rejected"] += d["rejected"]
            tot["delivered"] += d["delivered"]
            tot["disconnects"] += d["disconnects"]
            tot["handshake_failures"] += d["handshake_failures"]
        rows.append(("oversize frames (> max_message_bytes)", n_big, tot, live.good_after(),
                     not tot["delivered"] and not tot["rejected"] and tot["disconnects"] == n_big,
                     "ZeroMQ cuts the connection before keeping the frame; the sender reconnects"))
        big.close()
        # raw TCP connections that do not speak ZMTP
        host, port = live.endpoint.removeprefix("tcp://").rsplit(":", 1)
        n_tcp = 50
        for i in range(n_tcp):
            with pysocket.create_connection((host, int(port)), timeout=5) as s:
                try:
                    s.sendall(rng.bytes(int(rng.integers(1, 600)) if i % 5 else 0))
                except OSError:
                    pass
        d = live.settle(lambda d: d["disconnects"] >= n_tcp)
        rows.append(("TCP garbage (no ZMTP greeting)", n_tcp, d, live.good_after(),
                     not d["delivered"] and d["disconnects"] >= n_tcp, "ZMTP 1.0 fallback: some bytes become frames"))
        # flood while the node does not read: frames of almost max size
        flood = push_socket(ctx, live.endpoint, hwm=1)
        flood.setsockopt(zmq.SNDTIMEO, 50)
        payload = b"\x90" * (LIMIT - 16)
        live.pause(3.0)
        sent, t_end = 0, time.monotonic() + 2.5
        while time.monotonic() < t_end:
            try:
                flood.send(payload)
                sent += 1
            except zmq.Again:
                pass
        growth = live.paused_growth()
        d = live.settle(lambda d: sum(d["rejected"].values()) >= sent)
        d["rss_growth"] = growth
        rows.append((f"flood of {LIMIT // 1024} KiB frames, node not reading 3 s", sent, d, live.good_after(),
                     growth <= BUDGET + 4 * MiB,
                     f"RSS +{growth / MiB:.1f} MiB while paused (budget {BUDGET / MiB:.1f} MiB, RCVHWM "
                     f"{live.rcvhwm})"))  # fmt: skip
        flood.close()
        # one multipart message of many parts: ZeroMQ's high-water mark counts it as one message
        parts = 200
        live.pause(3.0)
        mp_sock = push_socket(ctx, live.endpoint)
        mp_sock.send_multipart([payload] * parts)
        growth = live.paused_growth()
        d = live.settle(lambda d: sum(d["rejected"].values()) >= parts)
        d["rss_growth"] = growth
        rows.append((f"multipart flood, {parts} parts, node not reading 3 s", parts, d, live.good_after(),
                     growth > BUDGET, f"RSS +{growth / MiB:.1f} MiB: over the budget (known limit, see note)"))
        mp_sock.close()
        # spoofing a peer's own id without CURVE: nothing tells the frames apart (known limit, last: it desyncs)
        spoof = [encode(Envelope(Kind.POWER_VECTOR, 1, 0, 1, 10**6 + k, {"p": [9.0]})) for k in range(10)]
        for f in spoof:
            push.send(f)
        d = live.settle(lambda d: d["received"] >= len(spoof))
        after = live.good_after()
        d2 = live.settle(lambda d: True)
        d["rejected"] = d["rejected"] + d2["rejected"]
        rows.append(("spoofed sender, a peer's id, no CURVE", len(spoof), d, after,
                     bool(d["delivered"]) and not after,
                     "known limit: delivered (no per-connection identity without CURVE); the real peer's next "
                     "frames then look replayed"))
        push.close()
    finally:
        live.close()
    # CURVE: per-run keys; an outsider cannot connect, a member cannot speak for another
    keys = generate_run_keys([0, 1, 2])
    live = Live(curve=keys, extra=(2,))
    try:
        assert live.good_after()
        outsider_pub, outsider_sec = zmq.curve_keypair()
        from protocol import NodeKeys

        outsider = NodeKeys(9, outsider_pub, outsider_sec, {0: keys[0].public, 9: outsider_pub})
        for name, sock_keys in (("CURVE on: client key not in the run", outsider), ("CURVE on: plain client", None)):
            s = push_socket(ctx, live.endpoint, sock_keys, hwm=1000)
            for _ in range(100):
                s.send(encode(Envelope(Kind.SCALAR_D, 2, 0, 0, 0, {"d": -1.0})), zmq.NOBLOCK)
            d = live.settle(lambda d: d["handshake_failures"] >= 1, timeout_s=10.0)
            rows.append((name, 100, d, live.good_after(), not d["delivered"] and d["handshake_failures"] >= 1,
                         f"handshakes refused; ZAP refusals {d['auth_refused']}"))
            s.close()
        rogue = push_socket(ctx, live.endpoint, keys[2])
        frames = [encode(Envelope(Kind.SCALAR_D, 1, 0, 0, 10**6 + k, {"d": -1.0})) for k in range(500)]
        for f in frames:
            rogue.send(f)
        d = live.settle(lambda d: sum(d["rejected"].values()) >= len(frames))
        rows.append(("CURVE on: member's key, another member's id", len(frames), d, live.good_after(),
                     not d["delivered"] and d["rejected"]["SpoofedSender"] == len(frames), "sender bound to the key"))
        rogue.close()
    finally:
        live.close()
    # the finding as reported: 60 MB frames at a node with the default limits and budget, not reading
    for budget, label in ((None, "default budget"), (1 << 40, "a 1 TiB budget (as good as none, as before)")):
        n, size = (20, 60_000_000) if budget is None else (10, 60_000_000)
        live = Live(limit=None, budget=budget)
        try:
            s = push_socket(ctx, live.endpoint, hwm=1000)
            frame = b"\x90" * size
            live.pause(8.0)
            for _ in range(n):
                s.send(frame, copy=False)
            growth = live.paused_growth()
            d = live.settle(lambda d, n=n: sum(d["rejected"].values()) >= n, timeout_s=60.0)
            d["rss_growth"] = growth
            rows.append((f"{n} x 60 MB frames, node not reading 8 s, {label}", n, d, live.good_after(),
                         growth <= 128 * MiB + 8 * MiB if budget is None else True,
                         f"RSS +{growth / MiB:.0f} MiB while paused (RCVHWM {live.rcvhwm})"))
            s.close()
        finally:
            live.close()
    ctx.term()
    return rows


def _ended(d: dict[str, Any], hub: bool = False) -> str:
    parts = [f"{k} {v}" for k, v in sorted(d["rejected"].items())]
    if d.get("handshake_failures"):
        parts.append(f"handshake refused {d['handshake_failures']}")
    if d.get("raised"):
        parts.append(f"raised {d['raised']}")
    return ", ".join(parts) or "—"


def frames() -> int:
    """Frames at a live node: random, truncated, malformed, oversize, spoofed, replayed and flood frames at a live
    RingNode (no CURVE, then CURVE) and at a Hub on 127.0.0.1; one row per attack: frames sent, how they ended,
    whether the node still delivered a good message afterwards. Returns the rows that did not end as designed."""
    import numpy as np

    rng = np.random.default_rng(2026)
    print(f"load average {load_average()}; target node: max_message_bytes {LIMIT // 1024} KiB, receive budget "
          f"{BUDGET // 1024} KiB per connection (rows with 60 MB frames: the defaults)\n")
    t0 = time.perf_counter()
    node = _node_rows(rng)
    hub = hub_rows(rng)
    fails = 0
    print("| frames at a live RingNode | sent | rejected (by class) | delivered | connections dropped "
          "| good message after | as designed | note |")
    print("|---|---:|---|---:|---:|---|---|---|")
    for name, sent, d, after, ok, note in node:
        fails += not ok
        print(f"| {name} | {sent} | {_ended(d)} | {len(d['delivered'])} | {d.get('disconnects', 0)} | "
              f"{'yes' if after else 'NO'} | {'yes' if ok else 'NO'} | {note} |")
    print("\n| frames at the Hub (air port) | sent | rejected (by reason) | accepted as replies | raised "
          "| good step after | as designed | note |")
    print("|---|---:|---|---:|---|---|---|---|")
    for name, sent, d, after, ok, note in hub:
        fails += not ok
        rej = ", ".join(f"{k} {v}" for k, v in sorted(d["rejected"].items())) or "—"
        print(f"| {name} | {sent} | {rej} | {len(d['delivered'])} | {d.get('raised') or '—'} | "
              f"{'yes' if after else 'NO'} | {'yes' if ok else 'NO'} | {note} |")
    print(f"\nKnown limits (as designed, documented in protocol.node / protocol.airport): without CURVE a frame "
          f"claiming a peer's id is that peer's as far as the node can tell; ZeroMQ's high-water mark counts a "
          f"multipart message as one, so one endless multipart message is bounded only per part; the air port "
          f"has no authentication.\nload average {load_average()}; {time.perf_counter() - t0:.1f} s; rows not as "
          f"designed: {fails}")
    return fails
