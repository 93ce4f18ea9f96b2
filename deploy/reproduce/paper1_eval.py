"""Paper 1's sum-rate figures from the trained policies: Figs. 10 / 12 (one realization: the iterative solvers'
sum-rate per iteration beside the one-shot policies), Figs. 11 / 13 (held-out averages), Fig. 14 (the Pmax
sweep with the policies' outputs scaled to Pmax) and Fig. 15 (the per-BS sum-power variant), each beside the
certified optimum (3 cells) or the certified bracket (7 cells).

The policies act as ``bsemu evaluate`` has them act (:func:`coordinator.trpo.evaluate.evaluate_policy`: the
mean action, clipped), the baselines are :mod:`radio.evaluation`'s, the held-out channels those of ``bsemu
evaluate`` for a seed-0 run (``default_rng(1)``), never seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordinator.trpo.config import scenario_of
from coordinator.trpo.evaluate import evaluate_policy
from deploy import plots
from deploy.reproduce.common import Figure, md_table
from deploy.rundir import write_csv
from radio.evaluation import classical_methods, run_methods
from radio.fp import fp
from radio.optimum import bracket
from radio.optimum import optimum as certified_optimum
from radio.rates import sum_rate
from radio.wmmse import wmmse

HELDOUT_SEED = 1
CLASSICAL = ("max_power", "random", "wmmse", "fp")
PMAX_DBM = (20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0)
"""Fig. 14: the paper's range, 20-50 dBm."""
PAPER = {
    "fig10": "the DRL policies beat every baseline on the realization (centralized > partial > full); FP and WMMSE "
             "rise monotonically over their iterations to a local optimum",
    "fig11": "centralized > partial > full > FP, WMMSE > random, max power (bars only; the text gives no values)",
    "fig12": "partial and full beat the baselines on the 7-cell realization",
    "fig13": "partial highest, 7 % above FP; full below partial but above FP, WMMSE, random and max power",
    "fig14": "the DRL policies match FP and WMMSE at low Pmax and beat WMMSE (matching FP) at high Pmax",
    "fig15": "centralized and partial TRPO beat FP, WMMSE and the uncoordinated schemes",
}


def _mbps(problem: Any) -> float:
    return problem.bandwidth_hz / 1e6


def _policies(outcomes: list[dict[str, Any]], group: str) -> dict[str, list[dict[str, Any]]]:
    """method -> its finished (not diverged) runs of ``group``, in seed order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for o in outcomes:
        if o["point"].group == group and o["theta"] is not None:
            out.setdefault(o["point"].method, []).append(o)
    return out


def _policy_rates(runs: list[dict[str, Any]], problem: Any) -> np.ndarray:
    """[seeds, n] sum-rates (bit/s/Hz) of each run's policy on ``problem``."""
    return np.array([sum_rate(problem.G, evaluate_policy(o["cfg"], o["theta"], problem, seed=HELDOUT_SEED),
                              problem.noise_w) for o in runs])


def _classical(problem: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return run_methods(problem, classical_methods(np.random.default_rng(HELDOUT_SEED)), list(names))


def _reference(problem: Any, optimum: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(lower [n], upper [n], label): the certified optimum (value, upper bound within 1e-4) or the bracket."""
    if optimum:
        r = certified_optimum(problem)
        return r.value, r.upper, "certified optimum"
    lo, up = bracket(problem)
    return lo, up, "certified bracket"


def held_out_average(name: str, title: str, problem: Any, policies: dict[str, list[dict[str, Any]]],
                     optimum: bool, out: Path, paper: str) -> tuple[Figure, dict[str, float]]:
    """Figs. 11, 13, 15: every method's mean sum-rate over ``problem``'s realizations (trained methods: mean over
    their seeds, min-max), beside the optimum (or bracket); ``name``.csv / .png; returns the figure and the
    reference's mean Mbps (``optimum`` or ``bracket_lower`` / ``bracket_upper``)."""
    w = _mbps(problem)
    lo, up, label = _reference(problem, optimum)
    top = float((lo if optimum else up).mean() * w)       # the certified value, or the bracket's upper end
    rows = []
    for method, runs in policies.items():
        sr = _policy_rates(runs, problem) * w
        m = sr.mean(axis=1)
        rows.append({"method": method, "seeds": len(runs), "mean_mbps": float(m.mean()), "min_mbps": float(m.min()),
                     "max_mbps": float(m.max()), "std_over_realizations_mbps": float(sr[0].std())})
    for method, r in _classical(problem, CLASSICAL).items():
        v = float(r.sum_rate.mean() * w)
        rows.append({"method": method, "seeds": 1, "mean_mbps": v, "min_mbps": v, "max_mbps": v,
                     "std_over_realizations_mbps": float(r.sum_rate.std() * w)})
    refs = {"optimum": float(lo.mean() * w)} if optimum else {"bracket_lower": float(lo.mean() * w),
                                                            "bracket_upper": top}
    for k, v in refs.items():
        rows.append({"method": k, "seeds": 1, "mean_mbps": v, "min_mbps": v, "max_mbps": v,
                     "std_over_realizations_mbps": float((lo if k != "bracket_upper" else up).std() * w)})
    for r in rows:
        r["ratio_to_optimum" if optimum else "ratio_to_upper_bound"] = r["mean_mbps"] / top
    write_csv(out / f"{name}.csv", rows)
    shown = [r for r in rows if r["method"] not in refs]
    plots.bars(out / f"{name}.png", [r["method"] for r in shown], [r["mean_mbps"] for r in shown],
               [r["min_mbps"] for r in shown], [r["max_mbps"] for r in shown],
               f"{title} ({problem.n} realizations, B = {problem.cells}, K = {problem.users_per_cell})",
               "mean sum-rate (Mbps)", {label if optimum else f"{label}, {k.split('_')[1]} end": v
                                        for k, v in refs.items()})
    ratio = "÷ optimum" if optimum else "÷ bracket upper"
    fig = Figure(name, title, md_table(
        ["method", "seeds", "mean sum-rate Mbps (min-max over seeds)", "std over realizations", ratio],
        [[r["method"], r["seeds"], f"{r['mean_mbps']:.2f}" + (f" ({r['min_mbps']:.2f}-{r['max_mbps']:.2f})"
                                                               if r["seeds"] > 1 else ""),
          f"{r['std_over_realizations_mbps']:.2f}", f"{r[next(k for k in r if k.startswith('ratio'))]:.4f}"]
         for r in rows]))
    fig.notes.append(f"Paper: {paper}.")
    fig.notes.append(_headroom(rows, policies, top, "the certified optimum" if optimum else "the bracket's upper end"))
    return fig, refs


def _headroom(rows: list[dict[str, Any]], policies: dict[str, Any], top: float, ref: str) -> str:
    """A sentence from the numbers: the best trained method and WMMSE against the reference, and how far any
    allocation can be above WMMSE on average (so how large a margin over it is possible at all)."""
    mean = {r["method"]: r["mean_mbps"] for r in rows}
    wm = mean["wmmse"]
    text = f"Ours: WMMSE reaches {wm / top:.3f} of {ref}, so no allocation can beat it by more than " \
           f"{top / wm - 1:.1%} on average in this model"
    if policies:
        best = max(policies, key=lambda m: mean[m])
        text += f"; the best trained method, {best}, reaches {mean[best] / top:.3f}"
        if mean[best] < wm:
            text += (" (below WMMSE, unlike the paper: these policies trained for the budget stated at the top, "
                     "and the certified reference shows how little room there is above WMMSE)")
    return text + "."


def one_realization(name: str, title: str, problem: Any, policies: dict[str, list[dict[str, Any]]],
                    optimum: bool, out: Path, paper: str) -> Figure:
    """Figs. 10, 12: on ``problem``'s first realization, WMMSE's and FP's sum-rate per iteration beside the
    policies (seed 0; one forward pass: flat), max power, random and the optimum / bracket."""
    one = problem.subset(slice(0, 1))
    w = _mbps(one)
    traces = {"wmmse": wmmse(one).trace[:, 0] * w, "fp": fp(one).trace[:, 0] * w}
    last = max(len(t) for t in traces.values()) - 1
    flat = {m: float(_policy_rates(runs[:1], one)[0, 0] * w) for m, runs in policies.items()}
    flat.update({m: float(r.sum_rate[0] * w) for m, r in _classical(one, ("max_power", "random")).items()})
    lo, up, label = _reference(one, optimum)
    flat.update({"optimum": float(lo[0] * w)} if optimum else {"bracket_lower": float(lo[0] * w),
                                                              "bracket_upper": float(up[0] * w)})
    rows = [{"method": m, "iteration": i, "sum_rate_mbps": float(v)} for m, t in traces.items()
            for i, v in enumerate(t)]
    rows += [{"method": m, "iteration": i, "sum_rate_mbps": v} for m, v in flat.items() for i in (0, last)]
    write_csv(out / f"{name}.csv", rows)
    plots.lines(out / f"{name}.png", rows, "method", "iteration", "sum_rate_mbps",
                f"{title} (B = {one.cells}, K = {one.users_per_cell})")
    finals = {**{m: float(t[-1]) for m, t in traces.items()}, **flat}
    top = finals.get("optimum", finals.get("bracket_upper"))
    fig = Figure(name, title, md_table(
        ["method", "sum-rate Mbps (solvers: after their last iteration)", "iterations", "÷ " + label.split()[-1]
         + ("" if optimum else " upper")],
        [[m, f"{v:.2f}", len(traces[m]) - 1 if m in traces else "one pass" if m in policies else "—",
          f"{v / top:.4f}"] for m, v in finals.items()]))
    fig.notes.append(f"Paper: {paper}.")
    return fig


def pmax_sweep(problem_of: Any, policies: dict[str, list[dict[str, Any]]], n: int, out: Path) -> Figure:
    """Fig. 14: mean sum-rate against Pmax (20-50 dBm) of the policies trained at 43 dBm (their power fractions
    scaled to the new Pmax, as the paper does), the baselines and the certified optimum, ``n`` realizations
    each (``problem_of(pmax_dbm, n)``)."""
    rows = []
    for p in PMAX_DBM:
        problem = problem_of(p, n)
        w = _mbps(problem)
        lo, _, _ = _reference(problem, True)
        opt = float(lo.mean() * w)
        for method, runs in policies.items():
            m = _policy_rates(runs, problem).mean(axis=1) * w
            rows.append({"pmax_dbm": p, "method": method, "mean_mbps": float(m.mean()), "min_mbps": float(m.min()),
                         "max_mbps": float(m.max()), "ratio_to_optimum": float(m.mean() / opt)})
        for method, r in _classical(problem, CLASSICAL).items():
            v = float(r.sum_rate.mean() * w)
            rows.append({"pmax_dbm": p, "method": method, "mean_mbps": v, "min_mbps": v, "max_mbps": v,
                         "ratio_to_optimum": v / opt})
        rows.append({"pmax_dbm": p, "method": "optimum", "mean_mbps": opt, "min_mbps": opt, "max_mbps": opt,
                     "ratio_to_optimum": 1.0})
    write_csv(out / "fig14.csv", rows)
    plots.lines(out / "fig14.png", rows, "method", "pmax_dbm", "mean_mbps",
                f"Fig. 14: mean sum-rate against Pmax ({n} realizations each, B = 3, K = 2)")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig = Figure("fig14", "Fig. 14: Pmax sweep (policies trained at 43 dBm, outputs scaled)", md_table(
        ["Pmax dBm", *methods],
        [[f"{p:g}", *[f"{r['mean_mbps']:.2f} ({r['ratio_to_optimum']:.3f})" for m in methods for r in rows
                      if r["pmax_dbm"] == p and r["method"] == m]] for p in PMAX_DBM]))
    fig.notes.append("Cells: mean Mbps (÷ the certified optimum at that Pmax); trained methods: mean over seeds.")
    fig.notes.append(f"Paper: {PAPER['fig14']}.")
    return fig


def figures(outcomes: list[dict[str, Any]], scale: Any, out: Path) -> tuple[list[Figure], dict[str, float]]:
    """Figs. 10-15; returns them and the 3-cell held-out optimum's mean Mbps (for Figs. 6-9's reference)."""
    p3, p7, ps = (_policies(outcomes, g) for g in ("3cell", "7cell", "sum_power"))
    cfg3 = next(o["cfg"] for o in outcomes if o["point"].group == "3cell")
    sc3 = scenario_of(cfg3)
    held3 = sc3.sample(scale.eval_slots, np.random.default_rng(HELDOUT_SEED))
    figs = [one_realization("fig10", "Fig. 10: sum-rate on one realization", held3, p3, True, out, PAPER["fig10"])]
    fig11, ref3 = held_out_average("fig11", "Fig. 11: held-out average", held3, p3, True, out, PAPER["fig11"])
    figs.append(fig11)
    cfg7 = next(o["cfg"] for o in outcomes if o["point"].group == "7cell")
    held7 = scenario_of(cfg7).sample(scale.seven_slots, np.random.default_rng(HELDOUT_SEED))
    figs.append(one_realization("fig12", "Fig. 12: sum-rate on one realization", held7, p7, False, out,
                                PAPER["fig12"]))
    fig13 = held_out_average("fig13", "Fig. 13: held-out average", held7, p7, False, out, PAPER["fig13"])[0]
    cfgs7 = {o["point"].method: o["cfg"] for o in outcomes if o["point"].group == "7cell"}
    settings = [f"{m} trpo.credit={c.trpo.credit} policy.power_levels={c.policy.power_levels}"
                for m, c in sorted(cfgs7.items())]
    fig13.notes.append(f"7-cell settings (README): {', '.join(settings)} (paper 1: common, continuous).")
    figs.append(fig13)
    trpo3 = {m: r for m, r in p3.items() if m.startswith("trpo_")}
    figs.append(pmax_sweep(lambda p, n: sc3.with_(p_max_dbm=p).sample(n, np.random.default_rng(HELDOUT_SEED)),
                           trpo3, scale.pmax_slots, out))
    cfgs = next(o["cfg"] for o in outcomes if o["point"].group == "sum_power")
    helds = scenario_of(cfgs).sample(scale.eval_slots, np.random.default_rng(HELDOUT_SEED))
    fig15, _ = held_out_average("fig15", "Fig. 15: per-BS sum-power limit of 43 dBm (policies trained with it)",
                                helds, ps, True, out, PAPER["fig15"])
    figs.append(fig15)
    return figs, ref3
