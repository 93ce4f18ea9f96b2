"""Fractional programming (Shen & Yu, 2018), batched, in two forms.

``fp`` -- the closed-form FP power update (Lagrangian-dual + quadratic transform):
    gamma_l = G_ll p_l / (sum_{j!=l} G_lj p_j + sigma^2)
    y_l     = sqrt((1 + gamma_l) G_ll p_l) / (sum_j G_lj p_j + sigma^2)
    p_l     = min(p_max, (1 + gamma_l) y_l^2 G_ll / (sum_j y_j^2 G_jl + lambda_b)^2)
For single-antenna links this coincides iterate by iterate with WMMSE (y = sqrt(w) u); its update is
written independently here and the tests use each as the other's reference. The rest -- products with G,
the stopping rule, lambda_b, the batched and the one-realization loops -- is radio.wmmse's machinery,
which tests/radio/test_wmmse_fast.py checks against a plain-loop reference.

``fp_direct`` -- the direct quadratic transform of the SINR inside the log, a genuinely different MM
algorithm:
    f_q(p, y) = sum_l log2(1 + 2 y_l sqrt(G_ll p_l) - y_l^2 I_l(p)),   I_l = sum_{j!=l} G_lj p_j + sigma^2
    y_l* = sqrt(G_ll p_l) / I_l  makes f_q(p, y*) = f(p), and f_q <= f elsewhere,
so maximising the concave f_q(., y*) (here: one exact coordinate-ascent sweep per outer iteration,
each coordinate solved by bisection on its monotone derivative) never decreases the sum-rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from radio.problem import Problem
from radio.rates import sum_rate
from radio.simple import SolverResult
from radio.wmmse import _Ctx, _LinkMajor, _One, _one_bs_divide, _run, _single_result, _transmit, _Work


def fp(problem: Problem, p0: np.ndarray | None = None, max_iter: int = 500, tol: float = 1e-6) -> SolverResult:
    """Closed-form FP from full power (or ``p0`` [n, L] W); stops like :func:`radio.wmmse.wmmse` and runs on
    its batched machinery (link-major layout, converged realizations dropped, closed-form lambda_b); only
    the update below is FP's own. Returns powers [n, L] W, sum-rates [n] and the trace [iters+1, n]."""
    if problem.n == 1:
        return _single_result(problem, p0, max_iter, tol, _fp_one_step, squared=False)
    p = problem.p_full() if p0 is None else problem.project(p0)
    return _run(problem, p, squared=False, step=_fp_step, max_iter=max_iter, tol=tol)


def _fp_step(ctx: _Ctx, gains: _LinkMajor, wk: _Work, p: np.ndarray, out: np.ndarray) -> None:
    """One closed-form FP update of the powers p [L, m] into ``out``, given rx = G p + sigma^2 and
    I = rx - G_ll p (interference + noise) in ``wk``."""
    sig = np.multiply(gains.g, p, out=wk.t1)                    # G_ll p_l
    opg = np.divide(sig, wk.I, out=wk.t2)                       # gamma_l
    opg += 1.0                                                  # 1 + gamma_l
    y = np.multiply(opg, sig, out=wk.t3)
    np.sqrt(y, out=y)
    np.divide(y, wk.rx, out=y)                                  # y_l = sqrt((1 + gamma_l) G_ll p_l) / rx_l
    y2 = np.multiply(y, y, out=y)                               # y_l^2
    num = np.multiply(opg, y2, out=wk.t4)
    num *= gains.g                                              # (1 + gamma_l) y_l^2 G_ll
    den = gains.rmatvec(y2, wk.r)                               # sum_j y_j^2 G_jl, per column group
    _transmit(ctx, gains, num, den, out, squared=False)         # p_l = min(p_max, num_l / (den_l + lambda_b)^2)


def _fp_one_step(one: _One) -> Callable[[], None]:
    """The FP update of one realization's powers one.x [L] in place (1-D twin of :func:`_fp_step`)."""
    L, p, rx, I, g, Gt, p_max, ones = one.L, one.x, one.rx, one.I, one.g, one.Gt, one.p_max, one.ones
    sig, opg, num, den = np.empty((4, L))
    ye = np.empty(L + 1)                                        # [y^2; 1]: [y^2; 1] Gt = G^T y^2 + TINY
    ye[L] = 1.0
    y, den_of = ye[:L], ye.dot
    mul, div, add, sqrt, minimum = np.multiply, np.divide, np.add, np.sqrt, np.minimum

    def step() -> None:
        mul(g, p, sig)                                          # G_ll p_l
        div(sig, I, opg)                                        # gamma_l
        add(opg, ones, opg)                                     # 1 + gamma_l
        mul(opg, sig, y)
        sqrt(y, y)
        div(y, rx, y)                                           # y_l = sqrt((1 + gamma_l) G_ll p_l) / rx_l
        mul(y, y, y)                                            # y_l^2
        mul(opg, y, num)
        mul(num, g, num)                                        # (1 + gamma_l) y_l^2 G_ll
        den_of(Gt, den)                                         # sum_j y_j^2 G_jl (+ TINY)
        if one.P is None:
            mul(den, den, den)
            div(num, den, p)
        else:
            _one_bs_divide(one, num, den, p, squared=False)     # / (den + lambda_b)^2
        minimum(p, p_max, out=p)                                # p_l = min(p_max, ...)

    return step


def fp_direct(problem: Problem, p0: np.ndarray | None = None, max_iter: int = 300, tol: float = 1e-6,
              bisect_steps: int = 30) -> SolverResult:
    """Direct quadratic-transform FP; objective trace [iters+1, n] is non-decreasing."""
    G, s2 = problem.G, problem.noise_w
    g_ll = np.einsum("nll->nl", G)
    p = problem.p_full() if p0 is None else problem.project(p0)
    trace = [sum_rate(G, p, s2)]
    active = np.ones(problem.n, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):
        interf = np.einsum("nlj,nj->nl", G, p) - g_ll * p + s2
        y = np.sqrt(g_ll * p) / interf                                   # optimal y for this p
        p = np.where(active[:, None], _coordinate_sweep(problem, p, y, interf, bisect_steps), p)
        trace.append(sum_rate(G, p, s2))
        active &= np.abs(trace[-1] - trace[-2]) > tol * np.maximum(np.abs(trace[-2]), 1e-12)
        if not active.any():
            break
    return SolverResult(p, trace[-1], np.stack(trace), it)


def _coordinate_sweep(problem: Problem, p: np.ndarray, y: np.ndarray, interf: np.ndarray,
                      steps: int) -> np.ndarray:
    """One sweep of exact coordinate ascent on the concave f_q(., y) over the feasible set."""
    G, L, K = problem.G, problem.L, problem.users_per_cell
    p, interf = p.copy(), interf.copy()
    g_ll = np.einsum("nll->nl", G)
    a_all = y * np.sqrt(g_ll)
    for l in range(L):
        s = y * y * G[:, :, l]                                   # slope of A_m in p_l, [n, L]
        s[:, l] = 0.0
        A = 1.0 + 2.0 * a_all * np.sqrt(p) - y * y * interf      # current A_m
        c = A + s * p[:, l:l + 1]                                # A_m at p_l = 0
        a, base = a_all[:, l], 1.0 - y[:, l] ** 2 * interf[:, l]
        ub = np.full(p.shape[0], problem.p_max_w[l])
        if problem.bs_sum_power_w is not None:
            b0 = (l // K) * K
            others = p[:, b0:b0 + K].sum(1) - p[:, l]
            ub = np.minimum(ub, np.maximum(problem.bs_sum_power_w - others, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            dom = np.where(s > 0, c / s, np.inf).min(1)          # A_m > 0 needs p_l < c_m / s_m
        t_hi = np.sqrt(np.minimum(ub, dom * (1.0 - 1e-9)))
        t_lo = np.minimum(np.where(a > 0, np.maximum(-base, 0.0) / np.maximum(2.0 * a, 1e-300), 0.0), t_hi)

        lo, hi = t_lo, t_hi
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            up = _deriv(mid, a, base, s, c) > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        t_new = np.where(_deriv(t_hi, a, base, s, c) > 0, t_hi, 0.5 * (lo + hi))
        t_new = np.where(a > 0, t_new, 0.0)                      # y_l = 0: own term vanishes
        new = _accept_if_better(p, l, t_new**2, a_all, y, interf, s, G)
        interf += G[:, :, l] * (new - p[:, l])[:, None]
        interf[:, l] -= G[:, l, l] * (new - p[:, l])             # own power is not interference
        p[:, l] = new
    return p


def _deriv(t: np.ndarray, a: np.ndarray, base: np.ndarray, s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """d f_q / d p_l up to the positive factor dp/dt, at p_l = t^2 (t = sqrt(p_l)); decreasing in t."""
    own = a / np.maximum(t * (base + 2.0 * a * t), 1e-300)
    return own - (s / np.maximum(c - s * (t * t)[:, None], 1e-300)).sum(1)


def _accept_if_better(p, l, cand, a_all, y, interf, s, G) -> np.ndarray:
    """Keep the bisection's point only where it does not lower f_q (guards the monotone MM property)."""
    def f_q(pl: np.ndarray) -> np.ndarray:
        q = p.copy()
        q[:, l] = pl
        I = interf + G[:, :, l] * (pl - p[:, l])[:, None]
        I[:, l] = interf[:, l]
        A = 1.0 + 2.0 * a_all * np.sqrt(q) - y * y * I
        return np.log(np.maximum(A, 1e-300)).sum(1)

    return np.where(f_q(cand) >= f_q(p[:, l]), cand, p[:, l])
