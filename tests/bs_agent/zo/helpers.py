"""Small zeroth-order link agents and a synchronous exchange round, shared by the tests."""

from __future__ import annotations

import numpy as np

from bs_agent.zo.agent import ZOHyper, ZOLinkAgent
from bs_agent.zo.policy import MLPSpec
from coordinator.zo.graphs import fully_connected


def _agents(mode, n=4, nb=None, d_max=1, seed=5):
    spec = MLPSpec((6, 3, 1))
    nb = nb or fully_connected(n)
    return [ZOLinkAgent(i, spec, ZOHyper(b1=2, b2=2), seed, mode, tuple(nb[i]), d_max) for i in range(n)]


def _sync_round(agents, k, d, t, graph=False):
    out = {}
    for ag in agents:
        out[ag.index] = ag.end_iteration(np.zeros(2), np.full(2, d[ag.index]))
    for ag in agents:
        for r in ag.neighbours:
            agents[r].deliver(out[ag.index], t)
    return [ag.update(t)[0] for ag in agents]
