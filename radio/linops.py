"""Fast products with the gain matrix, exploiting the cellular structure when it is there.

In the cellular model G[l, j] = Gu[l, cell(j)]: every link of a cell reaches user l over the same
downlink. Then G p = Gu (per-cell sums of p) and G^T y = (Gu^T y)[cell(l)], K times fewer flops than
the dense product. For a user-supplied G without that structure the dense product is used.
"""

from __future__ import annotations

import numpy as np

from radio.problem import Problem


class GainOps:
    """G @ x and G^T @ y for a batch, x, y [n, L]."""

    def __init__(self, problem: Problem) -> None:
        G, K, B = problem.G, problem.users_per_cell, problem.cells
        self.n, self.L, self.K, self.B = problem.n, problem.L, K, B
        self.diag = np.einsum("nll->nl", G).copy()
        Gu = G[:, :, ::K]
        self.structured = K > 1 and bool(np.array_equal(np.repeat(Gu, K, axis=2), G))
        if self.structured:
            # one contiguous [n, L] slab per BS: B fused multiply-adds beat a batched tiny matmul
            self.Gu_b = [np.ascontiguousarray(Gu[:, :, b]) for b in range(B)]
        else:
            self.G = G
            self.GT = np.ascontiguousarray(G.transpose(0, 2, 1))

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """[n, L] (G x)_l = sum_j G_lj x_j."""
        if self.structured:
            K = self.K
            xs = x[:, 0::K].copy()                                       # per-cell sums [n, B]
            for k in range(1, K):
                xs += x[:, k::K]
            out = self.Gu_b[0] * xs[:, 0:1]
            for b in range(1, self.B):
                out += self.Gu_b[b] * xs[:, b:b + 1]
            return out
        return np.matmul(self.G, x[..., None])[..., 0]

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """[n, L] (G^T y)_l = sum_j G_jl y_j."""
        if self.structured:
            out = np.empty_like(y)
            for b in range(self.B):
                out[:, b * self.K:(b + 1) * self.K] = np.einsum("nl,nl->n", self.Gu_b[b], y)[:, None]
            return out
        return np.matmul(self.GT, y[..., None])[..., 0]
