"""Uncoordinated baselines of paper 1 Sec. IV-B: max-power and random power."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radio.problem import Problem
from radio.rates import sum_rate


@dataclass(frozen=True)
class SolverResult:
    """Powers [n, L] W, sum-rate value [n] bit/s/Hz, objective trace [iters+1, n] (iterative solvers)."""

    p: np.ndarray
    value: np.ndarray
    trace: np.ndarray | None = None
    iterations: int = 0


def max_power(problem: Problem) -> SolverResult:
    """Every BS transmits p_max to every user (its per-BS share under a sum-power limit)."""
    p = problem.p_full()
    return SolverResult(p, sum_rate(problem.G, p, problem.noise_w))


def random_power(problem: Problem, rng: np.random.Generator) -> SolverResult:
    """Powers uniform in [0, p_max] (scaled into the per-BS sum limit if one is set)."""
    p = problem.project(rng.random((problem.n, problem.L)) * problem.p_max_w)
    return SolverResult(p, sum_rate(problem.G, p, problem.noise_w))
