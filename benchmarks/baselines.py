"""Benchmark of the classical solvers (issue: radio).

Prints, for 3-cell K=2 and 7-cell K=8 on the same drawn realizations: mean sum-rate per method, the
ratio to the certified optimum (3-cell) or to the certified upper bound (7-cell), and the time per
realization batched and one at a time, plus the optimum's median/p90 time. Targets on a 2-core machine:
batched WMMSE and FP <= 5 us per 3-cell realization and <= 300 us per 7-cell realization; optimum
(eps = 1e-4 bit/s/Hz, 6 links) <= 50 ms median.

    python benchmarks/baselines.py [--slots 1000] [--single 50] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from radio.channels import Scenario
from radio.evaluation import classical_methods, markdown_table, run_methods, summarize
from radio.optimum import bracket, optimum

TARGET_US = {"3cell": 5.0, "7cell": 300.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--single", type=int, default=50, help="realizations timed one at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-fp-direct-7cell", action="store_true", help="fp_direct is slow on 56 links")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.slots} realizations, seed {args.seed}\n")
    for kind in ("3cell", "7cell"):
        sc = Scenario.preset(kind)
        pr = sc.sample(args.slots, np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(0,))))
        methods = classical_methods(np.random.default_rng(args.seed + 1))
        names = ["max_power", "random", "wmmse", "fp", "fp_direct"]
        if kind == "7cell" and args.skip_fp_direct_7cell:
            names.remove("fp_direct")
        upper = None
        if kind == "3cell":
            names.append("optimum")
        res = run_methods(pr, methods, names, single=args.single)
        if kind == "7cell":
            _, upper = bracket(pr)
        summary = summarize(pr, res, upper_bound=upper)
        print(f"## {kind}: B = {pr.cells}, K = {pr.users_per_cell}, L = {pr.L}")
        print(markdown_table(summary))
        for name in ("wmmse", "fp"):
            us = summary["methods"][name]["time_batched_s"] * 1e6
            print(f"{name} batched: {us:.1f} us/realization (target <= {TARGET_US[kind]:.0f} us, "
                  f"ratio {us / TARGET_US[kind]:.2f})")
        if upper is not None:
            print(f"certified upper bound (mean): {upper.mean():.4f} bit/s/Hz")
        if kind == "3cell":
            _optimum_timing(pr.subset(slice(0, min(args.slots, 200))))
        print()


def _optimum_timing(pr) -> None:
    times, gaps = [], []
    for i in range(pr.n):
        t0 = time.perf_counter()
        r = optimum(pr.subset(slice(i, i + 1)), eps=1e-4)
        times.append(time.perf_counter() - t0)
        gaps.append(r.gap[0])
    t = np.array(times) * 1e3
    print(f"optimum (eps 1e-4, 6 links) over {pr.n} realizations: median {np.median(t):.1f} ms, "
          f"p90 {np.percentile(t, 90):.1f} ms, max {t.max():.1f} ms (target median <= 50 ms, ratio "
          f"{np.median(t) / 50:.2f}); max gap {max(gaps):.2e} bit/s/Hz")


if __name__ == "__main__":
    main()
