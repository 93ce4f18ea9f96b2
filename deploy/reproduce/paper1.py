"""Paper 1 (TRPO downlink power allocation): its training runs and Figs. 6-9, then (through
:mod:`deploy.reproduce.paper1_eval` and :mod:`deploy.reproduce.execution`) Figs. 10-15 and Tables III-IV.

Every training run is a point: a shipped config (``deploy/configs``) with its seed and budget, trained by the
TRPO / A2C :class:`~coordinator.trpo.trainer.Trainer` on the in-process backend with one torch thread (the
numbers of the ray backend, bit for bit), keeping its metrics rows and its final policy in memory. Points run
one after another, or as one-CPU Ray tasks (:func:`deploy.reproduce.common.run_points`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coordinator.trpo.backend import make_backend
from coordinator.trpo.trainer import Diverged, Trainer
from deploy import plots
from deploy.api import load_config
from deploy.reproduce.common import Figure, Scale, md_table, run_points
from deploy.rundir import write_csv

SCHEMES_3 = {"trpo_centralized": "3cell_centralized", "trpo_partial": "3cell_partial", "trpo_full": "3cell_full",
             "a2c_centralized": "3cell_a2c"}
"""Figs. 6-9: the trained method's name -> its shipped config."""
SCHEMES_7 = {"trpo_partial": "7cell_partial", "trpo_full": "7cell_full"}
SUM_POWER_DBM = 43.0
"""Fig. 15: the per-BS sum-power limit (the paper's 43 dBm), with the per-user limit of Table I kept."""
FIGS_6_9 = {"trpo_centralized": ("fig6", "Fig. 6: centralized TRPO training"),
            "trpo_partial": ("fig7", "Fig. 7: partially decentralized (round-robin) TRPO training"),
            "trpo_full": ("fig8", "Fig. 8: fully decentralized TRPO training"),
            "a2c_centralized": ("fig9", "Fig. 9: centralized A2C training")}
PAPER_TRAINING = {
    "trpo_centralized": "starts at ~40 Mbps and converges to a per-episode reward of 122 Mbps, less than 1 Mbps "
                        "apart over 10 initializations",
    "trpo_partial": "a final (smoothed) reward of around 120 Mbps, more spread than centralized",
    "trpo_full": "a final (smoothed) reward of around 120 Mbps, the greatest spread of the three",
    "a2c_centralized": "does not converge: the average reward fluctuates between about 65 and 82 Mbps "
                       "(step 7e-4)",
}
EWMA_W = 0.96


@dataclass(frozen=True)
class Point:
    """One training run: ``group`` (3cell, 7cell, sum_power), the method's name, its shipped config, seed,
    iterations and extra keys (as ``--set``)."""

    group: str
    method: str
    config: str
    seed: int
    iterations: int
    overrides: tuple[tuple[str, Any], ...] = ()

    def cfg(self) -> Any:
        return load_config(self.config, **dict(self.overrides), **{
            "run.seed": self.seed, "run.iterations": self.iterations, "run.backend": "inproc", "run.threads": 1,
            "run.eval_slots": 0})


def train_point(p: Point) -> dict[str, Any]:
    """Train one point; its metrics rows (iteration, env steps so far, reward Mbps), final policy theta and
    config, and (a run whose numbers became NaN / inf) the iteration and quantity it diverged at."""
    cfg = p.cfg()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, make_backend(cfg))
    rows, steps, diverged = [], 0, None
    for _ in range(cfg.run.iterations):
        try:
            m = trainer.step()
        except Diverged as exc:
            diverged = str(exc)
            break
        steps += int(m["env_steps"])
        rows.append({"iteration": int(m["iteration"]), "env_steps": steps, "reward_mbps": float(m["reward_mbps"])})
    trainer.backend.close()
    return {"point": p, "cfg": cfg, "rows": rows, "diverged": diverged, "seconds": time.perf_counter() - t0,
            "theta": None if diverged else trainer.theta.numpy().copy()}


def iterations(config: str, scale: Scale) -> int:
    """The shipped config's iterations times the scale's fraction (at least ``scale.min_iterations``)."""
    return max(scale.min_iterations, round(load_config(config).run.iterations * scale.fraction))


def points(scale: Scale) -> list[Point]:
    """Every training run of paper 1 at ``scale``: the four 3-cell methods x seeds (Figs. 6-11, 14, Tables
    III-IV), the two 7-cell schemes (Figs. 12-13) and the three 3-cell schemes under the per-BS sum-power limit
    (Fig. 15), one seed each."""
    over = tuple(scale.overrides.items())
    out = [Point("3cell", m, c, s, iterations(c, scale), over) for m, c in SCHEMES_3.items()
           for s in range(scale.seeds)]
    out += [Point("7cell", m, c, 0, iterations(c, scale), over) for m, c in SCHEMES_7.items()]
    out += [Point("sum_power", m, c, 0, iterations(c, scale), over + (("scenario.bs_sum_power_dbm", SUM_POWER_DBM),))
            for m, c in SCHEMES_3.items() if m.startswith("trpo_")]
    return out


def train_all(scale: Scale, parallel: bool, on_done: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    return run_points(train_point, points(scale), parallel, on_done)


# ---------------------------------------------------------------------------------------------- Figs. 6-9
def _ewma_runs(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps [T], raw rewards [seeds, T], their EWMAs), cut to the shortest run (a diverged one stops)."""
    T = min(len(r["rows"]) for r in runs)
    x = np.array([row["env_steps"] for row in runs[0]["rows"][:T]], dtype=np.float64)
    raw = np.array([[row["reward_mbps"] for row in r["rows"][:T]] for r in runs], dtype=np.float64)
    raw = raw.reshape(len(runs), T)
    return x, raw, np.array([plots.ewma(y, EWMA_W) for y in raw]).reshape(raw.shape)


def training_figures(outcomes: list[dict[str, Any]], out: Path, optimum_mbps: float | None) -> list[Figure]:
    """Figs. 6-9: each 3-cell method's reward per iteration over its seeds (mean and min-max band, raw and
    EWMA w = 0.96), beside the certified optimum's held-out mean."""
    figs = []
    for method, (name, title) in FIGS_6_9.items():
        runs = [o for o in outcomes if o["point"].group == "3cell" and o["point"].method == method]
        x, raw, sm = _ewma_runs(runs)
        rows = []
        for t in range(x.size):
            r: dict[str, Any] = {"iteration": t, "env_steps": int(x[t])}
            r.update({f"seed{o['point'].seed}": float(raw[i, t]) for i, o in enumerate(runs)})
            r.update(mean=float(raw[:, t].mean()), min=float(raw[:, t].min()), max=float(raw[:, t].max()),
                     ewma_mean=float(sm[:, t].mean()), ewma_min=float(sm[:, t].min()), ewma_max=float(sm[:, t].max()))
            rows.append(r)
        write_csv(out / f"{name}.csv", rows)
        refs = {} if optimum_mbps is None else {"certified optimum (held-out mean)": optimum_mbps}
        plots.seed_bands(out / f"{name}.png", x, {"raw": raw, f"EWMA w = {EWMA_W}": sm},
                         f"{title}, {len(runs)} initializations, B = 3, K = 2", "environment steps",
                         "reward (Mbps)", refs)
        fig = Figure(name, title)
        if x.size:
            final, first = sm[:, -1], raw[:, 0]
            fig.table = md_table(
                ["method", "seeds", "iterations", "env steps", "first reward (mean)", "final EWMA reward, mean "
                 "(min-max)", "certified optimum (held-out mean)", "paper"],
                [[method, len(runs), x.size, int(x[-1]), f"{first.mean():.2f}",
                  f"{final.mean():.2f} ({final.min():.2f}-{final.max():.2f})",
                  "—" if optimum_mbps is None else f"{optimum_mbps:.2f}", PAPER_TRAINING[method]]])
        diverged = [f"seed {o['point'].seed}: {o['diverged']}" for o in runs if o["diverged"]]
        if diverged:
            fig.notes.append("Diverged (stopped there, curves cut to the shortest run, not evaluated): "
                             + "; ".join(diverged) + ".")
        figs.append(fig)
    return figs


def budget_note(outcomes: list[dict[str, Any]], scale: Scale) -> str:
    """One sentence on the training budgets against the paper's 4 x 10^6 steps per scheme."""
    parts = []
    for m in SCHEMES_3:
        o = next(o for o in outcomes if o["point"].group == "3cell" and o["point"].method == m)
        steps = o["rows"][-1]["env_steps"] if o["rows"] else 0
        parts.append(f"{m} {o['point'].iterations} iterations ({steps:,} environment steps)")
    return (f"Training budget per run at scale {scale.name}: " + ", ".join(parts) + "; the paper trains every "
            "scheme for 4 x 10^6 steps, the shipped configs for 2.6-4 x 10^6"
            + ("" if scale.fraction >= 1 else f" (this scale runs {scale.fraction:.0%} of them, so the curves "
               "stop early: compare shapes and the ratio to the optimum, not final values)") + ".")
