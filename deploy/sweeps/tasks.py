"""Points of a sweep as Ray tasks: one CPU each, spread over the cluster's nodes, with the driver's one-thread
BLAS settings, gathered as they finish."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from deploy import THREAD_VARS


def ray_tasks(fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    """``fn(item)`` for every item as a task of the Ray this process has joined, all submitted at once; yields
    ``(index of the item, outcome)`` in the order they finish. ``fn`` is a module-level function (a task imports
    it by name). Tasks still pending when the caller stops or a task fails are cancelled: none is left running."""
    import ray

    task = ray.remote(num_cpus=1)(fn).options(
        scheduling_strategy="SPREAD", runtime_env={"env_vars": {v: os.environ.get(v, "1") for v in THREAD_VARS}})
    index = {task.remote(item): i for i, item in enumerate(items)}
    pending = list(index)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield index[ref], ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
