"""`bsemu zo` (one zeroth-order / Adam / FL run into a run folder) and `bsemu zo-sweep` (paper 2's
figures and tables as CSV + PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deploy import plots
from deploy.config import load_config
from deploy.errors import UsageError
from deploy.runs import Run, start_run


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

    s = sub.add_parser("zo-sweep", help="paper 2's experiments (Figs. 2-5, Tables I-II) as CSV + PNG",
                       description="Run the experiments of paper 2 in process and write <name>.csv and "
                                   "<name>.png per experiment into --out.")
    s.add_argument("--experiments", default="fig2,fig3,fig4,fig5,table1,table2",
                   help="comma-separated subset of fig2,fig3,fig4,fig5,table1,table2")
    s.add_argument("--scale", choices=("quick", "paper"), default="quick",
                   help="quick: short runs (minutes); paper: the paper's lengths (hours)")
    s.add_argument("--config", type=Path, default=None, help="base YAML config (default: paper settings)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out", type=Path, default=Path("runs/zo-sweep"), help="output folder")
    s.add_argument("--seeds", type=int, default=1, help="seeds averaged per point")
    s.add_argument("--iterations", type=int, default=None,
                   help="iterations per run, overriding --scale (smoke tests, quick looks)")
    s.set_defaults(func=run_sweep)


def _check(cfg: Any) -> None:
    from coordinator.zo.config import validate

    validate(cfg)


def run(args: argparse.Namespace) -> int:
    from coordinator.zo.config import ZOConfig

    run_ = start_run(ZOConfig, args.config, args.overrides, args.resume, args.run_dir, _check, default_name="zo")
    return _train_into(run_, args.address, args.no_progress)


def _train_into(run_: Run, address: str | None, no_progress: bool) -> int:
    from coordinator.zo.links import Exchange
    from coordinator.zo.train import Evaluator, make_trainer, train

    cfg, rd, start = run_.cfg, run_.rd, run_.start
    writer, log = run_.open_logs(metrics_kept=lambda it: it <= start, messages=cfg.run.log_messages)
    exchange = Exchange()
    links = None
    try:
        if cfg.run.method == "proposed" and cfg.run.backend == "ray":
            from coordinator.zo.ray_links import RayLinks

            links = RayLinks(cfg, log, exchange, address=address)
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

        last = train(cfg, trainer, evaluator, cfg.run.iterations, on_row, on_ckpt)
        writer.close()
        if bar is not None:
            bar.close()
    finally:
        summary = log.close()
        if links is not None:
            links.close()
    plots.plot_curves(rd.path / "metrics.csv", ["sum_rate", "train_sum_rate", "bytes"], rd.path / "curves.png",
                      x_key="samples", w=None, title=f"paper 2: {cfg.run.method} ({cfg.algo.update}), N = "
                                                    f"{cfg.scenario.n_links}")
    final = {"method": cfg.run.method, "update": cfg.algo.update, "n_links": cfg.scenario.n_links,
             "iterations": cfg.run.iterations, **{k: last.get(k) for k in
                                                  ("sum_rate", "max_power", "messages", "scalars", "bytes")},
             "messages_logged": summary.get("totals", {})}
    rd.write_json("summary.json", final)
    lines = ["| quantity | value |", "|---|---|"]
    for k in ("method", "update", "n_links", "iterations", "sum_rate", "max_power", "messages", "scalars", "bytes"):
        v = final.get(k)
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    (rd.path / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"run folder: {rd.path}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from coordinator.zo.config import ZOConfig
    from deploy.sweeps import EXPERIMENTS, run_experiment

    base = load_config(ZOConfig, args.config, args.overrides)
    _check(base)
    names = [n.strip() for n in args.experiments.split(",") if n.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad:
        raise UsageError(f"--experiments: unknown {bad}; allowed: {', '.join(EXPERIMENTS)}")
    if not 1 <= args.seeds <= 100:
        raise UsageError(f"--seeds: expected an integer in [1, 100], got {args.seeds}")
    if args.iterations is not None and not 1 <= args.iterations <= 10_000_000:
        raise UsageError(f"--iterations: expected an integer in [1, 10000000], got {args.iterations}")
    args.out.mkdir(parents=True, exist_ok=True)
    for n in names:
        print(f"running {n} ({args.scale}) ...", file=sys.stderr)
        csv_path, png_path, text = run_experiment(n, base, args.scale, args.out, args.seeds, args.iterations)
        print(text)
        print(f"  -> {csv_path}  {png_path}")
    return 0
