"""A tiny base station with a batch acted on, for the tests of its shares and of the optimiser."""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from bs_agent.trpo.base_station import AgentSpec, BaseStation
from bs_agent.trpo.nets import flat_params, set_flat_params


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
