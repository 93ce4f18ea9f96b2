"""Real-time scheduling of an execution-phase node (``run.priority`` of ``bsemu execute``).

A deployed BS runs its slot loop under a real-time policy so that nothing of lower importance (here: Ray's own
processes and threads, a test runner, a shell) runs while it decides. :func:`realtime` puts the calling thread
under ``SCHED_FIFO`` at a priority (1..99) and gives it back its own policy on leaving. Processes it forks inherit
the policy, so a caller starts Ray before, not inside. Linux caps real-time threads at 95 % of each second by
default (``/proc/sys/kernel/sched_rt_runtime_us``), so a busy real-time loop cannot lock the machine up for good;
a real-time node that spins for its input (``run.wait=spin``) yields its core only to the real-time threads of its
priority, so it spins for at most ``bs_agent.trpo.execution.RT_SPIN_CAP_NS`` (500 µs) per input and then blocks.
Needs root or ``CAP_SYS_NICE``.

The node's sockets' ZeroMQ I/O threads (which carry every frame it sends and receives) run at the loop's
priority too, set on their contexts (``protocol.make_context(io_priority)``): they do not reliably inherit the
policy of the thread that creates the sockets (in a Ray actor they came up ``SCHED_OTHER``, so a frame waited
behind Ray's and the other nodes' time-shared work). :func:`io_policy` reports what they run under. Measured on
2 cores, 3-cell round-robin and centralized, 2000 slots each, two interleaved rounds (load 1.9-2.9):

    I/O threads          rr slot p50 / p99 µs   1 ms deadlines met   centralized slot p50 / p99 µs
    SCHED_OTHER          622 / 1209, 556 / 1077   87.0 / 95.1 %        562 / 1532, 580 / 1442
    FIFO, loop's - 1     438 / 752, 465 / 774     99.4 / 99.5 %        490 / 732, 504 / 694
    FIFO, loop's (kept)  417 / 632, 415 / 646     99.8 / 99.7 %        509 / 810, 477 / 630

One below the loop gave per-BS decision p50s of 46-51 µs against 50-52 at the loop's own, but slower slots.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from protocol import check_fifo, io_thread_ids

_NAMES = {getattr(os, k): v for k, v in (("SCHED_OTHER", "other"), ("SCHED_FIFO", "fifo"), ("SCHED_RR", "rr"),
                                          ("SCHED_BATCH", "batch")) if hasattr(os, k)}

PRIORITY_RANGE = (0, 99)
"""0: the normal time-sharing policy; 1..99: SCHED_FIFO at that priority."""


@contextmanager
def realtime(priority: int) -> Iterator[None]:
    """The calling thread under SCHED_FIFO at ``priority`` (nothing at 0) while inside; its previous policy and
    priority after. Raises PermissionError where the process may not (no root, no CAP_SYS_NICE, RLIMIT_RTPRIO)."""
    if priority <= 0:
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def enter_realtime(priority: int) -> None:
    """The calling thread under SCHED_FIFO at ``priority`` from now on (nothing at 0): for a node's own process,
    whose loop ends with the process. Raises PermissionError as :func:`realtime`."""
    if priority > 0:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))


def io_policy() -> str:
    """The scheduling of this process's ZeroMQ I/O threads, as the results record it: "fifo 49", "other 0", or
    several such joined by "/" where they differ; "none" without any."""
    seen = []
    for tid in io_thread_ids():
        try:
            p = "{} {}".format(*_policy(tid))
        except ProcessLookupError:
            continue
        if p not in seen:
            seen.append(p)
    return "/".join(seen) or "none"


def realtime_refusal(priority: int) -> str | None:
    """None where this process may run its threads at ``priority`` (tried on the calling thread and undone), else
    one line saying why not and what is allowed."""
    if priority <= 0:
        return None
    if not hasattr(os, "sched_setscheduler"):
        return f"run.priority={priority}: this OS has no SCHED_FIFO (Linux only); expected run.priority=0"
    try:
        check_fifo(priority)
    except PermissionError:
        return (f"run.priority={priority}: this user may not schedule threads SCHED_FIFO (it needs root or "
                f"CAP_SYS_NICE, and an RLIMIT_RTPRIO of at least {priority}); expected run.priority=0")
    return None


def current_policy() -> tuple[str, int]:
    """(policy name, priority) of the calling thread, as the results record it."""
    return _policy(0)


def _policy(tid: int) -> tuple[str, int]:
    policy = os.sched_getscheduler(tid)
    return _NAMES.get(policy, str(policy)), os.sched_getparam(tid).sched_priority
