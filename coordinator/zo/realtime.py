"""Algorithm 1 on the wall clock (``run.clock: real``, ray backend): the links run free.

The air is paced by the wall clock: slot t occupies [t0 + t * slot_s, t0 + (t + 1) * slot_s) and the
driver computes slots in batches up to the current wall-clock slot, never ahead of it (when it
cannot keep up, the air lags and catches up in one batch; the lag is reported). Link i's iteration
starts at the slot its parameters reach the air: theta_i^k for B1 slots, theta_i^k + mu u_i^k for
B2 slots, then its rates go to its actor over the air port (a ZeroMQ frame, :mod:`protocol.airport`;
no Ray call per iteration) and the driver does NOT wait for the reply — the air
runs on, the link keeping theta + mu u in force until its update comes back (that latency, in
slots, is reported as ``update_slots``). Links keep a common frame, as the paper's asynchronous
model does (same period, fixed offsets): link i's iteration k is scheduled at slot
o_i + k (B + guard_slots); an update that comes back after that slot starts its iteration late
(counted in ``overruns``), and the next one is back on its frame if the guard covers the latency —
so iteration indices stay aligned and eq. (8) sees d_j^k and d_j^{k-1}, not arbitrary old ones.

On that frame the actor sends d, takes whatever the protocol's real-time deadline queue
(``LinkEmulator(clock="real")`` in its :class:`protocol.RingNode`, delays in seconds) has released
and updates at once: eq. (8) by arrival time (a d_j^k that arrived in time is fresh, one that came
after link i's update k is used as the stale term of update k + 1 with u_i^k, anything older is
discarded). Late (``late_d``), discarded (``stale_d``), duplicate and dropped messages are counted
in the metrics and every message is in the run's message log (bytes, send/receive times, injected
delay in ns, dropped). At the end the actors drain what is still in flight so that the log adds up
(``unreceived_d`` counts what never came within the drain timeout). Not deterministic by nature.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from coordinator.config import ConfigError
from coordinator.zo.air import Air
from coordinator.zo.config import ZOConfig, neighbours, offsets, scenario, specs, validate
from coordinator.zo.links import Exchange
from coordinator.zo.proposed import LinkProgress
from coordinator.zo.ray_links import RayLinks
from protocol.envelope import now_ns

DRAIN_TIMEOUT_MS = 10_000


class RealTimeProposed(LinkProgress):
    """Driver of Algorithm 1 on the wall clock over :class:`coordinator.zo.ray_links.RayLinks`."""

    def __init__(self, cfg: ZOConfig, links: RayLinks, exchange: Exchange):
        validate(cfg)
        if cfg.run.clock != "real":
            raise ConfigError("RealTimeProposed needs run.clock=real")
        self.cfg, self.links, self.exchange = cfg, links, exchange
        self.N = cfg.scenario.n_links
        self.b1, self.B = cfg.algo.b1, cfg.algo.b1 + cfg.algo.b2
        self.P = self.B + cfg.run.guard_slots          # frame: iteration + exchange/update guard
        self.slot_ns = max(1, round(cfg.run.slot_s * 1e9))
        self.sched = links.schedules()
        self.air = Air(scenario(cfg), specs(cfg), [s[0] for s in self.sched], cfg.run.seed)
        self._restart(offsets(cfg))
        self.k = [0] * self.N
        self.last_sum_rate = float("nan")
        self.lag_slots = 0           # largest distance the air fell behind the wall clock
        self.update_slots: list[int] = []
        self.overruns = 0
        self.unreceived = 0
        self.stopping = False        # set by finish(): iterations that end now start no update

    def _restart(self, offsets: list[int]) -> None:
        self.frame0 = [self.air.t + o for o in offsets]  # slot of each link's iteration 0 (its frame)
        self.start = list(self.frame0)                   # slot where each link's current iteration begins
        self.switched = [False] * self.N
        self.inflight: dict[int, int] = {}               # link whose update is running -> slot its iteration ended
        self.busy: set[int] = set()                      # links whose update is running (or, stopping, never started)
        self.hist = np.empty((0, self.N))                # rates of slots [hist_t0, air.t)
        self.hist_t0 = self.air.t
        self.t0_ns: int | None = None

    # ---- the air on the wall clock ----
    def _wall_slot(self) -> int:
        if self.t0_ns is None:
            self.t0_ns, self.t_base = now_ns(), self.air.t
        return self.t_base + (now_ns() - self.t0_ns) // self.slot_ns

    def _next_event(self) -> int | None:
        """Next slot where an idle link switches to theta + mu u or ends its iteration."""
        evs = [self.start[i] + (self.B if self.switched[i] else self.b1) for i in range(self.N) if i not in self.busy]
        return min(evs) if evs else None

    def _advance(self, t: int) -> None:
        r = self.air.advance(t)
        self.hist = np.concatenate([self.hist, r])
        idle = [self.start[i] for i in range(self.N) if i not in self.busy]
        cut = min(min(idle, default=self.air.t), self.air.t) - self.hist_t0
        if cut > 0:
            self.hist = self.hist[cut:]
            self.hist_t0 += cut

    def _run_air_to(self, target: int) -> None:
        """Compute slots up to ``target``, handling every idle link's event on the way."""
        self.lag_slots = max(self.lag_slots, target - self.air.t)
        while (ev := self._next_event()) is not None and ev <= target:
            self._advance(ev)
            self._events(ev)
        self._advance(target)

    def _events(self, t: int) -> None:
        for i in range(self.N):
            if i in self.busy:
                continue
            if self.switched[i] and self.start[i] + self.B == t:        # iteration over: rates to the link
                if self.stopping:                                       # run over: no update is started
                    self.busy.add(i)
                    continue
                rates = self.hist[self.start[i] - self.hist_t0: t - self.hist_t0, i].copy()
                self.links.submit([i], t, {i: rates}, real=True)
                self.inflight[i] = t
                self.busy.add(i)
            elif not self.switched[i] and self.start[i] + self.b1 == t:
                self.air.set_theta(i, self.sched[i][1])                 # theta_i^k + mu u_i^k in force
                self.switched[i] = True

    def _harvest(self, timeout_s: float, block_all: bool = False) -> None:
        """Put in force the updates that came back (waiting up to ``timeout_s`` for one)."""
        if not self.inflight:
            if timeout_s > 0 and not block_all:
                time.sleep(timeout_s)
            return
        # (and any other reply that is in)
        ready = self.links.ready(None if block_all else timeout_s, len(self.inflight) if block_all else 1)
        if not ready:
            return
        self._run_air_to(max(self.air.t, self._wall_slot()))         # slots up to now ran with theta + mu u
        for i, sched in ready.items():
            t_end = self.inflight.pop(i)
            self.busy.discard(i)
            self.sched[i] = sched
            self.air.set_theta(i, self.sched[i][0])                   # theta_i^{k+1} from the next slot
            self.update_slots.append(self.air.t - t_end)
            self.k[i] += 1
            frame = self.frame0[i] + self.k[i] * self.P
            self.overruns += self.air.t > frame
            self.start[i], self.switched[i] = max(frame, self.air.t), False

    def step(self) -> None:
        self._harvest(0.0)
        wall = self._wall_slot()
        if self.air.t < wall:
            self._run_air_to(wall)
        ev = self._next_event()
        wait_slots = 2 if ev is None else max(ev - self._wall_slot(), 0)
        if wait_slots:
            self._harvest(wait_slots * self.slot_ns / 1e9)

    def run_iteration(self) -> None:
        """Run until every link has completed one more iteration."""
        target = self.iteration + 1
        while self.iteration < target:
            self.step()
        n = min(self.hist.shape[0], self.B)
        if n:
            self.last_sum_rate = float(self.hist[-n:].sum(axis=1).mean())

    def finish(self) -> None:
        """Take the updates still running (starting no new one, so every d sent is in ``k``), then
        let every link drain the d messages in flight."""
        self.stopping = True
        self._harvest(0.0, block_all=True)
        nb = neighbours(self.cfg)
        self.unreceived = self.links.drain([sum(self.k[j] for j in nb[i]) for i in range(self.N)], DRAIN_TIMEOUT_MS)

    # ---- checkpoint (links restart their iterations at the slot of the resume) ----
    def state(self) -> dict[str, Any]:
        self._harvest(0.0, block_all=True)
        return {"air": self.air.state(), "links": self.links.states(), "k": list(self.k),
                "sched": [(a.copy(), b.copy()) for a, b in self.sched], "exchange": vars(self.exchange).copy()}

    def load_state(self, st: dict[str, Any]) -> None:
        self.air.load_state(st["air"])
        self.links.load_states(st["links"])
        self.k = list(st["k"])
        self.sched = [(np.asarray(a).copy(), np.asarray(b).copy()) for a, b in st["sched"]]
        for i, (th, _) in enumerate(self.sched):
            self.air.set_theta(i, th)
        for key, v in st["exchange"].items():
            setattr(self.exchange, key, v)
        self._restart(offsets(self.cfg))

    def diagnostics(self) -> dict[str, float]:
        st = self.links.stats()
        us = self.update_slots or [0]
        return {"d_mean": float(np.mean([s["d"] for s in st])),
                "zo_grad_norm": float(np.mean([s["grad_norm"] for s in st])),
                "applied_d": float(np.mean([s["applied"] for s in st])),
                "stale_d": float(sum(s["stale"] for s in st)),
                "duplicate_d": float(sum(s["duplicates"] for s in st)),
                "late_d": float(sum(s["late"] for s in st)),
                "unreceived_d": float(self.unreceived),
                "update_slots": float(np.mean(us)), "air_lag_slots": float(self.lag_slots),
                "overruns": float(self.overruns),
                "iteration_spread": float(max(self.k) - min(self.k))}
