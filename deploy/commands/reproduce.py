"""`bsemu reproduce paper1|paper2`: every figure and table of a paper as PNG + CSV and one Markdown report
(report.md) with our numbers beside the paper's (:mod:`deploy.reproduce`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from deploy.errors import UsageError
from deploy.rundir import check_output_dir, check_output_files

SCALE_HELP = ("quick (default): the shipped networks, 3 %% of the shipped training budgets, 3 seeds: aims at 20 "
              "minutes on 2 idle cores (paper 2: the sweep's quick lengths, about two minutes); paper: the shipped "
              "configs' full budgets, 10 seeds, 1000 realizations: HOURS (paper 1: 45 training runs of ~5-45 min "
              "each, about 9 hours one after another on 2 cores, estimated from measured iteration times; paper 2: "
              "the sweep's paper lengths, not timed here): spread them over a cluster with --address")


def register(sub: argparse._SubParsersAction) -> None:
    from deploy.reproduce import PAPERS

    p = sub.add_parser("reproduce", help="every figure and table of paper 1 or 2 as PNG + CSV and one Markdown "
                                         "report beside the paper's numbers",
                       description="Reproduce a paper: paper1 (Figs. 6-9 training over several initializations "
                                   "for the three TRPO schemes and A2C, Figs. 10-13 sum-rate on one realization and "
                                   "held-out averages for 3 and 7 cells, Fig. 14 the Pmax sweep, Fig. 15 the per-BS "
                                   "sum-power variant, Tables III-IV from the execution phase) or paper2 (Figs. 2-5, "
                                   "Tables I-II through the zo-sweep experiments). Writes <name>.png and <name>.csv "
                                   "per figure / table and report.md into --out, with the certified optimum (or "
                                   "bracket) in every sum-rate table. --scale paper takes hours.")
    p.add_argument("paper", choices=PAPERS, help="paper1 (TRPO, downlink sum-rate) | paper2 (zeroth-order training)")
    p.add_argument("--scale", default="quick", metavar="quick|paper", help=SCALE_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default runs/<time>-reproduce-<paper>); files already there are refused")
    p.add_argument("--address", default=None,
                   help="Ray cluster to spread the training runs over (default: RAY_ADDRESS, else an embedded local "
                        "Ray for the execution phase only)")
    p.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=None,
                   help="run the training runs as one-CPU Ray tasks gathered as they finish (the same numbers as one "
                        "after another; default: on with a cluster address, off on an embedded Ray, where two runs "
                        "sharing 2 cores gain nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check_outputs(paper: str, out: Path) -> None:
    """--out can be made and written, and none of the files the run writes is there already (non-empty)."""
    from deploy.reproduce import output_files

    names = output_files(paper)
    check_output_dir(out, "--out")
    check_output_files(out, names, "--out")
    for name in names:
        f = out / name
        if f.is_file() and f.stat().st_size > 0:
            raise UsageError(f"--out {out}: {name} exists already; choose another --out or move it away")


def run(args: argparse.Namespace) -> int:
    from deploy.reproduce import reproduce
    from deploy.reproduce.common import PUBLIC_SCALES, SCALES

    if args.scale not in SCALES:
        raise UsageError(f"--scale {args.scale!r}: expected one of {', '.join(PUBLIC_SCALES)}")
    out = args.out or Path("runs") / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-reproduce-{args.paper}"
    check_outputs(args.paper, out)
    cluster = (args.address or os.environ.get("RAY_ADDRESS") or "").strip() not in ("", "local")
    parallel = cluster if args.parallel is None else args.parallel
    session = None
    if parallel or args.address:
        from coordinator.session import ray_session

        session = ray_session(args.address)     # a wrong address: one line, exit 2, before anything is written
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        def bar(total: int, desc: str) -> tqdm:
            return tqdm(total=total, desc=desc, file=sys.stderr, unit="run")
    try:
        path = reproduce(args.paper, args.scale, out, args.address, parallel, bar)
    finally:
        if session is not None:
            session.close()
    print(path)
    return 0
