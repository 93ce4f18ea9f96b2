"""`bsemu execute` through a subprocess: a trained run folder executed on the logical clock gives `bsemu
evaluate`'s powers on the same slots; a solver on the central unit; every output file; bad input exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests import ROOT

pytestmark = pytest.mark.ray


def bsemu(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("exec") / "run"
    r = bsemu("train", "--config", "deploy/configs/demo.yaml", "--run-dir", str(run), "--no-progress",
              "--set", "run.iterations=2", "--set", "trpo.episodes=64", "--set", "run.backend=inproc",
              "--set", "run.eval_slots=0")
    assert r.returncode == 0, r.stderr
    return run


def test_execute_on_the_logical_clock_gives_the_evaluations_powers(trained, tmp_path):
    ev, ex = tmp_path / "eval", tmp_path / "exec"
    r = bsemu("evaluate", str(trained), "--slots", "40", "--seed", "7", "--methods", "max_power", "--out", str(ev))
    assert r.returncode == 0, r.stderr
    r = bsemu("execute", str(trained), "--slots", "40", "--set", "run.seed=7", "--set", "run.clock=logical",
              "--set", "run.warmup_slots=0", "--out", str(ex))
    assert r.returncode == 0, r.stderr
    p_eval = np.load(ev / "powers_trpo_partial.npz")["p"]
    p_exec = np.load(ex / "powers.npz")["p"]
    pmax = 10 ** ((43 - 30) / 10)
    np.testing.assert_allclose(p_exec / pmax, p_eval / pmax, rtol=0, atol=2e-6)
    for name in ("summary.json", "summary.md", "slots.csv", "latency_cdf.png", "messages.csv",
                 "messages_summary.json", "messages_summary.md", "config.yaml", "meta.json", "powers.npz"):
        assert (ex / name).is_file(), name
    s = json.loads((ex / "summary.json").read_text())
    assert s["messages_per_slot"] == s["table3_messages_per_slot"] == 2
    assert s["paper_table_iv_s"] == 1.99e-3 and "| trpo_partial |" in (ex / "summary.md").read_text()


def test_execute_a_solver_on_the_central_unit(tmp_path):
    out = tmp_path / "wmmse"
    r = bsemu("execute", "--method", "wmmse", "--slots", "30", "--slot-ms", "20", "--set", "run.warmup_slots=5",
              "--out", str(out))
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "wmmse" and set(s["decision_us"]) == {"bs0", "bs1", "bs2", "cu"}
    assert s["messages_per_slot"] == 6 and s["table3_scalars_per_slot"] == 24


@pytest.mark.parametrize("args,needle", [
    (["--method", "wmmse", "RUN"], "not both"),
    ([], "RUN_DIR"),
    (["--method", "wmmse", "--set", "run.clock=logical", "--set", "links.delay_ms=1"], "run.clock=real"),
    (["--method", "wmmse", "--set", "links.loss=2"], "links.loss"),
    (["--method", "optimum", "--set", "scenario.kind=7cell"], "at most 8 links"),
    (["--method", "cell_optimum", "--set", "scenario.users_per_cell=9"], "at most 8 users"),
    (["--method", "wmmse,fp"], "--method: invalid choice"),
    (["--method", "wmmse", "--slots", "0"], "run.slots"),
    (["--method", "wmmse", "--set", "run.wait=busy"], "run.wait: expected one of block, spin"),
    (["--method", "wmmse", "--set", "run.priority=100"], "run.priority"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    args = [str(tmp_path) if a == "RUN" else a for a in args]
    r = bsemu("execute", *args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_execute_sweep_over_delay_and_loss(trained, tmp_path):
    out = tmp_path / "sweep"
    r = bsemu("execute-sweep", str(trained), "--methods", "wmmse", "--delays-ms", "0,1", "--losses", "0,0.3",
              "--slots", "25", "--slot-ms", "20", "--set", "run.warmup_slots=5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    import csv

    rows = list(csv.DictReader((out / "execute_sweep.csv").open()))
    assert len(rows) == 2 * 4 and {r["axis"] for r in rows} == {"delay", "loss"}
    for row in rows:
        lost = int(row["lost"])
        assert (lost > 0) == (float(row["loss"]) > 0), row
    for name in ("sum_rate_vs_delay.png", "slot_latency_vs_delay.png", "sum_rate_vs_loss.png",
                 "slot_latency_vs_loss.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    delayed = [row for row in rows if float(row["delay_ms"]) == 1.0]
    assert all(float(row["slot_p50_us"]) >= 1000 for row in delayed)   # at least one hop of 1 ms


def test_the_cli_methods_are_the_execution_paths():
    """--method offers exactly what the nodes run: the central unit's solvers and the BSs' own-cell rules."""
    from bs_agent.trpo.execution import METHODS, OWN_CELL_METHODS
    from deploy.commands.execute import METHODS as CLI

    assert CLI == METHODS + OWN_CELL_METHODS
