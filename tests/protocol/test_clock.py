"""Clock offsets: the NTP math on hand-built timestamps with a known offset, and a ping-pong over
real sockets between two processes (one host: the true offset of CLOCK_MONOTONIC is 0)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    BroadcastNode,
    ClockSample,
    ConfigError,
    Envelope,
    Kind,
    MalformedMessage,
    MessageLog,
    RingNode,
    TransportError,
    estimate_clock_offset,
    offset_from_samples,
)
from tests.protocol.helpers import clock_worker


def _sample(theta: int, t0: int, d_out: int, turn: int, d_back: int) -> ClockSample:
    """A round against a peer whose clock reads local + ``theta``: delays out/back, peer turnaround."""
    t1 = t0 + d_out + theta
    t2 = t1 + turn
    t3 = t2 - theta + d_back
    return ClockSample(t0, t1, t2, t3)


def test_symmetric_delays_give_the_exact_offset_and_the_round_trip() -> None:
    s = _sample(theta=5_000_000, t0=1_000, d_out=30_000, turn=7_000, d_back=30_000)
    assert (s.offset_ns, s.rtt_ns) == (5_000_000, 60_000)
    s = _sample(theta=-123_456_789, t0=10**12, d_out=20_000, turn=0, d_back=20_000)
    assert (s.offset_ns, s.rtt_ns) == (-123_456_789, 40_000)


def test_asymmetry_shifts_the_offset_by_half_the_difference() -> None:
    s = _sample(theta=5_000_000, t0=1_000, d_out=30_000, turn=7_000, d_back=50_000)
    assert s.offset_ns == 5_000_000 + (30_000 - 50_000) // 2  # θ = θ* + (d→ − d←)/2
    assert s.rtt_ns == 80_000


@given(
    theta=st.integers(-(10**15), 10**15),
    t0=st.integers(0, 10**15),
    d_out=st.integers(0, 10**9),
    turn=st.integers(0, 10**9),
    d_back=st.integers(0, 10**9),
)
def test_the_true_offset_is_within_half_the_round_trip(theta: int, t0: int, d_out: int, turn: int, d_back: int) -> None:
    s = _sample(theta, t0, d_out, turn, d_back)
    assert s.rtt_ns == d_out + d_back
    assert abs(s.offset_ns - theta) <= (s.rtt_ns + 1) // 2  # +1: θ is floored to an integer ns


def test_the_minimum_round_trip_sample_is_kept() -> None:
    theta = 2_000_000
    rng = np.random.default_rng(3)
    samples = [_sample(theta, 10**6 * i, int(rng.integers(10_000, 90_000)), 5_000, int(rng.integers(10_000, 90_000)))
               for i in range(20)]  # fmt: skip
    samples.insert(7, _sample(theta, 10**9, 4_000, 5_000, 4_000))  # the tightest: symmetric, 8 µs
    est = offset_from_samples(samples, peer=3)
    assert (est.peer, est.offset_ns, est.rtt_ns, est.lost) == (3, theta, 8_000, 0)
    assert est.samples == tuple(samples)
    assert est.to_local(10**9 + theta) == 10**9


def test_bad_sample_sets_are_refused() -> None:
    with pytest.raises(ConfigError):
        offset_from_samples([])
    with pytest.raises(MalformedMessage):
        offset_from_samples([ClockSample(100, 50, 40, 200)])  # t2 < t1
    with pytest.raises(MalformedMessage):
        offset_from_samples([ClockSample(100, 0, 500, 200)])  # peer turnaround longer than the round trip


def test_offset_between_two_processes_on_real_sockets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Both nodes estimate each other at the same time; each answers the other's pings inside its
    own estimate. One host: |θ| ≤ δ/2 must hold for the kept sample (and for every sample)."""
    ctx = mp.get_context("spawn")
    up, down = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=clock_worker, args=(1, 0, 30, up, down))
    proc.start()
    log = MessageLog(tmp_path / "a.csv", node=0)
    a = RingNode(0, log=log)
    try:
        tag, _, ep = up.get(timeout=120)
        assert tag == "endpoint"
        peers = {0: a.endpoint, 1: ep}
        a.connect(peers)
        down.put(peers)
        est = estimate_clock_offset(a, 1, rounds=40, timeout_s=10.0)
        assert est.lost == 0 and len(est.samples) == 40
        for s in est.samples:
            assert s.rtt_ns > 0 and abs(s.offset_ns) <= (s.rtt_ns + 1) // 2
        assert est.rtt_ns == min(s.rtt_ns for s in est.samples)
        assert abs(est.offset_ns) <= (est.rtt_ns + 1) // 2
        # the peer's application message sent before the pings is kept for recv, not swallowed
        env = a.recv(timeout_ms=10_000)
        assert env is not None and env.kind == Kind.POWER_VECTOR and env.iteration == 7
        a.send(1, Envelope(Kind.METRICS, 0, 1, 0, 0, {"stop": True}))
        tag, _, (off, rtt, samples, lost, clock_msgs) = up.get(timeout=120)
        assert tag == "done" and lost == 0 and len(samples) == 30
        assert abs(off) <= (rtt + 1) // 2 and rtt == min(ClockSample(*s).rtt_ns for s in samples)
        assert clock_msgs == 30 + 40  # its 30 pongs consumed, our 40 pings answered
        assert a.stats.clock == 40 + 30
        summary = log.close()
        hb = summary["per_kind"]["HEARTBEAT"]
        assert hb["sent"]["count"] == 40 + 30 and hb["received"]["count"] == 40 + 30  # pings + pongs both ways
    finally:
        a.close()
        proc.join(timeout=60)
    assert proc.exitcode == 0


def test_a_silent_or_unknown_peer_is_a_transport_error() -> None:
    a, b = RingNode(0), RingNode(1)
    try:
        peers = {0: a.endpoint, 1: b.endpoint}
        a.connect(peers)
        b.connect(peers)
        with pytest.raises(TransportError):
            estimate_clock_offset(a, 5)  # not a peer
        with pytest.raises(TransportError, match="no clock pong"):
            estimate_clock_offset(a, 1, rounds=2, timeout_s=0.05)  # b never receives: no answer
        with pytest.raises(ConfigError):
            estimate_clock_offset(a, 1, rounds=0)
        # a late pong after the estimate gave up is consumed, and ordinary heartbeats still reach the app
        assert b.recv(timeout_ms=1000) is None  # b answers both pings inside recv
        a.send(1, Envelope(Kind.HEARTBEAT, 0, 1, 0, 0, {}))
        env = b.recv(timeout_ms=5000)
        assert env is not None and env.kind == Kind.HEARTBEAT and b.stats.clock == 2
        assert a.recv(timeout_ms=200) is None and a.stats.clock == 2
    finally:
        a.close()
        b.close()


def test_a_broadcast_node_cannot_estimate() -> None:
    with BroadcastNode(0) as node, pytest.raises(ConfigError):
        estimate_clock_offset(node, 1)  # type: ignore[arg-type]
