"""The TRPO numerical core and the BaseStation's shares, against analytic oracles and references."""

from __future__ import annotations

import pytest
import torch

from bs_agent.trpo.gaussian import gaussian_kl, gaussian_log_prob
from bs_agent.trpo.nets import flat_params
from tests.bs_agent.trpo.helpers import tiny_bs


def test_log_prob_and_kl_formulas():
    mu0, ls0 = torch.tensor([[0.1, -0.2]]), torch.tensor([[-0.3, 0.2]])
    mu1, ls1 = torch.tensor([[0.4, 0.0]]), torch.tensor([[0.1, -0.1]])
    p = torch.distributions.Normal(mu0, ls0.exp())
    q = torch.distributions.Normal(mu1, ls1.exp())
    a = torch.tensor([[0.3, 0.5]])
    assert torch.allclose(gaussian_log_prob(a, mu0, ls0), p.log_prob(a).sum(-1))
    assert torch.allclose(gaussian_kl(mu0, ls0, mu1, ls1), torch.distributions.kl_divergence(p, q).sum(-1))


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
