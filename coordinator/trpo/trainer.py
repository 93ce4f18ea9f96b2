"""The coordinator: draws the channel slots (the "air"), scatters each BS its local CSI, triggers the
episodes, computes the common reward R(H, P), estimates advantages with the state-value baseline,
sums the BSs' gradient and Fisher-vector-product shares, runs conjugate gradient, the step of eq. (20)
and the backtracking line search of eqs. (21)-(23), and broadcasts the accepted parameters.
Algorithms 1 (centralized), 2 (partially decentralized, round-robin) and 3 (fully decentralized) of
paper 1, plus the A2C baseline (fixed step) on the same sampling. The policy update is a rule
(:mod:`coordinator.trpo.update`); the messages are logged by the backend (:mod:`coordinator.trpo.logged`).

Episodes (one slot each, M per iteration, all batched):
  centralized  N = 1: s = full CSI, a = all L powers, reward R at the only step.
  partial      N = B: a random BS order per slot; BS at step n sees its CSI + the powers of steps < n;
               reward 0 until the last step, then R (gamma = 0.99).
  full         N = B: all BSs act at once on their own CSI (fixed step index = BS index for the
               discounting of the end-of-episode reward), nothing exchanged.
Rewards are in bit/s/Hz for learning and reported in Mbps (x W / 1e6).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from bs_agent.trpo.ops import agent_ids
from bs_agent.trpo.state import GainNorm
from coordinator.messages import RunMessages
from coordinator.trpo.backend import AgentBackend
from coordinator.trpo.config import TrainConfig, agent_spec, scenario_of
from coordinator.trpo.critic import CriticRounds, shares_sum
from coordinator.trpo.imitate import imitate
from coordinator.trpo.logged import LoggedBackend
from coordinator.trpo.optim import credit_returns, random_positions, silenced_sum_rates, step_weights
from coordinator.trpo.update import update_rule
from radio.channels import expand_gains
from radio.problem import Problem
from radio.rates import sum_rate
from radio.seeding import TrpoStream, child_seed

ON_OFF_THRESHOLD = 0.5
"""``policy.power_levels=on_off``: a fraction at or above this transmits Pmax, below it nothing."""


def powers_w(frac: np.ndarray, problem: Problem, levels: str = "continuous") -> np.ndarray:
    """Power fractions [n, L] -> watts, clipped to [0, Pmax] (``levels`` 'continuous') or 0 / Pmax ('on_off', at
    :data:`ON_OFF_THRESHOLD`), then scaled into a per-BS sum limit if the problem has one (Fig. 15: rescale so each
    BS's sum <= its budget)."""
    f = np.clip(frac, 0.0, 1.0) if levels == "continuous" else (np.asarray(frac) >= ON_OFF_THRESHOLD).astype(float)
    return problem.project(f * problem.p_max_w)


class Diverged(ArithmeticError):
    """A quantity of iteration ``iteration`` is NaN or inf: the run cannot go on (every later number would be
    NaN). Raised by :meth:`Trainer.step` before the iteration's metrics are returned or its parameters
    broadcast; the trainer's state is then spent (the last checkpoint is the last finite state)."""

    def __init__(self, iteration: int, quantity: str, detail: str) -> None:
        self.iteration, self.quantity, self.detail = iteration, quantity, detail
        super().__init__(f"diverged at iteration {iteration}: {quantity} {detail}")


# the rules' diagnostics, named as the error says them
QUANTITIES = {"kl": "the KL between consecutive policies", "surrogate": "the surrogate advantage (eq. 22)",
              "cg_residual": "the conjugate-gradient residual", "step_norm": "the norm of the step (eq. 20)",
              "grad_norm": "the norm of the policy gradient g"}


def check_finite(iteration: int, quantity: str, x: float | torch.Tensor) -> None:
    """Raise :class:`Diverged` if ``x`` (a number, or a tensor already computed: one reduction, no copy)
    holds NaN or inf; the detail (how many entries) is counted only then."""
    if isinstance(x, torch.Tensor):
        if bool(torch.isfinite(x).all()):
            return
        nan, n = int(torch.isnan(x).sum()), x.numel()
        raise Diverged(iteration, quantity, f"has {n - int(torch.isfinite(x).sum())} of {n} entries NaN or inf "
                                            f"({nan} NaN)")
    if not math.isfinite(x):
        raise Diverged(iteration, quantity, f"is {x}")


class Trainer:
    """Runs iterations of TRPO (or A2C) on a backend; numbers are identical across backends."""

    def __init__(self, cfg: TrainConfig, backend: AgentBackend, log: RunMessages | None = None) -> None:
        self.cfg = cfg
        self.scenario = scenario_of(cfg)
        self.spec = agent_spec(cfg)
        self.B, self.K, self.L = self.scenario.cells, self.scenario.K, self.scenario.L
        self.N = 1 if cfg.run.scheme == "centralized" else self.B
        self.norm = GainNorm.of_scenario(self.scenario)
        self.backend = backend
        self.log = log or RunMessages()
        self.agents = LoggedBackend(backend, self.log)
        self.air_rng = np.random.default_rng(child_seed(cfg.run.seed, TrpoStream.AIR))
        self.order_rng = np.random.default_rng(child_seed(cfg.run.seed, TrpoStream.ORDER))
        self.loss_rng = np.random.default_rng(child_seed(cfg.run.seed, TrpoStream.LOSS))
        theta, phi = backend.initial_params()
        self.theta = torch.from_numpy(np.array(theta))
        self.phi = torch.nn.Parameter(torch.from_numpy(np.array(phi)))
        # fused: one kernel, 0.2 ms a step on the 3x256 critic against 0.45
        self.value_opt = torch.optim.Adam([self.phi], lr=cfg.trpo.value_lr, fused=True)
        self.rule = update_rule(cfg.run.algo, cfg.trpo, self.theta)
        self.iteration = 0
        self.ids = agent_ids(self.spec)
        self.imitation: dict[str, float] | None = None   # policy.init=cell_optimum: the fit's diagnostics

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        st = {
            "iteration": self.iteration, "theta": self.theta.clone(), "phi": self.phi.detach().clone(),
            "value_opt": self.value_opt.state_dict(),
            "air_rng": self.air_rng.bit_generator.state, "order_rng": self.order_rng.bit_generator.state,
            "loss_rng": self.loss_rng.bit_generator.state, "agent_rng": self.backend.rng_states(),
        }
        if self.rule.checkpoint_key:
            st[self.rule.checkpoint_key] = self.rule.state_dict()
        return st

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.iteration = int(st["iteration"])
        self.theta = st["theta"].clone()
        with torch.no_grad():
            self.phi.copy_(st["phi"])
        self.value_opt.load_state_dict(st["value_opt"])
        if self.rule.checkpoint_key:
            self.rule.load_state_dict(st[self.rule.checkpoint_key])
        self.air_rng.bit_generator.state = st["air_rng"]
        self.order_rng.bit_generator.state = st["order_rng"]
        if "loss_rng" in st:      # (checkpoints written before links.loss existed had no losses to draw)
            self.loss_rng.bit_generator.state = st["loss_rng"]
        self.backend.set_rng_states(st["agent_rng"])
        self.backend.set_policy(self.theta.numpy())
        self.backend.set_value(self.phi.detach().numpy())

    # ------------------------------------------------------------------ one iteration
    def _sample(self, it: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Draw M slots, let the agents act; returns (rewards R [M] bit/s/Hz, positions, and with
        ``trpo.credit=difference`` the sum-rates with each BS silenced [M, B], else None)."""
        M, B, K, L = self.cfg.trpo.episodes, self.B, self.K, self.L
        ub = self.scenario.user_bs_gains(M, self.air_rng)              # [M, L, B] the air
        position = random_positions(self.order_rng, M, B) if self.cfg.run.scheme == "partial" else None
        lost = None
        if self.cfg.links.loss > 0:     # BS b's vector from its predecessor lost in slot m (none for the first)
            lost = (self.loss_rng.random((M, B)) < self.cfg.links.loss) & (position > 0)
        frac = self.agents.sample(self.norm(ub), it, position, lost)
        problem = Problem(expand_gains(ub, K), self.scenario.noise_w, np.full(L, self.scenario.p_max_w),
                          self.scenario.bandwidth_hz, B, K, self.scenario.bs_sum_power_w)
        def rate(f: np.ndarray) -> np.ndarray:
            return sum_rate(problem.G, powers_w(f, problem, self.cfg.policy.power_levels), problem.noise_w)

        R = rate(frac)                                                     # [M] bit/s/Hz, common reward
        credit = self.cfg.trpo.credit
        silenced = None if credit == "common" else \
            silenced_sum_rates(rate, frac, K, position if credit == "difference" else None)
        return R, position, silenced

    def _positions(self, position: np.ndarray | None, M: int) -> list[np.ndarray]:
        """Step index n of every agent's samples (0-based)."""
        if self.cfg.run.scheme == "centralized":
            return [np.zeros(M, dtype=np.int64)]
        if position is None:  # full: fixed order = BS index
            return [np.full(M, b, dtype=np.int64) for b in range(self.B)]
        return [position[:, b] for b in range(self.B)]

    def step(self) -> dict[str, float]:
        """One iteration; returns its metrics. Raises :class:`Diverged` (naming the quantity) when the reward,
        the policy gradient, the rule's step and diagnostics, the parameters theta or phi, the critic's loss
        and gradient or an optimiser's moments hold NaN or inf: checks on what is already computed, which
        change no number."""
        cfg, t0 = self.cfg, time.perf_counter()
        if self.iteration == 0 and cfg.policy.init == "cell_optimum" and self.imitation is None:
            self._imitate()
        it, M, N = self.iteration, cfg.trpo.episodes, self.N
        R, position, silenced = self._sample(it)
        mean_r = float(R.mean())
        check_finite(it, "the mean sum-rate of the batch (the reward R)", mean_r)
        pos = self._positions(position, M)
        gamma = cfg.trpo.gamma
        returns = credit_returns(R, silenced, pos, N, gamma)                # G_n = gamma^(N-1-n) R (or its difference)
        step_w = [step_weights(n, gamma) for n in pos]                      # gamma^n' of eq. (18)
        count = float(M * N)
        # policy gradient, eq. (18): each agent freezes pi_old, weights gamma^n (G - V(s)), its share. The
        # critic's rounds need only the returns and phi, not the policy step: round e rides on the next
        # call to the agents (this one, the FVP requests, the line search), the rest go alone.
        critic = CriticRounds(cfg.trpo, self.phi, self.value_opt, count)
        out = self.agents.start_learning(returns, step_w, critic.pending)
        critic.take(out)
        g = shares_sum([x for x, _ in out]) / count
        check_finite(it, "the policy gradient g (eq. 18)", g)

        def fvp(v: torch.Tensor) -> torch.Tensor:   # eq. (19): the agents' summed shares
            shares = self.agents.fvp(v.numpy(), critic.pending, critic.phi)
            critic.take(shares)
            return shares_sum([x for x, _ in shares]) / count

        self.theta, metrics = self.rule.step(self.theta, g, fvp, lambda th: self.surrogate_kl(th, count, critic))
        check_finite(it, "the policy parameters theta", self.theta)       # before they are broadcast
        for key, v in metrics.items():
            check_finite(it, QUANTITIES.get(key, key), v)
        for name, moment in self.rule.moments():
            check_finite(it, name, moment)
        vloss = critic.finish(self.agents, self.theta)
        if cfg.trpo.value_epochs > 0:            # (no round: no loss, NaN by convention)
            check_finite(it, "the critic's loss (V - G)^2", vloss)
        if self.phi.grad is not None:
            check_finite(it, "the critic's gradient", self.phi.grad)
        check_finite(it, "the critic's parameters phi", self.phi.detach())
        for st in self.value_opt.state.values():
            check_finite(it, "the critic's Adam moments", st["exp_avg_sq"])
        self.iteration += 1
        return {
            "iteration": it, "reward": mean_r, "reward_mbps": mean_r * self.scenario.bandwidth_hz / 1e6,
            **metrics, "value_loss": vloss, "seconds": time.perf_counter() - t0, "env_steps": M * N,
            **({"lost_vectors": self.agents.lost} if cfg.links.loss > 0 else {}), **self.log.take_iteration(),
        }

    def _imitate(self) -> None:
        """policy.init=cell_optimum: fit the initial policy to the own-cell optimum and broadcast it (logged)."""
        rng = np.random.default_rng(child_seed(self.cfg.run.seed, TrpoStream.IMITATE))
        theta, self.imitation = imitate(self.spec, self.scenario, self.norm, self.theta.numpy(),
                                        self.cfg.policy.init_log_std, rng)
        self.theta = torch.from_numpy(theta)
        self.agents.set_params(theta, None)

    def surrogate_kl(self, theta: torch.Tensor, count: float, critic: CriticRounds) -> tuple[float, float]:
        """Candidate parameters to every agent; mean surrogate (eq. 22) and KL (eq. 23) from their shares."""
        out = self.agents.surrogate_kl(theta.numpy(), critic.pending, critic.phi)
        critic.take(out)
        return sum(s for (s, _), _ in out) / count, sum(k for (_, k), _ in out) / count
