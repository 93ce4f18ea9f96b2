"""Real-time scheduling of an execution-phase node (``run.priority`` of ``bsemu execute``).

A deployed BS runs its slot loop under a real-time policy so that nothing of lower importance (here: Ray's own
processes and threads, a test runner, a shell) runs while it decides. :func:`realtime` puts the calling thread
under ``SCHED_FIFO`` at a priority (1..99) and gives it back its own policy on leaving; threads it starts meanwhile
(the ZeroMQ I/O threads of the sockets it creates) inherit the policy. Processes it forks inherit it too, so a
caller starts Ray before, not inside. Linux caps real-time threads at 95 % of each second by default
(``/proc/sys/kernel/sched_rt_runtime_us``), so a busy real-time loop cannot lock the machine up for good; the
execute config still refuses ``run.wait=spin`` with a priority, since spinning real-time nodes would starve
every other process on a machine with fewer cores than nodes. Needs root or ``CAP_SYS_NICE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


def realtime_refusal(priority: int) -> str | None:
    """None where this process may run its threads at ``priority`` (tried on the calling thread and undone), else
    one line saying why not and what is allowed."""
    if priority <= 0:
        return None
    if not hasattr(os, "sched_setscheduler"):
        return f"run.priority={priority}: this OS has no SCHED_FIFO (Linux only); expected run.priority=0"
    try:
        with realtime(priority):
            pass
    except PermissionError:
        return (f"run.priority={priority}: this user may not schedule threads SCHED_FIFO (it needs root or "
                f"CAP_SYS_NICE, and an RLIMIT_RTPRIO of at least {priority}); expected run.priority=0")
    return None


def current_policy() -> tuple[str, int]:
    """(policy name, priority) of the calling thread, as the results record it."""
    names = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
    policy = os.sched_getscheduler(0)
    return names.get(policy, str(policy)), os.sched_getparam(0).sched_priority
