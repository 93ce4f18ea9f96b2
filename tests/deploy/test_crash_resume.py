"""Crashes and resumes through the command line, compared with uninterrupted runs in logical time.

* ``bsemu train`` / ``bsemu zo`` SIGKILLed at seeded random points while they train, then ``--resume``d until
  done: exactly one metrics row per iteration and one messages.csv row per message, messages_summary.json equal to
  the CSV it sums up, and rows (less their timing columns), summaries and the final checkpoint's parameters equal
  to an uninterrupted run's.
* a BS (or link) actor's process SIGKILLed in the middle of a ray-backend run: with ``run.max_restarts=0`` the
  command ends with ONE line (which actor, its node, the last checkpoint, the command that continues), exit code
  1, no traceback, and that command finishes the run; with ``run.max_restarts=1`` the run restarts its actors
  from the last checkpoint by itself (logged in meta.json and on stderr) and ends as the uninterrupted run does.

The kill points are chosen by progress (metrics rows written) plus a seeded random delay: where the kill lands
varies from run to run, what is asserted does not.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import ROOT

TRAIN = ["--config", "deploy/configs/demo.yaml", "--no-progress", "--set", "trpo.episodes=32", "--set",
         "policy.hidden=8", "--set", "trpo.cg_iters=3", "--set", "trpo.value_epochs=2", "--set", "run.eval_slots=0",
         "--set", "run.checkpoint_every=1", "--set", "run.keep_checkpoints=2"]
ZO = ["--config", "deploy/configs/zo_demo.yaml", "--no-progress", "--set", "scenario.n_links=3", "--set",
      "algo.b1=5", "--set", "algo.b2=5", "--set", "run.eval_every=4", "--set", "run.checkpoint_every=4", "--set",
      "run.eval_sequences=2", "--set", "run.eval_slots=4"]
TIME_COLUMNS = {"t_send_ns", "t_recv_ns"}
UNTIMED = 600            # a bound on any one command (a hang fails the test instead of blocking it)


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.cli", *args]


def bsemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), cwd=ROOT, capture_output=True, text=True, timeout=UNTIMED)


def _rows(f: Path) -> list[dict[str, str]]:
    if not f.is_file():
        return []
    with f.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _complete_rows(f: Path) -> int:
    try:
        text = f.read_text()
    except OSError:
        return 0
    return max(0, text.count("\n") - 1)


def _wait_progress(p: subprocess.Popen, run: Path, rows: int) -> bool:
    """Until the run folder exists with ``rows`` metrics rows (True), or the command ended (False)."""
    t_end = time.monotonic() + UNTIMED
    while time.monotonic() < t_end:
        if p.poll() is not None:
            return False
        if (run / "meta.json").is_file() and _complete_rows(run / "metrics.csv") >= rows:
            return True
        time.sleep(0.02)
    raise AssertionError(f"no progress in {run} within {UNTIMED} s")


def crash_and_resume(first: list[str], resume: list[str], run: Path, kills: int, seed: int,
                     max_rows: int) -> int:
    """Run ``first``, SIGKILL it at a seeded random point, then ``resume`` and kill again, ``kills`` times in all;
    then resume until the command completes. Returns how many kills landed (the rest found it finished)."""
    rng = np.random.default_rng(seed)
    landed, cmd = 0, first
    for _ in range(kills):
        p = subprocess.Popen(_cmd(*cmd), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if _wait_progress(p, run, int(rng.integers(0, max_rows))):
                time.sleep(float(rng.uniform(0.0, 0.15)))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    landed += 1
            _, err = p.communicate(timeout=UNTIMED)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode in (0, -signal.SIGKILL), err
        cmd = resume
        if p.returncode == 0:
            break
    r = bsemu(*resume)
    assert r.returncode == 0, r.stderr
    return landed


def assert_same_run(run: Path, ref: Path, iterations: list[int], messages: bool = True) -> None:
    """One metrics row per iteration, equal to the reference's but for the seconds; with ``messages``, the same
    messages.csv rows but for the times, and messages_summary.json equal to the reference's and to its CSV."""
    from protocol import summarize_csv

    got, want = _rows(run / "metrics.csv"), _rows(ref / "metrics.csv")
    assert [int(r["iteration"]) for r in got] == iterations
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in got]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in want]
    if messages:
        got, want = _rows(run / "messages.csv"), _rows(ref / "messages.csv")
        assert len(got) == len(want) > 0
        assert [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in got] == \
            [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in want]
        summary = json.loads((run / "messages_summary.json").read_text())
        assert summary == json.loads((ref / "messages_summary.json").read_text())
        assert summary == summarize_csv(run / "messages.csv", run_id=summary.get("run_id", run.name))


def _last_checkpoint(run: Path) -> dict:
    from deploy.rundir import RunDir

    return RunDir.open(run).load_latest_checkpoint()


def assert_same_train_params(run: Path, ref: Path) -> None:
    import torch

    a, b = _last_checkpoint(run), _last_checkpoint(ref)
    assert a["iteration"] == b["iteration"]
    assert torch.equal(a["theta"], b["theta"]) and torch.equal(a["phi"], b["phi"])


def assert_same_zo_params(run: Path, ref: Path) -> None:
    a, b = _last_checkpoint(run)["trainer"], _last_checkpoint(ref)["trainer"]

    def thetas(st: dict) -> list[np.ndarray]:
        links = st["links"]
        agents = links if isinstance(links, list) else links["agents"]
        out = [x["theta"] if isinstance(x, dict) and "theta" in x else x["agent"]["theta"] for x in agents]
        return [x.numpy() if hasattr(x, "numpy") else np.asarray(x) for x in out]

    assert all(np.array_equal(x, y) for x, y in zip(thetas(a), thetas(b), strict=True))


# ---------------------------------------------------------------------------------------------- driver crashes
def _train_crash_case(tmp_path: Path, kills: int, seed: int, iterations: int) -> None:
    its = ["--set", f"run.iterations={iterations}", "--set", "run.backend=inproc"]
    ref, run = tmp_path / "ref" / "run", tmp_path / "crash" / "run"     # same folder name: the same run id
    r = bsemu("train", *TRAIN, *its, "--run-dir", str(ref))
    assert r.returncode == 0, r.stderr
    landed = crash_and_resume(["train", *TRAIN, *its, "--run-dir", str(run)],
                              ["train", "--resume", str(run), "--no-progress"], run, kills, seed,
                              max_rows=iterations // 2)
    assert landed >= 1
    assert_same_run(run, ref, list(range(iterations)))
    assert_same_train_params(run, ref)


def test_train_killed_once_then_resumed_equals_uninterrupted(tmp_path):
    _train_crash_case(tmp_path, kills=1, seed=7, iterations=5)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_train_killed_at_random_points_then_resumed_equals_uninterrupted(tmp_path, seed):
    _train_crash_case(tmp_path, kills=3, seed=seed, iterations=8)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_zo_killed_at_random_points_then_resumed_equals_uninterrupted(tmp_path, seed):
    iterations = 40
    its = ["--set", f"run.iterations={iterations}"]
    ref, run = tmp_path / "ref" / "run", tmp_path / "crash" / "run"
    r = bsemu("zo", *ZO, *its, "--run-dir", str(ref))
    assert r.returncode == 0, r.stderr
    landed = crash_and_resume(["zo", *ZO, *its, "--run-dir", str(run)], ["zo", "--resume", str(run), "--no-progress"],
                              run, kills=3, seed=seed, max_rows=iterations // 8)
    assert landed >= 1
    assert_same_run(run, ref, list(range(4, iterations + 1, 4)))
    assert_same_zo_params(run, ref)
    a, b = (json.loads((x / "summary.json").read_text()) for x in (run, ref))
    assert a == b


# ---------------------------------------------------------------------------------------------- actor deaths
def _kill_actor_midway(args: list[str], run: Path, actor: str, rows: int) -> subprocess.CompletedProcess:
    """Start ``bsemu ARGS``, wait for ``rows`` metrics rows, SIGKILL the process of ``actor`` (its pid from
    meta.json's placement), and let the command end."""
    p = subprocess.Popen(_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_progress(p, run, rows), p.communicate()[1]
        os.kill(int(json.loads((run / "meta.json").read_text())["placement"][actor]["pid"]), signal.SIGKILL)
        out, err = p.communicate(timeout=UNTIMED)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _train_ray(tmp_path: Path, restarts: int) -> tuple[Path, Path, subprocess.CompletedProcess]:
    iterations = 8
    its = ["--set", f"run.iterations={iterations}"]
    ref, run = tmp_path / "ref" / "run", tmp_path / "killed" / "run"
    r = bsemu("train", *TRAIN, *its, "--set", "run.backend=inproc", "--run-dir", str(ref))   # inproc == ray
    assert r.returncode == 0, r.stderr
    killed = _kill_actor_midway(["train", *TRAIN, *its, "--set", "run.backend=ray", "--set",
                                 f"run.max_restarts={restarts}", "--run-dir", str(run)], run, "bs1", rows=2)
    return ref, run, killed


@pytest.mark.ray
@pytest.mark.slow
def test_killed_bs_actor_ends_train_with_one_line_and_its_resume_command(tmp_path):
    ref, run, r = _train_ray(tmp_path, restarts=0)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "ActorDiedError" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("bsemu train:")][-1]
    assert line.startswith("bsemu train: error: BS 1 died (node ")
    meta = json.loads((run / "meta.json").read_text())
    bs1 = meta["placement"]["bs1"]
    assert bs1["node"][:8] in line and bs1["ip"] in line and f"pid {bs1['pid']}" in line
    assert "; last checkpoint: iteration " in line and str(run / "checkpoints") in line
    assert line.endswith(f"; continue with: bsemu train --resume {run}")
    r = bsemu(*line.split("continue with: bsemu ", 1)[1].split(), "--no-progress")      # the command it printed
    assert r.returncode == 0, r.stderr
    assert_same_run(run, ref, list(range(8)), messages=False)
    assert_same_train_params(run, ref)


@pytest.mark.ray
@pytest.mark.slow
def test_killed_bs_actor_is_restarted_with_max_restarts(tmp_path):
    ref, run, r = _train_ray(tmp_path, restarts=1)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "bsemu train: BS 1 died (" in r.stderr and "restart 1 of 1 (run.max_restarts)" in r.stderr
    meta = json.loads((run / "meta.json").read_text())
    assert [(x["restart"], x["actor"]) for x in meta["restarts"]] == [(1, "BS 1")]
    assert meta["restarts"][0]["pid"] and meta["restarts"][0]["from_iteration"] >= 2
    assert_same_run(run, ref, list(range(8)), messages=False)
    assert_same_train_params(run, ref)
    # the messages: one row per message of every iteration (the resumed sockets number from 0 again)
    rows = _rows(run / "messages.csv")
    sent = [(r["iteration"], r["kind"]) for r in rows if r["event"] == "sent" and r["kind"] == "POWER_VECTOR"]
    assert sorted(set(sent)) == sorted({(str(i), "POWER_VECTOR") for i in range(8)})
    assert len(sent) == 9 * 8


@pytest.mark.ray
@pytest.mark.slow
def test_killed_link_actor_is_restarted_or_named(tmp_path):
    iterations = 40
    its = ["--set", f"run.iterations={iterations}"]
    ref = tmp_path / "ref" / "run"
    r = bsemu("zo", *ZO, *its, "--run-dir", str(ref))                  # inproc == ray in logical time
    assert r.returncode == 0, r.stderr
    run = tmp_path / "once" / "run"
    r = _kill_actor_midway(["zo", *ZO, *its, "--set", "run.backend=ray", "--run-dir", str(run)], run, "link2", 2)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("bsemu zo:")][-1]
    assert line.startswith("bsemu zo: error: link 2 died (node ") and line.endswith(f"bsemu zo --resume {run}")
    r = bsemu("zo", "--resume", str(run), "--no-progress")                # the command it printed
    assert r.returncode == 0, r.stderr
    assert_same_run(run, ref, list(range(4, iterations + 1, 4)), messages=False)
    assert_same_zo_params(run, ref)
    run = tmp_path / "restarted" / "run"
    r = _kill_actor_midway(["zo", *ZO, *its, "--set", "run.backend=ray", "--set", "run.max_restarts=1",
                            "--run-dir", str(run)], run, "link2", 2)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "bsemu zo: link 2 died (" in r.stderr
    assert [x["actor"] for x in json.loads((run / "meta.json").read_text())["restarts"]] == ["link 2"]
    assert_same_run(run, ref, list(range(4, iterations + 1, 4)), messages=False)
    assert_same_zo_params(run, ref)
