"""Starting and resuming a training run, the same way for both papers (``bsemu train``, ``bsemu zo``).

A fresh run validates its config, then creates its folder. A resumed run reads ``config.yaml`` (plus
``--set`` overrides) and its last checkpoint, then cuts ``metrics.csv`` and ``messages.csv`` back to what
they held when that checkpoint was written (the rows after it are about to be redone), so that a crash
at any point followed by ``--resume`` leaves one row per iteration and per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coordinator.messages import RunMessages
from deploy.config import ConfigError, config_to_dict, load_config
from deploy.errors import UsageError
from deploy.rundir import CsvWriter, RunDir, cut_csv, default_run_dir

C = TypeVar("C")


@dataclass
class Run:
    """A run folder being trained into: its config, folder, and the checkpoint it resumes from (if any)."""

    cfg: Any
    rd: RunDir
    name: str
    ck: dict[str, Any] | None

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
            log = RunMessages.reopen(path / "messages.csv", path.name, rows=int(rows["messages"]))
        else:
            cut_csv(path / "metrics.csv", keep=lambda r: metrics_kept(int(float(r["iteration"]))))
            log = RunMessages.reopen(path / "messages.csv", path.name, before_iteration=self.start)
        return self.rd.metrics(), log

    def checkpoint(self, state: dict[str, Any], iteration: int, writer: CsvWriter, log: RunMessages) -> None:
        """Write the log out, then the checkpoint with the rows both files hold now."""
        log.flush()
        self.rd.save_checkpoint({**state, "rows": {"metrics": writer.rows, "messages": log.rows_logged}}, iteration)


def start_run(cfg_type: type[C], config: Path | None, overrides: Sequence[str], resume: Path | None,
              run_dir: Path | None, check: Callable[[C], None], default_name: str | None = None) -> Run:
    """Open ``resume`` (its config plus ``overrides``) or create a run folder for ``config``; ``check``
    raises :class:`ConfigError` on combinations that cannot run. Nothing is written before the config,
    the overrides and the checkpoint have been read and checked."""
    if resume is not None:
        rd = RunDir.open(resume)
        try:
            cfg = load_config(cfg_type, rd.path / "config.yaml", overrides)
            check(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{rd.path}/config.yaml with --set: {exc}") from None
        ck = rd.load_latest_checkpoint()
        rd.keep = cfg.run.keep_checkpoints
        (rd.path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        rd.update_meta(resumed_at=0 if ck is None else int(ck["iteration"]))
        return Run(cfg, rd, rd.meta().get("config_name", rd.path.name), ck)
    if config is None and default_name is None:
        raise UsageError("--config FILE or --resume RUN_DIR is required")
    cfg = load_config(cfg_type, config, overrides)
    check(cfg)
    name = config.stem if config is not None else str(default_name)
    rd = RunDir.create(run_dir or default_run_dir(name), config_to_dict(cfg), cfg.run.seed, name,
                       keep=cfg.run.keep_checkpoints)
    return Run(cfg, rd, name, None)
