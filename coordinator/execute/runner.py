"""The execution phase's driver (:class:`ExecutionRunner`): it starts one Ray actor per BS (and one for the
central unit), connects their nodes, measures each node's clock offset, then plays the air slot by slot on
the wall clock — at each slot's start every BS gets its local CSI over its air port, with the slot's
round-robin order and deadline — and never makes a Ray call per slot. At the end it collects every node's
per-slot records and message rows (times corrected to its own clock by the measured offsets) and hands them
to :mod:`coordinator.execute.report`.

The slots' channels and orders are those of ``bsemu evaluate`` for the same seed (``scenario.sample(n,
default_rng(seed))`` and :func:`coordinator.trpo.trainer.random_positions` on ``default_rng(seed)``), so that
on the logical clock with ideal links the powers are the evaluation's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from bs_agent.realtime import realtime
from bs_agent.trpo.actor import COORD_NODE, ExecActor
from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.execution import CU_ID, ExecSetup
from bs_agent.trpo.state import GainNorm
from coordinator.execute.config import ExecuteConfig
from coordinator.placement import Node, actor_options, plan, spans_nodes
from coordinator.session import ray_session
from coordinator.trpo.ray_backend import public_only, run_secure
from coordinator.trpo.trainer import random_positions
from protocol import NodeKeys, RingNode, airport, bind_host, generate_run_keys, now_ns, ring_barrier
from protocol.log import SENT
from radio.channels import Scenario
from radio.problem import Problem


@dataclass
class Source:
    """What decides: a trained policy (``spec``, ``theta``; its scheme) or a classical ``method``: a solver on the
    centralized message path (scheme 'centralized'), or an own-cell rule at every BS (scheme 'full')."""

    scenario: Scenario
    scheme: str
    spec: AgentSpec | None = None
    theta: np.ndarray | None = None
    method: str | None = None
    power_levels: str = "continuous"     # the trained run's policy.power_levels (what its fractions transmit)

    @property
    def name(self) -> str:
        return self.method if self.method else f"trpo_{self.scheme}"

    @property
    def has_cu(self) -> bool:
        return self.scheme == "centralized"


AIR_SPIN_NS = 300_000
"""The air wakes this long before a slot's start and polls to it: ``time.sleep`` alone wakes 50-150 µs late
(the kernel's timer slack and the wake-up), which every node's deadline would pay."""


def wait_until(t_ns: int) -> None:
    """Return at ``t_ns`` (this process's monotonic clock): sleep to :data:`AIR_SPIN_NS` before it, then poll,
    yielding the core to any other runnable process at every poll."""
    left = t_ns - now_ns()
    if left > AIR_SPIN_NS:
        time.sleep((left - AIR_SPIN_NS) / 1e9)
    while now_ns() < t_ns:
        os.sched_yield()


@dataclass
class Collected:
    """Everything the nodes recorded: per node (by id) its records, rows and counters; the air's own times."""

    nodes: dict[int, dict[str, Any]]
    slot_start_ns: np.ndarray        # [n] each slot's start on the coordinator's clock
    slot_end_ns: np.ndarray
    send_lag_ns: np.ndarray          # [n] how late the air sent each slot's triggers (its own load)
    offsets: dict[int, tuple[int, int]]   # node -> (offset ns, rtt ns) against the coordinator
    placement: dict[int, dict[str, str]]  # node -> {"node": Ray node id, "ip": ..., "sched": e.g. "fifo 50",
    #                                        "io": its ZeroMQ I/O threads', e.g. "fifo 50"}
    secure: bool = False                  # CURVE on every node of the run (run.secure)
    keys: dict[int, NodeKeys] = field(default_factory=dict)   # node -> its public key (no secret), if secure


def _actor_name(i: int) -> str:
    """A node's name in ``run.placement``: its BS index, or ``cu``."""
    return "cu" if i == CU_ID else str(i)


class ExecutionRunner:
    """One execution run: :meth:`run` returns the problem, the slots' orders and what every node recorded."""

    def __init__(self, cfg: ExecuteConfig, source: Source, seed: int, address: str | None = None) -> None:
        self.cfg, self.src, self.seed = cfg, source, seed
        sc = source.scenario
        self.B, self.K, self.L = sc.cells, sc.K, sc.L
        self.problem: Problem = sc.sample(cfg.run.slots, np.random.default_rng(seed))
        position = random_positions(np.random.default_rng(seed), cfg.run.slots, self.B)
        self.order = np.argsort(position, axis=1)           # [n, B] the BSs in each slot's decision order
        self.user_bs = self.problem.G[:, :, ::self.K]        # [n, L, B] gain of each BS to each user
        self.address = address

    # ---------------------------------------------------------------- setup
    def _setups(self) -> dict[int, ExecSetup]:
        cfg, src, sc = self.cfg, self.src, self.src.scenario
        norm = GainNorm.of_scenario(sc)
        bs_bs, bs_cu = cfg.links.model("bs_bs"), cfg.links.model("bs_cu")
        common = dict(scheme=src.scheme, spec=src.spec, norm=norm, B=self.B, K=self.K, p_max_w=sc.p_max_w,
                      noise_w=sc.noise_w, bs_sum_power_w=sc.bs_sum_power_w, clock=cfg.run.clock,
                      fallback=cfg.run.fallback, wait=cfg.run.wait, priority=cfg.run.priority,
                      decision_margin_ns=int(cfg.run.decision_margin_us * 1e3), seed=self.seed)
        out: dict[int, ExecSetup] = {}
        for b in range(self.B):
            inbound = {CU_ID: bs_cu} if src.has_cu else {j: bs_bs for j in range(self.B) if j != b}
            theta = src.theta if not src.has_cu else None
            out[b] = ExecSetup(role="bs", node_id=b, theta=theta, method=None if src.has_cu else src.method,
                               inbound=inbound, **common)
        if src.has_cu:
            out[CU_ID] = ExecSetup(role="cu", node_id=CU_ID, theta=src.theta, method=src.method,
                                   inbound={b: bs_cu for b in range(self.B)}, **common)
        return out

    def _peers(self, i: int) -> list[int]:
        """The nodes node i sends to."""
        if i == CU_ID:
            return list(range(self.B))
        if self.src.has_cu:
            return [CU_ID]
        return [j for j in range(self.B) if j != i] if self.src.scheme == "partial" else []

    def _start(self) -> None:
        setups = self._setups()
        self.ids = list(setups)
        self.where = plan(self.cfg.run.placement, [_actor_name(i) for i in self.ids])
        spanning = spans_nodes({**self.where, "driver": Node(ray.get_runtime_context().get_node_id(), "")})
        on_cluster = spanning or (self.session.on_cluster and self.session.started)
        # run.secure: keys over every node of the run (BSs, the central unit, this coordinator's node), each actor
        # handed its own; the air port (slot triggers and acks) has no CURVE and stays in clear
        self.secure = run_secure(self.cfg.run.secure, on_cluster, self.session)
        keys = generate_run_keys([*self.ids, COORD_NODE]) if self.secure else {}
        self.keys = public_only(keys)
        self.actors = {i: ExecActor.options(**actor_options(self.where[_actor_name(i)])).remote(s, self.cfg.run.slots)
                       for i, s in setups.items()}
        eps = dict(zip(self.ids, ray.get([self.actors[i].open.remote(on_cluster, keys.get(i)) for i in self.ids]),
                       strict=True))
        io = self.cfg.run.priority                       # the air's sockets' I/O threads at its loop's priority
        self.hub = airport.Hub(bind_host(on_cluster), io_priority=io)
        self.hub.connect({k: eps[i][1] for k, i in enumerate(self.ids)})
        self.index = {i: k for k, i in enumerate(self.ids)}      # node id -> hub index
        self.node = RingNode(COORD_NODE, bind_host(on_cluster), extra_senders=self.ids, curve=keys.get(COORD_NODE),
                             io_priority=io)
        self.node.connect({i: eps[i][0] for i in self.ids})
        peers = {i: {**{j: eps[j][0] for j in self._peers(i)}, COORD_NODE: self.node.endpoint} for i in self.ids}
        refs = [self.actors[i].connect.remote(peers[i], self.hub.endpoint) for i in self.ids]
        ring_barrier(self.node)
        self._pump(refs)
        self.offsets = dict(zip(self.ids, self._pump([self.actors[i].clock_offset.remote() for i in self.ids]),
                                strict=True))

    def _pump(self, refs: list) -> list:
        """Wait for Ray calls while this node answers the actors' clock pings."""
        pending = list(refs)
        while pending:
            self.node.recv(timeout_ms=2)
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
        return ray.get(refs)

    # ---------------------------------------------------------------- the slots
    def _trigger(self, slot: int, t_start: int, t_end: int) -> None:
        """Send every node its trigger of ``slot``: the central unit first, then the BSs in the slot's order
        (so the first to decide hears first), each with its own CSI."""
        order = self.order[slot]
        ids = np.concatenate([[t_start, t_end], order]).astype(np.int64)
        op = airport.SLOT if self.cfg.run.clock == "real" else airport.SLOT_ACKED
        if self.src.has_cu:
            self.hub.send(self.index[CU_ID], op, slot, ids)
        for b in order:
            self.hub.send(self.index[int(b)], op, slot, ids, self.user_bs[slot, :, b])

    def run(self) -> Collected:
        """Start the nodes, play every slot, collect. With ``run.priority``, the air's thread (and its sockets'
        I/O threads) run SCHED_FIFO from after Ray's start (whose processes stay normal) to the end
        of the slots."""
        self.session = ray_session(self.address)
        try:
            with realtime(self.cfg.run.priority):
                results = self._play()
        finally:
            self.close()
        nodes = dict(zip(self.ids, results, strict=True))
        for i, r in nodes.items():
            self._correct(i, r, nodes)
        return Collected(nodes, self.starts, self.starts + int(self.cfg.run.slot_ms * 1e6), self.lag, self.offsets,
                         {i: {"node": r["node"], "ip": r["ip"], "sched": "{} {}".format(*r["sched"]),
                              "io": r["io_sched"]}
                          for i, r in nodes.items()}, self.secure, self.keys)

    def _play(self) -> list[dict[str, Any]]:
        """Start the nodes, trigger every slot, return the nodes' results."""
        self._start()
        serving = [self.actors[i].serve.remote() for i in self.ids]
        n, T = self.cfg.run.slots, int(self.cfg.run.slot_ms * 1e6)
        self.starts, self.lag = np.zeros(n, np.int64), np.zeros(n, np.int64)
        t0 = now_ns() + int(self.cfg.run.lead_ms * 1e6)
        for s in range(n):
            if self.cfg.run.clock == "real":
                t_start = t0 + s * T
                wait_until(t_start)
            else:
                t_start = now_ns()
            self.starts[s] = t_start
            self._trigger(s, t_start, t_start + T)
            self.lag[s] = now_ns() - t_start
            if self.cfg.run.clock == "logical":
                self.hub.gather_rows(len(self.ids), lambda: self._check(serving))
        for k in range(len(self.ids)):
            self.hub.send(k, airport.STOP)
        ray.get(serving)
        return ray.get([self.actors[i].results.remote() for i in self.ids])

    def _check(self, serving: list) -> None:
        done, _ = ray.wait(serving, num_returns=1, timeout=0)
        if done:
            ray.get(done)
            raise RuntimeError("an execution actor left its serve loop unasked")

    def _correct(self, i: int, r: dict[str, Any], nodes: dict[int, dict[str, Any]]) -> None:
        """Times of node i onto the coordinator's clock: t + offset_i (its rows' send stamps by the sender's)."""
        off = r["offset_ns"]
        for key in ("t_csi", "t_in", "t_out"):
            r[key] = r[key] + off
        rows = []
        for row in r["rows"]:
            row = list(row)
            if row[7]:      # the send stamp is on the sender's clock
                row[7] += off if row[0] == SENT else (nodes[row[2]]["offset_ns"] if row[2] in nodes else 0)
            if row[8]:
                row[8] += off
            rows.append(tuple(row))
        r["rows"] = rows

    def close(self) -> None:
        for x in ("hub", "node"):
            obj = getattr(self, x, None)
            if obj is not None:
                obj.close()
        for a in getattr(self, "actors", {}).values():
            try:
                ray.get(a.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - best effort: the actor is killed next
                pass
            ray.kill(a)
        self.actors = {}
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
            self.session = None
