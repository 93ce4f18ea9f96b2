"""Train each 3-cell scheme (and, with --7cell, the 7-cell schemes) for a stated budget and print the
held-out mean sum-rate beside WMMSE, FP (and the certified optimum for 3 cells).

    python benchmarks/quality.py [--iterations 200] [--episodes 500] [--hidden 64] [--layers 2]
                                 [--init-log-std 0.5] [--delta 0.01] [--schemes ...] [--7cell]

The budget (iterations x episodes, environment steps, network size, minutes) is printed with the results.
Defaults: the tuned settings of the 3cell configs (delta = 0.01, zeta = 0.9 as in Table II; smaller
networks, M = 500 and a wide initial exploration std, see deploy/configs/3cell_*.yaml).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coordinator.trainer import Trainer, evaluate_policy, make_backend, scenario_of  # noqa: E402
from deploy.config import TrainConfig, load_config  # noqa: E402
from radio.evaluation import classical_methods, run_methods  # noqa: E402
from radio.rates import sum_rate  # noqa: E402


def train_eval(kind: str, scheme: str, a: argparse.Namespace, problem) -> tuple[float, float, int]:
    extra = ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind == "7cell" else []
    cfg = load_config(TrainConfig, None, [f"scenario.kind={kind}", f"run.scheme={scheme}", "run.backend=inproc",
                                          f"trpo.episodes={a.episodes}", f"policy.hidden={a.hidden}",
                                          f"policy.layers={a.layers}", f"trpo.value_epochs={a.value_epochs}",
                                          f"trpo.value_lr={a.value_lr}", f"run.seed={a.seed}",
                                          f"policy.init_log_std={a.init_log_std}", f"trpo.delta={a.delta}"] + extra)
    tr = Trainer(cfg, make_backend(cfg))
    t0 = time.perf_counter()
    steps = 0
    for _ in range(a.iterations):
        steps += tr.step()["env_steps"]
    dt = time.perf_counter() - t0
    return float(sum_rate(problem.G, evaluate_policy(cfg, tr.theta, problem), problem.noise_w).mean()), dt, steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--init-log-std", type=float, default=0.5)
    ap.add_argument("--delta", type=float, default=0.01)
    ap.add_argument("--value-epochs", type=int, default=10)
    ap.add_argument("--value-lr", type=float, default=0.003)
    ap.add_argument("--schemes", default=None, help="comma list (default: all of the layout)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--7cell", dest="seven", action="store_true")
    ap.add_argument("--no-3cell", dest="three", action="store_false", help="only the 7-cell schemes")
    a = ap.parse_args()
    torch.set_num_threads(1)
    kinds = (["3cell"] if a.three else []) + (["7cell"] if a.seven else [])
    for kind in kinds:
        cfg = load_config(TrainConfig, None, [f"scenario.kind={kind}"] + (
            ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind == "7cell" else []))
        problem = scenario_of(cfg).sample(a.slots, np.random.default_rng(10_000 + a.seed))
        w = problem.bandwidth_hz / 1e6
        names = ["max_power", "wmmse", "fp"] + (["optimum"] if kind == "3cell" else [])
        base = run_methods(problem, classical_methods(np.random.default_rng(0)), names)
        print(f"\n{kind}: held-out mean sum-rate on {a.slots} realizations; budget per scheme: {a.iterations} "
              f"iterations x M = {a.episodes} episodes, policy/value {a.layers}x{a.hidden} ELU, init log-std "
              f"{a.init_log_std}, delta {a.delta}, critic {a.value_epochs} Adam steps/it at lr {a.value_lr}")
        ref = float(base["optimum" if "optimum" in base else "wmmse"].sum_rate.mean())
        rel = "optimum" if "optimum" in base else "wmmse"
        print(f"{'method':<18} {'Mbps':>8} {'bit/s/Hz':>9} {'x ' + rel:>10} {'train min':>9} {'env steps':>10}")
        schemes = a.schemes.split(",") if a.schemes else (
            ["centralized", "partial", "full"] if kind == "3cell" else ["partial", "full"])
        for scheme in schemes:
            r, dt, steps = train_eval(kind, scheme, a, problem)
            print(f"{'trpo_' + scheme:<18} {r * w:>8.2f} {r:>9.4f} {r / ref:>10.4f} {dt / 60:>9.2f} {steps:>10}",
                  flush=True)
        for n, res in base.items():
            r = float(res.sum_rate.mean())
            print(f"{n:<18} {r * w:>8.2f} {r:>9.4f} {r / ref:>10.4f}")


if __name__ == "__main__":
    main()
