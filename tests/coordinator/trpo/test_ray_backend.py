"""The ray backend: inproc == ray in logical time, and training across a real 2-node cluster."""

from __future__ import annotations

import pytest
import torch

from coordinator.trpo.backend import make_backend
from coordinator.trpo.config import TrainConfig, agent_spec
from coordinator.trpo.trainer import Trainer
from deploy.config import load_config
from radio.seeding import TrpoStream, child_seed

pytestmark = pytest.mark.ray

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2"]


@pytest.mark.parametrize("scheme,extra", [("partial", []), ("full", []), ("centralized", []),
                                          # critic minibatches, cycling past k, rounds riding over the nodes
                                          ("partial", ["trpo.value_epochs=4", "trpo.value_batches=3"]),
                                          # the critic's hidden layers in bfloat16
                                          ("centralized", ["trpo.value_precision=bfloat16"]),
                                          # training under asynchrony: lost round-robin vectors
                                          ("partial", ["links.loss=0.3"])])
def test_inproc_equals_ray(ray_session, scheme, extra):
    torch.set_num_threads(1)
    thetas = {}
    logs = {}
    for backend in ("inproc", "ray"):
        cfg = load_config(TrainConfig, None, SMALL + [f"run.scheme={scheme}", f"run.backend={backend}"] + extra)
        be = make_backend(cfg)
        try:
            tr = Trainer(cfg, be)
            ms = [tr.step() for _ in range(2)]
            thetas[backend] = (tr.theta.clone(), tr.phi.detach().clone())
            logs[backend] = {k: v for k, v in ms[-1].items() if k.startswith("msgs_") or k == "lost_vectors"}
        finally:
            be.close()
    assert torch.equal(thetas["inproc"][0], thetas["ray"][0])
    assert torch.equal(thetas["inproc"][1], thetas["ray"][1])
    assert logs["inproc"] == logs["ray"]


def test_inproc_equals_ray_with_two_threads(ray_session):
    """run.threads = 2 (the centralized agent on both cores): the agents compute with 2 threads (the actor
    process; inproc switches them on around each agent call), the coordinator with 1 in both, so the
    two backends still do the same arithmetic; nets large enough that torch splits the work."""
    thetas = {}
    for backend in ("inproc", "ray"):
        cfg = load_config(TrainConfig, None, ["policy.hidden=128", "policy.layers=2", "trpo.episodes=400",
                                              "trpo.cg_iters=4", "trpo.value_epochs=2", "run.threads=2",
                                              "run.scheme=centralized", f"run.backend={backend}"])
        be = make_backend(cfg)
        try:
            assert torch.get_num_threads() == 1
            tr = Trainer(cfg, be)
            tr.step()
            assert torch.get_num_threads() == 1
            thetas[backend] = (tr.theta.clone(), tr.phi.detach().clone())
        finally:
            be.close()
            torch.set_num_threads(1)
    assert torch.equal(thetas["inproc"][0], thetas["ray"][0])
    assert torch.equal(thetas["inproc"][1], thetas["ray"][1])


def test_two_node_cluster_training():
    """A real 2-node Ray cluster on this machine (its own, separate from the session's Ray)."""
    import ray
    from ray.cluster_utils import Cluster

    from coordinator.session import ray_session
    from coordinator.trpo.ray_backend import RayBackend

    was = ray.is_initialized()
    if was:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"node_a": 10},
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources={"node_b": 10})
    try:
        session = ray_session(cluster.address)
        cluster.wait_for_nodes()
        cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", "run.backend=ray"])
        spec = agent_spec(cfg)
        seeds = [child_seed(cfg.run.seed, TrpoStream.AGENT, i) for i in range(spec.B)]
        opts = [{"resources": {"node_a" if i % 2 == 0 else "node_b": 1}} for i in range(spec.B)]
        be = RayBackend(spec, seeds, actor_options=opts)
        try:
            assert len(set(be.node_ids())) == 2
            tr = Trainer(cfg, be)
            th0 = tr.theta.clone()
            ms = [tr.step() for _ in range(2)]
            assert all(m["reward"] > 0 for m in ms) and not torch.equal(th0, tr.theta)
        finally:
            be.close()
    finally:
        session.close()
        cluster.shutdown()
        if was:
            ray_session(num_cpus=2)


def test_fvp_phase_over_ring_equals_ray_calls(ray_session):
    """The FVP phase over the agents' ZeroMQ nodes (default) gives the parameters and message log of
    the same phase by Ray calls, and its frames really crossed the nodes (not counted as ring hops)."""
    import ray

    from coordinator.trpo.ray_backend import RayBackend

    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=full", "run.backend=ray"])
    spec = agent_spec(cfg)
    seeds = [child_seed(cfg.run.seed, TrpoStream.AGENT, i) for i in range(spec.B)]
    out = {}
    for ring in (True, False):
        be = RayBackend(spec, seeds, fvp_over_ring=ring)
        try:
            tr = Trainer(cfg, be)
            ms = [tr.step() for _ in range(2)]
            served = ray.get([a.__ray_call__.remote(lambda self: list(self.served)) for a in be.actors])
            out[ring] = (tr.theta.clone(), tr.phi.detach().clone(), [{k: v for k, v in m.items()
                                                                     if k.startswith(("msgs_", "bytes_"))} for m in ms])
            assert be.ring_stats() == [{"sent": 0, "received": 0, "rejected": 0}] * spec.B
        finally:
            be.close()
        # per agent and iteration: cg_iters products + 1 candidate answered; critic round 1 rides with a GRADIENT
        if ring:
            assert all(s[0] == 2 * (cfg.trpo.cg_iters + 1 + cfg.trpo.value_epochs - 1) for s in served)
        else:
            assert served == [[0, 0]] * spec.B
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])
    assert out[True][2] == out[False][2]


def test_lost_vectors_are_seen_as_undecided_and_logged_as_dropped(tmp_path):
    """links.loss in round-robin training: each lost one-slot vector is one dropped row from the BS one step
    before, and the BS that lost it acts as if it were first: no power and no flag in its state."""
    import numpy as np

    from coordinator.messages import RunMessages
    from coordinator.trpo.config import check_feasible
    from coordinator.trpo.trainer import random_positions
    from protocol.log import DROPPED, read_rows

    cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", "run.backend=inproc", "links.loss=0.25"])
    be = make_backend(cfg)
    tr = Trainer(cfg, be, RunMessages(tmp_path / "m.csv", "r"))
    m = tr.step()
    tr.log.close()
    dropped = [r for r in read_rows(tmp_path / "m.csv") if r[0] == DROPPED]
    assert m["lost_vectors"] == len(dropped) > 0
    M, B, L = cfg.trpo.episodes, 3, 6
    position = random_positions(np.random.default_rng(child_seed(cfg.run.seed, TrpoStream.ORDER)), M, B)
    order = np.argsort(position, axis=1)
    lost = np.zeros((M, B), bool)
    for r in dropped:                                    # (sender, receiver, slot) = (predecessor, b, m)
        b, slot = r[3], r[5]
        assert position[slot, b] > 0 and r[2] == order[slot, position[slot, b] - 1]
        lost[slot, b] = True
    for b, a in enumerate(be.agents):
        extra = a.bs.obs.numpy()[:, L:]                  # relative powers [L] and flags [B] in BS b's state
        alone = (extra == 0).all(axis=1)
        assert np.array_equal(alone, (position[:, b] == 0) | lost[:, b])
    with pytest.raises(ValueError, match="round-robin"):
        check_feasible(load_config(TrainConfig, None, ["run.scheme=full", "links.loss=0.1"]))
