"""How an execution node waits for an input (bs_agent.trpo.execution._Inbox), on real ZeroMQ nodes on loopback:
a spinning node polls; under a real-time priority it polls for at most its cap, then blocks in its socket."""

from __future__ import annotations

import numpy as np
import pytest

from bs_agent.trpo.execution import SlotRecords, _Inbox
from protocol import Envelope, Kind, RingNode, now_ns


class Recording:
    """A real node whose recv timeouts are recorded (what the inbox asked the socket for)."""

    def __init__(self, node: RingNode) -> None:
        self.node, self.timeouts = node, []

    def recv(self, timeout_ms=None):
        self.timeouts.append(timeout_ms)
        return self.node.recv(timeout_ms=timeout_ms)

    @property
    def stats(self):
        return self.node.stats


@pytest.fixture()
def pair():
    a, b = RingNode(0), RingNode(1)
    a.connect({1: b.endpoint})
    b.connect({0: a.endpoint})
    yield a, b
    a.close()
    b.close()


def vector(slot: int) -> Envelope:
    return Envelope(Kind.POWER_VECTOR, 0, 1, slot, 0, {"p": np.zeros(6, np.float32), "decided": np.zeros(3, np.int64)})


@pytest.mark.parametrize("cap_ns", [None, 100_000])
def test_a_capped_spin_blocks_after_its_cap_and_an_uncapped_one_only_polls(pair, cap_ns):
    """No input comes within a 40 ms deadline: the uncapped spinner only ever polls (timeout 0); the capped one
    polls first, then waits in its socket (a timeout of whole ms). Both give up at the deadline with nothing."""
    _, b = pair
    rec = Recording(b)
    inbox = _Inbox(rec, SlotRecords(4, 2), logical=False, spin=True, spin_cap_ns=cap_ns)
    got = inbox.take(int(Kind.POWER_VECTOR), 0, {0}, now_ns() + 40_000_000)
    assert got == {}
    assert rec.timeouts[0] == 0                                   # it starts by polling
    blocking = [t for t in rec.timeouts if t]
    assert (blocking != []) == (cap_ns is not None)


@pytest.mark.parametrize("cap_ns", [None, 100_000, 0])
def test_a_spinning_node_takes_its_input_whether_it_comes_before_or_after_the_cap(pair, cap_ns):
    """The vector is taken, with its arrival time, whether the node is still polling or already blocking."""
    a, b = pair
    inbox = _Inbox(b, SlotRecords(4, 2), logical=False, spin=True, spin_cap_ns=cap_ns,
                   shapes={int(Kind.POWER_VECTOR): {"p": 6, "decided": 3}})
    a.send(1, vector(0))
    t0 = now_ns()
    got = inbox.take(int(Kind.POWER_VECTOR), 0, {0}, now_ns() + 5_000_000_000)
    assert set(got) == {0} and got[0][0].iteration == 0 and got[0][1] >= t0
