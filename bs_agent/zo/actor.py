"""One or more zeroth-order links in a Ray actor (:class:`ZOLinkActor`): each a :class:`LinkHost` with its
own agent and node, and one air port for the actor.

The air port (:mod:`protocol.airport`). The coordinator holds the air; at the end of link i's iteration
it must hand the link its rates and get (theta, theta + mu u) back. That used to be one Ray call per link
per iteration (~1 ms each on 2 cores: most of the ray backend's cost). Now each actor runs ONE long Ray
call, :meth:`ZOLinkActor.serve`, a loop over its air port: a ZeroMQ PULL socket on which the coordinator
pushes the rates as raw float64 frames; the reply (next schedule [2, n] float64, the link's message-log
rows [rows, 11] int64, its diagnostics) goes back on a PUSH socket to the coordinator's PULL. No pickling,
bit-exact float64, no Ray call per iteration. The loop stops on a STOP frame (before checkpoints, drains and
shutdown, which stay plain Ray calls). This air traffic is the emulator standing in for the physical
channel (a real link measures its own rate over the air and its transmitter applies its own policy), not
a message of Algorithm 1: it is not in the message log and not counted in the exchange, exactly as the
in-process backend and the FL / Adam baselines do not log their air.

Links of one actor share a ZeroMQ context and reach each other over ``inproc://``
(:meth:`protocol.RingNode.bind_inproc`); links of one actor that end at the same slot all send before any
of them receives. With CURVE (``run.secure``: each link's :class:`protocol.NodeKeys` handed over by the
coordinator) every link has its own context instead (a CURVE node's authenticator serves its whole
context, and inproc would bypass it): co-hosted links then talk over authenticated TCP, at the price of an
I/O thread and a ZAP thread per link. The air port has no CURVE.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import ray

from bs_agent.zo.host import LinkHost, LinkSetup
from protocol import airport, make_context, ring_barrier
from protocol.envelope import COORDINATOR
from protocol.security import NodeKeys


@ray.remote(num_cpus=0, runtime_env={"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}})
class ZOLinkActor:
    """One or more links (:class:`LinkHost`, each with its own agent and node) and one air port."""

    def __init__(self, setups: list[LinkSetup], cluster: bool = False, curve: dict[int, NodeKeys] | None = None
                 ) -> None:
        # co-hosted links share one context (one I/O thread, not one per link) and reach each other
        # over inproc: the same frames, log rows and d bytes, without TCP and thread wake-ups; sockets bind
        # this node's address when the run spans nodes (127.0.0.1 otherwise). With CURVE (``curve``: link
        # index -> its keys of the run) each link has its own context and every peer is reached over TCP
        host = ray.util.get_node_ip_address() if cluster else "127.0.0.1"
        self.ctx = make_context() if len(setups) > 1 and not curve else None
        self.links = {s.index: LinkHost(s, self.ctx, host, (curve or {}).get(s.index)) for s in setups}
        self.real = setups[0].clock == "real"
        self.port = airport.LinkPort(host)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def endpoints(self) -> tuple[dict[int, str], str]:
        """Each link's ring endpoint, and the actor's air port."""
        return {i: h.node.endpoint for i, h in self.links.items()}, self.port.endpoint

    def connect(self, endpoints: dict[int, str], coordinator: str) -> np.ndarray:
        """Connect every link to its neighbours and pass the start barrier (co-hosted links each in a
        thread: a link's barrier waits for the others' HELLOs); connect the air port's replies to
        the coordinator. Returns the barrier's log rows."""
        hosts = list(self.links.values())
        local = {h.index: h.inproc for h in hosts if h.inproc}
        for h in hosts:
            h.connect(endpoints, local)
        if len(hosts) == 1:
            ring_barrier(hosts[0].node)
        else:
            errors: list[BaseException] = []

            def run(h: LinkHost) -> None:
                try:
                    ring_barrier(h.node)
                except BaseException as exc:   # re-raised below, on the actor's thread
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(h,)) for h in hosts]
            for th in threads:
                th.start()
            for th in threads:
                th.join()                       # the join hands the sockets back to this thread
            if errors:
                raise errors[0]
        self.port.connect({COORDINATOR: coordinator})
        if self.real:
            for h in hosts:
                h.start_receiver()
        return np.concatenate([h.log.take() for h in hosts])

    def schedules(self) -> dict[int, np.ndarray]:
        return {i: h.schedule() for i, h in self.links.items()}

    def serve(self) -> int:
        """The air port's loop (one Ray call for many iterations): STEP / STEP_REAL frames in,
        one reply per link out; SETTLE; returns on STOP (the frames it served)."""
        port, served = self.port, 0
        while True:
            op, t, idx, payload = port.recv()
            bad = self._bad_command(op, idx, payload)
            if bad:                             # well-formed but not a command for these links: counted, dropped
                port.rejected["command"] += 1
                port.last_error = f"command: {bad}"
                continue
            served += 1
            try:
                if op == airport.STOP:
                    return served
                if op == airport.SETTLE:
                    k = payload.astype(np.int64)
                    rows = []
                    for h in self.links.values():
                        h.receive_until({j: int(k[j]) - 1 for j in h.agent.neighbours})
                        rows.append(h.log.take())
                    port.reply_rows(np.concatenate(rows))
                    continue
                hosts = [self.links[int(i)] for i in idx]
                rates = payload.reshape(len(hosts), -1)
                n_scalars = [h.send_d(t, r) for h, r in zip(hosts, rates, strict=True)]   # every link sends first
                replies = []
                for h, n in zip(hosts, n_scalars, strict=True):
                    if op == airport.STEP:
                        h.receive_until(h.expected(t))
                    sched = h.update(t)
                    replies.append((h.index, n, sched, h.log.take(), h.stat_vector()))
                port.reply_step(replies)
                for h in hosts:                 # off the critical path: the coordinator now runs the air
                    h.prefetch()
            except BaseException as exc:
                port.reply_error(exc)
                raise

    def _bad_command(self, op: int, idx: np.ndarray, payload: np.ndarray) -> str:
        """Why a well-formed air-port command cannot be for this actor ('' if it can): a step for links it does not
        host (or twice the same), of the other clock, with a payload that is not B rates per link; a SETTLE on
        the real clock or without one k per link of the run; an op of another port."""
        if op == airport.STOP:
            return ""
        if op == airport.SETTLE:
            n = len(next(iter(self.links.values())).offsets)
            return "" if not self.real and len(payload) == n else f"SETTLE with {len(payload)} k (expected {n})"
        if op not in (airport.STEP, airport.STEP_REAL):
            return f"op {op}"
        ids = [int(i) for i in idx]
        if not ids or len(set(ids)) != len(ids) or any(i not in self.links for i in ids):
            return f"step for links {ids[:8]} (hosted: {sorted(self.links)[:8]})"
        if (op == airport.STEP_REAL) != self.real:
            return "step of the other clock"
        if len(payload) != sum(self.links[i].B for i in ids):
            return f"step with {len(payload)} rates for links {ids[:8]}"
        return ""

    def state(self) -> dict[int, dict[str, Any]]:
        return {i: h.state() for i, h in self.links.items()}

    def load_state(self, states: dict[int, dict[str, Any]]) -> None:
        for i, h in self.links.items():
            h.load_state(states[i])

    def stats(self) -> dict[int, dict[str, float]]:
        return {i: h.stats() for i, h in self.links.items()}

    def drain(self, expected: dict[int, int], timeout_ms: int) -> tuple[np.ndarray, int]:
        """End of a real-clock run: each link waits until ``expected[i]`` d messages have been
        received or dropped (so the log adds up); returns the rows and how many are still missing."""
        t_end = time.monotonic() + timeout_ms / 1e3
        missing = sum(h.drain(expected[i], t_end) for i, h in self.links.items())
        return np.concatenate([h.log.take() for h in self.links.values()]), missing

    def close(self) -> None:
        for h in self.links.values():
            h.close()
        if self.ctx is not None:
            self.ctx.term()
        self.port.close()


__all__ = ["ZOLinkActor"]
