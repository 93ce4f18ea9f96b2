"""The TRPO numerical core and the BaseStation's shares, against analytic oracles and references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.gaussian import gaussian_kl, gaussian_log_prob
from bs_agent.trpo.nets import flat_params, set_flat_params
from bs_agent.trpo.state import local_csi, relative_order, relative_powers
from coordinator.trpo.optim import conjugate_gradient, end_of_episode_returns, line_search, trpo_step


def tiny_bs(scheme="full", M=9, seed=0, fvp_stride=1, value_batches=1) -> BaseStation:
    spec = AgentSpec(scheme, 3, 2, hidden=5, layers=2, init_log_std=-0.5, init_seed=seed, fvp_stride=fvp_stride,
                     value_batches=value_batches)
    bs = BaseStation(1, spec, 11 + seed, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    bs.load_csi(rng.standard_normal((M, 6)))
    extra = rng.standard_normal((M, spec.obs_dim - 6)) if spec.obs_dim > 6 else None
    bs.act(None, extra)
    bs.finish_acting()
    bs.set_weights(rng.standard_normal(M))
    # move theta a bit away from init so mu/log-std depend on the state
    with torch.no_grad():
        set_flat_params(bs.policy, flat_params(bs.policy) + 0.3 * torch.randn(
            flat_params(bs.policy).numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    bs.finish_acting()
    return bs


def as_fn(bs: BaseStation):
    names = [n for n, _ in bs.policy.named_parameters()]
    shapes = [p.shape for p in bs.policy.parameters()]

    def unflat(th):
        out, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = s.numel()
            out[n] = th[i:i + k].view(s)
            i += k
        return out

    return lambda th: functional_call(bs.policy, unflat(th), (bs.obs,))


def test_cg_solves_known_spd_system():
    rng = np.random.default_rng(0)
    Q = rng.standard_normal((8, 8))
    A = torch.tensor(Q @ Q.T + 8 * np.eye(8))
    b = torch.tensor(rng.standard_normal(8))
    res = conjugate_gradient(lambda v: A @ v, b, iters=50, tol=1e-20)
    assert torch.allclose(res.x, torch.linalg.solve(A, b), atol=1e-10)
    assert res.residual < 1e-8


def test_fvp_equals_hessian_of_mean_kl():
    bs = tiny_bs()
    f = as_fn(bs)
    th0 = flat_params(bs.policy)

    def sum_kl(th):
        mu, ls = f(th)
        return gaussian_kl(bs.mu_old, bs.log_std_old, mu, ls).sum()

    H = torch.autograd.functional.hessian(sum_kl, th0)
    for s in range(3):
        v = torch.randn(th0.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(s))
        assert torch.allclose(bs.fisher_vector_product(v), H @ v, rtol=1e-9, atol=1e-11)


def test_subsampled_fvp_is_k_times_hessian_of_kl_on_every_kth_slot():
    k = 3
    bs = tiny_bs(M=10, fvp_stride=k)
    f = as_fn(bs)
    th0 = flat_params(bs.policy)

    def sub_kl(th):
        mu, ls = f(th)
        return gaussian_kl(bs.mu_old[::k], bs.log_std_old[::k], mu[::k], ls[::k]).sum()

    H = k * torch.autograd.functional.hessian(sub_kl, th0)
    v = torch.randn(th0.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(bs.fisher_vector_product(v), H @ v, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="fvp_stride"):
        AgentSpec("full", 3, 2, fvp_stride=0)


def test_step_scaled_to_trust_region():
    bs = tiny_bs()
    n = float(bs.n_samples())
    g = bs.policy_gradient() / n
    F = lambda v: bs.fisher_vector_product(v) / n + 1e-3 * v  # noqa: E731
    step, cg, _ = trpo_step(g, F, delta=0.01, cg_iters=5)
    assert 0.5 * float(step @ F(step)) == pytest.approx(0.01, rel=1e-9)


def test_policy_gradient_matches_finite_differences_of_surrogate():
    bs = tiny_bs()
    th0 = flat_params(bs.policy)
    g = bs.policy_gradient()
    rng = np.random.default_rng(3)
    for _ in range(3):
        d = torch.tensor(rng.standard_normal(th0.numel()))
        h = 1e-6
        fd = (bs.surrogate_kl(th0 + h * d)[0] - bs.surrogate_kl(th0 - h * d)[0]) / (2 * h)
        assert fd == pytest.approx(float(g @ d), rel=1e-6, abs=1e-9)
    # surrogate is zero and KL zero at theta_old
    assert bs.surrogate_kl(th0) == (0.0, 0.0)


def test_line_search_accepts_within_trust_region_or_restores_exactly():
    bs = tiny_bs()
    n = float(bs.n_samples())
    th0 = flat_params(bs.policy)
    g = bs.policy_gradient() / n
    F = lambda v: bs.fisher_vector_product(v) / n + 1e-3 * v  # noqa: E731
    step, _, _ = trpo_step(g, F, delta=0.01, cg_iters=10)

    def ev(th):
        s, k = bs.surrogate_kl(th)
        return s / n, k / n

    res = line_search(th0, 50 * step, ev, delta=0.01, zeta=0.9, max_backtracks=80)
    assert res.accepted
    s, k = ev(res.theta)
    assert s >= 0 and k <= 0.01
    # an ascent direction turned around: nothing is acceptable -> the old parameters, bit for bit
    res = line_search(th0, -step, ev, delta=0.01, zeta=0.9, max_backtracks=5)
    assert not res.accepted and torch.equal(res.theta, th0)


def test_critic_update_leaves_policy_untouched():
    bs = tiny_bs()
    th0 = flat_params(bs.policy).clone()
    grad, loss = bs.value_gradient(np.ones(bs.n_samples()))
    opt_phi = torch.nn.Parameter(flat_params(bs.value).clone())
    opt = torch.optim.Adam([opt_phi], lr=0.1)
    opt_phi.grad = grad
    opt.step()
    bs.set_value_params(opt_phi.detach())
    assert torch.equal(flat_params(bs.policy), th0)
    assert loss > 0 and not torch.equal(flat_params(bs.value), opt_phi.detach() * 0)


def critic_grad_reference(bs: BaseStation, G: np.ndarray, rows) -> tuple[torch.Tensor, float]:
    """Autograd d/d phi of sum over ``rows`` of (V(s) - G)^2 on the module itself."""
    params = list(bs.value.parameters())
    r = bs.value(bs.obs[rows]) - torch.as_tensor(G[rows], dtype=bs.dtype)
    loss = (r * r).sum()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]), float(loss.detach())


def test_critic_minibatch_is_the_gradient_on_every_kth_sample():
    k, M = 3, 10
    bs = tiny_bs(M=M, value_batches=k)
    full = tiny_bs(M=M)
    G = np.random.default_rng(5).standard_normal(M)
    for e in range(2 * k):
        grad, loss = bs.value_gradient(G, e)
        ref, ref_loss = critic_grad_reference(bs, G, slice(e % k, None, k))
        torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
    # value_batches = 1: every round on all samples, whatever the round
    ref, _ = critic_grad_reference(full, G, slice(None))
    torch.testing.assert_close(full.value_gradient(G, 4)[0], ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="value_batches"):
        AgentSpec("full", 3, 2, value_batches=0)


def test_log_prob_and_kl_formulas():
    mu0, ls0 = torch.tensor([[0.1, -0.2]]), torch.tensor([[-0.3, 0.2]])
    mu1, ls1 = torch.tensor([[0.4, 0.0]]), torch.tensor([[0.1, -0.1]])
    p = torch.distributions.Normal(mu0, ls0.exp())
    q = torch.distributions.Normal(mu1, ls1.exp())
    a = torch.tensor([[0.3, 0.5]])
    assert torch.allclose(gaussian_log_prob(a, mu0, ls0), p.log_prob(a).sum(-1))
    assert torch.allclose(gaussian_kl(mu0, ls0, mu1, ls1), torch.distributions.kl_divergence(p, q).sum(-1))


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


def test_end_of_episode_returns():
    R = np.array([2.0, 4.0])
    pos = np.array([0, 2])
    assert np.allclose(end_of_episode_returns(R, pos, 3, 0.5), [2.0 * 0.25, 4.0])


def test_bfloat16_critic_is_the_float32_critic_to_bfloat16_accuracy():
    """value_precision 'bfloat16': V and the critic's gradient (the hidden layers computed in bfloat16,
    the output layer in float32) agree with the float32 ones to bfloat16's ~3 significant digits, the
    gradient comes back in the BS's dtype, and the float parameters are left as they were."""
    rng = np.random.default_rng(0)
    M, csi = 512, rng.standard_normal((512, 18))
    G = rng.standard_normal(M) + 3.0
    out = {}
    for prec in ("float32", "bfloat16"):
        spec = AgentSpec("centralized", 3, 2, hidden=64, layers=3, init_seed=1, value_precision=prec)
        bs = BaseStation(0, spec, 5)
        bs.load_csi(csi)
        bs.act()
        V = bs.finish_acting()
        phi = flat_params(bs.value).clone()
        grad, loss = bs.value_gradient(G)
        assert grad.dtype == torch.float32 and torch.equal(flat_params(bs.value), phi)
        assert all(p.dtype == torch.float32 for p in bs.value.parameters())
        out[prec] = (V, grad, loss)
    (V32, g32, l32), (V16, g16, l16) = out["float32"], out["bfloat16"]
    assert np.max(np.abs(V16 - V32)) < 2e-2 * np.max(np.abs(V32)) and not np.array_equal(V16, V32)
    assert float((g16 - g32).norm() / g32.norm()) < 2e-2
    assert abs(l16 - l32) < 1e-2 * l32
    with pytest.raises(ValueError, match="value_precision"):
        AgentSpec("full", 3, 2, value_precision="float16")


def test_forward_without_cache_is_the_cached_forward_and_the_module():
    """The line search's forward (no elu' kept) gives the very values of the cached one, which are the
    module's own output, at the module's parameters and at a flat candidate."""
    from bs_agent.trpo.nets import mlp_forward, mlp_forward_cache, unflat

    bs = tiny_bs(M=7)
    params = list(bs.policy.parameters())
    theta = flat_params(bs.policy) + 0.1
    with torch.no_grad():
        for p in (None, unflat(theta, params)):
            out, cache = mlp_forward_cache(bs.policy.body, bs.obs, p)
            assert torch.equal(mlp_forward(bs.policy.body, bs.obs, p), out)
            assert len(cache) == 3 and cache[-1][1] is None
        # the module's ELU is expm1; ours is exp(min(z, 0)) - 1: within an ulp of 1 (float64 here)
        assert torch.allclose(mlp_forward(bs.policy.body, bs.obs), bs.policy.body(bs.obs), rtol=0, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_and_derivative_match_torch_elu_and_autograd(dtype):
    """ELU(z) exactly for z > 0 and within half an ulp of 1 below; ELU'(z) equal to autograd's."""
    from bs_agent.trpo.nets import elu_and_derivative

    z = (torch.randn(4000, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 4).to(dtype)
    z[:3] = torch.tensor([0.0, -0.0, 1e-30], dtype=dtype)
    zr = z.clone().requires_grad_(True)
    ref = torch.nn.functional.elu(zr)
    (dref,) = torch.autograd.grad(ref.sum(), zr)
    y, d = elu_and_derivative(z.clone())
    pos = z > 0
    assert torch.equal(y[pos], z[pos])
    assert (y - ref.detach()).abs().max() <= torch.finfo(dtype).eps / 2
    assert torch.allclose(d, dref, rtol=2 * torch.finfo(dtype).eps, atol=0)
