"""Stray, malformed, spoofed, replayed and oversize frames at live nodes and at the air port, over
real sockets on 127.0.0.1 (no mocks): each is counted by class and dropped, never delivered and never
fatal, and a well-formed message afterwards is still delivered. Receive queues stay within their
byte budget while a node does not read."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from protocol import (
    DEFAULT_LIMITS,
    BroadcastNode,
    ConfigError,
    Envelope,
    Kind,
    Limits,
    NodeKeys,
    ProtocolError,
    RingNode,
    airport,
    broadcast_barrier,
    decode,
    encode,
    generate_run_keys,
    recv_hwm,
    ring_barrier,
)
from protocol.security import make_client
from tests.protocol.test_codec import bad_frames

LIMITS = Limits(max_message_bytes=16 * 1024)


def _until(cond: Callable[[], bool], timeout_s: float = 20.0, step: Callable[[], Any] | None = None) -> bool:
    """Poll ``cond`` (running ``step`` between polls) until it holds or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        if step is not None:
            step()
        else:
            time.sleep(0.005)
    return True


def _raw(ctx: zmq.Context, kind: int, endpoint: str, keys: NodeKeys | None = None, server: int = 0) -> zmq.Socket:
    """An attacker's socket connected to ``endpoint`` (a CURVE client with ``keys`` if given)."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 10_000)
    sock.setsockopt(zmq.SNDHWM, 0)  # queue everything: the node reads only after the flood
    if kind == zmq.PUB:
        sock.setsockopt(zmq.XPUB_NODROP, 1)
    if keys is not None:
        make_client(sock, keys, server)
    sock.connect(endpoint)
    return sock


def _expected_classes(frames: list[bytes], known: frozenset[int], limits: Limits) -> Counter[str]:
    """What the codec says of each frame (every one must be refused)."""
    out: Counter[str] = Counter()
    for f in frames:
        with pytest.raises(ProtocolError) as info:
            decode(f, known, limits)
        out[type(info.value).__name__] += 1
    return out


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.term()


# -- budget → RCVHWM --------------------------------------------------------------------------------


def test_receive_queue_depth_comes_from_the_byte_budget() -> None:
    assert recv_hwm(DEFAULT_LIMITS) == 1  # 128 MiB: one 64 MiB frame queued, one being read
    assert recv_hwm(Limits(max_message_bytes=1 << 20), 64 << 20) == 63
    assert recv_hwm(Limits(max_message_bytes=1024), 1 << 30, hwm=500) == 500  # capped by hwm
    assert recv_hwm(Limits(max_message_bytes=256 << 20)) == 1  # default budget grows to 2 frames
    with pytest.raises(ConfigError):
        recv_hwm(DEFAULT_LIMITS, 100 << 20)  # less than two frames cannot be kept
    with pytest.raises(ConfigError):
        RingNode(0, limits=Limits(max_message_bytes=1 << 20), recv_budget_bytes=1 << 20)
    with RingNode(0, limits=Limits(max_message_bytes=1 << 20), recv_budget_bytes=8 << 20) as node:
        assert node.recv_hwm == 7 and node._in.getsockopt(zmq.MAXMSGSIZE) == 1 << 20


# -- sequence numbers: replays and duplicates ---------------------------------------------------------


def test_replays_and_duplicates_are_dropped_and_forward_jumps_are_gaps(ctx: zmq.Context) -> None:
    with RingNode(0, extra_senders=[3]) as node:
        push = _raw(ctx, zmq.PUSH, node.endpoint)
        try:
            frames = [encode(Envelope(Kind.SCALAR_D, 3, 0, i, i, {"d": float(i)}, "", 10**9 + i)) for i in range(12)]
            for i in (0, 1, 2, 2, 1, 0, 3, 7, 5, 6, 7, 8):  # duplicates, a replay of old ones, a jump of 3
                push.send(frames[i])
            got = []
            while (env := node.recv(timeout_ms=1000)) is not None:
                got.append(env.seq)
            assert got == [0, 1, 2, 3, 7, 8]
            assert node.stats.rejected == Counter({"ReplayedMessage": 6})
            assert (node.stats.gaps, node.stats.reordered, node.stats.received) == (3, 0, 6)
            assert "seq 5 from 3" in str(node.last_error) or "seq 7 from 3" in str(node.last_error)
        finally:
            push.close()


def test_a_replayed_frame_of_a_real_peer_is_not_delivered_and_the_peer_carries_on(ctx: zmq.Context) -> None:
    """The attacker re-sends, byte for byte, frames a real peer sent (captured by a sniffer)."""
    a, b = RingNode(0, extra_senders=[1]), RingNode(1)
    sniff = ctx.socket(zmq.PULL)
    sniff.setsockopt(zmq.LINGER, 0)
    sniff_ep = f"tcp://127.0.0.1:{sniff.bind_to_random_port('tcp://127.0.0.1')}"
    try:
        b.connect({0: sniff_ep})  # b's link to node 0 passes through the attacker's sniffer
        for i in range(3):
            b.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, i, 0, {"p": np.arange(3.0) + i}))
        captured = [sniff.recv() for _ in range(3)]
        push = _raw(ctx, zmq.PUSH, a.endpoint)
        for f in captured:  # the sniffer forwards them: a gets each once
            push.send(f)
        assert [a.recv(timeout_ms=5000).iteration for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
        for f in captured * 5:  # then replays
            push.send(f)
        push.send(encode(Envelope(Kind.POWER_VECTOR, 1, 0, 3, 3, {"p": np.zeros(3)})))  # the next seq: delivered
        env = a.recv(timeout_ms=5000)
        assert env is not None and env.iteration == 3 and a.recv(timeout_ms=200) is None
        assert a.stats.rejected == Counter({"ReplayedMessage": 15}) and a.stats.received == 4
        push.close()
    finally:
        sniff.close()
        a.close()
        b.close()


def test_barrier_and_clock_traffic_are_not_taken_for_replays() -> None:
    from protocol import estimate_clock_offset

    nodes = [RingNode(i) for i in range(3)]
    peers = {nd.node_id: nd.endpoint for nd in nodes}
    for nd in nodes:
        nd.connect(peers)
    threads = [threading.Thread(target=ring_barrier, args=(nd, 20)) for nd in nodes]
    stop = threading.Event()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        def serve() -> None:
            while not stop.is_set():
                nodes[1].recv(timeout_ms=20)

        server = threading.Thread(target=serve)
        server.start()
        est = estimate_clock_offset(nodes[0], 1, rounds=10, timeout_s=5.0)
        stop.set()
        server.join(timeout=10)
        assert est.lost == 0
        nodes[0].send(2, Envelope(Kind.POWER_VECTOR, 0, 2, 1, 0, {"p": np.ones(2)}))
        env = nodes[2].recv(timeout_ms=5000)
        assert env is not None and env.seq == 1  # seq 0 of the link was the barrier's HELLO
        for nd in nodes:
            assert not nd.stats.rejected and nd.stats.gaps == 0
    finally:
        stop.set()
        for nd in nodes:
            nd.close()


# -- floods at live nodes --------------------------------------------------------------------------


def _attack_frames(known: frozenset[int], seed: int) -> tuple[list[bytes], Counter[str]]:
    """Malformed, truncated, unknown-kind, unknown-sender ... frames within the size limit, and what
    the codec calls each."""
    frames = [f for f in bad_frames(3000, seed=seed, limits=LIMITS) if len(f) <= LIMITS.max_message_bytes]
    rng = np.random.default_rng(seed)
    frames += [rng.bytes(int(rng.integers(0, 64))) for _ in range(300)]  # short random bytes
    good = encode(Envelope(Kind.POWER_VECTOR, 1, 0, 5, 99, {"p": np.ones(4)}))
    frames += [good[: int(rng.integers(0, len(good)))] for _ in range(300)]  # truncated
    frames += [encode(Envelope(Kind.SCALAR_D, int(s), 0, 0, 0, {"d": 1.0})) for s in rng.integers(50, 10**6, 300)]
    return frames, _expected_classes(frames, known, LIMITS)


def _garbage_connections(endpoint: str, n: int, seed: int) -> None:
    """Raw TCP connections that write random bytes (no ZMTP greeting) and hang up. Without CURVE,
    libzmq takes a stream that does not start like ZMTP 3 for a ZMTP 1.0 peer: its bytes may come
    out as frames (which the node then refuses like any other)."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    rng = np.random.default_rng(seed)
    for i in range(n):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            try:
                s.sendall(rng.bytes(int(rng.integers(1, 600)) if i else 0))  # the first: no greeting at all
            except OSError:
                pass  # the node may hang up first


def _oversize(sock: zmq.Socket, n: int) -> None:
    for _ in range(n):
        sock.send(b"\x95" + b"x" * (LIMITS.max_message_bytes + 100))


def test_a_flood_at_a_live_ring_node_is_counted_by_class_and_the_node_keeps_working(ctx: zmq.Context) -> None:
    a, b = RingNode(0, limits=LIMITS, extra_senders=[5]), RingNode(1, limits=LIMITS)
    peers = {0: a.endpoint, 1: b.endpoint}
    a.connect(peers)
    b.connect(peers)
    junk = _raw(ctx, zmq.PUSH, a.endpoint)
    big = _raw(ctx, zmq.PUSH, a.endpoint)
    try:
        b.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, 0, 0, {"p": np.arange(3.0)}))
        first = a.recv(timeout_ms=5000)
        assert first is not None and first.seq == 0
        frames, expected = _attack_frames(a.known_senders, seed=4)
        replay = encode(first)  # the real frame, byte for byte
        for i, f in enumerate(frames):
            junk.send(f)
            if i % 10 == 0:
                junk.send(replay)
        expected["ReplayedMessage"] += -(-len(frames) // 10)
        b.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, 1, 0, {"p": np.arange(4.0)}))  # the real peer, after all that
        env = a.recv(timeout_ms=20_000)
        assert env is not None and env.sender == 1 and env.iteration == 1 and env.payload["p"].tolist() == [0, 1, 2, 3]
        assert _until(lambda: a.stats.rejected == expected, step=lambda: a.recv(10)), (a.stats.rejected, expected)
        assert a.stats.received == 2 and a.stats.gaps == 0 and a.stats.disconnects == 0
        # a frame over MAXMSGSIZE cuts its connection (unseen by the node, counted as a disconnect);
        # the sender reconnects by itself, and what it sends then arrives
        c0 = a.stats.connections
        _oversize(big, 1)
        assert _until(lambda: a.stats.disconnects == 1 and a.stats.connections == c0 + 1, step=lambda: a.recv(10))
        big.send(encode(Envelope(Kind.POWER_VECTOR, 5, 0, 2, 0, {"p": np.zeros(1)})))  # a known id of its own
        env = a.recv(timeout_ms=20_000)
        assert env is not None and env.sender == 5 and a.stats.rejected == expected
        # raw TCP garbage: refused at the handshake, or (ZMTP 1.0 fallback) refused as frames
        _garbage_connections(a.endpoint, 20, seed=4)
        assert _until(lambda: a.stats.disconnects >= 1 + 20, step=lambda: a.recv(10))
        assert a.stats.handshake_failures >= 1 and a.stats.received == 3
        b.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, 3, 0, {"p": np.zeros(1)}))
        env = a.recv(timeout_ms=20_000)
        assert env is not None and env.iteration == 3 and a.stats.received == 4
    finally:
        junk.close()
        big.close()
        a.close()
        b.close()


def _broadcast_pair(**kw: Any) -> tuple[BroadcastNode, BroadcastNode]:
    nodes = (BroadcastNode(0, limits=LIMITS, **kw.get("a", {})), BroadcastNode(1, limits=LIMITS, **kw.get("b", {})))
    peers = {nd.node_id: nd.endpoint for nd in nodes}
    for nd in nodes:
        nd.connect(peers)
    threads = [threading.Thread(target=broadcast_barrier, args=(nd, 20)) for nd in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return nodes


def _joined_publisher(ctx: zmq.Context, node: BroadcastNode, keys: NodeKeys | None = None) -> zmq.Socket:
    """An attacker's PUB connected to ``node``'s inbox, once the node's subscription reached it
    (probe frames until one is counted; the probes are then taken off the node's counters)."""
    pub = _raw(ctx, zmq.PUB, node.endpoint, keys)
    assert _until(lambda: node.stats.rejected["MalformedMessage"] > 0, step=lambda: (pub.send(b"\xc1"), node.drain()))
    time.sleep(0.05)
    node.drain()
    node.stats.rejected.clear()
    return pub


def test_a_flood_at_a_live_broadcast_node_is_counted_by_class_and_the_node_keeps_working(ctx: zmq.Context) -> None:
    a, b = _broadcast_pair()
    pub = _joined_publisher(ctx, a)
    try:
        b.publish(Envelope(Kind.SCALAR_D, 1, -1, 0, 0, {"d": 0.5}))
        first = a.recv(timeout_ms=5000)
        assert first is not None and first.sender == 1
        frames, expected = _attack_frames(a.known_senders, seed=5)
        replay = encode(first)
        for i, f in enumerate(frames):
            pub.send(f)
            if i % 10 == 0:
                pub.send(replay)
        expected["ReplayedMessage"] += -(-len(frames) // 10)
        b.publish(Envelope(Kind.SCALAR_D, 1, -1, 1, 0, {"d": 0.75}))
        env = a.recv(timeout_ms=20_000)
        assert env is not None and env.sender == 1 and env.payload["d"] == 0.75
        assert _until(lambda: a.stats.rejected == expected, step=lambda: a.recv(10)), (a.stats.rejected, expected)
        assert a.stats.gaps == 0 and a.stats.disconnects == 0
        c0 = a.stats.connections
        _oversize(pub, 1)
        assert _until(lambda: a.stats.disconnects == 1 and a.stats.connections == c0 + 1, step=lambda: a.recv(10))
        _garbage_connections(a.endpoint, 10, seed=5)
        assert _until(lambda: a.stats.disconnects >= 1 + 10, step=lambda: a.recv(10))
        expected = Counter(a.stats.rejected)
        # a publisher cut for an oversize frame reconnects; once subscribed again, it is heard
        assert _until(lambda: a.stats.rejected["MalformedMessage"] > expected["MalformedMessage"],
                      step=lambda: (pub.send(b"\xc1"), a.drain()))  # fmt: skip
        b.publish(Envelope(Kind.SCALAR_D, 1, -1, 2, 0, {"d": 1.0}))
        env = a.recv(timeout_ms=5000)
        assert env is not None and env.iteration == 2
    finally:
        pub.close()
        a.close()
        b.close()


# -- CURVE: the sender id is bound to the connection --------------------------------------------------


def test_curve_binds_the_sender_id_to_the_key_of_its_connection(ctx: zmq.Context) -> None:
    keys = generate_run_keys(range(3))
    server, other = RingNode(0, curve=keys[0], extra_senders=[1]), RingNode(2, curve=keys[2])
    # node 1's key in an attacker's hands (a run member gone rogue): it may speak as 1 only
    rogue = _raw(ctx, zmq.PUSH, server.endpoint, keys[1])
    try:
        server.connect({2: other.endpoint})
        other.connect({0: server.endpoint})
        rogue.send(encode(Envelope(Kind.SCALAR_D, 1, 0, 0, 0, {"d": 1.0})))
        for seq in range(5, 10):  # as node 2, with seqs ahead of node 2's own
            rogue.send(encode(Envelope(Kind.SCALAR_D, 2, 0, 0, seq, {"d": -1.0})))
        rogue.send(encode(Envelope(Kind.SCALAR_D, 1, 0, 0, 0, {"d": 1.0})))  # a replay of its own
        other.send(0, Envelope(Kind.SCALAR_D, 2, 0, 0, 0, {"d": 2.0}))  # the real node 2, seq 0
        got = [server.recv(timeout_ms=5000) for _ in range(2)]
        assert sorted((e.sender, e.payload["d"]) for e in got if e) == [(1, 1.0), (2, 2.0)]
        assert server.recv(timeout_ms=300) is None
        assert server.stats.rejected == Counter({"SpoofedSender": 5, "ReplayedMessage": 1})
        assert server.stats.gaps == 0  # the spoofed seqs never moved node 2's expectation
    finally:
        rogue.close()
        server.close()
        other.close()


def test_curve_broadcast_binds_the_publisher_id_to_its_key(ctx: zmq.Context) -> None:
    keys = generate_run_keys(range(3))
    a, b = _broadcast_pair(a={"curve": keys[0], "extra_senders": [2]}, b={"curve": keys[1]})
    rogue = _joined_publisher(ctx, a, keys[2])  # node 2's key: a member, which may speak as 2 only
    try:
        for seq in range(3):
            rogue.send(encode(Envelope(Kind.SCALAR_D, 1, -1, 0, 100 + seq, {"d": -1.0})))  # as node 1
        rogue.send(encode(Envelope(Kind.SCALAR_D, 2, -1, 0, 0, {"d": 2.0})))
        b.publish(Envelope(Kind.SCALAR_D, 1, -1, 0, 0, {"d": 1.0}))
        got = [a.recv(timeout_ms=5000) for _ in range(2)]
        assert sorted((e.sender, e.payload["d"]) for e in got if e) == [(1, 1.0), (2, 2.0)]
        assert a.recv(timeout_ms=300) is None
        assert a.stats.rejected == Counter({"SpoofedSender": 3})
    finally:
        rogue.close()
        a.close()
        b.close()


# -- bytes held while a node does not read ---------------------------------------------------------

_FLOOD = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.SNDHWM, 1)
s.setsockopt(zmq.SNDTIMEO, 1500)
s.connect(sys.argv[1])
frame = b"\\x90" * int(sys.argv[2])
sent = 0
try:
    for _ in range(int(sys.argv[3])):
        s.send(frame)
        sent += 1
except zmq.Again:
    pass
print(sent, flush=True)
sys.stdin.readline()
"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _flood_rss(budget: int, frame_bytes: int, frames: int) -> tuple[int, int]:
    """RSS growth of this process while another process floods a node that does not read, and how
    many frames the node then reads."""
    limits = Limits(max_message_bytes=frame_bytes + 64)
    with RingNode(0, limits=limits, recv_budget_bytes=budget) as node:
        rss0 = _rss()
        proc = subprocess.Popen([sys.executable, "-c", _FLOOD, node.endpoint, str(frame_bytes), str(frames)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdin is not None
            sent = int(proc.stdout.readline())
            grown = _rss() - rss0
            assert node.recv(timeout_ms=2000) is None  # the frames are not envelopes: each is counted
            n = sum(node.stats.rejected.values())
            proc.stdin.write("\n")  # the sender may go now (its queue is empty)
            proc.stdin.flush()
        finally:
            proc.wait(timeout=30)
        assert n == sent  # nothing the sender sent is lost
    return grown, n


def test_a_node_that_does_not_read_holds_no_more_than_its_budget() -> None:
    mib = 1 << 20
    grown, n = _flood_rss(budget=8 * mib, frame_bytes=mib, frames=120)
    assert grown < 8 * mib + 4 * mib, grown / mib  # the budget, plus slack for this process's own churn
    assert n >= 7  # the queue took what the budget allows (the rest waited at the sender)
    # the same flood with a budget large enough to take it all: the measurement does see growth
    grown_big, n_big = _flood_rss(budget=400 * mib, frame_bytes=mib, frames=120)
    assert grown_big > 60 * mib and n_big == 120


# -- the air port ----------------------------------------------------------------------------------


@pytest.fixture
def air() -> Iterator[tuple[airport.Hub, airport.LinkPort]]:
    hub, port = airport.Hub(max_frame_bytes=1 << 16), airport.LinkPort(max_frame_bytes=1 << 16)
    hub.connect({0: port.endpoint})
    port.connect({-2: hub.endpoint})
    yield hub, port
    hub.close()
    port.close()


def _bad_air_frames(rng: np.random.Generator) -> list[list[bytes]]:
    """Multipart messages that are not replies: junk, headers of every op with wrong shapes."""
    rep = airport._REP
    out: list[list[bytes]] = [[b"\x0b\x00\x00\x00\x00"], [b""], [rng.bytes(9), rng.bytes(3)]]
    out += [[rng.bytes(int(rng.integers(0, 40)))] for _ in range(50)]
    out += [[rep.pack(airport.REPLY, 1, 0)]]  # too few frames
    out += [[rep.pack(airport.REPLY, 1, 0), b"\x00" * 3, b"", b"", b""]]  # bad link header
    out += [[rep.pack(airport.REPLY, 1, 0), airport._LINK.pack(0, 1), b"\x00" * 8, b"", b""]]  # odd schedule
    out += [[rep.pack(airport.REPLY, 1, 0), airport._LINK.pack(0, 1), b"", b"\x00" * 16, b""]]  # partial row
    out += [[rep.pack(airport.REPLY, 1, 0), airport._LINK.pack(-1, 1), b"", b"", b""]]  # negative link
    out += [[rep.pack(airport.REPLY, -3, 0)], [rep.pack(99, 0, 0)], [rep.pack(airport.ROWS, -1, 0), b"\x00" * 88]]
    out += [[rep.pack(airport.ERROR, -1, 0), b"\xff\xfe not utf-8"], [rep.pack(airport.ERROR, 5, 0), b"x"]]
    out += [[rep.pack(airport.REPLY, 1, 0), airport._LINK.pack(7, 1), b"", b"", b""]]  # no command outstanding
    return out


def test_stray_frames_at_the_hub_are_counted_and_the_reply_still_comes(air: Any, ctx: zmq.Context) -> None:
    hub, port = air
    rng = np.random.default_rng(0)
    bad = _bad_air_frames(rng)
    push = _raw(ctx, zmq.PUSH, hub.endpoint)
    try:
        push.send(b"\x01\x02\x03\x04\x05")  # the 5-byte frame that used to end a run
        for parts in bad:
            push.send_multipart(parts)
        push.send(b"x" * (1 << 17))  # over max_frame_bytes: the connection is cut, unseen
        assert _until(lambda: sum(hub.rejected.values()) == 1 + len(bad), step=lambda: hub.recv(timeout_ms=20))
        assert hub.recv(timeout_ms=100) is None  # waits out its timeout, never raises
        hub.send(0, airport.STEP, 5, [3, 4], np.ones((2, 6)))
        op, t, ids, payload = port.recv()
        assert (op, t, ids.tolist(), payload.shape) == (airport.STEP, 5, [3, 4], (12,))
        rows = np.zeros((2, airport.ROW_FIELDS), dtype=np.int64)
        reply = [(3, 1, np.ones((2, 4)), rows, np.zeros(3)), (4, 1, np.ones((2, 4)), rows, np.zeros(3))]
        port.reply_step(reply)
        reps = hub.recv(timeout_ms=10_000)
        assert reps is not None and [r[0] for r in reps] == [3, 4] and reps[0][2].shape == (2, 4)
        port.reply_step(reply)  # the same reply again (a replay): no command is outstanding for it
        assert hub.recv(timeout_ms=500) is None
        counts = hub.counts()
        assert counts["air_frames_rejected"] == 1 + len(bad) + 1 and counts["air_frames_from_links"] == 1
        assert hub.rejected["unexpected reply"] == 2
        # SETTLE, with junk arriving while the hub gathers the rows
        hub.send(0, airport.SETTLE, 0, [], np.zeros(5))
        assert port.recv()[0] == airport.SETTLE
        push2 = _raw(ctx, zmq.PUSH, hub.endpoint)
        push2.send(b"\x05" * 5)
        push2.send_multipart([airport._REP.pack(airport.ROWS, -1, 0), b"\x00" * 7])
        port.reply_rows(rows)
        got = hub.gather_rows(1, lambda: None)
        assert len(got) == 1 and got[0].shape == (2, airport.ROW_FIELDS)
        assert _until(lambda: hub.counts()["air_frames_rejected"] == 1 + len(bad) + 1 + 2,
                      step=lambda: hub.recv(timeout_ms=20))  # fmt: skip
        assert hub.counts()["air_frames_from_links"] == 2
        push2.close()
    finally:
        push.close()


def test_an_error_reply_of_an_actor_still_raises(air: Any) -> None:
    hub, port = air
    hub.send(0, airport.STEP, 0, [1], np.ones(3))
    port.recv()
    try:
        raise ValueError("actor boom")
    except ValueError as exc:
        port.reply_error(exc)
    with pytest.raises(RuntimeError, match="actor boom"):
        hub.recv(timeout_ms=10_000)


def test_stray_frames_at_a_link_port_are_counted_and_the_command_still_comes(air: Any, ctx: zmq.Context) -> None:
    hub, port = air
    push = _raw(ctx, zmq.PUSH, port.endpoint)
    try:
        cmd = airport._CMD
        bad = [[b"\x01\x02\x03\x04\x05"], [cmd.pack(airport.STEP, 0), b"\x00" * 8], [cmd.pack(77, 0), b"", b""],
               [cmd.pack(airport.STEP, 0), b"\x00" * 7, b""], [cmd.pack(airport.STEP, 0), b"", b"\x00" * 8],
               [cmd.pack(airport.STEP, -5), b"\x00" * 8, b"\x00" * 8],
               [cmd.pack(airport.STEP, 0), b"\x00" * 16, b"\x00" * 24]]  # fmt: skip
        for parts in bad:
            push.send_multipart(parts)
        # a well-formed command after them on the same connection (FIFO): it comes out, the rest counted
        push.send_multipart([cmd.pack(airport.STEP, 1234), np.array([0], "<i8").tobytes(), b"\x00" * 8])
        op, t, ids, payload = port.recv()
        assert (op, t, ids.tolist()) == (airport.STEP, 1234, [0]) and port.rejected["command"] == len(bad)
        push.send(b"y" * (1 << 17))  # oversize: its connection is cut, unseen
        hub.send(0, airport.STEP, 9, [2], np.arange(4.0))
        op, t, ids, payload = port.recv()
        assert (op, t, ids.tolist(), payload.tolist()) == (airport.STEP, 9, [2], [0.0, 1.0, 2.0, 3.0])
        assert port.rejected["command"] == len(bad)
    finally:
        push.close()
