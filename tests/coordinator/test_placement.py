"""run.placement: the plan on the test session's one node, bad placements refused, and on a real 2-node
cluster (started here) spread puts BSs and links on both nodes, inproc == ray still holds bit for bit in
logical time across them, and the cross-node links are counted."""

from __future__ import annotations

import pytest
import torch

from coordinator.config import ConfigError
from coordinator.placement import check_placement, plan, spans_nodes
from deploy.config import load_config

pytestmark = pytest.mark.ray

SMALL = ["policy.hidden=16", "policy.layers=2", "trpo.episodes=48", "trpo.cg_iters=4", "trpo.value_epochs=2"]


def test_plan_on_one_node_and_bad_placements(ray_session):
    where = plan("spread", ["0", "1", "2"])
    assert len({n.node_id for n in where.values()}) == 1 and not spans_nodes(where)
    assert plan("pack", ["0", "cu"])["cu"] == plan("0:#0", ["0", "cu"])["0"]
    with pytest.raises(ConfigError, match="matches no alive node"):
        plan("0:#7", ["0", "1"])
    with pytest.raises(ConfigError, match="names no actor"):
        plan("5:#0", ["0", "1"])
    with pytest.raises(ConfigError, match="ACTOR:NODE"):
        check_placement("everywhere")




def test_trpo_spread_over_two_nodes_equals_inproc_and_counts_cross_node_links(two_nodes, tmp_path):
    from coordinator.messages import RunMessages
    from coordinator.trpo.backend import make_backend
    from coordinator.trpo.config import TrainConfig
    from coordinator.trpo.trainer import Trainer

    torch.set_num_threads(1)
    thetas, summaries = {}, {}
    for backend in ("inproc", "ray"):
        cfg = load_config(TrainConfig, None, SMALL + ["run.scheme=partial", f"run.backend={backend}",
                                                      "run.placement=spread"])
        be = make_backend(cfg)
        log = RunMessages(tmp_path / f"{backend}.csv", backend)
        try:
            meta = be.meta()
            if backend == "ray":
                nodes = {v["node"] for v in meta["placement"].values()}
                assert len(nodes) == 2                          # BSs on both nodes
                assert all(abs(v["offset"]) <= v["rtt"] / 2 + 1 for v in meta["clock_offsets_ns"].values())
                log.node_of = {int(k[2:]): v["node"] for k, v in meta["placement"].items()}
            tr = Trainer(cfg, be, log)
            for _ in range(2):
                tr.step()
            thetas[backend] = (tr.theta.clone(), tr.phi.detach().clone())
            summaries[backend] = log.close()
        finally:
            be.close()
    assert torch.equal(thetas["inproc"][0], thetas["ray"][0]) and torch.equal(thetas["inproc"][1], thetas["ray"][1])
    cross = summaries["ray"]["cross_node"]
    assert cross["sent"]["count"] > 0                           # ring hops between the nodes
    flags = [k["cross_node"] for link, kinds in summaries["ray"]["per_link"].items() for k in kinds.values()
             if "-2" not in link]
    assert True in flags and False in flags                     # some hops stay on a node, some cross


def test_zo_links_spread_over_two_nodes_equal_inproc(two_nodes):
    from coordinator.messages import RunMessages
    from coordinator.zo.config import ZOConfig
    from coordinator.zo.links import Exchange
    from coordinator.zo.ray_links import RayLinks
    from coordinator.zo.train import Evaluator, make_trainer, train

    cfg = load_config(ZOConfig, None, ["scenario.n_links=4", "algo.b1=5", "algo.b2=5", "run.iterations=6",
                                       "run.eval_every=3", "run.eval_sequences=2", "run.eval_slots=4",
                                       "run.placement=spread"])
    out = {}
    for backend in ("inproc", "ray"):
        log, ex = RunMessages(), Exchange()
        links = RayLinks(cfg, log, ex) if backend == "ray" else None
        try:
            if links is not None:
                assert len({v["node"] for v in links.meta()["placement"].values()}) == 2
            tr = make_trainer(cfg, log, ex, links)
            train(cfg, tr, Evaluator(cfg), cfg.run.iterations)
            out[backend] = [t.copy() for t in tr.thetas()]
        finally:
            if links is not None:
                links.close()
    assert all((a == b).all() for a, b in zip(out["inproc"], out["ray"], strict=True))
