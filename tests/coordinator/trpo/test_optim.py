"""The TRPO numerical core and the BaseStation's shares, against analytic oracles and references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bs_agent.trpo.nets import flat_params
from coordinator.trpo.optim import conjugate_gradient, end_of_episode_returns, line_search, trpo_step
from tests.bs_agent.trpo.helpers import tiny_bs


def test_cg_solves_known_spd_system():
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((8, 8))
    A = torch.tensor(Q @ Q.T + 8 * np.eye(8))
    b = torch.tensor(rng.standard_normal(8))
    res = conjugate_gradient(lambda v: A @ v, b, iters=50, tol=1e-20)
    assert torch.allclose(res.x, torch.linalg.solve(A, b), atol=1e-10)
    assert res.residual < 1e-8


def test_step_scaled_to_trust_region():
    bs = tiny_bs()
    n = float(bs.n_samples())
    g = bs.policy_gradient() / n
    F = lambda v: bs.fisher_vector_product(v) / n + 1e-3 * v  # noqa: E731
    step, cg, _ = trpo_step(g, F, delta=0.01, cg_iters=5)
    assert 0.5 * float(step @ F(step)) == pytest.approx(0.01, rel=1e-9)


def test_line_search_accepts_within_trust_region_or_restores_exactly():
    bs = tiny_bs()
    n = float(bs.n_samples())
    th0 = flat_params(bs.policy)
    g = bs.policy_gradient() / n
    F = lambda v: bs.fisher_vector_product(v) / n + 1e-3 * v  # noqa: E731
    step, _, _ = trpo_step(g, F, delta=0.01, cg_iters=10)

    def ev(th):
        s, k = bs.surrogate_kl(th)
        return s / n, k / n

    res = line_search(th0, 50 * step, ev, delta=0.01, zeta=0.9, max_backtracks=80)
    assert res.accepted
    s, k = ev(res.theta)
    assert s >= 0 and k <= 0.01
    # an ascent direction turned around: nothing is acceptable -> the old parameters, bit for bit
    res = line_search(th0, -step, ev, delta=0.01, zeta=0.9, max_backtracks=5)
    assert not res.accepted and torch.equal(res.theta, th0)


def test_end_of_episode_returns():
    R = np.array([2.0, 4.0])
    pos = np.array([0, 2])
    assert np.allclose(end_of_episode_returns(R, pos, 3, 0.5), [2.0 * 0.25, 4.0])
