"""SISO WMMSE (Shi, Razaviyayn, Luo, He 2011, in the form used by Sun et al. 2018), batched.

With h_lj = sqrt(G_lj) and transmit amplitudes v_l = sqrt(p_l), one iteration is
    u_l = h_ll v_l / (sum_j G_lj v_j^2 + sigma^2)                        (MMSE receiver)
    w_l = 1 / (1 - u_l h_ll v_l)                                          (MSE weight = 1 + SINR_l)
    v_l = [ w_l u_l h_ll / (sum_j w_j u_j^2 G_jl + lambda_b) ]_0^sqrt(p_max,l)   (transmitter)
where lambda_b >= 0 is the multiplier of BS b's sum-power constraint (0 without one), found by
bisection so that sum_{l in b} v_l^2 <= P_bs. The sum-rate never decreases (block coordinate descent
on the weighted MSE) and fixed points satisfy the KKT conditions of problem (1).
"""

from __future__ import annotations

import numpy as np

from radio.linops import GainOps
from radio.problem import Problem
from radio.simple import SolverResult


def wmmse(problem: Problem, p0: np.ndarray | None = None, max_iter: int = 500, tol: float = 1e-6,
          ) -> SolverResult:
    """Run WMMSE from full power (or ``p0`` [n, L] W) until the relative change of every realization's
    sum-rate is below ``tol`` or ``max_iter`` iterations. Returns the objective trace [iters+1, n]."""
    ops, s2 = GainOps(problem), problem.noise_w
    g_ll = ops.diag
    h_ll = np.sqrt(g_ll)
    v_max = np.sqrt(problem.p_max_w)[None, :]
    v = np.sqrt(problem.p_full() if p0 is None else problem.project(p0))
    rx = ops.matvec(v * v) + s2                       # received power + noise, [n, L]
    trace = [_rate_from_rx(g_ll * v * v, rx)]
    active = np.ones(problem.n, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):
        u = h_ll * v / rx
        w = rx / np.maximum(rx - g_ll * v * v, 1e-300)  # = 1 / (1 - u h_ll v) = 1 + SINR
        v_new = _transmit_step(problem, w * u * h_ll, ops.rmatvec(w * u * u), v_max)
        v = np.where(active[:, None], v_new, v)       # converged realizations stay frozen
        rx = ops.matvec(v * v) + s2
        trace.append(_rate_from_rx(g_ll * v * v, rx))
        active &= np.abs(trace[-1] - trace[-2]) > tol * np.maximum(np.abs(trace[-2]), 1e-12)
        if not active.any():
            break
    return SolverResult(v * v, trace[-1], np.stack(trace), it)


def _rate_from_rx(signal: np.ndarray, rx: np.ndarray) -> np.ndarray:
    """[n] sum-rate from signal power and total received power (signal + interference + noise)."""
    return np.log2(rx / np.maximum(rx - signal, 1e-300)).sum(-1)


def _transmit_step(problem: Problem, num: np.ndarray, den: np.ndarray, v_max: np.ndarray) -> np.ndarray:
    """v = clip(num / (den + lambda_b), 0, v_max) with lambda_b set by the per-BS sum-power limit."""
    v = np.clip(num / np.maximum(den, 1e-300), 0.0, v_max)
    if problem.bs_sum_power_w is None:
        return v
    n, B, K = v.shape[0], problem.cells, problem.users_per_cell
    numb, denb, vmb = num.reshape(n, B, K), den.reshape(n, B, K), np.broadcast_to(v_max, v.shape).reshape(n, B, K)

    def v_of(lam: np.ndarray) -> np.ndarray:
        return np.clip(numb / np.maximum(denb + lam[..., None], 1e-300), 0.0, vmb)

    P = problem.bs_sum_power_w
    over = (v_of(np.zeros((n, B))) ** 2).sum(-1) > P
    lo, hi = np.zeros((n, B)), np.ones((n, B))
    while np.any(over & ((v_of(hi) ** 2).sum(-1) > P)):
        hi = np.where((v_of(hi) ** 2).sum(-1) > P, hi * 4.0, hi)
    for _ in range(60):  # bisection on lambda_b, relative precision 2^-60 of the bracket
        mid = 0.5 * (lo + hi)
        too_big = (v_of(mid) ** 2).sum(-1) > P
        lo, hi = np.where(too_big, mid, lo), np.where(too_big, hi, mid)
    lam = np.where(over, hi, 0.0)
    return v_of(lam).reshape(n, B * K)
