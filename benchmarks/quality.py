"""Train each 3-cell scheme (and, with --7cell, the 7-cell schemes) for a stated budget and print the
held-out mean sum-rate beside WMMSE, FP (and the certified optimum for 3 cells).

    python benchmarks/quality.py [--iterations 60] [--episodes 500] [--hidden 64] [--layers 2] [--7cell]

The budget (iterations x episodes x B environment steps, network size) is printed with the results.
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
                                          f"policy.layers={a.layers}", "trpo.value_epochs=10",
                                          "trpo.value_lr=0.003", f"run.seed={a.seed}"] + extra)
    tr = Trainer(cfg, make_backend(cfg))
    t0 = time.perf_counter()
    steps = 0
    for _ in range(a.iterations):
        steps += tr.step()["env_steps"]
    dt = time.perf_counter() - t0
    return float(sum_rate(problem.G, evaluate_policy(cfg, tr.theta, problem), problem.noise_w).mean()), dt, steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=1000)
    ap.add_argument("--7cell", dest="seven", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    kinds = ["3cell"] + (["7cell"] if a.seven else [])
    for kind in kinds:
        cfg = load_config(TrainConfig, None, [f"scenario.kind={kind}"] + (
            ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind == "7cell" else []))
        problem = scenario_of(cfg).sample(a.slots, np.random.default_rng(10_000 + a.seed))
        w = problem.bandwidth_hz / 1e6
        names = ["max_power", "wmmse", "fp"] + (["optimum"] if kind == "3cell" else [])
        base = run_methods(problem, classical_methods(np.random.default_rng(0)), names)
        print(f"\n{kind}: held-out mean sum-rate on {a.slots} realizations; budget per scheme: {a.iterations} "
              f"iterations x M = {a.episodes} episodes, policy/value {a.layers}x{a.hidden} ELU")
        print(f"{'method':<18} {'Mbps':>8} {'bit/s/Hz':>9} {'train s':>8} {'env steps':>10}")
        schemes = ["centralized", "partial", "full"] if kind == "3cell" else ["partial", "full"]
        for scheme in schemes:
            r, dt, steps = train_eval(kind, scheme, a, problem)
            print(f"{'trpo_' + scheme:<18} {r * w:>8.2f} {r:>9.4f} {dt:>8.1f} {steps:>10}")
        for n, res in base.items():
            r = float(res.sum_rate.mean())
            print(f"{n:<18} {r * w:>8.2f} {r:>9.4f}")


if __name__ == "__main__":
    main()
