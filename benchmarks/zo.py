"""Zeroth-order (paper 2) benchmarks, printed side by side in one run:

1. seconds per iteration, inproc vs ray backend (goal: ray <= 1.5x inproc);
2. final sum-rate for N = 5/10/15 beside our centralized Adam and paper 2's Table II;
3. bytes exchanged per iteration: proposed (full / graph) vs FL vs centralized.

    python benchmarks/zo.py [--iterations 2000] [--skip-ray]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from coordinator.zo_config import ZOConfig  # noqa: E402
from coordinator.zo_train import Evaluator, Exchange, make_trainer, train  # noqa: E402
from protocol.log import MessageLog  # noqa: E402

PAPER = {5: (4.95, 5.12), 10: (5.31, 5.35), 15: (5.63, 5.71)}


def timed(cfg: ZOConfig, links=None, log=None, ex=None):
    log = log or MessageLog(None)
    ex = ex or Exchange()
    tr = make_trainer(cfg, log, ex, links)
    ev = Evaluator(cfg)
    t = time.perf_counter()
    row = train(cfg, tr, ev, cfg.run.iterations)
    return (time.perf_counter() - t) / cfg.run.iterations, row, ex


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--speed-iterations", type=int, default=100)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()

    print("== seconds per iteration (N = 5, B = 100, sync, logical time) ==")
    cfg = ZOConfig().replace(run={"iterations": args.speed_iterations, "eval_every": 10**9,
                                  "eval_sequences": 2, "eval_slots": 2})
    s_in, _, _ = timed(cfg)
    line = f"inproc {s_in * 1e3:.2f} ms/it"
    if not args.skip_ray:
        import ray

        from coordinator.zo_ray import RayLinks

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        log, ex = MessageLog(None), Exchange()
        links = RayLinks(cfg, log, ex)
        try:
            s_ray, _, _ = timed(cfg, links, log, ex)
        finally:
            links.close()
            ray.shutdown()
        line += f" | ray {s_ray * 1e3:.2f} ms/it | ratio {s_ray / s_in:.2f}x (goal <= 1.5x)"
    print(line)

    print(f"\n== final sum-rate after {args.iterations} iterations (bit/s/Hz) ==")
    print(f"{'N':>3} | {'proposed':>9} | {'our Adam':>9} | {'max power':>9} | {'paper prop.':>11} | {'paper Adam':>10}"
          f" | goal >= paper & >= 0.98 x Adam")
    for N in (5, 10, 15):
        base = ZOConfig().replace(scenario={"n_links": N}, run={"iterations": args.iterations,
                                                                "eval_every": args.iterations})
        _, rp, _ = timed(base)
        _, ra, _ = timed(base.replace(run={"method": "adam", "iterations": args.iterations,
                                           "eval_every": args.iterations}))
        ok = rp["sum_rate"] >= PAPER[N][0] and rp["sum_rate"] >= 0.98 * ra["sum_rate"]
        print(f"{N:>3} | {rp['sum_rate']:9.3f} | {ra['sum_rate']:9.3f} | {rp['max_power']:9.3f} | "
              f"{PAPER[N][0]:11.2f} | {PAPER[N][1]:10.2f} | {'met' if ok else 'NOT met'}")

    print("\n== bytes exchanged per iteration (N = 5, B = 100) ==")
    its = 20
    for label, chg in (("proposed, fully connected", {"algo": {"update": "sync"}}),
                       ("proposed, graph |N_i|<=2", {"algo": {"update": "graph", "graph": "random"}}),
                       ("FL (I = 10)", {"run": {"method": "fl"}}),
                       ("centralized Adam", {"run": {"method": "adam"}})):
        c = ZOConfig().replace(**chg)
        c = c.replace(run={"iterations": its, "eval_every": its, "eval_sequences": 2, "eval_slots": 2})
        _, _, ex = timed(c)
        print(f"{label:28s} {ex.bytes / its:10.1f} B/it  {ex.scalars / its:9.1f} scalars/it  "
              f"{ex.messages / its:6.1f} msgs/it")


if __name__ == "__main__":
    main()
