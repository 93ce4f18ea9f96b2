"""The coordinator: draws the channel slots (the "air"), scatters each BS its local CSI, triggers the
episodes, computes the common reward R(H, P), estimates advantages with the state-value baseline,
sums the BSs' gradient and Fisher-vector-product shares, runs conjugate gradient, the step of eq. (20)
and the backtracking line search of eqs. (21)-(23), and broadcasts the accepted parameters.
Algorithms 1 (centralized), 2 (partially decentralized, round-robin) and 3 (fully decentralized) of
paper 1, plus the A2C baseline (fixed step) on the same sampling.

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
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bs_agent.base_station import AgentSpec, native_bfloat16
from bs_agent.state import GainNorm
from bs_agent.trpo import end_of_episode_returns, line_search, step_weights, trpo_step
from coordinator.backends import COORDINATOR_THREADS, InprocBackend, agent_ids
from coordinator.run_messages import COORDINATOR, Kind, RunMessages
from deploy.config import TrainConfig
from protocol import now_ns
from radio.channels import Scenario, expand_gains
from radio.problem import Problem
from radio.rates import sum_rate

# purposes of the root seed's children (numpy SeedSequence spawn keys)
SEED_AIR, SEED_ORDER, SEED_INIT, SEED_AGENT, SEED_EVAL = range(5)


def child_seed(root: int, *key: int) -> int:
    """A 63-bit seed derived from (root seed, purpose, ...) with numpy's SeedSequence."""
    return int(np.random.SeedSequence(int(root), spawn_key=tuple(key)).generate_state(2, np.uint64)[0] >> 1)


def scenario_of(cfg: TrainConfig) -> Scenario:
    s = cfg.scenario
    return Scenario.preset(s.kind, users_per_cell=s.users_per_cell, alpha=s.alpha, cell_radius_m=s.cell_radius_m,
                           p_max_dbm=s.p_max_dbm, bs_sum_power_dbm=s.bs_sum_power_dbm, redrop=s.redrop)


def agent_spec(cfg: TrainConfig) -> AgentSpec:
    sc = scenario_of(cfg)
    return AgentSpec(cfg.run.scheme, sc.cells, sc.K, cfg.policy.hidden, cfg.policy.layers,
                     cfg.policy.init_log_std, child_seed(cfg.run.seed, SEED_INIT), cfg.trpo.fvp_stride,
                     cfg.trpo.value_batches, cfg.trpo.value_precision)


def make_backend(cfg: TrainConfig, address: str | None = None) -> Any:
    """The configured backend: the agents compute with ``run.threads`` torch threads (in their actor
    processes, or switched on around each inproc agent call), the coordinator's own arithmetic in this
    process with 1 (COORDINATOR_THREADS), so that inproc and ray do the same arithmetic."""
    import torch

    torch.set_num_threads(COORDINATOR_THREADS)
    if cfg.trpo.value_precision == "bfloat16" and not native_bfloat16():
        warnings.warn("trpo.value_precision=bfloat16 on a CPU without native bfloat16 (AVX512-BF16/AMX): the "
                      "critic's matmuls are emulated, ~10x slower than float32; set trpo.value_precision=float32 "
                      "or auto",
                      RuntimeWarning, stacklevel=2)
    spec = agent_spec(cfg)
    seeds = [child_seed(cfg.run.seed, SEED_AGENT, i) for i in agent_ids(spec)]
    if cfg.run.backend == "inproc":
        return InprocBackend(spec, seeds, cfg.run.threads)
    from coordinator.ray_backend import RayBackend

    return RayBackend(spec, seeds, address=address, threads=cfg.run.threads)


def random_positions(rng: np.random.Generator, M: int, B: int) -> np.ndarray:
    """[M, B] position[m, b] = step of BS b in slot m's random order (a permutation per slot)."""
    order = np.argsort(rng.random((M, B)), axis=1)     # order[m, n] = BS acting at step n
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(B)[None, :].repeat(M, 0), axis=1)
    return pos


def shares_sum(shares: list[np.ndarray]) -> torch.Tensor:
    """Sum of the agents' shares (one flat vector each), as the coordinator adds them up."""
    if len(shares) == 1:   # the central agent: its share as it is (no stacked copy)
        x = shares[0]
        return torch.from_numpy(x if x.flags.writeable else x.copy())
    return torch.from_numpy(np.stack(shares)).sum(0)


def powers_w(frac: np.ndarray, problem: Problem) -> np.ndarray:
    """Power fractions [n, L] -> watts, clipped to [0, Pmax] and scaled into a per-BS sum limit
    if the problem has one (Fig. 15: rescale so each BS's sum <= its budget)."""
    return problem.project(np.clip(frac, 0.0, 1.0) * problem.p_max_w)


@dataclass
class TrainState:
    iteration: int
    theta: torch.Tensor
    phi: torch.Tensor
    value_opt: dict | None = None
    a2c_opt: dict | None = None
    air_rng: dict | None = None
    order_rng: dict | None = None
    agent_rng: list | None = None
    history: list = field(default_factory=list)


class Trainer:
    """Runs iterations of TRPO (or A2C) on a backend; numbers are identical across backends."""

    def __init__(self, cfg: TrainConfig, backend: Any, log: RunMessages | None = None) -> None:
        self.cfg = cfg
        self.scenario = scenario_of(cfg)
        self.spec = agent_spec(cfg)
        self.B, self.K, self.L = self.scenario.cells, self.scenario.K, self.scenario.L
        self.N = 1 if cfg.run.scheme == "centralized" else self.B
        self.norm = GainNorm.of_scenario(self.scenario)
        self.backend = backend
        self.log = log or RunMessages()
        self.air_rng = np.random.default_rng(child_seed(cfg.run.seed, SEED_AIR))
        self.order_rng = np.random.default_rng(child_seed(cfg.run.seed, SEED_ORDER))
        theta, phi = backend.initial_params()
        self.theta = torch.from_numpy(np.array(theta))
        self.phi = torch.nn.Parameter(torch.from_numpy(np.array(phi)))
        # fused: one kernel, 0.2 ms a step on the 3x256 critic against 0.45
        self.value_opt = torch.optim.Adam([self.phi], lr=cfg.trpo.value_lr, fused=True)
        self.pol = torch.nn.Parameter(self.theta.clone())
        self.a2c_opt = torch.optim.RMSprop([self.pol], lr=cfg.trpo.a2c_lr, alpha=0.99, eps=1e-5)
        self.iteration = 0
        self.ids = agent_ids(self.spec)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "theta": self.theta.clone(), "phi": self.phi.detach().clone(),
            "value_opt": self.value_opt.state_dict(), "a2c_opt": self.a2c_opt.state_dict(),
            "air_rng": self.air_rng.bit_generator.state, "order_rng": self.order_rng.bit_generator.state,
            "agent_rng": self.backend.rng_states(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.iteration = int(st["iteration"])
        self.theta = st["theta"].clone()
        with torch.no_grad():
            self.phi.copy_(st["phi"])
            self.pol.copy_(self.theta)
        self.value_opt.load_state_dict(st["value_opt"])
        self.a2c_opt.load_state_dict(st["a2c_opt"])
        self.air_rng.bit_generator.state = st["air_rng"]
        self.order_rng.bit_generator.state = st["order_rng"]
        self.backend.set_rng_states(st["agent_rng"])
        self.backend.set_policy(self.theta.numpy())
        self.backend.set_value(self.phi.detach().numpy())

    # ------------------------------------------------------------------ one iteration
    def _sample(self, it: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Draw M slots, let the agents act; returns (rewards R [M] bit/s/Hz, positions, powers W)."""
        M, B, K, L = self.cfg.trpo.episodes, self.B, self.K, self.L
        ub = self.scenario.user_bs_gains(M, self.air_rng)              # [M, L, B] the air
        gn = self.norm(ub)
        log = self.log
        position = None
        t = now_ns()
        if self.cfg.run.scheme == "centralized":
            # each BS uploads its own downlink gains to all L users (K*B per slot) to the central agent
            log.from_each(Kind.CSI_UPLOAD, range(B), it, [{"gains": gn[:, :, b]} for b in range(B)], t)
            frac = self.backend.act_all(gn)   # the CSI is loaded in the same call
            # the central agent returns each BS its K powers
            log.to_each(Kind.POWER_ASSIGNMENT, range(B), it, [{"p": frac[:, b * K:(b + 1) * K]} for b in range(B)],
                        t)
        elif self.cfg.run.scheme == "partial":
            position = random_positions(self.order_rng, M, B)
            # B passes of the token around the ring, one message per hop carrying the whole batch: the
            # hops as the nodes logged them, then the final token from the last BS to the coordinator
            frac, hops = self.backend.act_round_robin(position, it, log.run_id, gains_norm=gn)
            log.record_rows(hops)
            log.carried(Kind.POWER_VECTOR, B - 1, COORDINATOR, it, {"p": frac}, t)
        else:
            frac = self.backend.act_all(gn)
        problem = Problem(expand_gains(ub, K), self.scenario.noise_w, np.full(L, self.scenario.p_max_w),
                          self.scenario.bandwidth_hz, B, K, self.scenario.bs_sum_power_w)
        p = powers_w(frac, problem)
        R = sum_rate(problem.G, p, problem.noise_w)                    # [M] bit/s/Hz, common reward
        return R, position, p

    def _positions(self, position: np.ndarray | None, M: int) -> list[np.ndarray]:
        """Step index n of every agent's samples (0-based)."""
        if self.cfg.run.scheme == "centralized":
            return [np.zeros(M, dtype=np.int64)]
        if position is None:  # full: fixed order = BS index
            return [np.full(M, b, dtype=np.int64) for b in range(self.B)]
        return [position[:, b] for b in range(self.B)]

    def step(self) -> dict[str, float]:
        """One iteration; returns its metrics."""
        cfg, t0 = self.cfg, time.perf_counter()
        it, M, N, log, ids = self.iteration, cfg.trpo.episodes, self.N, self.log, self.ids
        R, position, _ = self._sample(it)
        pos = self._positions(position, M)
        gamma = cfg.trpo.gamma
        returns = [end_of_episode_returns(R, n, N, gamma) for n in pos]     # G_n = gamma^(N-1-n) R
        step_w = [step_weights(n, gamma) for n in pos]                      # gamma^n' of eq. (18)
        count = float(M * N)

        # ---- policy gradient, eq. (18): each agent freezes pi_old, weights gamma^n (G - V(s)), its share
        # The critic's rounds need only the returns and phi, not the policy step: round e rides on the
        # next call to the agents (this one, the FVP requests, the line search), the rest go alone.
        critic = _CriticRounds(self, count)
        t = now_ns()
        out = self.backend.start_learning(returns, step_w, critic.pending, it)
        log.to_each(Kind.METRICS, ids, it, [{"G": G, "gamma_n": w} for G, w in zip(returns, step_w, strict=True)], t)
        log.from_each(Kind.GRADIENT, ids, it, [{"g": x} for x, _ in out], t)
        critic.take(out, t)
        g = shares_sum([x for x, _ in out]) / count
        metrics: dict[str, float] = {}
        if cfg.run.algo == "a2c":
            with torch.no_grad():
                self.pol.copy_(self.theta)
            self.a2c_opt.zero_grad()
            self.pol.grad = -g.to(self.pol.dtype)
            self.a2c_opt.step()
            new_theta = self.pol.detach().clone()
            surr, kl = self._surrogate_kl(new_theta, count, critic)
            self.theta = new_theta
            metrics.update(kl=kl, surrogate=surr, backtracks=0, ls_success=1, cg_residual=0.0, cg_iters=0)
        else:
            damping = cfg.trpo.cg_damping

            def Fvp(v: torch.Tensor) -> torch.Tensor:   # eq. (19) + damping
                v_np = v.numpy()
                t = now_ns()
                out = self.backend.fvp(v_np, critic.pending, critic.phi)
                log.to_each(Kind.FVP_REQUEST, ids, it, [{"v": v_np}] * len(ids), t)
                critic.log_request(t)
                log.from_each(Kind.FVP, ids, it, [{"fvp": x} for x, _ in out], t)
                critic.take(out, t)
                return shares_sum([x for x, _ in out]) / count + damping * v

            step, cg, _ = trpo_step(g, Fvp, cfg.trpo.delta, cfg.trpo.cg_iters, cfg.trpo.cg_tol)   # eq. (20)
            ls = line_search(self.theta, step, lambda th: self._surrogate_kl(th, count, critic), cfg.trpo.delta,
                             cfg.trpo.zeta, cfg.trpo.max_backtracks)
            self.theta = ls.theta
            metrics.update(kl=ls.kl, surrogate=ls.surrogate, backtracks=ls.backtracks,
                           ls_success=int(ls.accepted), cg_residual=cg.residual, cg_iters=cg.iterations,
                           step_norm=float(step.norm()))
        vloss = critic.finish()
        self.iteration += 1
        mean_r = float(R.mean())
        metrics = {
            "iteration": it, "reward": mean_r, "reward_mbps": mean_r * self.scenario.bandwidth_hz / 1e6,
            **metrics, "value_loss": vloss, "seconds": time.perf_counter() - t0, "env_steps": M * N,
            **self.log.take_iteration(),
        }
        return metrics

    def _surrogate_kl(self, theta: torch.Tensor, count: float, critic: _CriticRounds) -> tuple[float, float]:
        """Candidate parameters to every agent; mean surrogate (eq. 22) and KL (eq. 23) from their shares."""
        th, ids = theta.numpy(), self.ids
        t = now_ns()
        out = self.backend.surrogate_kl(th, critic.pending, critic.phi)
        self.log.to_each(Kind.PARAMETERS, ids, self.iteration, [{"theta": th}] * len(ids), t)
        critic.log_request(t)
        self.log.from_each(Kind.METRICS, ids, self.iteration, [{"surrogate": s, "kl": k} for (s, k), _ in out], t)
        critic.take(out, t)
        return sum(s for (s, _), _ in out) / count, sum(k for (_, k), _ in out) / count


class _CriticRounds:
    """The critic's Adam steps on the mean (V - G)^2 from the summed shares, one round per step
    (``trpo.value_epochs``): on the full batch, or with ``trpo.value_batches = k > 1`` on round e's
    minibatch (every k-th episode from offset e mod k; the agents count the rounds themselves). Round 0
    runs at the current phi, round e > 0 carries the phi of step e - 1. A round rides on whichever call
    goes to the agents next (while :attr:`pending`); the rounds left after the line search go alone,
    then the accepted theta and the last phi are broadcast. The same Adam steps on the same shares as
    running the rounds after the policy step."""

    def __init__(self, tr: Trainer, count: float) -> None:
        self.tr, self.count = tr, count
        self.left = tr.cfg.trpo.value_epochs
        self.done = 0                             # rounds taken (round e's minibatch: e mod k)
        self.phi: np.ndarray | None = None        # None: round 0, the agents' current phi
        self.vloss = float("nan")

    @property
    def pending(self) -> bool:
        return self.left > 0

    def log_request(self, t: int) -> None:
        """The PARAMETERS message of a round riding on a call sent at ``t`` (round 0 has none)."""
        if self.pending and self.phi is not None:
            ids = self.tr.ids
            self.tr.log.to_each(Kind.PARAMETERS, ids, self.tr.iteration, [{"phi": self.phi}] * len(ids), t)

    def take(self, out: list, t: int) -> None:
        """Consume the agents' critic shares from a call's results ``[(share, (c, loss) | None)]``."""
        if not self.pending:
            return
        tr = self.tr
        shares = [c for _, c in out]
        tr.log.from_each(Kind.GRADIENT, tr.ids, tr.iteration, [{"c": c, "loss": lv} for c, lv in shares], t)
        count = self._round_count()
        grad = shares_sum([c for c, _ in shares]) / count
        self.vloss = sum(lv for _, lv in shares) / count
        tr.value_opt.zero_grad()
        tr.phi.grad = grad.to(tr.phi.dtype)
        tr.value_opt.step()
        self.phi = tr.phi.detach().numpy().copy()
        self.left -= 1
        self.done += 1

    def _round_count(self) -> float:
        """Samples in this round's minibatch over all agents (M*N with the full batch)."""
        k, M = self.tr.cfg.trpo.value_batches, self.tr.cfg.trpo.episodes
        if k == 1:
            return self.count
        return self.count / M * len(range(self.done % k, M, k))

    def finish(self) -> float:
        """The rounds left, each alone; then broadcast the accepted theta (and the last phi). Returns
        the last mean loss."""
        tr, ids, it, log = self.tr, self.tr.ids, self.tr.iteration, self.tr.log
        while self.pending:
            t = now_ns()
            shares = tr.backend.value_round(None, self.phi)
            self.log_request(t)
            self.take([(None, c) for c in shares], t)
        theta, t = tr.theta.numpy(), now_ns()
        tr.backend.set_params(theta, self.phi)
        log.to_each(Kind.PARAMETERS, ids, it, [{"theta": theta}] * len(ids), t)
        if self.phi is not None:
            log.to_each(Kind.PARAMETERS, ids, it, [{"phi": self.phi}] * len(ids), t)
        return self.vloss


def evaluate_policy(cfg: TrainConfig, theta: torch.Tensor, problem: Problem, seed: int = 0) -> np.ndarray:
    """Powers [n, L] W of the trained (deterministic: the mean, clipped) policy on ``problem``'s
    channels. Round-robin uses a random order per slot. Works at any Pmax / per-BS sum budget of
    ``problem`` because the policy outputs fractions of Pmax (Figs. 14, 15)."""
    from radio.channels import user_bs_gains_of

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


def is_finite(x: float) -> bool:
    return math.isfinite(x)
