"""The execution phase under asynchrony (``bsemu execute-sweep``): trained policies and central solvers run
over links with a growing delay (no loss), then a growing loss (no delay); one execution run per point,
one after the other (runs side by side would share the cores and distort each other's latencies).
Written as ``execute_sweep.csv`` and plots of the sum-rate and the slot latency against delay and loss."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coordinator.execute.config import ExecuteConfig, check_execute
from coordinator.execute.report import report
from coordinator.execute.runner import ExecutionRunner, Source
from coordinator.session import ray_session
from deploy import plots
from deploy.config import load_config

Point = tuple[str, Source, int]
"""(label, what decides, seed of the slots)."""


def sweep_settings(delays_ms: Sequence[float], losses: Sequence[float]) -> list[tuple[str, float, float]]:
    """(axis, delay ms, loss) of every point: the delays at no loss, then the losses at no delay."""
    return [("delay", float(d), 0.0) for d in delays_ms] + [("loss", 0.0, float(p)) for p in losses]


def run_sweep(points: Sequence[Point], overrides: Sequence[str], delays_ms: Sequence[float],
              losses: Sequence[float], out: Path, address: str | None = None,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every (source, setting) point; returns the rows written to ``out/execute_sweep.csv``. One Ray session for
    the whole sweep (each point starts its own actors)."""
    session = ray_session(address)
    try:
        rows = _points(points, overrides, delays_ms, losses, address, progress)
    finally:
        session.close()
    write(out, rows)
    return rows


def _points(points: Sequence[Point], overrides: Sequence[str], delays_ms: Sequence[float], losses: Sequence[float],
            address: str | None, progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    rows = []
    for label, src, seed in points:
        for axis, d, p in sweep_settings(delays_ms, losses):
            cfg = load_config(ExecuteConfig, None, [*overrides, f"links.delay_ms={d}", f"links.loss={p}"])
            check_execute(cfg)
            if progress is not None:
                progress(f"{label}: {axis} (delay {d:g} ms, loss {p:g})")
            runner = ExecutionRunner(cfg, src, seed, address=address)
            s, _, _ = report(cfg, src, runner.problem, runner.order, runner.run())
            rows.append({"source": label, "axis": axis, "delay_ms": d, "loss": p,
                         "sum_rate_mbps": s["sum_rate_mbps"], "sum_rate_mbps_ideal": s["sum_rate_mbps_ideal"],
                         "ratio_to_ideal": s["sum_rate_mbps"] / s["sum_rate_mbps_ideal"],
                         "slot_p50_us": s["slot_us"].get("p50"), "slot_p99_us": s["slot_us"].get("p99"),
                         "deadline_met_share": s["deadline_met_share"], "lost": s["lost_messages"],
                         "late": s["late_messages"], "fallbacks": sum(s["fallbacks"].values()),
                         "messages_per_slot": s["messages_per_slot"]})
    return rows


def write(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "execute_sweep.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for axis, x in (("delay", "delay_ms"), ("loss", "loss")):
        part = [r for r in rows if r["axis"] == axis]
        if len({r[x] for r in part}) < 2:
            continue
        plots.lines(out / f"sum_rate_vs_{axis}.png", part, "source", x, "sum_rate_mbps",
                    f"sum-rate against link {axis}")
        plots.lines(out / f"slot_latency_vs_{axis}.png", part, "source", x, "slot_p50_us",
                    f"slot latency (p50) against link {axis}", logy=True)
