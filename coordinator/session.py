"""The one Ray session policy of bsemu: the only place that calls ``ray.init``.

A run joins the cluster named by its ``--address`` (or ``RAY_ADDRESS``), or starts an embedded local
Ray for itself. An embedded Ray gets this process's settings (no dashboard, no log forwarding, objects
up to 4 MiB inline with the calls); a cluster keeps its own, and Ray 2.60 refuses resource arguments
when it joins one (``num_cpus``), so none are passed. Whoever started the session shuts it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

RAY_SYSTEM_CONFIG: dict[str, Any] = {"max_direct_call_object_size": 4 << 20}
"""For a Ray this process starts: objects up to 4 MiB travel inline with the call instead of through
the object store. A TRPO vector (gradient/FVP share, parameters: ~0.55 MB for 3x256 nets) then costs
about half the round trip (measured on 2 loaded cores: ~5 ms instead of ~10 ms per call with a
0.55 MB argument and result). A cluster started elsewhere keeps its own setting."""


@dataclass
class RaySession:
    """A Ray this process uses: ``started`` if it started it (and so must shut it down), ``address`` of
    the cluster it joined (None: embedded)."""

    started: bool
    address: str | None

    @property
    def on_cluster(self) -> bool:
        """Joined an existing cluster by address (nodes may be other hosts: bind reachable addresses)."""
        return self.address is not None

    def close(self) -> None:
        """Shut Ray down if this session started it."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


def ray_session(address: str | None = None, num_cpus: int | None = None) -> RaySession:
    """Use the Ray already initialised in this process, else join ``address`` (default ``RAY_ADDRESS``),
    else start an embedded local Ray with ``num_cpus`` logical CPUs (default: the machine's, at least 2)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return RaySession(False, address)
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(num_cpus=num_cpus or max(2, os.cpu_count() or 2), include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _system_config=RAY_SYSTEM_CONFIG)
    return RaySession(True, address)
