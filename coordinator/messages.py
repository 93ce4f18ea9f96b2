"""Message accounting of a run: every message that crosses between BSs and the coordinator is
encoded with the protocol codec (its real size on the wire) and recorded — in the inproc backend
too, with the same schema, so overhead tables compare like for like.

Uses :class:`protocol.MessageLog` when the protocol package provides it; otherwise a local log of
the same columns (kind, sender, receiver, bytes, iteration, t_send_ns, t_recv_ns, delay, dropped).
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from protocol.codec import encode
from protocol.envelope import BROADCAST, COORDINATOR, KIND_NAMES, Envelope, Kind

__all__ = ["MessageAccount", "BROADCAST", "COORDINATOR", "Kind"]


def _to_wire(v: Any) -> Any:
    if hasattr(v, "detach"):  # torch tensor
        return v.detach().cpu().numpy().astype(np.float32)
    return v


class MessageAccount:
    """Records messages with their encoded size; per-iteration and per-kind counters."""

    COLUMNS = ("iteration", "kind", "sender", "receiver", "bytes", "t_send_ns", "t_recv_ns", "delay_slots",
               "dropped")

    def __init__(self, run_id: str = "", keep_rows: bool = True) -> None:
        self.run_id = run_id[:128]
        self.keep_rows = keep_rows
        self.rows: list[tuple] = []
        self.total: dict[str, list[int]] = defaultdict(lambda: [0, 0])      # kind -> [count, bytes]
        self.iter_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._seq = 0

    def envelope(self, kind: Kind, sender: int, receiver: int, iteration: int, payload: dict[str, Any]
                 ) -> Envelope:
        self._seq += 1
        return Envelope(kind, int(sender), int(receiver), int(iteration), self._seq,
                        {k: _to_wire(v) for k, v in payload.items()}, self.run_id, time.monotonic_ns())

    def size_of(self, kind: Kind, sender: int, receiver: int, iteration: int, payload: dict[str, Any]) -> int:
        return len(encode(self.envelope(kind, sender, receiver, iteration, payload)))

    def record(self, kind: Kind, sender: int, receiver: int, iteration: int, nbytes: int,
               count: int = 1) -> None:
        """Record ``count`` identical messages of ``nbytes`` each."""
        name = KIND_NAMES[int(kind)]
        t = time.monotonic_ns()
        for _ in range(count):
            if self.keep_rows:
                self.rows.append((iteration, name, sender, receiver, nbytes, t, t, 0, 0))
        for d in (self.total, self.iter_counts):
            d[name][0] += count
            d[name][1] += nbytes * count

    def send(self, kind: Kind, sender: int, receiver: int, iteration: int, payload: dict[str, Any],
             count: int = 1) -> int:
        """Encode the message (real size) and record it; returns its size in bytes."""
        n = self.size_of(kind, sender, receiver, iteration, payload)
        self.record(kind, sender, receiver, iteration, n, count)
        return n

    def take_iteration(self) -> dict[str, float]:
        """Counters since the last call as flat metrics ``msgs_<KIND>``, ``bytes_<KIND>``."""
        out: dict[str, float] = {}
        for name, (c, b) in sorted(self.iter_counts.items()):
            out[f"msgs_{name}"] = c
            out[f"bytes_{name}"] = b
        self.iter_counts = defaultdict(lambda: [0, 0])
        return out

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {"messages": c, "bytes": b} for name, (c, b) in sorted(self.total.items())}

    def write(self, path: Path, append: bool = False) -> None:
        """The message log as CSV (one row per message)."""
        new = not (append and path.exists())
        with path.open("a" if append else "w", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(self.COLUMNS)
            w.writerows(self.rows)
        self.rows = []

    def summary_markdown(self) -> str:
        lines = ["| kind | messages | bytes | mean bytes |", "|---|---:|---:|---:|"]
        for name, d in self.summary().items():
            lines.append(f"| {name} | {d['messages']} | {d['bytes']} | {d['bytes'] / max(d['messages'], 1):.0f} |")
        return "\n".join(lines) + "\n"
