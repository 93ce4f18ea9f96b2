"""`bsemu zo` (one zeroth-order / Adam / FL run into a run folder) and `bsemu zo-sweep` (paper 2's
figures and tables as CSV + PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deploy import plots
from deploy import tensorboard as tb
from deploy.config import check_memory, load_config
from deploy.errors import UsageError
from deploy.rundir import RunDirError, check_output_dir, check_output_files
from deploy.runs import Run, dead_actor, record_dropped, restart_after_death, start_run

# what `--set` may change when a run is resumed: its length, checkpointing, the evaluation and how links are
# packed into actors and placed; everything else (network, policies, algorithm, method, backend and clock -- the
# checkpoint's link states are backend-specific --, seed, message logging) made the checkpoint and stays
RESUME_KEYS = ("run.iterations", "run.checkpoint_every", "run.keep_checkpoints", "run.eval_every",
               "run.eval_sequences", "run.eval_slots", "run.links_per_actor", "run.placement", "run.max_restarts",
               "run.tensorboard")


LOCAL_PARALLEL = False
"""``bsemu zo-sweep`` on an embedded local Ray (no --address): run the points as parallel Ray tasks? No: on the
2-core machine the quick sweep (the paper's six experiments, 21 runs) took 24-28 s one after another and 33-46 s as
tasks (interleaved, load average 4-6 from other work; 24 s against 34 s at load 0.8): Ray's start (~4 s) and stop
(~1.5 s) and two runs sharing two cores with Ray's own processes cost more than the second core gains. With a
cluster (--address or RAY_ADDRESS) the runs go to its CPUs, in parallel by default."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zo", help="decentralized zeroth-order training of per-link policies (paper 2)",
                       description="Train every link's policy with Algorithm 1 of paper 2 (or the centralized "
                                   "Adam / FL benchmarks, run.method). Writes a run folder: config, metrics.csv, "
                                   "messages.csv and its summary, curves.png, summary.md, checkpoints.")
    p.add_argument("--config", type=Path, default=None, help="YAML config (deploy/configs/zo_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.iterations=200 (repeatable)")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder (default runs/<time>-<config>)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address for run.backend=ray (default: RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--resume", type=Path, default=None,
                   help="continue the run in this folder from its last checkpoint (--set may extend run.iterations)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    s = sub.add_parser("zo-sweep", help="paper 2's experiments (Figs. 2-5, Tables I-II) and delay / loss sweeps "
                                        "as CSV + PNG",
                       description="Run the experiments of paper 2 (in process; the *_real ones with the links "
                                   "as Ray actors on the wall clock) and write zo_<name>.csv and zo_<name>.png per "
                                   "experiment into --out.")
    s.add_argument("--experiments", default="fig2,fig3,fig4,fig5,table1,table2",
                   help="comma-separated subset of fig2,fig3,fig4,fig5,table1,table2 (the paper's, by default) and "
                        "delay,loss (logical clock) / delay_real,loss_real (ray backend, wall clock)")
    s.add_argument("--scale", choices=("quick", "paper"), default="quick",
                   help="quick: short runs (minutes); paper: the paper's lengths (hours)")
    s.add_argument("--config", type=Path, default=None, help="base YAML config (default: paper settings)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out", type=Path, default=Path("runs/zo-sweep"), help="output folder")
    s.add_argument("--seeds", type=int, default=1, help="seeds averaged per point")
    s.add_argument("--iterations", type=int, default=None,
                   help="iterations per run, overriding --scale (smoke tests, quick looks)")
    s.add_argument("--address", default=None,
                   help="Ray cluster to spread the runs over (default: RAY_ADDRESS, else an embedded local Ray)")
    s.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=None,
                   help="run the logical-clock runs as Ray tasks (one CPU each, spread over the nodes) and gather "
                        "them as they finish; the same rows as one after another (default: on with a cluster "
                        "address, " + ("on" if LOCAL_PARALLEL else "off") + " on an embedded Ray). The real-clock "
                        "experiments always run one run at a time, after the others")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=run_sweep)


def _check(cfg: Any) -> None:
    from coordinator.zo.config import memory_estimate, validate

    validate(cfg)
    check_memory(memory_estimate(cfg), "this run")


def _vector(v: Any, n: int) -> bool:
    import numpy as np

    return isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype.kind == "f"


def check_checkpoint(cfg: Any, ck: dict[str, Any], f: Path) -> None:
    """The checkpoint fits the config: every link's parameter vector of the length its policy implies, the
    air's parameter stacks and channel block of the network's size, and (in-process runs on the logical
    clock) a trial load into a fresh trainer succeeds."""
    import copy

    import numpy as np

    from coordinator.zo.config import param_counts

    N, n = cfg.scenario.n_links, param_counts(cfg)
    sizes = "policy.hidden / policy.per_link_hidden and scenario.n_links of config.yaml"
    st = ck.get("trainer")
    if not isinstance(st, dict):
        raise RunDirError(f"checkpoint {f}: trainer: expected the trainer's state (a mapping), got "
                          f"{type(st).__name__}")

    def thetas(values: Any, key: str) -> None:
        if not isinstance(values, list) or len(values) != N:
            raise RunDirError(f"checkpoint {f}: {key}: expected {N} links (scenario.n_links), got "
                              f"{len(values) if isinstance(values, list) else type(values).__name__}")
        for i, v in enumerate(values):
            if not _vector(v, n[i]):
                got = f"shape {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
                raise RunDirError(f"checkpoint {f}: {key}[{i}]: expected {n[i]} parameters ({sizes}), got {got}")

    if cfg.run.method == "proposed":
        links = st.get("links")
        agents = links if cfg.run.backend == "ray" else (links or {}).get("agents") if isinstance(links, dict) \
            else None
        if cfg.run.backend == "ray" and isinstance(agents, list):   # a link host's state: its agent's, emulator's
            agents = [a.get("agent") if isinstance(a, dict) else a for a in agents]
        thetas([a.get("theta") if isinstance(a, dict) else a for a in agents] if isinstance(agents, list) else agents,
               "trainer.links (theta of each link)")
        air = st.get("air")
        stacks = air.get("stacks") if isinstance(air, dict) else None
        if not (isinstance(stacks, list) and all(isinstance(a, np.ndarray) and a.ndim == 2 for a in stacks)
                and sum(a.shape[0] for a in stacks) == N and all(a.shape[1] in n for a in stacks)):
            raise RunDirError(f"checkpoint {f}: trainer.air.stacks: expected the links' parameters in force "
                              f"({N} links, {sizes})")
        block = air.get("block")
        if not (isinstance(block, np.ndarray) and block.ndim == 3 and block.shape[1:] == (N, N)):
            raise RunDirError(f"checkpoint {f}: trainer.air.block: expected channels [slots, {N}, {N}]")
    else:
        thetas(st.get("params"), "trainer.params")
    if cfg.run.backend == "inproc" and cfg.run.clock == "logical":
        from coordinator.messages import RunMessages
        from coordinator.zo.links import Exchange
        from coordinator.zo.train import make_trainer

        try:
            make_trainer(cfg, RunMessages(), Exchange()).load_state(copy.deepcopy(st))
        except Exception as exc:  # noqa: BLE001 - a damaged state fails in many ways; none may pass
            reason = " ".join(str(exc).split())[:80] or type(exc).__name__
            raise RunDirError(f"checkpoint {f}: does not fit the config ({type(exc).__name__}: {reason})") from None
    elif cfg.run.method == "proposed":
        from coordinator.zo.links import make_agents

        for i, (agent, s) in enumerate(zip(make_agents(cfg), agents, strict=True)):
            try:
                agent.load_state(copy.deepcopy(s))
            except Exception as exc:  # noqa: BLE001
                reason = " ".join(str(exc).split())[:80] or type(exc).__name__
                raise RunDirError(f"checkpoint {f}: trainer.links[{i}]: does not fit the config ({reason})") \
                    from None


def run(args: argparse.Namespace) -> int:
    from coordinator.zo.config import ZOConfig

    run_ = start_run(ZOConfig, args.config, args.overrides, args.resume, args.run_dir, tb.checked(_check),
                     default_name="zo", resume_keys=RESUME_KEYS, check_checkpoint=check_checkpoint,
                     messages=lambda cfg: bool(cfg.run.log_messages))
    return _train_into(run_, args.address, args.no_progress)


def _reopen(path: Path) -> Run:
    """The run in ``path`` reopened at its last checkpoint, as ``bsemu zo --resume PATH`` does."""
    from coordinator.zo.config import ZOConfig

    return start_run(ZOConfig, None, [], path, None, _check, default_name="zo", resume_keys=RESUME_KEYS,
                     check_checkpoint=check_checkpoint, messages=lambda cfg: bool(cfg.run.log_messages))


def _last_row(path: Path) -> dict[str, Any]:
    """The last metrics row of a run folder, as numbers (what the summary takes from a run's last row)."""
    import csv

    rows = list(csv.DictReader(path.open(newline=""))) if path.is_file() else []
    out: dict[str, Any] = {}
    for k, v in (rows[-1] if rows else {}).items():
        try:
            out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def _train_into(run_: Run, address: str | None, no_progress: bool, restarts: int = 0) -> int:
    from coordinator.zo.links import Exchange
    from coordinator.zo.train import Diverged, Evaluator, make_trainer, train

    cfg, rd, start = run_.cfg, run_.rd, run_.start
    diverged = None
    writer, log = run_.open_logs(metrics_kept=lambda it: it <= start, messages=cfg.run.log_messages)
    writer = tb.tee(writer, cfg, rd.path)     # run.tensorboard: metrics.csv's rows into tb/ too
    exchange = Exchange()
    links = None
    died, dropped = None, {}
    try:
        if cfg.run.method == "proposed" and cfg.run.backend == "ray":
            from coordinator.zo.ray_links import RayLinks

            links = RayLinks(cfg, log, exchange, address=address)
            where = links.meta()                       # each link's node: meta.json, and cross-node links
            rd.update_meta(**where)
            log.node_of = {int(k[4:]): v["node"] for k, v in where["placement"].items()}
            log.node_of[-2] = where["driver_node"]
            if links.keys:                             # the run's public keys (never a secret), one per link
                from protocol import save_public_keys

                save_public_keys(links.keys, rd.path / "keys")
        rd.update_meta(secure=bool(links is not None and links.secure))   # CURVE on the links' nodes
        trainer = make_trainer(cfg, log, exchange, links)
        if run_.ck is not None:
            trainer.load_state(run_.ck["trainer"])
        evaluator = Evaluator(cfg)
        bar = None
        if not no_progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.run.iterations, initial=start, desc=f"zo {cfg.run.method}", file=sys.stderr,
                       unit="it")
        last_it = [start]

        def on_row(row: dict[str, Any]) -> None:
            writer.write(row)
            if bar is not None:
                bar.update(row["iteration"] - last_it[0])
                last_it[0] = row["iteration"]
                bar.set_postfix(sum_rate=f"{row['sum_rate']:.3f}")

        def on_ckpt(it: int) -> None:
            run_.checkpoint({"trainer": trainer.state()}, it, writer, log)

        try:
            last = train(cfg, trainer, evaluator, cfg.run.iterations, on_row, on_ckpt)
        except Diverged as exc:       # its rows and checkpoints so far are finite; no summary
            diverged = exc
        dropped = record_dropped("zo", rd, links)   # stray frames the nodes counted and dropped: meta.json
        writer.close()
        if diverged is None and not last:       # resumed at its end (killed after the last checkpoint): no new row
            last = _last_row(rd.path / "metrics.csv")
        if bar is not None:
            bar.close()
    except Exception as exc:
        died = dead_actor(exc, links)         # a link actor died: restart or one line, never a traceback
        if died is None:
            raise
        writer.close()
    finally:
        summary = log.close()
        if links is not None:
            links.close()
    if died is not None:
        if not restart_after_death("zo", rd, died, cfg.run.max_restarts, restarts):
            return 1
        # new actors, the last checkpoint reloaded and metrics / messages cut back to it, exactly as --resume
        return _train_into(_reopen(rd.path), address, no_progress, restarts + 1)
    plots.plot_curves(rd.path / "metrics.csv", ["sum_rate", "train_sum_rate", "bytes"], rd.path / "curves.png",
                      x_key="samples", w=None, title=f"paper 2: {cfg.run.method} ({cfg.algo.update}), N = "
                                                    f"{cfg.scenario.n_links}")
    if diverged is not None:
        ck = rd.latest_checkpoint_file()
        rd.update_meta(end_iteration=diverged.iteration, diverged={"iteration": diverged.iteration,
                                                                   "quantity": diverged.quantity,
                                                                   "detail": diverged.detail})
        kept = f"last finite checkpoint: {ck}" if ck is not None else "no checkpoint was written before it"
        print(f"bsemu zo: error: {diverged} ({kept}; no summary)", file=sys.stderr)
        return 1
    final = {"method": cfg.run.method, "update": cfg.algo.update, "n_links": cfg.scenario.n_links,
             "iterations": cfg.run.iterations, **{k: last.get(k) for k in
                                                  ("sum_rate", "max_power", "messages", "scalars", "bytes")},
             "messages_logged": summary.get("totals", {}), **({"frames_dropped": dropped} if dropped else {})}
    rd.write_json("summary.json", final)
    from radio.evaluation import md_table

    keys = ("method", "update", "n_links", "iterations", "sum_rate", "max_power", "messages", "scalars", "bytes")
    table = md_table(["quantity", "value"], [[k, f"{v:.4f}" if isinstance(v := final.get(k), float) else v]
                                             for k in keys])
    (rd.path / "summary.md").write_text(table + "\n")
    print(table)
    for w in suspicious(last):
        print(f"bsemu zo: warning: {w}", file=sys.stderr)
    print(f"run folder: {rd.path}")
    return 0


def suspicious(last: dict[str, Any]) -> list[str]:
    """Warnings for a run that finished but probably learned nothing: most received d discarded as stale
    (delays the update rule cannot use), or a final held-out sum-rate not above max power's."""
    out = []
    received = float(last.get("messages") or 0) - float(last.get("dropped") or 0)
    stale = float(last.get("stale_d") or 0)
    if received > 0 and stale >= 0.5 * received:
        out.append(f"{stale:.0f} of {received:.0f} received d were discarded as stale: the update rule cannot use "
                   "what the links' delays deliver (try algo.update=async or graph)")
    rate, mp = last.get("sum_rate"), last.get("max_power")
    if isinstance(rate, float) and isinstance(mp, float) and rate <= mp:
        out.append(f"the final held-out sum-rate {rate:.4f} is not above max power's {mp:.4f}: the policies "
                   "learned nothing useful (more iterations, another step size, or less delay / loss)")
    return out


def run_sweep(args: argparse.Namespace) -> int:
    import os

    from coordinator.zo.config import ZOConfig
    from deploy.sweeps import EXPERIMENTS
    from deploy.sweeps.zo import distinct_runs, execute, plan

    names = [n.strip() for n in args.experiments.split(",") if n.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad or not names:
        got = f"unknown {','.join(bad)}" if bad else f"no experiment in {args.experiments!r}"
        raise UsageError(f"--experiments: {got}; allowed: {','.join(EXPERIMENTS)} (comma-separated)")
    if not 1 <= args.seeds <= 100:
        raise UsageError(f"--seeds: expected an integer in [1, 100], got {args.seeds}")
    if args.iterations is not None and not 1 <= args.iterations <= 10_000_000:
        raise UsageError(f"--iterations: expected an integer in [1, 10000000], got {args.iterations}")
    base = load_config(ZOConfig, args.config, args.overrides)
    _check(base)
    check_output_dir(args.out, "--out")
    check_output_files(args.out, [f"zo_{n}.{ext}" for n in names for ext in ("csv", "png")], "--out")
    plans = plan(list(dict.fromkeys(names)), base, args.scale, args.out, args.seeds, args.iterations)
    cluster = (args.address or os.environ.get("RAY_ADDRESS") or "").strip() not in ("", "local")
    parallel = (cluster or LOCAL_PARALLEL) if args.parallel is None else args.parallel
    parallel = parallel and any(not p.real for p in plans.values())
    session = None
    if parallel or args.address:
        from coordinator.session import ray_session

        session = ray_session(args.address)    # a wrong address: one line, exit 2, before anything is written
    bar = None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        runs = distinct_runs(plans)
        how = "one after another"
        if parallel:
            import ray

            nodes = [n for n in ray.nodes() if n.get("Alive")]
            cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
            how = f"as Ray tasks on {len(nodes)} node(s), {cpus:g} CPUs (real-clock runs one at a time, after)"
        print(f"running {','.join(plans)} ({args.scale}): {len(runs)} runs, {how}", file=sys.stderr)
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(runs), desc="zo-sweep", file=sys.stderr, unit="run")
        write = print if bar is None else (lambda line: bar.write(line, file=sys.stdout))
        for _, csv_path, png_path, text in execute(plans, args.out, parallel, None if bar is None else bar.update):
            write(text)
            write(f"  -> {csv_path}  {png_path}")
    finally:
        if bar is not None:
            bar.close()
        if session is not None:
            session.close()
    return 0
