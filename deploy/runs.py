"""Starting and resuming a training run, the same way for both papers (``bsemu train``, ``bsemu zo``).

A fresh run validates its config, then creates its folder. A resumed run reads ``config.yaml`` (plus
``--set`` overrides) and its last checkpoint, then cuts ``metrics.csv`` and ``messages.csv`` back to what
they held when that checkpoint was written (the rows after it are about to be redone), so that a crash
at any point followed by ``--resume`` leaves one row per iteration and per message.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coordinator.messages import RunMessages
from deploy.config import (
    ConfigError,
    apply_overrides,
    changed_keys,
    config_to_dict,
    from_dict,
    load_config,
    missing_keys,
)
from deploy.errors import UsageError
from deploy.rundir import (
    CsvWriter,
    RunDir,
    RunDirError,
    atomic_write_text,
    check_messages_csv,
    check_metrics_csv,
    check_output_dir,
    check_output_files,
    cut_csv,
    default_run_dir,
)
from protocol.log import CALL, MEMORY, SENT, read_rows

C = TypeVar("C")
CheckCheckpoint = Callable[[Any, dict[str, Any], Path], None]
"""``(cfg, checkpoint, file)``: raises :class:`RunDirError` when the checkpoint does not fit the config."""


@dataclass
class Run:
    """A run folder being trained into: its config, folder, and the checkpoint it resumes from (if any)."""

    cfg: Any
    rd: RunDir
    name: str
    ck: dict[str, Any] | None
    sequences: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """(via, sender, receiver) -> next sequence number of the messages a resumed run kept (from messages.csv's
    sent rows): where the per-link counters of an uninterrupted run would be."""

    @property
    def start(self) -> int:
        """The iteration training starts (or resumes) at."""
        return int(self.ck["iteration"]) if self.ck is not None else 0

    def open_logs(self, metrics_kept: Callable[[int], bool], messages: bool = True) -> tuple[CsvWriter, RunMessages]:
        """The metrics writer and the message log, cut back to the checkpoint. A checkpoint records how many
        rows each held (``rows``); one written before it did keeps the metrics rows whose iteration passes
        ``metrics_kept`` and the messages of earlier iterations. ``messages=False``: no messages.csv
        (aggregates only)."""
        path = self.rd.path
        rows = (self.ck or {}).get("rows")
        if not messages:
            cut_csv(path / "metrics.csv", None if rows is None else int(rows["metrics"]))
            log = RunMessages(None, path.name)
        elif self.ck is None:
            cut_csv(path / "metrics.csv", 0)
            log = RunMessages(path / "messages.csv", path.name)
        elif rows is not None:
            cut_csv(path / "metrics.csv", int(rows["metrics"]))
            self.sequences = next_sequences(path / "messages.csv", int(rows["messages"]))
            log = RunMessages.reopen(path / "messages.csv", path.name, rows=int(rows["messages"]))
        else:
            cut_csv(path / "metrics.csv", keep=lambda r: metrics_kept(int(float(r["iteration"]))))
            self.sequences = next_sequences(path / "messages.csv", None, before_iteration=self.start)
            log = RunMessages.reopen(path / "messages.csv", path.name, before_iteration=self.start)
        # messages carried by calls number on per link where the run left off (RunMessages' counters)
        log.next_seq.update({(s, r): n for (via, s, r), n in self.sequences.items() if via == CALL})
        return self.rd.metrics(), log

    def continue_ring(self, backend: Any) -> None:
        """An in-process round-robin ring (``backend.next_seq``, per-link counters of its token hops) resumes its
        sequence numbers where the checkpoint left them, as an uninterrupted run would have them. (Sockets of a
        ray backend are new nodes, whose links start over at 0: a protocol rule.)"""
        seqs = getattr(backend, "next_seq", None)
        if isinstance(seqs, dict):
            seqs.update({(s, r): n for (via, s, r), n in self.sequences.items() if via == MEMORY})

    def checkpoint(self, state: dict[str, Any], iteration: int, writer: CsvWriter, log: RunMessages) -> None:
        """Write the log out, then the checkpoint with the rows both files hold now."""
        log.flush()
        self.rd.save_checkpoint({**state, "rows": {"metrics": writer.rows, "messages": log.rows_logged}}, iteration)


def start_run(cfg_type: type[C], config: Path | None, overrides: Sequence[str], resume: Path | None,
              run_dir: Path | None, check: Callable[[C], None], default_name: str | None = None,
              resume_keys: Collection[str] = (), check_checkpoint: CheckCheckpoint | None = None,
              messages: Callable[[C], bool] = lambda cfg: True) -> Run:
    """Open ``resume`` (its config plus ``overrides``) or create a run folder for ``config``; ``check``
    raises :class:`ConfigError` on combinations that cannot run. Nothing is written before the config,
    the overrides and the whole run folder have been read and checked: a resumed folder's config.yaml must
    hold every key, ``overrides`` may change only ``resume_keys``, meta.json must be a JSON object, the last
    checkpoint must load (weights only) and pass ``check_checkpoint(cfg, ck, file)``, and metrics.csv /
    messages.csv (``messages(cfg)``: whether the run logs messages) must hold the rows it records."""
    if resume is not None:
        if config is not None:
            raise UsageError("--config with --resume: a resumed run keeps the config in RUN_DIR/config.yaml "
                             "(change what a resume allows with --set); give one of them")
        if run_dir is not None:
            raise UsageError("--run-dir with --resume: the run continues in the --resume folder; give one of them")
        return _resume(cfg_type, overrides, resume, check, resume_keys, check_checkpoint, messages)
    if config is None and default_name is None:
        raise UsageError("--config FILE or --resume RUN_DIR is required")
    cfg = load_config(cfg_type, config, overrides)
    check(cfg)
    name = config.stem if config is not None else str(default_name)
    rd = RunDir.create(run_dir or default_run_dir(name), config_to_dict(cfg), cfg.run.seed, name,
                       keep=cfg.run.keep_checkpoints)
    return Run(cfg, rd, name, None)


# what a training run writes into its folder (checked to be files or absent before a resume writes anything)
RUN_FILES = ("config.yaml", "meta.json", "metrics.csv", "messages.csv", "messages_summary.json", "messages_summary.md",
             "curves.png", "summary.json", "summary.md")


def _resume(cfg_type: type[C], overrides: Sequence[str], resume: Path, check: Callable[[C], None],
            resume_keys: Collection[str], check_checkpoint: CheckCheckpoint | None,
            messages: Callable[[C], bool]) -> Run:
    rd = RunDir.open(resume)
    cfg_file = rd.path / "config.yaml"
    data = rd.config_dict()
    old = read_run_config(rd, cfg_type, check, data)
    cfg = from_dict(cfg_type, apply_overrides(data, overrides))
    check(cfg)
    frozen = [(k, a, b) for k, a, b in changed_keys(old, cfg) if k not in resume_keys]
    if frozen:
        k, a, b = frozen[0]
        raise UsageError(f"--set {k}={_show(b)}: cannot change on --resume (the run was trained with "
                         f"{k}={_show(a)}; start a new run for that); a resume may change {', '.join(resume_keys)}")
    meta = rd.meta()
    if "seed" in meta and meta["seed"] != cfg.run.seed:
        raise RunDirError(f"run meta {rd.path / 'meta.json'}: seed {meta['seed']} differs from run.seed "
                          f"{cfg.run.seed} in config.yaml (damaged folder)")
    ck = rd.load_latest_checkpoint()
    if ck is not None:
        f = rd.latest_checkpoint_file()
        if check_checkpoint is not None:
            check_checkpoint(cfg, ck, f)
        if cfg.run.iterations < int(ck["iteration"]):
            raise UsageError(f"run.iterations={cfg.run.iterations}: the run is at iteration {ck['iteration']} "
                             f"({f.name}); expected run.iterations >= {ck['iteration']}")
    rows = (ck or {}).get("rows")
    logs_messages = messages(cfg)
    if ck is None:
        check_metrics_csv(rd.path / "metrics.csv", 0 if logs_messages else None)
        if logs_messages:
            check_messages_csv(rd.path / "messages.csv", 0)
    else:
        check_metrics_csv(rd.path / "metrics.csv", None if rows is None else int(rows["metrics"]))
        if logs_messages:
            check_messages_csv(rd.path / "messages.csv", None if rows is None else int(rows["messages"]))
    check_output_dir(rd.path, "run dir")
    check_output_files(rd.path, RUN_FILES, "run dir")
    # everything read and checked: only now is the folder changed
    rd.keep = cfg.run.keep_checkpoints
    atomic_write_text(cfg_file, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    rd.update_meta(resumed_at=0 if ck is None else int(ck["iteration"]))
    return Run(cfg, rd, str(meta.get("config_name", rd.path.name)), ck)


ADDED_KEYS = frozenset({"links.*", "links.loss", "run.placement", "run.secure", "run.max_restarts",
                        "run.tensorboard", "run.bs_per_actor", "trpo.rr_message", "trpo.credit",
                        "policy.power_levels", "policy.init"})
"""Keys added after run folders were first written; their defaults are what older runs did (no training
loss, Ray's own placement on one machine, no CURVE on one machine), so a config.yaml without them is not
damaged but older."""


def read_run_config(rd: RunDir, cfg_type: type[C], check: Callable[[C], None],
                    data: dict[str, Any] | None = None) -> C:
    """A run folder's config.yaml as ``cfg_type``: every key present (it is written resolved: a missing key
    means a damaged file, except the :data:`ADDED_KEYS` of older folders), every value valid, ``check``
    passed. Errors name the file."""
    cfg_file = rd.path / "config.yaml"
    data = rd.config_dict() if data is None else data
    try:
        cfg = from_dict(cfg_type, data)
        missing = [k for k in missing_keys(cfg_type, data) if k not in ADDED_KEYS]
        if missing:
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            raise RunDirError(f"run config {cfg_file}: key(s) {', '.join(missing[:4])}{more} missing (a run "
                              "folder's config.yaml is written resolved, every key present: it is damaged, or older "
                              "than these keys; add them with their values to use it)")
        check(cfg)
    except ConfigError as exc:
        raise ConfigError(f"run config {cfg_file}: {exc}") from None
    return cfg


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        v = list(v)
    r = " ".join(repr(v).split())
    return r if len(r) <= 60 else r[:57] + "..."


# ---------------------------------------------------------------------------------------------- a dead actor
def dead_actor(exc: BaseException, backend: Any) -> dict[str, str] | None:
    """If ``exc`` says that a Ray actor of the run died (:class:`ray.exceptions.RayActorError`: its process was
    killed, crashed or lost with its node), which one: ``backend.dead_actor(exc)`` (``name``, ``node``, ``ip``,
    ``pid``), or what the error says when the backend cannot tell. None for any other exception."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not isinstance(exc, ray.exceptions.RayActorError):
        return None
    who = backend.dead_actor(exc) if backend is not None and hasattr(backend, "dead_actor") else None
    if who is None:
        text = str(exc)
        cls = text.split("class_name: ", 1)[1].split()[0] if "class_name: " in text else "Ray"
        who = {"name": f"a {cls} actor of the run", "node": "",
               "ip": text.split("ip: ", 1)[1].split()[0] if "ip: " in text else "",
               "pid": text.split("pid: ", 1)[1].split()[0] if "pid: " in text else ""}
    return who


def restart_after_death(command: str, rd: RunDir, who: dict[str, str], max_restarts: int, done: int) -> bool:
    """An actor of the run died (``who``, from :func:`dead_actor`). With a restart left (``done`` <
    ``max_restarts``): log it in meta.json (``restarts``) and in one line on stderr, and return True (the caller
    rebuilds the actors and resumes from the last checkpoint, as ``--resume`` does). Otherwise print the ONE line
    that ends the run (who died, where, the last checkpoint and the command that continues it) and return False
    (exit code 1)."""
    import sys
    import time

    where = ", ".join(x for x in (f"node {who['node'][:8]}" if who.get("node") else "", who.get("ip", ""),
                                  f"pid {who['pid']}" if who.get("pid") else "") if x) or "node unknown"
    f = rd.latest_checkpoint_file()
    it = int(f.stem.split("-", 1)[1]) if f is not None else 0
    ck = f"last checkpoint: iteration {it} ({f})" if f is not None else "last checkpoint: none (iteration 0)"
    if done < max_restarts:
        meta = rd.meta()
        log = list(meta.get("restarts", [])) + [{
            "restart": done + 1, "actor": who["name"], "node": who.get("node", ""), "ip": who.get("ip", ""),
            "pid": who.get("pid", ""), "from_iteration": it, "checkpoint": f.name if f is not None else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
        rd.update_meta(restarts=log)
        print(f"bsemu {command}: {who['name']} died ({where}); restart {done + 1} of {max_restarts} "
              f"(run.max_restarts): new actors, continuing from the {ck}", file=sys.stderr)
        return True
    after = f" after {done} restart{'s' if done != 1 else ''}" if done else ""
    print(f"bsemu {command}: error: {who['name']} died ({where}){after}; {ck}; continue with: "
          f"bsemu {command} --resume {rd.path}", file=sys.stderr)
    return False


def record_dropped(command: str, rd: RunDir, backend: Any) -> dict[str, Any]:
    """The stray frames the run's nodes counted and dropped (``backend.dropped_frames()``, by node and class:
    the protocol's rejections and the receiving loops' WrongIteration / UnexpectedKind / UnexpectedSender /
    MalformedPayload / Duplicate) into meta.json (``frames_dropped``: total and the nodes that dropped any), with
    one line on stderr when there were some. Returns what it recorded (empty without such a backend)."""
    import sys

    if backend is None or not hasattr(backend, "dropped_frames"):
        return {}
    by_node = {k: v for k, v in backend.dropped_frames().items() if v}
    total = sum(sum(v.values()) for v in by_node.values())
    out = {"total": total, "by_node": by_node}
    rd.update_meta(frames_dropped=out)
    if total:
        parts = "; ".join(f"{k}: " + ", ".join(f"{c} {n}" for c, n in sorted(v.items())) for k, v in by_node.items())
        print(f"bsemu {command}: {total} stray frame(s) counted and dropped ({parts})", file=sys.stderr)
    return out


def next_sequences(path: Path, rows: int | None, before_iteration: int | None = None
                   ) -> dict[tuple[int, int, int], int]:
    """``(via, sender, receiver) -> 1 + the highest sequence number sent`` over the rows of a run's messages.csv
    that a resume keeps (the first ``rows``, or those of iterations before ``before_iteration``)."""
    out: dict[tuple[int, int, int], int] = {}
    if not path.is_file():
        return out
    for r in read_rows(path, limit=rows):
        if r[0] == SENT and (before_iteration is None or r[4] < before_iteration):
            key = (r[-1], r[2], r[3])
            out[key] = max(out.get(key, 0), r[5] + 1)
    return out

