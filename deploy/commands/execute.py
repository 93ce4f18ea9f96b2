"""`bsemu execute`: a trained policy (any scheme), or a classical solver on the central unit, run as a deployed
network would run it: slot by slot on the wall clock, one Ray actor per BS (and one for the central unit),
every message through the nodes' sockets and into the message log; per-BS decision times, per-slot latency,
signalling per slot and the sum-rate, beside paper 1's Tables III and IV."""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deploy import plots
from deploy.config import config_to_dict, load_config
from deploy.errors import UsageError
from deploy.rundir import RunDir

PAPER_MS = "paper (ms)"
METHODS = ("wmmse", "fp", "optimum", "cell_optimum")
"""--method: a solver on the central unit (the first three) or every BS's own-cell rule (cell_optimum, no message);
bs_agent.trpo.execution's METHODS + OWN_CELL_METHODS (tested)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("execute", help="run a trained policy (or --method) slot by slot on BS actors: per-BS "
                                       "latency, signalling per slot, asynchrony (paper 1 Tables III-IV)",
                       description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("run_dir", type=Path, nargs="?", help="run folder written by `bsemu train` (or use --method)")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="a classical solver on the central unit instead of a trained policy, or cell_optimum: every "
                        "BS's own cell's optimum, no message (scenario: --set scenario.kind=3cell|7cell|19cell, ...)")
    p.add_argument("--slots", type=int, default=None, help="slots to run (run.slots, default 1000)")
    p.add_argument("--slot-ms", type=float, default=None, help="slot period in ms (run.slot_ms, default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. --set links.delay_ms=0.2 --set links.loss=0.05 --set links.bs_cu.delay_ms=1 "
                        "--set run.clock=logical --set run.fallback=undecided (repeatable)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN_DIR/execute/<time>, or runs/<time>-execute-<method>)")
    p.set_defaults(func=run)

    w = sub.add_parser("execute-sweep", help="the execution phase of several run folders and solvers against link "
                                             "delay and loss: CSV + plots of sum-rate and slot latency")
    w.add_argument("run_dirs", type=Path, nargs="*", help="run folders written by `bsemu train`")
    w.add_argument("--methods", default="", help=f"comma-separated classical methods ({','.join(METHODS)})")
    w.add_argument("--delays-ms", default="0,0.2,0.5,1,2", help="one-way delays per link (ms), at no loss")
    w.add_argument("--losses", default="0,0.05,0.1,0.2,0.4", help="loss probabilities, at no delay")
    w.add_argument("--slots", type=int, default=300, help="slots per point (default 300)")
    w.add_argument("--slot-ms", type=float, default=None, help="slot period in ms (run.slot_ms, default 2)")
    w.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="execution settings of every point (run.*, scenario.* for the solvers)")
    w.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    w.add_argument("--out", type=Path, default=None, help="output folder (default runs/<time>-execute-sweep)")
    w.set_defaults(func=run_sweep)


def _config(args: argparse.Namespace) -> Any:
    from coordinator.execute.config import ExecuteConfig, check_execute

    sets = list(args.overrides)
    if args.slots is not None:
        sets.append(f"run.slots={args.slots}")
    if args.slot_ms is not None:
        sets.append(f"run.slot_ms={args.slot_ms}")
    cfg = load_config(ExecuteConfig, None, sets)
    check_execute(cfg)
    from bs_agent.realtime import realtime_refusal

    refusal = realtime_refusal(cfg.run.priority)     # this machine's nodes; a cluster's others answer for themselves
    if refusal is not None:
        raise UsageError(refusal)
    if args.run_dir is not None and any(s.startswith("scenario.") for s in args.overrides):
        raise UsageError("--set scenario.*: a trained policy runs on its own run's scenario (use it with --method)")
    return cfg


def _source(args: argparse.Namespace, cfg: Any) -> tuple[Any, int, dict[str, Any]]:
    """(Source, seed, what it is for meta.json)."""
    from coordinator.execute.runner import Source
    from coordinator.trpo.config import TrainConfig, agent_spec, scenario_of

    if (args.run_dir is None) == (args.method is None):
        raise UsageError(f"give a RUN_DIR (a trained policy) or --method {'|'.join(METHODS)}, not both")
    if args.method is not None:
        sc = scenario_of(TrainConfig(scenario=cfg.scenario))
        if args.method == "optimum" and sc.L > 8:
            raise UsageError(f"--method optimum: certified for networks of at most 8 links, this one has {sc.L}")
        if args.method == "cell_optimum" and sc.K > 8:
            raise UsageError(f"--method cell_optimum: certified for cells of at most 8 users, this one has {sc.K}")
        seed = 1 if cfg.run.seed is None else cfg.run.seed
        scheme = "full" if args.method == "cell_optimum" else "centralized"
        return Source(sc, scheme, method=args.method), seed, {"method": args.method}
    from deploy.commands.train import check_checkpoint, check_config
    from deploy.runs import read_run_config

    rd = RunDir.open(args.run_dir)
    train = read_run_config(rd, TrainConfig, check_config)     # the same folder checks as evaluate and --resume
    ck = rd.load_latest_checkpoint()
    if ck is None:
        raise UsageError(f"run dir {rd.path}: no checkpoint to execute (checkpoints/ckpt-*.pt; train it first)")
    check_checkpoint(train, ck, rd.latest_checkpoint_file())
    seed = train.run.seed + 1 if cfg.run.seed is None else cfg.run.seed
    src = Source(scenario_of(train), train.run.scheme, spec=agent_spec(train), theta=np.asarray(ck["theta"]),
                 power_levels=train.policy.power_levels)
    return src, seed, {"run_dir": str(rd.path), "checkpoint_iteration": int(ck["iteration"]),
                       "trained": train.method_name}


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    from deploy.rundir import check_output_dir

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or (args.run_dir / "execute" / stamp if args.run_dir is not None
                       else Path("runs") / f"{stamp}-execute-{name}")
    check_output_dir(out, "--out", empty=True)
    return out


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    src, seed, what = _source(args, cfg)
    out = _out_dir(args, src.name)
    from coordinator.execute.report import report
    from coordinator.execute.runner import ExecutionRunner

    n, T = cfg.run.slots, cfg.run.slot_ms
    print(f"bsemu execute: {src.name}, {src.scenario.cells} cells x {src.scenario.K} users, {n} slots of {T:g} ms "
          f"({cfg.run.clock} clock) -> {out}", file=sys.stderr)
    runner = ExecutionRunner(cfg, src, seed, address=args.address)
    collected = runner.run()
    summary, per_slot, samples = report(cfg, src, runner.problem, runner.order, collected)
    summary["seed"], summary["source"] = seed, what
    write_outputs(out, cfg, summary, per_slot, samples, collected)
    print(table_iv([summary]))
    print(out / "summary.json")
    return 0


def write_outputs(out: Path, cfg: Any, summary: dict[str, Any], per_slot: dict[str, np.ndarray],
                  samples: dict[str, np.ndarray], collected: Any) -> None:
    """summary.json / .md, slots.csv, powers.npz (applied and ideal powers, W), latency_cdf.png, messages.csv
    (+ its summary), config.yaml, meta.json."""
    from coordinator.messages import RunMessages
    from deploy.rundir import _git_commit, _versions
    from protocol.log import EXECUTION

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    (out / "meta.json").write_text(json.dumps({"seed": summary["seed"], "source": summary["source"],
                                               "versions": _versions(), "git_commit": _git_commit(),
                                               "argv": sys.argv, "placement": summary["placement"],
                                               "secure": collected.secure}, indent=2))
    if collected.keys:                         # the run's public keys (never a secret), one certificate per node
        from protocol import save_public_keys

        save_public_keys(collected.keys, out / "keys")
    log = RunMessages(out / "messages.csv", run_id=out.name)
    log.phase = EXECUTION
    log.node_of = {i: p["node"] for i, p in collected.placement.items()}     # cross-node links in the summary
    for r in collected.nodes.values():
        log.record_rows(sorted(r["rows"], key=lambda row: row[8] or row[7]))
    log.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(table_iv([summary]) + "\n" + _details(summary))
    np.savez(out / "powers.npz", p=per_slot["p_w"], p_ideal=per_slot["p_ideal_w"])
    with (out / "slots.csv").open("w", newline="") as f:
        w = csv.writer(f)
        keys = [k for k, v in per_slot.items() if np.ndim(v) == 1]
        w.writerow(keys)
        w.writerows(zip(*(per_slot[k].tolist() for k in keys), strict=True))
    plots.latency_cdf({**{f"decision {k}": v for k, v in samples.items()},
                       "slot": per_slot["slot_us"][summary["warmup_slots"]:]}, out / "latency_cdf.png",
                      title=f"{summary['method']}: decision and slot latency")


def table_iv(summaries: list[dict[str, Any]]) -> str:
    """Paper 1 Table IV-style rows: per-BS decision and slot latency, signalling, sum-rate, the paper's time."""
    from radio.evaluation import md_table

    head = ["scheme / method", "decision p50 / p99 µs (per node)", "slot p50 / p99 µs",
            "msgs / bytes per slot (Table III scalars)", "sum-rate Mbps (ideal links)", "deadline met",
            "paper Table IV (ms)"]
    rows = []
    for s in summaries:
        dec = ", ".join(f"{k} {v.get('p50', float('nan')):.0f}/{v.get('p99', float('nan')):.0f}"
                        for k, v in s["decision_us"].items())
        sl = s["slot_us"]
        paper = s.get("paper_table_iv_s")
        slot = f"{sl.get('p50', float('nan')):.0f} / {sl.get('p99', float('nan')):.0f}"
        rate = f"{s['sum_rate_mbps']:.2f} ({s['sum_rate_mbps_ideal']:.2f})"
        rows.append([s["method"], dec, slot,
                     f"{s['messages_per_slot']:.2f} / {s['bytes_per_slot']:.0f} ({s['table3_scalars_per_slot']})",
                     rate, f"{100 * s['deadline_met_share']:.1f} %", "" if paper is None else f"{paper * 1e3:g}"])
    return md_table(head, rows) + "\n"


def _details(s: dict[str, Any]) -> str:
    return "\n".join([
        "", f"- {s['slots']} slots of {s['slot_ms']:g} ms on the {s['clock']} clock ({s['warmup_slots']} warm-up slots "
        "left out of the latency figures); seed " + str(s["seed"]),
        f"- late messages {s['late_messages']}, lost {s['lost_messages']}, fallbacks {s['fallbacks']}, "
        f"held powers {s['holds']}, deadline misses {s['deadline_misses']}",
        f"- links: {s['links']}",
        f"- clock offsets (ns, against the coordinator): {s['clock_offsets_ns']}",
        "- decision: inputs available -> powers sent (a centralized-path BS: CSI -> upload sent); slot: first CSI "
        "-> last powers applied. Paper: 3 cells, one process per scheme on a CPU (Table IV).", ""])


def _floats(text: str, flag: str, lo: float, hi: float) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if any(not lo <= v <= hi for v in vals):
        raise UsageError(f"{flag}: expected values in [{lo:g}, {hi:g}], got {text!r}")
    return vals


def run_sweep(args: argparse.Namespace) -> int:
    from coordinator.execute.config import ExecuteConfig, check_execute
    from deploy.sweeps.execution import run_sweep as sweep

    delays = _floats(args.delays_ms, "--delays-ms", 0.0, 1e4)
    losses = _floats(args.losses, "--losses", 0.0, 1.0)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or (not methods and not args.run_dirs):
        raise UsageError(f"--methods {args.methods!r}: expected run folders and/or methods among {','.join(METHODS)}")
    sets = [*args.overrides, f"run.slots={args.slots}"] + ([f"run.slot_ms={args.slot_ms}"] if args.slot_ms else [])
    base = load_config(ExecuteConfig, None, sets)
    check_execute(base)
    points = []
    for rd in args.run_dirs:
        src, seed, _ = _source(argparse.Namespace(run_dir=rd, method=None), base)
        points.append((f"{src.name} ({rd.name})", src, seed))
    for m in methods:
        src, seed, _ = _source(argparse.Namespace(run_dir=None, method=m), base)
        points.append((m, src, seed))
    from deploy.rundir import check_output_dir

    out = args.out or Path("runs") / f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-execute-sweep"
    check_output_dir(out, "--out", empty=True)
    n = len(points) * (len(delays) + len(losses))
    print(f"bsemu execute-sweep: {len(points)} sources x {len(delays) + len(losses)} link settings = {n} runs of "
          f"{base.run.slots} slots -> {out}", file=sys.stderr)
    rows = sweep(points, sets, delays, losses, out, args.address,
                 progress=lambda msg: print(f"  {msg}", file=sys.stderr))
    for r in rows:
        print(f"{r['source']:32s} {r['axis']:5s} delay {r['delay_ms']:6.2f} ms loss {r['loss']:.2f}: "
              f"{r['sum_rate_mbps']:7.2f} Mbps ({r['ratio_to_ideal']:.3f} x ideal), "
              f"slot p50 {r['slot_p50_us']:8.0f} µs, deadline met {100 * r['deadline_met_share']:.1f} %")
    print(out / "execute_sweep.csv")
    return 0
