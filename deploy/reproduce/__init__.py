"""``bsemu reproduce paper1|paper2``: every figure and table of a paper as PNG + CSV and one Markdown report with
our numbers beside the paper's (:mod:`deploy.reproduce.report`).

Paper 1 (:mod:`.paper1`, :mod:`.paper1_eval`, :mod:`.execution`) trains the shipped configs with the TRPO / A2C
trainer, evaluates the policies beside the baselines and the certified optimum / bracket, sweeps Pmax, trains the
per-BS sum-power variant and runs the execution phase; paper 2 (:mod:`.paper2`) runs ``bsemu zo-sweep``'s own
experiments. The scales are :data:`deploy.reproduce.common.SCALES`.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAPERS = ("paper1", "paper2")
PAPER1_FILES = ("fig6", "fig7", "fig8", "fig9", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15", "table3",
                "table4")
PAPER2_FILES = ("zo_fig2", "zo_fig3", "zo_fig4", "zo_fig5", "zo_table1", "zo_table2")


def output_files(paper: str) -> list[str]:
    """Every file ``reproduce`` writes into its output folder for ``paper``."""
    stems = PAPER1_FILES if paper == "paper1" else PAPER2_FILES
    extra = ["zo_reference.csv"] if paper == "paper2" else []
    return [f"{s}.{ext}" for s in stems for ext in ("csv", "png")] + extra + ["report.md"]


Bar = Callable[[int, str], Any]
"""``bar(total, desc)`` -> an object with ``update()``, ``write(line)`` and ``close()`` (a tqdm bar)."""


def reproduce(paper: str, scale: str, out: Path, address: str | None = None, parallel: bool = False,
              bar: Bar | None = None) -> Path:
    """Run ``paper``'s reproduction at ``scale`` into ``out`` (checked by the caller); returns ``report.md``.
    ``parallel``: training runs as Ray tasks of the Ray this process has joined; ``address``: where the execution
    phase's actors go (None: the joined Ray, else an embedded one)."""
    from deploy.reproduce.common import SCALES
    from deploy.reproduce.report import RunInfo

    info = RunInfo(paper, scale, _dt.datetime.now(_dt.timezone.utc), os.getloadavg())
    info.command = f"bsemu reproduce {paper} --scale {scale} --out {out}" + (f" --address {address}" if address else "")
    if parallel:
        import ray

        cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive"))
        info.how = f"as Ray tasks on {cpus:g} CPUs, gathered as they finish"
    else:
        info.how = "one after another in this process (one torch / BLAS thread each)"
    out.mkdir(parents=True, exist_ok=True)
    t0 = _now()
    run = _paper1 if paper == "paper1" else _paper2
    return run(SCALES[scale], out, address, parallel, bar, info, t0)


def _say(line: str) -> None:
    print(f"bsemu reproduce: {line}", file=sys.stderr, flush=True)


def _now() -> float:
    return _dt.datetime.now().timestamp()


def _finish(info: Any, t0: float) -> None:
    info.seconds = _now() - t0
    info.load_end = os.getloadavg()


def _paper1(scale: Any, out: Path, address: str | None, parallel: bool, bar: Bar | None, info: Any,
            t0: float) -> Path:
    from deploy.reproduce import execution, paper1, paper1_eval, report

    pts = paper1.points(scale)
    info.runs = len(pts)
    _say(f"paper 1 at scale {scale.name}: {len(pts)} training runs, {info.how}")
    b = bar(len(pts), "train") if bar is not None else None
    try:
        outcomes = paper1.train_all(scale, parallel, None if b is None else b.update)
    finally:
        if b is not None:
            b.close()
    t1 = _now()
    _say("Figs. 10-15: held-out evaluation, the certified optimum / bracket, the Pmax sweep")
    eval_figs, ref3 = paper1_eval.figures(outcomes, scale, out)
    train_figs = paper1.training_figures(outcomes, out, ref3.get("optimum"))
    t2 = _now()
    _say(f"Tables III-IV: the execution phase ({scale.exec_slots} slots per run, Ray actors + ZeroMQ)")
    exec_figs = execution.tables(execution.run(outcomes, scale.exec_slots, address), out)
    _finish(info, t0)
    info.notes.append(f"phases: training {t1 - t0:.0f} s, evaluation and figures {t2 - t1:.0f} s, execution phase "
                      f"{_now() - t2:.0f} s")
    pre = report.paper1_preamble(ref3.get("optimum", float("nan")), paper1.budget_note(outcomes, scale))
    return report.write(out, info, train_figs + eval_figs + exec_figs, pre, report.PAPER1_MISSING)


def _paper2(scale: Any, out: Path, address: str | None, parallel: bool, bar: Bar | None, info: Any,
            t0: float) -> Path:
    from deploy.reproduce import paper2, report
    from deploy.sweeps.zo import ITERATIONS

    holder: dict[str, Any] = {}

    def start(n: int) -> None:
        info.runs = n
        _say(f"paper 2 at scale {scale.name}: {n} zeroth-order runs, {info.how}")
        if bar is not None:
            holder["bar"] = bar(n, "zo runs")

    try:
        figs, _ = paper2.run(scale, out, parallel, start, lambda: holder["bar"].update() if "bar" in holder else None)
    finally:
        if "bar" in holder:
            holder["bar"].close()
    _finish(info, t0)
    its = scale.zo_iterations or ITERATIONS[scale.zo_scale]
    pre = [f"Units: bit/s/Hz. Runs of {its} iterations (Fig. 4: the same channel samples, {its} x 100 / B "
           f"iterations; the sweep's paper scale runs 5000), {scale.zo_seeds} seed(s) per point. The certified "
           "optimum (N = 5) and bracket (N = 10, 15) are of the held-out channels "
           "of the seed-0 runs (`zo_reference.csv`): every slot's sum-rate is at most its optimum, so every mean "
           "below is at most the optimum's mean. The paper gives Figs. 2-5 as curves only; its Tables I-II are "
           "quoted beside ours."]
    return report.write(out, info, figs, pre)
