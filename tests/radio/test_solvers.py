"""Classical solvers: monotone objectives, feasibility, KKT at WMMSE's fixed point, equivalences."""

import numpy as np
import pytest
import torch

from radio.channels import Scenario
from radio.fp import fp, fp_direct
from radio.problem import Problem
from radio.rates import sum_rate, sum_rate_torch
from radio.simple import max_power, random_power
from radio.wmmse import wmmse

CASES = {
    "3cell": lambda: Scenario.preset("3cell"),
    "7cell": lambda: Scenario.preset("7cell", users_per_cell=3),
    "links": lambda: Scenario.preset("links", n_links=6),
    "3cell-sum": lambda: Scenario.preset("3cell", bs_sum_power_dbm=43.0),
    "7cell-sum": lambda: Scenario.preset("7cell", users_per_cell=3, bs_sum_power_dbm=43.0),
}


def _problem(case: str, n: int = 40, seed: int = 0) -> Problem:
    return CASES[case]().sample(n, np.random.default_rng(seed))


def _feasible(pr: Problem, p: np.ndarray) -> None:
    assert (p >= 0).all() and (p <= pr.p_max_w * (1 + 1e-12)).all()
    if pr.bs_sum_power_w is not None:
        sums = p.reshape(pr.n, pr.cells, pr.users_per_cell).sum(-1)
        assert (sums <= pr.bs_sum_power_w * (1 + 1e-9)).all()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("solver", [wmmse, fp, fp_direct])
def test_objective_never_decreases_and_powers_feasible(case, solver):
    pr = _problem(case, n=25 if solver is fp_direct else 60)
    r = solver(pr)
    assert (np.diff(r.trace, axis=0) >= -1e-10).all()
    _feasible(pr, r.p)
    np.testing.assert_allclose(r.value, sum_rate(pr.G, r.p, pr.noise_w), rtol=1e-9)
    assert (r.value >= max_power(pr).value - 1e-9).all()  # starts at max power and never decreases


def test_closed_form_fp_equals_wmmse_iterate_by_iterate():
    for case in ("3cell", "7cell-sum", "links"):
        pr = _problem(case)
        a, b = wmmse(pr, max_iter=30, tol=0.0), fp(pr, max_iter=30, tol=0.0)
        np.testing.assert_allclose(a.trace, b.trace, rtol=1e-9)
        np.testing.assert_allclose(a.p, b.p, rtol=1e-6, atol=1e-9 * pr.p_max_w[0])


def _grad(pr: Problem, p: np.ndarray) -> np.ndarray:
    pt = torch.tensor(p, requires_grad=True)
    sum_rate_torch(torch.tensor(pr.G), pt, pr.noise_w).sum().backward()
    return pt.grad.numpy()


@pytest.mark.parametrize("case", ["3cell", "links"])
def test_wmmse_fixed_point_satisfies_kkt(case):
    """Shi et al.'s guarantee is stationarity in the amplitudes v = sqrt(p), |v| <= sqrt(p_max):
    dR/dv = 2 v dR/dp must vanish for interior v and be >= 0 where v sits at its limit. (v = 0 is
    always a WMMSE fixed point, so no sign is implied there for dR/dp.)"""
    pr = _problem(case, n=30)
    r = wmmse(pr, max_iter=20000, tol=1e-14)
    v_max = np.sqrt(pr.p_max_w)
    v = np.sqrt(r.p)
    g_v = 2.0 * v * _grad(pr, r.p) * v_max   # dR/dv in bit/s/Hz per full amplitude
    at_max = v >= v_max * (1 - 1e-7)
    assert at_max.any() and (~at_max).any()
    assert (g_v[at_max] >= -1e-6).all()
    assert np.abs(g_v[~at_max]).max() < 1e-4
    # and the same point is a fixed point of the iteration
    again = wmmse(pr, p0=r.p, max_iter=1, tol=0.0)
    np.testing.assert_allclose(again.p, r.p, rtol=1e-5, atol=1e-9 * pr.p_max_w[0])


def test_batched_equals_one_at_a_time():
    pr = _problem("3cell", n=12)
    for solver in (wmmse, fp, fp_direct):
        batch = solver(pr)
        for i in range(pr.n):
            one = solver(pr.subset(slice(i, i + 1)))
            np.testing.assert_allclose(one.p[0], batch.p[i], rtol=1e-12, atol=1e-15)


def test_fp_direct_is_a_different_algorithm():
    pr = _problem("3cell", n=20)
    a, b = fp(pr, max_iter=3, tol=0.0), fp_direct(pr, max_iter=3, tol=0.0)
    assert not np.allclose(a.trace[1:], b.trace[1:])


def test_random_power_is_seeded_and_in_range():
    pr = _problem("3cell-sum")
    a = random_power(pr, np.random.default_rng(3)).p
    b = random_power(pr, np.random.default_rng(3)).p
    np.testing.assert_array_equal(a, b)
    _feasible(pr, a)
    assert not np.allclose(a, random_power(pr, np.random.default_rng(4)).p)


def test_sum_power_wmmse_uses_the_budget_exactly_when_binding():
    pr = _problem("3cell-sum")
    r = wmmse(pr)
    sums = r.p.reshape(pr.n, pr.cells, pr.users_per_cell).sum(-1)
    assert (sums <= pr.bs_sum_power_w * (1 + 1e-9)).all()
    # the plain-box solution at the same channels (no sum limit) gets at least as much
    free = wmmse(pr.with_bs_sum_power(None))
    assert free.value.mean() >= r.value.mean() - 1e-9 or np.isclose(free.value.mean(), r.value.mean())
