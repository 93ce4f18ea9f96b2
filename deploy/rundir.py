"""The run folder: resolved config, seed and versions, metrics CSV, checkpoints, plots.

    RUN_DIR/config.yaml       resolved configuration
    RUN_DIR/meta.json         seed, package versions, git commit, argv, start time
    RUN_DIR/metrics.csv       one row per iteration (appended on resume)
    RUN_DIR/checkpoints/      ckpt-<iteration>.pt, written atomically, the last few kept
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
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
        if path.exists() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
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
        torch.save(dict(state, iteration=int(iteration)), tmp)
        os.replace(tmp, f)
        for _, old in self._ckpts()[: -self.keep]:
            old.unlink(missing_ok=True)
        return f

    def load_latest_checkpoint(self) -> dict[str, Any] | None:
        import torch

        ck = self._ckpts()
        if not ck:
            return None
        return torch.load(ck[-1][1], map_location="cpu", weights_only=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def ewma(x: Iterable[float], w: float = 0.96) -> np.ndarray:
    """Exponentially weighted average of paper 1 footnote 2:
    s[1] = x[1];  s[n] = w x[n] + (1 - w) s[n-1]."""
    xs = np.asarray(list(x), dtype=np.float64)
    s = np.empty_like(xs)
    for i, v in enumerate(xs):
        s[i] = v if i == 0 else w * v + (1.0 - w) * s[i - 1]
    return s


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (non-numeric cells become NaN)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out: dict[str, np.ndarray] = {}
    for k in rows[0]:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[k]))
            except (TypeError, ValueError):
                vals.append(float("nan"))
        out[k] = np.asarray(vals)
    return out


def plot_curves(csv_or_dict: str | Path | Mapping[str, Sequence[float]], keys: Sequence[str],
                out_png: str | Path, x_key: str = "iteration", w: float | None = 0.96,
                title: str | None = None) -> Path:
    """Learning curves of ``keys`` (raw, and exponentially weighted with ``w`` if given) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_csv(csv_or_dict) if isinstance(csv_or_dict, (str, Path)) else \
        {k: np.asarray(v, dtype=np.float64) for k, v in csv_or_dict.items()}
    keys = [k for k in keys if k in data]
    fig, axes = plt.subplots(len(keys) or 1, 1, figsize=(7, 2.6 * max(1, len(keys))), squeeze=False)
    for ax, k in zip(axes[:, 0], keys, strict=False):  # no keys: one empty panel
        y = data[k]
        x = data.get(x_key, np.arange(len(y)))
        ax.plot(x, y, lw=0.8, alpha=0.5 if w else 1.0, label=f"{k} (raw)")
        if w is not None and len(y):
            ax.plot(x, ewma(y, w), lw=1.6, label=f"{k} (EWMA w={w})")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(x_key)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
