"""The cluster check (coordinator.cluster) and the session's fast address check (coordinator.session):
real sockets, real probes, a real 2-node Ray cluster on this machine."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import pytest

from coordinator.cluster import DRIVER, NodeProbe, check_cluster
from coordinator.session import SessionError, check_address, parse_address, ray_session


def closed_port() -> int:
    """A TCP port of 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def two_node_cluster():
    """A real 2-node Ray cluster on this machine (head + one added node, 1 CPU each), joined through
    bsemu's session policy; the test session's shared Ray is shut down around it and restarted after."""
    import ray
    from ray.cluster_utils import Cluster

    was = ray.is_initialized()
    if was:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        if was:
            ray_session(num_cpus=2)


# ------------------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize("address,expected", [("10.0.0.5:6379", ("10.0.0.5", 6379)),
                                              ("head.example:1", ("head.example", 1)),
                                              ("[::1]:6379", ("::1", 6379)),
                                              (" 127.0.0.1:65535 ", ("127.0.0.1", 65535))])
def test_parse_address_accepts_host_port(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address,says", [("ray://head:10001", "Ray Client) is not supported"),
                                          ("http://head:6379", "unknown scheme http://"),
                                          ("head", "expected HOST:PORT"), ("head:0", "port in 1-65535"),
                                          ("head:70000", "port in 1-65535"), (":6379", "expected HOST:PORT"),
                                          ("::1:6379", "expected HOST:PORT"), ("head:63x9", "expected HOST:PORT")])
def test_parse_address_refuses_with_one_line(address, says):
    with pytest.raises(SessionError) as exc:
        parse_address(address)
    assert says in str(exc.value) and "\n" not in str(exc.value) and repr(address) in str(exc.value)


def test_check_address_fails_fast_on_a_closed_port():
    port = closed_port()
    with pytest.raises(SessionError, match="connection refused"):  # how fast: benchmarks/failfast.py
        check_address("127.0.0.1", port)


def test_check_address_refuses_a_server_that_is_not_grpc():
    """A listener that answers like a web server (here: HTTP/1.0 400, then close) is not a Ray GCS."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(SessionError, match="not a Ray GCS"):
            check_address("127.0.0.1", srv.getsockname()[1], timeout_s=2.0)
    finally:
        t.join(5)
        srv.close()


def test_ray_session_refuses_a_wrong_address_before_ray(monkeypatch):
    """RAY_ADDRESS pointing at a closed port: one line naming it, from the session's own address check, before
    Ray is initialised (ray.init alone would retry for a minute; how fast it fails: benchmarks/failfast.py)."""
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray is already initialised in this process (the session would reuse it)")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port()}")
    with pytest.raises(SessionError, match=r"\(from RAY_ADDRESS\): connection refused"):
        ray_session()
    assert not ray.is_initialized()


# ------------------------------------------------------------------------------------------ probes (no Ray)
@pytest.mark.parametrize("curve", [False, True])
def test_probes_ping_each_other_over_real_sockets(curve):
    """Two probes (one in a thread, each using only its own RingNode) ping each other, answer each other's
    pings meanwhile, and stop once the other probe and the driver said done; also under CURVE."""
    from protocol import Envelope, Kind, RingNode, generate_run_keys

    keys = generate_run_keys([DRIVER, 1, 2]) if curve else {}
    a, b = NodeProbe(), NodeProbe()
    driver = RingNode(DRIVER, curve=keys.get(DRIVER))
    eps = {1: a.open(1, True, keys.get(1)), 2: b.open(2, True, keys.get(2)), DRIVER: driver.endpoint}
    driver.connect(eps)
    for k in (1, 2):  # the driver has nothing to measure here: done at once
        driver.send(k, Envelope(Kind.HEARTBEAT, DRIVER, k, 0, 0, {"cluster_check_done": 1}))
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("b", b.probe(eps, [1], 4, 3.0, 10.0)))
    try:
        t.start()
        out["a"] = a.probe(eps, [2], 4, 3.0, 10.0)
        t.join(15)
    finally:
        for p in (a, b):
            p.close()
        driver.close()
    for mine, other in (("a", 2), ("b", 1)):
        r = out[mine]["pairs"][other]
        assert r["ok"] and 0 < r["rtt_ns"] < 1_000_000_000
        assert abs(r["offset_ns"]) <= r["rtt_ns"] // 2 + 1  # one host: shared CLOCK_MONOTONIC
        assert out[mine]["unfinished"] == []


def probe_absent_peer() -> dict:
    """Node 1 probes itself and node 2, whose endpoint nobody serves (also timed by benchmarks/failfast.py)."""
    a = NodeProbe()
    eps = {1: a.open(1, loopback=True), 2: f"tcp://127.0.0.1:{closed_port()}"}
    try:
        return a.probe(eps, [2], 4, reach_timeout_s=0.3, serve_s=0.5)
    finally:
        a.close()


def test_probe_names_a_peer_that_does_not_answer():
    """A peer whose endpoint nobody serves: the pair is not ok, says so, and the probe gives up on it."""
    res = probe_absent_peer()
    assert res["pairs"][2] == {"ok": False, "error": "no answer within 0.3 s"}
    assert res["unfinished"] == [2]  # how fast it gives up: benchmarks/failfast.py


# ------------------------------------------------------------------------------------------ a real cluster
@pytest.mark.ray
def test_check_cluster_on_two_nodes():
    """Both nodes ran a probe (the right node, its versions), every ordered pair answered over ZeroMQ, and
    each node's clock offset against the driver is 0 within ±rtt/2 (one host: one CLOCK_MONOTONIC)."""
    import platform

    import ray

    with two_node_cluster() as cluster:
        session = ray_session(cluster.address)
        try:
            report = check_cluster(cluster.address, rounds=4)  # how fast: benchmarks/failfast.py
            encrypted = check_cluster(cluster.address, rounds=1, curve=True)  # as across hosts
        finally:
            session.close()
    assert report.ok, report.problems
    assert len(report.nodes) == 2 and all(n.alive for n in report.nodes)
    assert len({n.node_id for n in report.nodes}) == 2
    assert all(n.ray_version == ray.__version__ and n.python_version == platform.python_version()
               for n in report.nodes)
    assert report.one_host and report.zmq_host == "127.0.0.1" and not report.curve
    a, b = (n.node_id for n in report.nodes)
    assert {(p.src, p.dst) for p in report.pairs} == {(a, b), (b, a)}
    assert all(p.ok and 0 < p.rtt_ns < 1_000_000_000 for p in report.pairs)
    for n in report.nodes:
        assert n.offset_ns is not None and n.offset_rtt_ns is not None and n.error is None
        assert abs(n.offset_ns) <= n.offset_rtt_ns // 2 + 1
        assert n.cpus == 1 and n.memory_bytes > 0
    assert encrypted.ok and encrypted.curve and len(encrypted.pairs) == 2, encrypted.problems
