"""Seconds per TRPO iteration at M = 1000 (Table II networks) for each scheme in both backends,
side by side, environment steps per second, and memory per BS actor. The backends of a scheme (and
the inproc runs with the Fisher on every k-th episode and with T torch threads) are all built first
and timed one iteration each in turn, median per column, so that a loaded, shared machine skews the ratios less.

    python benchmarks/train_speed.py [--iters 5] [--episodes 1000] [--schemes centralized,partial,full]
                                     [--backends inproc,ray] [--fvp-stride 5] [--threads 2] [--no-shipped]

Every column but the threads one uses one torch thread per process; the threads column runs the inproc
backend with T threads (`run.threads`, for the centralized scheme: its one agent on all cores). A scheme
with a shipped config (deploy/configs/3cell_centralized.yaml) gets one more column per backend: that file's
own settings (its M, critic steps and precision, CG iterations, fvp_stride, threads) — the figure the
centralized goal (>= 5000 steps/s on 2 cores) is about (the file itself names inproc). --no-shipped skips it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402

from coordinator.trpo.backend import make_backend  # noqa: E402
from coordinator.trpo.config import TrainConfig  # noqa: E402
from coordinator.trpo.trainer import Trainer  # noqa: E402
from deploy.config import load_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "deploy" / "configs"
# the shipped config of a scheme, timed as it is on each backend in the "shipped" columns
SHIPPED = {("3cell", "centralized"): CONFIGS / "3cell_centralized.yaml"}


def make(scheme: str, backend: str, episodes: int, kind: str, stride: int = 1, threads: int = 1,
         path: Path | None = None) -> tuple[Trainer, object]:
    """A trainer on the Table II defaults with the given stride and threads, or (``path``) on a
    shipped config's own settings (its M included) with only the backend set."""
    sets = [f"run.scheme={scheme}", f"run.backend={backend}", f"scenario.kind={kind}"]
    if path is None:
        sets += [f"trpo.episodes={episodes}", f"trpo.fvp_stride={stride}", f"run.threads={threads}"]
        sets += ["scenario.users_per_cell=8", "scenario.alpha=4.0"] if kind == "7cell" else []
    cfg = load_config(TrainConfig, path, sets)
    be = make_backend(cfg)
    tr = Trainer(cfg, be)
    tr.step()  # warm-up
    return tr, be


def interleaved(trainers: dict[str, Trainer], iters: int) -> dict[str, tuple[float, float]]:
    """Round r times one iteration of every column in turn (the order rotating), so that a change of
    the machine's load hits all columns alike; returns {column: (median s/it, env steps per s)}."""
    times: dict[str, list[float]] = {k: [] for k in trainers}
    steps: dict[str, int] = dict.fromkeys(trainers, 0)
    keys = list(trainers)
    for r in range(iters):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t0 = time.perf_counter()
            steps[k] = trainers[k].step()["env_steps"]
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), steps[k] / statistics.median(v)) for k, v in times.items()}


def _close(be) -> None:
    be.started_ray = False   # keep the benchmark's own Ray
    be.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--schemes", default="centralized,partial,full")
    ap.add_argument("--kind", default="3cell")
    ap.add_argument("--backends", default="inproc,ray", help="inproc,ray or one of them")
    ap.add_argument("--fvp-stride", type=int, default=5,
                    help="also time inproc with the Fisher on every k-th episode (0: skip that column)")
    ap.add_argument("--no-shipped", dest="shipped", action="store_false",
                    help="skip the column that times a scheme's shipped config (deploy/configs) as it is")
    ap.add_argument("--threads", type=int, default=2,
                    help="also time inproc (exact Fisher) with this many torch threads (0: skip that column)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    backends = a.backends.split(",")
    nan = (float("nan"), float("nan"))
    session = None
    if "ray" in backends:
        from coordinator.session import ray_session

        session = ray_session()   # the embedded Ray of `bsemu train`
    print(f"{a.kind}, M = {a.episodes}, policy/value 3x256 ELU, median of {a.iters} iterations per column after 1 "
          f"warm-up, the columns interleaved; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'scheme':<12} {'inproc s/it':>11} {'ray s/it':>9} {'ray/inproc':>10} {'inproc steps/s':>14} "
          f"{'ray steps/s':>11} {'MB/actor (maxrss)':>18}"
          + (f" {'inproc steps/s, fvp_stride=' + str(a.fvp_stride):>28} {'ratio':>6}" if a.fvp_stride else "")
          + (f" {'inproc steps/s, ' + str(a.threads) + ' threads':>26} {'ratio':>6}" if a.threads else ""))
    for scheme in a.schemes.split(","):
        cols = {b: (b, 1, 1) for b in backends}
        if a.fvp_stride and "inproc" in backends:
            cols["stride"] = ("inproc", a.fvp_stride, 1)
        if a.threads and "inproc" in backends:
            cols["threads"] = ("inproc", 1, a.threads)
        made = {k: make(scheme, b, a.episodes, a.kind, st, th) for k, (b, st, th) in cols.items()}
        shipped = SHIPPED.get((a.kind, scheme)) if a.shipped else None
        if shipped is not None:
            for b in backends:   # the file's settings on each backend (the file itself names inproc)
                made["shipped_" + b] = make(scheme, b, a.episodes, a.kind, path=shipped)
        try:
            res = interleaved({k: tr for k, (tr, _) in made.items()}, a.iters)
            mem = made["ray"][1].memory_mb() if "ray" in made else []
        finally:
            for _, be in made.values():
                _close(be)
        ti, si = res.get("inproc", nan)
        tr, sr = res.get("ray", nan)
        line = (f"{scheme:<12} {ti:>11.3f} {tr:>9.3f} {tr / ti:>10.2f} {si:>14.0f} {sr:>11.0f} "
                f"{(sum(mem) / len(mem)) if mem else float('nan'):>18.0f}")
        if "stride" in res:
            ss = res["stride"][1]
            line += f" {ss:>28.0f} {ss / si:>6.2f}"
        if "threads" in res:
            st = res["threads"][1]
            line += f" {st:>26.0f} {st / si:>6.2f}"
        if shipped is not None:
            cf = made["shipped_" + backends[0]][0].cfg
            line += (f"  | shipped {shipped.name} (M = {cf.trpo.episodes}, critic {cf.trpo.value_epochs} in "
                     f"{cf.trpo.value_precision}, "
                     f"CG {cf.trpo.cg_iters}, fvp_stride {cf.trpo.fvp_stride}, {cf.run.threads} threads): "
                     + ", ".join(f"{res['shipped_' + b][1]:.0f} steps/s {b}" for b in backends))
        print(line + f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    if session is not None:
        session.close()


if __name__ == "__main__":
    main()
