"""The execution phase on a real local Ray, real sockets: powers equal the evaluation's on the logical clock
with ideal links, signalling per slot equals paper 1's Table III exactly (count and bytes), a lost vector
falls back and is counted, an injected delay shows in the slot latency."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from bs_agent.realtime import realtime_refusal
from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.execution import CU_ID, MISSING_INPUT, OWN_CELL_METHODS
from coordinator.execute.config import ExecuteConfig, check_execute
from coordinator.execute.report import applied_fractions, ideal_fractions, report, table3
from coordinator.execute.runner import ExecutionRunner, Source
from deploy.config import load_config
from protocol import Envelope, Kind, frame_size
from protocol.log import DROPPED, SENT
from radio.channels import Scenario

pytestmark = pytest.mark.ray


def source(scheme: str, method: str | None = None, seed: int = 0) -> Source:
    """A small policy moved away from its initialisation (so that its decisions depend on the state)."""
    sc = Scenario.preset("3cell")
    if method is not None:
        return Source(sc, "full" if method in OWN_CELL_METHODS else "centralized", method=method)
    spec = AgentSpec(scheme, sc.cells, sc.K, hidden=32, layers=2, init_log_std=-1.0, init_seed=seed)
    theta = BaseStation(0, spec, 1).get_policy_params().numpy()
    theta = theta + 0.3 * np.random.default_rng(seed).standard_normal(theta.size).astype(np.float32)
    return Source(sc, scheme, spec=spec, theta=theta)


def execute(src: Source, sets: list[str], seed: int = 3):
    cfg = load_config(ExecuteConfig, None, sets)
    check_execute(cfg)
    runner = ExecutionRunner(cfg, src, seed)
    col = runner.run()
    return cfg, runner, col


def expected_bytes(src: Source, order: np.ndarray) -> int:
    """Bytes of every execution message the scheme must send, with their real slot and per-link sequence."""
    B, K, L = src.scenario.cells, src.scenario.K, src.scenario.L
    seq: dict[tuple[int, int], int] = {}
    total = 0

    def size(kind: Kind, a: int, b: int, slot: int, payload: dict) -> int:
        n = seq.get((a, b), 0)
        seq[(a, b)] = n + 1
        return frame_size(Envelope(kind, a, b, slot, n, payload, "", 2**40))

    for s, o in enumerate(order):
        if src.has_cu:
            total += sum(size(Kind.CSI_UPLOAD, b, CU_ID, s, {"gains": np.zeros(L, np.float32)}) for b in range(B))
            total += sum(size(Kind.POWER_ASSIGNMENT, CU_ID, b, s, {"p": np.zeros(K, np.float32)}) for b in range(B))
        elif src.scheme == "partial":
            total += sum(size(Kind.POWER_VECTOR, int(o[i]), int(o[i + 1]), s,
                              {"p": np.zeros(L, np.float32), "decided": np.zeros(B, np.int64)}) for i in range(B - 1))
    return total


@pytest.mark.parametrize("scheme,method", [("partial", None), ("full", None), ("centralized", None),
                                           ("centralized", "wmmse"), ("full", "cell_optimum")])
def test_logical_clock_gives_the_evaluations_powers_and_table_iii_signalling(ray_session, scheme, method):
    src = source(scheme, method)
    cfg, runner, col = execute(src, ["run.slots=25", "run.clock=logical", "run.warmup_slots=0"])
    frac, ready = applied_fractions(col, 3, 2, real=False)
    ideal = ideal_fractions(src, runner.problem, runner.order)
    assert ready.all()
    # the lean one-slot forward against the batched torch one: float32 rounding only
    np.testing.assert_allclose(frac, ideal, rtol=0, atol=2e-6 if method is None else 1e-6)
    rows = [row for r in col.nodes.values() for row in r["rows"]]
    sent = [row for row in rows if row[0] == SENT and row[1] in (int(Kind.POWER_VECTOR), int(Kind.CSI_UPLOAD),
                                                                 int(Kind.POWER_ASSIGNMENT))]
    theory = table3("centralized" if src.has_cu else scheme, 3, 2)
    assert len(sent) == theory["messages"] * cfg.run.slots
    assert sum(row[6] for row in sent) == expected_bytes(src, runner.order)
    summary, per_slot, _ = report(cfg, src, runner.problem, runner.order, col)
    assert summary["messages_per_slot"] == theory["messages"] and summary["lost_messages"] == 0
    assert summary["late_messages"] == 0 and sum(summary["fallbacks"].values()) == 0
    assert np.allclose(per_slot["sum_rate_mbps"], per_slot["sum_rate_mbps_ideal"], rtol=1e-5)


def test_a_lost_vector_triggers_the_fallback_and_is_counted(ray_session):
    src = source("partial", seed=1)
    cfg, runner, col = execute(src, ["run.slots=40", "run.clock=logical", "run.warmup_slots=0", "links.loss=0.3",
                                     "run.fallback=undecided"])
    lost = [row for r in col.nodes.values() for row in r["rows"]
            if row[0] == DROPPED and row[1] == int(Kind.POWER_VECTOR)]
    flags = np.stack([col.nodes[b]["flags"] for b in range(3)])          # [B, n]
    assert len(lost) > 0 and np.count_nonzero(flags & MISSING_INPUT) == len(lost)
    # every lost vector fell back at its receiver in its slot; slots without a loss are the ideal ones
    for row in lost:
        assert flags[row[3], row[4]] & MISSING_INPUT
    clean = ~(flags & MISSING_INPUT).any(axis=0)
    frac, _ = applied_fractions(col, 3, 2, real=False)
    ideal = ideal_fractions(src, runner.problem, runner.order)
    np.testing.assert_allclose(frac[clean], ideal[clean], rtol=0, atol=2e-6)
    assert not np.allclose(frac[~clean], ideal[~clean], atol=1e-3)
    summary, _, _ = report(cfg, src, runner.problem, runner.order, col)
    assert summary["lost_messages"] == len(lost) == sum(summary["fallbacks"].values())


def test_an_injected_delay_raises_the_slot_latency_by_at_least_b_minus_1_hops(ray_session):
    d_ms = 3.0
    src = source("partial", seed=2)
    cfg, runner, col = execute(src, ["run.slots=30", "run.slot_ms=40", "run.warmup_slots=5",
                                     f"links.bs_bs.delay_ms={d_ms}"])
    summary, per_slot, _ = report(cfg, src, runner.problem, runner.order, col)
    assert summary["slot_us"]["p50"] >= (3 - 1) * d_ms * 1e3
    hops = [row for r in col.nodes.values() for row in r["rows"]
            if row[1] == int(Kind.POWER_VECTOR) and row[0] != SENT]
    assert hops and all(row[9] == int(d_ms * 1e6) for row in hops)          # the injected delay, as logged
    assert all(row[8] - row[7] >= d_ms * 1e6 * 0.99 for row in hops)        # received no earlier than sent + d


def test_logical_clock_refuses_delays():
    cfg = load_config(ExecuteConfig, None, ["run.clock=logical", "links.delay_ms=1"])
    with pytest.raises(ValueError, match="run.clock=real"):
        check_execute(cfg)


def test_centralized_bs_decision_is_its_upload_and_the_cu_decides(ray_session):
    src = source("centralized", seed=3)
    cfg, runner, col = execute(src, ["run.slots=20", "run.clock=logical", "run.warmup_slots=2"])
    summary, _, samples = report(cfg, src, runner.problem, runner.order, col)
    assert set(summary["decision_us"]) == {"bs0", "bs1", "bs2", "cu"}
    assert all(v.size == 18 and (v >= 0).all() for v in samples.values())
    assert summary["table3_scalars_per_slot"] == 2 * 3 * 3 + 2 * 3
    torch.set_num_threads(1)


def test_every_vector_sent_is_received_or_dropped_on_the_real_clock(ray_session):
    """Nothing unaccounted for: with loss and a tight slot, every POWER_VECTOR sent is logged as received
    (in time or late: the nodes drain at the end) or dropped."""
    src = source("partial", seed=4)
    cfg, runner, col = execute(src, ["run.slots=40", "run.slot_ms=2", "run.warmup_slots=0", "links.loss=0.2"])
    rows = [row for r in col.nodes.values() for row in r["rows"] if row[1] == int(Kind.POWER_VECTOR)]
    sent = sum(1 for row in rows if row[0] == SENT)
    received = sum(1 for row in rows if row[0] not in (SENT, DROPPED))
    dropped = sum(1 for row in rows if row[0] == DROPPED)
    assert sent == 2 * 40 and sent == received + dropped and dropped > 0


@pytest.mark.parametrize("wait,priority", [("block", 0), ("spin", 0), ("block", 20), ("spin", 20)])
def test_real_clock_decisions_equal_the_evaluations_whichever_way_nodes_wait(ray_session, wait, priority):
    """On the wall clock, a BS that blocks in its socket, one that spins (run.wait), and either under SCHED_FIFO
    (run.priority) decide alike: every decision taken on its predecessor's vector (no fallback) is the
    evaluation's, and every vector sent is received (ideal links, slots long enough for the hops). Each node
    reports the policy it ran under, its sockets' I/O threads too."""
    if realtime_refusal(priority) is not None:
        pytest.skip(realtime_refusal(priority))
    src = source("partial", seed=5)
    cfg, runner, col = execute(src, ["run.slots=30", "run.slot_ms=25", "run.warmup_slots=0", f"run.wait={wait}",
                                     f"run.priority={priority}"])
    assert {p["sched"] for p in col.placement.values()} == {f"fifo {priority}" if priority else "other 0"}
    assert {p["io"] for p in col.placement.values()} == {f"fifo {priority}" if priority else "other 0"}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER       # the air's thread got its own policy back
    ideal = ideal_fractions(src, runner.problem, runner.order)
    flags = np.stack([col.nodes[b]["flags"] for b in range(3)])           # [B, n]
    for b in range(3):
        r = col.nodes[b]
        clean = r["done"] & (flags[b] == 0)
        assert clean.sum() >= 15                      # most slots: a fallback needs a 25 ms stall
        np.testing.assert_allclose(r["frac"][clean], ideal[clean, 2 * b:2 * b + 2], rtol=0, atol=2e-6)
    rows = [row for r in col.nodes.values() for row in r["rows"] if row[1] == int(Kind.POWER_VECTOR)]
    sent = sum(1 for row in rows if row[0] == SENT)
    assert sent == 2 * 30 == sum(1 for row in rows if row[0] not in (SENT, DROPPED))
