"""A trained policy on held-out channels: its deterministic powers (the mean, clipped), in one process."""

from __future__ import annotations

import numpy as np
import torch

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.ops import agent_ids
from bs_agent.trpo.state import GainNorm
from coordinator.trpo.backend import InprocBackend
from coordinator.trpo.config import TrainConfig, agent_spec, scenario_of
from coordinator.trpo.trainer import powers_w, random_positions
from radio.channels import Scenario, user_bs_gains_of
from radio.problem import Problem


def policy_fractions(spec: AgentSpec, theta: torch.Tensor | np.ndarray, scenario: Scenario, problem: Problem,
                     position: np.ndarray | None = None) -> np.ndarray:
    """Power fractions [n, L] of the trained policy's mean action on ``problem``'s channels; ``position``
    [n, B] the round-robin order of every slot (step of BS b in slot m)."""
    backend = InprocBackend(spec, [0] * len(agent_ids(spec)))
    backend.set_policy(torch.as_tensor(theta).numpy())
    gn = GainNorm.of_scenario(scenario)(user_bs_gains_of(problem))
    backend.load(gn, stochastic=False)
    if spec.scheme == "partial":
        if position is None:
            raise ValueError("the round-robin scheme needs every slot's order (position)")
        frac, _ = backend.act_round_robin(position, log_hops=False)
        return frac
    return backend.act_all()


def evaluate_policy(cfg: TrainConfig, theta: torch.Tensor, problem: Problem, seed: int = 0) -> np.ndarray:
    """Powers [n, L] W of the trained (deterministic: the mean, clipped) policy on ``problem``'s
    channels, at the run's ``policy.power_levels``. Round-robin uses a random order per slot. Works at any
    Pmax / per-BS sum budget of ``problem`` because the policy outputs fractions of Pmax (Figs. 14, 15)."""
    spec = agent_spec(cfg)
    pos = random_positions(np.random.default_rng(seed), problem.n, spec.B) if spec.scheme == "partial" else None
    return powers_w(policy_fractions(spec, theta, scenario_of(cfg), problem, pos), problem, cfg.policy.power_levels)
