"""coordinator.messages: the run's message log reopened at a checkpoint."""

from __future__ import annotations

import numpy as np

from coordinator.messages import COORDINATOR, RunMessages
from protocol import Kind, summarize_csv


def counts_bytes(summary: dict) -> dict:
    """Per kind: (sent count, sent bytes, received count, received bytes)."""
    return {k: (v["sent"]["count"], v["sent"]["bytes"], v["received"]["count"], v["received"]["bytes"])
            for k, v in summary["per_kind"].items()}


def test_reopen_keeps_only_rows_before_the_checkpoint(tmp_path):
    """Reopened at a checkpoint (by its iteration, for checkpoints that did not record their rows), the log
    keeps the earlier rows in the file and in the summary, and goes on as if never interrupted."""
    path = tmp_path / "messages.csv"
    log = RunMessages(path, run_id="r")
    for it in range(4):
        log.carried(Kind.METRICS, 0, COORDINATOR, it, {"x": np.arange(it + 1.0)}, t_send_ns=10**12 + it)
    full = log.close()
    assert full["totals"]["sent"]["count"] == 4
    log = RunMessages.reopen(path, "r", before_iteration=2)
    kept = log.summary()
    log.carried(Kind.METRICS, 0, COORDINATOR, 2, {"x": np.arange(3.0)}, t_send_ns=10**12 + 2)
    after = log.close()
    assert set(kept["per_iteration"]) == {"0", "1"}
    assert set(after["per_iteration"]) == {"0", "1", "2"}
    assert after["per_iteration"]["2"] == full["per_iteration"]["2"]
    assert counts_bytes(summarize_csv(path)) == counts_bytes(after)
    fresh = RunMessages.reopen(tmp_path / "new" / "messages.csv", "r", rows=0)  # a new run: nothing to keep
    assert fresh.close()["totals"] == {}


def test_reopen_by_row_count_drops_a_cut_row(tmp_path):
    """Reopened by the row count a checkpoint recorded: exactly those rows stay, a row cut mid-write by a
    crash is gone, and the summary is the CSV's."""
    path = tmp_path / "messages.csv"
    log = RunMessages(path, run_id="r")
    for it in range(3):
        log.carried(Kind.METRICS, 0, COORDINATOR, it, {"x": np.arange(it + 1.0)}, t_send_ns=10**12 + it)
    log.flush()
    rows = log.rows_logged
    assert rows == 6                       # sent and received per carried message
    log.carried(Kind.METRICS, 0, COORDINATOR, 3, {"x": np.arange(4.0)}, t_send_ns=10**12 + 3)
    log.close()
    with path.open("a") as f:
        f.write("sent,METRICS,0,-2,4")       # a crash in the middle of a row
    log = RunMessages.reopen(path, "r", rows=rows)
    assert log.rows_logged == rows
    back = log.close()
    assert set(back["per_iteration"]) == {"0", "1", "2"}
    assert counts_bytes(summarize_csv(path)) == counts_bytes(back)
