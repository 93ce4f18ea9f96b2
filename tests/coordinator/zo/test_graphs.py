"""Pure math of Algorithm 1 (paper 2): estimator, perturbations, eqs. (7)/(8)/(9), relays, graphs."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.zo.graphs import (
    diameter,
    fully_connected,
    hop_distances,
    messages_per_iteration,
    random_connected_graph,
)
from tests.bs_agent.zo.helpers import _agents


@pytest.mark.parametrize("seed", range(6))
def test_random_graph_is_connected_with_bounded_degree(seed):
    nb = random_connected_graph(9, 2, np.random.default_rng(seed))
    assert all(len(x) <= 2 for x in nb)
    assert all(i in nb[j] for i in range(9) for j in nb[i])          # undirected
    assert min(hop_distances(nb, 0)) >= 0
    assert messages_per_iteration(nb) == sum(len(x) for x in nb)
    assert messages_per_iteration(fully_connected(5)) == 20


@pytest.mark.parametrize("seed", range(4))
def test_relays_reach_every_node_within_the_diameter(seed):
    n = 7
    nb = random_connected_graph(n, 2, np.random.default_rng(seed))
    D = diameter(nb)
    agents = _agents("graph", n=n, nb=nb, d_max=D, seed=seed)
    got = [set() for _ in range(n)]
    for k in range(D + 1):
        t = 4 * (k + 1)
        out = {ag.index: ag.end_iteration(np.zeros(2), np.ones(2)) for ag in agents}
        for ag in agents:
            for r in ag.neighbours:
                agents[r].deliver(out[ag.index], t)
                got[r].update((j, tt) for j, tt, _ in out[ag.index])
        for ag in agents:
            ag.update(t)
    for i in range(n):
        dist = hop_distances(nb, i)
        for j in range(n):
            if j != i:   # d_j^0 reaches i after dist(i, j) - 1 relays
                assert (j, 0) in got[i], (i, j, dist[j])
                assert all((j, t) in got[i] for t in range(D + 1 - dist[j] + 1))
