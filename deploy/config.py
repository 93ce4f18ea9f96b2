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
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from coordinator.config import ConfigError

T = TypeVar("T")

__all__ = ["ConfigError", "load_config", "from_dict", "config_to_dict", "read_text", "read_yaml", "missing_keys",
           "changed_keys", "memory_budget_bytes", "format_bytes"]

MAX_CONFIG_BYTES = 1 << 20   # a config is a page of YAML; anything near a megabyte is not one


# ----------------------------------------------------------------------------------------------------
# reading files at the edge: one line naming the file and what is wrong
# ----------------------------------------------------------------------------------------------------
def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of a small file; :class:`ConfigError` (one line) when it is missing, not a regular
    file, unreadable, larger than ``max_bytes`` or not UTF-8."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {p}: not found")
    if not p.is_file():
        raise ConfigError(f"{what} {p}: expected a file, found a {'folder' if p.is_dir() else 'special file'}")
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{what} {p}: {size} bytes, expected a text file of at most {max_bytes} bytes")
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {p}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} {p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}, "
                          f"line {line})") from None
    if "\x00" in text:
        raise ConfigError(f"{what} {p}: not a text file (holds NUL bytes)")
    return text


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (the second would silently win)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            dup = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "found an unhashable key",
                                                    key_node.start_mark) from None
        if dup:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: 'line L, column C: problem'."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def read_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    p = Path(path)
    text = read_text(p, what)
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p}: not valid YAML at {yaml_error_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{what} {p}: not valid YAML (nested too deeply)") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {p}: expected a mapping of sections at the top level, got {type(loaded).__name__}")
    return loaded


# ----------------------------------------------------------------------------------------------------
# generic loader
# ----------------------------------------------------------------------------------------------------
def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` (a dataclass tree) from a YAML file (or defaults when ``path`` is None)
    plus ``dotted.key=value`` overrides (values parsed with ``yaml.safe_load``)."""
    data: dict[str, Any] = {} if path is None else read_yaml(path)
    return from_dict(cls, apply_overrides(data, overrides))


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with ``dotted.key=value`` overrides applied."""
    import copy

    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part.strip() for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. run.iterations=10")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(out, key.split("."), value, key)
    return out


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
            section = data.get(name)
            kwargs[name] = from_dict(tp, {} if section is None else section, dotted + ".")  # type: ignore[arg-type]
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
        raise ConfigError(f"{dotted}: expected {_type_name(tp)}, got {_short(value)} ({type(value).__name__})")
    items = v if isinstance(v, (tuple, list)) else (v,)
    if any(isinstance(it, float) and not math.isfinite(it) for it in items):
        raise ConfigError(f"{dotted}: expected a finite number, got {_short(value)}")
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


def _short(value: Any, limit: int = 80) -> str:
    """repr of a value cut to one short line (a pasted blob must not flood the one-line error)."""
    r = " ".join(repr(value).split())
    return r if len(r) <= limit else r[: limit - 3] + "..."


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a dataclass tree, YAML/JSON friendly."""

    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (tuple, list)):
            return [conv(v) for v in x]
        return x

    return conv(cfg)


# ----------------------------------------------------------------------------------------------------
# run folders: complete configs, what a resume may change
# ----------------------------------------------------------------------------------------------------
def missing_keys(cls: type, data: Any, prefix: str = "") -> list[str]:
    """Dotted keys of ``cls`` absent from ``data``: a run folder's ``config.yaml`` is written resolved,
    every key present, so a missing one means a damaged file."""
    if not isinstance(data, Mapping):
        return []
    out: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.name not in data:
            out.append(prefix + f.name + (".*" if dataclasses.is_dataclass(tp) else ""))
        elif dataclasses.is_dataclass(tp):
            out += missing_keys(tp, data[f.name], prefix + f.name + ".")  # type: ignore[arg-type]
    return out


def flat_items(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a dataclass tree."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out.update(flat_items(v, prefix + f.name + "."))
        else:
            out[prefix + f.name] = v
    return out


def changed_keys(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of every leaf that differs between two configs of one type."""
    a, b = flat_items(old), flat_items(new)
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


# ----------------------------------------------------------------------------------------------------
# memory budget of one command
# ----------------------------------------------------------------------------------------------------
MEMORY_ENV = "BSEMU_MEMORY_GB"


def memory_budget_bytes() -> int:
    """Bytes a run may plan to hold: ``$BSEMU_MEMORY_GB`` GiB if set, else half this machine's memory."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if raw:
        try:
            gib = float(raw)
        except ValueError:
            gib = float("nan")
        if not (math.isfinite(gib) and gib > 0):
            raise ConfigError(f"{MEMORY_ENV}={raw!r}: expected a number of GiB > 0")
        return int(gib * 2**30)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return max(int(total) // 2, 2**30)


def format_bytes(n: float) -> str:
    """'1.5 GiB', '320 MiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def budget_hint() -> str:
    """How the budget was set, for messages."""
    if os.environ.get(MEMORY_ENV, "").strip():
        return f"${MEMORY_ENV}"
    return f"half this machine's memory; ${MEMORY_ENV} sets it"


def check_memory(parts: Mapping[str, float], what: str) -> None:
    """Refuse a run whose planned arrays (``parts``: {what, with the keys that size it: bytes}) exceed the
    memory budget; the message gives the estimate and its largest part."""
    total = float(sum(parts.values()))
    budget = memory_budget_bytes()
    if total > budget:
        big = max(parts, key=lambda k: parts[k])
        raise ConfigError(f"{what} would hold about {format_bytes(total)} in memory (largest: {big} "
                          f"{format_bytes(parts[big])}), more than the budget of {format_bytes(budget)} "
                          f"({budget_hint()}); make it smaller")
