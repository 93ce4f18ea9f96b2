"""The network model: rates, layouts, channel draws (paper 1 Sec. II, paper 2 Sec. II/IV)."""

import numpy as np
import pytest
import torch

from radio.channels import Scenario, expand_gains, user_bs_gains_of
from radio.layouts import bs_positions, distances, drop_users, wraparound_shifts
from radio.problem import Problem, ProblemError
from radio.rates import link_rates, link_rates_torch, sum_rate, sum_rate_torch
from radio.units import dbm_to_w, noise_power_w, w_to_dbm


def test_two_link_rates_by_hand():
    G = np.array([[2.0, 0.5], [0.25, 1.0]])
    p = np.array([1.0, 2.0])
    # SINR_1 = 2*1 / (0.5*2 + 0.5) = 4/3 ; SINR_2 = 1*2 / (0.25*1 + 0.5) = 8/3
    expected = np.array([np.log2(1 + 4 / 3), np.log2(1 + 8 / 3)])
    np.testing.assert_allclose(link_rates(G, p, 0.5), expected, rtol=1e-14)
    np.testing.assert_allclose(sum_rate(G[None], p[None], 0.5), [expected.sum()], rtol=1e-14)
    t = link_rates_torch(torch.tensor(G), torch.tensor(p), 0.5)
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-14)


def test_torch_rate_is_differentiable_and_matches_numpy():
    rng = np.random.default_rng(1)
    pr = Scenario.preset("3cell").sample(8, rng)
    p = rng.random((8, 6)) * pr.p_max_w
    pt = torch.tensor(p, requires_grad=True)
    r = sum_rate_torch(torch.tensor(pr.G), pt, pr.noise_w)
    np.testing.assert_allclose(r.detach().numpy(), sum_rate(pr.G, p, pr.noise_w), rtol=1e-12)
    r.sum().backward()
    # finite-difference check of one partial derivative
    h = 1e-3
    e = np.zeros_like(p)
    e[3, 2] = h
    fd = (sum_rate(pr.G, p + e, pr.noise_w) - sum_rate(pr.G, p - e, pr.noise_w))[3] / (2 * h)
    assert pt.grad[3, 2].item() == pytest.approx(fd, rel=1e-5)


def test_units_and_table_one_noise():
    assert dbm_to_w(43.0) == pytest.approx(19.9526, rel=1e-4)
    assert w_to_dbm(1.0) == pytest.approx(30.0)
    # -150 dBm/Hz + 10 log10(20 MHz) + 9 dB = -67.99 dBm
    assert w_to_dbm(noise_power_w(-150.0, 20e6, 9.0)) == pytest.approx(-150 + 73.0103 + 9, abs=1e-3)


def _inside_pointy_hexagon(xy: np.ndarray, c: np.ndarray, R: float) -> np.ndarray:
    dx, dy = np.abs(xy[..., 0] - c[0]), np.abs(xy[..., 1] - c[1])
    return (dx <= np.sqrt(3) / 2 * R + 1e-9) & (dy <= R - dx / np.sqrt(3) + 1e-9)


@pytest.mark.parametrize("layout", ["3cell", "7cell", "19cell"])
def test_users_fall_inside_their_own_hexagon(layout):
    R, K = 1000.0, 4
    bs = bs_positions(layout, R)
    users = drop_users(bs, R, 500, K, np.random.default_rng(2))
    for b in range(bs.shape[0]):
        assert _inside_pointy_hexagon(users[:, b * K:(b + 1) * K], bs[b], R).all()
    # uniform over the hexagon: mean distance to centre of a uniform point in a hexagon ~ 0.6103 R
    d = np.linalg.norm(users[:, :K] - bs[0], axis=-1)
    assert d.mean() == pytest.approx(0.6103 * R, rel=0.03)


def test_three_cells_meet_at_a_corner():
    bs = bs_positions("3cell", 1000.0)
    np.testing.assert_allclose(np.linalg.norm(bs, axis=1), 1000.0)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(bs[i] - bs[j]) == pytest.approx(np.sqrt(3) * 1000.0)


def test_wraparound_distances():
    R = 1000.0
    bs = bs_positions("7cell", R)
    shifts = wraparound_shifts(R)
    users = drop_users(bs, R, 200, 3, np.random.default_rng(3))
    d_wrap, d_plain = distances(users, bs, shifts), distances(users, bs)
    assert (d_wrap <= d_plain + 1e-9).all()
    # with wraparound every BS is a first-tier neighbour of every other: all 42 pairs at sqrt(3) R
    d_bs = distances(bs[None], bs, shifts)[0]
    off = ~np.eye(7, dtype=bool)
    np.testing.assert_allclose(d_bs[off], np.sqrt(3) * R, rtol=1e-12)
    np.testing.assert_allclose(d_bs, d_bs.T, atol=1e-9)
    # the 7 images suffice: brute force over a 5x5 patch of the cluster lattice gives the same minimum
    t1, t2 = shifts[1], shifts[2]
    lattice = np.array([a * t1 + b * t2 for a in range(-2, 3) for b in range(-2, 3)])
    np.testing.assert_allclose(distances(users, bs, lattice), d_wrap, rtol=1e-12)
    # the own BS is the nearest one, as the hexagons tile the plane
    assert (d_wrap.argmin(-1) == np.repeat(np.arange(7), 3)[None]).all()


def test_gains_follow_path_loss_and_rayleigh():
    sc = Scenario.preset("3cell", redrop=False, drop_seed=11)
    n = 20000
    Gu = sc.user_bs_gains(n, np.random.default_rng(4))
    # independent path loss from the fixed drop
    bs = bs_positions("3cell", 1000.0)
    users = drop_users(bs, 1000.0, 1, 2, np.random.default_rng(11))[0]
    beta = np.array([[(1 + np.hypot(*(u - b)) / 0.392) ** -3.76 for b in bs] for u in users])
    fading = Gu / beta[None]
    assert fading.mean() == pytest.approx(1.0, abs=0.02)          # |g|^2 ~ Exp(1): mean 1
    assert (fading**2).mean() == pytest.approx(2.0, abs=0.08)     # and second moment 2
    from scipy.stats import kstest
    assert kstest(fading[:, 0, 1], "expon").pvalue > 1e-3


def test_link_gain_convention():
    sc = Scenario.preset("7cell", users_per_cell=3)
    pr = sc.sample(4, np.random.default_rng(5))
    G, K = pr.G, 3
    for l in range(pr.L):
        for j in range(pr.L):
            assert G[0, l, j] == G[0, l, (j // K) * K]   # same serving BS, same gain
    np.testing.assert_array_equal(expand_gains(user_bs_gains_of(pr), K), G)


def test_links_model_is_gaussian_squared():
    sc = Scenario.preset("links", n_links=5, link_path_loss=(1, 2, 3, 4, 5))
    pr = sc.sample(20000, np.random.default_rng(6))
    assert pr.G.shape == (20000, 5, 5) and pr.noise_w == 0.5 and pr.p_max_w[0] == 10.0
    np.testing.assert_allclose(pr.G.mean(axis=(0, 2)), [1, 2, 3, 4, 5], rtol=0.03)  # E[h^2] = 1


def test_links_complex_channel_has_exponential_gains_and_real_is_the_default_stream():
    real = Scenario.preset("links", n_links=3)
    assert real.link_channel == "real"
    # the default draws h ~ N(0, 1) from the stream exactly as before: G = h^2
    h = np.random.default_rng(9).standard_normal((4, 3, 3))
    np.testing.assert_array_equal(real.sample(4, np.random.default_rng(9)).G, h**2)
    # complex CN(0, 1): |h|^2 = (re^2 + im^2) / 2 ~ Exp(1): mean 1, P(G > 1) = e^-1 (real: P(h^2 > 1) = 0.317)
    G = real.with_(link_channel="complex").sample(20000, np.random.default_rng(10)).G
    assert abs(G.mean() - 1.0) < 0.02
    assert abs((G > 1.0).mean() - np.exp(-1.0)) < 0.01
    assert abs((real.sample(20000, np.random.default_rng(10)).G > 1.0).mean() - 0.3173) < 0.01
    with pytest.raises(ProblemError, match="scenario.link_channel"):
        Scenario.preset("links", link_channel="rayleigh")


@pytest.mark.parametrize("kind", ["3cell", "7cell", "19cell", "links"])
def test_same_seed_same_draws_different_seed_different(kind):
    sc = Scenario.preset(kind)
    a = sc.sample(3, np.random.default_rng(7)).G
    b = sc.sample(3, np.random.default_rng(7)).G
    c = sc.sample(3, np.random.default_rng(8)).G
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(np.log(a), np.log(c))  # compare in dB: the gains are ~1e-12


def test_problem_validation_names_the_field():
    with pytest.raises(ProblemError, match="G"):
        Problem(np.ones((2, 3, 4)), 1.0, 1.0)
    with pytest.raises(ProblemError, match="G"):
        Problem(-np.ones((2, 3, 3)), 1.0, 1.0)
    with pytest.raises(ProblemError, match="noise_w"):
        Problem(np.ones((2, 3, 3)), 0.0, 1.0)
    with pytest.raises(ProblemError, match="p_max_w"):
        Problem(np.ones((2, 3, 3)), 1.0, np.ones(4))
    with pytest.raises(ProblemError, match="cells"):
        Problem(np.ones((2, 6, 6)), 1.0, 1.0, cells=4, users_per_cell=2)
    with pytest.raises(ProblemError, match="scenario.alpha"):
        Scenario(alpha=-1.0)


def test_project_enforces_box_and_bs_sum():
    pr = Problem(np.ones((1, 4, 4)), 1.0, 2.0, cells=2, users_per_cell=2, bs_sum_power_w=3.0)
    p = pr.project(np.array([[5.0, 5.0, -1.0, 1.0]]))
    np.testing.assert_allclose(p, [[1.5, 1.5, 0.0, 1.0]])
