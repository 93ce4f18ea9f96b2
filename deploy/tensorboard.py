"""Optional TensorBoard logging of a training run (``run.tensorboard: true``, the ``tensorboard`` extra) for
``bsemu train``, ``bsemu zo`` and :func:`deploy.api.train`: the scalars of metrics.csv as TensorBoard event
files in the run folder's ``tb/`` (``tensorboard --logdir RUN_DIR/tb``), one step per metrics row, the step
being the row's ``iteration``, one tag per numeric column.

metrics.csv stays the record and the events are made from it. A resumed run (``--resume``, a restart after a
dead actor) has metrics.csv cut back to its checkpoint (:meth:`deploy.runs.Run.open_logs`); :func:`tee` then
rewrites ``tb/`` from the rows kept (each with the wall time of its old event, where one is found) before the
run appends, so that no step is written twice and the events always hold exactly metrics.csv's rows, whatever
reads them (no reliance on a reader purging orphaned steps). Values are TensorBoard scalars (``simple_value``,
float32).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from coordinator.config import ConfigError
from deploy.rundir import RunDirError

TB_DIR = "tb"
STEP_KEY = "iteration"
EVENTS_GLOB = "events.out.tfevents.*"
MISSING = "run.tensorboard needs the tensorboard extra: pip install -e '.[tensorboard]'"

C = TypeVar("C")


def available() -> bool:
    """Whether the tensorboard package (what this module writes with) can be imported."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError:
        return False
    return True


def require(cfg: Any) -> None:
    """:class:`ConfigError` (one line, exit 2 at the edge) when ``cfg.run.tensorboard`` is on and the package
    is missing."""
    if getattr(cfg.run, "tensorboard", False) and not available():
        raise ConfigError(MISSING)


def checked(check: Callable[[C], None]) -> Callable[[C], None]:
    """``check`` followed by :func:`require`: the config check of a command that trains into a run folder."""

    def both(cfg: C) -> None:
        check(cfg)
        require(cfg)

    return both


def tee(writer: Any, cfg: Any, run_dir: str | Path) -> Any:
    """The run's metrics writer, writing to ``run_dir/tb`` too when ``cfg.run.tensorboard`` is on (after
    rewriting it from the rows metrics.csv holds now); else ``writer`` itself."""
    if not getattr(cfg.run, "tensorboard", False):
        return writer
    return TensorBoardMetrics(writer, Path(run_dir) / TB_DIR)


def _number(v: Any) -> float | None:
    """A metrics cell as the float a CSV reader gets (None: empty or not a number)."""
    if v is None or isinstance(v, bool) or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _read_metrics(path: Path) -> tuple[list[str] | None, list[dict[str, str]]]:
    """(header, rows) of metrics.csv (None, []) when it is absent or empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return None, []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []) or None, rows


def _old_wall_times(files: Iterable[Path]) -> dict[int, float]:
    """step -> wall time of the scalar events in ``files`` (a damaged file gives what it held before)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    out: dict[int, float] = {}
    for f in files:
        try:
            for event in LegacyEventFileLoader(str(f)).Load():
                if event.HasField("summary"):
                    out.setdefault(int(event.step), float(event.wall_time))
        except Exception:  # noqa: BLE001 - a file cut by a crash: the wall times read so far stand
            continue
    return out


class TensorBoardMetrics:
    """A metrics writer (:class:`deploy.rundir.CsvWriter`: ``write``, ``rows``, ``close``) whose rows also go
    to TensorBoard event files in ``logdir``; built by :func:`tee`."""

    def __init__(self, writer: Any, logdir: Path) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if logdir.exists() and not logdir.is_dir():
            raise RunDirError(f"run dir {logdir.parent}: {logdir.name} is not a folder (TensorBoard's event files "
                              f"go there, run.tensorboard); move it away")
        self._csv = writer
        self._fields, kept = _read_metrics(Path(writer.path))
        old = sorted(logdir.glob(EVENTS_GLOB)) if logdir.is_dir() else []
        walls = _old_wall_times(old) if old else {}
        for f in old:                     # remade below from metrics.csv: no step is ever written twice
            f.unlink()
        self._events = EventFileWriter(str(logdir), max_queue_size=64, flush_secs=10)
        self.logdir = logdir
        for row in kept:
            step = _number(row.get(STEP_KEY))
            self._add(row, walls.get(int(step)) if step is not None else None)
        self._events.flush()
        self._closed = False

    @property
    def rows(self) -> int:
        """Data rows in metrics.csv (what a checkpoint records)."""
        return self._csv.rows

    def __getattr__(self, name: str) -> Any:   # anything else of the CSV writer (path, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._csv, name)

    def _add(self, row: Mapping[str, Any], wall_time: float | None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        step = _number(row.get(STEP_KEY))
        if step is None or not math.isfinite(step):
            return
        values = [Summary.Value(tag=k, simple_value=x) for k in (self._fields or ()) if k != STEP_KEY
                  for x in (_number(row.get(k)),) if x is not None]
        if values:
            self._events.add_event(Event(wall_time=time.time() if wall_time is None else wall_time, step=int(step),
                                         summary=Summary(value=values)))

    def write(self, row: Mapping[str, Any]) -> None:
        """One metrics row into metrics.csv, then its scalars (the columns metrics.csv holds) as one step."""
        self._csv.write(row)
        if self._fields is None:          # the first row of the file fixes the columns, as in the CSV writer
            self._fields = list(row.keys())
        self._add(row, None)
        self._events.flush()

    def close(self) -> None:
        self._csv.close()
        if not self._closed:
            self._closed = True
            self._events.close()
