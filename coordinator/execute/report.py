"""What an execution run measured (:func:`report`): the powers applied over the air in every slot and their
sum-rate (beside the same slots with ideal links), per-node decision times and per-slot latency as
percentiles, signalling per slot beside paper 1's Table III, and what was late, lost or fell back.

Definitions (times on the coordinator's clock, corrected by each node's measured offset):

* a node's decision time: its inputs available -> its powers sent (round-robin / fully decentralized BS:
  CSI or the predecessor's vector -> its vector sent or its powers decided; central unit: the last upload
  -> the last assignment sent; a BS of the centralized scheme: CSI -> its upload sent);
* a slot's latency: the first BS's CSI available -> the last BS's powers applied (decided, or its
  assignment received);
* a BS's powers are applied at the slot's end if they were ready by then (real clock); a BS that missed the
  deadline keeps its previous powers (counted);
* signalling per slot: the execution messages actually sent (from the message log) over the slots run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bs_agent.trpo.execution import CU_ID, HOLD, MISSING_INPUT, solve
from coordinator.execute.config import ExecuteConfig
from coordinator.execute.runner import Collected, Source
from coordinator.trpo.evaluate import policy_fractions
from coordinator.trpo.trainer import powers_w
from protocol.envelope import Kind
from protocol.log import DROPPED, RECEIVED, SENT
from radio.problem import Problem
from radio.rates import sum_rate

EXEC_KINDS = (int(Kind.CSI_UPLOAD), int(Kind.POWER_ASSIGNMENT), int(Kind.POWER_VECTOR))

PAPER_TABLE_IV_S = {"trpo_centralized": 6.5e-4, "trpo_partial": 1.99e-3, "trpo_full": 6.5e-4, "fp": 6.4e-1,
                    "wmmse": 6.0e-1, "max_power": 0.0, "random": 1.75e-4}
"""Paper 1 Table IV: average execution time per decision (seconds), 3 cells."""


def table3(scheme: str, B: int, K: int) -> dict[str, int]:
    """Paper 1 Table III per slot: messages and scalars exchanged (CSI and powers) by the scheme."""
    if scheme == "centralized":
        return {"messages": 2 * B, "scalars": K * B * B + K * B}   # B uploads of K*B gains + B assignments of K
    if scheme == "partial":
        return {"messages": B - 1, "scalars": (B - 1) * (K * B + B)}   # B-1 hops of L powers + B flags
    return {"messages": 0, "scalars": 0}


def pct(x: np.ndarray) -> dict[str, float]:
    """p50, p95, p99 and max of ``x`` (µs), with its count."""
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return {"count": 0}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"count": int(x.size), "p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(x.max()),
            "mean": float(x.mean())}


def applied_fractions(col: Collected, B: int, K: int, real: bool) -> tuple[np.ndarray, np.ndarray]:
    """[n, L] fractions in force at each slot's end, and [n, B] whether BS b's powers of that slot were
    ready by its end (a BS that missed it keeps its previous powers; before its first decision it transmits at
    full power, the uncoordinated default)."""
    n = col.slot_start_ns.size
    frac = np.zeros((n, B * K), np.float64)
    ready = np.ones((n, B), bool)
    for b in range(B):
        r = col.nodes[b]
        ok = r["done"] & ((r["t_out"] <= col.slot_end_ns) if real else True)
        ready[:, b] = ok
        last = np.ones(K)
        for s in range(n):
            if ok[s] and not (r["flags"][s] & HOLD):
                last = r["frac"][s].astype(np.float64)
            frac[s, b * K:(b + 1) * K] = last
    return frac, ready


def ideal_fractions(src: Source, problem: Problem, order: np.ndarray) -> np.ndarray:
    """[n, L] what the scheme decides with ideal links (every input in time): the evaluation's powers."""
    if src.method is not None:
        return solve(src.method, problem) / problem.p_max_w
    position = np.argsort(order, axis=1)
    return policy_fractions(src.spec, src.theta, src.scenario, problem, position)


def decision_samples(src: Source, col: Collected, kept: slice) -> dict[str, np.ndarray]:
    """Each node's decision times (µs) over the kept slots (see the module docstring)."""
    out = {}
    for i, r in col.nodes.items():
        relay = i != CU_ID and src.has_cu            # a BS of the centralized path: CSI -> upload sent
        start, end = (r["t_csi"], r["t_in"]) if relay else (r["t_in"], r["t_out"])
        out["cu" if i == CU_ID else f"bs{i}"] = ((end - start) / 1e3)[kept]
    return out


def _name(i: int) -> str:
    return "cu" if i == CU_ID else f"bs{i}"


def report(cfg: ExecuteConfig, src: Source, problem: Problem, order: np.ndarray, col: Collected
           ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(summary, per-slot arrays, per-node decision samples) of an execution run; the summary is JSON-ready."""
    sc = src.scenario
    B, K, n, w = sc.cells, sc.K, problem.n, cfg.run.warmup_slots
    frac, ready = applied_fractions(col, B, K, cfg.run.clock == "real")
    mbps = sc.bandwidth_hz / 1e6
    lv = src.power_levels
    rate = sum_rate(problem.G, powers_w(frac, problem, lv), problem.noise_w) * mbps
    ideal = ideal_fractions(src, problem, order)
    rate_ideal = sum_rate(problem.G, powers_w(ideal, problem, lv), problem.noise_w) * mbps
    bs = [col.nodes[b] for b in range(B)]
    slot_us = (np.max([r["t_out"] for r in bs], axis=0) - np.min([r["t_csi"] for r in bs], axis=0)) / 1e3
    kept = slice(w, n)
    samples = decision_samples(src, col, kept)
    rows = [row for r in col.nodes.values() for row in r["rows"] if row[1] in EXEC_KINDS]
    sent = [row for row in rows if row[0] == SENT]
    hops = {Kind(k).name: pct(np.array([(row[8] - row[7]) / 1e3 for row in rows
                                        if row[1] == k and row[0] == RECEIVED and row[4] >= w]))
            for k in EXEC_KINDS if any(row[1] == k for row in sent)}
    scheme = "centralized" if src.has_cu else src.scheme
    theory = table3(scheme, B, K)
    met = ready.all(axis=1)
    summary = {
        "method": src.name, "scheme": scheme, "B": B, "K": K, "power_levels": src.power_levels,
        "slots": n, "warmup_slots": w, "slot_ms": cfg.run.slot_ms, "clock": cfg.run.clock,
        "decision_us": {k: pct(v) for k, v in samples.items()},
        "slot_us": pct(slot_us[kept]),
        "hop_us": hops,          # one-way latency of each kind's messages (sent -> handed over, incl. any delay)
        "messages_per_slot": len(sent) / n, "bytes_per_slot": sum(row[6] for row in sent) / n,
        "table3_messages_per_slot": theory["messages"], "table3_scalars_per_slot": theory["scalars"],
        "sum_rate_mbps": float(rate.mean()), "sum_rate_mbps_ideal": float(rate_ideal.mean()),
        "deadline_met_share": float(met[kept].mean()), "deadline_misses": int((~ready).sum()),
        "late_messages": int(sum(r["late"] for r in col.nodes.values())),
        "malformed_messages": int(sum(r.get("malformed", 0) for r in col.nodes.values())),
        "lost_messages": sum(1 for row in rows if row[0] == DROPPED),
        "fallbacks": {_name(i): int(np.count_nonzero(r["flags"] & MISSING_INPUT)) for i, r in col.nodes.items()},
        "holds": int(sum(np.count_nonzero(r["flags"] & HOLD) for r in bs)),
        "air_send_lag_us": pct(col.send_lag_ns[kept] / 1e3),
        "clock_offsets_ns": {_name(i): {"offset": o, "rtt": t} for i, (o, t) in col.offsets.items()},
        "placement": {_name(i): p for i, p in col.placement.items()},
        "paper_table_iv_s": PAPER_TABLE_IV_S.get(src.name),
        "links": {c: cfg.links.model(c).__dict__ for c in ("bs_bs", "bs_cu")},
    }
    per_slot = {"slot": np.arange(n), "sum_rate_mbps": rate, "sum_rate_mbps_ideal": rate_ideal, "slot_us": slot_us,
                "deadline_met": met.astype(int), "air_send_lag_us": col.send_lag_ns / 1e3,
                "p_w": powers_w(frac, problem, lv), "p_ideal_w": powers_w(ideal, problem, lv)}  # [n, L] applied, ideal
    return summary, per_slot, samples
