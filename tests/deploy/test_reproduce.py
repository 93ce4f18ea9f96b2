"""`bsemu reproduce paper1|paper2` at the CI size (hidden --scale tiny): every figure and table file is written,
every sum-rate table holds the certified optimum (or bracket) and values inside [0, it], the training points give
the same outcomes as Ray tasks as one after another, and bad input is refused with exit 2 and nothing written."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from deploy.cli import main
from deploy.reproduce import output_files
from deploy.reproduce.common import run_points
from deploy.reproduce.paper1 import Point, train_point

TOL = 1e-3        # Mbps / bit/s/Hz: the optimum is certified within 1e-4 bit/s/Hz per realization


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _run(*args: str) -> int:
    try:
        return main(list(args))
    except SystemExit as exc:          # argparse's own errors
        return int(exc.code)


def _sections(report: str) -> dict[str, str]:
    parts = re.split(r"^## ", report, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p for p in parts}


@pytest.fixture(scope="module")
def paper1(tmp_path_factory, ray_session) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "paper1"
    assert _run("reproduce", "paper1", "--scale", "tiny", "--out", str(out), "--no-progress") == 0
    return out


@pytest.fixture(scope="module")
def paper2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "paper2"
    assert _run("reproduce", "paper2", "--scale", "tiny", "--out", str(out), "--no-progress") == 0
    return out


@pytest.mark.ray
def test_paper1_writes_every_figure_and_table(paper1):
    for name in output_files("paper1"):
        assert (paper1 / name).is_file() and (paper1 / name).stat().st_size > 0, name
    report = (paper1 / "report.md").read_text()
    for fig in ("Fig. 6", "Fig. 9", "Fig. 10", "Fig. 13", "Fig. 14", "Fig. 15", "Table III", "Table IV"):
        assert f"## {fig}:" in report
    assert "122 Mbps" in report and re.search(r"took \d+ s .* load average", report)


@pytest.mark.ray
def test_paper1_sum_rates_lie_between_zero_and_the_certified_optimum_or_bracket(paper1):
    for name in ("fig11", "fig15"):
        rows = {r["method"]: float(r["mean_mbps"]) for r in _rows(paper1 / f"{name}.csv")}
        opt = rows.pop("optimum")
        assert opt > 0 and all(0 <= v <= opt + TOL for v in rows.values()), (name, rows, opt)
    rows = {r["method"]: float(r["mean_mbps"]) for r in _rows(paper1 / "fig13.csv")}
    lo, up = rows.pop("bracket_lower"), rows.pop("bracket_upper")
    assert 0 < lo <= up and all(0 <= v <= up + TOL for v in rows.values())
    for name, top in (("fig10", "optimum"), ("fig12", "bracket_upper")):
        rows = _rows(paper1 / f"{name}.csv")
        ref = max(float(r["sum_rate_mbps"]) for r in rows if r["method"] == top)
        assert all(0 <= float(r["sum_rate_mbps"]) <= ref + TOL for r in rows), name
    by_pmax: dict[str, dict[str, float]] = {}
    for r in _rows(paper1 / "fig14.csv"):
        by_pmax.setdefault(r["pmax_dbm"], {})[r["method"]] = float(r["mean_mbps"])
    assert len(by_pmax) == 7
    for rates in by_pmax.values():
        opt = rates.pop("optimum")
        assert all(0 <= v <= opt + TOL for v in rates.values())
    sections = _sections((paper1 / "report.md").read_text())
    for title, text in sections.items():
        if title.startswith(("Fig. 10", "Fig. 11", "Fig. 14", "Fig. 15")):
            assert "| optimum" in text or "optimum |" in text, title
        if title.startswith(("Fig. 12", "Fig. 13")):
            assert "| bracket_lower |" in text and "| bracket_upper |" in text, title


@pytest.mark.ray
def test_paper1_training_curves_show_every_seed_and_their_band(paper1):
    for name in ("fig6", "fig7", "fig8", "fig9"):
        rows = _rows(paper1 / f"{name}.csv")
        assert len(rows) == 2 and {"seed0", "seed1", "mean", "min", "max"} <= set(rows[0])
        for r in rows:
            seeds = [float(r["seed0"]), float(r["seed1"])]
            assert float(r["min"]) == min(seeds) and float(r["max"]) == max(seeds)
            assert float(r["mean"]) == pytest.approx(np.mean(seeds))


@pytest.mark.ray
def test_paper1_table3_counts_the_schemes_messages(paper1):
    rows = {r["method"]: r for r in _rows(paper1 / "table3.csv")}
    assert set(rows) == {"trpo_centralized", "trpo_partial", "trpo_full", "wmmse", "fp"}
    for r in rows.values():
        assert float(r["messages_per_slot"]) == float(r["expected_messages_per_slot"])
    assert float(rows["trpo_full"]["bytes_per_slot"]) == 0
    t4 = {r["method"]: r for r in _rows(paper1 / "table4.csv")}
    assert float(t4["wmmse"]["paper_seconds"]) == 0.6 and all(float(r["slot_p50_us"]) > 0 for r in t4.values())


def test_paper2_writes_every_figure_and_table_beside_the_optimum_or_bracket(paper2):
    for name in output_files("paper2"):
        assert (paper2 / name).is_file() and (paper2 / name).stat().st_size > 0, name
    ref = {r["scenario"]: r for r in _rows(paper2 / "zo_reference.csv")}
    opt = float(ref["N = 5"]["optimum"])
    assert float(ref["N = 10"]["bracket_lower"]) <= float(ref["N = 10"]["bracket_upper"])
    for name in ("zo_fig2", "zo_fig4", "zo_fig5"):
        assert all(0 <= float(r["sum_rate"]) <= opt + TOL for r in _rows(paper2 / f"{name}.csv")), name
    for r in _rows(paper2 / "zo_table2.csv"):
        top = ref[f"N = {r['n_links']}"]
        top = float(top["optimum"] or top["bracket_upper"])
        assert 0 <= float(r["proposed"]) <= top + TOL and 0 <= float(r["centralized_adam"]) <= top + TOL
    sections = _sections((paper2 / "report.md").read_text())
    for title, text in sections.items():
        if title.startswith(("Fig. 2", "Fig. 4", "Fig. 5", "Table I")):
            assert "optimum" in text, title
    assert "certified bracket [" in sections[next(t for t in sections if t.startswith("Table II"))]
    assert "4.95" in (paper2 / "report.md").read_text()


def _tiny_point(seed: int) -> Point:
    over = (("policy.hidden", 8), ("policy.layers", 1), ("trpo.episodes", 16), ("trpo.value_epochs", 1))
    return Point("3cell", "trpo_partial", "3cell_partial", seed, 2, over)


def test_a_training_point_is_a_function_of_its_point():
    a, b = train_point(_tiny_point(3)), train_point(_tiny_point(3))
    assert a["rows"] == b["rows"] and np.array_equal(a["theta"], b["theta"])
    assert a["rows"] != train_point(_tiny_point(4))["rows"]


@pytest.mark.ray
def test_points_as_ray_tasks_give_the_same_outcomes_as_one_after_another(ray_session):
    pts = [_tiny_point(0), _tiny_point(1)]
    seq, par = run_points(train_point, pts, False), run_points(train_point, pts, True)
    for s, p in zip(seq, par, strict=True):
        assert s["rows"] == p["rows"] and np.array_equal(s["theta"], p["theta"])


@pytest.mark.parametrize("args, what", [
    (["paper3"], "invalid choice"),
    (["paper1", "--scale", "huge"], "--scale 'huge': expected one of quick, paper"),
])
def test_bad_paper_or_scale_exits_2_and_writes_nothing(tmp_path, capsys, args, what):
    out = tmp_path / "out"
    assert _run("reproduce", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert what in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_an_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _run("reproduce", "paper2", "--scale", "tiny", "--out", str(blocker / "out")) == 2
    err = capsys.readouterr().err
    assert "--out" in err and len(err.strip().splitlines()) == 1 and sorted(tmp_path.iterdir()) == [blocker]


def test_existing_output_files_are_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "report.md").write_text("mine")
    assert _run("reproduce", "paper2", "--scale", "tiny", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "report.md exists already" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"] and (tmp_path / "report.md").read_text() == "mine"
