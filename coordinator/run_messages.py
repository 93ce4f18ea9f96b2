"""The message log of a TRPO run, on :class:`protocol.MessageLog` (one CSV per run, same schema for
both backends and the same as the sockets write).

Two ways a message reaches the log:

* carried by a Ray call (or, in-process, by a function call): CSI uploads, power assignments,
  gradient / FVP shares, FVP requests, parameters, metrics. :meth:`RunMessages.carried` builds the
  envelope that would carry it and logs it as sent and received with ``frame_size(env)`` bytes;
  its ``t_send_ns`` / ``t_recv_ns`` bracket the call that carried it.
* sent over a ZeroMQ ring by the actors (the round-robin power token): the rows the actors' nodes
  recorded (:data:`Row`, compact tuples) are handed to :meth:`RunMessages.record_rows`.

Per link (sender → receiver) sequence numbers count from 0 in each process, as the sockets do.
Per-iteration counters of what was sent give the metrics ``msgs_<KIND>`` / ``bytes_<KIND>``.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from protocol import COORDINATOR, SENT, Envelope, Kind, MessageLog, frame_size, now_ns
from protocol.log import EVENTS

Row = tuple[int, ...]
"""``(event, kind, sender, receiver, iteration, seq, nbytes, t_send_ns, t_recv_ns[, delay_ns, delay_slots])``,
the arguments of :meth:`protocol.MessageLog.record`."""

__all__ = ["COORDINATOR", "Kind", "Row", "RowCapture", "RunMessages"]


class RowCapture(MessageLog):
    """A node's log that keeps the rows it is given (no file, no aggregates), so that an actor can
    return what its node really sent and received to the coordinator's log (run folders need not
    be shared between cluster nodes)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.rows: list[Row] = []
        self.lock = threading.Lock()      # a receiver thread may record while the actor takes

    def record(self, event: int, kind: int, sender: int, receiver: int, iteration: int, seq: int, nbytes: int,
               t_send_ns: int = 0, t_recv_ns: int = 0, delay_ns: int = 0, delay_slots: int = 0) -> None:
        row = (int(event), int(kind), sender, receiver, iteration, seq, nbytes, t_send_ns, t_recv_ns, delay_ns,
               delay_slots)
        with self.lock:
            self.rows.append(row)

    def take(self) -> list[Row]:
        """The rows recorded since the last call."""
        with self.lock:
            rows, self.rows = self.rows, []
        return rows


class RunMessages:
    """Every message of a run, streamed to ``path`` (``None``: aggregates only)."""

    def __init__(self, path: str | Path | None = None, run_id: str = "") -> None:
        self.run_id = run_id[:128]
        self.log = MessageLog(path, run_id=self.run_id)
        self._seq: dict[tuple[int, int], int] = {}
        self._iter: dict[int, list[int]] = {}  # kind -> [count, bytes] sent since take_iteration()

    @classmethod
    def resume(cls, path: str | Path, run_id: str, iteration: int) -> RunMessages:
        """Reopen a run's log at a checkpoint: the rows of iterations < ``iteration`` are kept (in
        the file and in the summary), those of later iterations — done after the checkpoint and
        about to be redone — are dropped."""
        path = Path(path)
        old: list[Row] = []
        if path.is_file():
            events, kinds = {e: i for i, e in enumerate(EVENTS)}, {k.name: int(k) for k in Kind}
            with path.open(newline="") as f:
                for r in csv.DictReader(f):
                    if int(r["iteration"]) < iteration:
                        old.append((events[r["event"]], kinds[r["kind"]], *(int(r[c]) for c in _INT_COLUMNS)))
        out = cls(path, run_id)
        for row in old:
            out.log.record(*row)
        return out

    def _next_seq(self, sender: int, receiver: int) -> int:
        seq = self._seq.get((sender, receiver), 0)
        self._seq[(sender, receiver)] = seq + 1
        return seq

    def _count(self, kind: int, nbytes: int) -> None:
        acc = self._iter.setdefault(int(kind), [0, 0])
        acc[0] += 1
        acc[1] += nbytes

    def carried(self, kind: Kind, sender: int, receiver: int, iteration: int, payload: dict[str, Any],
                t_send_ns: int, t_recv_ns: int | None = None) -> int:
        """Log one message carried by a call (sent and received); returns its size on the wire."""
        env = Envelope(kind, sender, receiver, iteration, self._next_seq(sender, receiver), payload, self.run_id,
                       t_send_ns)
        n = frame_size(env)
        self.log.record_sent(env, n)
        self.log.record_received(env, n, t_recv_ns=now_ns() if t_recv_ns is None else t_recv_ns)
        self._count(kind, n)
        return n

    def to_each(self, kind: Kind, receivers: Sequence[int], iteration: int, payloads: Sequence[dict[str, Any]],
                t_send_ns: int, t_recv_ns: int | None = None) -> None:
        """The coordinator sends ``payloads[i]`` to ``receivers[i]`` (a broadcast: the same payload each)."""
        t_recv = now_ns() if t_recv_ns is None else t_recv_ns
        for r, p in zip(receivers, payloads, strict=True):
            self.carried(kind, COORDINATOR, r, iteration, p, t_send_ns, t_recv)

    def from_each(self, kind: Kind, senders: Sequence[int], iteration: int, payloads: Sequence[dict[str, Any]],
                  t_send_ns: int, t_recv_ns: int | None = None) -> None:
        """Every agent ``senders[i]`` sends ``payloads[i]`` to the coordinator."""
        t_recv = now_ns() if t_recv_ns is None else t_recv_ns
        for s, p in zip(senders, payloads, strict=True):
            self.carried(kind, s, COORDINATOR, iteration, p, t_send_ns, t_recv)

    def record_rows(self, rows: Iterable[Row]) -> None:
        """Rows recorded by the nodes that really sent and received the messages."""
        for row in rows:
            self.log.record(*row)
            if row[0] == SENT:
                self._count(row[1], row[6])

    def take_iteration(self) -> dict[str, int]:
        """What was sent since the last call, as metrics ``msgs_<KIND>`` and ``bytes_<KIND>``."""
        out: dict[str, int] = {}
        for kind, (c, b) in sorted(self._iter.items()):
            out[f"msgs_{Kind(kind).name}"] = c
            out[f"bytes_{Kind(kind).name}"] = b
        self._iter = {}
        return out

    def flush(self) -> None:
        self.log.flush()

    def summary(self) -> dict[str, Any]:
        return self.log.summary()

    def close(self) -> dict[str, Any]:
        """Close the CSV and write ``<stem>_summary.json`` / ``.md`` beside it; returns the summary."""
        return self.log.close()


_INT_COLUMNS = ("sender", "receiver", "iteration", "seq", "nbytes", "t_send_ns", "t_recv_ns", "delay_ns",
                "delay_slots")
