"""The ray backend: one Ray actor per agent (a thin wrapper around
:class:`~coordinator.backends.AgentOps`, the code the inproc backend runs), the round-robin power
token passed between the actors over a :class:`protocol.RingNode` (one message per hop carrying the
whole batch of slots), and one Ray call per agent per phase, never per slot. The FVP phase (the
conjugate gradient's products, the critic rounds riding on them, and the first line-search candidate)
runs over ZeroMQ too: one ``serve`` Ray call per agent and iteration, then one request and one answer
per product on the node (~1-2 ms a round trip where a Ray call with a 0.55 MB vector took ~4-10 ms
on the loaded 2-core box); the coordinator logs those messages as it logs the ones Ray calls carry.

Each actor's ring node records what it really sent and received; the rows come back with the
``round_robin`` call, so the coordinator logs them even when the run folder is not shared.

Connects to an existing cluster when given an address (or RAY_ADDRESS), otherwise starts an
embedded local Ray. The numbers equal the inproc backend's in logical time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from bs_agent.base_station import AgentSpec
from coordinator.backends import AgentOps, Crit, agent_csi, agent_ids, token_payload
from coordinator.run_messages import Row, RowCapture
from protocol import RECEIVED, Envelope, Kind, RingNode, bind_host

COORD_NODE = 1 << 16
"""The coordinator's node id on the ZeroMQ links to the agents (agent ids are 0..B-1; the message log
names it COORDINATOR, as for the messages carried by Ray calls)."""

RAY_SYSTEM_CONFIG: dict[str, Any] = {"max_direct_call_object_size": 4 << 20}
"""For a Ray this process starts: objects up to 4 MiB travel inline with the call instead of through
the object store. A TRPO vector (gradient/FVP share, parameters: ~0.55 MB for 3x256 nets) then costs
about half the round trip (measured on 2 loaded cores: ~5 ms instead of ~10 ms per call with a
0.55 MB argument and result). A cluster started elsewhere keeps its own setting."""


@ray.remote(num_cpus=0)
class BSActor:
    """A BS (or the central agent) in its own process."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.agent = AgentOps(bs_id, spec, sample_seed)  # (not "ops": cloudpickle would take it for torch.ops)
        self.bs_id = bs_id
        self.node: RingNode | None = None
        self.capture = RowCapture()
        self.served = [0, 0]   # frames sent, received by serve() (the node's counters minus these: the ring)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.agent, method)(*args)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def rss_mb(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    # ---- the ring: bind here (127.0.0.1, or this node's address in cluster mode), report the endpoint
    def ring_open(self, cluster: bool = False) -> str:
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        self.node = RingNode(self.bs_id, host, log=self.capture)
        return self.node.endpoint

    def ring_connect(self, endpoints: dict[int, str]) -> None:
        assert self.node is not None
        self.node.connect(endpoints)

    # ---- the FVP phase over the node (one Ray call per iteration instead of one per product)
    def serve(self, iteration: int, timeout_ms: int = 60_000) -> None:
        """Answer the coordinator over the node until the first line-search candidate: FVP_REQUEST
        {"v"} -> FVP {"fvp"}; PARAMETERS {"theta"} -> METRICS {"surrogate", "kl"}, which ends the
        call. A PARAMETERS {"phi"} just before either is a critic round riding on it: its GRADIENT
        {"c", "loss"} follows the answer. The coordinator logs these messages as it logs the ones Ray
        calls carry (this node's rows of them are dropped, so that none is logged twice)."""
        node, b = self.node, self.bs_id
        if node is None:
            raise RuntimeError(f"agent {b}: node not opened")
        phi, crit = None, False
        try:
            while True:
                env = node.recv(timeout_ms=timeout_ms)
                if env is None:
                    raise TimeoutError(f"agent {b}: no request from the coordinator within {timeout_ms} ms")
                self.served[1] += 1
                if env.iteration != iteration or env.sender != COORD_NODE:
                    raise RuntimeError(f"agent {b}: unexpected {env.kind!r} from {env.sender} of iteration "
                                       f"{env.iteration} while serving iteration {iteration}")
                pay = env.payload
                if env.kind == Kind.PARAMETERS and "phi" in pay:
                    phi, crit = pay["phi"], True
                    continue
                if env.kind == Kind.FVP_REQUEST:
                    x, c = self.agent.fvp(pay["v"], crit, phi)
                    self._answer(Kind.FVP, {"fvp": x}, c, iteration)
                elif env.kind == Kind.PARAMETERS and "theta" in pay:
                    (sv, kl), c = self.agent.surrogate_kl(pay["theta"], crit, phi)
                    self._answer(Kind.METRICS, {"surrogate": sv, "kl": kl}, c, iteration)
                    return
                else:
                    raise RuntimeError(f"agent {b}: unexpected {env.kind!r} while serving")
                phi, crit = None, False
        finally:
            self.capture.take()

    def _answer(self, kind: Kind, payload: dict, crit: Any, iteration: int) -> None:
        node, b = self.node, self.bs_id
        node.send(COORD_NODE, Envelope(kind, b, COORD_NODE, iteration, 0, payload))
        self.served[0] += 1
        if crit is not None:
            c, loss = crit
            node.send(COORD_NODE, Envelope(Kind.GRADIENT, b, COORD_NODE, iteration, 0, {"c": c, "loss": loss}))
            self.served[0] += 1

    def round_robin(self, position: np.ndarray, M: int, B: int, L: int, iteration: int, run_id: str = "",
                    timeout_ms: int = 60_000, csi: np.ndarray | None = None) -> tuple[np.ndarray | None, list[Row]]:
        """(Load ``csi`` if given, then) B passes of the token around the ring b -> b+1; BS 0 starts
        from zero power. Returns (the final token's powers at the last BS of the ring, else None; the
        rows this node recorded)."""
        node, b = self.node, self.bs_id
        if node is None:
            raise RuntimeError(f"BS {b}: ring not opened")
        if csi is not None:
            self.agent.load(csi)
        for n in range(B):
            if b == 0 and n == 0:
                p, decided = np.zeros((M, L)), np.zeros((M, B), dtype=bool)
            else:
                env = node.recv(timeout_ms=timeout_ms)
                if env is None:
                    raise TimeoutError(f"BS {b}: no power token for pass {n} within {timeout_ms} ms")
                if env.kind != Kind.POWER_VECTOR or env.iteration != iteration:
                    raise RuntimeError(f"BS {b}: unexpected message {env.kind} of iteration {env.iteration}")
                p, decided = env.payload["p"].astype(np.float64), env.payload["decided"].astype(bool)
            self.agent.rr_pass(p, decided, position, n)
            if b == B - 1 and n == B - 1:
                return p, self.capture.take()
            node.send((b + 1) % B, Envelope(Kind.POWER_VECTOR, b, (b + 1) % B, iteration, 0,
                                            token_payload(p, decided), run_id))
        return None, self.capture.take()

    def ring_stats(self) -> dict[str, int]:
        """This node's own counters of the ring (frames sent, messages received, frames rejected; the
        FVP phase's frames to and from the coordinator are not counted)."""
        st = self.node.stats if self.node is not None else None
        return {} if st is None else {"sent": st.sent - self.served[0], "received": st.received - self.served[1],
                                      "rejected": sum(st.rejected.values())}

    def close(self) -> None:
        if self.node is not None:
            self.node.close()
            self.node = None


def _event_time(row: Row) -> int:
    return row[8] if row[0] == RECEIVED else row[7]


class RayBackend:
    """Agents as Ray actors; same calls as :class:`coordinator.backends.InprocBackend`.

    ``cluster``: bind the ring to each node's address instead of 127.0.0.1 (default: when this
    backend connected to an existing cluster by address)."""

    name = "ray"

    def __init__(self, spec: AgentSpec, sample_seeds: Sequence[int], address: str | None = None,
                 actor_options: Sequence[dict] | None = None, cluster: bool | None = None,
                 fvp_over_ring: bool = True, threads: int = 1) -> None:
        self.spec = spec
        self.fvp_over_ring = fvp_over_ring   # False: every product by Ray call (for comparisons)
        self.started_ray = False
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
                         _system_config=RAY_SYSTEM_CONFIG)
            self.started_ray = True
        ids = agent_ids(spec)
        opts = list(actor_options or [{}] * len(ids))
        self.actors = [BSActor.options(**o).remote(i, spec, s, threads)
                       for i, s, o in zip(ids, sample_seeds, opts, strict=True)]
        # every agent's node: the round-robin ring (partial) and the FVP phase's link to the coordinator
        on_cluster = (bool(address) and self.started_ray) if cluster is None else cluster
        eps = ray.get([a.ring_open.remote(on_cluster) for a in self.actors])
        self.node = RingNode(COORD_NODE, bind_host(on_cluster), extra_senders=ids)
        self.node.connect(dict(zip(ids, eps, strict=True)))
        ring = dict(enumerate(eps)) if spec.scheme == "partial" else {}
        ray.get([a.ring_connect.remote({**ring, COORD_NODE: self.node.endpoint}) for a in self.actors])
        self._serving: list | None = None   # the agents' serve() calls of this iteration's FVP phase
        self._iteration = 0

    def _all(self, method: str, *args: Any) -> list:
        self._stop_serving_check()
        return ray.get([a.call.remote(method, *args) for a in self.actors])

    def _each(self, method: str, *per_agent: Sequence[Any]) -> list:
        self._stop_serving_check()
        return ray.get([a.call.remote(method, *x) for a, *x in zip(self.actors, *per_agent, strict=True)])

    def _put(self, x: Any) -> Any:
        """A vector broadcast to every actor: inline with the call for a single actor (the centralized
        agent), one copy in the object store for several. Measured side by side (loaded 2 cores, 0.55 MB
        vector, echo actor): one actor ~4-6 ms per call inline vs ~7-12 ms through ray.put; three actors
        ~12 ms either way."""
        return x if x is None or len(self.actors) == 1 else ray.put(x)

    # ---- parameters
    def set_policy(self, theta: np.ndarray) -> None:
        self._all("set_policy", self._put(theta))

    def set_value(self, phi: np.ndarray) -> None:
        self._all("set_value", self._put(phi))

    def initial_params(self) -> tuple[np.ndarray, np.ndarray]:
        theta, phi = ray.get(self.actors[0].call.remote("initial_params"))
        return np.array(theta), np.array(phi)

    def rng_states(self) -> list[torch.Tensor]:
        return self._all("rng_state")

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        self._each("set_rng_state", states)

    # ---- acting
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None:
        """Scatter each agent ONLY its local CSI (the centralized agent gets the uploaded full CSI)."""
        ray.get([a.call.remote("load", agent_csi(self.spec, gains_norm, i), stochastic)
                 for i, a in zip(agent_ids(self.spec), self.actors, strict=True)])

    def _csi(self, gains_norm: np.ndarray | None) -> list:
        ids = agent_ids(self.spec)
        return [None] * len(ids) if gains_norm is None else [agent_csi(self.spec, gains_norm, i) for i in ids]

    def act_all(self, gains_norm: np.ndarray | None = None, stochastic: bool = True) -> np.ndarray:
        """Every agent acts (after loading ONLY its local CSI, in the same call, if ``gains_norm``)."""
        if gains_norm is None:
            out = self._all("act")
        else:
            out = self._each("load_act", self._csi(gains_norm), [stochastic] * len(self.actors))
        return out[0] if self.spec.scheme == "centralized" else np.concatenate(out, axis=1)

    def act_round_robin(self, position: np.ndarray, iteration: int = 0, run_id: str = "",
                        log_hops: bool = True, gains_norm: np.ndarray | None = None) -> tuple[np.ndarray, list[Row]]:
        M, B = position.shape
        out = ray.get([a.round_robin.remote(position[:, b], M, B, B * self.spec.K, iteration, run_id, 60_000, c)
                       for b, (a, c) in enumerate(zip(self.actors, self._csi(gains_norm), strict=True))])
        rows = sorted((r for _, rs in out for r in rs), key=_event_time) if log_hops else []
        return np.array(out[-1][0]), rows

    # ---- learning shares
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False,
                       iteration: int = 0) -> list[tuple[np.ndarray, Crit]]:
        self._iteration = iteration
        return self._each("start_learning", returns, step_w, [critic] * len(self.actors))

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]:
        """Over the nodes: the first product of an iteration starts every agent's serve() call (one
        Ray call for the whole phase), then each product is one request and one answer per agent."""
        if not self.fvp_over_ring or (critic and phi is None):   # (a round at the current phi: by call)
            return self._all("fvp", self._put(v), critic, self._put(phi))
        if self._serving is None:
            self._serving = [a.serve.remote(self._iteration) for a in self.actors]
        return self._exchange(Kind.FVP_REQUEST, {"v": v}, critic, phi, Kind.FVP,
                              lambda p: p["fvp"])

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        """The first candidate after the FVP phase goes over the nodes and ends it; others by Ray call."""
        if self._serving is None or (critic and phi is None):
            return self._all("surrogate_kl", self._put(theta), critic, self._put(phi))
        out = self._exchange(Kind.PARAMETERS, {"theta": theta}, critic, phi, Kind.METRICS,
                             lambda p: (p["surrogate"], p["kl"]))
        serving, self._serving = self._serving, None
        ray.get(serving)
        return out

    def _stop_serving_check(self) -> None:
        if self._serving is not None:
            raise RuntimeError("ray backend: a call by Ray while the agents serve the FVP phase")

    def _exchange(self, kind: Kind, payload: dict, critic: bool, phi: np.ndarray | None, answer: Kind,
                  main: Any, timeout_s: float = 60.0) -> list[tuple[Any, Crit]]:
        """Send every agent (PARAMETERS {"phi"} if a critic round rides, then) the request; collect
        each agent's answer (and its critic share). Values cross as float32 / float64 exactly (the
        coordinator's vectors are float32)."""
        node, it, ids = self.node, self._iteration, agent_ids(self.spec)
        for i in ids:
            if critic:
                node.send(i, Envelope(Kind.PARAMETERS, COORD_NODE, i, it, 0, {"phi": phi}))
            node.send(i, Envelope(kind, COORD_NODE, i, it, 0, payload))
        got: dict[int, Any] = {}
        crit: dict[int, Crit] = {}
        need = len(ids) * (2 if critic else 1)
        deadline = time.monotonic() + timeout_s
        while len(got) + len(crit) < need:
            env = node.recv(timeout_ms=100)
            if env is None:
                done, _ = ray.wait(self._serving or [], num_returns=len(self._serving or []), timeout=0)
                if done:
                    ray.get(done)   # an agent's serve() failed: raise its error here
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ray backend: no {answer.name} from every agent within {timeout_s} s")
                continue
            if env.iteration != it:
                raise RuntimeError(f"ray backend: {env.kind!r} of iteration {env.iteration} during {it}")
            if env.kind == answer:
                got[env.sender] = main(env.payload)
            elif env.kind == Kind.GRADIENT:
                crit[env.sender] = (env.payload["c"], env.payload["loss"])
            else:
                raise RuntimeError(f"ray backend: unexpected {env.kind!r} from agent {env.sender}")
        return [(got[i], crit.get(i)) for i in ids]

    def set_params(self, theta: np.ndarray, phi: np.ndarray | None) -> None:
        self._all("set_params", self._put(theta), self._put(phi))

    def value_round(self, theta: np.ndarray | None = None, phi: np.ndarray | None = None
                    ) -> list[tuple[np.ndarray, float]]:
        return self._all("value_round", self._put(theta), self._put(phi))

    def ring_stats(self) -> list[dict[str, int]]:
        return ray.get([a.ring_stats.remote() for a in self.actors])

    def node_ids(self) -> list[str]:
        return ray.get([a.node_id.remote() for a in self.actors])

    def memory_mb(self) -> list[float]:
        return ray.get([a.rss_mb.remote() for a in self.actors])

    def close(self) -> None:
        node, self.node = getattr(self, "node", None), None
        if node is not None:
            node.close()
        try:
            ray.get([a.close.remote() for a in self.actors])
            for a in self.actors:
                ray.kill(a)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass
        self.actors = []
        if self.started_ray:
            ray.shutdown()
