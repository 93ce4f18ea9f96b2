"""Cell layouts: BS positions, uniform user drops in hexagons, wraparound distances.

Hexagons are 'pointy-top' (vertices at 30 + 60 m degrees, circumradius R), so neighbouring BSs sit
sqrt(3) R apart along 0, 60, ... degrees.

* 3 cells: three hexagons meeting at a common corner (the origin); BSs at distance R from it at
  90, 210, 330 degrees (inter-site distance sqrt(3) R).
* 7 cells: a centre cell and its six neighbours, with wraparound: the distance from a user to a BS is
  the minimum over the BS's 7 images (the cluster translated by the six vectors of the 7-cell
  reuse lattice, |shift| = sqrt(7) * sqrt(3) R).
"""

from __future__ import annotations

import numpy as np

_VERTEX_ANGLES = np.deg2rad(30.0 + 60.0 * np.arange(6))


def hex_vertices(radius_m: float) -> np.ndarray:
    """[6, 2] vertices of a pointy-top hexagon centred at the origin."""
    return radius_m * np.stack([np.cos(_VERTEX_ANGLES), np.sin(_VERTEX_ANGLES)], axis=1)


def bs_positions(layout: str, radius_m: float) -> np.ndarray:
    """[B, 2] BS coordinates in metres for layout '3cell' or '7cell'."""
    if layout == "3cell":
        ang = np.deg2rad([90.0, 210.0, 330.0])
        return radius_m * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if layout == "7cell":
        d = np.sqrt(3.0) * radius_m
        ang = np.deg2rad(60.0 * np.arange(6))
        ring = d * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return np.vstack([np.zeros((1, 2)), ring])
    raise ValueError(f"layout: expected '3cell' or '7cell', got {layout!r}")


def wraparound_shifts(radius_m: float) -> np.ndarray:
    """[7, 2] translations of a 7-cell cluster that tile the plane (the zero shift first)."""
    d = np.sqrt(3.0) * radius_m
    a1, a2 = np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3.0) / 2.0])
    base = d * (2.0 * a1 + a2)  # length sqrt(7) d
    shifts = [np.zeros(2)]
    for m in range(6):
        c, s = np.cos(np.pi / 3.0 * m), np.sin(np.pi / 3.0 * m)
        shifts.append(np.array([[c, -s], [s, c]]) @ base)
    return np.stack(shifts)


def drop_users(centres: np.ndarray, radius_m: float, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """[n, B*k, 2] user positions, k per cell, uniform over each cell's hexagon.

    A hexagon is the union of three congruent rhombi {s v_{2m} + t v_{2m+2}: s, t in [0, 1]};
    picking a rhombus uniformly and (s, t) uniformly gives the uniform distribution on the hexagon.
    User l = b*k + j belongs to cell b.
    """
    B = centres.shape[0]
    v = hex_vertices(radius_m)
    m = rng.integers(0, 3, size=(n, B, k))
    s = rng.random((n, B, k, 1))
    t = rng.random((n, B, k, 1))
    pos = s * v[2 * m] + t * v[(2 * m + 2) % 6] + centres[None, :, None, :]
    return pos.reshape(n, B * k, 2)


def distances(users: np.ndarray, bs: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
    """[n, L, B] distance in m from each user to each BS; with ``shifts``, the minimum over images."""
    if shifts is None:
        shifts = np.zeros((1, 2))
    images = bs[None, :, :] + shifts[:, None, :]                       # [S, B, 2]
    diff = users[:, :, None, None, :] - images[None, None, :, :, :]    # [n, L, S, B, 2]
    return np.sqrt((diff**2).sum(-1)).min(axis=2)
