"""`bsemu train` / `bsemu evaluate` through a subprocess: demo with a tiny budget, resume, bad configs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tests import ROOT, bsemu, csv_rows

DEMO = ROOT / "deploy" / "configs" / "demo.yaml"
TINY = ["--set", "trpo.episodes=32", "--set", "policy.hidden=8", "--set", "trpo.cg_iters=3",
        "--set", "run.eval_slots=20", "--set", "run.checkpoint_every=1", "--set", "run.backend=inproc",
        "--set", "run.eval_methods=[max_power, wmmse]"]



rows = csv_rows


def assert_message_log(run: Path, iterations: int) -> None:
    """messages.csv holds each iteration once: demo is round-robin on 3 cells, B*B - 1 = 8 hops and the
    final token per iteration, each sent once and received once; the summary files agree with the CSV."""
    from protocol import summarize_csv

    sent = Counter((int(r["iteration"]), r["kind"]) for r in rows(run / "messages.csv") if r["event"] == "sent")
    recv = Counter((int(r["iteration"]), r["kind"]) for r in rows(run / "messages.csv") if r["event"] == "received")
    assert sent == recv
    assert {it for it, _ in sent} == set(range(iterations))
    assert all(sent[(it, "POWER_VECTOR")] == 9 for it in range(iterations))
    summary = json.loads((run / "messages_summary.json").read_text())
    assert summary["per_kind"] == summarize_csv(run / "messages.csv")["per_kind"]
    assert "POWER_VECTOR" in (run / "messages_summary.md").read_text()
    metrics = rows(run / "metrics.csv")
    assert [int(m["msgs_POWER_VECTOR"]) for m in metrics] == [9] * iterations
    assert [int(m["msgs_GRADIENT"]) for m in metrics] == [sent[(it, "GRADIENT")] for it in range(iterations)]


def test_train_demo_resume_and_evaluate(tmp_path):
    run = tmp_path / "run"
    r = bsemu("train", "--config", str(DEMO), "--run-dir", str(run), "--no-progress", *TINY,
              "--set", "run.iterations=3", "--set", "run.checkpoint_every=2")
    assert r.returncode == 0, r.stderr
    for name in ("config.yaml", "meta.json", "metrics.csv", "messages.csv", "messages_summary.json",
                 "messages_summary.md", "curves.png", "eval/summary.json", "eval/summary.md", "eval/bars.png"):
        assert (run / name).is_file(), name
    assert [int(x["iteration"]) for x in rows(run / "metrics.csv")] == [0, 1, 2]
    assert_message_log(run, iterations=3)
    summ = json.loads((run / "eval" / "summary.json").read_text())
    assert {"trpo_partial", "max_power", "wmmse"} <= set(summ["methods"])
    assert json.loads((run / "meta.json").read_text())["seed"] == 0
    # as if the run had stopped after iteration 2 but before its checkpoint: resume from iteration 2
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert [c.name for c in ckpts[-2:]] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    ckpts[-1].unlink()
    # resume: extend to 4 iterations; rows of iteration 2 (after the checkpoint) are redone, not duplicated
    r = bsemu("train", "--resume", str(run), "--no-progress", "--set", "run.iterations=4")
    assert r.returncode == 0, r.stderr
    assert "resuming at iteration 2" in r.stderr
    assert [int(x["iteration"]) for x in rows(run / "metrics.csv")] == [0, 1, 2, 3]
    assert_message_log(run, iterations=4)
    # refuse to overwrite
    r = bsemu("train", "--config", str(DEMO), "--run-dir", str(run), *TINY)
    assert r.returncode == 2 and "not empty" in r.stderr
    # evaluate on new channels
    out = tmp_path / "ev"
    r = bsemu("evaluate", str(run), "--slots", "10", "--methods", "max_power", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert set(json.loads((out / "summary.json").read_text())["methods"]) == {"trpo_partial", "max_power"}


def test_bad_configs_exit_2_and_start_nothing(tmp_path):
    cases = [("trpo.dleta=0.1", "trpo.dleta"), ("trpo.delta=-1", "trpo.delta"),
             ("trpo.episodes=many", "trpo.episodes"), ("run.scheme=ring", "run.scheme")]
    for override, key in cases:
        run = tmp_path / key
        r = bsemu("train", "--config", str(DEMO), "--run-dir", str(run), "--set", override, timeout=60)
        assert r.returncode == 2, (override, r.stderr)
        assert key in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not run.exists()
