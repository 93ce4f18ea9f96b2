"""Algorithm 1 of paper 2 over the air in logical time (:class:`ZOProposed`).

Link i's iteration k covers the slots [o_i + kB, o_i + (k+1)B): theta_i^k for B1 slots, theta_i^k + mu u_i^k
for B2. The driver runs the air up to the next moment some link switches parameters or ends an iteration
(never slot by slot), hands each finishing link its own rates, lets the links exchange d (in memory or over
ZeroMQ, :mod:`coordinator.zo.links`) and puts their new parameters in force. At one slot t: every finishing
link first forms and sends d, then messages due by t are delivered, then they update — so equal offsets
give eq. (7) exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bs_agent.zo.policy import MLPSpec
from coordinator.zo.air import Air
from coordinator.zo.config import ZOConfig, offsets, scenario, specs, validate
from coordinator.zo.links import Exchange, LinksBackend


class LinkProgress:
    """What both drivers of Algorithm 1 (logical and real clock) expose from ``k`` and ``sched``."""

    k: list[int]
    sched: list

    @property
    def iteration(self) -> int:
        """Iterations completed by every link."""
        return min(self.k)

    def thetas(self) -> list[np.ndarray]:
        """theta_i^k of every link (unperturbed)."""
        return [s[0] for s in self.sched]


class ZOProposed(LinkProgress):
    """Algorithm 1 for all links over the air in logical time (any :class:`LinksBackend`)."""

    def __init__(self, cfg: ZOConfig, links: LinksBackend, exchange: Exchange):
        validate(cfg)
        self.cfg = cfg
        self.links = links
        self.exchange = exchange
        self.N = cfg.scenario.n_links
        self.b1, self.b2 = cfg.algo.b1, cfg.algo.b2
        self.B = self.b1 + self.b2
        self.offsets = offsets(cfg)
        self.specs: list[MLPSpec] = specs(cfg)
        sched = links.schedules()
        self.sched = list(sched)
        self.air = Air(scenario(cfg), self.specs, [s[0] for s in sched], cfg.run.seed)
        self.k = [0] * self.N
        self.switched = [False] * self.N
        self.hist = np.empty((0, self.N))      # rates of slots [hist_t0, air.t)
        self.hist_t0 = 0
        self.last_sum_rate = float("nan")

    def _next_event(self) -> int:
        t = None
        for i in range(self.N):
            o, k = self.offsets[i], self.k[i]
            cand = o + (k + 1) * self.B if self.switched[i] else o + k * self.B + self.b1
            t = cand if t is None else min(t, cand)
        return int(t)

    def _rates(self, i: int, t_end: int) -> np.ndarray:
        t0 = t_end - self.B
        return self.hist[t0 - self.hist_t0: t_end - self.hist_t0, i]

    def step(self) -> None:
        """Advance to the next event and process every link's event at that slot."""
        t = self._next_event()
        r = self.air.advance(t)
        self.hist = np.concatenate([self.hist, r])
        keep = 2 * self.B
        if self.hist.shape[0] > keep:
            cut = self.hist.shape[0] - keep
            self.hist = self.hist[cut:]
            self.hist_t0 += cut
        ending = [i for i in range(self.N) if self.switched[i] and self.offsets[i] + (self.k[i] + 1) * self.B == t]
        if ending:
            new = self.links.step(ending, t, {i: self._rates(i, t) for i in ending})
            for i in ending:
                self.sched[i] = new[i]
                self.k[i] += 1
                self.switched[i] = False
                self.air.set_theta(i, new[i][0])
        for i in range(self.N):
            if not self.switched[i] and self.offsets[i] + self.k[i] * self.B + self.b1 == t:
                self.air.set_theta(i, self.sched[i][1])             # theta_i^k + mu u_i^k in force
                self.switched[i] = True

    def run_iteration(self) -> None:
        """Run until every link has completed one more iteration."""
        target = self.iteration + 1
        while self.iteration < target:
            self.step()
        n = min(self.hist.shape[0], self.B)
        self.last_sum_rate = float(self.hist[-n:].sum(axis=1).mean())

    def finish(self) -> None:
        """End of training: messages still in flight are received and logged (ray backend)."""
        self.links.settle(list(self.k))

    # ---- checkpoint ----
    def state(self) -> dict[str, Any]:
        self.links.settle(list(self.k))       # messages in flight become part of the receivers' state
        return {"air": self.air.state(), "links": self.links.states(), "k": list(self.k),
                "switched": list(self.switched), "hist": self.hist.copy(), "hist_t0": self.hist_t0,
                "sched": [(a.copy(), b.copy()) for a, b in self.sched], "exchange": vars(self.exchange).copy()}

    def load_state(self, st: dict[str, Any]) -> None:
        self.air.load_state(st["air"])
        self.links.load_states(st["links"])
        self.k = list(st["k"])
        self.switched = list(st["switched"])
        self.hist = np.asarray(st["hist"]).copy()
        self.hist_t0 = int(st["hist_t0"])
        self.sched = [(np.asarray(a).copy(), np.asarray(b).copy()) for a, b in st["sched"]]
        for k, v in st["exchange"].items():
            setattr(self.exchange, k, v)

    def diagnostics(self) -> dict[str, float]:
        st = self.links.stats()
        return {"d_mean": float(np.mean([s["d"] for s in st])),
                "zo_grad_norm": float(np.mean([s["grad_norm"] for s in st])),
                "applied_d": float(np.mean([s["applied"] for s in st])),
                "stale_d": float(sum(s["stale"] for s in st)),
                "duplicate_d": float(sum(s["duplicates"] for s in st))}
