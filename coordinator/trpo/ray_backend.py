"""The ray backend: the agents as Ray actors (:class:`bs_agent.trpo.actor.BSActor`, which runs the
:class:`~bs_agent.trpo.ops.AgentOps` code the inproc backend runs), one BS per actor or ``run.bs_per_actor``
consecutive BSs per actor for large networks; the round-robin power token passed between the actors over their
:class:`protocol.RingNode` (one message per hop carrying the whole batch of slots; between BSs of one actor in
memory, logged with ``via`` memory), and one Ray call per actor per phase, never per slot. Each BS's shares
come back apart (never summed in the actor), so the coordinator adds up the same numbers in the same order as
in-process. The FVP phase (the conjugate gradient's products, the critic rounds riding on them, and the first
line-search candidate) runs over ZeroMQ too: one ``serve`` Ray call per actor and iteration, then one request
and one answer (every hosted BS's share) per product on the actor's node
(~1-2 ms a round trip where a Ray call with a 0.55 MB vector took ~4-10 ms on the loaded 2-core box).

Connects to an existing cluster when given an address (or RAY_ADDRESS), otherwise starts an embedded
local Ray (:mod:`coordinator.session`). The numbers equal the inproc backend's in logical time.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from bs_agent.trpo.actor import COORD_NODE, BSActor, node_ids
from bs_agent.trpo.base_station import AgentSpec
from bs_agent.trpo.ops import Crit, agent_csi, agent_ids
from coordinator.config import ConfigError
from coordinator.placement import MODES, Node, alive_nodes, plan, spans_nodes
from coordinator.placement import actor_options as actor_options_for
from coordinator.session import RaySession, ray_session
from protocol import RECEIVED, Envelope, Kind, NodeKeys, RingNode, bind_host, generate_run_keys
from protocol.log import Row


def run_secure(mode: str | bool, outward: bool, session: RaySession) -> bool:
    """Whether a run's ZeroMQ nodes use CURVE (``run.secure``, DESIGN §6b): ``on`` / ``off`` as asked (YAML's
    true / false alike); ``auto``: on when a socket binds more than loopback (``outward``: the actors span nodes,
    or the run joined a cluster by address) or the run joined a cluster that has a node on another host; off on
    one machine."""
    if mode in ("on", "off", True, False):
        return mode in ("on", True)
    if mode != "auto":
        raise ConfigError(f"run.secure: expected auto, on or off, got {mode!r}")
    if outward:
        return True
    here = ray.util.get_node_ip_address()
    return session.on_cluster and any(n.ip != here for n in alive_nodes())


def public_only(keys: dict[int, NodeKeys]) -> dict[int, NodeKeys]:
    """The run's keys without their secrets (what the driver keeps after the hand-out: for
    :func:`protocol.save_public_keys`)."""
    return {i: dataclasses.replace(k, secret=b"") for i, k in keys.items()}


def stray_reason(env: Envelope, it: int, ids: Sequence[int], answer: Kind, critic: bool, got: dict, crit: dict
                 ) -> str | None:
    """Why a frame at the coordinator during the FVP phase is not one it waits for (None: it is): of another
    iteration, from no agent, of another kind (a GRADIENT only while a critic round rides), or a second answer
    from the same agent. Such a frame is counted and dropped; it never ends the run."""
    if env.iteration != it:
        return "WrongIteration"
    if env.sender not in ids:
        return "UnexpectedSender"
    if env.kind == answer:
        return "Duplicate" if env.sender in got else None
    if env.kind == Kind.GRADIENT and critic:
        return "Duplicate" if env.sender in crit else None
    return "UnexpectedKind"


def dead_actor_of(exc: BaseException, actors: Sequence[Any], names: Sequence[str], where: Sequence[dict[str, Any]]
                  ) -> dict[str, str] | None:
    """``{"name", "node", "ip", "pid"}`` of the actor a :class:`ray.exceptions.RayActorError` is about, among
    ``actors`` (named ``names``, placed at ``where[i]``: its ``node`` and ``ip``); None if it is none of them."""
    aid = getattr(exc, "actor_id", None)
    for i, a in enumerate(actors):
        if aid is not None and a._actor_id.hex() == aid:
            w = where[i] if i < len(where) else {}
            text = str(exc)
            ip = w.get("ip") or (text.split("ip: ", 1)[1].split()[0] if "ip: " in text else "")
            pid = text.split("pid: ", 1)[1].split()[0] if "pid: " in text else str(w.get("pid", ""))
            return {"name": names[i], "node": str(w.get("node", "")), "ip": ip, "pid": pid}
    return None


def actor_groups(bs_per_actor: int, spec: AgentSpec) -> list[list[int]]:
    """The agents of each actor: ``bs_per_actor`` consecutive BSs (the last actor the rest), or the central
    agent alone. Raises :class:`ConfigError` unless 1 <= bs_per_actor <= B."""
    if not isinstance(bs_per_actor, int) or isinstance(bs_per_actor, bool) or not 1 <= bs_per_actor <= spec.B:
        raise ConfigError(f"run.bs_per_actor: expected an integer from 1 to the number of BSs ({spec.B}), "
                          f"got {bs_per_actor!r}")
    ids = agent_ids(spec)
    return [ids[a:a + bs_per_actor] for a in range(0, len(ids), bs_per_actor)]


def plan_groups(placement: str, names: Sequence[str], groups: Sequence[Sequence[int]]) -> dict[str, Node]:
    """Each agent's node (``names[i]`` as the ``run.placement`` map names agent i) when agents share actors
    (``groups``): an actor goes where its pinned BSs are pinned (two different nodes for one actor: a
    :class:`ConfigError`), ``spread`` / ``pack`` and the actors with no pinned BS as :func:`plan` places
    actors; every BS of an actor maps to the actor's node."""
    if all(len(g) == 1 for g in groups):
        return plan(placement, names)
    firsts = [names[g[0]] for g in groups]
    if placement in MODES:
        at = plan(placement, firsts)
    else:
        per_bs = plan(placement, names)             # checks the map's names and resolves its nodes
        pinned = {item.partition(":")[0].strip() for item in placement.split(",")}
        nodes, at, k = alive_nodes(), {}, 0
        for g, first in zip(groups, firsts, strict=True):
            want = {per_bs[names[b]] for b in g if names[b] in pinned}
            if len(want) > 1:
                raise ConfigError(f"run.placement: BSs {', '.join(names[b] for b in g)} share one actor "
                                  f"(run.bs_per_actor={len(groups[0])}) but are pinned to different nodes "
                                  f"({', '.join(sorted(n.ip or n.node_id[:8] for n in want))}); pin them to one")
            if want:
                at[first] = want.pop()
            else:                                   # spread like plan's actors that the map does not name
                at[first], k = nodes[k % len(nodes)], k + 1
    return {names[b]: at[first] for g, first in zip(groups, firsts, strict=True) for b in g}


def _exactly(n: int, xs: list) -> list:
    """``xs`` if it holds one answer per agent of the actor (``n``); else ValueError (a malformed payload)."""
    if len(xs) != n:
        raise ValueError(f"{len(xs)} answers for {n} agents")
    return xs


def _event_time(row: Row) -> int:
    return row[8] if row[0] == RECEIVED else row[7]


class RayBackend:
    """Agents as Ray actors; same calls as :class:`coordinator.trpo.backend.InprocBackend`.

    ``bs_per_actor`` (``run.bs_per_actor``): consecutive BSs hosted by one actor (:func:`actor_groups`;
    :attr:`groups`); the token moves in memory between them (:attr:`memory_links`, logged with ``via`` memory)
    and over ZeroMQ between actors; each BS's shares come back apart. ``actor_options``: Ray options per actor.

    ``cluster``: bind the ring to each node's address instead of 127.0.0.1 (default: when this
    backend connected to an existing cluster by address). ``secure`` (``run.secure``: auto | on | off, see
    :func:`run_secure`): CURVE on every node of the run (each agent's and the coordinator's), with keys made for
    this run over every node id (the agents, :data:`COORD_NODE`); each actor gets its own :class:`NodeKeys`
    (its secret and the run's public keys) with its ``ring_open`` call, so every connection is authenticated
    and every sender id bound to its key. :attr:`secure` says which; :attr:`keys` holds the public keys
    (secrets dropped after the hand-out)."""

    name = "ray"

    def __init__(self, spec: AgentSpec, sample_seeds: Sequence[int], address: str | None = None,
                 actor_options: Sequence[dict] | None = None, cluster: bool | None = None,
                 fvp_over_ring: bool = True, threads: int = 1, placement: str = "spread",
                 secure: str | bool = "auto", bs_per_actor: int = 1) -> None:
        self.spec = spec
        self.fvp_over_ring = fvp_over_ring   # False: every product by Ray call (for comparisons)
        self.groups = groups = actor_groups(bs_per_actor, spec)
        self.session = ray_session(address)
        ids = agent_ids(spec)
        self.plan_names = names = ["cu" if spec.scheme == "centralized" else str(i) for i in ids]   # as the map
        self.where = plan_groups(placement, names, groups) if actor_options is None else {}
        opts = list(actor_options or [actor_options_for(self.where[names[g[0]]]) for g in groups])
        self.actors = [BSActor.options(**o).remote(g, spec, [sample_seeds[i] for i in g], threads)
                       for g, o in zip(groups, opts, strict=True)]
        self.hosts = [g[0] for g in groups]     # each actor's node id on the coordinator's links (its first BS)
        B = spec.B
        self.memory_links = frozenset(           # ring links (sender, receiver) inside one actor
            (b, (b + 1) % B) for g in groups for b in g if spec.scheme == "partial" and
            ((b + 1) in g or len(g) == B))
        # every agent's node: the round-robin ring (partial) and the FVP phase's link to the coordinator; they
        # bind this node's address when the run spans nodes, 127.0.0.1 otherwise
        spanning = spans_nodes({**self.where, "driver": Node(ray.get_runtime_context().get_node_id(), "")})
        on_cluster = (spanning or (self.session.on_cluster and self.session.started)) if cluster is None else cluster
        self.secure = run_secure(secure, on_cluster, self.session)
        nodes = [node_ids(g, spec) for g in groups]
        keys = generate_run_keys([*(n for ns in nodes for n in ns), COORD_NODE]) if self.secure else {}
        eps: dict[int, str] = {}
        for got in ray.get([a.ring_open.remote(on_cluster, {n: keys[n] for n in ns} if keys else None)
                            for ns, a in zip(nodes, self.actors, strict=True)]):
            eps.update(got)
        self.node = RingNode(COORD_NODE, bind_host(on_cluster), extra_senders=ids, curve=keys.get(COORD_NODE))
        self.keys = public_only(keys)
        self.node.connect({h: eps[h] for h in self.hosts})
        self.endpoints = {**eps, COORD_NODE: self.node.endpoint}   # every node's inbox
        ring = eps if spec.scheme == "partial" else {}
        ray.get([a.ring_connect.remote({**ring, COORD_NODE: self.node.endpoint}) for a in self.actors])
        self._serving: list | None = None   # the agents' serve() calls of this iteration's FVP phase
        self._iteration = 0
        self.setup_rows: list[Row] = []

    def _get(self, refs: list) -> list:
        """The results of one Ray call per actor (never while the actors serve the FVP phase)."""
        self._stop_serving_check()
        return ray.get(refs)

    def _put(self, x: Any) -> Any:
        """A vector broadcast to every actor: inline with the call for a single actor (the centralized
        agent), one copy in the object store for several. Measured side by side (loaded 2 cores, 0.55 MB
        vector, echo actor): one actor ~4-6 ms per call inline vs ~7-12 ms through ray.put; three actors
        ~12 ms either way."""
        return x if x is None or len(self.actors) == 1 else ray.put(x)

    # ---- parameters
    def set_policy(self, theta: np.ndarray) -> None:
        x = self._put(theta)
        self._get([a.set_policy.remote(x) for a in self.actors])

    def set_value(self, phi: np.ndarray) -> None:
        x = self._put(phi)
        self._get([a.set_value.remote(x) for a in self.actors])

    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        theta, phi = ray.get(self.actors[0].initial_params.remote())
        return np.array(theta), np.array(phi)

    def _per_agent(self, refs: list) -> list:
        """The per-agent results of one Ray call per actor (each a list over its BSs), in agent order."""
        return [x for xs in self._get(refs) for x in xs]

    def _split(self, xs: Sequence[Any]) -> list[list[Any]]:
        """A per-agent sequence cut into one list per actor."""
        return [[xs[i] for i in g] for g in self.groups]

    def rng_states(self) -> list[torch.Tensor]:
        return self._per_agent([a.rng_state.remote() for a in self.actors])

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        self._get([a.set_rng_state.remote(s) for a, s in zip(self.actors, self._split(states), strict=True)])

    # ---- acting
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None:
        """Scatter each agent ONLY its local CSI (the centralized agent gets the uploaded full CSI)."""
        ray.get([a.load.remote(c, stochastic) for a, c in zip(self.actors, self._csi(gains_norm), strict=True)])

    def _csi(self, gains_norm: np.ndarray | None) -> list:
        """Each actor's list of its agents' CSI (None: nothing to load)."""
        if gains_norm is None:
            return [None] * len(self.actors)
        return self._split([agent_csi(self.spec, gains_norm, i) for i in agent_ids(self.spec)])

    def act_all(self, gains_norm: np.ndarray | None = None, stochastic: bool = True) -> np.ndarray:
        """Every agent acts (after loading ONLY its local CSI, in the same call, if ``gains_norm``)."""
        if gains_norm is None:
            out = self._per_agent([a.act.remote() for a in self.actors])
        else:
            out = self._per_agent([a.load_act.remote(c, stochastic)
                                   for a, c in zip(self.actors, self._csi(gains_norm), strict=True)])
        return out[0] if self.spec.scheme == "centralized" else np.concatenate(out, axis=1)

    def act_round_robin(self, position: np.ndarray, iteration: int = 0, run_id: str = "",
                        log_hops: bool = True, gains_norm: np.ndarray | None = None, lost: np.ndarray | None = None
                        ) -> tuple[np.ndarray, list[Row]]:
        M, B = position.shape
        out = ray.get([a.round_robin.remote(position[:, g], M, B, B * self.spec.K, iteration, run_id, 60_000, c,
                                            None if lost is None else lost[:, g])
                       for g, a, c in zip(self.groups, self.actors, self._csi(gains_norm), strict=True)])
        rows = sorted((r for _, rs in out for r in rs), key=_event_time) if log_hops else []
        return np.array(out[-1][0]), rows

    # ---- learning shares
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False,
                       iteration: int = 0) -> list[tuple[np.ndarray, Crit]]:
        self._iteration = iteration
        return self._per_agent([a.start_learning.remote(G, w, critic) for a, G, w
                                in zip(self.actors, self._split(returns), self._split(step_w), strict=True)])

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]:
        """Over the nodes: the first product of an iteration starts every agent's serve() call (one
        Ray call for the whole phase), then each product is one request and one answer per agent."""
        if not self.fvp_over_ring or (critic and phi is None):   # (a round at the current phi: by call)
            x, ph = self._put(v), self._put(phi)
            return self._per_agent([a.fvp.remote(x, critic, ph) for a in self.actors])
        if self._serving is None:
            self._serving = [a.serve.remote(self._iteration) for a in self.actors]
        return self._exchange(Kind.FVP_REQUEST, {"v": v}, critic, phi, Kind.FVP, lambda p: list(p["fvp"]))

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        """The first candidate after the FVP phase goes over the nodes and ends it; others by Ray call."""
        if self._serving is None or (critic and phi is None):
            x, ph = self._put(theta), self._put(phi)
            return self._per_agent([a.surrogate_kl.remote(x, critic, ph) for a in self.actors])
        out = self._exchange(Kind.PARAMETERS, {"theta": theta}, critic, phi, Kind.METRICS,
                             lambda p: list(zip(p["surrogate"], p["kl"], strict=True)))
        serving, self._serving = self._serving, None
        ray.get(serving)
        return out

    def _stop_serving_check(self) -> None:
        if self._serving is not None:
            raise RuntimeError("ray backend: a call by Ray while the agents serve the FVP phase")

    def _exchange(self, kind: Kind, payload: dict, critic: bool, phi: np.ndarray | None, answer: Kind,
                  main: Any, timeout_s: float = 60.0) -> list[tuple[Any, Crit]]:
        """Send every actor (PARAMETERS {"phi"} if a critic round rides, then) the request; collect each actor's
        answer (and its critic shares): ``main(payload)`` lists its agents' answers. Values cross as float32 /
        float64 exactly (the coordinator's vectors are float32). Returns one (answer, critic share) per agent."""
        node, it, ids = self.node, self._iteration, self.hosts
        for i in ids:
            if critic:
                node.send(i, Envelope(Kind.PARAMETERS, COORD_NODE, i, it, 0, {"phi": phi}))
            node.send(i, Envelope(kind, COORD_NODE, i, it, 0, payload))
        got: dict[int, Any] = {}
        crit: dict[int, Crit] = {}
        need = len(ids) * (2 if critic else 1)
        deadline = time.monotonic() + timeout_s
        check = time.monotonic() + 0.1
        while len(got) + len(crit) < need:
            env = node.recv(timeout_ms=100)
            if env is None or time.monotonic() > check:      # (also under a stream of stray frames)
                check = time.monotonic() + 0.1
                done, _ = ray.wait(self._serving or [], num_returns=len(self._serving or []), timeout=0)
                if done:
                    ray.get(done)   # an agent's serve() failed, or its actor died: raise its error here
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ray backend: no {answer.name} from every agent within {timeout_s} s")
                if env is None:
                    continue
            reason = stray_reason(env, it, ids, answer, critic, got, crit)
            if reason is None:
                try:
                    n = len(self.groups[ids.index(env.sender)])
                    if env.kind == answer:
                        got[env.sender] = _exactly(n, main(env.payload))
                    else:
                        crit[env.sender] = _exactly(n, list(zip(env.payload["c"], env.payload["loss"], strict=True)))
                    continue
                except (KeyError, TypeError, ValueError):
                    reason = "MalformedPayload"
            node.stats.rejected[reason] += 1   # a stray frame: counted (dropped_frames) and dropped, never fatal
        return [(x, crit[h][j] if h in crit else None) for h in ids for j, x in enumerate(got[h])]

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        x, ph = self._put(theta), self._put(phi)
        self._get([a.set_params.remote(x, ph) for a in self.actors])

    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, float]]:
        x, ph = self._put(theta), self._put(phi)
        return self._per_agent([a.value_round.remote(x, ph) for a in self.actors])

    def ring_stats(self) -> list[dict[str, int]]:
        """Per actor: its nodes' ring counters (the hops in memory are not frames: not counted)."""
        return ray.get([a.ring_stats.remote() for a in self.actors])

    def node_ids(self) -> list[str]:
        return ray.get([a.node_id.remote() for a in self.actors])

    def meta(self) -> dict[str, Any]:
        """For meta.json: each agent's node (id, IP) and its clock offset against this process, measured by
        ping-pong over its node (``t_agent ~ t_driver - offset``, within +-rtt/2). The pings' log rows are
        left in :attr:`setup_rows` (control messages of the run's setup, not of an iteration)."""
        refs = [a.clock_offset.remote() for a in self.actors]
        pending = list(refs)
        while pending:                    # this node answers the agents' pings meanwhile
            if self.node.recv(timeout_ms=2) is not None:       # no application message is due now: a stray
                self.node.stats.rejected["UnexpectedKind"] += 1
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
        ids = ray.get([a.node_id.remote() for a in self.actors])
        pids = ray.get([a.__ray_call__.remote(lambda actor: os.getpid()) for a in self.actors])
        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        self.setup_rows = [r for rows in ray.get([a.take_rows.remote() for a in self.actors]) for r in rows]
        offsets = ray.get(refs)
        # every BS maps to its host actor's node, process and clock offset (the actor index: with bs_per_actor > 1)
        host = [a for a, g in enumerate(self.groups) for _ in g]
        shared = len(self.groups) < len(host)
        self.placement = {k: {"node": ids[a], "ip": ips.get(ids[a], ""), "pid": pids[a], **({"actor": a} if shared
                                                                                            else {})}
                          for k, a in zip(self._agent_names(), host, strict=True)}
        return {"placement": self.placement,
                "clock_offsets_ns": {k: {"offset": offsets[a][0], "rtt": offsets[a][1]}
                                     for k, a in zip(self._agent_names(), host, strict=True)},
                "driver_node": ray.get_runtime_context().get_node_id()}

    def _agent_names(self) -> list[str]:
        """meta.json's names of the agents: ``cu``, or ``bs0``, ``bs1``, ..."""
        return ["cu" if self.spec.scheme == "centralized" else f"bs{i}" for i in agent_ids(self.spec)]

    def _actor_names(self, style: str = "bs") -> list[str]:
        """Each actor named by its agents: ``bs3`` / ``bs4-7`` (``style`` bs), ``BS 3`` / ``BSs 4-7`` (BS)."""
        if self.spec.scheme == "centralized":
            return ["cu" if style == "bs" else "central agent"]
        one, many = ("bs{}", "bs{}-{}") if style == "bs" else ("BS {}", "BSs {}-{}")
        return [one.format(g[0]) if len(g) == 1 else many.format(g[0], g[-1]) for g in self.groups]

    def memory_mb(self) -> list[float]:
        """Peak RSS of each actor process (one per actor, not per BS)."""
        return ray.get([a.rss_mb.remote() for a in self.actors])

    def dead_actor(self, exc: BaseException) -> dict[str, str] | None:
        """Which actor a :class:`ray.exceptions.RayActorError` is about: ``{"name": "BS 1" (or "BSs 4-7" for an
        actor hosting several), "node": <Ray node id>, "ip": ..., "pid": ...}`` (None if none of this backend's).
        Its node: from :meth:`meta` (or the plan, or the error's text)."""
        placed, names = getattr(self, "placement", None), self._agent_names()
        if placed:
            where = [placed[names[g[0]]] for g in self.groups]
        else:
            planned = [self.where.get(self.plan_names[g[0]]) for g in self.groups]
            where = [{"node": w.node_id, "ip": w.ip} if w else {} for w in planned]
        return dead_actor_of(exc, self.actors, self._actor_names("BS"), where)

    def dropped_frames(self) -> dict[str, dict[str, int]]:
        """The frames each node of the run counted and dropped, by class (the protocol's rejections, and the
        stray frames its receiving loop dropped: WrongIteration, UnexpectedKind, UnexpectedSender,
        MalformedPayload, Duplicate): ``{"coordinator": {...}, "bs0": {...}, ...}`` (an actor hosting several
        BSs: ``"bs4-7"``)."""
        got = ray.get([a.rejected.remote() for a in self.actors])
        here = {} if self.node is None else dict(self.node.stats.rejected)
        return {"coordinator": here, **dict(zip(self._actor_names(), got, strict=True))}

    def close(self) -> None:
        node, self.node = getattr(self, "node", None), None
        if node is not None:
            node.close()
        refs = []
        for a in self.actors:
            try:
                refs.append(a.close.remote())
            except Exception:  # noqa: BLE001 - best effort on shutdown (a dead actor)
                pass
        if refs:   # an actor blocked on a peer that died would hold its close: bounded, then every actor killed
            ray.wait(refs, num_returns=len(refs), timeout=2.0)
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []
        self.session.close()
