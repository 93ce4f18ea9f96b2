"""Paper 2 (zeroth-order decentralized training): Figs. 2-5 and Tables I-II through ``bsemu zo-sweep``'s own
experiments (:mod:`deploy.sweeps.zo`: ``plan`` / ``execute``, which write ``zo_<name>.csv`` / ``.png``), each
beside the certified optimum (N = 5) or the certified bracket (N = 10, 15) of the held-out channels the sweep's
runs are evaluated on, and beside the paper's numbers."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.zo.config import ZOConfig, scenario, validate
from coordinator.zo.train import Evaluator
from deploy.config import load_config
from deploy.reproduce.common import Figure, Scale, md_table
from deploy.rundir import write_csv
from deploy.sweeps.zo import PAPER, TABLE1_PATH_LOSS, distinct_runs, execute, plan
from radio.optimum import MAX_LINKS, bracket, optimum
from radio.problem import Problem

PAPER_TABLE1 = {0.0: (4.34, 1.81, 1.12, 2.22, 2.05), 10.0: (4.63, 3.67, 2.29, 2.04, 2.86),
                25.0: (3.96, 3.71, 2.98, 3.17, 3.47), 50.0: (3.82, 2.06, 1.87, 3.26, 3.21)}
"""Paper 2 Table I: sum-rate (bit/s/Hz) with each link's own policy and four random reassignments, N = 5."""
PAPER_TEXT = {
    "fig2": "the proposed method reaches the benchmarks' (centralized Adam, FL) sum-rate",
    "fig3": "with a large reduction in communication overhead",
    "fig4": "smaller batch sizes are preferable (more updates for the same samples)",
    "fig5": "more asynchrony lowers the sum-rate, with reasonable robustness",
    "table1": "each link's own policy beats random reassignments (the policies learned their links' path losses)",
    "table2": "the proposed method trains well for larger networks too (4.95 / 5.31 / 5.63 against Adam's "
              "5.12 / 5.35 / 5.71)",
}
CEILING = ("benchmarks/zo_ceiling.py trains such local-input policy families jointly with exact gradients and "
           "measured 4.55-4.87 bit/s/Hz for N = 5, every family below the paper's 4.95, so the paper's Table II "
           "is out of reach of these inputs under Sec. IV's model; the certified optimum needs every link's full "
           "CSI, which no local policy has")


def _rows(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out.append(row)
    return out


def reference(cfg: Any) -> dict[str, float]:
    """The held-out channels of ``cfg``'s runs (``Evaluator``): mean max-power sum-rate, and the mean certified
    optimum (N <= 8) or bracket (larger), bit/s/Hz. Every slot's sum-rate is at most that slot's optimum, so a
    policy's mean is at most the optimum's mean."""
    ev = Evaluator(cfg)
    sc = scenario(cfg)
    problem = Problem(ev.G.reshape(-1, sc.L, sc.L), sc.noise_w, np.full(sc.L, sc.p_max_w), sc.bandwidth_hz,
                      sc.cells, sc.K)
    out = {"n_links": sc.L, "realizations": problem.n, "max_power": float(ev.max_power)}
    if sc.L <= MAX_LINKS:
        out["optimum"] = float(optimum(problem).value.mean())
    else:
        lo, up = bracket(problem)
        out["bracket_lower"], out["bracket_upper"] = float(lo.mean()), float(up.mean())
    return out


def _ref_text(ref: dict[str, float]) -> str:
    if "optimum" in ref:
        return f"certified optimum {ref['optimum']:.3f}"
    return f"certified bracket [{ref['bracket_lower']:.3f}, {ref['bracket_upper']:.3f}]"


def _top(ref: dict[str, float]) -> float:
    return ref.get("optimum", ref.get("bracket_upper", float("nan")))


def _final(rows: list[dict[str, Any]], key: str = "method") -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for r in rows:
        last[str(r[key])] = r
    return last


def run(scale: Scale, out: Path, parallel: bool, on_start: Callable[[int], None] | None = None,
        on_run: Callable[[], None] | None = None) -> tuple[list[Figure], int]:
    """The sweep's paper experiments at ``scale`` into ``out`` (``on_start(runs)`` before they start, ``on_run()``
    after each); their report figures and the number of runs."""
    base = load_config(ZOConfig, None, list(scale.zo_overrides))
    validate(base)
    plans = plan(list(PAPER), base, scale.zo_scale, out, scale.zo_seeds, scale.zo_iterations)
    n_runs = len(distinct_runs(plans))
    if on_start is not None:
        on_start(n_runs)
    rows = {name: _rows(csv_path) for name, csv_path, _, _ in execute(plans, out, parallel, on_run)}
    refs = {"N = 5": reference(base),
            "N = 5, Table I path losses": reference(base.replace(scenario={"path_loss": TABLE1_PATH_LOSS})),
            **{f"N = {n}": reference(base.replace(scenario={"n_links": n})) for n in (10, 15)}}
    write_csv(out / "zo_reference.csv", [{"scenario": k, **v} for k, v in refs.items()])
    return _figures(rows, refs), n_runs


def _figures(rows: dict[str, list[dict[str, Any]]], refs: dict[str, dict[str, float]]) -> list[Figure]:
    r5 = refs["N = 5"]
    top = _top(r5)
    figs = []
    last = _final(rows["fig2"])
    figs.append(Figure("zo_fig2", "Fig. 2: sum-rate against channel samples (N = 5)", md_table(
        ["method", "samples", "final sum-rate bit/s/Hz", "÷ optimum", "scalars exchanged", "bytes exchanged"],
        [[m, f"{r['samples']:.0f}", f"{r['sum_rate']:.3f}", f"{r['sum_rate'] / top:.3f}", f"{r['scalars']:.0f}",
          f"{r['bytes']:.0f}"] for m, r in last.items()]
        + [["max power", "—", f"{r5['max_power']:.3f}", f"{r5['max_power'] / top:.3f}", "0", "0"],
           ["optimum (certified, full CSI)", "—", f"{top:.3f}", "1.000", "—", "—"]]),
        [f"Paper: {PAPER_TEXT['fig2']}, {PAPER_TEXT['fig3']} (Fig. 3: zo_fig3.png / .csv, the bytes columns "
         "here)."]))
    figs.append(Figure("zo_fig3", "Fig. 3: communication overhead (N = 5)", notes=[
        "The scalars / bytes columns of Fig. 2's table; zo_fig3.csv has them per sample count."]))
    last = _final(rows["fig4"])
    figs.append(Figure("zo_fig4", "Fig. 4: batch size B (N = 5)", md_table(
        ["B", "final sum-rate bit/s/Hz", "÷ optimum"],
        [[m, f"{r['sum_rate']:.3f}", f"{r['sum_rate'] / top:.3f}"] for m, r in last.items()]
        + [["optimum (certified)", f"{top:.3f}", "1.000"]]), [f"Paper: {PAPER_TEXT['fig4']}."]))
    last = _final(rows["fig5"])
    figs.append(Figure("zo_fig5", "Fig. 5: asynchrony (N = 5)", md_table(
        ["method", "final sum-rate bit/s/Hz", "÷ optimum"],
        [[m, f"{r['sum_rate']:.3f}", f"{r['sum_rate'] / top:.3f}"] for m, r in last.items()]
        + [["optimum (certified)", f"{top:.3f}", "1.000"]]), [f"Paper: {PAPER_TEXT['fig5']}."]))
    r1 = refs["N = 5, Table I path losses"]
    body = []
    for r in rows["table1"]:
        paper = PAPER_TABLE1.get(float(r["asynchrony"]))
        ours = [r[k] for k in ("no_rnd", "rnd_1", "rnd_2", "rnd_3", "rnd_4")]
        body.append([f"{r['asynchrony']:g} %", *[f"{v:.2f}" for v in ours],
                     " / ".join(f"{v:.2f}" for v in paper) if paper else "—", f"{_top(r1):.2f}"])
    figs.append(Figure("zo_table1", "Table I: own vs randomly reassigned policies (N = 5, path losses "
                       "1, 0.5, 2, 0.25, 4)", md_table(
                           ["async.", "no rnd.", "rnd. 1", "rnd. 2", "rnd. 3", "rnd. 4", "paper (no rnd. / rnd. 1-4)",
                            "certified optimum"], body),
                       [f"Paper: {PAPER_TEXT['table1']}.", _own_vs_rnd(rows["table1"])]))
    body = []
    for r in rows["table2"]:
        ref = refs[f"N = {int(r['n_links'])}"]
        body.append([f"{r['n_links']:.0f}", f"{r['proposed']:.2f}", f"{r['centralized_adam']:.2f}",
                     f"{r['paper_proposed']:.2f}", f"{r['paper_adam']:.2f}", f"{ref['max_power']:.2f}",
                     _ref_text(ref)])
    figs.append(Figure("zo_table2", "Table II: final sum-rate against network size", md_table(
        ["N", "proposed", "centralized Adam", "paper proposed", "paper Adam", "max power", "optimum / bracket"],
        body), [f"Paper: {PAPER_TEXT['table2']}.", *_below_paper(rows["table2"]),
                "These runs use the sweep's base config (the paper's Sec. IV settings); the tuned local policy of "
                "deploy/configs/zo_table2.yaml is measured by benchmarks/zo.py (see the README).",
                "The bracket of N = 10, 15 is certified but loose above (its upper end drops all inter-link "
                "interference); its lower end is the best of max power, WMMSE and a gradient ascent."]))
    return figs


def _own_vs_rnd(rows: list[dict[str, Any]]) -> str:
    """A sentence from the numbers: at which asynchrony levels each link's own policy beats every reassignment."""
    won = [f"{r['asynchrony']:g} %" for r in rows
           if r["no_rnd"] > max(r[k] for k in ("rnd_1", "rnd_2", "rnd_3", "rnd_4"))]
    return (f"Ours: the own policies beat all four reassignments at {len(won)} of {len(rows)} asynchrony levels"
            + (f" ({', '.join(won)})" if won else "") + "; where they do not, the policies have not yet learned "
            "their links' path losses in this run's budget.")


def _below_paper(rows: list[dict[str, Any]]) -> list[str]:
    """A sentence where our proposed method is below the paper's, and why."""
    low = [f"{r['n_links']:.0f}" for r in rows if r["proposed"] < r["paper_proposed"]]
    return [f"Ours are below the paper's at N = {', '.join(low)}: the run length of this scale, and {CEILING}."] \
        if low else []
