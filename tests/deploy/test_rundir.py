"""deploy.rundir: run folders, metrics, checkpoints (tensors and plain types only), cutting CSVs back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deploy.plots import plot_curves
from deploy.rundir import RunDir, RunDirError, cut_csv, default_run_dir


def test_rundir_create_metrics_checkpoints(tmp_path):
    d = tmp_path / "run"
    rd = RunDir.create(d, {"a": 1}, seed=7, config_name="demo", keep=2)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["seed"] == 7 and "torch" in meta["versions"] and "start_time" in meta
    assert rd.config_dict() == {"a": 1}
    with pytest.raises(RunDirError):
        RunDir.create(d, {"a": 1}, seed=7, config_name="demo")
    w = rd.metrics()
    w.write({"iteration": 0, "reward": 1.0})
    w.write({"iteration": 1, "reward": 2.0})
    w.close()
    assert rd.load_latest_checkpoint() is None
    for it in (2, 4, 6):
        rd.save_checkpoint({"x": it}, it)
    assert len(list((d / "checkpoints").glob("ckpt-*.pt"))) == 2
    assert rd.load_latest_checkpoint()["x"] == 6
    rd2 = RunDir.open(d)
    w = rd2.metrics()
    w.write({"iteration": 2, "reward": 3.0})
    w.close()
    lines = (d / "metrics.csv").read_text().splitlines()
    assert lines == ["iteration,reward", "0,1.0", "1,2.0", "2,3.0"]
    out = plot_curves(d / "metrics.csv", ["reward"], d / "curves.png")
    assert out.stat().st_size > 0
    with pytest.raises(RunDirError):
        RunDir.open(tmp_path / "nothing")
    assert default_run_dir("demo").name.endswith("-demo")


def test_checkpoint_numpy_round_trip_and_weights_only(tmp_path):
    """numpy arrays inside a state come back as numpy arrays (stored as tensors); a checkpoint holding a
    pickled object is refused by the loader instead of running it."""
    rd = RunDir.create(tmp_path / "r", {}, seed=0, config_name="t")
    state = {"a": np.arange(5.0), "nested": [(np.int64(3), np.ones((2, 2), np.float32))],
             "rng": np.random.default_rng(1).bit_generator.state, "t": torch.ones(2)}
    rd.save_checkpoint(state, 1)
    back = rd.load_latest_checkpoint()
    assert isinstance(back["a"], np.ndarray) and np.array_equal(back["a"], state["a"])
    assert back["nested"][0][0] == 3 and back["nested"][0][1].dtype == np.float32
    assert back["rng"] == state["rng"] and torch.equal(back["t"], state["t"])
    torch.save({"bad": object()}, rd.path / "checkpoints" / "ckpt-00000002.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        rd.load_latest_checkpoint()


def test_cut_csv_rows_and_partial_line(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("iteration,x\n0,1\n1,2\n2,3\n3,4")        # the last row was cut mid-write
    cut_csv(f, 2)
    assert f.read_text() == "iteration,x\n0,1\n1,2\n"
    f.write_text("iteration,x\n0,1\n1,2\n2,3\n")
    cut_csv(f, keep=lambda r: int(r["iteration"]) != 1)
    assert f.read_text() == "iteration,x\n0,1\n2,3\n"


def test_an_older_run_config_without_added_keys_reads_with_their_defaults(tmp_path):
    """A run folder written before trpo.credit (or trpo.rr_message) existed is older, not damaged: it reads with
    the default, which is what it did; another missing key is damage, named with the file."""
    from coordinator.trpo.config import TrainConfig, check_feasible
    from deploy.config import config_to_dict, load_config
    from deploy.runs import read_run_config

    d = config_to_dict(load_config(TrainConfig, None, ["run.scheme=full"]))
    del d["trpo"]["credit"], d["trpo"]["rr_message"]
    rd = RunDir.create(tmp_path / "old", d, 0, "old")
    cfg = read_run_config(rd, TrainConfig, check_feasible)
    assert cfg.trpo.credit == "common" and cfg.trpo.rr_message == "powers"
    del d["trpo"]["delta"]
    with pytest.raises(RunDirError, match=r"trpo.delta missing"):
        read_run_config(rd, TrainConfig, check_feasible, d)
