"""`bsemu zo` and `bsemu zo-sweep` through a subprocess: a run folder and its resume, the real clock end to
end, the sweep's every promised CSV + PNG with columns that obey the exchange formulas of each method, and bad
input refused with exit 2."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.zo import config as zc
from coordinator.zo.config import ZOConfig
from deploy.sweeps import EXPERIMENTS, PAPER
from tests import ROOT

ITS = 3
TINY = ["--set", "algo.b1=5", "--set", "algo.b2=5", "--set", "run.eval_sequences=2", "--set", "run.eval_slots=4"]


def _sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.cli", "zo-sweep", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zo-sweep")
    r = _sweep("--out", str(out), "--iterations", str(ITS), *TINY)
    assert r.returncode == 0, r.stderr
    return out


def test_every_experiment_writes_a_csv_and_a_png(sweep_dir):
    for name in PAPER:
        png = sweep_dir / f"zo_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert _rows(sweep_dir / f"zo_{name}.csv"), name


def test_fig2_fig3_columns_follow_the_exchange_formulas(sweep_dir):
    cfg = ZOConfig().replace(algo={"b1": 5, "b2": 5})
    N, B, n = cfg.scenario.n_links, 10, zc.specs(cfg)[0].n_params
    graph = zc.neighbours(cfg.replace(algo={"update": "graph", "graph": "random", "max_degree": 2}))
    rows = _rows(sweep_dir / "zo_fig3.csv")
    assert rows == _rows(sweep_dir / "zo_fig2.csv")
    assert {r["method"] for r in rows} == {"proposed (fully connected)", "proposed (graph, |N_i|<=2)",
                                           "centralized Adam", "FL"}
    for r in rows:
        it, m = int(r["iteration"]), r["method"]
        assert float(r["samples"]) == it * B
        msgs, scalars = float(r["messages"]), float(r["scalars"])
        if m == "proposed (fully connected)":
            assert msgs == scalars == it * N * (N - 1)                # one d to each of N - 1 neighbours
        elif m.startswith("proposed (graph"):
            assert msgs == it * sum(len(nb) for nb in graph)          # 2|E| messages per iteration
            assert scalars >= msgs                                    # own d plus relayed entries
        elif m == "centralized Adam":
            assert scalars == it * N * (B * N + n)                    # CSI rows up, parameters down
        else:
            assert scalars == (it // cfg.baseline.fl_interval) * 2 * N * n
        assert 0 < float(r["sum_rate"]) < 100 and float(r["bytes"]) >= 4 * scalars


def test_fig4_fig5_tables_have_their_sweep_columns(sweep_dir):
    fig4 = _rows(sweep_dir / "zo_fig4.csv")
    assert sorted({int(r["B"]) for r in fig4}) == [20, 50, 100, 200]
    for r in fig4:                                                   # same sample budget for every B
        assert int(r["samples"]) == int(r["iteration"]) * int(r["B"]) <= ITS * 100
    fig5 = _rows(sweep_dir / "zo_fig5.csv")
    assert {float(r["asynchrony"]) for r in fig5} == {0.0, 10.0, 25.0, 50.0}
    t1 = _rows(sweep_dir / "zo_table1.csv")
    assert [float(r["asynchrony"]) for r in t1] == [0.0, 10.0, 25.0, 50.0]
    assert all(float(r[k]) > 0 for r in t1 for k in ("no_rnd", "rnd_1", "rnd_2", "rnd_3", "rnd_4"))
    t2 = _rows(sweep_dir / "zo_table2.csv")
    assert [int(r["n_links"]) for r in t2] == [5, 10, 15]
    assert [float(r["paper_proposed"]) for r in t2] == [4.95, 5.31, 5.63]
    assert all(float(r["proposed"]) > 0 and float(r["centralized_adam"]) > 0 for r in t2)


def test_delay_and_loss_sweeps_of_the_d_exchange(tmp_path):
    """The logical-clock sweeps: one row per (update rule, value); a loss drops d messages, no loss none; a
    delay keeps eq. (8)'s bound (below B slots); sync is swept on loss only (a delayed d is refused for it)."""
    r = _sweep("--experiments", "delay,loss", "--out", str(tmp_path), "--iterations", str(ITS), *TINY)
    assert r.returncode == 0, r.stderr
    delay, loss = _rows(tmp_path / "zo_delay.csv"), _rows(tmp_path / "zo_loss.csv")
    assert {r["update"] for r in delay} == {"async", "graph"} and {r["update"] for r in loss} == {"sync", "async",
                                                                                                     "graph"}
    assert all(float(r["delay"]) < 10 for r in delay)                     # B = 10 in TINY
    for r in loss:
        if float(r["loss"]) == 0:
            assert float(r["dropped"]) == 0, r
        elif float(r["loss"]) >= 0.1:                                     # 60 d messages: some are lost
            assert float(r["dropped"]) > 0, r
        assert float(r["sum_rate"]) > 0
    assert set(EXPERIMENTS) >= set(PAPER) | {"delay", "loss", "delay_real", "loss_real"}


@pytest.mark.parametrize("bad,needle", [
    (["--experiments", "fig9"], "--experiments"),
    (["--seeds", "0"], "--seeds"),
    (["--iterations", "0"], "--iterations"),
    (["--set", "algo.mu=-1"], "algo.mu"),
    (["--set", "algo.update=sync", "--set", "algo.asynchrony=10"], "asynchrony"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, bad, needle):
    out = tmp_path / "out"
    r = _sweep("--out", str(out), "--iterations", "1", *bad)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.ray
def test_parallel_sweep_equals_the_sequential_one_row_for_row(tmp_path):
    """--parallel: every (configuration, seed) run a Ray task on an embedded Ray, gathered as they finish; the
    CSVs equal those of the runs one after another (logical clock: deterministic), seeds averaged alike."""
    common = ["--experiments", "fig2,fig3,fig4,table1,loss", "--iterations", str(ITS), "--seeds", "2",
              "--no-progress", *TINY]
    seq, par = tmp_path / "seq", tmp_path / "par"
    r = _sweep("--out", str(seq), "--no-parallel", *common)
    assert r.returncode == 0, r.stderr
    assert "one after another" in r.stderr
    r = _sweep("--out", str(par), "--parallel", *common)
    assert r.returncode == 0, r.stderr
    assert "as Ray tasks" in r.stderr
    for name in ("fig2", "fig3", "fig4", "table1", "loss"):
        rows = _rows(par / f"zo_{name}.csv")
        assert rows and rows == _rows(seq / f"zo_{name}.csv"), name
        assert (par / f"zo_{name}.png").read_bytes()[:4] == b"\x89PNG"


def _refused_address() -> str:
    """127.0.0.1:PORT where nothing listens (a port just bound and released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("address", ["refused", "ray://10.0.0.1:10001", "no-port"])
def test_sweep_with_a_wrong_address_fails_in_one_line_before_writing(tmp_path, address):
    address = _refused_address() if address == "refused" else address
    out = tmp_path / "out"
    r = _sweep("--out", str(out), "--iterations", "1", "--address", address)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("bsemu zo-sweep: error:"), r.stderr
    assert address in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def _bsemu(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_zo_run_folder_and_resume(tmp_path):
    rd = tmp_path / "run"
    common = ["--config", "deploy/configs/zo_demo.yaml", "--no-progress", "--set", "algo.b1=10", "--set", "algo.b2=10",
              "--set", "run.eval_every=10", "--set", "run.checkpoint_every=10", "--set", "run.eval_sequences=4"]
    r = _bsemu("zo", *common, "--set", "run.iterations=20", "--run-dir", str(rd))
    assert r.returncode == 0, r.stderr
    for f in ("config.yaml", "meta.json", "metrics.csv", "messages.csv", "messages_summary.json", "curves.png",
              "summary.md", "summary.json"):
        assert (rd / f).is_file(), f
    r = _bsemu("zo", "--resume", str(rd), "--no-progress", "--set", "run.iterations=30")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((rd / "metrics.csv").open()))
    assert [int(x["iteration"]) for x in rows] == [10, 20, 30]
    # the resumed run equals an uninterrupted one
    ref = tmp_path / "ref"
    r = _bsemu("zo", *common, "--set", "run.iterations=30", "--run-dir", str(ref))
    assert r.returncode == 0, r.stderr
    rows_ref = list(csv.DictReader((ref / "metrics.csv").open()))
    assert rows_ref[-1]["sum_rate"] == rows[-1]["sum_rate"]
    assert rows_ref[-1]["bytes"] == rows[-1]["bytes"]
    # bad input: one line, exit 2
    r = _bsemu("zo", "--config", "deploy/configs/zo_demo.yaml", "--set", "algo.mu=-1", "--run-dir",
               str(tmp_path / "bad"))
    assert r.returncode == 2 and "algo.mu" in r.stderr


@pytest.mark.ray
def test_cli_real_clock_run_folder(tmp_path):
    """`bsemu zo` on the real clock end to end (its own Ray): run folder, real-time metrics, log."""
    import subprocess
    import sys

    rd = tmp_path / "run"
    sets = ["run.clock=real", "run.backend=ray", "algo.update=async", "algo.b1=10", "algo.b2=10", "run.slot_s=0.0005",
            "run.guard_slots=40", "algo.delay=0.001", "run.iterations=10", "run.eval_every=5",
            "run.checkpoint_every=5", "run.eval_sequences=2"]
    cmd = [sys.executable, "-m", "deploy.cli", "zo", "--config", "deploy/configs/zo_demo.yaml", "--no-progress",
           "--run-dir", str(rd)]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((rd / "metrics.csv").open()))
    assert [int(x["iteration"]) for x in rows] == [5, 10]
    assert {"late_d", "stale_d", "overruns", "update_slots", "air_lag_slots"} <= set(rows[-1])
    msgs = [m for m in csv.DictReader((rd / "messages.csv").open()) if m["kind"] == "SCALAR_D"]
    sent = sum(m["event"] == "sent" for m in msgs)
    # links run free: a fast one may finish more iterations than the slowest one's 10 (never fewer);
    # every d sent to the 4 others is received (no drop configured), none left in flight
    assert sent >= 10 * 5 * 4 and sent % 4 == 0
    assert sent == sum(m["event"] == "received" for m in msgs)
    assert all(int(m["delay_ns"]) == 1_000_000 for m in msgs if m["event"] == "received")


def test_suspicious_run_warnings_are_computed_from_the_last_row():
    from deploy.commands.zo import suspicious

    ok = {"messages": 100, "dropped": 10, "stale_d": 44.0, "sum_rate": 2.5, "max_power": 2.0}
    assert suspicious(ok) == []                                   # 44 < 0.5 * 90 stale, above max power
    stale = suspicious({**ok, "stale_d": 45.0})                   # 45 = 0.5 * (100 - 10)
    assert len(stale) == 1 and stale[0].startswith("45 of 90 received d were discarded as stale")
    flat = suspicious({**ok, "sum_rate": 2.0})                    # equal to max power: nothing learned
    assert len(flat) == 1 and "not above max power's 2.0000" in flat[0]
    assert suspicious({}) == []                                   # a resumed run without a row: nothing to say
