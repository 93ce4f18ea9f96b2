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


@pytest.fixture(scope="module")
def two_nodes():
    """A real 2-node Ray cluster on this machine, the test session's Ray set aside meanwhile."""
    import ray
    from ray.cluster_utils import Cluster

    from coordinator.session import ray_session

    was = ray.is_initialized()
    if was:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    session = ray_session(cluster.address)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        session.close()
        cluster.shutdown()
        if was:
            ray_session(num_cpus=2)
