"""ZeroMQ contexts and their threads: what a node's sockets run on (:func:`make_context`) and which of this
process's threads are ZeroMQ's (:func:`io_thread_ids`), so that callers outside ``protocol`` never import zmq."""

from __future__ import annotations

import os

import zmq


def check_fifo(priority: int) -> None:
    """Raise PermissionError where the calling thread may not run SCHED_FIFO at ``priority`` (1..99): tried on it
    and undone (no root or CAP_SYS_NICE, or an RLIMIT_RTPRIO below it)."""
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    os.sched_setscheduler(0, policy, param)


def make_context(io_priority: int = 0, io_threads: int = 1) -> zmq.Context:
    """A ZeroMQ context. Shared between several nodes of one process: one I/O thread for all of them, and
    ``inproc://`` between them (:meth:`protocol.ring.RingNode.bind_inproc`); the caller then terminates it
    (``ctx.term()``) after closing its nodes. Callers outside ``protocol`` never import zmq.

    ``io_priority`` 1..99: the context's background threads (its sockets' I/O) run SCHED_FIFO at that priority,
    set by libzmq as each thread starts (threads a real-time thread starts do not reliably inherit its policy: in
    a Ray actor they come up SCHED_OTHER). Checked here first on the calling thread, since libzmq aborts the
    process where the setting fails. Raises PermissionError where this process may not."""
    if io_priority > 0:
        check_fifo(io_priority)
    ctx = zmq.Context(io_threads=io_threads)
    if io_priority > 0:
        ctx.set(zmq.THREAD_SCHED_POLICY, os.SCHED_FIFO)
        ctx.set(zmq.THREAD_PRIORITY, io_priority)
    return ctx


IO_THREAD_PREFIX = "ZMQbg/"
"""How libzmq (4.3) names its background threads: ``ZMQbg/IO/<n>`` (the sockets' I/O) and ``ZMQbg/Reaper``."""


def io_thread_ids() -> list[int]:
    """Thread ids of this process's ZeroMQ background threads (every context's), from ``/proc/self/task``
    (Linux; elsewhere none), e.g. to report their scheduling without importing zmq. libzmq names a thread once it
    runs, so one started a moment ago may not be listed yet."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return []
    out = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:                 # the thread ended meanwhile
            continue
        if name.startswith(IO_THREAD_PREFIX):
            out.append(int(tid))
    return sorted(out)


__all__ = ["make_context", "check_fifo", "io_thread_ids", "IO_THREAD_PREFIX"]
