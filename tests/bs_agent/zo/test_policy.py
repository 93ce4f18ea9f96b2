"""Pure math of Algorithm 1 (paper 2): estimator, perturbations, eqs. (7)/(8)/(9), relays, graphs."""

from __future__ import annotations

import numpy as np
import pytest

from bs_agent.zo.agent import ZOHyper, ZOLinkAgent
from bs_agent.zo.algorithm import (
    perturbation,
)
from bs_agent.zo.policy import (
    MLPSpec,
    PolicyGroups,
    forward_stacked,
    forward_stacked_torch,
    local_states,
    local_states_torch,
)


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
