"""Scale: 3, 7 and 19 cells (BS actors) and paper 2's N-link model up to 19 x 8 = 152 links packed into actors,
on one node (an embedded Ray) and on a 2-node Ray cluster of this machine (``ray.cluster_utils.Cluster``, head +
1 node, ``run.placement=spread``), printed side by side:

* actor start: seconds until every actor of the run is up and connected (the backend's constructor: actors
  created, sockets bound, ring / air port connected, start barrier passed);
* memory per actor: resident set (VmRSS, MB) of each actor process after the timed iterations, mean and max,
  the peak (VmHWM) of the largest, and the mean proportional set size (PSS: shared library pages split among
  the processes that map them; the sum of PSS is what the actors take from the machine);
* TRPO seconds per iteration, round-robin (``partial``) and fully decentralized (``full``), inproc vs ray and
  ray / inproc: small networks (2 x 64 by default), M = 200 episodes, the median of a few iterations after a
  warm-up, the two backends' iterations interleaved so that a change of the machine's load hits both;
* TRPO with several BSs per actor (``run.bs_per_actor``, e.g. 1, 4 and 19 on 19 cells): inproc and the ray backend
  with each value up at once, their iterations interleaved in one loop, so that the ray / inproc ratios of the
  values are measured side by side (one node only);
* zeroth-order seconds per iteration (paper 2), inproc vs ray, N = 3, 7, 19 links one per actor (synchronous,
  eq. (7), fully connected) and N = 152 links 8 per actor (``run.links_per_actor``) on a random connected graph
  with |N_i| <= 8 (eq. (9), relays), interleaved likewise. Not fully connected at 152: a link's node holds one
  ZeroMQ PUSH socket per neighbour and the links of an actor share one ZeroMQ context, whose default limit is
  1023 sockets (ZMQ_MAX_SOCKETS); 8 x 151 neighbours failed with "Too many open files" (``--zo-graph
  full,full,full,full`` shows it).

    python benchmarks/scale.py [--cells 3,7,19] [--users 2,8,8] [--schemes partial,full] [--iters 5]
                               [--episodes 200] [--hidden 64] [--layers 2] [--links 3,7,19,152]
                               [--links-per-actor 1,1,1,8] [--zo-graph full,full,full,8] [--zo-iters 10]
                               [--zo-b 100] [--bs-per-actor 1,4,19] [--skip-cluster]
                               [--skip-trpo] [--skip-pack] [--skip-zo]

Both cluster nodes share this machine's cores: the cluster's figures show the overheads of spreading (node
affinity, sockets bound to the node's address, CURVE where the run enables it), not speed-ups. The load average
(1 min) is printed beside every figure: the machine is shared, so compare ratios measured in the same row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from coordinator.trpo.backend import make_backend  # noqa: E402
from coordinator.trpo.config import TrainConfig  # noqa: E402
from coordinator.trpo.trainer import Trainer  # noqa: E402
from coordinator.zo.config import ZOConfig  # noqa: E402
from coordinator.zo.links import Exchange  # noqa: E402
from coordinator.zo.train import make_trainer  # noqa: E402
from deploy.config import load_config  # noqa: E402
from protocol.log import MessageLog  # noqa: E402

GOAL_RATIO = 1.5
GOAL_MEMORY_GB = 24.0


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _proc_mb(_self: Any = None) -> tuple[float, float, float]:
    """(VmRSS, VmHWM, Pss) of the calling process in MB (run inside an actor through ``__ray_call__``). RSS counts
    every shared page (torch's and Ray's libraries) in full in each process; PSS shares them out among the
    processes that map them, so the sum of PSS is what the actors take from the machine."""
    got = {}
    for path, keys in (("/proc/self/status", ("VmRSS", "VmHWM")), ("/proc/self/smaps_rollup", ("Pss",))):
        try:
            with open(path) as f:
                for line in f:
                    key, _, val = line.partition(":")
                    if key in keys:
                        got[key] = float(val.split()[0]) / 1024.0
        except OSError:
            pass
    return got.get("VmRSS", float("nan")), got.get("VmHWM", float("nan")), got.get("Pss", float("nan"))


def actor_memory(actors: list) -> list[tuple[float, float, float]]:
    """(RSS, peak RSS, PSS) in MB of every actor process."""
    import ray

    return ray.get([a.__ray_call__.remote(_proc_mb) for a in actors])


def nodes_of(actors: list) -> int:
    import ray

    return len(set(ray.get([a.__ray_call__.remote(lambda _s: __import__("ray").get_runtime_context().get_node_id())
                            for a in actors])))


def interleaved(steps: dict[str, Callable[[], Any]], iters: int) -> dict[str, float]:
    """Round r runs one iteration of every column in turn (the order rotating); median seconds per column."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    keys = list(steps)
    for r in range(iters):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def mem_text(mem: list[tuple[float, float, float]]) -> str:
    rss = [m[0] for m in mem]
    return (f"{statistics.mean(rss):4.0f} / {max(rss):4.0f} / {max(m[1] for m in mem):4.0f} / "
            f"{statistics.mean(m[2] for m in mem):4.0f}")


# ---------------------------------------------------------------- TRPO (paper 1)
def trpo_config(kind: str, K: int, scheme: str, backend: str, a: argparse.Namespace, bs_per_actor: int = 1
                ) -> TrainConfig:
    sets = [f"scenario.kind={kind}", f"scenario.users_per_cell={K}", f"run.scheme={scheme}", f"run.backend={backend}",
            f"trpo.episodes={a.episodes}", f"policy.hidden={a.hidden}", f"policy.layers={a.layers}",
            "run.placement=spread", "run.eval_slots=0", f"run.bs_per_actor={bs_per_actor}"]
    if kind != "3cell":
        sets.append("scenario.alpha=4.0")      # the 7-cell setting (Scenario.preset), also on 19 cells
    return load_config(TrainConfig, None, sets)


def trpo_row(kind: str, K: int, scheme: str, a: argparse.Namespace) -> dict[str, Any]:
    """Both backends of one (network, scheme): ray's start time and memory, interleaved iterations."""
    cfg_i = trpo_config(kind, K, scheme, "inproc", a)
    inproc = Trainer(cfg_i, make_backend(cfg_i))
    cfg = trpo_config(kind, K, scheme, "ray", a)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    be = make_backend(cfg)                     # returns once every actor is up and its sockets connected
    start_s = time.perf_counter() - t0
    try:
        ray_tr = Trainer(cfg, be)
        inproc.step()                          # warm-up
        ray_tr.step()
        med = interleaved({"inproc": inproc.step, "ray": ray_tr.step}, a.iters)
        mem = actor_memory(be.actors)
        n_nodes = nodes_of(be.actors)
    finally:
        be.close()
    return {"actors": len(mem), "nodes": n_nodes, "start_s": start_s, "start_load": load_before, "mem": mem, **med,
            "load": os.getloadavg()[0]}


def trpo_section(a: argparse.Namespace, where: str) -> list[tuple[str, dict[str, Any]]]:
    t = TrainConfig().trpo
    print(f"\n== TRPO, {where}: policy/value {a.layers}x{a.hidden} ELU, M = {a.episodes}, CG {t.cg_iters}, critic "
          f"{t.value_epochs} rounds; median of {a.iters} interleaved iterations after 1 warm-up ==")
    print(f"{'cells':>5} {'K':>2} {'L':>4} {'scheme':<8} | {'actors':>6} {'nodes':>5} | {'start s':>7} {'(load)':>6} | "
          f"{'MB/actor: RSS mean / max / peak, PSS':>37} | {'inproc s/it':>11} {'ray s/it':>9} {'ray/inproc':>10} "
          f"| load")
    out = []
    for kind, K in zip(a.kinds, a.users, strict=True):
        for scheme in a.schemes:
            r = trpo_row(kind, K, scheme, a)
            B = int(kind.removesuffix("cell"))
            print(f"{B:>5} {K:>2} {B * K:>4} {scheme:<8} | {r['actors']:>6} {r['nodes']:>5} | {r['start_s']:>7.2f} "
                  f"{r['start_load']:>6.1f} | {mem_text(r['mem']):>37} | {r['inproc']:>11.3f} {r['ray']:>9.3f} "
                  f"{r['ray'] / r['inproc']:>10.2f} | {r['load']:.1f}", flush=True)
            out.append((f"{kind} {scheme}", r))
    return out


def packing_rows(kind: str, K: int, scheme: str, a: argparse.Namespace) -> list[tuple[int, dict[str, Any]]]:
    """inproc and one ray backend per ``run.bs_per_actor`` value, all up at once, iterations interleaved: one
    row per value, each with the same inproc column."""
    cfg_i = trpo_config(kind, K, scheme, "inproc", a)
    inproc = Trainer(cfg_i, make_backend(cfg_i))
    steps: dict[str, Callable[[], Any]] = {"inproc": inproc.step}
    made: dict[int, tuple[Any, float, float]] = {}
    try:
        for k in a.bs_per_actor:
            cfg = trpo_config(kind, K, scheme, "ray", a, bs_per_actor=k)
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            be = make_backend(cfg)
            made[k] = (be, time.perf_counter() - t0, load_before)
            tr = Trainer(cfg, be)
            tr.step()                          # warm-up
            steps[f"ray {k}"] = tr.step
        inproc.step()
        med = interleaved(steps, a.iters)
        load_after = os.getloadavg()[0]
        rows = []
        for k, (be, start_s, load_before) in made.items():
            mem = actor_memory(be.actors)
            rows.append((k, {"actors": len(mem), "nodes": nodes_of(be.actors), "start_s": start_s,
                             "start_load": load_before, "mem": mem, "inproc": med["inproc"], "ray": med[f"ray {k}"],
                             "load": load_after}))
    finally:
        for be, _, _ in made.values():
            be.close()
    return rows


def packing_section(a: argparse.Namespace, where: str) -> list[tuple[str, dict[str, Any]]]:
    kind, K = a.kinds[-1], a.users[-1]
    B = int(kind.removesuffix("cell"))
    values = ", ".join(str(k) for k in a.bs_per_actor)
    print(f"\n== TRPO, {where}, {B} cells with run.bs_per_actor = {values} (BSs per actor): inproc and every ray "
          f"backend up at once, median of {a.iters} interleaved iterations after 1 warm-up ({a.layers}x{a.hidden}, "
          f"M = {a.episodes}) ==")
    print(f"{'cells':>5} {'scheme':<8} {'BS/actor':>8} | {'actors':>6} | {'start s':>7} {'(load)':>6} | "
          f"{'MB/actor: RSS mean / max / peak, PSS':>37} | {'inproc s/it':>11} {'ray s/it':>9} {'ray/inproc':>10} "
          f"| load")
    out = []
    for scheme in a.schemes:
        for k, r in packing_rows(kind, K, scheme, a):
            print(f"{B:>5} {scheme:<8} {k:>8} | {r['actors']:>6} | {r['start_s']:>7.2f} {r['start_load']:>6.1f} | "
                  f"{mem_text(r['mem']):>37} | {r['inproc']:>11.3f} {r['ray']:>9.3f} {r['ray'] / r['inproc']:>10.2f} "
                  f"| {r['load']:.1f}", flush=True)
            out.append((f"{kind} {scheme} {k} BS/actor", r))
    return out


# ---------------------------------------------------------------- zeroth order (paper 2)
def zo_config(n: int, backend: str, per_actor: int, graph: str, a: argparse.Namespace) -> ZOConfig:
    """``graph``: full (eq. (7), synchronous, fully connected) or D (eq. (9), random connected graph, |N_i| <= D)."""
    half = a.zo_b // 2
    algo = {"update": "sync", "graph": "full"} if graph == "full" else {"update": "graph", "graph": "random",
                                                                         "max_degree": int(graph)}
    return ZOConfig().replace(scenario={"n_links": n}, algo={"b1": half, "b2": a.zo_b - half, **algo},
                              run={"backend": backend, "links_per_actor": per_actor, "placement": "spread",
                                   "iterations": 10**9, "eval_every": 10**9, "eval_sequences": 1, "eval_slots": 1})


def zo_row(n: int, per_actor: int, graph: str, a: argparse.Namespace) -> dict[str, Any]:
    from coordinator.zo.config import validate
    from coordinator.zo.ray_links import RayLinks

    cfg_i, cfg_r = zo_config(n, "inproc", per_actor, graph, a), zo_config(n, "ray", per_actor, graph, a)
    validate(cfg_r)
    inproc = make_trainer(cfg_i, MessageLog(None), Exchange())
    log, ex = MessageLog(None), Exchange()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    links = RayLinks(cfg_r, log, ex)           # returns once every actor is up, connected, past the barrier
    start_s = time.perf_counter() - t0
    try:
        ray_tr = make_trainer(cfg_r, log, ex, links)
        for _ in range(2):                     # warm-up
            inproc.run_iteration()
            ray_tr.run_iteration()
        med = interleaved({"inproc": inproc.run_iteration, "ray": ray_tr.run_iteration}, a.zo_iters)
        links._pause()                         # the actors leave their serve loop before other Ray calls
        mem = actor_memory(links.actors)
        n_nodes = nodes_of(links.actors)
    finally:
        links.close()
    return {"actors": len(mem), "nodes": n_nodes, "start_s": start_s, "start_load": load_before, "mem": mem,
            "messages": ex.messages, "iterations": ray_tr.iteration, **med, "load": os.getloadavg()[0]}


def zo_section(a: argparse.Namespace, where: str) -> list[tuple[str, dict[str, Any]]]:
    print(f"\n== zeroth order (paper 2 N-link model), {where}: B = {a.zo_b} slots per iteration; graph full: "
          f"eq. (7), N (N - 1) d messages per iteration; graph <= D: eq. (9) on a random connected graph with "
          f"|N_i| <= D; median of {a.zo_iters} interleaved iterations after 2 warm-up ==")
    print(f"{'N':>4} {'links/actor':>11} {'graph':>6} | {'actors':>6} {'nodes':>5} | {'start s':>7} {'(load)':>6} | "
          f"{'MB/actor: RSS mean / max / peak, PSS':>37} | {'d msgs/it':>9} | {'inproc s/it':>11} {'ray s/it':>9} "
          f"{'ray/inproc':>10} | load")
    out = []
    for n, per, graph in zip(a.links, a.links_per_actor, a.zo_graph, strict=True):
        r = zo_row(n, per, graph, a)
        g = "full" if graph == "full" else f"<= {graph}"
        print(f"{n:>4} {per:>11} {g:>6} | {r['actors']:>6} {r['nodes']:>5} | {r['start_s']:>7.2f} "
              f"{r['start_load']:>6.1f} | {mem_text(r['mem']):>37} | {r['messages'] / r['iterations']:>9.0f} | "
              f"{r['inproc']:>11.4f} {r['ray']:>9.4f} {r['ray'] / r['inproc']:>10.2f} | {r['load']:.1f}", flush=True)
        out.append((f"zo N={n} ({per}/actor)", r))
    return out


def goals(results: dict[str, list[tuple[str, dict[str, Any]]]], a: argparse.Namespace) -> None:
    """The issue's goal: 19 BS actors (and 19 x 8 links packed into actors) fit one 24 GiB machine, memory per
    actor printed; ray / inproc per iteration <= 1.5 for 19 cells."""
    print(f"\n== goals (19 BS actors and 19 x 8 links in actors on one {GOAL_MEMORY_GB:g} GiB machine; ray/inproc "
          f"<= {GOAL_RATIO} for 19 cells) ==")
    for where, rows in results.items():
        for name, r in rows:
            if not (name.startswith("19cell") or name.startswith("zo N=152") or name.startswith("zo N=19 ")):
                continue
            rss_gb, pss_gb = (sum(m[k] for m in r["mem"]) / 1024.0 for k in (0, 2))
            ratio = r["ray"] / r["inproc"]
            fits = rss_gb < GOAL_MEMORY_GB
            print(f"{where:<28} {name:<22} {r['actors']:>3} actors, {rss_gb:5.2f} GB RSS in all ({pss_gb:4.2f} GB "
                  f"PSS; {'fits' if fits else 'DOES NOT FIT'}); ray/inproc {ratio:.2f}: "
                  f"{'met' if ratio <= GOAL_RATIO else 'MISSED'} (load {r['load']:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="3,7,19", help="comma-separated: 3, 7, 19")
    ap.add_argument("--users", default="2,8,8", help="K per cell, one per --cells entry (the scenarios: 2 / 8 / 8)")
    ap.add_argument("--schemes", default="partial,full", help="TRPO schemes: partial (round-robin), full")
    ap.add_argument("--iters", type=int, default=5, help="TRPO: timed iterations per backend (median)")
    ap.add_argument("--episodes", type=int, default=200, help="TRPO: M, episodes per iteration")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--links", default="3,7,19,152", help="zeroth order: N, comma-separated")
    ap.add_argument("--links-per-actor", default="1,1,1,8", help="one per --links entry")
    ap.add_argument("--zo-graph", default="full,full,full,8",
                    help="one per --links entry: full (eq. (7), fully connected) or D (eq. (9), random connected "
                         "graph with |N_i| <= D)")
    ap.add_argument("--zo-iters", type=int, default=10, help="zeroth order: timed iterations per backend (median)")
    ap.add_argument("--zo-b", type=int, default=100, help="zeroth order: B = B1 + B2 slots per iteration")
    ap.add_argument("--bs-per-actor", default="1,4,19",
                    help="TRPO: run.bs_per_actor values compared side by side on the last --cells entry (one node)")
    ap.add_argument("--skip-cluster", action="store_true", help="one node only")
    ap.add_argument("--skip-trpo", action="store_true")
    ap.add_argument("--skip-pack", action="store_true", help="no run.bs_per_actor rows")
    ap.add_argument("--skip-zo", action="store_true")
    a = ap.parse_args()
    a.kinds = [f"{int(c)}cell" for c in a.cells.split(",")]
    a.users = [int(k) for k in a.users.split(",")]
    a.schemes = a.schemes.split(",")
    a.links = [int(n) for n in a.links.split(",")]
    a.links_per_actor = [int(n) for n in a.links_per_actor.split(",")]
    a.zo_graph = a.zo_graph.split(",")
    a.bs_per_actor = [int(k) for k in a.bs_per_actor.split(",") if k]
    if len(a.users) != len(a.kinds) or not len(a.links_per_actor) == len(a.zo_graph) == len(a.links):
        ap.error("--users needs one K per --cells entry, --links-per-actor and --zo-graph one entry per --links entry")
    torch.set_num_threads(1)

    from coordinator.session import ray_session

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"{os.cpu_count()} cores, {mem_gb:.1f} GiB memory; {load()} at start. Every process computes with 1 torch "
          f"and BLAS thread; the actors, the driver and Ray share the cores.")
    results: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    where = "one node (embedded Ray)"
    session = ray_session()
    try:
        results[where] = (([] if a.skip_trpo else trpo_section(a, where))
                          + ([] if a.skip_pack or not a.bs_per_actor else packing_section(a, where))
                          + ([] if a.skip_zo else zo_section(a, where)))
    finally:
        session.close()
    if not a.skip_cluster:
        from ray.cluster_utils import Cluster

        where = "2-node cluster, spread"
        print(f"\n2-node Ray cluster of this machine (ray.cluster_utils.Cluster: head + 1 node, 1 CPU each, "
              f"run.placement=spread): BOTH NODES SHARE THIS MACHINE'S {os.cpu_count()} CORES, so its figures show "
              f"the overheads of spreading, not speed-ups")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            session = ray_session(cluster.address)
            try:
                results[where] = (([] if a.skip_trpo else trpo_section(a, where))
                                  + ([] if a.skip_zo else zo_section(a, where)))
            finally:
                session.close()
        finally:
            cluster.shutdown()
    goals(results, a)
    print(f"\n{load()} at the end")


if __name__ == "__main__":
    main()
