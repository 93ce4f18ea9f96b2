"""The zeroth-order links as Ray actors, seen from the coordinator (:class:`RayLinks`): the actors
(:class:`bs_agent.zo.actor.ZOLinkActor`) exchange d between themselves over ZeroMQ; the coordinator holds
the air and talks to each actor over its air port (:mod:`protocol.airport`): one long ``serve`` Ray call
per actor, then a frame per iteration each way, never a Ray call per iteration. In logical time the numbers
and the logged bytes equal the in-process backend's (:class:`coordinator.zo.links.InprocLinks`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray

from bs_agent.zo.actor import ZOLinkActor
from bs_agent.zo.host import D_KINDS, STAT_KEYS
from coordinator.config import ConfigError
from coordinator.placement import Node, actor_options, plan, spans_nodes
from coordinator.session import ray_session
from coordinator.zo.config import ZOConfig, link_setups
from coordinator.zo.links import Exchange
from protocol import airport, bind_host
from protocol.log import DROPPED, SENT, MessageLog


class RayLinks:
    """:class:`coordinator.zo.links.LinksBackend` with the links as Ray actors (``links_per_actor``
    consecutive links per actor; default ``run.links_per_actor``, 1) and the air over ZeroMQ
    (:mod:`protocol.airport`). Joins the run's Ray session (:mod:`coordinator.session`)."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange, links_per_actor: int | None = None,
                 address: str | None = None):
        if links_per_actor is None:
            links_per_actor = cfg.run.links_per_actor
        if links_per_actor < 1:
            raise ConfigError(f"run.links_per_actor: expected >= 1, got {links_per_actor}")
        self.cfg = cfg
        self.log = log
        self.exchange = exchange
        self.session = ray_session(address)
        N = cfg.scenario.n_links
        setups = link_setups(cfg)
        self.groups = [list(range(a, min(a + links_per_actor, N))) for a in range(0, N, links_per_actor)]
        self.actor_of = {i: a for a, g in enumerate(self.groups) for i in g}
        self.where = plan(cfg.run.placement, [str(a) for a in range(len(self.groups))])
        spanning = spans_nodes({**self.where, "driver": Node(ray.get_runtime_context().get_node_id(), "")})
        on_cluster = spanning or (self.session.on_cluster and self.session.started)
        self.actors = [ZOLinkActor.options(**actor_options(self.where[str(a)])).remote([setups[i] for i in g],
                                                                                       on_cluster)
                       for a, g in enumerate(self.groups)]
        self.hub = airport.Hub(bind_host(on_cluster))
        eps = ray.get([a.endpoints.remote() for a in self.actors])
        ring = {i: e for r, _ in eps for i, e in r.items()}
        self.hub.connect(dict(enumerate(p for _, p in eps)))
        for rows in ray.get([a.connect.remote(ring, self.hub.endpoint) for a in self.actors]):
            self.record(rows, 0)
        self.serving: list[Any] = []               # the actors' serve() calls while the air port runs
        self.last_stats: dict[int, dict[str, float]] = {}

    # ---- the air port ----
    def _serve(self) -> None:
        if not self.serving:
            self.serving = [a.serve.remote() for a in self.actors]

    def _pause(self, timeout_s: float | None = None) -> None:
        """Stop the actors' serve loops (before any other Ray call to them)."""
        if self.serving:
            for a in range(len(self.actors)):
                self.hub.send(a, airport.STOP)
            refs, self.serving = self.serving, []
            ray.get(refs, timeout=timeout_s)

    def _check(self) -> None:
        """While waiting on the air port: surface an actor that died or whose loop raised."""
        done, _ = ray.wait(self.serving, num_returns=1, timeout=0) if self.serving else ([], [])
        if done:
            ray.get(done)                          # raises the actor's error
            raise RuntimeError("a link actor left its serve loop unasked")

    def record(self, rows: np.ndarray, n_scalars: int) -> None:
        """Put an actor's log rows into the run's log; count its d traffic in the exchange."""
        log, ex = self.log, self.exchange
        for row in rows.tolist():
            log.record(*row)
            if row[1] in D_KINDS:
                if row[0] == SENT:
                    ex.add(1, n_scalars, row[6])
                elif row[0] == DROPPED:
                    ex.dropped += 1

    def schedules(self) -> list[tuple[np.ndarray, np.ndarray]]:
        self._pause()
        out: dict[int, np.ndarray] = {}
        for s in ray.get([a.schedules.remote() for a in self.actors]):
            out.update(s)
        return [(out[i][0], out[i][1]) for i in range(len(out))]

    def submit(self, links: list[int], t: int, rates: dict[int, np.ndarray], real: bool = False) -> None:
        """Hand the links ending their iteration at slot t their rates (one frame per actor)."""
        self._serve()
        by_actor: dict[int, list[int]] = {}
        for i in links:
            by_actor.setdefault(self.actor_of[i], []).append(i)
        for a, ix in by_actor.items():
            self.hub.send(a, airport.STEP_REAL if real else airport.STEP, t, ix, np.stack([rates[i] for i in ix]))

    def ready(self, timeout_s: float | None, n_min: int = 1) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Wait (up to ``timeout_s``; None: no limit) until ``n_min`` links have replied, take every
        reply that is in; record their rows (in link order) and return their schedules
        (theta, theta + mu u)."""
        got: dict[int, Any] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if len(got) >= n_min:
                wait_ms = 0
            elif deadline is None:
                wait_ms = airport.POLL_MS
            else:
                wait_ms = min(airport.POLL_MS, max(0, int((deadline - time.monotonic()) * 1e3)))
            reps = self.hub.recv(wait_ms)
            if reps is not None:
                got.update((rep[0], rep) for rep in reps)
                continue
            if len(got) >= n_min or (deadline is not None and time.monotonic() >= deadline):
                break
            self._check()
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in sorted(got):
            _, n_scalars, sched, rows, stats = got[i]
            self.record(rows, n_scalars)
            self.last_stats[i] = dict(zip(STAT_KEYS, stats.tolist(), strict=True))
            out[i] = (sched[0], sched[1])
        return out

    def step(self, links: list[int], t: int, rates: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Logical clock: the links ending at slot t exchange d and update; their next schedules."""
        self.submit(links, t, rates)
        return self.ready(None, len(links))

    def settle(self, k: list[int]) -> None:
        """Receive and log every d message still in flight (logical clock), so that sent = received
        + dropped in the log, as in the in-process backend."""
        self._serve()
        for a in range(len(self.actors)):
            self.hub.send(a, airport.SETTLE, 0, [], np.asarray(k, dtype=np.float64))
        for rows in self.hub.gather_rows(len(self.actors), self._check):
            self.record(rows, 0)

    def drain(self, expected: list[int], timeout_ms: int) -> int:
        """Real clock, end of a run: link i waits until ``expected[i]`` d messages were received or
        dropped (or ``timeout_ms``); their rows go to the log. Returns how many never came."""
        self._pause()
        missing = 0
        for rows, miss in ray.get([a.drain.remote({i: expected[i] for i in g}, timeout_ms)
                                   for a, g in zip(self.actors, self.groups, strict=True)]):
            self.record(rows, 0)
            missing += miss
        return missing

    def states(self) -> list[dict[str, Any]]:
        self._pause()
        out: dict[int, dict[str, Any]] = {}
        for s in ray.get([a.state.remote() for a in self.actors]):
            out.update(s)
        return [out[i] for i in range(len(out))]

    def load_states(self, states: list[dict[str, Any]]) -> None:
        self._pause()
        ray.get([a.load_state.remote({i: states[i] for i in g}) for a, g in zip(self.actors, self.groups, strict=True)])
        self.last_stats = {}

    def stats(self) -> list[dict[str, float]]:
        """Each link's diagnostics: from its last reply (no Ray call), else asked."""
        N = len(self.actor_of)
        if len(self.last_stats) < N:
            self._pause()
            for s in ray.get([a.stats.remote() for a in self.actors]):
                self.last_stats.update(s)
        return [self.last_stats[i] for i in range(N)]

    def meta(self) -> dict[str, Any]:
        """For meta.json: each link's node (id, IP) and the driver's node."""
        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        return {"placement": {f"link{i}": {"node": self.where[str(a)].node_id, "ip": ips.get(self.where[str(a)].node_id,
                                                                                              "")}
                              for i, a in self.actor_of.items()},
                "driver_node": ray.get_runtime_context().get_node_id()}

    def air_stats(self) -> dict[str, int]:
        """Frames and bytes of the air port (coordinator <-> links; not in the message log)."""
        return self.hub.counts()

    def close(self) -> None:
        try:
            self._pause(timeout_s=10.0)      # an interrupted step may leave a link waiting for d: do not hang
            ray.get([a.close.remote() for a in self.actors], timeout=10.0)
        except ray.exceptions.GetTimeoutError:
            pass                             # the actors are killed below
        finally:
            for a in self.actors:
                ray.kill(a)
            self.actors = []
            self.hub.close()
            self.session.close()
