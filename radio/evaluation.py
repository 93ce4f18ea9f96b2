"""Run the classical methods on a batch of problems and summarise them (used by `bsemu baselines`,
and by `bsemu train/evaluate`, where a trained policy is one more method).

Each method maps a :class:`Problem` to powers [n, L] W. Times are wall-clock per realization, both
for the whole batch at once ("batched") and for realizations solved one at a time ("single").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radio.fp import fp, fp_direct
from radio.problem import Problem, ProblemError
from radio.rates import link_rates
from radio.simple import max_power, random_power
from radio.wmmse import wmmse

MAX_OPTIMUM_LINKS = 8
Method = Callable[[Problem], np.ndarray]


@dataclass
class MethodResult:
    """Outcome of one method on a batch: powers [n, L] W, rates [n, L] bit/s/Hz, timings in s."""

    name: str
    p: np.ndarray
    rates: np.ndarray
    time_batched_s: float
    time_single_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sum_rate(self) -> np.ndarray:
        return self.rates.sum(-1)


def classical_methods(rng: np.random.Generator, eps: float = 1e-4) -> dict[str, Method]:
    """The baselines of paper 1 Sec. IV-B plus the direct FP, the certified optimum and every cell's certified
    optimum without inter-cell interference (``cell_optimum``: fully decentralized, no message)."""
    def optimum_p(pr: Problem) -> np.ndarray:
        from radio.optimum import optimum
        return optimum(pr, eps=eps).p

    def cell_optimum_p(pr: Problem) -> np.ndarray:
        from radio.optimum import cell_optimum
        return cell_optimum(pr, eps=eps)

    return {
        "max_power": lambda pr: max_power(pr).p,
        "random": lambda pr: random_power(pr, rng).p,
        "wmmse": lambda pr: wmmse(pr).p,
        "fp": lambda pr: fp(pr).p,
        "fp_direct": lambda pr: fp_direct(pr).p,
        "optimum": optimum_p,
        "cell_optimum": cell_optimum_p,
    }


def run_method(name: str, method: Method, problem: Problem, single: int = 0) -> MethodResult:
    """Run ``method`` on the whole batch (timed), and on the first ``single`` realizations one by one."""
    t0 = time.perf_counter()
    p = np.asarray(method(problem), dtype=np.float64)
    t_batched = (time.perf_counter() - t0) / problem.n
    t_single = None
    if single > 0:
        m = min(single, problem.n)
        t0 = time.perf_counter()
        for i in range(m):
            method(problem.subset(slice(i, i + 1)))
        t_single = (time.perf_counter() - t0) / m
    return MethodResult(name, p, link_rates(problem.G, p, problem.noise_w), t_batched, t_single)


def run_methods(problem: Problem, methods: dict[str, Method], names: Sequence[str], single: int = 0,
                progress: Callable[[str], None] | None = None) -> dict[str, MethodResult]:
    """Run the named methods; raises ProblemError for unknown names or an optimum that is too large."""
    unknown = [n for n in names if n not in methods]
    if unknown:
        raise ProblemError(f"methods: unknown {unknown}; expected names from {sorted(methods)}")
    if "optimum" in names and problem.L > MAX_OPTIMUM_LINKS:
        raise ProblemError(f"L: the certified optimum supports at most {MAX_OPTIMUM_LINKS} links, got "
                           f"L = {problem.L} (use the bracket, reported for larger networks)")
    out = {}
    for name in names:
        if progress:
            progress(name)
        out[name] = run_method(name, methods[name], problem, single)
    return out


def summarize(problem: Problem, results: dict[str, MethodResult], context: dict | None = None,
              upper_bound: np.ndarray | None = None) -> dict:
    """The summary.json structure: per method mean/std sum-rate (Mbps, bit/s/Hz), time per realization,
    ratio to the optimum (when computed) and to a certified upper bound (when given)."""
    w_mhz = problem.bandwidth_hz / 1e6
    ref = results["optimum"].sum_rate.mean() if "optimum" in results else None
    methods = {}
    for name, r in results.items():
        sr = r.sum_rate
        row = {
            "mean_bps_hz": float(sr.mean()), "std_bps_hz": float(sr.std()),
            "mean_mbps": float(sr.mean() * w_mhz), "std_mbps": float(sr.std() * w_mhz),
            "time_batched_s": r.time_batched_s, "time_single_s": r.time_single_s,
        }
        if ref is not None:
            row["ratio_to_optimum"] = float(sr.mean() / ref)
        if upper_bound is not None:
            row["ratio_to_upper_bound"] = float(sr.mean() / upper_bound.mean())
        row.update(r.extra)
        methods[name] = row
    out = {"n": problem.n, "L": problem.L, "cells": problem.cells, "users_per_cell": problem.users_per_cell,
           "bandwidth_hz": problem.bandwidth_hz, "noise_w": problem.noise_w,
           "bs_sum_power_w": problem.bs_sum_power_w, "methods": methods}
    if upper_bound is not None:
        out["upper_bound_mean_bps_hz"] = float(upper_bound.mean())
    if context:
        out.update(context)
    return out


def md_table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: the header, its rule, one row per item of ``body`` (cells as ``str`` gives them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def markdown_table(summary: dict) -> str:
    """A Markdown table of the summary (one row per method)."""
    has_opt = any("ratio_to_optimum" in m for m in summary["methods"].values())
    has_ub = any("ratio_to_upper_bound" in m for m in summary["methods"].values())
    head = ["method", "Mbps (mean ± std)", "bit/s/Hz", "µs/realization batched", "µs one at a time"]
    head += ["÷ optimum"] * has_opt + ["÷ upper bound"] * has_ub
    rows = []
    for name, m in summary["methods"].items():
        single = "—" if m["time_single_s"] is None else f"{m['time_single_s'] * 1e6:.1f}"
        row = [name, f"{m['mean_mbps']:.2f} ± {m['std_mbps']:.2f}", f"{m['mean_bps_hz']:.4f}",
               f"{m['time_batched_s'] * 1e6:.1f}", single]
        row += [f"{m.get('ratio_to_optimum', float('nan')):.4f}"] * has_opt
        row += [f"{m.get('ratio_to_upper_bound', float('nan')):.4f}"] * has_ub
        rows.append(row)
    return md_table(head, rows)


def write_outputs(out_dir: Path, summary: dict, results: dict[str, MethodResult]) -> None:
    """summary.json, summary.md and powers_<method>.npz (p, rates, sum_rate per realization).
    Files are written to temporaries and renamed, so an interrupted write leaves no half file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    _atomic(out_dir / "summary.md", (markdown_table(summary) + "\n").encode())
    for name, r in results.items():
        tmp = out_dir / f".powers_{name}.tmp.npz"
        np.savez_compressed(tmp, p=r.p, rates=r.rates, sum_rate=r.sum_rate)
        tmp.replace(out_dir / f"powers_{name}.npz")


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
