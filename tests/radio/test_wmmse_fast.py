"""The fast WMMSE / FP paths: the single-realization path equals the batched one and an independent
plain-loop reference; monotone objective; per-BS sum power; the closed-form multiplier lambda_b against
bisection; dropping converged realizations changes nothing. No timings here (benchmarks/solvers_speed.py)."""

import math

import numpy as np
import pytest

import radio.wmmse as W
from radio.channels import Scenario
from radio.fp import fp
from radio.problem import Problem, ProblemError
from radio.rates import sum_rate
from radio.wmmse import wmmse, wmmse_one

CASES = {
    "3cell": lambda: Scenario.preset("3cell"),
    "7cell": lambda: Scenario.preset("7cell", users_per_cell=3),
    "links": lambda: Scenario.preset("links", n_links=6),
    "3cell-sum": lambda: Scenario.preset("3cell", bs_sum_power_dbm=43.0),       # P_bs = p_max: the edge case
    "3cell-sum40": lambda: Scenario.preset("3cell", bs_sum_power_dbm=40.0),
    "7cell-sum": lambda: Scenario.preset("7cell", users_per_cell=3, bs_sum_power_dbm=43.0),
}


def _problem(case: str, n: int, seed: int = 0) -> Problem:
    return CASES[case]().sample(n, np.random.default_rng(seed))


def _one(pr: Problem, i: int) -> np.ndarray:
    return wmmse_one(pr.G[i], pr.noise_w, pr.p_max_w, users_per_cell=pr.users_per_cell,
                     bs_sum_power_w=pr.bs_sum_power_w)


def _not_cellular(pr: Problem, seed: int = 5) -> Problem:
    """The same channels with every entry perturbed by a few percent: no cellular structure left."""
    G = pr.G * np.random.default_rng(seed).uniform(0.97, 1.03, pr.G.shape)
    return Problem(G, pr.noise_w, pr.p_max_w, pr.bandwidth_hz, pr.cells, pr.users_per_cell, pr.bs_sum_power_w)


# ---- an independent plain-loop reference: one realization, Python floats, link by link -------------

def plain_wmmse(G: np.ndarray, s2: float, p_max: np.ndarray, K: int = 1, P: float | None = None,
                max_iter: int = 500, tol: float = 1e-6) -> tuple[list[float], list[float]]:
    """Textbook WMMSE (Shi et al. 2011 / Sun et al. 2018) on G [L, L]: u = h v / rx, w = 1 / (1 - u h v),
    v = [w u h / (sum_j w_j u_j^2 G_jl + lambda_b)]_0^vmax with lambda_b by scalar bisection; the sum-rate
    from the SINR with the interference summed directly. Returns powers [L] and the sum-rate trace."""
    G = [[float(x) for x in row] for row in G]
    L = len(G)
    B = L // K
    h = [math.sqrt(G[l][l]) for l in range(L)]
    vmax = [math.sqrt(float(x)) for x in p_max]
    p = [float(x) for x in p_max]
    if P is not None:
        for b in range(B):
            tot = sum(p[b * K:(b + 1) * K])
            for l in range(b * K, (b + 1) * K):
                p[l] *= min(1.0, P / tot)
    v = [math.sqrt(x) for x in p]

    def rate(v: list[float]) -> float:
        total = 0.0
        for l in range(L):
            interference = s2 + sum(G[l][j] * v[j] ** 2 for j in range(L) if j != l)
            total += math.log2(1.0 + G[l][l] * v[l] ** 2 / interference)
        return total

    r = rate(v)
    trace = [r]
    for _ in range(max_iter):
        rx = [s2 + sum(G[l][j] * v[j] ** 2 for j in range(L)) for l in range(L)]
        u = [h[l] * v[l] / rx[l] for l in range(L)]
        w = [1.0 / (1.0 - u[l] * h[l] * v[l]) for l in range(L)]
        num = [w[l] * u[l] * h[l] for l in range(L)]
        den = [sum(w[j] * u[j] ** 2 * G[j][l] for j in range(L)) for l in range(L)]

        new = []
        for b in range(B):
            links = range(b * K, (b + 1) * K)
            lam = 0.0
            if P is not None and _bs_power(num, den, vmax, links, 0.0) > P:
                lo, hi = 0.0, 1.0
                while _bs_power(num, den, vmax, links, hi) > P:
                    hi *= 2.0
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if _bs_power(num, den, vmax, links, mid) > P else (lo, mid)
                lam = hi
            new += [_amplitude(num[l], den[l], vmax[l], lam) for l in links]
        v = new
        r_new = rate(v)
        trace.append(r_new)
        if not abs(r_new - r) > tol * max(abs(r), 1e-12):
            break
        r = r_new
    return [x * x for x in v], trace


def _amplitude(num: float, den: float, vmax: float, lam: float) -> float:
    """v = [num / (den + lambda)]_0^vmax (0 for a link that carries nothing)."""
    return 0.0 if num == 0.0 else min(max(num / (den + lam), 0.0), vmax)


def _bs_power(num: list[float], den: list[float], vmax: list[float], links: range, lam: float) -> float:
    """sum over the BS's links of v_l(lambda)^2."""
    return sum(_amplitude(num[l], den[l], vmax[l], lam) ** 2 for l in links)


# ---- single path == batched path ---------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_single_path_equals_batched(case):
    pr = _problem(case, n=16)
    batch = wmmse(pr)
    atol = 1e-10 * pr.p_max_w.max()
    for i in range(pr.n):
        np.testing.assert_allclose(_one(pr, i), batch.p[i], rtol=1e-9, atol=atol)
        one = wmmse(pr.subset(slice(i, i + 1)))                    # wmmse takes the single path for n == 1
        np.testing.assert_allclose(one.p[0], batch.p[i], rtol=1e-9, atol=atol)
        T = one.trace.shape[0]
        np.testing.assert_allclose(one.trace[:, 0], batch.trace[:T, i], rtol=1e-9)
        np.testing.assert_allclose(batch.trace[T:, i], one.value[0], rtol=1e-9)  # frozen once converged


@pytest.mark.parametrize("case", ["3cell", "links", "7cell-sum"])
def test_fp_single_path_equals_batched_and_wmmse_single(case):
    pr = _problem(case, n=10, seed=3)
    batch = fp(pr)
    for i in range(pr.n):
        one = pr.subset(slice(i, i + 1))
        np.testing.assert_allclose(fp(one).p[0], batch.p[i], rtol=1e-9, atol=1e-10 * pr.p_max_w.max())
        a, b = fp(one, max_iter=30, tol=-1.0), wmmse(one, max_iter=30, tol=-1.0)   # tol < 0: all 30 iterations
        np.testing.assert_allclose(a.trace, b.trace, rtol=1e-9)         # FP == WMMSE iterate by iterate
        np.testing.assert_allclose(a.p, b.p, rtol=1e-6, atol=1e-9 * pr.p_max_w.max())


# ---- against the independent plain-loop reference -----------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_equals_plain_loop_reference(case):
    pr = _problem(case, n=6, seed=1)
    batch = wmmse(pr)
    atol = 1e-9 * pr.p_max_w.max()
    for i in range(pr.n):
        p_ref, tr_ref = plain_wmmse(pr.G[i], pr.noise_w, pr.p_max_w, pr.users_per_cell, pr.bs_sum_power_w)
        np.testing.assert_allclose(batch.p[i], p_ref, rtol=1e-7, atol=atol)
        np.testing.assert_allclose(_one(pr, i), p_ref, rtol=1e-7, atol=atol)
        one = wmmse(pr.subset(slice(i, i + 1)))
        assert one.iterations == len(tr_ref) - 1
        np.testing.assert_allclose(one.trace[:, 0], tr_ref, rtol=1e-9)


@pytest.mark.parametrize("case", ["3cell", "7cell-sum"])
def test_equals_plain_loop_reference_at_fixed_iterations(case):
    pr = _problem(case, n=5, seed=2)
    batch = wmmse(pr, max_iter=7, tol=-1.0)                      # tol < 0: exactly 7 iterations
    for i in range(pr.n):
        p_ref, _ = plain_wmmse(pr.G[i], pr.noise_w, pr.p_max_w, pr.users_per_cell, pr.bs_sum_power_w,
                               max_iter=7, tol=-1.0)
        np.testing.assert_allclose(batch.p[i], p_ref, rtol=1e-9, atol=1e-12 * pr.p_max_w.max())


def test_no_cellular_structure_with_bs_limit_bisects_and_agrees():
    """A G without the cellular structure but K > 1 users per BS: per-link divisors, lambda_b by bisection."""
    pr = _not_cellular(_problem("7cell-sum", n=5, seed=4))
    assert not W._is_cellular(pr.G, pr.users_per_cell)
    batch = wmmse(pr)
    for i in range(pr.n):
        p_ref, _ = plain_wmmse(pr.G[i], pr.noise_w, pr.p_max_w, pr.users_per_cell, pr.bs_sum_power_w)
        np.testing.assert_allclose(batch.p[i], p_ref, rtol=1e-7, atol=1e-9 * pr.p_max_w.max())
        np.testing.assert_allclose(_one(pr, i), batch.p[i], rtol=1e-9, atol=1e-10 * pr.p_max_w.max())
    sums = batch.p.reshape(pr.n, pr.cells, pr.users_per_cell).sum(-1)
    assert (sums <= pr.bs_sum_power_w * (1 + 1e-9)).all()


# ---- invariants of the single path ------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("solver", [wmmse, fp])
def test_single_path_monotone_feasible_and_consistent(case, solver):
    pr = _problem(case, n=12, seed=6)
    for i in range(pr.n):
        one = pr.subset(slice(i, i + 1))
        r = solver(one)
        assert (np.diff(r.trace[:, 0]) >= -1e-10).all()
        assert r.trace.shape == (r.iterations + 1, 1) and r.value[0] == r.trace[-1, 0]
        np.testing.assert_allclose(r.value, sum_rate(one.G, r.p, one.noise_w), rtol=1e-9)
        assert (r.p >= 0).all() and (r.p <= pr.p_max_w * (1 + 1e-12)).all()
        if pr.bs_sum_power_w is not None:
            assert (r.p.reshape(pr.cells, pr.users_per_cell).sum(-1) <= pr.bs_sum_power_w * (1 + 1e-9)).all()


def test_single_path_uses_the_bs_budget_where_it_binds():
    pr = _problem("3cell-sum40", n=20, seed=7)                  # P_bs = 10 W < 2 p_max: often binding
    free = wmmse(pr.with_bs_sum_power(None))
    hits = 0
    for i in range(pr.n):
        p = _one(pr, i).reshape(pr.cells, pr.users_per_cell)
        p_free = free.p[i].reshape(pr.cells, pr.users_per_cell)
        for b in range(pr.cells):
            assert p[b].sum() <= pr.bs_sum_power_w * (1 + 1e-12)
            if p_free[b].sum() > 1.5 * pr.bs_sum_power_w:          # clearly over without the limit
                hits += 1
                np.testing.assert_allclose(p[b].sum(), pr.bs_sum_power_w, rtol=1e-9)
    assert hits > 0


# ---- the closed-form multiplier -----------------------------------------------------------------

def _level_by_bisection(a2: np.ndarray, c2: np.ndarray, den: float, P: float) -> float:
    """den + lambda for one BS: the smallest t >= den with sum_k min(c2_k, a2_k / t^2) <= P (bisection)."""
    def f(t: float) -> float:
        return float(np.minimum(c2, a2 / t**2).sum())

    if f(den) <= P:
        return den
    lo, hi = den, max(den, 1.0)
    while f(hi) > P:
        hi *= 2.0
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > P else (lo, mid)
    return hi


@pytest.mark.parametrize("K", [1, 2, 5, 8])
def test_closed_form_bs_level_equals_bisection(K):
    rng = np.random.default_rng(K)
    B, m = 7, 60
    a2 = rng.exponential(1.0, (B, K, m)) * 10.0 ** rng.uniform(-6, 6, (B, 1, m))
    a2[0, :, 0] = 0.0                                             # a BS that sends nothing
    a2[1, 0, 1] = 0.0                                             # one silent user
    c2 = np.full((B, K, 1), 2.0)
    den = rng.exponential(1.0, (B, 1, m)) * 10.0 ** rng.uniform(-3, 3, (B, 1, m))
    for P in (0.5, 2.0, 2.0 * K, 5.0 * K):                        # P = c2 (an edge) and P >= sum of caps
        t = W._bs_level(a2, c2, den, P)
        for b in range(B):
            for j in range(m):
                want = _level_by_bisection(a2[b, :, j], c2[b, :, 0], den[b, 0, j], P)
                assert t[b, 0, j] == pytest.approx(want, rel=1e-12)
        powers = np.minimum(c2, a2 / np.maximum(t, W.TINY) ** 2).sum(axis=1)
        assert (powers <= P * (1 + 1e-12)).all()


@pytest.mark.parametrize("K", [1, 2, 8])
def test_single_path_bs_level_equals_bisection(K):
    """The single path's per-BS divisor (candidates over the same-BS mask) against bisection."""
    B, L = 7, 7 * K
    G = Scenario.preset("7cell", users_per_cell=K).sample(1, np.random.default_rng(K)).G[0]   # cellular
    rng = np.random.default_rng(10 + K)
    for P in (0.5, 2.0, 2.0 * K, 5.0 * K):
        one = W._One(G, 1.0, np.full(L, 2.0), np.ones(L), K, P)
        for trial in range(20):
            a2 = rng.exponential(1.0, L) * np.repeat(10.0 ** rng.uniform(-6, 6, B), K)
            if trial == 0:
                a2[:K] = 0.0                                      # a BS that sends nothing
                a2[K] = 0.0                                       # one silent user
            d_b = rng.exponential(1.0, B) * 10.0 ** rng.uniform(-3, 3, B)
            t = W._one_level(one, a2, np.repeat(d_b, K))             # [B, 1]
            for b in range(B):
                want = _level_by_bisection(a2[b * K:(b + 1) * K], np.full(K, 2.0), d_b[b], P)
                assert t[b, 0] == pytest.approx(want, rel=1e-12)


# ---- dropping converged realizations changes nothing ----------------------------------------------

@pytest.mark.parametrize("solver", [wmmse, fp])
@pytest.mark.parametrize("case", ["3cell", "7cell-sum", "links"])
def test_dropping_converged_realizations_changes_nothing(solver, case, monkeypatch):
    pr = _problem(case, n=50, seed=8)
    monkeypatch.setattr(W, "COMPACT_BELOW", 0.0)                 # never drop
    keep_all = solver(pr)
    monkeypatch.setattr(W, "COMPACT_BELOW", 0.95)                # drop at every chance
    monkeypatch.setattr(W, "COMPACT_MIN_ENTRIES", 1)
    dropped = solver(pr)
    assert dropped.iterations == keep_all.iterations
    np.testing.assert_allclose(dropped.trace, keep_all.trace, rtol=1e-12)
    np.testing.assert_allclose(dropped.p, keep_all.p, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(dropped.value, dropped.trace[-1])
    # a realization's result does not depend on the batch around it
    perm = np.random.default_rng(0).permutation(pr.n)
    shuffled = solver(pr.subset(perm))
    np.testing.assert_allclose(shuffled.p, dropped.p[perm], rtol=1e-10, atol=1e-15)


def test_frozen_realizations_keep_their_trace_value():
    pr = _problem("3cell", n=40, seed=9)
    r = wmmse(pr)
    for i in range(pr.n):
        col = r.trace[:, i]
        changed = np.flatnonzero(np.diff(col) != 0)
        last = changed[-1] + 1 if changed.size else 0
        assert (col[last:] == r.value[i]).all()


# ---- wmmse_one's interface ------------------------------------------------------------------------

def test_wmmse_one_interface():
    pr = _problem("3cell-sum40", n=2, seed=10)
    G, s2, pm = pr.G[0], pr.noise_w, pr.p_max_w
    p0 = np.array([1.0, 30.0, -1.0, 5.0, 8.0, 9.0])
    start = wmmse_one(G, s2, pm, p0=p0, max_iter=0, users_per_cell=2, bs_sum_power_w=pr.bs_sum_power_w)
    np.testing.assert_allclose(start, pr.project(p0[None])[0], rtol=1e-15)
    scalar = wmmse_one(G, s2, float(pm[0]), users_per_cell=2, bs_sum_power_w=pr.bs_sum_power_w)
    np.testing.assert_array_equal(scalar, wmmse_one(G, s2, pm, users_per_cell=2, bs_sum_power_w=pr.bs_sum_power_w))
    np.testing.assert_allclose(wmmse(pr, p0=np.tile(p0, (2, 1))).p[0],
                               wmmse_one(G, s2, pm, p0=p0, users_per_cell=2, bs_sum_power_w=pr.bs_sum_power_w),
                               rtol=1e-9, atol=1e-10 * pm.max())
    for bad in (dict(G=G[:, :5]), dict(G=pr.G), dict(p_max_w=pm[:4]), dict(users_per_cell=4), dict(p0=p0[:3])):
        args = dict(G=G, noise_w=s2, p_max_w=pm) | bad
        with pytest.raises(ProblemError):
            wmmse_one(**args)
