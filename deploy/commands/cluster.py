"""`bsemu cluster-check`: join a Ray cluster and print one table of its nodes, the ZeroMQ round trips
between every pair of them and each node's clock offset against the driver (:mod:`coordinator.cluster`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deploy.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster-check", help="check a Ray cluster: nodes, versions, ZeroMQ between every pair "
                                             "of nodes, clock offsets",
                       description="Join the Ray cluster at --address and print one table: every node (id, IP, "
                                   "alive, CPUs, memory, Ray and Python versions reported by a task on the node, "
                                   "clock offset against this driver), and the ZeroMQ round trip from each node "
                                   "to every other over real sockets. Exit 0 if every node and pair answered, "
                                   "2 if the address cannot be joined or a node or pair did not answer.")
    p.add_argument("--address", default=None,
                   help="the cluster's GCS address HOST:PORT (as `ray start --head` prints it), [IPv6]:PORT or "
                        "auto (default: RAY_ADDRESS); ray:// is not supported")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="the table as JSON: on stdout instead of the table (--json), or into FILE beside it")
    p.add_argument("--rounds", type=int, default=8, help="clock pings per pair after the first (default 8)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S",
                   help="seconds a node or pair may take to answer its first ping (default 3); a probe may "
                        "take 3x that, at least 10 s, to start on its node")
    p.add_argument("--curve", action="store_true",
                   help="CURVE-encrypt the check's sockets also when every node is on this host (always across "
                        "hosts, as bsemu's runs)")
    p.set_defaults(func=run_cluster_check)


def run_cluster_check(args: argparse.Namespace) -> int:
    import os

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        raise UsageError("no cluster to check: give --address HOST:PORT (the address `ray start --head` prints) "
                         "or set RAY_ADDRESS")
    if not 0 <= args.rounds <= 1000:
        raise UsageError(f"--rounds {args.rounds}: allowed 0-1000")
    if not 0.1 <= args.timeout <= 60:
        raise UsageError(f"--timeout {args.timeout:g}: allowed 0.1-60 seconds")
    out = None if args.json in (None, "-") else Path(args.json)
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--json {out}: folder {out.parent} does not exist")
    from coordinator.cluster import check_cluster
    from coordinator.session import ray_session

    t0 = time.perf_counter()
    session = ray_session(address)  # SessionError (a ConfigError): one line, exit 2
    try:
        report = check_cluster(address, rounds=args.rounds, reach_timeout_s=args.timeout,
                               start_timeout_s=max(10.0, 3 * args.timeout), curve=True if args.curve else None)
    finally:
        session.close()
    wall = time.perf_counter() - t0
    data = {**report.to_dict(), "wall_s": round(wall, 3)}
    if args.json == "-":
        print(json.dumps(data, indent=2))
    else:
        print(format_table(report, wall))
        if out is not None:
            out.write_text(json.dumps(data, indent=2) + "\n")
    for note in report.notes:
        print(f"bsemu cluster-check: note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(f"bsemu cluster-check: error: {problem}", file=sys.stderr)
    return 0 if report.ok else 2


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f} ms"


def _offset(ns: int | None, rtt: int | None) -> str:
    if ns is None or rtt is None:
        return "FAILED"
    if abs(ns) >= 10**9:  # clocks of different hosts: CLOCK_MONOTONIC counts from each boot
        return f"{ns / 1e9:+.6f} s ± {rtt / 2e6:.3f} ms"
    return f"{ns / 1e6:+.3f} ms ± {rtt / 2e6:.3f} ms"


def format_table(report, wall_s: float) -> str:
    """One table: a row per node; the last columns are the ZeroMQ round trip from that node to each node."""
    alive = [n for n in report.nodes if n.alive]
    head = ["node", "ip", "alive", "cpus", "memory", "ray", "python", "clock - driver"]
    head += [f"zmq -> {n.short}" for n in alive]
    rows = []
    for n in report.nodes:
        row = [n.short, n.ip, "yes" if n.alive else "NO", f"{n.cpus:g}", f"{n.memory_bytes / 2**30:.1f} GiB",
               n.ray_version or "-", n.python_version or "-",
               _offset(n.offset_ns, n.offset_rtt_ns) if n.alive else "-"]
        for m in alive:
            p = report.pair(n.node_id, m.node_id)
            row.append("." if m.node_id == n.node_id else "-" if p is None else _ms(p.rtt_ns) if p.ok else "FAILED")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"cluster {report.address}: {len(alive)} alive node(s) of {len(report.nodes)}; driver "
             f"{report.driver_ip} (ray {report.driver_ray}, python {report.driver_python}); ZeroMQ on "
             f"{report.zmq_host}{' (one host)' if report.one_host else ''}{', CURVE' if report.curve else ''}; "
             f"checked in {report.seconds:.1f} s ({wall_s:.1f} s with joining)"]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.append("clock - driver: node's monotonic clock minus the driver's, ± half the round trip; zmq -> X: "
                 "smallest HEARTBEAT round trip from the row's node to node X over protocol.RingNode; FAILED: no "
                 "answer; -: not measured")
    return "\n".join(lines)
