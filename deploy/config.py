"""YAML files plus ``dotted.key=value`` overrides into a typed, immutable run configuration.

Generic over any tree of (frozen) dataclasses: a field whose type is a dataclass is a section. The
types live beside the code that reads them (:mod:`coordinator.trpo.config`, :mod:`coordinator.zo.config`);
each field declares its allowed values with :func:`coordinator.config.config_field`:

    p: float = config_field(0.5, "what it is, in which unit", range=(0.0, 1.0))
    kind: str = config_field("a", "which one", choices=("a", "b"))

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

from coordinator.config import ConfigError

T = TypeVar("T")

__all__ = ["ConfigError", "load_config", "from_dict", "config_to_dict"]

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
