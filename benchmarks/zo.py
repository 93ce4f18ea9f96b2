"""Zeroth-order (paper 2) benchmarks, printed side by side in one run:

1. seconds per iteration, inproc vs ray backend (goal: ray <= 1.5x inproc), one link per actor and
   all N links in one actor (``run.links_per_actor``);
2. final sum-rate for N = 5/10/15 beside our centralized Adam and paper 2's Table II;
3. bytes exchanged per iteration: proposed (full / graph) vs FL vs centralized.

    python benchmarks/zo.py [--zo-iterations K] [--adam-iterations K] [--links 5,10,15] [--skip-ray] [--speed-only]

Section 2 first prints reference points on the same held-out channels (max power and WMMSE from
full power, both per-slot centralized solutions of the sum-rate), then each method's figure with
its budget in channel samples (iterations x B) and the samples the proposed method needed to reach
0.98 x our Adam and the paper's figure (Fig. 2's x-axis).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from coordinator.zo.config import ZOConfig  # noqa: E402
from coordinator.zo.links import Exchange  # noqa: E402
from coordinator.zo.train import Evaluator, make_trainer, train  # noqa: E402
from protocol.log import MessageLog  # noqa: E402

PAPER = {5: (4.95, 5.12), 10: (5.31, 5.35), 15: (5.63, 5.71)}
TABLE2_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "configs" / "zo_table2.yaml"


def curve(cfg: ZOConfig) -> tuple[list[dict], float]:
    """Metric rows of one run (evaluated ``eval_every``) and its seconds."""
    rows: list[dict] = []
    tr = make_trainer(cfg, MessageLog(None), Exchange())
    t = time.perf_counter()
    train(cfg, tr, Evaluator(cfg), cfg.run.iterations, on_row=rows.append)
    return rows, time.perf_counter() - t


def first_samples(rows: list[dict], level: float) -> str:
    """Channel samples (iterations x B) of the first evaluation at or above ``level``."""
    hit = [r["samples"] for r in rows if r["sum_rate"] >= level]
    return f"{hit[0]:,}" if hit else "-"


def references(cfg: ZOConfig) -> tuple[float, float, float]:
    """(max power, WMMSE, direct-gain threshold) mean sum-rate on the evaluator's held-out channels.
    The threshold policy p_i = p_max [G_ii > tau] has its tau fitted on 20000 other slots."""
    from coordinator.zo import config as zc
    from coordinator.zo.air import best_direct_threshold, threshold_sum_rate
    from radio.problem import Problem
    from radio.seeding import ZoStream, rng_for
    from radio.wmmse import wmmse

    ev = Evaluator(cfg)
    G = ev.G.reshape(-1, *ev.G.shape[-2:])
    s2, pm = cfg.scenario.noise_w, cfg.scenario.p_max_w
    fit = zc.scenario(cfg).sample(20000, rng_for(cfg.run.seed, ZoStream.EVAL, 1)).G
    thr = threshold_sum_rate(G, s2, pm, best_direct_threshold(fit, s2, pm))
    return ev.max_power, float(wmmse(Problem(G, s2, pm)).value.mean()), thr


PAPER_POLICY = {"hidden": (5,), "inputs": "paper", "features": ("rx", "caused", "direct", "prev"), "caused": "each",
                "input_norm": False, "logit_bound": 0.0, "out_bias": 0.0}
# Adam's learning rate on that MLP (N = 10, 0.2M samples: 0.01 -> 0.0005: 5.19, 0.03 -> 0.001: 5.22, 0.1 -> 0.003:
# 4.54 with dead links; 0.01 constant for 0.06M samples: 5.07)
MLP_ADAM = {"adam_lr": 0.03, "adam_lr_end": 0.001}


def table2(args: argparse.Namespace) -> None:
    """Final sum-rate for each N: proposed (sync, fully connected) and centralized Adam, on the config's
    policy and (``--adam-mlp-iterations`` > 0) on the paper's MLP policy (all of Sec. IV's inputs)."""
    from deploy.config import load_config

    base = load_config(ZOConfig, args.config)
    zo_its = args.zo_iterations or base.run.iterations
    B = base.algo.b1 + base.algo.b2
    pol = base.policy
    print(f"\n== final sum-rate (bit/s/Hz), settings {Path(args.config).name}: hidden {pol.hidden}, inputs "
          f"{pol.inputs} {'+'.join(pol.features)} (caused: {pol.caused}){' normalised' if pol.input_norm else ''}, "
          f"output bias "
          f"{pol.out_bias}, mu {base.algo.mu}, gamma0 {base.algo.gamma0}, gamma~ {base.algo.gamma_tilde}, B = {B}, "
          f"layer scale {base.algo.layer_scale or 'none'} ==")
    lr = f"lr {base.baseline.adam_lr}" + (f" -> {base.baseline.adam_lr_end} (geometric)" if base.baseline.adam_lr_end
                                           else " constant")
    print(f"budget: proposed {zo_its} it x B {B} = {zo_its * B / 1e6:.2f}M samples; Adam (same policy) "
          f"{args.adam_iterations} it x B {B} = {args.adam_iterations * B / 1e6:.2f}M samples, {lr}; Adam MLP (paper "
          f"policy: hidden 5, all inputs raw) {args.adam_mlp_iterations} it = "
          f"{args.adam_mlp_iterations * B / 1e6:.2f}M samples, lr {MLP_ADAM['adam_lr']} -> {MLP_ADAM['adam_lr_end']} "
          f"(geometric); eval {base.run.eval_sequences} x {base.run.eval_slots} slots")
    print("references on the same channels: max power; WMMSE (full CSI, per slot, centralized); thresh = "
          "p_max [G_ii > tau], tau fitted (each link sees only its direct gain)")
    print(f"{'N':>3} | {'max pow':>7} | {'WMMSE':>6} | {'thresh':>6} | {'proposed':>8} | {'Adam same':>9} | "
          f"{'Adam MLP':>8} | {'ratio':>5} | {'paper prop/Adam':>15} | {'samples to 0.98xAdam':>20} | "
          f"{'to paper':>8} | s prop / Adam / MLP")
    for N in (int(x) for x in args.links.split(",")):
        cfg = base.replace(scenario={"n_links": N}, run={"iterations": zo_its, "eval_every": max(zo_its // 20, 1)})
        mp, wm, th = references(cfg)
        rp, sp = curve(cfg)
        ra, sa = curve(cfg.replace(run={"method": "adam", "iterations": args.adam_iterations,
                                        "eval_every": args.adam_iterations}))
        mlp, sm = float("nan"), 0.0
        if args.adam_mlp_iterations > 0:
            rm, sm = curve(cfg.replace(run={"method": "adam", "iterations": args.adam_mlp_iterations,
                                            "eval_every": args.adam_mlp_iterations}, policy=PAPER_POLICY,
                                       algo={"layer_scale": ()}, baseline=MLP_ADAM))
            mlp = rm[-1]["sum_rate"]
        prop, adam = rp[-1]["sum_rate"], ra[-1]["sum_rate"]
        best = max(adam, mlp) if mlp == mlp else adam
        paper = PAPER.get(N, (float("nan"), float("nan")))
        print(f"{N:>3} | {mp:7.3f} | {wm:6.3f} | {th:6.3f} | {prop:8.3f} | {adam:9.3f} | {mlp:8.3f} | "
              f"{prop / best:5.3f} | {paper[0]:6.2f} / {paper[1]:6.2f} | {first_samples(rp, 0.98 * best):>20} | "
              f"{first_samples(rp, paper[0]):>8} | {sp:.0f} / {sa:.0f} / {sm:.0f} | load {os.getloadavg()[0]:.1f}",
              flush=True)
    print("ratio = proposed / the better of our two Adam runs")


def timed(cfg: ZOConfig, links=None, log=None, ex=None):
    log = log or MessageLog(None)
    ex = ex or Exchange()
    tr = make_trainer(cfg, log, ex, links)
    ev = Evaluator(cfg)
    t = time.perf_counter()
    row = train(cfg, tr, ev, cfg.run.iterations)
    return (time.perf_counter() - t) / cfg.run.iterations, row, ex


def speed(args: argparse.Namespace) -> None:
    """Section 1: ms per iteration, inproc vs ray with one link per actor (the default) and with all
    links in one actor (run.links_per_actor = N); interleaved repeats, medians, load average."""
    print("== seconds per iteration (N = 5, B = 100, sync, logical time) ==")
    cfg = ZOConfig().replace(run={"iterations": args.speed_iterations, "eval_every": 10**9,
                                  "eval_sequences": 2, "eval_slots": 2})
    N = cfg.scenario.n_links
    variants = [] if args.skip_ray else [1, N]
    times: dict[str, list[float]] = {"inproc": [], **{f"ray {g}/actor": [] for g in variants}}
    session = None
    if variants:
        from coordinator.session import ray_session
        from coordinator.zo.ray_links import RayLinks

        session = ray_session(num_cpus=2)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    try:
        for _ in range(args.speed_repeats):
            times["inproc"].append(timed(cfg)[0])
            for g in variants:
                log, ex = MessageLog(None), Exchange()
                links = RayLinks(cfg, log, ex, links_per_actor=g)
                try:
                    times[f"ray {g}/actor"].append(timed(cfg, links, log, ex)[0])
                finally:
                    links.close()
            print("  " + " | ".join(f"{k} {v[-1] * 1e3:.2f}" for k, v in times.items()) + " ms/it", flush=True)
    finally:
        if session is not None:
            session.close()
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    line = " | ".join(f"{k} {v * 1e3:.2f} ms/it" + ("" if k == "inproc" else f" ({v / med['inproc']:.2f}x)")
                      for k, v in med.items())
    print(f"median of {args.speed_repeats}: {line} (goal <= 1.5x)")
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(TABLE2_CONFIG), help="settings of the Table II runs")
    ap.add_argument("--zo-iterations", type=int, default=None, help="proposed: iterations (default: config)")
    ap.add_argument("--adam-iterations", type=int, default=20000,
                    help="centralized Adam on the config's policy: iterations")
    ap.add_argument("--adam-mlp-iterations", type=int, default=20000,
                    help="centralized Adam on the paper's MLP policy (hidden 5, all inputs): iterations (0: skip)")
    ap.add_argument("--links", default="5,10,15", help="comma-separated N")
    ap.add_argument("--speed-iterations", type=int, default=100)
    ap.add_argument("--speed-repeats", type=int, default=3, help="section 1: interleaved repeats (noisy machine)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="section 1 only")
    args = ap.parse_args()

    speed(args)
    if args.speed_only:
        return

    table2(args)

    print("\n== bytes exchanged per iteration (N = 5, B = 100) ==")
    its = 20
    for label, chg in (("proposed, fully connected", {"algo": {"update": "sync"}}),
                       ("proposed, graph |N_i|<=2", {"algo": {"update": "graph", "graph": "random"}}),
                       ("FL (I = 10)", {"run": {"method": "fl"}}),
                       ("centralized Adam", {"run": {"method": "adam"}})):
        c = ZOConfig().replace(**chg)
        c = c.replace(run={"iterations": its, "eval_every": its, "eval_sequences": 2, "eval_slots": 2})
        _, _, ex = timed(c)
        print(f"{label:28s} {ex.bytes / its:10.1f} B/it  {ex.scalars / its:9.1f} scalars/it  "
              f"{ex.messages / its:6.1f} msgs/it")


if __name__ == "__main__":
    main()
