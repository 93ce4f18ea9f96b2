"""The run folder: resolved config, seed and versions, metrics CSV, checkpoints, plots.

    RUN_DIR/config.yaml       resolved configuration
    RUN_DIR/meta.json         seed, package versions, git commit, argv, start time
    RUN_DIR/metrics.csv       one row per iteration (cut back to the checkpoint and appended on resume)
    RUN_DIR/messages.csv      the message log (likewise)
    RUN_DIR/checkpoints/      ckpt-<iteration>.pt, written atomically, the last few kept; tensors and plain
                              types only (numpy arrays are stored as tensors), read with weights_only=True
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deploy.errors import UsageError

CKPT_DIR = "checkpoints"


class RunDirError(UsageError):
    """A run folder that cannot be created or opened as asked."""


def default_run_dir(config_name: str, root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<config_name>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{config_name}"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for mod, name in (("torch", "torch"), ("ray", "ray"), ("zmq", "pyzmq"), ("msgpack", "msgpack")):
        try:
            m = __import__(mod)
            v = getattr(m, "__version__", None)
            if v is None and hasattr(m, "version"):
                v = ".".join(map(str, m.version)) if isinstance(m.version, tuple) else str(m.version)
            out[name] = str(v)
        except Exception:  # noqa: BLE001 - a missing package is recorded as None
            out[name] = None
    return out


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except Exception:  # noqa: BLE001
        return None


class CsvWriter:
    """Appending CSV writer of dict rows; the header is fixed by the first row (or the existing file);
    unknown keys in later rows are ignored, missing ones left empty. Flushes every row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fields: list[str] | None = None
        self.rows = 0                      # data rows in the file
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                self.rows = sum(1 for _ in reader)
            self._fields = list(header) if header else None
        self._fh = path.open("a", newline="")
        self._writer: csv.DictWriter | None = None
        if self._fields:
            self._writer = csv.DictWriter(self._fh, fieldnames=self._fields, extrasaction="ignore")

    def write(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._fields = list(row.keys())
            self._writer = csv.DictWriter(self._fh, fieldnames=self._fields, extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow(dict(row))
        self._fh.flush()
        self.rows += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunDir:
    """A run folder (see module docstring). Build with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, keep: int = 3) -> None:
        self.path = Path(path)
        self.keep = keep

    # ---- creation / reopening ----
    @classmethod
    def create(cls, path: str | Path, cfg_dict: Mapping[str, Any], seed: int, config_name: str,
               resume: bool = False, keep: int = 3, argv: Sequence[str] | None = None) -> RunDir:
        """Create a fresh run folder; refuses a non-empty folder unless ``resume``."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise RunDirError(f"run dir {p}: exists and is not a folder")
        if p.exists() and any(p.iterdir()) and not resume:
            raise RunDirError(f"run dir {p}: exists and is not empty (use --resume {p} to continue it)")
        p.mkdir(parents=True, exist_ok=True)
        (p / CKPT_DIR).mkdir(exist_ok=True)
        (p / "config.yaml").write_text(yaml.safe_dump(dict(cfg_dict), sort_keys=False))
        meta = {
            "seed": int(seed),
            "config_name": config_name,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "argv": list(sys.argv if argv is None else argv),
            "start_time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": platform.node(),
        }
        (p / "meta.json").write_text(json.dumps(meta, indent=2))
        return cls(p, keep)

    @classmethod
    def open(cls, path: str | Path, keep: int = 3) -> RunDir:
        """Reopen an existing run folder (for resume or evaluation)."""
        p = Path(path)
        if not (p / "config.yaml").is_file():
            raise RunDirError(f"run dir {p}: not a run folder (no config.yaml)")
        (p / CKPT_DIR).mkdir(exist_ok=True)
        return cls(p, keep)

    # ---- contents ----
    def config_dict(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "config.yaml").read_text()) or {}

    def meta(self) -> dict[str, Any]:
        f = self.path / "meta.json"
        return json.loads(f.read_text()) if f.is_file() else {}

    def update_meta(self, **items: Any) -> None:
        m = self.meta()
        m.update(items)
        (self.path / "meta.json").write_text(json.dumps(m, indent=2))

    def metrics(self, name: str = "metrics.csv") -> CsvWriter:
        """An appending CSV writer of dict rows (flushes every row)."""
        return CsvWriter(self.path / name)

    def write_json(self, name: str, obj: Any) -> Path:
        f = self.path / name
        tmp = f.with_suffix(f.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
        os.replace(tmp, f)
        return f

    # ---- checkpoints ----
    def _ckpts(self) -> list[tuple[int, Path]]:
        out = []
        for f in (self.path / CKPT_DIR).glob("ckpt-*.pt"):
            try:
                out.append((int(f.stem.split("-", 1)[1]), f))
            except ValueError:
                continue
        return sorted(out)

    def save_checkpoint(self, state: Mapping[str, Any], iteration: int) -> Path:
        """torch.save ``state`` atomically as ``checkpoints/ckpt-<iteration>.pt``; keep the last few."""
        import torch

        d = self.path / CKPT_DIR
        d.mkdir(exist_ok=True)
        f = d / f"ckpt-{int(iteration):08d}.pt"
        tmp = d / f".{f.name}.tmp"
        torch.save(_to_tensors(dict(state, iteration=int(iteration))), tmp)
        os.replace(tmp, f)
        for _, old in self._ckpts()[: -self.keep]:
            old.unlink(missing_ok=True)
        return f

    def load_latest_checkpoint(self) -> dict[str, Any] | None:
        import torch

        ck = self._ckpts()
        if not ck:
            return None
        return _from_tensors(torch.load(ck[-1][1], map_location="cpu", weights_only=True))


_NDARRAY = "__ndarray__"


def _to_tensors(x: Any) -> Any:
    """A checkpoint's state with every numpy array as ``{"__ndarray__": tensor}`` and numpy scalars as
    Python numbers, so that it loads with ``torch.load(weights_only=True)`` (no pickled objects)."""
    import torch

    if isinstance(x, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.array(x, copy=True))}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: _to_tensors(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_tensors(v) for v in x)
    return x


def _from_tensors(x: Any) -> Any:
    """Inverse of :func:`_to_tensors`."""
    if isinstance(x, dict):
        if len(x) == 1 and _NDARRAY in x:
            return x[_NDARRAY].numpy()
        return {k: _from_tensors(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_from_tensors(v) for v in x)
    return x


def cut_csv(path: Path, rows: int | None = None, keep: Any = None) -> None:
    """Keep the header and the first ``rows`` complete data rows of a CSV (or, with ``keep(row) -> bool``,
    the rows it accepts); a last line cut mid-row by a crash is dropped either way."""
    if not path.is_file():
        return
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]                       # a row cut mid-way
    if not lines:
        path.write_text("")
        return
    header, body = lines[0], lines[1:]
    if rows is not None:
        body = body[:rows]
    if keep is not None:
        names = next(csv.reader([header]))
        body = [ln for ln in body if keep(dict(zip(names, next(csv.reader([ln])), strict=False)))]
    path.write_text(header + "".join(body))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
