"""Communication graphs of the zeroth-order links (paper 2 Sec. III-C): who sends d to whom."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fully_connected(n: int) -> list[list[int]]:
    """Neighbour lists of the complete graph on n nodes."""
    return [[j for j in range(n) if j != i] for i in range(n)]


def hop_distances(neighbours: Sequence[Sequence[int]], src: int) -> list[int]:
    """BFS hop counts from ``src`` (-1 where unreachable)."""
    dist = [-1] * len(neighbours)
    dist[src] = 0
    frontier = [src]
    while frontier:
        nxt = []
        for a in frontier:
            for b in neighbours[a]:
                if dist[b] < 0:
                    dist[b] = dist[a] + 1
                    nxt.append(b)
        frontier = nxt
    return dist


def diameter(neighbours: Sequence[Sequence[int]]) -> int:
    """Longest shortest path; raises ValueError if the graph is not connected."""
    best = 0
    for s in range(len(neighbours)):
        d = hop_distances(neighbours, s)
        if min(d) < 0:
            raise ValueError("graph is not connected")
        best = max(best, max(d))
    return best


def random_connected_graph(n: int, max_degree: int, rng: np.random.Generator) -> list[list[int]]:
    """A random connected undirected graph with |N_i| <= max_degree (paper: max_degree = 2).

    A random Hamiltonian path (connected, degrees <= 2) plus random extra edges that keep every
    degree within the limit.
    """
    if n == 1:
        return [[]]
    if max_degree < 2 and n > 2:
        raise ValueError("max_degree must be >= 2 for a connected graph on more than 2 nodes")
    order = rng.permutation(n)
    adj: list[set[int]] = [set() for _ in range(n)]
    for a, b in zip(order[:-1], order[1:], strict=False):
        adj[a].add(int(b))
        adj[b].add(int(a))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    for idx in rng.permutation(len(pairs)):
        a, b = pairs[idx]
        if b not in adj[a] and len(adj[a]) < max_degree and len(adj[b]) < max_degree and rng.random() < 0.5:
            adj[a].add(b)
            adj[b].add(a)
    return [sorted(s) for s in adj]


def messages_per_iteration(neighbours: Sequence[Sequence[int]]) -> int:
    """Point-to-point d messages per iteration: each link sends once to each neighbour (= 2|E|)."""
    return int(sum(len(nb) for nb in neighbours))
