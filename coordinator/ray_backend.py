"""The ray backend: one Ray actor per agent (a thin wrapper around
:class:`~bs_agent.base_station.BaseStation`), the round-robin power token passed between the actors
over a ZeroMQ PUSH/PULL ring (one message per hop carrying the whole batch of slots, encoded with the
protocol codec), and one Ray call per agent per phase, never per slot.

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
from bs_agent.state import local_csi
from coordinator.backends import agent_ids


@ray.remote(num_cpus=0)
class BSActor:
    """A BS (or the central agent) in its own process."""

    def __init__(self, bs_id: int, spec: AgentSpec, sample_seed: int) -> None:
        torch.set_num_threads(1)
        from bs_agent.base_station import BaseStation

        self.bs = BaseStation(bs_id, spec, sample_seed)
        self.ctx = None
        self.pull = self.push = None

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.bs, method)(*args)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def rss_mb(self) -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    # ---- the ZeroMQ ring (bind first on every actor, then connect to the next)
    def ring_bind(self, host: str = "127.0.0.1") -> str:
        from coordinator.zmq_sockets import bind_pull

        self.ctx, self.pull, endpoint = bind_pull(host)
        return endpoint

    def ring_connect(self, next_endpoint: str) -> None:
        from coordinator.zmq_sockets import connect_push

        self.push = connect_push(self.ctx, next_endpoint)

    def round_robin(self, position: np.ndarray, M: int, B: int, L: int, iteration: int,
                    timeout_ms: int = 60_000) -> np.ndarray | None:
        """B passes of the token around the ring; BS 0 starts from zero power. The last BS of the
        ring returns the final token (powers) to the coordinator."""
        from protocol.codec import decode, encode
        from protocol.envelope import Envelope, Kind, now_ns

        b = self.bs.bs_id
        seq = 0
        for n in range(B):
            if b == 0 and n == 0:
                p = np.zeros((M, L))
                decided = np.zeros((M, B), dtype=bool)
            else:
                if not self.pull.poll(timeout_ms):
                    raise TimeoutError(f"BS {b}: no power token for pass {n} within {timeout_ms} ms")
                env = decode(self.pull.recv(copy=False).buffer, known_senders=range(B))
                if env.kind != Kind.POWER_VECTOR or env.iteration != iteration:
                    raise RuntimeError(f"BS {b}: unexpected message {env.kind} it {env.iteration}")
                p = env.payload["p"].astype(np.float64)
                decided = env.payload["decided"].astype(bool)
            self.bs.rr_pass(p, decided, position, n)
            if b == B - 1 and n == B - 1:
                return p
            seq += 1
            env = Envelope(Kind.POWER_VECTOR, b, (b + 1) % B, iteration, seq,
                           {"p": p.astype(np.float32), "decided": decided.astype(np.int64)}, "", now_ns())
            self.push.send(encode(env), copy=False)
        return None

    def close(self) -> None:
        for s in (self.pull, self.push):
            if s is not None:
                s.close(0)
        if self.ctx is not None:
            self.ctx.term()


class RayBackend:
    """Agents as Ray actors; same calls as :class:`coordinator.backends.InprocBackend`."""

    name = "ray"

    def __init__(self, spec: AgentSpec, sample_seeds: Sequence[int], address: str | None = None,
                 actor_options: Sequence[dict] | None = None) -> None:
        self.spec = spec
        self.started_ray = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            self.started_ray = True
        ids = agent_ids(spec)
        opts = list(actor_options or [{}] * len(ids))
        self.actors = [BSActor.options(**o).remote(i, spec, s) for i, s, o in zip(ids, sample_seeds, opts)]
        self.ring_ready = False
        if spec.scheme == "partial":
            eps = ray.get([a.ring_bind.remote() for a in self.actors])
            ray.get([a.ring_connect.remote(eps[(i + 1) % len(eps)]) for i, a in enumerate(self.actors)])
            self.ring_ready = True

    def _all(self, method: str, *args: Any) -> list:
        return ray.get([a.call.remote(method, *args) for a in self.actors])

    def _each(self, method: str, per_agent: Sequence[Any]) -> list:
        return ray.get([a.call.remote(method, x) for a, x in zip(self.actors, per_agent)])

    # ---- parameters
    def set_policy(self, theta: torch.Tensor) -> None:
        self._all("set_policy_params", ray.put(theta))

    def set_value(self, phi: torch.Tensor) -> None:
        self._all("set_value_params", ray.put(phi))

    def initial_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (ray.get(self.actors[0].call.remote("get_policy_params")),
                ray.get(self.actors[0].call.remote("get_value_params")))

    def rng_states(self) -> list[torch.Tensor]:
        return self._all("get_rng_state")

    def set_rng_states(self, states: Sequence[torch.Tensor]) -> None:
        self._each("set_rng_state", states)

    # ---- acting
    def load(self, gains_norm: np.ndarray, stochastic: bool = True) -> None:
        """Scatter each agent ONLY its local CSI (the centralized agent gets the uploaded full CSI)."""
        if self.spec.scheme == "centralized":
            ray.get(self.actors[0].call.remote("load_csi", gains_norm.reshape(gains_norm.shape[0], -1),
                                               stochastic))
        else:
            ray.get([a.call.remote("load_csi", local_csi(gains_norm, b, self.spec.K), stochastic)
                     for b, a in enumerate(self.actors)])

    def act_all(self) -> np.ndarray:
        out = self._all("act")
        return out[0] if self.spec.scheme == "centralized" else np.concatenate(out, axis=1)

    def act_round_robin(self, position: np.ndarray) -> np.ndarray:
        M, B = position.shape
        it = getattr(self, "_rr_iter", 0)
        self._rr_iter = it + 1
        out = ray.get([a.round_robin.remote(position[:, b], M, B, B * self.spec.K, it)
                       for b, a in enumerate(self.actors)])
        return out[-1]

    def finish(self) -> list[np.ndarray]:
        return self._all("finish_acting")

    # ---- learning shares
    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self._each("set_weights", weights)

    def policy_gradient(self) -> list[torch.Tensor]:
        return self._all("policy_gradient")

    def fvp(self, v: torch.Tensor) -> list[torch.Tensor]:
        return self._all("fisher_vector_product", ray.put(v))

    def surrogate_kl(self, theta: torch.Tensor) -> list[tuple[float, float]]:
        return self._all("surrogate_kl", ray.put(theta))

    def value_gradient(self, returns: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, float]]:
        return self._each("value_gradient", returns)

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
