"""deploy.config: YAML + overrides into frozen dataclasses, one clear error per bad key; deploy.rundir."""

from __future__ import annotations

import dataclasses

import pytest

from coordinator.trpo.config import TrainConfig
from deploy.config import ConfigError, config_to_dict, load_config
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
    assert isinstance(ei.value, ValueError)   # the CLI answers it with one line, exit 2 (test_train_cli)


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
    import bs_agent.trpo.base_station as bsmod

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
