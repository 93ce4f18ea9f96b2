"""The message log: one CSV row per message sent, received or dropped, plus running aggregates.

Rows stream to a CSV file through a bounded buffer (``buffer_rows`` rows, then one
``csv.writer.writerows`` call), so a run with 10⁶ messages never holds them in memory; only the
aggregates (per kind, per link, per iteration) stay in memory.

CSV columns (times are ``time.monotonic_ns()`` of the node that wrote the row)::

    event      sent | received | dropped
    kind       Kind name
    sender     node id
    receiver   node id of the link's far end (a broadcast is logged as one row per receiving link)
    iteration  envelope iteration
    seq        envelope sequence number
    nbytes     bytes on the wire (len of the encoded frame)
    t_send_ns  sender's send timestamp (from the envelope)
    t_recv_ns  receive/release time at the receiver (0 on sent rows)
    delay_ns   delay injected by the emulator, real clock (ns)
    delay_slots delay injected by the emulator, logical clock (slots)
    dropped    1 if dropped by the emulator, else 0
    phase      training | execution | control (barrier and clock messages are control in any phase)
    via        socket (crossed a ZeroMQ socket) | call (carried by a Ray or function call) | memory
               (moved in memory by the in-process backend)

A message carried by a Ray call, or emulated in-process, is logged exactly like one that went
through a socket: ``log.record_sent(env, len(encode(env)))`` (see :func:`protocol.frame_size`), with
``log.via`` set to ``CALL`` or ``MEMORY``; ``log.phase`` tags what the run is doing. A latency
(t_recv - t_send) is counted only for messages that crossed a socket.

The summary (``summary()``, written by ``close()`` next to the CSV as ``<stem>_summary.json`` and
``<stem>_summary.md``) has counts and bytes per kind, per sender, per receiver, per link, per
iteration and per phase, and latency percentiles (p50/p95/p99, :mod:`protocol.latency`) per kind and
per link; :func:`merge_summaries` adds up the summaries of several nodes.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from .envelope import CONTROL_KINDS, KIND_NAMES, Envelope, Kind, now_ns
from .latency import LatencyHist, refresh_percentiles

SENT, RECEIVED, DROPPED = 0, 1, 2
EVENTS: tuple[str, ...] = ("sent", "received", "dropped")
TRAINING, EXECUTION, CONTROL = 0, 1, 2
PHASES: tuple[str, ...] = ("training", "execution", "control")
SOCKET, CALL, MEMORY = 0, 1, 2
VIAS: tuple[str, ...] = ("socket", "call", "memory")
COLUMNS: tuple[str, ...] = (
    "event", "kind", "sender", "receiver", "iteration", "seq", "nbytes",
    "t_send_ns", "t_recv_ns", "delay_ns", "delay_slots", "dropped", "phase", "via",
)  # fmt: skip
ROW_FIELDS = 11
"""Fields of a node's row (:data:`Row`, the arguments of :meth:`MessageLog.record`); the CSV adds dropped,
phase and via."""
_CONTROL = frozenset(int(k) for k in CONTROL_KINDS) | {int(Kind.HEARTBEAT)}
_EVENT_INDEX = {name: i for i, name in enumerate(EVENTS)}
_KIND_INDEX = {k.name: int(k) for k in Kind}
# CSV text of (event, kind) and the format of the rest of a row: names hold no comma or quote
_PREFIX = tuple(tuple(f"{ev},{name}," for name in KIND_NAMES) for ev in EVENTS)
_ROW_FORMAT = "%s%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s\n"


class MessageLog:
    """Records every message of one node (or one in-process backend).

    Args:
        path: CSV file to stream rows to; ``None`` keeps only the aggregates (no file).
        run_id: written into the summary.
        node: id of the node that owns this log (written into the summary), or ``None``.
        buffer_rows: rows buffered before one write (bounds memory; ≥ 1).

    Not thread-safe: one log per node, used by the thread that owns the node's sockets.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        run_id: str = "",
        node: int | None = None,
        buffer_rows: int = 4096,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = run_id
        self.node = node
        self._buffer_rows = max(1, int(buffer_rows))
        self._rows: list[tuple[Any, ...]] = []
        self._file: TextIO | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", buffering=1 << 20)  # noqa: SIM115
            self._file.write(",".join(COLUMNS) + "\n")
        # running aggregates: [count, bytes]
        self._by_kind: dict[tuple[int, int], list[int]] = {}  # (event, kind)
        self._by_link: dict[tuple[int, int, int, int], list[int]] = {}  # (event, kind, sender, receiver)
        self._by_iter: dict[tuple[int, int, int], list[int]] = {}  # (event, kind, iteration)
        self._by_phase: dict[tuple[int, int, int], list[int]] = {}  # (phase, event, kind)
        self._latency: dict[int, LatencyHist] = {}  # kind → t_recv − t_send of messages that crossed a socket
        self._link_latency: dict[tuple[int, int, int], LatencyHist] = {}  # (kind, sender, receiver)
        self.phase = TRAINING    # what the run is doing: tags the rows recorded from now on
        self.via = SOCKET        # how the messages recorded from now on travel
        self.rows_written = 0
        self.closed = False

    # -- recording (hot path) -------------------------------------------------------------------
    def record(
        self,
        event: int,
        kind: int,
        sender: int,
        receiver: int,
        iteration: int,
        seq: int,
        nbytes: int,
        t_send_ns: int = 0,
        t_recv_ns: int = 0,
        delay_ns: int = 0,
        delay_slots: int = 0,
    ) -> None:
        """Record one row (``event`` is :data:`SENT`, :data:`RECEIVED` or :data:`DROPPED`).

        Cheap: appends a tuple; aggregates and CSV text are computed every ``buffer_rows`` rows."""
        rows = self._rows
        rows.append(
            (event, kind, sender, receiver, iteration, seq, nbytes, t_send_ns, t_recv_ns, delay_ns, delay_slots,
             self.phase, self.via)
        )
        if len(rows) >= self._buffer_rows:
            self._flush_rows()

    def record_sent(self, env: Envelope, nbytes: int, receiver: int | None = None) -> None:
        """Record a message put on the wire (or handed to Ray): ``nbytes = len(encode(env))``.

        ``receiver`` overrides ``env.receiver`` (one row per link for a broadcast)."""
        self.record(
            SENT, env.kind, env.sender, env.receiver if receiver is None else receiver,
            env.iteration, env.seq, nbytes, env.t_send_ns,
        )  # fmt: skip

    def record_received(
        self,
        env: Envelope,
        nbytes: int,
        receiver: int | None = None,
        t_recv_ns: int | None = None,
        delay_ns: int = 0,
        delay_slots: int = 0,
    ) -> None:
        """Record a message handed to the application at ``t_recv_ns`` (default: now)."""
        self._record_at(RECEIVED, env, nbytes, receiver, t_recv_ns, delay_ns, delay_slots)

    def record_dropped(
        self,
        env: Envelope,
        nbytes: int,
        receiver: int | None = None,
        t_ns: int | None = None,
        delay_ns: int = 0,
        delay_slots: int = 0,
    ) -> None:
        """Record a message dropped by the link emulator (``t_ns``: when, default now)."""
        self._record_at(DROPPED, env, nbytes, receiver, t_ns, delay_ns, delay_slots)

    def _record_at(self, event: int, env: Envelope, nbytes: int, receiver: int | None, t_ns: int | None,
                   delay_ns: int, delay_slots: int) -> None:
        """The row of ``env`` at ``t_ns`` (default now) on this node's side of the link."""
        self.record(
            event, env.kind, env.sender, env.receiver if receiver is None else receiver,
            env.iteration, env.seq, nbytes, env.t_send_ns,
            now_ns() if t_ns is None else t_ns, delay_ns, delay_slots,
        )  # fmt: skip

    # -- files ----------------------------------------------------------------------------------
    def _flush_rows(self) -> None:
        """Fold the buffered rows into the aggregates and write them to the CSV."""
        rows = self._rows
        if not rows:
            return
        by_kind, by_link, by_iter, by_phase = self._by_kind, self._by_link, self._by_iter, self._by_phase
        latency, link_latency = self._latency, self._link_latency
        out = []
        for r in rows:
            event, k, sender, receiver, iteration, _, nbytes, t_send, t_recv, _, _, phase, via = r
            kind = int(k)  # plain int keys (hashing an IntEnum member is slower)
            if kind in _CONTROL:
                phase = CONTROL
            for table, key in (
                (by_kind, (event, kind)),
                (by_link, (event, kind, sender, receiver)),
                (by_iter, (event, kind, iteration)),
                (by_phase, (phase, event, kind)),
            ):
                acc = table.get(key)
                if acc is None:
                    table[key] = [1, nbytes]
                else:
                    acc[0] += 1
                    acc[1] += nbytes
            if event == RECEIVED and via == SOCKET and t_send and t_recv:
                lat = t_recv - t_send
                hist = latency.get(kind)
                if hist is None:
                    hist = latency[kind] = LatencyHist()
                hist.add(lat)
                hist = link_latency.get((kind, sender, receiver))
                if hist is None:
                    hist = link_latency[(kind, sender, receiver)] = LatencyHist()
                hist.add(lat)
            out.append(_ROW_FORMAT % (_PREFIX[event][kind], *r[2:11], event == DROPPED, PHASES[phase], VIAS[via]))
        if self._file is not None and not self._file.closed:
            self._file.write("".join(out))
            self.rows_written += len(rows)
        rows.clear()

    def flush(self) -> None:
        """Fold buffered rows into the aggregates, write them and flush the file."""
        self._flush_rows()
        if self._file is not None and not self._file.closed:
            self._file.flush()

    def close(self, write_summary: bool = True) -> dict[str, Any]:
        """Flush and close the CSV; write ``<stem>_summary.json`` / ``.md`` beside it.

        Returns the summary. Idempotent."""
        summary = self.summary()  # folds (and writes) the buffered rows
        if self.closed:
            return summary
        self.closed = True
        if self._file is not None:
            self._file.close()
            if write_summary and self.path is not None:
                write_summary_files(summary, self.path.with_name(self.path.stem + "_summary"))
        return summary

    def __enter__(self) -> MessageLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- summary --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Aggregates as a JSON-ready dict (see the module docstring)."""
        self._flush_rows()
        return _build_summary(self._by_kind, self._by_link, self._by_iter, self._by_phase, self._latency,
                              self._link_latency, self.run_id, self.node)


Row = tuple[int, ...]
"""``(event, kind, sender, receiver, iteration, seq, nbytes, t_send_ns, t_recv_ns[, delay_ns, delay_slots])``,
the arguments of :meth:`protocol.MessageLog.record`."""



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


def _cb(acc: list[int]) -> dict[str, int]:
    return {"count": acc[0], "bytes": acc[1]}


def _add_cb(node: dict[str, Any], event: str, acc: list[int]) -> None:
    cur = node.setdefault(event, {"count": 0, "bytes": 0})
    cur["count"] += acc[0]
    cur["bytes"] += acc[1]


def _build_summary(
    by_kind: dict[tuple[int, int], list[int]],
    by_link: dict[tuple[int, int, int, int], list[int]],
    by_iter: dict[tuple[int, int, int], list[int]],
    by_phase: dict[tuple[int, int, int], list[int]],
    latency: dict[int, LatencyHist],
    link_latency: dict[tuple[int, int, int], LatencyHist],
    run_id: str,
    node: int | None,
) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    per_kind: dict[str, Any] = {}
    for (ev, kind), acc in sorted(by_kind.items()):
        _add_cb(totals, EVENTS[ev], acc)
        _add_cb(per_kind.setdefault(KIND_NAMES[kind], {}), EVENTS[ev], acc)
    for kind, hist in latency.items():
        per_kind[KIND_NAMES[kind]]["latency_ns"] = hist.to_dict()
    per_sender: dict[str, Any] = {}
    per_receiver: dict[str, Any] = {}
    per_link: dict[str, Any] = {}
    for (ev, kind, snd, rcv), acc in sorted(by_link.items()):
        _add_cb(per_sender.setdefault(str(snd), {}), EVENTS[ev], acc)
        _add_cb(per_receiver.setdefault(str(rcv), {}), EVENTS[ev], acc)
        _add_cb(per_link.setdefault(f"{snd}->{rcv}", {}).setdefault(KIND_NAMES[kind], {}), EVENTS[ev], acc)
    for (kind, snd, rcv), hist in link_latency.items():
        per_link[f"{snd}->{rcv}"][KIND_NAMES[kind]]["latency_ns"] = hist.to_dict()
    per_iteration: dict[str, Any] = {}
    for (ev, kind, it), acc in sorted(by_iter.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        _add_cb(per_iteration.setdefault(str(it), {}).setdefault(KIND_NAMES[kind], {}), EVENTS[ev], acc)
    per_phase: dict[str, Any] = {}
    for (ph, ev, kind), acc in sorted(by_phase.items()):
        node_ = per_phase.setdefault(PHASES[ph], {})
        _add_cb(node_.setdefault("totals", {}), EVENTS[ev], acc)
        _add_cb(node_.setdefault("per_kind", {}).setdefault(KIND_NAMES[kind], {}), EVENTS[ev], acc)
    return {
        "run_id": run_id,
        "nodes": [] if node is None else [node],
        "totals": totals,
        "per_kind": per_kind,
        "per_sender": per_sender,
        "per_receiver": per_receiver,
        "per_link": per_link,
        "per_iteration": per_iteration,
        "per_phase": per_phase,
    }


def _merge_into(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict):
            _merge_into(dst.setdefault(key, {}), value)
        elif key == "max":
            dst[key] = max(dst.get(key, value), value)
        elif key == "mean" or (key.startswith("p") and key[1:].isdigit()):
            continue                       # percentiles and means are recomputed from the merged bins
        elif isinstance(value, (int, float)):
            dst[key] = dst.get(key, 0) + value


def _refresh_latencies(node: Any) -> None:
    """Recompute every latency entry's percentiles from its bins (after a merge)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "latency_ns" and isinstance(value, dict):
                refresh_percentiles(value)
            else:
                _refresh_latencies(value)


def merge_summaries(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add up the summaries of several logs (e.g. one per BS) into one summary of the run."""
    out: dict[str, Any] = {"run_id": "", "nodes": []}
    for s in summaries:
        out["run_id"] = out["run_id"] or s.get("run_id", "")
        out["nodes"] = sorted(set(out["nodes"]) | set(s.get("nodes", [])))
        _merge_into(out, {k: v for k, v in s.items() if isinstance(v, dict)})
    for key in ("totals", "per_kind", "per_sender", "per_receiver", "per_link", "per_iteration", "per_phase"):
        out.setdefault(key, {})
    _refresh_latencies(out)
    return out


_INT_FIELDS = ("sender", "receiver", "iteration", "seq", "nbytes", "t_send_ns", "t_recv_ns", "delay_ns",
               "delay_slots")
_PHASE_INDEX = {name: i for i, name in enumerate(PHASES)}
_VIA_INDEX = {name: i for i, name in enumerate(VIAS)}


def read_rows(path: str | Path, limit: int | None = None) -> list[tuple[int, ...]]:
    """The rows of a log's CSV as ``(*Row, phase, via)`` int tuples (files written before the phase and via
    columns existed read as training / socket); at most ``limit`` rows."""
    out: list[tuple[int, ...]] = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if limit is not None and len(out) >= limit:
                break
            out.append((_EVENT_INDEX[row["event"]], _KIND_INDEX[row["kind"]], *(int(row[c]) for c in _INT_FIELDS),
                        _PHASE_INDEX[row.get("phase") or "training"], _VIA_INDEX[row.get("via") or "socket"]))
    return out


def replay_rows(log: MessageLog, rows: Iterable[tuple[int, ...]]) -> None:
    """Record ``(*Row, phase, via)`` rows into ``log`` with their own phase and via."""
    phase, via = log.phase, log.via
    try:
        for r in rows:
            log.phase, log.via = r[ROW_FIELDS], r[ROW_FIELDS + 1]
            log.record(*r[:ROW_FIELDS])
    finally:
        log.phase, log.via = phase, via


def summarize_csv(path: str | Path, run_id: str = "", node: int | None = None) -> dict[str, Any]:
    """Rebuild a summary from a log's CSV file (offline analysis; checks of the streamed rows)."""
    log = MessageLog(None, run_id=run_id, node=node)
    replay_rows(log, read_rows(path))
    return log.summary()


def _lat_cells(lat: dict[str, Any] | None) -> str:
    """'p50 | p99' in µs of a latency entry (empty when no message of it crossed a socket)."""
    if not lat or not lat.get("count"):
        return " | "
    return f"{lat['p50'] / 1e3:.1f} | {lat['p99'] / 1e3:.1f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """A small Markdown report: per phase, per kind and per link (Table III material). Latencies are of the
    messages that crossed a socket only (``via`` socket), as p50 / p99 in µs."""

    def cb(node: dict[str, Any], ev: str) -> tuple[int, int]:
        x = node.get(ev, {})
        return x.get("count", 0), x.get("bytes", 0)

    lines = [f"# Message log summary (run `{summary.get('run_id', '')}`)", ""]
    phases = summary.get("per_phase", {})
    if phases:
        lines += ["| phase | sent | sent bytes | received | dropped |", "|---|---:|---:|---:|---:|"]
        for name, node in phases.items():
            (sc, sb), (rc, _), (dc, _) = (cb(node.get("totals", {}), e) for e in EVENTS)
            lines.append(f"| {name} | {sc} | {sb} | {rc} | {dc} |")
        lines.append("")
    lines += [
        "| kind | sent | sent bytes | bytes/msg | received | received bytes | dropped | latency p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, node in summary.get("per_kind", {}).items():
        (sc, sb), (rc, rb), (dc, _) = cb(node, "sent"), cb(node, "received"), cb(node, "dropped")
        bpm = f"{sb / sc:.1f}" if sc else ""
        lines.append(f"| {name} | {sc} | {sb} | {bpm} | {rc} | {rb} | {dc} | {_lat_cells(node.get('latency_ns'))} |")
    (sc, sb), (rc, rb), (dc, _) = (cb(summary.get("totals", {}), e) for e in EVENTS)
    lines.append(f"| **total** | {sc} | {sb} | {sb / sc if sc else 0:.1f} | {rc} | {rb} | {dc} | | |")
    lines += [
        "",
        "| link | kind | sent | sent bytes | received | dropped | latency p50 µs | p99 µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for link, kinds in summary.get("per_link", {}).items():
        for kind, node in kinds.items():
            (sc, sb), (rc, _), (dc, _) = cb(node, "sent"), cb(node, "received"), cb(node, "dropped")
            lines.append(f"| {link} | {kind} | {sc} | {sb} | {rc} | {dc} | {_lat_cells(node.get('latency_ns'))} |")
    return "\n".join(lines) + "\n"


def write_summary_files(summary: dict[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md``; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    json_path.write_text(json.dumps(summary, indent=1, sort_keys=False))
    md_path.write_text(summary_markdown(summary))
    return json_path, md_path


__all__ = [
    "MessageLog",
    "read_rows",
    "replay_rows",
    "Row",
    "RowCapture",
    "merge_summaries",
    "summarize_csv",
    "summary_markdown",
    "write_summary_files",
    "COLUMNS",
    "EVENTS",
    "SENT",
    "RECEIVED",
    "DROPPED",
    "TRAINING",
    "EXECUTION",
    "CONTROL",
    "SOCKET",
    "CALL",
    "MEMORY",
    "ROW_FIELDS",
]
