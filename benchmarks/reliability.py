"""Reliability checks measured side by side: how the system ends when it is handed what it must refuse.

Sections (run all, or name some):

    python benchmarks/reliability.py                 # every section
    python benchmarks/reliability.py bad_inputs      # one section

* ``bad_inputs``: every bad command line of ``tests/deploy/test_bad_input.py`` (arguments, configs, gains
  files, output folders, run folders, checkpoints): how it ended (exit code, first stderr line), whether its
  folder changed, and the count of tracebacks (goal 0) and of cases that did not end as they must (exit 2,
  one line ``bsemu <command>: error: ...``, nothing written).
* ``frames``: frames at a live node. Random, truncated, malformed, oversize, spoofed, replayed and flood frames
  (and raw TCP garbage) at a live ``RingNode`` in its own process, without and with CURVE, and at the air port's
  ``Hub``, on 127.0.0.1: per attack the frames sent, how they ended (rejected and by which class, delivered,
  connection dropped, handshake refused, raised), the node's RSS growth while it does not read, and whether it
  still delivered a good message afterwards; load average before and after.
* ``faults``: a BS or link actor's process SIGKILLed (``run.max_restarts`` 0 and 1), the driver SIGKILLed, the driver
  interrupted (SIGINT), each in the middle of a small ``bsemu train`` / ``bsemu zo`` run: how it ended (exit code,
  its line), whether the run continued (the printed ``--resume``, or the restart) completed, equal to the same run
  uninterrupted (metrics rows and parameters, logical time), and whether actor processes were left running.
* ``loss``: messages lost vs logged at 0 / 5 / 10 / 20 % loss, for zeroth-order d messages (``algo.drop_prob``) and
  the execution phase's round-robin vectors (``links.loss``): sent, received, dropped, sent = received + dropped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]
_ROOT = Path(__file__).resolve().parents[1]


def bad_inputs() -> int:
    """Run the bad-input table; print one line per case and the totals. Returns the number of cases that did
    not end as they must (tracebacks included)."""
    from tests.deploy.test_bad_input import CASES, build_sources, run_cases

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bsemu-bad-inputs-") as tmp:
        sources = build_sources(Path(tmp) / "sources")
        t1 = time.perf_counter()
        results = run_cases(CASES, Path(tmp) / "cases", sources)
    width = max(len(c.name) for c in CASES)
    print(f"bad inputs: {len(CASES)} cases (run folders built in {t1 - t0:.1f} s, cases run in "
          f"{time.perf_counter() - t1:.1f} s)\n")
    print(f"{'case':<{width}}  exit  first line of stderr")
    for r in results:
        if r.skipped:
            print(f"{r.case.name:<{width}}  skip  ({r.skipped})")
            continue
        flag = "" if not r.problems() else "   <-- " + "; ".join(r.problems())
        print(f"{r.case.name:<{width}}  {r.outcome.code:>4}  {r.first_line[:160]}{flag}")
    ran = [r for r in results if not r.skipped]
    tracebacks = sum(r.traceback for r in ran)
    bad = [r for r in ran if r.problems()]
    other = sum(r.outcome.code != 2 for r in ran)
    changed = sum(bool(r.changed) for r in ran)
    print(f"\n{len(ran)} run, {len(results) - len(ran)} skipped; tracebacks: {tracebacks} (goal 0); exit code "
          f"other than 2: {other}; folders changed: {changed}; not as they must end: {len(bad)} (goal 0)")
    return len(bad)


# -- frames at a live node ---------------------------------------------------------------------------------------
# A RingNode in its own process reads all the time (as a BS's node does) and reports its counters and RSS; this
# process plays the attacker on 127.0.0.1 and a real peer beside it. Then the same against the coordinator's air
# port (Hub), with a link actor's port answering in a thread.

_LIMIT = 64 * 1024                      # the target's max_message_bytes in most rows (small: rows run fast)
_BUDGET = 8 * _LIMIT                    # its receive budget per connection: RCVHWM 7
_MiB = 1 << 20


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


class _Live:
    """A target process and a real peer (RingNode 1, in this process) connected to it."""

    def __init__(self, curve: dict[int, Any] | None = None, limit: int | None = _LIMIT, budget: int | None = _BUDGET,
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


def _push(ctx: Any, endpoint: str, keys: Any = None, hwm: int = 0) -> Any:
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


def _ended(d: dict[str, Any], hub: bool = False) -> str:
    parts = [f"{k} {v}" for k, v in sorted(d["rejected"].items())]
    if d.get("handshake_failures"):
        parts.append(f"handshake refused {d['handshake_failures']}")
    if d.get("raised"):
        parts.append(f"raised {d['raised']}")
    return ", ".join(parts) or "—"


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
    live = _Live()
    try:
        assert live.good_after(), "the target does not deliver before any attack"
        push = _push(ctx, live.endpoint)
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
        big = _push(ctx, live.endpoint, hwm=1)
        n_big = 10
        tot: dict[str, Any] = {"rejected": Counter(), "delivered": [], "disconnects": 0, "handshake_failures": 0}
        for _ in range(n_big):
            big.send(b"\x95" + rng.bytes(_LIMIT + int(rng.integers(1, 3 * _LIMIT))))
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
        flood = _push(ctx, live.endpoint, hwm=1)
        flood.setsockopt(zmq.SNDTIMEO, 50)
        payload = b"\x90" * (_LIMIT - 16)
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
        rows.append((f"flood of {_LIMIT // 1024} KiB frames, node not reading 3 s", sent, d, live.good_after(),
                     growth <= _BUDGET + 4 * _MiB,
                     f"RSS +{growth / _MiB:.1f} MiB while paused (budget {_BUDGET / _MiB:.1f} MiB, RCVHWM "
                     f"{live.rcvhwm})"))  # fmt: skip
        flood.close()
        # one multipart message of many parts: ZeroMQ's high-water mark counts it as one message
        parts = 200
        live.pause(3.0)
        mp_sock = _push(ctx, live.endpoint)
        mp_sock.send_multipart([payload] * parts)
        growth = live.paused_growth()
        d = live.settle(lambda d: sum(d["rejected"].values()) >= parts)
        d["rss_growth"] = growth
        rows.append((f"multipart flood, {parts} parts, node not reading 3 s", parts, d, live.good_after(),
                     growth > _BUDGET, f"RSS +{growth / _MiB:.1f} MiB: over the budget (known limit, see note)"))
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
    live = _Live(curve=keys, extra=(2,))
    try:
        assert live.good_after()
        outsider_pub, outsider_sec = zmq.curve_keypair()
        from protocol import NodeKeys

        outsider = NodeKeys(9, outsider_pub, outsider_sec, {0: keys[0].public, 9: outsider_pub})
        for name, sock_keys in (("CURVE on: client key not in the run", outsider), ("CURVE on: plain client", None)):
            s = _push(ctx, live.endpoint, sock_keys, hwm=1000)
            for _ in range(100):
                s.send(encode(Envelope(Kind.SCALAR_D, 2, 0, 0, 0, {"d": -1.0})), zmq.NOBLOCK)
            d = live.settle(lambda d: d["handshake_failures"] >= 1, timeout_s=10.0)
            rows.append((name, 100, d, live.good_after(), not d["delivered"] and d["handshake_failures"] >= 1,
                         f"handshakes refused; ZAP refusals {d['auth_refused']}"))
            s.close()
        rogue = _push(ctx, live.endpoint, keys[2])
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
        live = _Live(limit=None, budget=budget)
        try:
            s = _push(ctx, live.endpoint, hwm=1000)
            frame = b"\x90" * size
            live.pause(8.0)
            for _ in range(n):
                s.send(frame, copy=False)
            growth = live.paused_growth()
            d = live.settle(lambda d, n=n: sum(d["rejected"].values()) >= n, timeout_s=60.0)
            d["rss_growth"] = growth
            rows.append((f"{n} x 60 MB frames, node not reading 8 s, {label}", n, d, live.good_after(),
                         growth <= 128 * _MiB + 8 * _MiB if budget is None else True,
                         f"RSS +{growth / _MiB:.0f} MiB while paused (RCVHWM {live.rcvhwm})"))
            s.close()
        finally:
            live.close()
    ctx.term()
    return rows


def _hub_rows(rng: Any) -> list[tuple[str, int, dict[str, Any], bool, bool, str]]:
    """The same for the coordinator's air port: frames at a live Hub whose link actor answers in a thread."""
    import threading

    import numpy as np
    import zmq

    from protocol import COORDINATOR, airport

    hub, port = airport.Hub(max_frame_bytes=_LIMIT), airport.LinkPort(max_frame_bytes=_LIMIT)
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
    push = _push(ctx, hub.endpoint)
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
            big = _push(ctx, hub.endpoint)
            big.send(b"x" * (_LIMIT + 1))
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


def frames() -> int:
    """Frames at a live node: random, truncated, malformed, oversize, spoofed, replayed and flood frames at a live
    RingNode (no CURVE, then CURVE) and at a Hub on 127.0.0.1; one row per attack: frames sent, how they ended,
    whether the node still delivered a good message afterwards. Returns the rows that did not end as designed."""
    import numpy as np

    rng = np.random.default_rng(2026)
    print(f"load average {_load_average()}; target node: max_message_bytes {_LIMIT // 1024} KiB, receive budget "
          f"{_BUDGET // 1024} KiB per connection (rows with 60 MB frames: the defaults)\n")
    t0 = time.perf_counter()
    node = _node_rows(rng)
    hub = _hub_rows(rng)
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
          f"has no authentication.\nload average {_load_average()}; {time.perf_counter() - t0:.1f} s; rows not as "
          f"designed: {fails}")
    return fails


# -- faults: a dead actor, a killed or interrupted driver ------------------------------------------------------------
# Each row runs a real command line in a subprocess on a small run (logical time), faults it for real (SIGKILL to an
# actor's process, pid from meta.json; SIGKILL or SIGINT to the driver) once it has written 2 metrics rows, then
# continues it as the ending says (the printed --resume command), and compares it with the uninterrupted run.

_TRAIN = ["--config", "deploy/configs/demo.yaml", "--no-progress", "--set", "trpo.episodes=32", "--set",
          "policy.hidden=8", "--set", "trpo.cg_iters=3", "--set", "trpo.value_epochs=2", "--set", "run.eval_slots=0",
          "--set", "run.checkpoint_every=1", "--set", "run.iterations=8"]
_ZO = ["--config", "deploy/configs/zo_demo.yaml", "--no-progress", "--set", "scenario.n_links=3", "--set", "algo.b1=5",
       "--set", "algo.b2=5", "--set", "run.eval_every=4", "--set", "run.checkpoint_every=4", "--set",
       "run.eval_sequences=2", "--set", "run.eval_slots=4", "--set", "run.iterations=40"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.cli", *args]


def _run_cli(*args: str) -> Any:
    import subprocess

    return subprocess.run(_cli(*args), cwd=_ROOT, capture_output=True, text=True, timeout=1800)


def _fault(args: list[str], run: Path, what: str, rows: int = 2) -> tuple[int, str, list[int]]:
    """Start ``bsemu ARGS``; once ``run`` has ``rows`` metrics rows, fault it: ``what`` is an actor name of meta.json's
    placement (SIGKILL to its process), ``driver-kill`` (SIGKILL) or ``driver-int`` (SIGINT). Returns (exit code,
    stderr, the actors' pids of meta.json at the fault)."""
    import json
    import os
    import signal
    import subprocess

    p = subprocess.Popen(_cli(*args), cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        while p.poll() is None:
            text = (run / "metrics.csv").read_text() if (run / "metrics.csv").is_file() else ""
            if (run / "meta.json").is_file() and text.count("\n") - 1 >= rows:
                break
            time.sleep(0.02)
        if p.poll() is None:
            meta = json.loads((run / "meta.json").read_text())
            where = meta.get("placement")
            pids = [int(v["pid"]) for v in where.values() if "pid" in v] if isinstance(where, dict) else []
            if what == "driver-kill":
                p.send_signal(signal.SIGKILL)
            elif what == "driver-int":
                p.send_signal(signal.SIGINT)
            else:
                os.kill(int(meta["placement"][what]["pid"]), signal.SIGKILL)
        _, err = p.communicate(timeout=1800)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err, pids


def _alive(pids: list[int]) -> int:
    """How many of ``pids`` are still running processes (after a few seconds' grace)."""

    def running(q: int) -> bool:
        try:
            with open(f"/proc/{q}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    t_end = time.monotonic() + 10
    while True:
        left = [q for q in pids if running(q)]
        if not left or time.monotonic() > t_end:
            return len(left)
        time.sleep(0.2)


def _same_as(run: Path, ref: Path, command: str) -> bool:
    """metrics.csv (less its seconds) and the last checkpoint's parameters equal the uninterrupted run's."""
    import csv

    import numpy as np

    from deploy.rundir import RunDir

    def rows(d: Path) -> list[dict[str, str]]:
        with (d / "metrics.csv").open() as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    def params(d: Path) -> list[np.ndarray]:
        ck = RunDir.open(d).load_latest_checkpoint() or {}
        if command == "train":
            return [np.asarray(ck["theta"]), np.asarray(ck["phi"])]
        links = ck["trainer"]["links"]
        agents = links if isinstance(links, list) else links["agents"]
        return [np.asarray(a["theta"] if "theta" in a else a["agent"]["theta"]) for a in agents]

    try:
        return rows(run) == rows(ref) and all(np.array_equal(a, b) for a, b in zip(params(run), params(ref),
                                                                                   strict=True))
    except (OSError, KeyError, TypeError, ValueError):
        return False


def faults() -> int:
    """Faults through the command line: an actor killed (max_restarts 0 and 1), the driver SIGKILLed, the driver
    interrupted (SIGINT); how each ended, and whether the continued run completed equal to an uninterrupted one."""
    print(f"load average {_load_average()}; train: demo.yaml, 8 iterations, checkpoint every 1; zo: zo_demo.yaml, "
          f"3 links, 40 iterations, checkpoint every 4; every fault after 2 metrics rows\n")
    t0 = time.perf_counter()
    table, fails = [], 0
    with tempfile.TemporaryDirectory(prefix="bsemu-faults-") as tmp:
        base = Path(tmp)
        refs = {"train": base / "ref-train" / "run", "zo": base / "ref-zo" / "run"}
        for command, args in (("train", _TRAIN), ("zo", _ZO)):
            extra = ["--set", "run.backend=inproc"] if command == "train" else []
            r = _run_cli(command, *args, *extra, "--run-dir", str(refs[command]))   # inproc == ray in logical time
            if r.returncode != 0:
                print(f"reference {command} run failed: {r.stderr.strip()[-300:]}")
                return 1
        cases = [("train", "bs1", "ray", 0), ("train", "bs1", "ray", 1), ("zo", "link2", "ray", 0),
                 ("zo", "link2", "ray", 1), ("train", "driver-kill", "inproc", 0), ("zo", "driver-kill", "inproc", 0),
                 ("train", "driver-kill", "ray", 0), ("train", "driver-int", "ray", 0), ("zo", "driver-int", "ray", 0)]
        for k, (command, what, backend, restarts) in enumerate(cases):
            run = base / f"case{k}" / "run"
            args = [command, *(_TRAIN if command == "train" else _ZO), "--set", f"run.backend={backend}", "--set",
                    f"run.max_restarts={restarts}", "--run-dir", str(run)]
            code, err, pids = _fault(args, run, what)
            lines = [ln for ln in err.splitlines() if ln.startswith(f"bsemu {command}:")]
            last = lines[-1] if lines else (err.strip().splitlines() or ["(nothing)"])[-1]
            tb = "Traceback" in err
            restarted = [ln for ln in lines if "restart 1 of" in ln]
            how = f"exit {code}: {restarted[0] if restarted else last}"
            then, done = "—", code == 0
            if code != 0:
                resume = ["--resume", str(run), "--no-progress"]
                rr = _run_cli(command, *resume)
                then, done = f"`bsemu {command} --resume` exit {rr.returncode}", rr.returncode == 0
            equal = done and _same_as(run, refs[command], command)
            left = _alive(pids) if backend == "ray" else 0
            fault = {"bs1": "BS 1 actor SIGKILL", "link2": "link 2 actor SIGKILL", "driver-kill": "driver SIGKILL",
                     "driver-int": "driver SIGINT"}[what]
            if what in ("bs1", "link2") and restarts == 0:        # one line naming it and the resume command
                ended = code == 1 and " died (" in last and "error:" in last and f"--resume {run}" in last
            elif what in ("bs1", "link2"):                         # restarted by itself
                ended = code == 0 and bool(restarted)
            else:                                                  # SIGKILL: -9; SIGINT: 130, "interrupted"
                ended = code == -9 if what == "driver-kill" else code == 130 and "interrupted" in last
            designed = ended and not tb and done and equal and left == 0
            fails += not designed
            table.append((f"{fault}, max_restarts {restarts}" if what in ("bs1", "link2") else fault, command, backend,
                          how, then, done, equal, left, tb, designed))
    print("| fault | command | backend | how it ended | continued with | completed | equal to uninterrupted "
          "| actor processes left | traceback | as designed |")
    print("|---|---|---|---|---|---|---|---:|---|---|")
    for fault, command, backend, how, then, done, equal, left, tb, ok in table:
        print(f"| {fault} | {command} | {backend} | {how[:400]} | {then} | {'yes' if done else 'NO'} | "
              f"{'yes' if equal else 'NO'} | {left} | {'YES' if tb else 'no'} | {'yes' if ok else 'NO'} |")
    print(f"\nequal: metrics.csv rows less their seconds and the last checkpoint's parameters, against the same run "
          f"uninterrupted (inproc, logical time).\nload average {_load_average()}; {time.perf_counter() - t0:.1f} s; "
          f"rows not as designed: {fails}")
    return fails


# -- loss: messages lost on the links, as logged ----------------------------------------------------------------------
def _log_counts(path: Path, kinds: set[str]) -> dict[str, int]:
    import csv

    out = {"sent": 0, "received": 0, "dropped": 0}
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["kind"] in kinds:
                out[r["event"]] += 1
    return out


def loss() -> int:
    """Messages lost vs logged at 0 / 5 / 10 / 20 % loss: the zeroth-order d messages (``algo.drop_prob``, links as
    Ray actors, logical clock) and the execution phase's round-robin vectors (``links.loss``, Ray actors, wall
    clock): sent, received and dropped as messages.csv logs them, whether sent = received + dropped, the dropped
    share, and what the run itself counted (zo: metrics' ``dropped``; execute: summary's ``lost_messages``)."""
    import csv
    import json

    print(f"load average {_load_average()}\n")
    t0 = time.perf_counter()
    rows, fails = [], 0
    with tempfile.TemporaryDirectory(prefix="bsemu-loss-") as tmp:
        base = Path(tmp)
        trained = base / "trained" / "run"
        r = _run_cli("train", *_TRAIN[:-2], "--set", "run.iterations=2", "--set", "run.backend=inproc",
                     "--run-dir", str(trained))
        if r.returncode != 0:
            print(f"training the policy to execute failed: {r.stderr.strip()[-300:]}")
            return 1
        for p in (0.0, 0.05, 0.1, 0.2):
            run = base / f"zo-{p}" / "run"
            r = _run_cli("zo", *_ZO[:-2], "--set", "run.iterations=40", "--set", "algo.update=async", "--set",
                         f"algo.drop_prob={p}", "--set", "run.backend=ray", "--run-dir", str(run))
            if r.returncode != 0:
                rows.append(("zo d (SCALAR_D)", p, None, f"exit {r.returncode}: {r.stderr.strip()[-200:]}"))
                fails += 1
                continue
            c = _log_counts(run / "messages.csv", {"SCALAR_D", "RELAY_D"})
            with (run / "metrics.csv").open() as f:
                last = list(csv.DictReader(f))[-1]
            own = f"metrics: {int(float(last['messages']))} sent, {int(float(last['dropped']))} dropped"
            ok = c["sent"] == c["received"] + c["dropped"] and int(float(last["dropped"])) == c["dropped"] \
                and int(float(last["messages"])) == c["sent"] and (p > 0 or c["dropped"] == 0)
            fails += not ok
            rows.append(("zo d (SCALAR_D)", p, c, own + ("" if ok else "  <-- NOT AS DESIGNED")))
        for p in (0.0, 0.05, 0.1, 0.2):
            out = base / f"exec-{p}"
            r = _run_cli("execute", str(trained), "--slots", "300", "--set", f"links.loss={p}", "--out", str(out))
            if r.returncode != 0:
                rows.append(("execute POWER_VECTOR", p, None, f"exit {r.returncode}: {r.stderr.strip()[-200:]}"))
                fails += 1
                continue
            c = _log_counts(out / "messages.csv", {"POWER_VECTOR"})
            summ = json.loads((out / "summary.json").read_text())
            own = f"summary: lost_messages {summ['lost_messages']}, late {summ['late_messages']}"
            ok = c["sent"] == c["received"] + c["dropped"] and summ["lost_messages"] == c["dropped"] \
                and (p > 0 or c["dropped"] == 0)
            fails += not ok
            rows.append(("execute POWER_VECTOR", p, c, own + ("" if ok else "  <-- NOT AS DESIGNED")))
    print("| messages | loss | sent | received | dropped | neither | sent = received + dropped | dropped share | "
          "the run's own count |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for name, p, c, own in rows:
        if c is None:
            print(f"| {name} | {p:.0%} | — | — | — | — | — | — | {own} |")
            continue
        gap = c["sent"] - c["received"] - c["dropped"]
        share = c["dropped"] / c["sent"] if c["sent"] else 0.0
        print(f"| {name} | {p:.0%} | {c['sent']} | {c['received']} | {c['dropped']} | {gap} | "
              f"{'yes' if not gap else 'NO'} | {share:.3f} | {own} |")
    print("\nneither: sent but neither received nor dropped in the log (the execution phase's nodes stop after the "
          "last slot without draining: a vector still in flight, or queued unread, is never logged).")
    print(f"\nload average {_load_average()}; {time.perf_counter() - t0:.1f} s; rows not as designed: {fails}")
    return fails


def _load_average() -> str:
    import os

    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# name -> section; each returns the number of failures it found
SECTIONS: dict[str, Callable[[], int]] = {
    "bad_inputs": bad_inputs,
    "frames": frames,
    "faults": faults,
    "loss": loss,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", help=f"sections to run: {', '.join(SECTIONS)} (default: all)")
    args = ap.parse_args()
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    failures = 0
    for name in args.sections or list(SECTIONS):
        print(f"== {name} ==")
        failures += SECTIONS[name]()
        print()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
