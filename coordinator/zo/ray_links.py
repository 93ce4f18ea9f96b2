"""The zeroth-order links as Ray actors, seen from the coordinator (:class:`RayLinks`): the actors
(:class:`bs_agent.zo.actor.ZOLinkActor`) exchange d between themselves over ZeroMQ; the coordinator holds
the air and talks to each actor over its air port (:mod:`protocol.airport`): one long ``serve`` Ray call
per actor, then a frame per iteration each way, never a Ray call per iteration. In logical time the numbers
and the logged bytes equal the in-process backend's (:class:`coordinator.zo.links.InprocLinks`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np
import ray

from bs_agent.zo.actor import ZOLinkActor
from bs_agent.zo.host import D_KINDS, STAT_KEYS
from coordinator.config import ConfigError
from coordinator.placement import Node, actor_options, alive_nodes, plan, spans_nodes
from coordinator.session import RaySession, ray_session
from coordinator.zo.config import ZOConfig, link_setups
from coordinator.zo.links import Exchange
from protocol import airport, bind_host, generate_run_keys
from protocol.log import DROPPED, SENT, MessageLog


def run_secure(mode: str | bool, outward: bool, session: RaySession) -> bool:
    """``run.secure`` (DESIGN §6b): on / off as asked (YAML's true / false alike); auto: on when a socket binds
    more than loopback (``outward``) or the run joined a cluster that has a node on another host. The rule of
    :func:`coordinator.trpo.ray_backend.run_secure`, not imported from there (it would load torch here)."""
    if mode in ("on", "off", True, False):
        return mode in ("on", True)
    if mode != "auto":
        raise ConfigError(f"run.secure: expected auto, on or off, got {mode!r}")
    here = ray.util.get_node_ip_address()
    return outward or (session.on_cluster and any(n.ip != here for n in alive_nodes()))


class RayLinks:
    """:class:`coordinator.zo.links.LinksBackend` with the links as Ray actors (``links_per_actor``
    consecutive links per actor; default ``run.links_per_actor``, 1) and the air over ZeroMQ
    (:mod:`protocol.airport`). Joins the run's Ray session (:mod:`coordinator.session`).

    ``secure`` (default ``run.secure``: auto | on | off, :func:`run_secure`): CURVE on every link's node, with
    keys made for this run over the link ids; each actor gets its links' own :class:`protocol.NodeKeys` (secret
    and the run's public keys), so every d message crosses an authenticated connection whose key is bound to
    its sender id. Co-hosted links (``links_per_actor`` > 1) then get a ZeroMQ context each and talk over
    authenticated TCP instead of their shared context's inproc (a CURVE node authenticates its whole context,
    and inproc would bypass it). The air port (:mod:`protocol.airport`: rates and schedules between this
    coordinator and the actors, raw frames) has no CURVE: it stays in clear. :attr:`secure` says which;
    :attr:`keys` holds the public keys (secrets dropped after the hand-out)."""

    def __init__(self, cfg: ZOConfig, log: MessageLog, exchange: Exchange, links_per_actor: int | None = None,
                 address: str | None = None, secure: str | bool | None = None):
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
        self.secure = run_secure(cfg.run.secure if secure is None else secure, on_cluster, self.session)
        keys = generate_run_keys(range(N)) if self.secure else {}
        self.actors = [ZOLinkActor.options(**actor_options(self.where[str(a)])).remote(
                           [setups[i] for i in g], on_cluster, {i: keys[i] for i in g} if keys else None)
                       for a, g in enumerate(self.groups)]
        self.keys = {i: dataclasses.replace(k, secret=b"") for i, k in keys.items()}   # public keys only
        self.hub = airport.Hub(bind_host(on_cluster))
        eps = ray.get([a.endpoints.remote() for a in self.actors])
        ring = {i: e for r, _ in eps for i, e in r.items()}
        self.endpoints = dict(ring)                                   # each link's d inbox
        self.port_endpoints = [p for _, p in eps]                     # each actor's air port
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
        """For meta.json: each link's node (id, IP), its actor's process id, and the driver's node."""
        self._pause()
        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        pids = ray.get([a.__ray_call__.remote(lambda actor: os.getpid()) for a in self.actors])
        self.placement = {f"link{i}": {"node": self.where[str(a)].node_id, "ip": ips.get(self.where[str(a)].node_id,
                                                                                          ""), "pid": pids[a]}
                          for i, a in self.actor_of.items()}
        return {"placement": self.placement, "driver_node": ray.get_runtime_context().get_node_id()}

    def dead_actor(self, exc: BaseException) -> dict[str, str] | None:
        """Which links a :class:`ray.exceptions.RayActorError` is about: ``{"name": "link 3", "node": <Ray node
        id>, "ip": ..., "pid": ...}`` (None if none of this run's actors)."""
        aid = getattr(exc, "actor_id", None)
        for a, handle in enumerate(self.actors):
            if aid is None or handle._actor_id.hex() != aid:
                continue
            g, w, text = self.groups[a], self.where.get(str(a)), str(exc)
            ip = (w.ip if w is not None else "") or (text.split("ip: ", 1)[1].split()[0] if "ip: " in text else "")
            pid = text.split("pid: ", 1)[1].split()[0] if "pid: " in text else ""
            return {"name": f"link {g[0]}" if len(g) == 1 else f"links {g[0]}-{g[-1]} (actor {a})",
                    "node": w.node_id if w is not None else "", "ip": ip, "pid": pid}
        return None

    def dropped_frames(self) -> dict[str, dict[str, int]]:
        """The frames the run's nodes counted and dropped, by class: the hub's (``air``), each actor's air port
        (``air<a>``) and each link's node (``link<i>``: the protocol's rejections and the stray frames its
        receiving loop dropped, :meth:`bs_agent.zo.host.LinkHost.stray_reason`)."""
        self._pause()
        got = ray.get([a.__ray_call__.remote(lambda actor: (dict(actor.port.rejected), {
            i: dict(h.node.stats.rejected) for i, h in actor.links.items()})) for a in self.actors])
        out: dict[str, dict[str, int]] = {"air": dict(self.hub.rejected)}
        for a, (port, links) in enumerate(got):
            out[f"air{a}"] = port
            out.update({f"link{i}": c for i, c in links.items()})
        return out

    def air_stats(self) -> dict[str, int]:
        """Frames and bytes of the air port (coordinator <-> links; not in the message log)."""
        return self.hub.counts()

    def close(self) -> None:
        try:
            self._pause(timeout_s=10.0)      # an interrupted step may leave a link waiting for d: do not hang
            ray.get([a.close.remote() for a in self.actors], timeout=10.0)
        except ray.exceptions.RayError:
            pass                             # a timeout, or an actor that died: the actors are killed below
        finally:
            for a in self.actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            self.actors = []
            self.hub.close()
            self.session.close()
