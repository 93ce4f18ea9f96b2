"""Typed, immutable run configuration loaded from YAML plus ``dotted.key=value`` overrides.

Generic over any tree of (frozen) dataclasses: a field whose type is a dataclass is a section.
A field may declare its allowed values in ``metadata``:

    p: float = field(default=0.5, metadata={"range": (0.0, 1.0), "doc": "what it is, in which unit"})
    kind: str = field(default="a", metadata={"choices": ("a", "b")})

Validation happens once, here, at the edge: an unknown key, a wrong type or an out-of-range value
raises :class:`ConfigError` with ONE message naming the dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deploy.errors import UsageError

T = TypeVar("T")


class ConfigError(UsageError):
    """A bad configuration value or file; the message names the dotted key and what is allowed."""


# ----------------------------------------------------------------------------------------------------
# the TRPO / A2C training configuration (bsemu train)
# ----------------------------------------------------------------------------------------------------
SCHEMES = ("centralized", "partial", "full")
ALGOS = ("trpo", "a2c")
BACKENDS = ("inproc", "ray")


def _f(default: Any, doc: str = "", **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"doc": doc, **meta})


@dataclasses.dataclass(frozen=True)
class ScenarioConfig:
    """The network (paper 1 Table I); mapped onto :class:`radio.channels.Scenario`."""

    kind: str = _f("3cell", "network layout", choices=("3cell", "7cell"))
    users_per_cell: int = _f(2, "K, users per cell", range=(1, 64))
    alpha: float = _f(3.76, "path-loss exponent", range=(1.0, 10.0))
    cell_radius_m: float = _f(1000.0, "cell radius in m", range=(1.0, 1e5))
    p_max_dbm: float = _f(43.0, "per-user power limit Pmax in dBm", range=(-30.0, 80.0))
    bs_sum_power_dbm: float | None = _f(None, "per-BS sum-power limit in dBm (Fig. 15), or null",
                                        range=(-30.0, 80.0))
    redrop: bool = _f(True, "re-drop users every slot (else a fixed drop, fading only)")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Policy and value networks (paper 1 Table II)."""

    hidden: int = _f(256, "neurons per hidden layer", range=(1, 4096))
    layers: int = _f(3, "hidden layers (ELU)", range=(1, 16))
    init_log_std: float = _f(-1.0, "initial log-std of the power fraction", range=(-10.0, 2.0))


@dataclasses.dataclass(frozen=True)
class TrpoConfig:
    """TRPO (paper 1 Sec. III) and A2C hyper-parameters."""

    delta: float = _f(0.01, "KL constraint delta, eq. (13b)/(23)", range=(1e-8, 10.0))
    zeta: float = _f(0.9, "backtracking step factor, eq. (21)", range=(0.01, 0.999))
    gamma: float = _f(0.99, "discount factor", range=(0.0, 1.0))
    episodes: int = _f(1000, "M, episodes per iteration", range=(1, 1_000_000))
    max_backtracks: int = _f(10, "line-search steps j = 0..max_backtracks-1", range=(1, 200))
    cg_iters: int = _f(10, "conjugate-gradient iterations", range=(1, 1000))
    cg_damping: float = _f(0.01, "damping added to the Fisher matrix in CG", range=(0.0, 10.0))
    cg_tol: float = _f(1e-10, "CG residual tolerance", range=(0.0, 1.0))
    value_lr: float = _f(1e-3, "critic Adam learning rate", range=(1e-8, 1.0))
    value_epochs: int = _f(5, "full-batch critic Adam steps per iteration (one share round each)",
                           range=(0, 1000))
    value_batches: int = _f(1, "critic minibatches: round e takes its Adam step on every k-th episode from "
                            "offset e mod k (k = value_batches; value_epochs = k is one pass over the batch "
                            "per iteration); 1: the full batch every round", range=(1, 1000))
    value_precision: str = _f("float32", "precision of the critic's hidden layers: bfloat16 runs its matmuls ~4x "
                              "faster on CPUs with AMX/AVX512-BF16 (its output layer, V and Adam stay float32) and "
                              "~10x slower where emulated; auto picks bfloat16 where native, else float32 (the "
                              "resolved config records which)", choices=("float32", "bfloat16", "auto"))
    a2c_lr: float = _f(7e-4, "A2C fixed step size (paper: 7e-4)", range=(1e-8, 1.0))
    fvp_stride: int = _f(1, "Fisher-vector products on every k-th episode, times k (1: exact; the Fisher "
                         "on a sub-sample, Schulman et al. 2015 App. C, OpenAI baselines use 5)", range=(1, 1000))

    def __post_init__(self) -> None:
        if self.value_precision == "auto":  # resolved once, here: the run folder's config names the precision
            from bs_agent.base_station import resolve_value_precision

            object.__setattr__(self, "value_precision", resolve_value_precision("auto"))
        if self.value_batches > self.episodes:
            raise ConfigError(f"trpo.value_batches: expected at most trpo.episodes ({self.episodes}) so that "
                              f"no critic minibatch is empty, got {self.value_batches}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to run and where."""

    scheme: str = _f("partial", "centralized | partial (round-robin) | full", choices=SCHEMES)
    algo: str = _f("trpo", "trpo | a2c", choices=ALGOS)
    backend: str = _f("ray", "inproc (one process) | ray (actors + ZeroMQ)", choices=BACKENDS)
    seed: int = _f(0, "root seed", range=(0, 2**63 - 1))
    threads: int = _f(1, "torch threads of every process that computes (the inproc process, the coordinator, each BS "
                         "actor); 2 lets the centralized scheme's one agent use both cores of a 2-core machine",
                      range=(1, 256))
    iterations: int = _f(100, "training iterations", range=(0, 10_000_000))
    checkpoint_every: int = _f(10, "checkpoint every N iterations", range=(1, 10_000_000))
    keep_checkpoints: int = _f(3, "checkpoints kept", range=(1, 1000))
    eval_slots: int = _f(1000, "held-out realizations for the final evaluation", range=(0, 1_000_000))
    eval_methods: tuple[str, ...] = _f(("max_power", "random", "wmmse", "fp", "optimum"),
                                       "baselines in the final evaluation",
                                       choices=("max_power", "random", "wmmse", "fp", "optimum"))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `bsemu train` needs."""

    scenario: ScenarioConfig = dataclasses.field(default_factory=ScenarioConfig)
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    trpo: TrpoConfig = dataclasses.field(default_factory=TrpoConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    @property
    def method_name(self) -> str:
        """Name of the trained method in evaluation tables, e.g. ``trpo_partial``."""
        return f"{self.run.algo}_{self.run.scheme}"


# ----------------------------------------------------------------------------------------------------
# generic loader
# ----------------------------------------------------------------------------------------------------
def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` (a dataclass tree) from a YAML file (or defaults when ``path`` is None)
    plus ``dotted.key=value`` overrides (values parsed with ``yaml.safe_load``)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key.split("."), value, key)
    return from_dict(cls, data)


def _set_dotted(data: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build and validate the dataclass ``cls`` from a (nested) mapping."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a section (mapping), "
                          f"got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{prefix}{key}: unknown key; allowed keys: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        dotted = prefix + name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, data.get(name) or {}, dotted + ".")  # type: ignore[arg-type]
            continue
        if name not in data:
            continue
        kwargs[name] = _check_value(dotted, tp, data[name], f.metadata)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted) for a YAML value against a type hint."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(arg, value)
            if ok:
                return True, v
        return False, None
    if tp is type(None):
        return value is None, None
    if tp is Any:
        return True, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, (int, float)):
            return True, float(value)
        if isinstance(value, str):  # yaml reads '1e-3' as a string
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if tp is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, None
        args = typing.get_args(tp)
        out = []
        for v in value:
            ok, c = _coerce(args[0], v)
            if not ok:
                return False, None
            out.append(c)
        return True, tuple(out) if origin is tuple else out
    return isinstance(value, tp), value


def _check_value(dotted: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    ok, v = _coerce(tp, value)
    if not ok:
        raise ConfigError(f"{dotted}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    choices = meta.get("choices")
    if choices is not None and v is not None:
        items = v if isinstance(v, (tuple, list)) else (v,)
        for it in items:
            if it not in choices:
                raise ConfigError(f"{dotted}: expected one of {', '.join(map(str, choices))}; got {it!r}")
    rng = meta.get("range")
    if rng is not None and v is not None:
        lo, hi = rng
        items = v if isinstance(v, (tuple, list)) else (v,)
        for it in items:
            if not (lo <= it <= hi):
                raise ConfigError(f"{dotted}: expected a value in [{lo}, {hi}], got {it!r}")
    return v


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a dataclass tree, YAML/JSON friendly."""

    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (tuple, list)):
            return [conv(v) for v in x]
        return x

    return conv(cfg)


def config_from_run_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a config from the ``config.yaml`` written into a run folder."""
    return from_dict(cls, data)
