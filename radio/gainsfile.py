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
from pathlib import Path

import numpy as np

from radio.problem import Problem, ProblemError

REQUIRED = ("G", "noise_w", "p_max_w", "bandwidth_hz")


def load_gains(path: str | Path, bs_sum_power_w: float | None = None) -> Problem:
    """Read and validate a gains file; raises ProblemError naming the field on anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"gains file: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ProblemError(f"gains file: {path} is not a readable .npz archive ({exc})") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ProblemError(f"gains file: missing array(s) {missing}; expected {list(REQUIRED)} "
                           "and optionally cells, users_per_cell")
    G = data["G"]
    if not np.issubdtype(G.dtype, np.floating) and not np.issubdtype(G.dtype, np.integer):
        raise ProblemError(f"G: expected a float array [n, L, L], got dtype {G.dtype}")
    if G.ndim != 3 or G.shape[1] != G.shape[2] or G.shape[0] == 0:
        raise ProblemError(f"G: expected a float array of shape [n, L, L] with n >= 1, got shape {G.shape}")
    scalars = {}
    for k in ("noise_w", "bandwidth_hz"):
        if data[k].shape != () or not np.issubdtype(data[k].dtype, np.number):
            raise ProblemError(f"{k}: expected a numeric scalar, got shape {data[k].shape}")
        scalars[k] = float(data[k])
    structure = {}
    for k in ("cells", "users_per_cell"):
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
