"""The d message of paper 2 (Sec. III-C): d_i^k with (sender, iteration, timestamp) — SCALAR_D — or, on a
graph, d_i^k with the entries it relays (origin, iteration, d) — RELAY_D."""

from __future__ import annotations

import numpy as np

from bs_agent.zo.algorithm import Entry
from protocol.envelope import Envelope, Kind


def d_envelope(sender: int, k: int, entries: list[Entry], slot: int, graph: bool, run_id: str = "",
               seq: int = 0, t_send_ns: int = 0) -> Envelope:
    """The message carrying d_i^k (SCALAR_D) or, in graph mode, d_i^k plus relayed entries (RELAY_D).
    ``slot`` is the logical send time (the timestamp T of Sec. III-C is the iteration)."""
    if not graph:
        return Envelope(Kind.SCALAR_D, sender, -1, k, seq, {"d": float(entries[0][2]), "slot": int(slot)},
                        run_id, t_send_ns)
    return Envelope(Kind.RELAY_D, sender, -1, k, seq, {
        "origin": np.asarray([e[0] for e in entries], dtype=np.int64),
        "iter": np.asarray([e[1] for e in entries], dtype=np.int64),
        "d": np.asarray([e[2] for e in entries], dtype=np.float32),
        "slot": int(slot)}, run_id, t_send_ns)


def entries_of(env: Envelope) -> list[Entry]:
    """The (j, T, d) entries a d message carries."""
    if env.kind == Kind.SCALAR_D:
        return [(int(env.sender), int(env.iteration), float(env.payload["d"]))]
    p = env.payload
    return [(int(j), int(t), float(d)) for j, t, d in zip(p["origin"], p["iter"], p["d"], strict=False)]


def wire_seq(k: int) -> int:
    """Sequence number of d^k on a link of the ray backend's protocol.RingNode (seq 0 of every link
    is the start barrier's HELLO), so that the in-process log counts the same bytes as the wire."""
    return k + 1
