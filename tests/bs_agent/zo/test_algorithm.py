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
    PolicyGroups,
    forward_stacked,
    forward_stacked_torch,
    local_states,
    local_states_torch,
)
from coordinator.zo.graphs import (
    diameter,
    fully_connected,
    hop_distances,
    messages_per_iteration,
    random_connected_graph,
)


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


def _agents(mode, n=4, nb=None, d_max=1, seed=5):
    spec = MLPSpec((6, 3, 1))
    nb = nb or fully_connected(n)
    return [ZOLinkAgent(i, spec, ZOHyper(b1=2, b2=2), seed, mode, tuple(nb[i]), d_max) for i in range(n)]


def _sync_round(agents, k, d, t, graph=False):
    out = {}
    for ag in agents:
        out[ag.index] = ag.end_iteration(np.zeros(2), np.full(2, d[ag.index]))
    for ag in agents:
        for r in ag.neighbours:
            agents[r].deliver(out[ag.index], t)
    return [ag.update(t)[0] for ag in agents]


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


def test_policy_state_and_forward_shapes_and_torch_twin():
    import torch

    N = 4
    spec = MLPSpec.for_links(N, (5,))
    rng = np.random.default_rng(0)
    G = rng.standard_normal((3, N, N)) ** 2
    p = rng.uniform(0, 10, (3, N))
    s = local_states(G, p, 0.5, np.full(N, 10.0))
    assert s.shape == (3, N, N + 2)
    # T_i: the interference link i causes at receiver j is G_ji p_i
    assert np.isclose(s[0, 1, 1], np.log10(1 + G[0, 0, 1] * p[0, 1] / 0.5))
    th = np.stack([spec.init(rng) for _ in range(N)])
    y = forward_stacked(spec, th, s)
    assert y.shape == (3, N) and np.all((y > 0) & (y < 1))
    yt = forward_stacked_torch(spec, torch.from_numpy(th), torch.from_numpy(s))
    assert np.allclose(y, yt.numpy())
    # mixed architectures
    specs = (spec, MLPSpec.for_links(N, (3, 2)), spec, spec)
    thetas = [sp.init(rng) for sp in specs]
    pw = PolicyGroups(specs).powers(thetas, s, np.full(N, 10.0))
    assert pw.shape == (3, N) and np.all((pw > 0) & (pw < 10))


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


def test_layer_scale_is_algorithm_1_on_the_reparametrised_policy():
    # phi_i(s, D theta') with D = diag(c_l on layer l): Algorithm 1 on theta' perturbs theta' by mu u and
    # steps (gamma/mu)(sum_j d_j) u; mapped back to theta = D theta' the agent must perturb by mu D u and
    # step (gamma/mu)(sum_j d_j) D u — computed here by hand in theta' and compared.
    spec = MLPSpec((4, 3, 1))                         # layer 1: 12 + 3 params, layer 2: 3 + 1
    D = np.array([0.5] * 15 + [4.0] * 4)
    assert np.array_equal(spec.layer_scale((0.5, 4.0)), D)
    assert np.array_equal(spec.layer_scale(()), np.ones(19))
    with pytest.raises(ValueError):
        spec.layer_scale((1.0,))
    hy = ZOHyper(mu=0.7, gamma0=2.0, gamma_tilde=0.5, b1=2, b2=2, layer_scale=(0.5, 4.0))
    ag = ZOLinkAgent(0, spec, hy, 9, "sync", (1,), 0)
    theta_p = ag.theta / D                            # theta' of the same initial policy
    for k in range(3):
        u = perturbation(9, 0, k, spec.n_params)     # Algorithm 1's u_i^k ~ N(0, I) in theta'
        base, pert = ag.schedule()
        assert np.allclose(base, D * theta_p) and np.allclose(pert, D * (theta_p + 0.7 * u))
        d_own, d_other = 0.3 * (k + 1), -0.1
        ag.end_iteration(np.zeros(2), np.full(2, d_own))
        ag.deliver([(1, k, d_other)], 0)
        ag.update(0)
        gamma = 2.0 / np.sqrt(k + 1)
        theta_p = theta_p + gamma / 0.7 * (float(np.float32(d_own)) + d_other) * u    # eq. (7) in theta'
        assert np.allclose(ag.theta, D * theta_p, rtol=1e-12, atol=1e-12)


def test_memoryless_inputs_and_logit_bound_by_hand_and_air_matches_slot_by_slot():
    import torch

    from coordinator.zo.air import run_slots

    N, s2, pm = 4, 0.5, np.full(4, 10.0)
    rng = np.random.default_rng(3)
    G = rng.standard_normal((6, N, N)) ** 2
    p = rng.uniform(0, 10, (6, N))
    s = local_states(G, p, s2, pm, "memoryless")
    # T_i at full power: log10(1 + G_ji p_max / s2); previous-power feature 0; R_i and G_ii as in the paper
    assert np.isclose(s[0, 1, 1], np.log10(1 + G[0, 0, 1] * 10.0 / s2))
    assert np.all(s[..., N + 1] == 0.0)
    paper = local_states(G, p, s2, pm)
    assert np.allclose(s[..., 0], paper[..., 0]) and np.allclose(s[..., N], paper[..., N])
    # no input of link i depends on its own previous power
    p2 = p.copy()
    p2[:, 2] = 0.0
    assert np.allclose(local_states(G, p2, s2, pm, "memoryless")[:, 2], s[:, 2])
    # logit bound: q -> c tanh(q / c) before the sigmoid (hand formula on a 1-layer net)
    c = 2.0
    sp = MLPSpec.for_links(N, (), "memoryless", c)
    th = np.stack([np.concatenate([np.full(N + 2, 3.0), [1.0]])] * N)   # q = 3 sum(s) + 1
    q = 3.0 * s.sum(-1) + 1.0
    y = forward_stacked(sp, th, s)
    assert np.allclose(y, 1.0 / (1.0 + np.exp(-c * np.tanh(q / c))))
    assert np.all(y <= 1.0 / (1.0 + np.exp(-c)) + 1e-12)
    assert np.allclose(forward_stacked_torch(sp, torch.from_numpy(th), torch.from_numpy(s)).numpy(), y)
    assert np.allclose(local_states_torch(torch.from_numpy(G), torch.from_numpy(p), s2, 10.0,
                                          "memoryless").numpy(), s)
    # the air's vectorised slot recursion equals local_states + forward_stacked slot by slot (two groups)
    specs = [MLPSpec.for_links(N, (5,), "memoryless", 3.0), MLPSpec.for_links(N, (3,), "memoryless", 3.0)]
    links = [specs[0], specs[1], specs[0], specs[1]]
    thetas = [sp.init(rng) * 4 for sp in links]
    groups = PolicyGroups(tuple(links))
    gl = groups.groups
    stacks = [np.stack([thetas[i] for i in ix]) for _sp, ix in gl]
    rates, p_last = run_slots(G, pm.copy(), gl, stacks, s2, pm)
    pp = pm.copy()
    for t in range(G.shape[0]):
        pp = groups.powers(thetas, local_states(G[t], pp, s2, pm, "memoryless"), pm)
        own = np.diag(G[t]) * pp
        r = np.log2(1 + own / (G[t] @ pp - own + s2))
        assert np.allclose(rates[t], r)
    assert np.allclose(p_last, pp)


def test_pooled_caused_interference_by_hand_and_air_matches_slot_by_slot():
    import torch

    from bs_agent.zo.policy import feature_mask, feature_norm
    from coordinator.zo.air import run_slots

    # 3 links, sigma^2 = 0.5, p_max = 10; G[i, j] = gain from transmitter j to receiver i
    s2, pm = 0.5, np.full(3, 10.0)
    G = np.array([[2.0, 0.5, 1.0],
                  [0.25, 3.0, 0.75],
                  [1.5, 0.1, 1.0]])
    p = np.array([4.0, 0.0, 10.0])
    # link 0 causes G_10 p_0 + G_20 p_0 = (0.25 + 1.5) * 4 = 7 in all (paper inputs: previous power)
    s = local_states(G, p, s2, pm, "paper", "sum")
    assert np.isclose(s[0, 1], np.log10(1 + 7.0 / s2)) and s[0, 2] == 0.0
    assert np.isclose(s[1, 1], 0.0)                                      # link 1 was off: causes nothing
    # memoryless: at full power, link 1 would cause (0.5 + 0.1) * 10 = 6
    m = local_states(G, p, s2, pm, "memoryless", "sum")
    assert np.isclose(m[1, 1], np.log10(1 + 6.0 / s2)) and np.all(m[:, 2] == 0.0)
    # the other features are the per-link ones
    each = local_states(G, p, s2, pm, "memoryless")
    assert np.allclose(m[:, [0, 3, 4]], each[:, [0, 3, 4]])
    assert np.allclose(local_states_torch(torch.from_numpy(G), torch.from_numpy(p), s2, 10.0, "memoryless",
                                          "sum").numpy(), m)
    # mask: only the pooled entry of the caused block; default 'each' unchanged (paper: no mask)
    assert feature_mask(3, ("direct", "caused"), "sum") == (0.0, 1.0, 0.0, 1.0, 0.0)
    assert feature_mask(3, ("rx", "caused", "direct", "prev")) == ()
    assert feature_mask(3, ("rx", "caused", "direct", "prev"), "sum") == (1.0, 1.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="caused"):
        feature_mask(3, ("direct",), "max")
    # normalisation: the pooled entry has its own mean / std, the unused entries are left alone
    rng = np.random.default_rng(5)
    Gs = rng.standard_normal((200, 3, 3)) ** 2
    mean, std = feature_norm(Gs, s2, 10.0, "memoryless", "sum")
    pooled = np.log10(1 + (Gs.sum(1) - np.einsum("sii->si", Gs)) * 10.0 / s2)
    assert np.isclose(mean[1], pooled.mean()) and np.isclose(std[1], pooled.std())
    assert (mean[2], std[2]) == (0.0, 1.0)
    # the air's slot recursion equals local_states + forward_stacked slot by slot (paper and memoryless)
    Gt = rng.standard_normal((5, 3, 3)) ** 2
    for inputs in ("paper", "memoryless"):
        sp = MLPSpec.for_links(3, (4,), inputs, 0.0, feature_norm(Gs, s2, 10.0, inputs, "sum"), 0.0,
                               ("rx", "caused", "direct", "prev"), "sum")
        thetas = [sp.init(rng) * 3 for _ in range(3)]
        groups = PolicyGroups((sp,) * 3)
        rates, p_last = run_slots(Gt, pm.copy(), groups.groups, [np.stack(thetas)], s2, pm)
        pp = pm.copy()
        for t in range(Gt.shape[0]):
            pp = groups.powers(thetas, local_states(Gt[t], pp, s2, pm, inputs, "sum"), pm)
        assert np.allclose(p_last, pp)


def test_ceiling_study_input_groups_by_hand():
    import torch

    from benchmarks.zo_ceiling import raw_groups

    s2, pm = 0.5, 10.0
    G = torch.tensor([[2.0, 0.5, 1.0],
                      [0.25, 3.0, 0.75],
                      [1.5, 0.1, 1.0]], dtype=torch.float64)
    p = torch.tensor([4.0, 0.0, 10.0], dtype=torch.float64)
    f = raw_groups(G, p, s2, pm)
    lg = lambda x: np.log10(1 + x / s2)  # noqa: E731
    assert np.isclose(f["direct"][0, 0], lg(2.0 * pm))
    assert np.isclose(f["rx"][0, 0], lg(0.5 * 0.0 + 1.0 * 10.0 + s2))        # powers in force p(t-1)
    assert np.isclose(f["rxfull"][1, 0], lg((0.25 + 0.75) * pm + s2))
    assert np.isclose(f["csum"][1, 0], lg((0.5 + 0.1) * pm))                  # G_01 + G_21 at p_max
    assert np.allclose(f["ceach"][2].numpy(), lg(np.array([1.0, 0.75]) * pm))  # G_02, G_12
    assert np.allclose(f["reach"][2].numpy(), lg(np.array([1.5, 0.1]) * pm))   # G_20, G_21
    assert np.allclose(f["prev"][:, 0].numpy(), [0.4, 0.0, 1.0])


def test_param_bound_by_hand_off_by_default_and_air_matches():
    import torch

    from coordinator.zo.air import run_slots

    N, s2, pm = 3, 0.5, np.full(3, 10.0)
    rng = np.random.default_rng(5)
    G = rng.standard_normal((5, N, N)) ** 2
    s = local_states(G, np.full((5, N), 10.0), s2, pm, "memoryless")
    # off by default: the policy uses theta itself (the very object)
    th = rng.standard_normal((N, N + 3)) * 30
    assert MLPSpec.for_links(N, ()).effective(th) is th
    # c = 4: weight w and bias b of a 1-layer net become 4 tanh(w / 4), 4 tanh(b / 4)
    sp = MLPSpec.for_links(N, (), "memoryless", param_bound=4.0)
    th = np.stack([np.concatenate([np.full(N + 2, 8.0), [-100.0]])] * N)
    q = 4 * np.tanh(2.0) * s.sum(-1) + 4 * np.tanh(-25.0)            # bias -> -4 (not -100)
    y = forward_stacked(sp, th, s)
    assert np.allclose(y, 1.0 / (1.0 + np.exp(-q)))
    assert np.allclose(forward_stacked_torch(sp, torch.from_numpy(th), torch.from_numpy(s)).numpy(), y)
    # every effective parameter within [-c, c] (tanh rounds to 1 in float64 far out), theta to first order near 0
    big = rng.standard_normal(1000) * 1e3
    assert np.all(np.abs(sp.effective(big)) <= 4.0) and np.isclose(sp.effective(np.array([1e-4]))[0], 1e-4)
    with pytest.raises(ValueError, match="param_bound"):
        MLPSpec.for_links(N, (), param_bound=-1.0)
    # the air's slot recursion uses the same bounded parameters
    gl = PolicyGroups((sp,) * N).groups
    rates, p_last = run_slots(G, pm.copy(), gl, [th], s2, pm)
    assert np.allclose(p_last, y[-1] * pm)
