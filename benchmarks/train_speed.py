"""Seconds per TRPO iteration at M = 1000 (Table II networks) for each scheme in both backends,
side by side, environment steps per second, and memory per BS actor.

    python benchmarks/train_speed.py [--iters 3] [--episodes 1000] [--schemes centralized,partial,full]
                                     [--backends inproc,ray]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from coordinator.trainer import Trainer, make_backend  # noqa: E402
from deploy.config import TrainConfig, load_config  # noqa: E402


def bench(scheme: str, backend: str, iters: int, episodes: int, kind: str, stride: int = 1
          ) -> tuple[float, float, list]:
    cfg = load_config(TrainConfig, None, [f"run.scheme={scheme}", f"run.backend={backend}",
                                          f"trpo.episodes={episodes}", f"scenario.kind={kind}",
                                          f"trpo.fvp_stride={stride}"]
                      + (["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind == "7cell" else []))
    be = make_backend(cfg)
    try:
        tr = Trainer(cfg, be)
        tr.step()  # warm-up
        t0 = time.perf_counter()
        steps = 0
        for _ in range(iters):
            steps += tr.step()["env_steps"]
        dt = time.perf_counter() - t0
        mem = be.memory_mb() if backend == "ray" else []
        return dt / iters, steps / dt, mem
    finally:
        be.close() if backend == "inproc" else _close_keep_ray(be)


def _close_keep_ray(be) -> None:
    be.started_ray = False
    be.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--schemes", default="centralized,partial,full")
    ap.add_argument("--kind", default="3cell")
    ap.add_argument("--backends", default="inproc,ray", help="inproc,ray or one of them")
    ap.add_argument("--fvp-stride", type=int, default=5,
                    help="also time inproc with the Fisher on every k-th episode (0: skip that column)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    backends = a.backends.split(",")
    nan = (float("nan"), float("nan"), [])
    if "ray" in backends:
        import ray

        from coordinator.ray_backend import RAY_SYSTEM_CONFIG  # the embedded Ray of `bsemu train`

        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _system_config=RAY_SYSTEM_CONFIG)
    print(f"{a.kind}, M = {a.episodes}, policy/value 3x256 ELU, {a.iters} timed iterations after 1 warm-up")
    print(f"{'scheme':<12} {'inproc s/it':>11} {'ray s/it':>9} {'ray/inproc':>10} {'inproc steps/s':>14} "
          f"{'ray steps/s':>11} {'MB/actor (maxrss)':>18}"
          + (f" {'inproc steps/s, fvp_stride=' + str(a.fvp_stride):>28} {'ratio':>6}" if a.fvp_stride else ""))
    for scheme in a.schemes.split(","):
        ti, si, _ = bench(scheme, "inproc", a.iters, a.episodes, a.kind) if "inproc" in backends else nan
        tr, sr, mem = bench(scheme, "ray", a.iters, a.episodes, a.kind) if "ray" in backends else nan
        line = (f"{scheme:<12} {ti:>11.3f} {tr:>9.3f} {tr / ti:>10.2f} {si:>14.0f} {sr:>11.0f} "
                f"{(sum(mem) / len(mem)) if mem else float('nan'):>18.0f}")
        if a.fvp_stride:
            _, ss, _ = bench(scheme, "inproc", a.iters, a.episodes, a.kind, a.fvp_stride)
            line += f" {ss:>28.0f} {ss / si:>6.2f}"
        print(line)
    if "ray" in backends:
        ray.shutdown()


if __name__ == "__main__":
    main()
