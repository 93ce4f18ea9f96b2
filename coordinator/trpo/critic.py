"""The critic's Adam steps (:class:`CriticRounds`) on the mean (V - G)^2 from the agents' summed shares."""

from __future__ import annotations

import numpy as np
import torch

from coordinator.trpo.config import TrpoConfig
from coordinator.trpo.logged import LoggedBackend


def shares_sum(shares: list[np.ndarray]) -> torch.Tensor:
    """Sum of the agents' shares (one flat vector each), as the coordinator adds them up."""
    if len(shares) == 1:   # the central agent: its share as it is (no stacked copy)
        x = shares[0]
        return torch.from_numpy(x if x.flags.writeable else x.copy())
    return torch.from_numpy(np.stack(shares)).sum(0)


class CriticRounds:
    """The critic's Adam steps on the mean (V - G)^2 from the summed shares, one round per step
    (``trpo.value_epochs``): on the full batch, or with ``trpo.value_batches = k > 1`` on round e's
    minibatch (every k-th episode from offset e mod k; the agents count the rounds themselves). Round 0
    runs at the current phi, round e > 0 carries the phi of step e - 1. A round rides on whichever call
    goes to the agents next (while :attr:`pending`); the rounds left after the policy step go alone,
    then the accepted theta and the last phi are broadcast. The same Adam steps on the same shares as
    running the rounds after the policy step."""

    def __init__(self, cfg: TrpoConfig, phi: torch.nn.Parameter, value_opt: torch.optim.Optimizer, count: float
                 ) -> None:
        self.cfg, self.phi_param, self.value_opt, self.count = cfg, phi, value_opt, count
        self.left = cfg.value_epochs
        self.done = 0                             # rounds taken (round e's minibatch: e mod k)
        self.phi: np.ndarray | None = None        # None: round 0, the agents' current phi
        self.vloss = float("nan")

    @property
    def pending(self) -> bool:
        return self.left > 0

    def take(self, out: list) -> None:
        """Consume the agents' critic shares from a call's results ``[(share, (c, loss) | None)]``."""
        if not self.pending:
            return
        shares = [c for _, c in out]
        count = self._round_count()
        grad = shares_sum([c for c, _ in shares]) / count
        self.vloss = sum(lv for _, lv in shares) / count
        self.value_opt.zero_grad()
        self.phi_param.grad = grad.to(self.phi_param.dtype)
        self.value_opt.step()
        self.phi = self.phi_param.detach().numpy().copy()
        self.left -= 1
        self.done += 1

    def _round_count(self) -> float:
        """Samples in this round's minibatch over all agents (M*N with the full batch)."""
        k, M = self.cfg.value_batches, self.cfg.episodes
        if k == 1:
            return self.count
        return self.count / M * len(range(self.done % k, M, k))

    def finish(self, agents: LoggedBackend, theta: torch.Tensor) -> float:
        """The rounds left, each alone; then broadcast the accepted ``theta`` (and the last phi). Returns
        the last mean loss."""
        while self.pending:
            shares = agents.value_round(self.phi)
            self.take([(None, c) for c in shares])
        agents.set_params(theta.numpy(), self.phi)
        return self.vloss
