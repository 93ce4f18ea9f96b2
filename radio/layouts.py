"""Cell layouts: BS positions, uniform user drops in hexagons, wraparound distances.

Hexagons are 'pointy-top' (vertices at 30 + 60 m degrees, circumradius R), so neighbouring BSs sit
d = sqrt(3) R apart along 0, 60, ... degrees: the BSs are points i a1 + j a2 of the hexagonal lattice with
a1 = d (1, 0), a2 = d (1/2, sqrt(3)/2).

* 3 cells: three hexagons meeting at a common corner (the origin); BSs at distance R from it at
  90, 210, 330 degrees (inter-site distance sqrt(3) R).
* 7 cells: a centre cell and its six neighbours (ring 1), with wraparound.
* 19 cells: the 7 cells and the twelve cells of ring 2, with wraparound.

Wraparound. The cluster of rings 0..n (7 cells for n = 1, 19 for n = 2, N = 3 n^2 + 3 n + 1 cells) tiles
the plane when translated by the reuse lattice spanned by ``t = (n + 1) a1 + n a2`` and its rotation by 60
degrees (|t| = sqrt(N) d, since |i a1 + j a2|^2 = (i^2 + i j + j^2) d^2 and (n+1)^2 + (n+1) n + n^2 = N).
The six rotations of t by 60 m degrees are the centres of the six copies of the cluster around it. The
distance from a user to a BS is the minimum over the BS's 7 images (the BS itself and its six shifts):
the network lives on a torus, and every cell, not only the centre one, sees the full n-ring neighbourhood
(for 19 cells: 6 BSs at d, 6 at sqrt(3) d, 6 at 2 d).
"""

from __future__ import annotations

import numpy as np

_VERTEX_ANGLES = np.deg2rad(30.0 + 60.0 * np.arange(6))

# hexagonal clusters with wraparound -> rings around the centre cell
WRAPAROUND_RINGS = {"7cell": 1, "19cell": 2}
# cells of every layout
LAYOUT_CELLS = {"3cell": 3, "7cell": 7, "19cell": 19}


def hex_vertices(radius_m: float) -> np.ndarray:
    """[6, 2] vertices of a pointy-top hexagon centred at the origin."""
    return radius_m * np.stack([np.cos(_VERTEX_ANGLES), np.sin(_VERTEX_ANGLES)], axis=1)


def bs_positions(layout: str, radius_m: float) -> np.ndarray:
    """[B, 2] BS coordinates in metres for layout '3cell', '7cell' or '19cell'.

    Hexagonal clusters list the centre cell first, then ring 1 counter-clockwise from 0 degrees
    (u_m = d (cos 60 m, sin 60 m), m = 0..5, d = sqrt(3) R), then for 19 cells ring 2 counter-clockwise from
    0 degrees: the corner 2 u_m (distance 2 d, at 60 m degrees) followed by the edge cell u_m + u_{m+1}
    (distance sqrt(3) d, at 60 m + 30 degrees). The first 7 BSs of '19cell' are the 7 BSs of '7cell'.
    """
    if layout == "3cell":
        ang = np.deg2rad([90.0, 210.0, 330.0])
        return radius_m * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if layout not in WRAPAROUND_RINGS:
        raise ValueError(f"layout: expected one of {tuple(LAYOUT_CELLS)}, got {layout!r}")
    d = np.sqrt(3.0) * radius_m
    ang = np.deg2rad(60.0 * np.arange(6))
    ring1 = d * np.stack([np.cos(ang), np.sin(ang)], axis=1)                     # [6, 2] u_m
    rings = [np.zeros((1, 2)), ring1]
    if WRAPAROUND_RINGS[layout] == 2:
        corners, edges = 2.0 * ring1, ring1 + np.roll(ring1, -1, axis=0)         # 2 u_m, u_m + u_{m+1}
        rings.append(np.stack([corners, edges], axis=1).reshape(12, 2))         # by angle: 0, 30, ..., 330
    return np.vstack(rings)


def wraparound_shifts(radius_m: float, layout: str = "7cell") -> np.ndarray:
    """[7, 2] translations in metres of the hexagonal cluster ``layout`` ('7cell' or '19cell') that tile the
    plane (the zero shift first, then t rotated by 0, 60, ..., 300 degrees; t = (n+1) a1 + n a2 for the
    cluster of n rings, |t| = sqrt(7) d for 7 cells and sqrt(19) d for 19 cells, d = sqrt(3) R)."""
    if layout not in WRAPAROUND_RINGS:
        raise ValueError(f"layout: wraparound is defined for {tuple(WRAPAROUND_RINGS)}, got {layout!r}")
    n = WRAPAROUND_RINGS[layout]
    d = np.sqrt(3.0) * radius_m
    a1, a2 = np.array([1.0, 0.0]), np.array([0.5, np.sqrt(3.0) / 2.0])
    base = d * ((n + 1) * a1 + n * a2)  # length sqrt(3 n^2 + 3 n + 1) d
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
    """[n, L, B] distance in m from each user ([n, L, 2]) to each BS ([B, 2]); with ``shifts`` ([S, 2]), the
    minimum over the BS's S images ``bs + shifts[s]``. One image at a time: the temporaries are [n, L, B, 2]."""
    if shifts is None:
        shifts = np.zeros((1, 2))
    d2 = np.full(users.shape[:2] + bs.shape[:1], np.inf)                 # [n, L, B] squared distance in m^2
    for shift in shifts:
        diff = users[:, :, None, :] - (bs + shift)[None, None, :, :]     # [n, L, B, 2]
        np.minimum(d2, (diff**2).sum(-1), out=d2)
    return np.sqrt(d2)
