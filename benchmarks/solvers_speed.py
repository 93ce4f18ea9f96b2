"""Speed of the WMMSE baseline, batched and one realization at a time, beside an independent
straightforward numpy WMMSE, on the same channels in one run (3-cell K = 2, L = 6; 7-cell K = 8, L = 56).

The execution phase times a central unit solving ONE slot with WMMSE against the learned policies
(paper 1 Table IV), so a slow baseline would flatter the learned schemes; this prints, per network:

* batched: µs per realization of ``radio.wmmse.wmmse`` on the whole batch, and of ``straightforward``
  below (dense einsum, the textbook u/w/v updates, the same stopping rule), with their ratio;
* one at a time: µs per call of ``radio.wmmse.wmmse_one`` (arrays in, powers out), of ``wmmse`` on a
  one-realization ``Problem`` (built beforehand, not timed), and of ``straightforward`` called on one
  realization (the naive single call), with the ratios;
* the same for the closed-form FP (``radio.fp.fp``), which shares the machinery;
* the largest sum-rate difference between ours and the reference (they must agree);
* ours alone on 3-cell under a 40 dBm per-BS sum-power limit (binding: 10 W < 2 x 20 W).

Rounds are interleaved (ours, then the reference, in turn) and each figure is the median over rounds;
the 1-minute load average is printed beside every figure, read right after it was measured, because the
machine is shared. Ratios come from the same rounds.

    .venv/bin/python benchmarks/solvers_speed.py [--slots 1000] [--single 200] [--rounds 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# run as a script, sys.path[0] is benchmarks/, whose protocol.py would shadow the protocol package
sys.path[:1] = [str(Path(__file__).resolve().parents[1])]

import numpy as np  # noqa: E402

import radio.wmmse  # noqa: E402
from radio.channels import Scenario  # noqa: E402
from radio.fp import fp  # noqa: E402
from radio.problem import Problem  # noqa: E402
from radio.wmmse import wmmse  # noqa: E402


def straightforward(G: np.ndarray, noise_w: float, p_max_w: np.ndarray, max_iter: int = 500,
                    tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Textbook batched numpy WMMSE (Sun et al. 2018 form), written independently of radio.wmmse.

    G [n, L, L], p_max_w [L]; returns powers [n, L] W and sum-rates [n] bit/s/Hz. Dense einsum products,
    u = h v / (G v^2 + s2), w = 1 / (1 - u h v), v = clip(w u h / (G^T (w u^2)), 0, v_max); a realization
    stops (is frozen) once its sum-rate changes by at most tol relative, as in radio.wmmse.
    """
    n, L, _ = G.shape
    g = np.einsum("nll->nl", G)
    h = np.sqrt(g)
    v_max = np.sqrt(p_max_w)
    v = np.broadcast_to(v_max, (n, L)).copy()

    def received(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rx = np.einsum("nlj,nj->nl", G, v * v) + noise_w
        return rx, np.log2(rx / (rx - g * v * v)).sum(-1)

    rx, rate = received(v)
    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        u = h * v / rx
        w = 1.0 / (1.0 - u * h * v)
        v_new = np.clip(w * u * h / np.einsum("njl,nj->nl", G, w * u * u), 0.0, v_max)
        v = np.where(active[:, None], v_new, v)
        rx, new = received(v)
        active &= np.abs(new - rate) > tol * np.abs(rate)
        rate = new
        if not active.any():
            break
    return v * v, rate


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of fn, over ``calls`` calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _rounds(columns: dict[str, Callable[[], float]], rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Each round runs every column once in turn (order rotating); per column: times [s], load averages."""
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in columns}
    keys = list(columns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t = columns[k]()
            out[k][0].append(t)
            out[k][1].append(os.getloadavg()[0])
    return out


def _row(label: str, times: list[float], loads: list[float], ref: list[float] | None = None,
         ref_name: str = "") -> str:
    med = statistics.median(times) * 1e6
    s = f"  {label:<44s} {med:10.1f} µs   (load {statistics.median(loads):.2f})"
    if ref is not None:
        ratio = statistics.median(r / t for r, t in zip(ref, times, strict=True))
        s += f"   time({ref_name}) / time(this) = {ratio:.2f}"
    return s


def bench(kind: str, slots: int, single: int, rounds: int, seed: int) -> None:
    pr = Scenario.preset(kind).sample(slots, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,))))
    G, s2, pmax = pr.G, pr.noise_w, pr.p_max_w
    print(f"## {kind}: B = {pr.cells}, K = {pr.users_per_cell}, L = {pr.L}; {slots} realizations batched, "
          f"{single} one at a time; load before {os.getloadavg()[0]:.2f}")

    ours, ref = wmmse(pr), straightforward(G, s2, pmax)
    diff = np.abs(ours.value - ref[1]).max()
    print(f"  agreement: max |sum-rate ours - straightforward| = {diff:.2e} bit/s/Hz "
          f"(mean sum-rate {ours.value.mean():.4f}), iterations max {ours.iterations}")

    batched = _rounds({
        "wmmse": lambda: _per_call(lambda: wmmse(pr), 1) / slots,
        "fp": lambda: _per_call(lambda: fp(pr), 1) / slots,
        "straightforward": lambda: _per_call(lambda: straightforward(G, s2, pmax), 1) / slots,
    }, rounds)
    print(" batched, per realization:")
    sf = batched["straightforward"][0]
    print(_row("radio.wmmse.wmmse (batch)", *batched["wmmse"], sf, "straightforward"))
    print(_row("radio.fp.fp (batch)", *batched["fp"], sf, "straightforward"))
    print(_row("straightforward numpy WMMSE (batch)", *batched["straightforward"]))

    m = min(single, slots)
    ones = [pr.subset(slice(i, i + 1)) for i in range(m)]
    Gs = [G[i] for i in range(m)]
    one_fn = getattr(radio.wmmse, "wmmse_one", None)

    def loop(fn: Callable[[int], object]) -> Callable[[], float]:
        return lambda: _per_call(lambda: [fn(i) for i in range(m)], 1) / m

    cols = {
        "wmmse(Problem n=1)": loop(lambda i: wmmse(ones[i])),
        "fp(Problem n=1)": loop(lambda i: fp(ones[i])),
        "straightforward n=1": loop(lambda i: straightforward(Gs[i][None], s2, pmax)),
    }
    if one_fn is not None:
        cols["wmmse_one"] = loop(lambda i: one_fn(Gs[i], s2, pmax))
    single_t = _rounds(cols, rounds)
    print(" one realization at a time, per call:")
    naive = single_t["straightforward n=1"][0]
    if one_fn is not None:
        print(_row("radio.wmmse.wmmse_one(G, noise_w, p_max_w)", *single_t["wmmse_one"], naive, "naive n=1"))
    else:
        print("  radio.wmmse.wmmse_one                         (not in this tree)")
    print(_row("radio.wmmse.wmmse(Problem n=1)", *single_t["wmmse(Problem n=1)"], naive, "naive n=1"))
    print(_row("radio.fp.fp(Problem n=1)", *single_t["fp(Problem n=1)"], naive, "naive n=1"))
    print(_row("straightforward numpy WMMSE, n=1 (naive)", *single_t["straightforward n=1"]))
    if one_fn is not None:
        lib = single_t["wmmse(Problem n=1)"][0]
        ratio = statistics.median(a / b for a, b in zip(lib, single_t["wmmse_one"][0], strict=True))
        print(f"  time(wmmse(Problem n=1)) / time(wmmse_one) = {ratio:.2f}")
        p1 = np.stack([one_fn(Gs[i], s2, pmax) for i in range(m)])
        r1 = wmmse(Problem(G[:m], s2, pmax, cells=pr.cells, users_per_cell=pr.users_per_cell))
        print(f"  agreement: max |p one-at-a-time - p batched| / p_max = {np.abs(p1 - r1.p).max() / pmax.max():.2e}")
    print()


def bench_sum_power(kind: str, slots: int, single: int, rounds: int, seed: int, dbm: float) -> None:
    """Ours only (the straightforward reference has no per-BS limit): WMMSE under a per-BS sum-power limit."""
    pr = Scenario.preset(kind, bs_sum_power_dbm=dbm).sample(
        slots, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))
    m = min(single, slots)
    ones = [pr.subset(slice(i, i + 1)) for i in range(m)]
    t = _rounds({
        "batch": lambda: _per_call(lambda: wmmse(pr), 1) / slots,
        "one": lambda: _per_call(lambda: [wmmse(o) for o in ones], 1) / m,
    }, rounds)
    print(f"## {kind} with a per-BS sum-power limit of {dbm:g} dBm ({pr.bs_sum_power_w:g} W, p_max "
          f"{pr.p_max_w[0]:g} W per user): radio.wmmse.wmmse only")
    print(_row("radio.wmmse.wmmse (batch), per realization", *t["batch"]))
    print(_row("radio.wmmse.wmmse(Problem n=1), per call", *t["one"]))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=1000, help="realizations solved as one batch")
    ap.add_argument("--single", type=int, default=200, help="realizations solved one at a time")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}; "
          f"radio from {Path(radio.wmmse.__file__).parent}\n")
    for kind in ("3cell", "7cell"):
        bench(kind, args.slots, args.single, args.rounds, args.seed)
    bench_sum_power("3cell", min(args.slots, 200), min(args.single, 50), args.rounds, args.seed, 40.0)


if __name__ == "__main__":
    main()
