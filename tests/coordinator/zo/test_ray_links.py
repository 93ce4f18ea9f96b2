"""Ray backend of Algorithm 1: one actor per link, d over ZeroMQ; identical to inproc in logical time."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.zo.config import ZOConfig
from coordinator.zo.links import Exchange
from coordinator.zo.train import Evaluator, make_trainer, train
from protocol.log import MessageLog

pytestmark = pytest.mark.ray


def _cfg(**algo) -> ZOConfig:
    return ZOConfig().replace(algo={"b1": 10, "b2": 10, **algo},
                              run={"iterations": 5, "eval_every": 5, "eval_sequences": 2, "eval_slots": 5})


@pytest.mark.parametrize(("algo", "per_actor"), [
    ({}, 1),
    ({"update": "async", "asynchrony": 40.0, "delay_kind": "uniform", "jitter": 2.0, "drop_prob": 0.2}, 1),
    ({"update": "graph", "graph": "random", "asynchrony": 20.0, "delay": 1.0}, 1),
    ({"update": "async", "asynchrony": 40.0, "delay_kind": "uniform", "jitter": 2.0, "drop_prob": 0.2}, 2),
    ({"update": "graph", "graph": "random", "asynchrony": 20.0, "delay": 1.0}, 5),
])
def test_inproc_equals_ray_in_logical_time(ray_session, algo, per_actor):
    """Same trajectories and the same d traffic in the log, whether each link has its own actor or
    several links share one (each still with its own agent and ZeroMQ node)."""
    from coordinator.zo.ray_links import RayLinks

    cfg = _cfg(**algo)
    ex_a, ex_b = Exchange(), Exchange()
    log_a = MessageLog(None)
    a = make_trainer(cfg, log_a, ex_a)
    train(cfg, a, Evaluator(cfg), cfg.run.iterations)
    log_b = MessageLog(None)
    links = RayLinks(cfg, log_b, ex_b, links_per_actor=per_actor)
    try:
        b = make_trainer(cfg, log_b, ex_b, links)
        train(cfg, b, Evaluator(cfg), cfg.run.iterations)
        air = links.air_stats()
        n_actors = len(links.actors)
    finally:
        links.close()
    for x, y in zip(a.thetas(), b.thetas(), strict=True):
        assert np.array_equal(x, y)
    assert (ex_a.messages, ex_a.scalars, ex_a.bytes, ex_a.dropped) == (ex_b.messages, ex_b.scalars, ex_b.bytes,
                                                                         ex_b.dropped)
    # the ray log holds the d rows the sockets logged (plus the start barrier's HELLOs): same per-kind
    # counts and bytes of sent, received and dropped d messages as the in-process log
    kinds_a, kinds_b = log_a.summary()["per_kind"], log_b.summary()["per_kind"]
    d_kinds = [k for k in ("SCALAR_D", "RELAY_D") if k in kinds_a]
    assert d_kinds and all({e: v for e, v in kinds_a[k].items() if e != "latency_ns"}
                           == {e: v for e, v in kinds_b[k].items() if e != "latency_ns"}
                           for k in d_kinds)
    hello = kinds_b["HELLO"]
    assert hello["sent"]["count"] == hello["received"]["count"] == ex_b.messages // cfg.run.iterations
    assert kinds_b[d_kinds[0]]["latency_ns"]["count"] > 0          # rows carry send and receive times
    # the air port (rates in, schedules out) is not a message of the algorithm: nothing of it in the
    # log; one reply per link update, plus one per actor for the final settle
    assert set(kinds_b) == {*d_kinds, "HELLO"}
    assert air["air_frames_from_links"] == sum(b.k) + n_actors
    assert air["air_frames_to_links"] >= cfg.run.iterations


def test_ray_resume_from_checkpoint_equals_uninterrupted_inproc(ray_session):
    """A checkpoint taken mid-run (messages in flight are settled into it) resumes on fresh actors,
    here packed differently (states are per link, not per actor)."""
    import copy

    from coordinator.zo.ray_links import RayLinks

    cfg = _cfg(update="async", asynchrony=40.0, delay_kind="uniform", jitter=3.0, drop_prob=0.2)
    ref = make_trainer(cfg, MessageLog(None), Exchange())
    train(cfg, ref, Evaluator(cfg), 8)
    states = []
    for stop, per_actor in ((4, 1), (8, 3)):
        log, ex = MessageLog(None), Exchange()
        links = RayLinks(cfg, log, ex, links_per_actor=per_actor)
        try:
            tr = make_trainer(cfg, log, ex, links)
            if states:
                tr.load_state(copy.deepcopy(states[-1]))
            train(cfg, tr, Evaluator(cfg), stop)
            states.append(tr.state())
        finally:
            links.close()
    for x, y in zip(ref.thetas(), tr.thetas(), strict=True):
        assert np.array_equal(x, y)
    assert ex.dropped == ref.exchange.dropped > 0
