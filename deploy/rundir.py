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
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deploy.config import ConfigError, memory_budget_bytes, read_text, read_yaml
from deploy.errors import UsageError

CKPT_DIR = "checkpoints"
MAX_META_BYTES = 1 << 20


class RunDirError(UsageError):
    """A run folder that cannot be created or opened as asked."""


# ---------------------------------------------------------------------------------------------- output folders
def _exists(p: Path) -> bool:
    try:
        return p.exists() or p.is_symlink()
    except OSError:
        return True        # there, but not even stat-able: the checks below say why


def check_output_dir(path: str | Path, what: str, empty: bool = False) -> Path:
    """Check, before anything is written, that ``path`` is (or can be made) a folder this process can
    write in: not a file, not under a file, writable; with ``empty`` also empty. Raises
    :class:`RunDirError` with one line naming ``what`` and the path; writes nothing (a probe folder is made
    and removed)."""
    p = Path(path)
    anc = p
    while not _exists(anc):
        if anc.parent == anc:
            break
        anc = anc.parent
    try:
        if anc == p and not p.is_dir():
            raise RunDirError(f"{what} {p}: exists and is not a folder")
        if not anc.is_dir():
            raise RunDirError(f"{what} {p}: {anc} is a file, not a folder")
        if anc == p and empty and any(p.iterdir()):
            raise RunDirError(f"{what} {p}: exists and is not empty (use --resume {p} to continue it)")
    except OSError as exc:
        raise RunDirError(f"{what} {p}: cannot be read ({exc.strerror or exc})") from None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".bsemu-write-test-", dir=anc))
    except OSError as exc:
        raise RunDirError(f"{what} {p}: cannot write in {anc} ({exc.strerror or exc})") from None
    return p


def check_output_files(folder: str | Path, names: Sequence[str], what: str) -> None:
    """Each of ``names`` inside ``folder`` is absent or a regular file (so that writing it cannot fail on a
    folder or a device in its place)."""
    for name in names:
        f = Path(folder) / name
        if _exists(f) and not f.is_file():
            raise RunDirError(f"{what} {f}: exists and is not a regular file; move it away")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a crash leaves the old or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Rows (mappings) to a CSV at once, with the union of their keys in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


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
        """Create a fresh run folder; refuses a file, a folder it cannot write in and a non-empty folder
        unless ``resume`` -- all before anything is written."""
        p = check_output_dir(path, "run dir", empty=not resume)
        p.mkdir(parents=True, exist_ok=True)
        (p / CKPT_DIR).mkdir(exist_ok=True)
        atomic_write_text(p / "config.yaml", yaml.safe_dump(dict(cfg_dict), sort_keys=False))
        meta = {
            "seed": int(seed),
            "config_name": config_name,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "argv": list(sys.argv if argv is None else argv),
            "start_time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "host": platform.node(),
        }
        atomic_write_text(p / "meta.json", json.dumps(meta, indent=2))
        return cls(p, keep)

    @classmethod
    def open(cls, path: str | Path, keep: int = 3) -> RunDir:
        """Reopen an existing run folder (for resume or evaluation); writes nothing."""
        p = Path(path)
        if not _exists(p):
            raise RunDirError(f"run dir {p}: not found")
        if not p.is_dir():
            raise RunDirError(f"run dir {p}: expected a run folder, found a file")
        if not _exists(p / "config.yaml"):
            raise RunDirError(f"run dir {p}: not a run folder (no config.yaml)")
        return cls(p, keep)

    # ---- contents ----
    def config_dict(self) -> dict[str, Any]:
        """config.yaml as a mapping; :class:`ConfigError` naming the file if it is not one."""
        return read_yaml(self.path / "config.yaml", "run config")

    def meta(self) -> dict[str, Any]:
        """meta.json as a mapping; :class:`RunDirError` naming the file if it is missing or damaged."""
        f = self.path / "meta.json"
        try:
            text = read_text(f, "run meta", MAX_META_BYTES)
        except ConfigError as exc:
            raise RunDirError(str(exc)) from None
        try:
            m = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"run meta {f}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}") from None
        except RecursionError:
            raise RunDirError(f"run meta {f}: not valid JSON (nested too deeply)") from None
        if not isinstance(m, dict):
            raise RunDirError(f"run meta {f}: expected a JSON object, got {type(m).__name__}")
        for key, tp in (("seed", int), ("config_name", str)):
            if key in m and (not isinstance(m[key], tp) or isinstance(m[key], bool)):
                raise RunDirError(f"run meta {f}: {key}: expected {tp.__name__}, got {type(m[key]).__name__}")
        return m

    def update_meta(self, **items: Any) -> None:
        m = self.meta()
        m.update(items)
        atomic_write_text(self.path / "meta.json", json.dumps(m, indent=2))

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

    def latest_checkpoint_file(self) -> Path | None:
        """The file :meth:`load_latest_checkpoint` reads (None if there is none)."""
        ck = self._ckpts()
        return ck[-1][1] if ck else None

    def load_latest_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint (None if there is none), checked as far as every run's checkpoint goes: a
        mapping of tensors and plain types whose ``iteration`` matches its file name and whose ``rows`` (if
        recorded) are counts. Anything else raises :class:`RunDirError` naming the file."""
        d = self.path / CKPT_DIR
        if _exists(d) and not d.is_dir():
            raise RunDirError(f"run dir {self.path}: {CKPT_DIR} is not a folder")
        ck = self._ckpts()
        if not ck:
            return None
        it, f = ck[-1]
        st = load_checkpoint_file(f)
        if not isinstance(st, dict):
            raise RunDirError(f"checkpoint {f}: expected a mapping of named states, got {type(st).__name__}")
        got = st.get("iteration")
        if not isinstance(got, int) or isinstance(got, bool) or got != it:
            raise RunDirError(f"checkpoint {f}: expected iteration {it} (its file name), got {got!r}")
        rows = st.get("rows")
        if rows is not None and not (isinstance(rows, dict) and all(
                isinstance(rows.get(k), int) and not isinstance(rows.get(k), bool) and rows[k] >= 0
                for k in ("metrics", "messages"))):
            raise RunDirError(f"checkpoint {f}: rows: expected counts of metrics and messages rows, got {rows!r}"[:300])
        try:
            return _from_tensors(st)
        except (TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise RunDirError(f"checkpoint {f}: damaged array ({exc})") from None


def load_checkpoint_file(f: Path) -> Any:
    """``torch.load(f, weights_only=True)`` with every way a file can fail as one :class:`RunDirError` line: a
    pickled object (refused by the weights only loader: checkpoints hold tensors and plain types), an empty,
    truncated or foreign file, one larger than the memory budget."""
    import pickle

    import torch

    try:
        size = f.stat().st_size
        if not f.is_file():
            raise RunDirError(f"checkpoint {f}: not a regular file")
    except OSError as exc:
        raise RunDirError(f"checkpoint {f}: cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise RunDirError(f"checkpoint {f}: empty file (a crash while it was written?); remove it to resume "
                          "from the one before")
    if size > memory_budget_bytes():
        raise RunDirError(f"checkpoint {f}: {size} bytes, more than the memory budget")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text:
            name = text.split("Unsupported global:", 1)[1].split()
            what = f" ({name[1]})" if len(name) > 1 and name[0] == "GLOBAL" else ""
            raise RunDirError(f"checkpoint {f}: holds a pickled object{what}, refused by the weights only "
                              "loader (checkpoints hold tensors and plain types only)") from None
        raise RunDirError(f"checkpoint {f}: not a torch checkpoint (refused by the weights only loader)") from None
    except MemoryError:
        raise RunDirError(f"checkpoint {f}: its arrays do not fit in memory") from None
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file fails in many ways inside torch
        reason = " ".join(str(exc).split())[:80] or type(exc).__name__
        raise RunDirError(f"checkpoint {f}: not a readable checkpoint (truncated or corrupt: {reason}); remove "
                          "it to resume from the one before") from None


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
            import torch

            if not isinstance(x[_NDARRAY], torch.Tensor):
                raise TypeError(f"{_NDARRAY} holds {type(x[_NDARRAY]).__name__}, expected a tensor")
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


def _csv_text(path: Path, what: str) -> str | None:
    """The UTF-8 text of a run's CSV (None when absent); :class:`RunDirError` when it is not a readable
    text file."""
    if not _exists(path):
        return None
    if not path.is_file():
        raise RunDirError(f"{what} {path}: expected a file, found a folder or special file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunDirError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunDirError(f"{what} {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    if "\x00" in text:
        raise RunDirError(f"{what} {path}: not a CSV file (holds NUL bytes)")
    return text


def check_metrics_csv(path: Path, rows: int | None) -> None:
    """The metrics CSV a resume will cut back and append to: readable, a header with an ``iteration``
    column, at least ``rows`` complete rows (what the checkpoint recorded; None: every row is kept or dropped
    by its iteration), and a number in the iteration cell of every row kept. Raises :class:`RunDirError`."""
    text = _csv_text(path, "metrics")
    if text is None:
        if rows:
            raise RunDirError(f"metrics {path}: missing, the checkpoint records {rows} rows")
        return
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]                       # a row cut mid-way by a crash: cut_csv drops it
    if not lines:
        if rows:
            raise RunDirError(f"metrics {path}: empty, the checkpoint records {rows} rows")
        return
    body = lines[1:]
    if rows is not None and len(body) < rows:
        raise RunDirError(f"metrics {path}: {len(body)} complete rows, the checkpoint records {rows}")
    try:
        reader = csv.reader(lines)
        header = next(reader)
        kept = [r for _, r in zip(range(len(body) if rows is None else rows), reader, strict=False)]
    except csv.Error as exc:
        raise RunDirError(f"metrics {path}: not valid CSV ({exc})") from None
    if not header or (kept and "iteration" not in header):
        raise RunDirError(f"metrics {path}: expected a header with an iteration column, got {header[:5]!r}")
    col = header.index("iteration") if "iteration" in header else 0
    for n, r in enumerate(kept, start=2):
        cell = r[col] if col < len(r) else ""
        try:
            it = float(cell)
            ok = it == int(it) and it >= 0
        except (ValueError, OverflowError):
            ok = False
        if not ok:
            raise RunDirError(f"metrics {path}: line {n}: iteration: expected a whole number >= 0, got {cell!r}"[:300])


def check_messages_csv(path: Path, rows: int | None) -> None:
    """The message log a resume reopens: its first ``rows`` rows (None: all) readable as logged rows,
    and at least ``rows`` of them. Raises :class:`RunDirError`."""
    from protocol.log import read_rows

    text = _csv_text(path, "message log")
    if text is None:
        if rows:
            raise RunDirError(f"message log {path}: missing, the checkpoint records {rows} rows")
        return
    try:
        got = read_rows(path, limit=rows)
    except (KeyError, ValueError, TypeError, IndexError, csv.Error) as exc:
        reason = f"unknown value {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:80]
        raise RunDirError(f"message log {path}: damaged row ({reason})") from None
    if rows is not None and len(got) < rows:
        raise RunDirError(f"message log {path}: {len(got)} rows, the checkpoint records {rows}")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
