"""Paper 2's experiments (Figs. 2-5, Tables I-II) and the d exchange under delay and loss (``delay``,
``loss``: logical clock, in process, deterministic; ``delay_real``, ``loss_real``: the ray backend on the wall
clock), each written as zo_<name>.csv and zo_<name>.png; ``scale`` sets their length.

An experiment is a :class:`Plan`: its runs (one per configuration and seed, each a deterministic function of
its config on the logical clock) and what makes its rows from their outcomes. :func:`execute` runs the plans
one run after another in this process, or (``parallel``) the logical-clock runs as Ray tasks (one CPU each,
spread over the cluster's nodes), gathered as they finish: the rows are the same either way. The real-clock
runs time things, so they always run one at a time in this process, after the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.messages import RunMessages
from coordinator.zo.config import ZOConfig
from coordinator.zo.links import Exchange
from coordinator.zo.ray_links import RayLinks
from coordinator.zo.train import Evaluator, make_trainer, train
from deploy import plots
from deploy.rundir import write_csv
from deploy.sweeps.tasks import ray_tasks
from radio.seeding import ZoStream, rng_for

ITERATIONS = {"quick": 300, "paper": 5000}
TABLE1_PATH_LOSS = (1.0, 0.5, 2.0, 0.25, 4.0)
"""BLAS / OpenMP thread counts a Ray task gets from the driver (the command line sets 1), so that a run does
the same arithmetic in a task as in this process."""

Outcome = tuple[list[dict[str, Any]], list[np.ndarray]]
"""One run's metric rows and its final policy parameters (theta of every link)."""
Result = tuple[list[dict[str, Any]], list[str]]
"""(rows written to the CSV, lines of the short text table)."""


def _run(cfg: ZOConfig) -> Outcome:
    """One run: in process, or (``run.backend: ray``) with the links as Ray actors."""
    rows: list[dict[str, Any]] = []
    log, ex = RunMessages(), Exchange()
    links = RayLinks(cfg, log, ex) if cfg.run.backend == "ray" and cfg.run.method == "proposed" else None
    try:
        tr = make_trainer(cfg, log, ex, links)
        train(cfg, tr, Evaluator(cfg), cfg.run.iterations, rows.append)
    finally:
        if links is not None:
            links.close()
    return rows, [np.asarray(t) for t in tr.thetas()]


@dataclass(frozen=True)
class Plan:
    """An experiment: its runs (in order) and ``finish``, which makes the rows (and writes the PNG) from
    their outcomes (in the same order)."""

    runs: list[ZOConfig]
    finish: Callable[[list[Outcome]], Result]

    @property
    def real(self) -> bool:
        """Runs on the wall clock (never in parallel: they time things)."""
        return any(c.run.clock == "real" for c in self.runs)


class _Runs:
    """The runs an experiment asks for, in order."""

    def __init__(self) -> None:
        self.runs: list[ZOConfig] = []

    def seeds(self, cfg: ZOConfig, seeds: int) -> slice:
        """``seeds`` runs of ``cfg`` (seeds run.seed, run.seed + 1, ...); their place among the outcomes."""
        start = len(self.runs)
        self.runs += [cfg.replace(run={"seed": cfg.run.seed + s}) for s in range(seeds)]
        return slice(start, len(self.runs))


def _average(per_seed: Sequence[Outcome], label: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows averaged over seeds, tagged with ``label`` and ``extra`` columns."""
    rows = [o[0] for o in per_seed]
    out = []
    for i, row in enumerate(rows[0]):
        r = {"method": label, **extra, "samples": row["samples"], "iteration": row["iteration"]}
        for key in ("sum_rate", "max_power", "messages", "scalars", "bytes", "dropped"):
            r[key] = float(np.mean([p[i].get(key, 0.0) for p in rows]))
        out.append(r)
    return out




def _methods_variants(its: int) -> list[tuple[str, dict[str, Any]]]:
    run = {"iterations": its, "eval_every": max(1, its // 15)}
    return [
        ("proposed (fully connected)", {"run": {**run, "method": "proposed"}, "algo": {"update": "sync",
                                                                                        "graph": "full"}}),
        ("proposed (graph, |N_i|<=2)", {"run": {**run, "method": "proposed"}, "algo": {"update": "graph",
                                                                                        "graph": "random",
                                                                                        "max_degree": 2}}),
        ("centralized Adam", {"run": {**run, "method": "adam"}}),
        ("FL", {"run": {**run, "method": "fl"}}),
    ]


def _fig2_3(name: str, base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    """Figs. 2 and 3 share their runs (:func:`execute` runs a configuration once)."""
    runs = _Runs()
    parts = [(label, runs.seeds(base.replace(**chg), seeds)) for label, chg in _methods_variants(its)]

    def finish(out: list[Outcome]) -> Result:
        rows = [r for label, ix in parts for r in _average(out[ix], label, {})]
        if name == "fig2":
            plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 2: sum-rate vs channel samples (N = 5)")
        else:
            plots.lines(png, rows, "method", "samples", "bytes", "Fig. 3: bytes exchanged vs samples", logy=True)
        last: dict[str, dict[str, Any]] = {}
        for r in rows:
            last[r["method"]] = r
        return rows, [f"{m:30s} sum-rate {r['sum_rate']:.3f}  scalars {r['scalars']:.0f}  bytes {r['bytes']:.0f}"
                      for m, r in last.items()]

    return Plan(runs.runs, finish)


def _fig4(base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    runs = _Runs()
    samples = its * 100
    parts = []
    for B in (20, 50, 100, 200):
        n_it = max(1, samples // B)
        cfg = base.replace(algo={"b1": B // 2, "b2": B - B // 2}, run={"iterations": n_it,
                                                                        "eval_every": max(1, n_it // 15)})
        parts.append((B, runs.seeds(cfg, seeds)))

    def finish(out: list[Outcome]) -> Result:
        rows = [r for B, ix in parts for r in _average(out[ix], f"B = {B}", {"B": B})]
        plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 4: batch size B (N = 5)")
        return rows, [f"B = {r['B']:4d}: final sum-rate {r['sum_rate']:.3f}" for r in rows
                      if r["samples"] == max(x["samples"] for x in rows if x["B"] == r["B"])]

    return Plan(runs.runs, finish)


def _fig5(base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    runs = _Runs()
    run = {"iterations": its, "eval_every": max(1, its // 15)}
    parts = []
    for a in (0.0, 10.0, 25.0, 50.0):
        cfg = base.replace(algo={"update": "async", "asynchrony": a}, run={**run, "method": "proposed"})
        parts.append((f"proposed, async {a:g}%", {"asynchrony": a}, runs.seeds(cfg, seeds)))
    parts.append(("centralized Adam", {"asynchrony": 0.0}, runs.seeds(base.replace(run={**run, "method": "adam"}),
                                                                      seeds)))

    def finish(out: list[Outcome]) -> Result:
        rows = [r for label, extra, ix in parts for r in _average(out[ix], label, extra)]
        plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 5: asynchrony levels (N = 5)")
        return rows, [f"{r['method']:28s} final {r['sum_rate']:.3f}" for r in rows if r["iteration"] == its]

    return Plan(runs.runs, finish)


def _table1(base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    run = {"iterations": its, "eval_every": its}
    cfgs = [base.replace(scenario={"path_loss": TABLE1_PATH_LOSS}, algo={"update": "async", "asynchrony": a},
                         run={**run, "method": "proposed"}) for a in (0.0, 10.0, 25.0, 50.0)]

    def finish(out: list[Outcome]) -> Result:
        rows = []
        for cfg, (_, th) in zip(cfgs, out, strict=True):
            ev = Evaluator(cfg)
            r: dict[str, Any] = {"asynchrony": cfg.algo.asynchrony, "no_rnd": ev(th)}
            g = rng_for(cfg.run.seed, ZoStream.ASSIGN)
            for j in range(4):
                perm = g.permutation(len(th))
                while np.array_equal(perm, np.arange(len(th))):
                    perm = g.permutation(len(th))
                r[f"rnd_{j + 1}"] = ev([th[p] for p in perm])
            rows.append(r)
        hdr = ["async.", "no rnd.", "rnd. 1", "rnd. 2", "rnd. 3", "rnd. 4"]
        body = [[f"{r['asynchrony']:g}%"] + [f"{r[k]:.2f}" for k in ("no_rnd", "rnd_1", "rnd_2", "rnd_3", "rnd_4")]
                for r in rows]
        plots.table(png, hdr, body, "Table I: own vs randomly reassigned policies")
        return rows, [" | ".join(hdr)] + [" | ".join(b) for b in body]

    return Plan(cfgs, finish)


def _table2(base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    runs = _Runs()
    run = {"iterations": its, "eval_every": its}
    parts = []
    for N in (5, 10, 15):
        parts.append((N, [(label, runs.seeds(base.replace(scenario={"n_links": N}, run={**run, "method": m}), seeds))
                          for label, m in (("proposed", "proposed"), ("centralized_adam", "adam"))]))

    def finish(out: list[Outcome]) -> Result:
        rows = []
        for N, methods in parts:
            r: dict[str, Any] = {"n_links": N}
            for label, ix in methods:
                r[label] = _average(out[ix], label, {})[-1]["sum_rate"]
            r["paper_proposed"] = {5: 4.95, 10: 5.31, 15: 5.63}[N]
            r["paper_adam"] = {5: 5.12, 10: 5.35, 15: 5.71}[N]
            rows.append(r)
        hdr = ["N", "proposed", "centralized Adam", "paper proposed", "paper Adam"]
        body = [[str(r["n_links"]), f"{r['proposed']:.2f}", f"{r['centralized_adam']:.2f}",
                 f"{r['paper_proposed']:.2f}", f"{r['paper_adam']:.2f}"] for r in rows]
        plots.table(png, hdr, body, "Table II: final sum-rate (bit/s/Hz)")
        return rows, [" | ".join(hdr)] + [" | ".join(b) for b in body]

    return Plan(runs.runs, finish)


def _asynchrony(axis: str, clock: str, base: ZOConfig, its: int, seeds: int, png: Path) -> Plan:
    """Final sum-rate against the d messages' delay (no loss) or loss (no delay), for the update rules that
    can use a late d (eq. (8) async, eq. (9) graph; sync with loss only). Logical clock: delays in slots (below
    B for eq. (8)), in process; real clock: delays in ms on the ray backend, links on the wall clock."""
    B = base.algo.b1 + base.algo.b2
    if axis == "delay":
        values = ([0, 1, 2, 5, 10, 20] if clock == "logical" else [0.0, 0.5, 1.0, 2.0, 5.0])
        values = [v for v in values if clock == "real" or v < B]
        updates = ("async", "graph")
    else:
        values, updates = [0.0, 0.05, 0.1, 0.2, 0.4], ("sync", "async", "graph")
    if clock == "real":
        updates = tuple(u for u in updates if u != "sync")
    runs = _Runs()
    parts = []
    for update in updates:
        graph = {"graph": "random", "max_degree": 2} if update == "graph" else {"graph": "full"}
        for v in values:
            link = {"delay": v * (1e-3 if clock == "real" else 1), "drop_prob": 0.0} if axis == "delay" \
                else {"delay": 0.0, "drop_prob": v}
            run = {"iterations": its, "eval_every": its, "method": "proposed", "clock": clock,
                   **({"backend": "ray", "links_per_actor": base.scenario.n_links} if clock == "real" else {})}
            parts.append((update, v, runs.seeds(base.replace(algo={"update": update, **graph, **link}, run=run),
                                                seeds)))

    def finish(out: list[Outcome]) -> Result:
        rows = []
        for update, v, ix in parts:
            last = _average(out[ix], update, {axis: v})[-1]
            rows.append({"update": update, axis: v, "sum_rate": last["sum_rate"], "max_power": last["max_power"],
                         "dropped": last.get("dropped", 0.0)})
        unit = ("slots" if clock == "logical" else "ms") if axis == "delay" else "probability"
        plots.lines(png, rows, "update", axis, "sum_rate", f"sum-rate against d-message {axis} ({unit}, {clock} clock)")
        return rows, [f"{r['update']:6s} {axis} {r[axis]:g}: sum-rate {r['sum_rate']:.3f} (max power "
                      f"{r['max_power']:.3f})" for r in rows]

    return Plan(runs.runs, finish)


RUNNERS: dict[str, Callable[[ZOConfig, int, int, Path], Plan]] = {
    "fig2": lambda *a: _fig2_3("fig2", *a), "fig3": lambda *a: _fig2_3("fig3", *a), "fig4": _fig4,
    "fig5": _fig5, "table1": _table1, "table2": _table2,
    "delay": lambda *a: _asynchrony("delay", "logical", *a), "loss": lambda *a: _asynchrony("loss", "logical", *a),
    "delay_real": lambda *a: _asynchrony("delay", "real", *a), "loss_real": lambda *a: _asynchrony("loss", "real", *a),
}
EXPERIMENTS = tuple(RUNNERS)
PAPER = ("fig2", "fig3", "fig4", "fig5", "table1", "table2")
"""Paper 2's figures and tables (the default of ``bsemu zo-sweep``)."""


def plan(names: Sequence[str], base: ZOConfig, scale: str, out: Path, seeds: int = 1,
         iterations: int | None = None) -> dict[str, Plan]:
    """The plans of the experiments ``names`` (``iterations`` per run, default by ``scale``), their PNGs in
    ``out``. Nothing runs or is written yet."""
    bad = [n for n in names if n not in RUNNERS]
    if bad:
        raise ValueError(f"unknown experiment {bad[0]!r}; allowed: {EXPERIMENTS}")
    its = ITERATIONS[scale] if iterations is None else int(iterations)
    return {n: RUNNERS[n](base, its, seeds, out / f"zo_{n}.png") for n in names}


def distinct_runs(plans: dict[str, Plan]) -> list[ZOConfig]:
    """Every run of the plans once (an equal configuration gives an equal outcome: it runs once)."""
    return list(dict.fromkeys(c for p in plans.values() for c in p.runs))


def execute(plans: dict[str, Plan], out: Path, parallel: bool = False,
            on_run: Callable[[], None] | None = None) -> Iterator[tuple[str, Path, Path, str]]:
    """Run the plans and write each experiment's CSV and PNG into ``out`` as soon as its runs are done; yields
    (name, csv, png, short text table) per experiment, in the plans' order (with ``parallel``, the real-clock
    experiments after the others). ``on_run`` is called after every run.

    ``parallel``: the logical-clock runs as Ray tasks of the Ray this process has joined (one per run, one CPU
    each, spread over the nodes), all submitted at once and gathered as they finish; real-clock runs (links
    as actors on the wall clock) never overlap anything: one at a time in this process, after the rest.
    """
    done: dict[ZOConfig, Outcome] = {}
    tasked = [n for n, p in plans.items() if parallel and not p.real]
    if tasked:
        yield from _gather({n: plans[n] for n in tasked}, out, done, on_run)
    for n, p in plans.items():
        if n in tasked:
            continue
        for cfg in p.runs:
            if cfg not in done:
                done[cfg] = _run(cfg)
                if on_run is not None:
                    on_run()
        yield _finish(n, p, done, out)


def _finish(name: str, p: Plan, done: dict[ZOConfig, Outcome], out: Path) -> tuple[str, Path, Path, str]:
    rows, text = p.finish([done[c] for c in p.runs])
    csv_path = out / f"zo_{name}.csv"
    write_csv(csv_path, rows)
    return name, csv_path, out / f"zo_{name}.png", "\n".join(text)


def _gather(plans: dict[str, Plan], out: Path, done: dict[ZOConfig, Outcome],
            on_run: Callable[[], None] | None) -> Iterator[tuple[str, Path, Path, str]]:
    """Every run of ``plans`` as a Ray task; each experiment finished (in order) once its runs are in."""
    runs = [c for c in distinct_runs(plans) if c not in done]
    waiting = list(plans)
    finished = ray_tasks(_run, runs)
    while waiting:
        while waiting and all(c in done for c in plans[waiting[0]].runs):
            n = waiting.pop(0)
            yield _finish(n, plans[n], done, out)
        if waiting:
            i, outcome = next(finished)
            done[runs[i]] = outcome
            if on_run is not None:
                on_run()


def run_experiment(name: str, base: ZOConfig, scale: str, out: Path, seeds: int = 1,
                   iterations: int | None = None, parallel: bool = False) -> tuple[Path, Path, str]:
    """Run one experiment (``iterations`` per run, default by ``scale``); returns (csv, png, a short text table)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown experiment {name!r}; allowed: {EXPERIMENTS}")
    (_, csv_path, png_path, text), = execute(plan([name], base, scale, out, seeds, iterations), out, parallel)
    return csv_path, png_path, text
