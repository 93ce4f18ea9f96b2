"""The BLAS / OpenMP thread caps of :mod:`deploy.api`: what the ``bsemu`` command sets before numpy loads (one BLAS
thread, one torch thread, OPENBLAS/OMP/MKL_NUM_THREADS=1), applied at call time in a process that loaded numpy
long before (a notebook) and restored afterwards. Re-exported by :mod:`deploy.api`."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from typing import Any

from deploy import THREAD_VARS

__all__ = ["blas_threads", "one_thread"]


def _openblas_libs() -> list[ctypes.CDLL]:
    """The OpenBLAS builds this process has loaded (numpy's, scipy's), from /proc/self/maps (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:
        return []
    return [ctypes.CDLL(p) for p in sorted(paths)]


_OPENBLAS_API = [(f"{pre}openblas_get_num_threads{suf}", f"{pre}openblas_set_num_threads{suf}")
                 for pre in ("scipy_", "") for suf in ("64_", "")]


def _openblas_calls() -> list[tuple[Any, Any]]:
    out = []
    for lib in _openblas_libs():
        for get, put in _OPENBLAS_API:
            g, s = getattr(lib, get, None), getattr(lib, put, None)
            if g is not None and s is not None:
                out.append((g, s))
                break
    return out


def blas_threads() -> int | None:
    """The thread count of the BLAS numpy calls (threadpoolctl's view if installed, else OpenBLAS's own), or
    None where it cannot be read."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        calls = _openblas_calls()
        return int(calls[0][0]()) if calls else None
    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Within the block, what the ``bsemu`` command sets for a process: one BLAS thread (through threadpoolctl
    where it is installed, else OpenBLAS's own calls), one torch thread, and OPENBLAS/OMP/MKL_NUM_THREADS=1
    where unset (inherited by processes started meanwhile); everything is restored on the way out."""
    import torch

    env = {v: os.environ.get(v) for v in THREAD_VARS}
    for v in THREAD_VARS:
        os.environ.setdefault(v, "1")
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        saved = [(put, int(get())) for get, put in _openblas_calls()]
        for put, _ in saved:
            put(1)

        def restore() -> None:
            for put, n in saved:
                put(n)
    else:
        restore = threadpool_limits(limits=1, user_api="blas").restore_original_limits
    try:
        yield
    finally:
        restore()
        torch.set_num_threads(torch_threads)
        for v, old in env.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old

