"""bs_agent.realtime: SCHED_FIFO entered and left on the calling thread, inherited by the threads it starts, and
refused with one line where the user may not use it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from bs_agent.realtime import current_policy, realtime, realtime_refusal

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


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0, reason="needs root to become another user")
def test_an_unprivileged_user_is_refused_in_one_line():
    code = ("import os; from bs_agent.realtime import realtime_refusal; os.setuid(65534); "
            "print(realtime_refusal(10))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("run.priority=10: this user may not schedule threads SCHED_FIFO") and "\n" not in line
    assert line.endswith("expected run.priority=0")
