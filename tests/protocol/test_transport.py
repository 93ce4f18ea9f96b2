"""Transports over real sockets on 127.0.0.1 (no mocks): ring, broadcast, bad frames, CURVE,
emulated delays, and the log against the bytes that actually moved."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from protocol import (
    BroadcastNode,
    ConfigError,
    Envelope,
    Kind,
    Limits,
    LinkEmulator,
    LinkModel,
    MessageLog,
    NodeKeys,
    RingNode,
    TransportError,
    bind_host,
    broadcast_barrier,
    encode,
    frame_size,
    generate_run_keys,
    merge_summaries,
    node_address,
    now_ns,
    ring_barrier,
    summarize_csv,
)
from tests.protocol.helpers import ring_order, ring_worker, subscriber_worker
from tests.protocol.test_codec import bad_frames


def _env(kind: Kind = Kind.POWER_VECTOR, it: int = 0, **payload: Any) -> Envelope:
    return Envelope(kind, 0, 0, it, 0, payload)


def _pair(**kw: Any) -> Iterator[tuple[RingNode, RingNode]]:
    a, b = RingNode(0, **kw.get("a", {})), RingNode(1, **kw.get("b", {}))
    peers = {0: a.endpoint, 1: b.endpoint}
    a.connect(peers)
    b.connect(peers)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_importing_protocol_pulls_in_neither_torch_nor_ray() -> None:
    code = "import sys, protocol; assert not {'torch', 'ray'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_point_to_point_round_trip_and_stamping() -> None:
    for a, b in _pair(a={"run_id": "run-7"}):
        assert a.endpoint.startswith("tcp://127.0.0.1:")
        n = a.send(1, Envelope(Kind.POWER_VECTOR, 99, 99, 4, 99, {"p": np.arange(3.0)}))
        env = b.recv(timeout_ms=5000)
        assert env is not None and n == len(encode(env))
        assert (env.sender, env.receiver, env.iteration, env.seq, env.run_id) == (0, 1, 4, 0, "run-7")
        assert 0 < env.t_send_ns <= now_ns()
        assert b.recv(timeout_ms=20) is None
        with pytest.raises(TransportError):
            a.send(5, _env())  # not a peer


def test_bad_frames_through_a_socket_are_counted_and_the_next_good_message_is_served() -> None:
    limits = Limits(max_message_bytes=4096)
    node = RingNode(0, limits=limits, extra_senders=range(7))
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(node.endpoint)
    try:
        frames = bad_frames(10_000, seed=2, limits=limits)
        good = [encode(Envelope(Kind.SCALAR_D, 3, 0, i, i, {"d": i / 7})) for i in range(100)]
        sent = 0
        for i, frame in enumerate(frames):
            if len(frame) <= limits.max_message_bytes:  # larger ones cut the connection: see the oversize test
                push.send(frame)
                sent += 1
            if i % 100 == 99:
                push.send(good[i // 100])
        got = []
        while len(got) < 100:
            env = node.recv(timeout_ms=10_000)
            assert env is not None, f"stalled after {len(got)} good messages"
            got.append(env)
        assert [e.payload["d"] for e in got] == [i / 7 for i in range(100)]
        assert 8_000 < sent < 10_000 and sum(node.stats.rejected.values()) == sent
        assert set(node.stats.rejected) == {"MalformedMessage", "MessageTooLarge", "UnsupportedVersion",
                                            "UnknownKind", "UnknownSender"}  # fmt: skip
        assert node.stats.received == 100 and node.recv(timeout_ms=50) is None
        assert node.stats.disconnects == 0  # nothing over MAXMSGSIZE: the connection stayed up
    finally:
        push.close()
        ctx.term()
        node.close()


def _collect(up: Any, want: str, n: int, timeout: float) -> dict[int, Any]:
    out: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(out) < n:
        tag, i, value = up.get(timeout=max(0.1, deadline - time.monotonic()))
        assert tag == want
        out[i] = value
    return out


def test_ring_across_seven_processes_delivers_in_order(tmp_path: Path) -> None:
    n, rounds, seed = 7, 150, 11
    ctx = mp.get_context("spawn")
    up = ctx.Queue()
    downs = {i: ctx.Queue() for i in range(n)}
    procs = [
        ctx.Process(
            target=ring_worker, args=(i, n, rounds, seed, up, downs[i], str(tmp_path / f"bs{i}.csv")), daemon=True
        )  # fmt: skip
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        endpoints = _collect(up, "endpoint", n, 120)
        for q in downs.values():
            q.put(endpoints)
        results = _collect(up, "done", n, 120)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    for i, r in results.items():
        assert r["errors"] == [], (i, r["errors"][:5])
        assert (r["gaps"], r["reordered"], r["rejected"]) == (0, 0, 0)
    completed = dict(x for r in results.values() for x in r["completed"])
    assert completed == {rnd: ring_order(seed, rnd, n) for rnd in range(rounds)}
    # the log: every byte sent on a link was received on it, and the CSVs say the same
    merged = merge_summaries(r["summary"] for r in results.values())
    assert merged["totals"]["sent"] == merged["totals"]["received"]
    assert merged["per_kind"]["POWER_VECTOR"]["sent"]["count"] == rounds * (n - 1)
    assert merged["per_kind"]["HELLO"]["sent"]["count"] == n * (n - 1)
    for link, kinds in merged["per_link"].items():
        for kind, ev in kinds.items():
            assert ev["sent"] == ev["received"], (link, kind)
    from_csv = merge_summaries(summarize_csv(tmp_path / f"bs{i}.csv", node=i) for i in range(n))
    assert from_csv["per_link"] == merged["per_link"]


@pytest.mark.parametrize("n_msgs", [100_000])
def test_broadcast_to_seven_subscribers_loses_nothing(n_msgs: int) -> None:
    subs = list(range(1, 8))
    ctx = mp.get_context("spawn")
    up = ctx.Queue()
    downs = {i: ctx.Queue() for i in subs}
    procs = [ctx.Process(target=subscriber_worker, args=(i, 0, n_msgs, up, downs[i]), daemon=True) for i in subs]
    for p in procs:
        p.start()
    pub = BroadcastNode(0, neighbours=subs)
    try:
        endpoints = _collect(up, "endpoint", len(subs), 120)
        endpoints[0] = pub.endpoint
        for q in downs.values():
            q.put(endpoints)
        pub.connect(endpoints)
        broadcast_barrier(pub, timeout_s=60)
        t0 = time.monotonic()
        for i in range(n_msgs):
            pub.publish(Envelope(Kind.SCALAR_D, 0, -1, i // 100, 0, {"i": i, "d": 0.25}))
        results = _collect(up, "done", len(subs), 120)
        elapsed = time.monotonic() - t0
    finally:
        pub.close()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    for i, r in results.items():
        assert "error" not in r, r.get("error")
        assert (r["count"], r["bad"], r["gaps"], r["reordered"], r["extra"]) == (n_msgs, 0, 0, 0, None), i
        assert r["summary"]["per_kind"]["SCALAR_D"]["received"]["count"] == n_msgs
    assert pub.stats.sent >= n_msgs and elapsed < 100


def test_broadcast_barrier_in_a_graph_then_nothing_is_lost() -> None:
    """A 5-node ring graph (each node hears its two neighbours) started in threads."""
    n = 5
    nbrs = {i: {(i - 1) % n, (i + 1) % n} for i in range(n)}
    logs = {i: MessageLog(node=i) for i in range(n)}
    nodes = {i: BroadcastNode(i, neighbours=nbrs[i], log=logs[i]) for i in range(n)}
    peers = {i: nd.endpoint for i, nd in nodes.items()}
    for nd in nodes.values():
        nd.connect(peers)
    errors: list[BaseException] = []

    def go(nd: BroadcastNode) -> None:
        try:
            broadcast_barrier(nd, timeout_s=20)
            for it in range(200):
                nd.publish(Envelope(Kind.SCALAR_D, nd.node_id, -1, it, 0, {"d": float(it)}))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(nd,)) for nd in nodes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        for i, nd in nodes.items():
            got = [nd.recv(timeout_ms=5000) for _ in range(400)]
            assert all(e is not None for e in got) and nd.recv(timeout_ms=50) is None
            by_sender = {s: [e.iteration for e in got if e is not None and e.sender == s] for s in nbrs[i]}
            assert by_sender == {s: list(range(200)) for s in nbrs[i]}
            assert nd.stats.gaps == 0 and nd.peers == frozenset(nbrs[i])
    finally:
        for nd in nodes.values():
            nd.close()
    merged = merge_summaries(log.summary() for log in logs.values())
    assert merged["per_kind"]["SCALAR_D"]["sent"] == merged["per_kind"]["SCALAR_D"]["received"]
    assert merged["per_kind"]["SCALAR_D"]["sent"]["count"] == n * 2 * 200


def test_log_counts_and_bytes_equal_what_actually_moved(tmp_path: Path) -> None:
    """The sender's log against an independent raw socket counting the frames it got."""
    log = MessageLog(tmp_path / "a.csv", node=0)
    a = RingNode(0, log=log)
    ctx = zmq.Context()
    sniff = ctx.socket(zmq.PULL)
    sniff.setsockopt(zmq.LINGER, 0)
    port = sniff.bind_to_random_port("tcp://127.0.0.1")
    try:
        a.connect({1: f"tcp://127.0.0.1:{port}"})
        rng = np.random.default_rng(0)
        returned = 0
        for i in range(500):
            kind = list(Kind)[i % len(Kind)]
            returned += a.send(1, Envelope(kind, 0, 1, i // 50, 0, {"x": rng.random(int(rng.integers(1, 200)))}))
        frames = [sniff.recv() for _ in range(500)]
        assert sniff.poll(100) == 0
    finally:
        a.close()
        sniff.close()
        ctx.term()
    s = log.close()
    assert s["totals"]["sent"] == {"count": len(frames), "bytes": sum(map(len, frames))} == {
        "count": 500, "bytes": returned}  # fmt: skip
    # an in-process backend logging frame_size(env) of the stamped envelope logs the same bytes
    stamped = [frame_size(Envelope(*_decoded(f)[:9])) for f in frames]
    assert stamped == [len(f) for f in frames]
    assert summarize_csv(tmp_path / "a.csv", node=0) == s


def _decoded(frame: bytes) -> Envelope:
    from protocol import decode

    return decode(frame)


def test_curve_peer_without_an_allowed_key_is_refused() -> None:
    keys = generate_run_keys([0, 1])
    server = RingNode(0, curve=keys[0], extra_senders=[2])  # id 2 is known: the key is what is refused
    friend = RingNode(1, curve=keys[1])
    # an intruder with its own key pair who knows the server's public key
    pub, sec = zmq.curve_keypair()
    intruder = RingNode(2, curve=NodeKeys(2, pub, sec, {0: keys[0].public, 2: pub}), send_timeout_ms=200)
    ctx = zmq.Context()
    plain = ctx.socket(zmq.PUSH)
    plain.setsockopt(zmq.LINGER, 0)
    try:
        friend.connect({0: server.endpoint})
        intruder.connect({0: server.endpoint})
        plain.connect(server.endpoint)
        server.connect({1: friend.endpoint})
        for i in range(5):
            try:  # refused: its messages queue, then (once the refusal closes the pipe) sends time out
                intruder.send(0, Envelope(Kind.SCALAR_D, 2, 0, i, 0, {"d": -1.0}))
            except TransportError:
                pass
            plain.send(encode(Envelope(Kind.SCALAR_D, 2, 0, i, i, {"d": -2.0})), zmq.NOBLOCK)
            friend.send(0, Envelope(Kind.SCALAR_D, 1, 0, i, 0, {"d": float(i)}))
        got = [server.recv(timeout_ms=5000) for _ in range(5)]
        assert [(e.sender, e.payload["d"]) for e in got if e] == [(1, float(i)) for i in range(5)]
        assert server.recv(timeout_ms=500) is None  # nothing from the intruders, ever
        assert server.auth_refused >= 1
        with pytest.raises(TransportError):  # BarrierTimeout, or the HELLO's send times out
            ring_barrier(intruder, timeout_s=0.5)
    finally:
        plain.close()
        ctx.term()
        for nd in (server, friend, intruder):
            nd.close()


def test_curve_ring_barrier_between_allowed_peers() -> None:
    keys = generate_run_keys(range(3))
    nodes = [RingNode(i, curve=keys[i]) for i in range(3)]
    peers = {nd.node_id: nd.endpoint for nd in nodes}
    for nd in nodes:
        nd.connect(peers)
    threads = [threading.Thread(target=ring_barrier, args=(nd, 20)) for nd in nodes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        nodes[0].send(2, Envelope(Kind.PARAMETERS, 0, 2, 0, 0, {"theta": np.ones(5)}))
        env = nodes[2].recv(timeout_ms=5000)
        assert env is not None and env.payload["theta"].tolist() == [1.0] * 5
    finally:
        for nd in nodes:
            nd.close()


def test_real_clock_delays_are_injected_and_logged() -> None:
    delay_s = 0.03
    emu = LinkEmulator(LinkModel("fixed", delay=delay_s), root_seed=0, clock="real")
    log = MessageLog(node=1)
    for a, b in _pair(b={"emulator": emu, "log": log}):
        for i in range(10):
            a.send(1, _env(it=i, i=i))
        t0 = now_ns()
        got = [b.recv(timeout_ms=2000) for _ in range(10)]
        waited = (now_ns() - t0) / 1e9
    assert [e.payload["i"] for e in got if e] == list(range(10))
    assert delay_s * 0.9 < waited < delay_s + 0.5, waited
    s = log.summary()["per_kind"]["POWER_VECTOR"]
    assert s["received"]["count"] == 10 and s["latency_ns"]["sum"] / 10 >= delay_s * 1e9
    assert waited < 5 * delay_s  # one wait for all ten (deadline heap), not a sleep per message


def test_real_clock_drops_are_logged_as_dropped() -> None:
    emu = LinkEmulator(LinkModel("fixed", delay=0.0, drop_prob=0.5), root_seed=3, clock="real")
    log = MessageLog(node=1)
    for a, b in _pair(b={"emulator": emu, "log": log}):
        for i in range(200):
            a.send(1, _env(it=i, i=i))
        got = []
        while (e := b.recv(timeout_ms=300)) is not None:
            got.append(e.payload["i"])
    s = log.summary()["totals"]
    assert s["received"]["count"] == len(got) == 200 - b.stats.dropped_injected
    assert s["dropped"]["count"] == emu.dropped and 60 < emu.dropped < 140
    assert got == sorted(got)


def _socket_logical_run(seed: int) -> list[tuple[int, int, int, int]]:
    """Three broadcast nodes, lossy jittery logical-time links, 40 iterations; what each node
    gets at each tick."""
    n, iters = 3, 40
    model = LinkModel("uniform", delay=0, jitter=3, drop_prob=0.15, reorder=True)
    nodes = [BroadcastNode(i, emulator=LinkEmulator(model, root_seed=seed)) for i in range(n)]
    peers = {nd.node_id: nd.endpoint for nd in nodes}
    for nd in nodes:
        nd.connect(peers)
    threads = [threading.Thread(target=broadcast_barrier, args=(nd, 20)) for nd in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    out = []
    try:
        for it in range(iters):
            for nd in nodes:
                nd.publish(Envelope(Kind.SCALAR_D, nd.node_id, -1, it, 0, {"d": float(it)}))
            for nd in nodes:  # wait until this tick's frames are all in (lockstep, as the coordinator does)
                deadline = time.monotonic() + 10
                while nd._emu.submitted < (n - 1) * (it + 1) and time.monotonic() < deadline:  # type: ignore[union-attr]
                    nd.drain()
                    time.sleep(0.0005)
                nd.set_tick(it)
                while (e := nd.recv(timeout_ms=0)) is not None:
                    out.append((it, nd.node_id, e.sender, e.iteration))
    finally:
        for nd in nodes:
            nd.close()
    return out


def test_logical_time_over_sockets_is_reproducible() -> None:
    a = _socket_logical_run(5)
    assert len(a) > 50
    assert a == _socket_logical_run(5)
    assert a != _socket_logical_run(6)


def test_nodes_refuse_pickling_and_use_after_close() -> None:
    import pickle

    node = RingNode(0)
    with pytest.raises(TransportError):
        pickle.dumps(node)
    node.close()
    node.close()  # idempotent
    with pytest.raises(TransportError):
        node.connect({1: "tcp://127.0.0.1:1"})


def test_send_blocked_at_the_high_water_mark_raises_instead_of_dropping() -> None:
    a = RingNode(0, hwm=10, send_timeout_ms=200)
    b = RingNode(1, hwm=10, extra_senders=[0])
    a.connect({1: b.endpoint})
    try:
        with pytest.raises(TransportError):
            for i in range(100_000):  # b never reads
                a.send(1, _env(it=i, p=np.zeros(2000)))
        assert a.stats.sent < 100_000
        got = 0
        while b.recv(timeout_ms=200) is not None:
            got += 1
        assert got == a.stats.sent and b.stats.gaps == 0  # nothing sent was dropped
    finally:
        a.close()
        b.close()


def test_cluster_mode_binds_the_node_address_and_peers_connect_by_endpoint() -> None:
    host = bind_host(cluster=True)
    assert bind_host() == "127.0.0.1" and host == node_address()
    a, b = RingNode(0, host), RingNode(1, host)
    try:
        assert a.endpoint.startswith(f"tcp://{host}:")
        peers = {0: a.endpoint, 1: b.endpoint}  # what the coordinator hands out
        a.connect(peers)
        b.connect(peers)
        b.send(0, _env(Kind.HEARTBEAT))
        env = a.recv(timeout_ms=5000)
        assert env is not None and env.sender == 1
    finally:
        a.close()
        b.close()


def test_co_hosted_nodes_share_a_context_and_talk_over_inproc() -> None:
    """Nodes of one process on a shared context: inproc endpoint, same frames, decoding and log
    counts as TCP; the shared context outlives the nodes; a CURVE node cannot share or go inproc."""
    ctx = zmq.Context()
    a, b = RingNode(0, context=ctx), RingNode(1, context=ctx)
    try:
        ep_b = b.bind_inproc()
        assert ep_b.startswith("inproc://")
        a.connect({1: ep_b})
        b.connect({0: a.endpoint})                    # the other way over TCP: both work at once
        p = np.arange(6, dtype=np.float32)
        sent = a.send(1, Envelope(Kind.POWER_VECTOR, 0, 1, 3, 0, {"p": p}))
        got = b.recv(timeout_ms=5000)
        assert got is not None and got.sender == 0 and got.iteration == 3
        np.testing.assert_array_equal(got.payload["p"], p)
        assert sent > p.nbytes
        b.send(0, Envelope(Kind.POWER_VECTOR, 1, 0, 4, 0, {"p": p}))
        assert a.recv(timeout_ms=5000).iteration == 4  # type: ignore[union-attr]
        assert (a.stats.sent, b.stats.received, b.stats.gaps) == (1, 1, 0)
    finally:
        a.close()
        b.close()
    assert not ctx.closed                             # the nodes leave a shared context alone
    ctx.term()
    keys = generate_run_keys([0, 1])
    with pytest.raises(ConfigError, match="own context"):
        RingNode(0, curve=keys[0], context=zmq.Context.instance())
    with RingNode(0, curve=keys[0]) as c, pytest.raises(ConfigError, match="CURVE"):
        c.bind_inproc()
