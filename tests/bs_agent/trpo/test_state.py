"""The TRPO numerical core and the BaseStation's shares, against analytic oracles and references."""

from __future__ import annotations

import numpy as np

from bs_agent.trpo.state import local_csi, relative_order, relative_powers


def test_relative_state_is_the_right_permutation():
    B, K, n = 4, 2, 5
    rng = np.random.default_rng(0)
    g = rng.standard_normal((n, B * K, B))
    for b in range(B):
        order = relative_order(b, B)
        assert sorted(order) == list(range(B)) and order[0] == b
        loc = local_csi(g, b, K).reshape(n, B, K)
        for r, c in enumerate(order):          # relative slot r holds absolute cell c
            for k in range(K):
                assert np.array_equal(loc[:, r, k], g[:, c * K + k, b])
        p = rng.random((n, B * K))
        dec = rng.random((n, B)) < 0.5
        rel = relative_powers(p, dec, b, K)
        assert np.allclose(rel[:, :B * K].reshape(n, B, K), p.reshape(n, B, K)[:, order])
        assert np.array_equal(rel[:, B * K:], dec[:, order].astype(np.float32))
