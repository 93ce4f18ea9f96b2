"""What both papers' reproductions share: the scales, the points (one training run each) run one after another
in this process or as one-CPU Ray tasks gathered as they finish, CSV writing, and the figures' records that the
report is made of."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploy.sweeps.tasks import ray_tasks
from radio.evaluation import md_table  # noqa: F401  (the reproductions' tables)


@dataclass(frozen=True)
class Scale:
    """How much of each experiment runs.

    seeds          random initializations per 3-cell scheme (Figs. 6-9)
    fraction       share of the shipped configs' iterations per training run (1.0: the configs' budgets)
    eval_slots     held-out realizations of Figs. 11, 13 and 15
    seven_slots    held-out realizations of Fig. 13 (7 cells: the bracket costs ~30 ms each)
    pmax_slots     realizations per Pmax of Fig. 14
    exec_slots     slots of every execution run (Tables III-IV)
    overrides      --set keys of every paper-1 training run (smaller networks for the CI-size run)
    zo_scale       paper 2: the sweep's --scale (its iterations per run)
    zo_seeds       paper 2: seeds averaged per point
    zo_iterations  paper 2: iterations per run, overriding zo_scale
    zo_overrides   paper 2: --set keys of the sweep's base config
    """

    name: str
    seeds: int
    fraction: float
    eval_slots: int
    seven_slots: int
    pmax_slots: int
    exec_slots: int
    min_iterations: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)
    zo_scale: str = "quick"
    zo_seeds: int = 1
    zo_iterations: int | None = None
    zo_overrides: tuple[str, ...] = ()


SCALES = {
    # CI size (hidden): tiny networks and batches, 2 iterations a run; exercises every path in seconds
    "tiny": Scale("tiny", seeds=2, fraction=0.0, eval_slots=20, seven_slots=4, pmax_slots=10, exec_slots=40,
                  overrides={"policy.hidden": 16, "policy.layers": 1, "trpo.episodes": 32, "trpo.value_epochs": 1,
                             "trpo.fvp_stride": 1, "trpo.value_batches": 1},
                  zo_iterations=3, zo_overrides=("algo.b1=5", "algo.b2=5", "run.eval_sequences=2",
                                                 "run.eval_slots=4")),
    # minutes: the shipped networks (Table II), 3 % of the shipped budgets, 3 seeds
    "quick": Scale("quick", seeds=3, fraction=0.03, eval_slots=1000, seven_slots=200, pmax_slots=200,
                   exec_slots=300),
    # hours: the shipped configs' budgets, the paper's 10 initializations and 1000 realizations
    "paper": Scale("paper", seeds=10, fraction=1.0, eval_slots=1000, seven_slots=1000, pmax_slots=1000,
                   exec_slots=1000, zo_scale="paper", zo_seeds=3),
}
PUBLIC_SCALES = ("quick", "paper")


@dataclass
class Figure:
    """One figure or table of the report: its files and what the report says about it."""

    name: str                       # file stem: <name>.csv, <name>.png
    title: str
    table: str = ""                 # Markdown table of our numbers (beside the paper's where it gives them)
    notes: list[str] = field(default_factory=list)   # sentences: what the paper says, where ours differ and why


def load() -> str:
    """The 1-minute load average now, for every figure's context."""
    return f"{os.getloadavg()[0]:.2f}"


def run_points(fn: Callable[[Any], Any], items: Sequence[Any], parallel: bool,
               on_done: Callable[[], None] | None = None) -> list[Any]:
    """``fn(item)`` for every item, outcomes in the items' order: one after another in this process, or
    (``parallel``) as Ray tasks of the Ray this process has joined (one CPU each, spread over the nodes, the
    driver's one-thread BLAS settings), all submitted at once and gathered as they finish. ``fn`` is a
    module-level function (a task imports it by name) whose outcome depends on its item only, so the outcomes
    are the same either way. ``on_done`` is called after each."""
    if not parallel:
        out = []
        for item in items:
            out.append(fn(item))
            if on_done is not None:
                on_done()
        return out
    got = {}
    for i, outcome in ray_tasks(fn, items):
        got[i] = outcome
        if on_done is not None:
            on_done()
    return [got[i] for i in range(len(items))]
