"""`bsemu baselines`: the classical methods on drawn or user-supplied channels, as a table and files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deploy import plots
from deploy.errors import UsageError
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
    src.add_argument("--scenario", choices=SCENARIOS, default="3cell", help="draw channels (default 3cell)")
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


def _problem(args: argparse.Namespace) -> tuple[Problem, dict]:
    sum_w = None if args.sum_power_dbm is None else float(dbm_to_w(args.sum_power_dbm))
    if args.gains is not None:
        return load_gains(args.gains, sum_w), {"gains_file": str(args.gains)}
    if not 1 <= args.slots <= 10_000_000:
        raise UsageError(f"--slots: expected an integer in [1, 10000000], got {args.slots}")
    over = {"n_links": args.links} if args.scenario == "links" else {}
    if args.users_per_cell is not None:
        over["users_per_cell"] = args.users_per_cell
    if args.sum_power_dbm is not None:
        over["bs_sum_power_dbm"] = args.sum_power_dbm
    sc = Scenario.preset(args.scenario, **over)
    rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(0,)))
    return sc.sample(args.slots, rng), {"scenario": sc.to_dict(), "seed": args.seed}


def run(args: argparse.Namespace) -> int:
    try:
        problem, context = _problem(args)
        names = [m.strip() for m in args.methods.split(",") if m.strip()]
        explicit_opt = "optimum" in names and args.methods != ",".join(DEFAULT_METHODS)
        if "optimum" in names and problem.L > MAX_OPTIMUM_LINKS and not explicit_opt:
            names.remove("optimum")
        if not args.eps > 0:
            raise UsageError(f"--eps: expected a value > 0 bit/s/Hz, got {args.eps}")
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
