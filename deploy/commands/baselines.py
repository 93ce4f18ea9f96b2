"""`bsemu baselines`: the classical methods on drawn or user-supplied channels, as a table and files."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deploy import plots
from deploy.config import check_memory, memory_budget_bytes
from deploy.errors import UsageError
from deploy.rundir import check_output_dir, check_output_files
from radio.channels import SCENARIOS, Scenario
from radio.evaluation import MAX_OPTIMUM_LINKS, classical_methods, markdown_table, run_methods, summarize, write_outputs
from radio.gainsfile import load_gains
from radio.problem import Problem, ProblemError
from radio.units import dbm_to_w

DEFAULT_METHODS = ("max_power", "random", "wmmse", "fp", "fp_direct", "optimum")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baselines", help="max-power, random, WMMSE, FP and the certified optimum",
                       description="Evaluate the classical power-allocation methods. Prints a table; "
                                   "with --out also writes summary.json, summary.md, summary.png and "
                                   "powers_<method>.npz.")
    src = p.add_mutually_exclusive_group()
    # default None (3cell): argparse finds a conflict only with a value that is not the default object
    src.add_argument("--scenario", choices=SCENARIOS, default=None, help="draw channels (default 3cell)")
    src.add_argument("--gains", type=Path, help=".npz file with your own channels (format in README)")
    p.add_argument("--slots", type=int, default=1000, help="realizations to draw (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument("--users-per-cell", type=int, default=None, help="K (default: 2 for 3cell, 8 for 7cell)")
    p.add_argument("--links", type=int, default=5, help="N for --scenario links (default 5)")
    p.add_argument("--sum-power-dbm", type=float, default=None,
                   help="per-BS sum-power limit in dBm (Fig. 15 variant); default: per-user limits only")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated subset of {','.join(DEFAULT_METHODS)} "
                        f"(optimum only for L <= {MAX_OPTIMUM_LINKS}; larger networks get a certified bracket)")
    p.add_argument("--single", type=int, default=20,
                   help="realizations also solved one at a time for the per-realization time (default 20)")
    p.add_argument("--eps", type=float, default=1e-4, help="optimality gap of the optimum, bit/s/Hz")
    p.add_argument("--out", type=Path, default=None, help="folder for summary.json and powers_*.npz")
    p.set_defaults(func=run)


MAX_SLOTS = 10_000_000
P_DBM_RANGE = (-30.0, 80.0)     # as the configs' scenario.p_max_dbm / bs_sum_power_dbm
# bytes per realization and link pair while the methods run: G [n, L, L] float64 and a few temporaries
PROBLEM_COPIES = 4


def problem_bytes(n: int, L: int) -> float:
    """Memory of running the classical methods on n realizations of L links (G and its temporaries)."""
    return float(PROBLEM_COPIES) * 8 * n * L * L


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    if seed is not None and not 0 <= seed < 2**63:
        raise UsageError(f"{flag}: expected an integer in [0, 2^63 - 1], got {seed}")


def check_dbm(value: float | None, flag: str) -> None:
    lo, hi = P_DBM_RANGE
    if value is not None and not (math.isfinite(value) and lo <= value <= hi):
        raise UsageError(f"{flag}: expected a power in [{lo:g}, {hi:g}] dBm, got {value}")


def parse_methods(text: str, flag: str = "--methods") -> list[str]:
    """Comma-separated method names, each one of the classical methods."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    allowed = tuple(classical_methods(np.random.default_rng(0)))
    if not names:
        raise UsageError(f"{flag}: expected at least one of {','.join(allowed)}, got {text!r}")
    bad = [m for m in names if m not in allowed]
    if bad:
        raise UsageError(f"{flag}: unknown method(s) {','.join(bad)}; allowed: {','.join(allowed)}")
    return names


def output_files(names: Sequence[str], png: str) -> list[str]:
    """What `write_outputs` and the plot put into an output folder."""
    return ["summary.json", "summary.md", png, *(f"powers_{n}.npz" for n in names)]


def _check_args(args: argparse.Namespace) -> list[str]:
    """Every argument checked before anything runs or is written; returns the method names."""
    check_seed(args.seed)
    if not 1 <= args.slots <= MAX_SLOTS:
        raise UsageError(f"--slots: expected an integer in [1, {MAX_SLOTS}], got {args.slots}")
    if args.users_per_cell is not None and not 1 <= args.users_per_cell <= 64:
        raise UsageError(f"--users-per-cell: expected an integer in [1, 64], got {args.users_per_cell}")
    if not 1 <= args.links <= 1024:
        raise UsageError(f"--links: expected an integer in [1, 1024], got {args.links}")
    check_dbm(args.sum_power_dbm, "--sum-power-dbm")
    if not (math.isfinite(args.eps) and args.eps > 0):
        raise UsageError(f"--eps: expected a finite value > 0 bit/s/Hz, got {args.eps}")
    if not 0 <= args.single <= MAX_SLOTS:
        raise UsageError(f"--single: expected an integer in [0, {MAX_SLOTS}], got {args.single}")
    names = parse_methods(args.methods)
    if args.out is not None:
        check_output_dir(args.out, "--out")
        check_output_files(args.out, output_files(names, "summary.png"), "--out")
    return names


def _problem(args: argparse.Namespace) -> tuple[Problem, dict]:
    sum_w = None if args.sum_power_dbm is None else float(dbm_to_w(args.sum_power_dbm))
    if args.gains is not None:
        budget = memory_budget_bytes()
        return load_gains(args.gains, sum_w, max_bytes=budget // PROBLEM_COPIES), {"gains_file": str(args.gains)}
    scenario = args.scenario or "3cell"
    over = {"n_links": args.links} if scenario == "links" else {}
    if args.users_per_cell is not None:
        over["users_per_cell"] = args.users_per_cell
    if args.sum_power_dbm is not None:
        over["bs_sum_power_dbm"] = args.sum_power_dbm
    sc = Scenario.preset(scenario, **over)
    check_memory({"channels (--slots x links^2)": problem_bytes(args.slots, sc.L)}, f"--slots {args.slots}")
    rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(0,)))
    return sc.sample(args.slots, rng), {"scenario": sc.to_dict(), "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    try:
        names = _check_args(args)
        problem, context = _problem(args)
        explicit_opt = "optimum" in names and args.methods != ",".join(DEFAULT_METHODS)
        if "optimum" in names and problem.L > MAX_OPTIMUM_LINKS:
            if explicit_opt:
                raise UsageError(f"--methods optimum: the certified optimum supports at most {MAX_OPTIMUM_LINKS} "
                                 f"links, got L = {problem.L} (the other methods get a certified bracket)")
            names.remove("optimum")
        rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(1,)))
        methods = classical_methods(rng, eps=args.eps)
        print(f"{problem.n} realizations, L = {problem.L} links ({problem.cells} cells x "
              f"{problem.users_per_cell}), noise {problem.noise_w:.3e} W", file=sys.stderr)
        results = run_methods(problem, methods, names, single=args.single,
                              progress=lambda m: print(f"  running {m} ...", file=sys.stderr))
    except ProblemError as exc:
        raise UsageError(str(exc)) from None
    upper = None
    if "optimum" not in results:
        from radio.optimum import bracket
        lower, upper = bracket(problem)
        context["bracket"] = {"lower_mean_bps_hz": float(np.mean(lower)), "upper_mean_bps_hz": float(np.mean(upper))}
    summary = summarize(problem, results, context, upper_bound=upper)
    print(markdown_table(summary))
    if upper is not None:
        print(f"\ncertified bracket of the optimum (mean): [{np.mean(lower):.4f}, {np.mean(upper):.4f}] bit/s/Hz")
    if args.out is not None:
        write_outputs(args.out, summary, results)
        plots.method_bars(summary, args.out / "summary.png")
        print(f"\nwrote {args.out}/summary.json, summary.md, summary.png, powers_<method>.npz")
    return 0
