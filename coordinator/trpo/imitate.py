"""``policy.init=cell_optimum``: the shared policy starts from behaviour cloning of every BS's own-cell optimum.

Before TRPO's first iteration the policy's mean is fitted, by least squares, to the power fractions of
:func:`radio.optimum.cell_optimum` (each cell's certified optimum without inter-cell interference: what BS b can
compute from its own users' direct gains, no message), on slots drawn from the run's own stream
(``TrpoStream.IMITATE``), in the states the BSs see: their local CSI and, in the round-robin, the teacher's powers of
the BSs before them in a random order (and the flags). Its log-std outputs are held at ``policy.init_log_std``.
TRPO then trains from there on the true reward (inter-cell interference included), as from any initial policy.

Not paper 1's (it starts from a random policy): a named variant, measured against it (issue 18). It is the
"learning to optimize" start (a network imitating a classical solver) with TRPO after it; the teacher uses the
model (the rate formula) but no information a BS does not have. Deterministic: one seed, float32, one thread.
"""

from __future__ import annotations

import numpy as np
import torch

from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.nets import PolicyNet
from bs_agent.trpo.ops import agent_csi
from bs_agent.trpo.state import GainNorm, round_robin_extra
from coordinator.trpo.optim import random_positions
from radio.channels import Scenario, user_bs_gains_of
from radio.optimum import cell_optimum
from radio.problem import Problem
from radio.rates import sum_rate

SLOTS = 2000            # teacher slots (x B states each)
STEPS = 4000            # Adam minibatch steps (passes over shuffled states until this many)
BATCH = 256
LR = 1e-3


def teacher_states(spec: AgentSpec, norm: GainNorm, problem: Problem, frac: np.ndarray,
                   position: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(states [n B, obs_dim], targets [n B, K]) float32: every BS's state of every slot and its teacher fractions
    ``frac`` [n, L]; ``position`` [n, B] (round-robin: step of BS b in slot n) fills the powers of the BSs before
    b from the teacher, the others undecided (0, flag 0)."""
    gn = norm(user_bs_gains_of(problem))
    K, states, targets = spec.K, [], []
    for b in range(spec.B):
        s = agent_csi(spec, gn, b)
        if spec.scheme == "partial":
            before = (position < position[:, b:b + 1]).astype(np.float64)          # [n, B] decided before b
            s = np.concatenate([s, round_robin_extra(frac * np.repeat(before, K, axis=1), before, b, K)], axis=1)
        states.append(s)
        targets.append(frac[:, b * K:(b + 1) * K])
    return np.concatenate(states).astype(np.float32), np.concatenate(targets).astype(np.float32)


def fit_policy(spec: AgentSpec, theta: np.ndarray, states: np.ndarray, targets: np.ndarray, log_std: float,
               seed: int) -> tuple[np.ndarray, float]:
    """The policy of flat parameters ``theta`` after Adam on mean((mu - target)^2) + mean((log_std_out - log_std)^2)
    over shuffled minibatches (``STEPS`` of ``BATCH``, lr ``LR``). Returns (theta, final mean squared error of mu)."""
    net = PolicyNet(spec.obs_dim, spec.act_dim, spec.hidden, spec.layers)
    torch.nn.utils.vector_to_parameters(torch.tensor(theta, dtype=torch.float32), net.parameters())  # a copy:
    # the parameters become views of this vector, and Adam updates them in place
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(int(seed))
    S, T = torch.from_numpy(states), torch.from_numpy(targets)
    steps = 0
    while steps < STEPS:
        for idx in torch.randperm(len(S), generator=gen).split(BATCH)[:STEPS - steps]:
            steps += 1
            mu, ls = net(S[idx])
            loss = ((mu - T[idx]) ** 2).mean() + ((ls - log_std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        mse = float(((net(S)[0] - T) ** 2).mean())
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().copy(), mse


def imitate(spec: AgentSpec, scenario: Scenario, norm: GainNorm, theta: np.ndarray, log_std: float,
            rng: np.random.Generator, slots: int = SLOTS) -> tuple[np.ndarray, dict[str, float]]:
    """The initial policy of ``policy.init=cell_optimum``: ``theta`` fitted to the own-cell optimum on ``slots``
    slots drawn from ``rng``. Returns (theta, diagnostics: the teacher's mean sum-rate in bit/s/Hz and the fit's
    mean squared error)."""
    problem = scenario.sample(slots, rng)
    p = cell_optimum(problem)
    frac = p / problem.p_max_w
    position = random_positions(rng, slots, spec.B) if spec.scheme == "partial" else None
    states, targets = teacher_states(spec, norm, problem, frac, position)
    theta, mse = fit_policy(spec, theta, states, targets, log_std, int(rng.integers(2**31)))
    return theta, {"teacher_bps_hz": float(sum_rate(problem.G, p, problem.noise_w).mean()), "fit_mse": mse}


__all__ = ["imitate", "teacher_states", "fit_policy"]
