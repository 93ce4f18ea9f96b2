"""A trained policy on held-out channels: its deterministic powers (the mean, clipped), in one process."""

from __future__ import annotations

import numpy as np
import torch

from bs_agent.trpo.ops import agent_ids
from bs_agent.trpo.state import GainNorm
from coordinator.trpo.backend import InprocBackend
from coordinator.trpo.config import TrainConfig, agent_spec, scenario_of
from coordinator.trpo.trainer import powers_w, random_positions
from radio.channels import user_bs_gains_of
from radio.problem import Problem


def evaluate_policy(cfg: TrainConfig, theta: torch.Tensor, problem: Problem, seed: int = 0) -> np.ndarray:
    """Powers [n, L] W of the trained (deterministic: the mean, clipped) policy on ``problem``'s
    channels. Round-robin uses a random order per slot. Works at any Pmax / per-BS sum budget of
    ``problem`` because the policy outputs fractions of Pmax (Figs. 14, 15)."""
    spec = agent_spec(cfg)
    backend = InprocBackend(spec, [0] * len(agent_ids(spec)))
    backend.set_policy(torch.as_tensor(theta).numpy())
    norm = GainNorm.of_scenario(scenario_of(cfg))
    gn = norm(user_bs_gains_of(problem))
    backend.load(gn, stochastic=False)
    if cfg.run.scheme == "partial":
        pos = random_positions(np.random.default_rng(seed), problem.n, spec.B)
        frac, _ = backend.act_round_robin(pos, log_hops=False)
    else:
        frac = backend.act_all()
    return powers_w(frac, problem)
