"""The TRPO numerical core and the BaseStation's shares, against analytic oracles and references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.gaussian import gaussian_kl
from bs_agent.trpo.nets import flat_params
from tests.bs_agent.trpo.helpers import as_fn, tiny_bs


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




