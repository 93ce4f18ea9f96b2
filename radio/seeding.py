"""Every random stream of a run, derived from its one root seed (DESIGN habit 6: no global RNG).

A stream is a ``numpy.random.SeedSequence(root, spawn_key=key)``: a pure function of the root seed and
an integer key naming who draws and for what. Two forms, kept as they were when the recorded figures
were measured (both are SeedSequence children; they differ only in how the key is laid out and in
what they return):

* :func:`child_seed` ``(root, purpose, *more) -> int``: a 63-bit seed (for ``torch.Generator`` or a
  generator built later, e.g. inside a Ray actor). The TRPO streams, :class:`TrpoStream`, put their
  purpose FIRST: ``child_seed(root, TrpoStream.AGENT, b)`` is BS b's sampling noise.
* :func:`rng_for` ``(root, *who, purpose) -> Generator``. The zeroth-order streams, :class:`ZoStream`,
  put their purpose LAST: ``rng_for(root, i, k, ZoStream.U)`` is link i's perturbation at iteration k.

The two enumerations number their purposes independently (each value is part of the recorded figures:
never renumber). Link emulation draws from :func:`protocol.links.link_rng` (the protocol does not
import radio), keyed (sender, receiver, purpose) the same way.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class TrpoStream(IntEnum):
    """Purposes of paper 1's streams (first element of the key)."""

    AIR = 0       # channel slots drawn by the coordinator
    ORDER = 1     # the round-robin order of every slot
    INIT = 2      # network initialisation (the same at every BS: the policy is shared)
    AGENT = 3     # a BS's Gaussian sampling noise (key: AGENT, bs)
    EVAL = 4      # reserved (held-out draws use the run seed + 1, see deploy)
    LOSS = 5      # which round-robin vectors are lost in training (links.loss)
    IMITATE = 6   # the teacher's slots and round-robin orders of policy.init=cell_optimum, and its minibatches


class ZoStream(IntEnum):
    """Purposes of paper 2's streams (last element of the key)."""

    U = 0          # perturbation directions u_i^k (key: i, k, U)
    INIT = 1       # initial policy parameters theta_i^0 (key: i, 0, INIT)
    AIR = 2        # the training air's channel process
    EVAL = 3       # evaluation channels
    FATE = 4       # retired (per-message delay/drop: now protocol.links.link_rng)
    GRAPH = 5      # the random communication graph
    OFFSET = 6     # random per-link offsets (asynchrony)
    ASSIGN = 7     # random policy reassignment (paper 2 Table I)
    NORM = 8       # channel samples of the fixed input-normalisation constants


GAIN_NORM_SEED = 20240601
"""Seed of the fixed sample that sets a scenario's gain normalisation (independent of any run's seed)."""


def child_seed(root: int, *key: int) -> int:
    """A 63-bit seed derived from (root seed, key...) with numpy's SeedSequence."""
    return int(np.random.SeedSequence(int(root), spawn_key=tuple(int(k) for k in key))
               .generate_state(2, np.uint64)[0] >> 1)


def rng_for(root: int, *key: int) -> np.random.Generator:
    """A generator for one stream, derived from the root seed and an integer key."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(root), spawn_key=tuple(int(x) for x in key)))


__all__ = ["TrpoStream", "ZoStream", "GAIN_NORM_SEED", "child_seed", "rng_for"]
