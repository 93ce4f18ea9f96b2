"""Shared fixtures: one real local Ray instance per test session (DESIGN §9: ray.init costs seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray (2 CPUs, no dashboard), started once and shared by every test that needs it,
    through bsemu's own session policy (:mod:`coordinator.session`)."""
    ray = pytest.importorskip("ray")
    from coordinator.session import ray_session as start

    session = start(num_cpus=2)
    yield ray
    session.close()
