"""The 19-cell hexagonal cluster with wraparound (radio.layouts), checked by hand-computable geometry, and a
regression check that the 3- and 7-cell draws did not change when it was added."""

import itertools

import numpy as np
import pytest

from radio.channels import Scenario
from radio.layouts import bs_positions, distances, drop_users, wraparound_shifts

R = 1000.0
D = np.sqrt(3.0) * R                                   # inter-site distance of neighbouring cells
A = D * np.array([[1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]])   # rows: lattice basis a1, a2


def _lattice(points: np.ndarray) -> np.ndarray:
    """[..., 2] positions in m -> integer coordinates (i, j) with position = i a1 + j a2."""
    ij = np.linalg.solve(A.T, points.reshape(-1, 2).T).T.reshape(points.shape)
    np.testing.assert_allclose(ij, np.round(ij), atol=1e-9)
    return np.round(ij).astype(int)


def _hex_norm(ij: np.ndarray) -> np.ndarray:
    """Hexagonal (ring) distance of lattice coordinates (i, j): the number of cells crossed from the origin."""
    i, j = ij[..., 0], ij[..., 1]
    return np.maximum.reduce([np.abs(i), np.abs(j), np.abs(i + j)])


# ---------------------------------------------------------------- the 19 BS positions
def test_nineteen_positions_are_the_two_ring_cluster():
    bs = bs_positions("19cell", R)
    assert bs.shape == (19, 2)
    ij = _lattice(bs)
    assert len({tuple(p) for p in ij}) == 19                       # no two BSs coincide
    np.testing.assert_array_equal(np.bincount(_hex_norm(ij)), [1, 6, 12])   # centre, ring 1, ring 2
    # the first 7 are exactly the 7-cell layout; a few ring-2 cells by hand
    np.testing.assert_array_equal(bs[:7], bs_positions("7cell", R))
    np.testing.assert_allclose(bs[7], [2 * D, 0.0], atol=1e-9)                   # corner at 0 deg
    np.testing.assert_allclose(bs[8], [1.5 * D, np.sqrt(3) / 2 * D], atol=1e-9)  # edge cell at 30 deg
    np.testing.assert_allclose(bs[10], [0.0, np.sqrt(3) * D], atol=1e-9)         # edge cell at 90 deg
    # distances from the centre: 6 at d, 6 at sqrt(3) d, 6 at 2 d
    r = np.sort(np.linalg.norm(bs[1:], axis=1))
    np.testing.assert_allclose(r, D * np.repeat([1.0, np.sqrt(3), 2.0], 6), rtol=1e-12)
    # neighbouring BSs sit sqrt(3) R apart, nothing is closer, and a radius-2 hexagonal patch has 3n(3n+1) = 42
    # neighbouring pairs
    pair = np.linalg.norm(bs[:, None] - bs[None], axis=-1)[np.triu_indices(19, 1)]
    assert pair.min() == pytest.approx(np.sqrt(3) * R, rel=1e-12)
    assert np.isclose(pair, np.sqrt(3) * R, rtol=1e-12).sum() == 42


# ---------------------------------------------------------------- the wraparound shifts
def test_shifts_span_the_index_19_reuse_lattice():
    shifts = wraparound_shifts(R, "19cell")
    assert shifts.shape == (7, 2)
    np.testing.assert_array_equal(shifts[0], 0.0)
    np.testing.assert_allclose(np.linalg.norm(shifts[1:], axis=1), np.sqrt(19) * D, rtol=1e-12)  # sqrt(57) R
    # t = 3 a1 + 2 a2 and its rotations by 60 deg, (i, j) -> (-j, i + j)
    t = _lattice(shifts[1:])
    expect = [(3, 2)]
    for _ in range(5):
        i, j = expect[-1]
        expect.append((-j, i + j))
    np.testing.assert_array_equal(t, expect)
    # the 7-cell shifts are unchanged and differ: 2 a1 + a2, |t| = sqrt(7) d
    np.testing.assert_array_equal(wraparound_shifts(R), wraparound_shifts(R, "7cell"))
    np.testing.assert_array_equal(_lattice(wraparound_shifts(R)[1]), (2, 1))
    with pytest.raises(ValueError, match="wraparound"):
        wraparound_shifts(R, "3cell")


def test_cluster_tiles_the_plane():
    """The reuse lattice {u t1 + v t2} has index det[[3, 2], [-2, 5]] = 19, and the 19 cells are 19 distinct
    residues modulo it, so the translated clusters cover every lattice point exactly once."""
    t1, t2 = np.array([3, 2]), np.array([-2, 5])
    assert t1[0] * t2[1] - t1[1] * t2[0] == 19
    ij = _lattice(bs_positions("19cell", R))
    basis = np.array([t1, t2]).T
    for p, q in itertools.combinations(ij, 2):
        uv = np.linalg.solve(basis, p - q)
        assert not np.allclose(uv, np.round(uv))     # p - q is not a reuse-lattice vector
    # the 7 copies (centre and 6 shifts) are 133 distinct cells and cover the disc of radius 3 d exactly once
    copies = _lattice(bs_positions("19cell", R)[None] + wraparound_shifts(R, "19cell")[:, None]).reshape(-1, 2)
    assert len({tuple(p) for p in copies}) == 133
    disc = [(i, j) for i in range(-4, 5) for j in range(-4, 5) if i * i + i * j + j * j <= 9]
    covered = {tuple(p) for p in copies}
    assert all(p in covered for p in disc)


def test_every_bs_sees_a_full_two_ring_neighbourhood():
    bs = bs_positions("19cell", R)
    shifts = wraparound_shifts(R, "19cell")
    d_bs = distances(bs[None], bs, shifts)[0]                                  # [19, 19]
    off = ~np.eye(19, dtype=bool)
    np.testing.assert_allclose(d_bs, d_bs.T, rtol=1e-12)                     # d(a, b) = d(b, a)
    assert d_bs[off].max() <= 2 * D * (1 + 1e-12)                            # within two rings
    ring = D * np.repeat([1.0, np.sqrt(3), 2.0], 6)
    for a in range(19):                                                       # the same multiset for every BS
        np.testing.assert_allclose(np.sort(d_bs[a][off[a]]), ring, rtol=1e-12)
    # the nearest image of each other BS is unique and the 18 of them are the 18 cells of the two rings
    # around a: relative to a, exactly the cluster's own ring positions
    images = bs[None, :, :] + shifts[:, None, :]                              # [7, 19, 2]
    for a in range(19):
        rel = images - bs[a]                                                  # [7, 19, 2]
        dist = np.linalg.norm(rel, axis=-1)                                   # [7, 19]
        order = np.sort(dist, axis=0)
        assert (order[1, off[a]] > np.sqrt(7) * D * (1 - 1e-12)).all()     # next image is beyond ring 2
        nearest = rel[dist.argmin(0), np.arange(19)][off[a]]                 # [18, 2]
        assert {tuple(p) for p in _lattice(nearest)} == {tuple(p) for p in _lattice(bs[1:])}


def test_seven_images_suffice_and_users_see_the_same_network_from_every_cell():
    bs = bs_positions("19cell", R)
    shifts = wraparound_shifts(R, "19cell")
    users = drop_users(bs, R, 50, 4, np.random.default_rng(3))              # [50, 76, 2]
    d_wrap, d_plain = distances(users, bs, shifts), distances(users, bs)
    assert (d_wrap <= d_plain + 1e-9).all()
    # brute force over a 7 x 7 patch of the reuse lattice gives the same minimum
    t1, t2 = shifts[1], shifts[2]
    patch = np.array([u * t1 + v * t2 for u in range(-3, 4) for v in range(-3, 4)])
    np.testing.assert_allclose(distances(users, bs, patch), d_wrap, rtol=1e-12)
    # the own BS is the nearest one, and no BS is farther than the two-ring distance plus a cell radius
    assert (d_wrap.argmin(-1) == np.repeat(np.arange(19), 4)[None]).all()
    assert d_wrap.max() <= 2 * D + R + 1e-9
    # translation invariance on the torus: a user at offset x from its BS sees the same multiset of distances
    # whichever cell it is in
    x = drop_users(np.zeros((1, 2)), R, 20, 1, np.random.default_rng(4))[:, 0]    # [20, 2] offsets
    same_offset = bs[None, :, :] + x[:, None, :]                               # [20, 19, 2]: user in every cell
    d = np.sort(distances(same_offset, bs, shifts), axis=-1)                   # [20, 19, 19]
    np.testing.assert_allclose(d, np.broadcast_to(d[:, :1], d.shape), rtol=1e-10)


# ---------------------------------------------------------------- the 19-cell scenario
@pytest.mark.parametrize("K", [1, 3, 8])
def test_nineteen_cell_gains_shape_and_determinism(K):
    sc = Scenario.preset("19cell", users_per_cell=K)
    assert (sc.cells, sc.K, sc.L, sc.alpha) == (19, K, 19 * K, 4.0)
    g = sc.user_bs_gains(3, np.random.default_rng(7))
    assert g.shape == (3, 19 * K, 19)
    assert (g > 0).all()
    np.testing.assert_array_equal(g, sc.user_bs_gains(3, np.random.default_rng(7)))
    assert not np.allclose(np.log(g), np.log(sc.user_bs_gains(3, np.random.default_rng(8))))
    pr = sc.sample(2, np.random.default_rng(1))
    assert pr.G.shape == (2, 19 * K, 19 * K) and (pr.cells, pr.users_per_cell) == (19, K)


def test_nineteen_cell_preset_is_the_seven_cell_setting():
    sc = Scenario.preset("19cell")
    assert (sc.K, sc.L, sc.alpha) == (8, 152, 4.0)
    assert sc.with_(kind="7cell") == Scenario.preset("7cell")
    # a fixed drop (redrop False): the same drop from any stream, only the Rayleigh fading differs (in dB: the
    # gains are ~1e-12); averaged over many slots the gains of the two streams then agree
    fixed = Scenario.preset("19cell", users_per_cell=2, redrop=False)
    a = fixed.user_bs_gains(4000, np.random.default_rng(0))
    b = fixed.user_bs_gains(4000, np.random.default_rng(1))
    assert not np.allclose(np.log(a[0]), np.log(b[0]))
    np.testing.assert_allclose(a.mean(0), b.mean(0), rtol=0.15)


# ---------------------------------------------------------------- 3 and 7 cells did not change
# values computed from the code before the 19-cell layout was added:
#   Scenario.preset(kind, redrop=r).user_bs_gains(4, np.random.default_rng(2024)) -> g [4, L, B]
# (g[0, 0, :3], g[3, -1, -1], sum(log g))
_BEFORE = {
    ("3cell", True): ([3.7227676336527606e-13, 2.2595727537781432e-14, 5.8337985507032250e-15],
                      1.0550152651242016e-12, -2232.6367135797072),
    ("3cell", False): ([1.758035353146894e-13, 5.091946442343925e-16, 2.122330945235199e-15],
                       1.0173658172328629e-14, -2280.0159179341426),
    ("7cell", True): ([9.1906320624960628e-14, 6.3422038208432960e-15, 1.7147461506790894e-14],
                      1.874294171690122e-14, -52429.52973197463),
    ("7cell", False): ([1.570889162713962e-13, 6.047131023502560e-16, 2.295692500120432e-16],
                       1.316436500847995e-13, -52561.362507051366),
}


@pytest.mark.parametrize("kind,redrop", list(_BEFORE))
def test_three_and_seven_cell_draws_are_unchanged(kind, redrop):
    first, last, log_sum = _BEFORE[kind, redrop]
    g = Scenario.preset(kind, redrop=redrop).user_bs_gains(4, np.random.default_rng(2024))
    np.testing.assert_allclose(g[0, 0, :3], first, rtol=1e-12)
    np.testing.assert_allclose(g[3, -1, -1], last, rtol=1e-12)
    np.testing.assert_allclose(np.log(g).sum(), log_sum, rtol=1e-12)
