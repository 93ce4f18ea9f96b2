"""Train each 3-cell scheme (and, with --7cell / --19cell, the 7- / 19-cell schemes) for a stated budget and print
the held-out mean sum-rate beside WMMSE, FP, every cell's certified optimum without inter-cell interference
(cell_optimum: fully decentralized, no message) and the certified optimum (3 cells) or the certified upper bound
(radio.optimum.bracket, 7 and 19 cells).

    python benchmarks/quality.py [--schemes centralized,partial,full] [--7cell] [--19cell] [--no-3cell]
                                 [--iterations N] [--init random|cell_optimum] [--episodes M] [--hidden H]
                                 [--layers L] [--init-log-std S] [--delta D]
                                 [--value-epochs E] [--value-lr LR] [--value-batches B] [--cg-iters C] [--fvp-stride K]
                                 [--value-precision float32|bfloat16|auto] [--power-levels continuous|on_off]
                                 [--threads T] [--seed S] [--eval-seed S] [--eval-at IT,IT,...] [--a2c]
                                 [--rr-message powers|interference[,...]]
                                 [--credit common|difference|difference_self[,...]]

Budgets per scheme (each flag given on the command line overrides it for every scheme):
  centralized  the shipped deploy/configs/3cell_centralized.yaml: 1300 iterations x M = 2000 episodes
               (2.6 M environment steps), Table II networks (3x256 ELU), delta = 0.01, zeta = 0.9, initial
               log-std 1.5, 10 critic Adam steps per iteration at lr 3e-3 (hidden layers in bfloat16
               where the CPU has it natively, else float32), Fisher-vector products on every 2nd
               episode, 2 torch threads.
  partial, full (and 7-cell)  200 iterations x M = 500 episodes (0.3 M steps), 2x64 ELU, initial
               log-std 0.5, delta = 0.01, 10 critic Adam steps per iteration at lr 3e-3 (as the demo).
With --a2c, the A2C baseline (paper 1 Fig. 9) of the shipped deploy/configs/3cell_a2c.yaml (its step size,
gradient clipping, M and networks) is trained for as many environment steps as the centralized TRPO budget
above (rounded up to whole A2C iterations) and printed beside it; a run that diverges is printed as such.
With --rr-message, the round-robin scheme (partial) is trained once per message variant named
(trpo.rr_message: powers = paper 1's state, interference = plus the running interference at every user), the
same seeds, printed as trpo_partial[VARIANT]; with --credit, likewise one run per trpo.credit (each BS's return:
paper 1's common sum-rate, or the difference with the BS silenced) for the decentralized schemes. Every line
gives, beside the mean, the worst and 1st-percentile per-realization ratios to WMMSE, cell_optimum (and the optimum).
The trained policy is evaluated on its deterministic mean action (clipped to [0, Pmax]), as `bsemu
evaluate` does. The budget (iterations x episodes, environment steps, networks, minutes) is printed
with the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coordinator.trpo.backend import make_backend  # noqa: E402
from coordinator.trpo.config import TrainConfig, scenario_of  # noqa: E402
from coordinator.trpo.evaluate import evaluate_policy  # noqa: E402
from coordinator.trpo.trainer import Diverged, Trainer  # noqa: E402
from deploy.config import load_config  # noqa: E402
from radio.evaluation import classical_methods, run_methods  # noqa: E402
from radio.optimum import bracket, cell_bounds  # noqa: E402
from radio.rates import sum_rate  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "deploy" / "configs"
# the shipped config a scheme's budget comes from (others: the small budget of the flags' defaults)
SHIPPED = {("3cell", "centralized"): CONFIGS / "3cell_centralized.yaml"}
A2C = CONFIGS / "3cell_a2c.yaml"      # the A2C baseline (centralized 3-cell only)
# flag -> config key; the small budget used where no shipped config is named above
FLAGS = {"iterations": ("run.iterations", 200), "episodes": ("trpo.episodes", 500),
         "hidden": ("policy.hidden", 64), "layers": ("policy.layers", 2),
         "init_log_std": ("policy.init_log_std", 0.5), "delta": ("trpo.delta", 0.01),
         "value_epochs": ("trpo.value_epochs", 10), "value_lr": ("trpo.value_lr", 0.003),
         "value_batches": ("trpo.value_batches", 1), "cg_iters": ("trpo.cg_iters", 10),
         "fvp_stride": ("trpo.fvp_stride", 1), "threads": ("run.threads", 1),
         "value_precision": ("trpo.value_precision", "float32"),
         "power_levels": ("policy.power_levels", "continuous"), "init": ("policy.init", "random")}


def scheme_config(kind: str, scheme: str, a: argparse.Namespace, rr: tuple[str, ...] = ()) -> TrainConfig:
    """The scheme's budget: its shipped config (or the small default budget), then the flags given."""
    extra = ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind != "3cell" else []
    path = SHIPPED.get((kind, scheme))
    sets = []
    for flag, (key, small) in FLAGS.items():
        v = getattr(a, flag)
        if v is not None or path is None:
            sets.append(f"{key}={small if v is None else v}")
    return load_config(TrainConfig, path, [f"scenario.kind={kind}", f"run.scheme={scheme}", "run.backend=inproc",
                                           f"run.seed={a.seed}"] + extra + sets + list(rr))


def a2c_config(trpo: TrainConfig, seed: int) -> TrainConfig:
    """The shipped A2C baseline for as many environment steps as ``trpo``'s (centralized: M per iteration)."""
    episodes = load_config(TrainConfig, A2C, []).trpo.episodes
    iterations = -(-trpo.run.iterations * trpo.trpo.episodes // episodes)
    return load_config(TrainConfig, A2C, ["run.backend=inproc", f"run.seed={seed}", f"run.iterations={iterations}"])


def budget(cfg: TrainConfig) -> str:
    if cfg.run.algo == "a2c":
        t = cfg.trpo
        return (f"{cfg.run.iterations} it x M = {t.episodes}, {cfg.policy.layers}x{cfg.policy.hidden} ELU, A2C "
                f"RMSprop lr {t.a2c_lr:g}, |g| clipped at {t.a2c_max_grad_norm:g} (0: off), critic {t.value_epochs} x "
                f"lr {t.value_lr:g}, {cfg.run.threads} thread(s)")
    p, t = cfg.policy, cfg.trpo
    return (f"{cfg.run.iterations} it x M = {t.episodes}, {p.layers}x{p.hidden} ELU, log-std0 {p.init_log_std:g}, "
            f"delta {t.delta:g}, critic {t.value_epochs} x lr {t.value_lr:g} on 1/{t.value_batches} of the batch "
            f"({t.value_precision}), "
            f"CG {t.cg_iters} iterations, "
            f"Fisher every {t.fvp_stride}-th episode, {cfg.run.threads} thread(s)")


def train_eval(cfg: TrainConfig, problem, eval_at=(), report=None) -> tuple[np.ndarray, float, int]:
    """Train cfg's budget; held-out per-realization sum-rates [n] of the final policy, training seconds, env
    steps. At each iteration count in ``eval_at`` (below the budget) ``report(iterations, rates, seconds, steps)``
    is called on the policy of that moment (every sampler has its own seeded generator, so evaluating mid-run does
    not change the training; the seconds exclude the evaluations)."""
    tr = Trainer(cfg, make_backend(cfg))
    dt, steps = 0.0, 0

    def rates() -> np.ndarray:
        return sum_rate(problem.G, evaluate_policy(cfg, tr.theta, problem), problem.noise_w)
    for it in range(1, cfg.run.iterations + 1):
        t0 = time.perf_counter()
        steps += tr.step()["env_steps"]
        dt += time.perf_counter() - t0
        if it in eval_at and it < cfg.run.iterations and report is not None:
            report(it, rates(), dt, steps)
    return rates(), dt, steps


def line(name: str, per: np.ndarray, base: dict, w: float, ref: float, dt: float | None = None,
         steps: int | None = None, tail: str = "", upper: np.ndarray | None = None) -> str:
    """One result line: Mbps, bit/s/Hz, the mean x the reference, training minutes and steps, then (networks past
    the optimum's size) the mean x the certified upper bound ``upper``, and against WMMSE, cell_optimum (and the
    optimum) the worst and 1st-percentile per-realization ratios."""
    r = float(per.mean())
    cols = [] if upper is None else [f"x upper bound {r / float(upper.mean()):.4f}"]
    for ref_name in ("wmmse", "cell_optimum", "optimum"):
        if ref_name in base and name != ref_name:
            q = per / base[ref_name].sum_rate
            cols.append(f"x {ref_name}: worst {q.min():.4f} p1 {np.percentile(q, 1):.4f}")
    times = f"{dt / 60:>9.2f} {steps:>10}" if dt is not None else f"{'':>9} {'':>10}"
    return f"{name:<24} {r * w:>8.2f} {r:>9.4f} {r / ref:>10.5f} {times}   {'; '.join(cols)}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag, (_, small) in FLAGS.items():
        ap.add_argument("--" + flag.replace("_", "-"), type=type(small), default=None,
                        help=f"for every scheme (default: the scheme's budget, see the module docstring; "
                             f"small budget {small})")
    ap.add_argument("--schemes", default=None, help="comma list (default: all of the layout)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--eval-seed", type=int, default=None,
                    help="draw the held-out set from this seed instead of --seed (train and test seeds apart)")
    ap.add_argument("--eval-at", default="", help="comma list of iteration counts below the budget at which the "
                    "policy of that moment is evaluated too (one more line each, 'trpo_SCHEME@IT')")
    ap.add_argument("--a2c", action="store_true", help="3 cells: the A2C baseline beside TRPO at the same number "
                    "of environment steps as the centralized TRPO budget")
    ap.add_argument("--rr-message", default=None, help="comma list of trpo.rr_message variants (powers, "
                    "interference) for the round-robin scheme: one run each, same seeds, trpo_partial[VARIANT]")
    ap.add_argument("--credit", default=None, help="comma list of trpo.credit variants (common, difference, "
                    "difference_self) for the decentralized schemes: one run each, same seeds, trpo_SCHEME[CREDIT]")
    ap.add_argument("--7cell", dest="seven", action="store_true")
    ap.add_argument("--19cell", dest="nineteen", action="store_true", help="the 19-cell network too (the 7-cell "
                    "budget and settings; partial and full)")
    ap.add_argument("--no-3cell", dest="three", action="store_false", help="only the 7- / 19-cell schemes")
    a = ap.parse_args()
    torch.set_num_threads(1)
    kinds = (["3cell"] if a.three else []) + (["7cell"] if a.seven else []) + (["19cell"] if a.nineteen else [])
    for kind in kinds:
        cfg = load_config(TrainConfig, None, [f"scenario.kind={kind}"] + (
            ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind != "3cell" else []))
        test_seed = a.seed if a.eval_seed is None else a.eval_seed
        problem = scenario_of(cfg).sample(a.slots, np.random.default_rng(10_000 + test_seed))
        w = problem.bandwidth_hz / 1e6
        names = ["max_power", "wmmse", "fp", "cell_optimum"] + (["optimum"] if kind == "3cell" else [])
        methods, upper = classical_methods(np.random.default_rng(0)), None
        if kind != "3cell":     # the per-cell solves once, for cell_optimum and the certified upper bound alike
            cells = cell_bounds(problem)
            upper = bracket(problem, cells=cells)[1]
            cell_p = problem.project(cells[1])
            methods["cell_optimum"] = lambda pr, p=cell_p: p
        base = run_methods(problem, methods, names)
        print(f"\n{kind}: held-out mean sum-rate on {a.slots} realizations of held-out set {test_seed} (trained "
              f"policies, training seed {a.seed}: deterministic mean action); load average at start "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        ref = float(base["optimum" if "optimum" in base else "wmmse"].sum_rate.mean())
        rel = "optimum" if "optimum" in base else "wmmse"
        print(f"{'method':<24} {'Mbps':>8} {'bit/s/Hz':>9} {'x ' + rel:>10} {'train min':>9} {'env steps':>10}")
        schemes = a.schemes.split(",") if a.schemes else (
            ["centralized", "partial", "full"] if kind == "3cell" else ["partial", "full"])
        for scheme in schemes:
            variants = [("", "")]
            if a.rr_message and scheme == "partial":      # one run per round-robin message variant
                variants = [(f"trpo.rr_message={v}", v) for v in a.rr_message.split(",")]
            if a.credit and scheme != "centralized":      # one run per credit (each BS's return)
                variants = [(f"{s0} trpo.credit={c}".strip(), f"{n0},{c}".strip(",")) for s0, n0 in variants
                            for c in a.credit.split(",")]
            for sets, label in variants:
                cfg = scheme_config(kind, scheme, a, tuple(sets.split()))
                name = f"trpo_{scheme}" + (f"[{label}]" if label else "")

                def report(it, per, dt, steps, name=name, w=w, ref=ref, base=base, upper=upper):
                    print(line(f"{name}@{it}", per, base, w, ref, dt, steps, upper=upper), flush=True)
                eval_at = {int(x) for x in a.eval_at.split(",") if x}
                per, dt, steps = train_eval(cfg, problem, eval_at, report)
                print(line(name, per, base, w, ref, dt, steps, f"; load {os.getloadavg()[0]:.2f}; {budget(cfg)}",
                           upper), flush=True)
        if a.a2c and kind == "3cell":
            cfg = a2c_config(scheme_config(kind, "centralized", a), a.seed)
            try:
                per, dt, steps = train_eval(cfg, problem)
                print(line("a2c_centralized", per, base, w, ref, dt, steps, f"   {budget(cfg)}"), flush=True)
            except Diverged as exc:
                print(f"{'a2c_centralized':<24} {exc}   {budget(cfg)}", flush=True)
        for n, res in base.items():
            print(line(n, res.sum_rate, base, w, ref, upper=upper))
        if upper is not None:
            print(line("upper_bound", upper, base, w, ref) + "   (radio.optimum.bracket: certified)")


if __name__ == "__main__":
    main()
