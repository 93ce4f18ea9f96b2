"""Policy and value networks (paper 1 Fig. 3, Table II: 3 hidden layers x 256 ELU units)."""

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
    """s -> (mean, log-std) of the Gaussian over each power fraction p/Pmax (eq. 9)."""

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
def mlp_forward_cache(body: nn.Sequential, s: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Forward through Linear/ELU layers keeping (input, elu'(z)) of every Linear for products."""
    cache = []
    h = s
    mods = list(body)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            z = torch.nn.functional.linear(h, m.weight, m.bias)
            act = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ELU)
            dact = torch.where(z > 0, torch.ones_like(z), torch.exp(torch.clamp(z, max=0.0))) if act else None
            cache.append((h, dact))
            h = torch.nn.functional.elu(z) if act else z
    return h, cache


def mlp_jvp(body: nn.Sequential, cache: list, dparams: list[torch.Tensor]) -> torch.Tensor:
    """J v: derivative of the network output along parameter direction ``dparams`` (W, b per Linear)."""
    lins = [m for m in body if isinstance(m, nn.Linear)]
    dh = None
    for j, (m, (h, dact)) in enumerate(zip(lins, cache)):
        dW, db = dparams[2 * j], dparams[2 * j + 1]
        dz = h @ dW.T + db
        if dh is not None:
            dz = dz + dh @ m.weight.T
        dh = dz * dact if dact is not None else dz
    return dh


def mlp_vjp(body: nn.Sequential, cache: list, u: torch.Tensor) -> list[torch.Tensor]:
    """J^T u: gradient of <u, output> w.r.t. (W, b) of every Linear, in parameters() order."""
    lins = [m for m in body if isinstance(m, nn.Linear)]
    grads: list[torch.Tensor] = []
    delta = u
    for j in range(len(lins) - 1, -1, -1):
        h, dact = cache[j]
        if dact is not None:
            delta = delta * dact
        grads = [delta.T @ h, delta.sum(0)] + grads
        if j > 0:
            delta = delta @ lins[j].weight
    return grads
