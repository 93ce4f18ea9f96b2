"""Pure math of Algorithm 1 (paper 2): estimator, perturbations, eqs. (7)/(8)/(9), relays, graphs."""

from __future__ import annotations

import numpy as np
import pytest

from bs_agent.zo.agent import ZOHyper, ZOLinkAgent
from bs_agent.zo.algorithm import (
    RelayBuffer,
    perturbation,
    step_size,
    two_point_estimate,
    update_async,
    update_graph,
    update_sync,
)
from bs_agent.zo.policy import (
    MLPSpec,
)
from tests.bs_agent.zo.helpers import _agents, _sync_round


def test_two_point_estimate_is_unbiased_on_a_quadratic():
    # f(x) = -0.5 x^T A x + b^T x; E_u[(f(x + mu u) - f(x)) / mu u] = grad f(x) - 0 (+ O(mu) term
    # that vanishes for a quadratic: E[u u^T A u] = 0), so the mean over many u -> grad f(x).
    rng = np.random.default_rng(0)
    n = 6
    M = rng.standard_normal((n, n))
    A = M @ M.T / n + np.eye(n)
    b = rng.standard_normal(n)
    x = rng.standard_normal(n)

    def f(z):
        return -0.5 * z @ A @ z + b @ z

    grad = -A @ x + b
    mu = 0.1
    K = 40000
    est = np.zeros(n)
    for k in range(K):
        u = perturbation(123, 0, k, n)
        est += two_point_estimate(f(x + mu * u), f(x), mu, u)
    est /= K
    assert np.linalg.norm(est - grad) / np.linalg.norm(grad) < 0.08


def test_perturbations_regenerate_identically_and_differ_across_links_and_iterations():
    a = perturbation(7, 3, 11, 50)
    assert np.array_equal(a, perturbation(7, 3, 11, 50))
    assert not np.allclose(a, perturbation(7, 4, 11, 50))
    assert not np.allclose(a, perturbation(7, 3, 12, 50))
    assert not np.allclose(a, perturbation(8, 3, 11, 50))
    assert np.array_equal(perturbation(7, 3, -1, 5), np.zeros(5))     # u^{-1} = 0
    # an agent's own buffer regenerates the same vectors
    ag = ZOLinkAgent(3, MLPSpec((7, 4, 1)), ZOHyper(), 7)
    assert np.array_equal(ag.u(11), perturbation(7, 3, 11, ag.spec.n_params))


def test_step_size():
    assert step_size(0, 1.0, 0.5) == 1.0
    assert step_size(3, 2.0, 0.5) == pytest.approx(1.0)


def test_eq8_with_zero_offsets_is_eq7_exactly():
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(30)
    u_k, u_km1 = rng.standard_normal(30), rng.standard_normal(30)
    d = [float(np.float32(x)) for x in rng.standard_normal(5)]
    a = update_sync(theta, d, u_k, 0.7, 1.3)
    b = update_async(theta, d, u_k, 0.7, [], u_km1, 0.9, 1.3)
    assert np.array_equal(a, b)


def test_eq9_on_a_fully_connected_synchronous_graph_is_eq7_exactly():
    rng = np.random.default_rng(2)
    theta = rng.standard_normal(30)
    u = rng.standard_normal(30)
    d = [float(np.float32(x)) for x in rng.standard_normal(5)]
    a = update_sync(theta, d, u, 0.5, 1.0)
    entries = [(j, 4, d[j]) for j in (3, 0, 4, 1, 2)]          # arrival order must not matter
    b = update_graph(theta, entries, {4: u}, 0.5, 1.0)
    assert np.array_equal(a, b)


def test_eq8_uses_stale_d_with_previous_perturbation():
    theta = np.zeros(3)
    u_k, u_km1 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    out = update_async(theta, [2.0], u_k, 0.5, [4.0], u_km1, 0.25, 2.0)
    assert np.allclose(out, [0.5, 0.5, 0.0])






@pytest.mark.parametrize("mode", ["async", "graph"])
def test_agents_in_async_and_graph_mode_match_sync_when_aligned_and_fully_connected(mode):
    sync, other = _agents("sync"), _agents(mode)
    rng = np.random.default_rng(3)
    for k in range(4):
        d = rng.standard_normal(4)
        a = _sync_round(sync, k, d, 4 * (k + 1))
        b = _sync_round(other, k, d, 4 * (k + 1))
        for x, y in zip(a, b, strict=False):
            assert np.array_equal(x, y)


def test_stale_and_duplicate_messages_are_handled_as_the_equations_say():
    ag = _agents("async")[1]
    # iteration 0: only its own d (the slower user's d_2^0 comes late)
    ag.end_iteration(np.zeros(2), np.full(2, 1.0))
    ag.update(4)
    th1 = ag.theta.copy()
    # iteration 1: fresh d_0^1, stale d_2^0 (pairs with u^0), a duplicate of it, and a too-old entry
    ag.end_iteration(np.zeros(2), np.full(2, 0.5))
    ag.deliver([(0, 1, 0.25)], 8)
    ag.deliver([(2, 0, 2.0)], 8)
    ag.deliver([(2, 0, 2.0)], 8)
    ag.update(8)
    expect = update_async(th1, [float(np.float32(0.5)), 0.25], ag.u(1), ag.gamma(1), [2.0], ag.u(0),
                          ag.gamma(0), 1.0)
    assert np.array_equal(ag.theta, expect)
    assert ag.buffer.duplicates == 1
    # iteration 2: an entry two iterations old is stale for eq. (8) and discarded
    ag.end_iteration(np.zeros(2), np.zeros(2))
    ag.deliver([(3, 0, 9.0)], 12)
    ag.update(12)
    assert ag.buffer.stale == 1


def test_relay_buffer_drops_duplicates_and_old_entries():
    rb = RelayBuffer(0, d_max=2)
    assert rb.offer((1, 5, 1.0), 5)
    assert not rb.offer((1, 5, 1.0), 5)
    assert not rb.offer((2, 1, 1.0), 5)              # 5 - 1 > d_max
    assert rb.duplicates == 1 and rb.stale == 1
    assert rb.take_relays(5) == [(1, 5, 1.0)]
    assert rb.take_applicable(5) == [(1, 5, 1.0)]








def test_decentralized_eq7_with_paper_steps_climbs_a_coupled_concave_utility():
    # N links, each knowing only its own utility U_i(theta) (which depends on every link's block), form
    # d_i^k from noisy two-window measurements (eq. 6) and apply eq. (7) with gamma^k = gamma0/sqrt(k+1):
    # the sum of the d's is the two-point estimate of grad sum_i U_i, so theta climbs to the optimum.
    N, n = 3, 4
    rng = np.random.default_rng(0)
    M = rng.standard_normal((N * n, N * n))
    A = M @ M.T / (N * n) + np.eye(N * n)
    x_star = rng.standard_normal(N * n)
    w = rng.dirichlet(np.ones(N))                       # U_i = w_i f: every link sees a share of f

    def f(z):
        return -0.5 * (z - x_star) @ A @ (z - x_star)

    noise = np.random.default_rng(1)
    thetas = [np.zeros(n) for _ in range(N)]
    f0 = f(np.concatenate(thetas))
    mu, gamma0 = 0.05, 0.02
    for k in range(6000):
        us = [perturbation(11, i, k, n) for i in range(N)]
        z = np.concatenate(thetas)
        zp = np.concatenate([t + mu * u for t, u in zip(thetas, us, strict=True)])
        d = [w[i] * (f(zp) - f(z)) + 1e-3 * noise.standard_normal() for i in range(N)]   # eq. (6) per link
        g = step_size(k, gamma0, 0.5)
        thetas = [update_sync(thetas[i], d, us[i], g, mu) for i in range(N)]
    z = np.concatenate(thetas)
    assert f(z) > 0.01 * f0                            # >= 99 % of the gap to the optimum (f = 0) closed
    assert np.linalg.norm(z - x_star) < 0.1 * np.linalg.norm(x_star)










