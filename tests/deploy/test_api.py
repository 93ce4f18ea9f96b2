"""deploy.api, the Python API for notebooks: packaged configs by name with keyword overrides, a training run
with a progress callback under the command line's thread caps (the same numbers as `bsemu train`), evaluation
that reproduces the run's own, baselines equal to `bsemu baselines`, and a run folder read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coordinator.config import ConfigError
from coordinator.trpo.config import TrainConfig
from deploy import api
from deploy.config import load_config as load_yaml_config
from tests import ROOT

TINY = {"trpo.episodes": 32, "policy.hidden": 8, "trpo.cg_iters": 3, "run.eval_slots": 20, "run.iterations": 2,
        "run.checkpoint_every": 1, "run.backend": "inproc", "run.eval_methods": ["max_power", "wmmse"]}


def tiny_cfg() -> TrainConfig:
    return api.load_config("demo", **TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run through the API, with what its progress callback saw."""
    seen = []
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = api.train(tiny_cfg(), run_dir=tmp_path_factory.mktemp("api") / "run",
                           progress=lambda m: seen.append((m, torch.get_num_threads(), api.blas_threads(),
                                                           os.environ.get("OPENBLAS_NUM_THREADS"))))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(prev)
    return result, seen, after


# ---------------------------------------------------------------------------------------------- configs
def test_packaged_configs_load_by_name():
    names = api.configs()
    assert {"demo", "3cell_centralized", "3cell_partial", "7cell_full"} <= set(names)
    assert not any(n.startswith("zo_") for n in names)
    for name in names:
        assert api.load_config(name) == load_yaml_config(TrainConfig, ROOT / "deploy" / "configs" / f"{name}.yaml")


def test_overrides_in_every_form_equal_set():
    expected = load_yaml_config(TrainConfig, ROOT / "deploy" / "configs" / "demo.yaml",
                                ["run.iterations=7", "trpo.episodes=40", "run.eval_methods=[wmmse]"])
    assert api.load_config("demo", run__iterations=7, trpo__episodes=40, run__eval_methods=("wmmse",)) == expected
    assert api.load_config("demo", run={"iterations": 7, "eval_methods": ["wmmse"]}, trpo={"episodes": 40}) == expected
    assert api.load_config("demo", **{"run.iterations": 7, "trpo.episodes": 40, "run.eval_methods": ["wmmse"]}) \
        == expected
    assert api.load_config(ROOT / "deploy" / "configs" / "demo.yaml", run__iterations=7, trpo__episodes=40,
                           run__eval_methods=["wmmse"]) == expected


def test_config_errors_are_one_line():
    cases = [
        (lambda: api.load_config("nope"), r"config 'nope': expected a packaged config \(.*demo.*\) or a YAML file"),
        (lambda: api.load_config("zo_demo"), r"paper-2 \(zeroth-order\) config, run by `bsemu zo`"),
        (lambda: api.load_config("demo", run__iterations="many"), r"run.iterations: expected int"),
        (lambda: api.load_config("demo", run__colour=1), r"run.colour: unknown key"),
        (lambda: api.load_config("demo", run__scheme="partial", run__algo="a2c"), r"run.algo: a2c is the centralized"),
        (lambda: api.load_config("/no/such.yaml"), r"not found"),
    ]
    for call, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as exc:
            call()
        assert "\n" not in str(exc.value)


def test_configs_are_package_data():
    """The YAML files ship inside the package (found after `pip install`, not from the checkout)."""
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "configs/*.yaml" in data["deploy"]
    import importlib.resources

    assert (importlib.resources.files("deploy") / "configs" / "demo.yaml").is_file()


# ---------------------------------------------------------------------------------------------- train
def test_train_reports_progress_under_one_thread_and_restores(trained):
    (run_dir, theta), seen, after = trained
    assert [m["iteration"] for m, *_ in seen] == [0, 1]
    assert all(np.isfinite(m["reward_mbps"]) for m, *_ in seen)
    assert all(t == 1 for _, t, _, _ in seen)                          # torch capped during the run
    assert all(b in (1, None) for _, _, b, _ in seen)                  # numpy's BLAS too, where it can be read
    assert all(v == (os.environ.get("OPENBLAS_NUM_THREADS") or "1") for *_, v in seen)   # for child processes
    assert after == 2                                                   # ... and given back afterwards
    for f in ("config.yaml", "meta.json", "metrics.csv", "messages.csv", "messages_summary.json", "curves.png",
              "eval/summary.json", "checkpoints/ckpt-00000002.pt"):
        assert (run_dir / f).is_file(), f
    np.testing.assert_array_equal(theta, api.read_run(run_dir).theta())


def test_train_gives_the_numbers_of_the_command_line(trained, tmp_path):
    (run_dir, _), _, _ = trained
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text((run_dir / "config.yaml").read_text())
    cmd = [sys.executable, "-m", "deploy.cli", "train", "--config", str(cfg_file), "--run-dir", str(tmp_path / "cli"),
           "--no-progress"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    api_m, cli_m = api.read_run(run_dir).metrics, api.read_run(tmp_path / "cli").metrics
    for key in ("reward", "kl", "value_loss", "step_norm"):
        np.testing.assert_array_equal(api_m[key], cli_m[key], err_msg=key)
    np.testing.assert_array_equal(api.read_run(run_dir).theta(), api.read_run(tmp_path / "cli").theta())


def test_one_thread_restores_what_was_there(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = api.blas_threads()
    with api.one_thread():
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert torch.get_num_threads() == 1 and api.blas_threads() in (1, None)
    assert os.environ["OMP_NUM_THREADS"] == "3" and "OPENBLAS_NUM_THREADS" not in os.environ
    assert api.blas_threads() == before


# ---------------------------------------------------------------------------------------------- evaluate
def means(summary: dict) -> dict[str, float]:
    return {k: v["mean_bps_hz"] for k, v in summary["methods"].items()}


def test_evaluate_reproduces_the_run_s_own_evaluation(trained, tmp_path):
    (run_dir, theta), _, _ = trained
    own = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert means(api.evaluate(run_dir)) == means(own)                   # default: run.seed + 1, run.eval_slots
    assert means(api.evaluate(api.Trained(run_dir, theta))) == means(own)
    by_theta = api.evaluate(theta, cfg=tiny_cfg(), out=tmp_path / "ev")
    assert means(by_theta) == means(own)
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["n"] == 20
    other = api.evaluate(run_dir, slots=30, methods=["max_power"], seed=5, p_max_dbm=40.0)
    assert set(other["methods"]) == {"trpo_partial", "max_power"} and other["n"] == 30


def test_evaluate_on_a_gains_file(trained, tmp_path):
    from radio.channels import Scenario
    from radio.gainsfile import save_gains

    (run_dir, _), _, _ = trained
    save_gains(tmp_path / "g.npz", Scenario.preset("3cell").sample(8, np.random.default_rng(3)))
    s = api.evaluate(run_dir, gains=tmp_path / "g.npz", methods=["wmmse"])
    assert s["n"] == 8 and set(s["methods"]) == {"trpo_partial", "wmmse"}
    save_gains(tmp_path / "g7.npz", Scenario.preset("7cell").sample(2, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="7 cells x 8 users .* trained on 3 x 2"):
        api.evaluate(run_dir, gains=tmp_path / "g7.npz")


def test_evaluate_errors(trained):
    (run_dir, theta), _, _ = trained
    with pytest.raises(ConfigError, match="cfg=..."):
        api.evaluate(theta)
    with pytest.raises(ConfigError, match=r"theta: expected a flat vector of \d+ parameters"):
        api.evaluate(theta[:-1], cfg=tiny_cfg())
    with pytest.raises(ConfigError, match="methods: unknown fancy"):
        api.evaluate(run_dir, methods=["fancy"])
    with pytest.raises(Exception, match="not found"):
        api.evaluate(run_dir.parent / "missing")


# ---------------------------------------------------------------------------------------------- baselines
def test_baselines_equal_the_command_line(tmp_path):
    from deploy.cli import main

    assert main(["baselines", "--scenario", "3cell", "--slots", "40", "--seed", "3", "--methods",
                 "max_power,random,wmmse,optimum", "--single", "0", "--out", str(tmp_path / "cli")]) == 0
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    mine = api.baselines("3cell", slots=40, seed=3, methods=["max_power", "random", "wmmse", "optimum"])
    assert means(mine) == means(cli)
    big = api.baselines("7cell", slots=3, methods=["max_power", "wmmse"], users_per_cell=2)
    assert big["L"] == 14 and "bracket" in big                          # no optimum past 8 links: the bracket
    with pytest.raises(ConfigError, match=r"^slots: expected an integer"):
        api.baselines(slots=0)
    with pytest.raises(ConfigError, match=r"^users_per_cell: expected"):
        api.baselines(users_per_cell=0)
    with pytest.raises(ConfigError, match="scenario: expected one of"):
        api.baselines("5cell")


# ---------------------------------------------------------------------------------------------- read_run
def test_read_run(trained):
    (run_dir, _), seen, _ = trained
    run = api.read_run(run_dir)
    assert run.config == tiny_cfg()
    assert list(run.metrics["iteration"]) == [0.0, 1.0]
    np.testing.assert_allclose(run.metrics["reward_mbps"], [m["reward_mbps"] for m, *_ in seen])
    assert run.messages["totals"]["sent"]["count"] > 0
    assert set(run.eval["methods"]) == {"trpo_partial", "max_power", "wmmse"}
    assert run.meta["config_name"] == "trpo_partial" and run.path == Path(run_dir)


# ---------------------------------------------------------------------------------------------- message_stats
def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _hand_counts(rows: list[dict[str, str]], key) -> dict:
    """key(row) -> {event: count, event_bytes: bytes}, counted row by row."""
    out: dict = {}
    for r in rows:
        acc = out.setdefault(key(r), {})
        acc[r["event"]] = acc.get(r["event"], 0) + 1
        acc[r["event"] + "_bytes"] = acc.get(r["event"] + "_bytes", 0) + int(r["nbytes"])
    return out


def _assert_counts(stats: dict, hand: dict) -> None:
    assert set(stats) == set(hand)
    for k, h in hand.items():
        for event in ("sent", "received", "dropped"):
            assert (stats[k][event], stats[k][event + "_bytes"]) == (h.get(event, 0), h.get(event + "_bytes", 0)), k


def test_message_stats_equal_hand_counts_and_the_summary(tmp_path):
    """A round-robin run whose power vectors are lost with probability 0.3: per kind, per link and in total the
    messages, bytes and drops of messages.csv counted row by row, and messages_summary.json's totals."""
    import shutil

    from deploy.errors import UsageError

    cfg = api.load_config("demo", **{**TINY, "run.eval_slots": 0, "links.loss": 0.3})
    run_dir, _ = api.train(cfg, run_dir=tmp_path / "lossy")
    stats = api.message_stats(run_dir)
    rows = _csv_rows(run_dir / "messages.csv")
    _assert_counts(stats.per_kind, _hand_counts(rows, lambda r: r["kind"]))
    _assert_counts(stats.per_link, _hand_counts(rows, lambda r: (int(r["sender"]), int(r["receiver"]))))
    for link, entry in stats.per_link.items():
        _assert_counts(entry["kinds"], _hand_counts([r for r in rows if (int(r["sender"]), int(r["receiver"]))
                                                     == link], lambda r: r["kind"]))
    _assert_counts({"all": stats.totals}, _hand_counts(rows, lambda r: "all"))
    assert stats.per_kind["POWER_VECTOR"]["dropped"] > 0                # the lossy links' drops are there
    written = json.loads((run_dir / "messages_summary.json").read_text())
    for event in ("sent", "received", "dropped"):
        cb = written["totals"].get(event, {"count": 0, "bytes": 0})
        assert (stats.totals[event], stats.totals[event + "_bytes"]) == (cb["count"], cb["bytes"])
    assert stats.summary["per_kind"] == written["per_kind"]              # one summary code, same rows
    assert stats.totals["latency_count"] == 0 and np.isnan(stats.totals["latency_p50_ns"])   # nothing crossed a socket
    no_log = tmp_path / "no_log"
    shutil.copytree(run_dir, no_log)
    (no_log / "messages.csv").unlink()
    with pytest.raises(UsageError, match=r"no messages\.csv"):
        api.message_stats(no_log)


@pytest.mark.slow
@pytest.mark.ray
def test_message_stats_latencies_of_a_socket_run(tmp_path):
    """A zeroth-order run with the links as Ray actors exchanging d over ZeroMQ: every received message crossed a
    socket; the latency counts, maxima and means are the rows' exactly, the percentiles within a bin (1.2 %) of
    the order statistic."""
    import math

    run = tmp_path / "zo"
    r = subprocess.run([sys.executable, "-m", "deploy.cli", "zo", "--no-progress", "--run-dir", str(run),
                        "--set", "run.backend=ray", "--set", "scenario.n_links=3", "--set", "run.iterations=3",
                        "--set", "algo.b1=5", "--set", "algo.b2=5", "--set", "run.eval_sequences=2",
                        "--set", "run.eval_slots=4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    stats = api.message_stats(run)
    rows = [x for x in _csv_rows(run / "messages.csv") if x["event"] == "received" and x["via"] == "socket"]
    groups = {**{k: [x for x in rows if x["kind"] == k] for k in {x["kind"] for x in rows}}, "total": rows}
    assert set(groups) - {"total"} == set(stats.per_kind) and rows
    for name, group in groups.items():
        got = stats.totals if name == "total" else stats.per_kind[name]
        lat = sorted(int(x["t_recv_ns"]) - int(x["t_send_ns"]) for x in group)
        assert got["latency_count"] == len(lat) and got["latency_max_ns"] == lat[-1]
        assert got["latency_mean_ns"] == pytest.approx(sum(lat) / len(lat), rel=1e-12)
        for q in (50, 95, 99):
            exact = lat[max(1, math.ceil(q / 100 * len(lat))) - 1]
            assert got[f"latency_p{q}_ns"] == pytest.approx(exact, rel=0.012), (name, q)
