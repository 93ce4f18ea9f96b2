"""A run that diverges (NaN / inf) ends with one line naming the quantity and the iteration, exit 1, its last
finite checkpoint and metrics rows kept, and nothing evaluated: `bsemu train` through a subprocess (A2C at an
absurd step), `bsemu zo` in process (a link's parameters made NaN: no config of paper 2 diverges quickly)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from deploy.rundir import RunDir
from tests import ROOT, bsemu, csv_rows

A2C = ROOT / "deploy" / "configs" / "3cell_a2c.yaml"
DIVERGING = ["--set", "policy.hidden=16", "--set", "policy.layers=2", "--set", "trpo.episodes=64",
             "--set", "trpo.a2c_lr=0.03", "--set", "run.backend=inproc", "--set", "run.eval_slots=20",
             "--set", "run.eval_methods=[max_power]", "--set", "run.checkpoint_every=1", "--set", "run.iterations=50"]
LINE = re.compile(r"^bsemu train: error: diverged at iteration (\d+): the KL between consecutive policies is "
                  r"(inf|nan) \(last finite checkpoint: iteration (\d+), (\S+); metrics.csv holds iterations "
                  r"0-(\d+); not evaluated\)$")



rows = csv_rows


def test_train_that_diverges_stops_with_one_line_and_keeps_the_finite_checkpoint(tmp_path):
    run = tmp_path / "run"
    r = bsemu("train", "--config", str(A2C), "--run-dir", str(run), "--no-progress", *DIVERGING)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and r.stderr.splitlines()[-1] == errors[0]
    m = LINE.match(errors[0])
    assert m, errors[0]
    it, ck_it, ck_file, last_row = int(m[1]), int(m[3]), Path(m[4]), int(m[5])
    assert it > 0 and ck_it == it and last_row == it - 1           # checkpoint_every 1: the state before it
    # metrics: one finite row per iteration before the divergent one
    metrics = rows(run / "metrics.csv")
    assert [int(x["iteration"]) for x in metrics] == list(range(it))
    for x in metrics:
        assert all(math.isfinite(float(v)) for v in x.values() if v != "")
    # every checkpoint kept is finite and loads (weights only), the last is the one named
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert ckpts and ckpts[-1] == ck_file
    for f in ckpts:
        st = torch.load(f, weights_only=True)
        tensors = [st["theta"], st["phi"], *st["a2c_opt"]["state"][0].values(), *st["value_opt"]["state"][0].values()]
        assert all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
    # not evaluated; meta says why it ended
    assert not (run / "eval").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["end_iteration"] == it and meta["diverged"]["quantity"] == "the KL between consecutive policies"
    # the finite checkpoint is usable: evaluate reads it
    r = bsemu("evaluate", str(run), "--slots", "10", "--methods", "max_power", "--out", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr
    assert all(math.isfinite(v) for v in json.loads(r.stdout.splitlines()[0]).values())


def test_zo_that_diverges_stops_with_one_line(tmp_path, monkeypatch, capsys):
    """The centralized Adam baseline with link 1's parameters turned NaN during iteration 3: the run stops at
    iteration 3, keeps the rows (eval_every 2) and checkpoints (every 2) of the iterations before, writes no
    summary, exit 1."""
    import coordinator.zo.train as zt
    from deploy.cli import main

    make = zt.make_trainer

    def poisoned(cfg, log, exchange, links=None):
        tr = make(cfg, log, exchange, links)
        run_iteration = tr.run_iteration

        def step() -> None:
            run_iteration()
            if tr.iteration == 3:
                with torch.no_grad():
                    tr.params[1][0] = math.nan
        tr.run_iteration = step
        return tr

    monkeypatch.setattr(zt, "make_trainer", poisoned)
    run = tmp_path / "zo"
    rc = main(["zo", "--run-dir", str(run), "--no-progress", "--set", "run.method=adam", "--set", "run.iterations=8",
               "--set", "run.eval_every=2", "--set", "run.checkpoint_every=2", "--set", "algo.b1=5",
               "--set", "algo.b2=5", "--set", "run.eval_sequences=2", "--set", "run.eval_slots=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("bsemu zo: error: diverged at iteration 3: the parameters theta_1 of link 1 have 1 of ")
    assert "last finite checkpoint: " in err[-1] and "ckpt-00000002.pt" in err[-1]
    assert [int(x["iteration"]) for x in rows(run / "metrics.csv")] == [2]
    assert not (run / "summary.json").exists()
    st = RunDir.open(run).load_latest_checkpoint()
    assert st["iteration"] == 2 and all(np.isfinite(p).all() for p in st["trainer"]["params"])


def test_zo_train_names_a_non_finite_held_out_sum_rate():
    """Parameters finite but the evaluation NaN (a stub evaluator): the row is not written."""
    import pytest

    from coordinator.zo.config import ZOConfig
    from coordinator.zo.links import Exchange
    from coordinator.zo.train import Diverged, Evaluator, make_trainer, train
    from protocol.log import MessageLog

    cfg = ZOConfig().replace(algo={"b1": 5, "b2": 5}, run={"iterations": 4, "eval_every": 2, "eval_sequences": 2,
                                                             "eval_slots": 5})
    tr = make_trainer(cfg, MessageLog(None), Exchange())
    ev = Evaluator(cfg)
    calls = []

    def evaluator(thetas):
        calls.append(len(calls))
        return ev(thetas) if len(calls) == 1 else math.inf

    evaluator.max_power = ev.max_power
    got: list[dict] = []
    with pytest.raises(Diverged, match=r"^diverged at iteration 4: the held-out sum-rate is inf$"):
        train(cfg, tr, evaluator, 4, got.append)
    assert [x["iteration"] for x in got] == [2]
