"""run.tensorboard (deploy/tensorboard.py): `bsemu train` and `bsemu zo` write metrics.csv's scalars as
TensorBoard event files into RUN_DIR/tb, read back with TensorBoard's own EventAccumulator equal to metrics.csv
value by value (float32, TensorBoard's scalar type) at step = the row's iteration; a resume from an earlier
checkpoint (metrics.csv cut back) leaves every step exactly once, the kept rows with their first wall times;
without the package the config is refused in one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coordinator.config import ConfigError
from deploy import api, cli
from deploy import tensorboard as tb
from tests import ROOT

DEMO = ROOT / "deploy" / "configs" / "demo.yaml"
TRAIN = ["train", "--config", str(DEMO), "--no-progress", "--set", "trpo.episodes=32", "--set", "policy.hidden=8",
         "--set", "trpo.cg_iters=3", "--set", "run.eval_slots=0", "--set", "run.backend=inproc",
         "--set", "run.checkpoint_every=2", "--set", "run.iterations=4"]
ZO = ["zo", "--no-progress", "--set", "algo.b1=5", "--set", "algo.b2=5", "--set", "run.eval_sequences=2",
      "--set", "run.eval_slots=4", "--set", "run.eval_every=2", "--set", "run.checkpoint_every=2",
      "--set", "run.iterations=6"]
needs_tb = pytest.mark.skipif(not tb.available(), reason="the tensorboard extra is not installed")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()       # the commands set one torch thread for the process
    yield
    torch.set_num_threads(n)


def events(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, value, wall time)] of every scalar event under RUN/tb, duplicates kept (no purging)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_events_equal_metrics(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """One event file; one tag per numeric column but the iteration; each tag's steps are the rows' iterations,
    each once, and its values the column's (as float32)."""
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    ev = events(run)
    assert set(ev) == {k for k in rows[0] if k != "iteration"}
    steps = [int(r["iteration"]) for r in rows]
    for tag, got in ev.items():
        assert [s for s, _, _ in got] == steps, tag                        # in order, no step twice
        np.testing.assert_array_equal(np.array([v for _, v, _ in got], dtype=np.float32),
                                      np.array([float(r[tag]) for r in rows], dtype=np.float32), err_msg=tag)
    return ev


def main(*args: str) -> int:
    return cli.main(list(args))


@needs_tb
def test_train_events_equal_metrics_and_a_resume_writes_no_step_twice(tmp_path):
    run = tmp_path / "run"
    assert main(*TRAIN, "--run-dir", str(run), "--set", "run.tensorboard=true") == 0
    before = assert_events_equal_metrics(run)
    assert [s for s, _, _ in before["reward_mbps"]] == [0, 1, 2, 3]
    # as if the run had died after iteration 3's row but before its checkpoint: back to iteration 2
    (run / "checkpoints" / "ckpt-00000004.pt").unlink()
    assert main("train", "--resume", str(run), "--no-progress", "--set", "run.iterations=6") == 0
    after = assert_events_equal_metrics(run)
    assert [s for s, _, _ in after["reward_mbps"]] == [0, 1, 2, 3, 4, 5]
    assert after["kl"][:2] == before["kl"][:2]                          # kept rows: value and first wall time
    assert after["kl"][2][2] > before["kl"][3][2]                       # redone rows: written anew


@needs_tb
def test_zo_events_equal_metrics_and_a_resume_writes_no_step_twice(tmp_path):
    run = tmp_path / "zo"
    assert main(*ZO, "--run-dir", str(run), "--set", "run.tensorboard=true") == 0
    assert [s for s, _, _ in assert_events_equal_metrics(run)["sum_rate"]] == [2, 4, 6]
    (run / "checkpoints" / "ckpt-00000006.pt").unlink()
    assert main("zo", "--resume", str(run), "--no-progress", "--set", "run.iterations=8") == 0
    assert [s for s, _, _ in assert_events_equal_metrics(run)["sum_rate"]] == [2, 4, 6, 8]


@needs_tb
def test_tensorboard_can_be_turned_on_at_resume_and_the_kept_rows_are_written(tmp_path):
    run = tmp_path / "zo"
    assert main(*ZO, "--run-dir", str(run), "--set", "run.iterations=4") == 0
    assert not (run / "tb").exists()
    assert main("zo", "--resume", str(run), "--no-progress", "--set", "run.iterations=6",
                "--set", "run.tensorboard=true") == 0
    assert [s for s, _, _ in assert_events_equal_metrics(run)["sum_rate"]] == [2, 4, 6]


@needs_tb
def test_api_train_writes_the_events_too(tmp_path):
    cfg = api.load_config("demo", **{"trpo.episodes": 32, "policy.hidden": 8, "trpo.cg_iters": 3, "run.eval_slots": 0,
                                     "run.iterations": 2, "run.backend": "inproc", "run.tensorboard": True})
    run_dir, _ = api.train(cfg, run_dir=tmp_path / "api")
    assert [s for s, _, _ in assert_events_equal_metrics(run_dir)["reward"]] == [0, 1]


def test_without_the_package_the_config_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)     # `import tensorboard...` raises ImportError now
    assert not tb.available()
    for args in (TRAIN, ZO):
        run = tmp_path / args[0]
        assert main(*args, "--run-dir", str(run), "--set", "run.tensorboard=true") == 2
        err = capsys.readouterr().err.strip()
        assert err == f"bsemu {args[0]}: error: {tb.MISSING}"
        assert not run.exists()
    with pytest.raises(ConfigError, match=r"^run\.tensorboard needs the tensorboard extra: pip install -e "
                                          r"'\.\[tensorboard\]'$"):
        api.train(api.load_config("demo", run__tensorboard=True, run__backend="inproc"), run_dir=tmp_path / "api")
    assert not (tmp_path / "api").exists()
    # off (the default), nothing needs it: a run trains without the package
    assert main(*TRAIN, "--run-dir", str(tmp_path / "off"), "--set", "run.iterations=1") == 0
    assert not (tmp_path / "off" / "tb").exists()
