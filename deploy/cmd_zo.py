"""`bsemu zo` (one zeroth-order / Adam / FL run into a run folder) and `bsemu zo-sweep` (paper 2's
figures and tables as CSV + PNG)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from deploy.config import ConfigError, config_to_dict, load_config
from deploy.errors import UsageError
from deploy.rundir import RunDir, default_run_dir, plot_curves


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zo", help="decentralized zeroth-order training of per-link policies (paper 2)",
                       description="Train every link's policy with Algorithm 1 of paper 2 (or the centralized "
                                   "Adam / FL benchmarks, run.method). Writes a run folder: config, metrics.csv, "
                                   "messages.csv and its summary, curves.png, summary.md, checkpoints.")
    p.add_argument("--config", type=Path, default=None, help="YAML config (deploy/configs/zo_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.iterations=200 (repeatable)")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder (default runs/<config>-<time>)")
    p.add_argument("--resume", type=Path, default=None,
                   help="continue the run in this folder from its last checkpoint (--set may extend run.iterations)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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


def _load(path: Path | None, overrides: list[str]):
    from coordinator.zo_config import ZOConfig, ZOConfigError, validate

    cfg = load_config(ZOConfig, path, overrides)
    try:
        validate(cfg)
    except ZOConfigError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.resume is not None:
        rd = RunDir.open(args.resume)
        cfg = _load(rd.path / "config.yaml", args.overrides)   # the stored config, plus --set
        rd.update_meta(resumed=True)
        (rd.path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    else:
        cfg = _load(args.config, args.overrides)
        name = args.config.stem if args.config is not None else "zo"
        path = args.run_dir if args.run_dir is not None else default_run_dir(name)
        rd = RunDir.create(path, config_to_dict(cfg), cfg.run.seed, name, keep=cfg.run.keep_checkpoints)
    return _train_into(cfg, rd, resume=args.resume is not None, quiet=args.quiet)


def _train_into(cfg: Any, rd: RunDir, resume: bool, quiet: bool) -> int:
    from coordinator.zo_train import Evaluator, Exchange, make_trainer, train
    from protocol.log import MessageLog

    rd.keep = cfg.run.keep_checkpoints
    n_logs = len(list(rd.path.glob("messages*.csv"))) if resume else 0
    log_path = None
    if cfg.run.log_messages:
        log_path = rd.path / ("messages.csv" if n_logs == 0 else f"messages_{n_logs}.csv")
    log = MessageLog(log_path, run_id=rd.path.name)
    exchange = Exchange()
    links = None
    ray_started = False
    if cfg.run.method == "proposed" and cfg.run.backend == "ray":
        import ray

        from coordinator.zo_ray import RayLinks

        if not ray.is_initialized():
            ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, log_to_driver=False)
            ray_started = True
        links = RayLinks(cfg, log, exchange)
    try:
        trainer = make_trainer(cfg, log, exchange, links)
        start = 0
        if resume:
            ck = rd.load_latest_checkpoint()
            if ck is not None:
                trainer.load_state(ck["trainer"])
                start = int(ck["iteration"])
        evaluator = Evaluator(cfg)
        bar = None
        if not quiet:
            from tqdm import tqdm

            bar = tqdm(total=cfg.run.iterations, initial=start, desc=f"zo {cfg.run.method}", file=sys.stderr,
                       unit="it")
        writer = rd.metrics("metrics.csv")
        last_it = [start]

        def on_row(row: dict[str, Any]) -> None:
            writer.write(row)
            if bar is not None:
                bar.update(row["iteration"] - last_it[0])
                last_it[0] = row["iteration"]
                bar.set_postfix(sum_rate=f"{row['sum_rate']:.3f}")

        def on_ckpt(it: int) -> None:
            rd.save_checkpoint({"trainer": trainer.state()}, it)

        last = train(cfg, trainer, evaluator, cfg.run.iterations, on_row, on_ckpt)
        writer.close()
        if bar is not None:
            bar.close()
    finally:
        summary = log.close()
        if links is not None:
            links.close()
        if ray_started:
            import ray

            ray.shutdown()
    plot_curves(rd.path / "metrics.csv", ["sum_rate", "train_sum_rate", "bytes"], rd.path / "curves.png",
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
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from coordinator.zo_sweep import EXPERIMENTS, run_experiment

    base = _load(args.config, args.overrides)
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
