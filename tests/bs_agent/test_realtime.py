"""bs_agent.realtime: SCHED_FIFO entered and left on the calling thread, inherited by the threads it starts, and
refused with one line where the user may not use it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bs_agent.realtime import current_policy, io_policy, realtime, realtime_refusal
from protocol import RingNode, io_thread_ids
from protocol.airport import LinkPort

needs_rt = pytest.mark.skipif(realtime_refusal(10) is not None, reason="this user may not use SCHED_FIFO")


def test_priority_zero_changes_nothing():
    before = current_policy()
    with realtime(0):
        assert current_policy() == before
    assert realtime_refusal(0) is None


@needs_rt
def test_entered_inherited_by_new_threads_and_left():
    before = current_policy()
    seen = []
    with realtime(10):
        assert current_policy() == ("fifo", 10)
        t = threading.Thread(target=lambda: seen.append(current_policy()))
        t.start()
        t.join()
    assert seen == [("fifo", 10)]           # a socket's I/O thread started inside gets the policy
    assert current_policy() == before


@needs_rt
def test_a_nodes_io_threads_get_their_priority_and_no_others_do():
    """A node given io_priority has its I/O threads (and only those) at that priority from their start, whatever
    the policy of the thread that made it (under SCHED_FIFO or not); the calling thread keeps its own."""
    plain = RingNode(0)
    try:
        outside = set(io_thread_ids())
        assert outside and io_policy() == "other 0"
        with realtime(10):
            node = RingNode(1, io_priority=9)
            deadline = time.monotonic() + 5
            while set(io_thread_ids()) == outside and time.monotonic() < deadline:
                time.sleep(0.01)                        # libzmq names its threads once they run
            assert set(io_policy().split("/")) == {"other 0", "fifo 9"} and current_policy() == ("fifo", 10)
            node.close()
        port = LinkPort(io_priority=3)
        time.sleep(0.05)
        assert "fifo 3" in io_policy().split("/") and current_policy()[0] == "other"
        port.close()
    finally:
        plain.close()


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0, reason="needs root to become another user")
def test_an_unprivileged_user_is_refused_in_one_line():
    code = ("import os; from bs_agent.realtime import realtime_refusal; from protocol import make_context; "
            "os.setuid(65534); print(realtime_refusal(10))\n"
            "try:\n    make_context(io_priority=10)\nexcept PermissionError:\n    print('refused')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    line, refused = out.stdout.strip().splitlines()
    assert refused == "refused"                     # raised before libzmq, which would abort the process
    assert line.startswith("run.priority=10: this user may not schedule threads SCHED_FIFO") and "\n" not in line
    assert line.endswith("expected run.priority=0")
