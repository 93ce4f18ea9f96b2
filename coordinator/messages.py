"""The message log of a run (:class:`RunMessages`), one for both papers: a :class:`protocol.MessageLog`
(one CSV per run, the same schema the sockets write) that also logs the messages carried by calls and
can be reopened at a checkpoint.

Two ways a message reaches the log:

* sent over a ZeroMQ node (the round-robin power token, the d messages of the zeroth-order links, the
  FVP phase's vectors): the rows the nodes recorded (:data:`protocol.log.Row`, compact tuples) are
  handed to :meth:`RunMessages.record_rows` (or recorded in this process by the node itself);
* carried by a Ray call (or, in-process, by a function call): CSI uploads, power assignments,
  gradient / FVP shares, parameters, metrics. :meth:`RunMessages.carried` builds the envelope that
  would carry it and logs it as sent and received with ``frame_size(env)`` bytes; its ``t_send_ns`` /
  ``t_recv_ns`` bracket the call that carried it.

Per link (sender → receiver) sequence numbers of carried messages count from 0 in each process, as the
sockets do. Per-iteration counters of what was sent give the metrics ``msgs_<KIND>`` / ``bytes_<KIND>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from protocol import COORDINATOR, SENT, Envelope, Kind, MessageLog, frame_size, now_ns
from protocol.log import CALL, SOCKET, Row, read_rows, replay_rows

__all__ = ["COORDINATOR", "Kind", "RunMessages"]


class RunMessages(MessageLog):
    """Every message of a run, streamed to ``path`` (``None``: aggregates only)."""

    def __init__(self, path: str | Path | None = None, run_id: str = "") -> None:
        super().__init__(path, run_id=run_id[:128])
        self.next_seq: dict[tuple[int, int], int] = {}   # (sender, receiver) -> next sequence number
        self._iter: dict[int, list[int]] = {}  # kind -> [count, bytes] sent since take_iteration()
        self.node_of: dict[int, str] = {}      # sender / receiver id -> Ray node id (when known): cross-node links

    def summary(self) -> dict[str, Any]:
        """The log's summary; with :attr:`node_of`, every link says whether it crossed nodes, and the totals of
        messages that did are given apart (``cross_node``)."""
        out = super().summary()
        if not self.node_of:
            return out
        cross: dict[str, dict[str, int]] = {}
        for link, kinds in out["per_link"].items():
            s, r = (int(x) for x in link.split("->"))
            ns, nr = self.node_of.get(s), self.node_of.get(r)
            flag = None if ns is None or nr is None else ns != nr
            for node in kinds.values():
                node["cross_node"] = flag
                if flag:
                    for event in ("sent", "received", "dropped"):
                        if event in node:
                            acc = cross.setdefault(event, {"count": 0, "bytes": 0})
                            acc["count"] += node[event]["count"]
                            acc["bytes"] += node[event]["bytes"]
        out["cross_node"] = cross
        out["nodes"] = {str(k): v for k, v in self.node_of.items()}
        return out

    @classmethod
    def reopen(cls, path: str | Path, run_id: str, rows: int | None = None,
               before_iteration: int | None = None) -> RunMessages:
        """Reopen a run's log at a checkpoint: keep its first ``rows`` rows (what was logged when the
        checkpoint was written), or, for a checkpoint that did not record it, the rows of iterations
        < ``before_iteration``; the rest (done after the checkpoint and about to be redone) is dropped
        from the file and from the summary. Without a file, a fresh log."""
        path = Path(path)
        old = read_rows(path, limit=rows) if path.is_file() else []
        if before_iteration is not None:
            old = [r for r in old if r[4] < before_iteration]
        out = cls(path, run_id)
        replay_rows(out, old)
        return out

    @property
    def rows_logged(self) -> int:
        """Rows recorded so far (written or buffered): what a checkpoint keeps."""
        return self.rows_written + len(self._rows)

    def _next_seq(self, sender: int, receiver: int) -> int:
        seq = self.next_seq.get((sender, receiver), 0)
        self.next_seq[(sender, receiver)] = seq + 1
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
        via, self.via = self.via, CALL
        self.record_sent(env, n)
        self.record_received(env, n, t_recv_ns=now_ns() if t_recv_ns is None else t_recv_ns)
        self.via = via
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

    def record_rows(self, rows: Iterable[Row], via: int = SOCKET) -> None:
        """Rows recorded by the nodes that really sent and received the messages (``via``: how they travelled,
        :data:`protocol.log.SOCKET` or, from the in-process backends, ``MEMORY``)."""
        prev, self.via = self.via, via
        for row in rows:
            self.record(*row)
            if row[0] == SENT:
                self._count(row[1], row[6])
        self.via = prev

    def take_iteration(self) -> dict[str, int]:
        """What was sent since the last call, as metrics ``msgs_<KIND>`` and ``bytes_<KIND>``."""
        out: dict[str, int] = {}
        for kind, (c, b) in sorted(self._iter.items()):
            out[f"msgs_{Kind(kind).name}"] = c
            out[f"bytes_{Kind(kind).name}"] = b
        self._iter = {}
        return out
