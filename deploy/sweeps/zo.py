"""Paper 2's experiments (Figs. 2-5, Tables I-II) and the d exchange under delay and loss (``delay``,
``loss``: logical clock, in process, deterministic; ``delay_real``, ``loss_real``: the ray backend on the wall
clock), each written as zo_<name>.csv and zo_<name>.png; ``scale`` sets their length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordinator.messages import RunMessages
from coordinator.zo.config import ZOConfig
from coordinator.zo.links import Exchange
from coordinator.zo.ray_links import RayLinks
from coordinator.zo.train import Evaluator, make_trainer, train
from deploy import plots
from radio.seeding import ZoStream, rng_for

ITERATIONS = {"quick": 300, "paper": 5000}
TABLE1_PATH_LOSS = (1.0, 0.5, 2.0, 0.25, 4.0)


def _run(cfg: ZOConfig) -> tuple[list[dict[str, Any]], Any]:
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
    return rows, tr


def _seeds(cfg: ZOConfig, seeds: int, label: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows averaged over seeds, tagged with ``label`` and ``extra`` columns."""
    per_seed = [_run(cfg.replace(run={"seed": cfg.run.seed + s}))[0] for s in range(seeds)]
    out = []
    for i, row in enumerate(per_seed[0]):
        r = {"method": label, **extra, "samples": row["samples"], "iteration": row["iteration"]}
        for key in ("sum_rate", "max_power", "messages", "scalars", "bytes", "dropped"):
            r[key] = float(np.mean([p[i].get(key, 0.0) for p in per_seed]))
        out.append(r)
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _methods_rows(base: ZOConfig, its: int, seeds: int) -> list[dict[str, Any]]:
    ev = max(1, its // 15)
    run = {"iterations": its, "eval_every": ev}
    variants = [
        ("proposed (fully connected)", {"run": {**run, "method": "proposed"}, "algo": {"update": "sync",
                                                                                        "graph": "full"}}),
        ("proposed (graph, |N_i|<=2)", {"run": {**run, "method": "proposed"}, "algo": {"update": "graph",
                                                                                        "graph": "random",
                                                                                        "max_degree": 2}}),
        ("centralized Adam", {"run": {**run, "method": "adam"}}),
        ("FL", {"run": {**run, "method": "fl"}}),
    ]
    rows = []
    for label, chg in variants:
        rows += _seeds(base.replace(**chg), seeds, label, {})
    return rows


_cache: dict[tuple, list[dict[str, Any]]] = {}
Result = tuple[list[dict[str, Any]], list[str]]
"""(rows written to the CSV, lines of the short text table)."""


def _fig2_3(name: str, base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
    key = (base, its, seeds)
    if key not in _cache:
        _cache[key] = _methods_rows(base, its, seeds)
    rows = _cache[key]
    if name == "fig2":
        plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 2: sum-rate vs channel samples (N = 5)")
    else:
        plots.lines(png, rows, "method", "samples", "bytes", "Fig. 3: bytes exchanged vs samples", logy=True)
    last: dict[str, dict[str, Any]] = {}
    for r in rows:
        last[r["method"]] = r
    return rows, [f"{m:30s} sum-rate {r['sum_rate']:.3f}  scalars {r['scalars']:.0f}  bytes {r['bytes']:.0f}"
                  for m, r in last.items()]


def _fig4(base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
    rows = []
    samples = its * 100
    for B in (20, 50, 100, 200):
        n_it = max(1, samples // B)
        cfg = base.replace(algo={"b1": B // 2, "b2": B - B // 2}, run={"iterations": n_it,
                                                                        "eval_every": max(1, n_it // 15)})
        rows += _seeds(cfg, seeds, f"B = {B}", {"B": B})
    plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 4: batch size B (N = 5)")
    return rows, [f"B = {r['B']:4d}: final sum-rate {r['sum_rate']:.3f}" for r in rows
                  if r["samples"] == max(x["samples"] for x in rows if x["B"] == r["B"])]


def _fig5(base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
    rows = []
    run = {"iterations": its, "eval_every": max(1, its // 15)}
    for a in (0.0, 10.0, 25.0, 50.0):
        cfg = base.replace(algo={"update": "async", "asynchrony": a}, run={**run, "method": "proposed"})
        rows += _seeds(cfg, seeds, f"proposed, async {a:g}%", {"asynchrony": a})
    rows += _seeds(base.replace(run={**run, "method": "adam"}), seeds, "centralized Adam", {"asynchrony": 0.0})
    plots.lines(png, rows, "method", "samples", "sum_rate", "Fig. 5: asynchrony levels (N = 5)")
    return rows, [f"{r['method']:28s} final {r['sum_rate']:.3f}" for r in rows if r["iteration"] == its]


def _table1(base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
    rows = []
    run = {"iterations": its, "eval_every": its}
    for a in (0.0, 10.0, 25.0, 50.0):
        cfg = base.replace(scenario={"path_loss": TABLE1_PATH_LOSS}, algo={"update": "async", "asynchrony": a},
                           run={**run, "method": "proposed"})
        _, tr = _run(cfg)
        ev = Evaluator(cfg)
        th = tr.thetas()
        r: dict[str, Any] = {"asynchrony": a, "no_rnd": ev(th)}
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


def _table2(base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
    rows = []
    run = {"iterations": its, "eval_every": its}
    for N in (5, 10, 15):
        r = {"n_links": N}
        for label, m in (("proposed", "proposed"), ("centralized_adam", "adam")):
            cfg = base.replace(scenario={"n_links": N}, run={**run, "method": m})
            r[label] = _seeds(cfg, seeds, label, {})[-1]["sum_rate"]
        r["paper_proposed"] = {5: 4.95, 10: 5.31, 15: 5.63}[N]
        r["paper_adam"] = {5: 5.12, 10: 5.35, 15: 5.71}[N]
        rows.append(r)
    hdr = ["N", "proposed", "centralized Adam", "paper proposed", "paper Adam"]
    body = [[str(r["n_links"]), f"{r['proposed']:.2f}", f"{r['centralized_adam']:.2f}",
             f"{r['paper_proposed']:.2f}", f"{r['paper_adam']:.2f}"] for r in rows]
    plots.table(png, hdr, body, "Table II: final sum-rate (bit/s/Hz)")
    return rows, [" | ".join(hdr)] + [" | ".join(b) for b in body]


def _asynchrony(axis: str, clock: str, base: ZOConfig, its: int, seeds: int, png: Path) -> Result:
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
    rows = []
    for update in updates:
        graph = {"graph": "random", "max_degree": 2} if update == "graph" else {"graph": "full"}
        for v in values:
            link = {"delay": v * (1e-3 if clock == "real" else 1), "drop_prob": 0.0} if axis == "delay" \
                else {"delay": 0.0, "drop_prob": v}
            run = {"iterations": its, "eval_every": its, "method": "proposed", "clock": clock,
                   **({"backend": "ray", "links_per_actor": base.scenario.n_links} if clock == "real" else {})}
            cfg = base.replace(algo={"update": update, **graph, **link}, run=run)
            last = _seeds(cfg, seeds, update, {axis: v})[-1]
            rows.append({"update": update, axis: v, "sum_rate": last["sum_rate"], "max_power": last["max_power"],
                         "dropped": last.get("dropped", 0.0)})
    unit = ("slots" if clock == "logical" else "ms") if axis == "delay" else "probability"
    plots.lines(png, rows, "update", axis, "sum_rate", f"sum-rate against d-message {axis} ({unit}, {clock} clock)")
    return rows, [f"{r['update']:6s} {axis} {r[axis]:g}: sum-rate {r['sum_rate']:.3f} (max power {r['max_power']:.3f})"
                  for r in rows]


RUNNERS = {
    "fig2": lambda *a: _fig2_3("fig2", *a), "fig3": lambda *a: _fig2_3("fig3", *a), "fig4": _fig4,
    "fig5": _fig5, "table1": _table1, "table2": _table2,
    "delay": lambda *a: _asynchrony("delay", "logical", *a), "loss": lambda *a: _asynchrony("loss", "logical", *a),
    "delay_real": lambda *a: _asynchrony("delay", "real", *a), "loss_real": lambda *a: _asynchrony("loss", "real", *a),
}
EXPERIMENTS = tuple(RUNNERS)
PAPER = ("fig2", "fig3", "fig4", "fig5", "table1", "table2")
"""Paper 2's figures and tables (the default of ``bsemu zo-sweep``)."""


def run_experiment(name: str, base: ZOConfig, scale: str, out: Path, seeds: int = 1,
                   iterations: int | None = None) -> tuple[Path, Path, str]:
    """Run one experiment (``iterations`` per run, default by ``scale``); returns (csv, png, a short text table)."""
    if name not in RUNNERS:
        raise ValueError(f"unknown experiment {name!r}; allowed: {EXPERIMENTS}")
    its = ITERATIONS[scale] if iterations is None else int(iterations)
    csv_path, png_path = out / f"zo_{name}.csv", out / f"zo_{name}.png"
    rows, text = RUNNERS[name](base, its, seeds, png_path)
    _write_csv(csv_path, rows)
    return csv_path, png_path, "\n".join(text)
