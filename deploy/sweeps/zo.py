"""Paper 2's experiments (Figs. 2-5, Tables I-II), each written as zo_<name>.csv and zo_<name>.png.

All runs are in-process and logical-time (deterministic); ``scale`` sets their length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordinator.messages import RunMessages
from coordinator.zo.config import ZOConfig
from coordinator.zo.links import Exchange
from coordinator.zo.train import Evaluator, make_trainer, train
from deploy import plots
from radio.seeding import ZoStream, rng_for

EXPERIMENTS = ("fig2", "fig3", "fig4", "fig5", "table1", "table2")
ITERATIONS = {"quick": 300, "paper": 5000}
TABLE1_PATH_LOSS = (1.0, 0.5, 2.0, 0.25, 4.0)


def _run(cfg: ZOConfig) -> tuple[list[dict[str, Any]], Any]:
    rows: list[dict[str, Any]] = []
    tr = make_trainer(cfg, RunMessages(), Exchange())
    train(cfg, tr, Evaluator(cfg), cfg.run.iterations, rows.append)
    return rows, tr


def _seeds(cfg: ZOConfig, seeds: int, label: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows averaged over seeds, tagged with ``label`` and ``extra`` columns."""
    per_seed = [_run(cfg.replace(run={"seed": cfg.run.seed + s}))[0] for s in range(seeds)]
    out = []
    for i, row in enumerate(per_seed[0]):
        r = {"method": label, **extra, "samples": row["samples"], "iteration": row["iteration"]}
        for key in ("sum_rate", "max_power", "messages", "scalars", "bytes"):
            r[key] = float(np.mean([p[i][key] for p in per_seed]))
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


def run_experiment(name: str, base: ZOConfig, scale: str, out: Path, seeds: int = 1,
                   iterations: int | None = None) -> tuple[Path, Path, str]:
    """Run one experiment (``iterations`` per run, default by ``scale``); returns (csv, png, a short text table)."""
    its = ITERATIONS[scale] if iterations is None else int(iterations)
    csv_path, png_path = out / f"zo_{name}.csv", out / f"zo_{name}.png"
    text: list[str] = []
    if name in ("fig2", "fig3"):
        key = (base, its, seeds)
        if key not in _cache:
            _cache[key] = _methods_rows(base, its, seeds)
        rows = _cache[key]
        _write_csv(csv_path, rows)
        if name == "fig2":
            plots.lines(png_path, rows, "method", "samples", "sum_rate", "Fig. 2: sum-rate vs channel samples (N = 5)")
        else:
            plots.lines(png_path, rows, "method", "samples", "bytes", "Fig. 3: bytes exchanged vs samples", logy=True)
        last: dict[str, dict[str, Any]] = {}
        for r in rows:
            last[r["method"]] = r
        text = [f"{m:30s} sum-rate {r['sum_rate']:.3f}  scalars {r['scalars']:.0f}  bytes {r['bytes']:.0f}"
                for m, r in last.items()]
    elif name == "fig4":
        rows = []
        samples = its * 100
        for B in (20, 50, 100, 200):
            n_it = max(1, samples // B)
            cfg = base.replace(algo={"b1": B // 2, "b2": B - B // 2},
                               run={"iterations": n_it, "eval_every": max(1, n_it // 15)})
            rows += _seeds(cfg, seeds, f"B = {B}", {"B": B})
        _write_csv(csv_path, rows)
        plots.lines(png_path, rows, "method", "samples", "sum_rate", "Fig. 4: batch size B (N = 5)")
        text = [f"B = {r['B']:4d}: final sum-rate {r['sum_rate']:.3f}" for r in rows
                if r["samples"] == max(x["samples"] for x in rows if x["B"] == r["B"])]
    elif name == "fig5":
        rows = []
        run = {"iterations": its, "eval_every": max(1, its // 15)}
        for a in (0.0, 10.0, 25.0, 50.0):
            cfg = base.replace(algo={"update": "async", "asynchrony": a}, run={**run, "method": "proposed"})
            rows += _seeds(cfg, seeds, f"proposed, async {a:g}%", {"asynchrony": a})
        rows += _seeds(base.replace(run={**run, "method": "adam"}), seeds, "centralized Adam", {"asynchrony": 0.0})
        _write_csv(csv_path, rows)
        plots.lines(png_path, rows, "method", "samples", "sum_rate", "Fig. 5: asynchrony levels (N = 5)")
        text = [f"{r['method']:28s} final {r['sum_rate']:.3f}" for r in rows
                if r["iteration"] == its]
    elif name == "table1":
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
        _write_csv(csv_path, rows)
        hdr = ["async.", "no rnd.", "rnd. 1", "rnd. 2", "rnd. 3", "rnd. 4"]
        body = [[f"{r['asynchrony']:g}%"] + [f"{r[k]:.2f}" for k in ("no_rnd", "rnd_1", "rnd_2", "rnd_3", "rnd_4")]
                for r in rows]
        plots.table(png_path, hdr, body, "Table I: own vs randomly reassigned policies")
        text = [" | ".join(hdr)] + [" | ".join(b) for b in body]
    elif name == "table2":
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
        _write_csv(csv_path, rows)
        hdr = ["N", "proposed", "centralized Adam", "paper proposed", "paper Adam"]
        body = [[str(r["n_links"]), f"{r['proposed']:.2f}", f"{r['centralized_adam']:.2f}",
                 f"{r['paper_proposed']:.2f}", f"{r['paper_adam']:.2f}"] for r in rows]
        plots.table(png_path, hdr, body, "Table II: final sum-rate (bit/s/Hz)")
        text = [" | ".join(hdr)] + [" | ".join(b) for b in body]
    else:
        raise ValueError(f"unknown experiment {name!r}; allowed: {EXPERIMENTS}")
    return csv_path, png_path, "\n".join(text)
