"""`bsemu train` (TRPO / A2C on the inproc or ray backend, run folder, resume) and
`bsemu evaluate` (a trained policy on new channels, beside the classical baselines)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from coordinator.trpo.config import TrainConfig
from deploy import plots
from deploy import tensorboard as tb
from deploy.config import ConfigError, check_memory, memory_budget_bytes
from deploy.errors import UsageError
from deploy.rundir import RunDir, RunDirError, check_output_dir, check_output_files
from deploy.runs import Run, dead_actor, read_run_config, record_dropped, restart_after_death, start_run

if TYPE_CHECKING:
    from coordinator.trpo.trainer import Diverged

CURVE_KEYS = ("reward_mbps", "kl", "backtracks", "value_loss", "seconds")
# what `--set` may change when a run is resumed: its length, checkpointing, the final evaluation and where it
# computes; everything else (scenario, networks, hyper-parameters, scheme, algorithm, seed) made the
# checkpoint and stays
RESUME_KEYS = ("run.iterations", "run.checkpoint_every", "run.keep_checkpoints", "run.eval_slots",
               "run.eval_methods", "run.threads", "run.backend", "run.placement", "run.max_restarts",
               "run.tensorboard", "run.bs_per_actor")


def check_config(cfg: TrainConfig) -> None:
    """The cross-field checks and the memory budget of a TRPO / A2C run."""
    from coordinator.trpo.config import check_feasible, memory_estimate

    check_feasible(cfg)
    check_memory(memory_estimate(cfg), "this run")


def _describe(v: object) -> str:
    import torch

    if isinstance(v, (torch.Tensor, np.ndarray)):
        return f"{type(v).__name__} of shape {tuple(v.shape)} ({v.dtype})"
    return type(v).__name__


def check_checkpoint(cfg: TrainConfig, ck: dict, f: Path) -> None:
    """The checkpoint fits the config: theta and phi of the lengths the networks imply, optimiser moments
    of the same lengths, generator states numpy and torch accept, one agent generator per agent."""
    import torch

    from coordinator.trpo.config import n_agents, network_sizes

    n_theta, n_phi = network_sizes(cfg)
    sizes = "policy.hidden, policy.layers, scenario and run.scheme of config.yaml"

    def vector(v: object, n: int, key: str) -> None:
        if not (isinstance(v, torch.Tensor) and v.is_floating_point() and tuple(v.shape) == (n,)):
            raise RunDirError(f"checkpoint {f}: {key}: expected a float vector of {n} values ({sizes}), "
                              f"got {_describe(v)}")

    def optimiser(st: object, n: int, key: str, moments: tuple[str, ...]) -> None:
        if not (isinstance(st, dict) and isinstance(st.get("state"), dict) and isinstance(st.get("param_groups"), list)
                and len(st["param_groups"]) == 1 and isinstance(st["param_groups"][0], dict)):
            raise RunDirError(f"checkpoint {f}: {key}: expected a torch optimiser state (state, one param group)")
        for s in st["state"].values():
            if not isinstance(s, dict):
                raise RunDirError(f"checkpoint {f}: {key}: expected a torch optimiser state")
            for m in moments:
                if m in s:
                    vector(s[m], n, f"{key}.{m}")

    vector(ck.get("theta"), n_theta, "theta")
    vector(ck.get("phi"), n_phi, "phi")
    optimiser(ck.get("value_opt"), n_phi, "value_opt", ("exp_avg", "exp_avg_sq"))
    if cfg.run.algo == "a2c":
        optimiser(ck.get("a2c_opt"), n_theta, "a2c_opt", ("square_avg",))
    for key in ("air_rng", "order_rng", *(("loss_rng",) if "loss_rng" in ck else ())):
        try:
            np.random.PCG64().state = ck.get(key)
        except (TypeError, ValueError, KeyError, OverflowError):
            raise RunDirError(f"checkpoint {f}: {key}: expected a numpy PCG64 generator state") from None
    states = ck.get("agent_rng")
    if not isinstance(states, list) or len(states) != n_agents(cfg):
        raise RunDirError(f"checkpoint {f}: agent_rng: expected {n_agents(cfg)} generator states (one per agent), "
                          f"got {_describe(states) if not isinstance(states, list) else len(states)}")
    for st in states:
        try:
            torch.Generator().set_state(st)
        except (TypeError, RuntimeError, ValueError):
            raise RunDirError(f"checkpoint {f}: agent_rng: expected torch generator states") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a TRPO/A2C power-allocation policy (Algorithms 1-3 of paper 1)",
                       description="Train a TRPO/A2C power-allocation policy into a run folder, then evaluate it on "
                                   "held-out channels. Exit codes: 0 done; 2 bad input (nothing written); 1 the run "
                                   "diverged (a NaN or inf in a loss, a KL, a gradient, the step or the parameters): "
                                   "it stops at that iteration with one line naming the quantity, keeps its metrics "
                                   "rows up to there and its last checkpoint (every checkpoint is finite), and is not "
                                   "evaluated.")
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
class Outcome(NamedTuple):
    """How :func:`train_loop` ended: the trainer (its parameters; None if the backend failed to start), the
    :class:`Diverged` that stopped it, or the actor that died (:func:`deploy.runs.dead_actor`)."""

    trainer: Any
    diverged: Diverged | None = None
    died: dict[str, str] | None = None


def train_loop(run: Run, address: str | None, progress: Callable[[dict[str, float]], Any] | None = None,
               bar: bool = False) -> Outcome:
    """The training loop that ``bsemu train`` and :func:`deploy.api.train` share, on the run folder of ``run``
    (new or resumed): logs opened (cut back to the checkpoint), the backend started and its nodes, keys and
    clock pings recorded, iterations from the checkpoint to ``run.iterations`` with metrics rows (and
    TensorBoard), checkpoints, ``progress(row)`` after each, the stray frames counted, the logs closed and
    curves.png drawn. A divergence stops it (nothing of that iteration kept); a dead actor is returned, any
    other error raised; the backend is closed either way. Not evaluated here."""
    import torch

    from coordinator.trpo.backend import make_backend
    from coordinator.trpo.trainer import Diverged, Trainer
    from protocol import save_public_keys

    cfg, rd, ck, start = run.cfg, run.rd, run.ck, run.start
    torch.set_num_threads(1)
    writer, log = run.open_logs(metrics_kept=lambda it: it < start)
    writer = tb.tee(writer, cfg, rd.path)     # run.tensorboard: metrics.csv's rows into tb/ too
    backend = make_backend(cfg, address=address)
    run.continue_ring(backend)                # a resumed in-process ring numbers its hops on where it left off
    trainer = diverged = None
    try:
        where = backend.meta()                # each agent's node, IP and clock offset
        rd.update_meta(**where, secure=bool(getattr(backend, "secure", False)))   # CURVE on the run's nodes
        if getattr(backend, "keys", None):    # the run's public keys (never a secret), one certificate per node
            save_public_keys(backend.keys, rd.path / "keys")
        if isinstance(where.get("placement"), dict):           # agent id -> node; the coordinator (-2): the driver's
            log.node_of = {(0 if k == "cu" else int(k[2:])): v["node"] for k, v in where["placement"].items()}
            log.node_of[-2] = where["driver_node"]
            for row in getattr(backend, "setup_rows", []):          # the clock pings: logged, not an iteration's
                log.record(*row)
        trainer = Trainer(cfg, backend, log)
        if ck is not None:
            trainer.load_state_dict(ck)
        from tqdm import tqdm

        its = tqdm(range(start, cfg.run.iterations), initial=start, total=cfg.run.iterations, disable=not bar,
                   desc=cfg.method_name, unit="it")
        for it in its:
            try:
                m = trainer.step()
            except Diverged as exc:       # nothing of this iteration is kept: no row, no checkpoint
                diverged = exc
                break
            writer.write(m)
            if it == 0 and trainer.imitation is not None:      # policy.init=cell_optimum: what the fit reached
                im = trainer.imitation
                rd.update_meta(imitation=im)
                mbps = im["teacher_bps_hz"] * trainer.scenario.bandwidth_hz / 1e6
                tqdm.write(f"bsemu train: initial policy fitted to cell_optimum (teacher {mbps:.2f} Mbps on its "
                           f"slots, fit mse {im['fit_mse']:.4f})")
            its.set_postfix(reward_mbps=f"{m['reward_mbps']:.1f}", kl=f"{m['kl']:.4f}", bt=m["backtracks"])
            if (it + 1) % cfg.run.checkpoint_every == 0 or it + 1 == cfg.run.iterations:
                run.checkpoint(trainer.state_dict(), it + 1, writer, log)
            if progress is not None:
                progress(dict(m))
        its.close()
        record_dropped("train", rd, backend)   # stray frames the nodes counted and dropped: meta.json
        writer.close()
        log.close()  # messages.csv complete; messages_summary.json / .md beside it
        if (rd.path / "metrics.csv").is_file():
            plots.plot_curves(rd.path / "metrics.csv", CURVE_KEYS, rd.path / "curves.png", w=0.96,
                              title=f"{cfg.method_name}: raw and EWMA (w = 0.96)")
        return Outcome(trainer, diverged)
    except Exception as exc:
        died = dead_actor(exc, backend)       # an actor of the run died: restart or one line, never a traceback
        if died is None:
            raise
        return Outcome(trainer, None, died)
    finally:
        writer.close()
        log.close()
        backend.close()


def run_train(args: argparse.Namespace) -> int:
    from coordinator.trpo.config import TrainConfig

    run = start_run(TrainConfig, args.config, args.overrides, args.resume, args.run_dir, tb.checked(check_config),
                    resume_keys=RESUME_KEYS, check_checkpoint=check_checkpoint)
    cfg, rd = run.cfg, run.rd
    print(f"bsemu train: {cfg.method_name} ({cfg.run.backend}) -> {rd.path}"
          + (f" (resuming at iteration {run.start})" if run.ck is not None else ""), file=sys.stderr)
    out = train_loop(run, args.address, bar=not args.no_progress)
    if out.died is not None:
        done = getattr(args, "restarts", 0)
        if not restart_after_death("train", rd, out.died, cfg.run.max_restarts, done):
            return 1
        # new actors, the last checkpoint reloaded and metrics / messages cut back to it, exactly as --resume
        return run_train(argparse.Namespace(**{**vars(args), "config": None, "overrides": [], "run_dir": None,
                                                "resume": rd.path, "restarts": done + 1}))
    if out.diverged is not None:
        return _diverged(out.diverged, rd)
    if cfg.run.eval_slots > 0:
        summary = evaluate_run(cfg, out.trainer.theta, rd.path / "eval", n=cfg.run.eval_slots,
                               seed=cfg.run.seed + 1, methods=cfg.run.eval_methods)
        tm = summary["methods"][cfg.method_name]
        print(f"bsemu train: held-out {cfg.method_name}: {tm['mean_mbps']:.2f} Mbps; "
              + ", ".join(f"{k} {v['mean_mbps']:.2f}" for k, v in summary["methods"].items()
                          if k != cfg.method_name), file=sys.stderr)
    rd.update_meta(end_iteration=out.trainer.iteration)
    print(rd.path)
    return 0


def _diverged(exc: Diverged, rd: RunDir) -> int:
    """A run whose numbers became NaN / inf: it stops there, is not evaluated, and says so in ONE line (exit 1:
    not bad input, but the run cannot continue). metrics.csv holds the rows of the iterations before it; the
    checkpoints, all written from finite states, stay (a resume would diverge again: change what the run was
    given, e.g. trpo.a2c_max_grad_norm or trpo.a2c_lr, in a new run)."""
    it = exc.iteration
    ck = rd.latest_checkpoint_file()
    rd.update_meta(end_iteration=it, diverged={"iteration": it, "quantity": exc.quantity, "detail": exc.detail})
    kept = (f"last finite checkpoint: iteration {int(ck.stem.split('-', 1)[1])}, {ck}" if ck is not None
            else "no checkpoint was written before it")
    rows = f"metrics.csv holds iterations 0-{it - 1}" if it > 0 else "metrics.csv holds no iteration"
    print(f"bsemu train: error: {exc} ({kept}; {rows}; not evaluated)", file=sys.stderr)
    return 1


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


def _evaluate_args(args: argparse.Namespace, cfg: TrainConfig) -> tuple[int, int, tuple[str, ...]]:
    """(slots, seed, methods) from the arguments, each checked; nothing is read or written."""
    from coordinator.trpo.config import scenario_of
    from deploy.commands.baselines import MAX_SLOTS, check_dbm, check_seed, parse_methods, problem_bytes

    if args.slots is not None and not 1 <= args.slots <= MAX_SLOTS:
        raise UsageError(f"--slots: expected an integer in [1, {MAX_SLOTS}], got {args.slots}")
    check_seed(args.seed)
    check_dbm(args.p_max_dbm, "--p-max-dbm")
    if args.gains is not None and (args.slots is not None or args.p_max_dbm is not None):
        flag = "--slots" if args.slots is not None else "--p-max-dbm"
        raise UsageError(f"{flag} with --gains: the file gives the channels and their p_max_w; give one of them")
    methods = tuple(parse_methods(args.methods)) if args.methods is not None else tuple(cfg.run.eval_methods)
    n = args.slots or cfg.run.eval_slots or 1000
    if args.gains is None:
        check_memory({"channels (--slots x links^2)": problem_bytes(n, scenario_of(cfg).L)}, f"--slots {n}")
    seed = cfg.run.seed + 1 if args.seed is None else args.seed
    return n, seed, methods


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from deploy.commands.baselines import PROBLEM_COPIES, output_files

    torch.set_num_threads(1)
    rd = RunDir.open(args.run_dir)
    cfg = read_run_config(rd, TrainConfig, check_config)
    rd.meta()
    ck = rd.load_latest_checkpoint()
    if ck is None:
        raise UsageError(f"run dir {rd.path}: no checkpoint to evaluate (checkpoints/ckpt-*.pt)")
    check_checkpoint(cfg, ck, rd.latest_checkpoint_file())
    n, seed, methods = _evaluate_args(args, cfg)
    out = args.out or rd.path / "eval"
    check_output_dir(out, "--out")
    check_output_files(out, output_files((cfg.method_name, *methods), "bars.png"), "--out")
    problem = None
    if args.gains is not None:
        from radio.gainsfile import load_gains
        from radio.problem import ProblemError

        try:
            problem = load_gains(args.gains, max_bytes=memory_budget_bytes() // PROBLEM_COPIES)
        except (ProblemError, ConfigError) as exc:
            raise UsageError(str(exc)) from None
        from coordinator.trpo.config import scenario_of

        sc = scenario_of(cfg)
        if problem.cells != sc.cells or problem.users_per_cell != sc.K:
            raise UsageError(f"gains file {args.gains}: {problem.cells} cells x {problem.users_per_cell} users "
                             f"(its cells and users_per_cell; without them L x 1), the policy was trained on "
                             f"{sc.cells} x {sc.K}")
    summary = evaluate_run(cfg, ck["theta"], out, n=n, seed=seed, methods=methods, problem=problem,
                           p_max_dbm=args.p_max_dbm)
    print(json.dumps({k: round(v["mean_mbps"], 3) for k, v in summary["methods"].items()}))
    print(out / "summary.json")
    return 0
