"""Tests of radio.optimum: the certified global optimum (branch-and-bound), the certified bracket and every
cell's optimum without inter-cell interference."""

from __future__ import annotations

import numpy as np
import pytest

from radio import optimum as opt
from radio.problem import Problem, ProblemError
from radio.rates import sum_rate

EPS = 1e-4
NOISE_W = 10 ** ((-150 + 10 * np.log10(20e6) + 9 - 30) / 10)   # -174 dBm/Hz + 20 MHz + 9 dB NF
P_MAX_W = 10 ** ((43 - 30) / 10)                                # 43 dBm


# ---------------------------------------------------------------- instances


def cells_problem(rng: np.random.Generator, n: int = 1, B: int = 3, K: int = 2,
                  bs_sum_power_w: float | None = None) -> Problem:
    """Paper-1-like gains: own BS at 50-1000 m, others at 1000-2500 m, (1 + d/0.392)^-3.76 x Exp(1)."""
    L = B * K
    cell = np.arange(L) // K
    d = rng.uniform(1000.0, 2500.0, size=(n, L, B))
    d[:, np.arange(L), cell] = rng.uniform(50.0, 1000.0, size=(n, L))
    H = (1.0 + d / 0.392) ** -3.76 * rng.exponential(1.0, size=(n, L, B))   # [n, user, BS]
    return Problem(H[:, :, cell], NOISE_W, P_MAX_W, cells=B, users_per_cell=K, bs_sum_power_w=bs_sum_power_w)


def strong_cells_problem(rng: np.random.Generator, n: int = 1, B: int = 2, K: int = 2,
                         bs_sum_power_w: float | None = None, noise_w: float = 0.1) -> Problem:
    """Cell-structured gains with strong inter-cell interference (stresses the cell-structure rules)."""
    L = B * K
    cell = np.arange(L) // K
    H = rng.standard_normal((n, L, B)) ** 2
    H[:, np.arange(L), cell] *= 3.0
    return Problem(H[:, :, cell], noise_w, 10.0, cells=B, users_per_cell=K, bs_sum_power_w=bs_sum_power_w)


def nlink_problem(rng: np.random.Generator, n: int = 1, N: int = 4) -> Problem:
    """Paper 2: N links, G = h^2 with h ~ N(0, 1), noise 0.5, p_max 10."""
    return Problem(rng.standard_normal((n, N, N)) ** 2, 0.5, 10.0)


# ---------------------------------------------------------------- independent references


def rates(problem: Problem, i: int, P: np.ndarray) -> np.ndarray:
    """Sum-rate of realization i at many power vectors P [m, L]."""
    return sum_rate(np.broadcast_to(problem.G[i], (P.shape[0], problem.L, problem.L)), P, problem.noise_w)


def coordinate_ascent(problem: Problem, i: int, p: np.ndarray, sweeps: int = 30, grid: int = 201) -> float:
    """Plain coordinate ascent: each coordinate set to the best of a grid over its feasible range."""
    p = problem.project(p[None])[0].copy()
    for _ in range(sweeps):
        for l in range(problem.L):
            hi = problem.p_max_w[l]
            if problem.bs_sum_power_w is not None:
                same = problem.cell_of_link() == problem.cell_of_link()[l]
                hi = min(hi, problem.bs_sum_power_w - (p[same].sum() - p[l]))
            cand = np.repeat(p[None], grid, axis=0)
            cand[:, l] = np.linspace(0.0, max(hi, 0.0), grid)
            p = cand[int(np.argmax(rates(problem, i, cand)))]
    return float(rates(problem, i, p[None])[0])


def grid_optimum(problem: Problem, i: int, points: int) -> tuple[float, float]:
    """(best value on a full grid refined by coordinate ascent, crude grid-error estimate)."""
    axes = [np.linspace(0.0, pm, points) for pm in problem.p_max_w]
    P = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, problem.L)
    v = rates(problem, i, P)
    best = float(v.max())
    refined = max(coordinate_ascent(problem, i, P[k], sweeps=10, grid=401) for k in np.argsort(v)[-5:])
    return max(best, refined), refined - best


def random_search(problem: Problem, i: int, rng: np.random.Generator, m: int = 20000) -> float:
    """Best of m random feasible points (uniform, on/off patterns, and scaled to the per-BS limit)."""
    P = rng.uniform(size=(m, problem.L)) * problem.p_max_w
    P[: m // 4] = (rng.uniform(size=(m // 4, problem.L)) < 0.5) * problem.p_max_w
    return float(rates(problem, i, problem.project(P)).max())


def assert_consistent(problem: Problem, res: opt.OptimumResult, eps: float = EPS) -> None:
    """Value recomputed at the powers, powers feasible, upper >= value, gap <= eps when certified."""
    np.testing.assert_allclose(res.value, sum_rate(problem.G, res.p, problem.noise_w), rtol=0, atol=1e-12)
    assert np.all(res.p >= 0.0) and np.all(res.p <= problem.p_max_w * (1 + 1e-12))
    if problem.bs_sum_power_w is not None:
        sums = res.p.reshape(problem.n, problem.cells, problem.users_per_cell).sum(axis=2)
        assert np.all(sums <= problem.bs_sum_power_w * (1 + 1e-12))
    assert np.all(res.upper >= res.value)
    np.testing.assert_allclose(res.gap, res.upper - res.value)
    assert np.all(res.certified)
    assert np.all(res.gap <= eps * (1 + 1e-9))


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("make", [
    lambda rng: nlink_problem(rng, n=3, N=2),
    lambda rng: nlink_problem(rng, n=2, N=3),
    lambda rng: cells_problem(rng, n=2, B=1, K=3),
    lambda rng: strong_cells_problem(rng, n=2, B=1, K=3, noise_w=1.0),
    lambda rng: cells_problem(rng, n=2, B=3, K=1),
])
def test_agrees_with_exhaustive_grid(make) -> None:
    rng = np.random.default_rng(11)
    problem = make(rng)
    res = opt.optimum(problem)
    assert_consistent(problem, res)
    points = 401 if problem.L == 2 else 61
    for i in range(problem.n):
        ref, _ = grid_optimum(problem, i, points)
        assert ref <= res.upper[i] + 1e-9                     # nothing beats the certified upper bound
        assert res.value[i] >= ref - EPS - 1e-9               # and the value is within eps of the grid's best


@pytest.mark.parametrize("make", [
    lambda rng: nlink_problem(rng, n=4, N=5),
    lambda rng: cells_problem(rng, n=4, B=3, K=2),
    lambda rng: strong_cells_problem(rng, n=4, B=2, K=3),
])
def test_beats_heuristics(make) -> None:
    rng = np.random.default_rng(5)
    problem = make(rng)
    res = opt.optimum(problem)
    assert_consistent(problem, res)
    full = sum_rate(problem.G, problem.p_full(), problem.noise_w)
    for i in range(problem.n):
        others = [
            full[i],
            float(rates(problem, i, rng.uniform(size=(50, problem.L)) * problem.p_max_w).max()),
            coordinate_ascent(problem, i, problem.p_full()[i]),
            coordinate_ascent(problem, i, rng.uniform(size=problem.L) * problem.p_max_w),
            random_search(problem, i, rng),
        ]
        assert max(others) <= res.upper[i] + 1e-9
        assert res.value[i] >= max(others) - EPS


@pytest.mark.parametrize("make", [
    lambda rng: cells_problem(rng, n=4, B=3, K=2, bs_sum_power_w=25.0),
    lambda rng: strong_cells_problem(rng, n=4, B=2, K=2, bs_sum_power_w=12.0),
    lambda rng: strong_cells_problem(rng, n=3, B=1, K=4, bs_sum_power_w=15.0, noise_w=1.0),
])
def test_per_bs_sum_power(make) -> None:
    rng = np.random.default_rng(9)
    problem = make(rng)
    res = opt.optimum(problem)
    assert_consistent(problem, res)
    for i in range(problem.n):
        others = [random_search(problem, i, rng, m=50000), coordinate_ascent(problem, i, problem.p_full()[i])]
        assert max(others) <= res.upper[i] + 1e-9
        assert res.value[i] >= max(others) - EPS
    # the sum limit binds: the unconstrained optimum is never worse
    free = opt.optimum(problem.with_bs_sum_power(None))
    assert np.all(free.upper >= res.value - 1e-9)


@pytest.mark.parametrize("make", [
    lambda rng: strong_cells_problem(rng, n=3, B=2, K=2),
    lambda rng: strong_cells_problem(rng, n=3, B=2, K=2, bs_sum_power_w=12.0),
    lambda rng: strong_cells_problem(rng, n=2, B=1, K=4, noise_w=1.0),
    lambda rng: nlink_problem(rng, n=3, N=4),
])
def test_pruning_rules_match_plain_mm_branch_and_bound(make) -> None:
    """The cell-structure, monotonicity and centred-form rules against the bare MM bound."""
    problem = make(rng=np.random.default_rng(21))
    res = opt.optimum(problem)
    for i in range(problem.n):
        inst = opt._instance(problem.G[i], problem.noise_w, problem.p_max_w, problem.cell_of_link(),
                             problem.bs_sum_power_w, plain=True)
        _, value, upper, _, _ = opt._solve_one(inst, EPS, 2_000_000, None, 1024)
        assert value <= res.upper[i] + 1e-9 and res.value[i] <= upper + 1e-9


def test_uncertified_when_budget_runs_out() -> None:
    problem = nlink_problem(np.random.default_rng(2), n=2, N=6)
    res = opt.optimum(problem, max_boxes=1)
    assert not np.any(res.certified)
    assert np.all(res.gap > EPS) and np.all(res.upper >= res.value)
    full = opt.optimum(problem)
    assert np.all(full.value <= res.upper + 1e-9)            # the early bound is still an upper bound


def test_bracket_contains_optimum() -> None:
    rng = np.random.default_rng(3)
    for problem in [cells_problem(rng, n=4), strong_cells_problem(rng, n=4, B=2, K=3),
                    cells_problem(rng, n=3, bs_sum_power_w=25.0), nlink_problem(rng, n=3, N=5)]:
        lower, upper = opt.bracket(problem)
        res = opt.optimum(problem)
        assert np.all(lower <= res.upper + 1e-9)
        assert np.all(res.value <= upper + 1e-9)
        assert np.all(lower >= sum_rate(problem.G, problem.p_full(), problem.noise_w) - 1e-9)


def test_bracket_large_network() -> None:
    problem = cells_problem(np.random.default_rng(4), n=2, B=7, K=8)
    lower, upper = opt.bracket(problem)
    assert lower.shape == (2,) and np.all(lower <= upper)
    assert np.all(lower >= sum_rate(problem.G, problem.p_full(), problem.noise_w) - 1e-9)
    assert np.all(upper - lower < 0.1 * upper)               # inter-cell interference is weak here


def test_single_cell_upper_is_the_cell_optimum() -> None:
    """With one cell there is nothing to remove: the bracket's upper bound is the certified optimum."""
    problem = strong_cells_problem(np.random.default_rng(8), n=3, B=1, K=5, noise_w=1.0)
    lower, upper = opt.bracket(problem)
    res = opt.optimum(problem)
    np.testing.assert_allclose(upper, res.upper, atol=1e-12)
    assert np.all(lower <= res.upper + 1e-9)


def _without_intercell(problem: Problem) -> Problem:
    """The same network with every inter-cell gain set to 0."""
    cell = problem.cell_of_link()
    G = np.where(cell[:, None] == cell[None, :], problem.G, 0.0)
    return Problem(G, problem.noise_w, problem.p_max_w, cells=problem.cells, users_per_cell=problem.users_per_cell,
                   bs_sum_power_w=problem.bs_sum_power_w)


@pytest.mark.parametrize("make", [
    lambda rng: cells_problem(rng, n=4, B=3, K=2),
    lambda rng: strong_cells_problem(rng, n=4, B=2, K=3),
    lambda rng: cells_problem(rng, n=3, B=2, K=2, bs_sum_power_w=15.0),
])
def test_cell_optimum_is_each_cells_optimum_from_its_own_gains(make) -> None:
    """Without inter-cell gains the network is its cells side by side, so cell_optimum is the certified global
    optimum; with them it is unchanged (BS b uses its own users' direct gains only: decentralized), feasible, and
    a lower bound of the bracket at least as good as bracket()'s lower bound allows."""
    problem = make(np.random.default_rng(11))
    p = opt.cell_optimum(problem)
    alone = _without_intercell(problem)
    np.testing.assert_array_equal(p, opt.cell_optimum(alone))
    best = opt.optimum(alone)
    np.testing.assert_allclose(sum_rate(alone.G, p, alone.noise_w), best.value, atol=2 * EPS)
    assert np.all(p >= 0) and np.all(p <= problem.p_max_w + 1e-12)
    if problem.bs_sum_power_w is not None:
        assert np.all(p.reshape(problem.n, problem.cells, -1).sum(-1) <= problem.bs_sum_power_w * (1 + 1e-9))
    lower, upper = opt.bracket(problem)
    assert np.all(sum_rate(problem.G, p, problem.noise_w) <= lower + 1e-9)


def test_cell_optimum_of_one_cell_beats_every_on_off_allocation() -> None:
    """One cell of 4 users by hand: no allocation of 0 / Pmax powers (all 16) does better."""
    problem = strong_cells_problem(np.random.default_rng(12), n=5, B=1, K=4, noise_w=0.5)
    value = sum_rate(problem.G, opt.cell_optimum(problem), problem.noise_w)
    for bits in range(16):
        on = np.array([(bits >> k) & 1 for k in range(4)], float) * problem.p_max_w
        assert np.all(sum_rate(problem.G, np.broadcast_to(on, (5, 4)), problem.noise_w) <= value + 1e-9)


def test_rejects_too_many_links_and_bad_eps() -> None:
    problem = nlink_problem(np.random.default_rng(0), N=9)
    with pytest.raises(ProblemError, match=r"\bL\b"):
        opt.optimum(problem)
    with pytest.raises(ProblemError, match="eps"):
        opt.optimum(nlink_problem(np.random.default_rng(0), N=3), eps=0.0)
    with pytest.raises(ProblemError, match="users_per_cell"):
        opt.bracket(Problem(np.ones((1, 9, 9)), 1.0, 1.0, cells=1, users_per_cell=9))
    with pytest.raises(ProblemError, match="users_per_cell"):
        opt.cell_optimum(Problem(np.ones((1, 9, 9)), 1.0, 1.0, cells=1, users_per_cell=9))


@pytest.mark.parametrize("make", [
    lambda rng: nlink_problem(rng, N=5),
    lambda rng: strong_cells_problem(rng, B=2, K=2),
    lambda rng: cells_problem(rng, B=3, K=2),
])
def test_box_bounds_hold_on_random_points(make) -> None:
    """Inside random boxes: f <= the box's upper bound and the gradient lies in [g_lo, g_hi]."""
    rng = np.random.default_rng(13)
    problem = make(rng)
    inst = opt._instance(problem.G[0], problem.noise_w, problem.p_max_w, problem.cell_of_link(), None)
    M, m = 64, 200
    scale = rng.choice([1.0, 1e-2, 1e-4], size=(M, 1))                # big and tiny boxes
    a = rng.uniform(size=(M, problem.L)) * (1 - scale) * problem.p_max_w
    b = a + rng.uniform(size=(M, problem.L)) * scale * problem.p_max_w
    Da, g_lo, g_hi = opt._deriv_bounds(inst, a, b)
    ub, _ = opt._upper(inst, a, b, Da, g_lo, g_hi)
    for k in range(M):
        P = a[k] + rng.uniform(size=(m, problem.L)) * (b[k] - a[k])
        P[:4] = np.stack([a[k], b[k], np.where(np.arange(problem.L) % 2, a[k], b[k]), 0.5 * (a[k] + b[k])])
        assert np.all(opt._f(inst, P) <= ub[k] + 1e-12 * abs(ub[k]))
        grad = opt._grad(inst, P)
        tol = 1e-9 * np.abs(grad).max()
        assert np.all(grad >= g_lo[k] - tol) and np.all(grad <= g_hi[k] + tol)
