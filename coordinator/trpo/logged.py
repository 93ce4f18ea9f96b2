"""A backend that logs what it carries (:class:`LoggedBackend`): every vector between the coordinator and
the agents of one training iteration becomes a row of the run's message log with its size on the wire,
so the trainer's math does not log and the two backends log the same rows.

What a training iteration exchanges (paper 1, DESIGN §3), in the order logged:

* sampling — centralized: each BS uploads its own downlink gains to all L users (CSI_UPLOAD, K·B per
  slot) and the central agent returns each BS its K powers (POWER_ASSIGNMENT); round-robin: the token's
  hops as the nodes logged them, then the final token from the last BS to the coordinator
  (POWER_VECTOR); fully decentralized: nothing;
* learning — returns and weights to each agent (METRICS), its gradient share back (GRADIENT); per
  conjugate-gradient product the vector (FVP_REQUEST) and each share (FVP); per line-search candidate the
  parameters (PARAMETERS) and each agent's surrogate and KL (METRICS); per critic round riding on a call
  the critic's parameters (PARAMETERS ``phi``, from round 1 on) and each share (GRADIENT ``c``); at the
  end the accepted parameters (PARAMETERS).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import numpy as np
import torch

from bs_agent.trpo.ops import Crit, agent_ids, token_payload
from coordinator.messages import COORDINATOR, RunMessages
from coordinator.trpo.backend import AgentBackend
from protocol import Envelope, Kind, frame_size, now_ns
from protocol.log import DROPPED, MEMORY, SOCKET


class LoggedBackend:
    """``backend`` with every call's messages in ``log``; the iteration of the rows is the one of the
    last :meth:`sample` (the trainer samples first in each iteration)."""

    def __init__(self, backend: AgentBackend, log: RunMessages) -> None:
        self.raw = backend
        self.log = log
        self.spec = backend.spec
        self.name = backend.name
        self.ids = agent_ids(backend.spec)
        self.iteration = 0
        self.lost = 0            # one-slot round-robin vectors lost in the last sample

    # ---- sampling
    def sample(self, gains_norm: np.ndarray, iteration: int, position: np.ndarray | None = None,
               lost: np.ndarray | None = None) -> np.ndarray:
        """The agents act on the M slots of ``gains_norm`` [M, L, B] along the scheme's message path;
        returns the power fractions [M, L]. ``position`` [M, B]: the round-robin order of every slot;
        ``lost`` [M, B]: BS b's vector from its predecessor lost in slot m (logged as dropped)."""
        self.iteration = it = iteration
        spec, log, raw, t = self.spec, self.log, self.raw, now_ns()
        B, K = spec.B, spec.K
        if spec.scheme == "centralized":
            log.from_each(Kind.CSI_UPLOAD, range(B), it, [{"gains": gains_norm[:, :, b]} for b in range(B)], t)
            frac = raw.act_all(gains_norm)   # the CSI is loaded in the same call
            log.to_each(Kind.POWER_ASSIGNMENT, range(B), it, [{"p": frac[:, b * K:(b + 1) * K]} for b in range(B)],
                        t)
        elif spec.scheme == "partial":
            if position is None:
                raise ValueError("round-robin sampling needs the slots' orders (position)")
            frac, hops = raw.act_round_robin(position, it, log.run_id, gains_norm=gains_norm, lost=lost)
            memory = getattr(raw, "memory_links", frozenset())   # ray: the hops between BSs of one actor
            for in_memory, rows in groupby(hops, lambda r: raw.name == "inproc" or (r[2], r[3]) in memory):
                log.record_rows(rows, via=MEMORY if in_memory else SOCKET)
            log.carried(Kind.POWER_VECTOR, B - 1, COORDINATOR, it, {"p": frac}, t)
            self.lost = 0 if lost is None else int(lost.sum())
            if lost is not None:
                self._log_lost(position, lost, it, t)
        else:
            frac = raw.act_all(gains_norm)
        return frac

    def _log_lost(self, position: np.ndarray, lost: np.ndarray, it: int, t: int) -> None:
        """One dropped row per lost one-slot vector: from the BS one step before, to the BS that lost it; seq is
        the slot within the batch, nbytes the size of that slot's vector alone."""
        B, L = self.spec.B, self.spec.B * self.spec.K
        order = np.argsort(position, axis=1)
        inr = np.zeros(L) if self.spec.interference else None      # rr_message=interference: the INR too
        nbytes = frame_size(Envelope(Kind.POWER_VECTOR, 0, 0, it, 0, token_payload(np.zeros(L), np.zeros(B), inr)))
        via, self.log.via = self.log.via, MEMORY
        for m, b in zip(*np.nonzero(lost), strict=True):
            pred = int(order[m, position[m, b] - 1])
            self.log.record(DROPPED, int(Kind.POWER_VECTOR), pred, int(b), it, int(m), nbytes, t, t)
        self.log.via = via

    # ---- learning
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False
                       ) -> list[tuple[np.ndarray, Crit]]:
        t = now_ns()
        out = self.raw.start_learning(returns, step_w, critic, self.iteration)
        self.log.to_each(Kind.METRICS, self.ids, self.iteration,
                         [{"G": G, "gamma_n": w} for G, w in zip(returns, step_w, strict=True)], t)
        self.log.from_each(Kind.GRADIENT, self.ids, self.iteration, [{"g": x} for x, _ in out], t)
        self._critic(out, critic, t)
        return out

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]:
        t = now_ns()
        out = self.raw.fvp(v, critic, phi)
        self.log.to_each(Kind.FVP_REQUEST, self.ids, self.iteration, [{"v": v}] * len(self.ids), t)
        self._phi(critic, phi, t)
        self.log.from_each(Kind.FVP, self.ids, self.iteration, [{"fvp": x} for x, _ in out], t)
        self._critic(out, critic, t)
        return out

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        t = now_ns()
        out = self.raw.surrogate_kl(theta, critic, phi)
        self.log.to_each(Kind.PARAMETERS, self.ids, self.iteration, [{"theta": theta}] * len(self.ids), t)
        self._phi(critic, phi, t)
        self.log.from_each(Kind.METRICS, self.ids, self.iteration,
                           [{"surrogate": s, "kl": k} for (s, k), _ in out], t)
        self._critic(out, critic, t)
        return out

    def value_round(self, phi: np.ndarray | None) -> list[tuple[np.ndarray, float]]:
        """A critic round on its own (at the stored returns, after setting ``phi`` if given)."""
        t = now_ns()
        shares = self.raw.value_round(None, phi)
        self._phi(True, phi, t)
        self._critic([(None, c) for c in shares], True, t)
        return shares

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        """Broadcast the accepted policy (and critic) parameters."""
        t = now_ns()
        self.raw.set_params(theta, phi)
        self.log.to_each(Kind.PARAMETERS, self.ids, self.iteration, [{"theta": theta}] * len(self.ids), t)
        if phi is not None:
            self.log.to_each(Kind.PARAMETERS, self.ids, self.iteration, [{"phi": phi}] * len(self.ids), t)

    def _phi(self, critic: bool, phi: np.ndarray | None, t: int) -> None:
        """The PARAMETERS message of a critic round riding on a call (round 0 runs at the agents' phi)."""
        if critic and phi is not None:
            self.log.to_each(Kind.PARAMETERS, self.ids, self.iteration, [{"phi": phi}] * len(self.ids), t)

    def _critic(self, out: list, critic: bool, t: int) -> None:
        """Each agent's critic share of a round riding on a call: ``out`` is [(share, (c, loss) | None)]."""
        if critic:
            self.log.from_each(Kind.GRADIENT, self.ids, self.iteration,
                               [{"c": c, "loss": lv} for _, (c, lv) in out], t)

    # ---- carried without messages of their own (setup, checkpoints)
    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.raw.initial_params()

    def set_policy(self, theta: np.ndarray) -> None:
        self.raw.set_policy(theta)

    def set_value(self, phi: np.ndarray) -> None:
        self.raw.set_value(phi)

    def rng_states(self) -> list[torch.Tensor]:
        return self.raw.rng_states()

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        self.raw.set_rng_states(states)

    def close(self) -> None:
        self.raw.close()
