"""`bsemu train` / `bsemu evaluate` through a subprocess: demo with a tiny budget, resume, bad configs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deploy" / "configs" / "demo.yaml"
TINY = ["--set", "trpo.episodes=32", "--set", "policy.hidden=8", "--set", "trpo.cg_iters=3",
        "--set", "run.eval_slots=20", "--set", "run.checkpoint_every=1", "--set", "run.backend=inproc",
        "--set", "run.eval_methods=[max_power, wmmse]"]


def bsemu(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def rows(f: Path) -> list[dict]:
    with f.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_demo_resume_and_evaluate(tmp_path):
    run = tmp_path / "run"
    r = bsemu("train", "--config", str(DEMO), "--run-dir", str(run), "--no-progress", *TINY,
              "--set", "run.iterations=2")
    assert r.returncode == 0, r.stderr
    for name in ("config.yaml", "meta.json", "metrics.csv", "messages.csv", "messages_summary.json",
                 "messages_summary.md", "curves.png", "eval/summary.json", "eval/summary.md", "eval/bars.png"):
        assert (run / name).is_file(), name
    assert [int(x["iteration"]) for x in rows(run / "metrics.csv")] == [0, 1]
    summ = json.loads((run / "eval" / "summary.json").read_text())
    assert {"trpo_partial", "max_power", "wmmse"} <= set(summ["methods"])
    assert json.loads((run / "meta.json").read_text())["seed"] == 0
    # resume: extend to 4 iterations, metrics appended
    r = bsemu("train", "--resume", str(run), "--no-progress", "--set", "run.iterations=4")
    assert r.returncode == 0, r.stderr
    assert [int(x["iteration"]) for x in rows(run / "metrics.csv")] == [0, 1, 2, 3]
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
