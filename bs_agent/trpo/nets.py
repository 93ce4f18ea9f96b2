"""Policy and value networks (paper 1 Fig. 3, Table II: 3 hidden layers x 256 ELU units), their
flat parameter vectors, and fast Jacobian products on a cached forward pass."""

from __future__ import annotations

import torch
from torch import nn


def mlp(inp: int, out: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ELU()]   # eq. (24)
        d = hidden
    mods.append(nn.Linear(d, out))
    return nn.Sequential(*mods)


class PolicyNet(nn.Module):
    """s -> (mean, log-std) of the Gaussian over each power fraction p/Pmax (paper 1 eq. (9))."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 3,
                 init_log_std: float = -1.0, init_mean: float = 0.5) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.body = mlp(obs_dim, 2 * act_dim, hidden, layers)
        last = self.body[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias[:act_dim].fill_(init_mean)
            last.bias[act_dim:].fill_(init_log_std)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(s)
        return out[..., : self.act_dim], out[..., self.act_dim:]


class ValueNet(nn.Module):
    """s -> V(s), the state-value baseline."""

    def __init__(self, obs_dim: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.body = mlp(obs_dim, 1, hidden, layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.body(s).squeeze(-1)


def init_networks(obs_dim: int, act_dim: int, hidden: int, layers: int, init_log_std: float, seed: int,
                  dtype: torch.dtype = torch.float32) -> tuple[PolicyNet, ValueNet]:
    """Both networks initialised from one explicit seed (no global RNG is touched)."""
    gen = torch.Generator().manual_seed(int(seed))
    pol = PolicyNet(obs_dim, act_dim, hidden, layers, init_log_std)
    val = ValueNet(obs_dim, hidden, layers)
    for net in (pol, val):
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    bound = 1.0 / m.in_features ** 0.5
                    m.weight.copy_(torch.empty_like(m.weight).uniform_(-bound, bound, generator=gen))
                    m.bias.copy_(torch.empty_like(m.bias).uniform_(-bound, bound, generator=gen))
    last = pol.body[-1]
    with torch.no_grad():
        last.weight.mul_(0.01)
        last.bias[:act_dim].fill_(0.5)
        last.bias[act_dim:].fill_(init_log_std)
    return pol.to(dtype), val.to(dtype)


# ---------------------------------------------------------------- fast Gauss-Newton products
# A cache is [(h_in, elu'(z)) per Linear] of one forward pass (elu' is None for the output layer); with it
# J v (one tangent pass) and J^T u (one backward pass) cost a few matmuls each and no autograd graph.
def linears(body: nn.Sequential) -> list[nn.Linear]:
    return [m for m in body if isinstance(m, nn.Linear)]


def mlp_forward_cache(body: nn.Sequential, s: torch.Tensor,
                      params: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list]:
    """Forward through Linear/ELU layers keeping (input, elu'(z)) of every Linear for products.
    ``params`` (W, b per Linear, in parameters() order) replaces the module's own parameters."""
    cache: list = []
    return _forward(body, s, params, cache), cache


def mlp_forward(body: nn.Sequential, s: torch.Tensor, params: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The same forward (the same values bit for bit) without the cache: no elu'(z) is formed, for
    outputs that no product needs (the line search's candidates)."""
    return _forward(body, s, params, None)


def elu_and_derivative(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELU(z), ELU'(z)) from one exponential: e = exp(min(z, 0)) is ELU'(z) (1 for z > 0, e^z below)
    and ELU(z) = (e - 1) + max(z, 0). Overwrites ``z`` (a fresh matmul output). torch's own elu kernel
    is not vectorised on CPU (~2.7 ns per entry, 7x its exp): a 256-wide layer at M = 1000 took
    ~0.5 ms of ELU against ~0.15 ms for these five vectorised passes. Exact for z > 0 (e - 1 = 0);
    for z <= 0, e - 1 against expm1(z) differs by at most half an ulp of 1 (6e-8 in float32)."""
    e = torch.clamp(z, max=0.0).exp_()
    return torch.sub(e, 1.0).add_(z.clamp_(min=0.0)), e


def _forward(body: nn.Sequential, s: torch.Tensor, params: list[torch.Tensor] | None, cache: list | None
             ) -> torch.Tensor:
    lins = linears(body)
    params = params if params is not None else [t for m in lins for t in (m.weight, m.bias)]
    h = s
    for j in range(len(lins)):
        if h.dtype != params[2 * j].dtype:          # mixed precision: a layer computes in its weights' dtype
            h = h.to(params[2 * j].dtype)
        z = torch.addmm(params[2 * j + 1], h, params[2 * j].t())
        if j + 1 < len(lins):                       # hidden layer: ELU, eq. (24)
            y, dact = elu_and_derivative(z)
            if cache is not None:
                cache.append((h, dact))
            h = y
        else:
            if cache is not None:
                cache.append((h, None))
            h = z
    return h


def mlp_jvp(body: nn.Sequential, cache: list, dparams: list[torch.Tensor]) -> torch.Tensor:
    """J v: derivative of the network output along parameter direction ``dparams`` (W, b per Linear)."""
    dh = None
    for j, (m, (h, dact)) in enumerate(zip(linears(body), cache, strict=True)):
        dz = torch.addmm(dparams[2 * j + 1], h, dparams[2 * j].t())
        if dh is not None:
            dz.addmm_(dh, m.weight.t())
        dh = dz.mul_(dact) if dact is not None else dz
    return dh


def mlp_vjp(body: nn.Sequential, cache: list, u: torch.Tensor,
            params: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """J^T u: gradient of <u, output> w.r.t. (W, b) of every Linear, in parameters() order.
    ``params`` as in :func:`mlp_forward_cache` (the ones the cache was made with)."""
    weights = [m.weight for m in linears(body)] if params is None else params[0::2]
    grads: list[torch.Tensor] = []
    delta = u
    for j in range(len(weights) - 1, -1, -1):
        h, dact = cache[j]
        if delta.dtype != h.dtype:                  # mixed precision, as in the forward
            delta = delta.to(h.dtype)
        if dact is not None:   # in place on a product made here (never on the caller's u)
            delta = delta * dact if delta is u else delta.mul_(dact)
        grads += [delta.sum(0), torch.mm(delta.t(), h)]     # b, W (reversed below)
        if j > 0:
            W = weights[j]
            # a 1-wide layer (the critic's output): the outer product as a broadcast multiply, the same
            # single rounding per entry as the K = 1 matmul, without the matmul call
            delta = delta * W if delta.shape[1] == 1 else torch.mm(delta, W)
    grads.reverse()
    return grads


def flat_cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in parts])


def unflat(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Views of a flat vector shaped like ``like`` (parameters() order)."""
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(flat[i:i + n].view(p.shape))
        i += n
    if i != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} entries, expected {i}")
    return out


# ---------------------------------------------------------------- flat parameter helpers
def flat_params(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one detached 1-D tensor (in ``module.parameters()`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def set_flat_params(module: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector into the parameters of ``module`` (exact copy, no arithmetic)."""
    i = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(flat[i:i + n].view_as(p))
            i += n
    if i != flat.numel():
        raise ValueError(f"flat parameter vector has {flat.numel()} entries, module has {i}")
