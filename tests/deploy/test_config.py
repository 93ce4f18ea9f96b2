"""deploy.config: YAML + overrides into frozen dataclasses, one clear error per bad key; deploy.rundir."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deploy.config import ConfigError, TrainConfig, config_to_dict, load_config
from deploy.errors import UsageError
from deploy.rundir import RunDir, RunDirError, default_run_dir, ewma, plot_curves
from tests import ROOT


@dataclasses.dataclass(frozen=True)
class Inner:
    p: float = dataclasses.field(default=0.5, metadata={"range": (0.0, 1.0)})
    mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b")})
    maybe: int | None = None
    names: tuple[str, ...] = ("x",)


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    n: int = dataclasses.field(default=3, metadata={"range": (1, 10)})
    flag: bool = False


def test_defaults_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("n: 5\ninner:\n  mode: b\n")
    cfg = load_config(Outer, f, ["inner.p=0.25", "flag=true", "inner.maybe=4", "inner.names=[u, v]"])
    assert cfg == Outer(Inner(0.25, "b", 4, ("u", "v")), 5, True)
    assert load_config(Outer, None) == Outer()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 1  # type: ignore[misc]
    assert config_to_dict(cfg) == {"inner": {"p": 0.25, "mode": "b", "maybe": 4, "names": ["u", "v"]},
                                   "n": 5, "flag": True}
    # round trip through the dict
    assert load_config(Outer, None, [f"inner.p={cfg.inner.p}"]).inner.p == 0.25


@pytest.mark.parametrize("override, words", [
    ("inner.q=1", ["inner.q", "unknown", "p"]),
    ("inner.p=2.0", ["inner.p", "[0.0, 1.0]"]),
    ("inner.p=abc", ["inner.p", "float"]),
    ("n=2.5", ["n", "int"]),
    ("n=0", ["n", "[1, 10]"]),
    ("flag=3", ["flag", "bool"]),
    ("inner.mode=c", ["inner.mode", "a, b"]),
    ("inner=3", ["inner", "section"]),
    ("novalue", ["novalue", "dotted.key=value"]),
])
def test_errors_name_the_key(override, words):
    with pytest.raises(ConfigError) as ei:
        load_config(Outer, None, [override])
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert isinstance(ei.value, UsageError)


def test_value_batches_at_most_episodes():
    assert load_config(TrainConfig, None, ["trpo.episodes=8", "trpo.value_batches=8"]).trpo.value_batches == 8
    with pytest.raises(ConfigError) as ei:
        load_config(TrainConfig, None, ["trpo.episodes=8", "trpo.value_batches=9"])
    assert "trpo.value_batches" in str(ei.value) and "trpo.episodes" in str(ei.value)
    with pytest.raises(ConfigError, match="trpo.value_batches"):
        load_config(TrainConfig, None, ["trpo.value_batches=0"])


def test_value_precision_auto_resolves_once_to_what_this_cpu_runs_natively(monkeypatch):
    """'auto' becomes a concrete precision at load time (so the run folder's config names it and a
    resume keeps it): bfloat16 only where the CPU has it natively, float32 where torch would emulate it."""
    import bs_agent.base_station as bsmod

    for native, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(bsmod, "native_bfloat16", lambda native=native: native)
        cfg = load_config(TrainConfig, None, ["trpo.value_precision=auto"])
        assert cfg.trpo.value_precision == want
        assert config_to_dict(cfg)["trpo"]["value_precision"] == want
        # explicit choices are kept whatever the CPU
        assert load_config(TrainConfig, None, ["trpo.value_precision=bfloat16"]).trpo.value_precision == "bfloat16"
    with pytest.raises(ConfigError, match="trpo.value_precision"):
        load_config(TrainConfig, None, ["trpo.value_precision=float16"])


def test_train_config_files_load():

    root = ROOT / "deploy" / "configs"
    files = sorted(root.glob("*.yaml"))
    for f in files:
        if f.stem.startswith(("demo", "3cell_", "7cell_")):
            cfg = load_config(TrainConfig, f)
            assert cfg.method_name.startswith(("trpo_", "a2c_"))
    with pytest.raises(ConfigError, match="run.scheme"):
        load_config(TrainConfig, None, ["run.scheme=ring"])


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


def test_ewma_matches_footnote():
    x = [1.0, 2.0, 3.0]
    s = ewma(x, 0.96)
    assert s[0] == 1.0
    assert np.isclose(s[1], 0.96 * 2 + 0.04 * 1)
    assert np.isclose(s[2], 0.96 * 3 + 0.04 * s[1])
