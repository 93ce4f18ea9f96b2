"""Load a user's own channels from an .npz file (format documented in README.md).

    G             float [n, L, L]  linear power gains, G[i, l, j] = gain from the BS serving link j
                                   to the user of link l (radio convention)
    noise_w       scalar           receiver noise power, W
    p_max_w       scalar or [L]    per-link power limit, W
    bandwidth_hz  scalar           total bandwidth, Hz
    cells, users_per_cell          optional integers with cells * users_per_cell = L
                                   (needed for the per-BS sum-power constraint)
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from radio.problem import Problem, ProblemError

REQUIRED = ("G", "noise_w", "p_max_w", "bandwidth_hz")
OPTIONAL = ("cells", "users_per_cell")
MAX_GAINS_BYTES = 4 * 2**30   # default cap of G as float64 (callers pass their own memory budget)
_NPY_MAGIC = b"\x93NUMPY"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def read_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """{array name: (shape, dtype, bytes the member really holds after its header)} of an .npz archive; see
    :func:`_read_headers`. Errors are one line, ``gains file PATH: what is wrong``."""
    try:
        return _read_headers(Path(path))
    except ProblemError as exc:
        raise ProblemError(f"gains file {path}: {exc}") from None


def _read_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """{array name: (shape, dtype, bytes the member really holds after its header)} of an .npz archive, read
    from the .npy headers inside the zip without loading any array; raises :class:`ProblemError` naming the
    file on anything that is not an .npz archive of plain (non-object) arrays."""
    path = Path(path)
    if not path.exists():
        raise ProblemError("does not exist")
    if not path.is_file():
        raise ProblemError("is not a file")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ProblemError(f"cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise ProblemError(f"empty; expected an .npz archive (numpy.savez) of {', '.join(REQUIRED)}")
    if head.startswith(_NPY_MAGIC):
        raise ProblemError(f"a single .npy array; expected an .npz archive (numpy.savez) of "
                           f"{', '.join(REQUIRED)}")
    out: dict[str, tuple[tuple[int, ...], np.dtype, int]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                with zf.open(info) as m:
                    version = np.lib.format.read_magic(m)
                    if version == (1, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(m)
                    elif version == (2, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(m)
                    else:
                        raise ValueError(f"unsupported .npy format version {version}")
                    out[name] = (tuple(int(d) for d in shape), np.dtype(dtype), info.file_size - m.tell())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise ProblemError(f"not a readable .npz archive ({exc or type(exc).__name__})") from None
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:100]
        raise ProblemError(f"holds an unreadable .npy array header ({reason})") from None
    for name, (shape, dtype, _) in out.items():
        if dtype.hasobject:
            raise ProblemError(f"{name}: holds Python objects (a pickled array), refused; expected numbers")
    return out


def load_gains(path: str | Path, bs_sum_power_w: float | None = None, max_bytes: int = MAX_GAINS_BYTES) -> Problem:
    """Read and validate a gains file; raises ProblemError naming the file and the field on anything wrong
    (one line, ``gains file PATH: field: what is wrong``). The array headers are checked first (names,
    shapes, dtypes, and that G as float64 fits in ``max_bytes``), so no array is loaded before it is known
    to be sane; pickled arrays are never loaded."""
    try:
        return _load_gains(Path(path), bs_sum_power_w, max_bytes)
    except ProblemError as exc:
        raise ProblemError(f"gains file {path}: {exc}") from None


def _load_gains(path: Path, bs_sum_power_w: float | None, max_bytes: int) -> Problem:
    heads = _read_headers(path)
    missing = [k for k in REQUIRED if k not in heads]
    if missing:
        raise ProblemError(f"missing array(s) {', '.join(missing)}; expected {', '.join(REQUIRED)} and "
                           "optionally cells, users_per_cell")
    shape, dtype, held = heads["G"]
    if dtype.kind not in "fiu":
        raise ProblemError(f"G: expected a float array [n, L, L], got dtype {dtype}")
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] == 0 or shape[1] == 0:
        raise ProblemError(f"G: expected a float array of shape [n, L, L] with n, L >= 1, got shape {shape}")
    need = int(np.prod(shape, dtype=np.float64) * 8)
    if need > max_bytes:
        raise ProblemError(f"G: shape {shape} needs {_gib(need)} as float64, more than the {_gib(max_bytes)} "
                           "allowed; use fewer realizations")
    for k, (shp, dt, has) in heads.items():
        if k not in REQUIRED + OPTIONAL:
            continue
        if k != "G" and (dt.kind not in "fiub" or len(shp) > 1 or int(np.prod(shp)) > shape[1]):
            raise ProblemError(f"{k}: expected a number (or [L] numbers for p_max_w), got dtype {dt}, shape {shp}")
        if has < int(np.prod(shp, dtype=np.float64)) * dt.itemsize:
            raise ProblemError(f"{k}: truncated (its header promises more bytes than the file holds)")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in REQUIRED + OPTIONAL if k in heads}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split())[:100]
        raise ProblemError(f"not a readable .npz archive ({reason})") from None
    G = data["G"]
    scalars = {}
    for k in ("noise_w", "bandwidth_hz"):
        if data[k].shape != () or not np.issubdtype(data[k].dtype, np.number):
            raise ProblemError(f"{k}: expected a numeric scalar, got shape {data[k].shape}")
        scalars[k] = float(data[k])
    if not np.issubdtype(data["p_max_w"].dtype, np.number):
        raise ProblemError(f"p_max_w: expected numbers in W, got dtype {data['p_max_w'].dtype}")
    structure = {}
    for k in OPTIONAL:
        if k in data:
            if data[k].shape != () or not np.issubdtype(data[k].dtype, np.integer) or int(data[k]) < 1:
                raise ProblemError(f"{k}: expected a positive integer scalar, got {data[k]!r}")
            structure[k] = int(data[k])
    if bs_sum_power_w is not None and not structure:
        raise ProblemError("cells, users_per_cell: required in the gains file for the per-BS "
                           "sum-power constraint")
    return Problem(G.astype(np.float64), scalars["noise_w"], data["p_max_w"], scalars["bandwidth_hz"],
                   structure.get("cells"), structure.get("users_per_cell"), bs_sum_power_w)


def save_gains(path: str | Path, problem: Problem) -> None:
    """Write a problem in the same format (handy for sharing the channels a run used)."""
    np.savez_compressed(path, G=problem.G, noise_w=problem.noise_w, p_max_w=problem.p_max_w,
                        bandwidth_hz=problem.bandwidth_hz, cells=problem.cells,
                        users_per_cell=problem.users_per_cell)
