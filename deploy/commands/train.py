"""`bsemu train` (TRPO / A2C on the inproc or ray backend, run folder, resume) and
`bsemu evaluate` (a trained policy on new channels, beside the classical baselines)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coordinator.trpo.config import TrainConfig
from deploy import plots
from deploy.config import from_dict
from deploy.errors import UsageError
from deploy.rundir import RunDir
from deploy.runs import start_run

CURVE_KEYS = ("reward_mbps", "kl", "backtracks", "value_loss", "seconds")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a TRPO/A2C power-allocation policy (Algorithms 1-3 of paper 1)")
    p.add_argument("--config", type=Path, help="YAML config (e.g. deploy/configs/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set trpo.episodes=200 (repeatable)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder (default runs/<time>-<config>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (--set run.iterations=N to extend it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="evaluate a trained policy on new channels beside the baselines")
    e.add_argument("run_dir", type=Path, help="run folder written by `bsemu train`")
    e.add_argument("--gains", type=Path, default=None, help=".npz channels (same format as `bsemu baselines`)")
    e.add_argument("--slots", type=int, default=None, help="realizations to draw when no --gains (default: "
                                                           "the run's eval_slots)")
    e.add_argument("--seed", type=int, default=None, help="seed of the held-out draw (default: run seed + 1)")
    e.add_argument("--p-max-dbm", type=float, default=None, help="evaluate at another Pmax (Fig. 14)")
    e.add_argument("--methods", default=None, help="comma-separated baselines (default: the run's)")
    e.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/eval)")
    e.set_defaults(func=run_evaluate)


# ---------------------------------------------------------------------------------------------- train
def run_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from coordinator.trpo.config import TrainConfig, check_feasible

    run = start_run(TrainConfig, args.config, args.overrides, args.resume, args.run_dir, check_feasible)
    cfg, rd, ck, start = run.cfg, run.rd, run.ck, run.start
    torch.set_num_threads(1)
    from coordinator.trpo.backend import make_backend
    from coordinator.trpo.trainer import Trainer

    writer, log = run.open_logs(metrics_kept=lambda it: it < start)
    backend = make_backend(cfg, address=args.address)
    try:
        trainer = Trainer(cfg, backend, log)
        if ck is not None:
            trainer.load_state_dict(ck)
        print(f"bsemu train: {cfg.method_name} ({cfg.run.backend}) -> {rd.path}"
              + (f" (resuming at iteration {start})" if ck is not None else ""), file=sys.stderr)
        bar = tqdm(range(start, cfg.run.iterations), initial=start, total=cfg.run.iterations,
                   disable=args.no_progress, desc=cfg.method_name, unit="it")
        for it in bar:
            m = trainer.step()
            writer.write(m)
            bar.set_postfix(reward_mbps=f"{m['reward_mbps']:.1f}", kl=f"{m['kl']:.4f}", bt=m["backtracks"])
            if (it + 1) % cfg.run.checkpoint_every == 0 or it + 1 == cfg.run.iterations:
                run.checkpoint(trainer.state_dict(), it + 1, writer, log)
        writer.close()
        log.close()  # messages.csv complete; messages_summary.json / .md beside it
        if (rd.path / "metrics.csv").is_file():
            plots.plot_curves(rd.path / "metrics.csv", CURVE_KEYS, rd.path / "curves.png", w=0.96,
                              title=f"{cfg.method_name}: raw and EWMA (w = 0.96)")
        if cfg.run.eval_slots > 0:
            summary = evaluate_run(cfg, trainer.theta, rd.path / "eval", n=cfg.run.eval_slots,
                                   seed=cfg.run.seed + 1, methods=cfg.run.eval_methods)
            tm = summary["methods"][cfg.method_name]
            print(f"bsemu train: held-out {cfg.method_name}: {tm['mean_mbps']:.2f} Mbps; "
                  + ", ".join(f"{k} {v['mean_mbps']:.2f}" for k, v in summary["methods"].items()
                              if k != cfg.method_name), file=sys.stderr)
        rd.update_meta(end_iteration=trainer.iteration)
    finally:
        log.close()
        backend.close()
    print(rd.path)
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
def evaluate_run(cfg: TrainConfig, theta, out: Path, n: int = 1000, seed: int = 1, methods=(),
                 problem=None, p_max_dbm: float | None = None) -> dict:
    """Held-out evaluation: the trained policy (deterministic) beside the classical baselines; writes
    summary.json / summary.md / powers_*.npz (same shape as `bsemu baselines`) and bars.png."""
    from coordinator.trpo.config import scenario_of
    from coordinator.trpo.evaluate import evaluate_policy
    from radio.evaluation import MethodResult, classical_methods, run_methods, summarize, write_outputs
    from radio.rates import link_rates

    sc = scenario_of(cfg)
    if p_max_dbm is not None:
        sc = sc.with_(p_max_dbm=p_max_dbm)
    if problem is None:
        problem = sc.sample(n, np.random.default_rng(seed))
    t0 = time.perf_counter()
    p = evaluate_policy(cfg, theta, problem, seed=seed)
    dt = (time.perf_counter() - t0) / problem.n
    results = {cfg.method_name: MethodResult(cfg.method_name, p, link_rates(problem.G, p, problem.noise_w), dt)}
    names = [m for m in methods if not (m == "optimum" and problem.L > 8)]
    results.update(run_methods(problem, classical_methods(np.random.default_rng(seed)), names))
    summary = summarize(problem, results, context={"source": "bsemu evaluate", "seed": seed,
                                                   "trained_method": cfg.method_name})
    write_outputs(out, summary, results)
    plots.method_bars(summary, out / "bars.png", highlight=cfg.method_name)
    return summary


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    rd = RunDir.open(args.run_dir)
    cfg = from_dict(TrainConfig, rd.config_dict())
    ck = rd.load_latest_checkpoint()
    if ck is None:
        raise UsageError(f"{rd.path}: no checkpoint to evaluate")
    problem = None
    if args.gains is not None:
        from radio.gainsfile import load_gains
        from radio.problem import ProblemError

        try:
            problem = load_gains(args.gains)
        except (ProblemError, OSError, ValueError, KeyError) as exc:
            raise UsageError(f"--gains {args.gains}: {exc}") from None
        from coordinator.trpo.config import scenario_of

        sc = scenario_of(cfg)
        if problem.cells != sc.cells or problem.users_per_cell != sc.K:
            raise UsageError(f"--gains {args.gains}: {problem.cells} cells x {problem.users_per_cell} users, "
                             f"the policy was trained on {sc.cells} x {sc.K}")
    methods = tuple(args.methods.split(",")) if args.methods else cfg.run.eval_methods
    out = args.out or rd.path / "eval"
    summary = evaluate_run(cfg, ck["theta"], out, n=args.slots or cfg.run.eval_slots or 1000,
                           seed=cfg.run.seed + 1 if args.seed is None else args.seed, methods=methods,
                           problem=problem, p_max_dbm=args.p_max_dbm)
    print(json.dumps({k: round(v["mean_mbps"], 3) for k, v in summary["methods"].items()}))
    print(out / "summary.json")
    return 0
