"""Message log: counts and bytes, streamed CSV equal to the aggregates, bounded memory, summaries."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from protocol import (
    BROADCAST,
    COORDINATOR,
    Envelope,
    Kind,
    MessageLog,
    encode,
    frame_size,
    merge_summaries,
    now_ns,
    summarize_csv,
)
from protocol.latency import LatencyHist
from protocol.log import CALL, EXECUTION, SOCKET


def _traffic(rng: np.random.Generator, n: int) -> list[tuple[str, Envelope, int]]:
    kinds = list(Kind)
    out = []
    for i in range(n):
        k = kinds[int(rng.integers(len(kinds)))]
        env = Envelope(k, int(rng.integers(3)), int(rng.integers(3)), int(rng.integers(5)), i,
                       {"x": rng.random(int(rng.integers(1, 30)))}, "run", now_ns())  # fmt: skip
        out.append((["sent", "received", "dropped"][int(rng.integers(3))], env, frame_size(env)))
    return out


def _log(log: MessageLog, traffic: list[tuple[str, Envelope, int]]) -> None:
    for event, env, n in traffic:
        if event == "received":
            log.record_received(env, n, t_recv_ns=env.t_send_ns + 1000 + env.seq)
        else:
            getattr(log, f"record_{event}")(env, n)


def test_counts_and_bytes_equal_what_was_recorded(tmp_path: Path) -> None:
    traffic = _traffic(np.random.default_rng(0), 3000)
    with MessageLog(tmp_path / "messages.csv", run_id="run", buffer_rows=64) as log:
        _log(log, traffic)
        s = log.summary()
    for event in ("sent", "received", "dropped"):
        mine = [(e, n) for ev, e, n in traffic if ev == event]
        assert s["totals"][event] == {"count": len(mine), "bytes": sum(n for _, n in mine)}
        for k in Kind:
            kb = [n for e, n in mine if e.kind is k]
            assert s["per_kind"].get(k.name, {}).get(event, {"count": 0, "bytes": 0}) == {
                "count": len(kb), "bytes": sum(kb)}  # fmt: skip
        for it in range(5):
            got = sum(v.get(event, {}).get("bytes", 0) for v in s["per_iteration"][str(it)].values())
            assert got == sum(n for e, n in mine if e.iteration == it)
        for snd in range(3):
            assert s["per_sender"][str(snd)][event]["count"] == sum(1 for e, _ in mine if e.sender == snd)
    # the streamed file says the same, and the files written at close exist
    assert summarize_csv(tmp_path / "messages.csv", run_id="run") == s
    assert json.loads((tmp_path / "messages_summary.json").read_text()) == s
    md = (tmp_path / "messages_summary.md").read_text()
    assert "| POWER_VECTOR |" in md and "| 0->1 |" in md


def test_nbytes_is_the_encoded_size_and_columns_are_complete(tmp_path: Path) -> None:
    env = Envelope(Kind.POWER_VECTOR, 0, 1, 7, 3, {"p": np.ones(12)}, "r", now_ns())
    # array hdr, 6 one-byte ints, "r", uint64 t_send_ns, map hdr, "p", ext8 hdr, ndim + shape, 12 float32
    assert frame_size(env) == len(encode(env)) == 1 + 6 + 2 + 9 + 1 + 2 + 3 + 5 + 4 * 12
    with MessageLog(tmp_path / "m.csv") as log:
        log.record_sent(env, frame_size(env))
        log.record_received(env, frame_size(env), t_recv_ns=env.t_send_ns + 1500, delay_ns=1000)
        log.record_dropped(env, frame_size(env), delay_slots=2)
    header, sent, recv, drop = (tmp_path / "m.csv").read_text().splitlines()
    assert header == ("event,kind,sender,receiver,iteration,seq,nbytes,t_send_ns,t_recv_ns,delay_ns,delay_slots,"
                      "dropped,phase,via")
    assert sent.startswith(f"sent,POWER_VECTOR,0,1,7,3,{frame_size(env)},{env.t_send_ns},0,")
    assert recv.endswith(f",{env.t_send_ns + 1500},1000,0,0,training,socket")
    assert drop.endswith(",0,2,1,training,socket")
    lat = log.summary()["per_kind"]["POWER_VECTOR"]["latency_ns"]
    assert (lat["count"], lat["sum"], lat["max"], lat["mean"]) == (1, 1500, 1500, 1500.0)
    assert all(abs(lat[f"p{q}"] / 1500 - 1) < 0.012 for q in (50, 95, 99))   # a bin is 2.3 % wide


def test_phase_and_via_tag_rows_and_only_socket_messages_have_latencies(tmp_path: Path) -> None:
    """Rows carry the phase the log was in and how the message travelled; control kinds are control in any
    phase; a latency is counted only for messages that crossed a socket."""
    env = Envelope(Kind.CSI_UPLOAD, 0, 1, 0, 0, {"g": np.ones(4)}, "r", 1_000)
    with MessageLog(tmp_path / "m.csv") as log:
        log.phase = EXECUTION
        log.record_received(env, 40, t_recv_ns=3_000)                 # socket: 2 µs
        log.via = CALL
        log.record_received(env, 40, t_recv_ns=9_000_000)             # a Ray call's bracket: no latency
        log.via = SOCKET
        log.record_received(env._replace(kind=Kind.HELLO), 10, t_recv_ns=5_000)
    rows = (tmp_path / "m.csv").read_text().splitlines()[1:]
    assert [r.split(",")[-2:] for r in rows] == [["execution", "socket"], ["execution", "call"],
                                                   ["control", "socket"]]
    s = summarize_csv(tmp_path / "m.csv")
    assert s["per_kind"]["CSI_UPLOAD"]["latency_ns"]["count"] == 1
    assert s["per_kind"]["CSI_UPLOAD"]["latency_ns"]["max"] == 2_000
    assert s["per_phase"]["execution"]["totals"]["received"]["count"] == 2
    assert s["per_phase"]["control"]["per_kind"]["HELLO"]["received"]["count"] == 1
    assert s["per_link"]["0->1"]["CSI_UPLOAD"]["latency_ns"]["count"] == 1


def test_latency_percentiles_match_numpy_within_a_bin() -> None:
    rng = np.random.default_rng(3)
    lat = np.round(rng.lognormal(np.log(40_000), 0.8, 20_000)).astype(int)   # ~40 µs hops, heavy tail
    hist = LatencyHist()
    hist.extend(lat)
    for q in (50, 95, 99):
        assert abs(hist.percentile(q) / np.percentile(lat, q, method="inverted_cdf") - 1) < 0.012
    a, b = LatencyHist(), LatencyHist()
    a.extend(lat[:7000])
    b.extend(lat[7000:])
    merged = merge_summaries([{"per_kind": {"X": {"latency_ns": a.to_dict()}}},
                              {"per_kind": {"X": {"latency_ns": b.to_dict()}}}])["per_kind"]["X"]["latency_ns"]
    assert merged["count"] == 20_000 and merged["max"] == lat.max()
    assert merged["p99"] == hist.percentile(99) and merged["p50"] == hist.percentile(50)


def test_broadcast_logged_per_link_and_receiver_override() -> None:
    log = MessageLog()
    env = Envelope(Kind.SCALAR_D, 2, BROADCAST, 0, 0, {"d": 0.1})
    for r in (0, 1, 3):
        log.record_sent(env, 30, receiver=r)
    s = log.summary()
    assert s["per_link"].keys() == {"2->0", "2->1", "2->3"} and s["totals"]["sent"]["count"] == 3


def test_merge_summaries_adds_nodes_up() -> None:
    rng = np.random.default_rng(1)
    t1, t2 = _traffic(rng, 500), _traffic(rng, 700)
    a, b, both = MessageLog(node=0), MessageLog(node=1), MessageLog()
    _log(a, t1), _log(b, t2), _log(both, t1 + t2)
    merged = merge_summaries([a.summary(), b.summary()])
    assert merged["nodes"] == [0, 1]
    for key in ("totals", "per_kind", "per_sender", "per_receiver", "per_link", "per_iteration"):
        assert merged[key] == both.summary()[key], key


def test_a_long_run_is_streamed_not_held(tmp_path: Path) -> None:
    """The row buffer stays bounded and memory does not grow with the row count."""
    env = Envelope(Kind.SCALAR_D, 1, COORDINATOR, 0, 0, {})
    log = MessageLog(tmp_path / "long.csv", buffer_rows=1024)
    tracemalloc.start()
    for i in range(20_000):
        log.record(0, Kind.SCALAR_D, i % 7, (i + 1) % 7, i % 10, i, 40, i)
    base = tracemalloc.get_traced_memory()[0]
    for i in range(60_000):
        log.record(0, Kind.SCALAR_D, i % 7, (i + 1) % 7, i % 10, i, 40, i)
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(log._rows) < 1024
    assert grown < 1_000_000, grown  # a held row costs > 100 B: 60k rows would be > 6 MB
    s = log.close()
    assert s["totals"]["sent"] == {"count": 80_000, "bytes": 3_200_000}
    assert sum(1 for _ in open(tmp_path / "long.csv")) == 80_001
    assert env.kind is Kind.SCALAR_D


@pytest.mark.slow
def test_a_million_messages(tmp_path: Path) -> None:
    """10⁶ rows through record_sent: aggregates right, file complete, memory bounded (~3-5 s)."""
    import resource

    env = Envelope(Kind.POWER_VECTOR, 0, 1, 0, 0, {})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log = MessageLog(tmp_path / "million.csv")
    for _ in range(1_000_000):
        log.record_sent(env, 100)
    s = log.close()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    assert s["totals"]["sent"] == {"count": 1_000_000, "bytes": 100_000_000}
    assert sum(1 for _ in open(tmp_path / "million.csv")) == 1_000_001
    assert grown_kib < 50_000, grown_kib  # holding 10⁶ rows would take > 100 MB
