"""The benchmarks of paper 2 (Sec. IV): centralized training with the exact gradient of the sum-rate
through every policy (Adam), and federated learning (FL) on the same channel process."""

from __future__ import annotations

from typing import Any

import numpy as np

from bs_agent.zo.policy import local_states
from coordinator.zo.air import Air, batch_sum_rate_torch
from coordinator.zo.config import ZOConfig, scenario, specs, validate
from coordinator.zo.links import Exchange, make_agents
from protocol.codec import frame_size
from protocol.envelope import COORDINATOR, Envelope, Kind
from protocol.log import MEMORY, MessageLog


def adam_lr(cfg: ZOConfig, k: int) -> float:
    """Learning rate of the first-order baselines at iteration k: adam_lr, or with ``adam_lr_end`` > 0
    the geometric decay adam_lr (adam_lr_end / adam_lr)^(k / K), K = run.iterations."""
    b = cfg.baseline
    if b.adam_lr_end <= 0:
        return b.adam_lr
    return b.adam_lr * (b.adam_lr_end / b.adam_lr) ** (min(k, cfg.run.iterations) / max(cfg.run.iterations, 1))


class FirstOrder:
    """Centralized training with the exact gradient of the sum-rate through all policies (Adam),
    or FL (``fl=True``): every link takes Adam steps on its own block of that gradient and every I
    iterations uploads theta_i to a server that returns the average (all links then share it).

    Both consume the same channel process (B slots per iteration) as Algorithm 1 and log their
    traffic: centralized — each receiver's gains row per slot (CSI_UPLOAD, [B, N] float32) and the
    parameters back (PARAMETERS); FL — FL_UPLOAD / FL_AVERAGE of theta every I iterations.
    """

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange, fl: bool = False):
        import torch

        validate(cfg)
        self.cfg = cfg
        self.fl = fl
        self.log = log
        log.via = MEMORY        # the baselines' exchanges are emulated, not sent
        self.exchange = exchange
        self.N = cfg.scenario.n_links
        self.B = cfg.algo.b1 + cfg.algo.b2
        self.specs = specs(cfg)
        agents = make_agents(cfg)          # same theta^0 as the proposed method
        init = [a.theta for a in agents]
        if fl:
            init = [np.mean(init, axis=0)] * self.N
        self.params = [torch.tensor(th, dtype=torch.float64, requires_grad=True) for th in init]
        self.opt = torch.optim.Adam(self.params, lr=cfg.baseline.adam_lr)
        self.air = Air(scenario(cfg), self.specs, init, cfg.run.seed)
        self.iteration = 0
        self.last_sum_rate = float("nan")
        self._size_cache: dict[tuple[int, int], int] = {}

    def thetas(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]

    def _send(self, kind: Kind, sender: int, receiver: int, n_floats: int, shape: tuple[int, ...]) -> None:
        key = (int(kind), n_floats)
        env = Envelope(kind, sender, receiver, self.iteration, self.iteration,
                       {"x": np.zeros(shape, dtype=np.float32)})
        if key not in self._size_cache:
            self._size_cache[key] = frame_size(env)
        nbytes = self._size_cache[key]
        self.log.record_sent(env, nbytes)
        self.log.record_received(env, nbytes, t_recv_ns=0)
        self.exchange.add(1, n_floats, nbytes)

    def run_iteration(self) -> None:
        import torch

        if not self.fl:
            for i in range(self.N):            # each receiver uploads its gains row for every slot
                self._send(Kind.CSI_UPLOAD, i, COORDINATOR, self.B * self.N, (self.B, self.N))
        # the air with the current policies: powers in force slot by slot, and each link's inputs
        for g, (_sp, ix) in enumerate(self.air.groups):
            self.air.stacks[g] = np.stack([self.params[i].detach().numpy() for i in ix])
        P = np.empty((self.B, self.N))
        p_before = self.air.p_prev.copy()
        rates = self.air.advance(self.air.t + self.B, powers_out=P)
        G = self.air.last_gains                                               # [B, N, N]
        p_in = np.concatenate([p_before[None], P[:-1]])
        S = local_states(G, p_in, self.cfg.scenario.noise_w, np.full(self.N, self.cfg.scenario.p_max_w),
                         self.specs[0].inputs, self.specs[0].caused)
        if self.cfg.baseline.adam_lr_end > 0:
            for grp in self.opt.param_groups:
                grp["lr"] = adam_lr(self.cfg, self.iteration)
        sr = batch_sum_rate_torch(self.specs, self.params, torch.from_numpy(G), torch.from_numpy(S),
                                  self.cfg.scenario.noise_w, self.cfg.scenario.p_max_w)
        self.opt.zero_grad()
        (-sr).backward()
        self.opt.step()
        self.last_sum_rate = float(rates.sum(axis=1).mean())
        self.iteration += 1
        if not self.fl:
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.PARAMETERS, COORDINATOR, i, n, (n,))
        elif self.iteration % self.cfg.baseline.fl_interval == 0:
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.FL_UPLOAD, i, COORDINATOR, n, (n,))
            with torch.no_grad():
                avg = torch.stack([p.detach() for p in self.params]).mean(dim=0)
                for p in self.params:
                    p.copy_(avg)
            for i in range(self.N):
                n = self.specs[i].n_params
                self._send(Kind.FL_AVERAGE, COORDINATOR, i, n, (n,))

    def state(self) -> dict[str, Any]:
        return {"params": self.thetas(), "opt": self.opt.state_dict(), "air": self.air.state(),
                "iteration": self.iteration,
                "exchange": vars(self.exchange).copy()}

    def load_state(self, st: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for p, v in zip(self.params, st["params"], strict=False):
                p.copy_(torch.from_numpy(np.asarray(v)))
        self.opt.load_state_dict(st["opt"])
        self.air.load_state(st["air"])
        self.iteration = int(st["iteration"])
        for k, v in st["exchange"].items():
            setattr(self.exchange, k, v)

    def diagnostics(self) -> dict[str, float]:
        return {}

    def finish(self) -> None:
        """Nothing in flight."""
