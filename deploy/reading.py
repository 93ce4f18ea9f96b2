"""Reading a run folder back into Python objects for :mod:`deploy.api`: :func:`read_run` (config, metrics,
message and eval summaries, meta) and :func:`message_stats` (messages.csv per kind and per link). Reads, writes
nothing. Re-exported by :mod:`deploy.api`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from coordinator.config import ConfigError
from coordinator.trpo.config import TrainConfig

__all__ = ["read_run", "message_stats", "RunRecord", "MessageStats"]


@dataclass
class RunRecord:
    """A run folder as Python objects. ``config``: the typed :class:`TrainConfig` of a paper-1 run (a plain
    mapping for other runs); ``metrics``: metrics.csv as {column: float array} (one value per iteration);
    ``messages``: messages_summary.json (messages and bytes per kind, per link); ``eval``: eval/summary.json
    (the held-out evaluation) or None; ``meta``: meta.json (seed, versions, placement, ...)."""

    path: Path
    config: Any
    metrics: dict[str, np.ndarray]
    messages: dict[str, Any] | None
    eval: dict[str, Any] | None
    meta: dict[str, Any]

    def theta(self) -> np.ndarray:
        """The policy parameters of the latest checkpoint (float array)."""
        from deploy.errors import UsageError
        from deploy.rundir import RunDir

        ck = RunDir.open(self.path).load_latest_checkpoint()
        if ck is None or "theta" not in ck:
            raise UsageError(f"run dir {self.path}: no checkpoint with a policy (checkpoints/ckpt-*.pt)")
        return np.asarray(ck["theta"])


def _json(path: Path) -> dict[str, Any] | None:
    import json

    from deploy.config import read_text
    from deploy.errors import UsageError

    if not path.is_file():
        return None
    try:
        return json.loads(read_text(path, "file", 64 << 20))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from None


def read_run(run_dir: str | os.PathLike) -> RunRecord:
    """Everything a run folder records (:class:`RunRecord`); writes nothing."""
    from deploy.plots import read_csv
    from deploy.rundir import RunDir
    from deploy.runs import read_run_config

    rd = RunDir.open(run_dir)
    try:
        config: Any = read_run_config(rd, TrainConfig, lambda cfg: None)
    except ConfigError:
        config = rd.config_dict()                         # a paper-2 run (or an older folder): as written
    metrics = read_csv(rd.path / "metrics.csv") if (rd.path / "metrics.csv").is_file() else {}
    return RunRecord(rd.path, config, metrics, _json(rd.path / "messages_summary.json"),
                     _json(rd.path / "eval" / "summary.json"), rd.meta())


# ---------------------------------------------------------------------------------------------- message_stats
class MessageStats(NamedTuple):
    """What :func:`message_stats` returns. Each entry of ``per_kind`` (kind name -> ...), ``per_link``
    ((sender, receiver) -> ..., every kind together, with ``kinds``: kind name -> the same per kind) and
    ``totals`` holds ``sent``, ``sent_bytes``, ``received``, ``received_bytes``, ``dropped``, ``dropped_bytes``
    and, over the messages that crossed a ZeroMQ socket, ``latency_count`` and ``latency_mean_ns``,
    ``latency_p50_ns``, ``latency_p95_ns``, ``latency_p99_ns`` (NaN without one), ``latency_max_ns``; per link
    also ``cross_node`` (True / False where the run recorded its nodes, else None). ``summary``: the whole
    summary of the CSV (per iteration, per phase, per sender, ...), as messages_summary.json has it. Plain
    dicts: ``pandas.DataFrame.from_dict(stats.per_kind, orient="index")`` makes a table."""

    per_kind: dict[str, dict[str, Any]]
    per_link: dict[tuple[int, int], dict[str, Any]]
    totals: dict[str, Any]
    summary: dict[str, Any]


def _flat(node: Mapping[str, Any]) -> dict[str, Any]:
    """A summary entry ({event: {count, bytes}}, latency_ns) as flat numbers."""
    out: dict[str, Any] = {}
    for event in ("sent", "received", "dropped"):
        cb = node.get(event, {})
        out[event], out[f"{event}_bytes"] = int(cb.get("count", 0)), int(cb.get("bytes", 0))
    lat = node.get("latency_ns") or {}
    out["latency_count"] = int(lat.get("count", 0))
    for q in ("mean", "p50", "p95", "p99"):
        out[f"latency_{q}_ns"] = float(lat.get(q, float("nan")))
    out["latency_max_ns"] = int(lat["max"]) if lat.get("count") else 0
    return out


def _merged_latency(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The latency entries of several kinds of one link as one (bins added, percentiles recomputed)."""
    from protocol.latency import refresh_percentiles

    lats = [e["latency_ns"] for e in entries if e.get("latency_ns")]
    if not lats:
        return None
    bins: dict[str, int] = {}
    for lat in lats:
        for b, c in lat.get("hist", {}).items():
            bins[b] = bins.get(b, 0) + int(c)
    out = {"count": sum(int(x["count"]) for x in lats), "sum": sum(int(x["sum"]) for x in lats),
           "max": max(int(x["max"]) for x in lats), "hist": bins}
    refresh_percentiles(out)
    return out


def message_stats(run_dir: str | os.PathLike) -> MessageStats:
    """A run folder's messages.csv (``bsemu train``, ``zo``, ``execute`` or :func:`train`) as per-kind and
    per-link statistics (:class:`MessageStats`): the summary messages_summary.json is made of
    (:func:`protocol.log.summarize_csv`, the same code over the same rows), reshaped into flat numbers; the
    latency percentiles are those of :mod:`protocol.latency` (log-spaced bins, within 1.2 % of the exact order
    statistic). Reads, writes nothing."""
    from deploy.errors import UsageError
    from deploy.rundir import RunDir
    from protocol.log import summarize_csv

    rd = RunDir.open(run_dir)
    csv_path = rd.path / "messages.csv"
    if not csv_path.is_file():
        raise UsageError(f"run dir {rd.path}: no messages.csv (a run with run.log_messages: false logs none)")
    try:
        summary = summarize_csv(csv_path, run_id=rd.path.name)
    except (KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"{csv_path}: not a message log ({type(exc).__name__}: {exc}); expected the columns of "
                         f"protocol.log.COLUMNS") from None
    nodes = (_json(rd.path / "messages_summary.json") or {}).get("nodes")
    node_of = nodes if isinstance(nodes, dict) else {}
    per_kind = {kind: _flat(node) for kind, node in summary["per_kind"].items()}
    per_link: dict[tuple[int, int], dict[str, Any]] = {}
    for link, kinds in summary["per_link"].items():
        s, r = (int(x) for x in link.split("->"))
        together: dict[str, Any] = {}
        for node in kinds.values():
            for event, cb in node.items():
                if event != "latency_ns":
                    acc = together.setdefault(event, {"count": 0, "bytes": 0})
                    acc["count"] += cb["count"]
                    acc["bytes"] += cb["bytes"]
        together["latency_ns"] = _merged_latency(list(kinds.values()))
        ns, nr = node_of.get(str(s)), node_of.get(str(r))
        per_link[(s, r)] = {**_flat(together), "cross_node": None if ns is None or nr is None else ns != nr,
                            "kinds": {kind: _flat(node) for kind, node in kinds.items()}}
    totals = _flat({**summary["totals"], "latency_ns": _merged_latency(list(summary["per_kind"].values()))})
    return MessageStats(per_kind, per_link, totals, summary)
