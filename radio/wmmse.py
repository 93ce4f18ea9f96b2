"""SISO WMMSE (Shi, Razaviyayn, Luo, He 2011, in the form used by Sun et al. 2018), batched and single.

With h_lj = sqrt(G_lj) and transmit amplitudes v_l = sqrt(p_l), one iteration is
    u_l = h_ll v_l / (sum_j G_lj v_j^2 + sigma^2)                        (MMSE receiver)
    w_l = 1 / (1 - u_l h_ll v_l)                                          (MSE weight = 1 + SINR_l)
    v_l = [ w_l u_l h_ll / (sum_j w_j u_j^2 G_jl + lambda_b) ]_0^sqrt(p_max,l)   (transmitter)
where lambda_b >= 0 is the multiplier of BS b's sum-power constraint (0 without one), the smallest one
with sum_{l in b} v_l^2 <= P_bs. The sum-rate never decreases (block coordinate descent on the weighted
MSE) and fixed points satisfy the KKT conditions of problem (1). With rx_l = sum_j G_lj v_j^2 + sigma^2
(received power) and I_l = rx_l - G_ll v_l^2 (interference + noise), w_l = rx_l / I_l, so the sum-rate of
an iterate, sum_l log2(1 + SINR_l) = sum_l log2 w_l, which the stopping rule needs, comes with the w the
next update needs.

Two paths share these equations, the stopping rule and (with radio.fp) the machinery:

* batched (:func:`wmmse` on a ``Problem`` [n, L, L], n > 1): per-link arrays are link-major, [L, m], the
  m realizations still iterating on the last (contiguous) axis, so every per-link step is one long vector
  operation and every sum over links or over a cell's users adds rows; the [n, L] layout spent its time
  in sums over a short last axis and in per-realization tiny products. Products with G use its cellular
  structure G[l, j] = Gu[l, cell(j)] when it is there (``_LinkMajor``: one einsum each way, K times fewer
  flops). Converged realizations are frozen and, once at most half are still active, dropped from the
  arrays (``_run``), so the few slow realizations do not keep the whole batch iterating.
* one realization (:func:`wmmse_one` on G [L, L]; :func:`wmmse` when n == 1): 1-D arrays, buffers made
  once, sixteen numpy calls per iteration (``_single``): the execution phase's per-slot decision.

Under a per-BS sum-power limit lambda_b comes in closed form instead of from 60 bisection steps per
iteration: batched, :func:`_bs_level` (exact after at most K + 1 Newton steps); one realization,
:func:`_one_level` (the smallest of K candidate roots per BS, no loop). Only a G without the cellular
structure and with K > 1 users per BS still bisects (``_bisect_level``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from radio.problem import Problem, ProblemError
from radio.simple import SolverResult

TINY = 1e-300                 # floor of divisors: 0 / TINY = 0 where a link or a cell carries nothing
COMPACT_BELOW = 0.5           # drop converged realizations once at most this fraction is still active
COMPACT_MIN_ENTRIES = 1024    # ... and the dropped ones hold at least this many per-link entries


# --------------------------------------------------------------------------------------------------
# public API


def wmmse(problem: Problem, p0: np.ndarray | None = None, max_iter: int = 500, tol: float = 1e-6,
          ) -> SolverResult:
    """Run WMMSE from full power (or ``p0`` [n, L] W) until the relative change of every realization's
    sum-rate is at most ``tol`` or ``max_iter`` iterations; a realization whose sum-rate changed by at
    most ``tol`` (relative) stays frozen from then on. Returns powers [n, L] W, sum-rates [n] bit/s/Hz and
    the objective trace [iters+1, n]. A one-realization problem takes the single path of :func:`wmmse_one`."""
    if problem.n == 1:
        return _single_result(problem, p0, max_iter, tol, _wmmse_one_step)
    v0 = np.sqrt(problem.p_full() if p0 is None else problem.project(p0))      # [n, L] amplitudes
    return _run(problem, v0, squared=True, step=_wmmse_step, max_iter=max_iter, tol=tol)


def wmmse_one(G: np.ndarray, noise_w: float, p_max_w: np.ndarray | float, p0: np.ndarray | None = None,
              max_iter: int = 500, tol: float = 1e-6, users_per_cell: int = 1,
              bs_sum_power_w: float | None = None) -> np.ndarray:
    """WMMSE on ONE realization, arrays in, powers out: the per-decision solver of the execution phase.

    G        [L, L] linear power gains (radio convention)
    noise_w  sigma^2 in W;  p_max_w  [L] (or a scalar) W;  p0  [L] W start (default: full power)
    users_per_cell, bs_sum_power_w   K and the per-BS sum-power limit (links l = b*K + k), if any
    Returns p [L] W: the iterate :func:`wmmse` reaches on the same channels (same updates, same stopping
    rule; equal up to floating-point rounding). Shapes are checked, values are trusted (a
    :class:`Problem` validates channels that come from outside).
    """
    G = np.asarray(G, dtype=np.float64)
    L = G.shape[0] if G.ndim == 2 else 0
    if G.ndim != 2 or G.shape[1] != L or L == 0:
        raise ProblemError(f"G: expected a float array of shape [L, L], got shape {np.shape(G)}")
    p_max = np.asarray(p_max_w, dtype=np.float64)
    if p_max.shape != (L,):
        if p_max.ndim != 0:
            raise ProblemError(f"p_max_w: expected a scalar or an array of shape [{L}], got shape {p_max.shape}")
        p_max = np.full(L, float(p_max))
    K = int(users_per_cell)
    if K < 1 or L % K:
        raise ProblemError(f"users_per_cell: expected a divisor of L = {L}, got {users_per_cell}")
    if p0 is not None:
        p0 = np.asarray(p0, dtype=np.float64)
        if p0.shape != (L,):
            raise ProblemError(f"p0: expected an array of shape [{L}] W, got shape {p0.shape}")
    p = _start_powers(p_max, K, bs_sum_power_w, p0)
    v, _, _ = _single(G, float(noise_w), p_max, np.sqrt(p), max_iter, tol, K, bs_sum_power_w,
                      _wmmse_one_step, squared=True)
    return v * v


# --------------------------------------------------------------------------------------------------
# one realization (shared with radio.fp)


class _One:
    """Buffers of one realization with L links, made once per solve; every numpy call writes into them
    (out passed positionally but to maximum/minimum, which numpy 2 deprecates and warns about, products as
    bound ``ndarray.dot`` methods: on 6 to 56 links a call costs about as much as its arithmetic, so the
    loop is counted in calls).

    GsT [L+1, L] = [G | sigma^2]^T:  [p; 1] GsT = G p + sigma^2 = rx in one product.
    Gt  [L+1, L] = [G; TINY]:        [y; 1] Gt = G^T y + TINY, which equals max(G^T y, TINY) (the floor of
                                     the batched path) for every G^T y outside (0, 1e-284).
    g [L] G_ll;  pe [L+1] = [p; 1];  rx, I, w [L] as in ``_Work``;  x [L] the iterate;  tiny, ones [L].
    """

    def __init__(self, G: np.ndarray, s2: float, p_max: np.ndarray, x: np.ndarray, K: int, P: float | None) -> None:
        L = G.shape[0]
        self.L, self.K, self.B, self.P = L, K, L // K, P
        self.GsT = np.empty((L + 1, L))
        self.GsT[:L] = G.T
        self.GsT[L] = s2
        self.Gt = np.empty((L + 1, L))
        self.Gt[:L] = G
        self.Gt[L] = TINY
        self.g = G.diagonal().copy()
        self.pe = np.empty(L + 1)
        self.pe[L] = 1.0
        self.p = self.pe[:L]
        self.rx, self.I, self.w, self.lw, self.tiny, self.ones = np.empty((6, L))
        self.tiny.fill(TINY)
        self.ones.fill(1.0)
        self.x, self.p_max, self.v_max = x, p_max, np.sqrt(p_max)
        if P is not None:                                      # buffers of _one_level
            # one divisor per BS when G is cellular (den of the BS's first link), else one per link
            self.per_cell = K == 1 or _is_cellular(G[None], K)
            B = self.B
            cell = np.arange(L) // K
            self.same = (cell[:, None] == cell[None, :]).astype(np.float64)   # [L, L] links of one BS
            self.in_cell = self.same[::K].copy()               # [B, L] BS b's links
            self.a2, self.q, self.r, self.S, self.A, self.room, self.t2 = np.empty((7, L))
            self.P_L, self.zeros = np.full(L, float(P)), np.zeros(L)
            self.dd, self.Pdd, self.sums, self.t = np.empty((4, B))
            self.P_B = np.full(B, float(P))
            self.free, self.pos = np.empty(B, dtype=bool), np.empty(L, dtype=bool)
            self.cmp = np.empty((L, L), dtype=bool)
            self.cap, self.unc = np.empty((2, L, L))
            self.firsts = np.arange(0, L, K)                   # [B] first link of each BS
            # views made once: [B, K] and broadcast shapes of the buffers above
            self.c2_bk, self.q_bk, self.dd_col = p_max.reshape(B, K), self.q.reshape(B, K), self.dd[:, None]
            self.r_row, self.r_col = self.r[None, :], self.r[:, None]


def _single(G: np.ndarray, s2: float, p_max: np.ndarray, x: np.ndarray, max_iter: int, tol: float, K: int,
            P: float | None, make_step: Callable[[_One], Callable[[], None]], squared: bool,
            ) -> tuple[np.ndarray, list[float], int]:
    """The loop of one realization G [L, L] from the iterate x [L] (amplitudes if ``squared``, else
    powers; overwritten): ``make_step(one)()`` updates ``one.x`` in place from rx, I, w of the current
    iterate; the sum-rate sum_l log2 w_l is checked with the stopping rule of :func:`wmmse`. Returns x,
    the trace (iters+1 Python floats) and the number of iterations."""
    one = _One(G, s2, p_max, x, K, P)
    if not squared:                                            # the iterate is the powers: live in [p; 1]
        one.p[:] = x
        one.x = x = one.p
    step = make_step(one)
    g, p, GsT, rx, I, w, lw, tiny, ones = one.g, one.p, one.GsT, one.rx, one.I, one.w, one.lw, one.tiny, one.ones
    mul, div, log2, sub, maximum = np.multiply, np.divide, np.log2, np.subtract, np.maximum
    rx_of, rate_of = one.pe.dot, lw.dot

    def observe() -> float:
        """rx = G p + sigma^2, I = max(rx - G_ll p, TINY), w = rx / I; returns sum_l log2 w_l (bit/s/Hz)."""
        if squared:
            mul(x, x, p)                                       # p_l = v_l^2
        rx_of(GsT, rx)                                         # rx_l = sum_j G_lj p_j + sigma^2
        mul(g, p, I)
        sub(rx, I, I)
        maximum(I, tiny, out=I)                                # I_l = rx_l - G_ll p_l
        div(rx, I, w)                                          # w_l = 1 + SINR_l
        log2(w, lw)
        return float(rate_of(ones))

    rate = observe()
    trace = [rate]
    it = 0
    for it in range(1, max_iter + 1):
        step()
        new = observe()
        trace.append(new)
        if not abs(new - rate) > tol * max(abs(rate), 1e-12):
            break
        rate = new
    return x, trace, it


def _single_result(problem: Problem, p0: np.ndarray | None, max_iter: int, tol: float,
                   make_step: Callable[[_One], Callable[[], None]], squared: bool = True) -> SolverResult:
    """A one-realization ``problem`` through :func:`_single`, as the batched path's SolverResult."""
    K, P = problem.users_per_cell, problem.bs_sum_power_w
    p = _start_powers(problem.p_max_w, K, P, None) if p0 is None else problem.project(p0)[0]
    x, trace, it = _single(problem.G[0], problem.noise_w, problem.p_max_w, np.sqrt(p) if squared else p.copy(),
                           max_iter, tol, K, P, make_step, squared)
    tr = np.array(trace)[:, None]
    return SolverResult((x * x if squared else x)[None], tr[-1].copy(), tr, it)


def _wmmse_one_step(one: _One) -> Callable[[], None]:
    """The WMMSE update of the amplitudes one.x [L] in place (the equations of the module docstring)."""
    L, v, rx, w, Gt, v_max = one.L, one.x, one.rx, one.w, one.Gt, one.v_max
    h, u, wu, num, den = np.empty((5, L))
    np.sqrt(one.g, h)
    ye = np.empty(L + 1)                                       # [y; 1]
    ye[L] = 1.0
    y, den_of = ye[:L], ye.dot
    mul, div, minimum = np.multiply, np.divide, np.minimum

    def step() -> None:
        mul(h, v, u)
        div(u, rx, u)                                          # u_l = h_ll v_l / rx_l   (MMSE receiver)
        mul(w, u, wu)                                          # w_l = rx_l / I_l = 1 / (1 - u_l h_ll v_l)
        mul(wu, h, num)                                        # w_l u_l h_ll
        mul(wu, u, y)                                          # y_l = w_l u_l^2
        den_of(Gt, den)                                        # sum_j w_j u_j^2 G_jl (+ TINY)
        if one.P is None:
            div(num, den, v)
        else:
            _one_bs_divide(one, num, den, v, squared=True)     # / (den + lambda_b)
        minimum(v, v_max, out=v)                               # v_l in [0, sqrt(p_max,l)]

    return step


def _one_bs_divide(one: _One, num: np.ndarray, den: np.ndarray, out: np.ndarray, squared: bool) -> None:
    """out = num / (den + lambda_b)^e (e = 1 amplitudes if ``squared``, else 2) for one realization under
    the per-BS limit: the divisor from :func:`_one_level` with a2 = num^2 (WMMSE) or num (FP)."""
    a2 = np.multiply(num, num, out=one.a2) if squared else num
    t = _one_level(one, a2, den)                               # [B, 1] (or [B, K])
    np.divide(num.reshape(one.B, one.K), t if squared else t * t, out=out.reshape(one.B, one.K))


def _one_level(one: _One, a2: np.ndarray, den: np.ndarray) -> np.ndarray:
    """den_b + lambda_b [B, 1] of one realization under the per-BS limit, the 1-D twin of
    :func:`_bs_level` (same definition; a2 [L] squared numerators, den [L] G^T y + TINY, c2 = p_max).

    The limit binds at BS b iff sum_{k in b} min(c2_k d_b^2, a2_k) > P d_b^2 (no division). There, the root
    t_b of sum_{k in b} min(c2_k, a2_k / t^2) = P is the smallest of the candidates sqrt(A_i / (P - S_i))
    over the links i of b, with J_i = {k in b : r_k > r_i}, r_k = a2_k / c2_k (link k is capped while
    t^2 <= r_k), S_i = sum_{J_i} c2, A_i = sum_{b - J_i} a2: every linear piece lies above the sum, so
    each candidate is >= t_b, and the capped set at t_b is one of the J_i. With the same-BS mask [L, L]
    this is a score of 1-D calls and no loop (Newton's loop costs more calls than its arithmetic on so
    few links). Without the cellular structure: per-link divisors [B, K] by bisection."""
    B, K = one.B, one.K
    if not one.per_cell:
        return _bisect_level(a2.reshape(B, K, 1), one.p_max.reshape(B, K, 1), den.reshape(B, K, 1),
                             one.P)[:, :, 0]
    c2, q, dd, free, t = one.p_max, one.q, one.dd, one.free, one.t
    d_b = den[::K]                                             # [B] one divisor per BS
    np.multiply(d_b, d_b, dd)
    np.multiply(one.c2_bk, one.dd_col, one.q_bk)
    np.minimum(q, a2, out=q)                                   # d_b^2 p_k at lambda_b = 0
    np.less_equal(one.in_cell.dot(q, one.sums), np.multiply(one.P_B, dd, one.Pdd), free)
    if np.count_nonzero(free) == B:                            # the limit binds nowhere
        return d_b[:, None]
    r, cap, unc, room, pos, t2 = one.r, one.cap, one.unc, one.room, one.pos, one.t2
    np.divide(a2, c2, r)
    np.greater(one.r_row, one.r_col, one.cmp)                  # cmp[i, k] = r_k > r_i
    np.multiply(one.cmp, one.same, cap)                        # k in J_i
    np.subtract(one.same, cap, unc)                            # k in b - J_i
    np.subtract(one.P_L, cap.dot(c2, one.S), room)             # P - S_i
    np.greater(room, one.zeros, pos)
    t2.fill(np.inf)
    np.divide(unc.dot(a2, one.A), room, t2, where=pos)         # A_i / (P - S_i)
    np.minimum.reduceat(t2, one.firsts, out=t)                 # min over the candidates of each BS
    np.sqrt(t, t)
    np.maximum(t, d_b, out=t)
    np.copyto(t, d_b, where=free)                              # lambda_b = 0 where the limit does not bind
    return t[:, None]


def _start_powers(p_max: np.ndarray, K: int, P: float | None, p0: np.ndarray | None) -> np.ndarray:
    """[L] W start point: p0 (default p_max) clipped to [0, p_max] and scaled down per BS into the sum
    limit P, exactly as Problem.project / Problem.p_full."""
    p = p_max.copy() if p0 is None else np.clip(p0, 0.0, p_max)
    if P is not None:
        pb = p.reshape(-1, K)
        pb *= np.minimum(1.0, P / np.maximum(pb.sum(axis=1, keepdims=True), 1e-300))
    return p


# --------------------------------------------------------------------------------------------------
# batched machinery (shared with radio.fp)


def _is_cellular(G: np.ndarray, K: int) -> bool:
    """Whether G [n, L, L] has G[l, j] = G[l, first link of cell(j)] for every link j (K links per cell)."""
    if K == 1:
        return True
    Gu = G[:, :, ::K]
    return all(np.array_equal(G[:, :, k::K], Gu) for k in range(1, K))


class _LinkMajor:
    """Gains of m realizations, links first and realizations last (contiguous).

    C    [Bc, L, m]   C[c, l] = G[l, j] for the Kc links j of column group c: a cell (Bc = B, Kc = K)
                      when G has the cellular structure G[l, j] = Gu[l, cell(j)], else one link (Bc = L,
                      Kc = 1). Then (G x)_l = sum_c C[c, l] (sum_{j in c} x_j) and (G^T y)_j = sum_l C[c(j), l] y_l.
    g, h [L, m]       G_ll and sqrt(G_ll).
    """

    def __init__(self, C: np.ndarray, g: np.ndarray, h: np.ndarray, Kc: int) -> None:
        self.C, self.g, self.h, self.Kc = C, g, h, Kc
        self.Bc = C.shape[0]

    @classmethod
    def of(cls, problem: Problem) -> _LinkMajor:
        G, K = problem.G, problem.users_per_cell
        Kc = K if K > 1 and _is_cellular(G, K) else 1
        C = np.ascontiguousarray(G[:, :, ::Kc].transpose(2, 1, 0))
        g = np.ascontiguousarray(np.einsum("nll->ln", G))
        return cls(C, g, np.sqrt(g), Kc)

    def take(self, keep: np.ndarray) -> _LinkMajor:
        """The same gains restricted to realizations ``keep``."""
        return _LinkMajor(self.C.take(keep, axis=2), self.g.take(keep, axis=1), self.h.take(keep, axis=1),
                          self.Kc)

    def matvec(self, x: np.ndarray, ps: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out [L, m] = G x for x [L, m]; ps [Bc, m] is scratch for the per-group sums."""
        if self.Kc > 1:
            x = np.add.reduce(x.reshape(self.Bc, self.Kc, -1), axis=1, out=ps)
        return np.einsum("clm,cm->lm", self.C, x, out=out)

    def rmatvec(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out [Bc, m] = (G^T y) per column group (equal for the links of a group), y [L, m]."""
        return np.einsum("clm,lm->cm", self.C, y, out=out)


@dataclass
class _Work:
    """Per-epoch buffers of the batched loop, all [L, m] but ``r`` and ``ps`` [Bc, m].

    x_new: next iterate; p: powers (aliases the iterate when it is the powers); rx: G p + sigma^2;
    I: interference + noise (floored); w: rx / I = 1 + SINR; t1..t4: step scratch."""

    x_new: np.ndarray
    p: np.ndarray
    rx: np.ndarray
    I: np.ndarray
    w: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    t3: np.ndarray
    t4: np.ndarray
    r: np.ndarray
    ps: np.ndarray

    @classmethod
    def new(cls, L: int, Bc: int, m: int) -> _Work:
        return cls(*(np.empty((L, m)) for _ in range(9)), np.empty((Bc, m)), np.empty((Bc, m)))


@dataclass(frozen=True)
class _Ctx:
    """Constants of a batched run: noise, per-link limits as columns [L, 1], cells and the BS limit."""

    s2: float
    p_max: np.ndarray        # [L, 1] W
    v_max: np.ndarray        # [L, 1] sqrt(W)
    B: int
    K: int
    P: float | None


_Step = Callable[[_Ctx, _LinkMajor, _Work, np.ndarray, np.ndarray], None]   # (ctx, gains, wk, x, out)


def _observe(ctx: _Ctx, gains: _LinkMajor, wk: _Work, x: np.ndarray, squared: bool) -> np.ndarray:
    """From the iterate x [L, m] (amplitudes v if ``squared``, else powers p): p, rx = G p + sigma^2,
    I = max(rx - G_ll p, TINY), w = rx / I in ``wk``; returns the sum-rates sum_l log2 w_l [m]."""
    p = np.multiply(x, x, out=wk.p) if squared else x
    wk.p = p
    rx = gains.matvec(p, wk.ps, wk.rx)
    rx += ctx.s2
    I = np.multiply(gains.g, p, out=wk.I)
    np.subtract(rx, I, out=I)
    np.maximum(I, TINY, out=I)
    np.divide(rx, I, out=wk.w)
    return np.add.reduce(np.log2(wk.w, out=wk.t1), axis=0)


def _run(problem: Problem, x0: np.ndarray, squared: bool, step: _Step, max_iter: int, tol: float) -> SolverResult:
    """The batched loop of :func:`wmmse` and :func:`radio.fp.fp`: iterate ``step`` on x [L, m] from x0
    [n, L] (amplitudes if ``squared``, else powers) with the stopping rule of :func:`wmmse`; converged
    realizations are frozen, and dropped from the arrays once few enough remain active."""
    n, L = problem.n, problem.L
    ctx = _Ctx(problem.noise_w, problem.p_max_w[:, None], np.sqrt(problem.p_max_w)[:, None],
               problem.cells, problem.users_per_cell, problem.bs_sum_power_w)
    gains = _LinkMajor.of(problem)
    x = np.ascontiguousarray(x0.T)                              # [L, n]
    idx = np.arange(n)                                          # batch index of each column
    x_out = np.empty((L, n))
    wk = _Work.new(L, gains.Bc, n)
    rate = _observe(ctx, gains, wk, x, squared)
    epochs: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
    t0, rates = 0, [rate]
    active = np.ones(n, dtype=bool)
    m = n_active = n
    it = 0
    for it in range(1, max_iter + 1):
        step(ctx, gains, wk, x, wk.x_new)
        if n_active < m:
            np.copyto(wk.x_new, x, where=~active)               # converged realizations stay frozen
        x, wk.x_new = wk.x_new, x
        new = _observe(ctx, gains, wk, x, squared)
        rates.append(new)
        active &= np.abs(new - rate) > tol * np.maximum(np.abs(rate), 1e-12)
        rate = new
        n_active = int(np.count_nonzero(active))
        if n_active == 0:
            break
        if n_active <= COMPACT_BELOW * m and (m - n_active) * L >= COMPACT_MIN_ENTRIES:
            # converged realizations leave the batch: store their iterate, keep the active columns
            epochs.append((t0, idx, rates))
            t0, rates = it + 1, []
            x_out[:, idx[~active]] = x[:, ~active]
            keep = np.flatnonzero(active)
            idx, gains, rate = idx[keep], gains.take(keep), rate[keep]
            m = n_active
            old, wk = wk, _Work.new(L, gains.Bc, m)
            x = x.take(keep, axis=1)
            if squared:
                wk.p = old.p.take(keep, axis=1)
            else:
                wk.p = x
            wk.rx, wk.I, wk.w = (a.take(keep, axis=1) for a in (old.rx, old.I, old.w))
            active = np.ones(m, dtype=bool)
    epochs.append((t0, idx, rates))
    x_out[:, idx] = x
    blocks = [(start, ix, np.stack(rs)) for start, ix, rs in epochs if rs]
    value = np.empty(n)
    for _, ix, block in blocks:                                 # later epochs overwrite the ones still active
        value[ix] = block[-1]
    trace = np.empty((it + 1, n))
    trace[:] = value                                            # a dropped realization keeps its last value
    for start, ix, block in blocks:
        trace[start:start + len(block), ix] = block
    p = x_out * x_out if squared else x_out
    return SolverResult(np.ascontiguousarray(p.T), value, trace, it)


def _wmmse_step(ctx: _Ctx, gains: _LinkMajor, wk: _Work, v: np.ndarray, out: np.ndarray) -> None:
    """One WMMSE update of the amplitudes v [L, m] into ``out``, given rx and w = 1 + SINR of v in ``wk``."""
    u = np.multiply(gains.h, v, out=wk.t1)
    np.divide(u, wk.rx, out=u)                                  # u_l = h_ll v_l / rx_l   (MMSE receiver)
    wu = np.multiply(wk.w, u, out=wk.t2)                        # w_l = 1 / (1 - u_l h_ll v_l) = rx_l / I_l
    num = np.multiply(wu, gains.h, out=wk.t3)                   # w_l u_l h_ll
    y = np.multiply(wu, u, out=wk.t4)                           # w_l u_l^2
    den = gains.rmatvec(y, wk.r)                                # sum_j w_j u_j^2 G_jl, per column group
    _transmit(ctx, gains, num, den, out, squared=True)


def _transmit(ctx: _Ctx, gains: _LinkMajor, num: np.ndarray, den: np.ndarray, out: np.ndarray,
              squared: bool) -> None:
    """out = min(cap, num / max(den + lambda_b, TINY)^e) with e = 1 (amplitudes, cap sqrt(p_max)) if
    ``squared`` else e = 2 (powers, cap p_max). num [L, m]; den [Bc, m] from :meth:`_LinkMajor.rmatvec`."""
    B, K = ctx.B, ctx.K
    m = num.shape[-1]
    num3, out3 = num.reshape(B, K, m), out.reshape(B, K, m)
    den3 = den.reshape(B, K // gains.Kc, m)                     # one value per cell, or per link
    if ctx.P is not None:
        a2 = num3 * num3 if squared else num3
        den3 = _bs_level(a2, ctx.p_max.reshape(B, K, 1), den3, ctx.P)
    np.maximum(den3, TINY, out=den3)
    if not squared:
        np.multiply(den3, den3, out=den3)
    np.divide(num3, den3, out=out3)
    np.minimum(out, ctx.v_max if squared else ctx.p_max, out=out)


def _bs_level(a2: np.ndarray, c2: np.ndarray, den: np.ndarray, P: float) -> np.ndarray:
    """den_b + lambda_b under the per-BS sum-power limit P, for a2 [B, K, m] (squared numerators),
    c2 [B, K, 1 or m] (p_max) and den [B, 1, m] (one divisor per BS) or [B, K, m] (one per link).

    At divisor t the powers of BS b are p_k(t) = min(c2_k, a2_k / t^2); lambda_b = 0 where
    sum_k p_k(den_b) <= P, else the one with sum_k p_k(den_b + lambda_b) = P. With one divisor per BS,
    s = 1/t^2 turns sum_k p_k into f(s) = sum_k min(c2_k, a2_k s): concave, increasing, piecewise linear.
    Each linear piece S_J + A_J s (J: the capped links, S_J = sum_J c2, A_J = sum_{not J} a2) lies above f,
    so its root s_J = (P - S_J) / A_J is <= the root s* of f = P, and Newton's method from s = 0,
        s <- max(s, (P - S_J(s)) / A_J(s)),   J(s) = {k : a2_k s >= c2_k},
    climbs to s* and is exact once J stops changing (J only grows: at most K + 1 steps). Where the limit
    binds, f(1/den^2) > P, so f = P has the one root s* < 1/den^2 (f is flat only once every link is
    capped, at its largest value) and t = 1/sqrt(s*) > den. Returns [B, 1, m].
    """
    if den.shape[1] != 1:
        return _bisect_level(a2, c2, den, P)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        over = np.minimum(c2, a2 / np.maximum(den, TINY) ** 2).sum(axis=1, keepdims=True) > P
        if not over.any():
            return den
        s = P / a2.sum(axis=1)                                  # J = {} (nothing capped at s = 0)
        n_capped = -1
        for _ in range(a2.shape[1] + 1):
            capped = a2 * s[:, None] >= c2
            if np.count_nonzero(capped) == n_capped:            # J only grows: same count, same sets
                break
            n_capped = np.count_nonzero(capped)
            S = np.where(capped, c2, 0.0).sum(axis=1)
            A = np.where(capped, 0.0, a2).sum(axis=1)
            s = np.fmax(s, (P - S) / A)                         # fmax: a 0/0 leaves s as it is
        return np.where(over, np.maximum(den, 1.0 / np.sqrt(s)[:, None]), den)


def _bisect_level(a2: np.ndarray, c2: np.ndarray, den: np.ndarray, P: float) -> np.ndarray:
    """den + lambda_b for per-link divisors den [B, K, m] (a G without the cellular structure): lambda_b by
    bracketing and 60 bisection steps on the decreasing sum_k min(c2_k, a2_k / (den_k + lambda_b)^2)."""
    def total(lam: np.ndarray) -> np.ndarray:
        return np.minimum(c2, a2 / np.maximum(den + lam, TINY) ** 2).sum(axis=1, keepdims=True)

    shape = (den.shape[0], 1, den.shape[2])
    over = total(np.zeros(shape)) > P
    lo, hi = np.zeros(shape), np.ones(shape)
    while np.any(over & (total(hi) > P)):
        hi = np.where(total(hi) > P, 4.0 * hi, hi)
    for _ in range(60):  # relative precision 2^-60 of the bracket
        mid = 0.5 * (lo + hi)
        big = total(mid) > P
        lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
    return den + np.where(over, hi, 0.0)
