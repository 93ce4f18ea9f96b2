"""The ray backend: one Ray actor per agent (a thin wrapper around
:class:`~coordinator.backends.AgentOps`, the code the inproc backend runs), the round-robin power
token passed between the actors over a :class:`protocol.RingNode` (one message per hop carrying the
whole batch of slots), and one Ray call per agent per phase, never per slot.

Each actor's ring node records what it really sent and received; the rows come back with the
``round_robin`` call, so the coordinator logs them even when the run folder is not shared.

Connects to an existing cluster when given an address (or RAY_ADDRESS), otherwise starts an
embedded local Ray. The numbers equal the inproc backend's in logical time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray
import torch

from bs_agent.base_station import AgentSpec
from coordinator.backends import AgentOps, Crit, agent_csi, agent_ids, token_payload
from coordinator.run_messages import Row, RowCapture
from protocol import RECEIVED, Envelope, Kind, RingNode

RAY_SYSTEM_CONFIG: dict[str, Any] = {"max_direct_call_object_size": 4 << 20}
"""For a Ray this process starts: objects up to 4 MiB travel inline with the call instead of through
the object store. A TRPO vector (gradient/FVP share, parameters: ~0.55 MB for 3x256 nets) then costs
about half the round trip (measured on 2 loaded cores: ~5 ms instead of ~10 ms per call with a
0.55 MB argument and result). A cluster started elsewhere keeps its own setting."""


@ray.remote(num_cpus=0)
class BSActor:
    """A BS (or the central agent) in its own process."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int) -> None:
        torch.set_num_threads(1)
        self.agent = AgentOps(bs_id, spec, sample_seed)  # (not "ops": cloudpickle would take it for torch.ops)
        self.bs_id = bs_id
        self.node: RingNode | None = None
        self.capture = RowCapture()

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
        """This node's own counters (frames sent, messages received, frames rejected)."""
        st = self.node.stats if self.node is not None else None
        return {} if st is None else {"sent": st.sent, "received": st.received, "rejected": sum(st.rejected.values())}

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
                 actor_options: Sequence[dict] | None = None, cluster: bool | None = None) -> None:
        self.spec = spec
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
        self.actors = [BSActor.options(**o).remote(i, spec, s) for i, s, o in zip(ids, sample_seeds, opts, strict=True)]
        if spec.scheme == "partial":
            on_cluster = (bool(address) and self.started_ray) if cluster is None else cluster
            eps = ray.get([a.ring_open.remote(on_cluster) for a in self.actors])
            ray.get([a.ring_connect.remote(dict(enumerate(eps))) for a in self.actors])

    def _all(self, method: str, *args: Any) -> list:
        return ray.get([a.call.remote(method, *args) for a in self.actors])

    def _each(self, method: str, *per_agent: Sequence[Any]) -> list:
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
    def start_learning(self, returns: Sequence[np.ndarray], step_w: Sequence[np.ndarray], critic: bool = False
                       ) -> list[tuple[np.ndarray, Crit]]:
        return self._each("start_learning", returns, step_w, [critic] * len(self.actors))

    def fvp(self, v: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, Crit]]:
        return self._all("fvp", self._put(v), critic, self._put(phi))

    def surrogate_kl(self, theta: np.ndarray, critic: bool = False, phi: np.ndarray | None = None
                     ) -> list[tuple[tuple[float, float], Crit]]:
        return self._all("surrogate_kl", self._put(theta), critic, self._put(phi))

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
        try:
            ray.get([a.close.remote() for a in self.actors])
            for a in self.actors:
                ray.kill(a)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass
        self.actors = []
        if self.started_ray:
            ray.shutdown()
