"""`bsemu baselines` through a subprocess: good files, bad files (exit 2, nothing written)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from radio.channels import Scenario
from radio.gainsfile import save_gains
from radio.rates import sum_rate


def _bsemu(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def gains_file(tmp_path):
    pr = Scenario.preset("3cell").sample(6, np.random.default_rng(0))
    path = tmp_path / "g.npz"
    save_gains(path, pr)
    return path, pr


def test_good_file_writes_summary_and_powers(tmp_path, gains_file):
    path, pr = gains_file
    out = tmp_path / "out"
    r = _bsemu("baselines", "--gains", str(path), "--out", str(out), "--methods", "max_power,wmmse,fp,optimum",
               "--single", "2")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert set(s["methods"]) == {"max_power", "wmmse", "fp", "optimum"}
    for name, m in s["methods"].items():
        with np.load(out / f"powers_{name}.npz") as f:
            assert f["p"].shape == (6, 6)
            np.testing.assert_allclose(f["sum_rate"], sum_rate(pr.G, f["p"], pr.noise_w), rtol=1e-9)
            assert m["mean_bps_hz"] == pytest.approx(f["sum_rate"].mean())
        assert m["mean_mbps"] == pytest.approx(m["mean_bps_hz"] * 20.0)
        assert m["ratio_to_optimum"] <= 1.0 + 1e-6
    assert (out / "summary.png").stat().st_size > 1000
    assert "| optimum |" in r.stdout


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


GOOD = dict(G=np.ones((2, 3, 3)), noise_w=np.float64(1.0), p_max_w=np.float64(1.0), bandwidth_hz=np.float64(1e6))


@pytest.mark.parametrize("change, field", [
    ({"G": None}, "G"),
    ({"G": np.ones((2, 3, 4))}, "G"),
    ({"G": -np.ones((2, 3, 3))}, "G"),
    ({"G": np.full((2, 3, 3), np.nan)}, "G"),
    ({"noise_w": np.ones(3)}, "noise_w"),
    ({"p_max_w": np.ones(4)}, "p_max_w"),
    ({"bandwidth_hz": np.float64(-1.0)}, "bandwidth_hz"),
    ({"cells": np.int64(2), "users_per_cell": np.int64(2)}, "cells"),
])
def test_bad_files_exit_2_and_write_nothing(tmp_path, change, field):
    arrays = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = _write(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "out"
    r = _bsemu("baselines", "--gains", str(path), "--out", str(out), "--methods", "max_power")
    assert r.returncode == 2
    assert field in r.stderr and r.stderr.count("\n") == 1
    assert not out.exists()


def test_optimum_refuses_too_many_links(tmp_path):
    path = _write(tmp_path / "big.npz", **{**GOOD, "G": np.ones((1, 9, 9))})
    r = _bsemu("baselines", "--gains", str(path), "--methods", "optimum")
    assert r.returncode == 2 and "L" in r.stderr and "8" in r.stderr


def test_not_a_file(tmp_path):
    r = _bsemu("baselines", "--gains", str(tmp_path / "missing.npz"))
    assert r.returncode == 2 and "does not exist" in r.stderr
