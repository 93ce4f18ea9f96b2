"""Worker functions for the multi-process protocol tests (spawned processes import this module).

No tests here; importable by name so that ``multiprocessing`` with ``spawn`` can find them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ring_order(seed: int, rnd: int, n: int) -> list[int]:
    """Round-robin order of round ``rnd``: redrawn every round, the same in every process."""
    return [int(x) for x in np.random.default_rng([seed, rnd]).permutation(n)]


def ring_worker(node_id: int, n: int, rounds: int, seed: int, up: Any, down: Any, log_path: str) -> None:
    """One BS of a ring: pass a growing power vector along a random order, every round."""
    from protocol import Envelope, Kind, MessageLog, RingNode, ring_barrier

    log = MessageLog(log_path, node=node_id)
    node = RingNode(node_id, log=log)
    up.put(("endpoint", node_id, node.endpoint))
    errors: list[str] = []
    completed: list[tuple[int, list[int]]] = []
    try:
        node.connect(down.get(timeout=60))
        ring_barrier(node, timeout_s=30)
        inbox: dict[int, Any] = {}
        last_seq: dict[int, int] = {}
        last_it: dict[int, int] = {}
        for rnd in range(rounds):
            order = ring_order(seed, rnd, n)
            pos = order.index(node_id)
            if pos == 0:
                p = np.zeros(0)
            else:
                while rnd not in inbox:
                    env = node.recv(timeout_ms=20_000)
                    if env is None:
                        raise TimeoutError(f"node {node_id} round {rnd}: nothing received")
                    s = env.sender
                    # seq 0 of every link was the barrier HELLO
                    if env.seq != last_seq.get(s, 0) + 1 or env.iteration <= last_it.get(s, -1):
                        errors.append(f"out of order from {s}: seq {env.seq} it {env.iteration}")
                    last_seq[s], last_it[s] = env.seq, env.iteration
                    inbox[env.iteration] = env
                env = inbox.pop(rnd)
                p = np.asarray(env.payload["p"], dtype=np.float64)
                if env.sender != order[pos - 1] or p.astype(int).tolist() != order[:pos]:
                    errors.append(f"round {rnd}: got {p.tolist()} from {env.sender}, order {order}")
            p = np.append(p, node_id)
            if pos + 1 < n:
                node.send(order[pos + 1], Envelope(Kind.POWER_VECTOR, node_id, order[pos + 1], rnd, 0, {"p": p}))
            else:
                completed.append((rnd, p.astype(int).tolist()))
        stats = node.stats
        result = {"errors": errors, "completed": completed, "gaps": stats.gaps, "reordered": stats.reordered,
                  "rejected": sum(stats.rejected.values())}  # fmt: skip
    except Exception as exc:  # report, don't hang the parent
        result = {"errors": errors + [f"{type(exc).__name__}: {exc}"], "completed": completed}
    finally:
        node.close()
    result["summary"] = log.close()
    up.put(("done", node_id, result))


def subscriber_worker(node_id: int, publisher: int, n_msgs: int, up: Any, down: Any) -> None:
    """A BS listening to one publisher: receive ``n_msgs`` application messages, check sequence."""
    from protocol import BroadcastNode, MessageLog, broadcast_barrier

    log = MessageLog(node=node_id)
    node = BroadcastNode(node_id, neighbours={publisher}, log=log)
    up.put(("endpoint", node_id, node.endpoint))
    result: dict[str, Any] = {"count": 0, "bad": 0}
    try:
        node.connect(down.get(timeout=60))
        broadcast_barrier(node, timeout_s=30)
        expect_i = 0
        prev_seq = -1
        for _ in range(n_msgs):
            env = node.recv(timeout_ms=20_000)
            if env is None:
                break
            result["count"] += 1
            if env.payload["i"] != expect_i or (prev_seq >= 0 and env.seq != prev_seq + 1):
                result["bad"] += 1
            expect_i, prev_seq = env.payload["i"] + 1, env.seq
        result.update(gaps=node.stats.gaps, reordered=node.stats.reordered, extra=node.recv(timeout_ms=100))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        node.close()
    result["summary"] = log.close()
    up.put(("done", node_id, result))


def clock_worker(node_id: int, peer: int, rounds: int, up: Any, down: Any) -> None:
    """A RingNode that sends one application message to ``peer``, estimates the peer's clock offset
    (answering the peer's own pings meanwhile), then serves pings until a METRICS "stop" comes."""
    from protocol import Envelope, Kind, RingNode, estimate_clock_offset

    node = RingNode(node_id)
    up.put(("endpoint", node_id, node.endpoint))
    try:
        node.connect(down.get(timeout=60))
        node.send(peer, Envelope(Kind.POWER_VECTOR, node_id, peer, 7, 0, {"p": np.arange(3.0)}))
        est = estimate_clock_offset(node, peer, rounds=rounds, timeout_s=10.0)
        while True:
            env = node.recv(timeout_ms=60_000)
            if env is None or env.kind == Kind.METRICS:
                break
        up.put(("done", node_id, (est.offset_ns, est.rtt_ns, [tuple(s) for s in est.samples], est.lost,
                                  node.stats.clock)))  # fmt: skip
    finally:
        node.close()
